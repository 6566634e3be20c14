// Sockets as the ESP32 runtime sees them. devicescript-esp32 (main/sock.c,
// jd_tcpsock_process) reads its socket in 128-byte pieces once per main-loop turn
// until lwIP has nothing more, and lwIP holds at most one TCP receive window
// (CONFIG_LWIP_TCP_WND_DEFAULT, 5760 bytes) that the server may send ahead. Node
// instead reads everything the kernel has, up to 64 KB at once, and hands it to the VM
// in one go. This wrapper restores the device's pacing: at most one window per VM turn
// (a call of the VM's process function), in 128-byte pieces; the rest waits on the host
// side, like data the server may not send yet.
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

/** Makes `sock` deliver "data" the way the device does; "end"/"close" wait for it. */
export function pacedLikeDevice<T extends net.Socket>(sock: T, turns: VmTurns): T {
    const queue: Buffer[] = []
    const dataListeners: Listener[] = []
    const deferred: [string, Listener, any[]][] = [] // end/close after the data
    let scheduled = false
    const on = sock.on.bind(sock)

    // One main-loop turn: up to one receive window, in 128-byte reads.
    const turn = () => {
        scheduled = false
        let budget = TCP_WINDOW_BYTES
        while (queue.length && budget > 0) {
            const buf = queue[0]
            const n = Math.min(buf.length, READ_PIECE_BYTES, budget)
            const piece = buf.subarray(0, n)
            if (n === buf.length) queue.shift()
            else queue[0] = buf.subarray(n)
            budget -= n
            for (const fn of dataListeners) fn(piece)
        }
        if (queue.length) {
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
        queue.push(buf)
        schedule()
    })
    sock.on = ((event: string, fn: Listener) => {
        if (event === "data") dataListeners.push(fn)
        else if (event === "end" || event === "close")
            on(event, (...args: any[]) => {
                if (queue.length) deferred.push([event, fn, args])
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
