// Simulated 4 MB SPI NOR flash of an ESP32-S3, kept in a file, with the pieces of ESP-IDF
// that live in flash: the partition table at 0x8000 (gen_esp32part.py format), otadata
// (esp_ota_select_entry_t x2) and the bootloader's slot selection and rollback
// (bootloader_utility.c, bootloader_common_loader.c, esp_ota_ops.c), modelled with
// CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y and no factory partition.
import * as fs from "node:fs"
import * as path from "node:path"
import { createHash } from "node:crypto"
import { crc32 } from "node:zlib"
import { checkAppImage, inspectImage, ESP32S3_CHIP_ID } from "../tools/esp-image"

export const FLASH_SIZE = 4 * 1024 * 1024
export const SECTOR_SIZE = 0x1000 // NOR erase granularity (SPI_FLASH_SEC_SIZE)
export const PARTITION_TABLE_OFFSET = 0x8000
export const PARTITION_TABLE_MAX_LEN = 0xc00 // ESP_PARTITION_TABLE_MAX_LEN
export const DEFAULT_PARTITIONS_CSV = path.join(__dirname, "..", "firmware", "partitions.csv")

// ---------------------------------------------------------------------------------------
// Partition table

export const PART_TYPE_APP = 0x00
export const PART_TYPE_DATA = 0x01
export const PART_SUBTYPE_OTA_0 = 0x10 // ota_N is 0x10 + N
export const PART_SUBTYPE_DATA_OTA = 0x00

export interface Partition {
    label: string
    type: number
    subtype: number
    offset: number
    size: number
    flags: number // bit 0 encrypted, bit 1 readonly
}

const TYPES: Record<string, number> = { app: PART_TYPE_APP, data: PART_TYPE_DATA }
const SUBTYPES: Record<number, Record<string, number>> = {
    [PART_TYPE_APP]: { factory: 0x00, test: 0x20 },
    [PART_TYPE_DATA]: {
        ota: 0x00,
        phy: 0x01,
        nvs: 0x02,
        coredump: 0x03,
        nvs_keys: 0x04,
        efuse: 0x05,
        undefined: 0x06,
        esphttpd: 0x80,
        fat: 0x81,
        spiffs: 0x82,
        littlefs: 0x83,
    },
}
for (let i = 0; i < 16; i++) SUBTYPES[PART_TYPE_APP][`ota_${i}`] = PART_SUBTYPE_OTA_0 + i
const FLAGS: Record<string, number> = { encrypted: 1 << 0, readonly: 1 << 1 }

const ENTRY_LEN = 32
const ENTRY_MAGIC = 0x50aa // bytes AA 50
const MD5_MAGIC = 0xebeb

/** gen_esp32part.py parse_int: 0x.., decimal, K/M suffixes, or a keyword. */
function parseNumber(text: string, keywords: Record<string, number> = {}): number {
    const t = text.trim()
    const lower = t.toLowerCase()
    if (lower in keywords) return keywords[lower]
    const m = /^(0x[0-9a-f]+|\d+)([km]?)$/.exec(lower)
    if (!m) throw new Error(`partition table: bad value "${text}"`)
    const mult = m[2] === "k" ? 1024 : m[2] === "m" ? 1024 * 1024 : 1
    return Number(m[1]) * mult
}

