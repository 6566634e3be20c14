// One update check: confirm a freshly booted image once the release API answered,
// resolve the release, compare versions, download (resuming where the OTA service
// left off) and flash, commit, reboot.
import { GithubConfig, GithubReleases, Release, SavedEtag } from "./github"
import { AssetDownload } from "./download"
import { OtaClient, OtaError } from "./otaclient"
import { compareSemver, isNewer, parseSemver } from "./semver"
import { Progress } from "./progress"

import { STATUS_PREFIX } from "./status"

export function status(event: string, fields: any) {
    fields.event = event
    console.log(STATUS_PREFIX + JSON.stringify(fields))
}

function hexToBuffer(hex: string) {
    return hex.length === 64 ? Buffer.from(hex, "hex") : Buffer.alloc(0)
}

/** A release that cannot be installed as published: retried at the next scheduled check. */
export class ReleaseError extends Error {
    constructor(message: string) {
        super(message)
        this.name = "ReleaseError"
    }
}

function checkTag(tag: string) {
    try {
        parseSemver(tag)
    } catch {
        throw new ReleaseError(`release tag '${tag}' is not a semver version: tag releases like v1.2.3`)
    }
}

// esp_app_desc_t.version: 32 bytes at image offset 48 (24-byte image header, 8-byte
// segment header, then magic, secure_version and two reserved words), ESP-IDF
// components/esp_app_format/include/esp_app_desc.h
const VERSION_AT = 48
const VERSION_LEN = 32
const versionBytes = Buffer.alloc(VERSION_LEN)

/**
 * Checks, as the first bytes of an image go by, that its app descriptor's version is
 * the release tag: a release whose asset is another version would reinstall forever
 * (or install an older image). Throws ReleaseError.
 */
class DescriptorCheck {
    private done = false
    constructor(private tag: string) {}

    see(offset: number, data: Buffer, from: number, to: number) {
        if (this.done) return
        if (offset === 0 && to > from && data[from] !== 0xe9)
            throw new ReleaseError(`release ${this.tag}: the asset is not an ESP app image (first byte ${data[from]})`)
        if (offset > VERSION_AT) {
            this.done = true // a resumed update: checked when its start went by
            return
        }
        // copy what this piece holds of [VERSION_AT, VERSION_AT + VERSION_LEN)
        const a = Math.max(VERSION_AT, offset)
        const b = Math.min(VERSION_AT + VERSION_LEN, offset + (to - from))
        if (b > a) versionBytes.blitAt(a - VERSION_AT, data, from + (a - offset), b - a)
        if (offset + (to - from) < VERSION_AT + VERSION_LEN) return
        this.done = true
        let end = versionBytes.indexOf(0)
        if (end < 0) end = VERSION_LEN
        const version = versionBytes.slice(0, end).toString()
        let same = false
        try {
            same = compareSemver(version, this.tag) === 0
        } catch {}
        if (!same)
            throw new ReleaseError(`release ${this.tag}: the image's app descriptor says version '${version}'`)
    }
}

export class Updater {
    readonly releases: GithubReleases
    /** called when the ETag to keep across reboots changed */
    onSaved: (saved: SavedEtag) => Promise<void>

    constructor(
        private cfg: GithubConfig,
        private ota: OtaClient
    ) {
        this.releases = new GithubReleases(cfg)
    }

    private async latest(full: boolean) {
        const before = this.releases.saved
        const r = await this.releases.latest(full)
        if (this.onSaved && this.releases.saved !== before) await this.onSaved(this.releases.saved)
        return r
    }

    /** Runs one check; returns true when a new image was committed and the device reboots. */
    async check(): Promise<boolean> {
        const running = await this.ota.status()
        let { release, notModified } = await this.latest(false)

        // The new image reached the release API: it works well enough to keep.
        if (running.pendingVerify) {
            await this.ota.confirm()
            status("confirmed", { version: running.version, slot: running.slot })
        }

        checkTag(release.tag)
        if (!isNewer(release.tag, running.version)) {
            status("up-to-date", { version: running.version, latest: release.tag, notModified })
            return false
        }
        // After a reboot a 304 names the tag but not the asset: read the release.
        if (!release.asset && notModified) release = (await this.latest(true)).release
        await this.install(release, running.version, running.maxImageSize)
        return true
    }

    private async install(release: Release, from: string, maxImageSize: number) {
        const tag = release.tag
        const asset = release.asset
        if (!asset)
            throw new ReleaseError(
                `release ${tag}: no asset matches ASSET_PATTERN '${this.cfg.assetPattern}' (${release.assetCount} assets)`
            )
        if (asset.state !== "uploaded") throw new ReleaseError(`release ${tag}: asset ${asset.name} is ${asset.state}`)
        if (!(asset.size > 0) || !asset.url)
            throw new ReleaseError(`release ${tag}: asset ${asset.name} has no valid size or url (${asset.size})`)
        if (asset.size > maxImageSize)
            throw new ReleaseError(`release ${tag}: ${asset.name} is ${asset.size} bytes, the slot holds ${maxImageSize}`)

        console.log(`ota: ${from} -> ${tag}: ${asset.name}, ${asset.size} bytes`)
        const sha256 = hexToBuffer(asset.sha256)
        // Resume needs the asset's identity: size and SHA-256.
        const begun = await this.ota.begin(asset.size, sha256, sha256.length > 0)
        if (begun.nextOffset) status("resumed", { to: tag, offset: begun.nextOffset, bytes: asset.size })
        const progress = new Progress(asset.size)
        const download = new AssetDownload(this.cfg, asset.url, asset.size)
        const writer = this.ota.writer(begun.nextOffset, asset.size)
        try {
            const head = new DescriptorCheck(tag)
            await download.run({
                push: async (data: Buffer, from: number, to: number) => {
                    head.see(writer.filled, data, from, to)
                    await writer.push(data, from, to)
                    progress.update(writer.filled)
                },
                room: () => writer.room(),
                waitRoom: async (bytes: number) => await writer.waitRoom(bytes),
            }, begun.nextOffset)
            await writer.flush()
            await writer.close()
            await this.ota.commit()
        } catch (e) {
            await writer.close()
            // Leave the service idle; the running image stays the boot image.
            if (!(e instanceof OtaError)) await this.ota.abort()
            throw e
        }
        const st = download.stats
        status("committed", {
            from,
            to: tag,
            slot: begun.slot,
            sha256: asset.sha256,
            bytes: asset.size,
            resumedAt: begun.nextOffset,
            seconds: progress.seconds(),
            requests: st.requests,
            fetched: st.bytesFetched,
            retries: st.retries,
            rangeIgnored: st.rangeIgnored,
        })
        await this.ota.reboot()
    }
}
