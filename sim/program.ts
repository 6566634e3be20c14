// Builds the device program with the pinned devicescript CLI and reads its settings
// files (.env.defaults, then .env.local), as `devs` does when it deploys.
import { execFileSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"

export const ROOT = join(__dirname, "..")
const BYTECODE = join(ROOT, ".devicescript", "bin", "bytecode.devs")

/** Compiles src/main.ts (or `entry`) and returns the bytecode. */
export function buildProgram(options: { entry?: string; skip?: boolean } = {}): Buffer {
    if (!options.skip || !existsSync(BYTECODE)) {
        const cli = require.resolve("@devicescript/cli/built/devicescript-cli.cjs")
        execFileSync(process.execPath, [cli, "build", options.entry || "src/main.ts", "--quiet"], {
            cwd: ROOT,
            stdio: ["ignore", "ignore", "inherit"],
        })
    }
    return readFileSync(BYTECODE)
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
