// sim/device-socket.ts without the VM: a loopback server sends 1-byte TCP segments, a
// hand-driven stand-in for the VM's main-loop turns decides when the "device" reads.
import * as assert from "node:assert/strict"
import * as net from "node:net"
import { AddressInfo } from "node:net"
import { pacedLikeDevice, READ_PIECE_BYTES, TCP_WINDOW_BYTES, TurnSource } from "../sim/device-socket"

/** VM turns that happen only when the test calls tick(). */
class ManualTurns implements TurnSource {
    private pending: (() => void)[] = []
    next(fn: () => void) {
        this.pending.push(fn)
    }
    /** One VM turn; returns what the paced socket delivered in it. */
    tick(): Buffer[] {
        const before = pieces.length
        for (const fn of this.pending.splice(0)) fn()
        return pieces.slice(before)
    }
}

let pieces: Buffer[] = [] // every "data" the paced socket delivered, in order
let events: string[] = [] // "data:N", "end", "close" in the order the paced socket emitted them

/** The server side of one connection: writes what the test asks, one segment per byte if asked. */
interface Peer {
    /** Writes `data` as 1-byte segments (Nagle off, each write waited for). */
    writeBytewise(data: Buffer): Promise<void>
    write(data: Buffer): Promise<void>
    end(): void
}

/** The client side, before pacing: what has arrived from the kernel. */
class Arrivals {
    bytes = 0
    buffers = 0
    ended = false
    closed = false
    private waiters: [() => boolean, () => void][] = []
    constructor(sock: net.Socket) {
        // Observes the raw socket: pacedLikeDevice only replaces sock.on.
        sock.prependListener("data", (b: Buffer) => {
            this.bytes += b.length
            this.buffers++
            this.check()
        })
        sock.prependListener("end", () => ((this.ended = true), this.check()))
        sock.prependListener("close", () => ((this.closed = true), this.check()))
    }
    until(cond: () => boolean): Promise<void> {
        if (cond()) return Promise.resolve()
        return new Promise(resolve => this.waiters.push([cond, resolve]))
    }
    private check() {
        this.waiters = this.waiters.filter(([cond, resolve]) => (cond() ? (resolve(), false) : true))
    }
}

function pattern(n: number, seed: number) {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff
    return b
}

describe("device sockets (128-byte reads, one window per VM turn)", function () {
    this.timeout(20_000)
    let server: net.Server
    let peer: Peer
    let client: net.Socket
    let arrivals: Arrivals
    let turns: ManualTurns

    beforeEach(async () => {
        pieces = []
        events = []
        turns = new ManualTurns()
        const accepted = new Promise<net.Socket>(resolve => {
            server = net.createServer(resolve)
        })
        await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve))
        const { port } = server.address() as AddressInfo
        client = pacedLikeDevice(net.createConnection({ host: "127.0.0.1", port }), turns)
        arrivals = new Arrivals(client)
        client.on("data", (b: Buffer) => {
            pieces.push(b)
            events.push(`data:${b.length}`)
        })
        client.on("end", () => events.push("end"))
        client.on("close", () => events.push("close"))
        const s = await accepted
        s.setNoDelay(true)
        const write = (d: Buffer) => new Promise<void>((res, rej) => s.write(d, e => (e ? rej(e) : res())))
        peer = {
            write,
            async writeBytewise(data) {
                for (let i = 0; i < data.length; i++) await write(data.subarray(i, i + 1))
            },
            end: () => s.end(),
        }
    })
    afterEach(async () => {
        client.destroy()
        await new Promise(resolve => server.close(resolve))
    })

    it("coalesces queued 1-byte segments into reads of up to 128 bytes", async () => {
        const sent = pattern(600, 1)
        // one byte at a time, each seen by the client before the next is written, so the
        // kernel cannot merge them: 600 separate arrivals, whatever the machine's load
        for (let i = 0; i < sent.length; i++) {
            await peer.write(sent.subarray(i, i + 1))
            await arrivals.until(() => arrivals.bytes === i + 1)
        }
        assert.equal(arrivals.buffers, sent.length, "one arrival per byte")
        assert.equal(pieces.length, 0, "nothing is read before a VM turn")

        const got = turns.tick()
        assert.deepEqual(
            got.map(p => p.length),
            [128, 128, 128, 128, 88],
            "one turn reads everything queued, 128 bytes per read"
        )
        assert.deepEqual(Buffer.concat(got), sent)
        assert.deepEqual(turns.tick(), [], "no data left for the next turn")
    })

    it("a byte that arrives alone between turns is read alone", async () => {
        const sent = pattern(3, 2)
        for (let i = 0; i < sent.length; i++) {
            await peer.write(sent.subarray(i, i + 1))
            await arrivals.until(() => arrivals.bytes === i + 1)
            assert.deepEqual(turns.tick(), [sent.subarray(i, i + 1)])
        }
    })

    it("reads at most one receive window per turn, everything in order", async () => {
        const big = pattern(2 * TCP_WINDOW_BYTES + 1000, 3)
        const tail = pattern(300, 4)
        await peer.write(big)
        await peer.writeBytewise(tail)
        const sent = Buffer.concat([big, tail])
        await arrivals.until(() => arrivals.bytes === sent.length)

        const perTurn: number[] = []
        for (let i = 0; i < 10 && Buffer.concat(pieces).length < sent.length; i++) {
            const got = turns.tick()
            for (const p of got) assert.ok(p.length > 0 && p.length <= READ_PIECE_BYTES, `a read of ${p.length} bytes`)
            perTurn.push(got.reduce((n, p) => n + p.length, 0))
        }
        assert.deepEqual(perTurn, [TCP_WINDOW_BYTES, TCP_WINDOW_BYTES, sent.length - 2 * TCP_WINDOW_BYTES])
        assert.ok(pieces.slice(0, -1).every(p => p.length === READ_PIECE_BYTES), "only the last read is short")
        assert.deepEqual(Buffer.concat(pieces), sent)
    })

    it("emits 'end' and 'close' only after the data", async () => {
        const sent = pattern(2 * TCP_WINDOW_BYTES, 5)
        await peer.writeBytewise(sent.subarray(0, 200))
        await peer.write(sent.subarray(200))
        peer.end()
        await arrivals.until(() => arrivals.ended && arrivals.closed)
        assert.equal(arrivals.bytes, sent.length)
        assert.equal(events.length, 0, "end/close of the host socket wait for the VM to read the data")

        turns.tick()
        assert.ok(!events.includes("end"), "a window is still queued after the first turn")
        turns.tick()
        assert.deepEqual(events.slice(-2), ["end", "close"])
        assert.ok(events.slice(0, -2).every(e => e.startsWith("data:")))
        assert.deepEqual(Buffer.concat(pieces), sent)
        for (const p of pieces) assert.ok(p.length <= READ_PIECE_BYTES)
    })
})
