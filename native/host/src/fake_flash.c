// Host fake of the ESP32-S3's 4 MB SPI NOR flash and of esp_partition_* over it.
//
// - The flash is the 4 MB file the test runner made with sim/flash.ts (or a buffer in the
//   unit tests); every change is written through to the file at once, so the file is what a
//   power cut would leave.
// - NOR rules: a sector is erased to 0xFF; a write may only hit 0xFF bytes. A write over
//   anything else aborts the process with a message (the real chip would AND the bits and
//   silently corrupt the data).
// - Each operation is charged to the simulated clock (fake.h: FLASH_*_US).
// - A power cut can be armed at the n-th write: that write and every later flash change
//   never happen, and the device stops there.
// - The partition table is read from the ESP-IDF binary table at 0x8000 (MD5 checked),
//   as the bootloader and esp_partition do.
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "fake.h"
#include "esp_partition.h"

static uint8_t *g_mem;
static int g_fd = -1;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static long g_cut_at;  // 0: disarmed
static long g_fail_at; // data write that fails (0: none), counted from when it was armed
static long g_fail_count;
static int g_cut_mode;
static long g_count[3]; // operations seen, per CUT_* mode, since the cut was armed
static bool g_power_lost;
static const esp_partition_t *g_running;

#define MAX_PARTS 32
static esp_partition_t g_parts[MAX_PARTS];
static int g_nparts;

// --- file / memory --------------------------------------------------------------------------------

void fake_flash_open_file(const char *path) {
    fake_flash_close();
    int fd = open(path, O_RDWR);
    if (fd < 0)
        fake_fatal("cannot open flash file %s", path);
    off_t size = lseek(fd, 0, SEEK_END);
    if (size != FLASH_SIZE)
        fake_fatal("%s: %lld bytes, expected a %d byte flash", path, (long long)size, FLASH_SIZE);
    g_mem = malloc(FLASH_SIZE);
    if (pread(fd, g_mem, FLASH_SIZE, 0) != FLASH_SIZE)
        fake_fatal("cannot read flash file %s", path);
    g_fd = fd;
    fake_partitions_load();
}

void fake_flash_open_mem(const uint8_t *image) {
    fake_flash_close();
    g_mem = malloc(FLASH_SIZE);
    memcpy(g_mem, image, FLASH_SIZE);
    fake_partitions_load();
}

void fake_flash_close(void) {
    if (g_fd >= 0) {
        fsync(g_fd);
        close(g_fd);
    }
    g_fd = -1;
    free(g_mem);
    g_mem = NULL;
    g_nparts = 0;
}

uint8_t *fake_flash_mem(void) {
    return g_mem;
}

void fake_flash_lock(void) {
    pthread_mutex_lock(&g_lock);
}

void fake_flash_unlock(void) {
    pthread_mutex_unlock(&g_lock);
}

static void write_through(uint32_t addr, uint32_t len) {
    if (g_fd >= 0 && pwrite(g_fd, g_mem + addr, len, addr) != (ssize_t)len)
        fake_fatal("cannot write the flash file at 0x%x", (unsigned)addr);
}

// --- power cuts -------------------------------------------------------------------------------------

void fake_flash_arm_cut(long n, int mode) {
    pthread_mutex_lock(&g_lock);
    g_cut_at = n;
    g_cut_mode = mode;
    memset(g_count, 0, sizeof(g_count));
    pthread_mutex_unlock(&g_lock);
}

long fake_flash_count(int mode) {
    return g_count[mode];
}

bool fake_power_lost(void) {
    return g_power_lost;
}

void fake_flash_arm_failure(long n) {
    pthread_mutex_lock(&g_lock);
    g_fail_at = n;
    g_fail_count = 0;
    pthread_mutex_unlock(&g_lock);
}

/** A new boot: the power is back; armed cuts and failures are dropped (as the sim backend does). */
void fake_flash_reset_device(const esp_partition_t *running) {
    g_running = running;
    g_power_lost = false;
    g_cut_at = 0;
    g_fail_at = 0;
}

