/* The kvm-ring harvesting logic (migr_dirty_ring_collect, hv-glue/kvm/dirty_ring.c)
 * on rings in ordinary memory that this test fills the way KVM does: a
 * producer writes (slot, offset) into the next free entry and publishes it
 * with a store-release of flags = DIRTY; it may reuse an entry only after
 * "KVM_RESET_DIRTY_RINGS" (emulated here) has taken it back, i.e. after the
 * collector flagged it RESET. Runs without /dev/kvm (test_dirty_kvm.c runs
 * the tracker against real KVM rings):
 *   order    entries collected in ring order, across the wrap-around, up to
 *            the first unpublished entry; fetch index and counts exact;
 *   slots    (slot, offset) mapped through two regions with non-contiguous
 *            slot ids; an entry naming another slot, address space or an
 *            offset past its region is refused (-EIO) and left in place,
 *            as are the entries after it;
 *   race     a producer thread pushing random pages (waiting whenever the
 *            ring is full, as a vCPU at KVM_EXIT_DIRTY_RING_FULL) against a
 *            collector thread: every pushed page is reported, each entry
 *            taken exactly once; and two collectors sharing an atomic
 *            bitmap (the VMM's pending bitmap) under a ring lock. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv-glue/kvm/dirty_ring.h"
#include "migr/dirty.h"
#include "migr/hv.h"
#include "testlib.h"

#define ENTRIES 64u

static struct migr_hv hv; /* two regions: slot 0 (32 pages), slot 5 (1000 pages) */

struct fake_ring {
    struct kvm_dirty_gfn gfn[ENTRIES];
    uint32_t push, reset; /* KVM's indices: next to fill, next to reset */
};

/* KVM's side: push one entry; false if the ring is full (no free entry). */
static bool push(struct fake_ring *r, uint32_t slot, uint64_t off)
{
    struct kvm_dirty_gfn *e = &r->gfn[r->push & (ENTRIES - 1)];
    if (__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) != 0)
        return false;
    e->slot = slot;
    e->offset = off;
    __atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
    r->push++;
    return true;
}

/* KVM_RESET_DIRTY_RINGS on one ring: from the reset index, free the entries
 * flagged RESET; returns how many. */
static uint32_t kvm_reset(struct fake_ring *r)
{
    uint32_t n = 0;
    for (;;) {
        struct kvm_dirty_gfn *e = &r->gfn[r->reset & (ENTRIES - 1)];
        if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_RESET))
            return n;
        __atomic_store_n(&e->flags, 0, __ATOMIC_RELEASE);
        r->reset++;
        n++;
    }
}

static uint64_t idx(uint32_t slot, uint64_t off) { return slot == 0 ? off : 32 + off; }