/** Parses an ESP-IDF partition CSV; empty offsets follow the previous partition, aligned as gen_esp32part.py does. */
export function parsePartitionsCsv(csv: string): Partition[] {
    const parts: Partition[] = []
    let lastEnd = PARTITION_TABLE_OFFSET + SECTOR_SIZE
    for (const raw of csv.split(/\r?\n/)) {
        const line = raw.trim()
        if (!line || line.startsWith("#")) continue
        const f = (line + ",,,,").split(",").map(s => s.trim())
        const [label, typeText, subtypeText, offsetText, sizeText, flagsText] = f
        const type = parseNumber(typeText, TYPES)
        const subtype = subtypeText ? parseNumber(subtypeText, SUBTYPES[type] ?? {}) : 0x06
        const align = type === PART_TYPE_APP ? 0x10000 : SECTOR_SIZE
        const offset = offsetText ? parseNumber(offsetText) : Math.ceil(lastEnd / align) * align
        if (!sizeText) throw new Error(`partition ${label}: size is empty`)
        const size = parseNumber(sizeText)
        let flags = 0
        for (const name of flagsText.split(":").filter(Boolean)) {
            if (!(name in FLAGS)) throw new Error(`partition ${label}: unknown flag ${name}`)
            flags |= FLAGS[name]
        }
        if (Buffer.byteLength(label) > 16) throw new Error(`partition ${label}: label longer than 16 bytes`)
        if (offset < lastEnd) throw new Error(`partition ${label} at 0x${offset.toString(16)} overlaps the previous one`)
        if (offset % align) throw new Error(`partition ${label}: offset not aligned to 0x${align.toString(16)}`)
        parts.push({ label, type, subtype, offset, size, flags })
        lastEnd = offset + size
    }
    const otadata = parts.filter(p => p.type === PART_TYPE_DATA && p.subtype === PART_SUBTYPE_DATA_OTA)
    if (otadata.length > 1 || otadata.some(p => p.size !== 0x2000))
        throw new Error("partition table: one otadata partition of size 0x2000 expected")
    return parts
}

/** The binary table as gen_esp32part.py writes it: entries, MD5 entry, 0xFF up to 0xC00 bytes. */
export function encodePartitionTable(parts: Partition[]): Buffer {
    const entries = Buffer.alloc(parts.length * ENTRY_LEN)
    parts.forEach((p, i) => {
        const e = entries.subarray(i * ENTRY_LEN, (i + 1) * ENTRY_LEN)
        e.writeUInt16LE(ENTRY_MAGIC, 0)
        e[2] = p.type
        e[3] = p.subtype
        e.writeUInt32LE(p.offset, 4)
        e.writeUInt32LE(p.size, 8)
        e.write(p.label, 12, 16, "utf8") // NUL padded
        e.writeUInt32LE(p.flags, 28)
    })
    const md5Entry = Buffer.alloc(ENTRY_LEN, 0xff)
    md5Entry.writeUInt16LE(MD5_MAGIC, 0)
    createHash("md5").update(entries).digest().copy(md5Entry, 16)
    const table = Buffer.alloc(PARTITION_TABLE_MAX_LEN, 0xff)
    if (entries.length + ENTRY_LEN >= PARTITION_TABLE_MAX_LEN) throw new Error("partition table too long")
    Buffer.concat([entries, md5Entry]).copy(table)
    return table
}

/** Reads the binary table back like esp_partition_table_verify: the MD5 entry must be present and match. */
export function decodePartitionTable(table: Buffer): Partition[] {
    const parts: Partition[] = []
    const md5 = createHash("md5")
    for (let off = 0; off + ENTRY_LEN <= table.length; off += ENTRY_LEN) {
        const e = table.subarray(off, off + ENTRY_LEN)
        const magic = e.readUInt16LE(0)
        if (magic === MD5_MAGIC) {
            if (!e.subarray(16).equals(md5.digest())) throw new Error("partition table: MD5 mismatch")
            return parts
        }
        if (magic !== ENTRY_MAGIC) break
        md5.update(e)
        const label = e.subarray(12, 28)
        const nul = label.indexOf(0)
        parts.push({
            label: label.subarray(0, nul < 0 ? 16 : nul).toString("utf8"),
            type: e[2],
            subtype: e[3],
            offset: e.readUInt32LE(4),
            size: e.readUInt32LE(8),
            flags: e.readUInt32LE(28),
        })
    }
    throw new Error("partition table: no MD5 entry")
}

// ---------------------------------------------------------------------------------------
// The flash chip

export type FlashOp = { kind: "erase" | "write"; offset: number; length: number }

export interface OpenOptions {
    /** Make a fresh flash (all 0xFF + partition table), replacing any file at `path`. */
    create?: boolean
    /** CSV text of the partition table for `create`; default firmware/partitions.csv. */
    partitionsCsv?: string
}

/**
 * NOR flash in a file: erase sets 4 KB sectors to 0xFF, a write can only clear bits
 * (stored = old AND new). Every change goes to the file with writeSync, so a simulated
 * reset (re-opening the file) sees exactly what a power cut would leave.
 */
