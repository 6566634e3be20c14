// The packaging step of a release, run by .github/workflows/release.yml and by hand:
//   npm run release:pack -- --version vX.Y.Z [--firmware FILE] [--program FILE] --out DIR
//                           [--sign-key FILE | --sign-key env:VAR]
// It checks what a device would check before anything is written: the firmware is an
// ESP32-S3 app image (tools/esp-image.ts: chip, segments, checksum, appended SHA-256)
// whose app descriptor version is the tag, the program is DeviceScript bytecode
// (tools/devs-image.ts) whose "@version" is the tag. With a signing key the firmware gets
// a Secure Boot v2 signature (tools/secure-boot.ts), and an image that is already signed
// must carry that key's signature. Then it writes, into DIR, the assets under the names
// the device's default patterns match (firmware-esp32s3.bin: ASSET_PATTERN "*.bin" and
// "*-esp32s3.bin"; program.devs: PROGRAM_ASSET "*.devs"), SHA256SUMS (sha256sum's
// format), RELEASE_NOTES.md and release.json (what release:publish-local reads; not an
// asset). A refusal writes nothing and exits 1.
import { createHash, type KeyObject } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { parseCommandLine } from "./cli-args"
import { parseSemver } from "../packages/ota/src/semver"
import { checkAppImage, ESP32S3_CHIP_ID, chipName } from "./esp-image"
import { checkBytecode } from "./devs-image"
import { keyDigest, loadSigningKey, SECTOR_BYTES, signatureSectorOffset, signerKeyDigest, signImage, SIG_BLOCK_MAGIC, storedDigestMatches, verifySignedImage } from "./secure-boot"
import { DEFAULT_PARTITIONS_CSV, parsePartitionsCsv } from "../sim/partition-table"
import { OtaUpdaterLimits } from "../.devicescript/ts/constants"

export const FIRMWARE_ASSET = `firmware-${chipName(ESP32S3_CHIP_ID)}.bin`
export const PROGRAM_ASSET = "program.devs"
export const SUMS_FILE = "SHA256SUMS"
export const NOTES_FILE = "RELEASE_NOTES.md"
/** The packed release, as data: what publish-local needs besides the files. */
export const MANIFEST_FILE = "release.json"
const OUT_FILES = [FIRMWARE_ASSET, PROGRAM_ASSET, SUMS_FILE, NOTES_FILE, MANIFEST_FILE]

export interface ReleaseManifest {
    tag: string // "v1.2.0-rc.1"
    prerelease: boolean // the tag has a semver pre-release part
    assets: { name: string; size: number; sha256: string }[]
    // signedBy: key digest, hex; signatureUnchecked: signed before packing, no --sign-key to check the key
    firmware?: { version: string; projectName: string; idfVersion: string; chip: string; signedBy?: string; signatureUnchecked?: boolean }
    program?: { version: string }
}

export interface PackOptions {
    version: string // the tag, "vX.Y.Z[-pre]"
    firmware?: Buffer
    program?: Buffer
    signKey?: KeyObject // RSA-3072 private key
    out: string
}

