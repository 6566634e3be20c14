// Streaming (SAX-style) JSON parser with bounded memory.
//
// A GitHub release JSON is tens of KB and JSON.parse runs out of the 64 KB
// heap; this parser keeps only the current path, one token buffer and a few
// numbers, and reports every scalar with its path ("assets.0.name").
// Speed: the VM panics after 128K opcodes without an await, and a per-byte
// loop costs ~17 opcodes a byte, so strings are scanned with native
// Buffer.indexOf/blitAt and `"key": "value",` runs take a fast path.

export type JsonScalar = string | number | boolean | null

export interface JsonStreamOptions {
    /** characters kept of a string value (the rest is skipped); default 256 */
    maxString?: number
    /** nesting limit of objects/arrays; default 16 */
    maxDepth?: number
    /**
     * Called when an object or array closes, with its path ("assets.3"; ""
     * for the top level), after all its scalars were reported.
     */
    onEnd?: (path: string) => void
}

const MAX_KEY = 64 // characters kept of an object key
const MAX_PATH = 256 // characters of the path of an open container
const MAX_NUM = 64 // bytes of a number token
const SMALL = 64 // chunks below this are checked byte by byte

// parser states
const VALUE = 0 // a value must follow
const ARR0 = 1 // after '[': a value or ']'
const OBJ0 = 2 // after '{': a key or '}'
const KEY = 3 // after ',' in an object: a key
const COLON = 4 // after a key
const AFTER = 5 // after a value in a container: ',' or the closing bracket
const DONE = 6 // after the top-level value: only whitespace
const STR = 7 // in a string (key or value)
const ESC = 8 // after '\' in a string
const HEX = 9 // in the 4 digits of \uXXXX
const NUM = 10 // in a number
const LIT = 11 // in true/false/null

// escape letter -> byte it stands for (0: not an escape)
const ESC_MAP = Buffer.alloc(256)
ESC_MAP[34] = 34 // \"
ESC_MAP[92] = 92 // \\
ESC_MAP[47] = 47 // \/
ESC_MAP[98] = 8 // \b
ESC_MAP[102] = 12 // \f
ESC_MAP[110] = 10 // \n
ESC_MAP[114] = 13 // \r
ESC_MAP[116] = 9 // \t
const LITS = ["true", "false", "null"]
const LIT_VALUES = [true, false, null]

// value of a hex digit, -1 if c is none
function hexDigit(c: number) {
    if (c >= 48 && c <= 57) return c - 48
    c |= 32
    if (c >= 97 && c <= 102) return c - 87
    return -1
}

// first byte in [i, n) that JSON never allows raw (controls but \t \n \r)
function firstIllegal(b: Buffer, i: number, n: number) {
    for (let c = 0; c < 32; c++) {
        if (c === 9 || c === 10 || c === 13) continue
        const k = b.indexOf(c, i, n)
        if (k >= 0) n = k
    }
    return n
}

// index of the first non-whitespace byte at or after i (n: b.length)
function skipSpace(b: Buffer, i: number, n: number) {
    // indentation of pretty-printed JSON: 4 spaces a read (undefined past n)
    while (b.getAt(i, "u32") === 0x20202020) i += 4
    while (i < n) {
        const c = b[i]
        if (c !== 32 && c !== 10 && c !== 13 && c !== 9) break
        i++
    }
    return i
}

function isDigit(c: number) {
    return c >= 48 && c <= 57
}

// the first n bytes of t as a string (Buffer.slice is a slow TS function)
function text(t: Buffer, n: number) {
    const b = Buffer.alloc(n)
    b.blitAt(0, t, 0, n)
    return b.toString()
}

/**
 * Feed with write(chunk) (split anywhere), then end(). Throws
 * Error("json: <what> at byte <n>") on malformed input; the parser is not
 * usable after an error. onValue gets every scalar, never objects/arrays.
 */
export class JsonStream {
    /** bytes consumed so far (read-only for callers) */
    bytes = 0
    /**
     * Scalars and containers met so far; callers may reset it. Each costs up to ~2K VM
     * opcodes (its path and onValue): yield every few dozen.
     */
    tokens = 0

