/**
 * The API origin (like api.github.com): release routes (latest, list with pagination
 * and Link, by tag, by id, asset JSON or 302 to a signed storage URL), browser
 * download URLs, authentication, rate-limit buckets and headers, ETag / If-None-Match
 * 304s, and the API-side faults of the plan (401s, rate limiting, raw latest body,
 * redirect loops, https Location).
 */
import * as crypto from "node:crypto"
import { Bucket, Context, Reply, WireRequest } from "./context"
import { releaseJson, assetJson } from "./shapes"
import { signAssetUrl } from "./storage"
import { AssetInfo, ReleaseInfo, RepoInfo, loadRepo } from "./store"

const DOCS = "https://docs.github.com/rest"
const RATE_DOCS = `${DOCS}/overview/rate-limits-for-the-rest-api`
const GITHUB_TOKEN_PREFIXES = ["ghp_", "github_pat_", "gho_", "ghs_"]
const API_VERSIONS = ["2022-11-28", "2026-03-10"]
const UA_MESSAGE =
    "Request forbidden by administrative rules. Please make sure your request has a User-Agent header " +
    "(https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). " +
    "Check https://developer.github.com for other possible causes.\n"

type Auth = { kind: "none" } | { kind: "bad" } | { kind: "token"; token: string; access: string[] | "*" }

/** What a route decided; headers and accounting are added in one place (answer()). */
interface ApiAnswer {
    status: number
    json?: unknown
    /** text/plain body */
    text?: string
    /** application/json body sent as is (faults.latestBody), no ETag */
    raw?: string
    headers?: Record<string, string>
    docs?: string
}

/** The per-request facts answer() needs. */
interface ApiRequest {
    req: WireRequest
    auth: Auth
    bucket: Bucket
    apiVersion: string
}

function requestId(): string {
    const h = crypto.randomBytes(12).toString("hex").toUpperCase()
    return `${h.slice(0, 4)}:${h.slice(4, 9)}:${h.slice(9, 15)}:${h.slice(15, 21)}:${h.slice(21, 24)}${h.slice(0, 5)}`
}

function etagOf(body: string): string {
    return `W/"${crypto.createHash("sha256").update(body).digest("hex")}"`
}

function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
    if (!ifNoneMatch) return false
    const strip = (t: string) => t.trim().replace(/^W\//, "")
    return ifNoneMatch.split(",").some(t => t.trim() === "*" || strip(t) === strip(etag))
}

function authenticate(ctx: Context, req: WireRequest): Auth {
    const h = req.headers.authorization
    if (!h) return { kind: "none" }
    const m = /^(?:bearer|token)\s+(\S+)\s*$/i.exec(h)
    if (!m) return { kind: "bad" }
    const token = m[1]
    if (Object.prototype.hasOwnProperty.call(ctx.tokens, token)) return { kind: "token", token, access: ctx.tokens[token] }
    if (ctx.anyGithubToken && GITHUB_TOKEN_PREFIXES.some(p => token.startsWith(p))) return { kind: "token", token, access: "*" }
    return { kind: "bad" }
}

function canRead(auth: Auth, r: RepoInfo): boolean {
    if (!r.private) return true
    if (auth.kind !== "token") return false
    if (auth.access === "*") return true
    const full = `${r.owner}/${r.repo}`.toLowerCase()
    return auth.access.some(x => x.toLowerCase() === full)
}

/** The hourly bucket of a token, or of the client address for anonymous requests. */
function bucketFor(ctx: Context, auth: Auth, req: WireRequest): Bucket {
    const key = auth.kind === "token" ? `token:${auth.token}` : `ip:${req.remoteAddress}`
    const nowS = Math.floor(ctx.now() / 1000)
    let b = ctx.buckets.get(key)
    if (!b || nowS >= b.reset) {
        b = { limit: auth.kind === "token" ? ctx.limits.authenticated : ctx.limits.anonymous, used: 0, reset: nowS + 3600 }
        ctx.buckets.set(key, b)
    }
    return b
}

