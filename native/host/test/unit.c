// C unit tests of the OTA updater on the host fakes: what the conformance vectors cannot
// reach. Usage: otaupdater-unit <firmware/partitions.csv> [test name ...]
//
// - power_cut_every_change: a 30 KB update with the power cut before every flash write and
//   erase in turn (begin to reboot); after each cut otadata never selects an unvalidated
//   image, the bootloader starts a valid one, the update resumes from its checkpoint and ends
//   on exactly the new image, confirmed.
// - write_before_erase: the flash fake aborts on a write over bytes that are not erased.
// - full_slot_budget: a 1.76 MB image, cut at ~60%, resumed (re-hash in steps), committed and
//   confirmed, every call into the server within the 100 ms main-loop budget.
// - worker_commit: esp_ota_end / set_boot run on the worker task; the main loop answers
//   register reads meanwhile and holds later commands until the report.
// - program_copy: a program update: staged, checked, reported, then copied into the program
//   store in 2 KB pieces from process().
// - program_power_cut: the power cut before every flash change of commit + copy; after the
//   reboot the store holds exactly the old or the new program, the record is gone.
// - program_record_stale: a program record whose staged bytes changed is dropped.
// - first_write_magic, queue_overflow, take_back_boot_switch, resume_record_format.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "support.h"
#include "jd_otaupdater_spec.h"
#include "jd_protocol.h"
#include "devicescript.h"
#include "otaupdater.h"
#include "esp_idf_version.h"
#include "sdkconfig.h"

#define CHUNK JD_OTA_UPDATER_LIMITS_WRITE_BYTES
#define SECTOR JD_OTA_UPDATER_LIMITS_SECTOR_BYTES
#define RESUME JD_OTA_UPDATER_BEGIN_FLAGS_RESUME

static const char *g_csv;
static uint8_t *g_base; // blank flash with the table and v1 in ota_0
static uint8_t *g_v1;
static size_t g_v1_len;

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/** A device fresh from the factory: v1 in ota_0, otadata blank, nothing in NVS. */
static void fresh_device(void) {
    fake_flash_open_mem(g_base);
    fake_flash_arm_cut(0, CUT_ANY_CHANGE);
    boot_result_t b = reboot_device();
    CHECK_EQ(b.slot, 0);
}

typedef struct {
    uint32_t acked_checkpoint; // last sector boundary whose write was acknowledged
    uint32_t attempted;        // end of the last write sent
    uint32_t resumed_at;       // next_offset of the last begin
    bool commit_sent;
} run_t;

/**
 * begin (with the resume flag), every write from next_offset, commit, reboot. False when the
 * device stopped before the reboot command (a power cut).
 */
static bool run_update(const uint8_t *img, size_t len, const uint8_t sha[32], uint8_t target, run_t *r) {
    begin_report_t b = client_begin((uint32_t)len, target, RESUME, sha);
    if (dev_halted())
        return false;
    CHECK(b.got && b.error == 0, "begin error %d", b.error);
    CHECK(b.next_offset % SECTOR == 0 && b.next_offset <= len, "next_offset %u", b.next_offset);
    r->resumed_at = b.next_offset;
    for (uint32_t off = b.next_offset; off < len;) {
        uint32_t n = len - off < CHUNK ? (uint32_t)(len - off) : CHUNK;
        r->attempted = off + n;
        write_report_t w = client_write(off, img + off, n);
        if (dev_halted())
            return false;
        CHECK(w.got && w.error == 0 && w.next_offset == off + n, "write at %u: error %d next %u", off, w.error,
              w.next_offset);
        off += n;
        if (off / SECTOR * SECTOR > r->acked_checkpoint)
            r->acked_checkpoint = off / SECTOR * SECTOR;
    }
    r->commit_sent = true;
    commit_report_t c = client_commit();
    if (dev_halted())
        return false;
    CHECK(c.got && c.error == 0, "commit error %d", c.error);
    dev_command(JD_OTA_UPDATER_CMD_REBOOT, NULL, 0, 500);
    CHECK(dev_halted() == HALT_RESTART, "reboot did not restart");
    CHECK(fake_restart_requested());
    return true;
}

