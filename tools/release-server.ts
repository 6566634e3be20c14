/**
 * GitHub release emulator: an API origin (like api.github.com) and a separate
 * storage origin (like release-assets.githubusercontent.com) on loopback.
 * Behaviour follows shared/reference/github-releases.md.
 *
 * Library: startReleaseServer(), writeRelease(). CLI: see usage() at the bottom.
 */
import * as http from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"

// ---------------------------------------------------------------------------
// Public types

/** Misbehaviour injection. Extension point: later faults (chunked encoding,
 * dropped connections, slow responses, rate limiting...) get their own fields. */
export interface Faults {
    /** Called first for every request on both origins; return true when the
     * hook has answered (or destroyed) the request itself. */
    onRequest?: (ctx: FaultContext) => boolean
}

export interface FaultContext {
    origin: "api" | "storage"
    req: IncomingMessage
    res: ServerResponse
}

export interface ReleaseServerOptions {
    dir: string
    host?: string
    port?: number
    storagePort?: number
    /** token -> readable "owner/repo" list, or "*" for all. */
    tokens?: Record<string, string[] | "*">
    /** Accept any token that looks like a GitHub token (ghp_, github_pat_, gho_, ghs_)
     * as able to read everything. Used by the CLI when no --token is given. */
    anyGithubToken?: boolean
    /** Lifetime of signed storage URLs (default 3600 s). */
    urlTtlSeconds?: number
    /** Requests per hour (defaults 5000 with a token, 60 without). */
    rateLimit?: { authenticated?: number; anonymous?: number }
    /** Clock in ms, injectable so tests can expire URLs without sleeping. */
    now?: () => number
    faults?: Faults
    /** Called once per finished (or aborted) request. */
    onRequestDone?: (rec: RequestRecord) => void
}

export interface RequestRecord {
    origin: "api" | "storage"
    method: string
    url: string
    headers: Record<string, string | string[] | undefined>
    /** 0 while the response is under way or when the connection died first. */
    status: number
}

export interface ReleaseServer {
    /** http://127.0.0.1:PORT, no trailing slash */
    apiUrl: string
    storageUrl: string
    requests: RequestRecord[]
    close(): Promise<void>
}

// ---------------------------------------------------------------------------
// Release folders

export interface WriteReleaseOptions {
    assets: { name: string; data: Buffer; contentType?: string; label?: string }[]
    name?: string
    body?: string
    draft?: boolean
    prerelease?: boolean
    publishedAt?: string
    createdAt?: string
    private?: boolean
}

/** Creates DIR/owner/repo/releases/tag/ with the assets and a release.json
 * (replacing any previous content of that tag). */
export function writeRelease(dir: string, owner: string, repo: string, tag: string, opts: WriteReleaseOptions): void {
    const repoDir = path.join(dir, owner, repo)
    const relDir = path.join(repoDir, "releases", tag)
    fs.rmSync(relDir, { recursive: true, force: true })
    fs.mkdirSync(relDir, { recursive: true })
    if (opts.private !== undefined || !fs.existsSync(path.join(repoDir, "repo.json")))
        fs.writeFileSync(path.join(repoDir, "repo.json"), JSON.stringify({ private: opts.private ?? true }))
    const assets: Record<string, { content_type?: string; label?: string }> = {}
    for (const a of opts.assets) {
        checkName(a.name)
        fs.writeFileSync(path.join(relDir, a.name), a.data)
        assets[a.name] = { content_type: a.contentType, label: a.label }
    }
    const now = isoSeconds(Date.now())
    const createdAt = opts.createdAt ?? opts.publishedAt ?? now
    const meta = {
        name: opts.name ?? tag,
        body: opts.body ?? "",
        draft: !!opts.draft,
        prerelease: !!opts.prerelease,
        created_at: createdAt,
        published_at: opts.draft ? null : opts.publishedAt ?? createdAt,
        assets,
    }
    fs.writeFileSync(path.join(relDir, "release.json"), JSON.stringify(meta, null, 2))
}

interface AssetInfo {
    id: number
    name: string
    file: string
    size: number
    sha256: string
    mtimeMs: number
    contentType: string
    label: string | null
}

interface ReleaseInfo {
    id: number
    tag: string
    name: string
    body: string
    draft: boolean
    prerelease: boolean
    targetCommitish: string
    createdAt: string
    publishedAt: string | null
    assets: AssetInfo[]
}

interface RepoInfo {
    owner: string
    repo: string
    id: number
    private: boolean
    releases: ReleaseInfo[] // newest first
}