/** Turns a route's decision into a reply with GitHub's headers; counts it when asked. */
function answer(ctx: Context, r: ApiRequest, a: ApiAnswer, countIt: boolean): Reply {
    const { bucket, auth } = r
    if (countIt) bucket.used++
    const headers: Record<string, string> = {
        server: "github.com",
        date: new Date(ctx.now()).toUTCString(),
    }
    let body = ""
    if (a.json !== undefined) {
        let j = a.json
        if (a.status >= 400 && j && typeof j === "object" && !Array.isArray(j))
            j = { ...j, documentation_url: a.docs ?? DOCS, status: String(a.status) }
        body = JSON.stringify(j)
        headers["content-type"] = "application/json; charset=utf-8"
    } else if (a.raw !== undefined) {
        body = a.raw
        headers["content-type"] = "application/json; charset=utf-8"
    } else if (a.text !== undefined) {
        body = a.text
        headers["content-type"] = "text/plain; charset=utf-8"
    }
    const authed = auth.kind === "token"
    Object.assign(headers, {
        "cache-control": authed ? "private, max-age=60, s-maxage=60" : "public, max-age=60, s-maxage=60",
        vary: "Accept, Authorization, Cookie, X-GitHub-OTP,Accept-Encoding, Accept, X-Requested-With",
        "x-github-media-type": "github.v3; format=json",
        "x-github-api-version-selected": r.apiVersion,
        "x-ratelimit-limit": String(bucket.limit),
        "x-ratelimit-remaining": String(Math.max(0, bucket.limit - bucket.used)),
        "x-ratelimit-reset": String(bucket.reset),
        "x-ratelimit-used": String(bucket.used),
        "x-ratelimit-resource": "core",
        "access-control-expose-headers":
            "ETag, Link, Location, Retry-After, X-GitHub-OTP, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Used, X-RateLimit-Resource, X-RateLimit-Reset, X-OAuth-Scopes, X-Accepted-OAuth-Scopes, X-Poll-Interval, X-GitHub-Media-Type, X-GitHub-SSO, X-GitHub-Request-Id, Deprecation, Sunset",
        "access-control-allow-origin": "*",
        "strict-transport-security": "max-age=31536000; includeSubdomains; preload",
        "x-frame-options": "deny",
        "x-content-type-options": "nosniff",
        "x-xss-protection": "0",
        "referrer-policy": "origin-when-cross-origin, strict-origin-when-cross-origin",
        "content-security-policy": "default-src 'none'",
        "x-github-request-id": requestId(),
    })
    if (authed) {
        headers["x-oauth-scopes"] = "repo"
        headers["x-accepted-oauth-scopes"] = "repo"
    }
    Object.assign(headers, a.headers ?? {})
    if (a.status === 200 && body && a.raw === undefined) headers.etag = etagOf(body)
    const buf = Buffer.from(body)
    // A 304 has no body, and no Content-Length that would describe one.
    if (a.status !== 304) headers["content-length"] = String(buf.length)
    return { status: a.status, headers: Object.entries(headers), body: a.status === 304 ? undefined : buf }
}

const notFound = (docs = DOCS): ApiAnswer => ({ status: 404, json: { message: "Not Found" }, docs })

