import * as assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { isDeepStrictEqual } from "node:util"
import { FlashOp, SECTOR_SIZE, SimFlash } from "../sim/flash"
import { SimNvs, entrySize, maxValueLength } from "../sim/nvs"

let dir: string
let flash: SimFlash
const flashPath = () => path.join(dir, "device.flash")

/** A reset: the flash file opened again and a new store over it (nothing kept in memory). */
function reopen(): SimNvs {
    flash.close()
    flash = SimFlash.open(flashPath())
    return new SimNvs(flash)
}

function snapshot(nvs: SimNvs): Record<string, string> {
    const out: Record<string, string> = {}
    for (const k of nvs.keys().sort()) out[k] = nvs.get(k)!.toString("hex")
    return out
}

/** Sectors of the nvs partition that start with a valid-looking header magic. */
function sectorsInUse(): number[] {
    const p = flash.partition("nvs")
    const used: number[] = []
    for (let i = 0; i < p.size / SECTOR_SIZE; i++)
        if (flash.read(p.offset + i * SECTOR_SIZE, 4).toString("latin1") === "SNVS") used.push(i)
    return used
}

const value = (n: number, len = 80) => Buffer.alloc(len, n & 0xff)

beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "nvs-"))
    flash = SimFlash.open(flashPath(), { create: true })
})

afterEach(() => {
    flash.close()
    fs.rmSync(dir, { recursive: true, force: true })
})

