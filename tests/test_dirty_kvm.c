/* The KVM dirty trackers against a running KVM guest: kvm-bitmap in both
 * modes (MIGR_KVM_DIRTY_MANUAL=0: KVM_GET_DIRTY_LOG re-protects; =1: manual
 * protect with KVM_CLEAR_DIRTY_LOG) and kvm-ring on a VM created with small
 * dirty rings (512 entries per vCPU, so that KVM_EXIT_DIRTY_RING_FULL
 * happens between harvests and its entries must reach a later harvest), one
 * fresh VM per mode and vCPU count.
 *
 * The oracle is the workload's generation table: every working-set page whose
 * generation changed while tracking was on was written, so it must be in the
 * union of the harvests taken meanwhile (harvested while the guest writes,
 * racing with it), and so must the generation-table pages holding those
 * entries and the vCPU area page. Pages reported without a write are false
 * positives: allowed, counted and printed. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv-glue/kvm/kvm.h"
#include "hv-glue/workload/workload.h"
#include "migr/dirty.h"
#include "migr/hv.h"
#include "migr/workload.h"
#include "testlib.h"

#define RUN_MS 600
#define RING 512u

struct counts {
    uint64_t ws_written, gen_written, vcpu_written, expected;
    uint64_t reported, false_pos, stack, other;
};

static uint64_t idx_of(struct migr_hv *hv, uint64_t gpa)
{
    int64_t i = migr_hv_pfn_index(hv, gpa / MIGR_PAGE_SIZE);
    T_ASSERT(i >= 0);
    return (uint64_t)i;
}

/* Harvest into bm and check that the return value is exactly the number of
 * bits that were not set before (bit accounting). */
static long harvest_checked(struct migr_dirty *d, uint64_t *bm, uint64_t *prev, uint64_t words)
{
    memcpy(prev, bm, words * 8);
    long n = migr_dirty_harvest(d, bm);
    T_OK(n);
    uint64_t fresh = 0;
    for (uint64_t w = 0; w < words; w++) {
        T_ASSERT((prev[w] & ~bm[w]) == 0); /* harvest only ever sets bits */
        fresh += (uint64_t)__builtin_popcountll(bm[w] & ~prev[w]);
    }
    T_EQ(n, fresh);
    return n;
}

