/* The process dirty trackers (pagemap-scan, soft-dirty, uffd-wp, mprotect)
 * against proc guests. For every tracker this machine supports (the others
 * print SKIP with the reason and the test goes on):
 *   known   writes of known page sets in known rounds from the test thread
 *           (single pages, a store across a page boundary, ranges, every
 *           other page, random pages, all pages, reads only): reported ⊇
 *           written, exactly counted new bits;
 *   race    writer threads racing with back-to-back and spaced harvests:
 *           the guest's own vCPU threads (a custom step), and for the
 *           trackers that need no pause a plain thread the guest does not
 *           know about. The oracle is a migration in miniature: a shadow
 *           copy of RAM taken while tracking starts, then after every harvest
 *           each reported page copied again; once the writers have stopped
 *           and a last harvest is copied, the shadow must equal RAM byte for
 *           byte. A missed write — one whose page is not reported after it —
 *           leaves a stale page, and is found;
 *   workload the proc guest's own workload, with the generation table as the
 *           oracle (as test_dirty_kvm.c) plus the shadow check and verify;
 *   cost    harvest time at 0%, 1%, 10% and 100% of RAM dirty, and the cost
 *           of the first write to a protected page (printed, not asserted).
 * False positives — pages reported but not written — are counted and
 * printed, never asserted away. Exit 77 only if no tracker is supported.
 * MIGR_DIRTY_COST_MB=N sets the guest size of the cost runs (default 64). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv-glue/proc/proc.h"
#include "hv-glue/workload/workload.h"
#include "migr/dirty.h"
#include "migr/hv.h"
#include "migr/workload.h"
#include "testlib.h"

/* Under ASan the mprotect tracker needs SIGSEGV (ASan keeps it otherwise). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "handle_segv=0"; }

#define RACE_MS 500
#define WORKLOAD_MS 500
#define MEM (64ull << 20)

static unsigned long long seed;

static struct migr_hv *make(uint64_t mem, uint32_t nvcpus, const char *wl)
{
    struct migr_vm_config cfg = {.mem_bytes = mem, .nvcpus = nvcpus};
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse(wl, &cfg.wl));
    struct migr_hv *hv;
    T_OK(migr_hv_create("proc", &cfg, &hv));
    return hv;
}

static uint64_t *bitmap(struct migr_hv *hv)
{
    uint64_t *bm = calloc(migr_bitmap_words(hv->ram_pages), 8);
    T_ASSERT(bm);
    return bm;
}

/* Harvest into bm and check the count of newly set bits (bit accounting). */
static long harvest(struct migr_dirty *d, uint64_t *bm)
{
    uint64_t words = migr_bitmap_words(d->npages);
    uint64_t before = migr_bitmap_count(bm, d->npages);
    uint64_t last = bm[words - 1];
    long n = migr_dirty_harvest(d, bm);
    T_OK(n);
    T_EQ((uint64_t)n, migr_bitmap_count(bm, d->npages) - before);
    if (d->npages % 64) /* no bit beyond the last page */
        T_EQ(bm[words - 1] >> (d->npages % 64), last >> (d->npages % 64));
    return n;
}

static struct migr_dirty *open_started(const char *name, struct migr_hv *hv)
{
    struct migr_dirty *d;
    T_OK(migr_dirty_open(name, hv, &d));
    T_ASSERT(strncmp(d->ops->name, name, strcspn(name, "?")) == 0);
    T_OK(migr_dirty_start(d));
    return d;
}

/* ---------- known page sets in known rounds ---------- */

struct round {
    const char *what;
    uint64_t written, reported, false_pos;
};

/* Check written ⊆ reported; count the rest as false positives. */
static void check_round(const char *name, struct round *r, const uint64_t *written, const uint64_t *rep,
                        uint64_t npages)
{
    r->written = migr_bitmap_count(written, npages);
    r->reported = migr_bitmap_count(rep, npages);
    r->false_pos = 0;
    for (uint64_t i = 0; i < npages; i++) {
        if (migr_bit_test(written, i) && !migr_bit_test(rep, i))
            T_FAIL("%s: round '%s': page %llu was written but not reported", name, r->what,
                   (unsigned long long)i);
        if (!migr_bit_test(written, i) && migr_bit_test(rep, i))
            r->false_pos++;
    }
}

