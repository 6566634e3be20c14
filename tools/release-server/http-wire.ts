/**
 * A minimal HTTP/1.1 server on raw net sockets, one per origin: reads request heads
 * (request line and headers, at most 16 KB), answers GET and HEAD through the origin's
 * handler and other methods 405, keeps connections alive (HTTP/1.1 default,
 * "Connection: close" honoured, HTTP/1.0 only with "Connection: keep-alive"), records
 * every request and counts connections and requests. Responses are written by
 * faults.sendReply as exact bytes. No pipelining: a request that arrives while a
 * response is being written waits for it.
 */
import * as net from "node:net"
import { Context, Origin, Reply, RequestRecord, WireRequest, reply } from "./context"
import { sendReply } from "./faults"

/** Largest request head (request line, headers and the blank line) accepted; more -> 431. */
export const MAX_REQUEST_HEAD = 16 * 1024
/** An idle keep-alive connection is closed after this long. */
export const IDLE_TIMEOUT_MS = 30_000

/** Answers one parsed GET or HEAD request; may throw (-> 500). */
export type Handler = (req: WireRequest) => Reply

/** One listening origin. */
export interface OriginServer {
    /** the port actually bound */
    port: number
    /** stops listening and destroys every connection (idle, reading or writing) */
    close(): Promise<void>
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

type Parsed =
    | { ok: true; method: string; target: string; version: string; headers: Record<string, string>; record: RequestRecord["headers"] }
    | { ok: false; status: number; method: string; target: string }

/** Parses a request head (without its final CRLF CRLF). */
function parseHead(text: string): Parsed {
    const lines = text.split("\r\n")
    const m = /^(\S+) (\S+) HTTP\/(\d)\.(\d)$/.exec(lines[0])
    if (!m || !TOKEN.test(m[1]) || /[\x00-\x20\x7f]/.test(m[2])) return { ok: false, status: 400, method: "", target: "" }
    const [, method, target, major, minor] = m
    if (major !== "1" || (minor !== "0" && minor !== "1")) return { ok: false, status: 505, method, target }
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
        const h = /^([^:\s]+):[ \t]*(.*?)[ \t]*$/.exec(line)
        // obs-fold, missing colon, bad name, control characters: all malformed
        if (!h || !TOKEN.test(h[1]) || /[\x00-\x08\x0a-\x1f\x7f]/.test(h[2])) return { ok: false, status: 400, method, target }
        const name = h[1].toLowerCase()
        headers[name] = name in headers ? `${headers[name]}, ${h[2]}` : h[2]
    }
    return { ok: true, method, target, version: `HTTP/${major}.${minor}`, headers, record: { ...headers } }
}

function wantsKeepAlive(version: string, headers: Record<string, string>): boolean {
    const tokens = (headers.connection ?? "").toLowerCase().split(",").map(t => t.trim())
    if (tokens.includes("close")) return false
    return version === "HTTP/1.1" || tokens.includes("keep-alive")
}

/** A small text reply for the wire's own errors (400, 405, 431, 500, 505). */
function wireError(ctx: Context, status: number, text: string, extra: [string, string][] = []): Reply {
    return reply(status, [["date", new Date(ctx.now()).toUTCString()], ["content-type", "text/plain; charset=utf-8"], ...extra], text)
}