static void check_slot_holds(int slot, const uint8_t *img, size_t len) {
    const esp_partition_t *p = fake_ota_slot(slot);
    CHECK(memcmp(fake_flash_mem() + p->address, img, len) == 0, "ota_%d does not hold the image", slot);
    uint32_t l = 0;
    CHECK(slot_image_valid(slot, &l) && l == len);
}

static void finish_confirmed(int slot, const char *version) {
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_RUNNING_SLOT), slot);
    uint8_t v[40];
    int n = dev_register(JD_OTA_UPDATER_REG_RUNNING_VERSION, v, sizeof(v));
    CHECK(n == (int)strlen(version) && memcmp(v, version, (size_t)n) == 0);
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_PENDING_VERIFY), 1);
    CHECK_EQ(client_simple(JD_OTA_UPDATER_CMD_CONFIRM), 0);
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_PENDING_VERIFY), 0);
}

// --- tests ------------------------------------------------------------------------------------------

static void test_power_cut_every_change(void) {
    size_t len;
    uint8_t *v2 = build_app_image("2.0.0", 30000, 9, 2, &len), sha[32];
    sha256(v2, len, sha);

    fresh_device();
    fake_flash_arm_cut(0, CUT_ANY_CHANGE); // counts from here
    run_t ref = {0};
    CHECK(run_update(v2, len, sha, JD_OTA_UPDATER_TARGET_SPARE, &ref));
    long total = fake_flash_count(CUT_ANY_CHANGE);
    CHECK(total > 100, "only %ld flash changes", total);

    int resumed_mid = 0, done_before_cut = 0;
    for (long n = 1; n <= total; n++) {
        fresh_device();
        fake_flash_arm_cut(n, CUT_ANY_CHANGE);
        run_t r = {0};
        CHECK(!run_update(v2, len, sha, JD_OTA_UPDATER_TARGET_SPARE, &r), "cut %ld did not happen", n);
        CHECK(fake_power_lost());
        // nothing unvalidated is ever selected for boot
        if (otadata_boot_slot() == 1)
            check_slot_holds(1, v2, len);
        boot_result_t b = reboot_device();
        if (b.slot == 1) { // the boot switch was made before the cut
            check_slot_holds(1, v2, len);
            CHECK(b.pending_verify);
            done_before_cut++;
        } else {
            CHECK_EQ(b.slot, 0);
            run_t r2 = {0};
            CHECK(run_update(v2, len, sha, JD_OTA_UPDATER_TARGET_SPARE, &r2), "no cut armed, yet stopped (cut %ld)", n);
            // resumed from a checkpoint that is in flash and no older than the last acknowledged one
            CHECK(r2.resumed_at <= r.attempted, "cut %ld: resumed at %u past %u", n, r2.resumed_at, r.attempted);
            if (!r.commit_sent)
                CHECK(r2.resumed_at >= r.acked_checkpoint, "cut %ld: resumed at %u before the acknowledged %u", n,
                      r2.resumed_at, r.acked_checkpoint);
            resumed_mid += r2.resumed_at > 0;
            b = reboot_device();
            CHECK_EQ(b.slot, 1);
        }
        check_slot_holds(1, v2, len);
        finish_confirmed(1, "2.0.0");
        dev_power_off();
    }
    printf("  %ld cuts: %d resumed from a checkpoint, %d after the boot switch\n", total, resumed_mid,
           done_before_cut);
    CHECK(resumed_mid > 100);
    free(v2);
}

/**
 * Runs `body` in a forked child with its stdout and stderr captured into `out` (NUL
 * terminated); returns the child's wait status. For checks that must abort.
 */
static int run_in_child(void (*body)(void), char *out, size_t cap) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        body();
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t k;
    while (got < cap - 1 && (k = read(fds[0], out + got, cap - 1 - got)) > 0)
        got += (size_t)k;
    out[got] = 0;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

