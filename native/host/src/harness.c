// otaupdater-harness: the OTA updater C server on the host fakes, driven over stdin/stdout
// by test/conformance/native-backend.ts (the ConformanceBackend of test/conformance/backend.ts).
//
// Line protocol: one request per line; the answer is zero or more `sent` lines, then one
// `ok ...` or `err <message>` line. Numbers in hex where they are codes, payloads in hex
// ("-" for empty). A broken platform rule (write before erase, main-loop budget, jd_send
// outside the main task, ...) prints `fatal <message>` and the process aborts.
//
//   boot <slot> <flash file>     power on (otaupdater_init), run until idle     -> sent*, ok
//   cmd <code> <payload> <ms>    deliver a command, run until idle + ms          -> sent*, ok
//   reg <code>                   GET a register                                  -> ok <payload> | err not-implemented
//   cut <n>                      power cut before the n-th data write            -> ok
//   fail <n>                     the n-th data write from now fails              -> ok
//   open <flash file>            load a flash file without powering on (queries) -> ok
//   status                       -> ok <power lost 0|1> <restart requested 0|1> <on 0|1>
//   nvs <namespace/key>          -> ok <value> | ok none
//   deployed                     -> ok <restarts> <program> | ok <restarts> none
//   stats                        -> ok <max call us> <calls> <runtime us> <what>
//   budget <ms>                  main-loop budget per call (default 100)         -> ok
//   restarts <n>                 program installs so far (a new harness process) -> ok
//   shutdown                     power off, flash file synced and closed         -> ok
//   sent lines: sent <report|event> <code> <payload>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "device.h"
#include "jd_otaupdater_spec.h"

static char g_flash_path[4096];

static void put_hex(const uint8_t *d, size_t n) {
    if (n == 0) {
        fputs("-", stdout);
        return;
    }
    for (size_t i = 0; i < n; i++)
        printf("%02x", d[i]);
}

static int parse_hex(const char *s, uint8_t *out, size_t cap) {
    if (strcmp(s, "-") == 0)
        return 0;
    size_t n = strlen(s);
    if (n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return (int)(n / 2);
}

static void flush_sent(void) {
    for (int i = 0; i < fake_jd_sent_count(); i++) {
        const fake_sent_t *s = fake_jd_sent(i);
        printf("sent %s %x ", s->kind == SENT_EVENT ? "event" : "report", s->code);
        put_hex(s->data, s->len);
        putchar('\n');
    }
    fake_jd_sent_clear();
}

static void ok(void) {
    puts("ok");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    fake_set_main_thread();
    static char line[8192];
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        char *verb = strtok(line, " ");
        if (!verb)
            continue;
        if (strcmp(verb, "boot") == 0) {
            char *slot = strtok(NULL, " ");
            char *path = strtok(NULL, "");
            if (!slot || !path) {
                puts("err usage: boot <slot> <flash file>");
                continue;
            }
            dev_power_off();
            snprintf(g_flash_path, sizeof(g_flash_path), "%s", path);
            fake_flash_open_file(g_flash_path); // the runner ran the bootloader on it
            fake_jd_sent_clear();
            dev_power_on(atoi(slot));
            flush_sent();
            ok();
        } else if (strcmp(verb, "cmd") == 0) {
            char *code = strtok(NULL, " ");
            char *payload = strtok(NULL, " ");
            char *settle = strtok(NULL, " ");
            uint8_t buf[256];
            int n = payload ? parse_hex(payload, buf, JD_OTA_UPDATER_LIMITS_WRITE_BYTES + 4) : -1;
            if (!code || n < 0 || !settle) {
                puts("err usage: cmd <code> <payload hex> <settle ms>");
                continue;
            }
            fake_jd_sent_clear();
            if (dev_is_on())
                dev_command((uint16_t)strtoul(code, NULL, 16), buf, (unsigned)n, (uint32_t)strtoul(settle, NULL, 10));
            flush_sent();
            ok();
        } else if (strcmp(verb, "reg") == 0) {
            char *code = strtok(NULL, " ");
            if (!code || !dev_is_on() || dev_halted()) {
                puts(code ? "err the device is off" : "err usage: reg <code>");
                continue;
            }
            uint8_t buf[256];
            int n = dev_register((uint16_t)strtoul(code, NULL, 16), buf, sizeof(buf));
            if (n < 0) {
                puts("err not-implemented");
                continue;
            }
            fputs("ok ", stdout);
            put_hex(buf, (size_t)n);
            putchar('\n');
        } else if (strcmp(verb, "cut") == 0) {
            char *n = strtok(NULL, " ");
            fake_flash_arm_cut(n ? atol(n) : 0, CUT_DATA_WRITES);
            ok();
        } else if (strcmp(verb, "fail") == 0) {
            char *n = strtok(NULL, " ");
            fake_flash_arm_failure(n ? atol(n) : 0);
            ok();
        } else if (strcmp(verb, "open") == 0) {
            char *path = strtok(NULL, "");
            if (!path) {
                puts("err usage: open <flash file>");
                continue;
            }
            dev_power_off();
            snprintf(g_flash_path, sizeof(g_flash_path), "%s", path);
            fake_flash_open_file(g_flash_path);
            ok();
        } else if (strcmp(verb, "status") == 0) {
            printf("ok %d %d %d\n", fake_power_lost() ? 1 : 0, fake_restart_requested() ? 1 : 0,
                   dev_is_on() && !dev_halted() ? 1 : 0);
        } else if (strcmp(verb, "nvs") == 0) {
            char *key = strtok(NULL, " ");
            uint8_t buf[512];
            int n = key && fake_flash_mem() ? fake_nvs_peek(key, buf, sizeof(buf)) : -1;
            if (n < 0) {
                puts("ok none");
                continue;
            }
            fputs("ok ", stdout);
            put_hex(buf, (size_t)n);
            putchar('\n');
        } else if (strcmp(verb, "deployed") == 0) {
            uint32_t len = 0;
            uint8_t *prog = fake_flash_mem() ? fake_devs_program(&len) : NULL;
            printf("ok %d ", fake_devs_restarts());
            if (prog)
                put_hex(prog, len), free(prog);
            else
                fputs("none", stdout);
            putchar('\n');
        } else if (strcmp(verb, "restarts") == 0) {
            char *n = strtok(NULL, " ");
            fake_devs_set_restarts(n ? atoi(n) : 0);
            ok();
        } else if (strcmp(verb, "stats") == 0) {
            const dev_stats_t *s = dev_stats();
            printf("ok %lld %lld %lld %s\n", (long long)s->max_call_us, (long long)s->calls,
                   (long long)s->runtime_us, s->max_call_what[0] ? s->max_call_what : "-");
        } else if (strcmp(verb, "budget") == 0) {
            char *ms = strtok(NULL, " ");
            dev_set_budget_us(ms ? (int64_t)(atof(ms) * 1000) : 100000);
            ok();
        } else if (strcmp(verb, "shutdown") == 0) {
            dev_power_off();
            fake_flash_close();
            ok();
        } else {
            printf("err unknown request %s\n", verb);
        }
    }
    dev_power_off();
    fake_flash_close();
    return 0;
}
