// HTTP/1.1 responses parsed from raw socket bytes (no I/O here), plus the
// small helpers the request side needs. Bodies are handed on as they
// arrive and never accumulated; the head is bounded by maxHeaderBytes.

export interface ResponseParserOptions {
    /**
     * Header names (lower case) whose values are kept for header(). Every other
     * header is streamed past and never stored. The framing headers
     * (content-length, transfer-encoding, connection) are always kept.
     */
    keep?: string[]
    /** limit of one head or trailer line, in bytes; default 8192 */
    maxLineBytes?: number
    /** limit of the whole head (and, separately, of the trailers); default 32768 */
    maxHeadBytes?: number
    /** limit of one kept header value; default 4096 (a signed Location) */
    maxValueBytes?: number
    /** the request was HEAD: no body whatever the headers say */
    noBody?: boolean
}

// what the next bytes are
const HEAD = 0 // status line and header lines
const LENGTH = 1 // body delimited by Content-Length
const SIZE = 2 // chunk-size line
const DATA = 3 // chunk data
const DATA_END = 4 // the CRLF after chunk data
const TRAILERS = 5 // trailer lines after the last chunk (streamed past)
const CLOSE = 6 // body delimited by the end of the connection
const DONE = 7

// what the rest of the current head line is
const L_START = 0 // nothing of the line seen yet
const L_STATUS = 1 // the status line
const L_NAME = 2 // a header name, up to the colon
const L_VALUE = 3 // the value of a kept header
const L_SKIP = 4 // the rest of a line that is not kept
const L_FOLD = 5 // an obsolete folded continuation of a kept value

const FRAMING = ["content-length", "transfer-encoding", "connection"]
const DEFAULT_MAX_VALUE = 4096
let sharedLine: Buffer
const MAX_NAME = 64 // bytes of a header name that are looked at
const MAX_STATUS = 128 // bytes of the status line that are kept (the reason may be longer)
const MAX_SIZE_LINE = 1024 // chunk-size line with extensions
const MAX_SIZE_KEPT = 64 // bytes of it that are looked at
const MAX_KEPT = 32 // kept header lines (repeats included)
const MAX_LENGTH = 0x7fffffff // larger numbers lose precision in the VM's int32 paths

function err(what: string): Error {
    return new Error(`http: ${what}`)
}

// server text quoted in an error: printable ASCII only, at most 40 characters
function shown(s: string) {
    let r = ""
    for (let i = 0; i < s.length && i < 40; i++) {
        const c = s.charCodeAt(i)
        r += c >= 32 && c < 127 ? s[i] : "?"
    }
    return s.length > 40 ? r + "..." : r
}

