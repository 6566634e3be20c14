// Runs a conformance vector (test/vectors/*.json) against an OTA updater server through a
// ConformanceBackend: makes the flash file, plays the bootloader between boots (the same
// sim/bootloader.ts for every backend), sends the commands, and checks every report,
// event, register and the final flash and boot state. The format of a vector is the
// `Vector` type below; names of errors, states and targets are the spec's (snake_case).
import * as assert from "node:assert/strict"
import { createHash } from "node:crypto"
import { jdpack, jdunpack } from "jacdac-ts"
import {
    OtaUpdaterBeginFlags,
    OtaUpdaterCmd,
    OtaUpdaterCmdPack,
    OtaUpdaterEvent,
    OtaUpdaterEventPack,
    OtaUpdaterLimits,
    OtaUpdaterReg,
    OtaUpdaterRegPack,
    OtaUpdaterState,
    OtaUpdaterTarget,
} from "../../.devicescript/ts/constants"
import { OTA_ERROR_NAMES } from "../../packages/ota/src/protocol.g"
import { snakeCase } from "../../tools/gen-protocol"
import { buildAppImage, CHIP_IDS } from "../../tools/esp-image"
import { DEVS_FORMAT_VERSION, DEVS_HEADER_LEN, DEVS_MAGIC0, DEVS_MAGIC1, DEVS_SECTIONS } from "../../tools/devs-image"
import { SimFlash } from "../../sim/flash"
import { boot, markValid, peekBoot, setBootPartition } from "../../sim/bootloader"
import { decodeResumeRecord, padProgram, RESUME_SIM_KEY } from "../../sim/ota-server"
import { ConformanceBackend, Sent } from "./backend"

// --- the vector format ----------------------------------------------------------------

/** An image the vector sends. */
export type ImageSpec =
    | { kind: "app"; version: string; size: number; chip?: string; corrupt?: { at: number; xor: number } }
    | { kind: "program"; size: number; badSections?: boolean }
    | { kind: "bytes"; hex: string; size: number } // `hex` repeated to `size` bytes

export interface Expect {
    /** Fields of the command's report (spec field names); errors and slots by name or number. */
    report?: Record<string, string | number>
    /** No report at all (reject, reboot). */
    noReport?: boolean
    /** Exactly these events, in order: { name: "failed", error: "sha256_mismatch" }; none when absent. */
    events?: Record<string, string | number>[]
    /** The server asked for esp_restart. */
    restart?: boolean
}

export type Step =
    | {
          begin: {
              image?: string
              size?: number // default: the image's size
              target?: string | number // "spare" (default), "program", "slot0", "slot1", "running", or a number
              resume?: boolean
              sha256?: "image" | "none" | "wrong" | "short" // default "image"
          }
          expect?: Expect
      }
    | {
          // writes [from, to) of the image in `write_bytes` pieces, each acknowledged; or one
          // write at `offset` of `bytes` bytes (data from the image at `offset`, or `hex`)
          write: { image: string; from?: number; to?: number | "end"; offset?: number; bytes?: number; hex?: string }
          expect?: Expect // for the last write; every earlier one must be acknowledged
      }
    | { commit: {}; expect?: Expect }
    | { abort: {}; expect?: Expect }
    | { confirm: {}; expect?: Expect }
    | { reject: {}; expect?: Expect }
    | { reboot: {}; expect?: Expect }
    /** Power is cut before the n-th data write into the partition being updated (1-based). */
    | { powerCut: { beforeWrite: number } }
    /** The n-th data write into the partition being updated fails (the device stays on). */
    | { flashFailure: { atWrite: number } }
    /** Power on again (after a cut or a restart): the bootloader runs, then the server starts. */
    | { powerOn: {} }
    | { registers: Record<string, string | number | boolean> }

