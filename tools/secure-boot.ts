// Secure Boot v2 signatures of ESP app images (RSA-3072, PSS): sign, read and verify, as
// espsecure `sign_data --version 2` writes them (esptool v4 espsecure/__init__.py,
// generate_rsa_signature_block) and ESP-IDF v5.0.5 checks them in an app built with
// CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT (bootloader_support/src/esp_image_format.c
// verify_secure_boot_signature, secure_boot_v2/secure_boot_signatures_app.c and
// secure_boot_rsa_signature.c). services/otaupdater.md "Signed apps" is the contract.
//
// A signed file is the image (up to its checksum byte and appended SHA-256), padded with
// 0xFF to a multiple of 4096 bytes, then a 4096-byte signature sector: up to 3 blocks of
// 1216 bytes, then 0xFF. A block, little-endian throughout:
//   0    u8 magic 0xE7, u8 version 2 (RSA), 2 bytes 0
//   4    32 bytes SHA-256 of everything before the sector
//   36   the key: 384 bytes n, u32 e, 384 bytes R^2 mod n (R = 2^3072), u32 -1/n mod 2^32
//   812  384 bytes RSA-PSS signature (SHA-256, MGF1 SHA-256, salt 32) of that SHA-256
//   1196 u32 CRC-32 (zlib's, esp_rom_crc32_le(0, ...)) of bytes 0..1195
//   1200 16 bytes 0
import { createHash, createPrivateKey, createPublicKey, KeyObject, sign, verify, constants } from "node:crypto"
import { crc32 } from "node:zlib"
import { inspectImage } from "./esp-image"

export const SECTOR_BYTES = 4096
export const SIG_BLOCK_BYTES = 1216
export const SIG_BLOCK_MAGIC = 0xe7
export const SIG_BLOCK_VERSION_RSA = 2
export const RSA_BYTES = 384 // RSA-3072
const DIGEST_AT = 4
const KEY_AT = 36
export const KEY_BYTES = RSA_BYTES + 4 + RSA_BYTES + 4 // n, e, R^2 mod n, -1/n
const SIGNATURE_AT = KEY_AT + KEY_BYTES
const CRC_AT = SIGNATURE_AT + RSA_BYTES // 1196: the CRC covers the bytes before it
const PSS = { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }

const alignUp = (n: number) => Math.ceil(n / SECTOR_BYTES) * SECTOR_BYTES

/** Loads an RSA-3072 private key (PEM, PKCS#1 or PKCS#8, as espsecure generate_signing_key writes). Throws otherwise. */
export function loadSigningKey(pem: string | Buffer): KeyObject {
    let key: KeyObject
    try {
        key = createPrivateKey(pem)
    } catch (e) {
        throw new Error(`signing key: not a PEM private key (${(e as Error).message})`)
    }
    checkRsa3072(key, "signing key")
    return key
}

/** Loads an RSA-3072 public key (PEM), or the public half of a private key. Throws otherwise. */
export function loadPublicKey(pem: string | Buffer): KeyObject {
    let key: KeyObject
    try {
        key = createPublicKey(pem)
    } catch (e) {
        throw new Error(`public key: not a PEM key (${(e as Error).message})`)
    }
    checkRsa3072(key, "public key")
    return key
}

function checkRsa3072(key: KeyObject, what: string) {
    const bits = key.asymmetricKeyDetails?.modulusLength
    if (key.asymmetricKeyType !== "rsa" || bits !== RSA_BYTES * 8)
        throw new Error(`${what}: Secure Boot v2 RSA needs an RSA-3072 key, this is ${key.asymmetricKeyType ?? "?"}${bits ? `-${bits}` : ""}`)
}

const bigFromBase64url = (s: string) => BigInt("0x" + (Buffer.from(s, "base64url").toString("hex") || "0"))

function bigToLE(n: bigint, bytes: number): Buffer {
    const hex = n.toString(16).padStart(bytes * 2, "0")
    if (hex.length > bytes * 2) throw new RangeError(`number does not fit ${bytes} bytes`)
    return Buffer.from(hex, "hex").reverse()
}

