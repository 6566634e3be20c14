// native/: the OTA updater C server (native/otaupdater) built for the host with fakes of
// ESP-IDF, FreeRTOS, jacdac-c and the DeviceScript runtime (native/host), under
// AddressSanitizer and UndefinedBehaviorSanitizer. Builds it (`make -C native/host`), runs
// the C unit tests for ESP-IDF 5.0.5, 5.5.5 and 5.0.5 with signed apps, and checks through
// the harness that the C server leaves the flash the simulator reads: its resume record
// decodes with sim/nvs.ts and sim/ota-server.ts, and sim/bootloader.ts boots what it
// installed. With signed apps (firmware/sdkconfig.signed), the harness takes images signed
// by tools/secure-boot.ts (checked with espsecure) and the C tests' signer writes what
// tools/secure-boot.ts verifies, so the C fakes and signer agree with espsecure's format.
import * as assert from "node:assert/strict"
import { spawnSync } from "node:child_process"
import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import {
    OtaUpdaterCmd,
    OtaUpdaterError,
    OtaUpdaterEvent,
    OtaUpdaterLimits,
    OtaUpdaterReg,
    OtaUpdaterTarget,
} from "../.devicescript/ts/constants"

const WRITE_BYTES = OtaUpdaterLimits.WriteBytes
import { buildAppImage, resealImage } from "../tools/esp-image"
import { SECTOR_SIZE, SimFlash } from "../sim/flash"
import { SimNvs } from "../sim/nvs"
import { boot } from "../sim/bootloader"
import { RESUME_SIM_KEY, decodeResumeRecord } from "../sim/ota-server"
import { KEY_BYTES, RSA_BYTES, SIG_BLOCK_BYTES, keyDigest, signatureSectorOffset, signImage, verifySignedImage } from "../tools/secure-boot"
import { NATIVE_HOST_DIR, NativeBackend } from "./conformance/native-backend"

const PARTITIONS_CSV = path.join(__dirname, "..", "firmware", "partitions.csv")
const SANITIZER_REPORT = /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:/
const sanitizerEnv = {
    ...process.env,
    ASAN_OPTIONS: "detect_leaks=1:abort_on_error=1",
    UBSAN_OPTIONS: "print_stacktrace=1:halt_on_error=1",
}


/** What the bootloader (sim/bootloader.ts) boots from the flash file now. */
function bootloader(file: string) {
    const flash = SimFlash.open(file)
    try {
        return boot(flash)
    } finally {
        flash.close()
    }
}