// ota_1 is blank: the first write is fine, the second hits written bytes
static void write_twice(void) {
    fake_flash_open_mem(g_base);
    fake_set_main_thread();
    const esp_partition_t *p = part("ota_1");
    uint8_t a[4] = {1, 2, 3, 4};
    if (esp_partition_write(p, 100, a, 4) != ESP_OK)
        _exit(3);
    esp_partition_write(p, 102, a, 4); // the fake aborts
}

static void test_write_before_erase(void) {
    char out[4096];
    int status = run_in_child(write_twice, out, sizeof(out));
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "the write over written bytes did not abort");
    CHECK(strstr(out, "not erased") && strstr(out, "erase before write"), "message: %s", out);

    // and the power cut: nothing after it reaches flash, the device stops
    fresh_device();
    uint8_t before[SECTOR];
    memcpy(before, fake_flash_mem() + part("ota_1")->address, SECTOR);
    fake_flash_arm_cut(1, CUT_DATA_WRITES);
    size_t len;
    uint8_t *v2 = build_app_image("2.0.0", 9000, 9, 3, &len), sha[32];
    sha256(v2, len, sha);
    begin_report_t b = client_begin((uint32_t)len, JD_OTA_UPDATER_TARGET_SPARE, 0, sha);
    CHECK(b.got && b.error == 0);
    write_report_t w = client_write(0, v2, CHUNK);
    CHECK(!w.got && dev_halted() == HALT_POWER && fake_power_lost());
    // the sector was erased (erases are not counted), the write never happened
    const uint8_t *s = fake_flash_mem() + part("ota_1")->address;
    for (int i = 0; i < CHUNK; i++)
        CHECK(s[i] == 0xff);
    (void)before;
    dev_power_off();
    free(v2);
}

/** The budget check itself: a 30 ms budget cannot hold a sector erase (45 ms) in a write. */
// a first write erases a 4 KB sector (45 ms) inside one handle_packet call
static void write_with_30ms_budget(void) {
    dev_set_budget_us(30000);
    fresh_device();
    size_t len;
    uint8_t *v2 = build_app_image("2.0.0", 9000, 9, 3, &len);
    client_begin((uint32_t)len, JD_OTA_UPDATER_TARGET_SPARE, 0, NULL);
    client_write(0, v2, CHUNK); // the harness aborts
}

static void test_budget_enforced(void) {
    char out[8192];
    int status = run_in_child(write_with_30ms_budget, out, sizeof(out));
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "a 45 ms call passed a 30 ms budget");
    CHECK(strstr(out, "main-loop budget exceeded: otaupdater_handle_packet(0x81)"), "message: %s", out);
}

static void test_full_slot_budget(void) {
    size_t len;
    uint8_t *big = build_app_image("3.0.0", 1760000, 9, 7, &len), sha[32];
    sha256(big, len, sha);
    fresh_device();
    CHECK(len <= part("ota_1")->size);
    dev_reset_stats();
    fake_flash_arm_cut((long)(len * 6 / 10 / CHUNK), CUT_DATA_WRITES);
    run_t r = {0};
    CHECK(!run_update(big, len, sha, JD_OTA_UPDATER_TARGET_SPARE, &r) && fake_power_lost());
    reboot_device();

    long calls0 = dev_stats()->calls;
    int64_t t0 = fake_now_us();
    begin_report_t b = client_begin((uint32_t)len, JD_OTA_UPDATER_TARGET_SPARE, RESUME, sha);
    CHECK(b.got && b.error == 0 && b.next_offset > len / 2, "resumed at %u", b.next_offset);
    long rehash_calls = dev_stats()->calls - calls0;
    int64_t rehash_ms = (fake_now_us() - t0) / 1000;
    CHECK(rehash_calls > 5, "the re-hash took %ld calls", rehash_calls);

    run_t r2 = {0};
    CHECK(run_update(big, len, sha, JD_OTA_UPDATER_TARGET_SPARE, &r2)); // begin again (resumes again), writes, commit, reboot
    boot_result_t boot = reboot_device();
    CHECK_EQ(boot.slot, 1);
    check_slot_holds(1, big, len);
    finish_confirmed(1, "3.0.0");
    const dev_stats_t *st = dev_stats();
    printf("  re-hash of %u bytes: %ld main-loop calls, %lld ms; longest main-loop call %.1f ms (%s), budget %.0f ms\n",
           b.next_offset, rehash_calls, (long long)rehash_ms, st->max_call_us / 1000.0, st->max_call_what,
           dev_budget_us() / 1000.0);
    CHECK(st->max_call_us <= dev_budget_us());
    dev_power_off();
    free(big);
}

