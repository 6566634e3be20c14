// The update loop a program starts with startOta(): options (or settings), the schedule
// of checks with backoff and jitter, the self-test window of a new image, and the status
// that the program can watch.
import * as ds from "@devicescript/core"
import { readSetting, writeSetting } from "@devicescript/settings"
import { OtaClient, OtaError, writePolicy } from "./otaclient"
import { Updater, ReleaseError, status, statusListener } from "./updater"
import { Channel, GithubConfig, GithubError, SavedEtag } from "./github"
import { Backoff } from "./backoff"
import { DEFAULT_TIMEOUTS, closeIdle } from "./http"

const MIN_INTERVAL_S = 1
const MAX_INTERVAL_S = 7 * 24 * 3600 // a week: longer intervals are this
const MAX_WRITE_RATE = 50 // the VM's packet throttle (jdiface.c): more is the same
const MAX_TIMEOUT_MS = 3600 * 1000
const JITTER = 0.1 // checks are spread by +-10% of the interval
const ETAG_KEY = "OTA_ETAG"
/** Writes per second the updater sends by default: 40 of the VM's 50 (jdiface.c throttle). */
export const DEFAULT_WRITE_RATE = 40

/**
 * Options of startOta(). Every option left out is read from the program's settings
 * (`.env.defaults`, `.env.local`), under the key in brackets, then the default.
 */
export interface OtaOptions {
    /** Repository owner [GITHUB_OWNER]; required. */
    owner?: string
    /** Repository name [GITHUB_REPO]; required. */
    repo?: string
    /** Token [GITHUB_TOKEN]; sent to `api`'s origin only. Fine-grained, Contents: read. */
    token?: string
    /** API origin [GITHUB_API], default `https://api.github.com`. */
    api?: string
    /** Firmware asset name, `*` and `?` wildcards [ASSET_PATTERN], default `*.bin`. */
    assetPattern?: string
    /** DeviceScript program asset name [PROGRAM_ASSET], default `*.devs`; "" never updates the program. */
    programAsset?: string
    /** `stable` (releases/latest) or `prerelease` (newest by semver of the last 10) [OTA_CHANNEL]. */
    channel?: Channel
    /** Seconds between checks [CHECK_SECONDS], default 3600, from 1 to a week; spread by +-10%. */
    checkSeconds?: number
    /** Seconds a new image has to reach the release API before it rolls back [SELFTEST_S], default 300. */
    selfTestSeconds?: number
    /**
     * Image writes (232 bytes each) the updater may send per second [OTA_WRITE_HZ], from 1
     * to 50, default 40 of the VM's 50 packets per second. Every packet of the program goes
     * through one throttle (5 at once, then one per 20 ms), so the rest is what the
     * program's own packets get during an update: 40 leaves 10 packets/s and moves
     * ~8.7 KB/s; 50 moves ~9.1 KB/s beside a program that blinks every 100 ms, whose
     * packets then wait behind the writes (20-40 ms each; measured by npm run bench).
     */
    writeRate?: number
    /** The OTA updater service to use; default `new ds.OtaUpdater("ota[int:0]")`, the device's own. */
    service?: ds.OtaUpdater
}

/**
 * One status event, as printed on the console (`ota-status {...}`): `event` is
 * `up-to-date`, `committed`, `resumed`, `confirmed`, `rate-limited`, `self-test-failed`
 * or `error` (with `error`, a message), plus `progress` ({ to, done, total } in bytes,
 * every 2 s of a download; not printed as a status line).
 */
export interface OtaEvent {
    event: string
    /** `error`, `rate-limited`: what went wrong, naming the setting to fix where there is one */
    error?: string
    /** `progress`: bytes written so far and of the whole asset */
    done?: number
    total?: number
    [field: string]: any
}

/**
 * A value the program reads and watches, like a DeviceScript client register
 * (`read()`, `subscribe(handler)`), except that a handler that throws is logged
 * (`ota: a status handler threw: ...`, `ota: a busy handler threw: ...`) instead of
 * ending the program: an update must not depend on the program's handlers.
 */
export class OtaValue<T> {
    private reg: ds.ClientRegister<T>

    /** `name` says whose handler threw in the log line ("status", "busy"). */
    constructor(
        value: T,
        private name: string
    ) {
        this.reg = ds.clientRegister<T>(value)
    }

    /** The current value. */
    async read(): Promise<T> {
        return await this.reg.read()
    }

