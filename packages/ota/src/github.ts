// Finds the release to install from a GitHub repository and the asset in it. The
// release JSON is parsed as a stream: only the fields below are kept, so memory does
// not grow with the number of assets, releases or the length of the release notes.
// Behaviour follows GitHub's REST docs (releases, rate limits, conditional requests).
import { request, HttpResponse, RequestOptions, DEFAULT_TIMEOUTS, originOf } from "./http"
import { parseHttpDate, isHeaderValue } from "./httpparse"
import { JsonStream } from "./jsonstream"
import { globMatch } from "./glob"
import { compareSemver, parseSemver } from "./semver"
import { URL } from "@devicescript/net"
import * as ds from "@devicescript/core"

/** `stable`: releases/latest. `prerelease`: newest by semver of the last PER_PAGE releases. */
export type Channel = "stable" | "prerelease"
const PER_PAGE = 10
const MAX_WAIT_S = 3600 // a rate limit is waited out at most this long (GitHub's window is an hour)
const MAX_ETAG = 100 // longer ETags are not kept (GitHub's: W/"<64 hex>")
// JSON is fed in pieces this small, yielding after JSON_YIELD_TOKENS tokens or
// JSON_YIELD_BYTES bytes: dense JSON costs far more opcodes per byte than release notes
const JSON_PIECE_BYTES = 64
const JSON_YIELD_TOKENS = 24
const JSON_YIELD_BYTES = 1024
const API_KEEP = [
    "etag",
    "date",
    "retry-after",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
]

export interface GithubConfig {
    api: string // e.g. https://api.github.com
    owner: string
    repo: string
    token: string
    assetPattern: string
    /** name pattern of the DeviceScript program asset ("" or absent: programs are not updated) */
    programPattern?: string
    channel?: Channel
}

export interface ReleaseAsset {
    id: number
    name: string
    url: string // API URL: answers 302 to the storage host with octet-stream
    size: number
    state: string
    sha256: string // hex, "" when GitHub has no digest for the asset
}

export interface Release {
    tag: string
    draft: boolean
    prerelease: boolean
    assetCount: number
    /** the first asset whose name matches the pattern, or null */
    asset: ReleaseAsset
    /** the first asset whose name matches the program pattern, or null */
    program: ReleaseAsset
}

export interface LatestResult {
    release: Release
    /** answered 304 to our ETag: same release as last time (asset null after a reboot) */
    notModified: boolean
    /** false after a 304 that followed a reboot: the tag is known, the assets are not */
    assetsKnown: boolean
}

/**
 * A GitHub API (or storage) answer that is not what was asked for. `status` is the
 * HTTP status (0 when none); `retryAfter` is the seconds to wait for a rate limit;
 * `fromStorage` marks answers of the storage host.
 */
export class GithubError extends Error {
    retryAfter = 0
    constructor(
        message: string,
        readonly status: number,
        readonly fromStorage?: boolean
    ) {
        super(message)
        this.name = "GithubError"
    }

    /** 403/429 with x-ratelimit-remaining: 0, or a retry-after. */
    isRateLimit() {
        return this.retryAfter > 0
    }
}

/** Request options for the API: its headers, and the token for its origin only. */
export function apiOptions(cfg: GithubConfig, accept: string): RequestOptions {
    return {
        headers: [
            ["Accept", accept],
            ["X-GitHub-Api-Version", "2022-11-28"],
        ],
        authorization: cfg.token ? "Bearer " + cfg.token : undefined,
        authOrigin: originOf(new URL(cfg.api)),
        keep: API_KEEP,
        totalTimeout: DEFAULT_TIMEOUTS.total,
        // a renamed repository answers 301; the token stays on the API origin
        maxRedirects: 5,
    }
}

/**
 * Turns a non-2xx API answer into an error that says which setting to fix (never
 * the token). Rate limits (403/429 with x-ratelimit-remaining 0, or retry-after)
 * carry the seconds to wait, from retry-after or x-ratelimit-reset minus the
 * answer's Date.
 */
