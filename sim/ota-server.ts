// Simulated native OTA updater service (services/otaupdater.md) as a jacdac-ts server.
// It behaves like the C server on the ESP32-S3 would with ESP-IDF: esp_ota_begin with
// OTA_WITH_SEQUENTIAL_WRITES (erase each 4 KB sector just before the first write into it),
// esp_ota_write at the expected offset only (byte 0 must be the image magic), esp_ota_end
// (image check) and esp_ota_set_boot_partition in commit, rollback confirm/reject on the
// running image. A resume record in NVS (sim/nvs.ts standing in for ESP-IDF NVS) lets
// `begin` continue a partial image after a reset, as esp_ota_resume does. A DeviceScript
// program (target `program`) is staged in the `progstage` partition, checked, and then
// copied into the program store through the runtime's deploy API (a hook given by the
// device), with a program record in NVS so that a power cut during the copy is repaired
// at the next start.
import { readFileSync } from "node:fs"
import * as path from "node:path"
import { createHash, type Hash, type KeyObject } from "node:crypto"
import { crc32 } from "node:zlib"
import {
    JDServiceServer,
    JDRegisterServer,
    Packet,
    jdpack,
    jdunpack,
    loadServiceSpecifications,
    serviceSpecificationFromClassIdentifier,
    serviceSpecifications,
} from "jacdac-ts"
import {
    SRV_OTA_UPDATER,
    OtaUpdaterBeginFlags,
    OtaUpdaterCmd,
    OtaUpdaterCmdPack,
    OtaUpdaterError,
    OtaUpdaterEvent,
    OtaUpdaterEventPack,
    OtaUpdaterReg,
    OtaUpdaterLimits,
    OtaUpdaterState,
    OtaUpdaterTarget,
} from "../.devicescript/ts/constants"
import { APP_DESC_LEN, checkAppImage, ESP32S3_CHIP_ID, IMAGE_MAGIC, MAX_SEGMENTS, type ImageInfo } from "../tools/esp-image"
import { checkBytecode, DEVS_IMAGE_HEADER_LEN, startsLikeBytecode } from "../tools/devs-image"
import { keyDigest, verifySignedImage } from "../tools/secure-boot"
import { SECTOR_SIZE, SimFlash } from "./flash"
// checkpoints and resume offsets go by the protocol's sector (services/otaupdater.md Limits)
const CHECKPOINT_BYTES = OtaUpdaterLimits.SectorBytes
import { SimNvs } from "./nvs"
import { Partition } from "./partition-table"
import {
    BootResult,
    OtaImgState,
    boot,
    eraseOtadataEntry,
    markInvalidAndRollback,
    markValid,
    otaState,
    readOtadata,
    setBootPartition,
} from "./bootloader"

export const SERVICES_JSON = path.join(__dirname, "..", ".devicescript", "services.json")
const SPARE_SLOT = OtaUpdaterTarget.Spare // begin's target: esp_ota_get_next_update_partition(NULL)
const NO_SLOT = OtaUpdaterTarget.Spare // slot field of a report when there is no update
const PROGRAM = OtaUpdaterTarget.Program
/** The partition that holds a program while it is downloaded and checked. */
export const PROGRAM_STAGING_LABEL = "progstage"
/** Delay between commit's report and the copy into the program store (the report goes out first). */
export const PROGRAM_INSTALL_DELAY_MS = 100

// --- resume record (services/otaupdater.md, "Resume record") ------------------------

/** NVS namespace and key of the resume record on the device; the simulated NVS has one flat key space. */
export const RESUME_NVS_NAMESPACE = "otaupdater"
export const RESUME_NVS_KEY = "resume"
export const RESUME_SIM_KEY = `${RESUME_NVS_NAMESPACE}/${RESUME_NVS_KEY}`
export const PROGRAM_SIM_KEY = `${RESUME_NVS_NAMESPACE}/program`
const PROGRAM_RECORD_LEN = 40
const RESUME_RECORD_VERSION = 1
export const RESUME_RECORD_LEN = 80

export interface ResumeRecord {
    slot: number
    imageSize: number
    /** Bytes of the image durably in the slot, a multiple of CHECKPOINT_BYTES. */
    nextOffset: number
    /** The sha256 given to begin: with imageSize, the identity of the asset. */
    sha256: Buffer
    /** SHA-256 of the image bytes [0, nextOffset). */
    prefixSha256: Buffer
}