/** x^-1 mod m (extended Euclid); x and m coprime. */
function modInverse(x: bigint, m: bigint): bigint {
    let [a, b, u, v] = [((x % m) + m) % m, m, 1n, 0n]
    while (b) {
        const q = a / b
        ;[a, b] = [b, a - q * b]
        ;[u, v] = [v, u - q * v]
    }
    return ((u % m) + m) % m
}

/**
 * The 776 key bytes of a signature block for `key` (public or private): n, e, R^2 mod n,
 * -1/n mod 2^32, as espsecure _get_sbv2_rsa_primitives computes them.
 */
export function keyBlockBytes(key: KeyObject): Buffer {
    const jwk = (key.type === "private" ? createPublicKey(key) : key).export({ format: "jwk" })
    const n = bigFromBase64url(jwk.n!)
    const e = bigFromBase64url(jwk.e!)
    const rr = (1n << BigInt(RSA_BYTES * 8 * 2)) % n
    const mPrime = (1n << 32n) - modInverse(n, 1n << 32n)
    const out = Buffer.alloc(KEY_BYTES)
    bigToLE(n, RSA_BYTES).copy(out, 0)
    out.writeUInt32LE(Number(e), RSA_BYTES)
    bigToLE(rr, RSA_BYTES).copy(out, RSA_BYTES + 4)
    out.writeUInt32LE(Number(mPrime & 0xffffffffn), 2 * RSA_BYTES + 4)
    return out
}

/** SHA-256 of a key's 776 block bytes: what ESP-IDF compares to trust a key (and what espsecure digest_sbv2_public_key prints). */
export function keyDigest(key: KeyObject): Buffer {
    return createHash("sha256").update(keyBlockBytes(key)).digest()
}

/** Where the signature sector of a signed image starts: its image length rounded up to 4096, or undefined when the layout is unreadable. */
export function signatureSectorOffset(signed: Buffer): number | undefined {
    const len = inspectImage(signed).imageLength
    return len > 0 ? alignUp(len) : undefined
}

/**
 * Signs an unsigned app image: pads it with 0xFF to a multiple of 4096 bytes and appends
 * a signature sector with one RSA-3072 PSS block (espsecure sign_data --version 2).
 * Throws if `image` is not an app image, or already carries a signature sector.
 */
export function signImage(image: Buffer, key: KeyObject): Buffer {
    checkRsa3072(key, "signing key")
    if (key.type !== "private") throw new Error("signing key: a public key cannot sign")
    const info = inspectImage(image)
    if (info.imageLength === 0 || info.errors.length) throw new Error(`cannot sign: not an app image: ${info.errors.join("; ")}`)
    if (image.length > info.imageLength) {
        const tail = image.subarray(info.imageLength)
        const padding = tail.subarray(0, alignUp(info.imageLength) - info.imageLength)
        if (padding.every(b => b === 0xff) && tail[padding.length] === SIG_BLOCK_MAGIC)
            throw new Error("cannot sign: the image already has a signature sector")
        throw new Error(`cannot sign: ${tail.length} bytes follow the image's appended SHA-256`)
    }
    const padded = Buffer.alloc(alignUp(image.length), 0xff)
    image.copy(padded)
    const digest = createHash("sha256").update(padded).digest()
    const signature = sign("sha256", padded, { key, ...PSS })
    const sector = Buffer.alloc(SECTOR_BYTES, 0xff)
    const block = sector.subarray(0, SIG_BLOCK_BYTES)
    block.fill(0)
    block[0] = SIG_BLOCK_MAGIC
    block[1] = SIG_BLOCK_VERSION_RSA
    digest.copy(block, DIGEST_AT)
    keyBlockBytes(key).copy(block, KEY_AT)
    Buffer.from(signature).reverse().copy(block, SIGNATURE_AT)
    block.writeUInt32LE(crc32(block.subarray(0, CRC_AT)), CRC_AT)
    return Buffer.concat([padded, sector])
}