/* Classify every reported page and check that every written page is reported. */
static void check_cover(struct migr_hv *hv, const struct wl_boot *b, const uint32_t *snap,
                        const uint64_t *cum, struct counts *c)
{
    const uint32_t *gen = (const uint32_t *)migr_hv_gpa(hv, b->gen_gpa, b->ws_pages * 4);
    uint64_t words = migr_bitmap_words(hv->ram_pages);
    uint64_t *expect = calloc(words, 8);
    T_ASSERT(gen && expect);
    memset(c, 0, sizeof(*c));
    for (uint64_t i = 0; i < b->ws_pages; i++) {
        if (gen[i] == snap[i])
            continue;
        c->ws_written++;
        uint64_t wi = idx_of(hv, b->ws_gpa + i * MIGR_PAGE_SIZE);
        uint64_t gi = idx_of(hv, b->gen_gpa + i * 4);
        if (!migr_bit_test(cum, wi))
            T_FAIL("working-set page %llu (gpa 0x%llx, generation %u -> %u) was written but "
                   "never reported", (unsigned long long)i,
                   (unsigned long long)(b->ws_gpa + i * MIGR_PAGE_SIZE), snap[i], gen[i]);
        if (!migr_bit_test(cum, gi))
            T_FAIL("generation-table page of entry %llu (gpa 0x%llx) was written but never "
                   "reported", (unsigned long long)i, (unsigned long long)(b->gen_gpa + i * 4));
        migr_bit_set(expect, wi);
        if (!migr_bit_test(expect, gi)) {
            migr_bit_set(expect, gi);
            c->gen_written++;
        }
    }
    T_ASSERT(c->ws_written > 0);
    uint64_t vi = idx_of(hv, WL_VCPU_GPA);
    if (!migr_bit_test(cum, vi))
        T_FAIL("vCPU area page (gpa 0x%llx) was written but never reported",
               (unsigned long long)WL_VCPU_GPA);
    migr_bit_set(expect, vi);
    c->vcpu_written = 1;
    c->expected = c->ws_written + c->gen_written + c->vcpu_written;

    uint64_t stack_lo = idx_of(hv, WL_STACK_GPA);
    uint64_t stack_hi = stack_lo + (uint64_t)WL_MAX_VCPUS * WL_STACK_SIZE / MIGR_PAGE_SIZE;
    uint64_t ws_lo = idx_of(hv, b->ws_gpa), ws_hi = ws_lo + b->ws_pages;
    uint64_t gen_lo = idx_of(hv, b->gen_gpa);
    uint64_t gen_hi = gen_lo + (b->ws_pages * 4 + MIGR_PAGE_SIZE - 1) / MIGR_PAGE_SIZE;
    for (uint64_t i = 0; i < hv->ram_pages; i++) {
        if (!migr_bit_test(cum, i))
            continue;
        c->reported++;
        if (migr_bit_test(expect, i))
            continue;
        if ((i >= ws_lo && i < ws_hi) || (i >= gen_lo && i < gen_hi))
            c->false_pos++;   /* page of the workload's data with no change: not written */
        else if (i >= stack_lo && i < stack_hi)
            c->stack++;       /* the guest's stack: written by calls, no oracle */
        else
            c->other++;       /* e.g. page tables (accessed/dirty bits) */
    }
    free(expect);
}

/* One mode, one VM. Returns 0, or 77 if this mode is unsupported here.
 * ring: entries of the VM's dirty rings (tracker kvm-ring), 0: kvm-bitmap. */
