// Host fake of ESP-IDF's esp_image_verify and esp_image_get_metadata
// (bootloader_support/src/esp_image_format.c, v5.5.5, app build, ESP32-S3, no secure boot;
// v5.0.5 with signed apps, below), as esp_ota_end and esp_ota_set_boot_partition run them.
// Checks in ESP-IDF's order:
//   header magic 0xE9; chip id = CONFIG_IDF_FIRMWARE_CHIP_ID (chip revision not modelled);
//   at most 16 segments; per segment: length a multiple of 4 and below 16 MB, a flash-mapped
//   segment (IROM 0x42000000-0x44000000, DROM 0x3C000000-0x3E000000) at the same offset
//   modulo the 64 KB MMU page as its load address; checksum byte (0xEF xor every data byte)
//   at the end of the 16-byte padding; appended SHA-256 of everything before it when
//   hash_appended is non-zero; the image fits the partition.
// Not checked here either, as on ESP32-S3: the app descriptor (only on chips with a
// configurable MMU page) - the service checks it with esp_ota_get_partition_description.
// tools/esp-image.ts checkAppImage is the TypeScript twin (plus what the service adds).
//
// Signed apps (FAKE_SIGNED_APPS builds: CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT,
// CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME, CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT; v5.0.5
// image_load, process_appended_hash_and_sig, verify_secure_boot_signature):
//   - the image must fit the partition with its signature sector: end, padded to 4096,
//     plus 4096 (also in the bootloader, which has the same options);
//   - esp_image_verify (SECURE_BOOT_CHECK_SIGNATURE in an app build) hashes the image
//     through its appended SHA-256, padded with the flash bytes to a 4096 boundary, and
//     checks the signature sector there (src/fake_secure_boot.c); the appended SHA-256 is
//     NOT compared (only a diagnostic after a signature failure). Every failure is
//     ESP_ERR_IMAGE_INVALID, after the checksum and the partition fit;
//   - the bootloader (fake_image_check) checks no signature (SECURE_SIGNED_ON_BOOT is not
//     set for the RSA scheme without hardware secure boot), but the appended SHA-256.
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "fake.h"
#include "sdkconfig.h"
#include "esp_image_format.h"

#define MAX_IMAGE_ADDR 0x1000000 // ESP_IMAGE_MAX_FLASH_ADDR_SIZE (16 MB)
#define MMU_PAGE 0x10000

#if CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT
#define SIG_SECTOR_FOLLOWS 1 // process_appended_hash_and_sig: room for the signature sector
#else
#define SIG_SECTOR_FOLLOWS 0
#endif

