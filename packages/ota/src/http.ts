// A small HTTP/1.1 client on @devicescript/net sockets. fetch() cannot be used: it
// closes every connection, follows no redirect and does not decode chunked bodies.
// One connection at a time (the VM has one socket), kept alive between requests to
// the same origin so that Range requests do not pay a TLS handshake each. Memory is
// bounded whatever the server sends (see ResponseParser), every stage of a request
// has a deadline, and redirects never carry the Authorization header to another
// origin.
import * as ds from "@devicescript/core"
import { Socket, URL, connect } from "@devicescript/net"
import { ResponseParser, requestHead } from "./httpparse"

// Data is fed to the parser in pieces this large at most, and the fiber really yields
// every YIELD_BYTES or YIELD_PIECES: awaiting data that is already queued does not
// suspend it, and a fiber that runs 128K opcodes without suspending panics (60001).
// The body is read off the socket faster than one lwIP window (5,760 bytes) arrives
// per main-loop turn, so that a server sending more than asked cannot pile data up in
// the VM; callers with costly work per byte (the JSON parser) yield on their own.
const PIECE_BYTES = 512
const YIELD_BYTES = 8192
const YIELD_PIECES = 64
const HEAD_PIECE_BYTES = 128
const HEAD_LINES_PER_YIELD = 16
const USER_AGENT = "devicescript-github-ota/0.1"
const REDIRECTS = [301, 302, 303, 307, 308]

/** Deadlines of one request, in ms. */
export const DEFAULT_TIMEOUTS = {
    /** TCP (and TLS) connection established */
    connect: 15000,
    /** from the request sent to the whole response head received */
    head: 20000,
    /** longest silence while the body arrives */
    idle: 20000,
    /** a whole answer, body included, for the callers that set totalTimeout from it */
    total: 120000,
}

export interface RequestOptions {
    method?: string
    headers?: [string, string][]
    /**
     * Authorization header value, sent only to `authOrigin` (originOf form, e.g.
     * "https://api.github.com:443"): never to another origin a redirect leads to.
     */
    authorization?: string
    authOrigin?: string
    /** the whole exchange, body included, in ms (default: none; see DEFAULT_TIMEOUTS) */
    totalTimeout?: number
    /** names (lower case) of response headers to keep besides the framing ones */
    keep?: string[]
    /** redirects (301/302/303/307/308) to follow; 0 (default) returns them */
    maxRedirects?: number
    connectTimeout?: number
    headTimeout?: number
    idleTimeout?: number
}

interface Connection {
    origin: string
    host: string
    socket: Socket
}

let idle: Connection

/**
 * Closes the kept-alive connection, if any: between checks nothing should be left open
 * for a server to fill (the VM would hold whatever arrives).
 */
export async function closeIdle() {
    const conn = idle
    idle = null
    if (conn) await conn.socket.close()
}

/** The origin of a URL ("https://host:443"): tokens may only be sent to one origin. */
export function originOf(url: URL) {
    return `${url.protocol}//${url.hostname.toLowerCase()}:${defaultPort(url)}`
}

function defaultPort(url: URL) {
    if (url.port) return parseInt(url.port)
    if (url.protocol === "https:") return 443
    if (url.protocol === "http:") return 80
    throw new Error(`http: unsupported protocol '${url.protocol}'`)
}

/**
 * Resolves a Location header against the URL it answered (RFC 3986 5.2, the
 * forms servers send: absolute, scheme-relative "//host/p", absolute path "/p",
 * relative path "p", query "?q").
 */
export function resolveUrl(base: string, location: string): string {
    const sep = location.indexOf("://")
    if (sep > 0 && sep < location.indexOf("/") + 1)
        return location.slice(0, sep).toLowerCase() + location.slice(sep) // HTTPS:// is https://
    const b = new URL(base)
    if (location.startsWith("//")) return b.protocol + location
    const origin = `${b.protocol}//${b.host()}`
    if (location.startsWith("/")) return origin + location
    if (location.startsWith("?")) return origin + b.pathname + location
    const dir = b.pathname.slice(0, b.pathname.lastIndexOf("/") + 1)
    return origin + dir + location
}

/**
 * A request that cannot be made as asked, so that retrying cannot help: a redirect
 * that must not be followed (too many, no Location, a refused scheme) or a URL or
 * header that cannot be sent.
 */
export class RequestError extends Error {
    constructor(message: string) {
        super(message)
        this.name = "RequestError"
    }
}

/**
 * Where a redirect from `url` with `location` leads; throws RequestError for a
 * scheme other than http(s) and for a downgrade from https to http.
 */
