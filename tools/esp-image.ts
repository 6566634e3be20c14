// ESP app image (the .bin that esp_ota_write takes): parse, validate and build.
// Layouts follow ESP-IDF esp_app_format.h / esp_app_desc.h and esptool bin_image.py.
import { createHash } from "node:crypto"
import { mulberry32 } from "./prng"

/** Image header chip ids (esp_chip_id_t; esptool IMAGE_CHIP_ID). */
export const CHIP_IDS: Record<string, number> = {
    esp32: 0,
    esp32s2: 2,
    esp32s3beta2: 4,
    esp32c3: 5,
    esp32c6beta: 7,
    esp32s3: 9,
    esp32h2beta1: 10,
    esp32c2: 12,
    esp32c6: 13,
    esp32h2beta2: 14,
    esp32h2: 16,
    esp32c5beta3: 17,
    esp32p4: 18,
    esp32c61: 20,
    esp32c5: 23,
}

export const ESP32S3_CHIP_ID = 9

export function chipName(id: number): string {
    for (const [name, v] of Object.entries(CHIP_IDS)) if (v === id) return name
    return `unknown(0x${id.toString(16)})`
}

/** Chip id from a name ("esp32s3", "ESP32-S3") or a number ("9", "0x9"); undefined if neither. */
export function parseChip(s: string): number | undefined {
    const key = s.toLowerCase().replace(/[-_]/g, "")
    if (key in CHIP_IDS) return CHIP_IDS[key]
    if (/^(0x[0-9a-f]+|\d+)$/.test(key)) {
        const n = Number(key)
        if (n <= 0xffff) return n
    }
    return undefined
}

export const IMAGE_MAGIC = 0xe9
export const APP_DESC_MAGIC = 0xabcd5432
export const HEADER_LEN = 24
export const SEGMENT_HEADER_LEN = 8
export const APP_DESC_LEN = 256
export const MAX_SEGMENTS = 16
const CHECKSUM_SEED = 0xef
const HASH_LEN = 32
const SIXTEEN_MB = 0x1000000
const DEFAULT_MMU_PAGE = 0x10000

export interface AppDescriptor {
    secureVersion: number
    version: string
    projectName: string
    time: string
    date: string
    idfVersion: string
    elfSha256: string // hex
    // ESP-IDF v5 fields after app_elf_sha256 (zero in images from older IDF)
    minEfuseBlkRevFull: number
    maxEfuseBlkRevFull: number
    mmuPageSize: number // log2 of the MMU page size
}

export interface SegmentInfo {
    index: number
    loadAddress: number
    fileOffset: number // of the data
    length: number
    headerOffset: number // of the 8-byte segment header (what esptool prints as "file offs")
    region: string // "DROM", "IROM", "DRAM", ... or "" when unknown for the chip
}

export interface ImageInfo {
    magicOk: boolean
    segmentCount: number
    spiMode: number
    spiSpeedSize: number
    entry: number
    chipId: number
    chipName: string
    minChipRev: number
    minRevFull: number
    maxRevFull: number
    hashAppended: boolean
    segments: SegmentInfo[]
    checksum: { stored: number; computed: number; valid: boolean } | null
    sha256: { stored: string; computed: string; valid: boolean } | null // appended hash, hex
    imageLength: number // header+segments+padding+checksum(+32 if hashAppended); 0 if the layout is unreadable
    appDesc: AppDescriptor | null
    errors: string[] // human readable; empty means a valid app image
}

