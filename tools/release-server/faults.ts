/**
 * The fault plan (a plain, live object: changes take effect on the next request) and
 * how every response is framed and written: status line, headers and body as exact
 * bytes, with the framing faults applied (segmenting, trickle, stalls, drops,
 * truncation, chunked encoding, oversized headers) plus the canned 5xx answers.
 * Content faults (ranges, HTML, corruption, rate limits, redirects) are applied by
 * api.ts and storage.ts, which read the same plan.
 */
import * as http from "node:http"
import type * as net from "node:net"
import * as crypto from "node:crypto"
import { Context, Origin, Reply, WireRequest, reply } from "./context"
import { unitRandom } from "../prng"

/**
 * Misbehaviour to inject. Every field is optional and read on each request, so a test
 * may change the object between requests. "Once" faults are consumed (removed from
 * their array, or their field deleted / count decremented) when a response is built
 * that carries them, so a retry succeeds.
 *
 * Offsets: for storage responses that carry asset bytes they are asset byte offsets
 * (position in the asset file; a Range response starting at S covers offsets S..);
 * for API responses (and for `truncate`) they count payload bytes of that response.
 * A fault whose offset the response does not cover does not fire and stays armed.
 */
export interface FaultPlan {
    /** Seed of the deterministic PRNG behind `segmenting: "random"` and chunk sizes
     * (default 1). The sequence runs on across responses and restarts when a
     * response is sent with a different seed than the previous one. */
    seed?: number
    /** How each response's bytes are written (both origins). "bytes": one byte per
     * socket write, waiting for the write callback and a setImmediate between writes
     * (sockets have TCP_NODELAY, so each is its own segment); "one": the whole
     * response in a single write (a stall splits it); "random": pieces of 1..1500
     * bytes from the PRNG, paced like "bytes". Default: the head in one write, the
     * body in another (one per chunk part when chunked). */
    segmenting?: "bytes" | "one" | "random"
    /** Adds to every response of these origins: a Content-Security-Policy line of
     * exactly 3,600 bytes (replacing the API's own), a Link line of exactly 1,500
     * bytes (the API's pagination links kept first, padded with a rel="preconnect"
     * entry) and 30 lines "x-bloat-NN: bbb..." of exactly 40 bytes (line lengths
     * exclude CRLF; about 6.5 KB more head). A 302's Location value is padded to
     * exactly 1,912 bytes with a trailing "pad=000..." query parameter (left alone
     * when already longer). */
    headerBloat?: { origins: Origin[] }
    /** One more header line "x-huge-header: hhh..." of exactly `bytes` bytes
     * (without CRLF; at least 16) on every response of that origin; for testing a
     * client's 8 KB line and 32 KB head limits. */
    hugeHeader?: { origin: Origin; bytes: number }
    /** Header lines added as they are (no check) to every response of that origin,
     * after the usual ones: e.g. an ETag with a control byte, or a header repeated a
     * thousand times. */
    extraHeaders?: { origin: Origin; lines: [string, string][] }
    /** Origins whose bodies are sent with Transfer-Encoding: chunked (no
     * Content-Length) and a "Trailer: X-Checksum" header: chunk sizes from the PRNG
     * (1..2048 bytes, lowercase hex), every second chunk (the 2nd, 4th...) with the
     * extension ";ext=1", and after the last-chunk "0" a trailer line
     * "X-Checksum: sha256=<hex of the payload as sent>". Applies to every response
     * that may have a body (also empty ones such as a 302: "0", trailer, CRLF); not
     * to HEAD, 204 or 304, which keep their headers. */
    chunked?: Origin[]
    /** Close the connection (destroy, after the bytes before it are written) right
     * after the asset byte at offset `at` (storage asset responses), or after `at`
     * payload bytes (API responses; 0 = right after the head). Each fires once; the
     * earliest covered one wins. */
    drops?: { origin: Origin; at: number }[]
    /** Pause `ms` milliseconds before the asset byte at offset `at` (storage asset
     * responses), or before payload byte `at` (API); at = -1: before the status line
     * of the next response of that origin (first-byte stall). Each fires once. */
    stalls?: { origin: Origin; at: number; ms: number }[]
    /** The next `count` requests on `origin` are answered `status` (e.g. 500, 502,
     * 503) with a small body (API: JSON {"message":...}; storage: Azure XML error)
     * instead of being handled; `count` is decremented. Checked before everything else. */
    errors5xx?: { origin: Origin; status: number; count: number }
    /** The next `count` API requests are answered `status` (default 403; 429 allowed)
     * with GitHub's primary rate-limit message ("API rate limit exceeded for ..."),
     * x-ratelimit-remaining: 0, x-ratelimit-used = limit, x-ratelimit-reset = now +
     * `resetInSeconds` (epoch seconds; default 60) and, when `retryAfter` is given,
     * retry-after: `retryAfter` (seconds). They do not use the real bucket. */
    rateLimit?: { count: number; status?: 403 | 429; retryAfter?: number; resetInSeconds?: number }
    /** While true, every signed URL handed out before the server first saw this flag
     * on is answered 403 AuthenticationFailed ("Signature not valid in the specified
     * time frame", like a real expiry); URLs signed afterwards work. Switching it off
     * and on again expires the URLs handed out by then. */
    expireSignedUrls?: boolean
    /** Storage answers 200 with the whole asset (no Content-Range) to Range requests. */
    ignoreRange?: boolean
    /** Storage's 206: "start": Content-Range and bytes start one byte later than
     * asked ("bytes=100-199" gets "bytes 101-199/size" and those 99 bytes); "total":
     * the right bytes, but Content-Range total is size + 1. */
    wrongContentRange?: "start" | "total"
    /** Storage answers 416 (Content-Range "bytes * /size", no body) to every request
     * that has a Range header (after the signature check). */
    status416?: boolean
    /** Storage answers 200 text/html ("<!DOCTYPE html>...", with a Content-Length) to
     * every correctly signed asset request, Range or not. */
    htmlInsteadOfAsset?: boolean
    /** The API answers 401 {"message":"Bad credentials"} to every request. */
    rejectAuthorization?: boolean
    /** Send a normal head (Content-Length as usual) but close the connection after
     * `at` payload bytes of the next response on `origin` whose payload is longer
     * than `at`. Once (the field is deleted). */
    truncate?: { origin: Origin; at: number }
    /** Flip (xor 0xff) the asset byte at this offset in every storage response that
     * carries it. */
    corruptAt?: number
    /** Raw text answered (200, application/json; charset=utf-8, no ETag) to
     * GET /repos/{o}/{r}/releases/latest of a readable repo, e.g. malformed JSON. */
    latestBody?: string
    /** Send every response of `origin` (head included) `bytes` at a time, waiting
     * `everyMs` between pieces. Overrides `segmenting` for that origin. */
    trickle?: { origin: Origin; bytes: number; everyMs: number }
    /** The asset URL (Accept: application/octet-stream) 302s back to itself this many
     * extra times before the storage redirect: hop k (1..n) goes to the same path
     * with "hop=k" added to the query, as an absolute URL on odd hops and a
     * path-absolute one ("/repos/...") on even hops. */
    redirectLoop?: number
    /** The asset 302's Location is the signed storage URL with its scheme changed to
     * "https:" (same host, port, path and valid signature). The storage port speaks
     * plain HTTP only, so a client that follows it gets a 400 and a close for its TLS
     * ClientHello; a client should refuse it (scheme / origin checks) before that. */
    httpsToHttp?: boolean
}

