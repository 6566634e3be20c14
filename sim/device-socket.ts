// Sockets as the ESP32 runtime sees them. devicescript-esp32 (main/sock.c,
// jd_tcpsock_process) calls recv(sock, buf, 128, MSG_DONTWAIT) (or mbedtls_ssl_read)
// once per main-loop turn, again and again until EAGAIN. lwIP fills each read with up
// to 128 bytes ACROSS the TCP segments that have arrived, so a server's 1-byte
// segments reach the VM in 128-byte pieces when several are queued; only data that
// trickles in slower than the loop turns arrives in smaller pieces. lwIP holds at most
// one TCP receive window (CONFIG_LWIP_TCP_WND_DEFAULT, 5760 bytes) that the server may
// send ahead. Node instead reads everything the kernel has, up to 64 KB at once (or
// one buffer per segment when they trickle in), and hands each buffer to the VM as it
// comes (every buffer starts a VM fiber: runtime/devicescript/impl_socket.c). This
// wrapper restores the device's pacing: at most one window per VM turn (a call of the
// VM's process function), in reads of up to 128 bytes that take from as many queued
// buffers as needed; the rest waits on the host side, like data the server may not
// send yet.
import * as net from "node:net"
import * as tls from "node:tls"

export const READ_PIECE_BYTES = 128
export const TCP_WINDOW_BYTES = 5760

type Listener = (...args: any[]) => void

// A turn that never comes (the VM asleep on a long timer) must not stall the socket.
const MAX_TURN_WAIT_MS = 20

/** Counts the VM's main-loop turns; sockets wait for the next one between windows. */
export class VmTurns {
    private waiting: (() => void)[] = []

    /** Called after every VM turn. */
    tick() {
        for (const fn of this.waiting.splice(0)) fn()
    }

    next(fn: () => void) {
        let done = false
        const once = () => {
            if (done) return
            done = true
            clearTimeout(timer)
            fn()
        }
        const timer = setTimeout(once, MAX_TURN_WAIT_MS)
        this.waiting.push(once)
    }
}

/** What pacedLikeDevice needs of the VM's turns (VmTurns, or a hand-driven fake in tests). */
export type TurnSource = Pick<VmTurns, "next">

/** Makes `sock` deliver "data" the way the device does; "end"/"close" wait for it. */
export function pacedLikeDevice<T extends net.Socket>(sock: T, turns: TurnSource): T {
    const queue: Buffer[] = [] // received, not yet read by the VM
    let queued = 0 // bytes in queue
    const dataListeners: Listener[] = []
    const deferred: [string, Listener, any[]][] = [] // end/close after the data
    let scheduled = false
    const on = sock.on.bind(sock)

    // One recv(): up to `max` bytes from the front of the queue, across buffers.
    const read = (max: number): Buffer => {
        const n = Math.min(max, queued)
        const parts: Buffer[] = []
        for (let need = n; need > 0; ) {
            const buf = queue[0]
            if (buf.length <= need) {
                parts.push(buf)
                queue.shift()
                need -= buf.length
            } else {
                parts.push(buf.subarray(0, need))
                queue[0] = buf.subarray(need)
                need = 0
            }
        }
        queued -= n
        return parts.length === 1 ? parts[0] : Buffer.concat(parts, n)
    }

    // One main-loop turn: up to one receive window, in reads of up to 128 bytes.
    const turn = () => {
        scheduled = false
        let budget = TCP_WINDOW_BYTES
        while (queued > 0 && budget > 0) {
            const piece = read(Math.min(READ_PIECE_BYTES, budget))
            budget -= piece.length
            for (const fn of dataListeners) fn(piece)
        }
        if (queued > 0) {
            sock.pause() // the window is full: the server waits
            schedule()
        } else {
            sock.resume()
            for (const [, fn, args] of deferred.splice(0)) fn(...args)
        }
    }
    const schedule = () => {
        if (!scheduled) {
            scheduled = true
            turns.next(turn)
        }
    }
    on("data", (buf: Buffer) => {
        if (!buf.length) return
        queue.push(buf)
        queued += buf.length
        schedule()
    })
    sock.on = ((event: string, fn: Listener) => {
        if (event === "data") dataListeners.push(fn)
        else if (event === "end" || event === "close")
            on(event, (...args: any[]) => {
                if (queued > 0) deferred.push([event, fn, args])
                else fn(...args)
            })
        else on(event, fn)
        return sock
    }) as any
    return sock
}

/** `net` and `tls` modules whose sockets are paced by `turns` like the device's. */
export function deviceSockets(turns: VmTurns) {
    return {
        net: { ...net, createConnection: (...a: any[]) => pacedLikeDevice((net.createConnection as any)(...a), turns) },
        tls: { ...tls, connect: (...a: any[]) => pacedLikeDevice((tls.connect as any)(...a), turns) },
    }
}
