// Semantic versions (semver.org 2.0) for release tags such as "v1.2.3-rc.1".

export interface SemVer {
    major: number
    minor: number
    patch: number
    prerelease: string[]
}

function invalid(s: string): Error {
    return new Error(`invalid version: '${s}'`)
}

// 0-9 only; the identifier itself is checked by the caller
function isNumeric(id: string) {
    for (let i = 0; i < id.length; i++) {
        const c = id.charCodeAt(i)
        if (c < 48 || c > 57) return false
    }
    return id.length > 0
}

// [0-9A-Za-z-]+
function isIdent(id: string) {
    if (!id.length) return false
    for (let i = 0; i < id.length; i++) {
        const c = id.charCodeAt(i)
        const ok =
            (c >= 48 && c <= 57) ||
            (c >= 65 && c <= 90) ||
            (c >= 97 && c <= 122) ||
            c === 45
        if (!ok) return false
    }
    return true
}

// numeric identifiers: no leading zero, at most 9 digits: the VM compares larger
// numbers wrongly (its integer paths are exact below 2^31 only), which let a tag like
// v999999999999999.0.0 pass as equal to an image's 1.1.0
function isNumber(id: string) {
    return (
        isNumeric(id) && id.length <= 9 && !(id.length > 1 && id[0] === "0")
    )
}

/**
 * Parses "1.2.3", "v1.2.3", "1.2.3-rc.1+build.5" (build metadata is
 * checked, then dropped). Throws Error("invalid version: '...'").
 */
export function parseSemver(s: string): SemVer {
    let rest = s
    const c = rest.length ? rest[0] : ""
    if (c === "v" || c === "V") rest = rest.slice(1)
    const plus = rest.indexOf("+")
    if (plus >= 0) {
        for (const id of rest.slice(plus + 1).split("."))
            if (!isIdent(id)) throw invalid(s)
        rest = rest.slice(0, plus)
    }
    let prerelease: string[] = []
    const dash = rest.indexOf("-")
    if (dash >= 0) {
        prerelease = rest.slice(dash + 1).split(".")
        for (const id of prerelease)
            if (!isIdent(id) || (isNumeric(id) && !isNumber(id)))
                throw invalid(s)
        rest = rest.slice(0, dash)
    }
    const core = rest.split(".")
    if (core.length !== 3) throw invalid(s)
    for (const id of core) if (!isNumber(id)) throw invalid(s)
    return {
        major: parseInt(core[0]),
        minor: parseInt(core[1]),
        patch: parseInt(core[2]),
        prerelease,
    }
}

function cmp(a: number, b: number) {
    return a < b ? -1 : a > b ? 1 : 0
}

// ASCII order; `a < b` can't be used: the VM compares strings as numbers
function compareText(a: string, b: string) {
    for (let i = 0; i < a.length && i < b.length; i++) {
        const c = cmp(a.charCodeAt(i), b.charCodeAt(i))
        if (c) return c
    }
    return cmp(a.length, b.length)
}

// semver 2.0 rule 11.4: numeric < alphanumeric, numbers by value, text by ASCII
function compareIds(a: string, b: string) {
    const na = isNumeric(a)
    const nb = isNumeric(b)
    if (na && nb) return cmp(parseInt(a), parseInt(b))
    if (na) return -1
    if (nb) return 1
    return compareText(a, b)
}

/** -1, 0 or 1 by semver precedence; throws on an invalid version. */
export function compareSemver(a: string, b: string): number {
    const x = parseSemver(a)
    const y = parseSemver(b)
    const r =
        cmp(x.major, y.major) || cmp(x.minor, y.minor) || cmp(x.patch, y.patch)
    if (r) return r
    const px = x.prerelease
    const py = y.prerelease
    // a release ranks above any of its prereleases
    if (!px.length || !py.length) return cmp(py.length, px.length)
    for (let i = 0; i < px.length && i < py.length; i++) {
        const c = compareIds(px[i], py[i])
        if (c) return c
    }
    return cmp(px.length, py.length)
}

/** True when `candidate` has higher precedence than `running`. */
export function isNewer(candidate: string, running: string): boolean {
    return compareSemver(candidate, running) > 0
}
