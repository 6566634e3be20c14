// Internals shared by the host fakes of ESP-IDF, FreeRTOS, jacdac-c and the DeviceScript
// runtime, and by the device model (device.c) that the conformance harness and the unit
// tests drive. Nothing here is visible to the OTA updater itself: it only sees the real
// header names in include/.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "esp_err.h"
#include "esp_partition.h"

// --- simulated flash timing (charged to the simulated clock) --------------------------
// Typical figures of the 4 MB QSPI NOR parts on ESP32-S3 modules (Winbond W25Q32JV
// datasheet: sector erase tSE typ 45 ms (max 400 ms), page program tPP typ 0.4 ms (max 3 ms),
// GD25Q32 typ 0.6 ms; reads at 80 MHz QIO are ~40 MB/s raw, taken as 20 MB/s with command
// overhead and cache misses).
#define FLASH_ERASE_SECTOR_US 45000 // one 4 KB sector
#define FLASH_PROGRAM_PAGE_US 500   // per 256-byte page a write touches
#define FLASH_READ_4K_US 200        // reads, proportional to the length

#define FLASH_SIZE 0x400000
#define FLASH_SECTOR 4096
#define FLASH_PAGE 256

// --- clock -----------------------------------------------------------------------------------
int64_t fake_now_us(void);
void fake_clock_advance(int64_t us);
/** Simulated time spent by the calling thread: advances the clock and the thread's account. */
void fake_charge(int64_t us);
/** Time the calling thread was charged since it started (runtime calls excluded). */
int64_t fake_thread_charged_us(void);
/** Charges inside a runtime call (devsmgr_deploy_*) go to a separate account. */
void fake_runtime_enter(void);
void fake_runtime_leave(void);
int64_t fake_runtime_charged_us(void);
/** A new boot: no runtime call is under way (a power cut may have ended one). */
void fake_runtime_reset(void);

// --- device life -------------------------------------------------------------------------------
enum { HALT_NONE = 0, HALT_POWER = 1, HALT_RESTART = 2 };
void fake_set_main_thread(void);
bool fake_is_main_thread(void);
/** 0, or why the simulated device stopped (power cut, esp_restart). */
int fake_halted(void);
void fake_unhalt(void);
/** Marks the device stopped from outside device code (power off by the harness). */
void fake_set_halted(int reason);
/** Stops the simulated device: the calling thread leaves device code at once. */
__attribute__((noreturn)) void fake_halt_device(int reason);
/** Leaves device code: longjmp to the device-call frame (main task) or ends the task thread. */
__attribute__((noreturn)) void fake_halt_thread(void);
/** Every fake entry point: a halted device runs no more code. */
void fake_alive_check(void);
/** The frame fake_halt_thread() returns to on the main task (set by device.c). */
extern void *fake_main_jmp;
/** A broken rule of the real platform: prints "fatal <message>" and aborts. */
__attribute__((noreturn, format(printf, 1, 2))) void fake_fatal(const char *fmt, ...);
bool fake_restart_requested(void);
void fake_clear_restart(void);

// --- flash -------------------------------------------------------------------------------------
/** Loads the 4 MB flash file (every change is written through to it). */
void fake_flash_open_file(const char *path);
/** Loads a 4 MB image kept in memory only (unit tests). */
void fake_flash_open_mem(const uint8_t *image);
void fake_flash_close(void);
uint8_t *fake_flash_mem(void);
esp_err_t fake_flash_read(uint32_t addr, void *dst, uint32_t len);
esp_err_t fake_flash_write(uint32_t addr, const void *src, uint32_t len);
esp_err_t fake_flash_erase_sector(uint32_t addr);
void fake_flash_lock(void);
void fake_flash_unlock(void);

enum { CUT_DATA_WRITES = 0, CUT_ANY_WRITE = 1, CUT_ANY_CHANGE = 2 };
/**
 * Power is cut just before the n-th (1-based) counted operation from now: CUT_DATA_WRITES
 * counts writes into an update's partition (an app slot that is not running, progstage),
 * CUT_ANY_WRITE every flash write, CUT_ANY_CHANGE writes and erases. n = 0 disarms.
 */
