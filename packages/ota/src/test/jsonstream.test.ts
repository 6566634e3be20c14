import * as ds from "@devicescript/core"
import { describe, test, expect } from "@devicescript/test"
import { JsonScalar, JsonStream, JsonStreamOptions } from "../jsonstream"

// parse `text` fed in pieces of `size` bytes; returns "path=value" lines.
// Async: small pieces cost many opcodes, and a fiber may run only 128K
// of them between awaits.
async function parse(text: string, size?: number, options?: JsonStreamOptions) {
    const out: string[] = []
    const js = new JsonStream((p, v) => {
        out.push(`${p}=${typeof v === "string" ? `'${v}'` : v}`)
    }, options)
    const b = Buffer.from(text)
    if (!size) size = b.length || 1
    for (let i = 0; i < b.length; i += size) {
        js.write(b.slice(i, i + size > b.length ? b.length : i + size))
        if (i % (size * 32) === 0) await ds.sleep(0)
    }
    js.end()
    return out.join(";")
}

// the message parse() throws, or "(no error)"
async function parseError(
    text: string,
    size?: number,
    options?: JsonStreamOptions
) {
    try {
        await parse(text, size, options)
    } catch (e: any) {
        return e.message
    }
    return "(no error)"
}

// A GitHub-like release: uploader objects (~1.3 KB) in every asset and a
// long body with escapes and non-ASCII, produced piece by piece.
const USER = {
    login: "github-actions[bot]",
    id: 41898282,
    node_id: "MDM6Qm90NDE4OTgyODI=",
    avatar_url: "https://avatars.githubusercontent.com/in/15368?v=4",
    gravatar_id: "",
    url: "https://api.github.com/users/github-actions%5Bbot%5D",
    html_url: "https://github.com/apps/github-actions",
    followers_url:
        "https://api.github.com/users/github-actions%5Bbot%5D/followers",
    following_url:
        "https://api.github.com/users/github-actions%5Bbot%5D/following{/other_user}",
    gists_url:
        "https://api.github.com/users/github-actions%5Bbot%5D/gists{/gist_id}",
    starred_url:
        "https://api.github.com/users/github-actions%5Bbot%5D/starred{/owner}{/repo}",
    subscriptions_url:
        "https://api.github.com/users/github-actions%5Bbot%5D/subscriptions",
    organizations_url:
        "https://api.github.com/users/github-actions%5Bbot%5D/orgs",
    repos_url: "https://api.github.com/users/github-actions%5Bbot%5D/repos",
    events_url:
        "https://api.github.com/users/github-actions%5Bbot%5D/events{/privacy}",
    received_events_url:
        "https://api.github.com/users/github-actions%5Bbot%5D/received_events",
    type: "Bot",
    user_view_type: "public",
    site_admin: false,
}
// one body line as JSON text, and what it decodes to
const BODY_LINE =
    '### Fix \\"quoted\\" \\\\path\\\\to\\tfile módulo ü 😀 \\u00e9\\ud83d\\ude00 ok\\r\\n'
const BODY_TEXT = '### Fix "quoted" \\path\\to\tfile módulo ü 😀 é😀 ok\r\n'

function asset(k: number) {
    return {
        url: `https://api.github.com/repos/acme/fw/releases/assets/1000${k}`,
        id: 1000 + k,
        node_id: "RA_kwDOJxyzabc4AAAAAAAA",
        name: `fw-esp32s3-${k}.bin`,
        label: "",
        uploader: USER,
        content_type: "application/octet-stream",
        state: "uploaded",
        size: 1500000 + k,
        download_count: 42,
        created_at: "2024-05-01T10:00:00Z",
        updated_at: "2024-05-01T10:00:05Z",
        browser_download_url: `https://github.com/acme/fw/releases/download/v1.2.3/fw-esp32s3-${k}.bin`,
    }
}

class ReleaseDoc {
    private step = 0
    private line = 0
    constructor(
        private assets: number,
        private bodyLines: number,
        private pretty: boolean
    ) {}
    private json(o: any) {
        return this.pretty ? JSON.stringify(o, null, 2) : JSON.stringify(o)
    }
    /** next piece of JSON text, or null at the end */
    next(): string {
        const s = this.step
        if (s === 0) {
            this.step++
            return (
                '{"url":"https://api.github.com/repos/acme/fw/releases/123456789",' +
                '"html_url":"https://github.com/acme/fw/releases/tag/v1.2.3",' +
                '"id":123456789,"author":' +
                this.json(USER) +
                ',"tag_name":"v1.2.3","target_commitish":"main","name":"Firmware 1.2.3",' +
                '"draft":false,"prerelease":false,"created_at":"2024-05-01T10:00:00Z",' +
                '"assets":['
            )
        }
        if (s <= this.assets) {
            this.step++
            return (s > 1 ? ",\n" : "\n") + this.json(asset(s - 1))
        }
        if (s === this.assets + 1) {
            this.step++
            return '],"tarball_url":null,"body":"'
        }
        if (this.line < this.bodyLines) {
            this.line++
            return BODY_LINE
        }
        if (s === this.assets + 2) {
            this.step++
            return '","reactions":{"+1":3,"heart":1,"total_count":4},"mentions_count":-1.5e2}\n'
        }
        return null
    }
}

