// A minimal power-cut-safe key/value store in the flash file's `nvs` partition. It stands in
// for ESP-IDF NVS (nvs_set_blob / nvs_get_blob / nvs_erase_key + nvs_commit) in the
// simulator: same guarantee (after a power cut at any flash operation a key holds its old
// or its new value, never garbage), but NOT ESP-IDF's on-flash format (no pages of 32-byte
// entries, no namespaces index, no entry-state bitmaps); a real device's nvs partition
// cannot be read with it.
//
// Layout: the partition's 4 KB sectors are used one at a time, round robin.
//   sector header (16 bytes): magic "SNVS" u32, seq u32, CRC-32 of those 8 bytes u32, 0xFFFFFFFF
//   then entries, appended: type u8 (1 set, 2 erase; 0xFF = free space), key length u8,
//   value length u16, key, value, 0xFF padding to a multiple of 4, CRC-32 u32 of all before it.
// The sector with a valid header and the highest seq is the active one; in it the latest
// entry for a key wins. An entry torn by a power cut fails its CRC and is ignored, with
// anything after it. When the active sector is full (or ends in a torn entry) the live
// entries, with the change being made, are written to the next sector (erased first unless
// it is blank), then that sector's header (last: until then the old sector stays active),
// then the old sector is erased.
import { crc32 } from "node:zlib"
import { SECTOR_SIZE, SimFlash } from "./flash"

const SECTOR_MAGIC = 0x53564e53 // "SNVS" in flash (little-endian u32)
const HEADER_LEN = 16
const ENTRY_SET = 1
const ENTRY_ERASE = 2
const FREE = 0xff

/** Bytes an entry for `key` with a `valueLength`-byte value takes in a sector. */
export function entrySize(key: string, valueLength: number): number {
    return align4(4 + Buffer.byteLength(key) + valueLength) + 4
}

/** Largest value a key can hold: one entry must fit a sector with its header. */
export function maxValueLength(key: string): number {
    return SECTOR_SIZE - HEADER_LEN - 8 - Buffer.byteLength(key) - 3
}

function align4(n: number) {
    return (n + 3) & ~3
}

function encodeEntry(type: number, key: string, value: Uint8Array): Buffer {
    const k = Buffer.from(key)
    const b = Buffer.alloc(entrySize(key, value.length), 0xff)
    b[0] = type
    b[1] = k.length
    b.writeUInt16LE(value.length, 2)
    k.copy(b, 4)
    Buffer.from(value).copy(b, 4 + k.length)
    b.writeUInt32LE(crc32(b.subarray(0, b.length - 4)) >>> 0, b.length - 4)
    return b
}

function encodeHeader(seq: number): Buffer {
    const b = Buffer.alloc(HEADER_LEN, 0xff)
    b.writeUInt32LE(SECTOR_MAGIC, 0)
    b.writeUInt32LE(seq >>> 0, 4)
    b.writeUInt32LE(crc32(b.subarray(0, 8)) >>> 0, 8)
    return b
}

function headerSeq(b: Buffer): number | undefined {
    if (b.readUInt32LE(0) !== SECTOR_MAGIC || b.readUInt32LE(8) !== crc32(b.subarray(0, 8)) >>> 0) return undefined
    return b.readUInt32LE(4)
}

interface Loaded {
    active: number // active sector index, -1 when the partition holds none
    seq: number
    values: Map<string, Buffer>
    writePos: number // where the next entry goes in the active sector; SECTOR_SIZE after a torn entry
}

export class SimNvs {
    private readonly base: number
    private readonly sectors: number
    private state?: Loaded // dropped after a failed flash operation, read again from flash

    constructor(
        readonly flash: SimFlash,
        label = "nvs",
    ) {
        const p = flash.partition(label)
        if (p.offset % SECTOR_SIZE || p.size % SECTOR_SIZE || p.size < 2 * SECTOR_SIZE)
            throw new Error(`nvs partition "${label}" must be at least 2 whole sectors`)
        this.base = p.offset
        this.sectors = p.size / SECTOR_SIZE
    }

    /** nvs_get_blob: a copy of the value, or undefined. */
    get(key: string): Buffer | undefined {
        const v = this.load().values.get(key)
        return v && Buffer.from(v)
    }

    keys(): string[] {
        return [...this.load().values.keys()]
    }

