// `npm run soak -- --runs N --seed S [--parallel P]`: seeded random mixes of server
// faults and power cuts at random moments (before, during and after the download,
// during commit, between commit and reboot, before confirm), each on a fresh
// simulated device updating 1.0.0 -> 1.1.0 with a small image. Every run must end on
// a valid image: exactly the new one, or exactly the old one; never anything else,
// and the token never leaks. Prints the seed, one line per run that did not update,
// and a summary; exits 1 when any run was bricked, leaked or panicked the VM. The same
// seed gives the same fault plans; timing (and so where a cut lands) still varies.
import { parseArgs } from "node:util"
import { buildAppImage } from "../tools/esp-image"
import { unitRandom } from "../tools/prng"
import type { FaultPlan } from "../tools/release-server"
import type { OtaUpdaterServer } from "./ota-server"
import type { FlashOp } from "./flash"
import type { DeviceStatus, SimDevice } from "./device-sim"
import { buildProgram } from "./program"
import { Rig, Outcome } from "./rig"

type Cut = "none" | "before-download" | "during-download" | "during-commit" | "after-commit" | "before-confirm"
const CUTS: Cut[] = ["before-download", "during-download", "during-commit", "after-commit", "before-confirm"]

export interface SoakPlan {
    run: number
    seed: number
    size: number
    faults: FaultPlan
    /** names of the faults in `faults`, for the summary */
    kinds: string[]
    cut: Cut
    /** fraction of the image written when a during-download cut happens */
    cutAt: number
}

export interface SoakRun {
    plan: SoakPlan
    outcome: Outcome
    result: string
    error?: string
    leaks: string[]
    panics: number
    cuts: number
    seconds: number
}

export interface SoakSummary {
    seed: number
    runs: number
    faults: number
    powerCuts: number
    updated: number
    old: number
    bricked: number
    leaks: number
    panics: number
    seconds: number
    byKind: Record<string, number>
    failures: SoakRun[]
}

/** The random plan of run `run` of a soak seeded with `seed` (the same every time). */
export function soakPlan(seed: number, run: number): SoakPlan {
    const rnd = unitRandom(seed * 1_000_003 + run)
    const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]
    const size = (8 + Math.floor(rnd() * 17)) * 1024 // 8..24 KB of payload
    const approx = size + 256
    const f: FaultPlan = { seed: 1 + Math.floor(rnd() * 1e6) }
    const kinds: string[] = []
    const maybe = (p: number, kind: string, apply: () => void) => {
        if (rnd() < p) {
            apply()
            kinds.push(kind)
        }
    }
    maybe(0.2, "header-bloat", () => (f.headerBloat = { origins: ["api", "storage"] }))
    maybe(0.3, "segmenting", () => (f.segmenting = pick(["random", "one", "bytes"] as const)))
    maybe(0.2, "chunked", () => (f.chunked = pick([["api"], ["storage"], ["api", "storage"]] as ("api" | "storage")[][])))
    maybe(0.4, "drops", () => {
        f.drops = []
        const k = 1 + Math.floor(rnd() * 3)
        for (let i = 0; i < k; i++) f.drops.push({ origin: rnd() < 0.8 ? "storage" : "api", at: Math.floor(rnd() * approx) })
    })
    maybe(0.15, "stall", () => (f.stalls = [{ origin: "storage", at: Math.floor(rnd() * approx), ms: 2500 }]))
    maybe(0.15, "storage-5xx", () => (f.errors5xx = { origin: "storage", status: pick([500, 502, 503]), count: 1 + Math.floor(rnd() * 2) }))
    maybe(0.1, "api-5xx", () => (f.errors5xx = { origin: "api", status: 503, count: 1 }))
    maybe(0.1, "rate-limit", () => (f.rateLimit = { count: 1, retryAfter: 1 }))
    maybe(0.15, "truncate", () => (f.truncate = { origin: "storage", at: Math.floor(rnd() * 8000) }))
    maybe(0.1, "ignore-range", () => (f.ignoreRange = true))
    maybe(0.04, "corrupt", () => (f.corruptAt = Math.floor(rnd() * size)))
    maybe(0.03, "wrong-content-range", () => (f.wrongContentRange = pick(["start", "total"] as const)))
    maybe(0.03, "html", () => (f.htmlInsteadOfAsset = true))
    const cut: Cut = rnd() < 0.6 ? pick(CUTS) : "none"
    return { run, seed, size, faults: f, kinds, cut, cutAt: rnd() }
}