export function encodeResumeRecord(r: ResumeRecord): Buffer {
    const b = Buffer.alloc(RESUME_RECORD_LEN)
    b[0] = RESUME_RECORD_VERSION
    b[1] = r.slot
    b.writeUInt32LE(r.imageSize, 4)
    b.writeUInt32LE(r.nextOffset, 8)
    r.sha256.copy(b, 12, 0, 32)
    r.prefixSha256.copy(b, 44, 0, 32)
    b.writeUInt32LE(crc32(b.subarray(0, 76)) >>> 0, 76)
    return b
}

/** The record, or undefined when it is not one (length, version, CRC). */
export function decodeResumeRecord(b: Buffer): ResumeRecord | undefined {
    if (b.length !== RESUME_RECORD_LEN || b[0] !== RESUME_RECORD_VERSION) return undefined
    if (b.readUInt32LE(76) !== crc32(b.subarray(0, 76)) >>> 0) return undefined
    return {
        slot: b[1],
        imageSize: b.readUInt32LE(4),
        nextOffset: b.readUInt32LE(8),
        sha256: Buffer.from(b.subarray(12, 44)),
        prefixSha256: Buffer.from(b.subarray(44, 76)),
    }
}

/** The program record: u32 image_size, sha256, u32 CRC-32 of the 36 bytes before it. */
export function encodeProgramRecord(size: number, sha256: Buffer): Buffer {
    const b = Buffer.alloc(PROGRAM_RECORD_LEN)
    b.writeUInt32LE(size, 0)
    sha256.copy(b, 4, 0, 32)
    b.writeUInt32LE(crc32(b.subarray(0, 36)) >>> 0, 36)
    return b
}

export function decodeProgramRecord(b: Buffer): { size: number; sha256: Buffer } | undefined {
    if (b.length !== PROGRAM_RECORD_LEN || b.readUInt32LE(36) !== crc32(b.subarray(0, 36)) >>> 0) return undefined
    return { size: b.readUInt32LE(0), sha256: Buffer.from(b.subarray(4, 36)) }
}

/** Makes jacdac-ts know the custom service (generated by `devs build`), keeping specs loaded by others. */
function otaUpdaterServiceClass(): number {
    if (!serviceSpecificationFromClassIdentifier(SRV_OTA_UPDATER)) {
        const specs = JSON.parse(readFileSync(SERVICES_JSON, "utf8")) as ReturnType<typeof serviceSpecifications>
        loadServiceSpecifications([...serviceSpecifications(), ...specs])
        if (!serviceSpecificationFromClassIdentifier(SRV_OTA_UPDATER))
            throw new Error(`${SERVICES_JSON} does not define the OTA updater service`)
    }
    return SRV_OTA_UPDATER
}

/**
 * What the native server's check_layout checks before it looks at a signature: magic, 1
 * to 16 segments, hash_appended 0 or 1, segment 0 holding the app descriptor, every
 * segment and the image's end (checksum, appended SHA-256) within the bytes received.
 */
function layoutReadable(info: ImageInfo, image: Buffer): boolean {
    return (
        info.magicOk &&
        info.segmentCount >= 1 &&
        info.segmentCount <= MAX_SEGMENTS &&
        image[23] <= 1 &&
        info.segments.length === info.segmentCount &&
        info.segments[0].length >= APP_DESC_LEN &&
        info.imageLength > 0 &&
        info.imageLength <= image.length
    )
}

export interface OtaUpdaterServerOptions {
    /** Chip id images must carry (esp_chip_id_t); 9 = ESP32-S3. */
    chipId?: number
    /** esp_restart(): the host drops this server, boots the flash again and makes a new one. */
    onReboot: () => void
    /** The boot that started this firmware; by default the bootloader runs on `flash` now. */
    boot?: BootResult
    /** One line per begin/commit/abort/failure, never per packet. */
    log?: (line: string) => void
    /** Milliseconds clock for `throughput`. */
    now?: () => number
    /**
     * The runtime's program store (devsmgr_deploy_start/_write): replaces the program and
     * restarts it. Without it the `program` target is refused with `bad_target`.
     */
    deployProgram?: (bytecode: Buffer) => void
    /**
     * The public key of the release signing key (RSA-3072): the server then behaves as
     * firmware built with CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT and refuses, at
     * `commit`, firmware whose Secure Boot v2 signature is missing, damaged, made with
     * another key or not matching (`bad_signature`; services/otaupdater.md "Signed apps").
     * ESP-IDF takes this key from the running image's own signature block; the simulator's
     * factory image is not signed, so it is given here. Undefined: unsigned images install.
     */
    trustedKey?: KeyObject
}

