// The simulated OTA updater server (sim/ota-server.ts) as a ConformanceBackend: the server
// object is driven directly (no bus), its reports and events captured as it sends them.
import { Packet } from "jacdac-ts"
import { SimFlash, FlashOp } from "../../sim/flash"
import { SimNvs } from "../../sim/nvs"
import { peekBoot } from "../../sim/bootloader"
import { OtaUpdaterServer, PROGRAM_STAGING_LABEL } from "../../sim/ota-server"
import { ConformanceBackend, Sent, BootInfo } from "./backend"

export class SimBackend implements ConformanceBackend {
    readonly name = "simulated server (sim/ota-server.ts)"
    private flash?: SimFlash
    private server?: OtaUpdaterServer
    private sent: Sent[] = []
    private restart = false
    private lost = false
    private cutAt = 0
    private failAt = 0
    private writes = 0
    private program?: Buffer
    private restarts = 0
    private running = 0

    async boot(flashFile: string, info: BootInfo): Promise<Sent[]> {
        const flash = (this.flash = SimFlash.open(flashFile))
        this.running = info.runningSlot
        this.restart = this.lost = false
        this.cutAt = this.failAt = 0
        this.sent = []
        flash.beforeChange = op => this.beforeChange(op)
        const server = (this.server = new OtaUpdaterServer(flash, {
            boot: peekBoot(flash),
            onReboot: () => (this.restart = true),
            deployProgram: b => {
                this.program = Buffer.from(b)
                this.restarts++
            },
        }))
        ;(server as any).sendPacketAsync = async (pkt: Packet) => {
            this.sent.push({ kind: "report", code: pkt.serviceCommand, payload: Buffer.from(pkt.data) })
        }
        ;(server as any).sendEvent = async (code: number, data?: Uint8Array) => {
            this.sent.push({ kind: "event", code, payload: Buffer.from(data ?? []) })
        }
        server.recoverProgram()
        return this.take()
    }

    async command(code: number, payload: Buffer, settleMs = 0): Promise<Sent[]> {
        if (this.lost || !this.server) return []
        const pkt = Packet.from(code, payload)
        pkt.isCommand = true
        await this.server.handlePacket(pkt)
        // deferred work (the program install ~100 ms after commit) is done before settling
        while (this.server?.busy()) await new Promise(r => setTimeout(r, 10))
        await new Promise(r => setTimeout(r, settleMs))
        await new Promise(r => setImmediate(r))
        return this.take()
    }

    async register(code: number): Promise<Buffer> {
        const reg = this.server?.register(code)
        if (!reg) throw new Error(`no register 0x${code.toString(16)}`)
        return Buffer.from(reg.data)
    }

    armPowerCut(n: number) {
        this.cutAt = n
        this.writes = 0
    }

    armFlashFailure(n: number) {
        this.failAt = n
        this.writes = 0
    }

    powerLost() {
        return this.lost
    }

    restartRequested() {
        return this.restart
    }

    async nvsGet(key: string) {
        return this.flash ? new SimNvs(this.flash).get(key) : undefined
    }

    async deployed() {
        return { program: this.program, restarts: this.restarts }
    }

    async shutdown() {
        this.server?.close()
        this.flash?.close()
        this.server = this.flash = undefined
    }

    private take() {
        const s = this.sent
        this.sent = []
        return s
    }

    // Counts data writes into the partition being updated: the spare slot or progstage.
    private beforeChange(op: FlashOp) {
        if (this.lost) throw new Error("power is off")
        if (op.kind !== "write" || (!this.cutAt && !this.failAt)) return
        const flash = this.flash!
        const targets = [flash.otaSlots()[this.running ^ 1], flash.partitions().find(p => p.label === PROGRAM_STAGING_LABEL)]
        if (!targets.some(p => p && op.offset >= p.offset && op.offset < p.offset + p.size)) return
        this.writes++
        if (this.cutAt && this.writes >= this.cutAt) {
            this.lost = true
            throw new Error("power is off")
        }
        if (this.failAt && this.writes === this.failAt) {
            this.failAt = 0
            throw new Error("flash write failed (injected)")
        }
    }
}