/** Alias kept for code written against the old hook-based type. */
export type Faults = FaultPlan

/** Restarts the PRNG when faults.seed (default 1) differs from the one the previous
 * response was framed with; called once per response. */
function reseed(ctx: Context): void {
    const seed = ctx.faults.seed ?? 1
    if (ctx.rng.seed !== seed) {
        ctx.rng.seed = seed
        ctx.rng.next = unitRandom(seed)
    }
}

/** Deterministic PRNG (mulberry32) seeded by faults.seed; returns [0, 1). */
export function random(ctx: Context): number {
    return ctx.rng.next()
}

/** Integer in [lo, hi] from the PRNG. */
function randInt(ctx: Context, lo: number, hi: number): number {
    return lo + Math.floor(random(ctx) * (hi - lo + 1))
}

/**
 * The faults.errors5xx answer when it applies to this request (and consumes one),
 * else undefined: the request goes to its origin's handler.
 */
export function cannedReply(ctx: Context, origin: Origin, _req: WireRequest): Reply | undefined {
    const e = ctx.faults.errors5xx
    if (!e || e.origin !== origin || !(e.count > 0)) return undefined
    e.count--
    const text = http.STATUS_CODES[e.status] ?? "Server Error"
    const date: [string, string] = ["date", new Date(ctx.now()).toUTCString()]
    if (origin === "api")
        return reply(e.status, [["server", "github.com"], date, ["content-type", "application/json; charset=utf-8"]], JSON.stringify({ message: text }))
    const code = e.status === 503 ? "ServerBusy" : "InternalError"
    return reply(
        e.status,
        [["server", "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0"], date, ["content-type", "application/xml"]],
        `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${text}</Message></Error>`,
    )
}

