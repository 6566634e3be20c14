// Downloads a release asset in bounded Range requests and resumes after faults. The
// VM has no backpressure on sockets (devicescript-esp32 main/sock.c pushes whatever
// lwIP has into the VM), so asking for one chunk at a time is what bounds memory.
// GitHub answers the asset's API URL with a redirect to a storage host; the token is
// sent to the API origin only (http.ts drops it on every other origin).
import * as ds from "@devicescript/core"
import { request, HttpResponse, RequestError, DEFAULT_TIMEOUTS, closeIdle, originOf } from "./http"
import { parseContentRange } from "./httpparse"
import { URL } from "@devicescript/net"
import { GithubConfig, GithubError, apiError, apiOptions } from "./github"
import { Backoff } from "./backoff"

/** Bytes asked for in one Range request at most: what may arrive into the VM at once. */
export const CHUNK_BYTES = 2048
/** A request waits until the sink can take this much (or the rest of the asset). */
const MIN_CHUNK_BYTES = 2048
/** Consecutive failed attempts (no byte gained) before the download gives up. */
export const MAX_FAILURES = 6
const MAX_REDIRECTS = 5
const STORAGE_KEEP = ["content-range", "content-type"]

/**
 * Where asset bytes go, in order: data[from, to) are the next bytes. Resolves once
 * they are held (the OTA service's ImageWriter).
 */
export interface ByteSink {
    push(data: Buffer, from: number, to: number): Promise<void>
    /** bytes push() takes now without waiting */
    room(): number
    /** resolves once room() is at least `bytes` */
    waitRoom(bytes: number): Promise<void>
}

/** What a download cost, for status lines and the benchmark. */
export interface DownloadStats {
    /** HTTP requests, redirect hops included */
    requests: number
    /** body bytes received from the storage (or API) host for the asset */
    bytesFetched: number
    /** attempts that failed and were retried */
    retries: number
    /** the storage host answered 200 to a Range request */
    rangeIgnored: boolean
}

/** A download error that retrying cannot fix (wrong size, 416, redirect refused ...). */
export class DownloadError extends Error {
    constructor(message: string) {
        super(message)
        this.name = "DownloadError"
    }
}

export class AssetDownload {
    stats: DownloadStats = { requests: 0, bytesFetched: 0, retries: 0, rangeIgnored: false }
    private location: string // signed storage URL from the last redirect
    private got = 0 // bytes of the current request passed on

    constructor(
        private cfg: GithubConfig,
        private assetUrl: string,
        readonly size: number
    ) {
        // The asset URL comes from the API's JSON: never send the token elsewhere.
        if (originOf(new URL(assetUrl)) !== originOf(new URL(cfg.api)))
            throw new GithubError("github asset: url is not on the API origin (GITHUB_API)", 0)
    }

    /**
     * Fetches asset bytes [from, size) into `sink`, in order, in Range requests of
     * CHUNK_BYTES. A dropped connection, a timeout or a 5xx is retried from the first
     * byte not passed on yet, with capped exponential backoff and jitter; an expired
     * signed URL (403/400 from storage) goes back to the API for a new one. Throws
     * DownloadError, RequestError, GithubError or the sink's error when it cannot go on.
     */
    async run(sink: ByteSink, from: number) {
        let offset = from
        const backoff = new Backoff(1000, 30000)
        let failures = 0
        while (offset < this.size) {
            // A response is always taken off the socket at once: a request asks for no
            // more than the sink can take without waiting, so that a server that sends
            // more than asked (a 200 that ignores Range, a 206 that runs on) never piles
            // data up in the VM before the connection is closed.
            // (a host that ignores Range sends from byte 0 again: fewer, full chunks then)
            const least = this.stats.rangeIgnored ? CHUNK_BYTES : MIN_CHUNK_BYTES
            await sink.waitRoom(Math.min(least, this.size - offset))
            const n = Math.min(Math.min(CHUNK_BYTES, this.size - offset), sink.room())
            let want = n
            this.got = 0
            try {
                const res = await this.get(offset, n)
                try {
                    want = await this.readChunk(res, offset, n, sink)
                } finally {
                    offset += this.got
                    if (this.got) {
                        failures = 0
                        backoff.reset()
                    }
                }
                if (this.got < want) throw new Error(`download: connection ended at ${offset} of ${this.size}`)
            } catch (e) {
                if (!this.retryable(e)) throw e
                if (++failures > MAX_FAILURES) throw e
                this.stats.retries++
                console.log(`ota: retry at ${offset} after: ${(e as Error).message}`)
                await ds.sleep(backoff.next())
            }
        }
        // nothing more is asked of the storage host: leave nothing open for it to fill
        await closeIdle()
    }