/** An app slot other than the running one, or progstage: where an update writes its data. */
static bool in_update_partition(uint32_t addr) {
    for (int i = 0; i < g_nparts; i++) {
        const esp_partition_t *p = &g_parts[i];
        if (addr < p->address || addr >= p->address + p->size)
            continue;
        if (p == g_running)
            return false;
        return (p->type == ESP_PARTITION_TYPE_APP && p->subtype >= ESP_PARTITION_SUBTYPE_APP_OTA_MIN &&
                p->subtype < ESP_PARTITION_SUBTYPE_APP_OTA_MAX) ||
               strcmp(p->label, "progstage") == 0;
    }
    return false;
}

/** Counts the operation; true when the power goes now (the caller unlocks and stops). */
static bool cut_now(bool is_write, uint32_t addr) {
    if (is_write && in_update_partition(addr))
        g_count[CUT_DATA_WRITES]++;
    if (is_write)
        g_count[CUT_ANY_WRITE]++;
    g_count[CUT_ANY_CHANGE]++;
    if (g_cut_at > 0 && g_count[g_cut_mode] == g_cut_at &&
        (g_cut_mode == CUT_ANY_CHANGE || is_write) &&
        (g_cut_mode != CUT_DATA_WRITES || in_update_partition(addr))) {
        g_power_lost = true;
        g_cut_at = 0;
        return true;
    }
    return false;
}

// --- operations ----------------------------------------------------------------------------------------

static void check_range(uint32_t addr, uint32_t len, const char *what) {
    if (!g_mem)
        fake_fatal("%s: no flash loaded", what);
    if ((uint64_t)addr + len > FLASH_SIZE)
        fake_fatal("%s at 0x%x+%u: beyond the 4 MB flash", what, (unsigned)addr, (unsigned)len);
}

esp_err_t fake_flash_read(uint32_t addr, void *dst, uint32_t len) {
    fake_alive_check();
    check_range(addr, len, "flash read");
    pthread_mutex_lock(&g_lock);
    memcpy(dst, g_mem + addr, len);
    pthread_mutex_unlock(&g_lock);
    fake_charge(((int64_t)len * FLASH_READ_4K_US + FLASH_SECTOR - 1) / FLASH_SECTOR);
    return ESP_OK;
}

esp_err_t fake_flash_write(uint32_t addr, const void *src, uint32_t len) {
    fake_alive_check();
    check_range(addr, len, "flash write");
    if (len == 0)
        return ESP_OK;
    pthread_mutex_lock(&g_lock);
    if (cut_now(true, addr)) {
        pthread_mutex_unlock(&g_lock);
        fake_halt_device(HALT_POWER);
    }
    if (g_fail_at > 0 && in_update_partition(addr) && ++g_fail_count == g_fail_at) {
        g_fail_at = 0;
        pthread_mutex_unlock(&g_lock);
        fake_charge(FLASH_PROGRAM_PAGE_US);
        return ESP_ERR_FLASH_BASE + 1; // ESP_ERR_FLASH_OP_FAIL (spi_flash_mmap.h)
    }
    for (uint32_t i = 0; i < len; i++)
        if (g_mem[addr + i] != 0xff) {
            pthread_mutex_unlock(&g_lock);
            fake_fatal("flash write at 0x%x+%u over a byte that is not erased (0x%02x at 0x%x): erase before write",
                       (unsigned)addr, (unsigned)len, g_mem[addr + i], (unsigned)(addr + i));
        }
    memcpy(g_mem + addr, src, len);
    write_through(addr, len);
    pthread_mutex_unlock(&g_lock);
    uint32_t pages = (addr + len - 1) / FLASH_PAGE - addr / FLASH_PAGE + 1;
    fake_charge((int64_t)pages * FLASH_PROGRAM_PAGE_US);
    return ESP_OK;
}