export interface Vector {
    name: string
    description?: string
    /**
     * Firmware in ota_0 (default 1.0.0); with `pending`, an update to that version committed
     * to ota_1 and booted once. ota_0 then has its own valid otadata entry (it came by OTA
     * too), so a rollback is possible, unless `firstUpdate`: ota_0 was flashed over serial
     * with otadata erased, and ESP-IDF has nothing to roll back to.
     */
    device?: Device
    images?: Record<string, ImageSpec>
    steps: Step[]
    final?: {
        boot?: { slot: number; version: string; pendingVerify: boolean }
        /** The resume record's next_offset, or null when there is none. */
        resume?: number | null
        /** The image now in the program store (by name; zero padded to 32-byte units, as devsmgr takes it), or null when none was installed. */
        program?: string | null
        /** The spare slot holds no byte of the update (erased or never touched). */
        spareUntouched?: boolean
    }
}

export interface Device {
    firmware?: string
    pending?: string
    firstUpdate?: boolean
}

// --- images ---------------------------------------------------------------------------

const WRITE_BYTES = OtaUpdaterLimits.WriteBytes

export function makeImage(spec: ImageSpec): Buffer {
    if (spec.kind === "app") {
        const chipId = spec.chip ? CHIP_IDS[spec.chip] : undefined
        if (spec.chip && chipId === undefined) throw new Error(`unknown chip ${spec.chip}`)
        const img = buildAppImage({ version: spec.version, payloadSize: spec.size, chipId })
        if (spec.corrupt) img[spec.corrupt.at] ^= spec.corrupt.xor
        return img
    }
    if (spec.kind === "program") {
        // a bytecode image as the runtime's header check sees it: magics, format, sections inside
        const img = Buffer.alloc(spec.size)
        for (let i = 0; i < img.length; i++) img[i] = (i * 31 + 7) & 0xff
        img.writeUInt32LE(DEVS_MAGIC0, 0)
        img.writeUInt32LE(DEVS_MAGIC1, 4)
        img.writeUInt32LE(DEVS_FORMAT_VERSION, 8)
        img.fill(0, 12, DEVS_HEADER_LEN)
        const body = DEVS_HEADER_LEN + DEVS_SECTIONS * 8
        for (let i = 0; i < DEVS_SECTIONS; i++) {
            img.writeUInt32LE(body, DEVS_HEADER_LEN + i * 8)
            img.writeUInt32LE(i === 0 ? (spec.badSections ? spec.size : spec.size - body) : 0, DEVS_HEADER_LEN + i * 8 + 4)
        }
        return img
    }
    const unit = Buffer.from(spec.hex, "hex")
    const img = Buffer.alloc(spec.size)
    for (let i = 0; i < img.length; i++) img[i] = unit[i % unit.length]
    return img
}

// --- names ----------------------------------------------------------------------------

const STATE_NAMES: Record<string, number> = names(OtaUpdaterState)
const TARGETS: Record<string, number> = names(OtaUpdaterTarget)

function names(e: Record<string, string | number>): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [k, v] of Object.entries(e)) if (typeof v === "number") out[snakeCase(k)] = v
    return out
}

function errorCode(name: string | number): number {
    if (typeof name === "number") return name
    const i = OTA_ERROR_NAMES.indexOf(name)
    if (i < 0) throw new Error(`vector: unknown error "${name}"`)
    return i
}

function show(field: string, v: number): string | number {
    if (field === "error") return OTA_ERROR_NAMES[v] ?? v
    if (field === "state") return Object.keys(STATE_NAMES).find(k => STATE_NAMES[k] === v) ?? v
    if (field === "slot") return Object.keys(TARGETS).find(k => TARGETS[k] === v && v >= OtaUpdaterTarget.Program) ?? v
    return v
}

