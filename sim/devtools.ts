// `npm run sim`: the simulated ESP32-S3 on the bus of a running `npx devicescript devtools`
// (the hub that the VS Code DeviceScript extension and the CLI talk to), as `devs add sim`
// connects simulated services to it. The device is the real DeviceScript VM with the
// simulated OTA updater server and the example application's status light over a flash
// file, and a release server emulator serves a newer release for it to install, offline.
//
//   npx devicescript devtools          # terminal 1: the hub (ws 8081, tcp 8082)
//   npm run sim                        # terminal 2: this; waits for the hub if needed
//
// Once on the bus, it asks devtools to build src/main.ts and deploy it with the settings
// of .env.defaults and .env.local, as the VS Code extension asks (--no-deploy: the device
// keeps what its flash holds and waits for a deploy from VS Code). Deploy again at any
// time from VS Code; a program and its settings stay in the flash file, as on a board.
import { existsSync, mkdirSync, rmSync } from "node:fs"
import { connect, createServer } from "node:net"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { createNodeSocketTransport, JDBus, SRV_DEVICE_SCRIPT_MANAGER } from "jacdac-ts"
import WebSocket from "ws"
import { startReleaseServer, writeRelease, ReleaseServer } from "../tools/release-server"
import { buildAppImage } from "../tools/esp-image"
import { SimDevice } from "./device-sim"
import { readEnvSettings, ROOT } from "./program"
import { createFlash } from "./run-once"

/** Where devtools serves its Jacdac bus over TCP and WebSocket (fixed by the CLI, cli/src/devtools.ts). */
export const DEVTOOLS_TCP_PORT = 8082
export const DEVTOOLS_WS_PORT = 8081
/** The release server emulator's API port, as .env.defaults sets GITHUB_API; storage is the next one. */
export const SIM_API_PORT = 8090
export const SIM_OWNER = "demo-org"
export const SIM_REPO = "demo-firmware"
const STATE_DIR = join(ROOT, ".devicescript", "sim")
const DEPLOY_ATTEMPTS = 3
const REJOIN_MS = 1000

const USAGE = `usage: npm run sim -- [--flash FILE] [--reset] [--no-deploy] [--image-kb N] [--api-port N] [--verbose] [--help]
  --flash FILE      the device's flash (default .devicescript/sim/esp32s3.flash, kept between runs)
  --reset           start again from a new flash with v1.0.0 in ota_0 and no program
  --no-deploy       do not ask devtools to deploy src/main.ts: wait for a deploy from VS Code
  --image-kb N      size of the v1.1.0 image the emulator serves (default 128)
  --api-port N      the emulator's API port (default ${SIM_API_PORT}; storage on N+1); the program finds
                    it through GITHUB_API in .env.defaults / .env.local, so change that too
  --verbose         also print the VM's own messages (dmesg)`

export interface SimOptions {
    flashFile: string
    reset?: boolean
    /** ask devtools to build and deploy src/main.ts with the .env settings at the start (default true) */
    deploy?: boolean
    imageKb?: number
    apiPort?: number
    verbose?: boolean
    log?: (line: string) => void
}

export interface Sim {
    device: SimDevice
    releases: ReleaseServer
    bus: JDBus
    stop(): Promise<void>
}

/** Whether something accepts connections on 127.0.0.1:`port`. */
function isListening(port: number) {
    return new Promise<boolean>(resolve => {
        const s = connect(port, "127.0.0.1")
        s.once("connect", () => (s.destroy(), resolve(true)))
        s.once("error", () => resolve(false))
    })
}

