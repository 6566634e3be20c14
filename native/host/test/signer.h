// The tests' Secure Boot v2 signer: RSA-3072 keys and app images signed exactly as espsecure
// `sign_data --version 2` signs them (tools/secure-boot.ts signImage is the TypeScript twin,
// checked with espsecure; test/native.test.ts checks this one against it). Independent of
// the verifier in src/fake_secure_boot.c: signs over the data with EVP_DigestSign, builds the
// key bytes with its own bignum arithmetic, and uses the table-driven crc32_ref.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#define SIG_SECTOR_BYTES 4096
#define SIG_BLOCK_BYTES 1216
#define SIG_BLOCK_DIGEST_AT 4
#define SIG_BLOCK_KEY_AT 36
#define SIG_BLOCK_KEY_BYTES 776 // n[384], e, R^2 mod n [384], -1/n mod 2^32
#define SIG_BLOCK_SIGNATURE_AT 812
#define SIG_BLOCK_CRC_AT 1196

/** A fresh RSA-3072 key (e = 65537). EVP_PKEY_free when done. */
EVP_PKEY *signer_new_key(void);
/** An RSA-3072 private key from a PEM file (PKCS#1 or PKCS#8), or NULL. */
EVP_PKEY *signer_load_key(const char *pem_path);
/** The 776 key bytes of a signature block for `key`, as espsecure _get_sbv2_rsa_primitives computes them. */
void signer_key_bytes(EVP_PKEY *key, uint8_t out[SIG_BLOCK_KEY_BYTES]);
/** Offset of the signature sector of an image of `image_len` bytes: image_len rounded up to 4096. */
size_t signer_sector_offset(size_t image_len);
/**
 * An unsigned app image (`len` bytes, up to its checksum byte and appended SHA-256) padded
 * with 0xFF to a multiple of 4096, then a 4096-byte signature sector with one block made
 * with `key` (the rest of the sector 0xFF). *out_len: the signed file's size. Caller frees.
 */
uint8_t *sign_image(const uint8_t *img, size_t len, EVP_PKEY *key, size_t *out_len);
/** Recomputes the CRC-32 of the signature block at `block` (after a test changed it). */
void signer_fix_block_crc(uint8_t *block);