// Report layouts, from the spec's packing strings.
const REPORTS: Record<number, { fmt: string; fields: string[] }> = {
    [OtaUpdaterCmd.Begin]: { fmt: OtaUpdaterCmdPack.BeginReport, fields: ["error", "slot", "reserved", "max_image_size", "next_offset"] },
    [OtaUpdaterCmd.Write]: { fmt: OtaUpdaterCmdPack.WriteReport, fields: ["next_offset", "error"] },
    [OtaUpdaterCmd.Commit]: { fmt: OtaUpdaterCmdPack.CommitReport, fields: ["error", "slot"] },
    [OtaUpdaterCmd.Abort]: { fmt: OtaUpdaterCmdPack.AbortReport, fields: ["error"] },
    [OtaUpdaterCmd.Confirm]: { fmt: OtaUpdaterCmdPack.ConfirmReport, fields: ["error"] },
}
const EVENTS: Record<number, { name: string; fmt: string; fields: string[] }> = {
    [OtaUpdaterEvent.Ready]: { name: "ready", fmt: OtaUpdaterEventPack.Ready, fields: ["slot"] },
    [OtaUpdaterEvent.Failed]: { name: "failed", fmt: OtaUpdaterEventPack.Failed, fields: ["error"] },
}
const REGISTERS: Record<string, { code: number; fmt: string }> = {
    state: { code: OtaUpdaterReg.State, fmt: OtaUpdaterRegPack.State },
    bytes_written: { code: OtaUpdaterReg.BytesWritten, fmt: OtaUpdaterRegPack.BytesWritten },
    image_size: { code: OtaUpdaterReg.ImageSize, fmt: OtaUpdaterRegPack.ImageSize },
    progress: { code: OtaUpdaterReg.Progress, fmt: OtaUpdaterRegPack.Progress },
    last_error: { code: OtaUpdaterReg.LastError, fmt: OtaUpdaterRegPack.LastError },
    running_version: { code: OtaUpdaterReg.RunningVersion, fmt: OtaUpdaterRegPack.RunningVersion },
    running_slot: { code: OtaUpdaterReg.RunningSlot, fmt: OtaUpdaterRegPack.RunningSlot },
    pending_verify: { code: OtaUpdaterReg.PendingVerify, fmt: OtaUpdaterRegPack.PendingVerify },
    max_image_size: { code: OtaUpdaterReg.MaxImageSize, fmt: OtaUpdaterRegPack.MaxImageSize },
}

function decode(fmt: string, fields: string[], payload: Buffer): Record<string, number> {
    const values = jdunpack<number[]>(payload, fmt)
    const out: Record<string, number> = {}
    fields.forEach((f, i) => (out[f] = values[i]))
    return out
}

// --- the runner -----------------------------------------------------------------------

const COMMIT_SETTLE_MS = 250 // a program is copied ~100 ms after commit's report

