import * as assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createHash, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto"
import { JDBus, JDDevice, JDServerServiceProvider, PACKET_SEND, Packet, jdunpack } from "jacdac-ts"
import {
    OtaUpdaterBeginFlags,
    OtaUpdaterCmd,
    OtaUpdaterCmdPack,
    OtaUpdaterError,
    OtaUpdaterEvent,
    OtaUpdaterReg,
    OtaUpdaterRegPack,
    OtaUpdaterState,
    OtaUpdaterLimits,
    OtaUpdaterTarget,
} from "../.devicescript/ts/constants"
import { buildAppImage, inspectImage } from "../tools/esp-image"
import { signImage } from "../tools/secure-boot"
import { FlashOp, SECTOR_SIZE, SimFlash } from "../sim/flash"
import { OtaImgState, boot, bootSlot, otaState, readOtadata } from "../sim/bootloader"
import { SimNvs, entrySize } from "../sim/nvs"
import {
    OtaUpdaterServer,
    PROGRAM_SIM_KEY,
    PROGRAM_STAGING_LABEL,
    RESUME_RECORD_LEN,
    RESUME_SIM_KEY,
    encodeProgramRecord,
    padProgram,
} from "../sim/ota-server"

const SPARE = OtaUpdaterTarget.Spare // begin's target, and a report's "no slot"

const CHUNK = OtaUpdaterLimits.WriteBytes
const SLOT_SIZE = 0x1b0000
const CMD_GET_REG = 0x1000

const v1 = buildAppImage({ version: "1.0.0", payloadSize: 20_000 })
const v2 = buildAppImage({ version: "2.0.0", payloadSize: 20_000 })
const sha = (b: Buffer) => createHash("sha256").update(b).digest()

/** One powered-on device: the OTA server on a jacdac-ts bus, and what it sent back. */
class Device {
    readonly bus = new JDBus([], { disableRoleManager: true })
    readonly server: OtaUpdaterServer
    readonly provider: JDServerServiceProvider
    readonly device: JDDevice
    readonly reports: Packet[] = []
    readonly events: { code: number; data: Uint8Array }[] = []
    reboots = 0
    private seenEvents = new Set<number>()

    constructor(
        readonly flash: SimFlash,
        trustedKey?: KeyObject
    ) {
        this.server = new OtaUpdaterServer(flash, { onReboot: () => this.reboots++, trustedKey })
        this.provider = new JDServerServiceProvider("ota-test", [this.server])
        this.device = this.bus.addServiceProvider(this.provider)
        this.bus.on(PACKET_SEND, (pkt: Packet) => {
            if (pkt.deviceIdentifier !== this.provider.deviceId || pkt.serviceIndex !== this.server.serviceIndex) return
            if (pkt.isCommand) return
            if (!pkt.isEvent) this.reports.push(pkt)
            else if (!this.seenEvents.has(pkt.eventCounter)) {
                // events are sent 3 times with the same counter
                this.seenEvents.add(pkt.eventCounter)
                this.events.push({ code: pkt.eventCode!, data: pkt.data })
            }
        })
    }

    async send(cmd: number, fmt?: string, values?: any[]) {
        const pkt = fmt ? Packet.jdpacked(cmd, fmt, values!) : Packet.onlyHeader(cmd)
        pkt.serviceIndex = this.server.serviceIndex
        await pkt.sendCmdAsync(this.device)
    }

    /** Sends a command and returns the unpacked report with the same code (there must be exactly one). */
    async call(cmd: number, fmt: string | undefined, values: any[] | undefined, reportFmt: string): Promise<any[]> {
        const before = this.reports.length
        await this.send(cmd, fmt, values)
        const replies = this.reports.slice(before).filter(r => r.serviceCommand === cmd)
        assert.equal(replies.length, 1, `one report for command 0x${cmd.toString(16)}`)
        return jdunpack(replies[0].data, reportFmt)
    }

    /** Returns [error, slot, reserved, max_image_size, next_offset]. */
    begin(size: number, target: number = SPARE, hash: Uint8Array = new Uint8Array(0), flags = 0) {
        return this.call(OtaUpdaterCmd.Begin, OtaUpdaterCmdPack.Begin, [size, target, flags, 0, hash], OtaUpdaterCmdPack.BeginReport)
    }
    /** begin with the resume flag, for the spare slot. */
    resume(size: number, hash: Uint8Array) {
        return this.begin(size, SPARE, hash, OtaUpdaterBeginFlags.Resume)
    }
    write(offset: number, data: Uint8Array) {
        return this.call(OtaUpdaterCmd.Write, OtaUpdaterCmdPack.Write, [offset, data], OtaUpdaterCmdPack.WriteReport)
    }
    commit() {
        return this.call(OtaUpdaterCmd.Commit, undefined, undefined, OtaUpdaterCmdPack.CommitReport)
    }
    abort() {
        return this.call(OtaUpdaterCmd.Abort, undefined, undefined, OtaUpdaterCmdPack.AbortReport)
    }
    confirm() {
        return this.call(OtaUpdaterCmd.Confirm, undefined, undefined, OtaUpdaterCmdPack.ConfirmReport)
    }

