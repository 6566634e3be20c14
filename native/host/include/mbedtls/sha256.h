// Host fake of mbedtls 3.6 include/mbedtls/sha256.h (ESP-IDF v5.5.5 bundles 3.6.x): exact
// prototypes. The context is opaque to callers (on ESP32-S3 it is the hardware port's
// sha256_alt.h); here it wraps OpenSSL's SHA256_CTX (src/fake_mbedtls.c).
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifndef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 0x10100000L // SHA256_Init & co. without deprecation warnings
#endif
#include <openssl/sha.h>

#define MBEDTLS_PRIVATE(member) private_##member
#define MBEDTLS_ERR_SHA256_BAD_INPUT_DATA -0x0074

typedef struct mbedtls_sha256_context {
    SHA256_CTX MBEDTLS_PRIVATE(ossl);
    int MBEDTLS_PRIVATE(is224);
    int MBEDTLS_PRIVATE(started); // fake only: catches update/finish before starts
} mbedtls_sha256_context;

void mbedtls_sha256_init(mbedtls_sha256_context *ctx);
void mbedtls_sha256_free(mbedtls_sha256_context *ctx);
void mbedtls_sha256_clone(mbedtls_sha256_context *dst,
                          const mbedtls_sha256_context *src);
int mbedtls_sha256_starts(mbedtls_sha256_context *ctx, int is224);
int mbedtls_sha256_update(mbedtls_sha256_context *ctx,
                          const unsigned char *input,
                          size_t ilen);
int mbedtls_sha256_finish(mbedtls_sha256_context *ctx,
                          unsigned char *output);
