// C unit tests of the OTA updater on a device that accepts only signed apps
// (firmware/sdkconfig.signed; the otaupdater-unit-signed build: ESP-IDF 5.0.5 fakes with
// CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT), services/otaupdater.md "Signed apps".
// Every test generates nothing but images: two RSA-3072 keys are made once (`trusted`, the
// key of the factory image in ota_0, and `other`), images are signed with test/signer.c.
//
// Usage: otaupdater-unit-signed <firmware/partitions.csv> [test name ...]
//        otaupdater-unit-signed --sign <key.pem> <in.bin> <out.bin>   (the signer alone)
//
// Every refusal is checked the same way (check_refused): the commit report and the `failed`
// event carry the error, state `error`, the resume record gone, otadata byte for byte as
// before the update, and a reboot starts the running image again.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "support.h"
#include "signer.h"
#include "jd_otaupdater_spec.h"
#include "jd_protocol.h"
#include "esp_idf_version.h"
#include "esp_image_format.h"
#include "sdkconfig.h"

#if !CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT
#error "test/signed.c is the signed-apps build (FAKE_SIGNED_APPS=1)"
#endif

#define CHUNK JD_OTA_UPDATER_LIMITS_WRITE_BYTES
#define SECTOR JD_OTA_UPDATER_LIMITS_SECTOR_BYTES
#define RESUME JD_OTA_UPDATER_BEGIN_FLAGS_RESUME
#define SPARE JD_OTA_UPDATER_TARGET_SPARE
#define E_NONE JD_OTA_UPDATER_ERROR_NONE
#define E_BAD_SIGNATURE JD_OTA_UPDATER_ERROR_BAD_SIGNATURE
#define E_NOT_APP_IMAGE JD_OTA_UPDATER_ERROR_NOT_APP_IMAGE
#define E_WRONG_CHIP JD_OTA_UPDATER_ERROR_WRONG_CHIP
#define E_INCOMPLETE JD_OTA_UPDATER_ERROR_INCOMPLETE
#define E_SHA256_MISMATCH JD_OTA_UPDATER_ERROR_SHA256MISMATCH

static EVP_PKEY *g_trusted, *g_other;
static uint8_t *g_signed_base;   // the table, v1 signed with `trusted` in ota_0
static uint8_t *g_unsigned_base; // the table, v1 unsigned in ota_0

typedef struct {
    uint8_t *data;
    size_t len;
} blob_t;

/** A valid ESP32-S3 app image (unsigned) of about `size` bytes. */
static blob_t app(const char *version, size_t size, uint16_t chip, uint32_t seed) {
    blob_t b;
    b.data = build_app_image(version, size, chip, seed, &b.len);
    return b;
}

static blob_t signed_with(blob_t img, EVP_PKEY *key) {
    blob_t s;
    s.data = sign_image(img.data, img.len, key, &s.len);
    return s;
}

/**
 * Changes one byte of the image part of `img` (its first `image_len` bytes: data, checksum
 * byte, appended SHA-256) at `at` and makes the image valid again: the checksum byte takes
 * the change (it is the xor of every data byte), the appended SHA-256 is recomputed.
 */
static void tamper(uint8_t *img, size_t image_len, size_t at, uint8_t x) {
    img[at] ^= x;
    img[image_len - 33] ^= x;
    sha256(img, image_len - 32, img + image_len - 32);
}

static void fresh_device(const uint8_t *base) {
    fake_flash_open_mem(base);
    fake_flash_arm_cut(0, CUT_ANY_CHANGE);
    boot_result_t b = reboot_device();
    CHECK_EQ(b.slot, 0);
}

static void otadata_snapshot(uint8_t out[2 * SECTOR]) {
    memcpy(out, fake_flash_mem() + part("otadata")->address, 2 * SECTOR);
}

