// Host fake of ESP-IDF NVS (nvs_open / nvs_get_blob / nvs_set_blob / nvs_erase_key /
// nvs_commit) in the flash file's `nvs` partition, in the format of sim/nvs.ts (SimNvs),
// byte for byte, so that both servers leave the same kind of flash and the conformance runner
// can read either one's records. Keys are "namespace/key". Same guarantee as ESP-IDF NVS:
// after a power cut at any flash operation a key holds its old or its new value.
//
// sim/nvs.ts layout: 4 KB sectors used one at a time, round robin.
//   sector header (16 bytes): magic "SNVS" u32, seq u32, CRC-32 of those 8 bytes, 0xFFFFFFFF
//   entries: type u8 (1 set, 2 erase), key length u8, value length u16, key, value, 0xFF
//   padding to a multiple of 4, CRC-32 of all that.
// The sector with a valid header and the newest seq is active; a torn entry ends it. When it
// is full, the live entries go to the next sector (erased first unless blank), then its header,
// then the old sector is erased.
//
// Like ESP-IDF, set/erase write at once (nvs_commit has nothing left to do), a set of the same
// value and an erase of a missing key write nothing.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fake.h"
#include "nvs.h"
#include "nvs_flash.h"

#define SECTOR 4096
#define HEADER_LEN 16
#define SECTOR_MAGIC 0x53564e53u
#define ENTRY_SET 1
#define ENTRY_ERASE 2
#define MAX_KEYS 32
#define MAX_KEY 64
#define MAX_VALUE 512
#define MAX_HANDLES 8

typedef struct {
    char key[MAX_KEY];
    uint16_t len;
    uint8_t value[MAX_VALUE];
} kv_t;

typedef struct {
    bool loaded;
    int active; // active sector, -1 when none
    uint32_t seq;
    uint32_t write_pos;
    int n;
    kv_t kv[MAX_KEYS]; // in insertion order, as a JS Map
} store_t;

static store_t g_store;
static bool g_inited;
static char g_handles[MAX_HANDLES][NVS_NS_NAME_MAX_SIZE];
static bool g_handle_used[MAX_HANDLES];

void fake_nvs_reset(void) {
    memset(&g_store, 0, sizeof(g_store));
    g_inited = false;
    memset(g_handle_used, 0, sizeof(g_handle_used));
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

static uint32_t align4(uint32_t n) {
    return (n + 3) & ~3u;
}

static const esp_partition_t *nvs_part(void) {
    return fake_partition_by_label("nvs");
}

/** Reads `len` bytes at `off` of the nvs partition: as the device (charged) or raw (the harness). */
static void part_read(bool raw, uint32_t off, uint8_t *dst, uint32_t len) {
    const esp_partition_t *p = nvs_part();
    if (raw)
        memcpy(dst, fake_flash_mem() + p->address + off, len);
    else if (esp_partition_read(p, off, dst, len) != ESP_OK)
        fake_fatal("nvs: read failed");
}

static int find(store_t *s, const char *key) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->kv[i].key, key) == 0)
            return i;
    return -1;
}

static void map_set(store_t *s, const char *key, const uint8_t *v, uint16_t len) {
    int i = find(s, key);
    if (i < 0) {
        if (s->n == MAX_KEYS)
            fake_fatal("nvs fake: more than %d keys", MAX_KEYS);
        i = s->n++;
        snprintf(s->kv[i].key, MAX_KEY, "%s", key);
    }
    s->kv[i].len = len;
    if (len)
        memcpy(s->kv[i].value, v, len);
}

static void map_delete(store_t *s, const char *key) {
    int i = find(s, key);
    if (i < 0)
        return;
    memmove(&s->kv[i], &s->kv[i + 1], (size_t)(s->n - i - 1) * sizeof(kv_t));
    s->n--;
}

