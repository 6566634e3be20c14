// `npm run bench`: what an update costs on the real DeviceScript VM, measured against the
// VM's own send ceiling measured in the same run. Prints progress while it runs, then one
// Markdown table (and the ceiling and memory lines) ready to paste into the README.
//
//   1. ceiling: sim/fixtures/ceiling.tsx sends `write` commands of 232 bytes back to back
//      to the simulated OTA server; rate = bytes the server accepted after the first write
//      / time between the first and the last write arriving (lost packets count against it)
//   2. per size (BENCH_SIZES_KB, default 64,512,1536): a clean update, one with 5 storage
//      drops, one with a storage host that ignores Range and drops once at 15%
//   3. application latency: the example application (src/main.ts) blinks its status light
//      every 100 ms and prints how late each blink left the VM, idle and during an update
//      (its own `app-latency` lines); a 256 KB update, then 30 s idle after the reboot, at
//      the default write rate and at others (OTA_WRITE_HZ), to show the trade-off
//   4. memory: the largest update in the 64 KB heap, a release of 100 assets with 1 MB of
//      notes checked twice (stable and prerelease channels), and a heap headroom probe
//      (HEAP_BALLAST, binary search to 512 B)
//
// A benchmark, not a test: it exits non-zero only when a run fails outright (an update that
// does not end on the new image, a check that does not end up to date, a panic where none
// is expected). 1 KB = 1024 B throughout.
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { buildAppImage } from "../tools/esp-image"
import { OtaUpdaterCmd, OtaUpdaterLimits } from "../.devicescript/ts/constants"
import type { FaultPlan, ReleaseServer } from "../tools/release-server"
import { SimDevice, DeviceStatus } from "./device-sim"
import { OtaUpdaterServer } from "./ota-server"
import { buildProgram, deviceConstant, ROOT } from "./program"
import { OWNER, Rig, TOKEN } from "./rig"
import { createFlash, deviceSettings, RunResult } from "./run-once"

const KB = 1024
const WRITE_BYTES = OtaUpdaterLimits.WriteBytes
const CHUNK_BYTES = deviceConstant("download.ts", "CHUNK_BYTES")
const CMD_WRITE = OtaUpdaterCmd.Write
const HEAP_BYTES = 64 * KB // the VM's heap
const PROBE_STEP = 512
const RANGE_IGNORED_LIMIT_S = 360 // run the Range-ignored case only when it should take less
const PARALLEL_TOLERANCE = 0.98 // two runs at once must keep this much of one alone's rate
const ASSET = "fw-1.1.0-esp32s3.bin" // matches the rig's default pattern *-esp32s3.bin

