// The simulated device on the real devtools hub: `npx devicescript devtools` (the CLI at
// its pinned version, offline), `npm run sim` (sim/devtools.ts) joining it and asking it to
// build and deploy src/main.ts with .env.defaults, and a separate jacdac-ts client on
// devtools' TCP bus that watches the OTA updater's registers through the whole update,
// as the VS Code extension's device tree does.
import { strict as assert } from "node:assert"
import { ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { EVENT, JDBus, JDService } from "jacdac-ts"
import { OtaUpdaterEvent, OtaUpdaterState, SRV_OTA_UPDATER } from "../.devicescript/ts/constants"
import { devtoolsClient, OtaRegisters, readOtaRegisters } from "../sim/watch"
import { checkPortFree, DEVTOOLS_TCP_PORT, DEVTOOLS_WS_PORT, SIM_API_PORT, Sim, startSim, waitForListener } from "../sim/devtools"
import { readEnvSettings, ROOT } from "../sim/program"

const DEVTOOLS_DBG_PORT = 8083
const POLL_MS = 100

describe("devtools: the simulated device on `devicescript devtools`, watched by a jacdac-ts client", function () {
    this.timeout(180_000)
    let devtools: ChildProcess | undefined
    let devtoolsLog = ""
    let sim: Sim | undefined
    let watcher: JDBus | undefined
    const dir = mkdtempSync(join(tmpdir(), "ota-devtools-"))
    const simLog: string[] = []

    before(async () => {
        // devtools' ports are fixed; so is the emulator's, which .env.defaults names
        for (const [port, what] of [
            [DEVTOOLS_WS_PORT, "devtools dashboard/WebSocket"],
            [DEVTOOLS_TCP_PORT, "devtools TCP"],
            [DEVTOOLS_DBG_PORT, "devtools debugger"],
            [SIM_API_PORT, "release server emulator API"],
            [SIM_API_PORT + 1, "release server emulator storage"],
        ] as const)
            await checkPortFree(port, what)
        await startDevtools()
    })

    async function startDevtools() {
        const cli = require.resolve("@devicescript/cli/built/devicescript-cli.cjs")
        devtools = spawn(process.execPath, [cli, "devtools"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] })
        devtools.stdout!.on("data", d => (devtoolsLog += d))
        devtools.stderr!.on("data", d => (devtoolsLog += d))
        await waitForListener(DEVTOOLS_TCP_PORT, 60_000)
    }

    after(async () => {
        await watcher?.stop()
        await sim?.stop()
        devtools?.kill()
        rmSync(dir, { recursive: true, force: true })
    })

    it("deploys src/main.ts through devtools and shows the update in the OTA updater's registers: progress 0 to 100%, ready, then the new running version", async () => {
        const settings = readEnvSettings()
        assert.equal(settings.GITHUB_API, `http://127.0.0.1:${SIM_API_PORT}`, ".env.defaults must point at the emulator of npm run sim")

        // the watcher first, so that it sees the device from the start
        watcher = await devtoolsClient()

        sim = await startSim({ flashFile: join(dir, "esp32s3.flash"), reset: true, imageKb: 48, log: l => simLog.push(l) })
        const why = () => `\n--- sim ---\n${simLog.slice(-40).join("\n")}\n--- devtools ---\n${devtoolsLog.slice(-3000)}`

        const samples: OtaRegisters[] = []
        const readyEvents: number[] = [] // time of each `ready` event (commit validated the image)
        let watched: JDService | undefined
        const deadline = performance.now() + 150_000
        for (;;) {
            const ota = watcher.services({ serviceClass: SRV_OTA_UPDATER })[0]
            if (ota && ota !== watched) {
                watched = ota
                ota.event(OtaUpdaterEvent.Ready).on(EVENT, () => readyEvents.push(performance.now()))
            }
            if (ota) {
                try {
                    const s = await readOtaRegisters(ota)
                    samples.push(s)
                    if (s.version === "1.1.0" && !s.pendingVerify) break // rebooted, confirmed
                } catch {
                    // a read that timed out across the reboot: the next poll reads the new boot
                }
            }
            assert.ok(performance.now() < deadline, `no confirmed 1.1.0 in the registers within 150 s${why()}`)
            await new Promise(r => setTimeout(r, POLL_MS))
        }

        const before = samples.filter(s => s.version === "1.0.0")
        const after = samples.filter(s => s.version === "1.1.0")
        assert.ok(before.length > 0, `the watcher saw the old image running${why()}`)
        assert.equal(before[0].progress, 0, "progress starts at 0")
        const receiving = before.filter(s => s.state === OtaUpdaterState.Receiving)
        assert.ok(receiving.length >= 3, `several samples while receiving (${receiving.length})${why()}`)
        const partial = receiving.filter(s => s.progress > 0 && s.progress < 1)
        assert.ok(partial.length >= 2, `progress seen between 0 and 100% (${partial.map(s => s.progress.toFixed(2)).join(", ")})`)
        for (let i = 1; i < before.length; i++)
            assert.ok(before[i].progress >= before[i - 1].progress, "progress never goes back within the update")
        assert.ok(receiving.some(s => s.throughput > 0), "throughput is reported while receiving")
        // ready lasts from commit's report to the reboot the program asks for at once, too
        // short for polling to catch every time: the service's `ready` event says it
        assert.equal(readyEvents.length, 1, `one ready event${why()}`)
        assert.ok(readyEvents[0] < after[0].t, "ready came before the new image ran")
        // (a refresh resolves on any report of the register, so one value may lag one poll)
        assert.ok(before.some(s => s.progress > 0.9999), `progress reached 100% (${before.map(s => s.progress.toFixed(2)).join(" ")})`)
        assert.ok(after.length > 0)
        assert.equal(after[after.length - 1].pendingVerify, false, "the new image confirmed itself")
        // the program and its settings came from devtools (the emulator's repository)
        assert.ok(/deploy to/.test(devtoolsLog), `devtools deployed the program${why()}`)
        assert.ok(simLog.some(l => l.includes(`watching ${settings.GITHUB_OWNER}/${settings.GITHUB_REPO}`)), "the settings reached the VM")
    })

    it("joins devtools again after devtools restarts (a VS Code window reload), with the device still running 1.1.0", async () => {
        assert.ok(sim, "the first test started the simulator")
        await watcher?.stop()
        const old = devtools!
        await new Promise(r => {
            old.once("exit", r)
            old.kill()
        })
        await startDevtools()
        watcher = await devtoolsClient()
        const deadline = performance.now() + 30_000
        for (;;) {
            const ota = watcher.services({ serviceClass: SRV_OTA_UPDATER })[0]
            if (ota) {
                const s = await readOtaRegisters(ota).catch(() => undefined)
                if (s) {
                    assert.equal(s.version, "1.1.0")
                    break
                }
            }
            assert.ok(performance.now() < deadline, `the device did not come back on the new devtools' bus within 30 s\n${simLog.slice(-10).join("\n")}`)
            await new Promise(r => setTimeout(r, 200))
        }
        assert.ok(simLog.some(l => l.includes("sim: joined devtools again")))
    })
})
