// Client of the OTA updater service (services/otaupdater.md). Commands are not
// acknowledged by the VM, so every command waits for its report, and writes are
// pipelined in a small window with the report's next_offset as the acknowledgement.
import * as ds from "@devicescript/core"
import { OTA_ERROR_NAMES } from "./protocol.g"
import { CHUNK_BYTES } from "./download"

export const WRITE_BYTES = ds.OtaUpdaterLimits.WriteBytes // 236-byte packet payload minus the u32 offset
const WINDOW = 4 // writes in flight; more only queues in the VM's packet throttle
const REPORT_TIMEOUT_MS = 1000
const SLOW_REPORT_MS = 30000 // begin (may re-hash a prefix) and commit (checks the image)
const RETRIES = 5
const MAX_QUEUED = 16

// Command codes generated from services/otaupdater.md.
const CMD_BEGIN = ds.OtaUpdaterCodes.CmdBegin
const CMD_WRITE = ds.OtaUpdaterCodes.CmdWrite
const CMD_COMMIT = ds.OtaUpdaterCodes.CmdCommit
const CMD_ABORT = ds.OtaUpdaterCodes.CmdAbort
const CMD_REBOOT = ds.OtaUpdaterCodes.CmdReboot
const CMD_CONFIRM = ds.OtaUpdaterCodes.CmdConfirm
const CMD_REJECT = ds.OtaUpdaterCodes.CmdReject

/** The spec's name of an `Error` code, e.g. "sha256_mismatch". */
export function otaErrorName(code: number) {
    return OTA_ERROR_NAMES[code] || `error_${code}`
}

// Errors that the same asset will give again: the next try waits for the check interval.
const FINAL_ERRORS = ["not_app_image", "wrong_chip", "bad_signature", "too_large"]

/**
 * An error reported by the OTA service; `code` is its name, e.g. "sha256_mismatch".
 * `final`: the same asset would fail the same way (retrying sooner does not help).
 */
export class OtaError extends Error {
    readonly final: boolean
    constructor(readonly code: string, what: string) {
        super(
            `ota ${what}: ${code}` +
                (code === "bad_signature" ? " (not signed with the key of the running firmware)" : "")
        )
        this.name = "OtaError"
        this.final = FINAL_ERRORS.indexOf(code) >= 0
    }
}

export interface OtaStatus {
    version: string
    slot: number
    pendingVerify: boolean
    maxImageSize: number
}

export interface OtaBegin {
    slot: number
    /** First image offset to write: 0, or where a resumed update goes on. */
    nextOffset: number
}

export class OtaClient {
    // Reports are queued: acks often arrive while the fiber is busy sending.
    private queue: ds.Packet[] = []
    private arrived = ds.emitter<boolean>()

    constructor(readonly role: ds.OtaUpdater) {
        const self = this // closures cannot capture `this` in DeviceScript
        role.report().subscribe(pkt => self.onReport(pkt))
    }

    private onReport(pkt: ds.Packet) {
        if (!pkt.isReport) return
        if (this.queue.length >= MAX_QUEUED) this.queue.shift()
        this.queue.push(pkt)
        this.arrived.emit(true)
    }

    async status(): Promise<OtaStatus> {
        const r = this.role
        return {
            version: await r.runningVersion.read(),
            slot: await r.runningSlot.read(),
            pendingVerify: await r.pendingVerify.read(),
            maxImageSize: await r.maxImageSize.read(),
        }
    }

    /**
     * Starts an update; `sha256` is 32 bytes or empty when unknown. With `resume`, the
     * service continues a partial image of the same asset (same size and sha256) left by a
     * reset; `nextOffset` is where writing must go on (0: from the start). `target` is a
     * `ds.OtaUpdaterTarget`: the spare firmware slot (default) or the program store.
     */
    async begin(size: number, sha256: Buffer, resume: boolean, target?: number): Promise<OtaBegin> {
        const payload = Buffer.alloc(8 + sha256.length)
        payload.setAt(0, "u32", size)
        payload.setAt(4, "u8", target === undefined ? ds.OtaUpdaterTarget.Spare : target)
        payload.setAt(5, "u8", resume ? ds.OtaUpdaterBeginFlags.Resume : 0)
        payload.blitAt(8, sha256, 0, sha256.length)
        // not resent after REPORT_TIMEOUT_MS: a second begin would drop the first one's
        // update (a resume re-hashes the prefix in the slot, which takes a while)
        const r = await this.call(CMD_BEGIN, payload, "begin", SLOW_REPORT_MS)
        // a server older than next_offset sends an 8-byte report: it always starts from 0
        return { slot: r.getAt(1, "u8"), nextOffset: r.length >= 12 ? r.getAt(8, "u32") : 0 }
    }

