// One update check: confirm a freshly booted image once the release API answered,
// resolve the latest release, compare versions, download and flash, commit, reboot.
import * as ds from "@devicescript/core"
import { GithubConfig, GithubReleases } from "./github"
import { AssetDownload } from "./download"
import { OtaClient, OtaError } from "./otaclient"
import { isNewer } from "./semver"
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

export class Updater {
    private releases: GithubReleases

    constructor(
        private cfg: GithubConfig,
        private ota: OtaClient
    ) {
        this.releases = new GithubReleases(cfg)
    }

    /** Runs one check; returns true when a new image was committed and the device reboots. */
    async check(): Promise<boolean> {
        const running = await this.ota.status()
        const { release, notModified } = await this.releases.latest()

        // The new image reached the release API: it works well enough to keep.
        if (running.pendingVerify) {
            await this.ota.confirm()
            status("confirmed", { version: running.version, slot: running.slot })
        }

        const tag = release.tag
        if (!isNewer(tag, running.version)) {
            status("up-to-date", { version: running.version, latest: tag, notModified })
            return false
        }
        const asset = release.asset
        if (!asset)
            throw new Error(`release ${tag}: no asset matches '${this.cfg.assetPattern}' (${release.assetCount} assets)`)
        if (asset.state !== "uploaded") throw new Error(`release ${tag}: asset ${asset.name} is ${asset.state}`)
        if (asset.size > running.maxImageSize)
            throw new Error(`release ${tag}: ${asset.name} is ${asset.size} bytes, the slot holds ${running.maxImageSize}`)

        console.log(`ota: ${running.version} -> ${tag}: ${asset.name}, ${asset.size} bytes`)
        const slot = await this.ota.begin(asset.size, hexToBuffer(asset.sha256))
        const progress = new Progress(asset.size)
        try {
            const ota = this.ota // closures cannot capture `this` in DeviceScript
            const download = new AssetDownload(this.cfg, asset.url, asset.size)
            await download.run(async (offset, data) => {
                await ota.write(offset, data)
                progress.update(offset + data.length)
            })
            await this.ota.commit()
        } catch (e) {
            // Leave the service idle; the running image stays the boot image.
            if (!(e instanceof OtaError)) await this.ota.abort()
            throw e
        }
        status("committed", {
            from: running.version,
            to: tag,
            slot,
            sha256: asset.sha256,
            bytes: asset.size,
            seconds: progress.seconds(),
        })
        await this.ota.reboot()
        return true
    }
}