export function redirectTarget(url: string, location: string): string {
    const next = resolveUrl(url, location)
    const from = new URL(url)
    const to = new URL(next)
    if (to.protocol !== "https:" && to.protocol !== "http:")
        throw new RequestError(`http: redirect from ${from.host()} to unsupported '${to.protocol}'`)
    if (from.protocol === "https:" && to.protocol === "http:")
        throw new RequestError(`http: refusing redirect from https to http (${from.host()} to ${to.host()})`)
    return next
}

export class HttpResponse {
    status = 0
    /** the URL that answered (after redirects) */
    url = ""
    private queue: Buffer[] = [] // decoded body pieces not read yet
    private pending: Buffer // received bytes not parsed yet
    private sinceYield = 0
    private piecesSinceYield = 0
    private done = false

    constructor(
        private conn: Connection,
        private parser: ResponseParser,
        private idleTimeout: number,
        private deadline: number, // ds.millis() by which the body must be in; 0: none
        private totalTimeout: number
    ) {}

    async _start(rest: Buffer) {
        this.status = this.parser.status
        this.pending = rest
        if (this.parser.complete) await this.finish(!rest && !this.parser.extra)
    }

    /** Value of a kept response header (see RequestOptions.keep), or undefined. */
    header(name: string) {
        return this.parser.header(name)
    }

    /** Next piece of the body (at most PIECE_BYTES), or null at its end. */
    async read(): Promise<Buffer> {
        for (;;) {
            if (this.queue.length) return this.queue.shift()
            if (this.done) return null
            if (this.parser.complete) {
                await this.finish(!this.pending && !this.parser.extra)
                continue
            }
            await this.pump()
        }
    }

    /** Reads and drops the rest of the body, keeping the connection for reuse. */
    async drain() {
        while ((await this.read()) !== null) {}
    }

    /**
     * Done with this response: the connection goes back for reuse when the body is
     * all in (nothing more to read), else it is closed, never waited on.
     */
    async release() {
        if (this.parser.complete && !this.queue.length) await this.drain()
        else await this.close()
    }

    /** Gives up on the rest of the body: the connection cannot be reused. */
    async close() {
        this.done = true
        this.queue = []
        this.pending = null
        await this.conn.socket.close()
        if (idle === this.conn) idle = null
    }

    _push(data: Buffer) {
        this.queue.push(data)
    }

    // Feeds one piece of received data to the parser.
    async pump() {
        if (this.deadline && ds.millis() > this.deadline)
            throw new Error(`http: ${this.conn.host} did not complete its answer within ${this.totalTimeout} ms`)
        if (this.sinceYield >= YIELD_BYTES || this.piecesSinceYield >= YIELD_PIECES) {
            this.sinceYield = 0
            this.piecesSinceYield = 0
            await ds.sleep(0)
        }
        if (!this.pending || !this.pending.length) {
            this.pending = await recvOrThrow(this.conn, this.idleTimeout, "body")
            if (this.pending === null) {
                this.parser.finish() // throws when the body was cut short
                await this.finish(false)
                return
            }
        }
        const n = Math.min(this.pending.length, PIECE_BYTES)
        const piece = n === this.pending.length ? this.pending : this.pending.slice(0, n)
        this.sinceYield += n
        this.piecesSinceYield++
        this.pending = n < this.pending.length ? this.pending.slice(n) : null
        this.parser.write(piece)
    }

    private async finish(reusable: boolean) {
        this.done = true
        const keep =
            reusable &&
            (this.parser.header("connection") || "").toLowerCase() !== "close"
        if (keep) idle = this.conn
        else await this.conn.socket.close()
    }
}

async function recvOrThrow(conn: Connection, timeout: number, stage: string) {
    const buf = await conn.socket.recv(timeout)
    if (buf === undefined)
        throw new Error(`http: ${conn.host} stalled: no data for ${timeout} ms (${stage})`)
    return buf
}

async function open(url: URL, timeout: number): Promise<Connection> {
    const origin = originOf(url)
    if (idle && idle.origin === origin) {
        const conn = idle
        idle = null
        return conn
    }
    if (idle) await idle.socket.close()
    idle = null
    let socket: Socket
    const until = ds.millis() + timeout
    try {
        socket = await connect({
            host: url.hostname,
            port: defaultPort(url),
            proto: url.protocol === "https:" ? "tls" : "tcp",
            timeout,
        })
    } catch (e) {
        const late = ds.millis() >= until
        throw new Error(
            late
                ? `http: connect to ${url.host()} timed out after ${timeout} ms`
                : `http: connect to ${url.host()} failed: ${(e as Error).message}`
        )
    }
    return { origin, host: url.host(), socket }
}

