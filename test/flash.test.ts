import * as assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { buildAppImage } from "../tools/esp-image"
import { FLASH_SIZE, SECTOR_SIZE, SimFlash } from "../sim/flash"
import {
    DEFAULT_PARTITIONS_CSV,
    PARTITION_TABLE_OFFSET,
    decodePartitionTable,
    encodePartitionTable,
    parsePartitionsCsv,
} from "../sim/partition-table"
import {
    OtaImgState,
    boot,
    bootSlot,
    markInvalidAndRollback,
    markValid,
    otaSelectCrc,
    peekBoot,
    otaState,
    readOtadata,
    setBootPartition,
} from "../sim/bootloader"

const v1 = buildAppImage({ version: "1.0.0", payloadSize: 20_000 })
const v2 = buildAppImage({ version: "2.0.0", payloadSize: 24_000 })
const v3 = buildAppImage({ version: "3.0.0", payloadSize: 18_000 })

let dir: string
let flash: SimFlash
const flashPath = () => path.join(dir, "device.flash")

/** Writes an image into a slot the way a correct writer does: erase, then program. */
function install(f: SimFlash, slot: number, image: Buffer) {
    const p = f.otaSlots()[slot]
    f.eraseRange(p.offset, Math.ceil(image.length / SECTOR_SIZE) * SECTOR_SIZE)
    f.write(p.offset, image)
}

/** A simulated reset: the next boot sees only what reached the file. */
function reopen(): SimFlash {
    flash.close()
    flash = SimFlash.open(flashPath())
    return flash
}

beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "simflash-"))
    flash = SimFlash.createWithImage(flashPath(), v1)
})

afterEach(() => {
    flash.close()
    fs.rmSync(dir, { recursive: true, force: true })
})

describe("partition table", () => {
    it("firmware/partitions.csv keeps the stock DeviceScript entries and adds two equal OTA slots", () => {
        const parts = parsePartitionsCsv(fs.readFileSync(DEFAULT_PARTITIONS_CSV, "utf8"))
        const by = (label: string) => parts.find(p => p.label === label)!
        assert.deepEqual(by("dcfg"), { label: "dcfg", type: 0x8a, subtype: 0x00, offset: 0x9000, size: 0x2000, flags: 0 })
        assert.deepEqual(by("fstor"), { label: "fstor", type: 0x8a, subtype: 0x01, offset: 0x1c0000, size: 0x40000, flags: 0 })
        assert.equal(by("nvs").offset, 0xb000)
        assert.equal(by("phy_init").offset, 0xf000)
        assert.deepEqual([by("otadata").type, by("otadata").subtype, by("otadata").size], [1, 0, 0x2000])
        assert.deepEqual([by("ota_0").subtype, by("ota_1").subtype], [0x10, 0x11])
        assert.equal(by("ota_0").offset, 0x10000)
        assert.equal(by("ota_0").size, 0x1b0000)
        assert.equal(by("ota_1").size, by("ota_0").size)
        for (const p of parts.filter(p => p.type === 0 || p.label === "fstor")) assert.equal(p.offset % 0x10000, 0, p.label)
        const sorted = [...parts].sort((a, b) => a.offset - b.offset)
        sorted.forEach((p, i) => {
            if (i > 0) assert.ok(p.offset >= sorted[i - 1].offset + sorted[i - 1].size, `${p.label} overlaps`)
        })
        assert.ok(sorted[sorted.length - 1].offset + sorted[sorted.length - 1].size <= FLASH_SIZE)
    })

    it("encodes ESP-IDF's default single-app table byte for byte (MD5 from a real device dump)", () => {
        // partitions_singleapp.csv, offsets left empty as ESP-IDF ships it
        const csv = "nvs, data, nvs, , 0x6000,\nphy_init, data, phy, , 0x1000,\nfactory, app, factory, , 1M,\n"
        const bin = encodePartitionTable(parsePartitionsCsv(csv))
        assert.equal(bin.length, 0xc00)
        assert.equal(bin.subarray(0, 16).toString("hex"), "aa50010200900000006000006e767300")
        assert.equal(bin.subarray(0x60, 0x70).toString("hex"), "ebeb" + "ff".repeat(14))
        assert.equal(bin.subarray(0x70, 0x80).toString("hex"), "f4ad4f4538564b5d7435b62c75b69524")
        assert.ok(bin.subarray(0x80).every(b => b === 0xff))
    })

    it("round-trips through the binary format and refuses a table whose MD5 does not match", () => {
        const parts = parsePartitionsCsv(fs.readFileSync(DEFAULT_PARTITIONS_CSV, "utf8"))
        const bin = encodePartitionTable(parts)
        assert.deepEqual(decodePartitionTable(bin), parts)
        const bad = Buffer.from(bin)
        bad[4] ^= 0x01 // dcfg offset
        assert.throws(() => decodePartitionTable(bad), /MD5/)
    })

    it("is what a fresh flash holds at 0x8000, and the flash finds partitions through it", () => {
        const parts = parsePartitionsCsv(fs.readFileSync(DEFAULT_PARTITIONS_CSV, "utf8"))
        assert.deepEqual(flash.read(PARTITION_TABLE_OFFSET, 0xc00), encodePartitionTable(parts))
        assert.deepEqual(flash.partitions(), parts)
        assert.equal(flash.partition("ota_1").offset, 0x200000)
        assert.deepEqual(flash.otaSlots().map(p => p.label), ["ota_0", "ota_1"])
        assert.throws(() => flash.partition("factory"), /no partition/)
    })

    it("parses sizes written as hex, K and M", () => {
        const [a, b, c] = parsePartitionsCsv("a, app, ota_0, 0x10000, 0x1B0000,\nb, app, ota_1, , 1728K,\nc, data, spiffs, , 1M, readonly\n")
        assert.deepEqual([a.size, b.size, c.size], [0x1b0000, 0x1b0000, 0x100000])
        assert.equal(b.offset, 0x1c0000)
        assert.equal(c.flags, 2)
    })
})