/** Runs `vector` on `backend` with a new flash file at `flashFile`; throws an AssertionError naming the step. */
export async function runVector(vector: Vector, backend: ConformanceBackend, flashFile: string) {
    const images: Record<string, Buffer> = {}
    for (const [name, spec] of Object.entries(vector.images ?? {})) images[name] = makeImage(spec)
    const image = (name: string) => {
        const b = images[name]
        if (!b) throw new Error(`vector: no image "${name}"`)
        return b
    }
    prepareFlash(flashFile, vector.device ?? {})
    let running = 0
    let cutArmed = false
    const powerOn = async () => {
        const flash = SimFlash.open(flashFile)
        try {
            running = boot(flash).slot
        } finally {
            flash.close()
        }
        cutArmed = false
        await backend.boot(flashFile, { runningSlot: running })
    }
    await powerOn()

    for (let i = 0; i < vector.steps.length; i++) {
        const step = vector.steps[i]
        const where = `${vector.name}, step ${i + 1} ${JSON.stringify(step).slice(0, 120)}`
        const check = (sent: Sent[], cmd: number, expect: Expect | undefined, mustAck: boolean) =>
            checkSent(sent, cmd, expect, mustAck, where, backend)
        if ("begin" in step) {
            const b = step.begin
            const img = b.image ? image(b.image) : undefined
            const size = b.size ?? img?.length ?? 0
            let sha = img ? createHash("sha256").update(img).digest() : Buffer.alloc(0)
            if (b.sha256 === "none") sha = Buffer.alloc(0)
            if (b.sha256 === "wrong") sha = Buffer.alloc(32, 0x5a)
            if (b.sha256 === "short") sha = sha.subarray(0, 5)
            let target = b.target ?? "spare"
            if (target === "running") target = running
            const t = typeof target === "number" ? target : TARGETS[target]
            if (t === undefined) throw new Error(`${where}: unknown target ${target}`)
            const flags = b.resume ? OtaUpdaterBeginFlags.Resume : 0
            const payload = Buffer.from(jdpack(OtaUpdaterCmdPack.Begin, [size, t, flags, 0, sha]))
            check(await backend.command(OtaUpdaterCmd.Begin, payload), OtaUpdaterCmd.Begin, step.expect, true)
        } else if ("write" in step) {
            const w = step.write
            const img = image(w.image)
            if (w.offset !== undefined || w.hex !== undefined) {
                const offset = w.offset ?? 0
                const data = w.hex !== undefined ? Buffer.from(w.hex, "hex") : img.subarray(offset, offset + (w.bytes ?? WRITE_BYTES))
                const sent = await backend.command(OtaUpdaterCmd.Write, writePayload(offset, data))
                check(sent, OtaUpdaterCmd.Write, step.expect ?? { report: { next_offset: offset + data.length, error: "none" } }, true)
                continue
            }
            const from = w.from ?? 0
            const to = w.to === undefined || w.to === "end" ? img.length : w.to
            for (let o = from; o < to; o += WRITE_BYTES) {
                const data = img.subarray(o, Math.min(to, o + WRITE_BYTES))
                const sent = await backend.command(OtaUpdaterCmd.Write, writePayload(o, data))
                if (backend.powerLost()) {
                    assert.ok(cutArmed, `${where}: power lost without a power cut`)
                    break
                }
                const last = o + WRITE_BYTES >= to
                const expect = last && step.expect ? step.expect : { report: { next_offset: o + data.length, error: "none" } }
                check(sent, OtaUpdaterCmd.Write, expect, true)
            }
        } else if ("commit" in step) {
            check(await backend.command(OtaUpdaterCmd.Commit, Buffer.alloc(0), COMMIT_SETTLE_MS), OtaUpdaterCmd.Commit, step.expect, true)
        } else if ("abort" in step) {
            check(await backend.command(OtaUpdaterCmd.Abort, Buffer.alloc(0)), OtaUpdaterCmd.Abort, step.expect, true)
        } else if ("confirm" in step) {
            check(await backend.command(OtaUpdaterCmd.Confirm, Buffer.alloc(0)), OtaUpdaterCmd.Confirm, step.expect, true)
        } else if ("reject" in step) {
            check(await backend.command(OtaUpdaterCmd.Reject, Buffer.alloc(0)), OtaUpdaterCmd.Reject, step.expect, false)
        } else if ("reboot" in step) {
            check(await backend.command(OtaUpdaterCmd.Reboot, Buffer.alloc(0)), OtaUpdaterCmd.Reboot, step.expect ?? { restart: true }, false)
        } else if ("powerCut" in step) {
            backend.armPowerCut(step.powerCut.beforeWrite)
            cutArmed = true
        } else if ("flashFailure" in step) {
            backend.armFlashFailure(step.flashFailure.atWrite)
        } else if ("powerOn" in step) {
            await backend.shutdown()
            await powerOn()
        } else if ("registers" in step) {
            for (const [name, want] of Object.entries(step.registers)) {
                const reg = REGISTERS[name]
                if (!reg) throw new Error(`${where}: unknown register ${name}`)
                const [value] = jdunpack<[number | string]>(await backend.register(reg.code), reg.fmt)
                let got: string | number | boolean = value
                if (name === "state") got = show("state", value as number)
                else if (name === "last_error") got = show("error", value as number)
                else if (name === "pending_verify") got = !!value
                else if (name === "progress") got = Math.round((value as number) * 1000) / 1000
                assert.deepEqual(got, want, `${where}: register ${name}`)
            }
        } else {
            throw new Error(`${where}: unknown step`)
        }
    }

    const final = vector.final
    if (final?.resume !== undefined) {
        const raw = await backend.nvsGet(RESUME_SIM_KEY)
        const record = raw && decodeResumeRecord(raw)
        assert.equal(record ? record.nextOffset : null, final.resume, `${vector.name}: resume record`)
    }
    if (final?.program !== undefined) {
        const { program } = await backend.deployed()
        const want = final.program === null ? undefined : padProgram(image(final.program))
        assert.equal(program && sha256(program), want && sha256(want), `${vector.name}: program store`)
    }
    await backend.shutdown()
    const flash = SimFlash.open(flashFile)
    try {
        if (final?.boot) {
            const b = peekBoot(flash)
            assert.deepEqual({ slot: b.slot, version: b.version, pendingVerify: b.pendingVerify }, final.boot, `${vector.name}: boot`)
        }
        if (final?.spareUntouched) {
            const p = flash.otaSlots()[running ^ 1]
            assert.ok(flash.read(p.offset, p.size).every(x => x === 0xff), `${vector.name}: the spare slot was written`)
        }
    } finally {
        flash.close()
    }
}