interface Update {
    slot: number
    partition: Partition
    imageSize: number
    expectedSha256?: Buffer
    hash: Hash // SHA-256 of the bytes received so far, updated as they arrive
    erasedUpTo: number // slot offset up to which sectors were erased
    checkpoint: number // next_offset of the resume record of this update (0: none)
    resumedFrom: number // next_offset reported by begin
    startedAt: number
    otadataEntry?: number // entry written by commit, to take the boot switch back on abort
    digest?: Buffer // SHA-256 of the whole image, once commit checked it
}

type Reg = JDRegisterServer<[number]>

export class OtaUpdaterServer extends JDServiceServer {
    readonly bootResult: BootResult
    private readonly chipId: number
    private readonly onReboot: () => void
    private readonly log: (line: string) => void
    private readonly now: () => number
    private update?: Update
    private readonly nvs: SimNvs
    private failure: number = OtaUpdaterError.None // error that ended the current update
    private readonly deployProgram?: (bytecode: Buffer) => void
    private installTimer?: ReturnType<typeof setTimeout>
    private readonly trustedKeyDigest?: Buffer // SHA-256 of the trusted key's block bytes

    private readonly stateReg: Reg
    private readonly bytesWrittenReg: Reg
    private readonly imageSizeReg: Reg
    private readonly progressReg: Reg
    private readonly throughputReg: Reg
    private readonly lastErrorReg: Reg
    private readonly pendingVerifyReg: Reg

    constructor(
        readonly flash: SimFlash,
        options: OtaUpdaterServerOptions,
    ) {
        super(otaUpdaterServiceClass())
        this.chipId = options.chipId ?? ESP32S3_CHIP_ID
        this.trustedKeyDigest = options.trustedKey && keyDigest(options.trustedKey)
        this.onReboot = options.onReboot
        this.log = options.log ?? (() => {})
        this.now = options.now ?? (() => performance.now())
        this.deployProgram = options.deployProgram
        this.bootResult = options.boot ?? boot(flash, { chipId: this.chipId })
        this.nvs = new SimNvs(flash)

        const reg = <T extends [number] | [string]>(code: number, value: T) => {
            const r = this.addRegister<T>(code, value)
            if (!r) throw new Error(`register 0x${code.toString(16)} missing from the service spec`)
            return r
        }
        this.stateReg = reg(OtaUpdaterReg.State, [OtaUpdaterState.Idle])
        this.bytesWrittenReg = reg(OtaUpdaterReg.BytesWritten, [0])
        this.imageSizeReg = reg(OtaUpdaterReg.ImageSize, [0])
        this.progressReg = reg(OtaUpdaterReg.Progress, [0])
        this.throughputReg = reg(OtaUpdaterReg.Throughput, [0])
        this.lastErrorReg = reg(OtaUpdaterReg.LastError, [OtaUpdaterError.None])
        reg(OtaUpdaterReg.RunningVersion, [this.bootResult.version])
        reg(OtaUpdaterReg.RunningSlot, [this.bootResult.slot])
        this.pendingVerifyReg = reg(OtaUpdaterReg.PendingVerify, [this.bootResult.pendingVerify ? 1 : 0])
        reg(OtaUpdaterReg.MaxImageSize, [this.flash.otaSlots()[this.spareSlot].size])

        this.addCommand(OtaUpdaterCmd.Begin, pkt => this.handleBegin(pkt))
        this.addCommand(OtaUpdaterCmd.Write, pkt => this.handleWrite(pkt))
        this.addCommand(OtaUpdaterCmd.Commit, () => this.handleCommit())
        this.addCommand(OtaUpdaterCmd.Abort, () => this.handleAbort())
        this.addCommand(OtaUpdaterCmd.Reboot, () => this.handleReboot())
        this.addCommand(OtaUpdaterCmd.Confirm, () => this.handleConfirm())
        this.addCommand(OtaUpdaterCmd.Reject, () => this.handleReject())
    }

    get state(): OtaUpdaterState {
        return this.stateReg.values()[0]
    }

    get lastError(): OtaUpdaterError {
        return this.lastErrorReg.values()[0]
    }

