// A small HTTP/1.1 client on @devicescript/net sockets. fetch() cannot be used: it
// closes every connection, follows no redirect and does not decode chunked bodies.
// One connection at a time (the VM has one socket), kept alive between requests to
// the same origin so that Range requests do not pay a TLS handshake each.
import * as ds from "@devicescript/core"
import { Socket, URL, connect } from "@devicescript/net"
import { ResponseParser, buildRequest } from "./httpparse"

// Data is fed to the parser in pieces this large at most, and the fiber really yields
// every YIELD_BYTES: awaiting data that is already queued does not suspend it, and a
// fiber that runs 128K opcodes without suspending panics (60001). The JSON parser
// takes ~17 opcodes a byte.
const PIECE_BYTES = 512
const YIELD_BYTES = 2048
const DEFAULT_TIMEOUT_MS = 20000
const USER_AGENT = "devicescript-github-ota/0.1"

export interface RequestOptions {
    method?: string
    headers?: [string, string][]
    timeout?: number
}

interface Connection {
    origin: string
    socket: Socket
}

let idle: Connection

/** The origin of a URL ("https://host:443"): tokens may only be sent to one origin. */
export function originOf(url: URL) {
    return `${url.protocol}//${url.hostname}:${defaultPort(url)}`
}

function defaultPort(url: URL) {
    if (url.port) return parseInt(url.port)
    if (url.protocol === "https:") return 443
    if (url.protocol === "http:") return 80
    throw new Error(`http: unsupported protocol '${url.protocol}'`)
}

export class HttpResponse {
    status = 0
    private queue: Buffer[] = [] // decoded body pieces not read yet
    private pending: Buffer // received bytes not parsed yet
    private sinceYield = 0
    private done = false

    constructor(
        private conn: Connection,
        private parser: ResponseParser,
        private timeout: number
    ) {}

    async _start(rest: Buffer) {
        this.status = this.parser.status
        this.pending = rest
        if (this.parser.complete) await this.finish(!rest && !this.parser.extra)
    }

    header(name: string) {
        return this.parser.header(name)
    }

    /** Next piece of the body (at most PIECE_BYTES), or null at its end. */
    async read(): Promise<Buffer> {
        for (;;) {
            if (this.queue.length) return this.queue.shift()
            if (this.done) return null
            await this.pump()
        }
    }

    /** Reads and drops the rest of the body, keeping the connection for reuse. */
    async drain() {
        while ((await this.read()) !== null) {}
    }

    /** Gives up on the rest of the body: the connection cannot be reused. */
    async close() {
        this.done = true
        this.queue = []
        await this.conn.socket.close()
        if (idle === this.conn) idle = null
    }

    _push(data: Buffer) {
        this.queue.push(data)
    }

    // Feeds one piece of received data to the parser.
    private async pump() {
        if (this.sinceYield >= YIELD_BYTES) {
            this.sinceYield = 0
            await ds.sleep(0)
        }
        if (!this.pending || !this.pending.length) {
            this.pending = await recvOrThrow(this.conn.socket, this.timeout)
            if (this.pending === null) {
                this.parser.finish() // throws when the body was cut short
                await this.finish(false)
                return
            }
        }
        const n = Math.min(this.pending.length, PIECE_BYTES)
        const piece = this.pending.slice(0, n)
        this.sinceYield += n
        this.pending = n < this.pending.length ? this.pending.slice(n) : null
        this.parser.write(piece)
        if (this.parser.complete) await this.finish(!this.pending && !this.parser.extra)
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

async function recvOrThrow(socket: Socket, timeout: number) {
    const buf = await socket.recv(timeout)
    if (buf === undefined) throw new Error("http: timeout")
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
    const socket = await connect({
        host: url.hostname,
        port: defaultPort(url),
        proto: url.protocol === "https:" ? "tls" : "tcp",
        timeout,
    })
    return { origin, socket }
}

/**
 * Sends a request and returns once the response head has arrived. The caller reads
 * the body with read(), then the connection goes back for reuse.
 */
export async function request(
    urlString: string,
    options: RequestOptions = {}
): Promise<HttpResponse> {
    const url = new URL(urlString)
    const method = options.method || "GET"
    const timeout = options.timeout || DEFAULT_TIMEOUT_MS
    const headers: [string, string][] = [
        ["Host", url.host()],
        ["User-Agent", USER_AGENT],
        ["Connection", "keep-alive"],
    ]
    if (options.headers) for (const h of options.headers) headers.push(h)
    const head = buildRequest(method, url.path(), headers)

    // A kept-alive connection may have been closed by the server meanwhile:
    // then the request is sent once more on a new connection (all ours are GETs).
    for (let attempt = 0; ; attempt++) {
        const reused = !!idle && idle.origin === originOf(url)
        const conn = await open(url, timeout)
        try {
            return await exchange(conn, head, method, timeout)
        } catch (e) {
            await conn.socket.close()
            if (!reused || attempt > 0) throw e
        }
    }
}

async function exchange(
    conn: Connection,
    head: string,
    method: string,
    timeout: number
): Promise<HttpResponse> {
    await conn.socket.send(head)
    let res: HttpResponse
    const parser = new ResponseParser((data: Buffer) => res._push(data), {
        noBody: method === "HEAD",
    })
    res = new HttpResponse(conn, parser, timeout)
    for (;;) {
        const buf = await recvOrThrow(conn.socket, timeout)
        if (buf === null) {
            parser.finish()
            throw new Error("http: connection closed before response")
        }
        // Only the head is parsed here; read() feeds the rest of the body.
        let i = 0
        while (i < buf.length && !parser.headComplete) {
            const n = Math.min(buf.length - i, PIECE_BYTES)
            parser.write(buf.slice(i, i + n))
            i += n
        }
        if (parser.headComplete) {
            await res._start(i < buf.length ? buf.slice(i) : null)
            return res
        }
    }
}
