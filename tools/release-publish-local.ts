// The publishing step of a release, on a laptop: puts a release packed by release:pack
// into the release server emulator's folder (tools/release-server/store.ts layout), as
// `gh release create` puts it on GitHub, so that a tag can be rehearsed end to end:
//   npm run release:pack -- --version v1.2.0 --firmware fw.bin --out dist
//   npm run release:publish-local -- --dir RELEASES --from dist [--owner O --repo R]
// Owner and repository default to GITHUB_OWNER and GITHUB_REPO of .env.defaults /
// .env.local (what the device watches). Before writing, release.json's tag and assets are
// checked again as release:pack checks them, and every asset against release.json and
// SHA256SUMS, which is published with them; like GitHub, an existing
// release of the same tag is refused. A refusal publishes nothing and exits 1.
import { createHash } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { parseCommandLine } from "./cli-args"
import { writeRelease } from "./release-server"
import { loadRepo } from "./release-server/store"
import { checkFirmware, checkProgram, checkReleaseTag, FIRMWARE_ASSET, MANIFEST_FILE, NOTES_FILE, PROGRAM_ASSET, ReleaseManifest, SUMS_FILE } from "./release-pack"
import { readEnvSettings } from "../sim/program"

export interface PublishLocalOptions {
    dir: string // the emulator's releases folder (release-server --dir)
    from: string // a folder written by release:pack
    owner: string
    repo: string
    public?: boolean // a public repository (default private, as most firmware repositories)
}

/** A refusal: nothing was published. */
export class PublishError extends Error {
    name = "PublishError"
}

/** Parses sha256sum output ("<64 hex>  <name>" per line) into name -> hex. */
export function parseSums(text: string): Map<string, string> {
    const out = new Map<string, string>()
    for (const line of text.split("\n")) {
        if (!line.trim()) continue
        const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line)
        if (!m) throw new PublishError(`${SUMS_FILE}: not a sha256sum line: "${line.slice(0, 80)}"`)
        if (out.has(m[2])) throw new PublishError(`${SUMS_FILE}: ${m[2]} is listed twice`)
        out.set(m[2], m[1])
    }
    return out
}