    get bytesWritten(): number {
        return this.bytesWrittenReg.values()[0]
    }

    get imageSize(): number {
        return this.imageSizeReg.values()[0]
    }

    /** Bytes per second since begin, as the throughput register reports it. */
    get throughput(): number {
        return this.throughputReg.values()[0]
    }

    get runningSlot(): number {
        return this.bootResult.slot
    }

    /** esp_ota_get_next_update_partition(NULL): the slot after the running one, wrapping. */
    get spareSlot(): number {
        return (this.runningSlot + 1) % this.flash.otaSlots().length
    }

    /** The running image is still PENDING_VERIFY (read from otadata, as esp_ota_get_state_partition). */
    get pendingVerify(): boolean {
        return otaState(this.flash, this.runningSlot) === OtaImgState.PendingVerify
    }

    // --- commands -------------------------------------------------------------------

    private handleBegin(pkt: Packet) {
        const fields = this.unpack<[number, number, number, number, Uint8Array]>(pkt, OtaUpdaterCmdPack.Begin, 8)
        const slots = this.flash.otaSlots()
        const staging = this.stagingPartition()
        const reply = (error: number, slot: number, nextOffset = 0) => {
            const maxSize = slot === PROGRAM ? this.programMaxSize() : (slots[slot] ?? slots[this.spareSlot]).size
            this.reply(OtaUpdaterCmd.Begin, OtaUpdaterCmdPack.BeginReport, [error, slot, 0, maxSize, nextOffset])
        }
        // a new begin drops whatever update was under way, even if it is refused
        try {
            this.dropUpdate()
        } catch (e) {
            return reply(this.fail(OtaUpdaterError.FlashWrite, `begin: ${errorText(e)}`), NO_SLOT)
        }
        if (!fields) return reply(this.fail(OtaUpdaterError.InvalidState, "begin: payload too short"), NO_SLOT)
        const [imageSize, target, flags, , sha256] = fields
        const slot = target === SPARE_SLOT ? this.spareSlot : target
        const program = slot === PROGRAM
        const partition = program ? staging : slots[slot]
        // checked in esp_ota_begin's order: partition, conflict, rollback state, size
        let error: number = OtaUpdaterError.None
        if (!partition || slot === this.runningSlot || (program && !this.deployProgram)) error = OtaUpdaterError.BadTarget
        else if (this.pendingVerify) error = OtaUpdaterError.InvalidState
        else if (imageSize > (program ? this.programMaxSize() : partition.size)) error = OtaUpdaterError.TooLarge
        else if (sha256.length !== 0 && sha256.length !== 32) error = OtaUpdaterError.Sha256Mismatch
        if (error || !partition) return reply(this.fail(error, `begin ${imageSize} bytes, target ${target}`), slot)

        const expectedSha256 = sha256.length ? Buffer.from(sha256) : undefined
        const resumed =
            flags & OtaUpdaterBeginFlags.Resume ? this.resumable(slot, imageSize, expectedSha256) : undefined
        if (!resumed) {
            // a fresh start: the record goes before anything is written to the slot
            try {
                this.nvs.erase(RESUME_SIM_KEY)
            } catch (e) {
                return reply(this.fail(OtaUpdaterError.FlashWrite, `begin: clear resume record: ${errorText(e)}`), slot)
            }
        }
        const nextOffset = resumed?.nextOffset ?? 0
        this.update = {
            slot,
            partition,
            imageSize,
            expectedSha256,
            hash: resumed?.hash ?? createHash("sha256"),
            // esp_ota_resume: the sequential erase restarts at the checkpoint, so the sector
            // there, maybe partly written before the reset, is erased again before its first write
            erasedUpTo: nextOffset,
            checkpoint: nextOffset,
            resumedFrom: nextOffset,
            startedAt: this.now(),
        }
        this.failure = OtaUpdaterError.None
        this.set(this.lastErrorReg, OtaUpdaterError.None)
        this.set(this.imageSizeReg, imageSize)
        this.setProgress(nextOffset)
        this.set(this.stateReg, OtaUpdaterState.Receiving)
        this.log(
            `ota: begin ${imageSize} bytes into ${partition.label}${sha256.length ? "" : " (no sha256)"}` +
                (resumed ? `, resumed at ${nextOffset}` : ""),
        )
        reply(OtaUpdaterError.None, slot, nextOffset)
    }

