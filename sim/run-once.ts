// Drives a simulated device through one check (and update, reboot, confirm) and sums
// it up as one result object: what `npm run device -- --once` prints last. A panic of
// the program ends the run (the runtime would restart it ~5 s later and try again):
// { result: "error", error: "vm panic 60004 (out of memory)", panic: 60004, boot }.
import { createHash } from "node:crypto"
import { SimDevice, DeviceStatus, SimPanic } from "./device-sim"
import { SimFlash } from "./flash"
import { peekBoot } from "./bootloader"
import { buildAppImage } from "../tools/esp-image"

export interface RunResult {
    result: "updated" | "up-to-date" | "rolled-back" | "error"
    [field: string]: any
}

export interface RunOnceOptions {
    checks?: number // checks to see in the last boot before stopping (default 1)
    timeoutMs?: number
    onStatus?: (s: DeviceStatus) => void
    /** Keep running through panics (the runtime restarts the program) instead of ending
     * with result "error" at the first one: for soak runs. */
    allowPanics?: boolean
    /** Keep running through error statuses (the program retries at its next check)
     * instead of ending with result "error" at the first one. */
    allowErrors?: boolean
    /** Ends the run early with what it returns, when it returns a result. */
    until?: (s: DeviceStatus) => RunResult | undefined
}

export interface UpdateSettings {
    api: string
    owner: string
    repo: string
    token?: string
    assetPattern?: string
    checkSeconds?: number
}

/** The device program's settings (see .env.defaults) for a simulated run. */
export function deviceSettings(s: UpdateSettings): Record<string, string | number> {
    const out: Record<string, string | number> = { GITHUB_API: s.api, GITHUB_OWNER: s.owner, GITHUB_REPO: s.repo }
    if (s.token !== undefined) out.GITHUB_TOKEN = s.token
    if (s.assetPattern !== undefined) out.ASSET_PATTERN = s.assetPattern
    if (s.checkSeconds !== undefined) out.CHECK_SECONDS = s.checkSeconds
    return out
}

/** A new flash file with an image of `version` in ota_0, as a factory would flash it. */
export function createFlash(file: string, version: string, payloadSize = 64 * 1024) {
    SimFlash.createWithImage(file, oldImage(version, payloadSize))
}

/** The factory image createFlash puts in ota_0 (deterministic). */
export function oldImage(version: string, payloadSize = 64 * 1024) {
    return buildAppImage({ version, payloadSize, projectName: "devicescript-ota" })
}

/** Slot, version and SHA-256 of the image the flash boots now. */
export function bootedImage(file: string) {
    const flash = SimFlash.open(file)
    try {
        const boot = peekBoot(flash)
        const image = flash.readImage(boot.slot)
        return {
            slot: boot.label,
            version: boot.version,
            pendingVerify: boot.pendingVerify,
            sha256: createHash("sha256").update(image).digest("hex"),
        }
    } finally {
        flash.close()
    }
}

export function runOnce(device: SimDevice, options: RunOnceOptions = {}): Promise<RunResult> {
    const checks = options.checks || 1
    let committed: DeviceStatus
    let confirmed = false
    let checksSeen = 0 // up-to-date checks since power-on, or since the last commit

    return new Promise<RunResult>((resolve, reject) => {
        const timer = setTimeout(
            () => finish({ result: "error", error: `timeout after ${options.timeoutMs} ms` }),
            options.timeoutMs || 600_000
        )
        let done = false
        const finish = (r: RunResult) => {
            if (done) return
            done = true
            clearTimeout(timer)
            device.removeListener("status", onStatus)
            device.removeListener("panic", onPanic)
            if (options.allowPanics && device.panics) r = { ...r, panics: device.panics }
            device.stop().then(() => resolve(r), reject)
        }
        const onPanic = (p: SimPanic) => {
            if (!options.allowPanics)
                finish({ result: "error", error: `vm panic ${p.code} (${p.name})`, panic: p.code, boot: p.boot })
        }
        const onStatus = (s: DeviceStatus) => {
            options.onStatus?.(s)
            const early = options.until?.(s)
            if (early) return finish(early)
            if (s.event === "committed") {
                committed = s
                checksSeen = 0
            } else if (s.event === "confirmed") confirmed = true
            else if (s.event === "error" && !options.allowErrors) finish({ result: "error", error: s.error, boot: s.boot })
            else if (s.event === "up-to-date" && committed?.target === "program") {
                // a new program restarts in the same boot and reports its own version
                if (++checksSeen < checks) return
                const image = bootedImage(device.options.flashFile)
                const ok = s.program === committed.to
                finish({
                    result: ok ? "updated" : "error",
                    target: "program",
                    from: committed.from,
                    to: s.program,
                    version: s.version,
                    slot: image.slot,
                    seconds: committed.seconds,
                    ...(ok ? {} : { error: `program ${s.program} runs, not ${committed.to}` }),
                })
            } else if (s.event === "up-to-date" && (!committed || s.boot > committed.boot)) {
                if (++checksSeen < checks) return
                const image = bootedImage(device.options.flashFile)
                if (!committed)
                    return finish({ result: "up-to-date", version: s.version, latest: s.latest, notModified: s.notModified, slot: image.slot })
                const bootedNew = image.version === stripV(committed.to)
                finish({
                    result: bootedNew ? "updated" : "error",
                    from: committed.from,
                    to: image.version,
                    slot: image.slot,
                    sha256: image.sha256,
                    confirmed: confirmed && !image.pendingVerify,
                    seconds: committed.seconds,
                    notModified: s.notModified,
                    ...(bootedNew ? {} : { error: `booted ${image.version}, not ${committed.to}` }),
                })
            }
        }
        device.on("status", onStatus)
        device.on("panic", onPanic)
        device.start().catch(e => finish({ result: "error", error: (e as Error).message }))
    })
}

function stripV(tag: string) {
    return tag.replace(/^[vV]/, "")
}
