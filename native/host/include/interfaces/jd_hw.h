// Host fake of jacdac-c inc/interfaces/jd_hw.h (@4999428): the bits a service may use.
#pragma once
#include "jd_config.h"
extern uint32_t now;
uint64_t tim_get_micros(void);
__attribute((noreturn)) void hw_panic(void);
int target_in_irq(void);
