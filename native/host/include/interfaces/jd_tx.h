// Host fake of jacdac-c inc/interfaces/jd_tx.h (@4999428): sending, exact prototypes.
#pragma once
#include "jd_service_framework.h"

int jd_send(unsigned service_num, unsigned service_cmd, const void *data, unsigned service_size);
int jd_respond_u8(jd_packet_t *pkt, uint8_t v);
int jd_respond_u16(jd_packet_t *pkt, uint16_t v);
int jd_respond_u32(jd_packet_t *pkt, uint32_t v);
int jd_respond_empty(jd_packet_t *pkt);
int jd_respond_string(jd_packet_t *pkt, const char *str);
int jd_send_not_implemented(jd_packet_t *pkt);
void jd_send_event_ext(srv_t *srv, uint32_t eventid, const void *data, uint32_t data_bytes);
static inline void jd_send_event(srv_t *srv, uint32_t eventid) {
    jd_send_event_ext(srv, eventid, 0, 0);
}
