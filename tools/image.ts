// CLI for ESP app images: build test images and inspect/validate .bin files.
//   tsx tools/image.ts build --version 1.2.3 --size 300000 [--chip esp32s3|<id>] [--project NAME]
//                            [--seed N] [--secure-version N] [--idf vX.Y] [--no-hash] --out FILE
//   tsx tools/image.ts inspect FILE [--json] [--chip esp32s3|<id>]
// inspect exits 0 only for a valid app image for the expected chip, 1 for an invalid image,
// 2 for usage or file errors.
import { readFileSync, writeFileSync } from "node:fs"
import {
    ESP32S3_CHIP_ID,
    ImageCheck,
    ImageInfo,
    buildAppImage,
    checkAppImage,
    chipName,
    parseChip,
} from "./esp-image"

const USAGE = `usage:
  image build --version 1.2.3 --size 300000 [--chip esp32s3|<id>] [--project NAME] [--seed N]
              [--secure-version N] [--idf vX.Y.Z] [--no-hash] --out FILE
  image inspect FILE [--json] [--chip esp32s3|<id>]`

class UsageError extends Error {}

const BOOLEAN_FLAGS = new Set(["json", "no-hash"])

interface Args {
    positional: string[]
    flags: Map<string, string>
}

function parseArgs(argv: string[], allowed: string[]): Args {
    const positional: string[] = []
    const flags = new Map<string, string>()
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i]
        if (!a.startsWith("--")) {
            positional.push(a)
            continue
        }
        const eq = a.indexOf("=")
        const name = a.slice(2, eq < 0 ? undefined : eq)
        if (!allowed.includes(name)) throw new UsageError(`unknown option --${name}`)
        if (BOOLEAN_FLAGS.has(name)) flags.set(name, "true")
        else if (eq >= 0) flags.set(name, a.slice(eq + 1))
        else if (i + 1 < argv.length) flags.set(name, argv[++i])
        else throw new UsageError(`--${name} needs a value`)
    }
    return { positional, flags }
}

function intFlag(args: Args, name: string): number | undefined {
    const v = args.flags.get(name)
    if (v === undefined) return undefined
    const n = Number(v)
    if (!/^(0x[0-9a-f]+|\d+)$/i.test(v) || !Number.isSafeInteger(n)) throw new UsageError(`--${name} must be a non-negative integer, got "${v}"`)
    return n
}

function chipFlag(args: Args): number {
    const v = args.flags.get("chip")
    if (v === undefined) return ESP32S3_CHIP_ID
    const id = parseChip(v)
    if (id === undefined) throw new UsageError(`unknown chip "${v}"`)
    return id
}

function build(argv: string[]): number {
    const args = parseArgs(argv, ["version", "size", "chip", "project", "seed", "secure-version", "idf", "no-hash", "out"])
    const version = args.flags.get("version")
    const size = intFlag(args, "size")
    const out = args.flags.get("out")
    if (version === undefined || size === undefined || out === undefined)
        throw new UsageError("build needs --version, --size and --out")
    if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`)
    const chipId = chipFlag(args)
    let img: Buffer
    try {
        img = buildAppImage({
            version,
            payloadSize: size,
            chipId,
            projectName: args.flags.get("project"),
            seed: intFlag(args, "seed"),
            secureVersion: intFlag(args, "secure-version"),
            idfVersion: args.flags.get("idf"),
            hashAppended: !args.flags.has("no-hash"),
        })
    } catch (e) {
        throw new UsageError((e as Error).message)
    }
    try {
        writeFileSync(out, img)
    } catch (e) {
        console.error(`error: cannot write ${out}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
        return 2
    }
    console.log(`wrote ${out}: ${img.length} bytes, version ${version}, chip ${chipName(chipId)}`)
    return 0
}

const hex = (n: number, width = 8) => "0x" + n.toString(16).padStart(width, "0")
const rev = (full: number) => `v${Math.floor(full / 100)}.${full % 100}`
const validity = (ok: boolean) => (ok ? "valid" : "INVALID")
const SPI_MODES = ["QIO", "QOUT", "DIO", "DOUT", "FAST_READ", "SLOW_READ"] // esp_image_spi_mode_t

