// Helpers of the C unit tests: flash images from firmware/partitions.csv, app and bytecode
// images, the second-stage bootloader (a port of sim/bootloader.ts boot()), a client of the
// service, and assertions.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "device.h"

// --- assertions -----------------------------------------------------------------------------
__attribute__((noreturn, format(printf, 3, 4))) void t_fail(const char *file, int line, const char *fmt, ...);
__attribute__((noreturn, format(printf, 4, 5))) void t_check_fail(const char *file, int line, const char *cond,
                                                                  const char *fmt, ...);
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            t_check_fail(__FILE__, __LINE__, #cond, " " __VA_ARGS__);                              \
    } while (0)
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b)                                                                              \
            t_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, _a, #b, _b);        \
    } while (0)

// --- flash ------------------------------------------------------------------------------------
/** A blank 4 MB flash with the ESP-IDF binary partition table built from a CSV file. */
uint8_t *make_flash(const char *csv_path);
/** Writes `img` into app slot `slot` of a flash image (erased first), as esptool would. */
void flash_put_image(uint8_t *flash, int slot, const uint8_t *img, size_t len);
const esp_partition_t *part(const char *label);

// --- images -----------------------------------------------------------------------------------
/** A valid ESP32-S3 app image of about `size` bytes (DROM with the app descriptor, DRAM, IRAM). */
uint8_t *build_app_image(const char *version, size_t size, uint16_t chip, uint32_t seed, size_t *len);
/** A DeviceScript bytecode image of `size` bytes (a multiple of 32) that devs_verify accepts. */
uint8_t *build_devs_image(size_t size, uint32_t seed);
void sha256(const void *data, size_t len, uint8_t out[32]);
uint32_t crc32_ref(const uint8_t *data, size_t len);

// --- bootloader -------------------------------------------------------------------------------
typedef struct {
    int slot;
    bool pending_verify;
} boot_result_t;
/** sim/bootloader.ts boot(): abort an unconfirmed image, pick the newest valid entry, NEW -> PENDING_VERIFY, fall back to a valid slot. */
boot_result_t bootloader_run(void);
/** The slot otadata selects now (esp_ota_get_boot_partition), without writing. */
int otadata_boot_slot(void);
/** The image in `slot` passes esp_image_verify; its length in *len. */
bool slot_image_valid(int slot, uint32_t *len);
/** Bootloader, then power on the slot it chose. */
boot_result_t reboot_device(void);

// --- client -------------------------------------------------------------------------------------
/** The last report with command code `cmd` sent since the last command, or NULL. */
const fake_sent_t *last_report(uint16_t cmd);
const fake_sent_t *last_event(uint16_t code);
int count_sent(uint8_t kind, uint16_t code);

typedef struct {
    bool got;
    uint8_t error, slot;
    uint32_t max_image_size, next_offset;
} begin_report_t;
begin_report_t client_begin(uint32_t size, uint8_t target, uint8_t flags, const uint8_t *sha);

typedef struct {
    bool got;
    uint32_t next_offset;
    uint8_t error;
} write_report_t;
write_report_t client_write(uint32_t offset, const uint8_t *data, uint32_t len);

typedef struct {
    bool got;
    uint8_t error, slot;
} commit_report_t;
commit_report_t client_commit(void);
/** Single-byte error report of abort/confirm; -1 when none came. */
int client_simple(uint16_t cmd);
uint32_t reg_u32(uint16_t reg);
uint8_t reg_u8(uint16_t reg);

/** One named test of a test binary. */
typedef struct {
    const char *name;
    void (*fn)(void);
} test_t;

/**
 * Runs the tests named in argv[2..] (all of them when none is named), printing each name
 * with `label`; returns how many ran.
 */
int run_tests(const test_t *tests, size_t count, int argc, char **argv, const char *label);
