// mulberry32 (Tommy Ettinger's 32-bit generator): small, fast and deterministic, for
// test data, fault plans and soak runs. Not for anything secret.

/** A generator of uint32 values from `seed`; the same seed gives the same sequence. */
export function mulberry32(seed: number): () => number {
    let a = seed >>> 0
    return () => {
        a = (a + 0x6d2b79f5) >>> 0
        let t = a
        t = Math.imul(t ^ (t >>> 15), t | 1)
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
        return (t ^ (t >>> 14)) >>> 0
    }
}

/** A generator of numbers in [0, 1) from `seed` (mulberry32 / 2^32). */
export function unitRandom(seed: number): () => number {
    const next = mulberry32(seed)
    return () => next() / 4294967296
}