// cheap summary of everything reported (the callback runs inside write())
class Digest {
    count = 0
    pathChars = 0
    strChars = 0
    numSum = 0
    trues = 0
    nulls = 0
    ends = 0
    tag: string
    body: string
    lastName: string
    lastLogin: string
    lastSize: number
    value(p: string, v: JsonScalar) {
        this.count++
        this.pathChars += p.length
        if (typeof v === "string") {
            this.strChars += v.length
            if (p === "tag_name") this.tag = v
            else if (p === "body") this.body = v
            else if (p.endsWith(".name")) this.lastName = v
            else if (p.endsWith(".login")) this.lastLogin = v
        } else if (typeof v === "number") {
            this.numSum += v
            if (p.endsWith(".size")) this.lastSize = v
        } else if (v === true) this.trues++
        else if (v === null) this.nulls++
    }
    summary() {
        // (a template with more than ~8 values crashes the compiler)
        const a = `${this.count}/${this.pathChars}/${this.strChars}/${this.numSum}`
        const b = `${this.trues}/${this.nulls}/${this.ends}/${this.tag}`
        return `${a}/${b}/${this.lastName}/${this.lastLogin}/${this.lastSize}`
    }
}

/** Feeds `doc` in chunks of `size` bytes, awaiting now and then (opcode budget). */
async function feed(doc: ReleaseDoc, size: number, options?: JsonStreamOptions) {
    const d = new Digest()
    const o: JsonStreamOptions = options || {}
    o.onEnd = () => {
        d.ends++
    }
    const js = new JsonStream((p, v) => d.value(p, v), o)
    let pending = Buffer.alloc(0)
    let budget = 0
    for (;;) {
        const piece = doc.next()
        if (piece === null) break
        const b = Buffer.concat(pending, Buffer.from(piece))
        let i = 0
        for (; i + size <= b.length; i += size) {
            js.write(b.slice(i, i + size))
            budget += 200 + 40 * size
            if (budget > 50000) {
                budget = 0
                await ds.sleep(0)
            }
        }
        pending = b.slice(i, b.length)
    }
    if (pending.length) js.write(pending)
    js.end()
    return { d, bytes: js.bytes }
}

