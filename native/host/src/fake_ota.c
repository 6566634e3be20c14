// Host fake of ESP-IDF app_update (components/app_update/esp_ota_ops.c) with
// CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y, no anti-rollback, no flash encryption, no secure
// boot, following v5.5.5 (or v5.0.5 with FAKE_IDF_VERSION_MINOR=0, the version
// firmware/build.sh builds with). Differences between the two kept here:
// - 5.5 esp_ota_begin ends with esp_ota_invalidate_inactive_ota_data_slot() (erases the
//   otadata sector of the previously booted slot); 5.0 does not;
// - 5.5 esp_ota_write returns at once for size 0 and erases the sectors a write touches;
//   5.0 computes last_sector = (wrote_size + size) / 4096, so a write that ends on a sector
//   boundary also erases the next sector (and a zero-length write at a boundary erases one);
// - esp_ota_resume exists in 5.5 only.
// Signed apps (FAKE_SIGNED_APPS builds): nothing here changes; every image check goes through
// esp_image_verify (src/fake_image.c), which then checks the signature with the running app's
// key, so esp_ota_end, esp_ota_set_boot_partition and esp_ota_check_rollback_is_possible
// refuse a badly signed image with ESP_ERR_OTA_VALIDATE_FAILED like any other defect.
// otadata: two esp_ota_select_entry_t at the otadata partition + 0 and + 4096; CRC of
// ota_seq = esp_rom_crc32_le(UINT32_MAX, &seq, 4); the running slot is what the harness
// says the bootloader started (sim/bootloader.ts plays the bootloader between boots).
#include <stdlib.h>
#include <string.h>
#include "fake.h"
#include "esp_ota_ops.h"
#include "esp_image_format.h"
#include "esp_system.h"

#define FAKE_IDF_55 (ESP_IDF_VERSION >= ESP_IDF_VERSION_VAL(5, 5, 0))

typedef struct ota_entry {
    uint32_t handle;
    const esp_partition_t *part;
    bool need_erase;
    uint32_t wrote_size;
    struct ota_entry *next;
} ota_entry_t;

static ota_entry_t *g_entries;
static uint32_t g_last_handle;
static const esp_partition_t *g_running;

void fake_ota_reset(const esp_partition_t *running) {
    while (g_entries) {
        ota_entry_t *e = g_entries;
        g_entries = e->next;
        free(e);
    }
    g_running = running;
}

static ota_entry_t *find_entry(esp_ota_handle_t h) {
    for (ota_entry_t *e = g_entries; e; e = e->next)
        if (e->handle == h)
            return e;
    return NULL;
}

static void remove_entry(ota_entry_t *it) {
    for (ota_entry_t **p = &g_entries; *p; p = &(*p)->next)
        if (*p == it) {
            *p = it->next;
            free(it);
            return;
        }
}

static bool is_ota_partition(const esp_partition_t *p) {
    return p && p->type == ESP_PARTITION_TYPE_APP && p->subtype >= ESP_PARTITION_SUBTYPE_APP_OTA_MIN &&
           p->subtype < ESP_PARTITION_SUBTYPE_APP_OTA_MAX;
}

// --- bootloader_common (otadata) -------------------------------------------------------------------

static uint32_t ota_select_crc(const esp_ota_select_entry_t *s) {
    return fake_crc32_le(UINT32_MAX, (const uint8_t *)&s->ota_seq, 4);
}

static bool ota_select_invalid(const esp_ota_select_entry_t *s) {
    return s->ota_seq == UINT32_MAX || s->ota_state == ESP_OTA_IMG_INVALID || s->ota_state == ESP_OTA_IMG_ABORTED;
}

static bool ota_select_valid(const esp_ota_select_entry_t *s) {
    return !ota_select_invalid(s) && s->crc == ota_select_crc(s);
}

static int select_otadata(const esp_ota_select_entry_t *two, const bool valid[2]) {
    if (valid[0] && valid[1])
        return two[0].ota_seq >= two[1].ota_seq ? 0 : 1;
    return valid[0] ? 0 : valid[1] ? 1 : -1;
}

static int get_active_otadata(const esp_ota_select_entry_t *two) {
    bool valid[2] = {ota_select_valid(&two[0]), ota_select_valid(&two[1])};
    return select_otadata(two, valid);
}

static const esp_partition_t *read_otadata(esp_ota_select_entry_t two[2]) {
    const esp_partition_t *p = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_OTA, NULL);
    if (!p)
        return NULL;
    if (esp_partition_read(p, 0, &two[0], sizeof(two[0])) != ESP_OK ||
        esp_partition_read(p, p->erase_size, &two[1], sizeof(two[1])) != ESP_OK)
        return NULL;
    return p;
}