    /**
     * The resume point for this asset and slot, with the SHA-256 of the bytes before it
     * read back from the slot; undefined when the update cannot be resumed.
     */
    private resumable(slot: number, imageSize: number, sha256: Buffer | undefined) {
        const no = (why: string) => {
            this.log(`ota: begin: not resuming (${why})`)
            return undefined
        }
        if (!sha256) return no("no sha256")
        let r: ResumeRecord | undefined
        try {
            const raw = this.nvs.get(RESUME_SIM_KEY)
            if (!raw) return no("no record")
            r = decodeResumeRecord(raw)
        } catch (e) {
            return no(errorText(e))
        }
        if (!r) return no("record damaged")
        if (r.imageSize !== imageSize || !r.sha256.equals(sha256)) return no("another asset")
        if (r.slot !== slot || (slot !== PROGRAM && slot !== this.spareSlot)) return no("another slot")
        if (r.nextOffset === 0 || r.nextOffset % CHECKPOINT_BYTES || r.nextOffset > imageSize) return no("bad offset")
        const partition = slot === PROGRAM ? this.stagingPartition()! : this.flash.otaSlots()[slot]
        const hash = createHash("sha256")
        try {
            for (let o = 0; o < r.nextOffset; o += SECTOR_SIZE)
                hash.update(this.flash.read(partition.offset + o, Math.min(SECTOR_SIZE, r.nextOffset - o)))
        } catch (e) {
            return no(errorText(e))
        }
        if (!hash.copy().digest().equals(r.prefixSha256)) return no("slot contents changed")
        return { nextOffset: r.nextOffset, hash }
    }

    private handleWrite(pkt: Packet) {
        const u = this.update
        const fields = this.unpack<[number, Uint8Array]>(pkt, OtaUpdaterCmdPack.Write, 4)
        const ack = (error: number) =>
            this.reply(OtaUpdaterCmd.Write, OtaUpdaterCmdPack.WriteReport, [this.bytesWritten, error])
        if (!u || this.state !== OtaUpdaterState.Receiving || !fields) {
            this.set(this.lastErrorReg, OtaUpdaterError.InvalidState)
            return ack(OtaUpdaterError.InvalidState)
        }
        const [offset, data] = fields
        const written = this.bytesWritten
        if (offset < written) return ack(OtaUpdaterError.None) // duplicate: already written, ack again
        if (offset > written) {
            // a write was lost: nothing written, the client resumes at next_offset
            this.set(this.lastErrorReg, OtaUpdaterError.BadOffset)
            return ack(OtaUpdaterError.BadOffset)
        }
        const end = written + data.length
        if (end > u.imageSize) return ack(this.fail(OtaUpdaterError.TooLarge, `write past image_size at ${offset}`))
        // esp_ota_write's check of the first byte (the bytecode magic for a program), done
        // before anything is erased
        const magicOk = u.slot === PROGRAM ? startsLikeBytecode(data) : data[0] === IMAGE_MAGIC
        if (offset === 0 && data.length > 0 && !magicOk)
            return ack(
                this.fail(
                    OtaUpdaterError.NotAppImage,
                    `write at 0: first byte 0x${data[0].toString(16)}, not ${u.slot === PROGRAM ? "bytecode" : "an app image"}`,
                ),
            )
        try {
            // OTA_WITH_SEQUENTIAL_WRITES: a sector is erased just before the first write into it
            while (u.erasedUpTo < end) {
                this.flash.eraseSector(u.partition.offset + u.erasedUpTo)
                u.erasedUpTo += SECTOR_SIZE
            }
            this.flash.write(u.partition.offset + offset, data)
        } catch (e) {
            return ack(this.fail(OtaUpdaterError.FlashWrite, `write at ${offset}: ${errorText(e)}`))
        }
        // a write reaching or crossing a sector boundary completes that sector: checkpoint
        // it, with the SHA-256 of the image up to the boundary (no record without a sha256)
        const boundary = end - (end % CHECKPOINT_BYTES)
        let prefixSha256: Buffer | undefined
        if (boundary > offset) {
            u.hash.update(data.subarray(0, boundary - offset))
            prefixSha256 = u.hash.copy().digest()
            u.hash.update(data.subarray(boundary - offset))
        } else {
            u.hash.update(data)
        }
        this.setProgress(end)
        if (prefixSha256 && u.expectedSha256 && boundary > u.checkpoint) {
            try {
                this.saveCheckpoint(u, boundary, prefixSha256)
            } catch (e) {
                return ack(this.fail(OtaUpdaterError.FlashWrite, `resume record at ${boundary}: ${errorText(e)}`))
            }
        }
        ack(OtaUpdaterError.None)
    }

