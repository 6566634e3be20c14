// A program that panics on the simulated device: the device reports it and the runtime
// restarts the program (~5.24 s later, devsmgr.c), runOnce ends at the first panic
// unless allowPanics. Fixtures: test/fixtures/panic-*.ts, real DeviceScript VM.
import * as assert from "node:assert/strict"
import { EventEmitter } from "node:events"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { SimDevice, SimPanic } from "../sim/device-sim"
import { buildProgram, ROOT } from "../sim/program"
import { createFlash, runOnce } from "../sim/run-once"

const START_LINE = "panic-fixture: start"

/** The next `event` whose arguments satisfy `pred`; rejects after `ms`. */
function next(emitter: EventEmitter, event: string, ms: number, pred: (...args: any[]) => boolean = () => true) {
    return new Promise<any[]>((resolve, reject) => {
        const timer = setTimeout(() => {
            emitter.removeListener(event, on)
            reject(new Error(`no "${event}" within ${ms} ms`))
        }, ms)
        const on = (...args: any[]) => {
            if (!pred(...args)) return
            clearTimeout(timer)
            emitter.removeListener(event, on)
            resolve(args)
        }
        emitter.on(event, on)
    })
}

describe("panics on the simulated device", function () {
    this.timeout(40_000)
    let dir: string
    let oom: Buffer
    let loop: Buffer
    let logs: string[] = []

    before(() => {
        dir = mkdtempSync(join(tmpdir(), "ota-panic-"))
        oom = buildProgram({ entry: "test/fixtures/panic-oom.ts" })
        loop = buildProgram({ entry: "test/fixtures/panic-loop.ts" })
    })
    after(() => rmSync(dir, { recursive: true, force: true }))
    beforeEach(() => (logs = []))
    afterEach(function () {
        if (this.currentTest?.state === "failed") console.log(logs.join("\n"))
    })

    function device(name: string, bytecode: Buffer) {
        const flashFile = join(dir, `${name}.flash`)
        createFlash(flashFile, "1.0.0")
        return new SimDevice({ flashFile, bytecode, settings: {}, log: line => logs.push(line) })
    }

    it("builds fixtures without touching the main program's bytecode file", () => {
        assert.notDeepEqual(oom, loop)
        const shared = join(ROOT, ".devicescript", "bin", "bytecode.devs")
        if (!existsSync(shared)) return
        const main = readFileSync(shared)
        assert.notDeepEqual(main, oom)
        assert.notDeepEqual(main, loop)
    })

    it("runOnce ends at the first panic with the code, long before its timeout", async () => {
        const t0 = Date.now()
        const r = await runOnce(device("oom", oom), { timeoutMs: 20_000 })
        const ms = Date.now() - t0
        assert.deepEqual(r, { result: "error", error: "vm panic 60004 (out of memory)", panic: 60004, boot: 1 })
        assert.ok(ms < 5000, `took ${ms} ms`)
        assert.ok(logs.includes(START_LINE))
        assert.ok(logs.includes("vm: panic 60004 (out of memory)"))
    })

    it("names panic 60001 (128K opcodes without await)", async () => {
        const r = await runOnce(device("loop", loop), { timeoutMs: 20_000 })
        assert.equal(r.result, "error")
        assert.equal(r.panic, 60001)
        assert.equal(r.error, "vm panic 60001 (infinite loop, 128K opcodes without await)")
    })

    it("reports the panic, and the runtime restarts the program in the same boot (allowPanics)", async () => {
        const d = device("soak", oom)
        const server = () => d.server
        const firstPanic = next(d, "panic", 15_000)
        const restart = next(d, "program-start", 20_000, (starts: number) => starts === 2)
        const secondPanic = next(d, "panic", 20_000, (p: SimPanic) => p.panics === 2)
        // Ends at its timeout only; the events above come first.
        const run = runOnce(d, { allowPanics: true, timeoutMs: 10_000 })

        const [p1] = (await firstPanic) as [SimPanic]
        const tPanic = Date.now()
        assert.deepEqual(p1, { code: 60004, name: "out of memory", boot: 1, panics: 1 })
        assert.equal(d.panics, 1)
        const otaServer = server()
        assert.ok(otaServer)

        const [starts, boot] = await restart
        const delay = Date.now() - tPanic
        assert.equal(starts, 2)
        assert.equal(boot, 1, "a panic restarts the program, not the chip")
        assert.equal(d.boots, 1)
        assert.equal(server(), otaServer, "the OTA server lives on")
        // devsmgr.c: next_restart = now + SECONDS(5), SECONDS(n) = n * 2^20 us.
        assert.ok(delay >= 4500, `restarted ${delay} ms after the panic`)

        const [p2] = (await secondPanic) as [SimPanic]
        assert.deepEqual(p2, { code: 60004, name: "out of memory", boot: 1, panics: 2 })
        const starts2 = logs.filter(l => l === START_LINE).length
        assert.ok(starts2 >= 2, "the program printed its start line again")
        assert.ok(logs.indexOf("vm: panic 60004 (out of memory)") < logs.lastIndexOf(START_LINE))

        const r = await run
        assert.equal(r.result, "error")
        assert.match(r.error, /^timeout/)
        assert.equal(r.panic, undefined)
        assert.ok(r.panics >= 2, JSON.stringify(r))
    })
})
