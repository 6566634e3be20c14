// One update check: confirm a freshly booted image once the release API answered,
// resolve the release, compare versions, download (resuming where the OTA service
// left off) and flash, commit, reboot.
import { GithubConfig, GithubReleases, Release, SavedEtag } from "./github"
import { AssetDownload } from "./download"
import { OtaClient, OtaError } from "./otaclient"
import { isNewer, parseSemver } from "./semver"
import { Progress } from "./progress"

/** Machine-readable status lines start with this; the simulator's runner reads them. */
export const STATUS_PREFIX = "ota-status "

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
            await download.run({
                push: async (data: Buffer, from: number, to: number) => {
                    await writer.push(data, from, to)
                    progress.update(writer.filled)
                },
                room: () => writer.room(),
                flush: async () => await writer.flush(),
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
