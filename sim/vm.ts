// Loads the real DeviceScript VM (emscripten/WASM) from the pinned @devicescript/cli
// bundle and runs it in this process. The CLI does not export the VM factory, so the
// factory's source is cut out of the bundle between two markers and evaluated here.
import { readFileSync } from "node:fs"
import { runInThisContext } from "node:vm"
import { deviceSockets, VmTurns } from "./device-socket"

const START_MARKER = "// runtime/devicescript-vm/built/devicescript-vm.js"
const END_MARKER = "// dap/built/devicescript-dap.cjs"

/** The subset of the emscripten module that this project drives. */
export interface DevsModule {
    sendPacket: (frame: Uint8Array) => void
    handlePacket(frame: Uint8Array): void
    panicHandler: (code: number) => void
    deployHandler?: (code: number) => void
    flashLoad: (() => Uint8Array) | null
    flashSave: ((data: Uint8Array) => void) | null
    /** Bytes of the VM's flash (em_flash_size); 128 KB when unset. */
    flashSize?: number
    dmesg: (line: string) => void
    log: (...args: any[]) => void
    error: (...args: any[]) => void
    devsSetDeviceId(id: string): void
    devsStart(): void
    devsStop(): void
    devsDeploy(bytecode: Uint8Array): number
    devsIsRunning(): boolean
    devsGcStress(on: boolean): void
    sockClose(): number
}

let factorySource: string | undefined

function loadFactorySource(): string {
    if (factorySource) return factorySource
    const bundle = readFileSync(require.resolve("@devicescript/cli/built/devicescript-cli.cjs"), "utf8")
    const start = bundle.indexOf(START_MARKER)
    const end = bundle.indexOf(END_MARKER, start)
    if (start < 0 || end < 0) throw new Error("DeviceScript VM not found in @devicescript/cli bundle")
    factorySource = bundle.slice(start, end)
    return factorySource
}

/** Creates a fresh VM instance (fresh RAM, like a reset). */
export async function createVm(): Promise<DevsModule> {
    const wrapped = `(function (require, __filename, __dirname) {
        var __commonJS = (cb, mod) => function () {
            return mod || (0, cb[Object.keys(cb)[0]])((mod = { exports: {} }).exports, mod), mod.exports
        };
        ${loadFactorySource()}
        return require_devicescript_vm();
    })`
    // Sockets are paced like the ESP32 runtime's: one receive window per VM turn.
    const turns = new VmTurns()
    const sockets = deviceSockets(turns)
    const requireShim = (name: string) => {
        if (name === "net") return sockets.net
        if (name === "tls") return sockets.tls
        return require(name)
    }
    const factory = runInThisContext(wrapped, { filename: "devicescript-vm.js" })(requireShim, __filename, __dirname)
    const vm: DevsModule = await factory()
    const process = (vm as any)._jd_em_process
    ;(vm as any)._jd_em_process = () => {
        const next = process()
        turns.tick()
        return next
    }
    return vm
}

// The VM's panic codes: DEVS_PANIC_* in runtime/devicescript/devicescript.h, with the
// messages devs_panic() prints for them (runtime/devicescript/fibers.c). Codes from 60100
// on are bytecode checks that failed at run time (_devs_invalid_program, fibers.c).
export const PANIC_NAMES: Record<number, string> = {
    60000: "restart requested", // DEVS_PANIC_REBOOT: ds.restart(); panicHandler gets 0
    60001: "infinite loop, 128K opcodes without await", // DEVS_PANIC_TIMEOUT (vm_main.c)
    60002: "internal error", // DEVS_PANIC_INTERNAL_ERROR, not used by the runtime
    60003: "runtime failure", // DEVS_PANIC_RUNTIME_FAILURE, not used by the runtime
    60004: "out of memory", // DEVS_PANIC_OOM (devs_oom, devicescript.c)
    60005: "unhandled exception", // DEVS_PANIC_UNHANDLED_EXCEPTION (try.c)
    60006: "stack overflow", // DEVS_PANIC_STACK_OVERFLOW (fibers.c)
}

/** "out of memory" for 60004, ... */
export function panicName(code: number): string {
    if (PANIC_NAMES[code]) return PANIC_NAMES[code]
    if (code >= 60100 && code < 61000) return `invalid program (check ${code - 60000})`
    return "panic"
}