static void test_worker_commit(void) {
    size_t len;
    uint8_t *v2 = build_app_image("2.0.0", 400000, 9, 5, &len), sha[32];
    sha256(v2, len, sha);
    fresh_device();
    begin_report_t b = client_begin((uint32_t)len, JD_OTA_UPDATER_TARGET_SPARE, 0, sha);
    CHECK(b.got && b.error == 0);
    for (uint32_t off = 0; off < len; off += CHUNK) {
        uint32_t n = len - off < CHUNK ? (uint32_t)(len - off) : CHUNK;
        write_report_t w = client_write(off, v2 + off, n);
        CHECK(w.got && w.error == 0);
    }
    long main0, tasks0, main1, tasks1;
    fake_image_verify_counts(&main0, &tasks0);
    fake_rtos_hold(true); // the worker does not take its job yet
    fake_jd_sent_clear();
    dev_deliver(JD_OTA_UPDATER_CMD_COMMIT, NULL, 0);
    dev_turns(50, 1000);
    CHECK(!last_report(JD_OTA_UPDATER_CMD_COMMIT), "commit answered before the image was checked");
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_STATE), JD_OTA_UPDATER_STATE_VALIDATING);
    CHECK_EQ(reg_u32(JD_OTA_UPDATER_REG_BYTES_WRITTEN), len);
    uint8_t w[5] = {0, 0, 0, 0, 0xe9};
    dev_deliver(JD_OTA_UPDATER_CMD_WRITE, w, sizeof(w));
    CHECK(!last_report(JD_OTA_UPDATER_CMD_WRITE), "a write was handled while commit was under way");
    CHECK(otaupdater_busy());
    fake_rtos_hold(false);
    dev_run(0);
    fake_image_verify_counts(&main1, &tasks1);
    CHECK_EQ(main1 - main0, 0);
    CHECK(tasks1 - tasks0 >= 2, "esp_ota_end and esp_ota_set_boot_partition on the worker");
    // in order: event ready, commit's report, then the write's (now refused: the update is committed)
    int n = fake_jd_sent_count();
    CHECK_EQ(n, 3);
    CHECK(fake_jd_sent(0)->kind == SENT_EVENT && fake_jd_sent(0)->code == JD_OTA_UPDATER_EV_READY);
    CHECK(fake_jd_sent(1)->code == JD_OTA_UPDATER_CMD_COMMIT && fake_jd_sent(1)->data[0] == 0 &&
          fake_jd_sent(1)->data[1] == 1);
    CHECK(fake_jd_sent(2)->code == JD_OTA_UPDATER_CMD_WRITE &&
          fake_jd_sent(2)->data[4] == JD_OTA_UPDATER_ERROR_INVALID_STATE);
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_STATE), JD_OTA_UPDATER_STATE_READY);
    CHECK_EQ(otadata_boot_slot(), 1);
    dev_power_off();
    free(v2);
}

static void install_old_program(const uint8_t *p0, uint32_t len) {
    // what `devs` deployed before: the runtime's own deploy
    CHECK_EQ(devsmgr_deploy_start(len), 0);
    for (uint32_t o = 0; o < len; o += 128)
        CHECK_EQ(devsmgr_deploy_write(p0 + o, 128), 0);
    CHECK_EQ(devsmgr_deploy_write(NULL, 0), 0);
}

