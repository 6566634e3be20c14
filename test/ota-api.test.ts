// The library's API as a program uses it (packages/ota/src/ota.ts), on the VM: handlers
// of the program that throw do not stop an update.
import * as assert from "node:assert/strict"
import { buildAppImage } from "../tools/esp-image"
import { buildProgram } from "../sim/program"
import { Rig } from "../sim/rig"

describe("startOta() on the DeviceScript VM", function () {
    this.timeout(180_000)
    let rig: Rig

    before(async () => {
        rig = new Rig(buildProgram({ entry: "sim/fixtures/throwing-handler.tsx" }))
        await rig.serve({})
    })
    after(async () => rig?.close())

    it("status and busy handlers that throw are logged, and the update completes without a VM panic", async () => {
        const image = buildAppImage({ version: "1.1.0", payloadSize: 24 * 1024, seed: 41 })
        rig.publish("throwing", "v1.1.0", [{ name: "fw-esp32s3.bin", data: image }])
        const run = await rig.run("throwing", "throwing.flash", { settings: { HTTP_IDLE_MS: 3000 } })
        assert.equal(run.result.result, "updated", JSON.stringify(run.result))
        assert.equal(run.device.panics, 0)
        assert.equal(rig.outcome(run.flashFile, image), "new")
        assert.ok(run.logs.some(l => l.includes("ota: a status handler threw: handler fails on progress")), "the throw was logged")
        assert.ok(run.logs.some(l => l.includes("ota: a busy handler threw: busy handler fails (true)")), "a thrown string is logged too")
    })
})
