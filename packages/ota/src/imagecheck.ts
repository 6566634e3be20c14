// Checks of an asset made while its bytes stream by, before anything is committed: the
// firmware's app descriptor, or the program's bytecode header and "@version", must name
// the release tag. A release whose asset is another version would reinstall forever (or
// install an older one).
import { compareSemver, parseSemver } from "./semver"

/** A release that cannot be installed as published: retried at the next scheduled check. */
export class ReleaseError extends Error {
    constructor(message: string) {
        super(message)
        this.name = "ReleaseError"
    }
}

export function checkTag(tag: string) {
    try {
        parseSemver(tag)
    } catch {
        throw new ReleaseError(`release tag '${tag}' is not a semver version: tag releases like v1.2.3`)
    }
}

// esp_app_desc_t.version: 32 bytes at image offset 48 (24-byte image header, 8-byte
// segment header, then magic, secure_version and two reserved words), ESP-IDF
// components/esp_app_format/include/esp_app_desc.h
const VERSION_AT = 48
const VERSION_LEN = 32
const versionBytes = Buffer.alloc(VERSION_LEN)

/**
 * Checks, as the first bytes of an image go by, that its app descriptor's version is
 * the release tag: a release whose asset is another version would reinstall forever
 * (or install an older image). Throws ReleaseError.
 */
export class DescriptorCheck {
    private done = false
    constructor(private tag: string) {}

    see(offset: number, data: Buffer, from: number, to: number) {
        if (this.done) return
        if (offset === 0 && to > from && data[from] !== 0xe9)
            throw new ReleaseError(`release ${this.tag}: the asset is not an ESP app image (first byte ${data[from]})`)
        if (offset > VERSION_AT) {
            this.done = true // a resumed update: checked when its start went by
            return
        }
        copyRange(versionBytes, 0, VERSION_AT, VERSION_LEN, offset, data, from, to)
        if (offset + (to - from) < VERSION_AT + VERSION_LEN) return
        this.done = true
        let end = versionBytes.indexOf(0)
        if (end < 0) end = VERSION_LEN
        const version = versionBytes.slice(0, end).toString()
        if (!sameVersion(version, this.tag))
            throw new ReleaseError(`release ${this.tag}: the image's app descriptor says version '${version}'`)
    }
}

// DeviceScript bytecode (tools/devs-image.ts has the layout): magic0 "DevS", magic1, then
// ten {start, length} section headers from byte 32; the last is the dcfg section with the
// build's "@version". DCFG: u16 entry count at 12, 24-byte entries from byte 88, each
// {key char[16], u16 hash, u16 type | size << 2, u32 value}; type 2 is a string whose
// value is its offset in the section, after the entries. Read in one pass as the bytes
// go by, with 104 bytes of buffers allocated at start-up: the heap has no room to spare.
const DEVS_MAGIC_HEX = "446576530a6e29f1"
const DCFG_HEADER_AT = 32 + 9 * 8
const DCFG_MAX = 1024 // a build's dcfg is a few hundred bytes; read byte by byte, so bounded
const DCFG_ENTRIES_AT = 88
const DCFG_ENTRY = 24
const VERSION_MAX = 64
const hdr = Buffer.alloc(16) // image bytes [0, 8) and the dcfg section header [104, 112)
const entry = Buffer.alloc(DCFG_ENTRY)
const ver = Buffer.alloc(VERSION_MAX)

/**
 * Checks a DeviceScript program asset as it goes by: the bytecode magic, and that the
 * "@version" its build recorded (`devs build` takes it from the git tag) is the release
 * tag. The whole asset must go by from byte 0: the version sits in the last section, so
 * a resumed download could not be checked (program updates are not resumed; they are
 * small). Throws ReleaseError.
 */
export class ProgramCheck {
    private started = false
    private dcfgAt = 0
    private dcfgLen = 0
    private count = 0
    private verAt = -1 // offset of the version string in the dcfg section, -1: not found yet
    private verLen = 0

    constructor(private tag: string, private size: number) {}

    see(offset: number, data: Buffer, from: number, to: number) {
        if (!this.started) {
            this.started = true
            if (offset > 0) throw new ReleaseError(`release ${this.tag}: a program is checked from its first byte, not from ${offset}`)
        }
        const end = offset + (to - from)
        copyRange(hdr, 0, 0, 8, offset, data, from, to)
        copyRange(hdr, 8, DCFG_HEADER_AT, 8, offset, data, from, to)
        if (offset < 8 && end >= 8 && hdr.slice(0, 8).toString("hex") !== DEVS_MAGIC_HEX)
            throw new ReleaseError(`release ${this.tag}: the program asset is not DeviceScript bytecode`)
        if (offset < DCFG_HEADER_AT + 8 && end >= DCFG_HEADER_AT + 8) {
            this.dcfgAt = hdr.getAt(8, "u32")
            this.dcfgLen = hdr.getAt(12, "u32")
            if (this.dcfgLen > DCFG_MAX || this.dcfgAt + this.dcfgLen > this.size || this.dcfgLen < DCFG_ENTRIES_AT)
                throw new ReleaseError(`release ${this.tag}: the program asset has no readable build configuration`)
        }
        if (!this.dcfgLen) return
        // the part of this piece inside the dcfg section, byte by byte (a few hundred in all)
        const a = Math.max(offset, this.dcfgAt)
        const b = Math.min(end, this.dcfgAt + this.dcfgLen)
        for (let i = a; i < b; i++) this.dcfgByte(i - this.dcfgAt, data[from + (i - offset)])
        if (offset < this.dcfgAt + this.dcfgLen && end >= this.dcfgAt + this.dcfgLen) {
            const version = this.verAt >= 0 ? ver.slice(0, this.verLen).toString() : "(none)"
            if (!sameVersion(version, this.tag)) throw new ReleaseError(`release ${this.tag}: the program asset was built as version '${version}'`)
        }
    }

    // byte `rel` of the dcfg section
    private dcfgByte(rel: number, v: number) {
        if (rel === 12) this.count = v
        else if (rel === 13) this.count += v << 8
        const e = rel - DCFG_ENTRIES_AT
        if (e >= 0 && e < this.count * DCFG_ENTRY) {
            entry[e % DCFG_ENTRY] = v
            if (e % DCFG_ENTRY === DCFG_ENTRY - 1 && this.verAt < 0) this.entryDone()
        }
        if (this.verAt >= 0 && rel >= this.verAt && rel < this.verAt + this.verLen) ver[rel - this.verAt] = v
    }

    private entryDone() {
        if (entry.slice(0, 8).toString() !== "@version" || entry[8] !== 0) return
        const typeSize = entry.getAt(18, "u16")
        const size = typeSize >> 2
        if ((typeSize & 3) !== 2 || size > VERSION_MAX) return
        this.verAt = entry.getAt(20, "u32")
        this.verLen = size
    }
}

// Copies the image bytes [at, at + len) that data[from, to) holds (it holds the image
// bytes from `offset` on) into dst, from dst[dstAt].
function copyRange(dst: Buffer, dstAt: number, at: number, len: number, offset: number, data: Buffer, from: number, to: number) {
    const a = Math.max(at, offset)
    const b = Math.min(at + len, offset + (to - from))
    if (b > a) dst.blitAt(dstAt + (a - at), data, from + (a - offset), b - a)
}

// `version` is the same semver as `tag` (a version that is not semver is not)
function sameVersion(version: string, tag: string) {
    try {
        return compareSemver(version, tag) === 0
    } catch {
        return false
    }
}
