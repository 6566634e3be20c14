// HTTP/1.1 responses parsed from raw socket bytes (no I/O here), plus the
// small helpers the request side needs. Bodies are handed on as they
// arrive and never accumulated; the head is bounded by maxHeaderBytes.

export interface ResponseParserOptions {
    /** limit of status line + headers (and of trailers); default 8192 */
    maxHeaderBytes?: number
    /** the request was HEAD: no body whatever the headers say */
    noBody?: boolean
}

// what the next bytes are
const HEAD = 0 // status line and header lines
const LENGTH = 1 // body delimited by Content-Length
const SIZE = 2 // chunk-size line
const DATA = 3 // chunk data
const DATA_END = 4 // the CRLF after chunk data
const TRAILERS = 5 // trailer lines after the last chunk
const CLOSE = 6 // body delimited by the end of the connection
const DONE = 7

const MAX_SIZE_LINE = 1024 // chunk-size line with extensions
// a line costs ~700 opcodes; 64 of them stay far below the VM's limit of
// 128K opcodes between awaits (GitHub sends ~25 headers)
const MAX_LINES = 64

// bytes [from, to) of b as a string (Buffer.slice is a slow TS function)
function text(b: Buffer, from: number, to: number) {
    if (to <= from) return ""
    const r = Buffer.alloc(to - from)
    r.blitAt(0, b, from, to - from)
    return r.toString()
}

function err(what: string): Error {
    return new Error(`http: ${what}`)
}

// non-negative decimal integer, -1 if s is anything else
function decimal(s: string) {
    if (!s.length || s.length > 15) return -1
    for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i)
        if (c < 48 || c > 57) return -1
    }
    return parseInt(s)
}

// a token (RFC 9110 5.6.2): method or header name
function isToken(s: string) {
    if (!s || !s.length) return false
    for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i)
        const alnum =
            (c >= 48 && c <= 57) ||
            (c >= 65 && c <= 90) ||
            (c >= 97 && c <= 122)
        if (!alnum && "!#$%&'*+-.^_`|~".indexOf(s[i]) < 0) return false
    }
    return true
}

export class ResponseParser {
    // read-only for callers
    headComplete = false
    /** the whole response is in: no more body will come */
    complete = false
    status = 0
    statusText = ""
    /** -1 if absent, or ignored because the body is chunked */
    contentLength = -1
    chunked = false
    /** decoded body bytes delivered so far */
    bodyBytes = 0
    /** bytes received after `complete` (a pipelined response), or null */
    extra: Buffer = null

    private readonly maxHead: number
    private readonly noBody: boolean
    private mode = HEAD
    private left = 0 // body bytes left (LENGTH) or in this chunk (DATA)
    private partial: Buffer = null // start of a line split by a chunk boundary
    private headBytes = 0
    private headLines = 0
    private names: string[] = [] // lower case
    private values: string[] = []

    constructor(
        private readonly onBody: (data: Buffer) => void,
        options?: ResponseParserOptions
    ) {
        const o = options || {}
        this.maxHead = o.maxHeaderBytes || 8192
        this.noBody = !!o.noBody
    }

    /**
     * Feeds raw bytes from the socket; throws Error("http: ...") on
     * malformed input. onBody runs inside this call, also for body bytes
     * that arrive together with the end of the head.
     */
    write(data: Buffer) {
        const n = data.length
        let i = 0
        while (i < n && !this.complete) {
            const m = this.mode
            if (m === LENGTH || m === DATA || m === CLOSE)
                i = this.body(data, i, n)
            else i = this.line(data, i, n)
        }
        if (i < n) {
            const rest = i ? data.slice(i, n) : data
            this.extra = this.extra ? Buffer.concat(this.extra, rest) : rest
        }
    }

    /** Call when the connection closed; throws if the response is cut short. */
    finish() {
        if (!this.headComplete)
            throw err("connection closed before end of head")
        if (this.mode === CLOSE) this.done()
        if (!this.complete) throw err("connection closed before end of body")
    }

