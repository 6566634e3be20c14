// Host fake of the jacdac-c service framework (@4999428) as a native service sees it:
// jd_allocate_service and the service list, jd_send / jd_send_event_ext (captured instead
// of sent; both panic outside the main task, as on the ESP32 where target_in_irq() is true
// in any other task), the register walker of source/jd_services.c (ported), and
// jd_alloc/jd_free (the device heap, wiped at each simulated boot).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fake.h"
#include "jd_protocol.h"

#define MAX_SENT 4096

static srv_t *g_services[JD_MAX_SERVICES];
static int g_nservices;
static fake_sent_t *g_sent;
static int g_nsent;
static uint8_t g_event_counter;

typedef struct heap_block {
    struct heap_block *next;
    uint64_t pad; // keeps the payload 16-byte aligned
} heap_block_t;
static heap_block_t *g_heap;

void *jd_alloc(uint32_t size) {
    heap_block_t *b = calloc(1, sizeof(heap_block_t) + size);
    if (!b)
        fake_fatal("jd_alloc(%u): out of memory", (unsigned)size);
    b->next = g_heap;
    g_heap = b;
    return b + 1;
}

void jd_free(void *ptr) {
    if (!ptr)
        return;
    heap_block_t *b = (heap_block_t *)ptr - 1;
    for (heap_block_t **p = &g_heap; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            free(b);
            return;
        }
    fake_fatal("jd_free(%p): not allocated by jd_alloc", ptr);
}

void fake_jd_reset(void) {
    while (g_heap) {
        heap_block_t *b = g_heap;
        g_heap = b->next;
        free(b);
    }
    g_nservices = 0;
    memset(g_services, 0, sizeof(g_services));
    g_event_counter = 0;
    fake_jd_sent_clear();
}

srv_t *jd_allocate_service(const srv_vt_t *vt) {
    if (g_nservices >= JD_MAX_SERVICES)
        JD_PANIC();
    srv_common_t *r = jd_alloc(vt->state_size);
    r->vt = vt;
    r->service_index = (uint8_t)g_nservices;
    g_services[g_nservices++] = (srv_t *)r;
    return (srv_t *)r;
}

int fake_jd_service_count(void) {
    return g_nservices;
}

// --- captured packets ------------------------------------------------------------------------------

static void capture(uint8_t kind, unsigned service_index, unsigned code, const void *data, unsigned size) {
    if (!g_sent)
        g_sent = calloc(MAX_SENT, sizeof(fake_sent_t));
    if (g_nsent == MAX_SENT)
        fake_fatal("more than %d packets sent in one step", MAX_SENT);
    fake_sent_t *s = &g_sent[g_nsent++];
    s->kind = kind;
    s->service_index = (uint8_t)service_index;
    s->code = (uint16_t)code;
    s->len = (uint8_t)size;
    if (size)
        memcpy(s->data, data, size);
}

int fake_jd_sent_count(void) {
    return g_nsent;
}

const fake_sent_t *fake_jd_sent(int i) {
    return &g_sent[i];
}

void fake_jd_sent_clear(void) {
    g_nsent = 0;
}

void fake_jd_sent_truncate(int n) {
    if (n < g_nsent)
        g_nsent = n;
}

int jd_send(unsigned service_num, unsigned service_cmd, const void *data, unsigned service_size) {
    fake_alive_check();
    if (target_in_irq())
        fake_fatal("jd_send from a task other than the Jacdac main task (JD_PANIC on the device)");
    if (service_num >> 8 || service_cmd >> 16)
        fake_fatal("jd_send(%u, 0x%x): bad service number or command", service_num, service_cmd);
    if (service_size + 4 > JD_SERIAL_PAYLOAD_SIZE)
        fake_fatal("jd_send: %u-byte payload does not fit a frame (JD_ASSERT on the device)", service_size);
    capture(SENT_REPORT, service_num, service_cmd, data, service_size);
    return 0;
}

void jd_send_event_ext(srv_t *srv, uint32_t eventid, const void *data, uint32_t data_bytes) {
    fake_alive_check();
    if (target_in_irq())
        fake_fatal("jd_send_event_ext from a task other than the Jacdac main task (JD_PANIC on the device)");
    if (eventid >> 8)
        fake_fatal("jd_send_event_ext: event id 0x%x does not fit 8 bits", (unsigned)eventid);
    if (data_bytes + 4 > JD_SERIAL_PAYLOAD_SIZE)
        fake_fatal("jd_send_event_ext: %u-byte payload", (unsigned)data_bytes);
    g_event_counter++;
    // the runtime sends it now and repeats it twice (same counter); captured once
    capture(SENT_EVENT, ((srv_common_t *)srv)->service_index, eventid, data, data_bytes);
}

int jd_respond_u8(jd_packet_t *pkt, uint8_t v) {
    return jd_send(pkt->service_index, pkt->service_command, &v, 1);
}

int jd_respond_u16(jd_packet_t *pkt, uint16_t v) {
    return jd_send(pkt->service_index, pkt->service_command, &v, 2);
}

int jd_respond_u32(jd_packet_t *pkt, uint32_t v) {
    return jd_send(pkt->service_index, pkt->service_command, &v, 4);
}

int jd_respond_empty(jd_packet_t *pkt) {
    return jd_send(pkt->service_index, pkt->service_command, NULL, 0);
}

int jd_respond_string(jd_packet_t *pkt, const char *str) {
    if (!str || !*str)
        return jd_respond_empty(pkt);
    return jd_send(pkt->service_index, pkt->service_command, str, (unsigned)strlen(str));
}