describe("NOR flash file", () => {
    it("a write without erase ANDs into the old bits, an erase restores 0xFF", () => {
        const at = flash.partition("nvs").offset
        flash.eraseSector(at)
        flash.write(at, Buffer.from([0xf0, 0x3c]))
        flash.write(at, Buffer.from([0x0f, 0xff]))
        assert.deepEqual([...flash.read(at, 2)], [0x00, 0x3c])
        flash.eraseSector(at)
        assert.deepEqual([...flash.read(at, 2)], [0xff, 0xff])
        assert.throws(() => flash.eraseSector(at + 1), /aligned/)
    })

    it("is a 4 MB file that keeps its content across a reopen", () => {
        const at = flash.partition("nvs").offset
        flash.write(at, Buffer.from("kept"))
        assert.equal(fs.statSync(flashPath()).size, FLASH_SIZE)
        reopen()
        assert.equal(flash.read(at, 4).toString(), "kept")
        assert.equal(boot(flash).version, "1.0.0")
    })
})

describe("otadata and the bootloader", () => {
    it("the otadata CRC is esp_rom_crc32_le(UINT32_MAX, &seq, 4): seq 1 -> 0x4743989a", () => {
        assert.equal(otaSelectCrc(1), 0x4743989a)
        assert.equal(otaSelectCrc(2), 0x55f63774)
    })

    it("a fresh flash (otadata erased) boots ota_0 and records seq 1 VALID like set_actual_ota_seq", () => {
        assert.ok(readOtadata(flash).every(e => e.seq === 0xffffffff))
        const b = boot(flash)
        assert.deepEqual(b, { slot: 0, label: "ota_0", version: "1.0.0", pendingVerify: false, rolledBack: false, fellBack: false })
        const [e0, e1] = readOtadata(flash)
        assert.deepEqual([e0.seq, e0.state, e0.crc], [1, OtaImgState.Valid, 0x4743989a])
        assert.equal(e1.seq, 0xffffffff)
    })

    it("a new image boots once as PENDING_VERIFY; a reset without confirm aborts it and returns to ota_0", () => {
        boot(flash)
        install(flash, 1, v2)
        assert.equal(setBootPartition(flash, 1), 1) // the entry that is not active
        const e1 = readOtadata(flash)[1]
        assert.deepEqual([e1.seq, e1.state], [2, OtaImgState.New])
        assert.equal(bootSlot(flash), 1)

        const first = boot(reopen())
        assert.deepEqual([first.slot, first.version, first.pendingVerify, first.rolledBack], [1, "2.0.0", true, false])
        assert.equal(readOtadata(flash)[1].state, OtaImgState.PendingVerify)

        const second = boot(reopen())
        assert.deepEqual([second.slot, second.version, second.pendingVerify, second.rolledBack], [0, "1.0.0", false, true])
        assert.equal(readOtadata(flash)[1].state, OtaImgState.Aborted)
        assert.equal(bootSlot(flash), 0)
    })

    it("a confirmed image stays VALID on ota_1 across boots; the next update goes back to ota_0", () => {
        boot(flash)
        install(flash, 1, v2)
        setBootPartition(flash, 1)
        boot(reopen())
        markValid(flash)
        markValid(flash) // no-op when already valid
        assert.equal(otaState(flash, 1), OtaImgState.Valid)
        for (let i = 0; i < 2; i++) {
            const b = boot(reopen())
            assert.deepEqual([b.slot, b.version, b.pendingVerify, b.rolledBack], [1, "2.0.0", false, false])
        }

        install(flash, 0, v3)
        assert.equal(setBootPartition(flash, 0), 0) // alternates: entry 1 is active, so entry 0 is written
        const [e0, e1] = readOtadata(flash)
        assert.deepEqual([e0.seq, e0.state, e1.seq, e1.state], [3, OtaImgState.New, 2, OtaImgState.Valid])
        const b = boot(reopen())
        assert.deepEqual([b.slot, b.version, b.pendingVerify], [0, "3.0.0", true])
    })

    it("reject (mark invalid) goes back to the previous image and is refused when there is none", () => {
        assert.throws(() => markInvalidAndRollback(flash), /no active otadata/)
        boot(flash)
        assert.throws(() => markInvalidAndRollback(flash), /not possible/) // only ota_0 has ever run
        install(flash, 1, v2)
        setBootPartition(flash, 1)
        boot(reopen())
        markInvalidAndRollback(flash)
        assert.equal(readOtadata(flash)[1].state, OtaImgState.Invalid)
        const b = boot(reopen())
        assert.deepEqual([b.slot, b.version, b.rolledBack], [0, "1.0.0", true])
    })

    it("peekBoot tells what runs now without writing; readImage returns a slot's image", () => {
        assert.equal(peekBoot(flash).version, "1.0.0")
        assert.ok(readOtadata(flash).every(e => e.seq === 0xffffffff), "peekBoot wrote otadata")
        boot(flash)
        install(flash, 1, v2)
        setBootPartition(flash, 1)
        const before = readOtadata(flash)
        assert.deepEqual([peekBoot(flash).slot, peekBoot(flash).pendingVerify], [1, true])
        assert.deepEqual(readOtadata(flash), before)
        boot(reopen())
        assert.deepEqual([peekBoot(flash).version, peekBoot(flash).pendingVerify], ["2.0.0", true])
        assert.ok(flash.readImage(1).equals(v2))
        assert.ok(flash.readImage(0).equals(v1))
        flash.eraseSector(flash.partition("ota_0").offset)
        assert.throws(() => flash.readImage(0), /no app image/)
    })

    it("falls back to the other slot when the selected one holds a corrupt image", () => {
        boot(flash)
        install(flash, 1, v2)
        setBootPartition(flash, 1)
        flash.write(flash.partition("ota_1").offset + 5000, Buffer.alloc(16)) // programming over data: bits lost
        const b = boot(reopen())
        assert.deepEqual([b.slot, b.version, b.fellBack], [0, "1.0.0", true])
    })

    it("esp_ota_set_boot_partition refuses a slot without a valid image, leaving otadata alone", () => {
        boot(flash)
        const before = readOtadata(flash)
        assert.throws(() => setBootPartition(flash, 1), /ota_1/)
        install(flash, 1, buildAppImage({ version: "9.9.9", payloadSize: 20_000, chipId: 0 }))
        assert.throws(() => setBootPartition(flash, 1), /esp32 \(chip id 0\)/)
        assert.deepEqual(readOtadata(flash), before)
    })

    it("an entry whose sector write was cut short (erased, never written) is ignored", () => {
        boot(flash)
        install(flash, 1, v2)
        flash.beforeChange = op => {
            if (op.kind === "write" && op.offset >= flash.otadataPartition().offset) throw new Error("power cut")
        }
        assert.throws(() => setBootPartition(flash, 1), /power cut/)
        const b = boot(reopen())
        assert.deepEqual([b.slot, b.version], [0, "1.0.0"])
    })
})
