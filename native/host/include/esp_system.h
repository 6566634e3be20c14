// Host fake of ESP-IDF components/esp_system/include/esp_system.h: esp_restart, exact
// (noreturn: the fake ends the simulated device, see src/fake_system.c).
#pragma once
#include "esp_err.h"
void esp_restart(void) __attribute__((__noreturn__));
