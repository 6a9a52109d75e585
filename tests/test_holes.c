/* Never-written guest pages (memfd holes) are neither read nor allocated on
 * either side, and a hole written during the migration still arrives.
 *
 *   - pre-copy of an idle 256 MiB guest with an 8 MiB working set (proc, and
 *     kvm where /dev/kvm works): the source's memfd grows by at most 1% of
 *     guest RAM while it is sent (reading a hole would allocate it), the
 *     destination's holds little more than the working set, the guest
 *     verifies there; before engine/holes.c the source grew by ~248 MiB;
 *   - a hole written after round 1 sent it as zero (from the progress
 *     callback at the end of round 1, with every process tracker this
 *     machine supports): the destination has the new bytes;
 *   - post-copy and hybrid of the same guest: the same memory bounds; in
 *     hybrid a hole written after round 1 is discarded and fetched again.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "migr/dirty.h"
#include "migratelib.h"

/* Under ASan the mprotect tracker needs SIGSEGV (ASan keeps it otherwise). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "handle_segv=0"; }

#define MEM (256ull << 20)
#define WL "rate=4K,ws=8M,pattern=random,data=text"
#define SLACK (MEM / 100)          /* 1% of guest RAM */
#define DST_MAX ((8ull << 20) + (8ull << 20)) /* working set + metadata, tables, code */

static uint64_t memfd_bytes(const struct migr_hv *hv)
{
    struct stat sb;
    T_OK(fstat(hv->regions[0].memfd, &sb) == 0 ? 0 : -1);
    return (uint64_t)sb.st_blocks * 512;
}

/* Writes a marker into two holes near the end of RAM once round 1 is sent. */
struct late_write {
    struct migr_hv *hv;
    uint64_t idx[2];
    bool done;
};

static void fill_marker(uint8_t *page, uint64_t idx)
{
    for (int i = 0; i < 4096; i++)
        page[i] = (uint8_t)(idx * 7 + (uint64_t)i * 13 + 1);
}

static void on_progress(void *arg, const struct migr_progress *p)
{
    struct late_write *w = arg;
    if (w->done || p->round != 1 || strcmp(p->phase, "precopy") != 0 || p->pages_done != p->pages_total)
        return;
    for (int k = 0; k < 2; k++)
        fill_marker(migr_hv_page(w->hv, w->idx[k]), w->idx[k]);
    w->done = true;
}

static void check_marker(struct migr_hv *dst, const struct late_write *w, const char *what)
{
    uint8_t ref[4096];
    T_ASSERT(w->done);
    for (int k = 0; k < 2; k++) {
        fill_marker(ref, w->idx[k]);
        if (memcmp(migr_hv_page(dst, w->idx[k]), ref, sizeof(ref)) != 0)
            T_FAIL("%s: page %llu, a hole written after round 1, did not arrive", what,
                   (unsigned long long)w->idx[k]);
    }
}

/* One migration of a sparse guest; late: write two holes after round 1. */
static void run(const char *backend, const char *tracker, int postcopy_after, bool late)
{
    char url[96];
    snprintf(url, sizeof(url), "unix:/tmp/migr-holes-%d.sock", getpid());
    struct migr_hv *src = t_guest(backend, MEM, 1, WL, 100);
    struct late_write w = {.hv = src, .idx = {src->ram_pages - 3, src->ram_pages - 1000}};
    struct migr_send_params p;
    migr_send_params_init(&p);
    p.tracker = tracker;
    p.mode = postcopy_after < 0 ? MIGR_MODE_PRECOPY : postcopy_after == 0 ? MIGR_MODE_POSTCOPY : MIGR_MODE_HYBRID;
    p.hybrid_rounds = postcopy_after > 0 ? (uint32_t)postcopy_after : 1;
    if (late) {
        p.progress = on_progress;
        p.progress_arg = &w;
    }
    struct migr_stats st = MIGR_STATS_INIT;
    struct t_rx x;
    uint64_t src0 = memfd_bytes(src);
    int rc = t_send(src, url, &p, &st, &x);
    uint64_t src1 = memfd_bytes(src);
    if (rc < 0)
        T_FAIL("%s %s %s: send: %s", backend, tracker, st.mode, st.error);
    T_OK(x.rc);
    uint64_t dst = memfd_bytes(x.hv);
    printf("%-4s %-12s %-9s%s: %llu hole pages unread; source memfd %+.1f MiB, destination %.1f MiB, "
           "total %.1f ms\n", backend, st.tracker, st.mode, late ? " +late" : "", (unsigned long long)st.hole_pages,
           ((double)src1 - (double)src0) / 1048576.0, (double)dst / 1048576.0, (double)st.total_ns / 1e6);
    if (src1 > src0 + SLACK + (late ? 2 * 4096 : 0))
        T_FAIL("%s %s: the source's memfd grew by %llu KiB (at most %llu): holes were read",
               backend, st.mode, (unsigned long long)((src1 - src0) >> 10), (unsigned long long)(SLACK >> 10));
    if (dst > DST_MAX)
        T_FAIL("%s %s: the destination's memfd holds %llu MiB for an 8 MiB working set", backend, st.mode,
               (unsigned long long)(dst >> 20));
    T_ASSERT(st.hole_pages > src->ram_pages * 9 / 10);
    if (late)
        check_marker(x.hv, &w, st.mode);
    t_verify(x.hv, "destination");
    migr_hv_destroy(x.hv);
    migr_hv_destroy(src);
}

int main(void)
{
    run("proc", "auto", -1, false);
    /* every process tracker: a hole written after round 1 is caught */
    int ran = 0;
    for (size_t i = 0; migr_dirty_backends[i]; i++) {
        const char *name = migr_dirty_backends[i]->name;
        struct migr_vm_config cfg = {.mem_bytes = 8ull << 20, .nvcpus = 1};
        struct migr_hv *hv;
        migr_workload_defaults(&cfg.wl);
        T_OK(migr_hv_create("proc", &cfg, &hv));
        migr_clear_error();
        int ok = strcmp(name, "kvm-bitmap") && strcmp(name, "kvm-ring") && migr_dirty_backends[i]->supported(hv) > 0;
        migr_hv_destroy(hv);
        if (!ok)
            continue;
        run("proc", name, -1, true);
        ran++;
    }
    T_ASSERT(ran > 0);
    run("proc", "auto", 0, false); /* post-copy */
    run("proc", "auto", 1, true);  /* hybrid: the late holes are discarded and fetched */
    if (migr_hv_available("kvm")) {
        run("kvm", "auto", -1, false);
        run("kvm", "auto", 0, false);
        run("kvm", "auto", 1, false); /* hybrid on kvm: the same memory bounds (no late write: KVM tracks guest writes, not ours) */
    } else {
        printf("kvm: skipped (%s)\n", migr_last_error());
    }
    return 0;
}