// A file's sha256 is recomputed only when it changes.
const shaCache = new Map<string, { mtimeMs: number; size: number; sha: string }>()
function fileSha256(file: string, st: fs.Stats): string {
    const hit = shaCache.get(file)
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.sha
    const sha = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex")
    shaCache.set(file, { mtimeMs: st.mtimeMs, size: st.size, sha })
    return sha
}

/** Stable 9-digit id (GitHub ids are in that range today). */
function stableId(key: string): number {
    return (crypto.createHash("sha256").update(key).digest().readUInt32BE(0) % 900_000_000) + 100_000_000
}

function isoSeconds(ms: number): string {
    return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z")
}

function normTime(v: unknown, fallback: string): string {
    if (typeof v !== "string") return fallback
    const t = Date.parse(v)
    return isNaN(t) ? fallback : isoSeconds(t)
}

/** Rejects names that would escape the release folder. */
function checkName(name: string) {
    if (!name || name.startsWith(".") || /[\/\\\0]/.test(name)) throw new Error(`bad name: ${JSON.stringify(name)}`)
}

function safeSegment(s: string): boolean {
    return !!s && !s.startsWith(".") && !/[\/\\\0]/.test(s)
}

const EXT_TYPES: Record<string, string> = {
    ".json": "application/json",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".txt": "text/plain",
    ".md": "text/markdown",
}

/** semver-ish tag order, falling back to natural string order. */
function compareTags(a: string, b: string): number {
    const re = /^v?(\d+)\.(\d+)\.(\d+)(?:-(.+))?$/
    const ma = re.exec(a)
    const mb = re.exec(b)
    if (ma && mb) {
        for (let i = 1; i <= 3; i++) if (+ma[i] !== +mb[i]) return +ma[i] - +mb[i]
        if (!ma[4] !== !mb[4]) return ma[4] ? -1 : 1 // 1.0.0-rc < 1.0.0
        return (ma[4] ?? "").localeCompare(mb[4] ?? "", "en", { numeric: true })
    }
    return a.localeCompare(b, "en", { numeric: true })
}

/** Newest first: published_at, then created_at, then tag order. */
function compareReleasesNewestFirst(a: ReleaseInfo, b: ReleaseInfo): number {
    const pa = a.publishedAt ?? ""
    const pb = b.publishedAt ?? ""
    if (pa !== pb) return pa < pb ? 1 : -1
    if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? 1 : -1
    return -compareTags(a.tag, b.tag)
}

/** Case-insensitive directory lookup, like GitHub's owner/repo names. */
function findEntry(parent: string, name: string): string | undefined {
    if (!safeSegment(name)) return undefined
    let entries: string[]
    try {
        entries = fs.readdirSync(parent)
    } catch {
        return undefined
    }
    if (entries.includes(name)) return name
    return entries.find(e => e.toLowerCase() === name.toLowerCase())
}

/** Reads a repo from disk on every request, so tests can add releases while running. */
function loadRepo(dir: string, ownerIn: string, repoIn: string): RepoInfo | undefined {
    const owner = findEntry(dir, ownerIn)
    if (!owner) return undefined
    const repo = findEntry(path.join(dir, owner), repoIn)
    if (!repo) return undefined
    const repoDir = path.join(dir, owner, repo)
    if (!fs.statSync(repoDir).isDirectory()) return undefined
    let isPrivate = true
    try {
        const meta = JSON.parse(fs.readFileSync(path.join(repoDir, "repo.json"), "utf8"))
        if (typeof meta.private === "boolean") isPrivate = meta.private
    } catch {}
    const releases: ReleaseInfo[] = []
    const relRoot = path.join(repoDir, "releases")
    const tags = fs.existsSync(relRoot) ? fs.readdirSync(relRoot) : []
    for (const tag of tags) {
        const relDir = path.join(relRoot, tag)
        if (!safeSegment(tag) || !fs.statSync(relDir).isDirectory()) continue
        let meta: any = {}
        try {
            meta = JSON.parse(fs.readFileSync(path.join(relDir, "release.json"), "utf8"))
        } catch {}
        const dirTime = isoSeconds(fs.statSync(relDir).mtimeMs)
        const draft = !!meta.draft
        const createdAt = normTime(meta.created_at, dirTime)
        const publishedAt = draft ? null : normTime(meta.published_at, createdAt)
        const assetMeta = meta.assets && typeof meta.assets === "object" ? meta.assets : {}
        const assets: AssetInfo[] = []
        for (const name of fs.readdirSync(relDir).sort()) {
            if (name === "release.json" || name.startsWith(".")) continue
            const file = path.join(relDir, name)
            const st = fs.statSync(file)
            if (!st.isFile()) continue
            const am = assetMeta[name] ?? {}
            assets.push({
                id: stableId(`asset:${owner}/${repo}/${tag}/${name}`),
                name,
                file,
                size: st.size,
                sha256: fileSha256(file, st),
                mtimeMs: st.mtimeMs,
                contentType: am.content_type || EXT_TYPES[path.extname(name).toLowerCase()] || "application/octet-stream",
                label: typeof am.label === "string" ? am.label : null,
            })
        }
        releases.push({
            id: stableId(`release:${owner}/${repo}/${tag}`),
            tag,
            name: typeof meta.name === "string" ? meta.name : tag,
            body: typeof meta.body === "string" ? meta.body : "",
            draft,
            prerelease: !!meta.prerelease,
            targetCommitish: typeof meta.target_commitish === "string" ? meta.target_commitish : "main",
            createdAt,
            publishedAt,
            assets,
        })
    }
    releases.sort(compareReleasesNewestFirst)
    return { owner, repo, id: stableId(`repo:${owner}/${repo}`), private: isPrivate, releases }
}