    /** The data up to `nextOffset` is in flash: record it (nvs_set_blob + nvs_commit). */
    private saveCheckpoint(u: Update, nextOffset: number, prefixSha256: Buffer) {
        const record = { slot: u.slot, imageSize: u.imageSize, nextOffset, sha256: u.expectedSha256!, prefixSha256 }
        this.nvs.set(RESUME_SIM_KEY, encodeResumeRecord(record))
        u.checkpoint = nextOffset
    }

    /** The resume record as stored, for tests and tools; undefined when there is none. */
    resumeRecord(): ResumeRecord | undefined {
        const raw = this.nvs.get(RESUME_SIM_KEY)
        return raw && decodeResumeRecord(raw)
    }

    private handleCommit() {
        const reply = (error: number, slot: number) =>
            this.reply(OtaUpdaterCmd.Commit, OtaUpdaterCmdPack.CommitReport, [error, slot])
        const u = this.update
        // a retried commit whose report was lost gets the same answer again
        if (u && this.state === OtaUpdaterState.Ready) return reply(OtaUpdaterError.None, u.slot)
        if (u && this.state === OtaUpdaterState.Error) return reply(this.failure, u.slot)
        if (!u || this.state !== OtaUpdaterState.Receiving) {
            this.set(this.lastErrorReg, OtaUpdaterError.InvalidState)
            return reply(OtaUpdaterError.InvalidState, NO_SLOT)
        }

        this.set(this.stateReg, OtaUpdaterState.Validating)
        const error = this.validate(u)
        // success or failure, the partial image is done with: the record goes first, before
        // the boot switch (a failed image must not be resumed into the same failure)
        try {
            this.nvs.erase(RESUME_SIM_KEY)
        } catch (e) {
            if (!error) return reply(this.fail(OtaUpdaterError.FlashWrite, `clear resume record: ${errorText(e)}`), u.slot)
            this.log(`ota: commit: clear resume record: ${errorText(e)}`)
        }
        if (error) return reply(this.fail(error, "commit"), u.slot)
        if (u.slot === PROGRAM) {
            // checked: the copy into the program store follows the report
            this.set(this.stateReg, OtaUpdaterState.Ready)
            this.log(`ota: program of ${u.imageSize} bytes checked, installing`)
            this.event(OtaUpdaterEvent.Ready, OtaUpdaterEventPack.Ready, [u.slot])
            reply(OtaUpdaterError.None, u.slot)
            this.installTimer = setTimeout(() => this.installProgram(u), PROGRAM_INSTALL_DELAY_MS)
            return
        }
        try {
            u.otadataEntry = setBootPartition(this.flash, u.slot, { chipId: this.chipId })
        } catch (e) {
            return reply(this.fail(OtaUpdaterError.FlashWrite, `set boot partition: ${errorText(e)}`), u.slot)
        }
        this.set(this.stateReg, OtaUpdaterState.Ready)
        this.log(`ota: ${u.partition.label} validated, boots next`)
        this.event(OtaUpdaterEvent.Ready, OtaUpdaterEventPack.Ready, [u.slot])
        reply(OtaUpdaterError.None, u.slot)
    }

    /** esp_ota_end's checks, plus the SHA-256 the client gave to begin. */
    private validate(u: Update): number {
        if (this.bytesWritten !== u.imageSize) return OtaUpdaterError.Incomplete
        const digest = (u.digest = u.hash.digest())
        if (u.expectedSha256 && !digest.equals(u.expectedSha256)) return OtaUpdaterError.Sha256Mismatch
        let image: Buffer
        try {
            image = this.flash.read(u.partition.offset, u.imageSize) // what the bootloader will see
        } catch (e) {
            return OtaUpdaterError.FlashWrite
        }
        if (u.slot === PROGRAM) {
            // the runtime's check before it runs a program (devs_verify), as far as the header goes
            const program = checkBytecode(image)
            if (program.ok) return OtaUpdaterError.None
            this.log(`ota: ${program.message}`)
            return OtaUpdaterError.NotAppImage
        }
        const check = checkAppImage(image, this.chipId)
        if (!check.ok && check.code === "wrong_chip") {
            this.log(`ota: ${check.message}`)
            return OtaUpdaterError.WrongChip
        }
        // signed apps: after the layout, before the checksum (esp_image_verify's order)
        if (this.trustedKeyDigest) {
            if (!layoutReadable(check.info, image)) {
                this.log(`ota: ${check.ok ? "layout" : check.message}`)
                return OtaUpdaterError.NotAppImage
            }
            const signature = verifySignedImage(image, this.trustedKeyDigest)
            if (!signature.ok) {
                this.log(`ota: signature: ${signature.message}`)
                return OtaUpdaterError.BadSignature
            }
        }
        if (check.ok) return OtaUpdaterError.None
        this.log(`ota: ${check.message}`)
        return OtaUpdaterError.NotAppImage
    }

