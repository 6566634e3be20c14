// `npm run bench`: how fast a whole update runs on the real VM, against the VM's packet
// throttle ceiling (232 B per 20 ms = 11.6 KB/s), and how long a check of a large
// release (many assets, long notes) takes. Sizes: BENCH_SIZES_KB=256,1024 by default.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startReleaseServer, writeRelease } from "../tools/release-server"
import { buildAppImage } from "../tools/esp-image"
import { SimDevice } from "./device-sim"
import { buildProgram } from "./program"
import { createFlash, deviceSettings, runOnce } from "./run-once"

const TOKEN = "github_pat_bench"
const CEILING_KBPS = 232 / 20 // KB/s: one 232-byte write per 20 ms throttle slot

async function main() {
    const sizes = (process.env.BENCH_SIZES_KB || "256,1024").split(",").map(Number)
    const dir = mkdtempSync(join(tmpdir(), "ota-bench-"))
    const releases = join(dir, "releases")
    const bytecode = buildProgram()
    const server = await startReleaseServer({ dir: releases, tokens: { [TOKEN]: "*" } })
    const rows: string[] = []

    const run = async (repo: string, pattern: string, checks = 1) => {
        const flashFile = join(dir, `${repo}.flash`)
        createFlash(flashFile, "1.0.0")
        const device = new SimDevice({
            flashFile,
            bytecode,
            settings: deviceSettings({ api: server.apiUrl, owner: "bench", repo, token: TOKEN, assetPattern: pattern, checkSeconds: 1 }),
        })
        const t0 = Date.now()
        const result = await runOnce(device, { checks, timeoutMs: 1_800_000 })
        return { result, ms: Date.now() - t0 }
    }

    for (const kb of sizes) {
        const repo = `size-${kb}`
        const image = buildAppImage({ version: "2.0.0", payloadSize: kb * 1024 })
        writeRelease(releases, "bench", repo, "v2.0.0", { assets: [{ name: "fw-esp32s3.bin", data: image }] })
        const { result, ms } = await run(repo, "fw-esp32s3.bin")
        if (result.result !== "updated") throw new Error(`update of ${kb} KB failed: ${JSON.stringify(result)}`)
        const kbps = image.length / 1024 / result.seconds
        rows.push(`| update ${kb} KB | ${result.seconds} s download+flash, ${(ms / 1000).toFixed(1)} s with reboot and confirm | ${kbps.toFixed(2)} KB/s (${((kbps / CEILING_KBPS) * 100).toFixed(0)}% of the ${CEILING_KBPS.toFixed(1)} KB/s VM ceiling) |`)
        console.log(rows[rows.length - 1])
    }

    // A large release: 40 assets with full uploader objects and 60 KB of notes.
    const assets = Array.from({ length: 40 }, (_, i) => ({ name: `other-${i}.bin`, data: Buffer.alloc(64, i) }))
    writeRelease(releases, "bench", "big-release", "v1.0.0", { assets, body: "- a long line of release notes ✓\n".repeat(2000) })
    const { result, ms } = await run("big-release", "none-*.bin", 2)
    if (result.result !== "up-to-date") throw new Error(`big release check failed: ${JSON.stringify(result)}`)
    rows.push(`| check of a release with 40 assets and 60 KB notes (JSON streamed), twice (200 then 304) | ${(ms / 1000).toFixed(1)} s from power-on | no out-of-memory in the 64 KB VM heap |`)
    console.log(rows[rows.length - 1])

    await server.close()
    rmSync(dir, { recursive: true, force: true })
    console.log(`\n| case | time | rate |\n| --- | --- | --- |\n${rows.join("\n")}`)
}

main().then(() => process.exit(0), e => {
    console.error(e)
    process.exit(1)
})