// ---------------------------------------------------------------------------
// Head

/** `prefix` + filler + `suffix`, exactly `total` characters (or without filler when too short). */
function fill(prefix: string, suffix: string, total: number, ch = "x"): string {
    return prefix + ch.repeat(Math.max(0, total - prefix.length - suffix.length)) + suffix
}

function setHeader(headers: [string, string][], name: string, value: string): void {
    const i = headers.findIndex(([n]) => n.toLowerCase() === name)
    if (i >= 0) headers[i] = [headers[i][0], value]
    else headers.push([name, value])
}

function getHeader(headers: [string, string][], name: string): string | undefined {
    return headers.find(([n]) => n.toLowerCase() === name)?.[1]
}

/** faults.headerBloat applied to a copy of `headers`. */
function bloat(headers: [string, string][], status: number): [string, string][] {
    const out = headers.map(([n, v]) => [n, v] as [string, string])
    setHeader(out, "content-security-policy", fill("default-src 'none'; img-src https://", ".githubusercontent.com", 3600 - "content-security-policy: ".length))
    const link = getHeader(out, "link")
    const linkLen = 1500 - "link: ".length
    const linkPrefix = (link ? link + ", " : "") + "<https://bloat.example/"
    const linkSuffix = '>; rel="preconnect"'
    if (linkPrefix.length + linkSuffix.length <= linkLen) setHeader(out, "link", fill(linkPrefix, linkSuffix, linkLen, "p"))
    for (let i = 1; i <= 30; i++) {
        const name = `x-bloat-${String(i).padStart(2, "0")}`
        out.push([name, "b".repeat(40 - name.length - 2)])
    }
    const loc = getHeader(out, "location")
    if (status === 302 && loc !== undefined) {
        const prefix = loc + (loc.includes("?") ? "&" : "?") + "pad="
        if (prefix.length < 1912) setHeader(out, "location", fill(prefix, "", 1912, "0"))
    }
    return out
}

function buildHead(status: number, headers: [string, string][]): Buffer {
    let s = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Unknown"}\r\n`
    for (const [n, v] of headers) s += `${n}: ${v}\r\n`
    return Buffer.from(s + "\r\n", "latin1")
}

// ---------------------------------------------------------------------------
// Body framing and the write plan

/** Bytes to write; `body` is true for payload bytes (counted in stats.bodyBytes). */
interface WriteOp {
    kind: "write"
    data: Buffer
    body: boolean
    /** the last piece of the head */
    headEnd?: boolean
}
type Op = WriteOp | { kind: "pause"; ms: number } | { kind: "drop" }

/** Body frames: payload slices (with their payload offset) and framing bytes (-1). */
function frameBody(ctx: Context, payload: Buffer, chunked: boolean): { data: Buffer; at: number }[] {
    if (!chunked) return payload.length ? [{ data: payload, at: 0 }] : []
    const frames: { data: Buffer; at: number }[] = []
    let off = 0
    for (let i = 0; off < payload.length; i++) {
        const n = Math.min(randInt(ctx, 1, 2048), payload.length - off)
        frames.push({ data: Buffer.from(`${n.toString(16)}${i % 2 === 1 ? ";ext=1" : ""}\r\n`), at: -1 })
        frames.push({ data: payload.subarray(off, off + n), at: off })
        frames.push({ data: Buffer.from("\r\n"), at: -1 })
        off += n
    }
    const sum = crypto.createHash("sha256").update(payload).digest("hex")
    frames.push({ data: Buffer.from(`0\r\nX-Checksum: sha256=${sum}\r\n\r\n`), at: -1 })
    return frames
}

