// The interface through which the conformance vectors (test/vectors/*.json) drive an
// OTA updater server: the simulated one (sim/ota-server.ts, sim-backend.ts) and the
// native C one built for the host with fakes of ESP-IDF and jacdac-c (native-backend.ts).
// The runner (runner.ts) owns the flash file and plays the bootloader between boots
// (sim/bootloader.ts), so both servers start from, and leave, the same kind of flash.

/** A packet the server sent: a command report (code = the command) or an event. */
export interface Sent {
    kind: "report" | "event"
    code: number
    payload: Buffer
}

export interface BootInfo {
    /** The app slot the bootloader started (0: ota_0, 1: ota_1). */
    runningSlot: number
}

export interface ConformanceBackend {
    readonly name: string
    /**
     * Powers on with the flash file as it is (the runner already ran the bootloader on
     * it): creates the server (otaupdater_init), then lets it run until idle. Returns
     * what the server sent while starting.
     */
    boot(flashFile: string, info: BootInfo): Promise<Sent[]>
    /**
     * Delivers one command (service command code, payload) and lets the server run until
     * it is idle again (its deferred work done: a resume re-hash, a program copy, a
     * delayed restart), with at least `settleMs` of (simulated or real) time after it.
     * Returns every report and event sent meanwhile, in order.
     */
    command(code: number, payload: Buffer, settleMs?: number): Promise<Sent[]>
    /** The raw value of a register (its GET report payload). */
    register(code: number): Promise<Buffer>
    /**
     * From now on, power is cut just before the `n`-th (1-based) write of data into the
     * partition the current update writes to (erases do not count): that write and every
     * flash change after it never happen. Returns at once.
     */
    armPowerCut(n: number): void
    /**
     * The `n`-th (1-based, counted from now) write of data into the partition the current
     * update writes to fails (esp_partition_write / esp_ota_write returns an error); the
     * device stays powered. Returns at once.
     */
    armFlashFailure(n: number): void
    /** True once an armed power cut happened (the device is off until the next boot). */
    powerLost(): boolean
    /** True when the server asked for a restart (esp_restart) since the last boot. */
    restartRequested(): boolean
    /** A value in NVS (namespace/key, e.g. "otaupdater/resume"), undefined when absent. */
    nvsGet(key: string): Promise<Buffer | undefined>
    /** Bytecode the server installed in the program store since the flash was made (the last one), and how many times the program was restarted by an install. */
    deployed(): Promise<{ program?: Buffer; restarts: number }>
    /** Powers off: every flash change is in the flash file when this returns. */
    shutdown(): Promise<void>
}