/** begin (with the image's SHA-256 unless `sha` says otherwise) and every write of [0, size). */
static void upload(const uint8_t *img, uint32_t size, const uint8_t *sha) {
    begin_report_t b = client_begin(size, SPARE, 0, sha);
    CHECK(b.got && b.error == E_NONE, "begin error %d", b.error);
    for (uint32_t off = 0; off < size; off += CHUNK) {
        uint32_t n = size - off < CHUNK ? size - off : CHUNK;
        write_report_t w = client_write(off, img + off, n);
        CHECK(w.got && w.error == E_NONE && w.next_offset == off + n, "write at %u: error %d", off, w.error);
    }
}

static void upload_all(blob_t img) {
    uint8_t sha[32];
    sha256(img.data, img.len, sha);
    upload(img.data, (uint32_t)img.len, sha);
}

/** The commit that follows the upload is refused with `expected`; nothing of the boot state moved. */
static void check_commit_refused(uint8_t expected, const uint8_t od_before[2 * SECTOR], const char *what) {
    commit_report_t c = client_commit();
    CHECK(c.got && c.error == expected && c.slot == 1, "%s: commit error %d (slot %d), expected %d", what, c.error,
          c.slot, expected);
    const fake_sent_t *f = last_event(JD_OTA_UPDATER_EV_FAILED);
    CHECK(f && f->data[0] == expected, "%s: no failed event with the error", what);
    CHECK(!last_event(JD_OTA_UPDATER_EV_READY), "%s: ready sent", what);
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_STATE), JD_OTA_UPDATER_STATE_ERROR);
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_LAST_ERROR), expected);
    uint8_t rec[100];
    CHECK_EQ(fake_nvs_peek("otaupdater/resume", rec, sizeof(rec)), -1);
    uint8_t od[2 * SECTOR];
    otadata_snapshot(od);
    CHECK(memcmp(od, od_before, sizeof(od)) == 0, "%s: otadata changed", what);
    CHECK_EQ(otadata_boot_slot(), 0);
    // a reset now starts the running image again
    boot_result_t b = reboot_device();
    CHECK_EQ(b.slot, 0);
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_RUNNING_SLOT), 0);
}

/** A fresh device from `base`, `img` uploaded whole, commit refused with `expected`. */
static void check_refused(const uint8_t *base, blob_t img, uint8_t expected, const char *what) {
    fresh_device(base);
    uint8_t od[2 * SECTOR];
    otadata_snapshot(od);
    upload_all(img);
    check_commit_refused(expected, od, what);
    dev_power_off();
}

/** The commit that follows the upload succeeds: ready, slot 1 boots next, and boots pending verify. */
static void check_commit_accepted(const char *version, const char *what) {
    commit_report_t c = client_commit();
    CHECK(c.got && c.error == E_NONE && c.slot == 1, "%s: commit error %d", what, c.error);
    CHECK(last_event(JD_OTA_UPDATER_EV_READY), "%s: no ready event", what);
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_STATE), JD_OTA_UPDATER_STATE_READY);
    CHECK_EQ(otadata_boot_slot(), 1);
    dev_command(JD_OTA_UPDATER_CMD_REBOOT, NULL, 0, 500);
    CHECK(dev_halted() == HALT_RESTART, "%s: reboot did not restart", what);
    boot_result_t b = reboot_device();
    CHECK(b.slot == 1 && b.pending_verify, "%s: booted ota_%d", what, b.slot);
    uint8_t v[40];
    int n = dev_register(JD_OTA_UPDATER_REG_RUNNING_VERSION, v, sizeof(v));
    CHECK(n == (int)strlen(version) && memcmp(v, version, (size_t)n) == 0, "%s: running another version", what);
}

static void verify_signature_calls(long *main_calls, long *task_calls) {
    fake_verify_signature_counts(main_calls, task_calls);
}

// --- tests ------------------------------------------------------------------------------------------

/**
 * A release signed with the running app's key is installed; the next one, signed with the
 * same key, is trusted through the new running image.
 */