static void load(store_t *s, bool raw) {
    memset(s, 0, sizeof(*s));
    const esp_partition_t *p = nvs_part();
    if (!p)
        fake_fatal("nvs fake: no nvs partition");
    int sectors = (int)(p->size / SECTOR);
    s->active = -1;
    for (int i = 0; i < sectors; i++) {
        uint8_t h[HEADER_LEN];
        part_read(raw, (uint32_t)i * SECTOR, h, HEADER_LEN);
        if (rd32(h) != SECTOR_MAGIC || rd32(h + 8) != fake_crc32_le(0, h, 8))
            continue;
        uint32_t q = rd32(h + 4);
        if (s->active < 0 || (int32_t)(q - s->seq) > 0) {
            s->active = i;
            s->seq = q;
        }
    }
    s->write_pos = HEADER_LEN;
    if (s->active >= 0) {
        static uint8_t sector[SECTOR];
        part_read(raw, (uint32_t)s->active * SECTOR, sector, SECTOR);
        for (;;) {
            uint32_t pos = s->write_pos;
            if (pos + 8 > SECTOR)
                break;
            uint8_t type = sector[pos];
            if (type == 0xff) {
                for (uint32_t k = pos; k < SECTOR; k++)
                    if (sector[k] != 0xff) {
                        s->write_pos = SECTOR; // free space must be erased: a torn write
                        break;
                    }
                break;
            }
            uint8_t key_len = sector[pos + 1];
            uint16_t value_len = (uint16_t)(sector[pos + 2] | sector[pos + 3] << 8);
            uint32_t len = align4(4u + key_len + value_len) + 4;
            bool ok = (type == ENTRY_SET || type == ENTRY_ERASE) && key_len > 0 && pos + len <= SECTOR &&
                      key_len < MAX_KEY && value_len <= MAX_VALUE &&
                      rd32(sector + pos + len - 4) == fake_crc32_le(0, sector + pos, len - 4);
            if (!ok) {
                s->write_pos = SECTOR; // torn: ignored, and nothing is appended after it
                break;
            }
            char key[MAX_KEY];
            memcpy(key, sector + pos + 4, key_len);
            key[key_len] = 0;
            if (type == ENTRY_SET)
                map_set(s, key, sector + pos + 4 + key_len, value_len);
            else
                map_delete(s, key);
            s->write_pos = pos + len;
        }
    }
    s->loaded = true;
}

static uint32_t encode_entry(uint8_t *out, int type, const char *key, const uint8_t *value, uint16_t len) {
    uint32_t k = (uint32_t)strlen(key);
    uint32_t size = align4(4 + k + len) + 4;
    memset(out, 0xff, size);
    out[0] = (uint8_t)type;
    out[1] = (uint8_t)k;
    out[2] = (uint8_t)len;
    out[3] = (uint8_t)(len >> 8);
    memcpy(out + 4, key, k);
    if (len)
        memcpy(out + 4 + k, value, len);
    wr32(out + size - 4, fake_crc32_le(0, out, size - 4));
    return size;
}

/** Appends `entry` to the active sector, or moves the live values (`next`) to the next sector. */
static esp_err_t change(store_t *s, const uint8_t *entry, uint32_t entry_len, const store_t *next) {
    const esp_partition_t *p = nvs_part();
    esp_err_t err;
    if (s->active >= 0 && s->write_pos + entry_len <= SECTOR) {
        err = esp_partition_write(p, (uint32_t)s->active * SECTOR + s->write_pos, entry, entry_len);
        if (err != ESP_OK)
            goto failed;
        s->write_pos += entry_len;
    } else {
        static uint8_t buf[SECTOR];
        uint32_t total = 0;
        for (int i = 0; i < next->n; i++) {
            const kv_t *kv = &next->kv[i];
            if (HEADER_LEN + total + align4(4 + (uint32_t)strlen(kv->key) + kv->len) + 4 > SECTOR)
                return ESP_ERR_NVS_NOT_ENOUGH_SPACE; // "nvs is full"
            total += encode_entry(buf + total, ENTRY_SET, kv->key, kv->value, kv->len);
        }
        int sectors = (int)(p->size / SECTOR);
        int to = s->active < 0 ? 0 : (s->active + 1) % sectors;
        uint32_t seq = s->active < 0 ? 1 : s->seq + 1;
        uint32_t at = (uint32_t)to * SECTOR;
        static uint8_t cur[SECTOR];
        if ((err = esp_partition_read(p, at, cur, SECTOR)) != ESP_OK)
            goto failed;
        bool blank = true;
        for (int i = 0; i < SECTOR && blank; i++)
            blank = cur[i] == 0xff;
        if (!blank && (err = esp_partition_erase_range(p, at, SECTOR)) != ESP_OK)
            goto failed;
        if (total && (err = esp_partition_write(p, at + HEADER_LEN, buf, total)) != ESP_OK)
            goto failed;
        uint8_t h[HEADER_LEN];
        memset(h, 0xff, sizeof(h));
        wr32(h, SECTOR_MAGIC);
        wr32(h + 4, seq);
        wr32(h + 8, fake_crc32_le(0, h, 8));
        if ((err = esp_partition_write(p, at, h, HEADER_LEN)) != ESP_OK) // from here the new sector is active
            goto failed;
        int old = s->active;
        s->active = to;
        s->seq = seq;
        s->write_pos = HEADER_LEN + total;
        if (old >= 0 && (err = esp_partition_erase_range(p, (uint32_t)old * SECTOR, SECTOR)) != ESP_OK)
            goto failed;
    }
    return ESP_OK;
failed:
    s->loaded = false; // whatever reached flash is read back next time
    return err;
}

// --- nvs.h ------------------------------------------------------------------------------------------

esp_err_t nvs_flash_init(void) {
    fake_alive_check();
    if (!nvs_part())
        return ESP_ERR_NOT_FOUND;
    g_inited = true;
    return ESP_OK;
}

