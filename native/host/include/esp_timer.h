// Host fake of ESP-IDF components/esp_timer/include/esp_timer.h: the simulated clock (src/fake_clock.c).
#pragma once
#include <stdint.h>
#include "esp_err.h"
int64_t esp_timer_get_time(void);