    /** Writes `image` from `from` on in 232-byte pieces; every piece must be acknowledged. */
    async writeAll(image: Buffer, from = 0) {
        for (let o = from; o < image.length; o += CHUNK) {
            const piece = image.subarray(o, o + CHUNK)
            assert.deepEqual(await this.write(o, piece), [o + piece.length, OtaUpdaterError.None])
        }
    }

    /** begin + writes + commit, returning the commit report. */
    async update(image: Buffer, hash: Uint8Array = sha(image)) {
        const [err] = await this.begin(image.length, SPARE, hash)
        assert.equal(err, OtaUpdaterError.None)
        await this.writeAll(image)
        return this.commit()
    }

    reg(code: OtaUpdaterReg) {
        return this.server.register(code).values()[0]
    }

    async dispose() {
        await this.bus.stop()
    }
}

let dir: string
let flash: SimFlash
let dev: Device
const flashPath = () => path.join(dir, "device.flash")

/** Resets the device: a new boot from what the flash file holds, and a new server. */
async function reset(): Promise<Device> {
    await dev.dispose()
    flash.close()
    flash = SimFlash.open(flashPath())
    dev = new Device(flash)
    return dev
}

beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "otaserver-"))
    flash = SimFlash.createWithImage(flashPath(), v1)
    dev = new Device(flash)
})

afterEach(async () => {
    await dev.dispose()
    flash.close()
    fs.rmSync(dir, { recursive: true, force: true })
})