static bool should_map(uint32_t a) {
    return (a >= 0x42000000u && a < 0x44000000u) || (a >= 0x3C000000u && a < 0x3E000000u);
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

enum {
    CHECK_HEADER = 1,   // verify_image_header (do_verify)
    CHECK_CHECKSUM = 2, // process_checksum without skip_check_checksum
    CHECK_HASH = 4,     // verify_simple_hash
};

/**
 * image_load over flash memory (caller holds the flash lock), no clock charge. *image_len is
 * the image's length up to its appended SHA-256 on success, the bytes looked at before the
 * failure otherwise.
 */
static esp_err_t scan(uint32_t start, uint32_t part_size, int checks, uint32_t *image_len) {
    const uint8_t *f = fake_flash_mem();
    *image_len = 0;
    if (part_size > MAX_IMAGE_ADDR)
        return ESP_ERR_INVALID_ARG;
#define FAIL(e)                                                                                    \
    do {                                                                                           \
        *image_len = (uint32_t)(pos - start);                                                      \
        return (e);                                                                                \
    } while (0)
#define NEED(n)                                                                                    \
    do {                                                                                           \
        if ((uint64_t)pos + (n) > FLASH_SIZE)                                                      \
            FAIL(ESP_ERR_IMAGE_INVALID);                                                          \
    } while (0)
    uint64_t pos = start;
    NEED(24);
    const uint8_t *h = f + start;
    if ((checks & CHECK_HEADER) && h[0] != 0xE9)
        FAIL(ESP_ERR_IMAGE_INVALID);
    if ((checks & CHECK_HEADER) && (uint16_t)(h[12] | h[13] << 8) != CONFIG_IDF_FIRMWARE_CHIP_ID)
        FAIL(ESP_ERR_IMAGE_INVALID);
    int segments = h[1];
    if (segments > 16)
        FAIL(ESP_ERR_IMAGE_INVALID);
    bool hash_appended = h[23] != 0;
    pos += 24;
    uint8_t checksum = 0xEF;
    for (int i = 0; i < segments; i++) {
        NEED(8);
        uint32_t load = rd32(f + pos), len = rd32(f + pos + 4);
        uint64_t data = pos + 8;
        if ((len & 3) || len >= MAX_IMAGE_ADDR)
            FAIL(ESP_ERR_IMAGE_INVALID);
        if (should_map(load) && data % MMU_PAGE != load % MMU_PAGE)
            FAIL(ESP_ERR_IMAGE_INVALID);
        pos = data;
        NEED(len);
        for (uint32_t k = 0; k < len; k++)
            checksum ^= f[data + k];
        pos = data + len;
    }
    uint64_t unpadded = pos - start;
    uint64_t pad = ((unpadded + 1 + 15) & ~(uint64_t)15) - unpadded;
    NEED(pad);
    if ((checks & CHECK_CHECKSUM) && f[pos + pad - 1] != checksum)
        FAIL(ESP_ERR_IMAGE_INVALID);
    pos += pad;
    if (hash_appended) {
        NEED(32);
        if (checks & CHECK_HASH) {
            uint8_t digest[32];
            unsigned dlen = 0;
            EVP_Digest(f + start, (size_t)(pos - start), digest, &dlen, EVP_sha256(), NULL);
            if (memcmp(digest, f + pos, 32) != 0)
                FAIL(ESP_ERR_IMAGE_INVALID);
        }
        pos += 32;
    }
    uint64_t full = pos - start;
    if (SIG_SECTOR_FOLLOWS)
        full = (full + FLASH_SECTOR - 1) / FLASH_SECTOR * FLASH_SECTOR + FLASH_SECTOR;
    if (full > part_size)
        FAIL(ESP_ERR_IMAGE_INVALID);
    *image_len = (uint32_t)(pos - start);
    return ESP_OK;
#undef FAIL
#undef NEED
}

esp_err_t fake_image_check(uint32_t start, uint32_t part_size, uint32_t *image_len) {
    return scan(start, part_size, CHECK_HEADER | CHECK_CHECKSUM | CHECK_HASH, image_len);
}

static long g_on_main, g_on_tasks;

void fake_image_verify_counts(long *on_main, long *on_tasks) {
    *on_main = __atomic_load_n(&g_on_main, __ATOMIC_SEQ_CST);
    *on_tasks = __atomic_load_n(&g_on_tasks, __ATOMIC_SEQ_CST);
}

esp_err_t esp_image_verify(esp_image_load_mode_t mode, const esp_partition_pos_t *part, esp_image_metadata_t *data) {
    (void)mode;
    if (!part || !data)
        return ESP_ERR_INVALID_ARG;
    fake_alive_check();
    __atomic_add_fetch(fake_is_main_thread() ? &g_on_main : &g_on_tasks, 1, __ATOMIC_SEQ_CST);
    memset(data, 0, sizeof(*data));
    uint32_t len = 0;
    fake_flash_lock();
#if CONFIG_SECURE_SIGNED_ON_UPDATE
    esp_err_t err = scan(part->offset, part->size, CHECK_HEADER | CHECK_CHECKSUM, &len);
#else
    esp_err_t err = scan(part->offset, part->size, CHECK_HEADER | CHECK_CHECKSUM | CHECK_HASH, &len);
#endif
    fake_flash_unlock();
    // what it read: up to the end of the image, or to the failure
    fake_charge(((int64_t)len * FLASH_READ_4K_US + FLASH_SECTOR - 1) / FLASH_SECTOR);
#if CONFIG_SECURE_SIGNED_ON_UPDATE
    if (err == ESP_OK) {
        // verify_secure_boot_signature: the padding hashed too, then the sector after it
        uint32_t padded = (len + FLASH_SECTOR - 1) / FLASH_SECTOR * FLASH_SECTOR;
        if (fake_sbv2_check_flash(part->offset, padded) != ESP_OK)
            err = ESP_ERR_IMAGE_INVALID;
        len = padded + FLASH_SECTOR; // image_len then includes the signature sector
    }
#endif
    if (err == ESP_OK) {
        data->start_addr = part->offset;
        memcpy(&data->image, fake_flash_mem() + part->offset, sizeof(data->image));
        data->image_len = len;
    }
    return err;
}

esp_err_t esp_image_get_metadata(const esp_partition_pos_t *part, esp_image_metadata_t *metadata) {
    if (!metadata || !part || part->size > MAX_IMAGE_ADDR)
        return ESP_ERR_INVALID_ARG;
    fake_alive_check();
    memset(metadata, 0, sizeof(*metadata));
    uint32_t len = 0;
    fake_flash_lock();
    // no verification: header, segment headers, checksum skipped; the partition fit is checked
    esp_err_t err = scan(part->offset, part->size, 0, &len);
    if (err == ESP_OK)
        memcpy(&metadata->image, fake_flash_mem() + part->offset, sizeof(metadata->image));
    fake_flash_unlock();
    fake_charge(FLASH_READ_4K_US);
    metadata->start_addr = part->offset;
    metadata->image_len = len;
    return err;
}