    private readonly maxString: number
    private readonly maxDepth: number
    private readonly onEnd: (path: string) => void
    private st = VALUE
    // current container: prefix of child paths, array index (-1: object)
    private depth = 0
    private pre = ""
    private index = -1
    private key = ""
    private preStack: string[] = []
    private indexStack: number[] = []
    // current token: UTF-8 bytes of a string, or the text of a number
    private tok: Buffer
    private tokLen = 0
    private cap = 0 // bytes of tok to fill for this token
    private isKey = false
    private start = 0 // byte offset where the number began
    private hi = 0 // pending high surrogate of a \uXXXX pair
    private u = 0 // \uXXXX value so far
    private uDigits = 0
    private lit = 0 // index into LITS
    private litPos = 0
    // control-character search in the current chunk (see checkControl)
    private illegal = -1 // first byte never allowed raw; -1: not searched
    private ctl = -1 // next control byte; -1: not searched

    constructor(
        private readonly onValue: (path: string, value: JsonScalar) => void,
        options?: JsonStreamOptions
    ) {
        const o = options || {}
        this.maxString = o.maxString || 256
        this.maxDepth = o.maxDepth || 16
        this.onEnd = o.onEnd
        // 4 bytes per character always hold maxString whole characters
        this.tok = Buffer.alloc(
            4 * (this.maxString > MAX_KEY ? this.maxString : MAX_KEY)
        )
    }

    private fail(what: string, i: number): never {
        throw new Error(`json: ${what} at byte ${this.bytes + i}`)
    }

    /**
     * Parses the next bytes. Runs without awaiting, so mind the VM's 128K
     * opcode limit: measured ~22 opcodes a byte on GitHub-like release JSON
     * (one write of 5.75 KB fits, 6 KB panics), up to ~85 on dense small
     * numbers; onValue runs inside and adds its own cost. Keep chunks at
     * 2 KB or less.
     */
    write(chunk: Buffer) {
        const n = chunk.length
        let i = 0
        this.illegal = -1
        this.ctl = -1
        while (i < n) {
            const st = this.st
            if (st === STR) i = this.str(chunk, i, n)
            else if (st === NUM) i = this.num(chunk, i, n)
            else if (st >= ESC) {
                // a token split by the chunk boundary, byte by byte
                this.inToken(chunk[i], i)
                i++
            } else if (chunk[i] <= 32) {
                const k = skipSpace(chunk, i, n)
                if (k === i) this.fail("unexpected character", i)
                i = k
            } else i = this.structural(chunk, i, n)
        }
        this.bytes += n
    }

    /** Call after the last chunk: throws if the document is incomplete. */
    end() {
        const st = this.st
        if (st === NUM) this.endNumber()
        else if (st === LIT) this.fail("bad literal", 0)
        else if (st >= STR) this.fail("unterminated string", 0)
        if (this.st !== DONE) this.fail("unexpected end of input", 0)
    }

    private path(): string {
        if (!this.depth) return ""
        return this.index < 0 ? this.pre + this.key : this.pre + this.index
    }

    private emit(v: JsonScalar) {
        this.tokens++
        this.onValue(this.path(), v)
        this.st = this.depth ? AFTER : DONE
    }

    // one byte between tokens, or the first of a value; returns the next index
    private structural(b: Buffer, i: number, n: number) {
        const c = b[i]
        const st = this.st
        if (st === AFTER) {
            if (c === 44) {
                // ','
                if (this.index < 0) this.st = KEY
                else {
                    this.index++
                    this.st = VALUE
                }
            } else if (c === (this.index < 0 ? 125 : 93)) this.close()
            else if (this.index < 0) this.fail("expected ',' or '}'", i)
            else this.fail("expected ',' or ']'", i)
        } else if (st === COLON) {
            if (c !== 58) this.fail("expected ':'", i)
            this.st = VALUE
        } else if (st === OBJ0 || st === KEY) {
            if (c === 34) this.startString(true)
            else if (c === 125 && st === OBJ0) this.close()
            else this.fail("expected key", i)
        } else if (st === DONE) {
            this.fail("trailing garbage", i)
        } else if (c === 93 && st === ARR0) this.close()
        else return this.value(b, i, n)
        return i + 1
    }

    // first byte of a value; returns the next index
    private value(b: Buffer, i: number, n: number) {
        const c = b[i]
        if (c === 34) this.startString(false)
        else if (c === 123) this.open(-1, i)
        else if (c === 91) this.open(0, i)
        else if (c === 45 || (c >= 48 && c <= 57)) {
            this.st = NUM
            this.start = this.bytes + i
            this.tokLen = 0
            return i // num() takes it from here
        } else {
            const k = c === 116 ? 0 : c === 102 ? 1 : c === 110 ? 2 : -1
            if (k < 0) this.fail("unexpected character", i)
            const lit = LITS[k]
            if (i + lit.length > n) {
                // split by the chunk boundary: finish in inToken()
                this.st = LIT
                this.lit = k
                this.litPos = 1
                return i + 1
            }
            for (let j = 1; j < lit.length; j++)
                if (b[i + j] !== lit.charCodeAt(j))
                    this.fail("bad literal", i + j)
            this.emit(LIT_VALUES[k])
            return i + lit.length
        }
        return i + 1
    }

