/**
 * The one context object every module of the emulator works on (options, clock, keys,
 * rate-limit buckets, signed blobs, the live fault plan, request log and counters),
 * plus the request and reply shapes the modules pass to each other.
 */
import * as crypto from "node:crypto"
import { unitRandom } from "../prng"
import type { FaultPlan } from "./faults"

/** Which of the two servers: api.github.com or the storage host. */
export type Origin = "api" | "storage"

export interface ReleaseServerOptions {
    /** Release folders: DIR/{owner}/{repo}/releases/{tag}/... (see writeRelease). */
    dir: string
    /** Interface to listen on (default 127.0.0.1). */
    host?: string
    /** API port (default 0: a free port). */
    port?: number
    /** Storage port (default 0: a free port). */
    storagePort?: number
    /** token -> readable "owner/repo" list, or "*" for all. */
    tokens?: Record<string, string[] | "*">
    /** Accept any token that looks like a GitHub token (ghp_, github_pat_, gho_, ghs_)
     * as able to read everything. Used by the CLI when no --token is given. */
    anyGithubToken?: boolean
    /** Lifetime of signed storage URLs in seconds (default 3600). */
    urlTtlSeconds?: number
    /** Requests per hour (defaults 5000 with a token, 60 without). */
    rateLimit?: { authenticated?: number; anonymous?: number }
    /** Clock in ms since the epoch, injectable so tests can expire URLs without sleeping. */
    now?: () => number
    /** Misbehaviour to inject; kept by reference as `server.faults`, read on every
     * request, so changing it between requests takes effect. Default: none. */
    faults?: FaultPlan
    /** Called once per finished (or aborted) request. */
    onRequestDone?: (rec: RequestRecord) => void
}

/** One request as the server saw it. */
export interface RequestRecord {
    origin: Origin
    /** "" when the request line could not be parsed */
    method: string
    /** request target as sent (path and query) */
    url: string
    /** lowercase names; repeated headers joined with ", " */
    headers: Record<string, string | string[] | undefined>
    /** Status sent; 0 while the response head is under way or when the connection
     * died before the whole head was written. */
    status: number
}

/** Per-origin counters since the start or the last resetStats(). */
export interface ServerStats {
    /** accepted TCP connections */
    connections: { api: number; storage: number }
    /** requests read (including malformed ones answered 400/431) */
    requests: { api: number; storage: number }
    /** response payload bytes written to sockets: status line, headers, chunk-size
     * lines and trailers excluded (a chunked body counts its data bytes only) */
    bodyBytes: { api: number; storage: number }
}

export interface ReleaseServer {
    /** http://127.0.0.1:PORT, no trailing slash */
    apiUrl: string
    storageUrl: string
    /** every request on both origins, in arrival order */
    requests: RequestRecord[]
    /** the live fault plan (the object passed as options.faults, or a fresh {}) */
    faults: FaultPlan
    stats: ServerStats
    /** zeroes every counter of `stats` (same object); `requests` is left alone
     * (empty it with `requests.length = 0`) */
    resetStats(): void
    /** stops listening and destroys every connection, idle or busy */
    close(): Promise<void>
}

/** A parsed request head, as the wire hands it to an origin's handler. */
export interface WireRequest {
    method: string
    /** request target as sent */
    target: string
    /** parsed target, resolved against http://localhost */
    url: URL
    /** "HTTP/1.0" or "HTTP/1.1" */
    version: string
    /** lowercase names; repeated headers joined with ", " */
    headers: Record<string, string>
    remoteAddress: string
}

/** A response as decided by a handler; faults.sendReply frames and sends it. */
export interface Reply {
    status: number
    /** in order, names as they go on the wire (Content-Length set by the handler,
     * absent on 304); Connection headers are added when sending */
    headers: [string, string][]
    /** payload; not sent for HEAD requests or 304 */
    body?: Buffer
    /** set when the body is asset bytes: the asset offset of body[0] */
    assetStart?: number
}

export interface Bucket {
    limit: number
    used: number
    /** epoch seconds */
    reset: number
}

/** The shared state of one running emulator. */
export interface Context {
    readonly dir: string
    readonly now: () => number
    readonly ttlSeconds: number
    readonly tokens: Record<string, string[] | "*">
    readonly anyGithubToken: boolean
    readonly limits: { authenticated: number; anonymous: number }
    /** HMAC key of signed storage URLs */
    readonly secret: Buffer
    /** rate-limit buckets by "token:T" or "ip:ADDR" */
    readonly buckets: Map<string, Bucket>
    /** blob path -> asset location; filled when the API signs a URL */
    readonly blobs: Map<string, { owner: string; repo: string; tag: string; name: string }>
    /** sig -> serial number of the signed URL (for faults.expireSignedUrls) */
    readonly signed: Map<string, number>
    /** serial of the next signed URL */
    signSerial: number
    /** while faults.expireSignedUrls is on: URLs with a serial below this are expired */
    expiryCutoff: number | undefined
    apiUrl: string
    storageUrl: string
    faults: FaultPlan
    /** PRNG state, reseeded whenever faults.seed changes */
    rng: { seed: number | undefined; next: () => number }
    requests: RequestRecord[]
    stats: ServerStats
    onRequestDone?: (rec: RequestRecord) => void
}

export function emptyStats(): ServerStats {
    return {
        connections: { api: 0, storage: 0 },
        requests: { api: 0, storage: 0 },
        bodyBytes: { api: 0, storage: 0 },
    }
}

export function createContext(opts: ReleaseServerOptions): Context {
    return {
        dir: opts.dir,
        now: opts.now ?? Date.now,
        ttlSeconds: opts.urlTtlSeconds ?? 3600,
        tokens: opts.tokens ?? {},
        anyGithubToken: !!opts.anyGithubToken,
        limits: { authenticated: opts.rateLimit?.authenticated ?? 5000, anonymous: opts.rateLimit?.anonymous ?? 60 },
        secret: crypto.randomBytes(32),
        buckets: new Map(),
        blobs: new Map(),
        signed: new Map(),
        signSerial: 0,
        expiryCutoff: undefined,
        apiUrl: "",
        storageUrl: "",
        faults: opts.faults ?? {},
        rng: { seed: undefined, next: unitRandom(0) },
        requests: [],
        stats: emptyStats(),
        onRequestDone: opts.onRequestDone,
    }
}

/** Builds a reply with a Content-Length matching `body`. */
export function reply(status: number, headers: [string, string][], body: string | Buffer = ""): Reply {
    const b = typeof body === "string" ? Buffer.from(body) : body
    return { status, headers: [...headers, ["content-length", String(b.length)]], body: b }
}