function writePayload(offset: number, data: Buffer) {
    return Buffer.from(jdpack(OtaUpdaterCmdPack.Write, [offset, data]))
}

function sha256(b: Buffer) {
    return createHash("sha256").update(b).digest("hex")
}

function prepareFlash(file: string, device: Device) {
    const flash = SimFlash.createWithImage(file, buildAppImage({ version: device.firmware ?? "1.0.0", payloadSize: 24 * 1024 }))
    try {
        if (device.pending) {
            if (!device.firstUpdate) {
                setBootPartition(flash, 0)
                markValid(flash)
            }
            const img = buildAppImage({ version: device.pending, payloadSize: 24 * 1024 })
            const slot = flash.partition("ota_1")
            flash.eraseRange(slot.offset, Math.ceil(img.length / 4096) * 4096)
            flash.write(slot.offset, img)
            setBootPartition(flash, 1)
        }
    } finally {
        flash.close()
    }
}

function checkSent(sent: Sent[], cmd: number, expect: Expect | undefined, mustAck: boolean, where: string, backend: ConformanceBackend) {
    const reports = sent.filter(s => s.kind === "report" && s.code === cmd)
    const events = sent.filter(s => s.kind === "event")
    if (expect?.noReport || !mustAck) assert.equal(reports.length, 0, `${where}: unexpected report`)
    else assert.equal(reports.length, 1, `${where}: ${reports.length} reports, expected 1`)
    if (expect?.report && reports[0]) {
        const layout = REPORTS[cmd]
        const got = decode(layout.fmt, layout.fields, reports[0].payload)
        for (const [field, want] of Object.entries(expect.report)) {
            const w = field === "error" ? errorCode(want) : field === "slot" && typeof want === "string" ? TARGETS[want] : want
            assert.equal(got[field], w, `${where}: report ${field} is ${show(field, got[field])}, expected ${want}`)
        }
    }
    {
        const got = events.map(e => {
            const layout = EVENTS[e.code]
            if (!layout) return { name: `0x${e.code.toString(16)}` }
            const fields = decode(layout.fmt, layout.fields, e.payload)
            const out: Record<string, string | number> = { name: layout.name }
            for (const [f, v] of Object.entries(fields)) out[f] = show(f, v)
            return out
        })
        assert.deepEqual(got, expect?.events ?? [], `${where}: events`)
    }
    if (expect?.restart !== undefined) assert.equal(backend.restartRequested(), expect.restart, `${where}: restart`)
}
