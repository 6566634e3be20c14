// `npm start`: the whole update on this machine, no board, token or network needed.
// A release server emulator publishes v1.1.0; a simulated ESP32-S3 running the real
// DeviceScript VM starts from v1.0.0, downloads, flashes, reboots and confirms.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startReleaseServer, writeRelease } from "../tools/release-server"
import { buildAppImage } from "../tools/esp-image"
import { SimDevice } from "./device-sim"
import { OtaUpdaterServer } from "./ota-server"
import { buildProgram } from "./program"
import { createFlash, deviceSettings, runOnce } from "./run-once"

const OWNER = "demo-org"
const REPO = "demo-firmware"
const TOKEN = "github_pat_demo_0000000000000000"
const IMAGE_BYTES = 300 * 1024

function bar(done: number, total: number, rate: number) {
    const width = 30
    const filled = total ? Math.round((done / total) * width) : 0
    const pct = total ? Math.floor((done * 100) / total) : 0
    return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(pct).padStart(3)}% ` +
        `${(done / 1024).toFixed(0)}/${(total / 1024).toFixed(0)} KB ${(rate / 1024).toFixed(1)} KB/s`
}

async function main() {
    const dir = mkdtempSync(join(tmpdir(), "ota-demo-"))
    const image = buildAppImage({ version: "1.1.0", payloadSize: IMAGE_BYTES, projectName: "demo-firmware" })
    writeRelease(join(dir, "releases"), OWNER, REPO, "v1.1.0", {
        assets: [
            { name: "demo-firmware-1.1.0-esp32s3.bin", data: image },
            { name: "demo-firmware-1.1.0-esp32.bin", data: buildAppImage({ version: "1.1.0", payloadSize: 4096, chipId: 0 }) },
        ],
        body: "## What's new\n- a faster blink\n",
    })
    const server = await startReleaseServer({ dir: join(dir, "releases"), tokens: { [TOKEN]: [`${OWNER}/${REPO}`] } })
    console.log(`release server: ${server.apiUrl} (storage ${server.storageUrl}), ${OWNER}/${REPO} v1.1.0`)

    console.log("building the device program...")
    const bytecode = buildProgram()
    const flashFile = join(dir, "esp32s3.flash")
    createFlash(flashFile, "1.0.0")
    console.log(`device: 4 MB flash ${flashFile}, v1.0.0 in ota_0`)

    const tty = process.stdout.isTTY
    let shown = -1
    const device = new SimDevice({
        flashFile,
        bytecode,
        settings: deviceSettings({ api: server.apiUrl, owner: OWNER, repo: REPO, token: TOKEN, assetPattern: "*-esp32s3.bin", checkSeconds: 5 }),
        // The program's own progress lines are replaced by the bar drawn below.
        log: line => line.startsWith("ota: ") && /%/.test(line) ? undefined : console.log(`  device | ${line}`),
    })
    // The bar reads the OTA service's registers, as the VS Code extension does.
    let ota: OtaUpdaterServer | undefined
    device.on("boot", (n: number, s: OtaUpdaterServer) => {
        ota = s
        console.log(`  device | --- boot ${n}: ${s.bootResult.label} v${s.bootResult.version}` +
            `${s.bootResult.pendingVerify ? " (pending verify)" : ""}`)
    })
    const timer = setInterval(() => {
        if (!ota || !ota.imageSize) return
        const line = bar(ota.bytesWritten, ota.imageSize, ota.throughput)
        if (tty) process.stdout.write(`\r${line}`)
        else if (Math.floor((ota.bytesWritten * 10) / ota.imageSize) !== shown) {
            shown = Math.floor((ota.bytesWritten * 10) / ota.imageSize)
            console.log(line)
        }
    }, 200)

    const result = await runOnce(device, {
        timeoutMs: 300_000,
        // The service leaves `receiving` on commit: draw the finished bar once.
        onStatus: s => s.event === "committed" && console.log(`${tty ? "\r" : ""}${bar(s.bytes, s.bytes, s.bytes / s.seconds)}`),
    })
    clearInterval(timer)
    await server.close()
    rmSync(dir, { recursive: true, force: true })
    console.log(JSON.stringify(result))
    if (result.result !== "updated") return 1
    console.log(`done: the device runs v${result.to} from ${result.slot}, confirmed; ` +
        `${(IMAGE_BYTES / 1024).toFixed(0)} KB in ${result.seconds} s`)
    return 0
}

main().then(code => process.exit(code), e => {
    console.error(e)
    process.exit(1)
})