/** Arms the power cut of `plan` on `device`; returns how many cuts happened. */
export function armCut(device: SimDevice, plan: SoakPlan, image: Buffer, rnd: () => number) {
    const state = { cuts: 0 }
    if (plan.cut === "none") return state
    const cut = () => {
        if (state.cuts) return false
        state.cuts++
        device.powerCut()
        return true
    }
    // (not before the program runs: a cut while the factory deploys the program is
    // outside what an update can protect)
    device.on("program-start", (_starts: number, boot: number) => {
        if (!state.cuts && plan.cut === "before-download" && boot === 1) setTimeout(cut, rnd() * 300)
    })
    device.on("boot", (boot: number, server: OtaUpdaterServer) => {
        if (state.cuts) return
        if (plan.cut === "before-confirm" && server.pendingVerify) setTimeout(cut, rnd() * 300)
        if (plan.cut === "during-download" || plan.cut === "during-commit") {
            const otadata = server.flash.otadataPartition()
            server.flash.beforeChange = (op: FlashOp) => {
                const inOtadata = op.offset >= otadata.offset && op.offset < otadata.offset + otadata.size
                const now =
                    plan.cut === "during-download"
                        ? server.imageSize > 0 && server.bytesWritten >= plan.cutAt * image.length
                        : inOtadata && server.state !== 0
                if (now && cut()) throw new Error("power cut")
            }
        }
    })
    device.on("status", (s: DeviceStatus) => {
        if (plan.cut === "after-commit" && s.event === "committed") cut()
    })
    return state
}

/** One soak run on its own release server and flash file. */
export async function soakRun(plan: SoakPlan, bytecode: Buffer): Promise<SoakRun> {
    const t0 = Date.now()
    const rig = new Rig(bytecode)
    const image = buildAppImage({ version: "1.1.0", payloadSize: plan.size, seed: plan.run + 1 })
    const rnd = unitRandom(plan.seed ^ (plan.run * 7919))
    try {
        await rig.serve(plan.faults)
        rig.publish("soak", "v1.1.0", [{ name: "fw-1.1.0-esp32s3.bin", data: image }])
        let errors = 0
        let cuts = { cuts: 0 }
        const r = await rig.run("soak", "soak.flash", {
            settings: { HTTP_IDLE_MS: 1500, HTTP_HEAD_MS: 3000, HTTP_CONN_MS: 3000, SELFTEST_S: 30 },
            allowErrors: true,
            allowPanics: true,
            timeoutMs: 90_000,
            setup: device => (cuts = armCut(device, plan, image, rnd)),
            // a fault that stays (a corrupt or wrong asset) fails every check: stop after a few
            until: s => (s.event === "error" && ++errors >= 4 ? { result: "error", error: s.error } : undefined),
        })
        return {
            plan,
            outcome: rig.outcome(r.flashFile, image),
            result: r.result.result,
            error: r.result.error,
            leaks: rig.leaks(r.logs),
            panics: r.device.panics,
            cuts: cuts.cuts,
            seconds: (Date.now() - t0) / 1000,
        }
    } finally {
        await rig.close()
    }
}