static void write_page(struct migr_hv *hv, uint64_t *written, uint64_t i, unsigned off)
{
    uint8_t *p = migr_hv_page(hv, i);
    T_ASSERT(p);
    __atomic_store_n(&p[off % MIGR_PAGE_SIZE], (uint8_t)(p[off % MIGR_PAGE_SIZE] + 1), __ATOMIC_RELAXED);
    migr_bit_set(written, i);
}

static void test_known(const char *name)
{
    struct migr_hv *hv = make(MEM, 1, "rate=0"); /* stays paused: only this thread writes */
    uint64_t n = hv->ram_pages, words = migr_bitmap_words(n);
    uint64_t *written = bitmap(hv), *rep = bitmap(hv);
    struct migr_dirty *d = open_started(name, hv);
    struct round rounds[16];
    int nr = 0;
    unsigned long long s = seed;

#define ROUND(label, body)                                  \
    do {                                                    \
        memset(written, 0, words * 8);                      \
        memset(rep, 0, words * 8);                          \
        body;                                               \
        harvest(d, rep);                                    \
        rounds[nr].what = label;                            \
        check_round(name, &rounds[nr], written, rep, n);    \
        nr++;                                               \
    } while (0)

    ROUND("nothing (right after start)", (void)0);
    ROUND("single pages 0, 1000 and the last", {
        write_page(hv, written, 0, 0);
        write_page(hv, written, 1000, 4095);
        write_page(hv, written, n - 1, 17);
    });
    ROUND("8-byte store across pages 499/500", {
        uint8_t *p = migr_hv_page(hv, 499) + MIGR_PAGE_SIZE - 4;
        uint64_t v = 0x0102030405060708ull;
        memcpy(p, &v, 8);
        migr_bit_set(written, 499);
        migr_bit_set(written, 500);
    });
    ROUND("range 2000..2999", {
        for (uint64_t i = 2000; i < 3000; i++)
            write_page(hv, written, i, (unsigned)i);
    });
    ROUND("every other page of 3000 (3000 runs)", {
        for (uint64_t i = 4001; i < 10000; i += 2)
            write_page(hv, written, i, 8);
    });
    ROUND("500 random pages", {
        for (int k = 0; k < 500; k++)
            write_page(hv, written, t_rand(&s) % n, (unsigned)t_rand(&s));
    });
    ROUND("reads only", {
        volatile uint8_t sum = 0;
        for (uint64_t i = 0; i < n; i += 3)
            sum = (uint8_t)(sum + migr_hv_page(hv, i)[5]);
        (void)sum;
    });
    ROUND("all pages", {
        for (uint64_t i = 0; i < n; i++)
            write_page(hv, written, i, 100);
    });
    ROUND("same page twice, then nothing", {
        write_page(hv, written, 7, 1);
        write_page(hv, written, 7, 2);
    });
    ROUND("nothing", (void)0);
#undef ROUND

    for (int i = 0; i < nr; i++)
        printf("%-12s known: %-40s written %5llu reported %5llu false positives %llu\n", name,
               rounds[i].what, (unsigned long long)rounds[i].written,
               (unsigned long long)rounds[i].reported, (unsigned long long)rounds[i].false_pos);
    /* A second tracker of the same kind on another guest, then both stopped. */
    migr_dirty_close(d);
    migr_dirty_close(NULL);
    /* After stop the guest's memory is plain memory again. */
    write_page(hv, written, 3, 3);
    free(written);
    free(rep);
    migr_hv_destroy(hv);
}

/* ---------- racing writers; the shadow-copy oracle ---------- */

struct writer {
    struct migr_hv *hv;
    uint64_t first, count;      /* pages written: [first, first + count) */
    uint64_t rng[WL_MAX_VCPUS + 1];
    uint64_t writes[WL_MAX_VCPUS + 1];
    int hold, parked, quit;     /* external writer only: stop / stopped / exit */
};