export type SignatureCheck =
    | { ok: true; keyDigest: Buffer }
    | { ok: false; reason: "no_signature" | "invalid_block" | "untrusted_key" | "bad_signature"; message: string }

/**
 * Checks a signed image as an app with CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT does
 * in esp_ota_end: the first signature block after the 4 KB-aligned image end must have
 * the right magic and CRC-32, a key whose digest is `trusted` (the running app's key),
 * and an RSA-PSS signature of the SHA-256 of every byte before the sector (computed
 * here, not read from the block). The image layout itself is checked elsewhere
 * (tools/esp-image.ts checkAppImage).
 */
export function verifySignedImage(signed: Buffer, trusted: Buffer): SignatureCheck {
    const b = firstBlock(signed)
    if (!b) return { ok: false, reason: "no_signature", message: "no signature sector after the image (is it signed?)" }
    if (!blockValid(b.block)) return { ok: false, reason: "invalid_block", message: "signature block 0 is not valid (magic or CRC-32)" }
    const digest = blockKeyDigest(b.block)
    if (!digest.equals(trusted))
        return {
            ok: false,
            reason: "untrusted_key",
            message: `signed with another key (key digest ${digest.toString("hex").slice(0, 16)}..., trusted ${trusted.toString("hex").slice(0, 16)}...)`,
        }
    let good = false
    try {
        const signature = Buffer.from(b.block.subarray(SIGNATURE_AT, CRC_AT)).reverse()
        good = verify("sha256", signed.subarray(0, b.at), { key: publicKeyOfBlock(b.block), ...PSS, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, signature)
    } catch {
        good = false
    }
    if (!good) return { ok: false, reason: "bad_signature", message: "the signature does not match the image's bytes" }
    return { ok: true, keyDigest: digest }
}

/** Block 0 of the signature sector and where the sector starts, or undefined when the file ends before it. */
function firstBlock(signed: Buffer): { at: number; block: Buffer } | undefined {
    const at = signatureSectorOffset(signed)
    if (at === undefined || signed.length < at + SIG_BLOCK_BYTES) return undefined
    return { at, block: signed.subarray(at, at + SIG_BLOCK_BYTES) }
}

/** What makes a block valid for ESP-IDF (validate_signature_block): its magic and CRC-32. */
const blockValid = (block: Buffer) => block[0] === SIG_BLOCK_MAGIC && block.readUInt32LE(CRC_AT) === crc32(block.subarray(0, CRC_AT))
const blockKeyDigest = (block: Buffer) => createHash("sha256").update(block.subarray(KEY_AT, KEY_AT + KEY_BYTES)).digest()

/**
 * The key digest of a signed image's first signature block (whoever made it), or
 * undefined when there is no valid block (magic, CRC-32) after the image.
 */
export function signerKeyDigest(signed: Buffer): Buffer | undefined {
    const b = firstBlock(signed)
    return b && blockValid(b.block) ? blockKeyDigest(b.block) : undefined
}

/**
 * True when block 0's stored image digest is the SHA-256 of the bytes before the
 * signature sector: what espsecure verify_signature also checks (ESP-IDF does not).
 */
export function storedDigestMatches(signed: Buffer): boolean {
    const b = firstBlock(signed)
    return !!b && createHash("sha256").update(signed.subarray(0, b.at)).digest().equals(b.block.subarray(DIGEST_AT, DIGEST_AT + 32))
}

/** The RSA public key whose n and e a signature block carries. */
export function publicKeyOfBlock(block: Buffer): KeyObject {
    const n = Buffer.from(block.subarray(KEY_AT, KEY_AT + RSA_BYTES)).reverse()
    const e = block.readUInt32LE(KEY_AT + RSA_BYTES)
    const eBytes = Buffer.from(e.toString(16).padStart(8, "0"), "hex")
    const strip = (b: Buffer) => b.subarray(b.findIndex(x => x !== 0))
    return createPublicKey({ key: { kty: "RSA", n: strip(n).toString("base64url"), e: strip(eBytes).toString("base64url") }, format: "jwk" })
}
