import * as ds from "@devicescript/core"
import { describe, test, expect } from "@devicescript/test"
import { ProgramCheck, ReleaseError } from "../imagecheck"

// A bytecode image as `devs build` lays it out (tools/devs-image.ts): magics, format,
// ten section headers, and the dcfg section (the last) holding "@version".
function program(version: string, size: number) {
    const img = Buffer.alloc(size)
    img.setAt(0, "u32", 0x53766544)
    img.setAt(4, "u32", 0xf1296e0a)
    img.setAt(8, "u32", 0x02100004)
    const dcfgAt = size - 200
    img.setAt(32 + 9 * 8, "u32", dcfgAt)
    img.setAt(32 + 9 * 8 + 4, "u32", 200)
    img.setAt(dcfgAt, "u32", 0x47464344)
    img.setAt(dcfgAt + 12, "u16", 2)
    const other = dcfgAt + 88
    const entry = other + 24
    img.blitAt(other, Buffer.from("@name"), 0, 5)
    img.setAt(other + 18, "u16", 2 | (4 << 2))
    img.setAt(other + 20, "u32", 160)
    img.blitAt(entry, Buffer.from("@version"), 0, 8)
    img.setAt(entry + 18, "u16", 2 | (version.length << 2))
    img.setAt(entry + 20, "u32", 168)
    img.blitAt(dcfgAt + 168, Buffer.from(version), 0, version.length)
    return img
}

// Feeds the image in pieces of `piece` bytes, as the download does (awaiting between
// pieces, as it does); returns the error message or "".
async function feed(check: ProgramCheck, img: Buffer, piece: number, from = 0) {
    try {
        for (let o = from; o < img.length; o += piece) {
            check.see(o, img, o, Math.min(img.length, o + piece))
            await ds.sleep(0)
        }
    } catch (e) {
        if (!(e instanceof ReleaseError)) throw e
        return (e as Error).message
    }
    return ""
}

describe("program check", () => {
    test("accepts the tag's version, in any piece size", async () => {
        const img = program("v1.2.0", 3000)
        expect(await feed(new ProgramCheck("v1.2.0", img.length), img, 232)).toBe("")
        expect(await feed(new ProgramCheck("v1.2.0", img.length), img, 7)).toBe("")
        expect(await feed(new ProgramCheck("1.2.0", img.length), img, 4096)).toBe("")
    })
    test("refuses another version, and says which", async () => {
        const img = program("v1.1.9", 3000)
        const msg = await feed(new ProgramCheck("v1.2.0", img.length), img, 232)
        expect(msg.indexOf("built as version 'v1.1.9'") >= 0).toBe(true)
    })
    test("refuses what is not bytecode", async () => {
        const img = program("v1.2.0", 3000)
        img[0] = 0x3c
        expect((await feed(new ProgramCheck("v1.2.0", img.length), img, 232)).indexOf("not DeviceScript bytecode") >= 0).toBe(true)
    })
    test("refuses a dcfg section outside the image or too large to hold", async () => {
        const img = program("v1.2.0", 3000)
        img.setAt(32 + 9 * 8 + 4, "u32", 5000)
        expect((await feed(new ProgramCheck("v1.2.0", img.length), img, 232)).indexOf("no readable build configuration") >= 0).toBe(true)
    })
    test("a program without @version is refused", async () => {
        const img = program("v1.2.0", 3000)
        img.setAt(img.length - 200 + 12, "u16", 1) // only @name left
        expect((await feed(new ProgramCheck("v1.2.0", img.length), img, 232)).indexOf("version '(none)'") >= 0).toBe(true)
    })
    test("a download that does not start at byte 0 is refused (its version could not be checked)", async () => {
        const img = program("v1.2.0", 3000)
        expect((await feed(new ProgramCheck("v1.2.0", img.length), img, 232, 1024)).indexOf("from its first byte") >= 0).toBe(true)
    })
})
