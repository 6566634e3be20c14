import assert from "node:assert/strict"
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
    CHIP_IDS,
    ImageCheck,
    buildAppImage,
    checkAppImage,
    chipName,
    inspectImage,
    parseChip,
} from "../tools/esp-image"

const base = { version: "1.2.3", payloadSize: 300000, projectName: "ota-test" }

function expectFail(r: ImageCheck, code: "not_app_image" | "wrong_chip", pattern?: RegExp) {
    assert.equal(r.ok, false, "expected the image to be rejected")
    if (r.ok) return
    assert.equal(r.code, code, r.message)
    if (pattern) assert.match(r.message, pattern)
}

// Recomputes checksum and appended hash after a deliberate edit, so only the edit is wrong.
function reseal(buf: Buffer): Buffer {
    const info = inspectImage(buf)
    assert.ok(info.checksum && info.imageLength, "layout must still parse")
    const hashLen = info.hashAppended ? 32 : 0
    const checksumOff = info.imageLength - hashLen - 1
    buf[checksumOff] = info.checksum.computed
    if (hashLen) createHash("sha256").update(buf.subarray(0, checksumOff + 1)).digest().copy(buf, checksumOff + 1)
    return buf
}

// deterministic bytes for the random-input tests
function noise(n: number, seed: number): Buffer {
    const out = Buffer.alloc(n)
    let block = Buffer.alloc(0)
    for (let i = 0, ctr = 0; i < n; i++) {
        if (i % 32 === 0) block = createHash("sha256").update(`${seed}:${ctr++}`).digest()
        out[i] = block[i % 32]
    }
    return out
}

describe("esp-image: chip ids", () => {
    it("matches the ESP-IDF / esptool ids", () => {
        assert.equal(CHIP_IDS.esp32, 0)
        assert.equal(CHIP_IDS.esp32s2, 2)
        assert.equal(CHIP_IDS.esp32c3, 5)
        assert.equal(CHIP_IDS.esp32s3, 9)
        assert.equal(CHIP_IDS.esp32c2, 12)
        assert.equal(CHIP_IDS.esp32c6, 13)
        assert.equal(CHIP_IDS.esp32h2, 16)
        assert.equal(CHIP_IDS.esp32p4, 18)
        assert.equal(CHIP_IDS.esp32c61, 20)
        assert.equal(CHIP_IDS.esp32c5, 23)
        assert.equal(chipName(9), "esp32s3")
        assert.equal(chipName(0x63), "unknown(0x63)")
        assert.equal(parseChip("ESP32-S3"), 9)
        assert.equal(parseChip("0x10"), 16)
        assert.equal(parseChip("esp33"), undefined)
    })
})

describe("esp-image: build and inspect", () => {
    it("round-trips header, segments and app descriptor", () => {
        const img = buildAppImage({ ...base, secureVersion: 7, idfVersion: "v5.2.2" })
        const r = checkAppImage(img)
        assert.ok(r.ok, r.ok ? "" : r.message)
        const info = r.info
        assert.deepEqual(info.errors, [])
        assert.equal(info.magicOk, true)
        assert.equal(info.chipId, 9)
        assert.equal(info.chipName, "esp32s3")
        assert.equal(info.spiMode, 2) // DIO
        assert.equal(info.spiSpeedSize, 0x1f) // 2MB, 80 MHz
        assert.equal(info.maxRevFull, 99)
        assert.equal(info.hashAppended, true)
        assert.equal(info.segmentCount, info.segments.length)
        assert.ok(info.checksum?.valid)
        assert.ok(info.sha256?.valid)
        assert.equal(info.imageLength, img.length)
        const d = info.appDesc!
        assert.equal(d.version, "1.2.3")
        assert.equal(d.projectName, "ota-test")
        assert.equal(d.secureVersion, 7)
        assert.equal(d.idfVersion, "v5.2.2")
        assert.match(d.elfSha256, /^[0-9a-f]{64}$/)
        assert.equal(d.maxEfuseBlkRevFull, 199)
        assert.equal(d.mmuPageSize, 16)
    })

    it("lays segments out like ESP-IDF for ESP32-S3", () => {
        const info = inspectImage(buildAppImage(base))
        const [drom, ...rest] = info.segments
        assert.equal(drom.fileOffset, 0x20, "app descriptor sits at file offset 0x20")
        assert.equal(drom.region, "DROM")
        assert.deepEqual(rest.map(s => s.region), ["DRAM", "IRAM", "IROM", "IRAM"])
        for (const s of info.segments) {
            assert.equal(s.length % 4, 0)
            assert.equal(s.headerOffset + 8, s.fileOffset)
            if (s.region === "DROM" || s.region === "IROM")
                assert.equal(s.fileOffset % 0x10000, s.loadAddress % 0x10000, "flash-mapped segments are page aligned")
        }
        const entry = info.segments.find(s => s.region === "IRAM" && s.loadAddress === info.entry)
        assert.ok(entry, "entry point is in an IRAM segment")
    })

    it("produces about payloadSize bytes for small and large sizes", () => {
        for (const size of [4096, 20000, 65536, 70000, 100000, 300000, 1500000, 4000000]) {
            const img = buildAppImage({ version: "9.9.9", payloadSize: size })
            assert.ok(Math.abs(img.length - size) < 16, `size ${size} -> ${img.length}`)
            const r = checkAppImage(img)
            assert.ok(r.ok, `size ${size}: ${r.ok ? "" : r.message}`)
        }
        // below the minimum the image is just the smallest valid one
        assert.ok(checkAppImage(buildAppImage({ version: "0", payloadSize: 0 })).ok)
    })

    it("is deterministic and depends on seed and version", () => {
        assert.ok(buildAppImage(base).equals(buildAppImage(base)))
        assert.ok(buildAppImage({ ...base, seed: 5 }).equals(buildAppImage({ ...base, seed: 5 })))
        assert.ok(!buildAppImage({ ...base, seed: 5 }).equals(buildAppImage({ ...base, seed: 6 })))
        const a = inspectImage(buildAppImage(base)).appDesc!
        const b = inspectImage(buildAppImage({ ...base, version: "1.2.4" })).appDesc!
        assert.notEqual(a.elfSha256, b.elfSha256)
    })

    it("rejects fields that do not fit the descriptor", () => {
        assert.throws(() => buildAppImage({ version: "v".repeat(32), payloadSize: 1000 }), /version/)
        assert.throws(() => buildAppImage({ version: "1", payloadSize: -1 }), /payloadSize/)
    })
})

