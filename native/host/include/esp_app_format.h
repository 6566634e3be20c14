// Host fake of ESP-IDF components/bootloader_support/include/esp_app_format.h (v5.5.5),
// exact layouts of the image header and segment header.
#pragma once
#include <inttypes.h>
#include "esp_assert.h"

typedef enum {
    ESP_CHIP_ID_ESP32 = 0x0000,
    ESP_CHIP_ID_ESP32S2 = 0x0002,
    ESP_CHIP_ID_ESP32C3 = 0x0005,
    ESP_CHIP_ID_ESP32S3 = 0x0009,
    ESP_CHIP_ID_ESP32C2 = 0x000C,
    ESP_CHIP_ID_ESP32C6 = 0x000D,
    ESP_CHIP_ID_ESP32H2 = 0x0010,
    ESP_CHIP_ID_ESP32P4 = 0x0012,
    ESP_CHIP_ID_ESP32C5 = 0x0017,
    ESP_CHIP_ID_ESP32C61 = 0x0014,
    ESP_CHIP_ID_ESP32H21 = 0x0019,
    ESP_CHIP_ID_ESP32H4 = 0x001C,
    ESP_CHIP_ID_INVALID = 0xFFFF
} __attribute__((packed)) esp_chip_id_t;
ESP_STATIC_ASSERT(sizeof(esp_chip_id_t) == 2, "esp_chip_id_t should be 16 bit");

#define ESP_IMAGE_HEADER_MAGIC 0xE9

typedef struct {
    uint8_t magic;
    uint8_t segment_count;
    uint8_t spi_mode;
    uint8_t spi_speed : 4;
    uint8_t spi_size : 4;
    uint32_t entry_addr;
    uint8_t wp_pin;
    uint8_t spi_pin_drv[3];
    esp_chip_id_t chip_id;
    uint8_t min_chip_rev;
    uint16_t min_chip_rev_full;
    uint16_t max_chip_rev_full;
    uint8_t reserved[4];
    uint8_t hash_appended;
} __attribute__((packed)) esp_image_header_t;
ESP_STATIC_ASSERT(sizeof(esp_image_header_t) == 24, "binary image header should be 24 bytes");

typedef struct {
    uint32_t load_addr;
    uint32_t data_len;
} esp_image_segment_header_t;

#define ESP_IMAGE_MAX_SEGMENTS 16