    // number bytes from i; returns the index of the byte after the number
    private num(b: Buffer, i: number, n: number) {
        let k = i
        while (k < n) {
            const c = b[k]
            if (c < 48 || c > 57) {
                if (c !== 45 && c !== 43 && c !== 46 && c !== 101 && c !== 69)
                    break
            }
            k++
        }
        if (this.tokLen + k - i > MAX_NUM)
            this.fail("bad number", this.start - this.bytes)
        this.tok.blitAt(this.tokLen, b, i, k - i)
        this.tokLen += k - i
        if (k < n) this.endNumber()
        return k
    }

    private open(index: number, i: number) {
        if (this.depth >= this.maxDepth) this.fail("too deep", i)
        this.tokens++
        const path = this.path()
        // every open container keeps its path: bounded in all, not only per key
        if (path.length > MAX_PATH) this.fail("path too long", i)
        // indexed, not push/pop: Array.pop is a slow TS function
        this.preStack[this.depth] = this.pre
        this.indexStack[this.depth] = this.index
        this.pre = this.depth ? path + "." : ""
        this.index = index
        this.depth++
        this.st = index < 0 ? OBJ0 : ARR0
    }

    private close() {
        const pre = this.pre
        const d = --this.depth
        this.pre = this.preStack[d]
        this.index = this.indexStack[d]
        this.st = this.depth ? AFTER : DONE
        if (this.onEnd) this.onEnd(pre.slice(0, pre.length - 1))
    }

    private startString(isKey: boolean) {
        this.st = STR
        this.isKey = isKey
        this.tokLen = 0
        this.cap = 4 * (isKey ? MAX_KEY : this.maxString)
    }

    // string bytes from i; returns the index to continue at. Complete
    // escapes are decoded here; split ones go through ESC/HEX.
    private str(b: Buffer, i: number, n: number) {
        let q = -1
        for (;;) {
            if (q < i) {
                q = b.indexOf(34, i, n)
                if (q < 0) q = n
            }
            let r = b.indexOf(92, i, q)
            if (r < 0) r = q
            if (r > i) {
                if (r > this.ctl) this.checkControl(b, i, r, n)
                if (this.hi) this.flushHigh()
                // keep what fits; the rest is dropped (truncation)
                let len = this.cap - this.tokLen
                if (len > 0) {
                    if (len > r - i) len = r - i
                    this.tok.blitAt(this.tokLen, b, i, len)
                    this.tokLen += len
                }
            }
            if (r === q) {
                if (q === n) return n
                i = this.endString(b, q + 1, n)
                if (this.st !== STR) return i
                continue // the next string began right away
            }
            i = r + 1
            if (b[i] === 117) {
                if (i + 5 > n) break
                this.unicodeEscape(b, i)
                i += 5
            } else {
                if (i >= n) break
                // inlined simpleEscape(): escapes are frequent in long texts
                const e = ESC_MAP[b[i]]
                if (!e) this.fail("bad escape", i)
                if (this.hi) this.flushHigh()
                if (this.tokLen < this.cap) this.tok[this.tokLen++] = e
                i++
            }
        }
        this.st = ESC // the escape continues in the next chunk
        return i
    }

    // the \uXXXX escape whose 'u' is b[i]
    private unicodeEscape(b: Buffer, i: number) {
        let u = 0
        for (let k = i + 1; k < i + 5; k++) {
            const d = hexDigit(b[k])
            if (d < 0) this.fail("bad \\u escape", k)
            u = u * 16 + d
        }
        this.unicode(u)
    }

    private simpleEscape(c: number, i: number) {
        const e = ESC_MAP[c]
        if (!e) this.fail("bad escape", i)
        if (this.hi) this.flushHigh()
        this.putCode(e)
    }

