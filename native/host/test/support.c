// Unit test helpers: see support.h.
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "support.h"
#include "esp_idf_version.h"
#include "jd_otaupdater_spec.h"
#include "jd_protocol.h"

void t_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void t_check_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s:%d: CHECK(%s) ", file, line, cond);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void sha256(const void *data, size_t len, uint8_t out[32]) {
    unsigned n = 0;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

/** CRC-32 (zlib), table driven: independent of the server's bitwise one. */
uint32_t crc32_ref(const uint8_t *data, size_t len) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++)
        c = table[(c ^ data[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

// --- partition table from CSV (gen_esp32part.py rules, as sim/partition-table.ts) --------------

static long parse_num(const char *s, const char *const *names, const long *values) {
    while (isspace((unsigned char)*s))
        s++;
    for (int i = 0; names && names[i]; i++)
        if (strcasecmp(s, names[i]) == 0)
            return values[i];
    char *end;
    long v = strtol(s, &end, 0);
    if (*end == 'K' || *end == 'k')
        v *= 1024;
    else if (*end == 'M' || *end == 'm')
        v *= 1024 * 1024;
    return v;
}

static void trim(char *s) {
    char *a = s;
    while (isspace((unsigned char)*a))
        a++;
    memmove(s, a, strlen(a) + 1);
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
}

uint8_t *make_flash(const char *csv_path) {
    FILE *f = fopen(csv_path, "r");
    if (!f)
        t_fail(__FILE__, __LINE__, "cannot open %s", csv_path);
    uint8_t *flash = malloc(FLASH_SIZE);
    memset(flash, 0xff, FLASH_SIZE);
    uint8_t *t = flash + 0x8000;
    int n = 0;
    long last_end = 0x9000;
    char line[512];
    static const char *const types[] = {"app", "data", NULL};
    static const long typev[] = {0, 1};
    static const char *const app_sub[] = {"factory", "test", "ota_0", "ota_1", "ota_2", "ota_3", NULL};
    static const long app_subv[] = {0, 0x20, 0x10, 0x11, 0x12, 0x13};
    static const char *const data_sub[] = {"ota", "phy", "nvs", "coredump", "nvs_keys", "efuse", "undefined",
                                           "fat", "spiffs", NULL};
    static const long data_subv[] = {0, 1, 2, 3, 4, 5, 6, 0x81, 0x82};
    EVP_MD_CTX *md5 = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md5, EVP_md5(), NULL);
    while (fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        trim(line);
        if (!*line)
            continue;
        char *fields[6] = {0};
        char *p = line;
        for (int i = 0; i < 6; i++) {
            fields[i] = p;
            char *c = p ? strchr(p, ',') : NULL;
            if (c)
                *c = 0, p = c + 1;
            else
                p = NULL;
            if (fields[i])
                trim(fields[i]);
        }
        long type = parse_num(fields[1], types, typev);
        long sub = parse_num(fields[2], type == 0 ? app_sub : type == 1 ? data_sub : NULL,
                             type == 0 ? app_subv : data_subv);
        long align = type == 0 ? 0x10000 : 0x1000;
        long off = fields[3] && *fields[3] ? parse_num(fields[3], NULL, NULL) : (last_end + align - 1) / align * align;
        long size = parse_num(fields[4], NULL, NULL);
        uint8_t *e = t + 32 * n++;
        memset(e, 0, 32);
        e[0] = 0xaa, e[1] = 0x50, e[2] = (uint8_t)type, e[3] = (uint8_t)sub;
        wr32(e + 4, (uint32_t)off);
        wr32(e + 8, (uint32_t)size);
        strncpy((char *)e + 12, fields[0], 16);
        EVP_DigestUpdate(md5, e, 32);
        last_end = off + size;
    }
    fclose(f);
    uint8_t *m = t + 32 * n;
    memset(m, 0xff, 32);
    m[0] = 0xeb, m[1] = 0xeb;
    EVP_DigestFinal_ex(md5, m + 16, NULL);
    EVP_MD_CTX_free(md5);
    return flash;
}

static const esp_partition_t *find_in(uint8_t *flash, const char *label, esp_partition_t *out) {
    for (int i = 0; i < 95; i++) {
        const uint8_t *e = flash + 0x8000 + 32 * i;
        if (e[0] != 0xaa || e[1] != 0x50)
            break;
        if (strncmp((const char *)e + 12, label, 16) == 0) {
            memset(out, 0, sizeof(*out));
            out->address = rd32(e + 4);
            out->size = rd32(e + 8);
            return out;
        }
    }
    return NULL;
}

void flash_put_image(uint8_t *flash, int slot, const uint8_t *img, size_t len) {
    char label[8];
    snprintf(label, sizeof(label), "ota_%d", slot);
    esp_partition_t p;
    CHECK(find_in(flash, label, &p));
    CHECK(len <= p.size);
    memset(flash + p.address, 0xff, (len + 4095) / 4096 * 4096);
    memcpy(flash + p.address, img, len);
}

const esp_partition_t *part(const char *label) {
    const esp_partition_t *p = fake_partition_by_label(label);
    CHECK(p, "partition %s", label);
    return p;
}

// --- images ---------------------------------------------------------------------------------------

static uint32_t xorshift(uint32_t *s) {
    uint32_t x = *s;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    return *s = x ? x : 0x9e3779b9;
}

uint8_t *build_app_image(const char *version, size_t size, uint16_t chip, uint32_t seed, size_t *len) {
    uint32_t s = seed | 1;
    size_t l0 = ((size / 2) & ~(size_t)3) < 256 ? 256 : (size / 2) & ~(size_t)3;
    size_t l1 = ((size / 8) & ~(size_t)3) ? (size / 8) & ~(size_t)3 : 4;
    size_t used = 24 + 3 * 8 + l0 + l1 + 1 + 32;
    size_t l2 = size > used + 4 ? (size - used) & ~(size_t)3 : 4;
    struct {
        uint32_t addr;
        size_t len;
    } seg[3] = {{0x3C000020, l0}, {0x3FC92A00, l1}, {0x40374000, l2}};
    size_t end = 24;
    for (int i = 0; i < 3; i++)
        end += 8 + seg[i].len;
    size_t cks = end + (15 - end % 16);
    size_t total = cks + 1 + 32;
    uint8_t *b = calloc(1, total);
    b[0] = 0xE9, b[1] = 3, b[2] = 2, b[3] = 0x1f;
    wr32(b + 4, seg[2].addr);
    b[8] = 0xee;
    b[12] = (uint8_t)chip, b[13] = (uint8_t)(chip >> 8);
    b[17] = 99;
    b[23] = 1;
    size_t pos = 24;
    uint8_t checksum = 0xEF;
    for (int i = 0; i < 3; i++) {
        wr32(b + pos, seg[i].addr);
        wr32(b + pos + 4, (uint32_t)seg[i].len);
        pos += 8;
        for (size_t k = 0; k < seg[i].len; k += 4)
            wr32(b + pos + k, xorshift(&s));
        if (i == 0) { // esp_app_desc_t
            memset(b + pos, 0, 256);
            wr32(b + pos, 0xABCD5432);
            snprintf((char *)b + pos + 16, 32, "%s", version);
            snprintf((char *)b + pos + 48, 32, "%s", "unit-test-app");
            b[pos + 180] = 16;
        }
        for (size_t k = 0; k < seg[i].len; k++)
            checksum ^= b[pos + k];
        pos += seg[i].len;
    }
    b[cks] = checksum;
    sha256(b, cks + 1, b + cks + 1);
    *len = total;
    return b;
}

uint8_t *build_devs_image(size_t size, uint32_t seed) {
    CHECK(size % 32 == 0 && size > 200);
    uint32_t s = seed | 1;
    uint8_t *b = malloc(size);
    for (size_t i = 0; i < size; i++)
        b[i] = (uint8_t)xorshift(&s);
    memset(b, 0, 112);
    wr32(b, 0x53766544);
    wr32(b + 4, 0xf1296e0a);
    wr32(b + 8, 0x02100004);
    uint32_t start = 112, chunk = (uint32_t)((size - 112) / 10) & ~3u;
    for (int i = 0; i < 10; i++) {
        wr32(b + 32 + i * 8, start);
        wr32(b + 36 + i * 8, chunk);
        start += chunk;
    }
    return b;
}

// --- bootloader (sim/bootloader.ts boot(), on the flash directly) -------------------------------------

typedef struct {
    uint32_t seq;
    uint8_t label[20];
    uint32_t state;
    uint32_t crc;
} entry_t;

static uint32_t entry_crc(uint32_t seq) {
    uint8_t b[4];
    wr32(b, seq);
    return fake_crc32_le(UINT32_MAX, b, 4);
}

static void read_entries(entry_t e[2]) {
    const esp_partition_t *od = part("otadata");
    memcpy(&e[0], fake_flash_mem() + od->address, sizeof(entry_t));
    memcpy(&e[1], fake_flash_mem() + od->address + 4096, sizeof(entry_t));
}

static void write_entry(int i, const entry_t *e) {
    const esp_partition_t *od = part("otadata");
    uint8_t *at = fake_flash_mem() + od->address + (uint32_t)i * 4096;
    memset(at, 0xff, 4096);
    memcpy(at, e, sizeof(*e));
}

static bool entry_invalid(const entry_t *e) {
    return e->seq == UINT32_MAX || e->state == 3 || e->state == 4;
}

static bool entry_valid(const entry_t *e) {
    return !entry_invalid(e) && e->crc == entry_crc(e->seq);
}

static int active_entry(const entry_t e[2]) {
    bool v0 = entry_valid(&e[0]), v1 = entry_valid(&e[1]);
    if (v0 && v1)
        return e[0].seq >= e[1].seq ? 0 : 1;
    return v0 ? 0 : v1 ? 1 : -1;
}

bool slot_image_valid(int slot, uint32_t *len) {
    const esp_partition_t *p = fake_ota_slot(slot);
    uint32_t l = 0;
    bool ok = p && fake_image_check(p->address, p->size, &l) == ESP_OK;
    if (len)
        *len = l;
    return ok;
}

int otadata_boot_slot(void) {
    entry_t e[2];
    read_entries(e);
    int a = active_entry(e);
    return a < 0 ? 0 : (int)((e[a].seq - 1) % 2);
}

static int slot_state(int slot) {
    entry_t e[2];
    read_entries(e);
    for (int i = 0; i < 2; i++)
        if (e[i].crc == entry_crc(e[i].seq) && (int)((e[i].seq - 1) % 2) == slot)
            return (int)e[i].state;
    return -1;
}

boot_result_t bootloader_run(void) {
    entry_t e[2];
    read_entries(e);
    for (int i = 0; i < 2; i++)
        if (e[i].state == 1) { // PENDING_VERIFY at boot: never confirmed
            e[i].state = 4;
            write_entry(i, &e[i]);
        }
    int start = 0;
    bool initial = false;
    if (entry_invalid(&e[0]) && entry_invalid(&e[1])) {
        initial = (e[0].seq == UINT32_MAX || e[0].crc != entry_crc(e[0].seq)) &&
                  (e[1].seq == UINT32_MAX || e[1].crc != entry_crc(e[1].seq));
    } else {
        int a = active_entry(e);
        if (a >= 0) {
            start = (int)((e[a].seq - 1) % 2);
            if (e[a].state == 0) {
                e[a].state = 1;
                write_entry(a, &e[a]);
            }
        }
    }
    int order[2] = {start, start == 0 ? 1 : 0};
    for (int k = 0; k < 2; k++) {
        int slot = order[k];
        if (!slot_image_valid(slot, NULL))
            continue;
        if (initial) {
            entry_t n;
            memset(&n, 0xff, sizeof(n));
            n.seq = (uint32_t)slot + 1;
            n.state = 2;
            n.crc = entry_crc(n.seq);
            write_entry(0, &n);
        }
        boot_result_t r = {slot, slot_state(slot) == 1};
        return r;
    }
    t_fail(__FILE__, __LINE__, "no bootable app partition");
}

boot_result_t reboot_device(void) {
    dev_power_off();
    boot_result_t b = bootloader_run();
    fake_jd_sent_clear();
    dev_power_on(b.slot);
    return b;
}

// --- client -------------------------------------------------------------------------------------------

const fake_sent_t *last_report(uint16_t cmd) {
    for (int i = fake_jd_sent_count() - 1; i >= 0; i--) {
        const fake_sent_t *s = fake_jd_sent(i);
        if (s->kind == SENT_REPORT && s->code == cmd)
            return s;
    }
    return NULL;
}

const fake_sent_t *last_event(uint16_t code) {
    for (int i = fake_jd_sent_count() - 1; i >= 0; i--) {
        const fake_sent_t *s = fake_jd_sent(i);
        if (s->kind == SENT_EVENT && s->code == code)
            return s;
    }
    return NULL;
}

int count_sent(uint8_t kind, uint16_t code) {
    int n = 0;
    for (int i = 0; i < fake_jd_sent_count(); i++)
        n += fake_jd_sent(i)->kind == kind && fake_jd_sent(i)->code == code;
    return n;
}

begin_report_t client_begin(uint32_t size, uint8_t target, uint8_t flags, const uint8_t *sha) {
    uint8_t p[40];
    memset(p, 0, sizeof(p));
    wr32(p, size);
    p[4] = target;
    p[5] = flags;
    if (sha)
        memcpy(p + 8, sha, 32);
    fake_jd_sent_clear();
    dev_command(JD_OTA_UPDATER_CMD_BEGIN, p, sha ? 40 : 8, 0);
    begin_report_t r = {0};
    const fake_sent_t *s = last_report(JD_OTA_UPDATER_CMD_BEGIN);
    if (s && s->len == 12) {
        r.got = true;
        r.error = s->data[0];
        r.slot = s->data[1];
        r.max_image_size = rd32(s->data + 4);
        r.next_offset = rd32(s->data + 8);
    }
    return r;
}

write_report_t client_write(uint32_t offset, const uint8_t *data, uint32_t len) {
    uint8_t p[240];
    wr32(p, offset);
    memcpy(p + 4, data, len);
    fake_jd_sent_clear();
    dev_command(JD_OTA_UPDATER_CMD_WRITE, p, 4 + len, 0);
    write_report_t r = {0};
    const fake_sent_t *s = last_report(JD_OTA_UPDATER_CMD_WRITE);
    if (s) {
        CHECK_EQ(s->len, 5);
        r.got = true;
        r.next_offset = rd32(s->data);
        r.error = s->data[4];
    }
    return r;
}

commit_report_t client_commit(void) {
    fake_jd_sent_clear();
    dev_command(JD_OTA_UPDATER_CMD_COMMIT, NULL, 0, 0);
    commit_report_t r = {0};
    const fake_sent_t *s = last_report(JD_OTA_UPDATER_CMD_COMMIT);
    if (s) {
        CHECK_EQ(s->len, 2);
        r.got = true;
        r.error = s->data[0];
        r.slot = s->data[1];
    }
    return r;
}

int client_simple(uint16_t cmd) {
    fake_jd_sent_clear();
    dev_command(cmd, NULL, 0, 0);
    const fake_sent_t *s = last_report(cmd);
    return s && s->len == 1 ? s->data[0] : -1;
}

uint32_t reg_u32(uint16_t reg) {
    uint8_t b[8];
    int n = dev_register(reg, b, sizeof(b));
    CHECK_EQ(n, 4);
    return rd32(b);
}

uint8_t reg_u8(uint16_t reg) {
    uint8_t b[8];
    int n = dev_register(reg, b, sizeof(b));
    CHECK_EQ(n, 1);
    return b[0];
}

int run_tests(const test_t *tests, size_t count, int argc, char **argv, const char *label) {
    int ran = 0;
    for (size_t i = 0; i < count; i++) {
        bool selected = argc == 2;
        for (int a = 2; a < argc; a++)
            selected |= strcmp(argv[a], tests[i].name) == 0;
        if (!selected)
            continue;
        printf("%s (ESP-IDF %d.%d%s)\n", tests[i].name, ESP_IDF_VERSION_MAJOR, ESP_IDF_VERSION_MINOR, label);
        tests[i].fn();
        ran++;
    }
    return ran;
}
