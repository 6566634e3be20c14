import * as ds from "@devicescript/core"
import { describe, test, expect } from "@devicescript/test"
import { compareSemver, isNewer, parseSemver } from "../semver"

function throwsInvalid(s: string) {
    let msg = "(no error)"
    try {
        parseSemver(s)
    } catch (e: any) {
        msg = e.message
    }
    expect(msg).toBe(`invalid version: '${s}'`)
}

describe("semver", () => {
    test("parse", () => {
        const v = parseSemver("v1.22.333-rc.1+build.5")
        expect(v.major).toBe(1)
        expect(v.minor).toBe(22)
        expect(v.patch).toBe(333)
        expect(v.prerelease.join("|")).toBe("rc|1")
        expect(parseSemver("V0.0.0").prerelease.length).toBe(0)
        expect(parseSemver("1.2.3-beta.2+exp.sha-5114f85").prerelease.join("|")).toBe(
            "beta|2"
        )
        expect(parseSemver("1.2.3-x-y.0a").prerelease.join("|")).toBe("x-y|0a")
        // numbers the VM compares exactly: at most 9 digits
        expect(parseSemver("999999999.0.0").major).toBe(999999999)
        throwsInvalid("v999999999999999.0.0")
        throwsInvalid("1.0.1234567890")
    })
    test("semver.org precedence chain", async () => {
        const chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ]
        for (let i = 0; i < chain.length; i++) {
            for (let j = 0; j < chain.length; j++) {
                const want = i < j ? -1 : i > j ? 1 : 0
                const got = compareSemver(chain[i], chain[j])
                if (got !== want) console.log(`${chain[i]} vs ${chain[j]}: ${got}`)
                expect(got).toBe(want)
            }
            await ds.sleep(0) // a comparison costs ~1K opcodes (String.split)
        }
    })
    test("numeric order, v prefix, build metadata ignored", () => {
        expect(compareSemver("1.10.0", "1.9.0")).toBe(1)
        expect(compareSemver("1.2.10", "1.2.9")).toBe(1)
        expect(compareSemver("10.0.0", "9.99.99")).toBe(1)
        expect(compareSemver("v1.2.3", "1.2.3")).toBe(0)
        expect(compareSemver("1.2.3+a", "1.2.3+b")).toBe(0)
        expect(compareSemver("1.2.3-rc.1+a", "V1.2.3-rc.1")).toBe(0)
        expect(compareSemver("1.0.0-1", "1.0.0-a")).toBe(-1)
        expect(compareSemver("1.0.0-B", "1.0.0-a")).toBe(-1) // ASCII order
        expect(isNewer("v1.3.0", "v1.2.9")).toBe(true)
        expect(isNewer("1.2.9", "1.2.9")).toBe(false)
        expect(isNewer("1.3.0-rc.1", "1.3.0")).toBe(false)
        expect(isNewer("1.3.0", "1.3.0-rc.1")).toBe(true)
    })
    test("invalid versions throw", async () => {
        const bad = [
            "",
            "v",
            "1",
            "1.2",
            "1.2.x",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3+",
            "1.2.3+a..b",
            "1.2.3-a_b",
            " 1.2.3",
            "1.2.3 ",
            "vv1.2.3",
            "-1.2.3",
            "1.-2.3",
            "1.2.3-rc.1+b+c",
        ]
        for (const s of bad) {
            throwsInvalid(s)
            await ds.sleep(0)
        }
        expect(() => compareSemver("1.2", "1.2.3")).toThrow()
    })
})
