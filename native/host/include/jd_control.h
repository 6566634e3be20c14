// Host fake of jacdac-c inc/jd_control.h (@4999428) with the codes it takes from
// jacdac/dist/c/_system.h (@96bba5d).
#pragma once
#include "jd_config.h"
#include "jd_physical.h"
#include "jd_service_framework.h"

#define JD_CMD_ANNOUNCE 0x0
#define JD_CMD_GET_REGISTER 0x1000
#define JD_CMD_SET_REGISTER 0x2000
#define JD_CMD_COMMAND_NOT_IMPLEMENTED 0x3

#define JD_GET(reg) (JD_CMD_GET_REGISTER | (reg))
#define JD_SET(reg) (JD_CMD_SET_REGISTER | (reg))
#define JD_IS_GET(cmd) (((cmd) >> 12) == (JD_CMD_GET_REGISTER >> 12))
#define JD_IS_SET(cmd) (((cmd) >> 12) == (JD_CMD_SET_REGISTER >> 12))
#define JD_REG_CODE(cmd) ((cmd)&0xfff)
