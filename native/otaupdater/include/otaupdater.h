// OTA updater Jacdac service for the DeviceScript ESP32 runtime (services/otaupdater.md).
#pragma once

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Creates the OTA updater service (one instance) and registers it with jacdac-c.
 *
 * Call it once from `app_init_services()` (devicescript-esp32 main/main.c), after
 * `devs_service_full_init()` so that the indices of the runtime's own services do not
 * change. It runs on the Jacdac main task and returns at once: it reads the running
 * slot, its app descriptor and otadata, opens NVS namespace "otaupdater" (calling
 * `nvs_flash_init()` when nobody did yet), and starts the worker task that runs the
 * long image checks (`esp_ota_end`, `esp_ota_set_boot_partition`, rollback).
 *
 * When NVS holds a program record (a copy of a staged DeviceScript program into the
 * program store was cut short by a reset), the copy is finished from
 * `otaupdater_process()` before any command is handled (spec: "Program updates").
 *
 * Must be called at most once per boot; there is nothing to call at shutdown.
 */
void otaupdater_init(void);

/**
 * True while the service has deferred work under way: a resume re-hash, a checkpoint,
 * a commit being checked by the worker task, a program being copied into the program
 * store, commands queued behind such work, or a restart asked for by `reboot`.
 * Only for tests and for power management (do not sleep while it is true); false
 * before `otaupdater_init()`.
 */
bool otaupdater_busy(void);

#ifdef __cplusplus
}
#endif