static esp_err_t rewrite_ota_seq(esp_ota_select_entry_t *two, uint32_t seq, uint8_t sec_id, const esp_partition_t *od) {
    two[sec_id].ota_seq = seq;
    two[sec_id].crc = ota_select_crc(&two[sec_id]);
    esp_err_t ret = esp_partition_erase_range(od, sec_id * od->erase_size, od->erase_size);
    if (ret != ESP_OK)
        return ret;
    return esp_partition_write(od, od->erase_size * sec_id, &two[sec_id], sizeof(esp_ota_select_entry_t));
}

uint8_t esp_ota_get_app_partition_count(void) {
    uint8_t n = 0;
    while (n < 16 && fake_ota_slot(n))
        n++;
    return n;
}

static esp_err_t image_validate(const esp_partition_t *p) {
    esp_image_metadata_t data;
    const esp_partition_pos_t pos = {.offset = p->address, .size = p->size};
    return esp_image_verify(ESP_IMAGE_VERIFY, &pos, &data) == ESP_OK ? ESP_OK : ESP_ERR_OTA_VALIDATE_FAILED;
}

// --- partitions ----------------------------------------------------------------------------------------

const esp_partition_t *esp_ota_get_running_partition(void) {
    fake_alive_check();
    if (!g_running)
        fake_fatal("esp_ota_get_running_partition: no running app partition");
    return g_running;
}

const esp_partition_t *esp_ota_get_next_update_partition(const esp_partition_t *start_from) {
    const esp_partition_t *def = NULL;
    bool next_is_result = false;
    if (!start_from)
        start_from = esp_ota_get_running_partition();
    else
        start_from = esp_partition_verify(start_from);
    for (int t = 0; t < 16; t++) {
        const esp_partition_t *p = fake_ota_slot(t);
        if (!p)
            continue;
        if (!def)
            def = p;
        if (p == start_from)
            next_is_result = true;
        else if (next_is_result)
            return p;
    }
    return def;
}

const esp_partition_t *esp_ota_get_boot_partition(void) {
    esp_ota_select_entry_t two[2];
    if (!read_otadata(two))
        return NULL;
    int count = esp_ota_get_app_partition_count();
    if ((ota_select_invalid(&two[0]) && ota_select_invalid(&two[1])) || count == 0)
        return fake_ota_slot(0);
    int active = get_active_otadata(two);
    return active < 0 ? fake_ota_slot(0) : fake_ota_slot((int)((two[active].ota_seq - 1) % count));
}

esp_err_t esp_ota_get_partition_description(const esp_partition_t *partition, esp_app_desc_t *app_desc) {
    if (!partition || !app_desc)
        return ESP_ERR_INVALID_ARG;
    if (partition->type != ESP_PARTITION_TYPE_APP)
        return ESP_ERR_NOT_SUPPORTED;
    esp_err_t err = esp_partition_read(partition, sizeof(esp_image_header_t) + sizeof(esp_image_segment_header_t),
                                       app_desc, sizeof(esp_app_desc_t));
    if (err != ESP_OK)
        return err;
    return app_desc->magic_word == ESP_APP_DESC_MAGIC_WORD ? ESP_OK : ESP_ERR_NOT_FOUND;
}

esp_err_t esp_ota_get_state_partition(const esp_partition_t *partition, esp_ota_img_states_t *ota_state) {
    if (!partition || !ota_state)
        return ESP_ERR_INVALID_ARG;
    if (!is_ota_partition(partition))
        return ESP_ERR_NOT_SUPPORTED;
    esp_ota_select_entry_t two[2];
    int count = esp_ota_get_app_partition_count();
    if (!read_otadata(two) || count == 0)
        return ESP_ERR_NOT_FOUND;
    int req = partition->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN;
    for (int i = 0; i < 2; i++) {
        int slot = (int)((two[i].ota_seq - 1) % (uint32_t)count);
        if (slot == req && two[i].crc == ota_select_crc(&two[i])) {
            *ota_state = (esp_ota_img_states_t)two[i].ota_state;
            return ESP_OK;
        }
    }
    return ESP_ERR_NOT_FOUND;
}

// --- writing a slot --------------------------------------------------------------------------------------