describe("esp-image: checkAppImage failures", () => {
    it("catches one flipped byte in any segment", () => {
        const img = buildAppImage(base)
        for (const s of inspectImage(img).segments) {
            const bad = Buffer.from(img)
            bad[s.fileOffset + (s.length >> 1)] ^= 0x01
            expectFail(checkAppImage(bad), "not_app_image", /checksum mismatch.*SHA-256/)
        }
    })

    it("uses the SHA-256 to catch edits that keep the checksum", () => {
        const img = buildAppImage(base)
        const s = inspectImage(img).segments[3]
        img[s.fileOffset + 100] ^= 0x10
        img[s.fileOffset + 200] ^= 0x10 // same bit twice: XOR checksum unchanged
        const r = checkAppImage(img)
        assert.ok(r.info.checksum?.valid)
        expectFail(r, "not_app_image", /SHA-256/)
    })

    it("reports wrong_chip for an image built for another chip", () => {
        const esp32 = buildAppImage({ ...base, chipId: 0 })
        expectFail(checkAppImage(esp32), "wrong_chip", /esp32 \(chip id 0\), expected esp32s3/)
        assert.ok(checkAppImage(esp32, 0).ok)
        expectFail(checkAppImage(buildAppImage(base), CHIP_IDS.esp32c3), "wrong_chip")
    })

    it("checks the chip id before anything else, like ESP-IDF", () => {
        const img = buildAppImage(base)
        img.writeUInt16LE(CHIP_IDS.esp32c6, 12) // also breaks the appended hash
        const r = checkAppImage(img)
        expectFail(r, "wrong_chip", /esp32c6/)
        assert.equal(r.info.sha256?.valid, false)
    })

    it("rejects truncated files at every kind of cut point", () => {
        const img = buildAppImage(base)
        const info = inspectImage(img)
        const s = info.segments
        const cuts = [0, 1, 8, 23, 24, 31, 32, 200, s[1].headerOffset + 4, s[2].fileOffset + 10, s[3].fileOffset, img.length - 33, img.length - 32, img.length - 1]
        for (const cut of cuts) {
            const part = img.subarray(0, cut)
            assert.doesNotThrow(() => inspectImage(part))
            expectFail(checkAppImage(part), "not_app_image", cut < 24 ? /too short|magic/ : /truncated/)
        }
    })

    it("rejects random bytes without throwing", () => {
        for (let seed = 0; seed < 50; seed++) {
            const buf = noise(64 + seed * 97, seed)
            if (seed % 2) buf[0] = 0xe9 // get past the magic check too
            if (seed % 4 === 1) buf.writeUInt16LE(9, 12)
            let r: ImageCheck | undefined
            assert.doesNotThrow(() => (r = checkAppImage(buf)))
            assert.equal(r!.ok, false)
        }
    })

    it("never throws on a mangled header", () => {
        const img = buildAppImage({ version: "1", payloadSize: 5000 })
        for (let off = 0; off < 64; off++)
            for (const v of [0x00, 0x01, 0x11, 0x7f, 0xff]) {
                const bad = Buffer.from(img)
                bad[off] = v
                assert.doesNotThrow(() => checkAppImage(bad), `offset ${off} value ${v}`)
            }
    })

    it("requires the app descriptor in segment 0", () => {
        const img = buildAppImage(base)
        img.writeUInt32LE(0, 0x20)
        const r = checkAppImage(reseal(img))
        expectFail(r, "not_app_image", /no app descriptor/)
        assert.ok(r.info.checksum?.valid && r.info.sha256?.valid, "only the descriptor is wrong")
        assert.equal(r.info.appDesc, null)
    })

    it("enforces segment count, word-sized lengths and page alignment", () => {
        const tooMany = buildAppImage(base)
        tooMany[1] = 17
        expectFail(checkAppImage(tooMany), "not_app_image", /segment count 17 exceeds max 16/)

        const img = buildAppImage(base)
        const irom = inspectImage(img).segments[3]
        img.writeUInt32LE(irom.loadAddress + 0x1000, irom.headerOffset)
        expectFail(checkAppImage(reseal(img)), "not_app_image", /segment 3: load address .* MMU page/)

        const odd = buildAppImage(base)
        const last = inspectImage(odd).segments[4]
        odd.writeUInt32LE(last.length - 2, last.headerOffset + 4)
        expectFail(checkAppImage(reseal(odd)), "not_app_image", /^not an app image: segment 4: length .* not a multiple of 4$/)

        const badMagic = buildAppImage(base)
        badMagic[0] = 0xea
        expectFail(checkAppImage(badMagic), "not_app_image", /invalid magic byte 0xea/)
    })

    it("accepts trailing bytes after the image", () => {
        const img = buildAppImage(base)
        const padded = Buffer.concat([img, Buffer.alloc(4096 + 7, 0xff)])
        const r = checkAppImage(padded)
        assert.ok(r.ok, r.ok ? "" : r.message)
        assert.equal(r.info.imageLength, img.length)
    })

    it("checks images without an appended hash by checksum alone", () => {
        const img = buildAppImage({ ...base, hashAppended: false })
        const r = checkAppImage(img)
        assert.ok(r.ok, r.ok ? "" : r.message)
        assert.equal(r.info.hashAppended, false)
        assert.equal(r.info.sha256, null)
        assert.equal(r.info.imageLength, img.length)
        assert.equal(img.length % 16, 0, "checksum byte ends a 16-byte block")
        img[r.info.segments[1].fileOffset] ^= 0x80
        expectFail(checkAppImage(img), "not_app_image", /checksum mismatch/)
    })
})

