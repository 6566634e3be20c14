// The simulated device: see device.h.
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "device.h"
#include "otaupdater.h"
#include "jd_protocol.h"

static int64_t g_budget_us = 100000;
static dev_stats_t g_stats;
static bool g_on;
static const int64_t MAIN_LOOP_TICK_US = 1000;

void dev_set_budget_us(int64_t us) {
    g_budget_us = us;
}

int64_t dev_budget_us(void) {
    return g_budget_us;
}

const dev_stats_t *dev_stats(void) {
    g_stats.runtime_us = fake_runtime_charged_us();
    return &g_stats;
}

void dev_reset_stats(void) {
    memset(&g_stats, 0, sizeof(g_stats));
}

bool dev_is_on(void) {
    return g_on;
}

int dev_halted(void) {
    return fake_halted();
}

typedef void (*dev_fn_t)(void *);

/**
 * Runs device code on the main task; a power cut or esp_restart inside it longjmps back here.
 * Checks the main-loop budget.
 */
static void dev_call(const char *what, dev_fn_t fn, void *arg) {
    if (!g_on || fake_halted())
        return;
    jmp_buf jb;
    int64_t before = fake_thread_charged_us();
    int64_t runtime_before = fake_runtime_charged_us();
    fake_main_jmp = &jb;
    if (setjmp(jb) == 0)
        fn(arg);
    fake_main_jmp = NULL;
    int64_t spent = fake_thread_charged_us() - before;
    int64_t runtime = fake_runtime_charged_us() - runtime_before;
    g_stats.calls++;
    if (runtime > g_stats.max_runtime_call_us)
        g_stats.max_runtime_call_us = runtime;
    if (spent > g_stats.max_call_us) {
        g_stats.max_call_us = spent;
        snprintf(g_stats.max_call_what, sizeof(g_stats.max_call_what), "%s", what);
    }
    if (spent > g_budget_us)
        fake_fatal("main-loop budget exceeded: %s took %.1f ms of flash time (budget %.1f ms)", what,
                   spent / 1000.0, g_budget_us / 1000.0);
}

static void call_init(void *arg) {
    (void)arg;
    otaupdater_init();
}

static void call_process(void *arg) {
    (void)arg;
    fake_jd_process();
}

typedef struct {
    uint16_t cmd;
    const void *payload;
    unsigned len;
} deliver_t;

static void call_deliver(void *arg) {
    deliver_t *d = arg;
    fake_jd_deliver(0, d->cmd, d->payload, d->len);
}

void dev_power_on(int running_slot) {
    if (g_on)
        dev_power_off();
    fake_set_main_thread();
    const esp_partition_t *running = fake_ota_slot(running_slot);
    if (!running)
        fake_fatal("no app slot ota_%d", running_slot);
    fake_unhalt();
    fake_runtime_reset();
    fake_flash_reset_device(running);
    fake_ota_reset(running);
    fake_nvs_reset();
    fake_devs_reset();
    fake_jd_reset();
    fake_mmap_reset();
    g_on = true;
    dev_call("otaupdater_init", call_init, NULL);
    dev_run(0);
}

void dev_power_off(void) {
    if (!g_on)
        return;
    fake_set_halted(HALT_POWER);
    fake_rtos_shutdown();
    fake_mmap_reset();
    g_on = false;
}

void dev_turns(int n, int64_t tick_us) {
    for (int i = 0; i < n && g_on && !fake_halted(); i++) {
        dev_call("otaupdater_process", call_process, NULL);
        fake_clock_advance(tick_us);
    }
}

void dev_run(uint32_t settle_ms) {
    int64_t end = fake_now_us() + (int64_t)settle_ms * 1000;
    time_t started = time(NULL);
    for (long iter = 0;; iter++) {
        if (!g_on || fake_halted())
            return;
        dev_call("otaupdater_process", call_process, NULL);
        if (fake_halted())
            return;
        bool busy = otaupdater_busy();
        if (!busy && fake_now_us() >= end)
            return;
        if (!fake_rtos_quiescent()) {
            usleep(20); // the worker task is at it: the main loop only polls meanwhile
        } else {
            fake_clock_advance(MAIN_LOOP_TICK_US);
        }
        if ((iter & 0xfff) == 0 && time(NULL) - started > 300)
            fake_fatal("the server did not become idle within 300 s of real time");
    }
}

void dev_deliver(uint16_t cmd, const void *payload, unsigned len) {
    deliver_t d = {cmd, payload, len};
    char what[48];
    snprintf(what, sizeof(what), "otaupdater_handle_packet(0x%x)", cmd);
    dev_call(what, call_deliver, &d);
}

void dev_command(uint16_t cmd, const void *payload, unsigned len, uint32_t settle_ms) {
    dev_deliver(cmd, payload, len);
    dev_run(settle_ms);
}

int dev_register(uint16_t reg, uint8_t *out, unsigned cap) {
    int first = fake_jd_sent_count();
    dev_deliver((uint16_t)JD_GET(reg), NULL, 0);
    int result = -1;
    for (int i = fake_jd_sent_count() - 1; i >= first; i--) {
        const fake_sent_t *s = fake_jd_sent(i);
        if (s->kind == SENT_REPORT && s->code == JD_GET(reg)) {
            result = s->len < cap ? s->len : (int)cap;
            memcpy(out, s->data, (size_t)result);
            break;
        }
    }
    fake_jd_sent_truncate(first); // a register read is not part of what commands sent
    return result;
}