describe("native OTA updater (C, host build with sanitizers)", function () {
    this.timeout(300_000)

    before(function () {
        const make = spawnSync("make", ["-C", NATIVE_HOST_DIR, "--no-print-directory"], { encoding: "utf8" })
        assert.equal(make.status, 0, `make -C native/host failed:\n${make.stdout}${make.stderr}`)
    })

    for (const [variant, bin] of [
        ["ESP-IDF 5.0.5", "otaupdater-unit"],
        ["ESP-IDF 5.5.5", "otaupdater-unit-idf55"],
        ["ESP-IDF 5.0.5, signed apps", "otaupdater-unit-signed"],
    ]) {
        it(`passes its C unit tests (${variant})`, function () {
            const run = spawnSync(path.join(NATIVE_HOST_DIR, "build", bin), [PARTITIONS_CSV], {
                encoding: "utf8",
                env: sanitizerEnv,
                maxBuffer: 64 * 1024 * 1024,
            })
            const out = `${run.stdout}${run.stderr}`
            assert.doesNotMatch(out, SANITIZER_REPORT, out)
            assert.equal(run.signal, null, `killed by ${run.signal}:\n${out}`)
            assert.equal(run.status, 0, out)
            assert.match(run.stdout, /^ok: \d+ tests$/m)
        })
    }

    describe("through the harness, on a flash file made by sim/flash.ts", function () {
        let dir: string
        let backend: NativeBackend

        beforeEach(function () {
            dir = fs.mkdtempSync(path.join(os.tmpdir(), "native-ota-"))
            backend = new NativeBackend()
        })

        afterEach(async function () {
            await backend.shutdown().catch(() => {})
            fs.rmSync(dir, { recursive: true, force: true })
        })

        const v1 = buildAppImage({ version: "1.0.0", payloadSize: 20_000 })
        const v2 = buildAppImage({ version: "2.0.0", payloadSize: 40_000 })
        const sha = createHash("sha256").update(v2).digest()


        const begin = (size: number, flags: number, sha256: Buffer) => {
            const b = Buffer.alloc(8)
            b.writeUInt32LE(size, 0)
            b[4] = OtaUpdaterTarget.Spare
            b[5] = flags
            return Buffer.concat([b, sha256])
        }
        const write = (offset: number, data: Buffer) => {
            const b = Buffer.alloc(4)
            b.writeUInt32LE(offset)
            return Buffer.concat([b, data])
        }

        it("leaves a resume record sim/nvs.ts reads and a slot sim/bootloader.ts boots", async function () {
            const file = path.join(dir, "device.flash")
            SimFlash.createWithImage(file, v1).close()
            const first = bootloader(file)
            assert.equal(first.slot, 0)
            await backend.boot(file, { runningSlot: first.slot })
            assert.equal((await backend.register(OtaUpdaterReg.RunningVersion)).toString(), "1.0.0")

            // half the image, then the power goes before the next data write
            let sent = await backend.command(OtaUpdaterCmd.Begin, begin(v2.length, 1, sha))
            assert.deepEqual(sent.map(s => [s.kind, s.code, s.payload[0]]), [["report", OtaUpdaterCmd.Begin, 0]])
            const half = Math.floor(v2.length / 2 / WRITE_BYTES) * WRITE_BYTES
            for (let o = 0; o < half; o += WRITE_BYTES)
                await backend.command(OtaUpdaterCmd.Write, write(o, v2.subarray(o, o + WRITE_BYTES)))
            backend.armPowerCut(1)
            await backend.command(OtaUpdaterCmd.Write, write(half, v2.subarray(half, half + WRITE_BYTES)))
            assert.equal(backend.powerLost(), true)
            await backend.shutdown()

            // the record, read the simulator's way
            const flash = SimFlash.open(file)
            const rec = decodeResumeRecord(new SimNvs(flash).get(RESUME_SIM_KEY)!)
            flash.close()
            assert.ok(rec, "no resume record the simulator can decode")
            assert.equal(rec.slot, 1)
            assert.equal(rec.imageSize, v2.length)
            assert.equal(rec.nextOffset, Math.floor(half / SECTOR_SIZE) * SECTOR_SIZE)
            assert.deepEqual(rec.sha256, sha)
            assert.deepEqual(rec.prefixSha256, createHash("sha256").update(v2.subarray(0, rec.nextOffset)).digest())
            // the backend answers from the flash file while the device is off
            assert.deepEqual(decodeResumeRecord((await backend.nvsGet("otaupdater/resume"))!), rec)
            await backend.shutdown()

            // resume, finish, commit, reboot into it, confirm
            const second = bootloader(file)
            assert.equal(second.slot, 0)
            await backend.boot(file, { runningSlot: second.slot })
            sent = await backend.command(OtaUpdaterCmd.Begin, begin(v2.length, 1, sha))
            const next = sent[0].payload.readUInt32LE(8)
            assert.equal(next, rec.nextOffset)
            for (let o = next; o < v2.length; o += WRITE_BYTES) {
                const r = await backend.command(OtaUpdaterCmd.Write, write(o, v2.subarray(o, o + WRITE_BYTES)))
                assert.equal(r[0].payload[4], OtaUpdaterError.None)
            }
            sent = await backend.command(OtaUpdaterCmd.Commit, Buffer.alloc(0))
            assert.deepEqual(
                sent.map(s => [s.kind, s.code, [...s.payload]]),
                [
                    ["event", OtaUpdaterEvent.Ready, [1]],
                    ["report", OtaUpdaterCmd.Commit, [0, 1]],
                ],
            )
            assert.equal(await backend.nvsGet("otaupdater/resume"), undefined)
            await backend.command(OtaUpdaterCmd.Reboot, Buffer.alloc(0), 200)
            assert.equal(backend.restartRequested(), true)
            await backend.shutdown()

            const third = bootloader(file)
            assert.deepEqual([third.slot, third.version, third.pendingVerify], [1, "2.0.0", true])
            await backend.boot(file, { runningSlot: third.slot })
            assert.deepEqual([...(await backend.register(OtaUpdaterReg.PendingVerify))], [1])
            sent = await backend.command(OtaUpdaterCmd.Confirm, Buffer.alloc(0))
            assert.deepEqual([...sent[0].payload], [0])
            assert.deepEqual([...(await backend.register(OtaUpdaterReg.PendingVerify))], [0])
            const stats = await backend.stats()
            assert.ok(stats.maxCallUs <= 100_000, `a main-loop call took ${stats.maxCallUs} us`)
            await backend.shutdown()
            assert.equal(bootloader(file).slot, 1)
        })
    })
    describe("signed apps (firmware/sdkconfig.signed), Secure Boot v2 blocks as espsecure writes them", function () {
        const rsa3072 = () => generateKeyPairSync("rsa", { modulusLength: 3072 }).privateKey
        let key: KeyObject
        let otherKey: KeyObject
        let dir: string
        let backend: NativeBackend

        before(function () {
            key = rsa3072()
            otherKey = rsa3072()
        })

        beforeEach(function () {
            dir = fs.mkdtempSync(path.join(os.tmpdir(), "native-ota-signed-"))
            backend = new NativeBackend({ signed: true })
        })

        afterEach(async function () {
            await backend.shutdown().catch(() => {})
            fs.rmSync(dir, { recursive: true, force: true })
        })

        const v1 = buildAppImage({ version: "1.0.0", payloadSize: 20_000 })
        const v2 = buildAppImage({ version: "2.0.0", payloadSize: 40_000 })


        /** A device with `factory` in ota_0 (booted by sim/bootloader.ts), `image` uploaded whole: what commit sent. */
        async function commitOn(factory: Buffer, image: Buffer) {
            const file = path.join(dir, "device.flash")
            SimFlash.createWithImage(file, factory).close()
            const first = bootloader(file)
            assert.equal(first.slot, 0)
            await backend.boot(file, { runningSlot: first.slot })
            const b = Buffer.alloc(8)
            b.writeUInt32LE(image.length, 0)
            b[4] = OtaUpdaterTarget.Spare
            const sha = createHash("sha256").update(image).digest()
            let sent = await backend.command(OtaUpdaterCmd.Begin, Buffer.concat([b, sha]))
            assert.equal(sent[0].payload[0], OtaUpdaterError.None)
            for (let o = 0; o < image.length; o += WRITE_BYTES) {
                const w = Buffer.alloc(4)
                w.writeUInt32LE(o)
                sent = await backend.command(OtaUpdaterCmd.Write, Buffer.concat([w, image.subarray(o, o + WRITE_BYTES)]))
                assert.equal(sent[0].payload[4], OtaUpdaterError.None)
            }
            const commit = await backend.command(OtaUpdaterCmd.Commit, Buffer.alloc(0))
            return { file, commit: commit.map(s => [s.kind, s.code, [...s.payload]]) }
        }

        it("installs a release signed with the running image's key; sim/bootloader.ts boots it", async function () {
            const { file, commit } = await commitOn(signImage(v1, key), signImage(v2, key))
            assert.deepEqual(commit, [
                ["event", OtaUpdaterEvent.Ready, [1]],
                ["report", OtaUpdaterCmd.Commit, [0, 1]],
            ])
            await backend.command(OtaUpdaterCmd.Reboot, Buffer.alloc(0), 200)
            assert.equal(backend.restartRequested(), true)
            await backend.shutdown()
            const next = bootloader(file)
            assert.deepEqual([next.slot, next.version, next.pendingVerify], [1, "2.0.0", true])
        })

        const tampered = () => {
            // one payload byte changed after signing, checksum and appended SHA-256 made right again
            const s = signImage(v2, key)
            s[0x200] ^= 1 // segment 0, after the app descriptor
            return resealImage(s)
        }
        for (const [what, factory, image] of [
            ["an unsigned release", () => signImage(v1, key), () => v2],
            ["a release signed with another key", () => signImage(v1, key), () => signImage(v2, otherKey)],
            ["a release changed after signing", () => signImage(v1, key), tampered],
            ["a signed release on a device whose running image is unsigned", () => v1, () => signImage(v2, key)],
        ] as [string, () => Buffer, () => Buffer][]) {
            it(`bad_signature for ${what}; the running image stays the boot image`, async function () {
                const { file, commit } = await commitOn(factory(), image())
                assert.deepEqual(commit, [
                    ["event", OtaUpdaterEvent.Failed, [OtaUpdaterError.BadSignature]],
                    ["report", OtaUpdaterCmd.Commit, [OtaUpdaterError.BadSignature, 1]],
                ])
                assert.deepEqual([...(await backend.register(OtaUpdaterReg.LastError))], [OtaUpdaterError.BadSignature])
                await backend.shutdown()
                const next = bootloader(file)
                assert.deepEqual([next.slot, next.version], [0, "1.0.0"])
            })
        }

        it("the C tests' signer (test/signer.c) writes what tools/secure-boot.ts verifies, byte for byte but the signature", function () {
            const keyFile = path.join(dir, "key.pem")
            const inFile = path.join(dir, "v2.bin")
            const outFile = path.join(dir, "v2.signed.bin")
            fs.writeFileSync(keyFile, key.export({ type: "pkcs8", format: "pem" }))
            fs.writeFileSync(inFile, v2)
            const run = spawnSync(path.join(NATIVE_HOST_DIR, "build", "otaupdater-unit-signed"), ["--sign", keyFile, inFile, outFile], {
                encoding: "utf8",
                env: sanitizerEnv,
            })
            assert.equal(run.status, 0, `${run.stdout}${run.stderr}`)
            const c = fs.readFileSync(outFile)
            const check = verifySignedImage(c, keyDigest(key))
            assert.ok(check.ok, check.ok ? "" : check.message)
            // PSS signatures are randomized: everything else is the same as tools/secure-boot.ts writes
            const ts = signImage(v2, key)
            assert.equal(c.length, ts.length)
            const at = signatureSectorOffset(ts)!
            const signatureAt = at + 4 + 32 + KEY_BYTES // magic, version, reserved, digest, key: then the signature
            const crcEnd = signatureAt + RSA_BYTES + 4 // and the CRC-32 over all of it
            assert.deepEqual(c.subarray(0, signatureAt), ts.subarray(0, signatureAt))
            assert.deepEqual(c.subarray(crcEnd), ts.subarray(crcEnd))
            assert.equal(c.length - at, 4096)
            assert.ok(c.subarray(at + SIG_BLOCK_BYTES).every(x => x === 0xff))
        })
    })
})
