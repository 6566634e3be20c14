// A simulated ESP32-S3: the real DeviceScript VM running the compiled program, and the
// simulated OTA updater server on the same Jacdac bus, over a flash file. A reboot
// throws both away and boots again from the flash, as a reset does on the chip.
//
// A panic of the program (out of memory, 128K opcodes without await, an unhandled
// exception...) does not reset the chip. The runtime's program manager restarts the
// program by itself: runtime/devicescript/devsmgr.c, devsmgr_process(), sees
// devs_error_code() != 0, sends the manager's `program panic` event, frees the program
// (stop_program) and sets next_restart = now + SECONDS(5) (SECONDS(1) for
// DEVS_PANIC_REBOOT, i.e. ds.restart()); SECONDS(n) is n * 2^20 us, so about 5.24 s
// later the same devsmgr_process() calls try_run(), which starts the same bytecode from
// the program store again, with the same settings. Nothing calls esp_restart: the
// ESP32 port keeps devsmgr.c's empty weak devs_panic_handler (devicescript-esp32 has no
// other), and devs_panic() (fibers.c) only records the code and yields. The WASM VM
// run here is that same devsmgr.c, so it restarts the program the same way, 5.24 s
// after the panic, with its flash untouched; this class only reports the panic
// ("panic" event, `panics`) and counts program starts. The OTA server and the flash file
// stay as they are, as on the chip.
//
// The VM's own flash (the deployed program and the settings) is the `fstor` partition
// of the flash file, as on the chip, where the runtime's flash driver maps it
// (devicescript-esp32 main/flash.c): the WASM VM loads it at start and saves it after
// every change (em_flash_load/em_flash_save), and this class writes the sectors that
// changed. A blank fstor is a device that never had a program: the first power-on
// deploys the settings and the program, as `devs` does over the bus.
import {
    JDBus,
    JDServerServiceProvider,
    SettingsClient,
    SRV_SETTINGS,
    createProxyBridge,
    JDBridge,
    Transport,
} from "jacdac-ts"
import type { KeyObject } from "node:crypto"
import { EventEmitter } from "node:events"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { createVm, DevsModule, panicName } from "./vm"
import { SECTOR_SIZE, SimFlash } from "./flash"
import { OtaUpdaterServer } from "./ota-server"
import { StatusLightServer } from "./status-light"

export { STATUS_PREFIX } from "../packages/ota/src/status"
import { STATUS_PREFIX } from "../packages/ota/src/status"
/** Label of the partition that holds the VM's flash: program and settings. */
export const PROGRAM_STORE_LABEL = "fstor"
const VM_DEVICE_ID = "5e6d0e0a7a5e0001"
// The device of the simulated peripherals (OTA updater, status light): the same at every
// boot, as a board's services keep their device.
const PERIPHERALS_DEVICE_ID = "5e6d0e0a7a5e0002"
const SETTINGS_WAIT_MS = 10000

export interface SimDeviceOptions {
    flashFile: string
    /** The program to deploy (see `deploy`); undefined: never deploy, wait for one over the bus (devtools). */
    bytecode?: Buffer
    settings: Record<string, string | number>
    /** Every line the program prints (console.log), and VM messages when verbose. */
    log?: (line: string) => void
    verbose?: boolean
    /**
     * Deploy `settings` and `bytecode` at the first power-on even when the flash already
     * holds a program (as `devs` deploys to a running device). By default they are
     * deployed only to a blank program store, and a flash file keeps what it has.
     */
    deploy?: boolean
    /** Transports of the device's Jacdac bus, e.g. a devtools TCP connection (default none: a private bus). */
    transports?: Transport[]
    /** The release signing key's public key: the OTA server accepts only firmware signed with it (OtaUpdaterServerOptions.trustedKey). */
    trustedKey?: KeyObject
}

/** A panic of the VM program; the runtime restarts the program ~5.24 s later. */
export interface SimPanic {
    code: number // 60004, ... (sim/vm.ts PANIC_NAMES)
    name: string // "out of memory", ...
    boot: number // the chip's boot (SimDevice.boots) in which it happened
    panics: number // panics since power-on, this one included
}

/** Status lines of the program, parsed: { event: "up-to-date" | "committed" | ... }. */
export interface DeviceStatus {
    event: string
    boot: number
    [field: string]: any
}