static void test_signed_update_commits(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 2), s2 = signed_with(v2, g_trusted);
    CHECK_EQ(s2.len, signer_sector_offset(v2.len) + SECTOR);
    fresh_device(g_signed_base);
    long m0, t0, m1, t1;
    verify_signature_calls(&m0, &t0);
    upload_all(s2);
    check_commit_accepted("2.0.0", "signed v2");
    verify_signature_calls(&m1, &t1);
    CHECK(m1 == m0 && t1 == t0, "esp_secure_boot_verify_signature is only asked when esp_ota_end refused");
    CHECK(memcmp(fake_flash_mem() + part("ota_1")->address, s2.data, s2.len) == 0);
    CHECK_EQ(client_simple(JD_OTA_UPDATER_CMD_CONFIRM), 0);
    // v3 into ota_0: its key is trusted because v2 (now running) carries the same one
    blob_t v3 = app("3.0.0", 25000, 9, 3), s3 = signed_with(v3, g_trusted);
    upload_all(s3);
    commit_report_t c = client_commit();
    CHECK(c.got && c.error == E_NONE && c.slot == 0, "v3: commit error %d slot %d", c.error, c.slot);
    CHECK_EQ(otadata_boot_slot(), 0);
    dev_power_off();
    free(v2.data), free(s2.data), free(v3.data), free(s3.data);
}

static void test_unsigned_refused(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 4);
    long m0, t0, m1, t1;
    verify_signature_calls(&m0, &t0);
    check_refused(g_signed_base, v2, E_BAD_SIGNATURE, "unsigned");
    // padded to 4 KB with an empty (0xFF) signature sector: no valid block
    blob_t blank = {malloc(signer_sector_offset(v2.len) + SECTOR), signer_sector_offset(v2.len) + SECTOR};
    memset(blank.data, 0xff, blank.len);
    memcpy(blank.data, v2.data, v2.len);
    check_refused(g_signed_base, blank, E_BAD_SIGNATURE, "blank signature sector");
    verify_signature_calls(&m1, &t1);
    CHECK_EQ(m1 - m0, 0); // never on the main task
    CHECK_EQ(t1 - t0, 1); // the blank sector: asked on the worker; the bare image has no block among its bytes
    free(v2.data), free(blank.data);
}

static void test_other_key_refused(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 5), s2 = signed_with(v2, g_other);
    check_refused(g_signed_base, s2, E_BAD_SIGNATURE, "signed with another key");
    // the trusted key's bytes in the block, the other key's signature: the key is trusted,
    // the signature does not verify with it
    uint8_t key[SIG_BLOCK_KEY_BYTES];
    signer_key_bytes(g_trusted, key);
    uint8_t *block = s2.data + signer_sector_offset(v2.len);
    memcpy(block + SIG_BLOCK_KEY_AT, key, sizeof(key));
    signer_fix_block_crc(block);
    check_refused(g_signed_base, s2, E_BAD_SIGNATURE, "trusted key, another key's signature");
    free(v2.data), free(s2.data);
}

static void test_tampered_refused(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 6), s2 = signed_with(v2, g_trusted);
    // one payload byte of segment 0 after the app descriptor, checksum and SHA-256 made right
    tamper(s2.data, v2.len, 32 + 300, 0x01);
    uint32_t l = 0;
    fresh_device(g_signed_base);
    uint8_t od[2 * SECTOR];
    otadata_snapshot(od);
    upload_all(s2);
    CHECK(slot_image_valid(1, &l) && l == v2.len, "the tampered image is a valid image apart from its signature");
    check_commit_refused(E_BAD_SIGNATURE, od, "tampered after signing");
    dev_power_off();
    // a byte of the 0xFF padding between the image and the sector is signed too
    blob_t s3 = signed_with(v2, g_trusted);
    CHECK(signer_sector_offset(v2.len) > v2.len);
    s3.data[v2.len] = 0x00;
    check_refused(g_signed_base, s3, E_BAD_SIGNATURE, "padding changed after signing");
    free(v2.data), free(s2.data), free(s3.data);
}

