import * as assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createHash, randomBytes } from "node:crypto"
import { JDBus, JDDevice, JDServerServiceProvider, PACKET_SEND, Packet, jdunpack } from "jacdac-ts"
import {
    OtaUpdaterCmd,
    OtaUpdaterCmdPack,
    OtaUpdaterError,
    OtaUpdaterEvent,
    OtaUpdaterReg,
    OtaUpdaterRegPack,
    OtaUpdaterState,
} from "../.devicescript/ts/constants"
import { buildAppImage } from "../tools/esp-image"
import { FlashOp, SimFlash } from "../sim/flash"
import { OtaImgState, boot, bootSlot, otaState, readOtadata } from "../sim/bootloader"
import { OtaUpdaterServer } from "../sim/ota-server"

const CHUNK = 232
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

    constructor(readonly flash: SimFlash) {
        this.server = new OtaUpdaterServer(flash, { onReboot: () => this.reboots++ })
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

    begin(size: number, target = 0xff, hash: Uint8Array = new Uint8Array(0)) {
        return this.call(OtaUpdaterCmd.Begin, OtaUpdaterCmdPack.Begin, [size, target, 0, 0, hash], OtaUpdaterCmdPack.BeginReport)
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
        const [err] = await this.begin(image.length, 0xff, hash)
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

        assert.deepEqual(await dev.begin(v2.length, 0xff, sha(v2)), [OtaUpdaterError.None, 1, 0, SLOT_SIZE])
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
        await dev.begin(v2.length, 0xff, sha(v2))
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
        await dev.begin(v2.length, 0xff, sha(v2))
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
        assert.deepEqual(await dev.update(junk, new Uint8Array(0)), [OtaUpdaterError.NotAppImage, 1])
        assert.equal(dev.reg(OtaUpdaterReg.LastError), OtaUpdaterError.NotAppImage)
        assert.equal(bootSlot(flash), 0)
    })

    it("a commit before image_size bytes is incomplete", async () => {
        await dev.begin(v2.length, 0xff, sha(v2))
        await dev.writeAll(v2.subarray(0, 10 * CHUNK))
        assert.deepEqual(await dev.commit(), [OtaUpdaterError.Incomplete, 1])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Error)
        assert.equal(bootSlot(flash), 0)
    })

    it("commands outside an update are invalid_state and change nothing", async () => {
        assert.deepEqual(await dev.commit(), [OtaUpdaterError.InvalidState, 0xff])
        assert.deepEqual(await dev.write(0, v2.subarray(0, CHUNK)), [0, OtaUpdaterError.InvalidState])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Idle)
        assert.ok(flash.read(flash.partition("ota_1").offset, 16).every(b => b === 0xff))
    })

    it("begin checks the target slot and the size", async () => {
        assert.deepEqual(await dev.begin(1000, 0), [OtaUpdaterError.BadTarget, 0, 0, SLOT_SIZE])
        assert.equal(dev.reg(OtaUpdaterReg.State), OtaUpdaterState.Error)
        assert.equal((await dev.begin(1000, 2))[0], OtaUpdaterError.BadTarget)
        assert.equal((await dev.begin(SLOT_SIZE + 1))[0], OtaUpdaterError.TooLarge)
        assert.equal((await dev.begin(1000, 0xff, new Uint8Array(31)))[0], OtaUpdaterError.Sha256Mismatch)
        assert.deepEqual(await dev.begin(SLOT_SIZE, 1), [OtaUpdaterError.None, 1, 0, SLOT_SIZE])
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
        assert.deepEqual(await dev.begin(v1.length), [OtaUpdaterError.InvalidState, 0, 0, SLOT_SIZE])

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
        await dev.begin(v2.length, 0xff, sha(v2))
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
})