export function loadServiceSpecs(): jdspec.ServiceSpec[] {
    const file = join(__dirname, "..", ".devicescript", "services.json")
    return JSON.parse(readFileSync(file, "utf8"))
}

/**
 * Events: "boot" (boots, server) at every chip boot; "status" (DeviceStatus) for every
 * status line of the program; "panic" (SimPanic) when the program panics;
 * "program-start" (programStarts, boot) whenever the VM starts the program (after
 * deploy, a boot or a panic).
 */
export class SimDevice extends EventEmitter {
    readonly bus: JDBus
    /** The VM's Jacdac device identifier (the device with the DeviceScript manager). */
    readonly vmDeviceId = VM_DEVICE_ID
    boots = 0
    panics = 0 // program panics since power-on (all boots)
    programStarts = 0 // times the VM started the program since power-on
    server?: OtaUpdaterServer
    /** The example application's status light (src/main.ts), new at every boot. */
    light?: StatusLightServer
    private vm?: DevsModule
    private bridge?: JDBridge
    private provider?: JDServerServiceProvider
    private stopped = false

    constructor(readonly options: SimDeviceOptions) {
        super()
        this.bus = new JDBus(options.transports ?? [], { services: loadServiceSpecs(), disableRoleManager: true })
    }

    /** Powers the device on: boots the flash and starts the program. */
    async start() {
        await this.boot()
    }

    async stop() {
        this.stopped = true
        const flash = this.server?.flash
        this.shutdown()
        await this.bus.stop()
        flash?.close()
    }

    private shutdown() {
        if (this.vm) {
            this.vm.devsStop()
            this.vm.sockClose()
            this.vm.sendPacket = () => {}
            this.vm = undefined
        }
        if (this.bridge) this.bridge.bus = undefined as unknown as JDBus
        this.server?.close()
        if (this.provider) this.bus.removeServiceProvider(this.provider)
        this.bridge = this.provider = undefined
    }

    private async boot() {
        this.boots++
        const flash = SimFlash.open(this.options.flashFile)
        const store = flash.partition(PROGRAM_STORE_LABEL)
        const server: OtaUpdaterServer = new OtaUpdaterServer(flash, {
            // (a reboot asked for by a server that lost its power does not happen)
            onReboot: () => setImmediate(() => this.server === server && this.reboot()),
            log: line => this.server === server && this.log(line),
            // devsmgr_deploy_*: the VM stops the program, writes the store, restarts it
            deployProgram: bytecode => {
                if (this.server !== server || !this.vm) throw new Error("runtime not running")
                const r = this.vm.devsDeploy(bytecode)
                if (r) throw new Error(`deploy failed: ${r}`)
            },
            trustedKey: this.options.trustedKey,
        })
        this.server = server
        this.light = new StatusLightServer()
        this.provider = new JDServerServiceProvider("esp32s3-ota", [this.server, this.light], { deviceId: PERIPHERALS_DEVICE_ID })
        this.bus.addServiceProvider(this.provider)
        this.emit("boot", this.boots, this.server)

        const blank = flash.read(store.offset, store.size).every(b => b === 0xff)
        const firstPowerOn = !!this.options.bytecode && (blank || (!!this.options.deploy && this.boots === 1))
        const vm = await createVm()
        // the power may have been cut (or the device stopped) while the VM was made
        if (this.server !== server || this.stopped) return
        this.vm = vm
        vm.dmesg = line => this.onDmesg(line)
        vm.log = vm.error = (...args) => this.options.verbose && this.log(args.join(" "))
        vm.panicHandler = code => this.onPanic(vm, code)
        vm.flashSize = store.size
        vm.flashLoad = () => (this.vm === vm ? flash.read(store.offset, store.size) : new Uint8Array(0))
        vm.flashSave = data => this.vm === vm && saveChangedSectors(flash, store.offset, data)
        // Both directions are deferred: the VM drops frames that arrive while it runs.
        this.bridge = createProxyBridge(frame => setImmediate(() => vm.handlePacket(frame)))
        vm.sendPacket = frame => setImmediate(() => this.bridge?.receiveFrameOrPacket(frame))
        this.bridge.bus = this.bus
        vm.devsSetDeviceId(VM_DEVICE_ID)
        vm.devsStart()

        // A program copy cut short by a reset is finished before anything else.
        if (!blank) server.recoverProgram()
        // First power-on: deploy settings, then the program, like `devs` does.
        if (firstPowerOn) {
            await this.deploySettings()
            if (this.vm !== vm) return // power cut while the settings went in
            const r = vm.devsDeploy(this.options.bytecode!)
            if (r) throw new Error(`deploy failed: ${r}`)
        }
    }