static bool store_holds(const uint8_t *p, uint32_t len) {
    uint32_t l = 0;
    uint8_t *prog = fake_devs_program(&l);
    bool same = prog && l == len && memcmp(prog, p, len) == 0;
    free(prog);
    return same;
}

static void program_upload(const uint8_t *p1, uint32_t len, const uint8_t sha[32]) {
    begin_report_t b = client_begin(len, JD_OTA_UPDATER_TARGET_PROGRAM, RESUME, sha);
    CHECK(b.got && b.error == 0 && b.slot == JD_OTA_UPDATER_TARGET_PROGRAM);
    CHECK_EQ(b.max_image_size, JD_OTA_UPDATER_LIMITS_PROGRAM_BYTES); // below progstage (256 KB)
    for (uint32_t off = b.next_offset; off < len; off += CHUNK) {
        uint32_t n = len - off < CHUNK ? len - off : CHUNK;
        write_report_t w = client_write(off, p1 + off, n);
        CHECK(w.got && w.error == 0);
    }
}

static void test_program_copy(void) {
    uint32_t l0 = 4096, l1 = 10240;
    uint8_t *p0 = build_devs_image(l0, 11), *p1 = build_devs_image(l1, 12), sha[32];
    sha256(p1, l1, sha);
    fresh_device();
    install_old_program(p0, l0);
    int restarts = fake_devs_restarts();
    program_upload(p1, l1, sha);
    fake_devs_clear_stats();
    fake_jd_sent_clear();
    dev_deliver(JD_OTA_UPDATER_CMD_COMMIT, NULL, 0);
    dev_turns(20, 1000); // 20 ms: the report is out, the copy not started
    CHECK(count_sent(SENT_EVENT, JD_OTA_UPDATER_EV_READY) == 1 && last_event(JD_OTA_UPDATER_EV_READY)->data[0] == JD_OTA_UPDATER_TARGET_PROGRAM);
    const fake_sent_t *c = last_report(JD_OTA_UPDATER_CMD_COMMIT);
    CHECK(c && c->data[0] == 0 && c->data[1] == JD_OTA_UPDATER_TARGET_PROGRAM);
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_STATE), JD_OTA_UPDATER_STATE_READY);
    CHECK(store_holds(p0, l0));
    dev_run(0);
    CHECK(store_holds(p1, l1));
    CHECK_EQ(fake_devs_restarts(), restarts + 1);
    unsigned pieces, max_piece, starts;
    fake_devs_stats(&pieces, &max_piece, &starts);
    CHECK_EQ(starts, 1);
    CHECK_EQ(pieces, (l1 + 2047) / 2048);
    CHECK_EQ(max_piece, 2048);
    printf("  devsmgr_deploy_start (the runtime's erase of the store) took %.1f ms of main-loop time\n",
           dev_stats()->max_runtime_call_us / 1000.0);
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_STATE), JD_OTA_UPDATER_STATE_IDLE);
    CHECK_EQ(reg_u32(JD_OTA_UPDATER_REG_IMAGE_SIZE), 0);
    uint8_t rec[64];
    CHECK_EQ(fake_nvs_peek("otaupdater/program", rec, sizeof(rec)), -1);
    CHECK_EQ(fake_nvs_peek("otaupdater/resume", rec, sizeof(rec)), -1);
    // the firmware slots and otadata were not touched
    CHECK_EQ(otadata_boot_slot(), 0);

    // a program whose size is not a multiple of 32 (the runtime's unit): the store gets it
    // padded with zeros (devsmgr_deploy_start refuses other sizes)
    uint32_t l2 = 9000;
    uint8_t *p2 = build_devs_image(9024, 13), sha2[32];
    memset(p2 + l2, 0, 24);
    sha256(p2, l2, sha2);
    program_upload(p2, l2, sha2);
    fake_devs_clear_stats();
    commit_report_t cr = client_commit();
    CHECK(cr.got && cr.error == 0);
    CHECK(store_holds(p2, 9024));
    fake_devs_stats(&pieces, &max_piece, &starts);
    CHECK_EQ(pieces, 5);
    dev_power_off();
    free(p0), free(p1), free(p2);
}

