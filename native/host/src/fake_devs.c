// Host fake of the DeviceScript runtime's program store and verifier
// (runtime/devicescript/devsmgr.c and verify.c @c4e2186, as devicescript-esp32 pins it):
//
// devsmgr_deploy_start(sz): -1 unless sz is a multiple of 32; stops the program; the store is
//   prepared for 128 + sz bytes (the runtime erases that many pages of fstor here, in one
//   call: charged to the runtime's own account, not to the service); the header's magic0 and
//   size are written.
// devsmgr_deploy_write(buf, n): -1 (and the deploy is abandoned) unless n is a multiple of
//   32, below 4096, and within the size; NULL finishes: -1 unless every byte came, else the
//   header's magic1 and FNV-1a hash are written and the program restarts.
// The store is the `fstor` partition of the flash file, holding only the program:
//   devsmgr_program_header_t {magic0, size, magic1, hash, reserved[28]} then the image.
//   (The real fstor is jacdac-c's key/value store with the program as entry "*prog"; the
//   header and image bytes are the same.) A power cut during the copy leaves a header with
//   no magic1: no program, as on the device (it then runs its empty program).
//
// devs_verify(img, size): the runtime asserts a 4-byte aligned image longer than its 112-byte
//   header (a panic otherwise, so a fatal error here); then the checks of
//   tools/devs-image.ts checkBytecode: magics, format major version 2, sections inside.
#include <stdlib.h>
#include <string.h>
#include "fake.h"
#include "devicescript.h"

#define PROG_MAGIC0 0x8d8abd53u
#define PROG_MAGIC1 0xb27c4b2bu
#define HEADER 128
#define ALIGN 32
#define PAGE 4096

static uint32_t g_write_offset; // 0: no deploy under way
static uint32_t g_size;
static int g_restarts; // kept across simulated boots: what the harness reports
static unsigned g_pieces, g_max_piece, g_starts;

static const esp_partition_t *store(void) {
    const esp_partition_t *p = fake_partition_by_label("fstor");
    if (!p)
        fake_fatal("devsmgr fake: no fstor partition");
    return p;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

void fake_devs_reset(void) {
    g_write_offset = 0;
    g_size = 0;
}

int fake_devs_restarts(void) {
    return g_restarts;
}

void fake_devs_set_restarts(int n) {
    g_restarts = n;
}

void fake_devs_stats(unsigned *pieces, unsigned *max_piece, unsigned *starts) {
    *pieces = g_pieces;
    *max_piece = g_max_piece;
    *starts = g_starts;
}

void fake_devs_clear_stats(void) {
    g_pieces = g_max_piece = g_starts = 0;
}

static void check_main_task(const char *what) {
    if (!fake_is_main_thread())
        fake_fatal("%s outside the Jacdac main task", what);
}

int devsmgr_deploy_start(uint32_t sz) {
    check_main_task("devsmgr_deploy_start");
    fake_alive_check();
    g_starts++;
    if (sz & (ALIGN - 1))
        return -1;
    const esp_partition_t *p = store();
    if (HEADER + sz > p->size)
        return -2;
    fake_runtime_enter();
    uint32_t pages = (HEADER + sz + PAGE - 1) / PAGE;
    esp_err_t err = esp_partition_erase_range(p, 0, pages * PAGE);
    uint8_t hd[8];
    wr32(hd, PROG_MAGIC0);
    wr32(hd + 4, sz);
    if (err == ESP_OK && sz)
        err = esp_partition_write(p, 0, hd, sizeof(hd));
    fake_runtime_leave();
    if (err != ESP_OK)
        fake_fatal("devsmgr fake: flash error %d", err); // CHK() aborts on the device
    g_write_offset = sz ? HEADER : 0;
    g_size = sz;
    return 0;
}

int devsmgr_deploy_write(const void *buf, unsigned size) {
    check_main_task("devsmgr_deploy_write");
    fake_alive_check();
    if (g_write_offset == 0)
        return -1;
    const esp_partition_t *p = store();
    if (buf == NULL) {
        if (g_write_offset != g_size + HEADER)
            return -1;
        // the runtime hashes the image through the flash mapping
        fake_charge(((int64_t)g_size * FLASH_READ_4K_US + FLASH_SECTOR - 1) / FLASH_SECTOR);
        fake_flash_lock();
        uint32_t hash = jd_hash_fnv1a(fake_flash_mem() + p->address + HEADER, g_size);
        fake_flash_unlock();
        uint8_t tail[HEADER - 8];
        memset(tail, 0, sizeof(tail));
        wr32(tail, PROG_MAGIC1);
        wr32(tail + 4, hash);
        fake_runtime_enter();
        esp_err_t err = esp_partition_write(p, 8, tail, sizeof(tail));
        fake_runtime_leave();
        if (err != ESP_OK)
            fake_fatal("devsmgr fake: flash error %d", err);
        g_restarts++; // stop_program + next_restart = now
        return 0;
    }
    if ((size & (ALIGN - 1)) || g_write_offset + size > g_size + HEADER || size >= PAGE) {
        g_write_offset = 0;
        return -1;
    }
    g_pieces++;
    if (size > g_max_piece)
        g_max_piece = size;
    fake_runtime_enter();
    esp_err_t err = esp_partition_write(p, g_write_offset, buf, size);
    fake_runtime_leave();
    if (err != ESP_OK)
        fake_fatal("devsmgr fake: flash error %d", err);
    g_write_offset += size;
    return 0;
}

uint8_t *fake_devs_program(uint32_t *len) {
    const esp_partition_t *p = store();
    const uint8_t *h = fake_flash_mem() + p->address;
    if (rd32(h) != PROG_MAGIC0 || rd32(h + 8) != PROG_MAGIC1)
        return NULL;
    uint32_t size = rd32(h + 4);
    if (HEADER + size > p->size)
        return NULL;
    uint8_t *out = malloc(size ? size : 1);
    memcpy(out, h + HEADER, size);
    *len = size;
    return out;
}

int devs_verify(const uint8_t *img, uint32_t size) {
    if (((uintptr_t)img & 3) != 0)
        fake_fatal("devs_verify: image not 4-byte aligned (JD_ASSERT on the device)");
    if (size <= 112)
        fake_fatal("devs_verify: %u bytes, not more than the header (JD_ASSERT on the device)", (unsigned)size);
    if (rd32(img) != 0x53766544u || rd32(img + 4) != 0xf1296e0au)
        return -1000;
    if (rd32(img + 8) >> 24 != 2)
        return -1050;
    for (int i = 0; i < 10; i++) {
        uint32_t start = rd32(img + 32 + i * 8), len = rd32(img + 36 + i * 8);
        if ((uint64_t)start + len > size)
            return -1002;
    }
    return 0;
}