esp_err_t fake_flash_erase_sector(uint32_t addr) {
    fake_alive_check();
    check_range(addr, FLASH_SECTOR, "flash erase");
    if (addr % FLASH_SECTOR)
        fake_fatal("flash erase at 0x%x: not sector aligned", (unsigned)addr);
    pthread_mutex_lock(&g_lock);
    if (cut_now(false, addr)) {
        pthread_mutex_unlock(&g_lock);
        fake_halt_device(HALT_POWER);
    }
    memset(g_mem + addr, 0xff, FLASH_SECTOR);
    write_through(addr, FLASH_SECTOR);
    pthread_mutex_unlock(&g_lock);
    fake_charge(FLASH_ERASE_SECTOR_US);
    return ESP_OK;
}

// --- partition table -----------------------------------------------------------------------------------

#define TABLE_OFFSET 0x8000
#define TABLE_MAX_LEN 0xc00

void fake_partitions_load(void) {
    g_nparts = 0;
    const uint8_t *t = g_mem + TABLE_OFFSET;
    EVP_MD_CTX *md5 = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md5, EVP_md5(), NULL);
    for (int off = 0; off + 32 <= TABLE_MAX_LEN; off += 32) {
        const uint8_t *e = t + off;
        uint16_t magic = (uint16_t)(e[0] | e[1] << 8);
        if (magic == 0xebeb) {
            uint8_t digest[16];
            EVP_DigestFinal_ex(md5, digest, NULL);
            EVP_MD_CTX_free(md5);
            if (memcmp(digest, e + 16, 16) != 0)
                fake_fatal("partition table: MD5 mismatch");
            return;
        }
        if (magic != 0x50aa)
            break;
        EVP_DigestUpdate(md5, e, 32);
        if (g_nparts == MAX_PARTS)
            fake_fatal("partition table: too many entries");
        esp_partition_t *p = &g_parts[g_nparts++];
        memset(p, 0, sizeof(*p));
        p->type = (esp_partition_type_t)e[2];
        p->subtype = (esp_partition_subtype_t)e[3];
        p->address = (uint32_t)(e[4] | e[5] << 8 | e[6] << 16 | (uint32_t)e[7] << 24);
        p->size = (uint32_t)(e[8] | e[9] << 8 | e[10] << 16 | (uint32_t)e[11] << 24);
        p->erase_size = FLASH_SECTOR;
        memcpy(p->label, e + 12, 16);
        p->label[16] = 0;
        uint32_t flags = (uint32_t)(e[28] | e[29] << 8 | e[30] << 16 | (uint32_t)e[31] << 24);
        p->encrypted = flags & 1;
        p->readonly = (flags & 2) != 0;
    }
    EVP_MD_CTX_free(md5);
    fake_fatal("partition table at 0x8000: no MD5 entry");
}

int fake_partition_count(void) {
    return g_nparts;
}

const esp_partition_t *fake_partition_at(int i) {
    return i >= 0 && i < g_nparts ? &g_parts[i] : NULL;
}

const esp_partition_t *fake_partition_by_label(const char *label) {
    for (int i = 0; i < g_nparts; i++)
        if (strcmp(g_parts[i].label, label) == 0)
            return &g_parts[i];
    return NULL;
}

/** App slot ota_<index> (not a device call: usable while the device is off). */
const esp_partition_t *fake_ota_slot(int index) {
    for (int i = 0; i < g_nparts; i++)
        if (g_parts[i].type == ESP_PARTITION_TYPE_APP &&
            g_parts[i].subtype == (esp_partition_subtype_t)(ESP_PARTITION_SUBTYPE_APP_OTA_MIN + index))
            return &g_parts[i];
    return NULL;
}

// --- esp_partition_* ---------------------------------------------------------------------------------------

const esp_partition_t *esp_partition_find_first(esp_partition_type_t type, esp_partition_subtype_t subtype,
                                                const char *label) {
    fake_alive_check();
    for (int i = 0; i < g_nparts; i++) {
        const esp_partition_t *p = &g_parts[i];
        if (type != ESP_PARTITION_TYPE_ANY && p->type != type)
            continue;
        if (subtype != ESP_PARTITION_SUBTYPE_ANY && p->subtype != subtype)
            continue;
        if (label && strcmp(p->label, label) != 0)
            continue;
        return p;
    }
    return NULL;
}