// Flash-mapped (cache) address windows per chip, from esptool's *_MAP_START/END.
const FLASH_MAPS: Record<number, { irom: [number, number]; drom: [number, number] }> = {
    0: { irom: [0x400d0000, 0x40400000], drom: [0x3f400000, 0x3f800000] },
    2: { irom: [0x40080000, 0x40b80000], drom: [0x3f000000, 0x3f3f0000] },
    5: { irom: [0x42000000, 0x42800000], drom: [0x3c000000, 0x3c800000] },
    9: { irom: [0x42000000, 0x44000000], drom: [0x3c000000, 0x3e000000] },
    12: { irom: [0x42000000, 0x42400000], drom: [0x3c000000, 0x3c400000] },
    13: { irom: [0x42000000, 0x42800000], drom: [0x42800000, 0x43000000] },
    16: { irom: [0x42000000, 0x42800000], drom: [0x42800000, 0x43000000] },
    18: { irom: [0x40000000, 0x4c000000], drom: [0x40000000, 0x4c000000] },
    20: { irom: [0x42000000, 0x42800000], drom: [0x42800000, 0x43000000] },
    23: { irom: [0x42000000, 0x42800000], drom: [0x42800000, 0x43000000] },
}

// ESP32-S3 RAM regions (esptool ESP32S3ROM.MEMORY_MAP), to label segments.
const S3_RAM_REGIONS: [number, number, string][] = [
    [0x3fc88000, 0x3fd00000, "DRAM"],
    [0x40370000, 0x403e0000, "IRAM"],
    [0x600fe000, 0x60100000, "RTC_FAST"],
    [0x50000000, 0x50002000, "RTC_DATA"],
]

const inRange = (a: number, [lo, hi]: [number, number]) => a >= lo && a < hi

function isFlashMapped(chipId: number, addr: number): boolean {
    const m = FLASH_MAPS[chipId]
    return !!m && (inRange(addr, m.irom) || inRange(addr, m.drom))
}

export function regionName(chipId: number, addr: number): string {
    const m = FLASH_MAPS[chipId]
    if (m && inRange(addr, m.drom) && m.drom[0] !== m.irom[0]) return "DROM"
    if (m && inRange(addr, m.irom)) return m.drom[0] === m.irom[0] ? "FLASH" : "IROM"
    if (addr === 0) return "PADDING"
    if (chipId === ESP32S3_CHIP_ID)
        for (const [lo, hi, name] of S3_RAM_REGIONS) if (addr >= lo && addr < hi) return name
    return ""
}

const hex8 = (n: number) => "0x" + n.toString(16).padStart(8, "0")
const hex2 = (n: number) => "0x" + n.toString(16).padStart(2, "0")

function cString(buf: Buffer, start: number, len: number): string {
    const field = buf.subarray(start, start + len)
    const nul = field.indexOf(0)
    return field.subarray(0, nul < 0 ? len : nul).toString("utf8")
}

function parseAppDesc(d: Buffer): AppDescriptor {
    return {
        secureVersion: d.readUInt32LE(4),
        version: cString(d, 16, 32),
        projectName: cString(d, 48, 32),
        time: cString(d, 80, 16),
        date: cString(d, 96, 16),
        idfVersion: cString(d, 112, 32),
        elfSha256: d.subarray(144, 176).toString("hex"),
        minEfuseBlkRevFull: d.readUInt16LE(176),
        maxEfuseBlkRevFull: d.readUInt16LE(178),
        mmuPageSize: d[180],
    }
}

function xorBytes(buf: Buffer, start: number, end: number, acc: number): number {
    for (let i = start; i < end; i++) acc ^= buf[i]
    return acc
}