static void test_program_power_cut(void) {
    uint32_t l0 = 4096, l1 = 12288 + 96;
    uint8_t *p0 = build_devs_image(l0, 21), *p1 = build_devs_image(l1, 22), sha[32];
    sha256(p1, l1, sha);
    // reference: flash changes of commit + copy
    fresh_device();
    install_old_program(p0, l0);
    program_upload(p1, l1, sha);
    fake_flash_arm_cut(0, CUT_ANY_CHANGE);
    commit_report_t c = client_commit();
    CHECK(c.got && c.error == 0 && store_holds(p1, l1));
    long total = fake_flash_count(CUT_ANY_CHANGE);
    int got_new = 0, kept_old = 0;
    for (long n = 1; n <= total; n++) {
        fresh_device();
        install_old_program(p0, l0);
        program_upload(p1, l1, sha);
        fake_flash_arm_cut(n, CUT_ANY_CHANGE);
        client_commit();
        CHECK(fake_power_lost(), "cut %ld did not happen", n);
        reboot_device(); // the program record, if any, is acted on at start
        CHECK(!otaupdater_busy());
        bool is_new = store_holds(p1, l1), is_old = store_holds(p0, l0);
        CHECK(is_new || is_old, "cut %ld: the store holds neither program", n);
        got_new += is_new, kept_old += is_old;
        uint8_t rec[64];
        CHECK_EQ(fake_nvs_peek("otaupdater/program", rec, sizeof(rec)), -1);
        dev_power_off();
    }
    printf("  %ld cuts: %d ended on the new program, %d on the old one\n", total, got_new, kept_old);
    CHECK(got_new > 0 && kept_old > 0);
    free(p0), free(p1);
}

static void test_program_record_stale(void) {
    uint32_t l0 = 4096, l1 = 8192;
    uint8_t *p0 = build_devs_image(l0, 31), *p1 = build_devs_image(l1, 32), sha[32];
    sha256(p1, l1, sha);
    int restarts = 0;
    // commit, and stop right after the program record was written
    uint8_t rec[64];
    for (long n = 1;; n++) {
        fresh_device();
        install_old_program(p0, l0);
        program_upload(p1, l1, sha);
        restarts = fake_devs_restarts();
        fake_flash_arm_cut(n, CUT_ANY_CHANGE);
        client_commit();
        CHECK(fake_power_lost());
        if (fake_nvs_peek("otaupdater/program", rec, sizeof(rec)) == 40)
            break;
    }
    // the staged bytes change before the next start: the record no longer matches them
    const esp_partition_t *ps = part("progstage");
    fake_flash_mem()[ps->address + 200] ^= 0x01;
    reboot_device();
    CHECK_EQ(fake_nvs_peek("otaupdater/program", rec, sizeof(rec)), -1);
    CHECK_EQ(fake_devs_restarts(), restarts); // nothing deployed
    dev_power_off();
    free(p0), free(p1);
}