    /** nvs_set_blob + nvs_commit: durable when it returns; no flash write if the value is unchanged. */
    set(key: string, value: Uint8Array) {
        const k = Buffer.byteLength(key)
        if (k < 1 || k > 255) throw new Error(`nvs key "${key}": 1 to 255 bytes`)
        if (value.length > maxValueLength(key)) throw new Error(`nvs value for "${key}": ${value.length} bytes is too long`)
        const s = this.load()
        if (s.values.get(key)?.equals(value)) return
        this.change(encodeEntry(ENTRY_SET, key, value), v => v.set(key, Buffer.from(value)))
    }

    /** nvs_erase_key + nvs_commit; no flash write if the key is absent. */
    erase(key: string) {
        if (!this.load().values.has(key)) return
        this.change(encodeEntry(ENTRY_ERASE, key, new Uint8Array(0)), v => v.delete(key))
    }

    private change(entry: Buffer, apply: (values: Map<string, Buffer>) => void) {
        const s = this.load()
        const values = new Map(s.values)
        apply(values)
        try {
            if (s.active >= 0 && s.writePos + entry.length <= SECTOR_SIZE) {
                this.flash.write(this.sectorOffset(s.active) + s.writePos, entry)
                s.writePos += entry.length
            } else {
                this.compact(s, values)
            }
            s.values = values
        } catch (e) {
            this.state = undefined // whatever reached flash is read back next time
            throw e
        }
    }

    /** Writes `values` into the next sector, makes it active, erases the old one. */
    private compact(s: Loaded, values: Map<string, Buffer>) {
        const entries = Buffer.concat([...values].map(([k, v]) => encodeEntry(ENTRY_SET, k, v)))
        if (HEADER_LEN + entries.length > SECTOR_SIZE) throw new Error("nvs is full")
        const next = s.active < 0 ? 0 : (s.active + 1) % this.sectors
        const seq = s.active < 0 ? 1 : (s.seq + 1) >>> 0
        const at = this.sectorOffset(next)
        if (!this.flash.read(at, SECTOR_SIZE).every(b => b === 0xff)) this.flash.eraseSector(at)
        if (entries.length) this.flash.write(at + HEADER_LEN, entries)
        this.flash.write(at, encodeHeader(seq)) // from here on the new sector is the active one
        const old = s.active
        s.active = next
        s.seq = seq
        s.writePos = HEADER_LEN + entries.length
        if (old >= 0) this.flash.eraseSector(this.sectorOffset(old))
    }

    private sectorOffset(i: number) {
        return this.base + i * SECTOR_SIZE
    }

    private load(): Loaded {
        if (this.state) return this.state
        let active = -1
        let seq = 0
        for (let i = 0; i < this.sectors; i++) {
            const q = headerSeq(this.flash.read(this.sectorOffset(i), HEADER_LEN))
            // the newest by sequence number, wrapping: a - b as a signed 32-bit difference
            if (q !== undefined && (active < 0 || ((q - seq) | 0) > 0)) {
                active = i
                seq = q
            }
        }
        const values = new Map<string, Buffer>()
        let writePos = HEADER_LEN
        if (active >= 0) {
            const sector = this.flash.read(this.sectorOffset(active), SECTOR_SIZE)
            for (;;) {
                if (writePos + 8 > SECTOR_SIZE) break
                const type = sector[writePos]
                if (type === FREE) {
                    // free space must be erased: anything else is a torn write
                    if (!sector.subarray(writePos).every(b => b === 0xff)) writePos = SECTOR_SIZE
                    break
                }
                const keyLen = sector[writePos + 1]
                const valueLen = sector.readUInt16LE(writePos + 2)
                const len = align4(4 + keyLen + valueLen) + 4
                const e = sector.subarray(writePos, writePos + len)
                const ok =
                    (type === ENTRY_SET || type === ENTRY_ERASE) &&
                    keyLen > 0 &&
                    writePos + len <= SECTOR_SIZE &&
                    e.readUInt32LE(len - 4) === crc32(e.subarray(0, len - 4)) >>> 0
                if (!ok) {
                    writePos = SECTOR_SIZE // torn: ignored, and nothing is appended after it
                    break
                }
                const key = e.subarray(4, 4 + keyLen).toString()
                if (type === ENTRY_SET) values.set(key, Buffer.from(e.subarray(4 + keyLen, 4 + keyLen + valueLen)))
                else values.delete(key)
                writePos += len
            }
        }
        this.state = { active, seq, values, writePos }
        return this.state
    }
}