/** Parses and checks an app image the way esp_image_verify does; never throws. */
export function inspectImage(buf: Buffer): ImageInfo {
    const info: ImageInfo = {
        magicOk: buf.length > 0 && buf[0] === IMAGE_MAGIC,
        segmentCount: 0,
        spiMode: 0,
        spiSpeedSize: 0,
        entry: 0,
        chipId: -1,
        chipName: "unknown",
        minChipRev: 0,
        minRevFull: 0,
        maxRevFull: 0,
        hashAppended: false,
        segments: [],
        checksum: null,
        sha256: null,
        imageLength: 0,
        appDesc: null,
        errors: [],
    }
    const errors = info.errors
    if (buf.length < HEADER_LEN) {
        errors.push(`file too short for an image header (${buf.length} bytes, need ${HEADER_LEN})`)
        return info
    }
    info.segmentCount = buf[1]
    info.spiMode = buf[2]
    info.spiSpeedSize = buf[3]
    info.entry = buf.readUInt32LE(4)
    info.chipId = buf.readUInt16LE(12)
    info.chipName = chipName(info.chipId)
    info.minChipRev = buf[14]
    info.minRevFull = buf.readUInt16LE(15)
    info.maxRevFull = buf.readUInt16LE(17)
    info.hashAppended = buf[23] === 1
    if (!info.magicOk) {
        // like ESP-IDF, stop here: whatever follows is not an image
        errors.push(`invalid magic byte ${hex2(buf[0])} (expected 0xe9)`)
        return info
    }
    if (buf[23] > 1) errors.push(`invalid hash_appended byte ${hex2(buf[23])} (expected 0 or 1)`)
    if (info.segmentCount > MAX_SEGMENTS) {
        errors.push(`segment count ${info.segmentCount} exceeds max ${MAX_SEGMENTS}`)
        return info
    }
    if (info.segmentCount === 0) errors.push("image has no segments")

    let pos = HEADER_LEN
    let checksum = CHECKSUM_SEED
    let mmuPage = DEFAULT_MMU_PAGE
    for (let i = 0; i < info.segmentCount; i++) {
        if (pos + SEGMENT_HEADER_LEN > buf.length) {
            errors.push(`truncated: segment ${i} header at ${hex8(pos)} is past the end of the file (${buf.length} bytes)`)
            return info
        }
        const loadAddress = buf.readUInt32LE(pos)
        const length = buf.readUInt32LE(pos + 4)
        const dataOff = pos + SEGMENT_HEADER_LEN
        if (length >= SIXTEEN_MB) {
            errors.push(`segment ${i}: invalid length ${hex8(length)}`)
            return info
        }
        if (dataOff + length > buf.length) {
            errors.push(`truncated: segment ${i} data ${hex8(dataOff)}+${hex8(length)} runs past the end of the file (${buf.length} bytes)`)
            return info
        }
        info.segments.push({
            index: i,
            loadAddress,
            fileOffset: dataOff,
            length,
            headerOffset: pos,
            region: regionName(info.chipId, loadAddress),
        })
        // the bootloader checksums 32-bit words, so lengths must be word multiples
        if (length % 4 !== 0) errors.push(`segment ${i}: length ${hex8(length)} is not a multiple of 4`)
        if (i === 0) {
            if (length >= APP_DESC_LEN && buf.readUInt32LE(dataOff) === APP_DESC_MAGIC) {
                info.appDesc = parseAppDesc(buf.subarray(dataOff, dataOff + APP_DESC_LEN))
                const p = info.appDesc.mmuPageSize
                if (p >= 12 && p <= 16) mmuPage = 1 << p
            } else {
                errors.push(`no app descriptor: segment 0 does not start with magic ${hex8(APP_DESC_MAGIC)}`)
            }
        }
        // the cache maps whole MMU pages, so flash and virtual offsets must agree within a page
        if (isFlashMapped(info.chipId, loadAddress) && dataOff % mmuPage !== loadAddress % mmuPage)
            errors.push(`segment ${i}: load address ${hex8(loadAddress)} does not match its file offset ${hex8(dataOff)} modulo the ${mmuPage / 1024} KB MMU page`)
        checksum = xorBytes(buf, dataOff, dataOff + length, checksum)
        pos = dataOff + length
    }

    // padding so that (offset of checksum byte + 1) is a multiple of 16
    const checksumOff = pos + (15 - (pos % 16))
    if (checksumOff >= buf.length) {
        errors.push(`truncated: checksum byte at ${hex8(checksumOff)} is past the end of the file (${buf.length} bytes)`)
        return info
    }
    const stored = buf[checksumOff]
    info.checksum = { stored, computed: checksum, valid: stored === checksum }
    if (!info.checksum.valid) errors.push(`checksum mismatch: stored ${hex2(stored)}, computed ${hex2(checksum)}`)

    const bodyEnd = checksumOff + 1
    if (info.hashAppended) {
        if (bodyEnd + HASH_LEN > buf.length) {
            errors.push(`truncated: appended SHA-256 at ${hex8(bodyEnd)} is past the end of the file (${buf.length} bytes)`)
            return info
        }
        const storedHash = buf.subarray(bodyEnd, bodyEnd + HASH_LEN).toString("hex")
        const computed = createHash("sha256").update(buf.subarray(0, bodyEnd)).digest("hex")
        info.sha256 = { stored: storedHash, computed, valid: storedHash === computed }
        if (!info.sha256.valid) errors.push("appended SHA-256 does not match the image")
    }
    info.imageLength = bodyEnd + (info.hashAppended ? HASH_LEN : 0)
    return info
}