    /**
     * Copies the checked program from progstage into the program store: the program
     * record first, so that a power cut during the copy is repaired at the next start.
     */
    private installProgram(u: Update) {
        this.installTimer = undefined
        if (this.update !== u || this.state !== OtaUpdaterState.Ready) return
        try {
            const image = this.flash.read(u.partition.offset, u.imageSize)
            this.nvs.set(PROGRAM_SIM_KEY, encodeProgramRecord(u.imageSize, u.digest!))
            this.deployProgram!(padProgram(image))
            this.nvs.erase(PROGRAM_SIM_KEY)
        } catch (e) {
            this.fail(OtaUpdaterError.FlashWrite, `program install: ${errorText(e)}`)
            return
        }
        this.log(`ota: program installed, restarted`)
        this.dropUpdate()
    }

    /**
     * At start: a program record means a copy into the program store was cut short.
     * When progstage still holds the program it names, the copy is done again;
     * the record is removed either way. Returns true when a program was installed.
     */
    recoverProgram(): boolean {
        try {
            const raw = this.nvs.get(PROGRAM_SIM_KEY)
            if (!raw) return false
            const record = decodeProgramRecord(raw)
            const staging = this.stagingPartition()
            let image: Buffer | undefined
            if (record && staging && this.deployProgram && record.size > DEVS_IMAGE_HEADER_LEN && record.size <= this.programMaxSize()) {
                image = this.flash.read(staging.offset, record.size)
                if (!createHash("sha256").update(image).digest().equals(record.sha256)) image = undefined
            }
            if (image) this.deployProgram!(padProgram(image))
            this.nvs.erase(PROGRAM_SIM_KEY)
            this.log(image ? "ota: program install finished after a reset" : "ota: program record dropped")
            return !!image
        } catch (e) {
            this.log(`ota: program recovery: ${errorText(e)}`)
            return false
        }
    }

    /** Deferred work is pending: a checked program waits to be copied into the program store. */
    busy(): boolean {
        return this.installTimer !== undefined
    }

    /** A program record is in NVS: a copy into the program store has started and not finished. */
    programInstallPending(): boolean {
        return !!this.nvs.get(PROGRAM_SIM_KEY)
    }

    /** Stops deferred work (a program install not started yet): the device lost power or reset. */
    close() {
        if (this.installTimer) clearTimeout(this.installTimer)
        this.installTimer = undefined
    }

    /** The largest program the `program` target takes: progstage's size, at most Limits.ProgramBytes. */
    private programMaxSize(): number {
        return Math.min(this.stagingPartition()?.size ?? 0, OtaUpdaterLimits.ProgramBytes)
    }

    /** The staging partition of program updates, or undefined when the table has none. */
    private stagingPartition(): Partition | undefined {
        return this.flash.partitions().find(p => p.label === PROGRAM_STAGING_LABEL)
    }

    private handleAbort() {
        const was = this.state
        try {
            this.dropUpdate()
            this.nvs.erase(RESUME_SIM_KEY)
        } catch (e) {
            return this.reply(OtaUpdaterCmd.Abort, OtaUpdaterCmdPack.AbortReport, [
                this.fail(OtaUpdaterError.FlashWrite, `abort: ${errorText(e)}`),
            ])
        }
        if (was !== OtaUpdaterState.Idle) this.log("ota: aborted")
        this.reply(OtaUpdaterCmd.Abort, OtaUpdaterCmdPack.AbortReport, [OtaUpdaterError.None])
    }

    private handleReboot() {
        this.log("ota: reboot")
        this.onReboot()
    }