/** Serves one connection until it closes. */
function serve(ctx: Context, origin: Origin, handler: Handler, socket: net.Socket): void {
    ctx.stats.connections[origin]++
    let buf = Buffer.alloc(0)
    let busy = false
    let peerEnded = false
    let skip = 0 // request body bytes still to discard
    let closing = false // a final response was sent: ignore whatever else comes
    socket.setTimeout(IDLE_TIMEOUT_MS)
    socket.on("timeout", () => {
        if (!busy) socket.destroy()
    })
    socket.on("error", () => {}) // resets by the client are normal here
    socket.on("data", d => {
        if (closing) return
        buf = buf.length ? Buffer.concat([buf, d]) : d
        if (!busy) void pump()
    })
    socket.on("end", () => {
        peerEnded = true
        if (!busy) void pump()
    })

    /** Records the request and sends a reply; resolves whether the connection lives on. */
    async function respond(rec: RequestRecord, rep: Reply, isHead: boolean, keepAlive: boolean): Promise<boolean> {
        let done = false
        const finish = () => {
            if (done) return
            done = true
            ctx.onRequestDone?.(rec)
        }
        const ok = await sendReply(ctx, { socket, origin, onHeadSent: s => (rec.status = s) }, rep, isHead, keepAlive).catch(() => {
            socket.destroy()
            return false
        })
        finish()
        return ok && keepAlive
    }

    function newRecord(method: string, url: string, headers: RequestRecord["headers"]): RequestRecord {
        const rec: RequestRecord = { origin, method, url, headers, status: 0 }
        ctx.requests.push(rec)
        ctx.stats.requests[origin]++
        return rec
    }

    /** Sends a final error reply, then closes. */
    async function fatal(rec: RequestRecord, rep: Reply): Promise<void> {
        closing = true
        buf = Buffer.alloc(0)
        await respond(rec, rep, false, false)
        if (!socket.destroyed) socket.end()
    }

    async function pump(): Promise<void> {
        if (closing) return
        busy = true
        try {
            while (!socket.destroyed) {
                if (skip) {
                    const n = Math.min(skip, buf.length)
                    buf = buf.subarray(n)
                    skip -= n
                    if (skip) break
                }
                // Tolerate empty lines before a request line (RFC 9112 2.2).
                let lead = 0
                while (buf.length >= lead + 2 && buf[lead] === 13 && buf[lead + 1] === 10) lead += 2
                if (lead) buf = buf.subarray(lead)
                const idx = buf.indexOf("\r\n\r\n")
                const tooLong = idx < 0 ? buf.length > MAX_REQUEST_HEAD : idx + 4 > MAX_REQUEST_HEAD
                if (tooLong) {
                    await fatal(newRecord("", "", {}), wireError(ctx, 431, "Request Header Fields Too Large"))
                    return
                }
                if (idx < 0) break
                const head = buf.subarray(0, idx).toString("latin1")
                buf = buf.subarray(idx + 4)
                const p = parseHead(head)
                if (!p.ok) {
                    const text = p.status === 505 ? "HTTP Version Not Supported" : "Bad Request"
                    await fatal(newRecord(p.method, p.target, {}), wireError(ctx, p.status, text))
                    return
                }
                const rec = newRecord(p.method, p.target, p.record)
                const cl = p.headers["content-length"]
                if (cl !== undefined && !/^\d+$/.test(cl)) {
                    await fatal(rec, wireError(ctx, 400, "Bad Request"))
                    return
                }
                skip = cl !== undefined ? Number(cl) : 0
                // A chunked request body is not decoded: answer, then close.
                const keepAlive = wantsKeepAlive(p.version, p.headers) && p.headers["transfer-encoding"] === undefined && !peerEnded
                let rep: Reply
                if (p.method !== "GET" && p.method !== "HEAD") rep = wireError(ctx, 405, "Method Not Allowed", [["allow", "GET, HEAD"]])
                else {
                    let url: URL
                    try {
                        url = new URL(p.target, "http://localhost")
                    } catch {
                        url = new URL("http://localhost/")
                    }
                    const req: WireRequest = {
                        method: p.method,
                        target: p.target,
                        url,
                        version: p.version,
                        headers: p.headers,
                        remoteAddress: socket.remoteAddress ?? "",
                    }
                    try {
                        rep = handler(req)
                    } catch (e) {
                        console.error(`release-server: ${origin} ${p.method} ${p.target.split("?")[0]}:`, e)
                        rep = wireError(ctx, 500, "Internal Server Error")
                    }
                }
                if (!keepAlive) closing = true
                if (!(await respond(rec, rep, p.method === "HEAD", keepAlive))) {
                    if (!socket.destroyed) socket.end()
                    return
                }
            }
            if (peerEnded && !socket.destroyed) socket.end()
        } finally {
            busy = false
        }
    }
}

/** Listens for one origin on host:port (0: a free port). Rejects when it cannot bind. */
export function listenOrigin(ctx: Context, origin: Origin, handler: Handler, host: string, port: number): Promise<OriginServer> {
    const sockets = new Set<net.Socket>()
    const server = net.createServer({ noDelay: true, allowHalfOpen: true }, socket => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        serve(ctx, origin, handler, socket)
    })
    return new Promise((resolve, reject) => {
        server.once("error", reject)
        server.listen(port, host, () => {
            server.off("error", reject)
            resolve({
                port: (server.address() as net.AddressInfo).port,
                close: () =>
                    new Promise<void>(done => {
                        if (!server.listening) return done()
                        server.close(() => done())
                        for (const s of sockets) s.destroy()
                    }),
            })
        })
    })
}