/**
 * Payload position of a fault offset in this response: for storage asset responses
 * `at` is an asset offset, otherwise a payload offset. Undefined when not covered.
 */
function payloadPos(origin: Origin, rep: Reply, payloadLen: number, at: number): number | undefined {
    let p = at
    if (origin === "storage") {
        if (rep.assetStart === undefined) return undefined
        p = at - rep.assetStart
    }
    return p >= 0 && p < payloadLen ? p : undefined
}

/** Turns a reply into the list of writes, pauses and a drop; consumes "once" faults. */
function plan(ctx: Context, origin: Origin, rep: Reply, isHead: boolean, keepAlive: boolean): Op[] {
    const f = ctx.faults
    reseed(ctx)
    const bodyAllowed = !isHead && rep.status !== 204 && rep.status !== 304 && rep.status >= 200
    const payload = bodyAllowed ? rep.body ?? Buffer.alloc(0) : Buffer.alloc(0)
    const chunked = bodyAllowed && !!f.chunked?.includes(origin)

    let headers = rep.headers.slice()
    if (chunked) {
        headers = headers.filter(([n]) => n.toLowerCase() !== "content-length")
        headers.push(["transfer-encoding", "chunked"], ["trailer", "X-Checksum"])
    }
    if (f.headerBloat?.origins?.includes(origin)) headers = bloat(headers, rep.status)
    if (f.hugeHeader?.origin === origin) headers.push(["x-huge-header", fill("", "", Math.max(16, f.hugeHeader.bytes) - 15, "h")])
    if (f.extraHeaders?.origin === origin) for (const [n, v] of f.extraHeaders.lines) headers.push([n, v])
    headers.push(["connection", keepAlive ? "keep-alive" : "close"])
    if (keepAlive) headers.push(["keep-alive", "timeout=30"])

    // The cut (close after X payload bytes), then pauses before payload byte X.
    let cut: number | undefined
    let drop: { origin: Origin; at: number } | undefined
    for (const d of f.drops ?? []) {
        if (d.origin !== origin) continue
        const p = payloadPos(origin, rep, payload.length, d.at)
        if (p === undefined) continue
        const x = origin === "storage" ? p + 1 : p
        if (cut === undefined || x < cut) [cut, drop] = [x, d]
    }
    const t = f.truncate
    if (t && t.origin === origin && t.at >= 0 && t.at < payload.length && (cut === undefined || t.at < cut)) {
        cut = t.at
        drop = undefined
        delete f.truncate
    }
    if (drop) f.drops!.splice(f.drops!.indexOf(drop), 1)
    const pauses: { x: number; ms: number }[] = []
    const ops: Op[] = []
    if (f.stalls)
        for (const s of [...f.stalls]) {
            if (s.origin !== origin) continue
            const x = s.at === -1 ? -1 : payloadPos(origin, rep, payload.length, s.at)
            if (x === undefined || (cut !== undefined && x >= cut)) continue
            f.stalls.splice(f.stalls.indexOf(s), 1)
            if (x === -1) ops.push({ kind: "pause", ms: s.ms })
            else pauses.push({ x, ms: s.ms })
        }

    ops.push({ kind: "write", data: buildHead(rep.status, headers), body: false, headEnd: true })
    if (cut === 0) return [...ops, { kind: "drop" }]
    for (const fr of frameBody(ctx, payload, chunked)) {
        if (fr.at < 0) {
            ops.push({ kind: "write", data: fr.data, body: false })
            continue
        }
        const end = fr.at + fr.data.length
        // split points inside this frame, in payload positions
        const points = pauses.filter(p => p.x >= fr.at && p.x < end).map(p => ({ x: p.x, op: { kind: "pause", ms: p.ms } as Op }))
        if (cut !== undefined && cut > fr.at && cut <= end) points.push({ x: cut, op: { kind: "drop" } })
        points.sort((a, b) => a.x - b.x || (a.op.kind === "drop" ? 1 : -1))
        let from = fr.at
        for (const p of points) {
            if (p.x > from) ops.push({ kind: "write", data: fr.data.subarray(from - fr.at, p.x - fr.at), body: true })
            from = p.x
            ops.push(p.op)
            if (p.op.kind === "drop") return ops
        }
        if (end > from) ops.push({ kind: "write", data: fr.data.subarray(from - fr.at), body: true })
    }
    return ops
}

