// Host fakes: the simulated clock (esp_timer_get_time), the life of the simulated device
// (power cut, esp_restart), logging, and the platform's panic paths.
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sanitizer/common_interface_defs.h>
#include "fake.h"
#include "esp_log.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "jd_protocol.h"

// --- clock ---------------------------------------------------------------------------------

static int64_t g_now_us = 1000000; // the device has been up 1 s when the server starts
static __thread int64_t t_charged_us;
static __thread int t_in_runtime;
static int64_t g_runtime_us;

int64_t fake_now_us(void) {
    return __atomic_load_n(&g_now_us, __ATOMIC_SEQ_CST);
}

void fake_clock_advance(int64_t us) {
    __atomic_add_fetch(&g_now_us, us, __ATOMIC_SEQ_CST);
}

void fake_charge(int64_t us) {
    fake_clock_advance(us);
    if (t_in_runtime)
        __atomic_add_fetch(&g_runtime_us, us, __ATOMIC_SEQ_CST);
    else
        t_charged_us += us;
}

int64_t fake_thread_charged_us(void) {
    return t_charged_us;
}

void fake_runtime_enter(void) {
    t_in_runtime++;
}

void fake_runtime_leave(void) {
    t_in_runtime--;
}

void fake_runtime_reset(void) {
    t_in_runtime = 0;
}

int64_t fake_runtime_charged_us(void) {
    return __atomic_load_n(&g_runtime_us, __ATOMIC_SEQ_CST);
}

int64_t esp_timer_get_time(void) {
    fake_alive_check();
    return fake_now_us();
}

// --- device life -----------------------------------------------------------------------------

static pthread_t g_main;
static int g_main_set;
static int g_halted;
static int g_restart;
void *fake_main_jmp;

void fake_set_main_thread(void) {
    g_main = pthread_self();
    g_main_set = 1;
}

bool fake_is_main_thread(void) {
    return g_main_set && pthread_equal(g_main, pthread_self());
}

int fake_halted(void) {
    return __atomic_load_n(&g_halted, __ATOMIC_SEQ_CST);
}

void fake_unhalt(void) {
    __atomic_store_n(&g_halted, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&g_restart, 0, __ATOMIC_SEQ_CST);
}

bool fake_restart_requested(void) {
    return __atomic_load_n(&g_restart, __ATOMIC_SEQ_CST) != 0;
}

void fake_clear_restart(void) {
    __atomic_store_n(&g_restart, 0, __ATOMIC_SEQ_CST);
}

void fake_halt_thread(void) {
    if (fake_is_main_thread()) {
        if (!fake_main_jmp)
            fake_fatal("the device stopped outside a device call");
        longjmp(*(jmp_buf *)fake_main_jmp, 1);
    }
    fake_rtos_task_exit();
}

void fake_halt_device(int reason) {
    int none = HALT_NONE;
    __atomic_compare_exchange_n(&g_halted, &none, reason, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    fake_halt_thread();
}

void fake_set_halted(int reason) {
    int none = HALT_NONE;
    __atomic_compare_exchange_n(&g_halted, &none, reason, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

void fake_alive_check(void) {
    if (fake_halted())
        fake_halt_thread();
}

void fake_fatal(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "FATAL: %s\n", msg);
    __sanitizer_print_stack_trace();
    fflush(stderr);
    printf("fatal %s\n", msg);
    fflush(stdout);
    abort();
}

/** esp_restart: the device stops; the harness (or the test) boots it again. */
void esp_restart(void) {
    __atomic_store_n(&g_restart, 1, __ATOMIC_SEQ_CST);
    fake_halt_device(HALT_RESTART);
}

// --- logging, errors ----------------------------------------------------------------------------

void fake_log(char level, const char *tag, const char *format, ...) {
    static int enabled = -1;
    if (enabled < 0)
        enabled = getenv("OTA_HOST_LOG") != NULL;
    if (!enabled)
        return;
    va_list ap;
    va_start(ap, format);
    fprintf(stderr, "%c (%lld) %s: ", level, (long long)(fake_now_us() / 1000), tag);
    vfprintf(stderr, format, ap);
    fputc('\n', stderr);
    va_end(ap);
}

const char *esp_err_to_name(esp_err_t code) {
    switch (code) {
    case ESP_OK:
        return "ESP_OK";
    case ESP_FAIL:
        return "ESP_FAIL";
    case ESP_ERR_NO_MEM:
        return "ESP_ERR_NO_MEM";
    case ESP_ERR_INVALID_ARG:
        return "ESP_ERR_INVALID_ARG";
    case ESP_ERR_INVALID_STATE:
        return "ESP_ERR_INVALID_STATE";
    case ESP_ERR_INVALID_SIZE:
        return "ESP_ERR_INVALID_SIZE";
    case ESP_ERR_NOT_FOUND:
        return "ESP_ERR_NOT_FOUND";
    case ESP_ERR_NOT_SUPPORTED:
        return "ESP_ERR_NOT_SUPPORTED";
    case 0x1503:
        return "ESP_ERR_OTA_VALIDATE_FAILED";
    case 0x1505:
        return "ESP_ERR_OTA_ROLLBACK_FAILED";
    case 0x1506:
        return "ESP_ERR_OTA_ROLLBACK_INVALID_STATE";
    case 0x2002:
        return "ESP_ERR_IMAGE_INVALID";
    default:
        return "ERROR";
    }
}

const char *esp_err_to_name_r(esp_err_t code, char *buf, size_t buflen) {
    snprintf(buf, buflen, "%s", esp_err_to_name(code));
    return buf;
}

// --- jacdac-c platform bits -------------------------------------------------------------------------

void jd_assert_fail(const char *expr, const char *file, unsigned line, const char *funname) {
    fake_fatal("JD_ASSERT(%s) failed at %s:%u in %s", expr, file, line, funname);
}

void jd_panic_core(const char *file, unsigned line, const char *funname) {
    fake_fatal("JD_PANIC at %s:%u in %s", file, line, funname);
}

void hw_panic(void) {
    fake_fatal("hw_panic");
}

uint32_t now;

uint64_t tim_get_micros(void) {
    return (uint64_t)fake_now_us();
}

int target_in_irq(void) {
    return !fake_is_main_thread();
}

/** jd_hash_fnv1a (jacdac-c jd_util.c): FNV-1a, 32-bit. */
uint32_t jd_hash_fnv1a(const void *data, unsigned len) {
    const uint8_t *d = (const uint8_t *)data;
    uint32_t h = 0x811c9dc5;
    while (len--)
        h = (h ^ *d++) * 0x1000193;
    return h;
}

/** zlib's crc32(crc, buf, len) (= esp_rom_crc32_le). */
uint32_t fake_crc32_le(uint32_t crc, const uint8_t *buf, size_t len) {
    uint32_t c = ~crc;
    for (size_t i = 0; i < len; i++) {
        c ^= buf[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}