/* One page write: an 8-byte stamp (writer, sequence) at two places. */
static void write_one(struct writer *w, uint32_t who)
{
    uint64_t r = t_rand((unsigned long long *)&w->rng[who]);
    uint64_t *p = (uint64_t *)migr_hv_page(w->hv, w->first + r % w->count);
    uint64_t stamp = (uint64_t)(who + 1) << 48 | ++w->writes[who];
    __atomic_store_n(&p[0], stamp, __ATOMIC_RELAXED);
    __atomic_store_n(&p[(r >> 32) % 512], stamp, __ATOMIC_RELAXED);
}

static void step(void *arg, struct migr_hv *hv, uint32_t vcpu)
{
    write_one(arg, vcpu);
}

static void *external_writer(void *arg)
{
    struct writer *w = arg;
    while (!__atomic_load_n(&w->quit, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&w->hold, __ATOMIC_ACQUIRE)) {
            __atomic_store_n(&w->parked, 1, __ATOMIC_RELEASE);
            while (__atomic_load_n(&w->hold, __ATOMIC_ACQUIRE) && !__atomic_load_n(&w->quit, __ATOMIC_ACQUIRE))
                __builtin_ia32_pause();
            __atomic_store_n(&w->parked, 0, __ATOMIC_RELEASE);
            continue;
        }
        write_one(w, WL_MAX_VCPUS);
    }
    return NULL;
}

/* Stop the writers (the guest's vCPUs, or the external thread) at a write
 * boundary, or let them go again. */