// non-negative decimal integer, -1 if s is anything else
function decimal(s: string) {
    if (!s.length || s.length > 10) return -1
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

/**
 * HTTP/1.1 response parser (RFC 9112) in bounded memory: whatever the server
 * sends, it keeps at most one line buffer of maxValueBytes and the values of
 * the headers named in `keep`. Lines over maxLineBytes, a head over
 * maxHeadBytes or a kept value over maxValueBytes throw an Error("http: ...")
 * that names the limit. How the bytes are split into write() calls changes
 * nothing. Bodies (Content-Length, chunked with extensions and trailers, or
 * until close) go to onBody as they arrive and are never accumulated.
 */
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
    /** bytes of head (and trailers) received so far */
    headBytes = 0
    /** head and trailer lines received so far (a line costs ~1K VM opcodes) */
    headLines = 0
    /** bytes received after `complete` (a pipelined response), or null */
    extra: Buffer = null

    private readonly keep: string[]
    private readonly maxLine: number
    private readonly maxHead: number
    private readonly maxValue: number
    private readonly noBody: boolean
    private mode = HEAD
    private left = 0 // body bytes left (LENGTH) or in this chunk (DATA)
    private lineState = L_START
    private lineBytes = 0 // bytes of the current line so far, LF excluded
    private buf: Buffer = null // kept bytes of the current line
    private bufLen = 0
    private name = "" // lower-case name of the header being kept
    private headers = 0 // header lines seen
    private lastKept = false // the last header line was kept
    private keptBytes = 0 // value bytes kept so far
    private names: string[] = [] // kept headers, lower case
    private values: string[] = []

    constructor(
        private readonly onBody: (data: Buffer) => void,
        options?: ResponseParserOptions
    ) {
        const o = options || {}
        this.keep = o.keep || []
        this.maxLine = o.maxLineBytes || 8192
        this.maxHead = o.maxHeadBytes || 32768
        this.maxValue = o.maxValueBytes || DEFAULT_MAX_VALUE
        this.noBody = !!o.noBody
    }

    /**
     * Feeds raw bytes from the socket; throws Error("http: ...") on
     * malformed input or a limit. onBody runs inside this call, also for body
     * bytes that arrive together with the end of the head.
     */
    write(data: Buffer) {
        const n = data.length
        let i = 0
        while (i < n && !this.complete) {
            const m = this.mode
            if (m === LENGTH || m === DATA || m === CLOSE)
                i = this.body(data, i, n)
            else if (m === HEAD || m === TRAILERS) i = this.headPart(data, i, n)
            else i = this.sizePart(data, i, n)
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
     * Value of a kept header (see `keep`) by case-insensitive name; repeated
     * headers joined by ", "; undefined if absent or not kept.
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

    // copies data[from, to) into the line buffer, up to `cap` bytes in all
    private collect(data: Buffer, from: number, to: number, cap: number) {
        if (!this.buf) this.buf = this.mode === HEAD ? this.lineBuffer() : Buffer.alloc(MAX_SIZE_KEPT)
        const room = Math.min(cap, this.buf.length) - this.bufLen
        const k = Math.min(to - from, room)
        if (k > 0) {
            this.buf.blitAt(this.bufLen, data, from, k)
            this.bufLen += k
        }
        return to - from <= room
    }

    // The head's line buffer. With the default limit it is one buffer shared by all
    // parsers (the program reads one response at a time), allocated once before the
    // heap gets fragmented; +1: the CR before the LF.
    private lineBuffer() {
        if (this.maxValue !== DEFAULT_MAX_VALUE) return Buffer.alloc(this.maxValue + 1)
        if (!sharedLine) sharedLine = Buffer.alloc(DEFAULT_MAX_VALUE + 1)
        return sharedLine
    }

    // the kept bytes of the line as a string, without a final CR
    private lineText() {
        let len = this.bufLen
        if (len && this.buf[len - 1] === 13) len--
        if (!len) return ""
        const r = Buffer.alloc(len)
        r.blitAt(0, this.buf, 0, len)
        return r.toString()
    }

    // counts head bytes against the limits
    private count(k: number) {
        this.lineBytes += k
        this.headBytes += k
        if (this.lineBytes > this.maxLine + 2) // CR LF not counted
            throw err(`header line longer than ${this.maxLine} bytes`)
        if (this.headBytes > this.maxHead)
            throw err(`header block longer than ${this.maxHead} bytes`)
    }

    // a piece of the head or of the trailers, from i; returns the next index
    private headPart(data: Buffer, i: number, n: number): number {
        if (this.lineState === L_START) {
            const c = data[i]
            this.lineBytes = 0
            this.bufLen = 0
            if (this.mode === TRAILERS) this.lineState = L_SKIP
            else if (!this.status) this.lineState = L_STATUS
            else if ((c === 32 || c === 9) && this.headers) {
                // obsolete line folding: continues the previous header
                const kept = this.names.length && this.lastKept
                this.lineState = kept ? L_FOLD : L_SKIP
            } else this.lineState = L_NAME
        }
        const lf = data.indexOf(10, i, n)
        const st = this.lineState
        if (st === L_NAME) {
            const end = lf < 0 ? n : lf
            const colon = data.indexOf(58, i, end)
            const to = colon < 0 ? end : colon
            this.count(to - i)
            this.collect(data, i, to, MAX_NAME)
            if (colon >= 0) {
                this.count(1)
                this.startValue()
                return colon + 1
            }
            if (lf < 0) return n
            this.count(1)
            return this.endLine(lf)
        }
        const end = lf < 0 ? n : lf
        this.count(end - i)
        if (st === L_STATUS) this.collect(data, i, end, MAX_STATUS)
        else if (st === L_VALUE || st === L_FOLD) {
            // leading whitespace is not part of the value; +1: the CR before the LF
            let from = i
            if (!this.bufLen) while (from < end && (data[from] === 32 || data[from] === 9)) from++
            if (!this.collect(data, from, end, this.maxValue + 1)) this.tooLong(this.name)
        } else if (this.mode === TRAILERS) this.collect(data, i, end, 2)
        if (lf < 0) return n
        this.count(1)
        return this.endLine(lf)
    }

    // after the colon of a header line: keep the value or skip it
    private startValue() {
        const name = this.lineText().toLowerCase()
        // whitespace in or before the name must be refused (RFC 9112 5.1);
        // not a full token check, which costs ~30 opcodes a character
        if (!name.length || name.indexOf(" ") >= 0 || name.indexOf("\t") >= 0)
            throw err(`bad header line '${shown(name)}'`)
        const nameBytes = this.lineBytes - 1 // before the colon
        this.headers++
        this.bufLen = 0
        this.lastKept =
            nameBytes <= MAX_NAME &&
            (FRAMING.indexOf(name) >= 0 || this.keep.indexOf(name) >= 0)
        this.name = name
        this.lineState = this.lastKept ? L_VALUE : L_SKIP
    }

    // the LF of a head line is at `lf`; returns the index after it
    private endLine(lf: number) {
        this.headLines++
        const st = this.lineState
        this.lineState = L_START
        if (this.mode === TRAILERS) {
            // an empty line ends the trailers, which are not kept
            if (this.lineBytes <= 2 && !this.lineText().length) this.done()
            return lf + 1
        }
        if (st === L_STATUS) this.statusLine(this.lineText())
        else if (st === L_VALUE) {
            // (a value of maxValue + 1 bytes fits the buffer when it ends in a bare LF)
            if (this.bufLen > this.maxValue && this.buf[this.bufLen - 1] !== 13)
                this.tooLong(this.name)
            const v = this.lineText().trim()
            // repeated kept headers are bounded too
            this.keptBytes += v.length
            if (this.names.length >= MAX_KEPT || this.keptBytes > 2 * this.maxValue)
                throw err(`too many kept headers (${this.name} repeated?)`)
            this.names.push(this.name)
            this.values.push(v)
        } else if (st === L_FOLD) {
            const k = this.values.length - 1
            const v = this.values[k] + " " + this.lineText().trim()
            if (v.length > this.maxValue) this.tooLong(this.names[k])
            this.values[k] = v
        } else if (st === L_NAME) {
            const s = this.lineText()
            if (s.length) throw err(`bad header line '${shown(s)}'`)
            this.endHead()
        }
        this.bufLen = 0
        return lf + 1
    }

    private tooLong(name: string) {
        throw err(`${name} header longer than ${this.maxValue} bytes`)
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
        if (!ok) throw err(`bad status line '${shown(s)}'`)
        this.status = code
        this.statusText = s.slice(13)
    }

    private endHead() {
        const st0 = this.status
        if (st0 >= 100 && st0 < 200 && st0 !== 101) {
            // an interim response (100 Continue, 103 Early Hints): the final one follows
            // (RFC 9110 15.2); its bytes count against the same head limit
            this.status = 0
            this.names = []
            this.values = []
            this.headers = 0
            this.keptBytes = 0
            return
        }
        this.headComplete = true
        this.buf = null // a body needs no line buffer; chunk sizes use a small one
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
            if (v > MAX_LENGTH) throw err(`content-length ${cl} too large`)
            this.contentLength = v
            this.left = v
            this.mode = LENGTH
        } else this.mode = CLOSE
        // the framing headers of these describe a body that is not sent
        const st = this.status
        const none = this.noBody || st < 200 || st === 204 || st === 304
        if (none || (this.mode === LENGTH && this.left === 0)) this.done()
        if (this.mode === SIZE) this.startSizeLine()
    }

    private startSizeLine() {
        this.lineBytes = 0
        this.bufLen = 0
    }

    // a piece of a chunk-size line or of the CRLF after chunk data
    private sizePart(data: Buffer, i: number, n: number): number {
        const lf = data.indexOf(10, i, n)
        const end = lf < 0 ? n : lf
        this.lineBytes += end - i
        if (this.lineBytes > MAX_SIZE_LINE) throw err("chunk size line too long")
        this.collect(data, i, end, MAX_SIZE_KEPT)
        if (lf < 0) return n
        const s = this.lineText()
        if (this.mode === DATA_END) {
            if (s.length || this.lineBytes > 1) throw err("missing CRLF after chunk data")
            this.mode = SIZE
            this.startSizeLine()
        } else this.sizeLine(s)
        return lf + 1
    }

    // "1a2b;name=value": hex size, optional extensions
    private sizeLine(s: string) {
        const semi = s.indexOf(";")
        if (semi < 0 && this.lineBytes > MAX_SIZE_KEPT) throw err(`bad chunk size '${shown(s)}'`)
        let hex = (semi < 0 ? s : s.slice(0, semi)).trim()
        let z = 0
        while (z < hex.length - 1 && hex[z] === "0") z++ // leading zeros are legal
        hex = hex.slice(z)
        let v = 0
        for (let i = 0; i < hex.length; i++) {
            const c = hex.charCodeAt(i) | 32
            let d = c - 48
            if (d > 9) d = c >= 97 && c <= 102 ? c - 87 : -1
            if (d < 0) throw err(`bad chunk size '${shown(s)}'`)
            v = v * 16 + d
        }
        if (!hex.length || hex.length > 7) throw err(`bad chunk size '${shown(s)}'`)
        this.lineBytes = 0
        this.bufLen = 0
        if (v > 0) {
            this.left = v
            this.mode = DATA
        } else {
            // trailers: streamed past like unkept headers, with their own budget
            this.mode = TRAILERS
            this.headBytes = 0
            this.lineState = L_START
            this.buf = null
        }
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
    const q = path ? path.indexOf("?") : -1
    const pieces = requestHead(method, q < 0 ? path : path.slice(0, q), q < 0 ? "" : path.slice(q), headers)
    return pieces[0] + pieces[1] + pieces[2] + pieces[3]
}

/**
 * buildRequest in four pieces to send one after the other: "METHOD ", the path,
 * the query, and " HTTP/1.1" with the header lines. No string as long as a signed
 * storage URL (~2 KB) is built: in a fragmented heap such an allocation fails long
 * before the heap is full.
 */
export function requestHead(
    method: string,
    pathname: string,
    search: string,
    headers: [string, string][]
): string[] {
    if (!isToken(method)) throw err(`bad method '${method}'`)
    if (!pathname || !pathname.length || hasControl(pathname, false) || hasControl(search, false))
        throw err(`bad request target '${pathname}${search}'`)
    let r = " HTTP/1.1\r\n"
    for (const h of headers) {
        if (!isToken(h[0])) throw err(`bad header name '${h[0]}'`)
        if (hasControl(h[1], true)) throw err(`bad value for header ${h[0]}`)
        r += `${h[0]}: ${h[1]}\r\n`
    }
    return [method + " ", pathname, search, r + "\r\n"]
}

/** `s` can be sent as a header value: no control characters (CR LF would inject headers). */
export function isHeaderValue(s: string) {
    return !hasControl(s, true)
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

const MONTHS = "JanFebMarAprMayJunJulAugSepOctNovDec"

/**
 * An IMF-fixdate (RFC 9110 5.6.7, "Sun, 06 Nov 1994 08:49:37 GMT") as Unix epoch
 * seconds; -1 when `s` is not one. Used to turn x-ratelimit-reset (epoch seconds)
 * into a wait without a clock of our own.
 */
export function parseHttpDate(s: string): number {
    const p = s.trim().split(" ")
    if (p.length !== 6 || p[5] !== "GMT") return -1
    const day = decimal(p[1])
    const mon = MONTHS.indexOf(p[2])
    const year = decimal(p[3])
    const t = p[4].split(":")
    if (day < 1 || day > 31 || mon < 0 || mon % 3 || year < 1970 || t.length !== 3) return -1
    const h = decimal(t[0])
    const m = decimal(t[1])
    const sec = decimal(t[2])
    if (h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 60) return -1
    // days from 1970-01-01 of a civil date (H. Hinnant's days_from_civil)
    const mo = mon / 3 + 1
    const y = mo <= 2 ? year - 1 : year
    const era = Math.floor(y / 400)
    const yoe = y - era * 400
    const doy = Math.floor((153 * (mo > 2 ? mo - 3 : mo + 9) + 2) / 5) + day - 1
    const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy
    const days = era * 146097 + doe - 719468
    return days * 86400 + h * 3600 + m * 60 + sec
}