#if FAKE_IDF_55
/** erase_last_boot_app_partition(skip_app_part_erase = true) */
esp_err_t esp_ota_invalidate_inactive_ota_data_slot(void) {
    esp_ota_select_entry_t two[2];
    const esp_partition_t *od = read_otadata(two);
    if (!od)
        return ESP_FAIL;
    int active = get_active_otadata(two);
    int count = esp_ota_get_app_partition_count();
    if (active == -1 || count == 0)
        return ESP_FAIL;
    int inactive = (~active) & 1;
    if (two[inactive].ota_seq == UINT32_MAX || two[inactive].crc != ota_select_crc(&two[inactive]))
        return ESP_FAIL;
    int slot = (int)((two[inactive].ota_seq - 1) % (uint32_t)count);
    const esp_partition_t *last = fake_ota_slot(slot);
    if (!last || last == esp_ota_get_running_partition())
        return ESP_FAIL;
    return esp_partition_erase_range(od, inactive * od->erase_size, od->erase_size);
}
#endif

esp_err_t esp_ota_begin(const esp_partition_t *partition, size_t image_size, esp_ota_handle_t *out_handle) {
    fake_alive_check();
    if (!partition || !out_handle)
        return ESP_ERR_INVALID_ARG;
    partition = esp_partition_verify(partition);
    if (!partition)
        return ESP_ERR_NOT_FOUND;
    if (!is_ota_partition(partition))
        return ESP_ERR_INVALID_ARG;
    const esp_partition_t *running = esp_ota_get_running_partition();
    if (partition == running)
        return ESP_ERR_OTA_PARTITION_CONFLICT;
    esp_ota_img_states_t st;
    if (esp_ota_get_state_partition(running, &st) == ESP_OK && st == ESP_OTA_IMG_PENDING_VERIFY)
        return ESP_ERR_OTA_ROLLBACK_INVALID_STATE;
    if (image_size != OTA_WITH_SEQUENTIAL_WRITES) {
        size_t erase = (image_size == 0 || image_size == OTA_SIZE_UNKNOWN)
                           ? partition->size
                           : (image_size + FLASH_SECTOR - 1) / FLASH_SECTOR * FLASH_SECTOR;
        esp_err_t err = esp_partition_erase_range(partition, 0, erase);
        if (err != ESP_OK)
            return err;
    }
    ota_entry_t *e = calloc(1, sizeof(*e));
    e->part = partition;
    e->handle = ++g_last_handle;
    e->need_erase = image_size == OTA_WITH_SEQUENTIAL_WRITES;
    e->next = g_entries;
    g_entries = e;
    *out_handle = e->handle;
#if FAKE_IDF_55
    esp_ota_invalidate_inactive_ota_data_slot();
#endif
    return ESP_OK;
}

#if FAKE_IDF_55
esp_err_t esp_ota_resume(const esp_partition_t *partition, const size_t erase_size, const size_t image_offset,
                         esp_ota_handle_t *out_handle) {
    fake_alive_check();
    if (!partition || !out_handle)
        return ESP_ERR_INVALID_ARG;
    if (image_offset > partition->size)
        return ESP_ERR_INVALID_ARG;
    partition = esp_partition_verify(partition);
    if (!partition)
        return ESP_ERR_NOT_FOUND;
    if (partition->type == ESP_PARTITION_TYPE_APP && !is_ota_partition(partition))
        return ESP_ERR_INVALID_ARG;
    if (partition == esp_ota_get_running_partition())
        return ESP_ERR_OTA_PARTITION_CONFLICT;
    ota_entry_t *e = calloc(1, sizeof(*e));
    e->part = partition;
    e->handle = ++g_last_handle;
    e->wrote_size = (uint32_t)image_offset;
    e->need_erase = erase_size == OTA_WITH_SEQUENTIAL_WRITES;
    e->next = g_entries;
    g_entries = e;
    *out_handle = e->handle;
    return ESP_OK;
}
#endif

esp_err_t esp_ota_write(esp_ota_handle_t handle, const void *data, size_t size) {
    fake_alive_check();
    const uint8_t *bytes = data;
    if (!data)
        return ESP_ERR_INVALID_ARG;
#if FAKE_IDF_55
    if (size == 0)
        return ESP_OK;
#endif
    ota_entry_t *it = find_entry(handle);
    if (!it)
        return ESP_ERR_INVALID_ARG;
    if (it->need_erase) {
        uint32_t es = it->part->erase_size;
        uint32_t first = it->wrote_size / es;
#if FAKE_IDF_55
        uint32_t last = (uint32_t)((it->wrote_size + size - 1) / es);
#else
        uint32_t last = (uint32_t)((it->wrote_size + size) / es);
#endif
        esp_err_t ret = ESP_OK;
        if (it->wrote_size % es == 0)
            ret = esp_partition_erase_range(it->part, it->wrote_size, (last - first + 1) * es);
        else if (first != last)
            ret = esp_partition_erase_range(it->part, (first + 1) * es, (last - first) * es);
        if (ret != ESP_OK)
            return ret;
    }
    if (it->wrote_size == 0 && size > 0 && bytes[0] != ESP_IMAGE_HEADER_MAGIC)
        return ESP_ERR_OTA_VALIDATE_FAILED;
    esp_err_t ret = esp_partition_write(it->part, it->wrote_size, bytes, size);
    if (ret == ESP_OK)
        it->wrote_size += (uint32_t)size;
    return ret;
}

