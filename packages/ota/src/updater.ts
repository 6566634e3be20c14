// One update check: confirm a freshly booted image once the release API answered,
// resolve the release, compare versions, download (resuming where the OTA service
// left off) and flash, commit, then reboot into new firmware or let the runtime restart
// a new program.
import * as ds from "@devicescript/core"
import { GithubConfig, GithubReleases, Release, ReleaseAsset, SavedEtag } from "./github"
import { AssetDownload } from "./download"
import { OtaClient, OtaError } from "./otaclient"
import { isNewer } from "./semver"
import { Progress } from "./progress"
import { STATUS_PREFIX } from "./status"
import { DescriptorCheck, ProgramCheck, ReleaseError, checkTag } from "./imagecheck"

export { ReleaseError } from "./imagecheck"

/** Receives every status event, progress included (startOta's handle); null: none. */
export const statusListener: { fn: (fields: any) => void } = { fn: null }

/** Prints a status line: STATUS_PREFIX, then `fields` with `event` added, as JSON. */
export function status(event: string, fields: any) {
    fields.event = event
    console.log(STATUS_PREFIX + JSON.stringify(fields))
    if (statusListener.fn) statusListener.fn(fields)
}

function hexToBuffer(hex: string) {
    return hex.length === 64 ? Buffer.from(hex, "hex") : Buffer.alloc(0)
}

// The OTA service copies a checked program into the program store about 100 ms after
// commit's report, and the runtime restarts the program: this one does not live long.
const PROGRAM_RESTART_WAIT_MS = 15000
// From commit's report to the reboot into new firmware.
const REBOOT_GRACE_MS = 1000

/** `running` is older than `tag`; a version that is not semver (a local build) is older than any tag. */
function olderThan(running: string, tag: string) {
    try {
        return isNewer(tag, running)
    } catch {
        return true
    }
}

export class Updater {
    readonly releases: GithubReleases
    // The asset the OTA service refused for good (not_app_image, wrong_chip,
    // bad_signature, too_large) and why: it is not downloaded again until the release
    // changes (or the device restarts).
    private refused: { asset: string; code: string } = null
    /** called when the ETag to keep across reboots changed */
    onSaved: (saved: SavedEtag) => Promise<void>

    /**
     * `programVersion` is this program's own "@version" (`ds._dcfgString("@version")`),
     * compared with the tag when the config has a program pattern.
     */
    constructor(
        private cfg: GithubConfig,
        private ota: OtaClient,
        private programVersion: string
    ) {
        this.releases = new GithubReleases(cfg)
    }

    private async latest(full: boolean) {
        const before = this.releases.saved
        const r = await this.releases.latest(full)
        if (this.onSaved && this.releases.saved !== before) await this.onSaved(this.releases.saved)
        return r
    }

    /**
     * Runs one check; returns true when new firmware was committed and the device reboots.
     * A release can carry firmware (ASSET_PATTERN) and a program (PROGRAM_ASSET): firmware
     * older than the tag is updated first (the device reboots into it, still running this
     * program), then a program older than the tag. A new program replaces this one: the
     * call does not return unless the install failed (it throws).
     */
    async check(): Promise<boolean> {
        const running = await this.ota.status()
        let { release, notModified, assetsKnown } = await this.latest(false)

        // The new image reached the release API: it works well enough to keep.
        if (running.pendingVerify) {
            await this.ota.confirm()
            status("confirmed", { version: running.version, slot: running.slot })
        }

        checkTag(release.tag)
        const tag = release.tag
        const firmwareOld = isNewer(tag, running.version)
        const programOld = !!this.cfg.programPattern && olderThan(this.programVersion, tag)
        const upToDate = { version: running.version, program: this.programVersion, latest: tag, notModified }
        if (!firmwareOld && !programOld) {
            status("up-to-date", upToDate)
            return false
        }
        // After a reboot a 304 names the tag but not the assets: read the release.
        if (!assetsKnown) release = (await this.latest(true)).release
        if (firmwareOld && release.asset) {
            await this.install(tag, release.asset, false, running.version, running.maxImageSize)
            return true
        }
        if (programOld && release.program) {
            await this.install(tag, release.program, true, this.programVersion, 0)
            await ds.sleep(PROGRAM_RESTART_WAIT_MS)
            throw new ReleaseError(`release ${tag}: the program was committed but not restarted`)
        }
        if (!release.asset && !release.program)
            throw new ReleaseError(
                `release ${tag}: no asset matches ASSET_PATTERN '${this.cfg.assetPattern}'` +
                    (this.cfg.programPattern ? ` or PROGRAM_ASSET '${this.cfg.programPattern}'` : "") +
                    ` (${release.assetCount} assets)`
            )
        // what is older than the tag has no asset in it (a program-only or firmware-only release)
        status("up-to-date", upToDate)
        return false
    }

    // Downloads `asset` into the spare firmware slot, or the program store with `program`,
    // and commits it. maxImageSize 0: the service checks the size in begin.
    private async install(tag: string, asset: ReleaseAsset, program: boolean, from: string, maxImageSize: number) {
        if (asset.state !== "uploaded") throw new ReleaseError(`release ${tag}: asset ${asset.name} is ${asset.state}`)
        if (!(asset.size > 0) || !asset.url)
            throw new ReleaseError(`release ${tag}: asset ${asset.name} has no valid size or url (${asset.size})`)
        if (maxImageSize && asset.size > maxImageSize)
            throw new ReleaseError(`release ${tag}: ${asset.name} is ${asset.size} bytes, the slot holds ${maxImageSize}`)

        const identity = `${asset.url} ${asset.size} ${asset.sha256}`
        if (this.refused && this.refused.asset === identity)
            throw new ReleaseError(
                `release ${tag}: ${asset.name} was refused (${this.refused.code}); not downloaded again, waiting for a newer release`
            )
        console.log(`ota: ${from} -> ${tag}: ${asset.name}, ${asset.size} bytes`)
        const sha256 = hexToBuffer(asset.sha256)
        // Resume needs the asset's identity: size and SHA-256. A program (at most 128 KB) is
        // not resumed: its version, in its last bytes, is checked only when it all goes by.
        const target = program ? ds.OtaUpdaterTarget.Program : ds.OtaUpdaterTarget.Spare
        const begun = await this.ota.begin(asset.size, sha256, sha256.length > 0 && !program, target)
        if (begun.nextOffset) status("resumed", { to: tag, offset: begun.nextOffset, bytes: asset.size })
        const progress = new Progress(asset.size)
        const download = new AssetDownload(this.cfg, asset.url, asset.size)
        const writer = this.ota.writer(begun.nextOffset, asset.size)
        try {
            const head = program ? new ProgramCheck(tag, asset.size) : new DescriptorCheck(tag)
            await download.run({
                push: async (data: Buffer, from: number, to: number) => {
                    head.see(writer.filled, data, from, to)
                    await writer.push(data, from, to)
                    if (progress.update(writer.filled) && statusListener.fn)
                        statusListener.fn({ event: "progress", to: tag, done: writer.filled, total: asset.size })
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
            else if ((e as OtaError).final) this.refused = { asset: identity, code: (e as OtaError).code }
            throw e
        }
        const st = download.stats
        status("committed", {
            target: program ? "program" : "firmware",
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
        if (program) return
        // Let the status line reach the console (devtools, VS Code) and dashboards see
        // `ready` before the device resets.
        await ds.sleep(REBOOT_GRACE_MS)
        await this.ota.reboot()
    }
}