/** Runs `runs` soak runs, `parallel` at a time; `onRun` sees each as it ends. */
export async function soak(o: { runs: number; seed: number; parallel: number; bytecode: Buffer; onRun?: (r: SoakRun) => void }): Promise<SoakSummary> {
    const t0 = Date.now()
    const s: SoakSummary = { seed: o.seed, runs: 0, faults: 0, powerCuts: 0, updated: 0, old: 0, bricked: 0, leaks: 0, panics: 0, seconds: 0, byKind: {}, failures: [] }
    let next = 0
    const worker = async () => {
        while (next < o.runs) {
            const r = await soakRun(soakPlan(o.seed, next++), o.bytecode)
            s.runs++
            s.faults += r.plan.kinds.length
            s.powerCuts += r.cuts
            for (const k of r.plan.kinds) s.byKind[k] = (s.byKind[k] ?? 0) + 1
            if (r.cuts) s.byKind[`cut-${r.plan.cut}`] = (s.byKind[`cut-${r.plan.cut}`] ?? 0) + 1
            if (r.outcome === "new") s.updated++
            else if (r.outcome === "old") s.old++
            else s.bricked++
            if (r.leaks.length) s.leaks++
            s.panics += r.panics
            if (r.outcome === "bricked" || r.leaks.length || r.panics) s.failures.push(r)
            o.onRun?.(r)
        }
    }
    await Promise.all(Array.from({ length: Math.max(1, o.parallel) }, worker))
    s.seconds = Math.round((Date.now() - t0) / 100) / 10
    return s
}

const USAGE = "usage: npm run soak -- [--runs N] [--seed S] [--parallel P]   (defaults: 20 runs, a random seed, 4 at a time)"

async function main() {
    let values: { runs?: string; seed?: string; parallel?: string; help?: boolean }
    try {
        values = parseArgs({
            options: {
                runs: { type: "string", default: "20" },
                seed: { type: "string" },
                parallel: { type: "string", default: "4" },
                help: { type: "boolean", short: "h" },
            },
        }).values
    } catch (e) {
        console.error(`${(e as Error).message}\n${USAGE}`)
        return 2
    }
    const int = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? +v : NaN)
    const seed = values.seed !== undefined ? int(values.seed) : Math.floor(Math.random() * 1e9)
    const runs = int(values.runs)
    const parallel = int(values.parallel)
    if (values.help || !(runs >= 1) || !(parallel >= 1) || isNaN(seed)) {
        console.error(USAGE)
        return values.help ? 0 : 2
    }
    console.log(`soak: ${runs} runs, seed ${seed} (npm run soak -- --runs ${runs} --seed ${seed})`)
    const bytecode = buildProgram()
    let done = 0
    const summary = await soak({
        runs,
        seed,
        parallel,
        bytecode,
        onRun: r => {
            done++
            const bad = r.outcome === "bricked" || r.leaks.length || r.panics
            const what = `${r.plan.kinds.join(",") || "no faults"}; cut ${r.plan.cut}${r.cuts ? "" : " (not reached)"}`
            if (bad || r.outcome !== "new")
                console.log(`run ${r.plan.run}: ${r.outcome.toUpperCase()} ${r.result}${r.error ? ` (${r.error})` : ""}; ${what}; ${r.seconds.toFixed(1)} s`)
            if (done % 50 === 0) console.log(`soak: ${done}/${runs}`)
            for (const l of r.leaks) console.log(`  leak: ${l}`)
        },
    })
    const { failures, byKind, ...totals } = summary
    console.log(`soak: ${JSON.stringify(totals)}`)
    console.log(`soak: faults and power cuts by kind ${JSON.stringify(byKind)}`)
    console.log(
        `| runs | faults injected | power cuts | updated | kept old image | bricked | leaks | VM panics | seed | time |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n` +
            `| ${summary.runs} | ${summary.faults} | ${summary.powerCuts} | ${summary.updated} | ${summary.old} | ${summary.bricked} | ${summary.leaks} | ${summary.panics} | ${seed} | ${summary.seconds} s |`
    )
    return summary.bricked || summary.leaks || summary.panics ? 1 : 0
}

if (require.main === module)
    main().then(
        code => process.exit(code),
        e => {
            console.error(e)
            process.exit(1)
        }
    )