esp_err_t esp_ota_end(esp_ota_handle_t handle) {
    fake_alive_check();
    ota_entry_t *it = find_entry(handle);
    if (!it)
        return ESP_ERR_NOT_FOUND;
    esp_err_t ret = ESP_OK;
    if (it->wrote_size == 0)
        ret = ESP_ERR_INVALID_ARG;
    else if (image_validate(it->part) != ESP_OK)
        ret = ESP_ERR_OTA_VALIDATE_FAILED;
    remove_entry(it);
    return ret;
}

esp_err_t esp_ota_abort(esp_ota_handle_t handle) {
    ota_entry_t *it = find_entry(handle);
    if (!it)
        return ESP_ERR_NOT_FOUND;
    remove_entry(it);
    return ESP_OK;
}

// --- boot selection, rollback ---------------------------------------------------------------------------

esp_err_t esp_ota_set_boot_partition(const esp_partition_t *partition) {
    fake_alive_check();
    if (!partition)
        return ESP_ERR_INVALID_ARG;
    if (image_validate(partition) != ESP_OK)
        return ESP_ERR_OTA_VALIDATE_FAILED;
    if (partition->type != ESP_PARTITION_TYPE_APP || !is_ota_partition(partition))
        return ESP_ERR_INVALID_ARG;
    // esp_rewrite_ota_data (v5.5.5, same as v5.0.5)
    esp_ota_select_entry_t two[2];
    const esp_partition_t *od = read_otadata(two);
    if (!od)
        return ESP_ERR_NOT_FOUND;
    uint8_t count = esp_ota_get_app_partition_count();
    uint32_t sub = partition->subtype & 0x0f;
    if (sub >= count)
        return ESP_ERR_INVALID_ARG;
    int active = get_active_otadata(two);
    if (active != -1) {
        uint32_t seq = two[active].ota_seq;
        uint32_t i = 0;
        while (seq > (sub + 1) % count + i * count)
            i++;
        int next = (~active) & 1;
        two[next].ota_state = ESP_OTA_IMG_NEW;
        return rewrite_ota_seq(two, (sub + 1) % count + i * count, (uint8_t)next, od);
    }
    two[0].ota_state = ESP_OTA_IMG_NEW;
    return rewrite_ota_seq(two, sub + 1, 0, od);
}

bool esp_ota_check_rollback_is_possible(void) {
    esp_ota_select_entry_t two[2];
    if (!read_otadata(two))
        return false;
    int count = esp_ota_get_app_partition_count();
    if (count == 0)
        return false;
    bool valid[2] = {ota_select_valid(&two[0]), ota_select_valid(&two[1])};
    int active = select_otadata(two, valid);
    if (active == -1)
        return false;
    int last = (~active) & 1;
    if (!valid[last])
        return false; // no factory app in this table
    const esp_partition_t *p = fake_ota_slot((int)((two[last].ota_seq - 1) % (uint32_t)count));
    return p && image_validate(p) == ESP_OK;
}

static esp_err_t current_ota_is_workable(bool valid) {
    esp_ota_select_entry_t two[2];
    const esp_partition_t *od = read_otadata(two);
    if (!od)
        return ESP_ERR_NOT_FOUND;
    int active = get_active_otadata(two);
    if (active == -1 || esp_ota_get_app_partition_count() == 0)
        return ESP_FAIL; // "Running firmware is factory"
    if (valid) {
        if (two[active].ota_state == ESP_OTA_IMG_VALID)
            return ESP_OK;
        two[active].ota_state = ESP_OTA_IMG_VALID;
        return rewrite_ota_seq(two, two[active].ota_seq, (uint8_t)active, od);
    }
    if (!esp_ota_check_rollback_is_possible())
        return ESP_ERR_OTA_ROLLBACK_FAILED;
    two[active].ota_state = ESP_OTA_IMG_INVALID;
    return rewrite_ota_seq(two, two[active].ota_seq, (uint8_t)active, od);
}

esp_err_t esp_ota_mark_app_valid_cancel_rollback(void) {
    fake_alive_check();
    return current_ota_is_workable(true);
}

esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void) {
    fake_alive_check();
    esp_err_t ret = current_ota_is_workable(false);
    if (ret == ESP_OK)
        esp_restart();
    return ret;
}