function listRepos(dir: string): { owner: string; repo: string }[] {
    const out: { owner: string; repo: string }[] = []
    for (const owner of safeReaddir(dir))
        for (const repo of safeReaddir(path.join(dir, owner)))
            if (fs.existsSync(path.join(dir, owner, repo, "releases"))) out.push({ owner, repo })
    return out
}

function safeReaddir(d: string): string[] {
    try {
        return fs.readdirSync(d).filter(safeSegment)
    } catch {
        return []
    }
}

// ---------------------------------------------------------------------------
// JSON shapes (key order as GitHub's REST responses)

function nodeId(prefix: string, id: number): string {
    const b = Buffer.alloc(8)
    b.writeUInt32BE(0x9400ce00, 0) // msgpack-ish header bytes like GitHub's "kwDO"
    b.writeUInt32BE(id, 4)
    return prefix + "_" + b.toString("base64url")
}

function userJson(apiUrl: string, login: string) {
    const id = stableId(`user:${login}`)
    const u = `${apiUrl}/users/${encodeURIComponent(login)}`
    return {
        login,
        id,
        node_id: nodeId("U", id),
        avatar_url: `https://avatars.githubusercontent.com/u/${id}?v=4`,
        gravatar_id: "",
        url: u,
        html_url: `https://github.com/${login}`,
        followers_url: `${u}/followers`,
        following_url: `${u}/following{/other_user}`,
        gists_url: `${u}/gists{/gist_id}`,
        starred_url: `${u}/starred{/owner}{/repo}`,
        subscriptions_url: `${u}/subscriptions`,
        organizations_url: `${u}/orgs`,
        repos_url: `${u}/repos`,
        events_url: `${u}/events{/privacy}`,
        received_events_url: `${u}/received_events`,
        type: "User",
        user_view_type: "public",
        site_admin: false,
    }
}

function assetJson(apiUrl: string, r: RepoInfo, rel: ReleaseInfo, a: AssetInfo) {
    const at = rel.publishedAt ?? rel.createdAt
    return {
        url: `${apiUrl}/repos/${r.owner}/${r.repo}/releases/assets/${a.id}`,
        id: a.id,
        node_id: nodeId("RA", a.id),
        name: a.name,
        label: a.label,
        uploader: userJson(apiUrl, r.owner),
        content_type: a.contentType,
        state: "uploaded",
        size: a.size,
        digest: `sha256:${a.sha256}`,
        download_count: 0, // constant so ETags stay stable across downloads
        created_at: at,
        updated_at: at,
        browser_download_url: `${apiUrl}/${r.owner}/${r.repo}/releases/download/${encodeURIComponent(rel.tag)}/${encodeURIComponent(a.name)}`,
    }
}

function releaseJson(apiUrl: string, r: RepoInfo, rel: ReleaseInfo) {
    const base = `${apiUrl}/repos/${r.owner}/${r.repo}`
    const tag = encodeURIComponent(rel.tag)
    return {
        url: `${base}/releases/${rel.id}`,
        assets_url: `${base}/releases/${rel.id}/assets`,
        upload_url: `${base}/releases/${rel.id}/assets{?name,label}`,
        html_url: `${apiUrl}/${r.owner}/${r.repo}/releases/tag/${tag}`,
        id: rel.id,
        author: userJson(apiUrl, r.owner),
        node_id: nodeId("RE", rel.id),
        tag_name: rel.tag,
        target_commitish: rel.targetCommitish,
        name: rel.name,
        draft: rel.draft,
        immutable: false,
        prerelease: rel.prerelease,
        created_at: rel.createdAt,
        updated_at: rel.publishedAt ?? rel.createdAt,
        published_at: rel.publishedAt,
        assets: rel.assets.map(a => assetJson(apiUrl, r, rel, a)),
        tarball_url: `${base}/tarball/${tag}`,
        zipball_url: `${base}/zipball/${tag}`,
        body: rel.body,
    }
}

