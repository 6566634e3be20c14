// `npm run device -- --api URL --owner O --repo R --token T --asset GLOB --flash FILE [--once]`
// Runs the compiled device program on the real DeviceScript VM with the simulated OTA
// server over a flash file. With --once: one check (and update, reboot, confirm), then
// the last stdout line is a JSON result and the exit code says whether it worked. A
// panic of the program ends a --once run with {"result":"error","error":"vm panic
// 60004 (out of memory)","panic":60004,...} and exit code 1, unless --allow-panics (the
// runtime then restarts the program ~5 s after each panic, as on the device).
// --trusted-key PUB.pem makes it a signing device: its OTA server installs only firmware
// signed with that key's private half (services/otaupdater.md "Signed apps").
import { existsSync, readFileSync } from "node:fs"
import { parseArgs } from "node:util"
import type { KeyObject } from "node:crypto"
import { SimDevice } from "./device-sim"
import { loadPublicKey } from "../tools/secure-boot"
import { buildProgram, readEnvSettings } from "./program"
import { createFlash, runOnce, RunResult } from "./run-once"

const USAGE = `usage: npm run device -- --api URL --owner O --repo R [--token T] [--asset GLOB]
         --flash FILE [--once] [--checks N] [--interval S] [--timeout S] [--allow-panics] [--no-build] [--verbose]
         [--trusted-key PUB.pem]`

function parse(argv: string[]) {
    const { values } = parseArgs({
        args: argv,
        options: {
            api: { type: "string" },
            owner: { type: "string" },
            repo: { type: "string" },
            token: { type: "string" },
            asset: { type: "string" },
            flash: { type: "string" },
            once: { type: "boolean", default: false },
            checks: { type: "string", default: "1" },
            interval: { type: "string" },
            timeout: { type: "string", default: "600" },
            verbose: { type: "boolean", default: false },
            "allow-panics": { type: "boolean", default: false },
            "no-build": { type: "boolean", default: false },
            "trusted-key": { type: "string" },
            help: { type: "boolean", short: "h" },
        },
    })
    return values
}

async function main() {
    let args: ReturnType<typeof parse>
    try {
        args = parse(process.argv.slice(2))
    } catch (e) {
        console.error(`${(e as Error).message}\n${USAGE}`)
        return 2
    }
    if (args.help) {
        console.log(USAGE)
        return 0
    }
    if (!args.flash) {
        console.error(USAGE)
        return 2
    }
    const settings: Record<string, string | number> = readEnvSettings()
    if (args.api) settings.GITHUB_API = args.api
    if (args.owner) settings.GITHUB_OWNER = args.owner
    if (args.repo) settings.GITHUB_REPO = args.repo
    if (args.token) settings.GITHUB_TOKEN = args.token
    if (args.asset) settings.ASSET_PATTERN = args.asset
    if (args.interval) settings.CHECK_SECONDS = +args.interval

    let trustedKey: KeyObject | undefined
    if (args["trusted-key"]) {
        try {
            trustedKey = loadPublicKey(readFileSync(args["trusted-key"]))
        } catch (e) {
            console.error(`--trusted-key ${args["trusted-key"]}: ${(e as Error).message}`)
            return 2
        }
    }
    if (!existsSync(args.flash)) {
        createFlash(args.flash, "1.0.0")
        console.log(`device: new flash ${args.flash} with v1.0.0 in ota_0`)
    }
    const bytecode = buildProgram({ skip: args["no-build"] })
    const device = new SimDevice({
        flashFile: args.flash,
        deploy: true, // every start deploys the program and its settings, as `devs run` does
        bytecode,
        settings,
        verbose: args.verbose,
        log: line => console.log(line),
        trustedKey,
    })
    if (!args.once) {
        await device.start()
        process.on("SIGINT", () => device.stop().then(() => process.exit(0)))
        return undefined // runs until interrupted
    }
    const result: RunResult = await runOnce(device, {
        checks: +args.checks,
        timeoutMs: +args.timeout * 1000,
        allowPanics: args["allow-panics"],
    })
    console.log(JSON.stringify(result))
    return result.result === "error" ? 1 : 0
}

main().then(
    code => code !== undefined && process.exit(code),
    e => {
        console.log(JSON.stringify({ result: "error", error: (e as Error).message }))
        process.exit(1)
    }
)