    /** Calls `handler` with every new value (in its own fiber); returns the unsubscribe function. */
    subscribe(handler: (value: T) => ds.AsyncVoid): ds.Unsubscribe {
        const name = this.name
        return this.reg.subscribe(async (value: T) => {
            try {
                await handler(value)
            } catch (e) {
                // (anything can be thrown, not only an Error)
                const what = e instanceof Error ? e.message : `${e}`
                console.log(`ota: a ${name} handler threw: ${what}`)
            }
        })
    }

    /** @internal */
    _set(value: T) {
        this.reg.emit(value)
    }
}

/** The handle startOta() returns. */
export class OtaUpdate {
    /** The last status event; subscribe to see each one. Starts as `{ event: "starting" }`. */
    readonly status = new OtaValue<OtaEvent>({ event: "starting" }, "status")
    /**
     * True from the first byte of a download until the update is committed or failed
     * (what an application may want to slow down for); false otherwise.
     */
    readonly busy = new OtaValue<boolean>(false, "busy")
    /** The running program's own build version (`@version`, from the git tag at build time). */
    readonly programVersion = ds._dcfgString("@version") || "(none)"
    private wakeup = ds.emitter<boolean>()

    /** Checks now instead of at the next scheduled time. */
    checkNow() {
        this.wakeup.emit(true)
    }

    /** @internal waits `ms` or until checkNow() */
    async _sleep(ms: number) {
        await ds.wait(this.wakeup, ms)
    }
}

let started: OtaUpdate

/**
 * Starts checking the repository's releases in the background (its own fiber) and
 * installs a newer firmware or program asset through the OTA updater service: the device
 * reboots into new firmware, and a new program restarts the program. Call it once, at the
 * start of the program; a second call returns the same handle (its options are ignored).
 * Errors never throw here: they are `error` events. A missing or malformed option or
 * setting (no owner, a channel or number that cannot be read) is reported once and no
 * check runs until the program is deployed again; the network, the API and refused
 * images are retried (backoff for transient failures, the next scheduled check for 4xx).
 */
export function startOta(options?: OtaOptions): OtaUpdate {
    if (started) return started
    started = new OtaUpdate()
    runLoop.start(started, options || {})
    return started
}

async function str(given: string, key: string, def: string) {
    if (given !== undefined && given !== null) return given + ""
    return (await readSetting<string>(key, def)) + ""
}

// A number option or setting, brought into [min, max]; one that is not a number is an
// error that names the setting.
async function num(given: number, key: string, def: number, min: number, max: number) {
    const raw = given !== undefined && given !== null ? given : await readSetting(key, def)
    const v = +raw
    if (!(v > -1e15 && v < 1e15)) throw new Error(`setting ${key} must be a number, not '${raw}'`)
    return Math.min(Math.max(v, min), max)
}

async function loadConfig(o: OtaOptions): Promise<GithubConfig> {
    const channel = await str(o.channel, "OTA_CHANNEL", "stable")
    if (channel !== "stable" && channel !== "prerelease")
        throw new Error(`setting OTA_CHANNEL must be 'stable' or 'prerelease', not '${channel}'`)
    const cfg: GithubConfig = {
        api: await str(o.api, "GITHUB_API", "https://api.github.com"),
        owner: await str(o.owner, "GITHUB_OWNER", ""),
        repo: await str(o.repo, "GITHUB_REPO", ""),
        token: await str(o.token, "GITHUB_TOKEN", ""),
        assetPattern: await str(o.assetPattern, "ASSET_PATTERN", "*.bin"),
        programPattern: await str(o.programAsset, "PROGRAM_ASSET", "*.devs"),
        channel: channel as Channel,
    }
    if (!cfg.owner || !cfg.repo) throw new Error("settings GITHUB_OWNER and GITHUB_REPO are required")
    return cfg
}

// "<key hash> <etag> <tag>": none of them holds a space (RFC 9110 entity-tag, git refs),
// and at most ~180 bytes, well within a settings packet
async function loadEtag(): Promise<SavedEtag> {
    const parts = (await str(undefined, ETAG_KEY, "")).split(" ")
    return parts.length === 3 ? { key: parts[0], etag: parts[1], tag: parts[2] } : null
}

async function saveEtag(s: SavedEtag) {
    await writeSetting(ETAG_KEY, s ? `${s.key} ${s.etag} ${s.tag}` : "")
}

function jittered(ms: number) {
    return Math.round(ms * (1 - JITTER + 2 * JITTER * Math.random()))
}

