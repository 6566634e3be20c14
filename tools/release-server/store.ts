/**
 * Release folders on disk: DIR/{owner}/{repo}/releases/{tag}/{asset files, release.json}
 * and DIR/{owner}/{repo}/repo.json. Writing them (writeRelease) and reading them back
 * (loadRepo, re-read on every request so tests can publish while the server runs).
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"

/** What writeRelease puts in a release folder. */
export interface WriteReleaseOptions {
    /** Asset files; names must not start with "." nor contain "/", "\\" or NUL. */
    assets: { name: string; data: Buffer; contentType?: string; label?: string }[]
    /** Release title (default: the tag). */
    name?: string
    /** Release notes (markdown). */
    body?: string
    draft?: boolean
    prerelease?: boolean
    /** ISO 8601; default createdAt, which defaults to now. */
    publishedAt?: string
    createdAt?: string
    /** Written to repo.json when given, or when the repo has none yet (default true). */
    private?: boolean
}

/** One asset file as the API describes it. */
export interface AssetInfo {
    /** stable 9-digit id derived from owner/repo/tag/name */
    id: number
    name: string
    /** absolute path of the file */
    file: string
    /** bytes */
    size: number
    /** lowercase hex */
    sha256: string
    mtimeMs: number
    contentType: string
    label: string | null
}

export interface ReleaseInfo {
    id: number
    tag: string
    name: string
    body: string
    draft: boolean
    prerelease: boolean
    targetCommitish: string
    /** ISO 8601, seconds precision */
    createdAt: string
    publishedAt: string | null
    assets: AssetInfo[]
}

export interface RepoInfo {
    /** owner and repo as spelled on disk */
    owner: string
    repo: string
    id: number
    private: boolean
    /** newest first; drafts included */
    releases: ReleaseInfo[]
}

/**
 * Creates DIR/owner/repo/releases/tag/ with the assets and a release.json, replacing
 * any previous content of that tag. Throws, before touching the disk, on an owner, repo,
 * tag or asset name that is not one safe path segment.
 */
export function writeRelease(dir: string, owner: string, repo: string, tag: string, opts: WriteReleaseOptions): void {
    // every name becomes a path segment: checked before anything is removed or written
    for (const [what, s] of [["owner", owner], ["repo", repo], ["tag", tag]])
        if (!safeSegment(s)) throw new Error(`bad ${what}: ${JSON.stringify(s)}`)
    for (const a of opts.assets) checkName(a.name)
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

// A file's sha256 is recomputed only when it changes.
const shaCache = new Map<string, { mtimeMs: number; size: number; sha: string }>()
function fileSha256(file: string, st: fs.Stats): string {
    const hit = shaCache.get(file)
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.sha
    const sha = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex")
    shaCache.set(file, { mtimeMs: st.mtimeMs, size: st.size, sha })
    return sha
}

/** Stable 9-digit id (GitHub ids are in that range today) derived from `key`. */
export function stableId(key: string): number {
    return (crypto.createHash("sha256").update(key).digest().readUInt32BE(0) % 900_000_000) + 100_000_000
}

/** ISO 8601 without milliseconds, like GitHub's timestamps ("2025-01-01T00:00:00Z"). */
export function isoSeconds(ms: number): string {
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

/**
 * Reads one repo from disk (owner and repo matched case-insensitively), releases
 * newest first. Undefined when there is no such folder or a name is unsafe.
 */
export function loadRepo(dir: string, ownerIn: string, repoIn: string): RepoInfo | undefined {
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

/** Every DIR/owner/repo that has a releases folder. */
export function listRepos(dir: string): { owner: string; repo: string }[] {
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