export type ImageCheck =
    | { ok: true; info: ImageInfo }
    | { ok: false; code: "not_app_image" | "wrong_chip"; message: string; info: ImageInfo }

/**
 * What esp_ota_end checks before accepting an update (signature and partition size aside).
 * The chip id is checked right after the header, as ESP-IDF does, so an image for another
 * chip is "wrong_chip" even if it has other defects.
 */
export function checkAppImage(buf: Buffer, expectedChipId = ESP32S3_CHIP_ID): ImageCheck {
    const info = inspectImage(buf)
    const headerOk = info.magicOk && buf.length >= HEADER_LEN
    if (headerOk && info.chipId !== expectedChipId)
        return {
            ok: false,
            code: "wrong_chip",
            message: `image is for ${info.chipName} (chip id ${info.chipId}), expected ${chipName(expectedChipId)} (chip id ${expectedChipId})`,
            info,
        }
    if (info.errors.length > 0)
        return { ok: false, code: "not_app_image", message: "not an app image: " + info.errors.join("; "), info }
    return { ok: true, info }
}

export interface BuildOptions {
    version: string
    payloadSize: number // approximate total file size in bytes
    chipId?: number // default 9 (esp32s3)
    projectName?: string
    seed?: number // default: derived from version and projectName
    secureVersion?: number
    idfVersion?: string
    hashAppended?: boolean // default true
    time?: string // app descriptor compile time, default "00:00:00"
    date?: string // app descriptor compile date, default "Jan  1 2025"
}

// RAM load addresses for built images: ESP32-S3 values as in real ESP-IDF v5 images; chips whose
// flash windows cover those get their own, so their images pass the MMU page check too.
const RAM_BASES: Record<number, { dram: number; iram: number }> = {
    [ESP32S3_CHIP_ID]: { dram: 0x3fc92a00, iram: 0x40374000 },
    0: { dram: 0x3ffb0000, iram: 0x40080000 },
    2: { dram: 0x3ffbde90, iram: 0x40022000 },
    18: { dram: 0x4ff00a00, iram: 0x4ff10000 },
}

interface SegmentPlan {
    addr: number
    len: number
}

interface Layout {
    drom: number // first DROM vaddr at offset 0x20 in a 64 KB page
    irom: number
    dram: number
    iram: number
}

function layoutFor(chipId: number): Layout {
    const map = FLASH_MAPS[chipId] ?? FLASH_MAPS[ESP32S3_CHIP_ID]
    const ram = RAM_BASES[chipId] ?? RAM_BASES[ESP32S3_CHIP_ID]
    return { drom: map.drom[0] + 0x20, irom: map.irom[0] + 0x20, ...ram }
}

const floor4 = (n: number) => Math.max(0, Math.floor(n / 4) * 4)

/**
 * Segment layout like esptool elf2image: DROM first (app descriptor at file offset 0x20),
 * RAM segments filling the gap up to the next 64 KB page, IROM page-aligned, remaining IRAM last.
 * Images too small for a page-aligned IROM get only DROM + DRAM + IRAM, which is still valid.
 */