int jd_send_not_implemented(jd_packet_t *pkt) {
    if (pkt->flags & JD_FRAME_FLAG_IDENTIFIER_IS_SERVICE_CLASS)
        return 0;
    uint16_t r[2] = {pkt->service_command, pkt->crc};
    return jd_send(pkt->service_index, JD_CMD_COMMAND_NOT_IMPLEMENTED, r, sizeof(r));
}

// --- register walker (jacdac-c source/jd_services.c, lines 24-150) -------------------------------------

#define REG_IS_SIGNED(r) ((r) <= 4 && !((r)&1))
#define REG_IS_OPT(r) ((r) >= _JD_REG_OPT8)
static const uint8_t regSize[16] = {1, 1, 2, 2, 4, 4, 4, 8, 1, 0, 1, 2, 4, JD_PTRSIZE};

static int is_zero(const uint8_t *p, uint32_t sz) {
    while (sz--)
        if (*p++ != 0x00)
            return 0;
    return 1;
}

int service_handle_string_register(jd_packet_t *pkt, uint16_t reg_code, const char *value) {
    if (pkt->service_command == JD_GET(reg_code)) {
        jd_send(pkt->service_index, pkt->service_command, value, (unsigned)strlen(value));
        return -reg_code;
    }
    return 0;
}

int service_handle_register(srv_t *state, jd_packet_t *pkt, const uint16_t sdesc[]) {
    uint16_t cmd = pkt->service_command;
    bool is_get = JD_IS_GET(cmd);
    bool is_set = JD_IS_SET(cmd);
    if (!is_get && !is_set)
        return 0;
    if (is_set && pkt->service_size == 0)
        return 0;
    int reg = JD_REG_CODE(cmd);
    if (reg >= 0xf00)
        return 0;
    if (is_set && (reg & 0xf00) == 0x100)
        return 0;
    uint32_t offset = 0;
    uint8_t bitoffset = 0;
    for (int i = 0; sdesc[i] != JD_REG_END; ++i) {
        uint16_t sd = sdesc[i];
        int tp = sd >> 12;
        int regsz = regSize[tp];
        if (tp == _JD_REG_BYTES)
            regsz = sdesc[++i];
        if (!regsz)
            JD_PANIC();
        if (tp != _JD_REG_BIT && tp != _JD_REG_BYTES) {
            if (bitoffset) {
                bitoffset = 0;
                offset++;
            }
            int align = regsz < JD_PTRSIZE ? regsz - 1 : JD_PTRSIZE - 1;
            offset = (offset + align) & ~align;
        }
        if ((sd & 0xfff) == reg) {
            uint8_t *sptr = (uint8_t *)state + offset;
            if (is_get) {
                if (tp == _JD_REG_BIT) {
                    uint8_t v = *sptr & (1 << bitoffset) ? 1 : 0;
                    jd_send(pkt->service_index, pkt->service_command, &v, 1);
                } else {
                    if (REG_IS_OPT(tp) && is_zero(sptr, regsz))
                        return 0;
                    jd_send(pkt->service_index, pkt->service_command, sptr, regsz);
                }
                return -reg;
            } else {
                if (tp == _JD_REG_BIT) {
                    if (pkt->data[0])
                        *sptr |= 1 << bitoffset;
                    else
                        *sptr &= ~(1 << bitoffset);
                } else if (regsz <= pkt->service_size) {
                    memcpy(sptr, pkt->data, regsz);
                } else {
                    memcpy(sptr, pkt->data, pkt->service_size);
                    int fill = !REG_IS_SIGNED(tp) ? 0 : (pkt->data[pkt->service_size - 1] & 0x80) ? 0xff : 0;
                    memset(sptr + pkt->service_size, fill, regsz - pkt->service_size);
                }
                return reg;
            }
        }
        if (tp == _JD_REG_BIT) {
            bitoffset++;
            if (bitoffset == 8) {
                offset++;
                bitoffset = 0;
            }
        } else {
            offset += regsz;
        }
    }
    return 0;
}

int service_handle_register_final(srv_t *state, jd_packet_t *pkt, const uint16_t sdesc[]) {
    int r = service_handle_register(state, pkt, sdesc);
    if (r == 0)
        jd_send_not_implemented(pkt);
    return r;
}

// --- delivering packets, running services ------------------------------------------------------------------

void fake_jd_deliver(unsigned service_index, uint16_t cmd, const void *payload, unsigned len) {
    if (len > JD_SERIAL_PAYLOAD_SIZE)
        fake_fatal("command payload of %u bytes does not fit a Jacdac packet", len);
    if ((int)service_index >= g_nservices)
        fake_fatal("no service %u", service_index);
    // a packet as jacdac-c hands it over: 4-byte aligned, its data after a 16-byte header
    union {
        jd_frame_t frame;
        uint32_t align;
    } u;
    memset(&u, 0, sizeof(u));
    jd_packet_t *pkt = (jd_packet_t *)&u.frame;
    pkt->flags = JD_FRAME_FLAG_COMMAND;
    pkt->device_identifier = 0x5e6d0e0a7a5e0001ull;
    pkt->_size = (uint8_t)((len + 4 + 3) & ~3u);
    pkt->service_size = (uint8_t)len;
    pkt->service_index = (uint8_t)service_index;
    pkt->service_command = cmd;
    if (len)
        memcpy(pkt->data, payload, len);
    srv_t *s = g_services[service_index];
    ((srv_common_t *)s)->vt->handle_pkt(s, pkt);
}

void fake_jd_process(void) {
    for (int i = 0; i < g_nservices; i++) {
        srv_t *s = g_services[i];
        ((srv_common_t *)s)->vt->process(s);
    }
}