    /** A writer that streams image bytes from `from` to `end` into this update. */
    writer(from: number, end: number) {
        return new ImageWriter(this, from, end)
    }

    /** Validates the image and selects it for the next boot. Returns the slot. */
    async commit(): Promise<number> {
        const r = await this.call(CMD_COMMIT, Buffer.alloc(0), "commit", SLOW_REPORT_MS)
        return r.getAt(1, "u8")
    }

    async abort() {
        await this.call(CMD_ABORT, Buffer.alloc(0), "abort")
    }

    async confirm() {
        await this.call(CMD_CONFIRM, Buffer.alloc(0), "confirm")
    }

    /**
     * Marks the running image invalid: the service rolls back and reboots
     * (esp_ota_mark_app_invalid_rollback_and_reboot). No report: on success the
     * device restarts; a refusal shows in last_error.
     */
    async reject() {
        await this.role.sendCommand(CMD_REJECT)
    }

    async reboot() {
        await this.role.sendCommand(CMD_REBOOT)
    }

    // Sends a command and waits for its report; resends when the report is lost.
    private async call(cmd: number, payload: Buffer, what: string, timeout?: number) {
        for (let i = 0; i <= RETRIES; i++) {
            this.queue = []
            await this.role.sendCommand(cmd, payload)
            const r = await this._report(cmd, timeout)
            if (!r) continue
            const err = r.getAt(0, "u8")
            if (err) throw new OtaError(otaErrorName(err), what)
            return r
        }
        throw new OtaError("timeout", what)
    }

    /** Waits for the next report of command `cmd` (0 ms: only those already queued); undefined on timeout. */
    async _report(cmd: number, timeout?: number): Promise<Buffer> {
        const until = ds.millis() + (timeout === undefined ? REPORT_TIMEOUT_MS : timeout)
        for (;;) {
            while (this.queue.length) {
                const pkt = this.queue.shift()
                if (pkt.serviceCommand === cmd) return pkt.payload
            }
            const left = until - ds.millis()
            if (left <= 0) return undefined
            if ((await ds.wait(this.arrived, left)) === undefined) return undefined
        }
    }
}

/**
 * Image bytes held by the writer: those not acknowledged yet (for resending) and those
 * not sent yet. Room for one Range chunk (download.ts CHUNK_BYTES) beyond a window of
 * writes, so that a response is taken off the socket at once even when the storage
 * host ignores Range and keeps sending.
 */
export const RING_BYTES = CHUNK_BYTES + (WINDOW + 1) * WRITE_BYTES
/**
 * Pace of image writes: at most `rate` writes per second (startOta's writeRate). The VM
 * sends every packet of the program through one throttle of 50 packets/s, so writes at
 * 50/s leave the program's own packets queued behind them.
 */
export const writePolicy = { rate: 50 }

// Allocated once, at start-up, before the heap gets fragmented; one update at a time.
const ring = Buffer.alloc(RING_BYTES)
const WAIT_MS = 2000 // longest wait of push/flush between two looks at the sender

/**
 * Streams image bytes into the update: push() only copies into a ring allocated at
 * start-up, and a sender fiber cuts what it holds into full 232-byte writes with up to
 * WINDOW writes in flight, so reading the network and writing the service overlap.
 * The service's `next_offset` reports are the acknowledgements; a lost write or report
 * is resent from the last acknowledged byte. push() and flush() throw the OtaError of
 * a write the service refused or left unanswered. close() when done.
 */
export class ImageWriter {
    /** image offset up to which the service acknowledged */
    acked: number
    /** image offset up to which bytes were pushed: where a download goes on */
    filled: number
    sent: number
    error: Error = null
    flushing = false
    closed = false
    readonly wake = ds.emitter<boolean>() // data pushed, flush or close asked for
    readonly progress = ds.emitter<boolean>() // acked moved, an error, the sender ended
    done = false

