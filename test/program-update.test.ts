// Program-only updates on the real DeviceScript VM: a release whose only asset is a
// DeviceScript program (`*.devs`) replaces the program in the runtime's program store
// (the flash file's fstor), without touching the firmware slots, otadata or the boot
// slot; the new program runs and reports its own version.
import * as assert from "node:assert/strict"
import { createHash } from "node:crypto"
import { Rig } from "../sim/rig"
import { buildProgram } from "../sim/program"
import { SimFlash } from "../sim/flash"
import { readOtadata } from "../sim/bootloader"
import { oldImage } from "../sim/run-once"
import { OtaUpdaterServer } from "../sim/ota-server"
import { checkBytecode } from "../tools/devs-image"

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex")

/** Firmware state that a program update must leave as it was. */
function firmwareState(file: string) {
    const flash = SimFlash.open(file)
    try {
        const slot = (label: string) => {
            const p = flash.partition(label)
            return sha(flash.read(p.offset, p.size))
        }
        return { ota_0: slot("ota_0"), ota_1: slot("ota_1"), otadata: JSON.stringify(readOtadata(flash)) }
    } finally {
        flash.close()
    }
}

describe("program-only updates (target program)", function () {
    this.timeout(180_000)
    let rig: Rig
    let v110: Buffer

    before(async () => {
        rig = new Rig(buildProgram({ version: "v1.0.0" }))
        v110 = buildProgram({ version: "v1.1.0" })
        assert.equal((checkBytecode(v110) as any).version, "v1.1.0")
        await rig.serve()
    })
    after(async () => await rig?.close())

    it("a release with only a program asset replaces the program; firmware slots and boot slot untouched", async () => {
        rig.publish("prog", "v1.1.0", [{ name: "program.devs", data: v110 }])
        let before: ReturnType<typeof firmwareState> | undefined
        const run = await rig.run("prog", "prog.flash", {
            setup: d => d.once("boot", () => (before = firmwareState(d.options.flashFile))),
        })
        assert.equal(run.result.result, "updated", JSON.stringify(run.result) + "\n" + run.logs.join("\n"))
        assert.equal(run.result.target, "program")
        assert.equal(run.result.from, "v1.0.0")
        assert.equal(run.result.to, "v1.1.0") // reported by the new program itself
        assert.equal(run.result.version, "1.0.0") // the firmware's version did not change
        assert.deepEqual(firmwareState(run.flashFile), before)
        assert.equal(run.result.slot, "ota_0")
        assert.deepEqual(rig.leaks(run.logs), [])
    })

    it("a power cut while the program is copied into the store is repaired at the next start", async () => {
        rig.publish("cut", "v1.1.0", [{ name: "program.devs", data: v110 }])
        let cuts = 0
        let storeChanges = 0
        const run = await rig.run("cut", "cut.flash", {
            setup: d =>
                d.on("boot", (_n: number, server: OtaUpdaterServer) => {
                    const store = server.flash.partition("fstor")
                    server.flash.beforeChange = op => {
                        // the 3rd change of the store after the program record was written
                        if (cuts || op.offset < store.offset || op.offset >= store.offset + store.size) return
                        if (!server.programInstallPending()) return
                        if (++storeChanges === 3) {
                            cuts++
                            d.powerCut()
                            throw new Error("power is off")
                        }
                    }
                }),
        })
        assert.equal(cuts, 1, "the power cut did not happen during the copy")
        assert.equal(run.result.result, "updated", JSON.stringify(run.result) + "\n" + run.logs.join("\n"))
        assert.equal(run.result.to, "v1.1.0")
        assert.ok(run.logs.some(l => l.includes("program install finished after a reset")), "no recovery at start")
    })

    it("a program asset built as another version than the tag is refused before commit", async () => {
        rig.publish("wrongver", "v1.2.0", [{ name: "program.devs", data: v110 }])
        const run = await rig.run("wrongver", "wrongver.flash")
        assert.equal(run.result.result, "error")
        assert.match(run.result.error, /program asset was built as version 'v1\.1\.0'/)
    })

    it("a release with firmware and program: firmware first (reboot), then the program", async () => {
        const fw = oldImage("1.3.0", 32 * 1024)
        const v130 = buildProgram({ version: "v1.3.0" })
        rig.publish("both", "v1.3.0", [
            { name: "widget-esp32s3.bin", data: fw },
            { name: "program.devs", data: v130 },
        ])
        const events: string[] = []
        const run = await rig.run("both", "both.flash", {
            until: s => {
                if (s.event === "committed") events.push(`${s.target} ${s.to}`)
                if (s.event === "up-to-date" && s.program === "v1.3.0")
                    return { result: "updated", version: s.version, program: s.program }
                return undefined
            },
        })
        assert.equal(run.result.result, "updated", JSON.stringify(run.result) + "\n" + run.logs.join("\n"))
        assert.deepEqual(events, ["firmware v1.3.0", "program v1.3.0"])
        assert.equal(run.result.version, "1.3.0")
        assert.equal(rig.outcome(run.flashFile, fw), "new")
    })
})