static void writers_hold(struct migr_hv *hv, struct writer *w, bool external, bool hold)
{
    if (!external) {
        T_OK(hold ? hv->ops->pause(hv) : hv->ops->resume(hv));
        return;
    }
    __atomic_store_n(&w->hold, hold, __ATOMIC_RELEASE);
    while (hold && !__atomic_load_n(&w->parked, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
}

struct shadow {
    uint8_t *mem;
    uint64_t copies, false_pos;
};

/* Copy every page set in bm (as a migration sends it), counting the pages
 * that had not changed since their last copy. */
static void copy_reported(struct migr_hv *hv, struct shadow *sh, const uint64_t *bm)
{
    for (uint64_t i = 0; i < hv->ram_pages; i++) {
        if (!migr_bit_test(bm, i))
            continue;
        uint8_t *g = migr_hv_page(hv, i), *c = sh->mem + i * MIGR_PAGE_SIZE;
        if (memcmp(g, c, MIGR_PAGE_SIZE) == 0)
            sh->false_pos++;
        memcpy(c, g, MIGR_PAGE_SIZE);
        sh->copies++;
    }
}

static void shadow_must_match(const char *name, const char *what, struct migr_hv *hv, const struct shadow *sh)
{
    for (uint64_t i = 0; i < hv->ram_pages; i++) {
        const uint8_t *g = migr_hv_page(hv, i), *c = sh->mem + i * MIGR_PAGE_SIZE;
        if (memcmp(g, c, MIGR_PAGE_SIZE) != 0) {
            uint64_t gv, cv;
            memcpy(&gv, g, 8);
            memcpy(&cv, c, 8);
            T_FAIL("%s %s: page %llu changed after its last report (a missed write): RAM holds "
                   "0x%llx, the copy 0x%llx (replay with MIGR_TEST_SEED=%llu)", name, what,
                   (unsigned long long)i, (unsigned long long)gv, (unsigned long long)cv, seed);
        }
    }
}

static void harvest_and_copy(struct migr_dirty *d, struct shadow *sh, uint64_t *bm)
{
    memset(bm, 0, migr_bitmap_words(d->npages) * 8);
    harvest(d, bm);
    copy_reported(d->hv, sh, bm);
}

/* Racing harvests (back to back or spaced) for a few ms, then a checkpoint:
 * one more racing harvest, the writers stopped right after it (so a write
 * lost by that harvest is rarely overwritten first), a final harvest, and the
 * copy compared with RAM. Returns the number of checkpoints. */
static uint64_t race_rounds(struct migr_dirty *d, struct shadow *sh, uint64_t *bm, struct writer *w,
                            bool external, const char *name, const char *what)
{
    uint64_t t0 = migr_now_ns(), checkpoints = 0;
    while (migr_now_ns() - t0 < RACE_MS * 1000000ull) {
        uint64_t seg = migr_now_ns(), seg_ns = (2 + t_rand(&seed) % 20) * 1000000ull;
        writers_hold(d->hv, w, external, false);
        while (migr_now_ns() - seg < seg_ns) {
            harvest_and_copy(d, sh, bm);
            unsigned long long r = t_rand(&seed) % 4;
            if (r)
                usleep((useconds_t)(r * 300));
        }
        harvest_and_copy(d, sh, bm);
        writers_hold(d->hv, w, external, true);
        harvest_and_copy(d, sh, bm); /* stop-and-copy */
        shadow_must_match(name, what, d->hv, sh);
        checkpoints++;
    }
    return checkpoints;
}

static void test_race(const char *name, bool external)
{
    struct migr_hv *hv = make(MEM, 2, "rate=0");
    struct writer *w = calloc(1, sizeof(*w));
    struct shadow sh = {malloc(hv->ram_pages * MIGR_PAGE_SIZE), 0, 0};
    uint64_t *bm = bitmap(hv);
    pthread_t th;
    T_ASSERT(w && sh.mem);
    w->hv = hv;
    w->first = 16;
    w->count = hv->ram_pages - 16;
    for (int i = 0; i <= (int)WL_MAX_VCPUS; i++)
        w->rng[i] = seed + (uint64_t)i * 7919 + 1;
    if (!external)
        T_OK(migr_proc_set_step(hv, step, w));
    w->hold = 1;
    if (external)
        T_ASSERT(pthread_create(&th, NULL, external_writer, w) == 0);

    struct migr_dirty *d = open_started(name, hv);
    memcpy(sh.mem, hv->regions[0].host, hv->ram_pages * MIGR_PAGE_SIZE); /* round 1: everything */
    uint64_t ns0 = d->harvest_ns, h0 = d->harvests;
    const char *what = external ? "race (external writer thread)" : "race (guest vCPU threads)";
    uint64_t checkpoints = race_rounds(d, &sh, bm, w, external, name, what);
    if (external) {
        __atomic_store_n(&w->quit, 1, __ATOMIC_RELEASE);
        pthread_join(th, NULL);
    }
    uint64_t writes = 0, harvests = d->harvests - h0;
    for (int i = 0; i <= (int)WL_MAX_VCPUS; i++)
        writes += w->writes[i];
    T_ASSERT(writes > 100 && checkpoints > 0); /* sanity: the writers ran (little CPU under load) */
    printf("%-12s %s: %llu page writes over %llu pages, %llu harvests (%.1f us each), %llu "
           "checkpoints; %llu pages reported, %llu of them unchanged since their last copy (false "
           "positives); none missed\n",
           name, what, (unsigned long long)writes, (unsigned long long)w->count,
           (unsigned long long)harvests, (double)(d->harvest_ns - ns0) / 1e3 / (double)harvests,
           (unsigned long long)checkpoints, (unsigned long long)sh.copies, (unsigned long long)sh.false_pos);
    migr_dirty_close(d);
    free(bm);
    free(sh.mem);
    free(w);
    migr_hv_destroy(hv);
}

/* ---------- the proc guest's own workload; generation-table oracle ---------- */

static uint64_t idx_of(struct migr_hv *hv, uint64_t gpa)
{
    int64_t i = migr_hv_pfn_index(hv, gpa / MIGR_PAGE_SIZE);
    T_ASSERT(i >= 0);
    return (uint64_t)i;
}

static void test_workload(const char *name, uint32_t nvcpus, const char *wl)
{
    struct migr_hv *hv = make(MEM, nvcpus, wl);
    const struct wl_boot *b = (const struct wl_boot *)migr_hv_gpa(hv, WL_BOOT_GPA, 4096);
    uint64_t words = migr_bitmap_words(hv->ram_pages);
    uint64_t *bm = bitmap(hv), *cum = bitmap(hv), *expect = bitmap(hv);
    uint32_t *snap = malloc(b->ws_pages * 4);
    struct shadow sh = {malloc(hv->ram_pages * MIGR_PAGE_SIZE), 0, 0};
    T_ASSERT(snap && sh.mem);
    T_OK(hv->ops->resume(hv));
    usleep(50000);

    struct migr_dirty *d = open_started(name, hv);
    T_OK(hv->ops->quiesce(hv, 5000));
    harvest(d, bm); /* discard: writes before the snapshot */
    memcpy(snap, migr_hv_gpa(hv, b->gen_gpa, b->ws_pages * 4), b->ws_pages * 4);
    memcpy(sh.mem, hv->regions[0].host, hv->ram_pages * MIGR_PAGE_SIZE);
    uint64_t w0 = migr_workload_progress(hv), ns0 = d->harvest_ns, h0 = d->harvests;
    T_OK(hv->ops->unquiesce(hv));
    uint64_t t0 = migr_now_ns();
    while (migr_now_ns() - t0 < WORKLOAD_MS * 1000000ull) {
        memset(bm, 0, words * 8);
        harvest(d, bm);
        copy_reported(hv, &sh, bm);
        for (uint64_t k = 0; k < words; k++)
            cum[k] |= bm[k];
        unsigned long long r = t_rand(&seed) % 4;
        if (r)
            usleep((useconds_t)(r * 1000));
    }
    T_OK(hv->ops->quiesce(hv, 5000));
    memset(bm, 0, words * 8);
    harvest(d, bm);
    copy_reported(hv, &sh, bm);
    for (uint64_t k = 0; k < words; k++)
        cum[k] |= bm[k];
    uint64_t writes = migr_workload_progress(hv) - w0, harvests = d->harvests - h0;

    /* every page whose generation moved, and its generation-table page, was reported */
    const uint32_t *gen = (const uint32_t *)migr_hv_gpa(hv, b->gen_gpa, b->ws_pages * 4);
    uint64_t ws_written = 0;
    for (uint64_t i = 0; i < b->ws_pages; i++) {
        if (gen[i] == snap[i])
            continue;
        ws_written++;
        uint64_t wi = idx_of(hv, b->ws_gpa + i * MIGR_PAGE_SIZE), gi = idx_of(hv, b->gen_gpa + i * 4);
        if (!migr_bit_test(cum, wi))
            T_FAIL("%s: working-set page %llu (generation %u -> %u) was written but never reported",
                   name, (unsigned long long)i, snap[i], gen[i]);
        if (!migr_bit_test(cum, gi))
            T_FAIL("%s: generation-table page of entry %llu was written but never reported", name,
                   (unsigned long long)i);
        migr_bit_set(expect, wi);
        migr_bit_set(expect, gi);
    }
    T_ASSERT(ws_written > 0);
    uint64_t vi = idx_of(hv, WL_VCPU_GPA);
    if (!migr_bit_test(cum, vi))
        T_FAIL("%s: the vCPU area page was written but never reported", name);
    migr_bit_set(expect, vi);
    uint64_t expected = migr_bitmap_count(expect, hv->ram_pages), reported = migr_bitmap_count(cum, hv->ram_pages);
    shadow_must_match(name, "workload", hv, &sh);

    /* nothing runs while quiesced: what a harvest still reports is a false positive */
    memset(bm, 0, words * 8);
    long idle = harvest(d, bm);
    struct migr_verify_report rep;
    T_OK(migr_workload_verify(hv, &rep));
    if (!rep.ok)
        T_FAIL("%s: guest image damaged under tracking: %s", name, rep.first_bad_why);
    T_OK(hv->ops->unquiesce(hv));
    printf("%-12s workload vcpus=%u %s: %llu page writes; written %llu pages; reported %llu; "
           "false positives %llu; idle harvest %ld; %llu harvests, %.1f us each\n",
           name, nvcpus, wl, (unsigned long long)writes, (unsigned long long)expected,
           (unsigned long long)reported, (unsigned long long)(reported - expected), idle,
           (unsigned long long)harvests, (double)(d->harvest_ns - ns0) / 1e3 / (double)harvests);
    migr_dirty_close(d); /* the guest keeps running untracked */
    usleep(20000);
    T_ASSERT(!hv->ops->failed(hv));
    T_OK(hv->ops->quiesce(hv, 5000));
    T_OK(migr_workload_verify(hv, &rep));
    T_ASSERT(rep.ok);
    free(bm);
    free(cum);
    free(expect);
    free(snap);
    free(sh.mem);
    migr_hv_destroy(hv);
}

/* ---------- costs ---------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_cost(const char *name, uint64_t mem)
{
    struct migr_hv *hv = make(mem, 1, "rate=0"); /* paused: this thread writes */
    uint64_t n = hv->ram_pages;
    uint64_t *bm = bitmap(hv);
    struct migr_dirty *d = open_started(name, hv);
    static const unsigned permille[] = {0, 10, 100, 1000};
    char line[512];
    int len = snprintf(line, sizeof(line), "%-12s cost %llu MiB: harvest (median of 5)", name,
                       (unsigned long long)(mem >> 20));
    for (size_t k = 0; k < MIGR_ARRAY_SIZE(permille); k++) {
        uint64_t ns[5];
        uint64_t step_pages = permille[k] ? 1000 / permille[k] : 0;
        for (int rep = 0; rep < 5; rep++) {
            if (step_pages)
                for (uint64_t i = 0; i < n; i += step_pages)
                    migr_hv_page(hv, i)[1]++;
            memset(bm, 0, migr_bitmap_words(n) * 8);
            uint64_t t0 = migr_now_ns();
            long got = migr_dirty_harvest(d, bm);
            ns[rep] = migr_now_ns() - t0;
            T_OK(got);
            T_ASSERT((uint64_t)got >= (step_pages ? (n + step_pages - 1) / step_pages : 0));
        }
        qsort(ns, 5, 8, cmp_u64);
        len += snprintf(line + len, sizeof(line) - (size_t)len, "%s %u%% %.0f us", k ? "," : "",
                        permille[k] / 10, (double)ns[2] / 1e3);
    }
    /* first write to a protected page vs a write to a page already written */
    uint64_t pages = MIGR_MIN(n / 2, 4096ull), first = n / 4;
    migr_dirty_harvest(d, bm); /* everything protected again */
    uint64_t t0 = migr_now_ns();
    for (uint64_t i = first; i < first + pages; i++)
        migr_hv_page(hv, i)[64]++;
    uint64_t t_first = migr_now_ns() - t0;
    t0 = migr_now_ns();
    for (uint64_t i = first; i < first + pages; i++)
        migr_hv_page(hv, i)[128]++;
    uint64_t t_again = migr_now_ns() - t0;
    printf("%s; first write to a protected page %.2f us (a second write %.3f us)\n", line,
           (double)(t_first) / 1e3 / (double)pages, (double)t_again / 1e3 / (double)pages);
    migr_dirty_close(d);
    free(bm);
    migr_hv_destroy(hv);
}

/* The workload's speed with no tracker, to compare with the workload lines. */
static void test_baseline(void)
{
    struct migr_hv *hv = make(MEM, 1, "rate=0,pattern=random,data=text");
    T_OK(hv->ops->resume(hv));
    usleep(50000);
    uint64_t w0 = migr_workload_progress(hv), t0 = migr_now_ns();
    usleep(WORKLOAD_MS * 1000);
    double s = (double)(migr_now_ns() - t0) / 1e9;
    uint64_t w = migr_workload_progress(hv) - w0;
    printf("%-12s workload vcpus=1 rate=0,pattern=random,data=text: %llu page writes in %.2f s "
           "(%.0f pages/s) untracked\n", "(none)", (unsigned long long)w, s, (double)w / s);
    migr_hv_destroy(hv);
}

/* ---------- selection and errors ---------- */

static void test_open(void)
{
    struct migr_hv *hv = make(8ull << 20, 1, "rate=0");
    struct migr_dirty *d;
    T_EQ(migr_dirty_open("no-such-tracker", hv, &d), -EINVAL);
    printf("open no-such-tracker: %s\n", migr_last_error());
    T_ASSERT(strstr(migr_last_error(), "mprotect") && strstr(migr_last_error(), "supports"));
    T_EQ(migr_dirty_open("kvm-bitmap", hv, &d), -ENOTSUP);
    printf("open kvm-bitmap: %s\n", migr_last_error());
    T_ASSERT(strstr(migr_last_error(), "the kvm backend's own") && strstr(migr_last_error(), "mprotect"));
    /* options after '?': known keys only, numbers checked at start */
    T_EQ(migr_dirty_open("mprotect?vec=3", hv, &d), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "unknown option 'vec'") && strstr(migr_last_error(), "known: none"));
    T_EQ(migr_dirty_open("auto?vec=3", hv, &d), -EINVAL);
    T_ASSERT(strcmp(migr_dirty_process_trackers[0]->name, "pagemap-scan") == 0);
    if (migr_dirty_process_trackers[0]->supported(hv) > 0) {
        T_EQ(migr_dirty_open("pagemap-scan?manual=1", hv, &d), -EINVAL);
        T_ASSERT(strstr(migr_last_error(), "unknown option 'manual' (known: vec)"));
        T_EQ(migr_dirty_open("pagemap-scan?vec", hv, &d), -EINVAL);
        T_ASSERT(strstr(migr_last_error(), "no value for option 'vec'"));
        T_OK(migr_dirty_open("pagemap-scan?vec=12x", hv, &d));
        T_EQ(migr_dirty_start(d), -EINVAL);
        T_ASSERT(strstr(migr_last_error(), "vec='12x' is not a number"));
        migr_dirty_close(d);
        T_OK(migr_dirty_open("pagemap-scan?vec=0", hv, &d));
        T_EQ(migr_dirty_start(d), -EINVAL);
        migr_dirty_close(d);
    }
    T_OK(migr_dirty_open("auto", hv, &d));
    printf("open auto: %s\n", d->ops->name);
    T_ASSERT(strcmp(d->ops->name, "kvm-bitmap") != 0);
    T_EQ(migr_dirty_harvest(d, NULL), -EINVAL); /* before start */
    T_OK(migr_dirty_start(d));
    T_EQ(migr_dirty_start(d), -EBUSY);
    migr_dirty_close(d);
    migr_hv_destroy(hv);
}

