// End to end on the real DeviceScript VM: the compiled program, the simulated OTA
// server over a flash file, and the release server emulator on loopback.
import * as assert from "node:assert/strict"
import { createHash } from "node:crypto"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startReleaseServer, writeRelease, ReleaseServer, FaultPlan } from "../tools/release-server"
import { buildAppImage, CHIP_IDS } from "../tools/esp-image"
import { SimDevice } from "../sim/device-sim"
import { buildProgram, deviceConstant } from "../sim/program"
import { createFlash, bootedImage, deviceSettings, runOnce, RunResult } from "../sim/run-once"
import { SimFlash } from "../sim/flash"

const OWNER = "acme"
const TOKEN = "github_pat_e2e_test_token"
const PATTERN = "widget-*-esp32s3.bin"
const TSX_CLI = join(__dirname, "..", "node_modules", "tsx", "dist", "cli.mjs")

describe("end to end on the DeviceScript VM", function () {
    let dir: string
    let server: ReleaseServer
    let bytecode: Buffer
    const logs: string[] = []

    before(() => {
        bytecode = buildProgram()
        dir = mkdtempSync(join(tmpdir(), "ota-e2e-"))
    })
    after(async () => {
        await server?.close()
        rmSync(dir, { recursive: true, force: true })
    })
    beforeEach(async () => {
        logs.length = 0
        await server?.close()
        server = await startReleaseServer({ dir: join(dir, "releases"), tokens: { [TOKEN]: "*" }, faults })
    })
    let corruptAt = -1 // asset offset to flip on the storage host, -1: none
    let latestBody: string | undefined // replaces the answer of releases/latest
    // The server reads its fault plan on every request, so these getters follow the variables above.
    const faults: FaultPlan = {
        get corruptAt() {
            return corruptAt >= 0 ? corruptAt : undefined
        },
        get latestBody() {
            return latestBody
        },
    }
    afterEach(function () {
        if (this.currentTest?.state === "failed") console.log(logs.join("\n"))
        corruptAt = -1
        latestBody = undefined
        assert.ok(!logs.some(l => l.includes(TOKEN)), "the token appeared in the device's log")
        assert.ok(!logs.some(l => l.startsWith("vm: panic")), "the VM panicked (out of memory or opcodes)")
        // The token never goes to the storage host, whatever happened in the test.
        for (const r of server.requests.filter(r => r.origin === "storage"))
            assert.equal(r.headers.authorization, undefined, `storage saw Authorization: ${r.url}`)
    })

    function run(repo: string, flashName: string, checks = 1, token = TOKEN): Promise<RunResult> {
        const flashFile = join(dir, flashName)
        createFlash(flashFile, "1.0.0")
        const device = new SimDevice({
            flashFile,
            bytecode,
            settings: deviceSettings({ api: server.apiUrl, owner: OWNER, repo, token, assetPattern: PATTERN, checkSeconds: 1 }),
            log: line => logs.push(line),
        })
        return runOnce(device, { checks, timeoutMs: 90_000 })
    }

    function publish(repo: string, tag: string, assets: { name: string; data: Buffer }[]) {
        writeRelease(join(dir, "releases"), OWNER, repo, tag, {
            assets,
            body: "Release notes\n".repeat(200),
        })
    }

    it("updates 1.0.0 -> 1.1.0 through the 302 and Range path, then 304 says up to date", async () => {
        const image = buildAppImage({ version: "1.1.0", payloadSize: 40_000, seed: 11 })
        publish("widget", "v1.1.0", [
            { name: "widget-1.1.0-esp32.bin", data: buildAppImage({ version: "1.1.0", payloadSize: 1000, chipId: 0 }) },
            { name: "widget-1.1.0-esp32s3.bin", data: image },
            { name: "widget-1.1.0.elf", data: Buffer.alloc(5000, 1) },
        ])
        const r = await run("widget", "update.flash", 2)
        assert.equal(r.result, "updated", JSON.stringify(r))
        assert.equal(r.from, "1.0.0")
        assert.equal(r.to, "1.1.0")
        assert.equal(r.slot, "ota_1")
        assert.equal(r.confirmed, true)
        assert.equal(r.notModified, true, "the second check should be answered 304")
        assert.equal(r.sha256, createHash("sha256").update(image).digest("hex"))

        // The flash boots ota_1, which holds exactly the asset's bytes.
        const booted = bootedImage(join(dir, "update.flash"))
        assert.equal(booted.slot, "ota_1")
        assert.equal(booted.pendingVerify, false)
        const flash = SimFlash.open(join(dir, "update.flash"))
        const slot = flash.partition("ota_1")
        assert.deepEqual(flash.read(slot.offset, image.length), image)

        const storage = server.requests.filter(q => q.origin === "storage")
        assert.ok(storage.length >= Math.ceil(image.length / deviceConstant("download.ts", "CHUNK_BYTES")), "downloaded in Range chunks")
        assert.ok(storage.every(q => q.status === 206 && /^bytes=\d+-\d+$/.test(String(q.headers.range))))
        const api = server.requests.filter(q => q.origin === "api")
        assert.ok(api.some(q => q.status === 302), "asset URL answered with a redirect")
        assert.ok(api.some(q => q.status === 304), "a check was answered 304 Not Modified")
    })

    it("refuses an asset whose bytes do not match its SHA-256 digest, and keeps booting 1.0.0", async () => {
        const image = buildAppImage({ version: "1.2.0", payloadSize: 20_000, seed: 12 })
        publish("corrupt", "v1.2.0", [{ name: "widget-1.2.0-esp32s3.bin", data: image }])
        corruptAt = 5000
        const r = await run("corrupt", "corrupt.flash")
        assert.equal(r.result, "error")
        assert.match(r.error, /sha256_mismatch/)
        const booted = bootedImage(join(dir, "corrupt.flash"))
        assert.deepEqual([booted.slot, booted.version], ["ota_0", "1.0.0"])
    })

    it("refuses an image built for another chip, and keeps booting 1.0.0", async () => {
        const image = buildAppImage({ version: "1.3.0", payloadSize: 20_000, chipId: CHIP_IDS.esp32 })
        publish("otherchip", "v1.3.0", [{ name: "widget-1.3.0-esp32s3.bin", data: image }])
        const r = await run("otherchip", "chip.flash")
        assert.equal(r.result, "error")
        assert.match(r.error, /wrong_chip/)
        const booted = bootedImage(join(dir, "chip.flash"))
        assert.deepEqual([booted.slot, booted.version], ["ota_0", "1.0.0"])
    })

    // Bad input that never reaches the OTA service: each ends in a clear error and the
    // flash still boots 1.0.0 in ota_0.
    async function expectRefusal(repo: string, pattern: RegExp, token = TOKEN) {
        const flashName = `${repo}.flash`
        const r = await run(repo, flashName, 1, token)
        assert.equal(r.result, "error", JSON.stringify(r))
        assert.match(r.error, pattern)
        const booted = bootedImage(join(dir, flashName))
        assert.deepEqual([booted.slot, booted.version, booted.pendingVerify], ["ota_0", "1.0.0", false])
        return r
    }

    it("reports a bad token as bad credentials, without the token", async () => {
        publish("badtoken", "v1.4.0", [{ name: "widget-1.4.0-esp32s3.bin", data: buildAppImage({ version: "1.4.0", payloadSize: 4096 }) }])
        const r = await expectRefusal("badtoken", /HTTP 401 bad credentials/, "github_pat_not_a_valid_one")
        assert.ok(!r.error.includes("github_pat_not_a_valid_one"))
    })

    it("reports a release without a matching asset", async () => {
        publish("noasset", "v1.5.0", [{ name: "widget-1.5.0-esp32c3.bin", data: buildAppImage({ version: "1.5.0", payloadSize: 4096 }) }])
        await expectRefusal("noasset", /no asset matches ASSET_PATTERN 'widget-\*-esp32s3.bin' or PROGRAM_ASSET '\*.devs' \(1 assets\)/)
    })

    it("reports malformed release JSON", async () => {
        publish("badjson", "v1.6.0", [{ name: "widget-1.6.0-esp32s3.bin", data: buildAppImage({ version: "1.6.0", payloadSize: 4096 }) }])
        latestBody = '{"tag_name":"v1.6.0","assets":[{"name":"widget-1.6.0-esp32s3.bin",,]}'
        await expectRefusal("badjson", /malformed JSON: json: expected key at byte 66/)
    })

    it("reads a release with 40 assets and 60 KB of notes within the 64 KB heap", async () => {
        const assets: { name: string; data: Buffer }[] = Array.from({ length: 40 }, (_, i) => ({ name: `widget-extra-${i}.zip`, data: Buffer.alloc(64, i) }))
        assets.push({ name: "widget-1.0.0-esp32s3.bin", data: buildAppImage({ version: "1.0.0", payloadSize: 4096 }) })
        writeRelease(join(dir, "releases"), OWNER, "big", "v1.0.0", { assets, body: "- a long line of release notes ✓\n".repeat(2000) })
        const r = await run("big", "big.flash", 2)
        assert.deepEqual([r.result, r.version, r.notModified], ["up-to-date", "1.0.0", true], JSON.stringify(r))
    })

    it("npm run device -- --once ends with one JSON line and its exit code", async () => {
        publish("cli", "v1.0.0", [{ name: "widget-1.0.0-esp32s3.bin", data: buildAppImage({ version: "1.0.0", payloadSize: 4096 }) }])
        const args = ["--api", server.apiUrl, "--owner", OWNER, "--repo", "cli", "--asset", PATTERN, "--no-build"]
        const ok = await runCli([...args, "--token", TOKEN, "--flash", join(dir, "cli.flash"), "--once"])
        const last = JSON.parse(ok.stdout.trim().split("\n").pop()!)
        assert.deepEqual([ok.code, last.result, last.version, last.slot], [0, "up-to-date", "1.0.0", "ota_0"])

        const bad = await runCli([...args, "--token", "github_pat_wrong", "--flash", join(dir, "cli-bad.flash"), "--once"])
        const error = JSON.parse(bad.stdout.trim().split("\n").pop()!)
        assert.deepEqual([bad.code, error.result], [1, "error"])
        assert.match(error.error, /HTTP 401 bad credentials/)
        assert.ok(!bad.stdout.includes("github_pat_wrong") && !bad.stderr.includes("github_pat_wrong"))
    })
})

// Runs the device CLI as a user would (the release server stays responsive meanwhile).
function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise(resolve => {
        const child = execFile(process.execPath, [TSX_CLI, "sim/device.ts", ...args], { cwd: join(__dirname, ".."), timeout: 60_000 },
            (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }))
    })
}
