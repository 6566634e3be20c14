// Host fake of ESP-IDF components/nvs_flash/include/nvs_flash.h: nvs_flash_init, exact.
#pragma once
#include "nvs.h"
esp_err_t nvs_flash_init(void);
