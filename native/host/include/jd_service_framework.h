// Host fake of jacdac-c inc/jd_service_framework.h (@4999428): exact macros and prototypes
// of the service framework (register walker in src/fake_jd.c is a port of jd_services.c).
#pragma once
#include "jd_config.h"
#include "jd_physical.h"

#define JD_REG_PADDING 0xff0
#define JD_REG_END 0xff1
#define JD_REG_SERVICE_DISABLED 0xff2
#define _JD_REG_(tp, v) (((tp) << 12) | (v))
#define _JD_REG_I8 0
#define _JD_REG_U8 1
#define _JD_REG_I16 2
#define _JD_REG_U16 3
#define _JD_REG_I32 4
#define _JD_REG_U32 5
#define _JD_REG_BYTE4 6
#define _JD_REG_BYTE8 7
#define _JD_REG_BIT 8
#define _JD_REG_BYTES 9
#define _JD_REG_OPT8 10
#define _JD_REG_OPT16 11
#define _JD_REG_OPT32 12
#define _JD_REG_PTR 13
#define REG_I8(v) _JD_REG_(_JD_REG_I8, (v))
#define REG_U8(v) _JD_REG_(_JD_REG_U8, (v))
#define REG_I16(v) _JD_REG_(_JD_REG_I16, (v))
#define REG_U16(v) _JD_REG_(_JD_REG_U16, (v))
#define REG_I32(v) _JD_REG_(_JD_REG_I32, (v))
#define REG_U32(v) _JD_REG_(_JD_REG_U32, (v))
#define REG_OPT8(v) _JD_REG_(_JD_REG_OPT8, (v))
#define REG_OPT16(v) _JD_REG_(_JD_REG_OPT16, (v))
#define REG_OPT32(v) _JD_REG_(_JD_REG_OPT32, (v))
#define REG_BYTE4(v) _JD_REG_(_JD_REG_BYTE4, (v))
#define REG_BYTE8(v) _JD_REG_(_JD_REG_BYTE8, (v))
#define REG_BIT(v) _JD_REG_(_JD_REG_BIT, (v))
#define REG_BYTES(v, n) _JD_REG_(_JD_REG_BYTES, (v)), n

#define REG_DEFINITION(name, ...) static const uint16_t name[] = {__VA_ARGS__ JD_REG_END};

typedef struct srv_state srv_t;

typedef void (*srv_pkt_cb_t)(srv_t *state, jd_packet_t *pkt);
typedef void (*srv_cb_t)(srv_t *state);

struct _srv_vt {
    uint32_t service_class;
    uint16_t state_size;
    srv_cb_t process;
    srv_pkt_cb_t handle_pkt;
};
typedef struct _srv_vt srv_vt_t;

#define SRV_COMMON                                                                                 \
    const srv_vt_t *vt;                                                                            \
    uint8_t service_index;                                                                         \
    uint8_t srv_flags;
#define REG_SRV_COMMON REG_BYTES(JD_REG_PADDING, JD_PTRSIZE + 2)

struct srv_state_common {
    SRV_COMMON;
};
typedef struct srv_state_common srv_common_t;

srv_t *jd_allocate_service(const srv_vt_t *vt);
int service_handle_register(srv_t *state, jd_packet_t *pkt, const uint16_t sdesc[]);
int service_handle_register_final(srv_t *state, jd_packet_t *pkt, const uint16_t sdesc[]);
int service_handle_string_register(jd_packet_t *pkt, uint16_t reg_code, const char *value);

#define SRV_DEF(id, service_cls)                                                                   \
    static const srv_vt_t id##_vt = {                                                              \
        .service_class = service_cls,                                                              \
        .state_size = sizeof(srv_t),                                                               \
        .process = id##_process,                                                                   \
        .handle_pkt = id##_handle_packet,                                                          \
    }

#define SRV_ALLOC(id)                                                                              \
    srv_t *state = jd_allocate_service(&id##_vt);                                                  \
    (void)state;
