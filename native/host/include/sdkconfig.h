// Host stand-in for the generated sdkconfig.h of an ESP32-S3 build with the OTA updater
// component (its Kconfig defaults) and firmware/sdkconfig.defaults; with FAKE_SIGNED_APPS=1
// (the *-signed builds of the Makefile) also firmware/sdkconfig.signed.
#pragma once
#define CONFIG_IDF_TARGET_ESP32S3 1
#define CONFIG_IDF_FIRMWARE_CHIP_ID 0x0009
#define CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE 1
#define CONFIG_PARTITION_TABLE_OFFSET 0x8000

#define CONFIG_OTAUPDATER_RESTART_DELAY_MS 100
#define CONFIG_OTAUPDATER_PROGRAM_INSTALL_DELAY_MS 100
#define CONFIG_OTAUPDATER_STEP_BUDGET_US 10000
#define CONFIG_OTAUPDATER_QUEUE_LEN 8
#define CONFIG_OTAUPDATER_WORKER_PRIORITY 2
#define CONFIG_OTAUPDATER_CHECK_CHIP_ID 1
#define CONFIG_OTAUPDATER_STAGING_LABEL "progstage"

#if FAKE_SIGNED_APPS
// firmware/sdkconfig.signed (ESP-IDF v5.0.5 Kconfig names): the three options it sets, and
// what Kconfig derives from them (bootloader/Kconfig.projbuild: SECURE_SIGNED_ON_UPDATE and
// SECURE_SIGNED_APPS are the options the code tests; SECURE_SIGNED_ON_BOOT stays unset, the
// bootloader checks no signature without hardware secure boot in the RSA scheme).
#define CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT 1
#define CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME 1
#define CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT 1
#define CONFIG_SECURE_SIGNED_ON_UPDATE 1
#define CONFIG_SECURE_SIGNED_APPS 1
#define CONFIG_SECURE_BOOT_V2_RSA_SUPPORTED 1
#define CONFIG_OTAUPDATER_WORKER_STACK 8192 // native/otaupdater/Kconfig default with signed apps
#else
#define CONFIG_OTAUPDATER_WORKER_STACK 4096
#endif