describe("jsonstream", () => {
    test("values and paths of a small document", async () => {
        const ends: string[] = []
        const got: string[] = []
        const js = new JsonStream((p, v) => got.push(`${p}=${v}`), {
            onEnd: p => ends.push(p),
        })
        js.write(
            Buffer.from(
                '{"tag_name":"v1.0.0","draft":false,"n":null,"assets":[{"name":"a.bin","size":12},' +
                    '{"name":"b","uploader":{"login":"me"}}],"e":[],"o":{},"x":[[1,2],[true]]}'
            )
        )
        js.end()
        expect(got.join(";")).toBe(
            "tag_name=v1.0.0;draft=false;n=null;assets.0.name=a.bin;assets.0.size=12;" +
                "assets.1.name=b;assets.1.uploader.login=me;x.0.0=1;x.0.1=2;x.1.0=true"
        )
        expect(ends.join(";")).toBe(
            "assets.0;assets.1.uploader;assets.1;assets;e;o;x.0;x.1;x;"
        )
        expect(js.bytes).toBe(154)
    })
    test("top-level scalars and whitespace", async () => {
        expect(await parse(" 42 ")).toBe("=42")
        expect(await parse('"hi"')).toBe("='hi'")
        expect(await parse("true")).toBe("=true")
        expect(await parse("null\n")).toBe("=null")
        expect(await parse(" \t\r\n{ \"a\" :\n [ 1 , -0.5e-2 ,1E3 ] }\r\n")).toBe(
            "a.0=1;a.1=-0.005;a.2=1000"
        )
        expect(await parse("[]")).toBe("")
        expect(await parse('{"":1,"a.b":2}')).toBe("=1;a.b=2")
    })
    test("numbers", async () => {
        expect(
            await parse("[0,-0,123456789012,3.25,1e2,2E-2,1.5e+3,-7,0.5,1e05,-0.0]")
        ).toBe(
            "0=0;1=0;2=123456789012;3=3.25;4=100;5=0.02;6=1500;7=-7;8=0.5;9=100000;10=0"
        )
        expect(await parse("1234", 1)).toBe("=1234")
    })
    test("escapes, surrogate pairs and UTF-8 split at every byte", async () => {
        const text =
            '["a\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti","\\u00e9\\u20AC\\ud83d\\ude00","é€😀x","\\ud800x","\\udc00"]'
        const want =
            "0='a\"b\\c/d" +
            String.fromCharCode(8) +
            "e" +
            String.fromCharCode(12) +
            "f\ng\rh\ti';1='é€😀';2='é€😀x';3='\ufffdx';4='\ufffd'"
        expect(await parse(text)).toBe(want)
        expect(await parse(text, 1)).toBe(want)
        expect(await parse(text, 2)).toBe(want)
        expect(await parse(text, 3)).toBe(want)
        expect(await parse("\"\\ud83d\\ude00\"", 1)).toBe("='😀'")
    })
    test("long strings and keys are truncated", async () => {
        let long = ""
        for (let i = 0; i < 40; i++) long += "0123456789"
        expect(await parse(`{"s":"${long}"}`, 1 << 20, { maxString: 5 })).toBe(
            "s='01234'"
        )
        expect(await parse(`{"${long}":1}`)).toBe(`${long.slice(0, 64)}=1`)
        // truncation never cuts a character: 3 x 4-byte characters
        expect(await parse('"😀😀😀😀"', 1, { maxString: 3 })).toBe("='😀😀😀'")
        expect(await parse('"\\ud83d\\ude00😀é"', 1, { maxString: 2 })).toBe(
            "='😀😀'"
        )
        expect((await parse(`"${long}"`, 7)).length).toBe(256 + 3)
    })
    test("malformed input throws with a position", async () => {
        let long = ""
        for (let i = 0; i < 10; i++) long += "0123456789"
        const cases = [
            ["{} x", "trailing garbage at byte 3"],
            ["1 2", "trailing garbage at byte 2"],
            ["[1 2]", "expected ',' or ']' at byte 3"],
            ["[1}", "expected ',' or ']' at byte 2"],
            ['{"a" 1}', "expected ':' at byte 5"],
            ['{"a":1 "b":2}', "expected ',' or '}' at byte 7"],
            ["{1:2}", "expected key at byte 1"],
            ['{"a":1,}', "expected key at byte 7"],
            ["[1,]", "unexpected character at byte 3"],
            ["x", "unexpected character at byte 0"],
            ["[.5]", "unexpected character at byte 1"],
            ["[1]\u0001", "unexpected character at byte 3"],
            ['"abc', "unterminated string at byte 4"],
            ['"abc\\', "unterminated string at byte 5"],
            ['"\\u12', "unterminated string at byte 5"],
            ['{"a":tru}', "bad literal at byte 8"],
            ["nul", "bad literal at byte 3"],
            ["[nulL]", "bad literal at byte 4"],
            ["01", "bad number at byte 0"],
            ["[1.]", "bad number at byte 1"],
            ["-", "bad number at byte 0"],
            ["[1e]", "bad number at byte 1"],
            ["[0,1-2]", "bad number at byte 3"],
            ["[-01]", "bad number at byte 1"],
            ["00", "bad number at byte 0"],
            ["1.e5", "bad number at byte 0"],
            ["-.5", "bad number at byte 0"],
            ["[1..2]", "bad number at byte 1"],
            ["1e5e5", "bad number at byte 0"],
            ["1e+", "bad number at byte 0"],
            ['"a\\x"', "bad escape at byte 3"],
            ['"\\u12g4"', "bad \\u escape at byte 5"],
            ['["ab\ncd"]', "control character in string at byte 4"],
            [`"${long}\t${long}"`, "control character in string at byte 101"],
            ["", "unexpected end of input at byte 0"],
            ['{"a":[1', "unexpected end of input at byte 7"],
            ['{"a"', "unexpected end of input at byte 4"],
        ]
        for (const c of cases) {
            const text = c[0]
            const msg = c[1]
            expect(await parseError(text)).toBe("json: " + msg)
            // the same error wherever the input is split
            expect(await parseError(text, 1)).toBe("json: " + msg)
            await ds.sleep(0)
        }
        expect(await parseError("[[[[1]]]]", 1 << 20, { maxDepth: 3 })).toBe(
            "json: too deep at byte 3"
        )
        expect(await parse("[[[1]]]", 1 << 20, { maxDepth: 3 })).toBe("0.0.0=1")
    })
    test("release JSON gives identical results for any chunking", async () => {
        let ref: string = null
        for (const size of [1, 7, 100, 1000, 2000]) {
            const r = await feed(new ReleaseDoc(6, 200, size === 7), size)
            const s = r.d.summary()
            if (ref === null) ref = s
            expect(s).toBe(ref)
            expect(r.d.tag).toBe("v1.2.3")
            expect(r.d.lastName).toBe("fw-esp32s3-5.bin")
            expect(r.d.lastLogin).toBe("github-actions[bot]")
            expect(r.d.lastSize).toBe(1500005)
            let body = ""
            while (body.length < 256) body += BODY_TEXT
            expect(r.d.body).toBe(body.slice(0, 256))
            console.log(`    chunk ${size}: ${r.bytes} bytes, ${s}`)
        }
    })
    test("200 assets in bounded memory", async () => {
        const t0 = ds.millis()
        const r = await feed(new ReleaseDoc(200, 100, false), 1000)
        expect(r.d.lastName).toBe("fw-esp32s3-199.bin")
        expect(r.d.ends).toBe(200 * 2 + 4)
        console.log(`    ${r.bytes} bytes in ${ds.millis() - t0} ms`)
    })
})