// ---------------------------------------------------------------------------
// Writing

/** Where a reply goes, and who wants to know when its head is out. */
export interface SendTarget {
    socket: net.Socket
    origin: Origin
    /** called once, when the last byte of the head has been written */
    onHeadSent(status: number): void
}

/** Resolves after `ms`, or as soon as the socket closes. */
function sleep(ms: number, socket: net.Socket): Promise<void> {
    return new Promise(resolve => {
        if (socket.destroyed) return resolve()
        const done = () => {
            clearTimeout(timer)
            socket.off("close", done)
            resolve()
        }
        const timer = setTimeout(done, ms)
        socket.once("close", done)
    })
}

function drained(socket: net.Socket): Promise<void> {
    return new Promise(resolve => {
        const done = () => {
            socket.off("drain", done)
            socket.off("close", done)
            resolve()
        }
        socket.once("drain", done)
        socket.once("close", done)
    })
}

/**
 * Writes consecutive write ops according to faults.trickle / faults.segmenting.
 * Resolves false when the socket died.
 */
async function writeRun(ctx: Context, t: SendTarget, status: number, run: WriteOp[]): Promise<boolean> {
    const { socket, origin } = t
    const f = ctx.faults
    const buf = Buffer.concat(run.map(o => o.data))
    // payload ranges and the head end, in run coordinates
    const bodyRanges: [number, number][] = []
    let headEnd = -1
    const bounds: number[] = []
    let pos = 0
    for (const o of run) {
        if (o.body) bodyRanges.push([pos, pos + o.data.length])
        pos += o.data.length
        if (o.headEnd) headEnd = pos
        bounds.push(pos)
    }
    const trickle = f.trickle?.origin === origin && f.trickle.bytes > 0 ? f.trickle : undefined
    const mode = trickle ? "trickle" : f.segmenting ?? "default"
    const lengths: number[] = []
    if (mode === "default") {
        let prev = 0
        for (const b of bounds) if (b > prev) lengths.push(b - prev), (prev = b)
    } else if (mode === "one") lengths.push(buf.length)
    else
        for (let left = buf.length; left > 0; ) {
            const n = Math.min(left, mode === "bytes" ? 1 : mode === "random" ? randInt(ctx, 1, 1500) : trickle!.bytes)
            lengths.push(n)
            left -= n
        }

    const account = (s: number, e: number) => {
        let n = 0
        for (const [a, b] of bodyRanges) n += Math.max(0, Math.min(b, e) - Math.max(a, s))
        ctx.stats.bodyBytes[origin] += n
        if (headEnd > 0 && s < headEnd && e >= headEnd) t.onHeadSent(status)
    }
    let off = 0
    let last: Promise<boolean> = Promise.resolve(true)
    for (let i = 0; i < lengths.length; i++) {
        if (socket.destroyed) return false
        const s = off
        const e = (off += lengths[i])
        const p = new Promise<boolean>(resolve =>
            socket.write(buf.subarray(s, e), err => {
                if (!err) account(s, e)
                resolve(!err)
            }),
        )
        if (mode === "default" || mode === "one") {
            last = p
            if (socket.writableNeedDrain) await drained(socket)
            continue
        }
        if (!(await p)) return false
        if (i === lengths.length - 1) break
        if (trickle) await sleep(trickle.everyMs, socket)
        else await new Promise(r => setImmediate(r))
    }
    return (await last) && !socket.destroyed
}

/**
 * Frames `rep` (HEAD: head only) with the plan's faults applied and writes it.
 * Resolves true when the whole response was written, false when the connection was
 * dropped by a fault or died; in that case the socket is destroyed.
 */
export async function sendReply(ctx: Context, t: SendTarget, rep: Reply, isHead: boolean, keepAlive: boolean): Promise<boolean> {
    const ops = plan(ctx, t.origin, rep, isHead, keepAlive)
    let run: WriteOp[] = []
    const flush = async () => {
        const r = run
        run = []
        return r.length ? writeRun(ctx, t, rep.status, r) : !t.socket.destroyed
    }
    for (const op of ops) {
        if (op.kind === "write") {
            run.push(op)
            continue
        }
        if (!(await flush())) return false
        if (op.kind === "pause") await sleep(op.ms, t.socket)
        else {
            t.socket.destroy()
            return false
        }
    }
    return flush()
}
