import * as assert from "node:assert/strict"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { spawn } from "node:child_process"
import { startReleaseServer, writeRelease, ReleaseServer, FaultPlan } from "../tools/release-server"

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

    it("a fault plan given at start answers 5xx, then the server recovers (live object)", async () => {
        const s = await startReleaseServer({ dir, faults: { errors5xx: { origin: "api", status: 503, count: 1 } } })
        try {
            assert.equal((await fetch(s.apiUrl + "/repos/acme/open/releases/latest", { headers: UA })).status, 503)
            assert.equal((await fetch(s.apiUrl + "/repos/acme/open/releases", { headers: UA })).status, 200)
            assert.deepEqual(
                s.requests.map(r => r.status),
                [503, 200],
            )
            assert.equal(s.faults.errors5xx!.count, 0)
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
        const child = spawn(process.execPath, [cli, path.join(__dirname, "../tools/release-server/cli.ts"), "--dir", dir, "--port", "0", "--token", "clitok=acme/fw"], {
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
        const child = spawn(process.execPath, [require.resolve("tsx/cli"), path.join(__dirname, "../tools/release-server/cli.ts"), "--bogus"], {
            stdio: ["ignore", "pipe", "pipe"],
        })
        let err = ""
        child.stderr.on("data", d => (err += d))
        const code = await new Promise<number | null>(resolve => child.on("exit", c => resolve(c)))
        assert.equal(code, 2)
        assert.match(err, /usage:/)
    })
})

// ---------------------------------------------------------------------------
// Raw HTTP helpers for the framing faults: what exactly came over the socket.

interface RawResponse {
    /** every 'data' event, with its arrival time (ms since the request was written) */
    events: { at: number; bytes: number }[]
    data: Buffer
    head: string
    status: number
    headers: [string, string][]
    /** bytes after the head, as received (still chunk-framed when chunked) */
    rest: Buffer
    /** ms until the socket closed */
    ms: number
}

function header(r: RawResponse, name: string): string | undefined {
    return r.headers.find(([n]) => n.toLowerCase() === name)?.[1]
}

/** Sends one request with Connection: close and collects everything until the socket closes. */
function rawRequest(base: string, target: string, headers: Record<string, string> = {}, method = "GET", extraHead = ""): Promise<RawResponse> {
    const u = new URL(base)
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = []
        const events: { at: number; bytes: number }[] = []
        let t0 = 0
        const s = net.connect(+u.port, u.hostname, () => {
            let head = `${method} ${target} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: close\r\n`
            for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
            t0 = Date.now()
            s.write(head + extraHead + "\r\n")
        })
        s.on("data", d => {
            chunks.push(d)
            events.push({ at: Date.now() - t0, bytes: d.length })
        })
        s.on("error", () => {}) // a dropped connection may reset
        s.on("close", () => {
            const data = Buffer.concat(chunks)
            const i = data.indexOf("\r\n\r\n")
            if (i < 0) return resolve({ events, data, head: data.toString("latin1"), status: 0, headers: [], rest: Buffer.alloc(0), ms: Date.now() - t0 })
            const head = data.subarray(0, i).toString("latin1")
            const lines = head.split("\r\n")
            resolve({
                events,
                data,
                head,
                status: +lines[0].split(" ")[1],
                headers: lines.slice(1).map(l => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()] as [string, string]),
                rest: data.subarray(i + 4),
                ms: Date.now() - t0,
            })
        })
        setTimeout(() => reject(new Error("raw request timed out")), 20_000).unref()
    })
}