describe("OTA updater server", () => {
    it("starts from the boot: version, slot, spare slot size, idle", async () => {
        assert.equal(dev.reg(OtaUpdaterReg.RunningVersion), "1.0.0")
        assert.equal(dev.reg(OtaUpdaterReg.RunningSlot), 0)
        assert.equal(dev.reg(OtaUpdaterReg.PendingVerify), 0)
        assert.equal(dev.reg(OtaUpdaterReg.MaxImageSize), SLOT_SIZE)
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Idle)
        // and registers answer on the bus
        const before = dev.reports.length
        await dev.send(CMD_GET_REG | OtaUpdaterReg.RunningVersion)
        const r = dev.reports.slice(before).find(p => p.serviceCommand === (CMD_GET_REG | OtaUpdaterReg.RunningVersion))!
        assert.deepEqual(jdunpack(r.data, OtaUpdaterRegPack.RunningVersion), ["1.0.0"])
    })

    it("happy path: writes ota_1 sector by sector, validates, selects it, and the next boot runs it unconfirmed", async () => {
        const ops: FlashOp[] = []
        flash.beforeChange = op => ops.push(op)
        const slot = flash.partition("ota_1")

        assert.deepEqual(await dev.begin(v2.length, SPARE, sha(v2)), [OtaUpdaterError.None, 1, 0, SLOT_SIZE, 0])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Receiving)
        assert.equal(dev.reg(OtaUpdaterReg.ImageSize), v2.length)
        assert.equal(ops.length, 0, "begin erases nothing")

        await dev.writeAll(v2.subarray(0, CHUNK))
        assert.deepEqual(ops.map(o => o.kind), ["erase", "write"])
        assert.equal(ops[0].offset, slot.offset)

        await dev.writeAll(v2, CHUNK)
        const erases = ops.filter(o => o.kind === "erase").map(o => o.offset)
        const sectors = Math.ceil(v2.length / 0x1000)
        assert.deepEqual(erases, Array.from({ length: sectors }, (_, i) => slot.offset + i * 0x1000))
        assert.equal(dev.reg(OtaUpdaterReg.BytesWritten), v2.length)
        assert.ok(Math.abs(dev.reg(OtaUpdaterReg.Progress) - 1) < 1e-3)
        assert.ok(dev.reg(OtaUpdaterReg.Throughput) > 0)
        assert.equal(bootSlot(flash), 0, "nothing changes the boot slot before commit")

        assert.deepEqual(await dev.commit(), [OtaUpdaterError.None, 1])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Ready)
        assert.deepEqual(dev.events.map(e => [e.code, [...e.data]]), [[OtaUpdaterEvent.Ready, [1]]])
        assert.equal(bootSlot(flash), 1)
        assert.equal(otaState(flash, 1), OtaImgState.New)
        assert.ok(flash.read(slot.offset, v2.length).equals(v2))
        // a commit retried because its report was lost gets the same answer
        assert.deepEqual(await dev.commit(), [OtaUpdaterError.None, 1])
        assert.equal(dev.events.length, 1)

        await dev.send(OtaUpdaterCmd.Reboot)
        assert.equal(dev.reboots, 1)
        await reset()
        assert.equal(dev.reg(OtaUpdaterReg.RunningVersion), "2.0.0")
        assert.equal(dev.reg(OtaUpdaterReg.RunningSlot), 1)
        assert.equal(dev.reg(OtaUpdaterReg.PendingVerify), 1)
    })

    it("a duplicate write is acknowledged again without writing", async () => {
        await dev.begin(v2.length, SPARE, sha(v2))
        await dev.writeAll(v2.subarray(0, 2 * CHUNK))
        const writes: FlashOp[] = []
        flash.beforeChange = op => writes.push(op)
        assert.deepEqual(await dev.write(0, v2.subarray(0, CHUNK)), [2 * CHUNK, OtaUpdaterError.None])
        assert.deepEqual(await dev.write(CHUNK, v2.subarray(CHUNK, 2 * CHUNK)), [2 * CHUNK, OtaUpdaterError.None])
        assert.equal(writes.length, 0)
        assert.equal(dev.reg(OtaUpdaterReg.LastError), OtaUpdaterError.None)
        await dev.writeAll(v2, 2 * CHUNK)
        assert.deepEqual(await dev.commit(), [OtaUpdaterError.None, 1])
    })

    it("a write past the expected offset is refused with the resume offset, and the update goes on from there", async () => {
        await dev.begin(v2.length, SPARE, sha(v2))
        await dev.writeAll(v2.subarray(0, CHUNK))
        // the write at CHUNK was lost; the next two arrive
        assert.deepEqual(await dev.write(2 * CHUNK, v2.subarray(2 * CHUNK, 3 * CHUNK)), [CHUNK, OtaUpdaterError.BadOffset])
        assert.deepEqual(await dev.write(3 * CHUNK, v2.subarray(3 * CHUNK, 4 * CHUNK)), [CHUNK, OtaUpdaterError.BadOffset])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Receiving)
        assert.equal(dev.reg(OtaUpdaterReg.BytesWritten), CHUNK)
        assert.equal(dev.events.length, 0)
        await dev.writeAll(v2, CHUNK)
        assert.deepEqual(await dev.commit(), [OtaUpdaterError.None, 1])
        assert.ok(flash.read(flash.partition("ota_1").offset, v2.length).equals(v2))
    })

    it("sha256 mismatch: error, event failed, boot slot unchanged; a retried commit gets the same error", async () => {
        const otadata = readOtadata(flash)
        assert.deepEqual(await dev.update(v2, sha(v1)), [OtaUpdaterError.Sha256Mismatch, 1])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Error)
        assert.equal(dev.reg(OtaUpdaterReg.LastError), OtaUpdaterError.Sha256Mismatch)
        assert.deepEqual(dev.events.map(e => [e.code, [...e.data]]), [[OtaUpdaterEvent.Failed, [OtaUpdaterError.Sha256Mismatch]]])
        assert.deepEqual(readOtadata(flash), otadata)
        assert.deepEqual(await dev.commit(), [OtaUpdaterError.Sha256Mismatch, 1])
        assert.equal(dev.events.length, 1)
        assert.equal(boot(flash).version, "1.0.0")
    })

    it("an image for another chip with the right sha256 is wrong_chip", async () => {
        const esp32 = buildAppImage({ version: "2.0.0", payloadSize: 20_000, chipId: 0 })
        assert.deepEqual(await dev.update(esp32), [OtaUpdaterError.WrongChip, 1])
        assert.equal(bootSlot(flash), 0)
    })

    it("random bytes are not_app_image, also without a sha256", async () => {
        const junk = randomBytes(5000)
        // an ESP32-S3 header (magic, chip id) in front, so that write's first-byte check lets it
        // through and commit's image check refuses the rest
        junk[0] = 0xe9
        junk.writeUInt16LE(9, 12)
        assert.deepEqual(await dev.update(junk, new Uint8Array(0)), [OtaUpdaterError.NotAppImage, 1])
        assert.equal(dev.reg(OtaUpdaterReg.LastError), OtaUpdaterError.NotAppImage)
        assert.equal(bootSlot(flash), 0)
    })

    it("a commit before image_size bytes is incomplete", async () => {
        await dev.begin(v2.length, SPARE, sha(v2))
        await dev.writeAll(v2.subarray(0, 10 * CHUNK))
        assert.deepEqual(await dev.commit(), [OtaUpdaterError.Incomplete, 1])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Error)
        assert.equal(bootSlot(flash), 0)
    })

    it("commands outside an update are invalid_state and change nothing", async () => {
        assert.deepEqual(await dev.commit(), [OtaUpdaterError.InvalidState, SPARE])
        assert.deepEqual(await dev.write(0, v2.subarray(0, CHUNK)), [0, OtaUpdaterError.InvalidState])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Idle)
        assert.ok(flash.read(flash.partition("ota_1").offset, 16).every(b => b === 0xff))
    })

    it("begin checks the target slot and the size", async () => {
        assert.deepEqual(await dev.begin(1000, 0), [OtaUpdaterError.BadTarget, 0, 0, SLOT_SIZE, 0])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Error)
        assert.equal((await dev.begin(1000, 2))[0], OtaUpdaterError.BadTarget)
        assert.equal((await dev.begin(SLOT_SIZE + 1))[0], OtaUpdaterError.TooLarge)
        assert.equal((await dev.begin(1000, SPARE, new Uint8Array(31)))[0], OtaUpdaterError.Sha256Mismatch)
        assert.deepEqual(await dev.begin(SLOT_SIZE, 1), [OtaUpdaterError.None, 1, 0, SLOT_SIZE, 0])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Receiving)
        assert.equal(dev.reg(OtaUpdaterReg.LastError), OtaUpdaterError.None)
    })

    it("a write beyond image_size is too_large and ends the update", async () => {
        await dev.begin(100)
        assert.deepEqual(await dev.write(0, v2.subarray(0, CHUNK)), [0, OtaUpdaterError.TooLarge])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Error)
        assert.deepEqual(dev.events.map(e => [e.code, [...e.data]]), [[OtaUpdaterEvent.Failed, [OtaUpdaterError.TooLarge]]])
        assert.deepEqual(await dev.write(0, v2.subarray(0, 100)), [0, OtaUpdaterError.InvalidState])
    })

    it("while the running image is pending verify, begin is refused until confirm", async () => {
        await dev.update(v2)
        await reset()
        assert.equal(dev.reg(OtaUpdaterReg.PendingVerify), 1)
        assert.deepEqual(await dev.begin(v1.length), [OtaUpdaterError.InvalidState, 0, 0, SLOT_SIZE, 0])

        assert.deepEqual(await dev.confirm(), [OtaUpdaterError.None])
        assert.equal(dev.reg(OtaUpdaterReg.PendingVerify), 0)
        assert.equal(otaState(flash, 1), OtaImgState.Valid)
        assert.deepEqual(await dev.confirm(), [OtaUpdaterError.None]) // already valid: nothing to do

        // the next update goes to ota_0
        assert.deepEqual(await dev.update(v1), [OtaUpdaterError.None, 0])
        await reset()
        assert.deepEqual([dev.reg(OtaUpdaterReg.RunningSlot), dev.reg(OtaUpdaterReg.RunningVersion)], [0, "1.0.0"])
    })

    it("without confirm the next reset rolls back to the previous image", async () => {
        await dev.update(v2)
        await reset()
        assert.equal(dev.reg(OtaUpdaterReg.RunningVersion), "2.0.0")
        await reset()
        assert.deepEqual([dev.reg(OtaUpdaterReg.RunningSlot), dev.reg(OtaUpdaterReg.RunningVersion)], [0, "1.0.0"])
        assert.equal(dev.server.bootResult.rolledBack, true)
    })

    it("reject rolls back and reboots; refused when not pending verify", async () => {
        await dev.send(OtaUpdaterCmd.Reject)
        assert.equal(dev.reboots, 0)
        assert.equal(dev.reg(OtaUpdaterReg.LastError), OtaUpdaterError.InvalidState)

        await dev.update(v2)
        await reset()
        await dev.send(OtaUpdaterCmd.Reject)
        assert.equal(dev.reboots, 1)
        await reset()
        assert.deepEqual([dev.reg(OtaUpdaterReg.RunningSlot), dev.reg(OtaUpdaterReg.RunningVersion)], [0, "1.0.0"])
    })

    it("abort drops the update; after a commit it also takes the boot switch back", async () => {
        await dev.begin(v2.length, SPARE, sha(v2))
        await dev.writeAll(v2.subarray(0, 4 * CHUNK))
        assert.deepEqual(await dev.abort(), [OtaUpdaterError.None])
        assert.deepEqual(
            [dev.reg(OtaUpdaterReg.State), dev.reg(OtaUpdaterReg.ImageSize), dev.reg(OtaUpdaterReg.BytesWritten)],
            [OtaUpdaterState.Idle, 0, 0],
        )
        assert.deepEqual(await dev.abort(), [OtaUpdaterError.None]) // nothing to abort: still answered

        assert.deepEqual(await dev.update(v2), [OtaUpdaterError.None, 1])
        assert.equal(bootSlot(flash), 1)
        assert.deepEqual(await dev.abort(), [OtaUpdaterError.None])
        assert.equal(bootSlot(flash), 0)
        await reset()
        assert.deepEqual([dev.reg(OtaUpdaterReg.RunningSlot), dev.reg(OtaUpdaterReg.PendingVerify)], [0, 0])
    })

    it("a power cut at any flash operation of an update boots the old image, until the boot switch is written", async () => {
        const image = buildAppImage({ version: "2.0.0", payloadSize: 6_000 })
        let total = 0
        flash.beforeChange = () => total++
        assert.deepEqual(await dev.update(image), [OtaUpdaterError.None, 1])
        assert.ok(total > 10)

        for (let cut = 0; cut <= total; cut++) {
            await dev.dispose()
            flash.close()
            flash = SimFlash.createWithImage(flashPath(), v1)
            dev = new Device(flash)
            let ops = 0
            flash.beforeChange = () => {
                if (ops++ === cut) throw new Error("power cut")
            }
            await dev.update(image).catch(() => {})
            flash.close()
            flash = SimFlash.open(flashPath())
            const b = boot(flash)
            assert.equal(b.version, cut < total ? "1.0.0" : "2.0.0", `cut before flash operation ${cut} of ${total}`)
        }
    })

    it("a write at offset 0 that is not an app image (an HTML error page) is not_app_image; nothing is erased or written", async () => {
        const html = Buffer.from("<!DOCTYPE html><html><head><title>Error</title></head><body>rate limited</body></html>")
        const ops: FlashOp[] = []
        flash.beforeChange = op => ops.push(op)
        await dev.begin(html.length, SPARE, sha(html))
        assert.deepEqual(await dev.write(0, html), [0, OtaUpdaterError.NotAppImage])
        assert.deepEqual(ops, [], "no erase, no write")
        assert.ok(flash.read(flash.partition("ota_1").offset, SECTOR_SIZE).every(b => b === 0xff))
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Error)
        assert.equal(dev.reg(OtaUpdaterReg.LastError), OtaUpdaterError.NotAppImage)
        assert.deepEqual(dev.events.map(e => [e.code, [...e.data]]), [[OtaUpdaterEvent.Failed, [OtaUpdaterError.NotAppImage]]])
        assert.deepEqual(await dev.write(0, html), [0, OtaUpdaterError.InvalidState], "the update is over")
        assert.deepEqual(await dev.commit(), [OtaUpdaterError.NotAppImage, 1])
        assert.equal(bootSlot(flash), 0)
        // a real image still passes, also without a sha256
        assert.deepEqual(await dev.update(v2, new Uint8Array(0)), [OtaUpdaterError.None, 1])
    })

    describe("resume", () => {
        const image = buildAppImage({ version: "2.0.0", payloadSize: 40_000 }) // 9 whole sectors and a bit
        const slotOffset = () => flash.partition("ota_1").offset

        /** begin (fresh) and the first `bytes` of `img`. */
        async function writePart(bytes: number, img = image) {
            assert.deepEqual((await dev.begin(img.length, SPARE, sha(img)))[4], 0)
            await dev.writeAll(img.subarray(0, bytes))
        }

        it("after a reset, begin with the resume flag goes on from the last completed sector", async () => {
            const half = 5 * SECTOR_SIZE + 1000 // sector 5 partly written when the power goes
            await writePart(half)
            assert.equal(dev.server.resumeRecord()?.nextOffset, 5 * SECTOR_SIZE)
            await reset()

            const ops: FlashOp[] = []
            flash.beforeChange = op => ops.push(op)
            assert.deepEqual(await dev.resume(image.length, sha(image)), [OtaUpdaterError.None, 1, 0, SLOT_SIZE, 5 * SECTOR_SIZE])
            assert.equal(ops.length, 0, "resuming writes nothing")
            assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Receiving)
            assert.equal(dev.reg(OtaUpdaterReg.BytesWritten), 5 * SECTOR_SIZE)
            // a write before next_offset is a duplicate, one past it is refused
            assert.deepEqual(await dev.write(0, image.subarray(0, CHUNK)), [5 * SECTOR_SIZE, OtaUpdaterError.None])
            assert.deepEqual(await dev.write(half, image.subarray(half, half + CHUNK)), [5 * SECTOR_SIZE, OtaUpdaterError.BadOffset])

            await dev.writeAll(image, 5 * SECTOR_SIZE)
            // the partly written sector 5 is erased again before it is rewritten
            assert.deepEqual(ops[0], { kind: "erase", offset: slotOffset() + 5 * SECTOR_SIZE, length: SECTOR_SIZE })
            assert.deepEqual(await dev.commit(), [OtaUpdaterError.None, 1])
            assert.equal(dev.server.resumeRecord(), undefined, "commit clears the record")
            assert.ok(flash.read(slotOffset(), image.length).equals(image))
            await reset()
            assert.deepEqual([dev.reg(OtaUpdaterReg.RunningVersion), dev.reg(OtaUpdaterReg.RunningSlot)], ["2.0.0", 1])
            assert.ok(flash.readImage(1).equals(image))
        })

        it("resuming at a sector boundary never written before erases that sector first (old firmware in it)", async () => {
            // the spare slot holds an older firmware, as it does after an update
            const p = flash.partition("ota_1")
            flash.eraseRange(p.offset, 12 * SECTOR_SIZE)
            flash.write(p.offset, Buffer.alloc(12 * SECTOR_SIZE, 0x00))
            await dev.begin(image.length, SPARE, sha(image))
            // 128-byte writes end exactly on the boundary: sector 1 is not touched (nor erased) yet
            for (let o = 0; o < SECTOR_SIZE; o += 128)
                assert.deepEqual(await dev.write(o, image.subarray(o, o + 128)), [o + 128, OtaUpdaterError.None])
            assert.equal(dev.server.resumeRecord()?.nextOffset, SECTOR_SIZE)
            assert.ok(flash.read(p.offset + SECTOR_SIZE, SECTOR_SIZE).every(b => b === 0))
            await reset()
            assert.equal((await dev.resume(image.length, sha(image)))[4], SECTOR_SIZE)
            await dev.writeAll(image, SECTOR_SIZE)
            assert.deepEqual(await dev.commit(), [OtaUpdaterError.None, 1])
            assert.ok(flash.read(p.offset, image.length).equals(image))
        })

        it("writes the record only after the data of a completed sector, and only with a sha256", async () => {
            const key = RESUME_SIM_KEY
            const writes: string[] = []
            const nvsPart = flash.partition("nvs")
            flash.beforeChange = op => {
                if (op.kind === "write") writes.push(op.offset >= nvsPart.offset && op.offset < nvsPart.offset + nvsPart.size ? "record" : "data")
            }
            await writePart(2 * SECTOR_SIZE + 10)
            // a checkpoint follows the write that completes a sector, never precedes it
            const dataWrites = Math.ceil(SECTOR_SIZE / CHUNK) // 18 writes of 232 bytes reach 4096
            assert.equal(writes.indexOf("record"), dataWrites, "the first record right after the write completing sector 0")
            assert.deepEqual(writes.slice(dataWrites, dataWrites + 2), ["record", "record"], "entry, then the nvs sector header")
            assert.equal(dev.server.resumeRecord()?.nextOffset, 2 * SECTOR_SIZE)
            assert.equal(new SimNvs(flash).get(key)?.length, RESUME_RECORD_LEN)

            await dev.abort()
            writes.length = 0
            await dev.begin(image.length) // no sha256: nothing to resume against, no record
            await dev.writeAll(image.subarray(0, 3 * SECTOR_SIZE))
            assert.equal(writes.filter(w => w === "record").length, 0)
            assert.equal(dev.server.resumeRecord(), undefined)
            await reset()
            assert.equal((await dev.resume(image.length, sha(image)))[4], 0)
        })

        it("another asset (sha256 or size), no sha256, no flag, or a damaged record start from 0", async () => {
            const other = buildAppImage({ version: "3.0.0", payloadSize: 40_000 })
            await writePart(4 * SECTOR_SIZE)
            await reset()
            assert.deepEqual(await dev.resume(image.length, sha(other)), [OtaUpdaterError.None, 1, 0, SLOT_SIZE, 0])
            assert.equal(dev.server.resumeRecord(), undefined, "a fresh begin clears the record")

            await writePart(4 * SECTOR_SIZE)
            await reset()
            assert.equal((await dev.resume(image.length + 1, sha(image)))[4], 0, "another size")

            await writePart(4 * SECTOR_SIZE)
            await reset()
            assert.equal((await dev.resume(image.length, new Uint8Array(0)))[4], 0, "no sha256")

            await writePart(4 * SECTOR_SIZE)
            await reset()
            assert.equal((await dev.begin(image.length, SPARE, sha(image)))[4], 0, "no resume flag")
            assert.equal(dev.server.resumeRecord(), undefined)

            await writePart(4 * SECTOR_SIZE)
            const raw = new SimNvs(flash).get(RESUME_SIM_KEY)!
            raw[20] ^= 1 // a bit of the sha256 flipped: the record's CRC no longer matches
            new SimNvs(flash).set(RESUME_SIM_KEY, raw)
            await reset()
            assert.equal((await dev.resume(image.length, sha(image)))[4], 0, "damaged record")

            // the bytes in the slot changed behind the record's back: its prefix digest catches it
            await writePart(4 * SECTOR_SIZE)
            await reset()
            const at = image.findIndex((b, i) => i > 1000 && b !== 0)
            flash.write(slotOffset() + at, Buffer.alloc(1, 0))
            assert.equal((await dev.resume(image.length, sha(image)))[4], 0, "slot contents changed")

            // and an update started from 0 after all that completes normally
            await dev.writeAll(image)
            assert.deepEqual(await dev.commit(), [OtaUpdaterError.None, 1])
        })

        it("the record is refused once its slot is no longer the spare slot", async () => {
            await writePart(4 * SECTOR_SIZE)
            const record = new SimNvs(flash).get(RESUME_SIM_KEY)!
            await dev.abort()
            await dev.update(v2)
            await reset() // runs ota_1 now: the spare slot is ota_0
            await dev.confirm()
            new SimNvs(flash).set(RESUME_SIM_KEY, record) // a record for ota_1 left over
            assert.deepEqual(await dev.resume(image.length, sha(image)), [OtaUpdaterError.None, 0, 0, SLOT_SIZE, 0])
        })

        it("abort, a failed commit and a successful commit clear the record", async () => {
            await writePart(3 * SECTOR_SIZE)
            assert.ok(dev.server.resumeRecord())
            assert.deepEqual(await dev.abort(), [OtaUpdaterError.None])
            assert.equal(dev.server.resumeRecord(), undefined)
            await reset()
            assert.equal((await dev.resume(image.length, sha(image)))[4], 0)

            await writePart(3 * SECTOR_SIZE)
            await reset()
            await dev.abort() // also when idle after a reset
            assert.equal(dev.server.resumeRecord(), undefined)

            await writePart(3 * SECTOR_SIZE)
            assert.deepEqual(await dev.commit(), [OtaUpdaterError.Incomplete, 1])
            assert.equal(dev.server.resumeRecord(), undefined)

            await writePart(3 * SECTOR_SIZE)
            await dev.writeAll(image, 3 * SECTOR_SIZE)
            assert.ok(dev.server.resumeRecord())
            assert.deepEqual(await dev.commit(), [OtaUpdaterError.None, 1])
            assert.equal(dev.server.resumeRecord(), undefined)
        })

        it("a failed write keeps the record: the update can be resumed from its checkpoint", async () => {
            await writePart(3 * SECTOR_SIZE + 500)
            assert.deepEqual(await dev.write(image.length - 10, image.subarray(image.length - 10)), [3 * SECTOR_SIZE + 500, OtaUpdaterError.BadOffset])
            flash.beforeChange = () => {
                throw new Error("flash broken")
            }
            assert.deepEqual(await dev.write(3 * SECTOR_SIZE + 500, image.subarray(3 * SECTOR_SIZE + 500, 3 * SECTOR_SIZE + 500 + CHUNK)), [
                3 * SECTOR_SIZE + 500,
                OtaUpdaterError.FlashWrite,
            ])
            flash.beforeChange = undefined
            assert.deepEqual(await dev.resume(image.length, sha(image)), [OtaUpdaterError.None, 1, 0, SLOT_SIZE, 3 * SECTOR_SIZE])
            await dev.writeAll(image, 3 * SECTOR_SIZE)
            assert.deepEqual(await dev.commit(), [OtaUpdaterError.None, 1])
        })

        for (const nvsNearlyFull of [false, true]) {
            it(`a power cut at every flash operation, then reset + resume + the rest, always ends with exactly the new image${nvsNearlyFull ? " (NVS sector nearly full: rollovers during the update)" : ""}`, async function () {
                this.timeout(600_000)
                const img = buildAppImage({ version: "2.0.0", payloadSize: 11_000 }) // 2 whole sectors and a tail
                const filler = Buffer.alloc(nvsNearlyFull ? 4096 - 16 - 152 - 14 : 0, 0x5a)
                const old = buildAppImage({ version: "0.9.0", payloadSize: 14_000 })
                const fresh = async () => {
                    await dev.dispose()
                    flash.close()
                    flash = SimFlash.createWithImage(flashPath(), v1)
                    // the spare slot holds an older firmware (not selected by otadata)
                    flash.eraseRange(slotOffset(), 4 * SECTOR_SIZE)
                    flash.write(slotOffset(), old)
                    if (filler.length) new SimNvs(flash).set("filler", filler)
                    dev = new Device(flash)
                }
                await fresh()
                if (nvsNearlyFull) assert.equal(entrySize("filler", filler.length) + 16 + 152, 4096, "room for one record")
                let total = 0
                flash.beforeChange = () => total++
                assert.deepEqual(await dev.update(img), [OtaUpdaterError.None, 1])
                assert.ok(total > 10)

                const resumedAt = new Set<number>()
                for (let cut = 0; cut <= total; cut++) {
                    await fresh()
                    let ops = 0
                    flash.beforeChange = () => {
                        if (ops++ >= cut) throw new Error("power cut") // and it stays off
                    }
                    await dev.update(img).catch(() => {})
                    flash.beforeChange = undefined
                    await reset()
                    const what = `cut before flash operation ${cut} of ${total}`
                    if (cut < total) {
                        assert.equal(dev.reg(OtaUpdaterReg.RunningVersion), "1.0.0", what)
                        const [err, slot, , , next] = await dev.resume(img.length, sha(img))
                        assert.deepEqual([err, slot], [OtaUpdaterError.None, 1], what)
                        assert.equal(next % SECTOR_SIZE, 0, what)
                        resumedAt.add(next)
                        await dev.writeAll(img, next)
                        assert.deepEqual(await dev.commit(), [OtaUpdaterError.None, 1], what)
                        assert.equal(dev.server.resumeRecord(), undefined, what)
                        await reset()
                    }
                    assert.deepEqual([dev.reg(OtaUpdaterReg.RunningVersion), dev.reg(OtaUpdaterReg.RunningSlot)], ["2.0.0", 1], what)
                    assert.ok(flash.read(slotOffset(), img.length).equals(img), what)
                    if (filler.length) assert.deepEqual(new SimNvs(flash).get("filler"), filler, what)
                }
                assert.deepEqual([...resumedAt].sort((a, b) => a - b), [0, SECTOR_SIZE, 2 * SECTOR_SIZE])
            })
        }
    })
})

