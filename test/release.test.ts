// The release workflow's local twin, end to end: `npm run release:pack` checks and packs
// (and signs) an image built by the image tool and a program built by `devs build`,
// `npm run release:publish-local` puts it into the release server emulator's folder, and
// the simulated device (the real VM, the simulated OTA server) installs it, or refuses
// it with a clear error and keeps booting 1.0.0. Refusals at pack or publish write and
// publish nothing.
import * as assert from "node:assert/strict"
import { generateKeyPairSync, createHash, type KeyObject } from "node:crypto"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { crc32 as zlibCrc32 } from "node:zlib"
import { join } from "node:path"
import { Rig, OWNER } from "../sim/rig"
import { buildProgram, readEnvSettings } from "../sim/program"
import { bootedImage } from "../sim/run-once"
import { buildAppImage, checkAppImage, inspectImage, resealImage, CHIP_IDS } from "../tools/esp-image"
import { keyDigest, signImage, verifySignedImage } from "../tools/secure-boot"
import { FIRMWARE_ASSET, PROGRAM_ASSET, MANIFEST_FILE, NOTES_FILE, SUMS_FILE, pack, PackError, main as packMain } from "../tools/release-pack"
import { publishLocal, PublishError, main as publishMain } from "../tools/release-publish-local"
import { loadRepo } from "../tools/release-server/store"
import { globMatch } from "../packages/ota/src/glob"

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex")
const rsa3072 = () => generateKeyPairSync("rsa", { modulusLength: 3072 })

/**
 * What an attacker with write access to the storage does: changes a payload byte and
 * makes the image consistent again (checksum byte, appended SHA-256), keeping the old
 * signature sector. Only the signature can tell.
 */
function retouch(signed: Buffer, at: number): Buffer {
    const out = Buffer.from(signed)
    const seg = inspectImage(out).segments.at(-1)!
    out[seg.fileOffset + (at % seg.length)] ^= 0x5a
    return resealImage(out)
}

