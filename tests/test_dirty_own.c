/* An embedder's own dirty tracker (migr_dirty_register, include/migr/dirty.h):
 * the "VMM" here logs its own writes — each vCPU thread writes a page of the
 * guest workload and only then sets the page's bits (the page, its
 * generation-table entry, the vCPU's counters) in a bitmap of its own — and
 * the tracker's harvest takes that log with atomic exchanges. Why no write
 * is lost: a bit is set after its write, so a harvest that takes the bit
 * returns after the write, and the engine reads the page after the harvest;
 * a write whose bit is not set yet is reported by a later harvest; the last
 * harvest runs with the vCPUs paused between two steps.
 *
 * Checked: registration rules (missing ops, built-in names, twice, the
 * limit, unregister); the tracker listed beside the built-in ones and chosen
 * by name; a pre-copy migration of a running proc guest whose vCPUs log this
 * way, with the tracker named, verified page by page on the destination
 * (lost, stale or torn pages would show), and the tracker's harvests counted;
 * after unregistering, the name is unknown again. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv-glue/proc/proc.h"
#include "hv-glue/workload/workload.h"
#include "migr/dirty.h"
#include "migratelib.h"

#define PAGE 4096u

/* The VMM's own write log: one bit per RAM page (one region at gpa 0). */
static struct {
    struct migr_hv *hv;
    uint64_t *log, words;
    uint64_t harvests, reported, starts, stops;
} own;

static void log_gpa(uint64_t gpa)
{
    uint64_t i = gpa / PAGE;
    __atomic_fetch_or(&own.log[i >> 6], 1ull << (i & 63), __ATOMIC_RELEASE);
}

/* One workload step of vCPU id, as the proc backend's loop does it, then
 * the log. ~100 us apart: a guest that dirties, and pre-copy converges. */
static void step(void *arg, struct migr_hv *hv, uint32_t id)
{
    (void)arg;
    uint8_t *ram = hv->regions[0].host;
    struct wl_boot *b = (struct wl_boot *)(ram + WL_BOOT_GPA);
    struct wl_vcpu *v = (struct wl_vcpu *)(ram + WL_VCPU_GPA) + id;
    if (v->rng == 0)
        v->rng = wl_mix(b->seed ^ (id + 1) * 0x9E3779B97F4A7C15ull) | 1;
    uint64_t index = wl_next_page(b, v, id);
    if (index != ~0ull) {
        wl_write_page(ram, b, v, index);
        log_gpa(b->ws_gpa + index * PAGE);
        log_gpa(b->gen_gpa + index * sizeof(uint32_t));
    }
    log_gpa(WL_VCPU_GPA + id * sizeof(struct wl_vcpu));
    usleep(100);
}

static int own_supported(struct migr_hv *hv)
{
    if (hv != own.hv) {
        migr_errorf(ENOTSUP, "vmm-log: only the test's own guest logs its writes");
        return 0;
    }
    return 1;
}

static int own_start(struct migr_dirty *d)
{
    T_ASSERT(d->npages <= own.words * 64);
    for (uint64_t w = 0; w < own.words; w++) /* writes before start: round 1 sends all */
        __atomic_store_n(&own.log[w], 0, __ATOMIC_RELAXED);
    own.starts++;
    return 0;
}

static long own_harvest(struct migr_dirty *d, uint64_t *bm)
{
    long added = 0;
    for (uint64_t w = 0; w < own.words; w++) {
        uint64_t bits = __atomic_exchange_n(&own.log[w], 0, __ATOMIC_ACQ_REL);
        added += __builtin_popcountll(bits & ~bm[w]);
        bm[w] |= bits;
    }
    own.harvests++;
    own.reported += (uint64_t)added;
    return added;
}

static void own_stop(struct migr_dirty *d)
{
    own.stops++;
}

static const struct migr_dirty_ops vmm_log = {
    .name = "vmm-log",
    .supported = own_supported,
    .start = own_start,
    .harvest = own_harvest,
    .stop = own_stop,
};