const t0 = performance.now()
const clock = () => {
    const s = Math.round((performance.now() - t0) / 1000)
    return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`
}
const say = (line: string) => console.log(`[${clock()}] ${line}`)
const fmt = (n: number, d = 1) => n.toFixed(d)
const kbps = (bytes: number, seconds: number) => bytes / KB / seconds
const median = (xs: number[]) => {
    if (!xs.length) return NaN
    const s = [...xs].sort((a, b) => a - b)
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)

/** A run that failed outright: the bench prints it and exits non-zero. */
class BenchFailure extends Error {}

/** Runs that failed outright; the bench goes on, reports them and exits non-zero. */
const failures: string[] = []
function failed(what: string) {
    failures.push(what)
    say(`FAILED: ${what}`)
}

// --- server-side trace: when writes and storage requests arrive ----------------------------

/** Arrival times (performance.now) at the OTA server and the release server. */
class Trace {
    /** accepted writes (bytes_written grew) in the first boot: [time, bytes_written after] */
    writes: [number, number][] = []
    /** write commands that arrived, accepted or not */
    arrived = 0
    /** duplicates (offset below bytes_written) and refused (bad_offset...) writes */
    duplicates = 0
    refused = 0
    storageRequests: number[] = []
    server?: OtaUpdaterServer

    attachDevice(device: SimDevice) {
        device.on("boot", (boot: number, server: OtaUpdaterServer) => {
            if (boot === 1) this.server = server
            const handle = server.handlePacket.bind(server)
            server.handlePacket = async pkt => {
                if (boot !== 1 || !pkt.isCommand || pkt.serviceCommand !== CMD_WRITE) return handle(pkt)
                const before = server.bytesWritten
                const offset = pkt.data.length >= 4 ? Buffer.from(pkt.data).readUInt32LE(0) : -1
                const r = handle(pkt) // the handler runs synchronously
                this.arrived++
                if (server.bytesWritten > before) this.writes.push([performance.now(), server.bytesWritten])
                else if (offset >= 0 && offset < before) this.duplicates++
                else this.refused++
                return r
            }
        })
    }

    attachServer(server: ReleaseServer) {
        const requests = server.requests
        const push = requests.push.bind(requests)
        requests.push = (...items) => {
            for (const r of items) if (r.origin === "storage") this.storageRequests.push(performance.now())
            return push(...items)
        }
    }

    /** Where the time between the first and the last write went. */
    analyse() {
        const w = this.writes
        if (w.length < 3) return undefined
        const span = (w[w.length - 1][0] - w[0][0]) / 1000
        const gaps = w.slice(1).map((x, i) => x[0] - w[i][0])
        const slot = median(gaps) // one write per throttle slot
        // chunk boundaries: a storage request between two consecutive writes
        const boundaries: { before: number; after: number; gap: number }[] = []
        for (const q of this.storageRequests) {
            const i = w.findIndex(x => x[0] > q)
            if (i <= 0) continue
            boundaries.push({ before: q - w[i - 1][0], after: w[i][0] - q, gap: w[i][0] - w[i - 1][0] })
        }
        const boundaryIdle = sum(boundaries.map(b => Math.max(0, b.gap - slot))) / 1000
        const otherIdle = sum(gaps.map(g => Math.max(0, g - slot))) / 1000 - boundaryIdle
        return {
            span,
            writes: w.length,
            bytes: w[w.length - 1][1] - w[0][1],
            slotMs: slot,
            boundaries: boundaries.length,
            boundaryGapMs: median(boundaries.map(b => b.gap)),
            ackToRequestMs: median(boundaries.map(b => b.before)),
            requestToWriteMs: median(boundaries.map(b => b.after)),
            boundaryIdle,
            otherIdle,
            /** pauses of the writes over 100 ms (retries) */
            pauses: gaps.filter(g => g > 100),
        }
    }
}

// --- 1. the ceiling ----------------------------------------------------------------------

interface Ceiling {
    kbps: number
    bytes: number
    writes: number
    arrived: number
    duplicates: number
    refused: number
    seconds: number
    slotMs: number
    vmMs: number
}

async function measureCeiling(bytecode: Buffer, dir: string, name: string): Promise<Ceiling> {
    const flashFile = join(dir, `${name}.flash`)
    createFlash(flashFile, "1.0.0")
    const device = new SimDevice({ flashFile, bytecode, settings: {} })
    const trace = new Trace()
    trace.attachDevice(device)
    const line = new Promise<DeviceStatus>((resolve, reject) => {
        const timer = setTimeout(() => reject(new BenchFailure("ceiling: no result within 120 s")), 120_000)
        device.on("status", s => {
            clearTimeout(timer)
            if (s.event === "ceiling") resolve(s)
            else reject(new BenchFailure(`ceiling: ${JSON.stringify(s)}`))
        })
        device.on("panic", p => reject(new BenchFailure(`ceiling: vm panic ${p.code} (${p.name})`)))
    })
    try {
        await device.start()
        const status = await line
        await new Promise(r => setTimeout(r, 300)) // the last packets on their way
        const a = trace.analyse()
        if (!a || !trace.server) throw new BenchFailure("ceiling: no writes reached the server")
        const bytes = trace.server.bytesWritten
        if (bytes !== status.bytes)
            say(`ceiling: the server accepted ${bytes} of ${status.bytes} bytes sent (lost packets: the rest was refused)`)
        return {
            kbps: kbps(a.bytes, a.span), // bytes after the first write / first..last write
            bytes,
            writes: status.writes,
            arrived: trace.arrived,
            duplicates: trace.duplicates,
            refused: trace.refused,
            seconds: a.span,
            slotMs: a.slotMs,
            vmMs: status.ms,
        }
    } finally {
        await device.stop()
    }
}

// --- 2. updates ----------------------------------------------------------------------------

type Kind = "clean" | "drops" | "range"

interface UpdateRun {
    label: string
    kind: Kind
    kb: number
    size: number
    wall: number // s, power-on to the new image confirmed
    flash: number // s, committed.seconds (download+flash)
    fetchedServer: number // storage body bytes written by the server
    fetchedDevice: number // the device's own count (committed.fetched)
    requests: { api: number; storage: number }
    connections: { api: number; storage: number }
    retries: number
    rangeIgnored: boolean
    trace: ReturnType<Trace["analyse"]>
}

interface FailedRun {
    label: string
    kind: Kind
    kb: number
    size: number
    failed: string
}

interface Extrapolated {
    label: string
    kind: "range"
    kb: number
    size: number
    wall: number
    flash: number
    fetchedDevice: number
    requests: number
    basis: string
}

let repoSerial = 0
const active = new Map<string, () => string>() // progress of the runs under way

function image(kb: number, seed: number) {
    return buildAppImage({ version: "1.1.0", payloadSize: kb * KB, seed })
}

/** Drops at these fractions of the image, moved off the chunk boundaries. */
function dropsAt(size: number, fractions: number[]) {
    return fractions.map(f => {
        let at = Math.floor(size * f)
        const inChunk = at % CHUNK_BYTES
        if (inChunk < 512) at += 512 - inChunk
        if (inChunk > CHUNK_BYTES - 512) at -= inChunk - (CHUNK_BYTES - 512)
        return { origin: "storage" as const, at }
    })
}

async function update(rig: Rig, label: string, kind: Kind, kb: number, img: Buffer, plan: FaultPlan, timeoutMs = 1_800_000): Promise<UpdateRun | FailedRun> {
    const repo = `u${++repoSerial}`
    const server = await rig.serve(plan)
    rig.publish(repo, "v1.1.0", [{ name: ASSET, data: img }])
    const trace = new Trace()
    trace.attachServer(server)
    let start = 0
    let confirmedAt = 0
    let committed: DeviceStatus | undefined
    say(`${label}: start`)
    active.set(label, () => {
        const written = trace.server?.bytesWritten ?? 0
        return `${label}: ${Math.floor((written / img.length) * 100)}% written, ${fmt((performance.now() - start) / 1000)} s`
    })
    let run
    try {
        run = await rig.run(repo, `${repo}.flash`, {
            timeoutMs,
            setup: d => {
                trace.attachDevice(d)
                start = performance.now()
            },
            onStatus: s => {
                if (s.event === "committed") committed = s
                if (s.event === "confirmed" && !confirmedAt) confirmedAt = performance.now()
            },
        })
    } finally {
        active.delete(label)
    }
    const r = run.result
    const outcome = rig.outcome(run.flashFile, img)
    let why = ""
    if (r.result !== "updated") why = describe(r)
    else if (outcome !== "new") why = `the flash boots the ${outcome} image`
    else if (!committed || !confirmedAt) why = "never confirmed"
    else if (run.device.panics) why = `${run.device.panics} VM panics`
    if (why) {
        console.log(run.logs.slice(-20).map(l => `    | ${l}`).join("\n"))
        failed(`${label}: ${why}`)
        return { label, kind, kb, size: img.length, failed: why }
    }
    committed = committed!
    const out: UpdateRun = {
        label,
        kind,
        kb,
        size: img.length,
        wall: (confirmedAt - start) / 1000,
        flash: committed.seconds,
        fetchedServer: server.stats.bodyBytes.storage,
        fetchedDevice: committed.fetched,
        requests: { ...server.stats.requests },
        connections: { ...server.stats.connections },
        retries: committed.retries,
        rangeIgnored: committed.rangeIgnored,
        trace: trace.analyse(),
    }
    say(
        `${label}: done: ${fmt(out.wall)} s to confirmed, ${fmt(out.flash)} s download+flash, ` +
            `${fmt(kbps(out.size, out.flash), 2)} KB/s, ${out.retries} retries, fetched ${fmt(out.fetchedDevice / out.size, 3)}x`,
    )
    return out
}

/** Runs `jobs` `lanes` at a time, each lane with its own rig (its own release server). */
async function inLanes<T>(rigs: Rig[], lanes: number, jobs: ((rig: Rig) => Promise<T>)[]): Promise<T[]> {
    const out: T[] = new Array(jobs.length)
    let next = 0
    await Promise.all(
        rigs.slice(0, lanes).map(async rig => {
            while (next < jobs.length) {
                const i = next++
                out[i] = await jobs[i](rig)
            }
        }),
    )
    return out
}

/** Device read bytes of the Range-ignored case: every request reads from 0 to its chunk's end. */
function rangeIgnoredReads(size: number, dropAt: number) {
    let total = 0
    for (let end = CHUNK_BYTES; ; end += CHUNK_BYTES) {
        total += Math.min(end, size)
        if (end >= size) break
    }
    return total + dropAt // the dropped request read up to the drop
}

// --- 3. memory -----------------------------------------------------------------------------

interface CheckRun {
    ok: boolean
    why: string
    wall: number
    apiBytes: number
    apiRequests: number
    statuses: number[]
}

function bigRelease(rig: Rig, repo: string, notes: string) {
    const assets: { name: string; data: Buffer }[] = Array.from({ length: 99 }, (_, i) => ({ name: `tool-${String(i).padStart(2, "0")}.zip`, data: Buffer.alloc(64, i) }))
    // the firmware asset last: the parser goes through all 100; same version as running
    assets.push({ name: "fw-1.0.0-esp32s3.bin", data: buildAppImage({ version: "1.0.0", payloadSize: 8 * KB, seed: 99 }) })
    rig.publish(repo, "v1.0.0", assets, { body: notes })
}

/** Two checks of the big release (200 then 304); passes when both end up to date with no panic. */
async function bigCheck(rig: Rig, notes: string, channel: "stable" | "prerelease", ballast = 0): Promise<CheckRun> {
    const repo = `m${++repoSerial}`
    const server = await rig.serve({})
    bigRelease(rig, repo, notes)
    let start = 0
    const settings: Record<string, string | number> = { OTA_CHANNEL: channel }
    if (ballast) settings.HEAP_BALLAST = ballast
    const run = await rig.run(repo, `${repo}.flash`, {
        checks: 2,
        timeoutMs: 300_000,
        settings,
        setup: () => (start = performance.now()),
    })
    const wall = (performance.now() - start) / 1000
    const r = run.result
    const statuses = server.requests.filter(q => q.origin === "api").map(q => q.status)
    const ok = r.result === "up-to-date" && r.notModified === true && statuses.join() === "200,304"
    return { ok, why: ok ? "" : describe(r, statuses), wall, apiBytes: server.stats.bodyBytes.api, apiRequests: server.stats.requests.api, statuses }
}

function describe(r: RunResult, statuses?: number[]) {
    if (r.panic) return `panic: ${r.panic}`
    return `${r.result}${r.error ? `: ${r.error}` : ""}${statuses ? ` (API ${statuses.join(",")})` : ""}`
}

/** One `app-latency` line of src/main.ts: lateness of the status light's blinks, in ms. */
interface Lateness {
    phase: string
    blinks: number
    median: number
    p99: number
    max: number
}

interface LatencyRun {
    rate: string // OTA_WRITE_HZ as set, "default" when unset
    writesPerSecond?: number // as the program reports it ("image writes at most N/s")
    update?: Lateness // since power-on, the last line of the first boot
    idle?: Lateness // the second boot (new image, up to date), LATENCY_IDLE_S in
    flashSeconds: number
    why?: string
}

const LATENCY_KB = 256
const LATENCY_IDLE_S = 30
const LATENCY_RUNS = 2

/**
 * A LATENCY_KB update with the example application running, then LATENCY_IDLE_S of idle
 * life in the new image; `rate` sets OTA_WRITE_HZ (undefined: the library's default).
 */
export async function appLatency(rig: Rig, rate?: number): Promise<LatencyRun> {
    const repo = `latency-${rate ?? "default"}`
    await rig.serve({}) // no fault plan left from an earlier run
    rig.publish(repo, "v1.1.0", [{ name: ASSET, data: image(LATENCY_KB, 77) }])
    const flashFile = join(rig.dir, `${repo}.flash`)
    createFlash(flashFile, "1.0.0")
    const settings: Record<string, string | number> = {
        ...deviceSettings({ api: rig.server.apiUrl, owner: OWNER, repo, token: TOKEN, assetPattern: "*-esp32s3.bin", checkSeconds: 3600 }),
    }
    if (rate !== undefined) settings.OTA_WRITE_HZ = rate
    const run: LatencyRun = { rate: rate === undefined ? "default" : String(rate), flashSeconds: NaN }
    let idleFrom = 0
    let done: () => void
    const finished = new Promise<void>(r => (done = r))
    const device = new SimDevice({
        flashFile,
        bytecode: rig.bytecode,
        settings,
        log: line => {
            const w = /image writes at most ([\d.]+)\/s/.exec(line)
            if (w) run.writesPerSecond = +w[1]
            if (!line.startsWith("app-latency ")) return
            const l = JSON.parse(line.slice("app-latency ".length)) as Lateness
            if (device.boots === 1 && l.phase === "update") run.update = l
            if (device.boots === 2 && l.phase === "idle" && idleFrom && performance.now() - idleFrom >= LATENCY_IDLE_S * 1000) {
                run.idle = l
                done()
            }
        },
    })
    device.on("status", (st: DeviceStatus) => {
        if (st.event === "committed") run.flashSeconds = st.seconds
    })
    device.on("program-start", (_n: number, boot: number) => {
        if (boot === 2 && !idleFrom) idleFrom = performance.now()
    })
    device.on("panic", (p: { name: string }) => {
        run.why = `vm panic (${p.name})`
        done()
    })
    const timer = setTimeout(() => {
        run.why = "no idle report within 10 min"
        done()
    }, 600_000)
    await device.start()
    await finished
    clearTimeout(timer)
    await device.stop()
    if (!run.why && !run.update) run.why = "no app-latency line during the update"
    return run
}

/** A 64 KB update with 5 drops under a ballast; passes when it ends on the new image with no panic. */
async function ballastUpdate(rig: Rig, ballast: number): Promise<{ ok: boolean; why: string }> {
    const repo = `h${++repoSerial}`
    const img = image(64, 4242)
    await rig.serve({ drops: dropsAt(img.length, [0.1, 0.27, 0.44, 0.61, 0.78]) })
    rig.publish(repo, "v1.1.0", [{ name: ASSET, data: img }])
    const run = await rig.run(repo, `${repo}.flash`, { timeoutMs: 300_000, settings: ballast ? { HEAP_BALLAST: ballast } : {} })
    const outcome = rig.outcome(run.flashFile, img)
    const ok = run.result.result === "updated" && outcome === "new" && !run.device.panics
    return { ok, why: ok ? "" : run.result.result === "updated" ? `flash boots ${outcome}` : describe(run.result) }
}

/** The largest ballast (multiple of PROBE_STEP) with which `pass` still passes. */
async function probe(name: string, pass: (ballast: number) => Promise<{ ok: boolean; why: string }>) {
    const base = await pass(0)
    if (!base.ok) {
        failed(`heap probe ${name}: fails with no ballast: ${base.why}`)
        return undefined
    }
    let lo = 0
    let hi = HEAP_BYTES // fails: the whole heap
    let failure = "the whole heap"
    while (hi - lo > PROBE_STEP) {
        const mid = Math.floor((lo + hi) / 2 / PROBE_STEP) * PROBE_STEP
        const r = await pass(mid)
        say(`heap probe ${name}: ballast ${mid} B: ${r.ok ? "passes" : `fails (${r.why})`}`)
        if (r.ok) lo = mid
        else [hi, failure] = [mid, r.why]
    }
    return { ballast: lo, failsAt: hi, failure }
}

// --- main ----------------------------------------------------------------------------------

async function main() {
    const sizes = (process.env.BENCH_SIZES_KB || "64,512,1536").split(",").map(s => +s.trim())
    if (sizes.some(n => !(n > 0))) throw new Error(`BENCH_SIZES_KB: sizes in KB, e.g. 64,512,1536`)
    const entry = process.env.BENCH_ENTRY || "sim/fixtures/main.tsx" // src/main.ts
    const dir = mkdtempSync(join(tmpdir(), "ota-bench-"))
    const rigs: Rig[] = []
    const ticker = setInterval(() => {
        for (const p of active.values()) say(p())
    }, 20_000)
    say(`bench: sizes ${sizes.join(", ")} KB; load average ${loadavg().map(x => fmt(x, 2)).join(" ")}`)
    try {
        // The programs, both built once in scratch folders: src/main.ts through a fixture
        // entry that imports it (the shared .devicescript/bin/bytecode.devs is rewritten by
        // any other build in this tree, e.g. device tests), and the ceiling fixture.
        say(`building the device program (${entry}) and the ceiling fixture`)
        const program = programName(entry) // before anything can commit meanwhile
        const main = buildProgram({ entry })
        const ceilingCode = buildProgram({ entry: "sim/fixtures/ceiling.tsx" })
        process.env.OTA_SKIP_BUILD = "1" // the rigs run `main`, not what they would read
        for (let i = 0; i < 2; i++) rigs.push(Object.assign(new Rig(), { bytecode: main }))

        // 1. the ceiling
        say("ceiling: 64 KB of back-to-back 232-byte writes")
        const ceiling = await measureCeiling(ceilingCode, dir, "ceiling")
        say(`ceiling: ${fmt(ceiling.kbps, 2)} KB/s (one write per ${fmt(ceiling.slotMs, 1)} ms)`)
        const pct = (b: number, s: number) => (kbps(b, s) / ceiling.kbps) * 100

        // 2. updates. Two at a time only if two clean 64 KB updates at once keep the pace
        // of one alone (server-side write rate); a 64 KB clean row is that solo run.
        const runs: (UpdateRun | FailedRun | Extrapolated)[] = []
        const clean = new Map<number, UpdateRun>()
        const ok = (u: UpdateRun | FailedRun | Extrapolated): u is UpdateRun => !("failed" in u) && !("basis" in u)
        const solo = await update(rigs[0], sizes.includes(64) ? "clean 64 KB" : "calibration: clean 64 KB alone", "clean", 64, image(64, 64), {})
        if (sizes.includes(64)) runs.push(solo)
        say("parallel check: two clean 64 KB updates at once")
        const pair = await Promise.all(rigs.map((rig, i) => update(rig, `parallel check ${i + 1}`, "clean", 64, image(64, 100 + i), {})))
        const rate = (u: UpdateRun) => (u.trace ? kbps(u.trace.bytes, u.trace.span) : kbps(u.size, u.flash))
        let lanes = 1
        let parallelNote = "the parallel check failed, so every run went alone"
        if (ok(solo) && pair.every(ok)) {
            const ratio = Math.min(...(pair as UpdateRun[]).map(rate)) / rate(solo)
            lanes = ratio >= PARALLEL_TOLERANCE ? 2 : 1
            parallelNote =
                `two clean 64 KB updates at once wrote at ${fmt(ratio * 100)}% of the pace of one alone (server-side write rate), ` +
                `so the clean and drop runs went ${lanes === 2 ? "2 at a time" : "one at a time"}; the Range-ignored runs, ` +
                `the ceiling and the memory checks ran alone`
        }
        say(`parallel check: ${parallelNote}`)

        const jobs: ((rig: Rig) => Promise<UpdateRun | FailedRun>)[] = []
        for (const kb of sizes) {
            if (kb !== 64) jobs.push(rig => update(rig, `clean ${kb} KB`, "clean", kb, image(kb, kb), {}))
            jobs.push(rig => {
                const img = image(kb, kb + 1)
                return update(rig, `5 drops ${kb} KB`, "drops", kb, img, { drops: dropsAt(img.length, [0.1, 0.27, 0.44, 0.61, 0.78]) })
            })
        }
        runs.push(...(await inLanes(rigs, lanes, jobs)))
        for (const u of runs) if (ok(u) && u.kind === "clean") clean.set(u.kb, u)

        // The Range-ignored case, alone, smallest first; a size predicted to take longer
        // than RANGE_IGNORED_LIMIT_S is extrapolated from the largest one measured: its
        // extra time over the clean run of its size, per byte read again.
        let basis: { kb: number; perByte: number } | undefined
        for (const kb of [...sizes].sort((a, b) => a - b)) {
            const img = image(kb, kb + 2)
            const dropAt = Math.floor(img.length * 0.15)
            const c = clean.get(kb)
            const label = `Range ignored + 1 drop ${kb} KB`
            if (basis && c) {
                const reads = rangeIgnoredReads(img.length, dropAt)
                const flash = c.flash + basis.perByte * (reads - img.length)
                const wall = flash + (c.wall - c.flash) // boot, check, commit, reboot, confirm as in the clean run
                say(`${label}: predicted ${fmt(wall, 0)} s (the device reads ${fmt(reads / img.length, 1)}x the image)`)
                if (wall > RANGE_IGNORED_LIMIT_S) {
                    runs.push({
                        label,
                        kind: "range",
                        kb,
                        size: img.length,
                        wall,
                        flash,
                        fetchedDevice: reads,
                        requests: Math.ceil(img.length / CHUNK_BYTES) + 1,
                        basis:
                            `not run (over ${RANGE_IGNORED_LIMIT_S / 60} min): extrapolated from the ${basis.kb} KB run, ` +
                            `${fmt(basis.perByte * KB * KB, 2)} s per MB read again, on top of the clean ${kb} KB run`,
                    })
                    continue
                }
            }
            const u = await update(rigs[0], label, "range", kb, img, { ignoreRange: true, drops: [{ origin: "storage", at: dropAt }] })
            runs.push(u)
            if (ok(u) && c && u.fetchedDevice > u.size) basis = { kb, perByte: Math.max(0, u.flash - c.flash) / (u.fetchedDevice - u.size) }
        }

        // 3. memory
        const notesLine = '- fixed a thing in the updater ✓ (see #1234, "quoted" and C:\\path)\n'
        const notes = notesLine.repeat(Math.ceil((1024 * KB) / Buffer.byteLength(notesLine)))
        const notesMB = fmt(Buffer.byteLength(notes) / KB / KB, 2)
        const checks: Record<string, CheckRun> = {}
        const latency: LatencyRun[] = []
        // twice each: the blink period and the write pacing fall into step differently per run
        for (const rate of [undefined, 50, 25])
            for (let i = 1; i <= LATENCY_RUNS; i++) {
                say(`application latency: ${LATENCY_KB} KB update, then ${LATENCY_IDLE_S} s idle, OTA_WRITE_HZ ${rate ?? "default"}, run ${i}`)
                const l = await appLatency(rigs[0], rate)
                if (l.why) failed(`application latency (OTA_WRITE_HZ ${l.rate}): ${l.why}`)
                latency.push(l)
            }

        for (const channel of ["stable", "prerelease"] as const) {
            say(`memory: 100 assets and ${notesMB} MB of notes, ${channel}, checked twice`)
            const c = (checks[channel] = await bigCheck(rigs[0], notes, channel))
            if (!c.ok) failed(`big release check (${channel}): ${c.why}`)
            else say(`memory: ${channel}: ${fmt(c.wall)} s from power-on, API ${c.statuses.join(" then ")}, ${fmt(c.apiBytes / KB)} KB of API bodies sent`)
        }
        say("heap probe: binary search of HEAP_BALLAST, (a) and (b) side by side")
        const [probeA, probeB] = await Promise.all([
            probe("(a) 64 KB update, 5 drops", b => ballastUpdate(rigs[0], b)),
            probe("(b) 100 assets, 1 MB notes, prerelease", b => bigCheck(rigs[1], notes, "prerelease", b)),
        ])

        say("ceiling again, to see whether it drifted")
        const ceiling2 = await measureCeiling(ceilingCode, dir, "ceiling-2")

        // --- the report ------------------------------------------------------------------
        const largest = Math.max(...sizes)
        const kindName = { clean: "clean", drops: "5 storage drops", range: "Range ignored, 1 drop at 15%" }
        const order = ["clean", "drops", "range"]
        const rows = [...runs].sort((a, b) => a.kb - b.kb || order.indexOf(a.kind) - order.indexOf(b.kind))
        const table = [
            "| case | wall s | flash s | KB/s | % of ceiling | fetched/image (server sent) | fetched/image (device read) | requests api+storage | connections api+storage | notes |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for (const u of rows) {
            const name = `${sizeName(u.kb)}, ${kindName[u.kind]}`
            if ("failed" in u) {
                table.push(`| ${name} | – | – | – | – | – | – | – | – | **FAILED**: ${u.failed} |`)
            } else if ("basis" in u) {
                table.push(
                    `| ${name} | ≈${fmt(u.wall, 0)} | ≈${fmt(u.flash, 0)} | ≈${fmt(kbps(u.size, u.flash), 2)} | ≈${fmt(pct(u.size, u.flash))}% | – | ` +
                        `≈${fmt(u.fetchedDevice / u.size, 1)} | ≈${u.requests} storage | – | ${u.basis} |`,
                )
            } else {
                const notes: string[] = []
                if (u.retries) notes.push(`${u.retries} ${u.retries === 1 ? "retry" : "retries"}`)
                if (u.rangeIgnored) notes.push("Range ignored seen by the device")
                // a 200 covers every offset: the once-drop fires in the first response, and
                // past 8 KB the device has closed that one already
                if (u.kind === "range" && !u.retries) notes.push(`the drop fired in the first response, after the ${CHUNK_BYTES / KB} KB the device kept of it: no retry`)
                if (u.kb === largest && u.kind === "clean") notes.push("no out-of-memory in the 64 KB heap")
                table.push(
                    `| ${name} | ${fmt(u.wall)} | ${fmt(u.flash)} | ${fmt(kbps(u.size, u.flash), 2)} | ${fmt(pct(u.size, u.flash))}% | ` +
                        `${fmt(u.fetchedServer / u.size, 3)} | ${fmt(u.fetchedDevice / u.size, 3)} | ` +
                        `${u.requests.api}+${u.requests.storage} | ${u.connections.api}+${u.connections.storage} | ${notes.join(", ")} |`,
                )
            }
        }

        const out: string[] = [
            `Device program: ${program}.`,
            "",
            `VM send ceiling: **${fmt(ceiling.kbps, 2)} KB/s** (1 KB = 1024 B), measured at the simulated OTA server: ` +
                `${ceiling.bytes} B accepted from ${ceiling.writes} back-to-back \`write\` commands of up to 232 B ` +
                `(${ceiling.arrived} arrived: ${ceiling.duplicates} duplicate, ${ceiling.refused} refused), ` +
                `${fmt(ceiling.seconds, 2)} s from the first to the last arriving, one write per ${fmt(ceiling.slotMs, 1)} ms ` +
                `(sim/fixtures/ceiling.tsx). Again at the end of the bench: ${fmt(ceiling2.kbps, 2)} KB/s.`,
            "",
            ...table,
            "",
            `wall s: power-on to the new image confirmed (boot, check, download, flash, commit, reboot, confirm). ` +
                `flash s: download+flash, \`seconds\` of the committed status line (0.1 s steps). KB/s: image size / flash s. ` +
                `fetched/image: storage body bytes the release server wrote to its sockets (server sent), and the program's own ` +
                `\`fetched\` count (device read), over the image size. Runs: ${parallelNote}.`,
            "",
        ]
        const lat = (l?: Lateness) => (l ? `${l.median} | ${l.p99} | ${l.max} | ${l.blinks}` : "– | – | – | –")
        out.push(
            `Application latency: the example application (src/main.ts) blinks its status light every 100 ms; how late each ` +
                `blink left the VM, in ms (its own \`app-latency\` lines; 255 means 255 or more), while a ${LATENCY_KB} KB update ` +
                `downloads and in the first ${LATENCY_IDLE_S} s of the new image (idle: up to date, one check at start); ${LATENCY_RUNS} runs each:`,
            "",
            "| OTA_WRITE_HZ | update KB/s | during update: median | p99 | max | blinks | idle: median | p99 | max | blinks |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            ...latency.map(
                l =>
                    `| ${l.writesPerSecond ?? "?"}${l.rate === "default" ? " (default)" : ""} | ${fmt(LATENCY_KB / l.flashSeconds, 2)} | ${lat(l.update)} | ${lat(l.idle)} |` +
                    (l.why ? ` **FAILED**: ${l.why}` : ""),
            ),
            "",
            "Memory (64 KB VM heap):",
        )
        const bigClean = clean.get(largest)
        out.push(
            bigClean
                ? `- ${sizeName(largest)} update: passes, no out-of-memory (the clean ${sizeName(largest)} run above).`
                : `- ${sizeName(largest)} update: **FAILED** (see the table).`,
        )
        for (const channel of ["stable", "prerelease"] as const) {
            const c = checks[channel]
            const what =
                channel === "stable"
                    ? "`stable` (releases/latest; the program stops reading at the end of `assets`)"
                    : "`prerelease` (the release list; the whole JSON, notes included, is parsed)"
            out.push(
                `- release with 100 assets and ${notesMB} MB of notes, checked twice, ${what}: ` +
                    (c.ok ? `${c.statuses.join(" then ")}, no panic, ${fmt(c.wall)} s from power-on.` : `**FAILED**: ${c.why}.`),
            )
        }
        const headroom = (p: Awaited<ReturnType<typeof probe>>) =>
            p
                ? `largest passing HEAP_BALLAST ${p.ballast} B (${p.failsAt} B fails: ${p.failure}): ` +
                  `**peak heap used ≈ ${fmt((HEAP_BYTES - p.ballast) / KB)} KB**¹`
                : "not measured: it fails with no ballast"
        out.push(
            `- heap headroom, (a) 64 KB update with 5 storage drops: ${headroom(probeA)}`,
            `- heap headroom, (b) 100 assets + ${notesMB} MB notes, prerelease, checked twice: ${headroom(probeB)}`,
            "",
            `¹ 64 KB − the largest ballast (binary search, ${PROBE_STEP} B steps) with which the scenario still passes ` +
                `without a VM panic. An upper bound: it includes heap fragmentation and the ballast buffer's own header.`,
        )

        // where the time of the clean updates goes (server-side arrival times)
        const diag: string[] = []
        for (const kb of sizes) {
            const u = clean.get(kb)
            const a = u?.trace
            if (!u || !a) continue
            const full = Math.ceil(u.size / WRITE_BYTES)
            diag.push(
                `- clean ${sizeName(kb)}: ${a.writes} writes in ${fmt(a.span, 1)} s from the first to the last ` +
                    `(${fmt(kbps(a.bytes, a.span), 2)} KB/s, ${fmt(pct(a.bytes, a.span))}% of the ceiling), one per ${fmt(a.slotMs, 1)} ms ` +
                    `when flowing; ${a.writes - full} writes more than the ${full} it takes at 232 B each; ${a.boundaries} Range requests ` +
                    `arrived between two writes, median gap between those two writes ${fmt(a.boundaryGapMs, 0)} ms (last write → request ` +
                    `${fmt(a.ackToRequestMs, 0)} ms, request → next write ${fmt(a.requestToWriteMs, 0)} ms): ` +
                    `${fmt(a.boundaryIdle, 2)} s idle around requests, ${fmt(a.otherIdle, 2)} s elsewhere; ` +
                    `${fmt(u.flash - a.span, 1)} s of flash s before the first / after the last write.`,
            )
        }
        for (const u of runs) {
            if (!ok(u) || u.kind !== "drops" || !u.trace) continue
            const p = u.trace.pauses
            const c = clean.get(u.kb)
            diag.push(
                `- 5 drops ${sizeName(u.kb)}: ${p.length} pauses of the writes over 100 ms, ${fmt(sum(p) / 1000, 2)} s in all ` +
                    `(median ${fmt(median(p), 0)} ms): each drop costs the retry backoff (first delay 0.5–1 s, src/backoff.ts), ` +
                    `a new connection and a Range request (the simulated VM's Math.random starts from the same seed at every ` +
                    `power-on, so the jitter repeats from run to run)` +
                    (c ? `; flash s ${fmt(u.flash - c.flash, 1)} s over the clean run.` : "."),
            )
        }
        if (diag.length) out.push("", "Where the time goes (arrival times of writes and storage requests at the servers):", ...diag)
        if (failures.length) out.push("", `**${failures.length} run(s) FAILED**:`, ...failures.map(f => `- ${f}`))

        console.log(`\n${out.join("\n")}\n`)
        say(`bench: done in ${clock()} (mm:ss); load average ${loadavg().map(x => fmt(x, 2)).join(" ")}`)
    } finally {
        clearInterval(ticker)
        for (const r of rigs) await r.close()
        rmSync(dir, { recursive: true, force: true })
    }
    if (failures.length) throw new BenchFailure(`${failures.length} run(s) failed`)
}

/** Which program was measured: src/ at the current commit (and whether it had changes). */
function programName(entry: string) {
    if (entry !== "sim/fixtures/main.tsx") return entry
    try {
        const git = (...args: string[]) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8" }).trim()
        const dirty = git("status", "--porcelain", "--", "src", "packages") !== ""
        return `src/main.ts at ${git("rev-parse", "--short", "HEAD")}${dirty ? " with uncommitted changes in src/ or packages/" : ""}`
    } catch {
        return "src/main.ts"
    }
}

function sizeName(kb: number) {
    return kb >= 1024 ? `${+(kb / 1024).toFixed(2)} MB` : `${kb} KB`
}

if (require.main === module)
    main().then(
        () => process.exit(0),
        e => {
            console.error(e instanceof BenchFailure ? `bench: FAILED: ${e.message}` : e)
            process.exit(1)
        },
    )