export class SimFlash {
    /** Called before every erase/write; throwing from it simulates a power cut before that operation. */
    beforeChange?: (op: FlashOp) => void
    private readonly parts: Partition[]

    private constructor(
        readonly path: string,
        private fd: number,
    ) {
        this.parts = decodePartitionTable(this.read(PARTITION_TABLE_OFFSET, PARTITION_TABLE_MAX_LEN))
    }

    static open(file: string, options: OpenOptions = {}): SimFlash {
        if (options.create) {
            const csv = options.partitionsCsv ?? fs.readFileSync(DEFAULT_PARTITIONS_CSV, "utf8")
            const image = Buffer.alloc(FLASH_SIZE, 0xff)
            encodePartitionTable(parsePartitionsCsv(csv)).copy(image, PARTITION_TABLE_OFFSET)
            fs.writeFileSync(file, image)
        }
        const size = fs.statSync(file).size
        if (size !== FLASH_SIZE) throw new Error(`${file}: ${size} bytes, expected a ${FLASH_SIZE} byte flash`)
        return new SimFlash(file, fs.openSync(file, "r+"))
    }

    /** A fresh flash with `image` in ota_0 and otadata erased, so ota_0 boots (first use of a device). */
    static createWithImage(file: string, image: Buffer, options: Omit<OpenOptions, "create"> = {}): SimFlash {
        const flash = SimFlash.open(file, { ...options, create: true })
        const slot = flash.partition("ota_0")
        if (image.length > slot.size) throw new Error(`image of ${image.length} bytes does not fit ota_0`)
        flash.eraseRange(slot.offset, Math.ceil(image.length / SECTOR_SIZE) * SECTOR_SIZE)
        flash.write(slot.offset, image)
        return flash
    }

    /** What runs now (see peekBoot()); writes nothing. */
    peekBoot(options: { chipId?: number } = {}): BootResult {
        return peekBoot(this, options)
    }

    /** The app image in OTA slot `slot`, cut to its length; throws if the slot holds none. */
    readImage(slot: number): Buffer {
        const p = this.otaSlots()[slot]
        if (!p) throw new Error(`no OTA slot ${slot}`)
        const data = this.read(p.offset, p.size)
        const { imageLength } = inspectImage(data)
        if (!imageLength) throw new Error(`${p.label} holds no app image`)
        return data.subarray(0, imageLength)
    }

    close() {
        if (this.fd >= 0) fs.closeSync(this.fd)
        this.fd = -1
    }

    read(offset: number, length: number): Buffer {
        this.checkRange(offset, length)
        const buf = Buffer.alloc(length)
        let done = 0
        while (done < length) done += fs.readSync(this.fd, buf, done, length - done, offset + done)
        return buf
    }

    /** esp_flash_write on NOR: bits only go from 1 to 0; writing over unerased data corrupts it. */
    write(offset: number, data: Uint8Array) {
        this.checkRange(offset, data.length)
        if (data.length === 0) return
        this.beforeChange?.({ kind: "write", offset, length: data.length })
        const cell = this.read(offset, data.length)
        for (let i = 0; i < cell.length; i++) cell[i] &= data[i]
        this.writeRaw(offset, cell)
    }

    eraseSector(offset: number) {
        if (offset % SECTOR_SIZE) throw new Error(`erase at 0x${offset.toString(16)}: not sector aligned`)
        this.checkRange(offset, SECTOR_SIZE)
        this.beforeChange?.({ kind: "erase", offset, length: SECTOR_SIZE })
        this.writeRaw(offset, Buffer.alloc(SECTOR_SIZE, 0xff))
    }

    eraseRange(offset: number, length: number) {
        if (length % SECTOR_SIZE) throw new Error(`erase of ${length} bytes: not whole sectors`)
        for (let o = offset; o < offset + length; o += SECTOR_SIZE) this.eraseSector(o)
    }

    /** The layout read from the flash's own partition table. */
    partitions(): Partition[] {
        return this.parts.map(p => ({ ...p }))
    }

    partition(label: string): Partition {
        const p = this.parts.find(p => p.label === label)
        if (!p) throw new Error(`no partition "${label}"`)
        return { ...p }
    }