static void test_damaged_block_refused(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 7);
    size_t at = signer_sector_offset(v2.len);
    struct {
        const char *what;
        size_t offset; // in the block
        uint8_t x;
        bool fix_crc;
    } cases[] = {
        {"CRC-32 byte", SIG_BLOCK_CRC_AT, 0x01, false},
        {"reserved byte (under the CRC)", 2, 0x01, false},
        {"key byte (under the CRC)", SIG_BLOCK_KEY_AT + 10, 0x01, false},
        {"magic, CRC made right", 0, 0x01, true},
        {"signature byte, CRC made right", SIG_BLOCK_SIGNATURE_AT + 100, 0x01, true},
        {"modulus byte, CRC made right (untrusted key)", SIG_BLOCK_KEY_AT + 5, 0x01, true},
        {"R^2 mod n byte, CRC made right (another key digest)", SIG_BLOCK_KEY_AT + 388 + 7, 0x01, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        blob_t s2 = signed_with(v2, g_trusted);
        uint8_t *block = s2.data + at;
        block[cases[i].offset] ^= cases[i].x;
        if (cases[i].fix_crc)
            signer_fix_block_crc(block);
        check_refused(g_signed_base, s2, E_BAD_SIGNATURE, cases[i].what);
        free(s2.data);
    }
    free(v2.data);
}

/**
 * What ESP-IDF does not read in the block (spec: "valid when its magic and CRC-32 are
 * right", "checked against the SHA-256 computed over the slot, not the one stored in the
 * block"): the stored digest and the version byte, changed with the CRC made right, are
 * accepted. Blocks 1 and 2 are not read either.
 */
static void test_block_fields_not_checked(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 8);
    size_t at = signer_sector_offset(v2.len);
    for (int k = 0; k < 3; k++) {
        blob_t s2 = signed_with(v2, g_trusted);
        uint8_t *block = s2.data + at;
        const char *what = "";
        if (k == 0) {
            memset(block + SIG_BLOCK_DIGEST_AT, 0, 32), signer_fix_block_crc(block);
            what = "stored digest zeroed";
        } else if (k == 1) {
            block[1] = 0x03, signer_fix_block_crc(block);
            what = "version byte 3";
        } else {
            memset(block + SIG_BLOCK_BYTES, 0x5a, 2 * SIG_BLOCK_BYTES); // blocks 1 and 2: garbage
            what = "garbage after block 0";
        }
        fresh_device(g_signed_base);
        upload_all(s2);
        check_commit_accepted("2.0.0", what);
        dev_power_off();
        free(s2.data);
    }
    free(v2.data);
}

static void test_running_unsigned_installs_nothing(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 9), s2 = signed_with(v2, g_trusted), o2 = signed_with(v2, g_other);
    check_refused(g_unsigned_base, s2, E_BAD_SIGNATURE, "running unsigned, update signed");
    check_refused(g_unsigned_base, o2, E_BAD_SIGNATURE, "running unsigned, update signed with another key");
    check_refused(g_unsigned_base, v2, E_BAD_SIGNATURE, "running unsigned, update unsigned");
    // the running image's only valid block is block 1: block 0 is the one trusted (secure_boot_num_blocks = 1)
    uint8_t *base = malloc(FLASH_SIZE);
    memcpy(base, g_signed_base, FLASH_SIZE);
    fake_flash_open_mem(base);
    uint32_t v1_len = 0;
    CHECK(slot_image_valid(0, &v1_len));
    uint8_t *sector = base + part("ota_0")->address + signer_sector_offset(v1_len);
    memcpy(sector + SIG_BLOCK_BYTES, sector, SIG_BLOCK_BYTES);
    sector[SIG_BLOCK_CRC_AT] ^= 1; // block 0 damaged
    check_refused(base, s2, E_BAD_SIGNATURE, "running app's block 0 damaged, block 1 valid");
    free(base);
    free(v2.data), free(s2.data), free(o2.data);
}

static void test_wrong_chip_first(void) {
    blob_t c3 = app("2.0.0", 30000, 5, 10), s3 = signed_with(c3, g_trusted);
    check_refused(g_signed_base, s3, E_WRONG_CHIP, "signed, for ESP32-C3");
    check_refused(g_signed_base, c3, E_WRONG_CHIP, "unsigned, for ESP32-C3");
    free(c3.data), free(s3.data);
}