const esp_partition_t *esp_partition_verify(const esp_partition_t *partition) {
    for (int i = 0; partition && i < g_nparts; i++)
        if (g_parts[i].address == partition->address && g_parts[i].size == partition->size &&
            g_parts[i].type == partition->type)
            return &g_parts[i];
    return NULL;
}

static esp_err_t check_args(const esp_partition_t *p, size_t offset, size_t size) {
    if (!p)
        return ESP_ERR_INVALID_ARG;
    if (offset > p->size)
        return ESP_ERR_INVALID_ARG;
    if (size > p->size - offset)
        return ESP_ERR_INVALID_SIZE;
    return ESP_OK;
}

esp_err_t esp_partition_read(const esp_partition_t *partition, size_t src_offset, void *dst, size_t size) {
    esp_err_t err = check_args(partition, src_offset, size);
    if (err != ESP_OK || !dst)
        return err != ESP_OK ? err : ESP_ERR_INVALID_ARG;
    return fake_flash_read(partition->address + (uint32_t)src_offset, dst, (uint32_t)size);
}

esp_err_t esp_partition_write(const esp_partition_t *partition, size_t dst_offset, const void *src, size_t size) {
    esp_err_t err = check_args(partition, dst_offset, size);
    if (err != ESP_OK || !src)
        return err != ESP_OK ? err : ESP_ERR_INVALID_ARG;
    if (partition->readonly)
        return ESP_ERR_NOT_ALLOWED;
    return fake_flash_write(partition->address + (uint32_t)dst_offset, src, (uint32_t)size);
}

esp_err_t esp_partition_erase_range(const esp_partition_t *partition, size_t offset, size_t size) {
    esp_err_t err = check_args(partition, offset, size);
    if (err != ESP_OK)
        return err;
    if (partition->readonly)
        return ESP_ERR_NOT_ALLOWED;
    if (offset % partition->erase_size)
        return ESP_ERR_INVALID_ARG;
    if (size % partition->erase_size)
        return ESP_ERR_INVALID_SIZE;
    for (size_t o = 0; o < size; o += FLASH_SECTOR) {
        err = fake_flash_erase_sector(partition->address + (uint32_t)(offset + o));
        if (err != ESP_OK)
            return err;
    }
    return ESP_OK;
}

// esp_partition_mmap: a read-only snapshot of the range (the cache would show the flash as
// it was read), charged as a read of the whole range.
#define MAX_MAPS 8
static void *g_maps[MAX_MAPS];

esp_err_t esp_partition_mmap(const esp_partition_t *partition, size_t offset, size_t size,
                             esp_partition_mmap_memory_t memory, const void **out_ptr,
                             esp_partition_mmap_handle_t *out_handle) {
    (void)memory;
    esp_err_t err = check_args(partition, offset, size);
    if (err != ESP_OK)
        return err;
    for (int i = 0; i < MAX_MAPS; i++) {
        if (g_maps[i])
            continue;
        void *copy = malloc(size ? size : 1);
        fake_flash_read(partition->address + (uint32_t)offset, copy, (uint32_t)size);
        g_maps[i] = copy;
        *out_ptr = copy;
        *out_handle = (esp_partition_mmap_handle_t)(i + 1);
        return ESP_OK;
    }
    return ESP_ERR_NO_MEM;
}

void esp_partition_munmap(esp_partition_mmap_handle_t handle) {
    if (handle < 1 || handle > MAX_MAPS || !g_maps[handle - 1])
        fake_fatal("esp_partition_munmap(%u): not mapped", (unsigned)handle);
    free(g_maps[handle - 1]);
    g_maps[handle - 1] = NULL;
}

void fake_mmap_reset(void) {
    for (int i = 0; i < MAX_MAPS; i++) {
        free(g_maps[i]);
        g_maps[i] = NULL;
    }
}