    /** ota_0, ota_1, ... as consecutive subtypes, like get_ota_partition_count(). */
    otaSlots(): Partition[] {
        const slots: Partition[] = []
        for (;;) {
            const p = this.parts.find(p => p.type === PART_TYPE_APP && p.subtype === PART_SUBTYPE_OTA_0 + slots.length)
            if (!p) return slots
            slots.push({ ...p })
        }
    }

    otadataPartition(): Partition {
        const p = this.parts.find(p => p.type === PART_TYPE_DATA && p.subtype === PART_SUBTYPE_DATA_OTA)
        if (!p) throw new Error("no otadata partition")
        return { ...p }
    }

    private writeRaw(offset: number, data: Buffer) {
        let done = 0
        while (done < data.length) done += fs.writeSync(this.fd, data, done, data.length - done, offset + done)
    }

    private checkRange(offset: number, length: number) {
        if (this.fd < 0) throw new Error("flash is closed")
        if (!Number.isInteger(offset) || offset < 0 || length < 0 || offset + length > FLASH_SIZE)
            throw new Error(`flash access 0x${offset.toString(16)}+${length} out of range`)
    }
}

// ---------------------------------------------------------------------------------------
// otadata: two esp_ota_select_entry_t, at otadata+0 and otadata+0x1000

export const OtaImgState = {
    New: 0,
    PendingVerify: 1,
    Valid: 2,
    Invalid: 3,
    Aborted: 4,
    Undefined: 0xffffffff,
} as const

export interface OtaSelectEntry {
    seq: number
    seqLabel: Buffer // 20 bytes, unused by ESP-IDF; kept as found
    state: number
    crc: number
}

const OTA_ENTRY_LEN = 32
const UINT32_MAX = 0xffffffff

/** bootloader_common_ota_select_crc = esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4), which is zlib's crc32 seeded with 0xFFFFFFFF. */
export function otaSelectCrc(seq: number): number {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(seq >>> 0)
    return crc32(b, UINT32_MAX) >>> 0
}

export function encodeOtaSelectEntry(e: OtaSelectEntry): Buffer {
    const b = Buffer.alloc(OTA_ENTRY_LEN, 0xff)
    b.writeUInt32LE(e.seq >>> 0, 0)
    e.seqLabel.copy(b, 4, 0, 20)
    b.writeUInt32LE(e.state >>> 0, 24)
    b.writeUInt32LE(e.crc >>> 0, 28)
    return b
}

export function decodeOtaSelectEntry(b: Buffer): OtaSelectEntry {
    return {
        seq: b.readUInt32LE(0),
        seqLabel: Buffer.from(b.subarray(4, 24)),
        state: b.readUInt32LE(24),
        crc: b.readUInt32LE(28),
    }
}

export function readOtadata(flash: SimFlash): [OtaSelectEntry, OtaSelectEntry] {
    const { offset } = flash.otadataPartition()
    return [0, 1].map(i => decodeOtaSelectEntry(flash.read(offset + i * SECTOR_SIZE, OTA_ENTRY_LEN))) as [
        OtaSelectEntry,
        OtaSelectEntry,
    ]
}

/** write_otadata / rewrite_ota_seq: erase that entry's sector, write the 32 bytes (one power-cut-safe step). */
function writeOtadataEntry(flash: SimFlash, index: number, e: OtaSelectEntry) {
    const sector = flash.otadataPartition().offset + index * SECTOR_SIZE
    flash.eraseSector(sector)
    flash.write(sector, encodeOtaSelectEntry(e))
}

const crcOk = (e: OtaSelectEntry) => e.crc === otaSelectCrc(e.seq)
/** bootloader_common_ota_select_invalid */
const entryInvalid = (e: OtaSelectEntry) =>
    e.seq === UINT32_MAX || e.state === OtaImgState.Invalid || e.state === OtaImgState.Aborted
/** bootloader_common_ota_select_valid */
const entryValid = (e: OtaSelectEntry) => !entryInvalid(e) && crcOk(e)
/** The slot an entry selects: (seq - 1) % slot count, in uint32 arithmetic. */
const slotOf = (e: OtaSelectEntry, slotCount: number) => ((e.seq - 1) >>> 0) % slotCount