/** Checks the packed release in `o.from`, then writes it as release `tag` of owner/repo in `o.dir`. */
export function publishLocal(o: PublishLocalOptions): ReleaseManifest {
    const file = (name: string) => join(o.from, name)
    if (!existsSync(file(MANIFEST_FILE))) throw new PublishError(`${o.from} has no ${MANIFEST_FILE}: pack it with npm run release:pack first`)
    let m: ReleaseManifest
    try {
        m = JSON.parse(readFileSync(file(MANIFEST_FILE), "utf8"))
    } catch (e) {
        throw new PublishError(`${file(MANIFEST_FILE)}: ${(e as Error).message}`)
    }
    if (!m || typeof m !== "object" || typeof m.tag !== "string" || !Array.isArray(m.assets) || m.assets.length === 0)
        throw new PublishError(`${file(MANIFEST_FILE)}: no tag or no assets`)
    // release.json is data from a folder: checked again, as release:pack checked it
    let prerelease: boolean
    try {
        prerelease = checkReleaseTag(m.tag).prerelease
    } catch (e) {
        throw new PublishError(`${file(MANIFEST_FILE)}: ${(e as Error).message}`)
    }
    if (m.prerelease !== prerelease) throw new PublishError(`${file(MANIFEST_FILE)}: "prerelease" is ${m.prerelease}, the tag ${m.tag} says ${prerelease}`)
    const names = m.assets.map(a => a?.name)
    if (names.some(n => n !== FIRMWARE_ASSET && n !== PROGRAM_ASSET) || new Set(names).size !== names.length)
        throw new PublishError(`${file(MANIFEST_FILE)}: assets ${JSON.stringify(names)}: only ${FIRMWARE_ASSET} and ${PROGRAM_ASSET}, once each`)
    for (const [what, s] of [["--owner", o.owner], ["--repo", o.repo]])
        if (!/^[A-Za-z0-9_.-]+$/.test(s) || s.startsWith(".")) throw new PublishError(`${what} ${JSON.stringify(s)} is not a GitHub name`)
    if (!existsSync(file(SUMS_FILE))) throw new PublishError(`${o.from} has no ${SUMS_FILE}`)
    const sums = parseSums(readFileSync(file(SUMS_FILE), "utf8"))
    if (sums.size !== names.length || names.some(n => !sums.has(n)))
        throw new PublishError(`${SUMS_FILE}: one line per asset of ${MANIFEST_FILE}, nothing else (${[...sums.keys()].join(", ")})`)
    const assets = m.assets.map(a => {
        if (!existsSync(file(a.name))) throw new PublishError(`asset ${a.name} is missing from ${o.from}`)
        const data = readFileSync(file(a.name))
        const sha = createHash("sha256").update(data).digest("hex")
        if (sha !== a.sha256 || sums.get(a.name) !== sha || data.length !== a.size)
            throw new PublishError(`asset ${a.name} does not match ${MANIFEST_FILE} and ${SUMS_FILE} (changed after packing?)`)
        try {
            if (a.name === PROGRAM_ASSET) checkProgram(data, m.tag)
            else if (checkFirmware(data, m.tag).info.signedBy !== m.firmware?.signedBy)
                throw new PublishError(`${FIRMWARE_ASSET}: its signature is not the one ${MANIFEST_FILE} names (signedBy ${m.firmware?.signedBy ?? "none"})`)
        } catch (e) {
            throw new PublishError((e as Error).message)
        }
        return { name: a.name, data }
    })
    // GitHub names are case-insensitive: an existing repository folder keeps its spelling
    const existing = existsSync(o.dir) ? loadRepo(o.dir, o.owner, o.repo) : undefined
    if (existing?.releases.some(r => r.tag === m.tag))
        throw new PublishError(`${o.owner}/${o.repo} already has a release ${m.tag}: publish a new version (a device never installs the same version twice)`)
    const body = existsSync(file(NOTES_FILE)) ? readFileSync(file(NOTES_FILE), "utf8") : ""
    // SHA256SUMS is an asset too, as the release workflow publishes it (devices skip it)
    assets.push({ name: SUMS_FILE, data: readFileSync(file(SUMS_FILE)) })
    writeRelease(o.dir, existing?.owner ?? o.owner, existing?.repo ?? o.repo, m.tag, { assets, body, prerelease, private: o.public ? false : undefined })
    return m
}

const USAGE = `usage: npm run release:publish-local -- --dir RELEASES --from OUT [--owner O] [--repo R] [--public]

Publishes the release that npm run release:pack wrote into OUT as a release of O/R in
the release server emulator's folder RELEASES (npm run release-server -- --dir RELEASES).
O and R default to GITHUB_OWNER and GITHUB_REPO of .env.defaults / .env.local.`

/** The command line; returns the exit code (0 published, 1 refused, 2 usage). */
export function main(argv: string[], log = console.log, error = console.error): number {
    const v = parseCommandLine(argv, { strings: ["dir", "from", "owner", "repo"], flags: ["public"], required: ["dir", "from"], usage: USAGE }, log, error)
    if (typeof v === "number") return v
    const env = readEnvSettings()
    const owner = (v.owner as string) ?? String(env.GITHUB_OWNER ?? "")
    const repo = (v.repo as string) ?? String(env.GITHUB_REPO ?? "")
    if (!owner || !repo) {
        error(`no --owner/--repo and no GITHUB_OWNER/GITHUB_REPO in .env.defaults or .env.local\n${USAGE}`)
        return 2
    }
    try {
        const m = publishLocal({ dir: v.dir as string, from: v.from as string, owner, repo, public: !!v.public })
        log(`published ${m.tag}${m.prerelease ? " (pre-release)" : ""} of ${owner}/${repo} into ${v.dir}: ${m.assets.map(a => a.name).join(", ")}`)
        return 0
    } catch (e) {
        // (a file system error, e.g. --dir under a file, is a refusal too)
        if (!(e instanceof PublishError) && !(e as NodeJS.ErrnoException).code) throw e
        error(`release:publish-local: ${(e as Error).message}; nothing published`)
        return 1
    }
}

if (require.main === module) process.exitCode = main(process.argv.slice(2))