    /**
     * Header value by case-insensitive name; repeated headers joined by
     * ", "; undefined if absent. Trailers are not kept.
     */
    header(name: string): string {
        const key = name.toLowerCase()
        let r: string = undefined
        for (let i = 0; i < this.names.length; i++) {
            if (this.names[i] !== key) continue
            r = r === undefined ? this.values[i] : r + ", " + this.values[i]
        }
        return r
    }

    private done() {
        this.mode = DONE
        this.complete = true
    }

    // body bytes from i; returns the index after those consumed
    private body(data: Buffer, i: number, n: number) {
        let take = n - i
        if (this.mode !== CLOSE && take > this.left) take = this.left
        const piece = take === n ? data : data.slice(i, i + take)
        this.left -= take
        this.bodyBytes += take
        this.onBody(piece)
        if (this.left === 0) {
            if (this.mode === LENGTH) this.done()
            else if (this.mode === DATA) this.mode = DATA_END
        }
        return i + take
    }

    // collects one line (LF or CRLF) and handles it; returns the next index
    private line(data: Buffer, i: number, n: number) {
        const lf = data.indexOf(10, i, n)
        const end = lf < 0 ? n : lf + 1
        // bounded memory: head and trailers by maxHeaderBytes (and a line
        // count, for the opcode limit), chunk-size lines by MAX_SIZE_LINE
        const m = this.mode
        if (m === HEAD || m === TRAILERS) {
            this.headBytes += end - i
            if (this.headBytes > this.maxHead)
                throw err("header section too large")
            if (lf >= 0 && ++this.headLines > MAX_LINES)
                throw err("too many header lines")
        } else {
            const len = (this.partial ? this.partial.length : 0) + end - i
            if (len > MAX_SIZE_LINE) throw err("chunk size line too long")
        }
        if (lf < 0) {
            const rest = data.slice(i, n)
            const p = this.partial
            this.partial = p ? Buffer.concat(p, rest) : rest
            return n
        }
        let bytes = data
        let from = i
        let to = lf
        if (this.partial) {
            bytes = Buffer.concat(this.partial, data.slice(i, lf))
            this.partial = null
            from = 0
            to = bytes.length
        }
        if (to > from && bytes[to - 1] === 13) to-- // CRLF or bare LF
        const s = text(bytes, from, to)
        if (m === HEAD) this.headLine(s)
        else if (m === SIZE) this.sizeLine(s)
        else if (m === DATA_END) {
            if (s.length) throw err("missing CRLF after chunk data")
            this.mode = SIZE
        } else if (!s.length) this.done() // end of trailers
        else if (s.indexOf(":") <= 0) throw err("bad trailer line")
        return end
    }

    private headLine(s: string) {
        if (!this.status) return this.statusLine(s)
        if (!s.length) return this.endHead()
        const c = s.charCodeAt(0)
        if (c === 32 || c === 9) {
            // obsolete line folding: continues the previous value
            const k = this.values.length - 1
            if (k < 0) throw err("bad header line")
            this.values[k] = this.values[k] + " " + s.trim()
            return
        }
        // (not a full token check, which costs ~30 opcodes a character:
        // whitespace before the colon is what must be refused)
        const colon = s.indexOf(":")
        const name = colon > 0 ? s.slice(0, colon) : ""
        if (!name.length || name.indexOf(" ") >= 0 || name.indexOf("\t") >= 0)
            throw err(`bad header line '${s}'`)
        this.names.push(name.toLowerCase())
        this.values.push(s.slice(colon + 1).trim())
    }

    // "HTTP/1.1 200 OK"; the reason may be empty or absent
    private statusLine(s: string) {
        const code = decimal(s.slice(9, 12))
        const minor = s.charCodeAt(7)
        const ok =
            s.startsWith("HTTP/1.") &&
            s.length >= 12 &&
            minor >= 48 &&
            minor <= 57 &&
            s[8] === " " &&
            code >= 100 &&
            code <= 999 &&
            (s.length === 12 || s[12] === " ")
        if (!ok) throw err(`bad status line '${s}'`)
        this.status = code
        this.statusText = s.slice(13)
    }