/** bootloader_common_get_active_otadata: the valid entry with the highest seq (entry 0 on a tie), or -1. */
export function activeOtadata(entries: OtaSelectEntry[]): number {
    const v = entries.map(entryValid)
    if (v[0] && v[1]) return entries[0].seq >= entries[1].seq ? 0 : 1
    return v[0] ? 0 : v[1] ? 1 : -1
}

/** esp_ota_get_boot_partition: the slot otadata selects (no image check); 0 when otadata is empty. */
export function bootSlot(flash: SimFlash): number {
    const entries = readOtadata(flash)
    const active = activeOtadata(entries)
    return active < 0 ? 0 : slotOf(entries[active], flash.otaSlots().length)
}

/** esp_ota_get_state_partition: state of the first entry with a good CRC that selects `slot`. */
export function otaState(flash: SimFlash, slot: number): number | undefined {
    const count = flash.otaSlots().length
    return readOtadata(flash).find(e => crcOk(e) && slotOf(e, count) === slot)?.state
}

function slotImage(flash: SimFlash, slot: number, chipId: number) {
    const p = flash.otaSlots()[slot]
    return checkAppImage(flash.read(p.offset, p.size), chipId)
}

export interface BootResult {
    slot: 0 | 1
    label: "ota_0" | "ota_1"
    version: string
    /** Booted for the first time after an update and not confirmed: the next reset rolls back. */
    pendingVerify: boolean
    /** The newest otadata entry was abandoned (aborted by the bootloader or rejected by the app), so an older image runs. */
    rolledBack: boolean
    /** The slot otadata selected held no valid image and the bootloader booted another one. */
    fellBack: boolean
}

/**
 * One run of the second-stage bootloader (bootloader_utility_get_selected_boot_partition +
 * bootloader_utility_load_boot_image): abort an unconfirmed image, pick the newest valid
 * entry, mark a NEW image PENDING_VERIFY, then boot the first slot whose image validates,
 * starting from the selected one.
 */
export function boot(flash: SimFlash, options: { chipId?: number } = {}): BootResult {
    return runBootloader(flash, options.chipId ?? ESP32S3_CHIP_ID, false)
}

/**
 * What runs now, as the last boot left it, without writing anything: boot() minus its
 * otadata updates, so an image that is NEW or PENDING_VERIFY counts as running unconfirmed.
 */
export function peekBoot(flash: SimFlash, options: { chipId?: number } = {}): BootResult {
    return runBootloader(flash, options.chipId ?? ESP32S3_CHIP_ID, true)
}

function runBootloader(flash: SimFlash, chipId: number, dryRun: boolean): BootResult {
    const slots = flash.otaSlots()
    if (slots.length === 0) throw new Error("no OTA app partitions")
    const entries = readOtadata(flash)
    const update = (i: number) => dryRun || writeOtadataEntry(flash, i, entries[i])

    // rollback: an image still PENDING_VERIFY at boot was never confirmed
    entries.forEach((e, i) => {
        if (e.state === OtaImgState.PendingVerify && !dryRun) {
            e.state = OtaImgState.Aborted
            update(i)
        }
    })

    let start = 0
    let initialOtadata = false
    if (entryInvalid(entries[0]) && entryInvalid(entries[1])) {
        // no factory partition: try ota_0; if otadata is blank, record that ota_0 runs
        initialOtadata = entries.every(e => e.seq === UINT32_MAX || !crcOk(e))
    } else {
        const active = activeOtadata(entries)
        if (active >= 0) {
            start = slotOf(entries[active], slots.length)
            if (entries[active].state === OtaImgState.New) {
                entries[active].state = OtaImgState.PendingVerify
                update(active)
            }
        }
    }

    // the selected slot, then downwards, then upwards (load_boot_image)
    const order = [start]
    for (let i = start - 1; i >= 0; i--) order.push(i)
    for (let i = start + 1; i < slots.length; i++) order.push(i)
    for (const slot of order) {
        const check = slotImage(flash, slot, chipId)
        if (!check.ok) continue
        if (initialOtadata && !dryRun) {
            // set_actual_ota_seq
            const seq = slot + 1
            writeOtadataEntry(flash, 0, { seq, seqLabel: Buffer.alloc(20, 0xff), state: OtaImgState.Valid, crc: otaSelectCrc(seq) })
        }
        const state = otaState(flash, slot)
        return {
            slot: slot as 0 | 1,
            label: slots[slot].label as "ota_0" | "ota_1",
            version: check.info.appDesc?.version ?? "",
            pendingVerify: state === OtaImgState.PendingVerify || (dryRun && state === OtaImgState.New),
            rolledBack: newestAbandoned(flash),
            fellBack: slot !== start,
        }
    }
    throw new Error("no bootable app partition")
}

