// Host fake of jacdac-c inc/interfaces/jd_alloc.h (@4999428).
#pragma once
#include <stdint.h>
void *jd_alloc(uint32_t size);
void jd_free(void *ptr);