describe("release:pack and release:publish-local (the release workflow on a laptop)", function () {
    this.timeout(300_000)
    let rig: Rig
    let dir: string
    let key: KeyObject
    let pub: KeyObject
    let otherKey: KeyObject
    let fw120: Buffer
    let n = 0
    const outDir = () => join(dir, `out-${++n}`)

    before(async () => {
        dir = mkdtempSync(join(tmpdir(), "ota-release-"))
        rig = new Rig(buildProgram({ version: "v1.0.0" }))
        await rig.serve()
        ;({ privateKey: key, publicKey: pub } = rsa3072())
        otherKey = rsa3072().privateKey
        fw120 = buildAppImage({ version: "1.2.0", payloadSize: 24_000, seed: 120 })
    })
    after(async () => {
        await rig?.close()
        if (dir) rmSync(dir, { recursive: true, force: true })
    })

    /** Runs the device on a fresh 1.0.0 flash until it installs `to` or reports an error. */
    async function install(repo: string, trustedKey?: KeyObject) {
        return rig.run(repo, `${repo}.flash`, {
            trustedKey,
            until: s => (s.event === "error" ? { result: "error", error: s.error } : undefined),
        })
    }

    function assertStillOld(flashFile: string) {
        const booted = bootedImage(flashFile)
        assert.deepEqual([booted.slot, booted.version, booted.pendingVerify], ["ota_0", "1.0.0", false])
    }

    it("signed firmware and a program: packed, published locally, installed by a signing device", async () => {
        const program = buildProgram({ version: "v1.2.0" })
        const out = outDir()
        const m = pack({ version: "v1.2.0", firmware: fw120, program, signKey: key, out })

        assert.deepEqual(readdirSync(out).sort(), [FIRMWARE_ASSET, MANIFEST_FILE, NOTES_FILE, SUMS_FILE, PROGRAM_ASSET].sort())
        const signed = readFileSync(join(out, FIRMWARE_ASSET))
        assert.equal(signed.length % 4096, 0, "signature sector at a 4 KB boundary")
        assert.equal(signed.length, Math.ceil(fw120.length / 4096) * 4096 + 4096)
        assert.ok(signed.subarray(0, fw120.length).equals(fw120), "the image itself is unchanged")
        assert.ok(checkAppImage(signed).ok, "still a valid app image with its signature appended")
        assert.equal(verifySignedImage(signed, keyDigest(pub)).ok, true)
        assert.deepEqual(readFileSync(join(out, PROGRAM_ASSET)), program)
        assert.equal(
            readFileSync(join(out, SUMS_FILE), "utf8"),
            `${sha(signed)}  ${FIRMWARE_ASSET}\n${sha(program)}  ${PROGRAM_ASSET}\n`
        )
        assert.equal(m.firmware?.signedBy, keyDigest(pub).toString("hex"))
        assert.match(readFileSync(join(out, NOTES_FILE), "utf8"), /^# v1\.2\.0\n[^]*signed \(Secure Boot v2 RSA-3072/)
        // the names the device's default patterns pick (library defaults and .env.defaults)
        const env = readEnvSettings()
        for (const pattern of ["*.bin", String(env.ASSET_PATTERN)]) assert.ok(globMatch(pattern, FIRMWARE_ASSET), pattern)
        for (const pattern of ["*.devs", String(env.PROGRAM_ASSET)]) assert.ok(globMatch(pattern, PROGRAM_ASSET), pattern)
        assert.ok(!globMatch("*.bin", PROGRAM_ASSET) && !globMatch("*.devs", FIRMWARE_ASSET))

        publishLocal({ dir: rig.releases, from: out, owner: OWNER, repo: "signed" })
        const events: string[] = []
        const run = await rig.run("signed", "signed.flash", {
            trustedKey: pub,
            until: s => {
                if (s.event === "committed") events.push(`${s.target} ${s.to}`)
                if (s.event === "error") return { result: "error", error: s.error }
                if (s.event === "up-to-date" && s.program === "v1.2.0") return { result: "updated", version: s.version }
                return undefined
            },
        })
        assert.equal(run.result.result, "updated", JSON.stringify(run.result) + "\n" + run.logs.slice(-20).join("\n"))
        assert.deepEqual(events, ["firmware v1.2.0", "program v1.2.0"])
        assert.equal(run.result.version, "1.2.0")
        assert.equal(rig.outcome(run.flashFile, signed), "new")
        assert.deepEqual(rig.leaks(run.logs), [])
    })

    it("unsigned firmware on a device that does not check signatures: packed, published, installed", async () => {
        const out = outDir()
        const fw = buildAppImage({ version: "1.3.0", payloadSize: 20_000, seed: 130 })
        const m = pack({ version: "v1.3.0", firmware: fw, out })
        assert.equal(m.firmware?.signedBy, undefined)
        assert.deepEqual(readFileSync(join(out, FIRMWARE_ASSET)), fw)
        publishLocal({ dir: rig.releases, from: out, owner: OWNER, repo: "unsigned" })
        const run = await install("unsigned")
        assert.equal(run.result.result, "updated", JSON.stringify(run.result))
        assert.equal(rig.outcome(run.flashFile, fw), "new")
    })

    describe("a signing device refuses, with bad_signature, and keeps booting 1.0.0", () => {
        async function expectBadSignature(repo: string, firmware: Buffer) {
            const run = await install(repo, pub)
            assert.equal(run.result.result, "error", JSON.stringify(run.result))
            assert.match(run.result.error, /ota commit: bad_signature \(not signed with the key of the running firmware\)/)
            assert.ok(run.logs.some(l => /ota: signature: /.test(l)), "the OTA server says why")
            assert.equal(rig.outcome(run.flashFile, firmware), "old")
            assertStillOld(run.flashFile)
        }

        it("an unsigned image (missing signature)", async () => {
            const out = outDir()
            pack({ version: "v1.2.0", firmware: fw120, out })
            publishLocal({ dir: rig.releases, from: out, owner: OWNER, repo: "nosig" })
            await expectBadSignature("nosig", fw120)
        })

        it("an image signed with another key", async () => {
            const out = outDir()
            pack({ version: "v1.2.0", firmware: fw120, signKey: otherKey, out })
            publishLocal({ dir: rig.releases, from: out, owner: OWNER, repo: "otherkey" })
            await expectBadSignature("otherkey", readFileSync(join(out, FIRMWARE_ASSET)))
        })

        it("a refused asset is not downloaded again at the next checks", async () => {
            const out = outDir()
            pack({ version: "v1.2.0", firmware: fw120, out })
            publishLocal({ dir: rig.releases, from: out, owner: OWNER, repo: "again" })
            const errors: string[] = []
            const storageRequests = () => rig.server.requests.filter(q => q.origin === "storage").length
            let afterFirst = -1
            const run = await rig.run("again", "again.flash", {
                trustedKey: pub,
                allowErrors: true,
                until: s => {
                    if (s.event !== "error") return undefined
                    errors.push(s.error)
                    if (errors.length === 1) afterFirst = storageRequests()
                    return errors.length >= 3 ? { result: "error", error: s.error } : undefined
                },
            })
            assert.match(errors[0], /bad_signature/)
            for (const e of errors.slice(1))
                assert.match(e, /release v1\.2\.0: firmware-esp32s3\.bin was refused \(bad_signature\); not downloaded again, waiting for a newer release/)
            assert.ok(afterFirst > 0)
            assert.equal(storageRequests(), afterFirst, "no storage request after the refusal")
            assertStillOld(run.flashFile)
        })

        it("a signed image tampered with on the storage host (checksum and SHA-256 made consistent)", async () => {
            const signed = signImage(fw120, key)
            const tampered = retouch(signed, 777)
            assert.ok(checkAppImage(tampered).ok, "only the signature can tell")
            assert.equal(verifySignedImage(tampered, keyDigest(pub)).ok, false)
            rig.publish("tampered", "v1.2.0", [{ name: FIRMWARE_ASSET, data: tampered }])
            await expectBadSignature("tampered", tampered)
        })

        it("a damaged signature block (CRC-32 no longer matches)", async () => {
            const signed = signImage(fw120, key)
            signed[Math.ceil(fw120.length / 4096) * 4096 + 900] ^= 1 // inside the signature
            rig.publish("damaged", "v1.2.0", [{ name: FIRMWARE_ASSET, data: signed }])
            await expectBadSignature("damaged", signed)
        })
    })

    describe("refusals at pack time write nothing", () => {
        function expectRefused(o: Omit<Parameters<typeof pack>[0], "out">, pattern: RegExp) {
            const out = outDir()
            assert.throws(() => pack({ ...o, out }), (e: Error) => e instanceof PackError && pattern.test(e.message))
            assert.equal(existsSync(out), false, "nothing written")
        }

        it("firmware whose app descriptor version is not the tag", () =>
            expectRefused({ version: "v1.3.0", firmware: fw120 }, /firmware: app descriptor version is "1\.2\.0", the tag is v1\.3\.0/))
        it("a program built as another version than the tag", () =>
            expectRefused({ version: "v1.2.1", program: buildProgram({ version: "v1.2.0" }) }, /program: bytecode version is "v1\.2\.0", the tag is v1\.2\.1/))
        it("firmware for another chip", () =>
            expectRefused(
                { version: "v1.2.0", firmware: buildAppImage({ version: "1.2.0", payloadSize: 20_000, chipId: CHIP_IDS.esp32c3 }) },
                /image is for esp32c3 \(chip id 5\), expected esp32s3/
            ))
        it("a damaged image (checksum)", () => {
            const bad = Buffer.from(fw120)
            bad[2000] ^= 1
            expectRefused({ version: "v1.2.0", firmware: bad }, /firmware: not an app image: .*checksum mismatch/)
        })
        it("a program that is not bytecode", () =>
            expectRefused({ version: "v1.2.0", program: Buffer.from("<html>not found</html>".padEnd(200)) }, /program: bytecode: bad magic/))
        it("a tag that is not vMAJOR.MINOR.PATCH semver", () => {
            expectRefused({ version: "1.2.0", firmware: fw120 }, /starts with "v"/)
            expectRefused({ version: "v1.2", firmware: fw120 }, /not semver/)
        })
        it("firmware already signed by another key than --sign-key", () =>
            expectRefused({ version: "v1.2.0", firmware: signImage(fw120, otherKey), signKey: key }, /already signed, and the signature does not verify with --sign-key: signed with another key/))
        it("firmware with a signature sector that does not verify, packed without a key", () => {
            const signed = signImage(fw120, key)
            signed[Math.ceil(fw120.length / 4096) * 4096 + 900] ^= 1
            expectRefused({ version: "v1.2.0", firmware: signed }, /has a signature sector that does not verify: signature block 0 is not valid/)
            const retouched = retouch(signImage(fw120, key), 5)
            expectRefused({ version: "v1.2.0", firmware: retouched }, /has a signature sector that does not verify: the signature does not match the image's bytes/)
        })
        it("a tag with build metadata", () => expectRefused({ version: "v1.2.0+b1", firmware: fw120 }, /no build metadata/))
        it("a pre-release program, which the pinned CLI cannot stamp with its tag", () =>
            expectRefused({ version: "v1.2.1-rc.1", program: buildProgram({ version: "v1.2.0" }) }, /a pre-release carries firmware only/))
        it("an --out folder that holds other files", () => {
            const out = outDir()
            mkdirSync(out)
            writeFileSync(join(out, "notes.txt"), "mine")
            assert.throws(() => pack({ version: "v1.2.0", firmware: fw120, out }), /holds other files \(notes\.txt\)/)
            assert.deepEqual(readdirSync(out), ["notes.txt"])
        })
    })

    it("firmware signed before packing (build.sh --signed) and packed without the key: kept, noted as checked against its own key", () => {
        const out = outDir()
        const signed = signImage(fw120, key)
        const m = pack({ version: "v1.2.0", firmware: signed, out })
        assert.deepEqual(readFileSync(join(out, FIRMWARE_ASSET)), signed)
        assert.equal(m.firmware?.signedBy, keyDigest(pub).toString("hex"))
        assert.equal(m.firmware?.signatureUnchecked, true)
        assert.match(readFileSync(join(out, NOTES_FILE), "utf8"), /signed \(Secure Boot v2 RSA-3072, key digest `[0-9a-f]{64}`; packed without the key/)
    })

    describe("hostile inputs (the review's), refused before anything is written", () => {
        it("publish-local: a release.json edited after packing (tag outside --dir, tag variants, pre-release flag, asset names)", () => {
            const releases = join(dir, "releases-hostile")
            const victim = join(dir, "victim")
            mkdirSync(victim)
            writeFileSync(join(victim, "important.txt"), "precious")
            const out = outDir()
            pack({ version: "v1.2.0", firmware: fw120, out })
            publishLocal({ dir: releases, from: out, owner: "o", repo: "r" })
            const manifest = JSON.parse(readFileSync(join(out, MANIFEST_FILE), "utf8"))
            const attempt = (edit: (m: any) => void, pattern: RegExp, owner = "o") => {
                const m = JSON.parse(JSON.stringify(manifest))
                edit(m)
                writeFileSync(join(out, MANIFEST_FILE), JSON.stringify(m))
                assert.throws(() => publishLocal({ dir: releases, from: out, owner, repo: "r" }), (e: Error) => e instanceof PublishError && pattern.test(e.message), JSON.stringify(m))
            }
            attempt(m => (m.tag = "../../../victim"), /release tag starts with "v"|not semver/)
            attempt(m => (m.tag = "v1.2.0/"), /not semver/)
            attempt(m => (m.tag = "./v1.2.0"), /release tag starts with "v"/)
            attempt(m => (m.tag = ""), /release tag starts with "v"/)
            attempt(m => (m.tag = "v1.3.0"), /app descriptor version is "1\.2\.0", the tag is v1\.3\.0/)
            attempt(m => (m.prerelease = true), /"prerelease" is true, the tag v1\.2\.0 says false/)
            attempt(m => (m.assets[0].name = "../fw.bin"), /only firmware-esp32s3\.bin and program\.devs/)
            attempt(m => m.assets.push(m.assets[0]), /once each/)
            attempt(() => {}, /--owner "\.\.\/\.\." is not a GitHub name/, "../..")
            assert.equal(readFileSync(join(victim, "important.txt"), "utf8"), "precious")
            assert.deepEqual(loadRepo(releases, "o", "r")?.releases.map(r => r.tag), ["v1.2.0"], "the first release only, unchanged")
        })

        it("publish-local: a firmware swapped with its hashes updated, SHA256SUMS with extra or repeated lines, a null release.json, another case of the same repository", () => {
            const releases = join(dir, "releases-recheck")
            const out = outDir()
            pack({ version: "v1.2.0", firmware: fw120, signKey: key, out })
            const manifestText = readFileSync(join(out, MANIFEST_FILE), "utf8")
            const sumsText = readFileSync(join(out, SUMS_FILE), "utf8")
            const signedFw = readFileSync(join(out, FIRMWARE_ASSET))
            const refused = (pattern: RegExp, owner = "o", repo = "r") =>
                assert.throws(() => publishLocal({ dir: releases, from: out, owner, repo }), (e: Error) => e instanceof PublishError && pattern.test(e.message))
            // the unsigned image, with release.json and SHA256SUMS made consistent with it
            const m = JSON.parse(manifestText)
            m.assets[0].sha256 = sha(fw120)
            m.assets[0].size = fw120.length
            writeFileSync(join(out, FIRMWARE_ASSET), fw120)
            writeFileSync(join(out, MANIFEST_FILE), JSON.stringify(m))
            writeFileSync(join(out, SUMS_FILE), `${sha(fw120)}  ${FIRMWARE_ASSET}\n`)
            refused(/its signature is not the one release\.json names/)
            writeFileSync(join(out, FIRMWARE_ASSET), signedFw)
            writeFileSync(join(out, MANIFEST_FILE), manifestText)
            writeFileSync(join(out, SUMS_FILE), `${"0".repeat(64)}  ${FIRMWARE_ASSET}\n` + sumsText)
            refused(/firmware-esp32s3\.bin is listed twice/)
            writeFileSync(join(out, SUMS_FILE), sumsText + `${"1".repeat(64)}  ../../evil.bin\n`)
            refused(/one line per asset of release\.json, nothing else/)
            writeFileSync(join(out, SUMS_FILE), sumsText)
            writeFileSync(join(out, MANIFEST_FILE), "null")
            refused(/no tag or no assets/)
            writeFileSync(join(out, MANIFEST_FILE), manifestText)
            assert.equal(existsSync(releases), false, "nothing published")
            publishLocal({ dir: releases, from: out, owner: "Acme", repo: "Fw" })
            refused(/already has a release v1\.2\.0/, "acme", "fw")
            const errors: string[] = []
            writeFileSync(join(dir, "a-file"), "x")
            assert.equal(publishMain(["--dir", join(dir, "a-file", "sub"), "--from", out, "--owner", "o", "--repo", "r"], () => {}, l => errors.push(l)), 1)
            assert.equal(packMain(["--version", "v1.2.0", "--firmware", join(out, FIRMWARE_ASSET), "--out", join(dir, "a-file", "sub")], () => {}, l => errors.push(l)), 1)
            assert.match(errors.join("\n"), /ENOTDIR[^]*nothing published[^]*ENOTDIR[^]*nothing written/)
        })

        it("pack: a program larger than devices take", () => {
            const program = buildProgram({ version: "v1.2.0" })
            const out = outDir()
            assert.throws(() => pack({ version: "v1.2.0", program: Buffer.concat([program, Buffer.alloc(200_000)]), out }), /program: 248\d+ bytes, devices take at most 131072/)
            assert.equal(existsSync(out), false)
        })

        it("pack: never prints key material given in place of a path", () => {
            const pem = rsa3072().privateKey.export({ type: "pkcs8", format: "pem" }) as string
            const der = Buffer.from(pem.split("\n").slice(1, -2).join(""), "base64").toString("base64")
            const fwFile = join(dir, "fw-hostile.bin")
            writeFileSync(fwFile, fw120)
            for (const spec of [pem, der]) {
                const lines: string[] = []
                assert.equal(packMain(["--version", "v1.2.0", "--firmware", fwFile, "--out", outDir(), `--sign-key=${spec}`], l => lines.push(l), l => lines.push(l)), 1)
                assert.match(lines.join("\n"), /looks like key material/)
                assert.ok(!lines.join("\n").includes(der.slice(40, 80)), "no key bytes in the output")
            }
        })

        it("pack: firmware that does not fit the app slot once signed; bytes after the image that are not a signature sector", () => {
            const big = buildAppImage({ version: "1.2.0", payloadSize: 1767 * 1024 })
            assert.equal(checkAppImage(big).ok, true)
            const expectRefused = (o: Omit<Parameters<typeof pack>[0], "out">, pattern: RegExp) => {
                const out = outDir()
                assert.throws(() => pack({ ...o, out }), (e: Error) => e instanceof PackError && pattern.test(e.message))
                assert.equal(existsSync(out), false)
            }
            expectRefused({ version: "v1.2.0", firmware: big, signKey: key }, /bytes with its signature do not fit an app slot of firmware\/partitions\.csv \(1769472 bytes\)/)
            const signed = signImage(fw120, key)
            const sector = signed.length - 4096
            expectRefused({ version: "v1.2.0", firmware: Buffer.concat([signed, Buffer.alloc(100)]) }, /are not 0xFF padding to 4 KB and one 4096-byte signature sector/)
            expectRefused({ version: "v1.2.0", firmware: signed.subarray(0, sector + 1216), signKey: key }, /are not 0xFF padding/)
            const junkPad = Buffer.from(signed)
            junkPad[fw120.length] = 0
            expectRefused({ version: "v1.2.0", firmware: junkPad }, /are not 0xFF padding/)
            expectRefused({ version: "v1.2.0", firmware: Buffer.concat([fw120, Buffer.alloc(10, 0xe7)]), signKey: key }, /are not 0xFF padding/)
            const wrongStored = Buffer.from(signed)
            wrongStored.fill(0, sector + 4, sector + 36)
            wrongStored.writeUInt32LE(zlibCrc32(wrongStored.subarray(sector, sector + 1196)), sector + 1196)
            expectRefused({ version: "v1.2.0", firmware: wrongStored, signKey: key }, /image digest is not the image's SHA-256/)
        })

        it("pack: --out or --sign-key or --firmware that are not what they should be", () => {
            const fwFile = join(dir, "fw-paths.bin")
            writeFileSync(fwFile, fw120)
            const notAFolder = join(dir, "not-a-folder")
            writeFileSync(notAFolder, "x")
            const errors: string[] = []
            const run = (...args: string[]) => packMain(["--version", "v1.2.0", ...args], () => {}, l => errors.push(l))
            assert.equal(run("--firmware", fwFile, "--out", notAFolder), 1)
            assert.equal(run("--firmware", dir, "--out", outDir()), 1)
            assert.equal(run("--firmware", fwFile, "--out", outDir(), "--sign-key", dir), 1)
            const out = outDir()
            mkdirSync(join(out, NOTES_FILE), { recursive: true })
            assert.equal(run("--firmware", fwFile, "--out", out), 1)
            assert.match(errors.join("\n"), /is not a folder[^]*--firmware .*: no such file[^]*--sign-key .*: no such file[^]*RELEASE_NOTES\.md is not a file/)
        })
    })

    describe("the command lines", () => {
        it("release:pack exits 1 on a refusal, 2 on bad usage, and never prints the key", () => {
            const lines: string[] = []
            const secret = "MIIG-not-really-a-key-SECRET-material"
            process.env.OTA_TEST_BAD_KEY = `-----BEGIN PRIVATE KEY-----\n${secret}\n-----END PRIVATE KEY-----\n`
            const fwFile = join(dir, "fw120.bin")
            writeFileSync(fwFile, fw120)
            const out = outDir()
            try {
                assert.equal(packMain(["--version", "v1.2.0", "--firmware", fwFile, "--out", out, "--sign-key", "env:OTA_TEST_BAD_KEY"], l => lines.push(l), l => lines.push(l)), 1)
            } finally {
                delete process.env.OTA_TEST_BAD_KEY
            }
            assert.match(lines.join("\n"), /--sign-key env:OTA_TEST_BAD_KEY: signing key: not a PEM private key; nothing written/)
            assert.ok(!lines.join("\n").includes("SECRET"))
            assert.equal(packMain(["--version", "v1.3.0", "--firmware", fwFile, "--out", out], () => {}, l => lines.push(l)), 1)
            assert.equal(packMain(["--firmware", fwFile], () => {}, () => {}), 2)
            assert.equal(packMain(["--version", "v1.2.0", "--out", out, "--bogus"], () => {}, () => {}), 2)
            assert.equal(existsSync(out), false)
            assert.equal(packMain(["--version", "v1.2.0", "--firmware", fwFile, "--out", out], () => {}, () => {}), 0)
            assert.ok(existsSync(join(out, FIRMWARE_ASSET)))
        })

        it("release:publish-local refuses assets changed after packing, and an existing tag; nothing is published", () => {
            const releases = join(dir, "releases-cli")
            const out = outDir()
            pack({ version: "v1.2.0", firmware: fw120, out })
            const fwPath = join(out, FIRMWARE_ASSET)
            const good = readFileSync(fwPath)
            const changed = Buffer.from(good)
            changed[100] ^= 1
            writeFileSync(fwPath, changed)
            assert.throws(() => publishLocal({ dir: releases, from: out, owner: "o", repo: "r" }), (e: Error) => e instanceof PublishError && /firmware-esp32s3\.bin does not match release\.json and SHA256SUMS/.test(e.message))
            assert.equal(existsSync(releases), false, "nothing published")
            writeFileSync(fwPath, good)
            const errors: string[] = []
            assert.equal(publishMain(["--dir", releases, "--from", out, "--owner", "o", "--repo", "r"], () => {}, l => errors.push(l)), 0)
            assert.deepEqual(loadRepo(releases, "o", "r")?.releases.map(r => [r.tag, r.prerelease, r.assets.map(a => a.name).sort()]), [["v1.2.0", false, [FIRMWARE_ASSET, SUMS_FILE].sort()]])
            assert.equal(publishMain(["--dir", releases, "--from", out, "--owner", "o", "--repo", "r"], () => {}, l => errors.push(l)), 1)
            assert.match(errors.join("\n"), /o\/r already has a release v1\.2\.0/)
            assert.equal(publishMain(["--from", out], () => {}, () => {}), 2)
        })

        it("a pre-release tag is packed and published as a pre-release", () => {
            const releases = join(dir, "releases-rc")
            const out = outDir()
            const m = pack({ version: "v1.4.0-rc.1", firmware: buildAppImage({ version: "1.4.0-rc.1", payloadSize: 20_000 }), out })
            assert.equal(m.prerelease, true)
            publishLocal({ dir: releases, from: out, owner: "o", repo: "r" })
            assert.equal(loadRepo(releases, "o", "r")?.releases[0].prerelease, true)
        })
    })
})