esp_err_t nvs_open(const char *namespace_name, nvs_open_mode_t open_mode, nvs_handle_t *out_handle) {
    (void)open_mode;
    fake_alive_check();
    if (!g_inited)
        return ESP_ERR_NVS_NOT_INITIALIZED;
    if (!namespace_name || strlen(namespace_name) >= NVS_NS_NAME_MAX_SIZE)
        return ESP_ERR_NVS_INVALID_NAME;
    for (int i = 0; i < MAX_HANDLES; i++)
        if (!g_handle_used[i]) {
            g_handle_used[i] = true;
            snprintf(g_handles[i], sizeof(g_handles[i]), "%s", namespace_name);
            *out_handle = (nvs_handle_t)(i + 1);
            return ESP_OK;
        }
    return ESP_ERR_NO_MEM;
}

void nvs_close(nvs_handle_t handle) {
    if (handle >= 1 && handle <= MAX_HANDLES)
        g_handle_used[handle - 1] = false;
}

static esp_err_t full_key(nvs_handle_t handle, const char *key, char out[MAX_KEY]) {
    if (handle < 1 || handle > MAX_HANDLES || !g_handle_used[handle - 1])
        return ESP_ERR_NVS_INVALID_HANDLE;
    if (!key || !*key)
        return ESP_ERR_NVS_INVALID_NAME;
    if (strlen(key) >= NVS_KEY_NAME_MAX_SIZE)
        return ESP_ERR_NVS_KEY_TOO_LONG;
    snprintf(out, MAX_KEY, "%s/%s", g_handles[handle - 1], key);
    return ESP_OK;
}

esp_err_t nvs_get_blob(nvs_handle_t handle, const char *key, void *out_value, size_t *length) {
    fake_alive_check();
    char k[MAX_KEY];
    esp_err_t err = full_key(handle, key, k);
    if (err != ESP_OK)
        return err;
    if (!g_store.loaded)
        load(&g_store, false);
    int i = find(&g_store, k);
    if (i < 0)
        return ESP_ERR_NVS_NOT_FOUND;
    if (!out_value) {
        *length = g_store.kv[i].len;
        return ESP_OK;
    }
    if (*length < g_store.kv[i].len)
        return ESP_ERR_NVS_INVALID_LENGTH;
    memcpy(out_value, g_store.kv[i].value, g_store.kv[i].len);
    *length = g_store.kv[i].len;
    return ESP_OK;
}

esp_err_t nvs_set_blob(nvs_handle_t handle, const char *key, const void *value, size_t length) {
    fake_alive_check();
    char k[MAX_KEY];
    esp_err_t err = full_key(handle, key, k);
    if (err != ESP_OK)
        return err;
    if (length > MAX_VALUE)
        return ESP_ERR_NVS_NOT_ENOUGH_SPACE;
    if (!g_store.loaded)
        load(&g_store, false);
    int i = find(&g_store, k);
    if (i >= 0 && g_store.kv[i].len == length && memcmp(g_store.kv[i].value, value, length) == 0)
        return ESP_OK;
    static store_t next;
    next = g_store;
    map_set(&next, k, value, (uint16_t)length);
    static uint8_t entry[SECTOR];
    uint32_t n = encode_entry(entry, ENTRY_SET, k, value, (uint16_t)length);
    err = change(&g_store, entry, n, &next);
    if (err == ESP_OK)
        map_set(&g_store, k, value, (uint16_t)length);
    return err;
}

esp_err_t nvs_erase_key(nvs_handle_t handle, const char *key) {
    fake_alive_check();
    char k[MAX_KEY];
    esp_err_t err = full_key(handle, key, k);
    if (err != ESP_OK)
        return err;
    if (!g_store.loaded)
        load(&g_store, false);
    if (find(&g_store, k) < 0)
        return ESP_ERR_NVS_NOT_FOUND;
    static store_t next;
    next = g_store;
    map_delete(&next, k);
    static uint8_t entry[64 + MAX_KEY];
    uint32_t n = encode_entry(entry, ENTRY_ERASE, k, NULL, 0);
    err = change(&g_store, entry, n, &next);
    if (err == ESP_OK)
        map_delete(&g_store, k);
    return err;
}

esp_err_t nvs_commit(nvs_handle_t handle) {
    fake_alive_check();
    if (handle < 1 || handle > MAX_HANDLES || !g_handle_used[handle - 1])
        return ESP_ERR_NVS_INVALID_HANDLE;
    return ESP_OK;
}

int fake_nvs_peek(const char *key, uint8_t *out, size_t cap) {
    static store_t s;
    load(&s, true);
    int i = find(&s, key);
    if (i < 0)
        return -1;
    size_t n = s.kv[i].len < cap ? s.kv[i].len : cap;
    memcpy(out, s.kv[i].value, n);
    return s.kv[i].len;
}