function planSegments(size: number, hashLen: number, at: Layout): SegmentPlan[] {
    const tail = 1 + hashLen // checksum byte (+ hash); padding absorbs the rest
    const drom = Math.max(APP_DESC_LEN, floor4(size * 0.25))
    const dram = Math.max(4, Math.min(0x2400, floor4(size * 0.04)))
    const iram2 = Math.max(4, Math.min(0x10000, floor4(size * 0.08)))
    const gapStart = HEADER_LEN + SEGMENT_HEADER_LEN + drom + SEGMENT_HEADER_LEN + dram
    // IROM data must sit at a file offset equal to its vaddr (0x...0020) modulo 64 KB,
    // so its header starts at 0x...0018
    const minIram1 = 0x100
    const iromHeader = Math.ceil((gapStart + SEGMENT_HEADER_LEN + minIram1 - 0x18) / 0x10000) * 0x10000 + 0x18
    const irom = floor4(size - (iromHeader + 2 * SEGMENT_HEADER_LEN + iram2 + tail))
    if (irom >= 0x1000) {
        const iram1 = iromHeader - gapStart - SEGMENT_HEADER_LEN
        // ESP-IDF puts rodata after the text pages: on S3 (and others) I and D share the MMU
        const iromPages = Math.ceil((0x20 + irom) / 0x10000)
        return [
            { addr: at.drom + iromPages * 0x10000, len: drom },
            { addr: at.dram, len: dram },
            { addr: at.iram, len: iram1 },
            { addr: at.irom, len: irom },
            { addr: at.iram + iram1, len: iram2 },
        ]
    }
    const smallDrom = Math.max(APP_DESC_LEN, floor4(size * 0.5))
    const smallDram = Math.max(4, floor4(size * 0.15))
    const used = HEADER_LEN + 3 * SEGMENT_HEADER_LEN + smallDrom + smallDram + tail
    return [
        { addr: at.drom, len: smallDrom },
        { addr: at.dram, len: smallDram },
        { addr: at.iram, len: Math.max(4, floor4(size - used)) },
    ]
}

function writeCString(buf: Buffer, off: number, len: number, s: string, field: string) {
    const b = Buffer.from(s, "utf8")
    // ESP-IDF static-asserts these fit with their terminating NUL
    if (b.length >= len) throw new RangeError(`${field} "${s}" is longer than ${len - 1} bytes`)
    b.copy(buf, off)
}