static void test_incomplete_and_sha_first(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 11), s2 = signed_with(v2, g_trusted);
    uint8_t sha[32], od[2 * SECTOR];
    // every byte but the last write
    fresh_device(g_signed_base);
    otadata_snapshot(od);
    sha256(s2.data, s2.len, sha);
    begin_report_t b = client_begin((uint32_t)s2.len, SPARE, 0, sha);
    CHECK(b.got && b.error == E_NONE);
    uint32_t last = (uint32_t)((s2.len - 1) / CHUNK * CHUNK);
    for (uint32_t off = 0; off < last; off += CHUNK)
        CHECK(client_write(off, s2.data + off, CHUNK).error == E_NONE);
    check_commit_refused(E_INCOMPLETE, od, "signed, incomplete");
    dev_power_off();
    // unsigned (or signed with another key) and not the SHA-256 given to begin
    blob_t o2 = signed_with(v2, g_other);
    for (int k = 0; k < 2; k++) {
        blob_t img = k ? o2 : v2;
        fresh_device(g_signed_base);
        otadata_snapshot(od);
        memset(sha, 0x11, sizeof(sha));
        upload(img.data, (uint32_t)img.len, sha);
        check_commit_refused(E_SHA256_MISMATCH, od, k ? "another key, wrong sha256" : "unsigned, wrong sha256");
        dev_power_off();
    }
    free(v2.data), free(s2.data), free(o2.data);
}

/** The segment layout (check_layout) comes before the signature: not_app_image even unsigned. */
static void test_layout_before_signature(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 12);
    // the file ends inside the appended SHA-256
    blob_t cut = {v2.data, v2.len - 10};
    check_refused(g_signed_base, cut, E_NOT_APP_IMAGE, "unsigned, truncated");
    // hash_appended 2
    blob_t h2 = {malloc(v2.len), v2.len};
    memcpy(h2.data, v2.data, v2.len);
    h2.data[23] = 2;
    check_refused(g_signed_base, h2, E_NOT_APP_IMAGE, "unsigned, hash_appended 2");
    free(v2.data), free(h2.data);
}

/** The signature comes before the checksum and the rest (esp_ota_end says the same for both). */
static void test_checksum_after_signature(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 13);
    blob_t bad = {malloc(v2.len), v2.len};
    memcpy(bad.data, v2.data, v2.len);
    bad.data[v2.len - 33] ^= 0x01; // checksum byte
    sha256(bad.data, bad.len - 32, bad.data + bad.len - 32);
    blob_t sbad = signed_with(bad, g_trusted), obad = signed_with(bad, g_other);
    check_refused(g_signed_base, bad, E_BAD_SIGNATURE, "unsigned, bad checksum");
    check_refused(g_signed_base, obad, E_BAD_SIGNATURE, "another key, bad checksum");
    long m0, t0, m1, t1;
    verify_signature_calls(&m0, &t0);
    check_refused(g_signed_base, sbad, E_NOT_APP_IMAGE, "signed, bad checksum");
    verify_signature_calls(&m1, &t1);
    CHECK(m1 == m0 && t1 == t0 + 1, "the signature asked once, on the worker");
    free(v2.data), free(bad.data), free(sbad.data), free(obad.data);
}

/**
 * A signed image whose appended SHA-256 is wrong (the signature covers it as it is):
 * esp_ota_end accepts it (esp_image_verify does not compare it when it checks a signature),
 * the bootloader would not boot it (it compares it); the service refuses it: not_app_image.
 */
static void test_appended_hash_signed(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 14);
    v2.data[v2.len - 1] ^= 0x01; // the last byte of the appended SHA-256
    blob_t s2 = signed_with(v2, g_trusted);
    fresh_device(g_signed_base);
    uint8_t od[2 * SECTOR];
    otadata_snapshot(od);
    upload_all(s2);
    const esp_partition_t *p = part("ota_1");
    esp_partition_pos_t pos = {.offset = p->address, .size = p->size};
    esp_image_metadata_t md;
    CHECK(esp_image_verify(ESP_IMAGE_VERIFY, &pos, &md) == ESP_OK, "esp_image_verify accepts it");
    CHECK(!slot_image_valid(1, NULL), "the bootloader refuses it");
    check_commit_refused(E_NOT_APP_IMAGE, od, "signed, wrong appended SHA-256");
    dev_power_off();
    free(v2.data), free(s2.data);
}