static void test_order(void)
{
    static struct fake_ring r;
    uint64_t bm[20] = {0}, added = 0;
    uint32_t fetch = 0;
    T_EQ(migr_dirty_ring_collect(r.gfn, ENTRIES, &fetch, &hv, bm, false, &added), 0);
    /* 40 entries, collect, reset; then 50 more: they wrap around. */
    for (uint32_t i = 0; i < 40; i++)
        T_ASSERT(push(&r, i % 2 ? 5 : 0, i % 2 ? 999 - i : i % 32));
    T_EQ(migr_dirty_ring_collect(r.gfn, ENTRIES, &fetch, &hv, bm, false, &added), 40);
    T_EQ(fetch, 40);
    T_EQ(added, 20 + 20 - 4); /* slot 0 offsets i%32 for even i < 40: 0..30 even, and 32..38 -> 0..6 again */
    T_EQ(migr_bitmap_count(bm, 1032), added);
    for (uint32_t i = 0; i < 40; i++)
        T_ASSERT(migr_bit_test(bm, i % 2 ? idx(5, 999 - i) : idx(0, i % 32)));
    for (uint32_t i = 0; i < 40; i++)
        T_EQ(r.gfn[i].flags, KVM_DIRTY_GFN_F_RESET);
    T_EQ(kvm_reset(&r), 40);
    for (uint32_t i = 0; i < 50; i++)
        T_ASSERT(push(&r, 5, 100 + i));
    T_EQ(push(&r, 5, 1), true);        /* 51 in use of 64 */
    /* An entry written but not yet published ends the collection. */
    struct kvm_dirty_gfn *half = &r.gfn[r.push & (ENTRIES - 1)];
    half->slot = 5;
    half->offset = 7;
    memset(bm, 0, sizeof(bm));
    added = 0;
    T_EQ(migr_dirty_ring_collect(r.gfn, ENTRIES, &fetch, &hv, bm, false, &added), 51);
    T_EQ(fetch, 91);
    T_EQ(added, 51);
    T_ASSERT(!migr_bit_test(bm, idx(5, 7)));
    T_ASSERT(migr_bit_test(bm, idx(5, 1)) && migr_bit_test(bm, idx(5, 149)));
    /* Collecting again finds nothing; the same page again adds no bit. */
    T_EQ(migr_dirty_ring_collect(r.gfn, ENTRIES, &fetch, &hv, bm, false, &added), 0);
    T_EQ(kvm_reset(&r), 51);
    T_ASSERT(push(&r, 5, 100));
    added = 0;
    T_EQ(migr_dirty_ring_collect(r.gfn, ENTRIES, &fetch, &hv, bm, false, &added), 1);
    T_EQ(added, 0);
    T_EQ(kvm_reset(&r), 1);
    /* A full ring: all 64 entries, collected in one call. */
    for (uint32_t i = 0; i < ENTRIES; i++)
        T_ASSERT(push(&r, 0, i % 32));
    T_ASSERT(!push(&r, 0, 0));
    T_EQ(migr_dirty_ring_collect(r.gfn, ENTRIES, &fetch, &hv, bm, false, &added), ENTRIES);
    T_EQ(kvm_reset(&r), ENTRIES);
}

static void test_bad_slots(void)
{
    static struct fake_ring r;
    uint64_t bm[20] = {0}, added = 0;
    uint32_t fetch = 0;
    static const struct { uint32_t slot; uint64_t off; } bad[] = {
        {1, 0}, {0, 32}, {5, 1000}, {1u << 16, 0}, {(1u << 16) | 5, 3},
    };
    for (size_t k = 0; k < MIGR_ARRAY_SIZE(bad); k++) {
        T_ASSERT(push(&r, 0, 3));
        T_ASSERT(push(&r, bad[k].slot, bad[k].off));
        T_ASSERT(push(&r, 5, 4));
        long n = migr_dirty_ring_collect(r.gfn, ENTRIES, &fetch, &hv, bm, false, &added);
        T_EQ(n, -EIO);
        T_ASSERT(strstr(migr_last_error(), "not guest RAM"));
        /* the good entry before it was taken; the bad one and the next stay */
        T_ASSERT(migr_bit_test(bm, idx(0, 3)));
        T_ASSERT(!migr_bit_test(bm, idx(5, 4)));
        T_EQ(r.gfn[(fetch) & (ENTRIES - 1)].flags, KVM_DIRTY_GFN_F_DIRTY);
        /* drop the bad entry (test's side) and finish */
        r.gfn[fetch & (ENTRIES - 1)].slot = 0;
        r.gfn[fetch & (ENTRIES - 1)].offset = 9;
        T_EQ(migr_dirty_ring_collect(r.gfn, ENTRIES, &fetch, &hv, bm, false, &added), 2);
        T_ASSERT(migr_bit_test(bm, idx(5, 4)));
        kvm_reset(&r);
        memset(bm, 0, sizeof(bm));
    }
}

/* ---------- producer against collectors ---------- */

#define PUSHES 700u   /* of 1032 pages: about half of them pushed per run */
#define RUNS 100

struct race {
    struct fake_ring r;
    pthread_mutex_t lock;   /* the ring lock; also serialises kvm_reset */
    uint64_t *bm;           /* shared, atomic */
    uint64_t *pushed;       /* producer's own record */
    uint64_t added;         /* sum over collectors */
    uint64_t collected;
    unsigned long long seed;
    int done;
    uint32_t fetch;
    uint64_t full_waits;
};