/** The entry with the highest seq and a good CRC is ABORTED or INVALID: the last update did not stick. */
function newestAbandoned(flash: SimFlash): boolean {
    const entries = readOtadata(flash).filter(e => e.seq !== UINT32_MAX && crcOk(e))
    if (entries.length === 0) return false
    const newest = entries.reduce((a, b) => (b.seq > a.seq ? b : a))
    return newest.state === OtaImgState.Aborted || newest.state === OtaImgState.Invalid
}

/**
 * esp_ota_set_boot_partition for an OTA slot: validates the image in it, then writes the
 * entry that is not active with the smallest seq >= the active seq that selects `slot`,
 * in state NEW (rollback enabled). Returns the otadata entry index written.
 */
export function setBootPartition(flash: SimFlash, slot: number, options: { chipId?: number } = {}): number {
    const count = flash.otaSlots().length
    if (!Number.isInteger(slot) || slot < 0 || slot >= count) throw new Error(`no OTA slot ${slot}`)
    const check = slotImage(flash, slot, options.chipId ?? ESP32S3_CHIP_ID)
    if (!check.ok) throw new Error(`ota_${slot}: ${check.message}`)
    const entries = readOtadata(flash)
    const active = activeOtadata(entries)
    let next = 0
    let seq = slot + 1
    if (active >= 0) {
        // esp_rewrite_ota_data
        const base = (slot + 1) % count
        let i = 0
        while (entries[active].seq > base + i * count) i++
        seq = base + i * count
        next = active ^ 1
    }
    writeOtadataEntry(flash, next, { seq, seqLabel: entries[next].seqLabel, state: OtaImgState.New, crc: otaSelectCrc(seq) })
    return next
}

/** Erases one otadata entry (its sector), e.g. to take back a boot switch that was not rebooted into yet. */
export function eraseOtadataEntry(flash: SimFlash, index: number) {
    flash.eraseSector(flash.otadataPartition().offset + index * SECTOR_SIZE)
}

/** esp_ota_mark_app_valid_cancel_rollback: the active entry becomes VALID (no write if it already is). */
export function markValid(flash: SimFlash) {
    const entries = readOtadata(flash)
    const active = activeOtadata(entries)
    if (active < 0) throw new Error("no active otadata entry (running firmware is not an OTA app)")
    if (entries[active].state === OtaImgState.Valid) return
    entries[active].state = OtaImgState.Valid
    writeOtadataEntry(flash, active, entries[active])
}

/** esp_ota_check_rollback_is_possible: the other entry is valid and its slot holds a valid image. */
export function rollbackPossible(flash: SimFlash, options: { chipId?: number } = {}): boolean {
    const entries = readOtadata(flash)
    const active = activeOtadata(entries)
    if (active < 0) return false
    const last = entries[active ^ 1]
    if (!entryValid(last)) return false
    return slotImage(flash, slotOf(last, flash.otaSlots().length), options.chipId ?? ESP32S3_CHIP_ID).ok
}

/**
 * esp_ota_mark_app_invalid_rollback_and_reboot without the reboot (the caller resets):
 * the active entry becomes INVALID so the next boot picks the previous one.
 */
export function markInvalidAndRollback(flash: SimFlash, options: { chipId?: number } = {}) {
    const entries = readOtadata(flash)
    const active = activeOtadata(entries)
    if (active < 0) throw new Error("no active otadata entry (running firmware is not an OTA app)")
    if (!rollbackPossible(flash, options)) throw new Error("rollback is not possible: no other valid app")
    entries[active].state = OtaImgState.Invalid
    writeOtadataEntry(flash, active, entries[active])
}
