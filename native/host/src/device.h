// The simulated device around the OTA updater: power on (otaupdater_init), commands,
// register reads, the main loop run until the server is idle, power cuts, restarts. Every
// call into the server (init, handle_packet, process) is timed on the simulated clock and
// must stay within the main-loop budget; flash time spent on the worker task or inside the
// runtime's devsmgr_deploy_* is not charged to it.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "fake.h"

typedef struct {
    int64_t max_call_us;     // longest single call into the server on the main task
    char max_call_what[64];  // which one
    int64_t calls;
    int64_t runtime_us;      // flash time inside devsmgr_deploy_* (the runtime's own)
    int64_t max_runtime_call_us;
} dev_stats_t;

/** Main-loop budget per call (default 100 ms). */
void dev_set_budget_us(int64_t us);
int64_t dev_budget_us(void);
const dev_stats_t *dev_stats(void);
void dev_reset_stats(void);

/** Powers on with the flash as it is: the bootloader started `running_slot`. */
void dev_power_on(int running_slot);
/** Powers off (the device may already have stopped); ends its tasks. */
void dev_power_off(void);
bool dev_is_on(void);
/** Why the device stopped (HALT_*), 0 while it runs. */
int dev_halted(void);

/** Delivers a command and runs the main loop until the server is idle, plus `settle_ms`. */
void dev_command(uint16_t cmd, const void *payload, unsigned len, uint32_t settle_ms);
/** Runs the main loop until the server is idle, plus `settle_ms`. */
void dev_run(uint32_t settle_ms);
/** Runs `n` main-loop turns of `tick_us` each, whatever the server does. */
void dev_turns(int n, int64_t tick_us);
/** GET of a register: its payload length (-1 when not implemented). */
int dev_register(uint16_t reg, uint8_t *out, unsigned cap);
/** Delivers a command and returns at once (no main-loop turn). */
void dev_deliver(uint16_t cmd, const void *payload, unsigned len);
