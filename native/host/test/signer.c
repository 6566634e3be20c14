// The tests' Secure Boot v2 signer: see signer.h.
#include <stdlib.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include "signer.h"
#include "support.h"

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

EVP_PKEY *signer_new_key(void) {
    EVP_PKEY *k = EVP_RSA_gen(3072);
    CHECK(k, "EVP_RSA_gen(3072)");
    return k;
}

EVP_PKEY *signer_load_key(const char *pem_path) {
    FILE *f = fopen(pem_path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (k && (EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA || EVP_PKEY_get_bits(k) != 3072)) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

void signer_key_bytes(EVP_PKEY *key, uint8_t out[SIG_BLOCK_KEY_BYTES]) {
    BIGNUM *n = NULL, *e = NULL;
    CHECK(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) == 1);
    CHECK(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) == 1);
    BN_CTX *ctx = BN_CTX_new();
    // R^2 mod n with R = 2^3072
    BIGNUM *r2 = BN_new(), *rr = BN_new();
    CHECK(BN_set_bit(r2, 2 * 3072) && BN_mod(rr, r2, n, ctx));
    // -1/n mod 2^32
    BIGNUM *m = BN_new(), *inv = BN_new();
    CHECK(BN_set_bit(m, 32) && BN_mod_inverse(inv, n, m, ctx));
    uint32_t mdash = (uint32_t)(0u - (uint32_t)BN_get_word(inv));
    CHECK(BN_bn2lebinpad(n, out, 384) == 384);
    put32(out + 384, (uint32_t)BN_get_word(e));
    CHECK(BN_bn2lebinpad(rr, out + 388, 384) == 384);
    put32(out + 772, mdash);
    BN_free(n), BN_free(e), BN_free(r2), BN_free(rr), BN_free(m), BN_free(inv);
    BN_CTX_free(ctx);
}

size_t signer_sector_offset(size_t image_len) {
    return (image_len + SIG_SECTOR_BYTES - 1) / SIG_SECTOR_BYTES * SIG_SECTOR_BYTES;
}

void signer_fix_block_crc(uint8_t *block) {
    put32(block + SIG_BLOCK_CRC_AT, crc32_ref(block, SIG_BLOCK_CRC_AT));
}

uint8_t *sign_image(const uint8_t *img, size_t len, EVP_PKEY *key, size_t *out_len) {
    size_t at = signer_sector_offset(len);
    size_t total = at + SIG_SECTOR_BYTES;
    uint8_t *out = malloc(total);
    memset(out, 0xff, total);
    memcpy(out, img, len);
    // RSA-PSS (SHA-256, MGF1 SHA-256, salt 32) over the padded image
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    uint8_t sig[384];
    size_t siglen = sizeof(sig);
    CHECK(EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key) == 1);
    CHECK(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1);
    CHECK(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1);
    CHECK(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1);
    CHECK(EVP_DigestSign(md, sig, &siglen, out, at) == 1 && siglen == 384);
    EVP_MD_CTX_free(md);
    uint8_t *b = out + at;
    memset(b, 0, SIG_BLOCK_BYTES);
    b[0] = 0xE7; // magic
    b[1] = 0x02; // version: RSA
    sha256(out, at, b + SIG_BLOCK_DIGEST_AT);
    signer_key_bytes(key, b + SIG_BLOCK_KEY_AT);
    for (int i = 0; i < 384; i++)
        b[SIG_BLOCK_SIGNATURE_AT + i] = sig[383 - i];
    signer_fix_block_crc(b);
    *out_len = total;
    return out;
}
