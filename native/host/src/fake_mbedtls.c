// Host fake of mbedtls 3.6 SHA-256 (include/mbedtls/sha256.h prototypes) on OpenSSL's
// libcrypto. Catches use before mbedtls_sha256_starts and use after free.
#include <string.h>
#include "fake.h"
#include "mbedtls/sha256.h"

#define STARTED 0x5a5a

void mbedtls_sha256_init(mbedtls_sha256_context *ctx) {
    memset(ctx, 0, sizeof(*ctx));
}

void mbedtls_sha256_free(mbedtls_sha256_context *ctx) {
    if (ctx)
        memset(ctx, 0, sizeof(*ctx));
}

void mbedtls_sha256_clone(mbedtls_sha256_context *dst, const mbedtls_sha256_context *src) {
    *dst = *src;
}

int mbedtls_sha256_starts(mbedtls_sha256_context *ctx, int is224) {
    if (is224)
        fake_fatal("mbedtls_sha256_starts: SHA-224 is not used here");
    SHA256_Init(&ctx->private_ossl);
    ctx->private_is224 = 0;
    ctx->private_started = STARTED;
    return 0;
}

int mbedtls_sha256_update(mbedtls_sha256_context *ctx, const unsigned char *input, size_t ilen) {
    if (ctx->private_started != STARTED)
        fake_fatal("mbedtls_sha256_update before mbedtls_sha256_starts (or after free)");
    if (ilen)
        SHA256_Update(&ctx->private_ossl, input, ilen);
    return 0;
}

int mbedtls_sha256_finish(mbedtls_sha256_context *ctx, unsigned char *output) {
    if (ctx->private_started != STARTED)
        fake_fatal("mbedtls_sha256_finish before mbedtls_sha256_starts (or after free)");
    SHA256_Final(output, &ctx->private_ossl);
    ctx->private_started = 0; // finished: a second finish is a bug
    return 0;
}