/** Resolves when something listens on 127.0.0.1:`port` (devtools), trying every 250 ms. */
export async function waitForListener(port: number, timeoutMs = Infinity) {
    const deadline = Date.now() + timeoutMs
    for (;;) {
        if (await isListening(port)) return
        if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`)
        await new Promise(r => setTimeout(r, 250))
    }
}

/** Throws a clear error when 127.0.0.1:`port` is taken. */
export async function checkPortFree(port: number, what: string) {
    await new Promise<void>((resolve, reject) => {
        const s = createServer()
        s.once("error", () => reject(new Error(`port ${port} (${what}) is in use: stop what holds it, or choose another`)))
        s.listen(port, "127.0.0.1", () => s.close(() => resolve()))
    })
}

/**
 * Publishes `SIM_OWNER/SIM_REPO` v1.1.0 (a public repository, as anyone can read a public
 * repo on GitHub without a token) and starts the emulator on fixed ports.
 */
async function startReleases(apiPort: number, imageKb: number) {
    await checkPortFree(apiPort, "release server API")
    await checkPortFree(apiPort + 1, "release server storage")
    const dir = join(STATE_DIR, "releases")
    rmSync(dir, { recursive: true, force: true })
    const image = buildAppImage({ version: "1.1.0", payloadSize: imageKb * 1024, projectName: SIM_REPO })
    writeRelease(dir, SIM_OWNER, SIM_REPO, "v1.1.0", {
        assets: [{ name: `${SIM_REPO}-1.1.0-esp32s3.bin`, data: image }],
        body: "Simulated release for `npm run sim`.",
        private: false,
    })
    // any token shaped like GitHub's reads it too, so a GITHUB_TOKEN in .env.local does no harm
    return startReleaseServer({ dir, port: apiPort, storagePort: apiPort + 1, anyGithubToken: true })
}

/** What devtools answers to a build request (cli/src/devtools.ts, rebuild()). */
export interface DevtoolsBuild {
    success: boolean
    deployStatus: string
    diagnostics: { formatted: string }[]
}

/**
 * Asks devtools to build `file` and deploy it, with the settings of .env.defaults and
 * .env.local, to the DeviceScript manager of `deviceId`: the request the VS Code extension
 * sends over devtools' WebSocket side channel ({ req: "build", data: { filename, deployTo } }).
 * Throws when the build or the deploy failed.
 */
export async function deployThroughDevtools(deviceId: string, file = "src/main.ts", port = DEVTOOLS_WS_PORT) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`)
    try {
        await new Promise((resolve, reject) => {
            ws.once("open", resolve)
            ws.once("error", reject)
        })
        const answer = new Promise<DevtoolsBuild>((resolve, reject) => {
            ws.on("message", (data, binary) => {
                if (binary) return // the bus's frames
                const msg = JSON.parse(data.toString())
                if (msg.seq !== 1) return
                if (msg.resp === "error" || msg.error) reject(new Error(`devtools: ${JSON.stringify(msg.data ?? msg.error)}`))
                else resolve(msg.data as DevtoolsBuild)
            })
            ws.once("close", () => reject(new Error("devtools closed the connection")))
        })
        ws.send(JSON.stringify({ req: "build", seq: 1, data: { filename: file, deployTo: deviceId } }))
        const r = await answer
        if (!r.success) throw new Error(`devtools could not build ${file}: ${r.diagnostics.map(d => d.formatted).join("\n")}`)
        if (r.deployStatus !== "OK") throw new Error(`devtools built ${file} but the deploy failed: ${r.deployStatus}`)
        return r
    } finally {
        ws.close()
    }
}

/** Resolves when devtools' bus sees the DeviceScript manager of `deviceId`. */
async function waitForManager(bus: JDBus, deviceId: string, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs
    while (!bus.device(deviceId, true)?.services({ serviceClass: SRV_DEVICE_SCRIPT_MANAGER }).length) {
        if (Date.now() > deadline) throw new Error(`the VM's DeviceScript manager did not appear on the bus`)
        await new Promise(r => setTimeout(r, 50))
    }
}