describe("esp-image: CLI", function () {
    this.timeout(60000)
    const tsx = join(__dirname, "..", "node_modules", ".bin", "tsx")
    const cli = join(__dirname, "..", "tools", "image.ts")
    let dir = ""
    const run = (...args: string[]) => spawnSync(tsx, [cli, ...args], { encoding: "utf8" })

    before(() => (dir = mkdtempSync(join(tmpdir(), "esp-image-"))))
    after(() => rmSync(dir, { recursive: true, force: true }))

    it("builds an image and inspects it as valid", () => {
        const out = join(dir, "app.bin")
        const b = run("build", "--version", "1.2.3", "--size", "100000", "--project", "cli-app", "--seed", "3", "--out", out)
        assert.equal(b.status, 0, b.stderr)
        const img = readFileSync(out)
        assert.ok(img.equals(buildAppImage({ version: "1.2.3", payloadSize: 100000, projectName: "cli-app", seed: 3 })))

        const r = run("inspect", out)
        assert.equal(r.status, 0, r.stdout + r.stderr)
        assert.match(r.stdout, /valid app image for esp32s3/)
        assert.match(r.stdout, /version:\s+1\.2\.3/)
        assert.match(r.stdout, /checksum:.*\(valid\)/)

        const j = run("inspect", out, "--json")
        assert.equal(j.status, 0)
        const parsed = JSON.parse(j.stdout)
        assert.equal(parsed.appDesc.projectName, "cli-app")
        assert.equal(parsed.result.ok, true)
    })

    it("exits non-zero for corrupt, wrong-chip and missing files", () => {
        const corrupt = join(dir, "corrupt.bin")
        const img = buildAppImage({ version: "1", payloadSize: 20000 })
        img[1000] ^= 0xff
        writeFileSync(corrupt, img)
        const c = run("inspect", corrupt)
        assert.equal(c.status, 1)
        assert.match(c.stdout, /not a valid app image[\s\S]*checksum mismatch/)

        const esp32 = join(dir, "esp32.bin")
        assert.equal(run("build", "--version", "1", "--size", "20000", "--chip", "esp32", "--out", esp32).status, 0)
        const w = run("inspect", esp32)
        assert.equal(w.status, 1)
        assert.match(w.stdout, /wrong chip/)
        assert.equal(run("inspect", esp32, "--chip", "esp32").status, 0)
        assert.equal(run("inspect", esp32, "--chip", "0").status, 0)

        const m = run("inspect", join(dir, "nope.bin"))
        assert.equal(m.status, 2)
        assert.match(m.stderr, /cannot read .*nope\.bin: ENOENT/)
        assert.doesNotMatch(m.stderr, /\n\s+at /, "no stack trace")
    })

    it("reports usage errors with exit code 2", () => {
        for (const args of [[], ["frob"], ["build", "--size", "10"], ["inspect"], ["inspect", "x.bin", "--chip", "esp99"], ["build", "--version", "1", "--size", "ten", "--out", "x"]]) {
            const r = run(...args)
            assert.equal(r.status, 2, args.join(" "))
            assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace")
        }
    })
})