describe("signed apps (trustedKey): the checks before the signature, then the signature", () => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 3072 })
    const signed = signImage(v2, privateKey)
    const edited = (f: (b: Buffer) => void) => {
        const b = Buffer.from(signed)
        f(b)
        return b
    }
    let signing: Device
    beforeEach(async () => {
        await dev.dispose()
        signing = dev = new Device(flash, publicKey)
    })

    it("a correctly signed image commits; an unsigned one is bad_signature", async () => {
        assert.deepEqual(await signing.update(v2), [OtaUpdaterError.BadSignature, 1])
        assert.deepEqual(await signing.update(signed), [OtaUpdaterError.None, 1])
    })

    // as native/otaupdater.c check_layout: a layout it cannot read is not_app_image, even
    // when the signature would not verify either
    for (const [name, edit] of [
        ["no segments", (b: Buffer) => (b[1] = 0)],
        ["hash_appended 2", (b: Buffer) => (b[23] = 2)],
        ["segment 0 shorter than the app descriptor", (b: Buffer) => b.writeUInt32LE(252, 24 + 4)],
    ] as [string, (b: Buffer) => void][])
        it(`${name}: not_app_image, before the signature`, async () => {
            assert.deepEqual(await signing.update(edited(edit)), [OtaUpdaterError.NotAppImage, 1])
        })

    it("a damaged checksum after signing is bad_signature: the signature is checked before the checksum", async () => {
        const checksumAt = inspectImage(signed).imageLength - 33 // before the appended SHA-256
        assert.deepEqual(await signing.update(edited(b => (b[checksumAt] ^= 1))), [OtaUpdaterError.BadSignature, 1])
    })
})