/** Starts the emulator and the device, and joins devtools' bus (waiting for devtools). */
export async function startSim(o: SimOptions): Promise<Sim> {
    const log = o.log ?? ((line: string) => console.log(line))
    const devtoolsPort = DEVTOOLS_TCP_PORT
    const releases = await startReleases(o.apiPort ?? SIM_API_PORT, o.imageKb ?? 128)
    log(`sim: release server ${releases.apiUrl} (storage ${releases.storageUrl}): ${SIM_OWNER}/${SIM_REPO} v1.1.0`)
    const api = readEnvSettings().GITHUB_API
    if (o.deploy !== false && api !== releases.apiUrl)
        log(`sim: warning: GITHUB_API in .env.defaults/.env.local is ${api}, not this emulator: the program will not find v1.1.0 (set GITHUB_API=${releases.apiUrl} in .env.local)`)
    if (o.reset || !existsSync(o.flashFile)) {
        mkdirSync(join(o.flashFile, ".."), { recursive: true })
        rmSync(o.flashFile, { force: true })
        createFlash(o.flashFile, "1.0.0")
        log(`sim: new flash ${o.flashFile}: v1.0.0 in ota_0, no program`)
    }
    log(`sim: waiting for devtools on tcp://127.0.0.1:${devtoolsPort} (npx devicescript devtools)`)
    await waitForListener(devtoolsPort)
    const transport = createNodeSocketTransport(devtoolsPort, "127.0.0.1")
    // The program and its settings come from devtools, as they come to a board.
    const device = new SimDevice({
        flashFile: o.flashFile,
        settings: {},
        transports: [transport],
        verbose: o.verbose,
        log: line => log(`  device | ${line}`),
    })
    await device.bus.connect(true)
    log(`sim: joined devtools; the device's OTA updater and status light are on its bus`)
    // devtools may go away (VS Code reloads its window): join it again when it is back;
    // the device runs on meanwhile, as a board does when its USB cable is pulled
    let stopped = false
    let rejoining = false
    const rejoin = setInterval(async () => {
        if (stopped || rejoining || !transport.disconnected) return
        rejoining = true
        try {
            if (await isListening(devtoolsPort)) {
                await device.bus.connect(true)
                if (transport.connected) log(`sim: joined devtools again`)
            }
        } finally {
            rejoining = false
        }
    }, REJOIN_MS)
    device.on("boot", (boot: number) => log(`sim: boot ${boot}`))
    await device.start()
    if (o.deploy !== false) {
        await waitForManager(device.bus, device.vmDeviceId)
        log(`sim: asking devtools to build src/main.ts and deploy it with .env.defaults and .env.local`)
        // A deploy that times out is tried again, as the CLI's own deploy loop does (bundle).
        for (let attempt = 1; ; attempt++) {
            try {
                await deployThroughDevtools(device.vmDeviceId)
                break
            } catch (e) {
                if (attempt >= DEPLOY_ATTEMPTS || !/timeout/i.test((e as Error).message)) throw e
                log(`sim: ${(e as Error).message}; trying again`)
            }
        }
        log(`sim: deployed`)
    }
    return {
        device,
        releases,
        bus: device.bus,
        async stop() {
            stopped = true
            clearInterval(rejoin)
            await device.stop()
            await releases.close()
        },
    }
}

async function main() {
    let args
    try {
        args = parseArgs({
            args: process.argv.slice(2),
            options: {
                flash: { type: "string", default: join(STATE_DIR, "esp32s3.flash") },
                reset: { type: "boolean", default: false },
                "no-deploy": { type: "boolean", default: false },
                "image-kb": { type: "string", default: "128" },
                "api-port": { type: "string", default: String(SIM_API_PORT) },
                verbose: { type: "boolean", default: false },
                help: { type: "boolean", default: false },
            },
        }).values
    } catch (e) {
        console.error(`${(e as Error).message}\n${USAGE}`)
        process.exit(2)
    }
    if (args.help) {
        console.log(USAGE)
        process.exit(0)
    }
    const sim = await startSim({
        flashFile: args.flash!,
        reset: args.reset,
        deploy: !args["no-deploy"],
        imageKb: +args["image-kb"]!,
        apiPort: +args["api-port"]!,
        verbose: args.verbose,
    })
    process.on("SIGINT", () => sim.stop().then(() => process.exit(0)))
}

if (require.main === module)
    main().catch(e => {
        console.error(`sim: ${(e as Error).message}`)
        process.exit(1)
    })
