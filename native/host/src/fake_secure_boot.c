// Host fake of ESP-IDF v5.0.5's Secure Boot v2 signature check of apps, in an app built with
// CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT, CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME and
// CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT (firmware/sdkconfig.signed):
// bootloader_support/src/secure_boot_v2/secure_boot_signatures_app.c and
// secure_boot_rsa_signature.c, with OpenSSL's libcrypto in place of mbedtls.
//
// - Trusted keys (esp_secure_boot_get_signature_blocks_for_running_app): the RUNNING app
//   partition's image (esp_image_get_metadata), its signature sector at
//   start + ALIGN_UP(image_len, 4096); for each of the 3 blocks of 1216 bytes that is valid
//   (magic 0xE7 and esp_rom_crc32_le(0, block, 1196) at offset 1196), digest i = SHA-256 of
//   its 776 key bytes at offset 36 (n[384], e, rinv[384], mdash, little-endian). No valid
//   block: no trusted key, every image fails.
// - esp_secure_boot_verify_sbv2_signature_block with ..._NO_SECURE_BOOT: only block 0 of the
//   checked sector and trusted digest 0 count (secure_boot_num_blocks = 1). Block 0 must be
//   valid (magic, CRC; the version byte and the digest stored at offset 4 are not read), its
//   key digest equal to trusted digest 0, and verify_rsa_signature_block must pass: n and e
//   from the block (mbedtls_rsa_import + mbedtls_rsa_check_pubkey: n odd, 128..8192 bits;
//   e odd, at least 2 bits, below n), the 384-byte little-endian signature at offset 812
//   reversed, mbedtls_rsa_rsassa_pss_verify(SHA-256) of the digest COMPUTED over the image
//   (MGF1 SHA-256, any salt length: MBEDTLS_RSA_SALT_LEN_ANY).
// - esp_secure_boot_verify_signature(src_addr, length): SHA-256 of the flash from src_addr
//   over length rounded up to 4096, then the sector right after through the check above.
//   ESP_ERR_IMAGE_INVALID when the signature is refused, ESP_FAIL when no trusted key can be
//   read or the flash cannot.
// The entry points exist only in builds with those options, as in ESP-IDF.
#include <stdlib.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include "fake.h"
#include "sdkconfig.h"
#include "esp_image_format.h"
#include "esp_ota_ops.h"
#include "esp_secure_boot.h"

static long g_verify_on_main, g_verify_on_tasks;

void fake_verify_signature_counts(long *on_main, long *on_tasks) {
    *on_main = __atomic_load_n(&g_verify_on_main, __ATOMIC_SEQ_CST);
    *on_tasks = __atomic_load_n(&g_verify_on_tasks, __ATOMIC_SEQ_CST);
}

#if CONFIG_SECURE_SIGNED_ON_UPDATE && CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME

#define SIG_MAGIC 0xE7       // ETS_SECURE_BOOT_V2_SIGNATURE_MAGIC
#define BLOCK_LEN 1216       // sizeof(ets_secure_boot_sig_block_t)
#define NUM_BLOCKS 3         // SECURE_BOOT_NUM_BLOCKS
#define CRC_LEN 1196         // CRC_SIGN_BLOCK_LEN
#define KEY_AT 36            // ets_rsa_pubkey_t key
#define KEY_LEN (384 + 4 + 384 + 4)
#define SIG_AT (KEY_AT + KEY_LEN) // 812: uint8_t signature[384]
#define RSA_LEN 384
#define ALIGN_UP(n) (((n) + FLASH_SECTOR - 1) / FLASH_SECTOR * FLASH_SECTOR)

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void sha256_of(const uint8_t *data, size_t len, uint8_t out[32]) {
    unsigned n = 0;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

/** validate_signature_block */
static bool block_valid(const uint8_t *block) {
    return block[0] == SIG_MAGIC && rd32(block + CRC_LEN) == fake_crc32_le(0, block, CRC_LEN);
}

esp_err_t esp_secure_boot_get_signature_blocks_for_running_app(bool digest_public_keys,
                                                               esp_image_sig_public_key_digests_t *public_key_digests) {
    const esp_partition_t *running = esp_ota_get_running_partition();
    if (!running)
        return ESP_FAIL;
    const esp_partition_pos_t pos = {.offset = running->address, .size = running->size};
    esp_image_metadata_t md;
    if (esp_image_get_metadata(&pos, &md) != ESP_OK)
        return ESP_FAIL; // "Error reading metadata from running app"
    memset(public_key_digests, 0, sizeof(*public_key_digests));
    uint32_t at = md.start_addr + ALIGN_UP(md.image_len);
    for (unsigned i = 0; i < NUM_BLOCKS; i++) {
        uint8_t block[BLOCK_LEN];
        uint32_t addr = at + BLOCK_LEN * i;
        if ((uint64_t)addr + BLOCK_LEN > FLASH_SIZE)
            return ESP_FAIL; // bootloader_flash_read fails
        fake_flash_read(addr, block, BLOCK_LEN);
        if (!block_valid(block))
            continue;
        if (digest_public_keys)
            sha256_of(block + KEY_AT, KEY_LEN, public_key_digests->key_digests[i]);
        public_key_digests->num_digests++;
    }
    return public_key_digests->num_digests > 0 ? ESP_OK : ESP_ERR_NOT_FOUND;
}

/** mbedtls_rsa_import(N, E) + mbedtls_rsa_complete + mbedtls_rsa_check_pubkey, then the PSS verify. */
static bool rsa_pss_verify(const uint8_t *block, const uint8_t digest[32]) {
    bool ok = false;
    BIGNUM *n = BN_lebin2bn(block + KEY_AT, RSA_LEN, NULL);
    BIGNUM *e = BN_lebin2bn(block + KEY_AT + RSA_LEN, 4, NULL);
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *kctx = NULL, *vctx = NULL;
    EVP_PKEY *pkey = NULL;
    if (!n || !e)
        goto out;
    int nbits = BN_num_bits(n);
    if (!BN_is_odd(n) || nbits < 128 || nbits > 8192 || !BN_is_odd(e) || BN_num_bits(e) < 2 || BN_cmp(e, n) >= 0)
        goto out; // mbedtls_rsa_check_pubkey
    // the signature in big-endian; mbedtls reads ctx->len = size of n bytes of it
    uint8_t sig_be[RSA_LEN];
    for (int j = 0; j < RSA_LEN; j++)
        sig_be[RSA_LEN - 1 - j] = block[SIG_AT + j];
    size_t siglen = (size_t)BN_num_bytes(n);
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) || !(params = OSSL_PARAM_BLD_to_param(bld)))
        goto out;
    kctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!kctx || EVP_PKEY_fromdata_init(kctx) <= 0 || EVP_PKEY_fromdata(kctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        goto out;
    vctx = EVP_PKEY_CTX_new(pkey, NULL);
    if (!vctx || EVP_PKEY_verify_init(vctx) <= 0 || EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_signature_md(vctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(vctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(vctx, RSA_PSS_SALTLEN_AUTO) <= 0)
        goto out;
    ok = EVP_PKEY_verify(vctx, sig_be, siglen, digest, 32) == 1;
out:
    EVP_PKEY_CTX_free(vctx);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(kctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return ok;
}

/** esp_secure_boot_verify_sbv2_signature_block(sector, digest) with ..._NO_SECURE_BOOT. */
static esp_err_t sbv2_verify(const uint8_t *sector, const uint8_t digest[32]) {
    esp_image_sig_public_key_digests_t trusted;
    memset(&trusted, 0, sizeof(trusted));
    if (esp_secure_boot_get_signature_blocks_for_running_app(true, &trusted) != ESP_OK)
        return ESP_FAIL; // "Could not read secure boot digests!"
    const uint8_t *block = sector; // block 0 only
    if (!block_valid(block))
        return ESP_ERR_IMAGE_INVALID;
    uint8_t key_digest[32];
    sha256_of(block + KEY_AT, KEY_LEN, key_digest);
    if (memcmp(key_digest, trusted.key_digests[0], 32) != 0)
        return ESP_ERR_IMAGE_INVALID;
    return rsa_pss_verify(block, digest) ? ESP_OK : ESP_ERR_IMAGE_INVALID;
}

esp_err_t fake_sbv2_check_flash(uint32_t start, uint32_t padded_len) {
    if ((uint64_t)start + padded_len + FLASH_SECTOR > FLASH_SIZE)
        return ESP_FAIL; // the mmap fails
    uint8_t digest[32];
    uint8_t *sector = malloc(FLASH_SECTOR);
    fake_flash_lock();
    sha256_of(fake_flash_mem() + start, padded_len, digest);
    memcpy(sector, fake_flash_mem() + start + padded_len, FLASH_SECTOR);
    fake_flash_unlock();
    fake_charge((((int64_t)padded_len + FLASH_SECTOR) * FLASH_READ_4K_US) / FLASH_SECTOR);
    esp_err_t err = sbv2_verify(sector, digest);
    free(sector);
    return err;
}

esp_err_t esp_secure_boot_verify_signature(uint32_t src_addr, uint32_t length) {
    fake_alive_check();
    __atomic_add_fetch(fake_is_main_thread() ? &g_verify_on_main : &g_verify_on_tasks, 1, __ATOMIC_SEQ_CST);
    return fake_sbv2_check_flash(src_addr, ALIGN_UP(length));
}

#endif
