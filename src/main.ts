// Example application: blinks a status light every 100 ms and updates itself from a
// GitHub repository's releases with the devicescript-github-ota library. Settings
// (repository, token, ...) come from .env.defaults and .env.local; see README.md.
//
// It also measures what an update costs it: how late each blink leaves the VM (the
// light's packet waits in the same packet throttle as the update's writes, and its timer
// behind the update's fibers), kept apart for idle time and for time with an update
// running, since the start, printed every 10 s as
// `app-latency {"phase":"idle"|"update","blinks":N,"median":ms,"p99":ms,"max":ms}`.
import * as ds from "@devicescript/core"
import { startOta } from "devicescript-github-ota"

const PERIOD_MS = 100
const REPORT_MS = 10000

/** Lateness in whole ms, 0..254 and one bucket for 255 and more: bounded memory. */
class Lateness {
    private counts = Buffer.alloc(256 * 2)
    blinks = 0
    max = 0

    add(ms: number) {
        if (this.blinks === 0xffff) {
            // (u16 counts: start again)
            for (let b = 0; b < 256; b++) this.counts.setAt(b * 2, "u16", 0)
            this.blinks = this.max = 0
        }
        const i = Math.min(Math.max(Math.round(ms), 0), 255)
        this.counts.setAt(i * 2, "u16", this.counts.getAt(i * 2, "u16") + 1)
        this.blinks++
        if (ms > this.max) this.max = Math.round(ms)
    }

    /** The smallest bucket at or below which a fraction `q` of the blinks fall. */
    quantile(q: number) {
        const want = Math.ceil(this.blinks * q)
        let seen = 0
        for (let i = 0; i < 256; i++) {
            seen += this.counts.getAt(i * 2, "u16")
            if (seen >= want) return i
        }
        return 255
    }

    report(phase: string) {
        if (!this.blinks) return
        const line = { phase, blinks: this.blinks, median: this.quantile(0.5), p99: this.quantile(0.99), max: this.max }
        console.log(`app-latency ${JSON.stringify(line)}`)
    }
}

const ota = startOta() // every option from the settings
ota.status.subscribe(s => {
    if (s.event === "error") console.log(`app: the update check failed: ${s.error}`)
})

const light = new ds.LightBulb()
await light.intensity.write(0) // (waits until the light is bound)
const idle = new Lateness()
const update = new Lateness()
// the end of an update (commit, or a failure) reports it before a reboot can lose it
ota.busy.subscribe(busy => {
    if (!busy) update.report("update")
})
let on = false
let due = ds.millis()
let nextReport = due + REPORT_MS
for (;;) {
    due += PERIOD_MS
    const wait = due - ds.millis()
    if (wait > 0) await ds.sleep(wait)
    on = !on
    await light.intensity.write(on ? 1 : 0)
    const now = ds.millis()
    const lateness = now - due
    if (await ota.busy.read()) update.add(lateness)
    else idle.add(lateness)
    if (lateness > PERIOD_MS) due = now // missed blinks are skipped, not sent in a burst
    if (now >= nextReport) {
        idle.report("idle")
        update.report("update")
        nextReport = now + REPORT_MS
    }
}
