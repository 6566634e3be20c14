// Host fake of jacdac-c inc/jd_protocol.h (@4999428): the umbrella header a service includes.
#pragma once
#include "jd_config.h"
#include "jd_physical.h"
#include "jd_service_framework.h"
#include "jd_control.h"
#include "jd_util.h"
#include "interfaces/jd_tx.h"
#include "interfaces/jd_hw.h"
#include "interfaces/jd_alloc.h"
void jd_init(void);
