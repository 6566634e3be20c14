import { describe, test, expect } from "@devicescript/test"
import { globMatch } from "../glob"

function check(pattern: string, name: string, want: boolean) {
    const got = globMatch(pattern, name)
    if (got !== want) console.log(`globMatch('${pattern}', '${name}') = ${got}`)
    expect(got).toBe(want)
}

describe("glob", () => {
    test("literal, * and ?", () => {
        check("firmware-*.bin", "firmware-1.2.3.bin", true)
        check("firmware-*.bin", "firmware-.bin", true)
        check("firmware-*.bin", "firmware-1.2.3.bin.sig", false)
        check("firmware-*.bin", "Firmware-1.bin", false)
        check("*", "", true)
        check("*", "anything at all", true)
        check("", "", true)
        check("", "a", false)
        check("a", "", false)
        check("*.bin", "a.bin", true)
        check("*.bin", "a.bin.sig", false)
        check("*.bin", ".bin", true)
        check("*.bin*", "a.bin.sig", true)
        check("fw-esp32s3-?.bin", "fw-esp32s3-1.bin", true)
        check("fw-esp32s3-?.bin", "fw-esp32s3-12.bin", false)
        check("fw-esp32s3-?.bin", "fw-esp32s3-.bin", false)
        check("fw.bin", "fw.bin", true)
        check("fw.bin", "fwxbin", false)
        check("a*b*c", "aXbYc", true)
        check("a*b*c", "abcbc", true)
        check("a*b*c", "acb", false)
        check("**a", "bba", true)
        check("?*", "", false)
        check("*?", "x", true)
    })
    test("no exponential backtracking", () => {
        let name = ""
        for (let i = 0; i < 60; i++) name += "a"
        check("*a*a*a*a*a*a*a*a*a*b", name, false)
        check("*a*a*a*a*a*a*a*a*a*a", name, true)
    })
})