export function apiError(res: HttpResponse, what: string): GithubError {
    const s = res.status
    let msg: string
    let wait = 0
    const retryAfter = parseInt(res.header("retry-after") || "")
    const limited = res.header("x-ratelimit-remaining") === "0"
    if ((s === 403 || s === 429) && (limited || retryAfter > 0)) {
        const reset = parseInt(res.header("x-ratelimit-reset") || "")
        const now = parseHttpDate(res.header("date") || "")
        wait = retryAfter > 0 ? retryAfter : reset > 0 && now > 0 ? reset - now : 60
        if (!(wait >= 1)) wait = 1
        if (wait > MAX_WAIT_S) wait = MAX_WAIT_S
        msg = `rate limited: retrying in ${wait} s`
    } else if (s === 401) msg = "bad credentials: GITHUB_TOKEN is invalid or expired"
    else if (s === 404)
        msg =
            "not found: check GITHUB_OWNER and GITHUB_REPO, that a release is published, and that GITHUB_TOKEN can read the repository"
    else if (s === 403) msg = "forbidden: GITHUB_TOKEN lacks the Contents: read permission"
    else if (s === 429) msg = "too many requests"
    else if (s >= 500) msg = "server error"
    else msg = "unexpected answer"
    const e = new GithubError(`github ${what}: HTTP ${s} ${msg}`, s)
    e.retryAfter = wait
    return e
}

// Collects the fields of one release (or, for a list, of the newest one by semver)
// while the JSON streams by.
class ReleaseCollector {
    best: Release = null
    private release: Release
    private asset: ReleaseAsset
    private releaseIndex = -1
    private assetIndex = -1

    constructor(
        private pattern: string,
        private programPattern: string,
        private list: boolean
    ) {
        if (!list) this.release = newRelease()
    }

    onValue(path: string, value: any) {
        let p = path
        if (this.list) {
            const dot = p.indexOf(".")
            if (dot < 0) return
            const index = parseInt(p.slice(0, dot))
            if (index !== this.releaseIndex) {
                this.finishRelease()
                this.releaseIndex = index
                this.release = newRelease()
            }
            p = p.slice(dot + 1)
        }
        if (!p.startsWith("assets.")) {
            const r = this.release
            if (p === "tag_name" && typeof value === "string") r.tag = value
            else if (p === "draft") r.draft = value === true
            else if (p === "prerelease") r.prerelease = value === true
            return
        }
        const dot = p.indexOf(".", 7)
        if (dot < 0) return
        const index = parseInt(p.slice(7, dot))
        if (index !== this.assetIndex) {
            this.finishAsset()
            this.assetIndex = index
            this.asset = { id: 0, name: "", url: "", size: 0, state: "", sha256: "" }
            this.release.assetCount++
        }
        const field = p.slice(dot + 1)
        const a = this.asset
        // (fields of the wrong type are ignored: the asset is then incomplete)
        const str = typeof value === "string"
        if (field === "id" && typeof value === "number") a.id = value
        else if (field === "name" && str) a.name = value
        else if (field === "url" && str) a.url = value
        else if (field === "size" && typeof value === "number") a.size = value
        else if (field === "state" && str) a.state = value
        else if (field === "digest" && typeof value === "string" && value.startsWith("sha256:"))
            a.sha256 = value.slice(7)
    }

    finishAsset() {
        const a = this.asset
        this.asset = null
        if (!a) return
        if (!this.release.asset && globMatch(this.pattern, a.name)) this.release.asset = a
        else if (!this.release.program && this.programPattern && globMatch(this.programPattern, a.name))
            this.release.program = a
    }

    /** Ends the release being read; in a list keeps it when it is the newest so far. */
    finishRelease() {
        this.finishAsset()
        this.assetIndex = -1
        const r = this.release
        if (!r) return
        if (!this.list) {
            this.best = r
            return
        }
        this.release = null
        if (r.draft || !r.tag) return
        // tags that are not semver are skipped in a list
        try {
            parseSemver(r.tag)
        } catch {
            return
        }
        if (!this.best || compareSemver(r.tag, this.best.tag) > 0) this.best = r
    }
}

const MAX_TAG = 64 // longer tags are not kept with the ETag

// FNV-1a, 32 bits, as 8 hex digits (http://www.isthe.com/chongo/tech/comp/fnv/)
function fnv1a(s: string) {
    let h = 0x811c9dc5
    for (let i = 0; i < s.length; i++) {
        h ^= s.charCodeAt(i) & 0xff
        h = Math.imul(h, 0x01000193) >>> 0
    }
    let r = ""
    for (let k = 7; k >= 0; k--) r += "0123456789abcdef"[(h >>> (4 * k)) & 15]
    return r
}

function newRelease(): Release {
    return { tag: "", draft: false, prerelease: false, assetCount: 0, asset: null, program: null }
}