void fake_flash_arm_cut(long n, int mode);
long fake_flash_count(int mode);
/** The n-th data write into an update's partition from now fails (ESP_ERR_FLASH_OP_FAIL), nothing written. */
void fake_flash_arm_failure(long n);
bool fake_power_lost(void);
void fake_flash_reset_device(const esp_partition_t *running);

// --- partitions (from the table at 0x8000) ---------------------------------------------------------
void fake_partitions_load(void);
int fake_partition_count(void);
const esp_partition_t *fake_partition_at(int i);
const esp_partition_t *fake_partition_by_label(const char *label);
const esp_partition_t *fake_ota_slot(int index);
void fake_mmap_reset(void);

// --- esp_ota / image ---------------------------------------------------------------------------------
void fake_ota_reset(const esp_partition_t *running);
/** esp_image_verify over flash memory (no charge): ESP_OK and the length, or an error. */
esp_err_t fake_image_check(uint32_t part_addr, uint32_t part_size, uint32_t *image_len);
uint32_t fake_crc32_le(uint32_t crc, const uint8_t *buf, size_t len);
/** esp_image_verify runs so far on the main task and on other tasks. */
void fake_image_verify_counts(long *on_main, long *on_tasks);
/**
 * Signed apps (src/fake_secure_boot.c): the signature step of esp_image_verify, the SHA-256
 * of flash [start, start + padded_len) and the signature sector after it checked as
 * esp_secure_boot_verify_sbv2_signature_block does (the running app's key). ESP_OK when valid.
 */
esp_err_t fake_sbv2_check_flash(uint32_t start, uint32_t padded_len);
/** esp_secure_boot_verify_signature calls so far on the main task and on other tasks. */
void fake_verify_signature_counts(long *on_main, long *on_tasks);

// --- NVS (sim/nvs.ts format in the `nvs` partition) ----------------------------------------------------
void fake_nvs_reset(void);
/** Value of "namespace/key" read straight from flash (not a device action): length, or -1. */
int fake_nvs_peek(const char *key, uint8_t *out, size_t cap);

// --- DeviceScript runtime -------------------------------------------------------------------------------
void fake_devs_reset(void);
int fake_devs_restarts(void);
void fake_devs_set_restarts(int n);
/** The program in the store (fstor), or NULL; *len its size. Caller frees. */
uint8_t *fake_devs_program(uint32_t *len);
/** Largest devsmgr_deploy_write piece and number of pieces since the last reset of these counters. */
void fake_devs_stats(unsigned *pieces, unsigned *max_piece, unsigned *starts);
void fake_devs_clear_stats(void);

// --- jacdac ---------------------------------------------------------------------------------------------
enum { SENT_REPORT = 'R', SENT_EVENT = 'E' };
typedef struct {
    uint8_t kind;
    uint8_t service_index;
    uint16_t code;
    uint8_t len;
    uint8_t data[236]; // JD_SERIAL_PAYLOAD_SIZE
} fake_sent_t;
void fake_jd_reset(void);
void fake_jd_deliver(unsigned service_index, uint16_t cmd, const void *payload, unsigned len);
void fake_jd_process(void);
int fake_jd_sent_count(void);
const fake_sent_t *fake_jd_sent(int i);
void fake_jd_sent_clear(void);
void fake_jd_sent_truncate(int n);
int fake_jd_service_count(void);

// --- FreeRTOS -------------------------------------------------------------------------------------------
/** Ends every task thread of the device (they leave at their next FreeRTOS or flash call). */
void fake_rtos_shutdown(void);
/** True when every task waits on an empty queue (nothing runs outside the main task). */
bool fake_rtos_quiescent(void);
/** Test hook: while held, tasks do not take items from queues. */
void fake_rtos_hold(bool hold);
__attribute__((noreturn)) void fake_rtos_task_exit(void);
