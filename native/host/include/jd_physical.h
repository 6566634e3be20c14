// Host fake of jacdac-c inc/jd_physical.h (@4999428): the packet layout, exact.
#pragma once
#include "jd_config.h"

#define JD_SERIAL_PAYLOAD_SIZE 236
#define JD_SERIAL_FULL_HEADER_SIZE 16
#define JD_FRAME_FLAG_COMMAND 0x01
#define JD_FRAME_FLAG_ACK_REQUESTED 0x02
#define JD_FRAME_FLAG_IDENTIFIER_IS_SERVICE_CLASS 0x04
#define JD_FRAME_FLAG_BROADCAST 0x04
#define JD_FRAME_FLAG_LOOPBACK 0x40
#define JD_FRAME_FLAG_VNEXT 0x80
#define JD_SERVICE_INDEX_CONTROL 0x00
#define JD_SERVICE_INDEX_MASK 0x3f
#define JD_SERVICE_INDEX_CRC_ACK 0x3f
#define JD_SERVICE_INDEX_MAX_NORMAL 0x30
#define JD_CMD_EVENT_MASK 0x8000
#define JD_CMD_EVENT_CODE_MASK 0xff
#define JD_CMD_EVENT_COUNTER_MASK 0x7f
#define JD_CMD_EVENT_COUNTER_SHIFT 8
#define JD_CMD_EVENT_MK(counter, code)                                                             \
    (JD_CMD_EVENT_MASK | ((((counter)&JD_CMD_EVENT_COUNTER_MASK) << JD_CMD_EVENT_COUNTER_SHIFT)) | \
     (code & JD_CMD_EVENT_CODE_MASK))

typedef void (*cb_t)(void);
typedef int (*intfn_t)(void *);

struct _jd_packet_t {
    uint16_t crc;
    uint8_t _size; // of frame data[]
    uint8_t flags;

    uint64_t device_identifier;

    uint8_t service_size;
    uint8_t service_index;
    uint16_t service_command;

    uint8_t data[0];
} __attribute__((__packed__, aligned(4)));
typedef struct _jd_packet_t jd_packet_t;

struct _jd_frame_t {
    uint16_t crc;
    uint8_t size;
    uint8_t flags;
    uint64_t device_identifier;
    uint8_t data[JD_SERIAL_PAYLOAD_SIZE + 4];
} __attribute__((__packed__, aligned(4)));
typedef struct _jd_frame_t jd_frame_t;