    private retryable(e: any) {
        if (e instanceof DownloadError || e instanceof RequestError) return false
        if (e instanceof GithubError) {
            const s = e.status
            // expired signed URL (storage 403/400): a new one from the API; 5xx and 429: later
            if (s === 403 || s === 400) return e.fromStorage
            return s === 429 || s >= 500
        }
        // the OTA service's refusals and a release that cannot be installed are final;
        // network and HTTP framing errors are retried
        const name = (e as Error).name
        return name !== "OtaError" && name !== "ReleaseError"
    }

    // A response whose body holds asset bytes from `offset` (206) or from 0 (200).
    private async get(offset: number, n: number): Promise<HttpResponse> {
        const range: [string, string] = ["Range", `bytes=${offset}-${offset + n - 1}`]
        if (this.location) {
            this.stats.requests++
            const res = await request(this.location, {
                headers: [range],
                keep: STORAGE_KEEP,
                maxRedirects: MAX_REDIRECTS,
                totalTimeout: DEFAULT_TIMEOUTS.total, // (a trickle of bytes is an error too)
            })
            if (res.status === 206 || res.status === 200) return res
            await res.close()
            this.location = null // expired or refused: ask the API again
            if (res.status === 416)
                throw new DownloadError(`download: storage answered 416 to ${range[1]} of ${this.size} bytes`)
            throw new GithubError(`storage: HTTP ${res.status}`, res.status, true)
        }
        const o = apiOptions(this.cfg, "application/octet-stream")
        o.headers.push(range)
        o.keep = STORAGE_KEEP
        o.maxRedirects = MAX_REDIRECTS
        o.totalTimeout = DEFAULT_TIMEOUTS.total
        this.stats.requests++
        const res = await request(this.assetUrl, o)
        // remember where the redirects led: the next chunks go there directly
        if (res.url !== this.assetUrl && (res.status === 206 || res.status === 200))
            this.location = res.url
        if (res.status === 206 || res.status === 200) return res
        await res.close()
        if (res.status === 416)
            throw new DownloadError(`download: 416 to ${range[1]} of ${this.size} bytes`)
        throw apiError(res, "asset")
    }

    // Passes asset bytes [offset, offset+n) of a response on to `sink` as they arrive,
    // counting them in `got`, so that what arrived before a drop is kept. Returns how
    // many bytes it went for (fewer than n from a host that ignores Range).
    private async readChunk(res: HttpResponse, offset: number, n: number, sink: ByteSink): Promise<number> {
        let skip = 0
        const type = res.header("content-type") || ""
        if (type.startsWith("text/html")) {
            await res.close()
            throw new DownloadError(`download: ${res.status} with an HTML page instead of the asset`)
        }
        if (res.status === 206) {
            const r = parseContentRange(res.header("content-range") || "")
            if (r.start !== offset || (r.total >= 0 && r.total !== this.size) || r.end >= offset + n) {
                await res.close()
                throw new DownloadError(
                    `download: Content-Range ${r.start}-${r.end}/${r.total} does not answer ${offset}-${offset + n - 1}/${this.size}`
                )
            }
            n = r.end - r.start + 1 // a server may send less than asked (RFC 9110 14.1.2)
        } else {
            // 200: the whole asset from byte 0. The VM has no receive backpressure, so
            // the body is read up to the end of this chunk and the connection closed.
            const length = res.header("content-length")
            if (length !== undefined && parseInt(length) !== this.size) {
                await res.close()
                throw new DownloadError(`download: 200 with ${length} bytes, the asset has ${this.size}`)
            }
            if (!this.stats.rangeIgnored) console.log("ota: the storage host ignores Range")
            this.stats.rangeIgnored = true
            skip = offset
        }
        try {
            for (;;) {
                const piece = await res.read()
                if (piece === null) break
                this.stats.bytesFetched += piece.length
                let from = 0
                if (skip) {
                    from = Math.min(skip, piece.length)
                    skip -= from
                }
                const k = Math.min(piece.length - from, n - this.got)
                if (k > 0) {
                    await sink.push(piece, from, from + k)
                    this.got += k
                }
                if (this.got === n && !skip) {
                    // (a 206 that goes on past its range is not waited for)
                    await res.release()
                    break
                }
            }
        } catch (e) {
            await res.close()
            throw e
        }
        return n
    }
}