static int run_case(const char *mode, uint32_t ring, uint32_t nvcpus, const char *wl, unsigned long long *seed)
{
    const char *tracker = ring ? "kvm-ring" : strcmp(mode, "manual") ? "kvm-bitmap?manual=0" : "kvm-bitmap?manual=1";
    struct migr_vm_config cfg = {.mem_bytes = 64ull << 20, .nvcpus = nvcpus};
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse(wl, &cfg.wl));
    struct migr_hv *hv;
    int cerr = migr_kvm_create_ring(&cfg, ring, &hv);
    if (cerr == -ENOTSUP) {
        printf("%s %s vcpus=%u: SKIP: %s\n", tracker, mode, nvcpus, migr_last_error());
        return 77;
    }
    T_OK(cerr);
    const struct wl_boot *b = (const struct wl_boot *)migr_hv_gpa(hv, WL_BOOT_GPA, 4096);
    T_ASSERT(b);
    T_OK(hv->ops->resume(hv));
    usleep(100000); /* past the first touches of the working set */

    struct migr_dirty *d;
    T_OK(migr_dirty_open(tracker, hv, &d));
    T_EQ(d->npages, hv->ram_pages);
    T_EQ(migr_dirty_harvest(d, NULL), -EINVAL); /* before start */
    int err = migr_dirty_start(d);
    if (err == -ENOTSUP) {
        printf("%s %s vcpus=%u: SKIP: %s\n", tracker, mode, nvcpus, migr_last_error());
        migr_dirty_close(d);
        migr_hv_destroy(hv);
        return 77;
    }
    T_OK(err);
    T_EQ(migr_dirty_start(d), -EBUSY);

    uint64_t words = migr_bitmap_words(hv->ram_pages);
    uint64_t *cum = calloc(words, 8), *prev = calloc(words, 8), *scratch = calloc(words, 8);
    uint32_t *snap = malloc(b->ws_pages * 4);
    T_ASSERT(cum && prev && scratch && snap);

    /* (a) every write between the quiesced snapshot and the final harvest is reported. */
    T_OK(hv->ops->quiesce(hv, 5000));
    memcpy(snap, migr_hv_gpa(hv, b->gen_gpa, b->ws_pages * 4), b->ws_pages * 4);
    T_OK(harvest_checked(d, scratch, prev, words)); /* discard: writes before the snapshot */
    T_OK(hv->ops->unquiesce(hv));
    uint64_t w0 = migr_workload_progress(hv), harvests = 0, t0 = migr_now_ns();
    uint64_t h0 = d->harvests, ns0 = d->harvest_ns;
    while (migr_now_ns() - t0 < RUN_MS * 1000000ull) {
        harvest_checked(d, cum, prev, words);
        harvests++;
        unsigned long long r = t_rand(seed) % 4;
        if (r) /* sometimes back to back, sometimes after a pause (long enough to fill a ring) */
            usleep((useconds_t)(r * (ring ? 10000 : 1000)));
    }
    if (ring) {
        /* One gap long enough for certain: a loaded machine may never write
         * RING distinct pages within the short gaps above, and the ring-full
         * path (the vCPU collecting its own ring) must run at least once. */
        uint64_t g0 = migr_workload_progress(hv), tg = migr_now_ns();
        while (migr_workload_progress(hv) - g0 < 4ull * ring && migr_now_ns() - tg < 5000000000ull)
            usleep(5000);
    }
    T_OK(hv->ops->quiesce(hv, 5000));
    harvest_checked(d, cum, prev, words);
    harvests++;
    T_EQ(d->harvests - h0, harvests);
    uint64_t writes = migr_workload_progress(hv) - w0;
    T_ASSERT(!hv->ops->failed(hv));
    struct counts c;
    check_cover(hv, b, snap, cum, &c);

    /* (b) nothing runs while quiesced: the next harvest reports nothing. */
    memset(scratch, 0, words * 8);
    T_EQ(harvest_checked(d, scratch, prev, words), 0);
    T_EQ(migr_bitmap_count(scratch, hv->ram_pages), 0);
    /* (c) a page reported before is not counted again. */
    T_EQ(harvest_checked(d, cum, prev, words), 0);

    struct migr_verify_report rep;
    T_OK(migr_workload_verify(hv, &rep));
    if (!rep.ok)
        T_FAIL("guest image damaged under dirty logging: %s", rep.first_bad_why);
    T_OK(hv->ops->unquiesce(hv));

    uint64_t full = 0;
    for (uint32_t v = 0; v < nvcpus; v++)
        full += ((struct kvm_vm *)hv)->vcpus[v].ring_full_exits;
    if (ring && strstr(wl, "rate=0"))
        T_ASSERT(full > 0); /* the ring-full path ran, and lost nothing (check_cover) */
    printf("%s %-6s vcpus=%u %s: %llu page writes; written %llu pages (ws %llu, gen "
           "table %llu, vcpu %llu); reported %llu; false positives %llu; stack %llu, other %llu; "
           "%llu harvests, %.1f us each; %llu ring-full exits\n",
           tracker, mode, nvcpus, wl, (unsigned long long)writes, (unsigned long long)c.expected,
           (unsigned long long)c.ws_written, (unsigned long long)c.gen_written,
           (unsigned long long)c.vcpu_written, (unsigned long long)c.reported,
           (unsigned long long)c.false_pos, (unsigned long long)c.stack,
           (unsigned long long)c.other, (unsigned long long)harvests,
           (double)(d->harvest_ns - ns0) / 1e3 / (double)harvests, (unsigned long long)full);

    migr_dirty_close(d); /* logging off; the guest keeps running */
    usleep(20000);
    T_ASSERT(!hv->ops->failed(hv));
    free(cum);
    free(prev);
    free(scratch);
    free(snap);
    migr_hv_destroy(hv);
    return 0;
}

