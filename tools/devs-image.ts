// The header of a DeviceScript bytecode image (.devs), as `devs build` writes it and the
// runtime checks it before running it (runtime/devicescript/devsformat.h, devs_verify in
// verify.c; the CLI's own reader is in @devicescript/compiler, ImageInfo). Layout, all
// little-endian:
//   0  u32 magic0 0x53766544 ("DevS")      4  u32 magic1 0xf1296e0a
//   8  u32 format version (0x02100004 for the pinned 2.16.4 toolchain)
//   12 u16 number of globals                14 u16 number of service specs
//   32 ten section headers {u32 start, u32 length}: functions, function data, float
//      literals, roles, ASCII strings, UTF-8 strings, buffers, string data, service
//      specs, dcfg (the build's configuration: "@name", "@version", ...)
// The dcfg section is DCFG (jacdac-c jd_dcfg.h, the CLI's serializeDcfg): an 88-byte
// header (magic0, magic1, size, u16 count at 12, hashes, a 32-entry jump table), then
// 24-byte entries {key char[16], u16 hash, u16 type | size << 2, u32 value}; a string's
// value is its offset from the section start.

export const DEVS_MAGIC0 = 0x53766544
export const DEVS_MAGIC1 = 0xf1296e0a
export const DEVS_FORMAT_VERSION = 0x02100004
export const DEVS_HEADER_LEN = 32
export const DEVS_SECTIONS = 10
const SECTION_HEADER_LEN = 8
/** sizeof(devs_img_header_t): the header and its section table; devs_verify wants more than this. */
export const DEVS_IMAGE_HEADER_LEN = DEVS_HEADER_LEN + DEVS_SECTIONS * SECTION_HEADER_LEN
const DCFG_SECTION = 9
const DCFG_MAGIC0 = 0x47464344 // "DCFG"
const DCFG_HEADER_LEN = 6 * 4 + 2 * 32
const DCFG_ENTRY_LEN = 24
const DCFG_KEY_LEN = 16
const DCFG_TYPE_BITS = 2
const DCFG_TYPE_STRING = 2

export type BytecodeCheck = { ok: true; version?: string } | { ok: false; message: string }

/** True when `prefix` (the first bytes of an image, any length) can start a bytecode image. */
export function startsLikeBytecode(prefix: Uint8Array): boolean {
    const magic = Buffer.alloc(8)
    magic.writeUInt32LE(DEVS_MAGIC0, 0)
    magic.writeUInt32LE(DEVS_MAGIC1, 4)
    const n = Math.min(8, prefix.length)
    return Buffer.from(prefix.subarray(0, n)).equals(magic.subarray(0, n))
}

/**
 * Checks what the runtime checks of a bytecode image before it runs it, as far as the
 * header goes: magics, format version, every section inside the image. Returns the
 * program's "@version" (from its dcfg section) when it has one.
 */
export function checkBytecode(img: Buffer): BytecodeCheck {
    // devs_verify wants more than the header (verify.c: size > sizeof(devs_img_header_t))
    if (img.length <= DEVS_IMAGE_HEADER_LEN)
        return { ok: false, message: `bytecode: ${img.length} bytes, no longer than its header` }
    if (img.readUInt32LE(0) !== DEVS_MAGIC0 || img.readUInt32LE(4) !== DEVS_MAGIC1)
        return { ok: false, message: "bytecode: bad magic, not a DeviceScript program" }
    const fmt = img.readUInt32LE(8)
    if (fmt >>> 24 !== DEVS_FORMAT_VERSION >>> 24)
        return { ok: false, message: `bytecode: format 0x${fmt.toString(16)}, runtime takes 0x${DEVS_FORMAT_VERSION.toString(16)}` }
    const sections: [number, number][] = []
    for (let i = 0; i < DEVS_SECTIONS; i++) {
        const at = DEVS_HEADER_LEN + i * SECTION_HEADER_LEN
        const start = img.readUInt32LE(at)
        const len = img.readUInt32LE(at + 4)
        if (start + len > img.length) return { ok: false, message: `bytecode: section ${i} ends past the image` }
        sections.push([start, len])
    }
    return { ok: true, version: dcfgString(img, sections[DCFG_SECTION], "@version") }
}

function dcfgString(img: Buffer, [start, len]: [number, number], key: string): string | undefined {
    if (len < DCFG_HEADER_LEN || img.readUInt32LE(start) !== DCFG_MAGIC0) return undefined
    const dcfg = img.subarray(start, start + len)
    const count = dcfg.readUInt16LE(12)
    for (let i = 0; i < count; i++) {
        const e = DCFG_HEADER_LEN + i * DCFG_ENTRY_LEN
        if (e + DCFG_ENTRY_LEN > dcfg.length) return undefined
        let end = dcfg.indexOf(0, e)
        if (end < 0 || end > e + DCFG_KEY_LEN) end = e + DCFG_KEY_LEN
        if (dcfg.toString("latin1", e, end) !== key) continue
        const typeSize = dcfg.readUInt16LE(e + 18)
        if ((typeSize & ((1 << DCFG_TYPE_BITS) - 1)) !== DCFG_TYPE_STRING) return undefined
        const size = typeSize >> DCFG_TYPE_BITS
        const value = dcfg.readUInt32LE(e + 20)
        if (value + size > dcfg.length) return undefined
        return dcfg.toString("utf8", value, value + size)
    }
    return undefined
}
