// The ESP-IDF partition table: the CSV source (gen_esp32part.py rules) and the binary form
// at 0x8000 that the bootloader reads. Apart from the flash chip so a table can be built or
// checked without a flash file.
import * as path from "node:path"
import { createHash } from "node:crypto"

export const PARTITION_TABLE_OFFSET = 0x8000
export const PARTITION_TABLE_MAX_LEN = 0xc00 // ESP_PARTITION_TABLE_MAX_LEN
export const DEFAULT_PARTITIONS_CSV = path.join(__dirname, "..", "firmware", "partitions.csv")

// The table fills one flash sector and data partitions align to sectors (gen_esp32part.py).
const TABLE_SECTOR = 0x1000

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
    let lastEnd = PARTITION_TABLE_OFFSET + TABLE_SECTOR
    for (const raw of csv.split(/\r?\n/)) {
        const line = raw.trim()
        if (!line || line.startsWith("#")) continue
        const f = (line + ",,,,").split(",").map(s => s.trim())
        const [label, typeText, subtypeText, offsetText, sizeText, flagsText] = f
        const type = parseNumber(typeText, TYPES)
        const subtype = subtypeText ? parseNumber(subtypeText, SUBTYPES[type] ?? {}) : 0x06
        const align = type === PART_TYPE_APP ? 0x10000 : TABLE_SECTOR
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