/**
 * The first block must be among the bytes received: the file without its signature sector
 * is refused although the slot still holds, beyond image_size, the sector of an earlier
 * upload of the same image (stale bytes esp_ota_end would accept).
 */
static void test_block_not_received(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 15), s2 = signed_with(v2, g_trusted);
    size_t at = signer_sector_offset(v2.len);
    fresh_device(g_signed_base);
    uint8_t od[2 * SECTOR];
    otadata_snapshot(od);
    uint8_t sha[32];
    sha256(s2.data, at, sha);
    upload(s2.data, (uint32_t)at, sha);
    // the sector of an earlier upload is still there (as after ESP-IDF 5.5's erase, which
    // stops at the last sector written)
    memcpy(fake_flash_mem() + part("ota_1")->address + at, s2.data + at, SECTOR);
    const esp_partition_t *p = part("ota_1");
    esp_partition_pos_t pos = {.offset = p->address, .size = p->size};
    esp_image_metadata_t md;
    CHECK(esp_image_verify(ESP_IMAGE_VERIFY, &pos, &md) == ESP_OK, "esp_ota_end would accept the slot");
    long m0, t0, m1, t1;
    verify_signature_calls(&m0, &t0);
    check_commit_refused(E_BAD_SIGNATURE, od, "signature sector not received");
    verify_signature_calls(&m1, &t1);
    CHECK(t1 == t0 && m1 == m0, "refused before asking esp_secure_boot_verify_signature");
    dev_power_off();
    // block 0 received, the rest of the sector not: accepted (blocks 1 and 2 are not read)
    fresh_device(g_signed_base);
    sha256(s2.data, at + SIG_BLOCK_BYTES, sha);
    upload(s2.data, (uint32_t)(at + SIG_BLOCK_BYTES), sha);
    check_commit_accepted("2.0.0", "block 0 only");
    dev_power_off();
    free(v2.data), free(s2.data);
}

/**
 * A resumed update (ESP-IDF 5.0.5: written with esp_partition_*, checked with
 * esp_image_verify, not esp_ota_end): signed, cut, resumed, installed; tampered, cut,
 * resumed, refused.
 */
static void test_resumed(void) {
    blob_t v2 = app("2.0.0", 60000, 9, 16);
    for (int k = 0; k < 2; k++) {
        blob_t s2 = signed_with(v2, g_trusted);
        if (k)
            tamper(s2.data, v2.len, 32 + 1000, 0x80);
        uint8_t sha[32], od[2 * SECTOR];
        sha256(s2.data, s2.len, sha);
        fresh_device(g_signed_base);
        otadata_snapshot(od);
        begin_report_t b = client_begin((uint32_t)s2.len, SPARE, RESUME, sha);
        CHECK(b.got && b.error == E_NONE && b.next_offset == 0);
        fake_flash_arm_cut(130, CUT_DATA_WRITES); // about 30 KB in
        for (uint32_t off = 0; off < s2.len && !dev_halted(); off += CHUNK)
            client_write(off, s2.data + off, s2.len - off < CHUNK ? (uint32_t)(s2.len - off) : CHUNK);
        CHECK(fake_power_lost());
        boot_result_t r = reboot_device();
        CHECK_EQ(r.slot, 0);
        b = client_begin((uint32_t)s2.len, SPARE, RESUME, sha);
        CHECK(b.got && b.error == E_NONE && b.next_offset >= 6 * SECTOR, "resumed at %u", b.next_offset);
        for (uint32_t off = b.next_offset; off < s2.len; off += CHUNK) {
            uint32_t n = s2.len - off < CHUNK ? (uint32_t)(s2.len - off) : CHUNK;
            CHECK(client_write(off, s2.data + off, n).error == E_NONE);
        }
        if (k)
            check_commit_refused(E_BAD_SIGNATURE, od, "resumed, tampered");
        else
            check_commit_accepted("2.0.0", "resumed, signed");
        dev_power_off();
        free(s2.data);
    }
    free(v2.data);
}