// ---------------------------------------------------------------------------
// Server

const DOCS = "https://docs.github.com/rest"
const GITHUB_TOKEN_PREFIXES = ["ghp_", "github_pat_", "gho_", "ghs_"]
const API_VERSIONS = ["2022-11-28", "2026-03-10"]
const UA_MESSAGE =
    "Request forbidden by administrative rules. Please make sure your request has a User-Agent header " +
    "(https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). " +
    "Check https://developer.github.com for other possible causes.\n"

interface Bucket {
    limit: number
    used: number
    reset: number // epoch seconds
}

/** What a route decided; headers and accounting are added in one place. */
interface ApiAnswer {
    status: number
    json?: unknown
    text?: string
    headers?: Record<string, string>
    docs?: string
}

function requestId(): string {
    const h = crypto.randomBytes(12).toString("hex").toUpperCase()
    return `${h.slice(0, 4)}:${h.slice(4, 9)}:${h.slice(9, 15)}:${h.slice(15, 21)}:${h.slice(21, 24)}${h.slice(0, 5)}`
}

function uuidFrom(key: string): string {
    const h = crypto.createHash("sha256").update(key).digest("hex")
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`
}

function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
    if (!ifNoneMatch) return false
    const strip = (t: string) => t.trim().replace(/^W\//, "")
    return ifNoneMatch.split(",").some(t => t.trim() === "*" || strip(t) === strip(etag))
}

function azureError(code: string, message: string, detail?: string): string {
    const rid = crypto.randomUUID()
    return (
        `\uFEFF<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}\n` +
        `RequestId:${rid}\nTime:${new Date().toISOString()}</Message>` +
        (detail ? `<AuthenticationErrorDetail>${detail}</AuthenticationErrorDetail>` : "") +
        `</Error>`
    )
}

export async function startReleaseServer(opts: ReleaseServerOptions): Promise<ReleaseServer> {
    const host = opts.host ?? "127.0.0.1"
    const now = opts.now ?? Date.now
    const ttl = opts.urlTtlSeconds ?? 3600
    const tokens = opts.tokens ?? {}
    const limits = { authenticated: opts.rateLimit?.authenticated ?? 5000, anonymous: opts.rateLimit?.anonymous ?? 60 }
    const secret = crypto.randomBytes(32)
    const requests: RequestRecord[] = []
    const buckets = new Map<string, Bucket>()
    // Blob path -> asset location; filled when the API signs a URL.
    const blobs = new Map<string, { owner: string; repo: string; tag: string; name: string }>()

    let apiUrl = ""
    let storageUrl = ""

    function record(origin: "api" | "storage", req: IncomingMessage, res: ServerResponse): void {
        const rec: RequestRecord = {
            origin,
            method: req.method ?? "",
            url: req.url ?? "",
            headers: { ...req.headers },
            status: 0,
        }
        requests.push(rec)
        let done = false
        const finish = (ok: boolean) => {
            if (done) return
            done = true
            if (ok || res.headersSent) rec.status = res.statusCode
            opts.onRequestDone?.(rec)
        }
        res.on("finish", () => finish(true))
        res.on("close", () => finish(false))
    }

    // --- auth and rate limit -------------------------------------------------

    type Auth = { kind: "none" } | { kind: "bad" } | { kind: "token"; token: string; access: string[] | "*" }

    function authenticate(req: IncomingMessage): Auth {
        const h = req.headers.authorization
        if (!h) return { kind: "none" }
        const m = /^(?:bearer|token)\s+(\S+)\s*$/i.exec(h)
        if (!m) return { kind: "bad" }
        const token = m[1]
        if (Object.prototype.hasOwnProperty.call(tokens, token)) return { kind: "token", token, access: tokens[token] }
        if (opts.anyGithubToken && GITHUB_TOKEN_PREFIXES.some(p => token.startsWith(p)))
            return { kind: "token", token, access: "*" }
        return { kind: "bad" }
    }

    function canRead(auth: Auth, r: RepoInfo): boolean {
        if (!r.private) return true
        if (auth.kind !== "token") return false
        if (auth.access === "*") return true
        const full = `${r.owner}/${r.repo}`.toLowerCase()
        return auth.access.some(x => x.toLowerCase() === full)
    }

    function bucketFor(auth: Auth, req: IncomingMessage): Bucket {
        const key = auth.kind === "token" ? `token:${auth.token}` : `ip:${req.socket.remoteAddress}`
        const nowS = Math.floor(now() / 1000)
        let b = buckets.get(key)
        if (!b || nowS >= b.reset) {
            b = { limit: auth.kind === "token" ? limits.authenticated : limits.anonymous, used: 0, reset: nowS + 3600 }
            buckets.set(key, b)
        }
        return b
    }

    // --- API routes ------------------------------------------------------------

    const notFound = (docs = DOCS): ApiAnswer => ({ status: 404, json: { message: "Not Found" }, docs })

    function route(req: IncomingMessage, auth: Auth, url: URL): ApiAnswer {
        const parts = url.pathname.split("/").slice(1)
        let seg: string[]
        try {
            seg = parts.map(decodeURIComponent)
        } catch {
            return notFound()
        }
        if (seg[0] !== "repos" || seg[3] !== "releases") return notFound()
        const repo = loadRepo(opts.dir, seg[1] ?? "", seg[2] ?? "")
        if (!repo || !canRead(auth, repo)) return notFound(`${DOCS}/releases/releases`)
        const visible = repo.releases.filter(r => !r.draft)
        const rest = seg.slice(4)
        const one = (rel: ReleaseInfo | undefined, docs: string): ApiAnswer =>
            rel ? { status: 200, json: releaseJson(apiUrl, repo, rel) } : notFound(docs)

        if (rest.length === 0) return listReleases(url, repo, visible)
        if (rest.length === 1 && rest[0] === "latest")
            return one(
                visible.find(r => !r.prerelease),
                `${DOCS}/releases/releases#get-the-latest-release`,
            )
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
                    return { status: 200, json: assetJson(apiUrl, repo, rel, a) }
                return {
                    status: 302,
                    headers: { location: signAssetUrl(repo, rel, a) },
                }
            }
            return notFound(`${DOCS}/releases/assets#get-a-release-asset`)
        }
        return notFound()
    }

    function listReleases(url: URL, repo: RepoInfo, visible: ReleaseInfo[]): ApiAnswer {
        const num = (name: string, def: number) => {
            const v = parseInt(url.searchParams.get(name) ?? "", 10)
            return isNaN(v) || v < 1 ? def : v
        }
        const perPage = Math.min(num("per_page", 30), 100)
        const page = num("page", 1)
        const last = Math.max(1, Math.ceil(visible.length / perPage))
        const items = visible.slice((page - 1) * perPage, page * perPage)
        const link = (p: number, rel: string) =>
            `<${apiUrl}/repos/${repo.owner}/${repo.repo}/releases?per_page=${perPage}&page=${p}>; rel="${rel}"`
        const links: string[] = []
        if (page > 1) links.push(link(Math.min(page - 1, last), "prev"))
        if (page < last) links.push(link(page + 1, "next"), link(last, "last"))
        if (page > 1) links.push(link(1, "first"))
        return {
            status: 200,
            json: items.map(r => releaseJson(apiUrl, repo, r)),
            headers: links.length ? { link: links.join(", ") } : {},
        }
    }

    /** Web download routes (browser_download_url): public repos only, no API auth. */
    function webDownload(url: URL): string | undefined {
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
        const repo = loadRepo(opts.dir, seg[0], seg[1])
        if (!repo || repo.private) return ""
        const visible = repo.releases.filter(r => !r.draft)
        const rel = tag === undefined ? visible.find(r => !r.prerelease) : visible.find(r => r.tag === tag)
        const a = rel?.assets.find(x => x.name === name)
        return rel && a ? signAssetUrl(repo, rel, a) : ""
    }

    // --- signed storage URLs ----------------------------------------------------

    function stringToSign(p: string, q: URLSearchParams): string {
        return [p, q.get("sp"), q.get("sv"), q.get("sr"), q.get("spr"), q.get("se"), q.get("rscd"), q.get("rsct")].join("\n")
    }

    function sign(s: string): string {
        return crypto.createHmac("sha256", secret).update(s).digest("base64url")
    }

    /** An Azure-SAS-style URL, as long as GitHub's (>= 850 query chars). */
    function signAssetUrl(repo: RepoInfo, rel: ReleaseInfo, a: AssetInfo): string {
        const blobPath = `/github-production-release-asset/${repo.id}/${uuidFrom(`blob:${a.id}:${a.sha256}`)}`
        blobs.set(blobPath, { owner: repo.owner, repo: repo.repo, tag: rel.tag, name: a.name })
        const t = now()
        const se = isoSeconds(t + ttl * 1000)
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
        q.set("sig", sign(stringToSign(blobPath, q)))
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
        q.set("jwt", `${jwtHead}.${jwtBody}.${sign(jwtHead + "." + jwtBody)}`)
        q.set("filename", a.name)
        q.set("response-content-disposition", `attachment; filename=${a.name}`)
        q.set("response-content-type", "application/octet-stream")
        let query = q.toString()
        // Long asset names already make it longer; short ones get padded.
        if (query.length < 850) query += `&rsid=${"0".repeat(850 - query.length)}`
        return `${storageUrl}${blobPath}?${query}`
    }

    // --- handlers -----------------------------------------------------------------

    function handleApi(req: IncomingMessage, res: ServerResponse): void {
        const url = new URL(req.url ?? "/", "http://localhost")
        const method = req.method ?? "GET"
        const ua = req.headers["user-agent"]
        const auth = authenticate(req)
        const bucket = bucketFor(auth.kind === "bad" ? { kind: "none" } : auth, req)

        const headers: Record<string, string> = {
            server: "github.com",
            date: new Date(now()).toUTCString(),
        }
        let apiVersion = API_VERSIONS[0]
        const send = (a: ApiAnswer, countIt: boolean) => {
            if (countIt) bucket.used++
            let body = ""
            if (a.json !== undefined) {
                let j = a.json
                if (a.status >= 400 && j && typeof j === "object" && !Array.isArray(j))
                    j = { ...j, documentation_url: a.docs ?? DOCS, status: String(a.status) }
                body = JSON.stringify(j)
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
                "x-github-api-version-selected": apiVersion,
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
            if (a.status === 200 && body) headers.etag = `W/"${crypto.createHash("sha256").update(body).digest("hex")}"`
            // A 304 has no body, and no Content-Length that would describe one.
            if (a.status !== 304) headers["content-length"] = String(Buffer.byteLength(body))
            res.writeHead(a.status, headers)
            res.end(method === "HEAD" ? undefined : body)
        }

        if (!ua) return send({ status: 403, text: UA_MESSAGE }, false)

        const wantVersion = req.headers["x-github-api-version"]
        if (typeof wantVersion === "string") {
            if (!API_VERSIONS.includes(wantVersion))
                return send(
                    {
                        status: 400,
                        json: { message: `API version ${wantVersion} is not supported.` },
                        docs: `${DOCS}/about-the-rest-api/api-versions`,
                    },
                    false,
                )
            apiVersion = wantVersion
        }

        // Web download URLs live on github.com, not the API: no auth, no rate limit.
        if (method === "GET" || method === "HEAD") {
            const loc = webDownload(url)
            if (loc !== undefined) {
                if (!loc) {
                    res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "content-length": "9" })
                    res.end(method === "HEAD" ? undefined : "Not Found")
                } else {
                    res.writeHead(302, { location: loc, "content-length": "0" })
                    res.end()
                }
                return
            }
        }

        if (url.pathname === "/rate_limit") {
            const core = { limit: bucket.limit, used: bucket.used, remaining: bucket.limit - bucket.used, reset: bucket.reset }
            return send({ status: 200, json: { resources: { core }, rate: core } }, false) // free, like GitHub
        }

        if (auth.kind === "bad") return send({ status: 401, json: { message: "Bad credentials" } }, true)

        if (bucket.used >= bucket.limit) {
            const who = auth.kind === "token" ? "user ID 1" : req.socket.remoteAddress
            return send(
                {
                    status: 403,
                    json: { message: `API rate limit exceeded for ${who}.` },
                    docs: `${DOCS}/overview/rate-limits-for-the-rest-api`,
                },
                false,
            )
        }

        const answer = method === "GET" || method === "HEAD" ? route(req, auth, url) : notFound()
        if (answer.status === 200 && answer.json !== undefined) {
            const body = JSON.stringify(answer.json)
            const etag = `W/"${crypto.createHash("sha256").update(body).digest("hex")}"`
            if (etagMatches(req.headers["if-none-match"], etag)) {
                // 304 with Authorization is free (GitHub docs); anonymous ones still count.
                if (auth.kind !== "token") bucket.used++
                send({ status: 304, headers: { etag } }, false)
                return
            }
        }
        send(answer, true)
    }

    function handleStorage(req: IncomingMessage, res: ServerResponse): void {
        const url = new URL(req.url ?? "/", "http://localhost")
        const method = req.method ?? "GET"
        const base: Record<string, string> = {
            server: "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0",
            "x-ms-request-id": crypto.randomUUID(),
            "x-ms-version": "2018-11-09",
            date: new Date(now()).toUTCString(),
        }
        const fail = (status: number, xml: string) => {
            const body = Buffer.from(xml)
            res.writeHead(status, { ...base, "content-type": "application/xml", "content-length": String(body.length) })
            res.end(method === "HEAD" ? undefined : body)
        }

        if (req.headers.authorization !== undefined)
            return fail(
                400,
                `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; ` +
                    `only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message>` +
                    `<ArgumentName>Authorization</ArgumentName></Error>`,
            )
        if (method !== "GET" && method !== "HEAD")
            return fail(405, azureError("UnsupportedHttpVerb", "The resource doesn't support specified Http Verb."))

        const q = url.searchParams
        const sig = q.get("sig")
        const se = q.get("se")
        const authFailed = "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."
        if (!sig || !se || isNaN(Date.parse(se)))
            return fail(403, azureError("AuthenticationFailed", authFailed, "Signature fields not well formed."))
        if (Date.parse(se) <= now())
            return fail(
                403,
                azureError(
                    "AuthenticationFailed",
                    authFailed,
                    `Signature not valid in the specified time frame: Start [${q.get("skt") ?? ""}] - Expiry [${se}] - Current [${new Date(now()).toUTCString()}]`,
                ),
            )
        const expected = Buffer.from(sign(stringToSign(url.pathname, q)))
        const got = Buffer.from(sig)
        if (expected.length !== got.length || !crypto.timingSafeEqual(expected, got))
            return fail(
                403,
                azureError(
                    "AuthenticationFailed",
                    authFailed,
                    `Signature did not match. String to sign used was r\n\n${se}\n/blob/releaseassetproduction${url.pathname}`,
                ),
            )

        const loc = blobs.get(url.pathname)
        const repo = loc && loadRepo(opts.dir, loc.owner, loc.repo)
        const a = repo?.releases.find(r => r.tag === loc!.tag)?.assets.find(x => x.name === loc!.name)
        if (!a) return fail(404, azureError("BlobNotFound", "The specified blob does not exist."))

        const size = a.size
        const headers: Record<string, string> = {
            ...base,
            "content-type": "application/octet-stream",
            "last-modified": new Date(a.mtimeMs).toUTCString(),
            etag: `"0x${a.sha256.slice(0, 15).toUpperCase()}"`,
            "accept-ranges": "bytes",
            "content-disposition": q.get("rscd") ?? `attachment; filename=${a.name}`,
            "x-ms-blob-type": "BlockBlob",
            "x-ms-lease-status": "unlocked",
            "x-ms-lease-state": "available",
            "x-ms-server-encrypted": "true",
            "x-ms-creation-time": new Date(a.mtimeMs).toUTCString(),
        }

        // Single byte ranges only, like Azure; anything unparsable is ignored (RFC 9110).
        let start = 0
        let end = size - 1
        let status = 200
        const range = req.headers.range
        const m = typeof range === "string" ? /^bytes=(\d*)-(\d*)$/.exec(range.trim()) : null
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
                if (start >= size || size === 0) {
                    res.writeHead(416, { ...base, "content-range": `bytes */${size}`, "content-length": "0" })
                    return void res.end()
                }
                status = 206
                headers["content-range"] = `bytes ${start}-${end}/${size}`
            } else {
                start = 0
                end = size - 1
            }
        }
        headers["content-length"] = String(Math.max(0, end - start + 1))
        res.writeHead(status, headers)
        if (method === "HEAD" || size === 0) return void res.end()
        const stream = fs.createReadStream(a.file, { start, end })
        stream.on("error", () => res.destroy())
        stream.pipe(res)
    }

    function makeServer(origin: "api" | "storage", handler: (req: IncomingMessage, res: ServerResponse) => void) {
        const server = http.createServer((req, res) => {
            record(origin, req, res)
            try {
                if (opts.faults?.onRequest?.({ origin, req, res })) return
                handler(req, res)
            } catch (e) {
                if (!res.headersSent) {
                    res.writeHead(500, { "content-type": "text/plain", "content-length": "21" })
                    res.end("Internal Server Error")
                } else res.destroy()
                console.error(`release-server: ${origin} ${req.method} ${req.url?.split("?")[0]}:`, e)
            }
        })
        // Persistent connections: devices reuse sockets between API and range requests.
        server.keepAliveTimeout = 30_000
        server.headersTimeout = 35_000
        return server
    }

    const listen = (s: http.Server, port: number) =>
        new Promise<number>((resolve, reject) => {
            s.once("error", reject)
            s.listen(port, host, () => {
                s.off("error", reject)
                resolve((s.address() as import("node:net").AddressInfo).port)
            })
        })

    const api = makeServer("api", handleApi)
    const storage = makeServer("storage", handleStorage)
    const urlHost = host.includes(":") ? `[${host}]` : host
    try {
        apiUrl = `http://${urlHost}:${await listen(api, opts.port ?? 0)}`
        storageUrl = `http://${urlHost}:${await listen(storage, opts.storagePort ?? 0)}`
    } catch (e) {
        api.close()
        storage.close()
        throw e
    }

    const closeOne = (s: http.Server) =>
        new Promise<void>(resolve => {
            if (!s.listening) return resolve()
            s.close(() => resolve())
            s.closeAllConnections()
        })

    return {
        apiUrl,
        storageUrl,
        requests,
        close: async () => {
            await Promise.all([closeOne(api), closeOne(storage)])
        },
    }
}

