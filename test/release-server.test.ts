import * as assert from "node:assert/strict"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { spawn } from "node:child_process"
import { startReleaseServer, writeRelease, ReleaseServer } from "../tools/release-server"

const UA = { "user-agent": "release-server-test" }
const GOOD = { ...UA, authorization: "Bearer good" }
const OCTET = { ...GOOD, accept: "application/octet-stream" }

/** Deterministic pseudo-random firmware so byte checks mean something. */
function firmware(size: number): Buffer {
    const out = Buffer.alloc(size)
    let x = 12345
    for (let i = 0; i < size; i++) {
        x = (x * 1103515245 + 12345) >>> 0
        out[i] = x >>> 24
    }
    return out
}

const FW = firmware(100_000)
const sha = (b: Buffer) => crypto.createHash("sha256").update(b).digest("hex")

function makeDir(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "release-server-"))
    const bin = (v: string) => [{ name: "firmware.bin", data: v === "v1.2.0" ? FW : Buffer.from(v) }]
    writeRelease(dir, "acme", "fw", "v1.0.0", { assets: bin("v1.0.0"), publishedAt: "2025-01-01T00:00:00Z" })
    writeRelease(dir, "acme", "fw", "v1.2.0", {
        assets: [...bin("v1.2.0"), { name: "notes.json", data: Buffer.from("{}"), contentType: "application/json" }],
        body: "stable",
        publishedAt: "2025-03-01T00:00:00Z",
    })
    writeRelease(dir, "acme", "fw", "v1.3.0-rc1", { assets: bin("rc"), prerelease: true, publishedAt: "2025-04-01T00:00:00Z" })
    writeRelease(dir, "acme", "fw", "v2.0.0", { assets: bin("draft"), draft: true, createdAt: "2025-05-01T00:00:00Z" })
    // Same timestamp as v1.2.0 would tie; older one here keeps "latest" unambiguous.
    writeRelease(dir, "acme", "fw", "v1.1.0", { assets: bin("v1.1.0"), publishedAt: "2025-02-01T00:00:00Z" })
    writeRelease(dir, "acme", "open", "v0.1.0", { assets: bin("open"), private: false, publishedAt: "2025-01-01T00:00:00Z" })
    writeRelease(dir, "acme", "other", "v9.0.0", { assets: bin("other"), publishedAt: "2025-01-01T00:00:00Z" })
    return dir
}

