// Checks a GitHub repository's releases and installs its firmware asset over the air
// through the OTA updater service. Settings come from .env.defaults and .env.local
// (the token); see README.md.
import * as ds from "@devicescript/core"
import { readSetting, writeSetting } from "@devicescript/settings"
import { OtaClient } from "./otaclient"
import { Updater, ReleaseError, status } from "./updater"
import { Channel, GithubConfig, GithubError, SavedEtag } from "./github"
import { Backoff } from "./backoff"
import { DEFAULT_TIMEOUTS, closeIdle } from "./http"

const MIN_INTERVAL_S = 1
const JITTER = 0.1 // checks are spread by +-10% of the interval
const ETAG_KEY = "OTA_ETAG"

async function str(key: string, def: string) {
    return (await readSetting<string>(key, def)) + ""
}

async function loadConfig(): Promise<GithubConfig> {
    const channel = await str("OTA_CHANNEL", "stable")
    if (channel !== "stable" && channel !== "prerelease")
        throw new Error(`setting OTA_CHANNEL must be 'stable' or 'prerelease', not '${channel}'`)
    return {
        api: await str("GITHUB_API", "https://api.github.com"),
        owner: await str("GITHUB_OWNER", ""),
        repo: await str("GITHUB_REPO", ""),
        token: await str("GITHUB_TOKEN", ""),
        assetPattern: await str("ASSET_PATTERN", "*.bin"),
        programPattern: await str("PROGRAM_ASSET", "*.devs"),
        channel: channel as Channel,
    }
}

// "<key hash> <etag> <tag>": none of them holds a space (RFC 9110 entity-tag, git refs),
// and at most ~180 bytes, well within a settings packet
async function loadEtag(): Promise<SavedEtag> {
    const parts = (await str(ETAG_KEY, "")).split(" ")
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

async function main() {
    const probe = +(await readSetting("HEAP_BALLAST", 0))
    if (probe > 0) ballast = Buffer.alloc(probe)
    let cfg: GithubConfig
    try {
        cfg = await loadConfig()
    } catch (e) {
        status("error", { error: (e as Error).message })
        return
    }
    const interval = Math.max(+(await readSetting("CHECK_SECONDS", 3600)), MIN_INTERVAL_S) * 1000
    const selfTest = Math.max(+(await readSetting("SELFTEST_S", 300)), 1) * 1000
    // HTTP deadlines in ms (connect, whole response head, silence while reading)
    DEFAULT_TIMEOUTS.connect = +(await readSetting("HTTP_CONN_MS", DEFAULT_TIMEOUTS.connect))
    DEFAULT_TIMEOUTS.head = +(await readSetting("HTTP_HEAD_MS", DEFAULT_TIMEOUTS.head))
    DEFAULT_TIMEOUTS.idle = +(await readSetting("HTTP_IDLE_MS", DEFAULT_TIMEOUTS.idle))
    DEFAULT_TIMEOUTS.total = +(await readSetting("HTTP_TOTAL_MS", DEFAULT_TIMEOUTS.total))
    if (!cfg.owner || !cfg.repo) {
        status("error", { error: "settings GITHUB_OWNER and GITHUB_REPO are required" })
        return
    }
    // "int:0" binds to the native server inside this device's runtime.
    const ota = new OtaClient(new ds.OtaUpdater("ota[int:0]"))
    // "@version" of this program's build (`devs build` takes it from the git tag)
    const programVersion = ds._dcfgString("@version") || "(none)"
    const updater = new Updater(cfg, ota, programVersion)
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

    console.log(`ota: program ${programVersion}, watching ${cfg.owner}/${cfg.repo} (${cfg.channel}) every ${interval / 1000} s`)
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
                    (e instanceof GithubError && ge.status >= 400 && ge.status < 500 && ge.status !== 429)
                if (!final) wait = Math.min(wait, backoff.next())
            }
        }
        await ds.sleep(wait)
    }
}

await main()