static void test_register_rules(void)
{
    struct migr_dirty_ops bad = vmm_log;
    bad.harvest = NULL;
    T_EQ(migr_dirty_register(&bad), -EINVAL);
    bad = vmm_log;
    bad.name = "mprotect";
    T_EQ(migr_dirty_register(&bad), -EEXIST);
    bad.name = "kvm-bitmap";
    T_EQ(migr_dirty_register(&bad), -EEXIST);
    T_ASSERT(strstr(migr_last_error(), "built-in"));
    bad.name = "vmm?x";
    T_EQ(migr_dirty_register(&bad), -EINVAL);
    T_EQ(migr_dirty_unregister(&vmm_log), -ENOENT);

    static struct migr_dirty_ops many[17];
    static char names[17][16];
    int n = 0;
    for (; n < 17; n++) {
        many[n] = vmm_log;
        snprintf(names[n], sizeof(names[n]), "extra-%d", n);
        many[n].name = names[n];
        int err = migr_dirty_register(&many[n]);
        if (err == -ENOSPC)
            break;
        T_OK(err);
    }
    T_EQ(n, 16);
    T_EQ(migr_dirty_register(&many[0]), -EEXIST);
    for (int i = 0; i < n; i++)
        T_OK(migr_dirty_unregister(&many[i]));
}

int main(void)
{
    test_register_rules();
    struct migr_vm_config cfg = {.mem_bytes = 64ull << 20, .nvcpus = 2};
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse("pattern=random,data=text", &cfg.wl));
    struct migr_hv *src, *other;
    T_OK(migr_hv_create("proc", &cfg, &src));
    T_OK(migr_hv_create("proc", &cfg, &other));
    own.hv = src;
    own.words = migr_bitmap_words(src->ram_pages);
    T_ASSERT((own.log = calloc(own.words, sizeof(uint64_t))));
    T_OK(migr_proc_set_step(src, step, NULL));

    struct migr_dirty *d;
    T_EQ(migr_dirty_open("vmm-log", src, &d), -EINVAL); /* not registered yet */
    T_OK(migr_dirty_register(&vmm_log));
    T_EQ(migr_dirty_register(&vmm_log), -EEXIST);
    T_EQ(migr_dirty_open("bogus", src, &d), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "vmm-log") && strstr(migr_last_error(), "pagemap-scan"));
    T_EQ(migr_dirty_open("vmm-log", other, &d), -ENOTSUP); /* its supported() decides */
    T_ASSERT(strstr(migr_last_error(), "only the test's own guest"));
    T_OK(migr_dirty_open("vmm-log", src, &d));
    T_ASSERT(d->ops == &vmm_log);
    migr_dirty_close(d);
    migr_hv_destroy(other);

    T_OK(src->ops->resume(src));
    usleep(200000);
    struct migr_send_params p;
    struct migr_stats st = MIGR_STATS_INIT;
    struct t_rx x;
    migr_send_params_init(&p);
    p.tracker = "vmm-log";
    char url[64];
    snprintf(url, sizeof(url), "unix:@migr-own-%d", getpid());
    int rc = t_send(src, url, &p, &st, &x);
    if (rc < 0)
        T_FAIL("send with vmm-log: %s", st.error);
    T_OK(x.rc);
    T_ASSERT(strcmp(st.tracker, "vmm-log") == 0);
    T_ASSERT(st.verified && st.precopy.rounds >= 2);
    T_ASSERT(own.starts == 1 && own.stops == 1 && own.harvests >= st.precopy.rounds - 1 && own.reported > 0);
    uint64_t at = migr_workload_progress(src);
    migr_hv_destroy(src);
    usleep(150000);
    T_ASSERT(migr_workload_progress(x.hv) > at); /* runs on, with the standard workload */
    t_verify(x.hv, "on the destination");
    printf("vmm-log: %u rounds, %llu harvests reported %llu pages, %llu pages sent, downtime %.1f ms: verified\n",
           st.precopy.rounds, (unsigned long long)own.harvests, (unsigned long long)own.reported,
           (unsigned long long)st.pages, (double)st.downtime_ns / 1e6);
    migr_hv_destroy(x.hv);

    T_OK(migr_dirty_unregister(&vmm_log));
    struct migr_hv *again;
    T_OK(migr_hv_create("proc", &cfg, &again));
    T_EQ(migr_dirty_open("vmm-log", again, &d), -EINVAL);
    migr_hv_destroy(again);
    free(own.log);
    return 0;
}
