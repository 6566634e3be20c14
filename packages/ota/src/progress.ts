// Download progress on the console: percent, bytes and rate, every few seconds.
import * as ds from "@devicescript/core"

const REPORT_EVERY_MS = 2000

export class Progress {
    private start = ds.millis()
    private lastReport = 0

    constructor(readonly total: number) {}

    seconds() {
        return Math.round((ds.millis() - this.start) / 100) / 10
    }

    /** Prints the progress when 2 s passed since the last line, or at the end; true when it did. */
    update(done: number) {
        const now = ds.millis()
        if (done < this.total && now - this.lastReport < REPORT_EVERY_MS) return false
        this.lastReport = now
        const ms = Math.max(now - this.start, 1)
        const pct = Math.floor((done * 100) / this.total)
        const kbps = Math.round(done / ms * 10) / 10 // bytes/ms = KB/s
        console.log(`ota: ${pct}% ${done}/${this.total} bytes ${kbps} KB/s`)
        return true
    }
}