// Heap probe (benchmark only): holds this many bytes of the 64 KB heap for the
// program's life, so the largest ballast that still passes measures the headroom.
let ballast: Buffer

async function runLoop(handle: OtaUpdate, o: OtaOptions) {
    statusListener.fn = (fields: OtaEvent) => {
        // progress up to commit's answer is busy (the last bytes are still being written)
        if (fields.event === "progress") handle.busy._set(true)
        else if (fields.event !== "resumed") handle.busy._set(false)
        handle.status._set(fields)
    }
    const probe = +(await readSetting("HEAP_BALLAST", 0))
    if (probe > 0) ballast = Buffer.alloc(probe)
    let cfg: GithubConfig
    let interval: number
    let selfTest: number
    try {
        cfg = await loadConfig(o)
        interval = (await num(o.checkSeconds, "CHECK_SECONDS", 3600, MIN_INTERVAL_S, MAX_INTERVAL_S)) * 1000
        selfTest = (await num(o.selfTestSeconds, "SELFTEST_S", 300, 1, MAX_INTERVAL_S)) * 1000
        writePolicy.rate = await num(o.writeRate, "OTA_WRITE_HZ", DEFAULT_WRITE_RATE, 1, MAX_WRITE_RATE)
        // HTTP deadlines in ms (connect, whole response head, silence while reading, whole answer)
        DEFAULT_TIMEOUTS.connect = await num(undefined, "HTTP_CONN_MS", DEFAULT_TIMEOUTS.connect, 100, MAX_TIMEOUT_MS)
        DEFAULT_TIMEOUTS.head = await num(undefined, "HTTP_HEAD_MS", DEFAULT_TIMEOUTS.head, 100, MAX_TIMEOUT_MS)
        DEFAULT_TIMEOUTS.idle = await num(undefined, "HTTP_IDLE_MS", DEFAULT_TIMEOUTS.idle, 100, MAX_TIMEOUT_MS)
        DEFAULT_TIMEOUTS.total = await num(undefined, "HTTP_TOTAL_MS", DEFAULT_TIMEOUTS.total, 100, MAX_TIMEOUT_MS)
    } catch (e) {
        status("error", { error: (e as Error).message })
        return
    }
    // "int:0" binds to the native server inside this device's runtime.
    const ota = new OtaClient(o.service || new ds.OtaUpdater("ota[int:0]"))
    const updater = new Updater(cfg, ota, handle.programVersion)
    updater.releases.saved = await loadEtag()
    updater.onSaved = saveEtag

    // A new image must reach the release API within the self-test window, or it
    // rolls itself back (esp_ota_mark_app_invalid_rollback_and_reboot).
    const running = await ota.status()
    if (running.pendingVerify) {
        console.log(`ota: ${running.version} pending verify: ${selfTest / 1000} s to reach the release API`)
        setTimeout(async () => {
            if (!(await ota.status()).pendingVerify) return
            status("self-test-failed", { version: running.version, seconds: selfTest / 1000 })
            await ota.reject()
        }, selfTest)
    }

    console.log(
        `ota: firmware ${running.version}, program ${handle.programVersion}, watching ${cfg.owner}/${cfg.repo} (${cfg.channel}) every ${interval / 1000} s, image writes at most ${writePolicy.rate}/s`
    )
    // Transient failures (network, 5xx) retry sooner, backing off up to the interval;
    // a pending image retries within its self-test window.
    const backoff = new Backoff(running.pendingVerify ? 2000 : 30000, running.pendingVerify ? 15000 : interval)
    for (;;) {
        let wait = jittered(interval)
        try {
            const rebooting = await updater.check()
            await closeIdle()
            if (rebooting) return // into the new image
            backoff.reset()
        } catch (e) {
            await closeIdle()
            const ge = e as GithubError
            if (e instanceof GithubError && ge.isRateLimit()) {
                wait = ge.retryAfter * 1000 + jittered(1000)
                status("rate-limited", { error: ge.message, seconds: ge.retryAfter })
            } else {
                status("error", { error: (e as Error).message })
                const final =
                    e instanceof ReleaseError ||
                    (e instanceof OtaError && (e as OtaError).final) ||
                    (e instanceof GithubError && ge.status >= 400 && ge.status < 500 && ge.status !== 429)
                if (!final) wait = Math.min(wait, backoff.next())
            }
        }
        await handle._sleep(wait)
    }
}