    // Raw bytes < 0x20 are not allowed in strings. Instead of a per-byte
    // loop, big chunks are searched natively and the position of the next
    // control byte cached in `ctl`; called only when a run reaches past it.
    private checkControl(b: Buffer, i: number, r: number, n: number) {
        if (n < SMALL) {
            for (; i < r; i++)
                if (b[i] < 32) this.fail("control character in string", i)
            return
        }
        let c = this.ctl
        if (c < i) {
            // stale: it was whitespace between tokens; search again from i
            c = this.illegal
            if (c < 0) c = this.illegal = firstIllegal(b, i, n)
            let k = b.indexOf(10, i, c)
            if (k >= 0) c = k
            k = b.indexOf(13, i, c)
            if (k >= 0) c = k
            k = b.indexOf(9, i, c)
            if (k >= 0) c = k
            this.ctl = c
        }
        if (c < r) this.fail("control character in string", c)
    }

    // append a code point as UTF-8
    private putCode(cp: number) {
        const t = this.tok
        let k = this.tokLen
        const need = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4
        if (k + need > this.cap) {
            this.cap = k // full: later, shorter characters must not slip in
            return
        }
        if (need === 1) t[k++] = cp
        else {
            if (need === 2) t[k++] = 0xc0 | (cp >> 6)
            else {
                if (need === 3) t[k++] = 0xe0 | (cp >> 12)
                else {
                    t[k++] = 0xf0 | (cp >> 18)
                    t[k++] = 0x80 | ((cp >> 12) & 0x3f)
                }
                t[k++] = 0x80 | ((cp >> 6) & 0x3f)
            }
            t[k++] = 0x80 | (cp & 0x3f)
        }
        this.tokLen = k
    }

    // a high surrogate not followed by a low one
    private flushHigh() {
        this.hi = 0
        this.putCode(0xfffd)
    }

    private unicode(u: number) {
        if (u >= 0xdc00 && u < 0xe000 && this.hi) {
            const cp = 0x10000 + ((this.hi - 0xd800) << 10) + (u - 0xdc00)
            this.hi = 0
            this.putCode(cp)
            return
        }
        if (this.hi) this.flushHigh()
        if (u >= 0xd800 && u < 0xdc00) this.hi = u
        else this.putCode(u >= 0xdc00 && u < 0xe000 ? 0xfffd : u)
    }

    // i: index after the closing quote; returns the index to continue at
    private endString(b: Buffer, i: number, n: number) {
        if (this.hi) this.flushHigh()
        let s = text(this.tok, this.tokLen)
        const max = this.isKey ? MAX_KEY : this.maxString
        if (s.length > max) s = s.slice(0, max)
        if (this.isKey) {
            this.key = s
            this.st = COLON
            // fast path: `"key": "value"` without the main loop
            if (b[i] !== 58) return i
            this.st = VALUE
        } else {
            this.emit(s)
            // fast path: `"value", "next"`
            if (b[i] !== 44 || this.st !== AFTER) return i
            if (this.index < 0) this.st = KEY
            else {
                this.index++
                this.st = VALUE
            }
        }
        i = skipSpace(b, i + 1, n)
        if (b[i] === 34 && i < n) {
            this.startString(this.st === KEY)
            i++
        }
        return i
    }

    // one byte of an escape or literal split by a chunk boundary
    private inToken(c: number, i: number) {
        const st = this.st
        if (st === LIT) {
            const lit = LITS[this.lit]
            if (c !== lit.charCodeAt(this.litPos)) this.fail("bad literal", i)
            if (++this.litPos === lit.length) this.emit(LIT_VALUES[this.lit])
        } else if (st === ESC) {
            if (c === 117) {
                // 'u'
                this.st = HEX
                this.u = 0
                this.uDigits = 0
                return
            }
            this.simpleEscape(c, i)
            this.st = STR
        } else {
            // HEX
            const d = hexDigit(c)
            if (d < 0) this.fail("bad \\u escape", i)
            this.u = this.u * 16 + d
            if (++this.uDigits === 4) {
                this.st = STR
                this.unicode(this.u)
            }
        }
    }

    // JSON.parse checks the grammar natively, except for what it lets
    // through: leading zeros ("01") and a '.' without digits on both sides
    private endNumber() {
        const t = this.tok
        const n = this.tokLen
        let ok = true
        const z = t[0] === 45 ? 1 : 0
        if (t[z] === 48 && z + 1 < n && isDigit(t[z + 1])) ok = false
        const p = t.indexOf(46, 0, n)
        if (p >= 0 && !(isDigit(t[p - 1]) && p + 1 < n && isDigit(t[p + 1])))
            ok = false
        let v = 0
        if (ok) {
            try {
                v = JSON.parse(text(t, n))
            } catch {
                ok = false
            }
        }
        if (!ok) this.fail("bad number", this.start - this.bytes)
        this.emit(v)
    }
}