    /**
     * Cuts the power now: the VM and the OTA server stop where they are (a flash
     * operation not started yet never happens; call it from SimFlash.beforeChange and
     * throw to cut before that operation), then the chip boots again from the flash
     * file. The program and its settings survive, as they are in flash on the chip.
     */
    powerCut() {
        const server = this.server
        if (this.stopped || !server) return
        server.flash.beforeChange = () => {
            throw new Error("power is off")
        }
        this.log("device: power cut")
        this.shutdown()
        this.server = undefined
        this.emit("power-cut", this.boots)
        setImmediate(() => {
            server.flash.close()
            if (!this.stopped) this.boot().catch(e => this.log(`device: boot failed: ${(e as Error).message}`))
        })
    }

    private async reboot() {
        if (this.stopped) return
        this.log(`device: reboot`)
        const flash = this.server?.flash
        this.shutdown()
        flash?.close()
        await this.boot()
    }

    private async deploySettings() {
        const settings = await this.waitForSettingsService()
        const client = new SettingsClient(settings)
        for (const [key, value] of Object.entries(this.options.settings))
            await client.setValue(key, Buffer.from(JSON.stringify(value)))
    }

    private async waitForSettingsService() {
        const deadline = Date.now() + SETTINGS_WAIT_MS
        for (;;) {
            const device = this.bus.device(VM_DEVICE_ID, true)
            const service = device?.services({ serviceClass: SRV_SETTINGS })[0]
            if (service) return service
            if (Date.now() > deadline) throw new Error("VM settings service did not appear")
            await new Promise(r => setTimeout(r, 20))
        }
    }

    // Called by the VM from inside its process call (devs_panic, fibers.c): the program
    // is already dead, and the runtime will restart it. 0 is ds.restart(), not a panic.
    private onPanic(vm: DevsModule, code: number) {
        if (!code || vm !== this.vm) return
        const panic: SimPanic = { code, name: panicName(code), boot: this.boots, panics: ++this.panics }
        this.log(`vm: panic ${code} (${panic.name})`)
        // Listeners may stop the device: not while the VM is still on the stack.
        setImmediate(() => this.emit("panic", panic))
    }

    private onDmesg(line: string) {
        if (line.startsWith("* start: ")) {
            const starts = ++this.programStarts
            const boot = this.boots
            setImmediate(() => this.emit("program-start", starts, boot))
        }
        if (!line.startsWith("> ")) {
            if (this.options.verbose) this.log(`vm: ${line}`)
            return
        }
        const text = line.slice(2)
        const i = text.indexOf(STATUS_PREFIX)
        if (i >= 0) {
            let parsed: any
            try {
                parsed = JSON.parse(text.slice(i + STATUS_PREFIX.length))
            } catch (e) {
                // the program printed a status line that is not JSON: say so, as an error
                parsed = { event: "error", error: `unreadable status line: ${(e as Error).message}` }
            }
            const status: DeviceStatus = { ...parsed, boot: this.boots }
            this.emit("status", status)
        }
        this.log(text)
    }

    private log(line: string) {
        this.options.log?.(line)
    }
}

/**
 * em_flash_save: the VM's whole flash. As the runtime's flash driver does on NOR, a
 * change that only clears bits (an appended setting, a header marked used) is written in
 * place; only a sector that needs a bit set again is erased and rewritten.
 */
function saveChangedSectors(flash: SimFlash, offset: number, data: Uint8Array) {
    for (let o = 0; o < data.length; o += SECTOR_SIZE) {
        const want = Buffer.from(data.subarray(o, o + SECTOR_SIZE))
        const have = flash.read(offset + o, want.length)
        if (have.equals(want)) continue
        let first = 0
        let last = want.length - 1
        while (have[first] === want[first]) first++
        while (have[last] === want[last]) last--
        let clearsOnly = true
        for (let i = first; i <= last && clearsOnly; i++) clearsOnly = (have[i] & want[i]) === want[i]
        if (clearsOnly) {
            flash.write(offset + o + first, want.subarray(first, last + 1))
            continue
        }
        flash.eraseSector(offset + o)
        if (!want.every(b => b === 0xff)) flash.write(offset + o, want)
    }
}