    private endHead() {
        this.headComplete = true
        const te = this.header("transfer-encoding")
        const cl = this.header("content-length")
        if (te !== undefined) {
            // RFC 9112 6.3: chunked wins over Content-Length; another
            // final coding means the body runs until the connection closes
            const codings = te.toLowerCase().split(",")
            this.chunked = codings[codings.length - 1].trim() === "chunked"
            this.mode = this.chunked ? SIZE : CLOSE
        } else if (cl !== undefined) {
            // repeated headers ("5, 5") must agree
            let v = -1
            for (const part of cl.split(",")) {
                const x = decimal(part.trim())
                if (x < 0 || (v >= 0 && x !== v))
                    throw err(`bad content-length '${cl}'`)
                v = x
            }
            this.contentLength = v
            this.left = v
            this.mode = LENGTH
        } else this.mode = CLOSE
        // the framing headers of these describe a body that is not sent
        const st = this.status
        const none = this.noBody || st < 200 || st === 204 || st === 304
        if (none || (this.mode === LENGTH && !this.left)) this.done()
    }

    // "1a2b;name=value": hex size, optional extensions
    private sizeLine(s: string) {
        const semi = s.indexOf(";")
        const hex = (semi < 0 ? s : s.slice(0, semi)).trim()
        let v = 0
        for (let i = 0; i < hex.length; i++) {
            const c = hex.charCodeAt(i) | 32
            let d = c - 48
            if (d > 9) d = c >= 97 && c <= 102 ? c - 87 : -1
            if (d < 0) throw err(`bad chunk size '${s}'`)
            v = v * 16 + d
        }
        if (!hex.length || hex.length > 8) throw err(`bad chunk size '${s}'`)
        if (v) {
            this.left = v
            this.mode = DATA
        } else this.mode = TRAILERS
    }
}

/**
 * Request line and headers, ending with the empty line. Throws on a
 * method/name that is not a token or on control characters in the target
 * or a value (a CR LF there would inject headers).
 */
export function buildRequest(
    method: string,
    path: string,
    headers: [string, string][]
): string {
    if (!isToken(method)) throw err(`bad method '${method}'`)
    if (!path || !path.length || hasControl(path, false))
        throw err(`bad request target '${path}'`)
    let r = `${method} ${path} HTTP/1.1\r\n`
    for (const h of headers) {
        if (!isToken(h[0])) throw err(`bad header name '${h[0]}'`)
        if (hasControl(h[1], true)) throw err(`bad value for header ${h[0]}`)
        r += `${h[0]}: ${h[1]}\r\n`
    }
    return r + "\r\n"
}

// control characters (and DEL); a value may hold spaces and tabs
function hasControl(s: string, isValue: boolean) {
    for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i)
        if (c === 127) return true
        if (c <= 32 && !(isValue && (c === 32 || c === 9))) return true
    }
    return false
}

/**
 * "bytes 0-99/1234" -> { start: 0, end: 99, total: 1234 }; total is -1 for
 * "*". Throws Error("http: bad content-range ...") if malformed.
 */
export function parseContentRange(v: string): {
    start: number
    end: number
    total: number
} {
    const s = v.trim()
    const dash = s.indexOf("-")
    const slash = s.indexOf("/")
    if (s.slice(0, 6).toLowerCase() !== "bytes " || dash < 0 || slash < dash)
        throw err(`bad content-range '${v}'`)
    const start = decimal(s.slice(6, dash))
    const end = decimal(s.slice(dash + 1, slash))
    const t = s.slice(slash + 1)
    const total = t === "*" ? -1 : decimal(t)
    const bad =
        start < 0 ||
        end < start ||
        (t !== "*" && total < 0) ||
        (total >= 0 && end >= total)
    if (bad) throw err(`bad content-range '${v}'`)
    return { start, end, total }
}
