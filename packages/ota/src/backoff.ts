// Capped exponential backoff with jitter ("equal jitter": half the step fixed, half
// random), so that a fleet of devices does not retry in lockstep after an outage.

export class Backoff {
    private step = 0

    /** `baseMs`: first delay; `capMs`: largest delay. */
    constructor(
        private baseMs: number,
        private capMs: number
    ) {}

    /** The next delay in ms: min(cap, base * 2^n) / 2 plus up to as much at random. */
    next() {
        let d = this.baseMs
        for (let i = 0; i < this.step && d < this.capMs; i++) d *= 2
        if (d > this.capMs) d = this.capMs
        this.step++
        return Math.round(d / 2 + (Math.random() * d) / 2)
    }

    reset() {
        this.step = 0
    }
}