static void *producer(void *arg)
{
    struct race *x = arg;
    unsigned long long s = x->seed;
    for (uint32_t i = 0; i < PUSHES; i++) {
        uint64_t k = t_rand(&s) % 1032;
        uint32_t slot = k < 32 ? 0 : 5;
        uint64_t off = k < 32 ? k : k - 32;
        while (!push(&x->r, slot, off)) { /* ring full: the vCPU waits for a collection + reset */
            x->full_waits++;
            sched_yield();
        }
        x->pushed[k >> 6] |= 1ull << (k & 63);
    }
    __atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *collector(void *arg)
{
    struct race *x = arg;
    for (;;) {
        int last = __atomic_load_n(&x->done, __ATOMIC_ACQUIRE);
        uint64_t added = 0;
        pthread_mutex_lock(&x->lock);
        long n = migr_dirty_ring_collect(x->r.gfn, ENTRIES, &x->fetch, &hv, x->bm, true, &added);
        T_OK(n);
        x->collected += (uint64_t)n;
        x->added += added;
        kvm_reset(&x->r);
        pthread_mutex_unlock(&x->lock);
        if (last)
            return NULL;
        if (n == 0)
            sched_yield();
    }
}

static uint64_t race_once(unsigned long long seed, int ncollectors)
{
    static struct race x;
    memset(&x, 0, sizeof(x));
    pthread_mutex_init(&x.lock, NULL);
    uint64_t words = migr_bitmap_words(1032);
    x.bm = calloc(words, 8);
    x.pushed = calloc(words, 8);
    T_ASSERT(x.bm && x.pushed);
    x.seed = seed;
    pthread_t p, c[2];
    T_ASSERT(pthread_create(&p, NULL, producer, &x) == 0);
    for (int i = 0; i < ncollectors; i++)
        T_ASSERT(pthread_create(&c[i], NULL, collector, &x) == 0);
    pthread_join(p, NULL);
    for (int i = 0; i < ncollectors; i++)
        pthread_join(c[i], NULL);
    /* every entry taken exactly once, every pushed page reported, nothing else */
    T_EQ(x.collected, PUSHES);
    T_EQ(x.fetch, PUSHES);
    for (uint64_t w = 0; w < words; w++)
        if (x.bm[w] != x.pushed[w])
            T_FAIL("word %llu: reported 0x%llx, pushed 0x%llx", (unsigned long long)w,
                   (unsigned long long)x.bm[w], (unsigned long long)x.pushed[w]);
    T_EQ(x.added, migr_bitmap_count(x.pushed, 1032));
    T_ASSERT(x.added < 1032);
    free(x.bm);
    free(x.pushed);
    pthread_mutex_destroy(&x.lock);
    return x.full_waits;
}

static void test_race(unsigned long long seed, int ncollectors)
{
    uint64_t full = 0;
    for (int i = 0; i < RUNS; i++)
        full += race_once(seed + (unsigned long long)i * 7919, ncollectors);
    printf("race, %d collector%s: %d runs of %u entries; the producer found the ring full %llu times\n",
           ncollectors, ncollectors > 1 ? "s" : "", RUNS, PUSHES, (unsigned long long)full);
}

int main(void)
{
    unsigned long long seed = t_seed();
    static const struct migr_hv_ops ops = {.name = "ring-test"};
    hv.ops = &ops;
    hv.kvm_vm_fd = -1;
    hv.nregions = 2;
    hv.regions[0] = (struct migr_hv_region){.gpa = 0, .size = 32 * MIGR_PAGE_SIZE, .slot = 0};
    hv.regions[1] = (struct migr_hv_region){.gpa = 1ull << 32, .size = 1000 * MIGR_PAGE_SIZE, .slot = 5};
    hv.ram_pages = 1032;
    test_order();
    test_bad_slots();
    test_race(seed, 1);
    test_race(seed + 1000003, 2);
    return 0;
}
