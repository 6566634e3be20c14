// Builds the device program with the pinned devicescript CLI and reads its settings
// files (.env.defaults, then .env.local), as `devs` does when it deploys.
import { execFileSync } from "node:child_process"
import {
    copyFileSync,
    existsSync,
    mkdtempSync,
    readFileSync,
    rmSync,
    symlinkSync,
    unlinkSync,
    writeFileSync,
} from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

export const ROOT = join(__dirname, "..")
const MAIN_ENTRY = "src/main.ts"
// `devs build` always writes here (its --out-dir takes no value in 2.16.4, so it cannot
// be moved); `--no-build` runs and devtools read it back.
const BIN = join(".devicescript", "bin", "bytecode.devs")
const BYTECODE = join(ROOT, BIN)

export interface BuildOptions {
    /** Entry point, relative to the project (default src/main.ts). */
    entry?: string
    /** Reuse .devicescript/bin/bytecode.devs when it exists (main program only). */
    skip?: boolean
    /**
     * The program version the build records ("@version", read on the device with
     * `ds._dcfgString("@version")`), e.g. "v1.2.0". `devs build` takes it from git tags or
     * package.json; with this option the program is built in a scratch project whose
     * package.json has this version and no git.
     */
    version?: string
}

/**
 * Compiles src/main.ts (or `entry`) and returns the bytecode. The main program is built
 * in the project, into .devicescript/bin/bytecode.devs. Any other entry (a test fixture)
 * is built in a scratch project that links this one's node_modules, services and boards
 * (so the CLI finds the same libraries and leaves them as they are), and that shared
 * file keeps the main program. `skip` applies to the main program only.
 */
export function buildProgram(options: BuildOptions = {}): Buffer {
    const entry = resolve(ROOT, options.entry || MAIN_ENTRY)
    if (entry !== resolve(ROOT, MAIN_ENTRY) || options.version) return buildElsewhere(entry, options.version)
    if (!options.skip || !existsSync(BYTECODE)) devsBuild(MAIN_ENTRY, ROOT)
    return readFileSync(BYTECODE)
}

function devsBuild(entry: string, cwd: string) {
    const cli = require.resolve("@devicescript/cli/built/devicescript-cli.cjs")
    execFileSync(process.execPath, [cli, "build", entry, "--quiet"], {
        cwd,
        stdio: ["ignore", "ignore", "inherit"],
    })
}

function buildElsewhere(entry: string, version?: string): Buffer {
    const dir = mkdtempSync(join(tmpdir(), "devs-build-"))
    const links: string[] = []
    try {
        copyFileSync(join(ROOT, "devsconfig.json"), join(dir, "devsconfig.json"))
        if (version) tagScratchProject(dir, version)
        for (const name of ["node_modules", "services", "boards"]) {
            if (!existsSync(join(ROOT, name))) continue
            symlinkSync(join(ROOT, name), join(dir, name), "dir")
            links.push(join(dir, name))
        }
        devsBuild(entry, dir)
        return readFileSync(join(dir, BIN))
    } finally {
        // The links first, so that nothing behind them is ever removed.
        for (const link of links) unlinkSync(link)
        rmSync(dir, { recursive: true, force: true })
    }
}

// `devs build` records "@version" only inside a git work tree: `git describe --tags`, exact
// when the tree is clean and on a tag v[0-9]* (cli/src/build.ts compilePackageJson).
function tagScratchProject(dir: string, version: string) {
    if (!/^v\d/.test(version)) throw new Error(`program version "${version}": tag it like v1.2.3`)
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "ota-program", version: version.slice(1) }))
    const git = (...args: string[]) =>
        execFileSync("git", ["-c", "user.name=sim", "-c", "user.email=sim@localhost", ...args], {
            cwd: dir,
            stdio: "ignore",
        })
    git("init", "-q")
    git("add", "package.json", "devsconfig.json")
    git("commit", "-q", "-m", version)
    git("tag", version)
}

/** KEY=VALUE lines; numbers stay numbers, everything else is a string. */
export function parseEnv(text: string): Record<string, string | number> {
    const out: Record<string, string | number> = {}
    for (const raw of text.split(/\r?\n/)) {
        const line = raw.trim()
        if (!line || line.startsWith("#")) continue
        const eq = line.indexOf("=")
        if (eq <= 0) continue
        const key = line.slice(0, eq).trim()
        const value = line.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1")
        out[key] = /^-?\d+(\.\d+)?$/.test(value) ? +value : value
    }
    return out
}

export function readEnvSettings(dir = ROOT): Record<string, string | number> {
    const read = (f: string) => (existsSync(join(dir, f)) ? parseEnv(readFileSync(join(dir, f), "utf8")) : {})
    return { ...read(".env.defaults"), ...read(".env.local") }
}

/**
 * A numeric `export const NAME = <number>` of the library's device code
 * (packages/ota/src/FILE), read from its source, so that host tests and the bench use
 * the device's own value: e.g. deviceConstant("download.ts", "CHUNK_BYTES").
 */
export function deviceConstant(file: string, name: string): number {
    const src = readFileSync(join(ROOT, "packages", "ota", "src", file), "utf8")
    const m = new RegExp(`^export const ${name} = (\\d+)\\b`, "m").exec(src)
    if (!m) throw new Error(`packages/ota/src/${file} has no 'export const ${name} = <number>'`)
    return +m[1]
}
