// Finds the latest release of a GitHub repository and the asset to install. The
// release JSON is parsed as a stream: only the fields below are kept, so memory does
// not grow with the number of assets or the length of the release notes.
import { request, HttpResponse } from "./http"
import { JsonStream } from "./jsonstream"
import { globMatch } from "./glob"

export interface GithubConfig {
    api: string // e.g. https://api.github.com
    owner: string
    repo: string
    token: string
    assetPattern: string
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
    asset: ReleaseAsset // the first asset whose name matches the pattern, or null
}

export interface LatestResult {
    release: Release
    notModified: boolean // answered 304 to our ETag: same release as last time
}

export class GithubError extends Error {
    constructor(message: string, readonly status: number) {
        super(message)
        this.name = "GithubError"
    }
}

export function apiHeaders(cfg: GithubConfig, accept: string): [string, string][] {
    const h: [string, string][] = [
        ["Accept", accept],
        ["X-GitHub-Api-Version", "2022-11-28"],
    ]
    if (cfg.token) h.push(["Authorization", "Bearer " + cfg.token])
    return h
}

/** Turns a non-2xx API answer into an error that says what to do (never the token). */
export function apiError(res: HttpResponse, what: string): GithubError {
    const s = res.status
    let msg: string
    if (s === 401) msg = "bad credentials: the token is invalid or expired"
    else if (s === 404)
        msg = "not found: no such repository or release, or the token cannot read it"
    else if ((s === 403 || s === 429) && res.header("x-ratelimit-remaining") === "0")
        msg = `rate limited until ${res.header("x-ratelimit-reset")} (epoch s)`
    else if (s === 403) msg = "forbidden: the token lacks the Contents: read permission"
    else msg = "unexpected answer"
    return new GithubError(`github ${what}: HTTP ${s} ${msg}`, s)
}

// Collects the fields of one release while the JSON streams by.
class ReleaseCollector {
    release: Release = { tag: "", draft: false, prerelease: false, assetCount: 0, asset: null }
    private current: ReleaseAsset
    private currentIndex = -1

    constructor(private pattern: string) {}

    onValue(path: string, value: any) {
        if (!path.startsWith("assets.")) {
            if (path === "tag_name") this.release.tag = value
            else if (path === "draft") this.release.draft = value
            else if (path === "prerelease") this.release.prerelease = value
            return
        }
        const dot = path.indexOf(".", 7)
        if (dot < 0) return
        const index = parseInt(path.slice(7, dot))
        if (index !== this.currentIndex) {
            this.finishAsset()
            this.currentIndex = index
            this.current = { id: 0, name: "", url: "", size: 0, state: "", sha256: "" }
            this.release.assetCount++
        }
        const field = path.slice(dot + 1)
        const a = this.current
        if (field === "id") a.id = value
        else if (field === "name") a.name = value
        else if (field === "url") a.url = value
        else if (field === "size") a.size = value
        else if (field === "state") a.state = value
        else if (field === "digest" && typeof value === "string" && value.startsWith("sha256:"))
            a.sha256 = value.slice(7)
    }

    finishAsset() {
        const a = this.current
        this.current = null
        if (a && !this.release.asset && globMatch(this.pattern, a.name)) this.release.asset = a
    }
}

/**
 * Streams a release JSON body through the collector. GitHub sends the release notes
 * (`body`) after the assets, so reading stops when the assets array closes: the notes
 * are never parsed, whatever their length.
 */
export async function parseRelease(res: HttpResponse, pattern: string): Promise<Release> {
    const c = new ReleaseCollector(pattern)
    let assetsDone = false
    const json = new JsonStream((path: string, value: any) => c.onValue(path, value), {
        onEnd: (path: string) => {
            if (path === "assets") assetsDone = true
        },
    })
    try {
        for (;;) {
            const piece = await res.read()
            if (piece === null) break
            json.write(piece)
            if (assetsDone) break
        }
        if (assetsDone) await res.close()
        else json.end()
    } catch (e) {
        await res.close()
        throw new GithubError(`github release: malformed JSON: ${(e as Error).message}`, res.status)
    }
    c.finishAsset()
    if (!c.release.tag) throw new GithubError("github release: no tag_name in the answer", res.status)
    return c.release
}

export class GithubReleases {
    private etag: string
    private cached: Release

    constructor(readonly cfg: GithubConfig) {}

    latestUrl() {
        const c = this.cfg
        return `${c.api}/repos/${c.owner}/${c.repo}/releases/latest`
    }

    /** The latest release; a 304 to our ETag costs no rate limit and no parsing. */
    async latest(): Promise<LatestResult> {
        const headers = apiHeaders(this.cfg, "application/vnd.github+json")
        if (this.etag && this.cached) headers.push(["If-None-Match", this.etag])
        const res = await request(this.latestUrl(), { headers })
        if (res.status === 304 && this.cached) {
            await res.drain()
            return { release: this.cached, notModified: true }
        }
        if (res.status !== 200) {
            await res.drain()
            throw apiError(res, "latest release")
        }
        const release = await parseRelease(res, this.cfg.assetPattern)
        this.etag = res.header("etag")
        this.cached = release
        return { release, notModified: false }
    }
}
