// Host fake of jacdac-c inc/jd_util.h (@4999428): assert/panic (JD_VERBOSE_ASSERT form).
#pragma once
#include "jd_config.h"
__attribute__((noreturn)) void jd_assert_fail(const char *expr, const char *file, unsigned line,
                                              const char *funname);
__attribute__((noreturn)) void jd_panic_core(const char *file, unsigned line, const char *funname);
#define JD_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            jd_assert_fail(#cond, __FILE__, __LINE__, __func__);                                   \
        }                                                                                          \
    } while (0)
#define JD_PANIC() jd_panic_core(__FILE__, __LINE__, __func__)
uint32_t jd_hash_fnv1a(const void *data, unsigned len);