/** Decodes a chunked body; returns the payload, the chunk-size lines and the trailer lines. */
function dechunk(b: Buffer): { payload: Buffer; sizeLines: string[]; trailers: string[] } {
    const out: Buffer[] = []
    const sizeLines: string[] = []
    let i = 0
    for (;;) {
        const e = b.indexOf("\r\n", i)
        assert.ok(e >= 0, "chunk-size line")
        const line = b.subarray(i, e).toString("latin1")
        sizeLines.push(line)
        const n = parseInt(line.split(";")[0], 16)
        i = e + 2
        if (n === 0) break
        out.push(b.subarray(i, i + n))
        assert.equal(b.subarray(i + n, i + n + 2).toString(), "\r\n", "CRLF after chunk data")
        i += n + 2
    }
    const trailers = b.subarray(i).toString("latin1").split("\r\n")
    assert.deepEqual(trailers.slice(-2), ["", ""], "trailer section ends with an empty line")
    return { payload: Buffer.concat(out), sizeLines, trailers: trailers.slice(0, -2) }
}

describe("release-server fault plan", function () {
    let dir: string
    let srv: ReleaseServer
    const plan: FaultPlan = {}

    before(async () => {
        dir = makeDir()
        srv = await startReleaseServer({ dir, tokens: { good: "*" }, faults: plan })
    })
    after(async () => {
        await srv.close()
        fs.rmSync(dir, { recursive: true, force: true })
    })
    afterEach(() => {
        for (const k of Object.keys(plan)) delete (plan as any)[k]
    })

    const api = (p: string, headers: Record<string, string> = GOOD) => fetch(srv.apiUrl + p, { headers, redirect: "manual" })
    async function assetPath(): Promise<string> {
        const rel: any = await (await api("/repos/acme/fw/releases/tags/v1.2.0")).json()
        return new URL(rel.assets.find((a: any) => a.name === "firmware.bin").url).pathname
    }
    async function signedUrl(): Promise<string> {
        const r = await api(await assetPath(), OCTET)
        assert.equal(r.status, 302)
        return r.headers.get("location")!
    }
    const target = (u: string) => {
        const x = new URL(u)
        return x.pathname + x.search
    }

    it("server.faults is the live object passed in", () => {
        assert.equal(srv.faults, plan)
    })

    it("seed: the same seed gives the same chunk sizes, another seed others", async () => {
        plan.chunked = ["storage"]
        const url = target(await signedUrl())
        const sizes = async (seed: number) => {
            plan.seed = seed
            const r = await rawRequest(srv.storageUrl, url, { range: "bytes=0-9999" })
            return dechunk(r.rest).sizeLines
        }
        const a = await sizes(7)
        const a2 = await sizes(7) // the sequence runs on
        const b = await sizes(8) // a new seed restarts it
        assert.notDeepEqual(a2, a)
        assert.notDeepEqual(b, a)
        assert.deepEqual(await sizes(7), a)
    })

    it('segmenting "bytes": one byte per write, many small data events', async () => {
        const url = target(await signedUrl())
        plan.segmenting = "bytes"
        const r = await rawRequest(srv.storageUrl, url, { range: "bytes=0-299" })
        assert.equal(r.status, 206)
        assert.ok(r.rest.equals(FW.subarray(0, 300)))
        assert.ok(r.events.length > 200, `${r.events.length} data events`)
        assert.ok(Math.min(...r.events.map(e => e.bytes)) === 1)
    })

    it('segmenting "one": the whole response in one write', async () => {
        const url = target(await signedUrl())
        plan.segmenting = "one"
        const r = await rawRequest(srv.storageUrl, url, { range: "bytes=0-2999" })
        assert.equal(r.status, 206)
        assert.ok(r.rest.equals(FW.subarray(0, 3000)))
        assert.equal(r.events.length, 1)
    })

    it('segmenting "random": pieces of 1..1500 bytes, bytes intact', async () => {
        const url = target(await signedUrl())
        plan.segmenting = "random"
        plan.seed = 42
        const r = await rawRequest(srv.storageUrl, url, { range: "bytes=0-19999" })
        assert.equal(r.status, 206)
        assert.ok(r.rest.equals(FW.subarray(0, 20000)))
        assert.ok(r.events.length >= 14, `${r.events.length} data events`)
        assert.ok(Math.max(...r.events.map(e => e.bytes)) <= 1500 * 2) // the reader may merge two
    })

    it("headerBloat: head over 8 KB, exact line sizes, 1,912-byte Location that still works", async () => {
        const p = await assetPath()
        plan.headerBloat = { origins: ["api", "storage"] }
        const r = await rawRequest(srv.apiUrl, p, OCTET)
        assert.equal(r.status, 302)
        assert.ok(r.head.length + 4 > 8192, `head ${r.head.length}`)
        const lines = r.head.split("\r\n")
        assert.equal(lines.filter(l => /^content-security-policy:/i.test(l)).map(l => l.length).join(), "3600")
        assert.equal(lines.filter(l => /^link:/i.test(l)).map(l => l.length).join(), "1500")
        const bloat = lines.filter(l => /^x-bloat-\d\d:/.test(l))
        assert.equal(bloat.length, 30)
        assert.ok(bloat.every(l => l.length === 40))
        const loc = header(r, "location")!
        assert.equal(loc.length, 1912)
        const st = await rawRequest(srv.storageUrl, target(loc), { range: "bytes=0-9" })
        assert.equal(st.status, 206)
        assert.ok(st.rest.equals(FW.subarray(0, 10)))
        assert.ok(st.head.length > 6500)
        // the API's pagination links stay first in the padded Link line
        const list = await rawRequest(srv.apiUrl, "/repos/acme/fw/releases?per_page=1", GOOD)
        assert.match(header(list, "link")!, /^<[^>]+page=2>; rel="next"/)
    })

    it("hugeHeader: one header line of exactly `bytes` bytes", async () => {
        const url = target(await signedUrl())
        plan.hugeHeader = { origin: "storage", bytes: 20_000 }
        const r = await rawRequest(srv.storageUrl, url, { range: "bytes=0-9" })
        const huge = r.head.split("\r\n").filter(l => l.startsWith("x-huge-header:"))
        assert.deepEqual(huge.map(l => l.length), [20_000])
        assert.ok(r.rest.equals(FW.subarray(0, 10)))
        // the API is untouched
        assert.ok(!(await rawRequest(srv.apiUrl, "/repos/acme/open/releases/latest", UA)).head.includes("x-huge-header"))
    })

    it("chunked: Transfer-Encoding chunked with extensions, varying sizes and a checksum trailer", async () => {
        const url = target(await signedUrl())
        plan.chunked = ["storage", "api"]
        const r = await rawRequest(srv.storageUrl, url, { range: "bytes=1000-20999" })
        assert.equal(r.status, 206)
        assert.equal(header(r, "transfer-encoding"), "chunked")
        assert.equal(header(r, "content-length"), undefined)
        assert.equal(header(r, "trailer"), "X-Checksum")
        const { payload, sizeLines, trailers } = dechunk(r.rest)
        assert.ok(payload.equals(FW.subarray(1000, 21000)))
        assert.ok(sizeLines.some(l => l.endsWith(";ext=1")), "chunk extensions")
        assert.ok(sizeLines.some(l => !l.includes(";")), "plain chunk-size lines too")
        assert.ok(new Set(sizeLines.slice(0, -1).map(l => l.split(";")[0])).size > 2, "sizes vary")
        assert.deepEqual(trailers, [`X-Checksum: sha256=${sha(payload)}`])
        // fetch decodes it: the API JSON still parses
        const j: any = await (await api("/repos/acme/fw/releases/latest")).json()
        assert.equal(j.tag_name, "v1.2.0")
    })

    it("drops: closes right after the promised asset byte, once", async () => {
        const url = target(await signedUrl())
        plan.drops = [{ origin: "storage", at: 5000 }]
        const r = await rawRequest(srv.storageUrl, url, { range: "bytes=4096-8191" })
        assert.equal(r.status, 206)
        assert.equal(header(r, "content-length"), "4096")
        assert.equal(r.rest.length, 5000 - 4096 + 1)
        assert.ok(r.rest.equals(FW.subarray(4096, 5001)))
        assert.deepEqual(plan.drops, [])
        const again = await rawRequest(srv.storageUrl, url, { range: "bytes=4096-8191" })
        assert.ok(again.rest.equals(FW.subarray(4096, 8192)))
        // a drop whose offset a response does not cover stays armed
        plan.drops = [{ origin: "storage", at: 50_000 }]
        assert.equal((await rawRequest(srv.storageUrl, url, { range: "bytes=0-99" })).rest.length, 100)
        assert.equal(plan.drops.length, 1)
        // API: after `at` body bytes
        plan.drops = [{ origin: "api", at: 100 }]
        const a = await rawRequest(srv.apiUrl, "/repos/acme/open/releases/latest", UA)
        assert.equal(a.status, 200)
        assert.equal(a.rest.length, 100)
        assert.ok(+header(a, "content-length")! > 100)
        const rec = srv.requests[srv.requests.length - 1]
        assert.equal(rec.status, 200) // the head went out
    })

    it("stalls: a pause at an asset offset, and a first-byte stall; each once", async () => {
        const url = target(await signedUrl())
        plan.stalls = [{ origin: "storage", at: 4500, ms: 300 }]
        const r = await rawRequest(srv.storageUrl, url, { range: "bytes=4096-8191" })
        assert.ok(r.rest.equals(FW.subarray(4096, 8192)))
        // the longest silence is the stall, and it comes right before asset byte 4500
        let gap = 0
        let before = 0
        for (let i = 1, sum = r.events[0].bytes; i < r.events.length; sum += r.events[i].bytes, i++)
            if (r.events[i].at - r.events[i - 1].at > gap) [gap, before] = [r.events[i].at - r.events[i - 1].at, sum]
        assert.ok(gap >= 250, `gap ${gap}`)
        assert.equal(before, r.head.length + 4 + (4500 - 4096))
        assert.deepEqual(plan.stalls, [])

        plan.stalls = [{ origin: "api", at: -1, ms: 300 }]
        const a = await rawRequest(srv.apiUrl, "/repos/acme/open/releases/latest", UA)
        assert.equal(a.status, 200)
        assert.ok(a.events[0].at >= 250, `first byte after ${a.events[0].at} ms`)
        const b = await rawRequest(srv.apiUrl, "/repos/acme/open/releases/latest", UA)
        assert.ok(b.events[0].at < 250)

        // A client that leaves during a first-byte stall: recorded with status 0.
        plan.stalls = [{ origin: "api", at: -1, ms: 10_000 }]
        const n = srv.requests.length
        const u = new URL(srv.apiUrl)
        await new Promise<void>(resolve => {
            const s = net.connect(+u.port, u.hostname, () => {
                s.write("GET /repos/acme/open/releases/latest HTTP/1.1\r\nHost: x\r\nUser-Agent: raw\r\n\r\n")
                setTimeout(() => s.destroy(), 100)
            })
            s.on("close", () => resolve())
        })
        await new Promise(r => setTimeout(r, 50))
        assert.deepEqual(
            srv.requests.slice(n).map(r => r.status),
            [0],
        )
    })

    it("errors5xx: the next `count` requests on that origin get the status", async () => {
        const url = await signedUrl()
        plan.errors5xx = { origin: "storage", status: 502, count: 2 }
        const r1 = await fetch(url, { headers: { range: "bytes=0-9" } })
        assert.equal(r1.status, 502)
        assert.match(await r1.text(), /<Error>/)
        assert.equal((await fetch(url, { headers: { range: "bytes=0-9" } })).status, 502)
        assert.equal((await api("/repos/acme/open/releases/latest", UA)).status, 200) // other origin untouched
        const ok = await fetch(url, { headers: { range: "bytes=0-9" } })
        assert.equal(ok.status, 206)
        await ok.arrayBuffer()
        plan.errors5xx = { origin: "api", status: 500, count: 1 }
        const a = await api("/repos/acme/open/releases/latest", UA)
        assert.equal(a.status, 500)
        assert.equal(((await a.json()) as any).message, "Internal Server Error")
    })

    it("rateLimit: 403 by default, or 429 with retry-after, then normal again", async () => {
        const t = Math.floor(Date.now() / 1000)
        plan.rateLimit = { count: 1 }
        const r = await api("/repos/acme/fw/releases/latest")
        assert.equal(r.status, 403)
        assert.equal(r.headers.get("x-ratelimit-remaining"), "0")
        assert.ok(Math.abs(+r.headers.get("x-ratelimit-reset")! - (t + 60)) <= 2)
        assert.equal(r.headers.get("retry-after"), null)
        assert.match(((await r.json()) as any).message, /^API rate limit exceeded for user ID 1\.$/)
        plan.rateLimit = { count: 2, status: 429, retryAfter: 7, resetInSeconds: 120 }
        for (let i = 0; i < 2; i++) {
            const q = await api("/repos/acme/fw/releases/latest")
            assert.equal(q.status, 429)
            assert.equal(q.headers.get("retry-after"), "7")
            assert.ok(Math.abs(+q.headers.get("x-ratelimit-reset")! - (t + 120)) <= 2)
            await q.arrayBuffer()
        }
        assert.equal(plan.rateLimit.count, 0)
        assert.equal((await api("/repos/acme/fw/releases/latest")).status, 200)
    })

    it("expireSignedUrls: URLs handed out before are expired, new ones work", async () => {
        const old = await signedUrl()
        assert.equal((await fetch(old, { method: "HEAD" })).status, 200)
        plan.expireSignedUrls = true
        const r = await fetch(old)
        assert.equal(r.status, 403)
        assert.match(await r.text(), /AuthenticationFailed[^]*time frame/)
        const fresh = await signedUrl()
        assert.equal((await fetch(fresh, { method: "HEAD" })).status, 200)
        plan.expireSignedUrls = false
        assert.equal((await fetch(old, { method: "HEAD" })).status, 200)
    })

    it("ignoreRange: 200 with the whole asset", async () => {
        plan.ignoreRange = true
        const r = await fetch(await signedUrl(), { headers: { range: "bytes=0-9" } })
        assert.equal(r.status, 200)
        assert.equal(r.headers.get("content-range"), null)
        assert.equal(r.headers.get("content-length"), String(FW.length))
        assert.ok(Buffer.from(await r.arrayBuffer()).equals(FW))
    })

    it('wrongContentRange "start": starts one byte later, with those bytes', async () => {
        plan.wrongContentRange = "start"
        const r = await fetch(await signedUrl(), { headers: { range: "bytes=100-199" } })
        assert.equal(r.status, 206)
        assert.equal(r.headers.get("content-range"), `bytes 101-199/${FW.length}`)
        assert.ok(Buffer.from(await r.arrayBuffer()).equals(FW.subarray(101, 200)))
    })

    it('wrongContentRange "total": size + 1 as the total', async () => {
        plan.wrongContentRange = "total"
        const r = await fetch(await signedUrl(), { headers: { range: "bytes=100-199" } })
        assert.equal(r.headers.get("content-range"), `bytes 100-199/${FW.length + 1}`)
        assert.ok(Buffer.from(await r.arrayBuffer()).equals(FW.subarray(100, 200)))
    })

    it("status416: every Range request is answered 416", async () => {
        const url = await signedUrl()
        plan.status416 = true
        const r = await fetch(url, { headers: { range: "bytes=0-9" } })
        assert.equal(r.status, 416)
        assert.equal(r.headers.get("content-range"), `bytes */${FW.length}`)
        await r.arrayBuffer()
        const whole = await fetch(url)
        assert.equal(whole.status, 200) // no Range: served
        await whole.arrayBuffer()
    })

    it("htmlInsteadOfAsset: 200 text/html with a Content-Length", async () => {
        plan.htmlInsteadOfAsset = true
        const r = await fetch(await signedUrl(), { headers: { range: "bytes=0-9" } })
        assert.equal(r.status, 200)
        assert.match(r.headers.get("content-type")!, /^text\/html/)
        const text = await r.text()
        assert.equal(r.headers.get("content-length"), String(Buffer.byteLength(text)))
        assert.match(text, /^<!DOCTYPE html>/)
    })

    it("rejectAuthorization: 401 Bad credentials to everything", async () => {
        plan.rejectAuthorization = true
        for (const [p, h] of [["/repos/acme/fw/releases/latest", GOOD], ["/repos/acme/open/releases/latest", UA]] as const) {
            const r = await api(p, h)
            assert.equal(r.status, 401)
            assert.equal(((await r.json()) as any).message, "Bad credentials")
        }
    })

    it("truncate: normal Content-Length, closed after `at` body bytes, once", async () => {
        plan.truncate = { origin: "api", at: 50 }
        const r = await rawRequest(srv.apiUrl, "/repos/acme/open/releases/latest", UA)
        assert.equal(r.status, 200)
        const len = +header(r, "content-length")!
        assert.ok(len > 50)
        assert.equal(r.rest.length, 50)
        assert.equal(plan.truncate, undefined)
        assert.equal((await rawRequest(srv.apiUrl, "/repos/acme/open/releases/latest", UA)).rest.length, len)
        const url = target(await signedUrl())
        plan.truncate = { origin: "storage", at: 10 }
        const s = await rawRequest(srv.storageUrl, url, { range: "bytes=500-599" })
        assert.equal(header(s, "content-length"), "100")
        assert.ok(s.rest.equals(FW.subarray(500, 510)))
    })

    it("corruptAt: flips that asset byte in every response that carries it", async () => {
        const url = await signedUrl()
        plan.corruptAt = 5000
        for (let i = 0; i < 2; i++) {
            const r = Buffer.from(await (await fetch(url, { headers: { range: "bytes=4096-8191" } })).arrayBuffer())
            assert.equal(r[5000 - 4096], FW[5000] ^ 0xff)
            r[5000 - 4096] ^= 0xff
            assert.ok(r.equals(FW.subarray(4096, 8192)))
        }
        const other = Buffer.from(await (await fetch(url, { headers: { range: "bytes=0-4095" } })).arrayBuffer())
        assert.ok(other.equals(FW.subarray(0, 4096)))
    })

    it("latestBody: raw text answered to releases/latest", async () => {
        plan.latestBody = '{"tag_name":"v9",,]'
        const r = await api("/repos/acme/fw/releases/latest")
        assert.equal(r.status, 200)
        assert.equal(r.headers.get("content-type"), "application/json; charset=utf-8")
        assert.equal(await r.text(), '{"tag_name":"v9",,]')
        const tag: any = await (await api("/repos/acme/fw/releases/tags/v1.2.0")).json()
        assert.equal(tag.tag_name, "v1.2.0") // other routes untouched
    })

    it("trickle: `bytes` at a time every `everyMs`", async () => {
        const url = target(await signedUrl())
        plan.trickle = { origin: "storage", bytes: 200, everyMs: 20 }
        const r = await rawRequest(srv.storageUrl, url, { range: "bytes=0-999" })
        assert.ok(r.rest.equals(FW.subarray(0, 1000)))
        const pieces = Math.ceil(r.data.length / 200)
        assert.ok(r.events.length >= pieces - 1, `${r.events.length} events for ${pieces} pieces`)
        assert.ok(Math.max(...r.events.map(e => e.bytes)) <= 400)
        assert.ok(r.ms >= (pieces - 1) * 20 * 0.8, `${r.ms} ms`)
    })

    it("redirectLoop: the asset URL redirects to itself n times (relative every second hop)", async () => {
        const p = await assetPath()
        plan.redirectLoop = 3
        const locs: string[] = []
        let next = srv.apiUrl + p
        for (let i = 0; i < 4; i++) {
            const r = await fetch(next, { headers: OCTET, redirect: "manual" })
            assert.equal(r.status, 302)
            const loc = r.headers.get("location")!
            locs.push(loc)
            next = new URL(loc, next).toString()
        }
        assert.ok(locs[0].startsWith(`${srv.apiUrl}${p}?hop=1`))
        assert.equal(locs[1], `${p}?hop=2`)
        assert.ok(locs[2].startsWith(`${srv.apiUrl}${p}?hop=3`))
        assert.ok(locs[3].startsWith(srv.storageUrl + "/"))
        const r = await fetch(locs[3], { headers: { range: "bytes=0-9" } })
        assert.ok(Buffer.from(await r.arrayBuffer()).equals(FW.subarray(0, 10)))
    })

    it("httpsToHttp: the asset Location is https:// to the storage host, otherwise valid", async () => {
        plan.httpsToHttp = true
        const loc = await signedUrl()
        const storage = new URL(srv.storageUrl)
        assert.ok(loc.startsWith(`https://${storage.host}/`), loc)
        const r = await fetch(loc.replace(/^https:/, "http:"), { headers: { range: "bytes=0-9" } })
        assert.equal(r.status, 206)
        await r.arrayBuffer()
        // a TLS ClientHello (or any garbage) on the plain port: 400 and close
        const junk = await new Promise<string>(resolve => {
            const s = net.connect(+storage.port, storage.hostname, () => s.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x0d, 0x0a, 0x0d, 0x0a])))
            let d = ""
            s.on("data", c => (d += c.toString("latin1")))
            s.on("close", () => resolve(d))
        })
        assert.match(junk, /^HTTP\/1\.1 400 /)
    })

    it("stats: connections, requests and body bytes per origin; resetStats()", async () => {
        const url = await signedUrl()
        srv.resetStats()
        assert.deepEqual(srv.stats, { connections: { api: 0, storage: 0 }, requests: { api: 0, storage: 0 }, bodyBytes: { api: 0, storage: 0 } })
        const a = await rawRequest(srv.apiUrl, "/repos/acme/open/releases/latest", UA)
        await rawRequest(srv.storageUrl, target(url), { range: "bytes=0-999" })
        await rawRequest(srv.storageUrl, target(url), { range: "bytes=0-99" }, "HEAD")
        plan.chunked = ["storage"]
        await rawRequest(srv.storageUrl, target(url), { range: "bytes=0-499" })
        assert.deepEqual(srv.stats, {
            connections: { api: 1, storage: 3 },
            requests: { api: 1, storage: 3 },
            bodyBytes: { api: a.rest.length, storage: 1500 }, // chunk framing not counted
        })
    })

    it("wire: 405 for other methods, 431 for a head over 16 KB, 400 for garbage; all recorded", async () => {
        const n = srv.requests.length
        const post = await rawRequest(srv.apiUrl, "/repos/acme/open/releases", UA, "POST")
        assert.equal(post.status, 405)
        assert.equal(header(post, "allow"), "GET, HEAD")
        const big = await rawRequest(srv.apiUrl, "/x", UA, "GET", `X-Big: ${"a".repeat(17_000)}\r\n`)
        assert.equal(big.status, 431)
        const bad = await rawRequest(srv.apiUrl, "/x", { "bad header": "x" })
        assert.equal(bad.status, 400)
        assert.deepEqual(
            srv.requests.slice(n).map(r => [r.method, r.status]),
            [["POST", 405], ["", 431], ["GET", 400]],
        )
        // a head just under the limit is fine
        const ok = await rawRequest(srv.apiUrl, "/repos/acme/open/releases/latest", UA, "GET", `X-Big: ${"a".repeat(15_000)}\r\n`)
        assert.equal(ok.status, 200)
    })
})
