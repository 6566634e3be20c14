// The shared conformance vectors (test/vectors/*.json) on both OTA updater servers: the
// simulated one (sim/ota-server.ts) and the native C one (native/otaupdater, built for
// this host with fakes of ESP-IDF and jacdac-c). Both must pass the same vectors; a
// broken vector fails both.
import * as assert from "node:assert/strict"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { runVector, Vector } from "./conformance/runner"
import { SimBackend } from "./conformance/sim-backend"
import { NativeBackend } from "./conformance/native-backend"
import { ConformanceBackend } from "./conformance/backend"

const VECTORS = join(__dirname, "vectors")

const backends: [string, () => ConformanceBackend][] = [
    ["simulated server", () => new SimBackend()],
    ["native server", () => new NativeBackend()],
]

for (const file of readdirSync(VECTORS).filter(f => f.endsWith(".json")).sort()) {
    const vectors = JSON.parse(readFileSync(join(VECTORS, file), "utf8")) as Vector[]
    describe(`conformance vectors ${file}`, function () {
        this.timeout(60_000)
        let dir: string
        before(() => (dir = mkdtempSync(join(tmpdir(), "ota-vectors-"))))
        after(() => rmSync(dir, { recursive: true, force: true }))
        for (const [label, make] of backends)
            for (const [i, v] of vectors.entries())
                it(`${label}: ${v.name}`, async () => {
                    const backend = make()
                    try {
                        await runVector(v, backend, join(dir, `${label.split(" ")[0]}-${i}.flash`))
                    } finally {
                        await backend.shutdown().catch(() => {})
                    }
                })
    })
}

describe("conformance vectors can fail", function () {
    this.timeout(60_000)
    // The runner checks what the vectors say: a vector with one wrong expectation fails on every backend.
    const happy = (JSON.parse(readFileSync(join(VECTORS, "happy.json"), "utf8")) as Vector[])[0]
    const broken: Vector = JSON.parse(JSON.stringify(happy))
    const commit = broken.steps.find(s => "commit" in s) as any
    commit.expect.report.slot = 0 // the update goes to the spare slot, 1
    for (const [label, make] of backends)
        it(`${label}: a report field that differs from the vector fails the run`, async () => {
            const dir = mkdtempSync(join(tmpdir(), "ota-vectors-"))
            const backend = make()
            try {
                await assert.rejects(runVector(broken, backend, join(dir, "broken.flash")), /report slot is 1, expected 0/)
            } finally {
                await backend.shutdown().catch(() => {})
                rmSync(dir, { recursive: true, force: true })
            }
        })
})