describe("simulated NVS", () => {
    it("round trip: set, get, erase, across a reset; only the nvs partition is touched", () => {
        const ops: FlashOp[] = []
        flash.beforeChange = op => ops.push(op)
        let nvs = new SimNvs(flash)
        assert.equal(nvs.get("a"), undefined)
        nvs.set("a", Buffer.from("hello"))
        nvs.set("otaupdater/resume", value(7))
        nvs.set("empty", Buffer.alloc(0))
        assert.deepEqual(nvs.get("a"), Buffer.from("hello"))
        const p = flash.partition("nvs")
        assert.ok(ops.length > 0 && ops.every(o => o.offset >= p.offset && o.offset + o.length <= p.offset + p.size))

        nvs = reopen()
        assert.deepEqual(nvs.get("a"), Buffer.from("hello"))
        assert.deepEqual(nvs.get("otaupdater/resume"), value(7))
        assert.deepEqual(nvs.get("empty"), Buffer.alloc(0))
        nvs.erase("a")
        assert.equal(nvs.get("a"), undefined)
        nvs = reopen()
        assert.equal(nvs.get("a"), undefined)
        assert.deepEqual(nvs.keys().sort(), ["empty", "otaupdater/resume"])
    })

    it("latest entry wins; an unchanged value or erasing a missing key writes nothing", () => {
        let nvs = new SimNvs(flash)
        for (let i = 0; i < 10; i++) nvs.set("k", value(i))
        nvs.set("other", value(99))
        nvs = reopen()
        assert.deepEqual(nvs.get("k"), value(9))
        assert.deepEqual(nvs.get("other"), value(99))

        const ops: FlashOp[] = []
        flash.beforeChange = op => ops.push(op)
        nvs.set("k", value(9))
        nvs.erase("missing")
        assert.equal(nvs.get("missing"), undefined)
        assert.deepEqual(ops, [])
    })

    it("a full sector rolls over to the next one (erased first), the old one is erased, round robin", () => {
        const per = Math.floor((SECTOR_SIZE - 16) / entrySize("k", 80))
        let nvs = new SimNvs(flash)
        nvs.set("keep", Buffer.from("kept"))
        const ops: FlashOp[] = []
        flash.beforeChange = op => ops.push(op)
        const sectorsSeen = new Set<number>()
        for (let i = 0; i < per * 9; i++) {
            nvs.set("k", value(i))
            const used = sectorsInUse()
            assert.equal(used.length, 1, `one sector in use after set ${i}`)
            sectorsSeen.add(used[0])
        }
        assert.deepEqual([...sectorsSeen].sort(), [0, 1, 2, 3], "all four sectors of the 16 KB partition take turns")
        const p = flash.partition("nvs")
        const erases = ops.filter(o => o.kind === "erase")
        assert.ok(erases.length >= 8)
        assert.ok(erases.every(o => o.offset >= p.offset && o.offset < p.offset + p.size))
        nvs = reopen()
        assert.deepEqual(nvs.get("k"), value(per * 9 - 1))
        assert.deepEqual(nvs.get("keep"), Buffer.from("kept"))
    })

    it("refuses what cannot fit, without writing", () => {
        const nvs = new SimNvs(flash)
        assert.throws(() => nvs.set("big", Buffer.alloc(maxValueLength("big") + 1)), /too long/)
        assert.throws(() => nvs.set("", Buffer.alloc(1)), /key/)
        nvs.set("a", Buffer.alloc(2000))
        assert.throws(() => nvs.set("b", Buffer.alloc(2100)), /full/)
        assert.equal(reopen().get("b"), undefined)
    })

    it("a torn entry (power cut mid-write) is ignored by its CRC; the next set starts a new sector", () => {
        let nvs = new SimNvs(flash)
        nvs.set("k", value(1))
        nvs.set("j", value(2))
        // the power goes in the middle of writing the next entry: only its first bytes land
        const p = flash.partition("nvs")
        const used = sectorsInUse()[0]
        const at = p.offset + used * SECTOR_SIZE + 16 + 2 * entrySize("k", 80)
        const entry = Buffer.concat([Buffer.from([1, 1, 80, 0]), Buffer.from("k"), value(3)])
        flash.write(at, entry.subarray(0, 40))
        nvs = reopen()
        assert.deepEqual(nvs.get("k"), value(1))
        nvs.set("k", value(4))
        assert.notEqual(sectorsInUse()[0], used)
        nvs = reopen()
        assert.deepEqual(snapshot(nvs), { j: value(2).toString("hex"), k: value(4).toString("hex") })
    })

    for (const torn of [false, true]) {
        it(`a power cut at every flash operation leaves each change whole or not at all${torn ? " (half-done operations)" : ""}`, () => {
            // a script that crosses several sector rollovers, with erases and unchanged keys
            type Step = ["set", string, Buffer] | ["erase", string]
            const steps: Step[] = []
            for (let i = 0; i < 90; i++) {
                steps.push(["set", "rec", value(i, 80 + (i % 5))])
                if (i % 7 === 0) steps.push(["set", `k${i % 3}`, value(200 + i, 30)])
                if (i % 11 === 0) steps.push(["erase", `k${i % 3}`])
            }
            const model: Record<string, string>[] = [{}]
            for (const s of steps) {
                const m = { ...model[model.length - 1] }
                if (s[0] === "set") m[s[1]] = s[2].toString("hex")
                else delete m[s[1]]
                model.push(m)
            }
            const run = (nvs: SimNvs, onStep: (i: number) => void) =>
                steps.forEach((s, i) => {
                    onStep(i)
                    if (s[0] === "set") nvs.set(s[1], s[2])
                    else nvs.erase(s[1])
                })

            let total = 0
            flash.beforeChange = () => total++
            run(new SimNvs(flash), () => {})
            assert.ok(total > steps.length, "the script rolls over sectors")

            for (let cut = 0; cut < total; cut++) {
                flash.close()
                flash = SimFlash.open(flashPath(), { create: true })
                let ops = 0
                let step = -1
                const nvs = new SimNvs(flash)
                if (torn) {
                    // the operation at `cut` does half its work: half the bytes, or half the sector erased
                    const f = flash
                    const write = f.write.bind(f)
                    const eraseSector = f.eraseSector.bind(f)
                    f.write = (offset, data) => {
                        if (ops++ < cut) return write(offset, data)
                        if (ops === cut + 1) write(offset, data.subarray(0, data.length >> 1))
                        throw new Error("power cut")
                    }
                    f.eraseSector = offset => {
                        if (ops++ < cut) return eraseSector(offset)
                        if (ops === cut + 1) (f as any).writeRaw(offset, Buffer.alloc(SECTOR_SIZE >> 1, 0xff))
                        throw new Error("power cut")
                    }
                } else {
                    flash.beforeChange = () => {
                        if (ops++ >= cut) throw new Error("power cut")
                    }
                }
                assert.throws(() => run(nvs, i => (step = i)), /power cut/)
                const after = snapshot(reopen())
                const before = model[step]
                const done = model[step + 1]
                assert.ok(
                    isDeepStrictEqual(after, before) || isDeepStrictEqual(after, done),
                    `cut before operation ${cut} of ${total}, in step ${step}: ${JSON.stringify(after)}`,
                )
                // and the store goes on working after the reset
                const again = new SimNvs(flash)
                again.set("rec", value(0xab))
                assert.deepEqual(reopen().get("rec"), value(0xab))
            }
        })
    }
})