describe("release-server", function () {
    let dir: string
    let srv: ReleaseServer
    let clock = Date.now()

    before(async () => {
        dir = makeDir()
        srv = await startReleaseServer({
            dir,
            tokens: { good: "*", limited: ["acme/other"] },
            urlTtlSeconds: 1,
            now: () => clock,
        })
    })
    after(async () => {
        await srv.close()
        fs.rmSync(dir, { recursive: true, force: true })
    })
    beforeEach(() => {
        clock = Date.now()
    })

    const api = (p: string, headers: Record<string, string> = GOOD, init: RequestInit = {}) =>
        fetch(srv.apiUrl + p, { headers, redirect: "manual", ...init })

    async function assetUrl(name = "firmware.bin"): Promise<string> {
        const rel: any = await (await api("/repos/acme/fw/releases/tags/v1.2.0")).json()
        return rel.assets.find((a: any) => a.name === name).url
    }
    async function signedUrl(): Promise<string> {
        const r = await api(new URL(await assetUrl()).pathname, OCTET)
        assert.equal(r.status, 302)
        return r.headers.get("location")!
    }

    it("serves on two loopback ports", () => {
        assert.match(srv.apiUrl, /^http:\/\/127\.0\.0\.1:\d+$/)
        assert.match(srv.storageUrl, /^http:\/\/127\.0\.0\.1:\d+$/)
        assert.notEqual(srv.apiUrl, srv.storageUrl)
    })

    it("latest is the newest non-draft, non-prerelease release", async () => {
        const r = await api("/repos/acme/fw/releases/latest")
        assert.equal(r.status, 200)
        const j: any = await r.json()
        assert.equal(j.tag_name, "v1.2.0")
        assert.equal(j.prerelease, false)
        assert.equal(j.draft, false)
    })

    it("latest falls back to tag order when timestamps tie", async () => {
        const d = fs.mkdtempSync(path.join(os.tmpdir(), "release-server-tie-"))
        const at = "2025-01-01T00:00:00Z"
        for (const tag of ["v1.9.0", "v1.10.0", "v1.2.0"])
            writeRelease(d, "o", "r", tag, { assets: [], publishedAt: at, private: false })
        const s = await startReleaseServer({ dir: d })
        try {
            const j: any = await (await fetch(s.apiUrl + "/repos/o/r/releases/latest", { headers: UA })).json()
            assert.equal(j.tag_name, "v1.10.0")
        } finally {
            await s.close()
            fs.rmSync(d, { recursive: true, force: true })
        }
    })

    it("lists releases newest first, hides drafts, paginates with a link header", async () => {
        const all: any[] = await (await api("/repos/acme/fw/releases")).json()
        assert.deepEqual(
            all.map(r => r.tag_name),
            ["v1.3.0-rc1", "v1.2.0", "v1.1.0", "v1.0.0"],
        )
        const p1 = await api("/repos/acme/fw/releases?per_page=3")
        const link = p1.headers.get("link")!
        assert.match(link, /[?&]page=2>; rel="next"/)
        assert.match(link, /rel="last"/)
        assert.equal(((await p1.json()) as any[]).length, 3)
        const next = /<([^>]+)>; rel="next"/.exec(link)![1]
        const p2 = await fetch(next, { headers: GOOD })
        assert.deepEqual(
            ((await p2.json()) as any[]).map(r => r.tag_name),
            ["v1.0.0"],
        )
        assert.doesNotMatch(p2.headers.get("link")!, /rel="next"/)
    })

    it("finds releases by tag and by id; drafts are not visible", async () => {
        const byTag: any = await (await api("/repos/acme/fw/releases/tags/v1.2.0")).json()
        const byId: any = await (await api(`/repos/acme/fw/releases/${byTag.id}`)).json()
        assert.equal(byId.tag_name, "v1.2.0")
        assert.equal((await api("/repos/acme/fw/releases/tags/v2.0.0")).status, 404)
        assert.equal((await api("/repos/acme/fw/releases/tags/nope")).status, 404)
    })

    it("ids are stable across restarts", async () => {
        const a: any = await (await api("/repos/acme/fw/releases/latest")).json()
        const s2 = await startReleaseServer({ dir, tokens: { good: "*" } })
        try {
            const b: any = await (await fetch(s2.apiUrl + "/repos/acme/fw/releases/latest", { headers: GOOD })).json()
            assert.equal(b.id, a.id)
            assert.equal(b.assets[0].id, a.assets[0].id)
        } finally {
            await s2.close()
        }
    })

    it("private repo: no token 404, unknown token 401, no access 404, good token 200", async () => {
        const p = "/repos/acme/fw/releases/latest"
        const none = await api(p, UA)
        assert.equal(none.status, 404)
        assert.equal(((await none.json()) as any).message, "Not Found")
        const bad = await api(p, { ...UA, authorization: "Bearer nope" })
        assert.equal(bad.status, 401)
        const badJson: any = await bad.json()
        assert.equal(badJson.message, "Bad credentials")
        assert.equal(badJson.status, "401")
        assert.ok(badJson.documentation_url)
        assert.equal((await api(p, { ...UA, authorization: "token limited" })).status, 404)
        assert.equal((await api("/repos/acme/other/releases/latest", { ...UA, authorization: "token limited" })).status, 200)
        assert.equal((await api(p)).status, 200)
    })

    it("public repo is readable without a token, at the anonymous rate limit", async () => {
        const r = await api("/repos/acme/open/releases/latest", UA)
        assert.equal(r.status, 200)
        assert.equal(r.headers.get("x-ratelimit-limit"), "60")
        assert.equal(r.headers.get("cache-control"), "public, max-age=60, s-maxage=60")
    })

    it("missing User-Agent -> 403 saying so", async () => {
        // fetch always adds a User-Agent, so use http.request.
        const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
            const req = http.request(srv.apiUrl + "/repos/acme/fw/releases/latest", { headers: { authorization: "Bearer good" } }, res => {
                let body = ""
                res.on("data", d => (body += d))
                res.on("end", () => resolve({ status: res.statusCode!, body }))
            })
            req.on("error", reject)
            req.end()
        })
        assert.equal(status, 403)
        assert.match(body, /User-Agent/)
    })

    it("release JSON has GitHub's fields, order, uploader and a digest matching the file", async () => {
        const r = await api("/repos/acme/fw/releases/tags/v1.2.0")
        assert.equal(r.headers.get("content-type"), "application/json; charset=utf-8")
        const text = await r.text()
        assert.equal(r.headers.get("content-length"), String(Buffer.byteLength(text)))
        assert.ok(!text.includes("\n"), "compact JSON")
        const j = JSON.parse(text)
        assert.deepEqual(Object.keys(j), [
            "url", "assets_url", "upload_url", "html_url", "id", "author", "node_id", "tag_name",
            "target_commitish", "name", "draft", "immutable", "prerelease", "created_at", "updated_at",
            "published_at", "assets", "tarball_url", "zipball_url", "body",
        ])
        assert.equal(j.immutable, false)
        assert.equal(j.body, "stable")
        assert.equal(j.published_at, "2025-03-01T00:00:00Z")
        const userKeys = [
            "login", "id", "node_id", "avatar_url", "gravatar_id", "url", "html_url", "followers_url",
            "following_url", "gists_url", "starred_url", "subscriptions_url", "organizations_url", "repos_url",
            "events_url", "received_events_url", "type", "user_view_type", "site_admin",
        ]
        assert.deepEqual(Object.keys(j.author), userKeys)
        const a = j.assets.find((x: any) => x.name === "firmware.bin")
        assert.deepEqual(Object.keys(a), [
            "url", "id", "node_id", "name", "label", "uploader", "content_type", "state", "size", "digest",
            "download_count", "created_at", "updated_at", "browser_download_url",
        ])
        assert.deepEqual(Object.keys(a.uploader), userKeys)
        assert.equal(a.state, "uploaded")
        assert.equal(a.size, FW.length)
        assert.equal(a.digest, `sha256:${sha(FW)}`)
        assert.equal(a.content_type, "application/octet-stream")
        assert.equal(a.url, `${srv.apiUrl}/repos/acme/fw/releases/assets/${a.id}`)
        assert.equal(j.assets.find((x: any) => x.name === "notes.json").content_type, "application/json")
    })

    it("sends GitHub's usual headers and rate-limit headers", async () => {
        const r = await api("/repos/acme/fw/releases/latest")
        for (const h of ["x-github-api-version-selected", "x-github-request-id", "vary", "cache-control", "x-ratelimit-reset"])
            assert.ok(r.headers.get(h), h)
        assert.equal(r.headers.get("server"), "github.com")
        assert.equal(r.headers.get("x-ratelimit-limit"), "5000")
        assert.equal(r.headers.get("x-ratelimit-resource"), "core")
        const used = +r.headers.get("x-ratelimit-used")!
        assert.equal(+r.headers.get("x-ratelimit-remaining")!, 5000 - used)
        const r2 = await api("/repos/acme/fw/releases/latest")
        assert.equal(+r2.headers.get("x-ratelimit-used")!, used + 1)
    })

    it("ETag + If-None-Match -> 304 without body, rate limit unchanged", async () => {
        const r = await api("/repos/acme/fw/releases/latest")
        const etag = r.headers.get("etag")!
        assert.match(etag, /^W\/"[0-9a-f]{64}"$/)
        const remaining = r.headers.get("x-ratelimit-remaining")
        const r304 = await api("/repos/acme/fw/releases/latest", { ...GOOD, "if-none-match": etag })
        assert.equal(r304.status, 304)
        assert.equal(await r304.text(), "")
        assert.equal(r304.headers.get("x-ratelimit-remaining"), remaining)
        assert.equal(r304.headers.get("etag"), etag)
        const after = await api("/repos/acme/fw/releases/latest")
        assert.equal(+after.headers.get("x-ratelimit-remaining")!, +remaining! - 1)
    })

    it("asset without octet-stream Accept -> asset JSON", async () => {
        const r = await api(new URL(await assetUrl()).pathname)
        assert.equal(r.status, 200)
        const j: any = await r.json()
        assert.equal(j.name, "firmware.bin")
        assert.equal(j.digest, `sha256:${sha(FW)}`)
    })

    it("asset with octet-stream -> 302 to the storage port with a long SAS query", async () => {
        const r = await api(new URL(await assetUrl()).pathname, OCTET)
        assert.equal(r.status, 302)
        assert.equal(r.headers.get("content-length"), "0")
        const loc = new URL(r.headers.get("location")!)
        assert.equal(loc.origin, srv.storageUrl)
        const q = loc.search.slice(1)
        assert.ok(q.length >= 850, `query length ${q.length}`)
        for (const k of ["sp", "sv", "se", "sr", "spr", "sig", "rscd", "rsct", "skoid"]) assert.ok(loc.searchParams.get(k), k)
        assert.equal(loc.searchParams.get("sp"), "r")
        assert.match(loc.searchParams.get("sig")!, /^[A-Za-z0-9_-]{20,}$/)
        assert.ok(r.headers.get("x-ratelimit-remaining"))
    })

    it("following the redirect without Authorization -> 200 exact bytes", async () => {
        // fetch drops Authorization on cross-origin redirects; check that it did.
        const r = await api(new URL(await assetUrl()).pathname, OCTET, { redirect: "follow" })
        assert.equal(r.status, 200)
        assert.equal(r.headers.get("content-type"), "application/octet-stream")
        assert.equal(r.headers.get("content-length"), String(FW.length))
        assert.equal(r.headers.get("accept-ranges"), "bytes")
        assert.ok(r.headers.get("etag"))
        assert.ok(r.headers.get("last-modified"))
        assert.ok(Buffer.from(await r.arrayBuffer()).equals(FW))
        const storage = srv.requests.filter(x => x.origin === "storage")
        assert.ok(storage.length > 0)
        assert.ok(storage.every(x => x.headers.authorization === undefined || x.status === 400))
    })

    it("storage request with Authorization -> 400 and recorded", async () => {
        const url = await signedUrl()
        const r = await fetch(url, { headers: { authorization: "Bearer good" } })
        assert.equal(r.status, 400)
        assert.match(await r.text(), /Only one auth mechanism allowed/)
        const rec = srv.requests.filter(x => x.origin === "storage" && x.headers.authorization !== undefined).pop()!
        assert.equal(rec.status, 400)
        assert.equal(rec.method, "GET")
    })

    it("Range a-b -> 206 with Content-Range and the bytes", async () => {
        const r = await fetch(await signedUrl(), { headers: { range: "bytes=1000-1999" } })
        assert.equal(r.status, 206)
        assert.equal(r.headers.get("content-range"), `bytes 1000-1999/${FW.length}`)
        assert.equal(r.headers.get("content-length"), "1000")
        assert.equal(r.headers.get("accept-ranges"), "bytes")
        assert.ok(Buffer.from(await r.arrayBuffer()).equals(FW.subarray(1000, 2000)))
    })

    it("open-ended, suffix and past-the-end ranges", async () => {
        const url = await signedUrl()
        const open = await fetch(url, { headers: { range: "bytes=99000-" } })
        assert.equal(open.status, 206)
        assert.equal(open.headers.get("content-range"), `bytes 99000-99999/${FW.length}`)
        assert.ok(Buffer.from(await open.arrayBuffer()).equals(FW.subarray(99000)))
        const suffix = await fetch(url, { headers: { range: "bytes=-10" } })
        assert.equal(suffix.status, 206)
        assert.equal(suffix.headers.get("content-range"), `bytes 99990-99999/${FW.length}`)
        assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(FW.subarray(-10)))
        const clamped = await fetch(url, { headers: { range: "bytes=99998-200000" } })
        assert.equal(clamped.status, 206)
        assert.equal(clamped.headers.get("content-range"), `bytes 99998-99999/${FW.length}`)
        assert.equal((await clamped.arrayBuffer()).byteLength, 2)
    })

    it("unsatisfiable range -> 416 with bytes */size", async () => {
        const r = await fetch(await signedUrl(), { headers: { range: `bytes=${FW.length}-` } })
        assert.equal(r.status, 416)
        assert.equal(r.headers.get("content-range"), `bytes */${FW.length}`)
        await r.arrayBuffer()
    })

    it("HEAD on storage gives headers without body", async () => {
        const r = await fetch(await signedUrl(), { method: "HEAD" })
        assert.equal(r.status, 200)
        assert.equal(r.headers.get("content-length"), String(FW.length))
        assert.equal((await r.arrayBuffer()).byteLength, 0)
    })

    it("tampered signature -> 403 AuthenticationFailed", async () => {
        const u = new URL(await signedUrl())
        const sig = u.searchParams.get("sig")!
        u.searchParams.set("sig", (sig[0] === "A" ? "B" : "A") + sig.slice(1))
        const r = await fetch(u)
        assert.equal(r.status, 403)
        assert.match(await r.text(), /<Code>AuthenticationFailed<\/Code>/)
        // A signed URL moved to another blob path fails too.
        const moved = new URL(await signedUrl())
        moved.pathname = moved.pathname.replace(/.$/, c => (c === "0" ? "1" : "0"))
        assert.equal((await fetch(moved)).status, 403)
        // No signature at all.
        assert.equal((await fetch(srv.storageUrl + new URL(await signedUrl()).pathname)).status, 403)
    })

    it("expired URL -> 403: forged se in the past, and ttl elapsed on the clock", async () => {
        const forged = new URL(await signedUrl())
        forged.searchParams.set("se", "2020-01-01T00:00:00Z")
        const r1 = await fetch(forged)
        assert.equal(r1.status, 403)
        assert.match(await r1.text(), /AuthenticationFailed/)

        const url = await signedUrl() // ttl is 1 s in this suite
        assert.equal((await fetch(url, { method: "HEAD" })).status, 200)
        clock += 2000 // the injected clock, instead of sleeping
        const r2 = await fetch(url)
        assert.equal(r2.status, 403)
        assert.match(await r2.text(), /time frame/)
    })

    it("unknown paths -> 404 JSON", async () => {
        for (const p of ["/nope", "/repos/acme/fw", "/repos/acme/missing/releases/latest", "/repos/acme/fw/releases/assets/1"]) {
            const r = await api(p)
            assert.equal(r.status, 404, p)
            assert.equal(((await r.json()) as any).message, "Not Found")
        }
    })

    it("browser_download_url works for public repos only", async () => {
        const pub: any = await (await api("/repos/acme/open/releases/latest", UA)).json()
        const r = await fetch(pub.assets[0].browser_download_url)
        assert.equal(r.status, 200)
        assert.equal(await r.text(), "open")
        const priv: any = await (await api("/repos/acme/fw/releases/latest")).json()
        assert.equal((await fetch(priv.assets[0].browser_download_url, { headers: GOOD, redirect: "manual" })).status, 404)
    })

    it("reuses one keep-alive connection for several requests (both origins)", async () => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
        const get = (url: string, headers: Record<string, string>) =>
            new Promise<{ status: number; socket: net.Socket; body: Buffer }>((resolve, reject) => {
                const req = http.get(url, { agent, headers }, res => {
                    const chunks: Buffer[] = []
                    res.on("data", c => chunks.push(c))
                    res.on("end", () => resolve({ status: res.statusCode!, socket: req.socket!, body: Buffer.concat(chunks) }))
                })
                req.on("error", reject)
            })
        try {
            const a = await get(srv.apiUrl + "/repos/acme/fw/releases/latest", GOOD)
            const b = await get(srv.apiUrl + "/repos/acme/fw/releases/latest", GOOD)
            assert.equal(a.status, 200)
            assert.equal(b.status, 200)
            assert.equal(a.socket, b.socket)
            const url = await signedUrl()
            const c = await get(url, { range: "bytes=0-9" })
            const d = await get(url, { range: "bytes=10-19" })
            assert.equal(c.status, 206)
            assert.equal(c.socket, d.socket)
            assert.ok(Buffer.concat([c.body, d.body]).equals(FW.subarray(0, 20)))
        } finally {
            agent.destroy()
        }
    })

    it("honours Connection: close", async () => {
        const port = +new URL(srv.apiUrl).port
        const text = await new Promise<string>((resolve, reject) => {
            const s = net.connect(port, "127.0.0.1", () => {
                s.write("GET /repos/acme/open/releases/latest HTTP/1.1\r\nHost: x\r\nUser-Agent: raw\r\nConnection: close\r\n\r\n")
            })
            let data = ""
            s.on("data", d => (data += d))
            s.on("end", () => resolve(data)) // the server closing is the point
            s.on("error", reject)
        })
        assert.match(text, /^HTTP\/1\.1 200/)
        assert.match(text, /\r\nconnection: close\r\n/i)
    })

    it("rate limit: 403 with remaining 0 when exhausted", async () => {
        const s = await startReleaseServer({ dir, rateLimit: { anonymous: 2 } })
        try {
            const get = () => fetch(s.apiUrl + "/repos/acme/open/releases/latest", { headers: UA })
            assert.equal((await get()).status, 200)
            assert.equal((await get()).status, 200)
            const r = await get()
            assert.equal(r.status, 403)
            assert.equal(r.headers.get("x-ratelimit-remaining"), "0")
            assert.match(((await r.json()) as any).message, /rate limit exceeded/)
        } finally {
            await s.close()
        }
    })

    it("faults.onRequest can take over a request", async () => {
        const s = await startReleaseServer({
            dir,
            faults: {
                onRequest: ({ origin, req, res }) => {
                    if (origin !== "api" || !req.url?.includes("latest")) return false
                    res.writeHead(503, { "content-length": "0" })
                    res.end()
                    return true
                },
            },
        })
        try {
            assert.equal((await fetch(s.apiUrl + "/repos/acme/open/releases/latest", { headers: UA })).status, 503)
            assert.equal((await fetch(s.apiUrl + "/repos/acme/open/releases", { headers: UA })).status, 200)
            assert.deepEqual(
                s.requests.map(r => r.status),
                [503, 200],
            )
        } finally {
            await s.close()
        }
    })

    it("close() returns even with idle keep-alive sockets open", async () => {
        const s = await startReleaseServer({ dir })
        const agent = new http.Agent({ keepAlive: true })
        await new Promise<void>(resolve => http.get(s.apiUrl + "/x", { agent, headers: UA }, res => res.resume().on("end", resolve)))
        await s.close()
        agent.destroy()
    })

    it("CLI starts, answers, never logs secrets, stops on SIGTERM", async function () {
        this.timeout(30_000)
        const cli = require.resolve("tsx/cli")
        const child = spawn(process.execPath, [cli, path.join(__dirname, "../tools/release-server.ts"), "--dir", dir, "--port", "0", "--token", "clitok=acme/fw"], {
            stdio: ["ignore", "pipe", "pipe"],
        })
        let out = ""
        child.stdout.on("data", d => (out += d))
        child.stderr.on("data", d => (out += d))
        const exited = new Promise<number | null>(resolve => child.on("exit", code => resolve(code)))
        try {
            const apiUrl = await new Promise<string>((resolve, reject) => {
                const t = setTimeout(() => reject(new Error("CLI did not start:\n" + out)), 20_000)
                child.stdout.on("data", () => {
                    // The curl example is the last startup line.
                    const m = /API: (http:\/\/\S+)[^]*Try: curl .*\n/.exec(out)
                    if (m) {
                        clearTimeout(t)
                        resolve(m[1])
                    }
                })
            })
            assert.match(out, /Storage: http:\/\/127\.0\.0\.1:\d+/)
            const rel: any = await (await fetch(apiUrl + "/repos/acme/fw/releases/latest", { headers: { ...UA, authorization: "Bearer clitok" } })).json()
            assert.equal(rel.tag_name, "v1.2.0")
            const r = await fetch(rel.assets[0].url, {
                headers: { ...UA, authorization: "Bearer clitok", accept: "application/octet-stream" },
            })
            assert.equal(r.status, 200)
            await r.arrayBuffer()
            await new Promise(res => setTimeout(res, 200)) // let log lines arrive
            assert.match(out, /api GET \/repos\/acme\/fw\/releases\/latest 200/)
            assert.match(out, /storage GET \/github-production-release-asset\/\S+ 200/)
            assert.doesNotMatch(out, /clitok/)
            assert.doesNotMatch(out, /sig=/)
        } finally {
            child.kill("SIGTERM")
        }
        assert.equal(await exited, 0)
    })

    it("CLI: bad args -> usage and exit 2", async function () {
        this.timeout(30_000)
        const child = spawn(process.execPath, [require.resolve("tsx/cli"), path.join(__dirname, "../tools/release-server.ts"), "--bogus"], {
            stdio: ["ignore", "pipe", "pipe"],
        })
        let err = ""
        child.stderr.on("data", d => (err += d))
        const code = await new Promise<number | null>(resolve => child.on("exit", c => resolve(c)))
        assert.equal(code, 2)
        assert.match(err, /usage:/)
    })
})