function printInfo(file: string, size: number, info: ImageInfo, check: ImageCheck, expected: number) {
    const out: string[] = []
    out.push(`file:      ${file} (${size} bytes)`)
    if (size >= 24) {
        out.push(`chip:      ${info.chipName} (id ${info.chipId}), chip rev ${rev(info.minRevFull)}..${rev(info.maxRevFull)}`)
        out.push(`entry:     ${hex(info.entry)}`)
        const mode = SPI_MODES[info.spiMode] ?? `unknown (${info.spiMode})`
        const flashMB = 1 << (info.spiSpeedSize >> 4)
        out.push(`flash:     ${mode}, ${flashMB}MB, speed code ${hex(info.spiSpeedSize & 0xf, 1)}`)
    }
    out.push(`segments:  ${info.segments.length} of ${info.segmentCount}`)
    if (info.segments.length) {
        out.push("  seg  load addr   file offs   length      region")
        for (const s of info.segments)
            out.push(`  ${String(s.index).padStart(3)}  ${hex(s.loadAddress)}  ${hex(s.fileOffset)}  ${hex(s.length)}  ${s.region}`)
        out.push("  (file offs = start of segment data; the 8-byte segment header precedes it)")
    }
    const c = info.checksum
    out.push(c ? `checksum:  stored ${hex(c.stored, 2)}, computed ${hex(c.computed, 2)} (${validity(c.valid)})` : "checksum:  -")
    if (info.sha256) {
        out.push(`sha256:    stored   ${info.sha256.stored}`)
        out.push(`           computed ${info.sha256.computed} (${validity(info.sha256.valid)})`)
    } else out.push(`sha256:    ${info.hashAppended ? "-" : "not appended"}`)
    if (info.imageLength) out.push(`length:    ${info.imageLength} bytes (+${size - info.imageLength} trailing)`)
    const d = info.appDesc
    if (d) {
        out.push("app:")
        out.push(`  version:        ${d.version}`)
        out.push(`  project:        ${d.projectName}`)
        out.push(`  time:           ${d.time}`)
        out.push(`  date:           ${d.date}`)
        out.push(`  idf:            ${d.idfVersion}`)
        out.push(`  secure_version: ${d.secureVersion}`)
        out.push(`  elf sha256:     ${d.elfSha256}`)
    }
    if (check.ok) out.push(`valid app image for ${chipName(expected)}`)
    else if (check.code === "wrong_chip") out.push(`wrong chip: ${check.message}`)
    else {
        out.push(`not a valid app image for ${chipName(expected)}:`)
        for (const e of info.errors) out.push(`  - ${e}`)
    }
    console.log(out.join("\n"))
}

function inspect(argv: string[]): number {
    const args = parseArgs(argv, ["json", "chip"])
    if (args.positional.length !== 1) throw new UsageError("inspect needs exactly one FILE")
    const file = args.positional[0]
    const expected = chipFlag(args)
    let buf: Buffer
    try {
        buf = readFileSync(file)
    } catch (e) {
        console.error(`error: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
        return 2
    }
    const check = checkAppImage(buf, expected)
    if (args.flags.has("json")) {
        const result = check.ok
            ? { ok: true }
            : { ok: false, code: check.code, message: check.message }
        console.log(JSON.stringify({ file, size: buf.length, expectedChip: chipName(expected), ...check.info, result }, null, 2))
    } else printInfo(file, buf.length, check.info, check, expected)
    return check.ok ? 0 : 1
}

export function main(argv: string[]): number {
    const [cmd, ...rest] = argv
    try {
        if (cmd === "build") return build(rest)
        if (cmd === "inspect") return inspect(rest)
        if (cmd === undefined || cmd === "help" || cmd === "--help") {
            console.log(USAGE)
            return cmd === undefined ? 2 : 0
        }
        throw new UsageError(`unknown command "${cmd}"`)
    } catch (e) {
        if (!(e instanceof UsageError)) throw e
        console.error(`error: ${e.message}\n${USAGE}`)
        return 2
    }
}

if (require.main === module) process.exitCode = main(process.argv.slice(2))
