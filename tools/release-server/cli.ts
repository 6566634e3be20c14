/**
 * Command line: serves a release folder on two ports until SIGINT / SIGTERM, logging
 * one line per request (path only: the query of storage URLs holds the signature, and
 * tokens are never printed). `npm run release-server -- --help`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { ReleaseServerOptions } from "./context"
import { startReleaseServer } from "./server"
import { listRepos } from "./store"

function usage(): string {
    return [
        "usage: tsx tools/release-server/cli.ts --dir DIR [--port N] [--storage-port N] [--token T[=owner/repo,...]]... [--ttl S]",
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

/** Options from argv, or an error message ("" for --help). */
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
        `Try: curl -sSL -H 'User-Agent: curl' -H "Authorization: Bearer ${tok}" ${server.apiUrl}/repos/${ex.owner}/${ex.repo}/releases/latest`,
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
