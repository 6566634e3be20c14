// Simulated 4 MB SPI NOR flash of an ESP32-S3, kept in a file. Only the chip (NOR write and
// erase semantics, partition lookup); the partition table format is in partition-table.ts and
// otadata and the bootloader, which sit on top of the flash, are in bootloader.ts.
import * as fs from "node:fs"
import { inspectImage } from "../tools/esp-image"
import {
    DEFAULT_PARTITIONS_CSV,
    PARTITION_TABLE_MAX_LEN,
    PARTITION_TABLE_OFFSET,
    PART_SUBTYPE_DATA_OTA,
    PART_SUBTYPE_OTA_0,
    PART_TYPE_APP,
    PART_TYPE_DATA,
    Partition,
    decodePartitionTable,
    encodePartitionTable,
    parsePartitionsCsv,
} from "./partition-table"

export const FLASH_SIZE = 4 * 1024 * 1024
export const SECTOR_SIZE = 0x1000 // NOR erase granularity (SPI_FLASH_SEC_SIZE)

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