static void test_first_write_magic(void) {
    size_t len;
    uint8_t *v2 = build_app_image("2.0.0", 9000, 9, 4, &len);
    fresh_device();
    const esp_partition_t *p = part("ota_1");
    uint8_t *before = malloc(p->size);
    memcpy(before, fake_flash_mem() + p->address, p->size);
    begin_report_t b = client_begin((uint32_t)len, JD_OTA_UPDATER_TARGET_SPARE, 0, NULL);
    CHECK(b.got && b.error == 0);
    uint8_t html[CHUNK];
    memset(html, ' ', sizeof(html));
    memcpy(html, "<!DOCTYPE html>", 15);
    write_report_t w = client_write(0, html, sizeof(html));
    CHECK(w.got && w.error == JD_OTA_UPDATER_ERROR_NOT_APP_IMAGE && w.next_offset == 0);
    CHECK(last_event(JD_OTA_UPDATER_EV_FAILED) && last_event(JD_OTA_UPDATER_EV_FAILED)->data[0] == 5);
    CHECK(memcmp(before, fake_flash_mem() + p->address, p->size) == 0, "the slot was touched");
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_STATE), JD_OTA_UPDATER_STATE_ERROR);
    // the same for a program: the bytecode magic
    b = client_begin(4096, JD_OTA_UPDATER_TARGET_PROGRAM, 0, NULL);
    CHECK(b.got && b.error == 0);
    w = client_write(0, v2, CHUNK);
    CHECK(w.got && w.error == JD_OTA_UPDATER_ERROR_NOT_APP_IMAGE);
    // wrong chip is told apart from a bad image
    size_t lc;
    uint8_t *c3 = build_app_image("2.0.0", 9000, 5, 4, &lc);
    b = client_begin((uint32_t)lc, JD_OTA_UPDATER_TARGET_SPARE, 0, NULL);
    for (uint32_t off = 0; off < lc; off += CHUNK)
        client_write(off, c3 + off, lc - off < CHUNK ? (uint32_t)(lc - off) : CHUNK);
    commit_report_t cr = client_commit();
    CHECK(cr.got && cr.error == JD_OTA_UPDATER_ERROR_WRONG_CHIP);
    dev_power_off();
    free(before), free(v2), free(c3);
}

static void test_queue_overflow(void) {
    size_t len;
    uint8_t *v2 = build_app_image("2.0.0", 30000, 9, 6, &len), sha[32];
    sha256(v2, len, sha);
    fresh_device();
    begin_report_t b = client_begin((uint32_t)len, JD_OTA_UPDATER_TARGET_SPARE, 0, sha);
    CHECK(b.got && b.error == 0);
    uint32_t off = 0;
    while (off + CHUNK < SECTOR) {
        client_write(off, v2 + off, CHUNK);
        off += CHUNK;
    }
    // this write completes sector 0: its report waits for the resume record (process());
    // the next ones arrive before any main-loop turn
    fake_jd_sent_clear();
    uint8_t pkt[4 + CHUNK];
    for (int i = 0; i < CONFIG_OTAUPDATER_QUEUE_LEN + 3; i++) {
        uint32_t o = off + (uint32_t)i * CHUNK;
        pkt[0] = (uint8_t)o, pkt[1] = (uint8_t)(o >> 8), pkt[2] = (uint8_t)(o >> 16), pkt[3] = (uint8_t)(o >> 24);
        memcpy(pkt + 4, v2 + o, CHUNK);
        dev_deliver(JD_OTA_UPDATER_CMD_WRITE, pkt, sizeof(pkt));
    }
    // the first is pending, 8 wait in the queue, the last 2 are answered at once: bad_offset
    CHECK_EQ(fake_jd_sent_count(), 2);
    for (int i = 0; i < 2; i++) {
        const fake_sent_t *s = fake_jd_sent(i);
        CHECK(s->code == JD_OTA_UPDATER_CMD_WRITE && s->data[4] == JD_OTA_UPDATER_ERROR_BAD_OFFSET);
    }
    dev_run(0);
    CHECK_EQ(fake_jd_sent_count(), 2 + 1 + CONFIG_OTAUPDATER_QUEUE_LEN);
    uint32_t expect = off + (uint32_t)(1 + CONFIG_OTAUPDATER_QUEUE_LEN) * CHUNK;
    CHECK_EQ(reg_u32(JD_OTA_UPDATER_REG_BYTES_WRITTEN), expect);
    for (int i = 2; i < fake_jd_sent_count(); i++)
        CHECK_EQ(fake_jd_sent(i)->data[4], 0);
    dev_power_off();
    free(v2);
}

