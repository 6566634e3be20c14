// Host fake of ESP-IDF esp_assert.h (ESP_STATIC_ASSERT only).
#pragma once
#define ESP_STATIC_ASSERT _Static_assert
