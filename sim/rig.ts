// A test bench around one simulated device: the release server emulator with a fault
// plan, a release to install, the device program on the VM, and the checks that hold
// whatever happened (the token never reaches the storage host or a log line; the
// device boots either the old image or exactly the new one). Used by the end-to-end
// and fault tests, the soak run and the benchmark.
import { createHash, type KeyObject } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startReleaseServer, writeRelease, ReleaseServer, FaultPlan } from "../tools/release-server"
import { SimDevice } from "./device-sim"
import { inspectImage } from "../tools/esp-image"
import { SimFlash } from "./flash"
import { buildProgram } from "./program"
import { bootedImage, createFlash, deviceSettings, oldImage, runOnce, RunOnceOptions, RunResult } from "./run-once"

export const OWNER = "acme"
export const TOKEN = "github_pat_rig_test_token"

export interface RigRun {
    result: RunResult
    flashFile: string
    logs: string[]
    device: SimDevice
}

export interface RunOptions extends RunOnceOptions {
    token?: string
    assetPattern?: string
    /** more device settings (CHECK_SECONDS, SELFTEST_S, OTA_CHANNEL ...) */
    settings?: Record<string, string | number>
    /** called with the device before it starts (power cuts, listeners) */
    setup?: (device: SimDevice) => void
    /** keep the flash file of an earlier run (default: a new one with 1.0.0) */
    keepFlash?: boolean
    /** a signing device: the public key its OTA server trusts (SimDeviceOptions.trustedKey) */
    trustedKey?: KeyObject
}

const OLD_IMAGE_SHA256 = createHash("sha256").update(oldImage("1.0.0")).digest("hex")

/** What the flash boots: the old image, exactly the new one, or anything else. */
export type Outcome = "new" | "old" | "bricked"

export class Rig {
    readonly dir: string
    server!: ReleaseServer
    readonly bytecode: Buffer

    /** `bytecode`: the device program (default: src/main.ts, built now). */
    constructor(bytecode?: Buffer) {
        this.dir = mkdtempSync(join(tmpdir(), "ota-rig-"))
        this.bytecode = bytecode ?? buildProgram({ skip: !!process.env.OTA_SKIP_BUILD })
    }

    get releases() {
        return join(this.dir, "releases")
    }

    /** (Re)starts the release server with a fresh live fault plan. */
    async serve(faults: FaultPlan = {}) {
        await this.server?.close()
        this.server = await startReleaseServer({ dir: this.releases, tokens: { [TOKEN]: "*" }, faults })
        return this.server
    }

    publish(repo: string, tag: string, assets: { name: string; data: Buffer }[], extra: { body?: string; prerelease?: boolean } = {}) {
        writeRelease(this.releases, OWNER, repo, tag, { assets, body: extra.body ?? "Release notes\n".repeat(200), prerelease: extra.prerelease })
    }

    /** Runs the device program on `flashName` until runOnce decides. */
    async run(repo: string, flashName: string, o: RunOptions = {}): Promise<RigRun> {
        const flashFile = join(this.dir, flashName)
        if (!o.keepFlash) createFlash(flashFile, "1.0.0")
        const logs: string[] = []
        const settings = {
            ...deviceSettings({
                api: this.server.apiUrl,
                owner: OWNER,
                repo,
                token: o.token ?? TOKEN,
                assetPattern: o.assetPattern ?? "*-esp32s3.bin",
                checkSeconds: 1,
            }),
            ...(o.settings ?? {}),
        }
        const device = new SimDevice({ flashFile, bytecode: this.bytecode, settings, log: line => logs.push(line), trustedKey: o.trustedKey })
        o.setup?.(device)
        const result = await runOnce(device, { checks: 1, timeoutMs: 120_000, ...o })
        return { result, flashFile, logs, device }
    }

    /** Which image the flash boots: exactly the old one (1.0.0 as createFlash wrote it), exactly `image`, or anything else. */
    outcome(flashFile: string, image: Buffer): Outcome {
        let booted: ReturnType<typeof bootedImage>
        try {
            booted = bootedImage(flashFile)
        } catch {
            return "bricked" // nothing bootable
        }
        if (booted.slot === "ota_0" && !booted.pendingVerify && booted.sha256 === OLD_IMAGE_SHA256) return "old"
        // (bootedImage hashes the image up to its appended SHA-256, without a signature sector)
        const sha = createHash("sha256").update(image.subarray(0, inspectImage(image).imageLength || image.length)).digest("hex")
        if (booted.sha256 === sha) {
            // the slot holds exactly the asset's bytes (a signature sector included)
            const flash = SimFlash.open(flashFile)
            try {
                const slot = flash.partition(booted.slot)
                if (flash.read(slot.offset, image.length).equals(image)) return "new"
            } finally {
                flash.close()
            }
        }
        return "bricked"
    }

    /** Leaks: the token in a storage request or in a log line. Empty when clean. */
    leaks(logs: string[], token = TOKEN): string[] {
        const out: string[] = []
        for (const r of this.server.requests)
            if (r.origin === "storage" && (r.headers.authorization !== undefined || JSON.stringify(r.headers).includes(token)))
                out.push(`storage saw the token: ${r.url.split("?")[0]}`)
        for (const l of logs) if (l.includes(token)) out.push(`log line with the token: ${l.slice(0, 80)}`)
        return out
    }

    async close() {
        await this.server?.close()
        rmSync(this.dir, { recursive: true, force: true })
    }
}
