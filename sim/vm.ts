// Loads the real DeviceScript VM (emscripten/WASM) from the pinned @devicescript/cli
// bundle and runs it in this process. The CLI does not export the VM factory, so the
// factory's source is cut out of the bundle between two markers and evaluated here.
import { readFileSync } from "node:fs"
import * as net from "node:net"
import * as tls from "node:tls"
import { runInThisContext } from "node:vm"

const START_MARKER = "// runtime/devicescript-vm/built/devicescript-vm.js"
const END_MARKER = "// dap/built/devicescript-dap.cjs"

// The ESP32 runtime reads its socket in 128-byte pieces (devicescript-esp32
// main/sock.c, jd_tcpsock_process) and hands each to the VM; Node delivers up to 64 KB
// at once, which no 64 KB VM heap could take. Splitting makes the simulator deliver
// data the way the device does.
export const TCP_SEGMENT_BYTES = 128

/** The subset of the emscripten module that this project drives. */
export interface DevsModule {
    sendPacket: (frame: Uint8Array) => void
    handlePacket(frame: Uint8Array): void
    panicHandler: (code: number) => void
    deployHandler?: (code: number) => void
    flashLoad: (() => Uint8Array) | null
    flashSave: ((data: Uint8Array) => void) | null
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

// Makes a socket emit "data" in pieces of at most TCP_SEGMENT_BYTES.
function segmented<T extends net.Socket>(sock: T): T {
    const on = sock.on.bind(sock)
    sock.on = ((event: string, fn: (...a: any[]) => void) => {
        if (event !== "data") return on(event, fn)
        return on("data", (buf: Buffer) => {
            for (let i = 0; i < buf.length; i += TCP_SEGMENT_BYTES)
                fn(buf.subarray(i, i + TCP_SEGMENT_BYTES))
        })
    }) as any
    return sock
}

const segmentingNet = { ...net, createConnection: (...a: any[]) => segmented((net.createConnection as any)(...a)) }
const segmentingTls = { ...tls, connect: (...a: any[]) => segmented((tls.connect as any)(...a)) }

/** Creates a fresh VM instance (fresh RAM, like a reset). */
export async function createVm(): Promise<DevsModule> {
    const wrapped = `(function (require, __filename, __dirname) {
        var __commonJS = (cb, mod) => function () {
            return mod || (0, cb[Object.keys(cb)[0]])((mod = { exports: {} }).exports, mod), mod.exports
        };
        ${loadFactorySource()}
        return require_devicescript_vm();
    })`
    const requireShim = (name: string) => {
        if (name === "net") return segmentingNet
        if (name === "tls") return segmentingTls
        return require(name)
    }
    const factory = runInThisContext(wrapped, { filename: "devicescript-vm.js" })(requireShim, __filename, __dirname)
    const vm: DevsModule = await factory()
    return vm
}