describe("program record at start (recoverProgram)", () => {
    // A program record says progstage holds a checked program that must be copied into the
    // program store. One that cannot be installed is dropped at once, never retried.
    function startWith(record: Buffer | undefined, staged: Buffer) {
        const stage = flash.partition(PROGRAM_STAGING_LABEL)
        flash.eraseRange(stage.offset, Math.ceil(staged.length / SECTOR_SIZE) * SECTOR_SIZE)
        flash.write(stage.offset, staged)
        if (record) new SimNvs(flash).set(PROGRAM_SIM_KEY, record)
        const deployed: Buffer[] = []
        const server = new OtaUpdaterServer(flash, { onReboot: () => {}, deployProgram: b => deployed.push(Buffer.from(b)) })
        const installed = server.recoverProgram()
        return { installed, deployed, left: new SimNvs(flash).get(PROGRAM_SIM_KEY) }
    }
    const program = (size: number) => {
        const b = Buffer.alloc(size, 0x11)
        b.writeUInt32LE(0x53766544, 0)
        return b
    }

    it("copies a staged program whose record matches, once, zero padded to 32 bytes", () => {
        const p = program(9000)
        const r = startWith(encodeProgramRecord(p.length, sha(p)), p)
        assert.equal(r.installed, true)
        assert.deepEqual(r.deployed, [padProgram(p)])
        assert.equal(r.left, undefined)
    })
    for (const [what, size, staged] of [
        ["size 0", 0, program(9000)],
        ["no longer than the bytecode header (112 bytes)", 112, program(112)],
        ["above program_bytes", OtaUpdaterLimits.ProgramBytes + 1, program(OtaUpdaterLimits.ProgramBytes + 1)],
    ] as [string, number, Buffer][]) {
        it(`drops a record of ${what}, even when progstage matches it`, () => {
            const r = startWith(encodeProgramRecord(size, sha(staged.subarray(0, size))), staged)
            assert.deepEqual([r.installed, r.deployed.length, r.left], [false, 0, undefined])
        })
    }
    it("drops a record whose sha256 progstage does not match, and one with a bad CRC", () => {
        const p = program(9000)
        const r1 = startWith(encodeProgramRecord(p.length, Buffer.alloc(32, 7)), p)
        assert.deepEqual([r1.installed, r1.deployed.length, r1.left], [false, 0, undefined])
        const bad = encodeProgramRecord(p.length, sha(p))
        bad[36] ^= 1
        const r2 = startWith(bad, p)
        assert.deepEqual([r2.installed, r2.deployed.length, r2.left], [false, 0, undefined])
    })
})