/**
 * Sends a GET (or `method`) request and returns once the response head has
 * arrived; the caller reads the body with read() (the connection then goes back
 * for reuse) or drops it with close(). With maxRedirects > 0, follows up to that
 * many redirects (more is an error); https to http is refused. Throws
 * Error("http: ...") naming the host and the stage on a timeout, a closed
 * connection or a malformed response.
 */
export async function request(
    urlString: string,
    options: RequestOptions = {}
): Promise<HttpResponse> {
    let url = urlString
    const max = options.maxRedirects || 0
    for (let hop = 0; ; hop++) {
        const res = await requestOnce(url, options)
        if (REDIRECTS.indexOf(res.status) < 0 || !max) return res
        const location = res.header("location")
        await res.close()
        const from = new URL(url)
        if (!location)
            throw new RequestError(`http: ${from.host()} answered ${res.status} without Location`)
        if (hop >= max)
            throw new RequestError(`http: more than ${max} redirects, last from ${from.host()}`)
        url = redirectTarget(url, location)
    }
}

// The last URL parsed: the chunks of a download all go to one signed URL of ~2 KB,
// which is parsed (and its pieces allocated) once, not once per request.
let lastUrl: string
let lastParsed: URL

function parse(urlString: string) {
    if (urlString !== lastUrl) {
        lastParsed = new URL(urlString)
        lastUrl = urlString
    }
    return lastParsed
}

async function requestOnce(urlString: string, options: RequestOptions): Promise<HttpResponse> {
    const url = parse(urlString)
    const method = options.method || "GET"
    const headers: [string, string][] = [
        ["Host", url.host()],
        ["User-Agent", USER_AGENT],
        ["Connection", "keep-alive"],
    ]
    if (options.headers) for (const h of options.headers) headers.push(h)
    if (options.authorization && options.authOrigin === originOf(url))
        headers.push(["Authorization", options.authorization])
    let head: string[]
    try {
        head = requestHead(method, url.pathname, url.search, headers)
    } catch (e) {
        throw new RequestError((e as Error).message)
    }
    const keep = ["location"]
    if (options.keep) for (const k of options.keep) keep.push(k)

    // A kept-alive connection may have been closed by the server meanwhile:
    // then the request is sent once more on a new connection (all ours are GETs).
    for (let attempt = 0; ; attempt++) {
        const reused = !!idle && idle.origin === originOf(url)
        const conn = await open(url, options.connectTimeout || DEFAULT_TIMEOUTS.connect)
        try {
            const res = await exchange(conn, head, method, keep, options)
            res.url = urlString
            return res
        } catch (e) {
            await conn.socket.close()
            if (!reused || attempt > 0) throw e
        }
    }
}

async function exchange(
    conn: Connection,
    head: string[],
    method: string,
    keep: string[],
    options: RequestOptions
): Promise<HttpResponse> {
    for (const piece of head) if (piece.length) await conn.socket.send(piece)
    let res: HttpResponse
    const parser = new ResponseParser((data: Buffer) => res._push(data), {
        noBody: method === "HEAD",
        keep,
    })
    const idleTimeout = options.idleTimeout || DEFAULT_TIMEOUTS.idle
    const total = options.totalTimeout || 0
    res = new HttpResponse(conn, parser, idleTimeout, total ? ds.millis() + total : 0, total)
    const headTimeout = options.headTimeout || DEFAULT_TIMEOUTS.head
    const until = ds.millis() + headTimeout
    let pieces = 0
    let lines = 0
    for (;;) {
        const left = until - ds.millis()
        if (left <= 0)
            throw new Error(`http: ${conn.host} sent no complete response head within ${headTimeout} ms`)
        const buf = await conn.socket.recv(Math.min(left, idleTimeout))
        if (buf === undefined) {
            if (ds.millis() < until)
                throw new Error(`http: ${conn.host} stalled: no data for ${idleTimeout} ms (head)`)
            throw new Error(`http: ${conn.host} sent no complete response head within ${headTimeout} ms`)
        }
        if (buf === null) {
            parser.finish()
            throw new Error(`http: ${conn.host} closed the connection before the response`)
        }
        // Only the head is parsed here, in small pieces, yielding every few lines (a
        // line costs ~1K opcodes and a head may hold thousands); read() feeds the body.
        let i = 0
        while (i < buf.length && !parser.headComplete) {
            const n = Math.min(buf.length - i, HEAD_PIECE_BYTES)
            parser.write(i === 0 && n === buf.length ? buf : buf.slice(i, i + n))
            i += n
            if (parser.headLines - lines >= HEAD_LINES_PER_YIELD || ++pieces % 8 === 0) {
                lines = parser.headLines
                await ds.sleep(0)
            }
        }
        if (parser.headComplete) {
            await res._start(i < buf.length ? buf.slice(i) : null)
            return res
        }
    }
}