/**
 * Streams a release JSON body (or, with `list`, an array of releases) through the
 * collector. GitHub sends the release notes (`body`) after the assets, so reading a
 * single release stops when its assets array closes: the notes are never parsed.
 */
export async function parseRelease(
    res: HttpResponse,
    pattern: string,
    list = false,
    programPattern = ""
): Promise<Release> {
    const c = new ReleaseCollector(pattern, programPattern, list)
    let assetsDone = false
    const json = new JsonStream((path: string, value: any) => c.onValue(path, value), {
        onEnd: (path: string) => {
            if (path === "assets") assetsDone = true
        },
    })
    try {
        let sinceYield = 0
        for (;;) {
            const piece = await res.read()
            if (piece === null) break
            for (let i = 0; i < piece.length && !assetsDone; i += JSON_PIECE_BYTES) {
                const k = Math.min(JSON_PIECE_BYTES, piece.length - i)
                json.write(k === piece.length ? piece : piece.slice(i, i + k))
                sinceYield += k
                if (json.tokens >= JSON_YIELD_TOKENS || sinceYield >= JSON_YIELD_BYTES) {
                    json.tokens = 0
                    sinceYield = 0
                    await ds.sleep(0)
                }
            }
            if (assetsDone) break
        }
        if (assetsDone) await res.close()
        else json.end()
    } catch (e) {
        await res.close()
        throw new GithubError(`github release: malformed JSON: ${(e as Error).message}`, res.status)
    }
    c.finishRelease()
    const r = c.best
    if (!r || !r.tag) {
        if (list) throw new GithubError("github releases: no published release with a semver tag", 404)
        throw new GithubError("github release: no tag_name in the answer", res.status)
    }
    return r
}

/**
 * What a check remembers of the last answer: its ETag and the tag it named, so that
 * an unchanged release costs one 304 even after a reboot (`saved` survives it).
 */
export interface SavedEtag {
    key: string // which query the ETag answers (api, owner, repo, channel, pattern)
    etag: string
    tag: string
}

export class GithubReleases {
    private cached: Release // the release of the last 200 since power-on
    saved: SavedEtag

    constructor(readonly cfg: GithubConfig) {}

    url() {
        const c = this.cfg
        const base = `${c.api}/repos/${c.owner}/${c.repo}/releases`
        return c.channel === "prerelease" ? `${base}?per_page=${PER_PAGE}` : `${base}/latest`
    }

    /**
     * Identifies the query an ETag belongs to: a 32-bit FNV-1a hash (8 hex digits) of
     * the API, owner, repo, channel and pattern, so that the kept setting stays short.
     */
    key() {
        const c = this.cfg
        return fnv1a(`${c.api} ${c.owner}/${c.repo} ${c.channel || "stable"} ${c.assetPattern} ${c.programPattern || ""}`)
    }

    /**
     * The release to install: `If-None-Match` with the saved ETag on every check, so
     * an unchanged release costs one 304 (free of rate limit with a token). After a
     * reboot a 304 knows the tag but not the asset (asset null): call again with
     * `full` to read it. Throws GithubError.
     */
    async latest(full = false): Promise<LatestResult> {
        const o = apiOptions(this.cfg, "application/vnd.github+json")
        const s = this.saved
        const usable = s && s.key === this.key() && s.etag
        if (usable && !full) o.headers.push(["If-None-Match", s.etag])
        const res = await request(this.url(), o)
        if (res.status === 304 && usable && !full) {
            await res.drain()
            const cached = this.cached && this.cached.tag === s.tag ? this.cached : null
            const release = cached || newRelease()
            release.tag = s.tag
            return { release, notModified: true, assetsKnown: !!cached }
        }
        if (res.status !== 200) {
            await res.close() // an error body is not waited for
            throw apiError(res, this.cfg.channel === "prerelease" ? "releases" : "latest release")
        }
        let etag = res.header("etag")
        // only an ETag that can be sent back and kept in a setting is used
        if (etag && (etag.length > MAX_ETAG || !isHeaderValue(etag))) etag = undefined
        const release = await parseRelease(
            res,
            this.cfg.assetPattern,
            this.cfg.channel === "prerelease",
            this.cfg.programPattern || ""
        )
        this.cached = release
        this.saved = etag && release.tag.length <= MAX_TAG ? { key: this.key(), etag, tag: release.tag } : null
        return { release, notModified: false, assetsKnown: true }
    }
}