/** reject rolls back to ota_0: esp_ota_check_rollback_is_possible verifies v1's signature with v2's key. */
static void test_rollback(void) {
    blob_t v2 = app("2.0.0", 30000, 9, 17), s2 = signed_with(v2, g_trusted);
    fresh_device(g_signed_base);
    upload_all(s2);
    check_commit_accepted("2.0.0", "v2");
    dev_command(JD_OTA_UPDATER_CMD_REJECT, NULL, 0, 0);
    CHECK(dev_halted() == HALT_RESTART, "reject did not restart");
    boot_result_t b = reboot_device();
    CHECK(b.slot == 0 && !b.pending_verify);
    dev_power_off();
    free(v2.data), free(s2.data);
}

// --- main -------------------------------------------------------------------------------------------

static const test_t TESTS[] = {
    {"signed_update_commits", test_signed_update_commits},
    {"unsigned_refused", test_unsigned_refused},
    {"other_key_refused", test_other_key_refused},
    {"tampered_refused", test_tampered_refused},
    {"damaged_block_refused", test_damaged_block_refused},
    {"block_fields_not_checked", test_block_fields_not_checked},
    {"running_unsigned_installs_nothing", test_running_unsigned_installs_nothing},
    {"wrong_chip_first", test_wrong_chip_first},
    {"incomplete_and_sha_first", test_incomplete_and_sha_first},
    {"layout_before_signature", test_layout_before_signature},
    {"checksum_after_signature", test_checksum_after_signature},
    {"appended_hash_signed", test_appended_hash_signed},
    {"block_not_received", test_block_not_received},
    {"resumed", test_resumed},
    {"rollback", test_rollback},
};

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

/** --sign KEY IN OUT: the signer alone, for test/native.test.ts to check against tools/secure-boot.ts. */
static int sign_main(const char *key_path, const char *in, const char *out) {
    EVP_PKEY *key = signer_load_key(key_path);
    size_t len = 0, slen = 0;
    uint8_t *img = read_file(in, &len);
    if (!key || !img) {
        fprintf(stderr, "--sign: cannot read %s or %s (an RSA-3072 PEM private key and an image)\n", key_path, in);
        return 2;
    }
    uint8_t *s = sign_image(img, len, key, &slen);
    FILE *f = fopen(out, "wb");
    bool ok = f && fwrite(s, 1, slen, f) == slen;
    if (f)
        ok = fclose(f) == 0 && ok;
    free(img), free(s);
    EVP_PKEY_free(key);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 5 && strcmp(argv[1], "--sign") == 0)
        return sign_main(argv[2], argv[3], argv[4]);
    if (argc < 2) {
        fprintf(stderr, "usage: %s <partitions.csv> [test ...]\n       %s --sign KEY.pem IN OUT\n", argv[0], argv[0]);
        return 2;
    }
    fake_set_main_thread();
    g_trusted = signer_new_key();
    g_other = signer_new_key();
    blob_t v1 = app("1.0.0", 20000, 9, 1), s1 = signed_with(v1, g_trusted);
    g_signed_base = make_flash(argv[1]);
    flash_put_image(g_signed_base, 0, s1.data, s1.len);
    g_unsigned_base = make_flash(argv[1]);
    flash_put_image(g_unsigned_base, 0, v1.data, v1.len);
    int ran = run_tests(TESTS, sizeof(TESTS) / sizeof(TESTS[0]), argc, argv, ", signed apps");
    dev_power_off();
    fake_flash_close();
    free(g_signed_base), free(g_unsigned_base), free(v1.data), free(s1.data);
    EVP_PKEY_free(g_trusted), EVP_PKEY_free(g_other);
    printf("ok: %d tests\n", ran);
    return ran ? 0 : 1;
}