// ---------------------------------------------------------------------------
// CLI

function usage(): string {
    return [
        "usage: tsx tools/release-server.ts --dir DIR [--port N] [--storage-port N] [--token T[=owner/repo,...]]... [--ttl S]",
        "",
        "  --dir DIR          release folders: DIR/{owner}/{repo}/releases/{tag}/...",
        "  --port N           API port (default 0: a free port)",
        "  --storage-port N   storage port (default 0: a free port)",
        "  --token T          accept token T for every repo; T=o/r,o2/r2 limits it to those repos (repeatable)",
        "  --ttl S            lifetime of signed download URLs in seconds (default 3600)",
        "",
        "Without --token, any token starting with ghp_, github_pat_, gho_ or ghs_ can read every repo.",
    ].join("\n")
}

function parseArgs(argv: string[]): ReleaseServerOptions | string {
    const o: ReleaseServerOptions = { dir: "" }
    const tokens: Record<string, string[] | "*"> = {}
    let anyToken = false
    const port = (v: string | undefined) => {
        const n = Number(v)
        return v !== undefined && /^\d+$/.test(v) && n <= 65535 ? n : undefined
    }
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i]
        const v = argv[i + 1]
        switch (a) {
            case "--dir":
                if (!v) return "--dir needs a value"
                o.dir = v
                i++
                break
            case "--port":
            case "--storage-port": {
                const n = port(v)
                if (n === undefined) return `${a} needs a port number`
                if (a === "--port") o.port = n
                else o.storagePort = n
                i++
                break
            }
            case "--token": {
                if (!v) return "--token needs a value"
                const eq = v.indexOf("=")
                if (eq < 0) tokens[v] = "*"
                else tokens[v.slice(0, eq)] = v.slice(eq + 1).split(",").filter(Boolean)
                anyToken = true
                i++
                break
            }
            case "--ttl": {
                const n = Number(v)
                if (!v || !(n > 0)) return "--ttl needs a positive number of seconds"
                o.urlTtlSeconds = n
                i++
                break
            }
            case "-h":
            case "--help":
                return ""
            default:
                return `unknown argument: ${a}`
        }
    }
    if (!o.dir) return "--dir is required"
    if (!fs.existsSync(o.dir) || !fs.statSync(o.dir).isDirectory()) return `not a directory: ${o.dir}`
    if (anyToken) o.tokens = tokens
    else o.anyGithubToken = true
    return o
}