function route(ctx: Context, req: WireRequest, auth: Auth): ApiAnswer {
    const url = req.url
    const parts = url.pathname.split("/").slice(1)
    let seg: string[]
    try {
        seg = parts.map(decodeURIComponent)
    } catch {
        return notFound()
    }
    if (seg[0] !== "repos" || seg[3] !== "releases") return notFound()
    const repo = loadRepo(ctx.dir, seg[1] ?? "", seg[2] ?? "")
    if (!repo || !canRead(auth, repo)) return notFound(`${DOCS}/releases/releases`)
    const visible = repo.releases.filter(r => !r.draft)
    const rest = seg.slice(4)
    const one = (rel: ReleaseInfo | undefined, docs: string): ApiAnswer =>
        rel ? { status: 200, json: releaseJson(ctx.apiUrl, repo, rel) } : notFound(docs)

    if (rest.length === 0) return listReleases(ctx, url, repo, visible)
    if (rest.length === 1 && rest[0] === "latest") {
        if (ctx.faults.latestBody !== undefined && req.method === "GET") return { status: 200, raw: ctx.faults.latestBody }
        return one(
            visible.find(r => !r.prerelease),
            `${DOCS}/releases/releases#get-the-latest-release`,
        )
    }
    if (rest.length === 2 && rest[0] === "tags")
        return one(
            visible.find(r => r.tag === rest[1]),
            `${DOCS}/releases/releases#get-a-release-by-tag-name`,
        )
    if (rest.length === 1 && /^\d+$/.test(rest[0]))
        return one(
            visible.find(r => r.id === +rest[0]),
            `${DOCS}/releases/releases#get-a-release`,
        )
    if (rest.length === 2 && rest[0] === "assets" && /^\d+$/.test(rest[1])) {
        for (const rel of visible) {
            const a = rel.assets.find(x => x.id === +rest[1])
            if (!a) continue
            const accept = String(req.headers.accept ?? "")
            if (!accept.toLowerCase().includes("application/octet-stream"))
                return { status: 200, json: assetJson(ctx.apiUrl, repo, rel, a) }
            return { status: 302, headers: { location: assetLocation(ctx, req, repo, rel, a) } }
        }
        return notFound(`${DOCS}/releases/assets#get-a-release-asset`)
    }
    return notFound()
}

/**
 * Location of an asset's 302: the signed storage URL, or with faults.redirectLoop = n
 * first n hops back to the asset URL itself with "hop=k" in the query (k = 1..n;
 * absolute URL on odd hops, path-absolute "/repos/..." on even ones). With
 * faults.httpsToHttp the storage URL's scheme is "https:" (same host and port).
 */
function assetLocation(ctx: Context, req: WireRequest, repo: RepoInfo, rel: ReleaseInfo, a: AssetInfo): string {
    const hop = parseInt(req.url.searchParams.get("hop") ?? "0", 10) || 0
    const loops = ctx.faults.redirectLoop ?? 0
    if (hop < loops) {
        const next = new URLSearchParams(req.url.searchParams)
        next.set("hop", String(hop + 1))
        const self = `${req.url.pathname}?${next}`
        return (hop + 1) % 2 === 1 ? ctx.apiUrl + self : self
    }
    const signed = signAssetUrl(ctx, repo, rel, a)
    return ctx.faults.httpsToHttp ? signed.replace(/^http:/, "https:") : signed
}

function listReleases(ctx: Context, url: URL, repo: RepoInfo, visible: ReleaseInfo[]): ApiAnswer {
    const num = (name: string, def: number) => {
        const v = parseInt(url.searchParams.get(name) ?? "", 10)
        return isNaN(v) || v < 1 ? def : v
    }
    const perPage = Math.min(num("per_page", 30), 100)
    const page = num("page", 1)
    const last = Math.max(1, Math.ceil(visible.length / perPage))
    const items = visible.slice((page - 1) * perPage, page * perPage)
    const link = (p: number, rel: string) =>
        `<${ctx.apiUrl}/repos/${repo.owner}/${repo.repo}/releases?per_page=${perPage}&page=${p}>; rel="${rel}"`
    const links: string[] = []
    if (page > 1) links.push(link(Math.min(page - 1, last), "prev"))
    if (page < last) links.push(link(page + 1, "next"), link(last, "last"))
    if (page > 1) links.push(link(1, "first"))
    return {
        status: 200,
        json: items.map(r => releaseJson(ctx.apiUrl, repo, r)),
        headers: links.length ? { link: links.join(", ") } : {},
    }
}

/**
 * Web download routes (browser_download_url, github.com in reality): public repos only,
 * no API auth or rate limit. Undefined when the path is not one; "" for not found;
 * else the signed storage URL.
 */