/** Builds a structurally valid ESP-IDF v5 style app image of about opts.payloadSize bytes. */
export function buildAppImage(opts: BuildOptions): Buffer {
    const chipId = opts.chipId ?? ESP32S3_CHIP_ID
    const projectName = opts.projectName ?? "esp-ota-app"
    const hashAppended = opts.hashAppended ?? true
    if (!Number.isInteger(opts.payloadSize) || opts.payloadSize < 0 || opts.payloadSize >= SIXTEEN_MB)
        throw new RangeError(`payloadSize must be an integer in [0, 16 MB), got ${opts.payloadSize}`)
    if (!Number.isInteger(chipId) || chipId < 0 || chipId > 0xffff) throw new RangeError(`bad chipId ${chipId}`)
    const seed =
        opts.seed ?? createHash("sha256").update(`${opts.version}\0${projectName}`).digest().readUInt32LE(0)

    const plan = planSegments(opts.payloadSize, hashAppended ? HASH_LEN : 0, layoutFor(chipId))
    let end = HEADER_LEN
    for (const s of plan) end += SEGMENT_HEADER_LEN + s.len
    const checksumOff = end + (15 - (end % 16))
    const total = checksumOff + 1 + (hashAppended ? HASH_LEN : 0)
    const buf = Buffer.alloc(total)

    // header, with the values ESP-IDF v5 passes to esptool elf2image for ESP32-S3
    buf[0] = IMAGE_MAGIC
    buf[1] = plan.length
    buf[2] = 2 // DIO
    buf[3] = 0x1f // 2MB, 80 MHz
    const lastIram = plan[plan.length - 1]
    buf.writeUInt32LE(lastIram.addr, 4) // entry: start of the IRAM text segment
    buf[8] = 0xee // wp pin disabled
    buf.writeUInt16LE(chipId, 12)
    buf[14] = 0 // legacy min_chip_rev
    buf.writeUInt16LE(0, 15) // min_chip_rev_full v0.0
    buf.writeUInt16LE(99, 17) // max_chip_rev_full v0.99 (CONFIG_ESP_REV_MAX_FULL)
    buf[23] = hashAppended ? 1 : 0

    const next = mulberry32(seed)
    let pos = HEADER_LEN
    const dataRanges: [number, number][] = []
    for (const s of plan) {
        buf.writeUInt32LE(s.addr, pos)
        buf.writeUInt32LE(s.len, pos + 4)
        pos += SEGMENT_HEADER_LEN
        for (let i = 0; i < s.len; i += 4) buf.writeUInt32LE(next(), pos + i)
        dataRanges.push([pos, pos + s.len])
        pos += s.len
    }

    // app descriptor at the start of segment 0 (DROM)
    const d = HEADER_LEN + SEGMENT_HEADER_LEN
    buf.fill(0, d, d + APP_DESC_LEN)
    // stand-in for the ELF file hash: hash of all segment contents except the descriptor
    const elf = createHash("sha256")
    for (const [a, b] of dataRanges) elf.update(buf.subarray(a === d ? d + APP_DESC_LEN : a, b))
    buf.writeUInt32LE(APP_DESC_MAGIC, d)
    buf.writeUInt32LE((opts.secureVersion ?? 0) >>> 0, d + 4)
    writeCString(buf, d + 16, 32, opts.version, "version")
    writeCString(buf, d + 48, 32, projectName, "projectName")
    writeCString(buf, d + 80, 16, opts.time ?? "00:00:00", "time")
    writeCString(buf, d + 96, 16, opts.date ?? "Jan  1 2025", "date")
    writeCString(buf, d + 112, 32, opts.idfVersion ?? "v5.3.1", "idfVersion")
    elf.digest().copy(buf, d + 144)
    buf.writeUInt16LE(0, d + 176) // min_efuse_blk_rev_full
    buf.writeUInt16LE(199, d + 178) // max_efuse_blk_rev_full (ESP32-S3 default v1.99)
    buf[d + 180] = 16 // mmu_page_size: log2(64 KB)

    let checksum = CHECKSUM_SEED
    for (const [a, b] of dataRanges) checksum = xorBytes(buf, a, b, checksum)
    buf[checksumOff] = checksum
    if (hashAppended) createHash("sha256").update(buf.subarray(0, checksumOff + 1)).digest().copy(buf, checksumOff + 1)
    return buf
}

/**
 * Writes an edited image's checksum byte and appended SHA-256 again (in place), so that
 * only a signature can tell the edit: what someone who changes an image does. Throws if
 * the layout is unreadable. Bytes after the image (a signature sector) are left as they are.
 */
export function resealImage(buf: Buffer): Buffer {
    const info = inspectImage(buf)
    if (!info.imageLength) throw new Error(`resealImage: ${info.errors.join("; ")}`)
    const hashLen = info.hashAppended ? HASH_LEN : 0
    const checksumAt = info.imageLength - hashLen - 1
    let checksum = CHECKSUM_SEED
    for (const seg of info.segments) checksum = xorBytes(buf, seg.fileOffset, seg.fileOffset + seg.length, checksum)
    buf[checksumAt] = checksum
    if (hashLen) createHash("sha256").update(buf.subarray(0, checksumAt + 1)).digest().copy(buf, checksumAt + 1)
    return buf
}
