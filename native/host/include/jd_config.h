// Host fake of jacdac-c inc/jd_config.h (@4999428, the commit devicescript-esp32 pins):
// the settings a 64-bit host build gets.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define JD_64 1
#define JD_PTRSIZE 8
#define JD_VERBOSE_ASSERT 1
#define JD_MAX_SERVICES 32
#define JD_NOLOG(...) ((void)0)
#define STATIC_ASSERT(e) _Static_assert(e, #e)
