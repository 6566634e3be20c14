/**
 * startReleaseServer: builds the context, puts the API and storage handlers (behind
 * the canned-5xx fault) on two raw HTTP/1.1 listeners and returns the handle tests use
 * (URLs, request log, live fault plan, counters, close).
 */
import { createContext, emptyStats, Origin, ReleaseServer, ReleaseServerOptions, WireRequest, Reply, Context } from "./context"
import { handleApi } from "./api"
import { handleStorage, trackUrlExpiry } from "./storage"
import { cannedReply } from "./faults"
import { listenOrigin, OriginServer } from "./http-wire"

function originHandler(ctx: Context, origin: Origin, handle: (ctx: Context, req: WireRequest) => Reply) {
    return (req: WireRequest): Reply => {
        trackUrlExpiry(ctx)
        return cannedReply(ctx, origin, req) ?? handle(ctx, req)
    }
}

/**
 * Starts the emulator on two loopback ports (options.port / options.storagePort, 0 for
 * free ones). Rejects when a port cannot be bound (both listeners are then closed).
 */
export async function startReleaseServer(opts: ReleaseServerOptions): Promise<ReleaseServer> {
    const ctx = createContext(opts)
    const host = opts.host ?? "127.0.0.1"
    const urlHost = host.includes(":") ? `[${host}]` : host
    const started: OriginServer[] = []
    try {
        const api = await listenOrigin(ctx, "api", originHandler(ctx, "api", handleApi), host, opts.port ?? 0)
        started.push(api)
        ctx.apiUrl = `http://${urlHost}:${api.port}`
        const storage = await listenOrigin(ctx, "storage", originHandler(ctx, "storage", handleStorage), host, opts.storagePort ?? 0)
        started.push(storage)
        ctx.storageUrl = `http://${urlHost}:${storage.port}`
    } catch (e) {
        await Promise.all(started.map(s => s.close()))
        throw e
    }
    const server: ReleaseServer = {
        apiUrl: ctx.apiUrl,
        storageUrl: ctx.storageUrl,
        requests: ctx.requests,
        faults: ctx.faults,
        stats: ctx.stats,
        resetStats() {
            const z = emptyStats()
            for (const k of ["connections", "requests", "bodyBytes"] as const) Object.assign(ctx.stats[k], z[k])
        },
        close: async () => {
            await Promise.all(started.map(s => s.close()))
        },
    }
    return server
}
