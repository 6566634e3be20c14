import * as ds from "@devicescript/core"
import { describe, test, expect } from "@devicescript/test"
import { ImageWriter, OtaClient } from "../otaclient"

// A service stand-in: writes land in `image` when they start at bytes_written, and
// every write is answered with a report, like sim/ota-server.ts.
class FakeService {
    image: Buffer
    written = 0
    reports: Buffer[] = []
    writes = 0
    dropEvery = 0 // lose every n-th write (no report)
    role: any
    constructor(size: number) {
        this.image = Buffer.alloc(size)
        const self = this
        this.role = {
            sendCommand: async (cmd: number, payload: Buffer) => {
                await ds.sleep(0) // the VM's packet throttle suspends the sender
                self.onWrite(payload)
            },
        }
    }
    onWrite(payload: Buffer) {
        this.writes++
        if (this.dropEvery && this.writes % this.dropEvery === 0) return
        const offset = payload.getAt(0, "u32")
        const n = payload.length - 4
        const r = Buffer.alloc(5)
        if (offset === this.written) {
            this.image.blitAt(offset, payload, 4, n)
            this.written += n
        } else if (offset > this.written) r.setAt(4, "u8", ds.OtaUpdaterError.BadOffset)
        r.setAt(0, "u32", this.written)
        this.reports.push(r)
    }
    async _report(cmd: number, timeout?: number) {
        if (this.reports.length) return this.reports.shift()
        if (timeout === 0) return undefined
        await ds.sleep(5)
        return this.reports.shift()
    }
}

// (byte loops yield now and then: 128K opcodes without await panic)
async function pattern(size: number) {
    const b = Buffer.alloc(size)
    for (let i = 0; i < size; i++) {
        b[i] = (i * 7 + (i >> 8)) & 0xff
        if (i % 1024 === 0) await ds.sleep(0)
    }
    return b
}

async function same(a: Buffer, b: Buffer) {
    if (a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) {
        if (a[i] !== b[i]) return false
        if (i % 1024 === 0) await ds.sleep(0)
    }
    return true
}

async function streamThrough(size: number, piece: number, dropEvery: number) {
    const svc = new FakeService(size)
    svc.dropEvery = dropEvery
    const w = new ImageWriter(svc as any as OtaClient, 0, size)
    const src = await pattern(size)
    for (let at = 0; at < size; at += piece) {
        await w.push(src, at, Math.min(at + piece, size))
        if ((at / piece) % 16 === 0) await ds.sleep(1) // (the sender fiber runs meanwhile)
    }
    await w.flush()
    await w.close()
    expect(svc.written).toBe(size)
    expect(w.acked).toBe(size)
    expect(await same(svc.image, src)).toBe(true)
}

describe("ImageWriter", () => {
    test("streams pieces of any size into 232-byte writes, in order", async () => {
        await streamThrough(5000, 128, 0)
        await streamThrough(5000, 1, 0)
        await streamThrough(5000, 512, 0)
        await streamThrough(1161, 1160, 0)
    })
    test("resends what a lost write or report left unacknowledged", async () => {
        await streamThrough(6000, 300, 7)
    })
})
