import * as ds from "@devicescript/core"
import { describe, test, expect } from "@devicescript/test"
import {
    ResponseParser,
    ResponseParserOptions,
    buildRequest,
    parseContentRange,
    parseHttpDate,
} from "../httpparse"

// feeds `text` split at the given offsets; returns the parser and the body.
// Async: many small writes would exceed the 128K opcodes a fiber may run
// between awaits.
async function run(
    text: string,
    splits: number[],
    options?: ResponseParserOptions,
    close = false
) {
    const data = Buffer.from(text)
    const parts: Buffer[] = []
    const p = new ResponseParser(b => parts.push(b), options)
    let at = 0
    for (const k of splits) {
        if (k > at) p.write(data.slice(at, k))
        at = k
        if (k % 16 === 0) await ds.sleep(0)
    }
    if (data.length > at) p.write(data.slice(at, data.length))
    if (close) p.finish()
    let body = ""
    for (const b of parts) body += b.toString()
    return { p, body }
}

// feeds `text` to `p` in pieces of `step` bytes, yielding now and then
async function feed(p: ResponseParser, text: string, step: number) {
    const data = Buffer.from(text)
    let k = 0
    for (let at = 0; at < data.length; at += step) {
        p.write(data.slice(at, Math.min(at + step, data.length)))
        if (++k % 8 === 0) await ds.sleep(0)
    }
    await ds.sleep(0)
}

function repeat(c: string, n: number) {
    let r = ""
    let piece = c
    while (n > 0) {
        if (n & 1) r += piece
        piece += piece
        n >>= 1
    }
    return r
}

function byteSplits(n: number) {
    const r: number[] = []
    for (let i = 1; i < n; i++) r.push(i)
    return r
}

async function throwsHttp(f: () => Promise<any>, what: string) {
    let msg = "(no error)"
    try {
        await f()
    } catch (e: any) {
        msg = e.message
    }
    if (!msg.startsWith("http: " + what)) expect(msg).toBe("http: " + what)
}

async function rangeThrows(v: string) {
    await throwsHttp(async () => parseContentRange(v), "bad content-range")
}

const SIMPLE =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n" +
    "X-Multi: a\r\nx-multi: b\r\n\r\nhello world"

const CHUNKED =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" +
    "5;name=value\r\nhello\r\n1\r\n \r\nA ; x=\"y\"\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"