/** A refusal: the message says what is wrong; nothing was written. */
export class PackError extends Error {
    name = "PackError"
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex")

/** "v1.2.3" and "1.2.3" name the same version; anything else must match exactly. */
function sameVersion(found: string, tag: string) {
    return found.replace(/^v/, "") === tag.replace(/^v/, "")
}

/** The size of the app slots (ota_0) in firmware/partitions.csv, the 4 MB table: what every device can take. */
export function appSlotBytes(): number {
    const slot = parsePartitionsCsv(readFileSync(DEFAULT_PARTITIONS_CSV, "utf8")).find(p => p.label === "ota_0")
    if (!slot) throw new Error(`${DEFAULT_PARTITIONS_CSV} has no ota_0`)
    return slot.size
}

/** Checks the firmware for `tag` and returns the bytes to publish (signed when `key` is given). */
export function checkFirmware(image: Buffer, tag: string, key?: KeyObject): { bytes: Buffer; info: NonNullable<ReleaseManifest["firmware"]> } {
    const check = checkAppImage(image, ESP32S3_CHIP_ID)
    if (!check.ok) throw new PackError(`firmware: ${check.message}`)
    const desc = check.info.appDesc
    if (!desc) throw new PackError("firmware: no app descriptor")
    if (!sameVersion(desc.version, tag))
        throw new PackError(`firmware: app descriptor version is "${desc.version}", the tag is ${tag} (build it with firmware/build.sh --version ${tag})`)
    // after the image: nothing, or 0xFF to the next 4 KB and one 4096-byte signature sector
    const end = check.info.imageLength
    const signed = image.length > end
    if (signed) {
        const sector = signatureSectorOffset(image)!
        if (image.length !== sector + SECTOR_BYTES || !image.subarray(end, sector).every(b => b === 0xff) || image[sector] !== SIG_BLOCK_MAGIC)
            throw new PackError(
                `firmware: the ${image.length - end} bytes after the image are not 0xFF padding to 4 KB and one 4096-byte signature sector (espsecure sign_data --version 2)`
            )
    }
    let bytes = image
    let signedBy: string | undefined
    let unchecked = false // signed, but no key was given to check it against
    if (key) {
        const trusted = keyDigest(key)
        if (!signed) {
            try {
                bytes = signImage(image, key)
            } catch (e) {
                throw new PackError(`firmware: ${(e as Error).message}`)
            }
        }
        const v = verifySignedImage(bytes, trusted)
        if (!v.ok)
            throw new PackError(
                `firmware: ${signed ? "already signed, and the signature does not verify with --sign-key" : "signature check after signing failed"}: ${v.message}`
            )
        signedBy = trusted.toString("hex")
    } else if (signed) {
        // (build.sh --signed output packed without the key: at least it must verify with its own key)
        const own = signerKeyDigest(image)
        const v = own && verifySignedImage(image, own)
        if (!v || !v.ok)
            throw new PackError(`firmware: has a signature sector that does not verify: ${v ? v.message : "signature block 0 is not valid (magic or CRC-32)"}`)
        signedBy = own.toString("hex")
        unchecked = true
    }
    if (signed && !storedDigestMatches(image))
        throw new PackError("firmware: the signature block's image digest is not the image's SHA-256 (espsecure verify_signature would refuse it)")
    const slot = appSlotBytes()
    if (bytes.length > slot)
        throw new PackError(`firmware: ${bytes.length} bytes${signedBy ? " with its signature" : ""} do not fit an app slot of firmware/partitions.csv (${slot} bytes)`)
    return {
        bytes,
        info: { version: desc.version, projectName: desc.projectName, idfVersion: desc.idfVersion, chip: check.info.chipName, signedBy, signatureUnchecked: unchecked || undefined },
    }
}

/** Checks the program (bytecode header, "@version" = tag). */
export function checkProgram(program: Buffer, tag: string): NonNullable<ReleaseManifest["program"]> {
    if (program.length > OtaUpdaterLimits.ProgramBytes)
        throw new PackError(`program: ${program.length} bytes, devices take at most ${OtaUpdaterLimits.ProgramBytes} (the spec's program_bytes)`)
    const check = checkBytecode(program)
    if (!check.ok) throw new PackError(`program: ${check.message}`)
    if (!check.version) throw new PackError(`program: no "@version" in the bytecode (build it in a git work tree or a folder with package.json)`)
    if (!sameVersion(check.version, tag))
        throw new PackError(
            `program: bytecode version is "${check.version}", the tag is ${tag} (` +
                (tag.includes("-")
                    ? "a pre-release carries firmware only: devicescript 2.16.4 stamps a program built at a tag with '-' as the next patch version"
                    : "build it at the tagged commit, with no modified tracked file") +
                ")"
        )
    return { version: check.version }
}

function notes(m: ReleaseManifest): string {
    const lines = [`# ${m.tag}`, ""]
    if (m.prerelease) lines.push("Pre-release: devices on the stable channel (OTA_CHANNEL unset) do not install it.", "")
    lines.push("| asset | bytes | SHA-256 |", "| --- | ---: | --- |")
    for (const a of m.assets) lines.push(`| ${a.name} | ${a.size} | \`${a.sha256}\` |`)
    lines.push("")
    if (m.firmware) {
        const f = m.firmware
        const signature = !f.signedBy
            ? "unsigned."
            : `signed (Secure Boot v2 RSA-3072, key digest \`${f.signedBy}\`${f.signatureUnchecked ? "; packed without the key, so checked only against the key in the block" : ""}).`
        lines.push(`Firmware ${f.version} for ${f.chip} (${f.projectName}, ESP-IDF ${f.idfVersion}), ${signature}`)
    }
    if (m.program) lines.push(`DeviceScript program ${m.program.version}.`)
    return lines.join("\n") + "\n"
}

/** Checks a release tag (vMAJOR.MINOR.PATCH[-pre], no build metadata); returns whether it is a pre-release. Throws PackError. */
export function checkReleaseTag(tag: string): { prerelease: boolean } {
    if (typeof tag !== "string" || !/^v/.test(tag)) throw new PackError(`version ${JSON.stringify(tag)}: a release tag starts with "v" (v1.2.3)`)
    let v: ReturnType<typeof parseSemver>
    try {
        v = parseSemver(tag)
    } catch {
        throw new PackError(`version "${tag}" is not semver (vMAJOR.MINOR.PATCH[-pre])`)
    }
    if (tag.includes("+")) throw new PackError(`version "${tag}": no build metadata (+...) in a release tag (vMAJOR.MINOR.PATCH[-pre]; semver ignores it when comparing)`)
    return { prerelease: v.prerelease.length > 0 }
}

/** Checks everything, then writes the release into `o.out`; throws PackError, writing nothing, on a refusal. */
export function pack(o: PackOptions): ReleaseManifest {
    const tag = o.version
    const { prerelease } = checkReleaseTag(tag)
    if (!o.firmware && !o.program) throw new PackError("nothing to pack: give --firmware and/or --program")
    if (o.signKey && !o.firmware) throw new PackError("--sign-key signs the firmware: give --firmware")
    const m: ReleaseManifest = { tag, prerelease, assets: [] }
    const files: [string, Buffer][] = []
    if (o.firmware) {
        const fw = checkFirmware(o.firmware, tag, o.signKey)
        m.firmware = fw.info
        files.push([FIRMWARE_ASSET, fw.bytes])
    }
    if (o.program) {
        m.program = checkProgram(o.program, tag)
        files.push([PROGRAM_ASSET, o.program])
    }
    if (existsSync(o.out)) {
        if (!statSync(o.out).isDirectory()) throw new PackError(`--out ${o.out} is not a folder`)
        const other = readdirSync(o.out).filter(f => !OUT_FILES.includes(f) && !f.startsWith(".pack-"))
        if (other.length) throw new PackError(`--out ${o.out} holds other files (${other.slice(0, 3).join(", ")}): use an empty folder`)
        const odd = OUT_FILES.filter(f => existsSync(join(o.out, f)) && !statSync(join(o.out, f)).isFile())
        if (odd.length) throw new PackError(`--out ${o.out}: ${odd.join(", ")} is not a file`)
    }
    for (const [name, data] of files) m.assets.push({ name, size: data.length, sha256: sha256(data) })
    // everything checked: write into a scratch folder, then move the files in
    mkdirSync(o.out, { recursive: true })
    const tmp = join(o.out, `.pack-${process.pid}`)
    rmSync(tmp, { recursive: true, force: true })
    mkdirSync(tmp)
    try {
        for (const [name, data] of files) writeFileSync(join(tmp, name), data)
        writeFileSync(join(tmp, SUMS_FILE), m.assets.map(a => `${a.sha256}  ${a.name}\n`).join(""))
        writeFileSync(join(tmp, NOTES_FILE), notes(m))
        writeFileSync(join(tmp, MANIFEST_FILE), JSON.stringify(m, null, 2) + "\n")
        for (const f of OUT_FILES) rmSync(join(o.out, f), { force: true })
        for (const f of readdirSync(tmp)) renameSync(join(tmp, f), join(o.out, f))
    } finally {
        rmSync(tmp, { recursive: true, force: true })
    }
    return m
}

/** `--sign-key FILE` or `--sign-key env:VAR` (the PEM text in an environment variable, e.g. an Actions secret). */
export function readSigningKey(spec: string, env = process.env): KeyObject {
    // never echo what may be the key itself (--sign-key="$(cat key.pem)")
    if (/-----BEGIN|[\r\n]/.test(spec) || spec.length > 200)
        throw new PackError("--sign-key: that looks like key material, not a file or env:VAR; give the file's path or env:VAR")
    let pem: string
    if (spec.startsWith("env:")) {
        const name = spec.slice(4)
        pem = env[name] ?? ""
        if (!pem.trim()) throw new PackError(`--sign-key ${spec}: the environment variable ${name} is not set or empty`)
    } else {
        if (!existsSync(spec) || !statSync(spec).isFile()) throw new PackError(`--sign-key ${spec}: no such file`)
        pem = readFileSync(spec, "utf8")
    }
    try {
        return loadSigningKey(pem)
    } catch (e) {
        // never echo the key material
        const encrypted = /passphrase|encrypted/i.test((e as Error).message) || /ENCRYPTED/.test(pem)
        const why = encrypted
            ? "an encrypted key: give it unencrypted (openssl rsa -in KEY -out PLAIN.pem), kept in a secret store"
            : (e as Error).message.replace(/\(.*\)$/s, "").trim()
        throw new PackError(`--sign-key ${spec}: ${why}`)
    }
}

const USAGE = `usage: npm run release:pack -- --version vX.Y.Z [--firmware FILE] [--program FILE] --out DIR [--sign-key FILE | --sign-key env:VAR]

Checks the firmware (ESP32-S3 app image, app descriptor version = the tag) and the
program (DeviceScript bytecode, "@version" = the tag), signs the firmware with an
RSA-3072 key (Secure Boot v2) when given one, and writes ${FIRMWARE_ASSET}, ${PROGRAM_ASSET},
${SUMS_FILE}, ${NOTES_FILE} and ${MANIFEST_FILE} into DIR. Nothing is written on a refusal.`

/** The command line; returns the exit code (0 packed, 1 refused, 2 usage). */
export function main(argv: string[], log = console.log, error = console.error): number {
    const v = parseCommandLine(argv, { strings: ["version", "firmware", "program", "out", "sign-key"], required: ["version", "out"], usage: USAGE }, log, error)
    if (typeof v === "number") return v
    try {
        const read = (f: string | boolean | undefined, what: string) => {
            if (typeof f !== "string") return undefined
            if (!existsSync(f) || !statSync(f).isFile()) throw new PackError(`--${what} ${f}: no such file`)
            return readFileSync(f)
        }
        const m = pack({
            version: v.version as string,
            firmware: read(v.firmware, "firmware"),
            program: read(v.program, "program"),
            signKey: typeof v["sign-key"] === "string" ? readSigningKey(v["sign-key"]) : undefined,
            out: v.out as string,
        })
        for (const a of m.assets) log(`${a.name}  ${a.size} bytes  sha256 ${a.sha256}`)
        if (m.firmware?.signedBy) log(`firmware signed, key digest ${m.firmware.signedBy}`)
        log(`packed ${m.tag}${m.prerelease ? " (pre-release)" : ""} into ${v.out}`)
        return 0
    } catch (e) {
        // (a file system error, e.g. --out under a file, is a refusal too)
        if (!(e instanceof PackError) && !(e as NodeJS.ErrnoException).code) throw e
        error(`release:pack: ${(e as Error).message}; nothing written`)
        return 1
    }
}

if (require.main === module) process.exitCode = main(process.argv.slice(2))
