/**
 * The storage origin (like release-assets.githubusercontent.com, an Azure blob host):
 * Azure-SAS-style signed URLs (signAssetUrl, used by the API's 302s), their check and
 * expiry on the context's clock, single byte ranges, HEAD, and the storage-side
 * content faults of the plan (expired URLs, ignored or wrong ranges, 416, HTML, corruption).
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import { Context, Reply, WireRequest, reply } from "./context"
import { AssetInfo, ReleaseInfo, RepoInfo, isoSeconds, loadRepo } from "./store"

/** A UUID-shaped string derived from `key` (stable across restarts). */
function uuidFrom(key: string): string {
    const h = crypto.createHash("sha256").update(key).digest("hex")
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`
}

function stringToSign(p: string, q: URLSearchParams): string {
    return [p, q.get("sp"), q.get("sv"), q.get("sr"), q.get("spr"), q.get("se"), q.get("rscd"), q.get("rsct")].join("\n")
}

function sign(ctx: Context, s: string): string {
    return crypto.createHmac("sha256", ctx.secret).update(s).digest("base64url")
}

/**
 * Notices faults.expireSignedUrls being switched on or off; call on every request of
 * either origin and before signing. While on, URLs signed before it was first seen on
 * are expired; new ones work.
 */
export function trackUrlExpiry(ctx: Context): void {
    if (!ctx.faults.expireSignedUrls) ctx.expiryCutoff = undefined
    else if (ctx.expiryCutoff === undefined) ctx.expiryCutoff = ctx.signSerial
}

/**
 * An Azure-SAS-style URL on the storage origin for an asset, valid for the context's
 * TTL, as long as GitHub's (query >= 850 characters). Registers the blob path.
 */
export function signAssetUrl(ctx: Context, repo: RepoInfo, rel: ReleaseInfo, a: AssetInfo): string {
    trackUrlExpiry(ctx)
    const blobPath = `/github-production-release-asset/${repo.id}/${uuidFrom(`blob:${a.id}:${a.sha256}`)}`
    ctx.blobs.set(blobPath, { owner: repo.owner, repo: repo.repo, tag: rel.tag, name: a.name })
    const t = ctx.now()
    const se = isoSeconds(t + ctx.ttlSeconds * 1000)
    const q = new URLSearchParams()
    q.set("sp", "r")
    q.set("sv", "2018-11-09")
    q.set("sr", "b")
    q.set("spr", "https")
    q.set("se", se)
    q.set("rscd", `attachment; filename=${a.name}`)
    q.set("rsct", "application/octet-stream")
    q.set("skoid", uuidFrom("skoid"))
    q.set("sktid", uuidFrom("sktid"))
    q.set("skt", isoSeconds(t - 60_000))
    q.set("ske", se)
    q.set("sks", "b")
    q.set("skv", "2018-11-09")
    const sig = sign(ctx, stringToSign(blobPath, q))
    q.set("sig", sig)
    ctx.signed.set(sig, ctx.signSerial++)
    // GitHub appends an (unverified here) JWT, which is what makes the query long.
    const jwtHead = Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT" })).toString("base64url")
    const claims = {
        iss: "github.com",
        aud: "release-assets.githubusercontent.com",
        key: "key1",
        exp: Math.floor(t / 1000) + 300,
        nbf: Math.floor(t / 1000) - 300,
        path: "releaseassetproduction.blob.core.windows.net",
        sub: blobPath,
    }
    const jwtBody = Buffer.from(JSON.stringify(claims)).toString("base64url")
    q.set("jwt", `${jwtHead}.${jwtBody}.${sign(ctx, jwtHead + "." + jwtBody)}`)
    q.set("filename", a.name)
    q.set("response-content-disposition", `attachment; filename=${a.name}`)
    q.set("response-content-type", "application/octet-stream")
    let query = q.toString()
    // Long asset names already make it longer; short ones get padded.
    if (query.length < 850) query += `&rsid=${"0".repeat(850 - query.length)}`
    return `${ctx.storageUrl}${blobPath}?${query}`
}

/** Azure's XML error body (with its BOM). */
export function azureError(code: string, message: string, detail?: string): string {
    const rid = crypto.randomUUID()
    return (
        `\uFEFF<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}\n` +
        `RequestId:${rid}\nTime:${new Date().toISOString()}</Message>` +
        (detail ? `<AuthenticationErrorDetail>${detail}</AuthenticationErrorDetail>` : "") +
        `</Error>`
    )
}

const AUTH_FAILED =
    "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."

const HTML_PAGE =
    "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>" +
    "<body><h1>Service Unavailable</h1><p>The page you requested is not available. Please sign in to continue.</p></body></html>\n"

/** Reads bytes [start, end] (inclusive) of a file. */
function readRange(file: string, start: number, end: number): Buffer {
    const len = Math.max(0, end - start + 1)
    const buf = Buffer.alloc(len)
    if (!len) return buf
    const fd = fs.openSync(file, "r")
    try {
        let got = 0
        while (got < len) {
            const n = fs.readSync(fd, buf, got, len - got, start + got)
            if (n <= 0) throw new Error(`short read: ${file}`)
            got += n
        }
    } finally {
        fs.closeSync(fd)
    }
    return buf
}

/** Answers one storage request (GET or HEAD; the wire has refused other methods). */
export function handleStorage(ctx: Context, req: WireRequest): Reply {
    const plan = ctx.faults
    const url = req.url
    const base: [string, string][] = [
        ["server", "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0"],
        ["x-ms-request-id", crypto.randomUUID()],
        ["x-ms-version", "2018-11-09"],
        ["date", new Date(ctx.now()).toUTCString()],
    ]
    const fail = (status: number, xml: string) => reply(status, [...base, ["content-type", "application/xml"]], xml)

    if (req.headers.authorization !== undefined)
        return fail(
            400,
            `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; ` +
                `only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message>` +
                `<ArgumentName>Authorization</ArgumentName></Error>`,
        )

    const q = url.searchParams
    const sig = q.get("sig")
    const se = q.get("se")
    if (!sig || !se || isNaN(Date.parse(se)))
        return fail(403, azureError("AuthenticationFailed", AUTH_FAILED, "Signature fields not well formed."))
    const expired = () =>
        fail(
            403,
            azureError(
                "AuthenticationFailed",
                AUTH_FAILED,
                `Signature not valid in the specified time frame: Start [${q.get("skt") ?? ""}] - Expiry [${se}] - Current [${new Date(ctx.now()).toUTCString()}]`,
            ),
        )
    if (Date.parse(se) <= ctx.now()) return expired()
    const expected = Buffer.from(sign(ctx, stringToSign(url.pathname, q)))
    const got = Buffer.from(sig)
    if (expected.length !== got.length || !crypto.timingSafeEqual(expected, got))
        return fail(
            403,
            azureError(
                "AuthenticationFailed",
                AUTH_FAILED,
                `Signature did not match. String to sign used was r\n\n${se}\n/blob/releaseassetproduction${url.pathname}`,
            ),
        )
    trackUrlExpiry(ctx)
    const serial = ctx.signed.get(sig)
    if (ctx.expiryCutoff !== undefined && (serial === undefined || serial < ctx.expiryCutoff)) return expired()

    const loc = ctx.blobs.get(url.pathname)
    const repo = loc && loadRepo(ctx.dir, loc.owner, loc.repo)
    const a = repo?.releases.find(r => r.tag === loc!.tag)?.assets.find(x => x.name === loc!.name)
    if (!a) return fail(404, azureError("BlobNotFound", "The specified blob does not exist."))

    if (plan.htmlInsteadOfAsset) return reply(200, [...base, ["content-type", "text/html; charset=utf-8"]], HTML_PAGE)

    const size = a.size
    const headers: [string, string][] = [
        ...base,
        ["content-type", "application/octet-stream"],
        ["last-modified", new Date(a.mtimeMs).toUTCString()],
        ["etag", `"0x${a.sha256.slice(0, 15).toUpperCase()}"`],
        ["accept-ranges", "bytes"],
        ["content-disposition", q.get("rscd") ?? `attachment; filename=${a.name}`],
        ["x-ms-blob-type", "BlockBlob"],
        ["x-ms-lease-status", "unlocked"],
        ["x-ms-lease-state", "available"],
        ["x-ms-server-encrypted", "true"],
        ["x-ms-creation-time", new Date(a.mtimeMs).toUTCString()],
    ]
    const unsatisfiable = (): Reply => ({
        status: 416,
        headers: [...base, ["content-range", `bytes */${size}`], ["content-length", "0"]],
    })

    // Single byte ranges only, like Azure; anything unparsable is ignored (RFC 9110).
    let start = 0
    let end = size - 1
    let status = 200
    const range = req.headers.range
    if (range !== undefined && plan.status416) return unsatisfiable()
    const m = range !== undefined && !plan.ignoreRange ? /^bytes=(\d*)-(\d*)$/.exec(range.trim()) : null
    if (m && (m[1] || m[2])) {
        if (m[1] === "") {
            const n = +m[2]
            start = Math.max(0, size - n)
            if (n === 0) start = size // "bytes=-0" is unsatisfiable
        } else {
            start = +m[1]
            if (m[2] !== "") end = Math.min(+m[2], size - 1)
        }
        const valid = m[1] === "" || m[2] === "" || +m[1] <= +m[2]
        if (valid) {
            if (start >= size || size === 0) return unsatisfiable()
            status = 206
            let total = size
            if (plan.wrongContentRange === "start" && start + 1 < size) {
                start += 1
                end = Math.max(end, start)
            } else if (plan.wrongContentRange === "total") total = size + 1
            headers.push(["content-range", `bytes ${start}-${end}/${total}`])
        } else {
            start = 0
            end = size - 1
        }
    }
    const length = Math.max(0, end - start + 1)
    headers.push(["content-length", String(length)])
    if (req.method === "HEAD") return { status, headers, assetStart: start }
    const body = readRange(a.file, start, end)
    const c = plan.corruptAt
    if (c !== undefined && c >= start && c <= end) body[c - start] ^= 0xff
    return { status, headers, body, assetStart: start }
}
