// Asset-name patterns: `*` matches any run (also empty), `?` one character,
// everything else itself; case-sensitive; the whole name must match.

/**
 * Iterative matcher: on a mismatch it only retries from the last `*`
 * (one position further), so it runs in O(pattern * name), never exponential.
 */
export function globMatch(pattern: string, name: string): boolean {
    let p = 0
    let n = 0
    let star = -1 // pattern index of the last `*` seen
    let mark = 0 // name index that `*` was last tried to cover up to
    while (n < name.length) {
        const pc = p < pattern.length ? pattern[p] : ""
        if (pc === "*") {
            star = p++
            mark = n
        } else if (pc !== "" && (pc === "?" || pc === name[n])) {
            p++
            n++
        } else if (star >= 0) {
            p = star + 1
            n = ++mark
        } else return false
    }
    while (p < pattern.length && pattern[p] === "*") p++
    return p === pattern.length
}