static void test_open_and_bitmaps(void)
{
    struct migr_vm_config cfg = {.mem_bytes = 8ull << 20, .nvcpus = 1};
    migr_workload_defaults(&cfg.wl);
    struct migr_hv *hv;
    struct migr_dirty *d;
    T_OK(migr_hv_create("kvm", &cfg, &hv));
    T_EQ(migr_dirty_open("no-such-tracker", hv, &d), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "kvm-bitmap"));
    T_OK(migr_dirty_open("auto", hv, &d));
    T_ASSERT(strcmp(d->ops->name, "kvm-bitmap") == 0);
    migr_dirty_close(d); /* never started */
    migr_dirty_close(NULL);
    int kvm_fd = hv->kvm_vm_fd;
    hv->kvm_vm_fd = -1; /* looks like a non-KVM guest */
    T_EQ(migr_dirty_open("kvm-bitmap", hv, &d), -ENOTSUP);
    T_ASSERT(strstr(migr_last_error(), "not KVM"));
    T_EQ(migr_dirty_open("auto", hv, &d), -ENOTSUP);
    hv->kvm_vm_fd = kvm_fd;
    T_EQ(migr_dirty_open("kvm-ring", hv, &d), -ENOTSUP);
    T_ASSERT(strstr(migr_last_error(), "without a dirty ring"));
    migr_hv_destroy(hv);

    /* A VM with rings: kvm-ring is its tracker, kvm-bitmap cannot work. */
    int err = migr_kvm_create_ring(&cfg, RING, &hv);
    if (err == -ENOTSUP) {
        printf("kvm-ring: SKIP: %s\n", migr_last_error());
    } else {
        T_OK(err);
        T_OK(migr_dirty_open("auto", hv, &d));
        T_ASSERT(strcmp(d->ops->name, "kvm-ring") == 0);
        migr_dirty_close(d);
        T_EQ(migr_dirty_open("kvm-bitmap", hv, &d), -ENOTSUP);
        T_ASSERT(strstr(migr_last_error(), "kvm-ring"));
        migr_hv_destroy(hv);
        T_EQ(migr_kvm_create_ring(&cfg, 1000, &hv), -ENOTSUP); /* not a power of two */
        T_EQ(migr_kvm_create_ring(&cfg, 16, &hv), -ENOTSUP);   /* less than a page */
    }

    uint64_t bm[3] = {~0ull, 0x8000000000000001ull, 0xff};
    T_EQ(migr_bitmap_count(bm, 0), 0);
    T_EQ(migr_bitmap_count(bm, 1), 1);
    T_EQ(migr_bitmap_count(bm, 64), 64);
    T_EQ(migr_bitmap_count(bm, 65), 65);
    T_EQ(migr_bitmap_count(bm, 128), 66);
    T_EQ(migr_bitmap_count(bm, 132), 70);
    T_EQ(migr_bitmap_count(bm, 192), 74);
}

int main(void)
{
    if (!migr_hv_available("kvm"))
        T_SKIP("no usable /dev/kvm: %s", migr_last_error());
    unsigned long long seed = t_seed();
    test_open_and_bitmaps();
    static const char *const modes[] = {"get", "manual"};
    int ran = 0;
    for (size_t m = 0; m < MIGR_ARRAY_SIZE(modes); m++) {
        if (run_case(modes[m], 0, 1, "rate=0,pattern=random,data=text", &seed) == 77)
            continue;
        run_case(modes[m], 0, 2, "rate=128M,pattern=random,data=random", &seed);
        ran++;
    }
    if (run_case("ring", RING, 1, "rate=0,pattern=random,data=text", &seed) != 77) {
        run_case("ring", RING, 2, "rate=0,pattern=sequential,data=random", &seed);
        run_case("ring", RING, 2, "rate=128M,pattern=random,data=random", &seed);
        ran++;
    }
    if (!ran)
        T_SKIP("no KVM dirty tracker (kvm-bitmap modes, kvm-ring) is supported here");
    return 0;
}