    private handleConfirm() {
        let error: number = OtaUpdaterError.None
        if (this.pendingVerify) {
            try {
                markValid(this.flash)
                this.log(`ota: ${this.bootResult.label} confirmed`)
            } catch (e) {
                error = OtaUpdaterError.FlashWrite
                this.set(this.lastErrorReg, error)
                this.log(`ota: confirm: ${errorText(e)}`)
            }
        }
        this.set(this.pendingVerifyReg, this.pendingVerify ? 1 : 0)
        this.reply(OtaUpdaterCmd.Confirm, OtaUpdaterCmdPack.ConfirmReport, [error])
    }

    // No report in the spec: a refusal is visible in last_error only.
    private handleReject() {
        if (!this.pendingVerify) {
            this.set(this.lastErrorReg, OtaUpdaterError.InvalidState)
            return
        }
        try {
            markInvalidAndRollback(this.flash, { chipId: this.chipId })
        } catch (e) {
            this.set(this.lastErrorReg, OtaUpdaterError.InvalidState)
            this.log(`ota: reject: ${errorText(e)}`)
            return
        }
        this.log(`ota: ${this.bootResult.label} rejected, rolling back`)
        this.onReboot()
    }

    // --- helpers --------------------------------------------------------------------

    /**
     * Forgets the update under way. After a commit that was not rebooted into yet, the
     * otadata entry it wrote is erased again, so the boot slot is what it was before.
     */
    private dropUpdate() {
        const u = this.update
        this.update = undefined
        if (this.installTimer) clearTimeout(this.installTimer)
        this.installTimer = undefined
        this.failure = OtaUpdaterError.None
        this.set(this.stateReg, OtaUpdaterState.Idle)
        this.set(this.imageSizeReg, 0)
        this.setProgress(0)
        if (u && u.otadataEntry !== undefined && this.otadataEntryIsOurs(u)) eraseOtadataEntry(this.flash, u.otadataEntry)
    }

    private otadataEntryIsOurs(u: Update): boolean {
        const e = readOtadata(this.flash)[u.otadataEntry!]
        const slots = this.flash.otaSlots().length
        return e.state === OtaImgState.New && ((e.seq - 1) >>> 0) % slots === u.slot
    }

    /** The update is over with `error`: state error, last_error, event failed. Returns `error`. */
    private fail(error: number, what: string): number {
        this.failure = error
        this.set(this.lastErrorReg, error)
        this.set(this.stateReg, OtaUpdaterState.Error)
        this.log(`ota: ${what}: ${OtaUpdaterError[error] ?? error}`)
        this.event(OtaUpdaterEvent.Failed, OtaUpdaterEventPack.Failed, [error])
        return error
    }

    private setProgress(written: number) {
        const u = this.update
        this.set(this.bytesWrittenReg, written)
        this.set(this.progressReg, u && u.imageSize ? written / u.imageSize : 0)
        const seconds = u ? (this.now() - u.startedAt) / 1000 : 0
        const sent = u ? written - u.resumedFrom : 0 // bytes received since begin
        this.set(this.throughputReg, seconds > 0 ? Math.round(sent / seconds) : 0)
    }

    private set(reg: Reg, value: number) {
        reg.setValues([value])
    }

    /** Unpacks a command payload; undefined when it is shorter than its fixed fields. */
    private unpack<T extends any[]>(pkt: Packet, fmt: string, minLength: number): T | undefined {
        if (pkt.data.length < minLength) return undefined
        return jdunpack<T>(pkt.data, fmt)
    }

    /** A report carries the command's code, which is how a DeviceScript client matches it. */
    private reply(cmd: number, fmt: string, values: any[]) {
        this.sendPacketAsync(Packet.jdpacked(cmd, fmt, values)).catch(e => this.log(`ota: send: ${errorText(e)}`))
    }

    private event(code: number, fmt: string, values: any[]) {
        this.sendEvent(code, jdpack(fmt, values)).catch(e => this.log(`ota: send: ${errorText(e)}`))
    }
}

/** devsmgr_deploy_start takes whole 32-byte units: the program, zero padded to a multiple of 32. */
export function padProgram(image: Buffer): Buffer {
    const pad = (32 - (image.length % 32)) % 32
    return pad ? Buffer.concat([image, Buffer.alloc(pad)]) : image
}

function errorText(e: unknown): string {
    return e instanceof Error ? e.message : String(e)
}