/* soft-dirty's clear_refs is process-wide: a second one is refused. */
static void test_soft_dirty_exclusive(void)
{
    struct migr_hv *a = make(8ull << 20, 1, "rate=0"), *b = make(8ull << 20, 1, "rate=0");
    struct migr_dirty *da = open_started("soft-dirty", a), *db;
    T_EQ(migr_dirty_open("soft-dirty", b, &db), -ENOTSUP);
    T_ASSERT(strstr(migr_last_error(), "another soft-dirty"));
    migr_dirty_close(da);
    db = open_started("soft-dirty", b);
    migr_dirty_close(db);
    migr_hv_destroy(a);
    migr_hv_destroy(b);
}

int main(void)
{
    seed = t_seed();
    /* pagemap-scan's output vector holds 8192 ranges; at 1000 the known
     * round of 3000 runs overflows it and the scan must resume at walk_end. */
    test_open();
    test_baseline();
    const char *cost_mb = getenv("MIGR_DIRTY_COST_MB");
    uint64_t cost_mem = (cost_mb ? strtoull(cost_mb, NULL, 0) : 64) << 20;
    int ran = 0;
    for (size_t i = 0; migr_dirty_backends[i]; i++) {
        const char *name = migr_dirty_backends[i]->name;
        if (strncmp(name, "kvm-", 4) == 0 || strcmp(name, "ept") == 0)
            continue; /* KVM guests: test_dirty_kvm; EPT owners: test_dirty_ept */
        struct migr_hv *hv = make(8ull << 20, 1, "rate=0");
        migr_clear_error();
        int ok = migr_dirty_backends[i]->supported(hv);
        migr_hv_destroy(hv);
        if (ok <= 0) {
            printf("%-12s SKIP: %s\n", name, migr_last_error());
            continue;
        }
        ran++;
        test_known(strcmp(name, "pagemap-scan") ? name : "pagemap-scan?vec=1000");
        test_race(name, false);
        if (strcmp(name, "soft-dirty") == 0) {
            printf("%-12s race (external writer thread): n/a — the harvest pauses the guest's vCPUs; "
                   "a writer the guest does not own is not stopped and could lose writes\n", name);
            test_soft_dirty_exclusive();
        } else {
            test_race(name, true);
        }
        test_workload(name, 1, "rate=0,pattern=random,data=text");
        test_workload(name, 2, "rate=128M,pattern=hotcold,data=random");
        test_cost(name, cost_mem);
        fflush(stdout);
    }
    if (!ran)
        T_SKIP("no process dirty tracker is supported here");
    return 0;
}
