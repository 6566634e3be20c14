// Host fake of ESP-IDF components/bootloader_support/include/esp_image_format.h (v5.5.5):
// esp_image_verify, esp_image_get_metadata and the metadata struct, exact. Implemented in
// src/fake_image.c.
#pragma once
#include <stdbool.h>
#include "esp_err.h"
#include "esp_flash_partitions.h"
#include "esp_app_format.h"
#include "esp_assert.h"

#define ESP_ERR_IMAGE_BASE 0x2000
#define ESP_ERR_IMAGE_FLASH_FAIL (ESP_ERR_IMAGE_BASE + 1)
#define ESP_ERR_IMAGE_INVALID (ESP_ERR_IMAGE_BASE + 2)

#define ESP_IMAGE_HASH_LEN 32 /* Length of the appended SHA-256 digest */

typedef struct {
    uint32_t start_addr;
    esp_image_header_t image;
    esp_image_segment_header_t segments[ESP_IMAGE_MAX_SEGMENTS];
    uint32_t segment_data[ESP_IMAGE_MAX_SEGMENTS];
    uint32_t image_len;
    uint8_t image_digest[32];
    uint32_t secure_version;
    uint32_t mmu_page_size;
} esp_image_metadata_t;

typedef enum {
    ESP_IMAGE_VERIFY,
    ESP_IMAGE_VERIFY_SILENT,
} esp_image_load_mode_t;

esp_err_t esp_image_verify(esp_image_load_mode_t mode, const esp_partition_pos_t *part, esp_image_metadata_t *data);
esp_err_t esp_image_get_metadata(const esp_partition_pos_t *part, esp_image_metadata_t *metadata);