describe("httpparse", () => {
    test("Content-Length response, in one piece and byte by byte", async () => {
        for (const splits of [[], byteSplits(SIMPLE.length)]) {
            const { p, body } = await run(SIMPLE, splits)
            expect(p.headComplete).toBe(true)
            expect(p.complete).toBe(true)
            expect(p.status).toBe(200)
            expect(p.statusText).toBe("OK")
            expect(p.contentLength).toBe(11)
            expect(p.chunked).toBe(false)
            expect(body).toBe("hello world")
            expect(p.bodyBytes).toBe(11)
            expect(p.extra).toBe(null)
            p.finish()
            await ds.sleep(0)
        }
    })
    test("header() is case-insensitive and joins repeats; unkept headers are not stored", async () => {
        const { p } = await run(SIMPLE, [], { keep: ["content-type", "x-multi"] })
        expect(p.header("content-type")).toBe("application/json")
        expect(p.header("CONTENT-TYPE")).toBe("application/json")
        expect(p.header("X-MULTI")).toBe("a, b")
        expect(p.header("etag")).toBe(undefined)
        const r = await run(SIMPLE, [])
        expect(r.p.header("content-type")).toBe(undefined)
        expect(r.p.header("x-multi")).toBe(undefined)
        expect(r.p.header("content-length")).toBe("11")
    })
    test("chunked body with extensions and trailers, split everywhere", async () => {
        const want = "hello 0123456789"
        for (let k = 0; k <= CHUNKED.length; k++) {
            const { p, body } = await run(CHUNKED, [k])
            if (body !== want || !p.complete || p.extra)
                console.log(`split at ${k}: '${body}' ${p.complete}`)
            expect(body).toBe(want)
            expect(p.complete).toBe(true)
            expect(p.extra).toBe(null)
            if (k % 4 === 0) await ds.sleep(0)
        }
        const { p, body } = await run(CHUNKED, byteSplits(CHUNKED.length))
        expect(body).toBe(want)
        expect(p.chunked).toBe(true)
        // chunked wins over Content-Length
        expect(p.contentLength).toBe(-1)
        expect(p.bodyBytes).toBe(16)
        expect(p.header("x-trailer")).toBe(undefined)
    })
    test("bare LF line ends", async () => {
        const { p, body } = await run(
            "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
            []
        )
        expect(body).toBe("abc")
        expect(p.complete).toBe(true)
    })
    test("no body for 304, 204, 1xx and HEAD", async () => {
        let r = await run(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            []
        )
        expect(r.p.complete).toBe(true)
        expect(r.p.bodyBytes).toBe(0)
        expect(r.p.status).toBe(304)
        expect(r.p.statusText).toBe("Not Modified")
        r = await run("HTTP/1.1 204 No Content\r\n\r\n", [])
        expect(r.p.complete).toBe(true)
        // interim responses are skipped: the final one follows (RFC 9110 15.2)
        r = await run("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", [])
        expect(r.p.complete).toBe(true)
        expect(r.p.status).toBe(200)
        expect(r.body).toBe("ok")
        r = await run("HTTP/1.1 100 Continue\r\n\r\n", [])
        expect(r.p.complete).toBe(false)
        expect(r.p.headComplete).toBe(false)
        r = await run("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", [], {
            noBody: true,
        })
        expect(r.p.complete).toBe(true)
        expect(r.p.contentLength).toBe(1234) // HEAD tells the size
        expect(r.p.header("content-length")).toBe("1234")
        expect(r.p.bodyBytes).toBe(0)
    })
    test("framing variants", async () => {
        let r = await run("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", [])
        expect(r.p.complete).toBe(true)
        expect(r.p.contentLength).toBe(0)
        r = await run("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabcd", [])
        expect(r.body).toBe("abc")
        expect(r.p.extra.toString()).toBe("d")
        // not chunked as the last coding: until close
        r = await run(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 2\r\n\r\nxyz",
            [],
            {},
            true
        )
        expect(r.p.chunked).toBe(false)
        expect(r.body).toBe("xyz")
        r = await run(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: GZIP, Chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
            []
        )
        expect(r.p.chunked).toBe(true)
        expect(r.body).toBe("ab")
    })
    test("body until close; empty reason phrase; HTTP/1.0", async () => {
        const { p, body } = await run(
            "HTTP/1.0 200 \r\nServer: x\r\n\r\nsome data",
            [5, 30],
            {},
            true
        )
        expect(p.statusText).toBe("")
        expect(body).toBe("some data")
        expect(p.complete).toBe(true)
        expect((await run("HTTP/1.1 404\r\n\r\n", [], {}, true)).p.status).toBe(404)
    })
    test("extra bytes after the response", async () => {
        const second = "HTTP/1.1 200 OK\r\n"
        const { p, body } = await run(SIMPLE + second, [SIMPLE.length - 3])
        expect(body).toBe("hello world")
        expect(p.extra.toString()).toBe(second)
        p.write(Buffer.from("X"))
        expect(p.extra.toString()).toBe(second + "X")
        const r = await run("HTTP/1.1 304 Not Modified\r\n\r\nHTTP", [])
        expect(r.p.extra.toString()).toBe("HTTP")
    })
    test("incomplete responses: finish() throws", async () => {
        await throwsHttp(
            async () => await run("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", [], {}, true),
            "connection closed before end of body"
        )
        await throwsHttp(
            async () => await run(CHUNKED.slice(0, CHUNKED.length - 2), [], {}, true),
            "connection closed before end of body"
        )
        await throwsHttp(
            async () => await run("HTTP/1.1 200 OK\r\nContent-Le", [], {}, true),
            "connection closed before end of head"
        )
        await throwsHttp(async () => await run("", [], {}, true), "connection closed before end of head")
    })
    test("malformed input throws", async () => {
        await throwsHttp(async () => await run("HTTP/2 200 OK\r\n\r\n", []), "bad status line")
        await throwsHttp(async () => await run("ICY 200 OK\r\n\r\n", []), "bad status line")
        await throwsHttp(async () => await run("HTTP/1.1 20 OK\r\n\r\n", []), "bad status line")
        await throwsHttp(async () => await run("HTTP/1.1 200OK\r\n\r\n", []), "bad status line")
        await throwsHttp(async () => await run("\r\nHTTP/1.1 200 OK\r\n\r\n", []), "bad status line")
        await throwsHttp(
            async () => await run("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", []),
            "bad header line"
        )
        await throwsHttp(
            async () => await run("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", []),
            "bad header line"
        )
        await throwsHttp(
            async () => await run("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", []),
            "bad content-length"
        )
        await throwsHttp(
            async () => await run("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", []),
            "bad content-length"
        )
        const chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        await throwsHttp(async () => await run(chunked + "xyz\r\n", []), "bad chunk size")
        await throwsHttp(async () => await run(chunked + "\r\n", []), "bad chunk size")
        await throwsHttp(async () => await run(chunked + "123456789\r\n", []), "bad chunk size")
        await ds.sleep(0)
        // sizes of 2^31 and more are refused (the VM's integer paths); leading zeros are fine
        await throwsHttp(async () => await run(chunked + "80000000\r\n", []), "bad chunk size")
        const zeros = await run(chunked + "000000002\r\nab\r\n0\r\n\r\n", [])
        expect(zeros.body).toBe("ab")
        await throwsHttp(
            async () => await run("HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n", []),
            "content-length 2147483648 too large"
        )
        await ds.sleep(0)
        // repeated kept headers are bounded
        let many = "HTTP/1.1 200 OK\r\n"
        for (let i = 0; i < 40; i++) many += "Connection: keep-alive\r\n"
        await throwsHttp(async () => await feed(new ResponseParser(b => {}), many + "\r\n", 128), "too many kept headers")
        await throwsHttp(async () => await run(chunked + "3\r\nabcX\r\n", []), "missing CRLF")
        let ext = "5"
        for (let i = 0; i < 120; i++) ext += ";name=value"
        await throwsHttp(async () => await run(chunked + ext, [60]), "chunk size line too long")
    })
    test("a 9 KB header block (GitHub-like 302) in constant memory, in any segmenting", async () => {
        // 1,912-byte Location, 3,600-byte CSP, 1,500-byte Link, 30 x 40-byte headers
        const location = "https://storage.example/" + repeat("a", 1912 - 24)
        for (const step of [1, 7, 128, 100000]) {
            const p = new ResponseParser(b => {}, { keep: ["location"] })
            await feed(p, "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n", step)
            await feed(p, "Content-Security-Policy: " + repeat("c", 3600 - 25) + "\r\n", step)
            await feed(p, "Link: " + repeat("l", 1500 - 6) + "\r\n", step)
            for (let i = 0; i < 30; i++)
                await feed(p, `X-Filler-${i < 10 ? "0" + i : i}: ` + repeat("f", 40 - 14) + "\r\n", step)
            await feed(p, "Location: " + location + "\r\n\r\n", step)
            expect(p.complete).toBe(true)
            expect(p.status).toBe(302)
            expect(p.header("location")).toBe(location)
            expect(p.header("content-security-policy")).toBe(undefined)
            expect(p.headBytes > 8000).toBe(true)
        }
    })
    test("limits: 8 KB line, 32 KB head, 4 KB kept value; beyond them an error naming the limit", async () => {
        const line = (name: string, total: number) => name + ": " + repeat("v", total - name.length - 2) + "\r\n"
        // a line of exactly 8192 bytes (CRLF not counted) passes, 8193 fails
        let p = new ResponseParser(b => {})
        await feed(p, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + line("X-Long", 8192) + "\r\n", 512)
        expect(p.complete).toBe(true)
        await throwsHttp(async () => {
            const q = new ResponseParser(b => {})
            await feed(q, "HTTP/1.1 200 OK\r\n" + line("X-Long", 8193), 512)
        }, "header line longer than 8192 bytes")
        // 31 lines of 1 KB pass, one more goes over 32 KB
        p = new ResponseParser(b => {})
        await feed(p, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", 512)
        for (let i = 0; i < 30; i++) await feed(p, line("X-K", 1022), 512)
        await feed(p, "\r\n", 512)
        expect(p.complete).toBe(true)
        await throwsHttp(async () => {
            const q = new ResponseParser(b => {})
            await feed(q, "HTTP/1.1 200 OK\r\n", 512)
            for (let i = 0; i < 33; i++) await feed(q, line("X-K", 1022), 512)
        }, "header block longer than 32768 bytes")
        // a kept Location of 4096 bytes passes, 4097 fails
        p = new ResponseParser(b => {}, { keep: ["location"] })
        await feed(p, "HTTP/1.1 302 Found\r\n" + line("Location", 4096 + 10) + "\r\n", 300)
        expect(p.header("location").length).toBe(4096)
        await throwsHttp(async () => {
            const q = new ResponseParser(b => {}, { keep: ["location"] })
            await feed(q, "HTTP/1.1 302 Found\r\n" + line("Location", 4097 + 10) + "\r\n", 300)
        }, "location header longer than 4096 bytes")
        // many small header lines are fine
        p = new ResponseParser(b => {})
        await feed(p, "HTTP/1.1 200 OK\r\n", 512)
        for (let i = 0; i < 500; i++) await feed(p, "X-A: b\r\n", 512)
        await feed(p, "Content-Length: 2\r\n\r\nok", 512)
        expect(p.complete).toBe(true)
    })
    test("trailers are streamed past with their own limit", async () => {
        const chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n"
        const parts: Buffer[] = []
        const p = new ResponseParser(b => parts.push(b))
        await feed(p, chunked, 5)
        for (let i = 0; i < 20; i++) await feed(p, "X-Trailer-Pad: " + repeat("t", 1000) + "\r\n", 333)
        await feed(p, "\r\n", 1)
        expect(p.complete).toBe(true)
        expect(parts.length > 0).toBe(true)
    })
    test("buildRequest", async () => {
        expect(
            buildRequest("GET", "/repos/a/b/releases/latest", [
                ["Host", "api.github.com"],
                ["User-Agent", "esp32 ota"],
            ])
        ).toBe(
            "GET /repos/a/b/releases/latest HTTP/1.1\r\nHost: api.github.com\r\nUser-Agent: esp32 ota\r\n\r\n"
        )
        expect(buildRequest("HEAD", "/", [])).toBe("HEAD / HTTP/1.1\r\n\r\n")
        await throwsHttp(async () => buildRequest("GET", "/", [["X", "a\r\nb"]]), "bad value")
        await throwsHttp(async () => buildRequest("GET", "/", [["X", "a\nb"]]), "bad value")
        await throwsHttp(async () => buildRequest("GET", "/", [["X:Y", "a"]]), "bad header name")
        await throwsHttp(async () => buildRequest("GET", "/a b", []), "bad request target")
        await throwsHttp(async () => buildRequest("GET", "/a\r\nX: y", []), "bad request target")
        await throwsHttp(async () => buildRequest("GE T", "/", []), "bad method")
    })
    test("parseHttpDate", async () => {
        expect(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT")).toBe(784111777)
        expect(parseHttpDate("Mon, 30 Nov 2026 16:13:39 GMT")).toBe(1796055219)
        expect(parseHttpDate("Thu, 01 Jan 1970 00:00:00 GMT")).toBe(0)
        expect(parseHttpDate("Tue, 29 Feb 2028 23:59:59 GMT")).toBe(1835481599)
        expect(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT")).toBe(-1)
        expect(parseHttpDate("Sun, 06 Foo 1994 08:49:37 GMT")).toBe(-1)
        expect(parseHttpDate("")).toBe(-1)
    })
    test("parseContentRange", async () => {
        let r = parseContentRange("bytes 0-99/1234")
        expect(r.start).toBe(0)
        expect(r.end).toBe(99)
        expect(r.total).toBe(1234)
        r = parseContentRange("bytes 1000-1999/*")
        expect(r.start).toBe(1000)
        expect(r.end).toBe(1999)
        expect(r.total).toBe(-1)
        const bad = [
            "",
            "bytes */1234",
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes 0-9",
            "items 0-9/10",
            "bytes -9/10",
            "bytes 0-9/x",
            "bytes 0x1-9/10",
        ]
        // (closures must not capture loop variables in DeviceScript)
        for (const v of bad) await rangeThrows(v)
    })
})