    constructor(
        readonly client: OtaClient,
        from: number,
        readonly end: number
    ) {
        this.acked = this.sent = this.filled = from
        sendLoop.start(this)
    }

    /** Bytes that push() takes now without waiting for the service. */
    room() {
        return RING_BYTES - (this.filled - this.acked)
    }

    /** Resolves once room() is at least `bytes` (at most RING_BYTES). */
    async waitRoom(bytes: number) {
        while (this.room() < bytes) {
            if (this.error) throw this.error
            if (this.done) throw new OtaError("closed", "write")
            await ds.wait(this.progress, WAIT_MS)
        }
    }

    /** Appends data[from, to) at image offset `filled`; returns once it is held. */
    async push(data: Buffer, from: number, to: number) {
        let i = from
        while (i < to) {
            if (this.error) throw this.error
            const room = this.room()
            if (room <= 0) {
                await ds.wait(this.progress, WAIT_MS)
                continue
            }
            const at = this.filled % RING_BYTES
            // (Math.min of the VM takes two arguments: a third is ignored)
            const n = Math.min(Math.min(to - i, room), RING_BYTES - at)
            ring.blitAt(at, data, i, n)
            this.filled += n
            i += n
            this.wake.emit(true)
        }
    }

    /** Sends what is held, the last partial write too, and returns when all is acknowledged. */
    async flush() {
        this.flushing = true
        this.wake.emit(true)
        try {
            while (this.acked < this.filled) {
                if (this.error) throw this.error
                if (this.done) throw new OtaError("closed", "write")
                await ds.wait(this.progress, WAIT_MS)
            }
        } finally {
            this.flushing = false
        }
    }

    /** Stops the sender fiber; resolves once it no longer reads reports. */
    async close() {
        this.closed = true
        this.wake.emit(true)
        while (!this.done) await ds.wait(this.progress, WAIT_MS)
    }
}

// The sender fiber of an ImageWriter.
async function sendLoop(w: ImageWriter) {
    let retries = 0
    let nextAt = 0 // ds.millis() before which the next write waits (writePolicy)
    try {
        while (!w.closed) {
            while (w.sent - w.acked < WINDOW * WRITE_BYTES) {
                const n = Math.min(WRITE_BYTES, w.filled - w.sent)
                if (n <= 0 || (n < WRITE_BYTES && !w.flushing && w.filled < w.end)) break
                const payload = Buffer.alloc(4 + n)
                payload.setAt(0, "u32", w.sent)
                const at = w.sent % RING_BYTES
                const first = Math.min(n, RING_BYTES - at)
                payload.blitAt(4, ring, at, first)
                if (first < n) payload.blitAt(4 + first, ring, 0, n - first)
                const now = ds.millis()
                if (nextAt > now) await ds.sleep(nextAt - now)
                nextAt = Math.max(now, nextAt) + 1000 / writePolicy.rate
                await w.client.role.sendCommand(CMD_WRITE, payload)
                w.sent += n
            }
            if (w.sent === w.acked) {
                // nothing in flight: wait for data
                await ds.wait(w.wake, WAIT_MS)
                continue
            }
            const r = await w.client._report(CMD_WRITE, REPORT_TIMEOUT_MS)
            if (!r) {
                // Lost writes or reports: go back to the last acknowledged offset.
                if (++retries > RETRIES) throw new OtaError("timeout", "write")
                w.sent = w.acked
                continue
            }
            const next = r.getAt(0, "u32")
            const err = r.getAt(4, "u8")
            if (err === ds.OtaUpdaterError.BadOffset) {
                // writes were lost: resume where the service says, from the held bytes
                if (next < w.acked || next > w.filled) throw new OtaError("bad_offset", "write")
                w.acked = w.sent = next
            } else if (err !== ds.OtaUpdaterError.None) {
                throw new OtaError(otaErrorName(err), "write")
            } else if (next > w.acked && next <= w.filled) {
                // (after a resend, the service may already have more than was resent)
                w.acked = next
                if (w.sent < next) w.sent = next
                retries = 0
                w.progress.emit(true)
            }
        }
    } catch (e) {
        w.error = e as Error
    }
    w.done = true
    w.progress.emit(true)
}
