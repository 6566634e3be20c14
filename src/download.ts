// Downloads a release asset in bounded Range requests. The VM has no backpressure on
// sockets, so asking for one chunk at a time is what bounds memory. GitHub answers the
// asset's API URL with a 302 to a storage host; the token is sent to the API origin only.
import { request, HttpResponse, originOf } from "./http"
import { parseContentRange } from "./httpparse"
import { URL } from "@devicescript/net"
import { GithubConfig, GithubError, apiError, apiHeaders } from "./github"

export const CHUNK_BYTES = 8192
const MAX_ATTEMPTS = 4

/** Called with consecutive pieces of the asset, each at most CHUNK_BYTES long. */
export type ChunkSink = (offset: number, data: Buffer) => Promise<void>

export class AssetDownload {
    private location: string // signed storage URL from the last redirect

    constructor(
        private cfg: GithubConfig,
        private assetUrl: string,
        readonly size: number
    ) {
        // The asset URL comes from the API's JSON: never send the token elsewhere.
        if (originOf(new URL(assetUrl)) !== originOf(new URL(cfg.api)))
            throw new GithubError("github asset: url is not on the API origin", 0)
    }

    /** Fetches the whole asset, chunk by chunk, into `sink`. */
    async run(sink: ChunkSink) {
        const buf = Buffer.alloc(CHUNK_BYTES)
        let offset = 0
        while (offset < this.size) {
            const n = Math.min(CHUNK_BYTES, this.size - offset)
            await this.fetchChunk(offset, n, buf)
            await sink(offset, n === CHUNK_BYTES ? buf : buf.slice(0, n))
            offset += n
        }
    }

    // Fills buf[0..n) with asset bytes [offset, offset+n), retrying on transient errors.
    private async fetchChunk(offset: number, n: number, buf: Buffer) {
        let lastError: Error
        for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
            try {
                const res = await this.get(offset, n)
                await readRange(res, offset, n, buf)
                return
            } catch (e) {
                lastError = e as Error
                if (e instanceof GithubError && e.status && e.status !== 403) throw e
                // An expired signed URL (403) or a broken connection: ask the API again.
                this.location = null
            }
        }
        throw lastError
    }

    private async get(offset: number, n: number): Promise<HttpResponse> {
        const range: [string, string] = ["Range", `bytes=${offset}-${offset + n - 1}`]
        if (this.location) {
            const res = await request(this.location, { headers: [range] })
            if (res.status === 206 || res.status === 200) return res
            await res.drain()
            throw new GithubError(`storage: HTTP ${res.status}`, res.status)
        }
        const headers = apiHeaders(this.cfg, "application/octet-stream")
        headers.push(range)
        const res = await request(this.assetUrl, { headers })
        if (res.status === 302 || res.status === 301 || res.status === 307) {
            const location = res.header("location")
            await res.drain()
            if (!location) throw new GithubError("github asset: redirect without Location", res.status)
            this.location = location
            return await this.get(offset, n) // now without the token
        }
        // GitHub may also stream the asset itself.
        if (res.status === 206 || res.status === 200) return res
        await res.drain()
        throw apiError(res, "asset")
    }
}

// Copies the requested range out of a 206 (or of a 200 that ignored Range).
async function readRange(res: HttpResponse, offset: number, n: number, buf: Buffer) {
    let pos = 0 // position in the body
    let start = offset // body position of asset byte `offset`
    if (res.status === 206) {
        const r = parseContentRange(res.header("content-range") || "")
        if (r.start !== offset || r.end !== offset + n - 1) {
            await res.close()
            throw new Error(`download: wrong range ${r.start}-${r.end}, wanted ${offset}-${offset + n - 1}`)
        }
        start = 0
    }
    let got = 0
    for (;;) {
        const piece = await res.read()
        if (piece === null) break
        const from = Math.max(start - pos, 0)
        const to = Math.min(piece.length, start + n - pos)
        if (to > from) {
            buf.blitAt(got, piece, from, to - from)
            got += to - from
        }
        pos += piece.length
        // A server that ignores Range sends everything: stop at the end of our chunk.
        if (got === n && res.status === 200) {
            await res.close()
            break
        }
    }
    if (got !== n) throw new Error(`download: got ${got} of ${n} bytes at ${offset}`)
}