async function main() {
    const parsed = parseArgs(process.argv.slice(2))
    if (typeof parsed === "string") {
        if (parsed) console.error(`release-server: ${parsed}`)
        console.error(usage())
        process.exit(parsed ? 2 : 0)
    }
    const server = await startReleaseServer({
        ...parsed,
        // Path only: the query of storage URLs holds the signature.
        onRequestDone: r => console.log(`${r.origin} ${r.method} ${r.url.split("?")[0]} ${r.status || "aborted"}`),
    })
    const repos = listRepos(parsed.dir)
    const ex = repos[0] ?? { owner: "OWNER", repo: "REPO" }
    console.log(`API: ${server.apiUrl}`)
    console.log(`Storage: ${server.storageUrl}`)
    console.log(`Releases from: ${path.resolve(parsed.dir)} (${repos.length} repo(s))`)
    if (parsed.anyGithubToken)
        console.log("Auth: no --token given; any token starting with ghp_, github_pat_, gho_ or ghs_ can read every repo")
    else console.log(`Auth: ${Object.keys(parsed.tokens ?? {}).length} token(s) from --token`)
    const tok = parsed.anyGithubToken ? "ghp_example" : "$TOKEN"
    console.log(
        `Try: curl -sSL -H 'User-Agent: curl' -H 'Authorization: Bearer ${tok}' ${server.apiUrl}/repos/${ex.owner}/${ex.repo}/releases/latest`,
    )
    let stopping = false
    const stop = async (sig: string) => {
        if (stopping) return
        stopping = true
        console.log(`release-server: ${sig}, stopping`)
        await server.close()
        process.exit(0)
    }
    process.on("SIGINT", () => void stop("SIGINT"))
    process.on("SIGTERM", () => void stop("SIGTERM"))
}

if (require.main === module) {
    main().catch(e => {
        console.error(`release-server: ${e instanceof Error ? e.message : e}`)
        process.exit(1)
    })
}
