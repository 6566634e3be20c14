// The native C OTA updater (native/otaupdater/otaupdater.c) as a ConformanceBackend: the
// server compiled for the host with fakes of ESP-IDF, FreeRTOS, jacdac-c and the DeviceScript
// runtime (native/host/), run as a child process and driven over its stdin/stdout line
// protocol (native/host/src/harness.c):
//
//   request                         answer (after zero or more `sent <report|event> <code hex> <payload hex|->`)
//   boot <slot> <flash file>        ok
//   cmd <code hex> <payload> <ms>   ok
//   reg <code hex>                  ok <payload> | err not-implemented
//   cut <n>                         ok
//   fail <n>                        ok
//   open <flash file>               ok            (loads the flash without powering on: queries after shutdown)
//   status                          ok <power lost 0|1> <restart requested 0|1> <on 0|1>
//   nvs <namespace/key>             ok <value hex> | ok none
//   deployed                        ok <restarts> <program hex> | ok <restarts> none
//   restarts <n>                    ok            (seeds the install count of a new process)
//   budget <ms>                     ok
//   shutdown                        ok
//
// A broken platform rule in the harness (a flash write over unerased bytes, a main-loop call
// over its time budget, jd_send off the main task, a sanitizer report, ...) ends the process
// with `fatal <message>` or a sanitizer report on stderr; the pending call rejects with it.
//
// The harness is built with `make -C native/host` the first time a backend starts (a no-op
// when it is up to date). OTA_NATIVE_IDF=5.5 selects the ESP-IDF 5.5.5 build (esp_ota_resume);
// the default is 5.0.5, what firmware/build.sh builds the runtime with. `signed: true` selects
// the 5.0.5 build of a device that accepts only signed apps (firmware/sdkconfig.signed; the
// trusted key is that of the signed image in the running slot).
import { ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process"
import * as path from "node:path"
import { BootInfo, ConformanceBackend, Sent } from "./backend"

export const NATIVE_HOST_DIR = path.join(__dirname, "..", "..", "native", "host")

export interface NativeBackendOptions {
    /** ESP-IDF version the harness pretends to be: "5.0" (firmware/build.sh) or "5.5"; default $OTA_NATIVE_IDF, else "5.0". */
    idf?: "5.0" | "5.5"
    /** Main-loop budget per call into the server, simulated ms (default 100). */
    budgetMs?: number
    /** Forward the harness's stderr (server logs with OTA_HOST_LOG=1, sanitizer reports). */
    verbose?: boolean
    /** A device built with firmware/sdkconfig.signed (ESP-IDF 5.0.5 only): commit checks Secure Boot v2 signatures. */
    signed?: boolean
}

/** Path of the harness binary for an ESP-IDF version (`signed`: the signed-apps build, 5.0.5). */
export function harnessPath(idf: "5.0" | "5.5" = "5.0", signed = false): string {
    if (signed && idf !== "5.0") throw new Error("the signed-apps harness is built for ESP-IDF 5.0.5 only")
    const name = signed ? "otaupdater-harness-signed" : idf === "5.5" ? "otaupdater-harness-idf55" : "otaupdater-harness"
    return path.join(NATIVE_HOST_DIR, "build", name)
}

const builtTargets = new Set<string>()

/** `make -C native/host <harness>` once per process; throws with make's output on failure. */
export function buildNativeHarness(idf: "5.0" | "5.5" = "5.0", signed = false): string {
    const bin = harnessPath(idf, signed)
    if (!builtTargets.has(bin)) {
        try {
            execFileSync("make", ["-C", NATIVE_HOST_DIR, "--no-print-directory", path.relative(NATIVE_HOST_DIR, bin)], {
                stdio: ["ignore", "pipe", "pipe"],
                encoding: "utf8",
            })
        } catch (e: any) {
            throw new Error(`building the native harness failed:\n${e.stdout ?? ""}${e.stderr ?? ""}`)
        }
        builtTargets.add(bin)
    }
    return bin
}

interface Pending {
    line: string
    lines: string[]
    resolve: (lines: string[]) => void
    reject: (e: Error) => void
}

export class NativeBackend implements ConformanceBackend {
    readonly name: string
    private proc?: ChildProcessWithoutNullStreams
    private readonly queue: Pending[] = []
    private buffered = ""
    private stderrTail: string[] = []
    private exitError?: Error
    private lastPowerLost = false
    private lastRestart = false
    private restarts = 0
    private armError?: Error
    private flashFile?: string

    private readonly idf: "5.0" | "5.5"

    constructor(private readonly options: NativeBackendOptions = {}) {
        this.idf = options.idf ?? (options.signed ? "5.0" : process.env.OTA_NATIVE_IDF === "5.5" ? "5.5" : "5.0")
        this.name = `native (ESP-IDF ${this.idf}${options.signed ? ", signed apps" : ""})`
        if (options.signed) harnessPath(this.idf, true) // throws for 5.5
    }

    async boot(flashFile: string, info: BootInfo): Promise<Sent[]> {
        this.start()
        this.flashFile = path.resolve(flashFile)
        const lines = await this.request(`boot ${info.runningSlot} ${this.flashFile}`)
        await this.refreshStatus()
        return parseSent(lines)
    }

    async command(code: number, payload: Buffer, settleMs = 0): Promise<Sent[]> {
        this.throwArmError()
        const hex = payload.length ? payload.toString("hex") : "-"
        const lines = await this.request(`cmd ${code.toString(16)} ${hex} ${Math.max(0, Math.ceil(settleMs))}`)
        await this.refreshStatus()
        return parseSent(lines)
    }

    async register(code: number): Promise<Buffer> {
        const lines = await this.request(`reg ${code.toString(16)}`)
        return parseHex(lastWord(lines))
    }

    armPowerCut(n: number): void {
        if (!Number.isInteger(n) || n < 1) throw new Error(`armPowerCut(${n}): a write number from 1`)
        // queued in order before whatever the runner sends next
        this.request(`cut ${n}`).catch(e => (this.armError = e))
    }

    armFlashFailure(n: number): void {
        if (!Number.isInteger(n) || n < 1) throw new Error(`armFlashFailure(${n}): a write number from 1`)
        this.request(`fail ${n}`).catch(e => (this.armError = e))
    }

    powerLost(): boolean {
        return this.lastPowerLost
    }

    restartRequested(): boolean {
        return this.lastRestart
    }

    async nvsGet(key: string): Promise<Buffer | undefined> {
        if (!/^[\x21-\x7e]+$/.test(key)) throw new Error(`nvsGet: bad key ${JSON.stringify(key)}`)
        await this.reopen()
        const lines = await this.request(`nvs ${key}`)
        const v = lastWord(lines)
        return v === "none" ? undefined : parseHex(v)
    }

    async deployed(): Promise<{ program?: Buffer; restarts: number }> {
        if (!this.proc && !this.flashFile) return { restarts: this.restarts }
        await this.reopen()
        const last = (await this.request("deployed")).at(-1)!.split(" ")
        this.restarts = Number(last[1])
        return { restarts: this.restarts, program: last[2] === "none" ? undefined : parseHex(last[2]) }
    }

    /** Powers off and ends the harness process (the next boot starts a new one). */
    async shutdown(): Promise<void> {
        if (!this.proc) return
        await this.deployed() // keeps the install count for the next process
        await this.request("shutdown")
        const proc = this.proc
        this.proc = undefined
        await new Promise<void>(resolve => {
            if (proc.exitCode !== null || proc.signalCode !== null) return resolve()
            proc.once("exit", () => resolve())
            proc.stdin.end()
        })
        // a sanitizer report at exit (LeakSanitizer runs then) fails the run
        const tail = this.stderrTail.join("\n")
        if (proc.exitCode !== 0 || /Sanitizer|runtime error:/.test(tail))
            throw new Error(`native harness ended with ${proc.signalCode ?? `code ${proc.exitCode}`}:\n${tail}`)
    }

    /** Main-loop figures of the harness: the longest call into the server and what it was. */
    async stats(): Promise<{ maxCallUs: number; calls: number; runtimeUs: number; what: string }> {
        const w = (await this.request("stats")).at(-1)!.split(" ")
        return { maxCallUs: Number(w[1]), calls: Number(w[2]), runtimeUs: Number(w[3]), what: w.slice(4).join(" ") }
    }

    // --- process and protocol ----------------------------------------------------------------

    /** After shutdown: a harness with the last flash file loaded, powered off, for queries. */
    private async reopen() {
        if (this.proc || !this.flashFile) return
        this.start()
        await this.request(`open ${this.flashFile}`)
    }

    private start() {
        if (this.proc) return
        const bin = buildNativeHarness(this.idf, this.options.signed)
        this.exitError = undefined
        this.stderrTail = []
        const proc = spawn(bin, [], {
            stdio: ["pipe", "pipe", "pipe"],
            env: {
                ...process.env,
                ASAN_OPTIONS: "detect_leaks=1:abort_on_error=1",
                UBSAN_OPTIONS: "print_stacktrace=1:halt_on_error=1",
            },
        })
        this.proc = proc
        proc.stdout.setEncoding("utf8")
        proc.stdout.on("data", (chunk: string) => this.onStdout(chunk))
        proc.stderr.setEncoding("utf8")
        proc.stderr.on("data", (chunk: string) => {
            if (this.options.verbose) process.stderr.write(chunk)
            this.stderrTail.push(...chunk.split("\n"))
            if (this.stderrTail.length > 60) this.stderrTail.splice(0, this.stderrTail.length - 60)
        })
        proc.on("exit", (code, signal) => {
            const tail = this.stderrTail.filter(l => l.trim()).join("\n")
            const err = new Error(
                `native harness exited (${signal ?? `code ${code}`})${tail ? `:\n${tail}` : ""}`,
            )
            if (this.proc === proc) this.proc = undefined
            this.exitError = err
            for (const p of this.queue.splice(0)) p.reject(err)
        })
        proc.stdin.on("error", () => {}) // a dead process is reported by "exit"
        if (this.options.budgetMs !== undefined) this.request(`budget ${this.options.budgetMs}`).catch(() => {})
        if (this.restarts) this.request(`restarts ${this.restarts}`).catch(() => {})
    }

    private request(line: string): Promise<string[]> {
        const proc = this.proc
        if (!proc) return Promise.reject(this.exitError ?? new Error("native harness not started (boot first)"))
        return new Promise((resolve, reject) => {
            this.queue.push({ line, lines: [], resolve, reject })
            proc.stdin.write(line + "\n")
        })
    }

    private onStdout(chunk: string) {
        this.buffered += chunk
        let nl: number
        while ((nl = this.buffered.indexOf("\n")) >= 0) {
            const line = this.buffered.slice(0, nl)
            this.buffered = this.buffered.slice(nl + 1)
            const p = this.queue[0]
            if (line.startsWith("fatal ")) {
                const err = new Error(`native harness: ${line.slice(6)}`)
                this.exitError = err
                for (const q of this.queue.splice(0)) q.reject(err)
                continue
            }
            if (!p) continue
            p.lines.push(line)
            if (line === "ok" || line.startsWith("ok ")) {
                this.queue.shift()
                p.resolve(p.lines)
            } else if (line.startsWith("err")) {
                this.queue.shift()
                p.reject(new Error(`native harness: ${p.line}: ${line.slice(4)}`))
            }
        }
    }

    private async refreshStatus() {
        const w = (await this.request("status")).at(-1)!.split(" ")
        this.lastPowerLost = w[1] === "1"
        this.lastRestart = w[2] === "1"
    }

    private throwArmError() {
        const e = this.armError
        this.armError = undefined
        if (e) throw e
    }
}

function lastWord(lines: string[]): string {
    const last = lines.at(-1) ?? ""
    return last.slice(last.lastIndexOf(" ") + 1)
}

function parseHex(s: string): Buffer {
    return s === "-" || s === "ok" ? Buffer.alloc(0) : Buffer.from(s, "hex")
}

function parseSent(lines: string[]): Sent[] {
    const out: Sent[] = []
    for (const line of lines) {
        if (!line.startsWith("sent ")) continue
        const [, kind, code, payload] = line.split(" ")
        out.push({ kind: kind === "event" ? "event" : "report", code: parseInt(code, 16), payload: parseHex(payload) })
    }
    return out
}