function webDownload(ctx: Context, url: URL): string | undefined {
    let seg: string[]
    try {
        seg = url.pathname.split("/").slice(1).map(decodeURIComponent)
    } catch {
        return undefined
    }
    // /{o}/{r}/releases/download/{tag}/{name} or /{o}/{r}/releases/latest/download/{name}
    let tag: string | undefined
    let name: string
    if (seg.length === 6 && seg[2] === "releases" && seg[3] === "download") [tag, name] = [seg[4], seg[5]]
    else if (seg.length === 6 && seg[2] === "releases" && seg[3] === "latest" && seg[4] === "download") name = seg[5]
    else return undefined
    const repo = loadRepo(ctx.dir, seg[0], seg[1])
    if (!repo || repo.private) return ""
    const visible = repo.releases.filter(r => !r.draft)
    const rel = tag === undefined ? visible.find(r => !r.prerelease) : visible.find(r => r.tag === tag)
    const a = rel?.assets.find(x => x.name === name)
    return rel && a ? signAssetUrl(ctx, repo, rel, a) : ""
}

/** Answers one API request (GET or HEAD; the wire has refused other methods). */
export function handleApi(ctx: Context, req: WireRequest): Reply {
    const plan = ctx.faults
    const auth = authenticate(ctx, req)
    const bucket = bucketFor(ctx, auth.kind === "bad" ? { kind: "none" } : auth, req)
    const r: ApiRequest = { req, auth, bucket, apiVersion: API_VERSIONS[0] }

    if (plan.rejectAuthorization) return answer(ctx, r, { status: 401, json: { message: "Bad credentials" } }, false)
    if (plan.rateLimit && plan.rateLimit.count > 0) {
        const f = plan.rateLimit
        f.count--
        const status = f.status ?? 403
        const headers: Record<string, string> = {
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": String(bucket.limit),
            "x-ratelimit-reset": String(Math.floor(ctx.now() / 1000) + (f.resetInSeconds ?? 60)),
        }
        if (f.retryAfter !== undefined) headers["retry-after"] = String(f.retryAfter)
        const who = auth.kind === "token" ? "user ID 1" : req.remoteAddress
        return answer(ctx, r, { status, json: { message: `API rate limit exceeded for ${who}.` }, docs: RATE_DOCS, headers }, false)
    }

    if (!req.headers["user-agent"]) return answer(ctx, r, { status: 403, text: UA_MESSAGE }, false)

    const wantVersion = req.headers["x-github-api-version"]
    if (wantVersion !== undefined) {
        if (!API_VERSIONS.includes(wantVersion))
            return answer(
                ctx,
                r,
                {
                    status: 400,
                    json: { message: `API version ${wantVersion} is not supported.` },
                    docs: `${DOCS}/about-the-rest-api/api-versions`,
                },
                false,
            )
        r.apiVersion = wantVersion
    }

    // Web download URLs live on github.com, not the API: no auth, no rate limit.
    const loc = webDownload(ctx, req.url)
    if (loc !== undefined) {
        if (!loc) return { status: 404, headers: [["content-type", "text/plain; charset=utf-8"], ["content-length", "9"]], body: Buffer.from("Not Found") }
        return { status: 302, headers: [["location", loc], ["content-length", "0"]] }
    }

    if (req.url.pathname === "/rate_limit") {
        const core = { limit: bucket.limit, used: bucket.used, remaining: bucket.limit - bucket.used, reset: bucket.reset }
        return answer(ctx, r, { status: 200, json: { resources: { core }, rate: core } }, false) // free, like GitHub
    }

    if (auth.kind === "bad") return answer(ctx, r, { status: 401, json: { message: "Bad credentials" } }, true)

    if (bucket.used >= bucket.limit) {
        const who = auth.kind === "token" ? "user ID 1" : req.remoteAddress
        return answer(ctx, r, { status: 403, json: { message: `API rate limit exceeded for ${who}.` }, docs: RATE_DOCS }, false)
    }

    const a = route(ctx, req, auth)
    if (a.status === 200 && a.json !== undefined) {
        const etag = etagOf(JSON.stringify(a.json))
        if (etagMatches(req.headers["if-none-match"], etag)) {
            // 304 with Authorization is free (GitHub docs); anonymous ones still count.
            if (auth.kind !== "token") bucket.used++
            return answer(ctx, r, { status: 304, headers: { etag } }, false)
        }
    }
    return answer(ctx, r, a, true)
}