static void test_take_back_boot_switch(void) {
    size_t len;
    uint8_t *v2 = build_app_image("2.0.0", 20000, 9, 8, &len);
    fresh_device();
    client_begin((uint32_t)len, JD_OTA_UPDATER_TARGET_SPARE, 0, NULL);
    for (uint32_t off = 0; off < len; off += CHUNK)
        client_write(off, v2 + off, len - off < CHUNK ? (uint32_t)(len - off) : CHUNK);
    commit_report_t c = client_commit();
    CHECK(c.got && c.error == 0);
    CHECK_EQ(otadata_boot_slot(), 1);
    // a new begin before the reboot drops the update: the boot switch is taken back
    begin_report_t b = client_begin((uint32_t)len, JD_OTA_UPDATER_TARGET_SPARE, 0, NULL);
    CHECK(b.got && b.error == 0);
    CHECK_EQ(otadata_boot_slot(), 0);
    // abort when idle answers none
    CHECK_EQ(client_simple(JD_OTA_UPDATER_CMD_ABORT), 0);
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_STATE), JD_OTA_UPDATER_STATE_IDLE);
    // reject while not pending verify: invalid_state, no restart
    dev_command(JD_OTA_UPDATER_CMD_REJECT, NULL, 0, 0);
    CHECK(!dev_halted());
    CHECK_EQ(reg_u8(JD_OTA_UPDATER_REG_LAST_ERROR), JD_OTA_UPDATER_ERROR_INVALID_STATE);
    dev_power_off();
    free(v2);
}

static void test_resume_record_format(void) {
    size_t len;
    uint8_t *v2 = build_app_image("2.0.0", 30000, 9, 9, &len), sha[32];
    sha256(v2, len, sha);
    fresh_device();
    client_begin((uint32_t)len, JD_OTA_UPDATER_TARGET_SPARE, 0, sha);
    uint32_t off = 0;
    while (off < 3 * SECTOR + 100) {
        client_write(off, v2 + off, CHUNK);
        off += CHUNK;
    }
    uint8_t rec[100], prefix[32];
    CHECK_EQ(fake_nvs_peek("otaupdater/resume", rec, sizeof(rec)), 80);
    CHECK_EQ(rec[0], 1);
    CHECK_EQ(rec[1], 1);
    CHECK_EQ(rec[2] | rec[3], 0);
    CHECK_EQ(rd32(rec + 4), len);
    CHECK_EQ(rd32(rec + 8), 3 * SECTOR);
    CHECK(memcmp(rec + 12, sha, 32) == 0);
    sha256(v2, 3 * SECTOR, prefix);
    CHECK(memcmp(rec + 44, prefix, 32) == 0);
    CHECK_EQ(rd32(rec + 76), crc32_ref(rec, 76));
    // abort clears it
    CHECK_EQ(client_simple(JD_OTA_UPDATER_CMD_ABORT), 0);
    CHECK_EQ(fake_nvs_peek("otaupdater/resume", rec, sizeof(rec)), -1);
    dev_power_off();
    free(v2);
}

// --- main -------------------------------------------------------------------------------------------

static const test_t TESTS[] = {
    {"write_before_erase", test_write_before_erase},
    {"resume_record_format", test_resume_record_format},
    {"first_write_magic", test_first_write_magic},
    {"queue_overflow", test_queue_overflow},
    {"take_back_boot_switch", test_take_back_boot_switch},
    {"worker_commit", test_worker_commit},
    {"program_copy", test_program_copy},
    {"program_record_stale", test_program_record_stale},
    {"program_power_cut", test_program_power_cut},
    {"power_cut_every_change", test_power_cut_every_change},
    {"budget_enforced", test_budget_enforced},
    {"full_slot_budget", test_full_slot_budget},
};

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s <partitions.csv> [test ...]\n", argv[0]);
        return 2;
    }
    g_csv = argv[1];
    fake_set_main_thread();
    g_base = make_flash(g_csv);
    g_v1 = build_app_image("1.0.0", 20000, 9, 1, &g_v1_len);
    flash_put_image(g_base, 0, g_v1, g_v1_len);
    int ran = run_tests(TESTS, sizeof(TESTS) / sizeof(TESTS[0]), argc, argv, "");
    dev_power_off();
    fake_flash_close();
    free(g_base);
    free(g_v1);
    printf("ok: %d tests\n", ran);
    return ran ? 0 : 1;
}
