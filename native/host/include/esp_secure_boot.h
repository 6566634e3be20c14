// Host fake of ESP-IDF components/bootloader_support/include/esp_secure_boot.h (v5.0.5), the
// part an app with signed apps uses: exact prototypes and constants. Implemented in
// src/fake_secure_boot.c, and, as in ESP-IDF (bootloader_support/CMakeLists.txt compiles
// secure_boot_v2/secure_boot_signatures_app.c only with CONFIG_SECURE_SIGNED_ON_UPDATE and
// the RSA scheme), only in builds with those options: a call elsewhere does not link.
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "sdkconfig.h"
#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ESP_SECURE_BOOT_DIGEST_LEN 32
#define ESP_SECURE_BOOT_KEY_DIGEST_LEN 32
#define SOC_EFUSE_SECURE_BOOT_KEY_DIGESTS 3 // soc/esp32s3/include/soc/soc_caps.h

/**
 * Verifies the Secure Boot v2 signature sector that follows `length` bytes at `src_addr`
 * (padded to 4096): SHA-256 of the padded bytes, then the blocks of the sector against the
 * trusted keys (with CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT: the running app's).
 * ESP_OK when valid.
 */
esp_err_t esp_secure_boot_verify_signature(uint32_t src_addr, uint32_t length);

typedef struct {
    uint8_t key_digests[SOC_EFUSE_SECURE_BOOT_KEY_DIGESTS][ESP_SECURE_BOOT_DIGEST_LEN];
    unsigned num_digests;
} esp_image_sig_public_key_digests_t;

#if CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME
esp_err_t esp_secure_boot_get_signature_blocks_for_running_app(bool digest_public_keys,
                                                               esp_image_sig_public_key_digests_t *public_key_digests);
#endif

#ifdef __cplusplus
}
#endif
