/* The EPT dirty-bit harvester (dirty/ept.c, include/migr/ept.h) on EPT
 * tables this test builds in SDM format in an arena of "host-physical"
 * pages, written to the way a CPU does: a write walks the tables, sets A on
 * every entry and D on the leaf (atomic OR) unless its TLB already holds the
 * leaf as dirty, then changes the page. The TLB is modelled: a leaf cached
 * dirty is not marked again until the flush hook (INVEPT) empties the TLB.
 *   known     4 KiB pages, 2 MiB and 1 GiB leaves (a large leaf reports all
 *             its 4 KiB pages), non-present entries (a write to them is an EPT
 *             violation and nothing is reported), pages outside the bitmap;
 *             D cleared, A kept, flush called exactly when D bits were
 *             cleared; second harvest empty;
 *   race      a "CPU" thread writing random pages while harvests run back to
 *             back: the oracle is a migration in miniature (each page holds a
 *             generation; after every harvest the reported pages' generations
 *             are copied; after the CPU stops and a last harvest, the copy
 *             must equal memory). Run again without the flush hook, where
 *             the TLB hides writes: the oracle must find stale pages then
 *             (proof that it can fail);
 *   malformed reserved bits, write-without-read, PS in a PML4E, bad memory
 *             type, a table loop, a shared table, an unreachable table, A/D
 *             off in the EPTP: refused with a clear error and no D bit
 *             cleared;
 *   tracker   the "ept" tracker through migr_dirty_open on a guest with two
 *             RAM regions, with auto-selection. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migr/dirty.h"
#include "migr/ept.h"
#include "migr/hv.h"
#include "testlib.h"

#define HPA0 0x100000000ull      /* host-physical address of arena page 0 */
#define NTAB 64                  /* arena pages */
#define PG 4096ull
#define MIB (1ull << 20)
#define GIB (1ull << 30)
/* Guest-physical layout:
 *   [0, 2M)        4 KiB PTEs (PT 0)
 *   [2M, 4M)       4 KiB PTEs with holes: every 3rd entry not present (PT 1)
 *   [4M, 64M)      2 MiB leaves
 *   [1G, 2G)       one 1 GiB leaf
 *   [4G, 4G+2M)    a 2 MiB leaf outside the bitmap (e.g. a device's memory)
 * The bitmap: gpa 0 .. 2 GiB. */
#define SPACE (2 * GIB)
#define SPACE_PAGES (SPACE / PG)

static pthread_mutex_t tlb_lock = PTHREAD_MUTEX_INITIALIZER; /* a write vs INVEPT */
static uint64_t tlb_epoch = 1;
static uint32_t *tlb;            /* per 4 KiB page: epoch in which its leaf was cached dirty */
static uint32_t *gen;            /* "memory": a generation per page of the bitmap space */
static uint64_t flushes;
static uint8_t *arena;
static int next_tab;
static uint64_t eptp;

static void *h2p(void *arg, uint64_t hpa)
{
    (void)arg;
    if (hpa < HPA0 || hpa >= HPA0 + NTAB * PG || hpa % PG)
        return NULL;
    return arena + (hpa - HPA0);
}

static uint64_t new_table(void)
{
    T_ASSERT(next_tab < NTAB);
    memset(arena + (uint64_t)next_tab * PG, 0, PG);
    return HPA0 + (uint64_t)next_tab++ * PG;
}

static uint64_t *tab(uint64_t hpa) { return h2p(NULL, hpa); }

#define RWX (MIGR_EPT_R | MIGR_EPT_W | MIGR_EPT_X)
/* Host-physical address of guest page gpa (identity plus an offset: only the
 * bits matter, nothing is mapped behind them). */
#define BACK(gpa) (0x200000000ull + (gpa))

static uint64_t pml4, pdpt0, pd0, pd4, pt0, pt1;

static void build(void)
{
    next_tab = 0;
    pml4 = new_table();
    pdpt0 = new_table();
    pd0 = new_table();
    pt0 = new_table();
    pt1 = new_table();
    pd4 = new_table();
    tab(pml4)[0] = pdpt0 | RWX;
    tab(pdpt0)[0] = pd0 | RWX;
    tab(pd0)[0] = pt0 | RWX;
    tab(pd0)[1] = pt1 | RWX;
    for (unsigned i = 0; i < 512; i++) {
        tab(pt0)[i] = BACK(i * PG) | RWX | MIGR_EPT_MT_WB;
        if (i % 3)
            tab(pt1)[i] = BACK(2 * MIB + i * PG) | RWX | MIGR_EPT_MT_WB;
    }
    for (unsigned i = 2; i < 32; i++)
        tab(pd0)[i] = BACK(i * 2 * MIB) | RWX | MIGR_EPT_MT_WB | MIGR_EPT_LARGE;
    tab(pdpt0)[1] = BACK(GIB) | RWX | MIGR_EPT_MT_WB | MIGR_EPT_LARGE;
    tab(pdpt0)[4] = pd4 | RWX;
    tab(pd4)[0] = BACK(4 * GIB) | RWX | MIGR_EPT_MT_WB | MIGR_EPT_LARGE;
    eptp = pml4 | MIGR_EPTP_WB | MIGR_EPTP_WALK4 | MIGR_EPTP_AD;
    tlb_epoch++; /* new tables: the hypervisor flushes the TLB */
}

/* ---------- the CPU ---------- */


/* Leaf entry of gpa and its size, or NULL if not mapped (EPT violation). */
static uint64_t *leaf_of(uint64_t gpa, uint64_t *size)
{
    uint64_t t = pml4;
    for (int level = 4; level >= 1; level--) {
        uint64_t *e = &tab(t)[(gpa >> (12 + 9 * (level - 1))) & 511];
        uint64_t v = __atomic_load_n(e, __ATOMIC_RELAXED);
        if (!(v & 7))
            return NULL;
        __atomic_fetch_or(e, MIGR_EPT_A, __ATOMIC_SEQ_CST);
        if (level == 1 || (level <= 3 && (v & MIGR_EPT_LARGE))) {
            *size = 1ull << (12 + 9 * (level - 1));
            return e;
        }
        t = v & 0x000ffffffffff000ull;
    }
    return NULL;
}

/* A guest write to gpa; false on an EPT violation. */
static bool cpu_write(uint64_t gpa)
{
    uint64_t size;
    pthread_mutex_lock(&tlb_lock);
    uint64_t *e = leaf_of(gpa, &size);
    if (!e) {
        pthread_mutex_unlock(&tlb_lock);
        return false;
    }
    uint64_t first = (gpa & ~(size - 1)) / PG; /* the TLB caches per leaf: tag its first page */
    if (first >= SPACE_PAGES || tlb[first] != tlb_epoch) {
        __atomic_fetch_or(e, MIGR_EPT_D, __ATOMIC_SEQ_CST);
        if (first < SPACE_PAGES)
            tlb[first] = (uint32_t)tlb_epoch;
    }
    if (gpa < SPACE)
        __atomic_fetch_add(&gen[gpa / PG], 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&tlb_lock);
    return true;
}

static int invept(void *arg, uint64_t p)
{
    (void)arg;
    T_EQ(p, eptp);
    pthread_mutex_lock(&tlb_lock);
    tlb_epoch++;
    flushes++;
    pthread_mutex_unlock(&tlb_lock);
    return 0;
}

static struct migr_ept mk(void)
{
    return (struct migr_ept){.eptp = eptp, .hpa_to_ptr = h2p, .flush = invept, .gpa_base = 0,
                             .npages = SPACE_PAGES};
}

static void test_known(void)
{
    build();
    struct migr_ept e = mk();
    uint64_t *bm = calloc(migr_bitmap_words(SPACE_PAGES), 8);
    T_ASSERT(bm);
    T_OK(migr_ept_check(&e));
    T_EQ(e.stats.tables, 6);
    T_EQ(e.stats.leaves_4k, 512 + 341);
    T_EQ(e.stats.leaves_2m, 31);
    T_EQ(e.stats.leaves_1g, 1);
    uint64_t f0 = flushes;
    T_EQ(migr_ept_harvest(&e, bm), 0);
    T_EQ(flushes, f0); /* nothing cleared: no INVEPT */

    T_ASSERT(cpu_write(5 * PG));
    T_ASSERT(cpu_write(5 * PG + 100));      /* same page */
    T_ASSERT(cpu_write(2 * MIB + PG));      /* PT 1, entry 1 (present) */
    T_ASSERT(!cpu_write(2 * MIB + 3 * PG)); /* entry 3: not present, an EPT violation */
    T_ASSERT(cpu_write(6 * MIB + 7 * PG));  /* the 2 MiB leaf at 6M */
    T_ASSERT(cpu_write(GIB + 12345 * PG));  /* the 1 GiB leaf */
    T_ASSERT(cpu_write(4 * GIB + PG));      /* outside the bitmap */
    T_ASSERT(!cpu_write(3 * GIB));          /* unmapped */
    T_EQ(migr_ept_harvest(&e, bm), 1 + 1 + 512 + 262144);
    T_EQ(e.stats.dirty_leaves, 5);          /* the leaf outside the bitmap is cleared too */
    T_EQ(flushes, f0 + 1);
    T_ASSERT(migr_bit_test(bm, 5) && migr_bit_test(bm, 512 + 1));
    T_ASSERT(!migr_bit_test(bm, 4) && !migr_bit_test(bm, 6) && !migr_bit_test(bm, 512 + 3));
    for (uint64_t i = 0; i < 512; i++)
        T_ASSERT(migr_bit_test(bm, 6 * MIB / PG + i));
    T_ASSERT(!migr_bit_test(bm, 6 * MIB / PG - 1) && !migr_bit_test(bm, 8 * MIB / PG));
    T_ASSERT(migr_bit_test(bm, GIB / PG) && migr_bit_test(bm, 2 * GIB / PG - 1));
    T_EQ(migr_bitmap_count(bm, SPACE_PAGES), 1 + 1 + 512 + 262144);
    /* D cleared, A kept */
    T_EQ(tab(pt0)[5] & (MIGR_EPT_A | MIGR_EPT_D), MIGR_EPT_A);
    T_EQ(tab(pdpt0)[1] & (MIGR_EPT_A | MIGR_EPT_D), MIGR_EPT_A);
    T_EQ(tab(pd4)[0] & MIGR_EPT_D, 0);
    T_ASSERT(tab(pml4)[0] & MIGR_EPT_A);
    /* nothing written since: empty harvest, no flush */
    memset(bm, 0, migr_bitmap_words(SPACE_PAGES) * 8);
    T_EQ(migr_ept_harvest(&e, bm), 0);
    T_EQ(flushes, f0 + 1);
    /* the same page again after the flush: D set again, reported again */
    T_ASSERT(cpu_write(5 * PG));
    T_EQ(migr_ept_harvest(&e, bm), 1);
    /* a reported page not counted twice */
    T_ASSERT(cpu_write(5 * PG));
    T_EQ(migr_ept_harvest(&e, bm), 0);
    T_EQ(e.stats.dirty_leaves, 1);
    /* a bitmap starting at 2M: pages below are reported nowhere */
    struct migr_ept e2 = mk();
    e2.gpa_base = 2 * MIB;
    e2.npages = 512;
    memset(bm, 0, 64 * 8);
    T_ASSERT(cpu_write(0) && cpu_write(2 * MIB + 2 * PG));
    T_EQ(migr_ept_harvest(&e2, bm), 1);
    T_ASSERT(migr_bit_test(bm, 2));
    free(bm);
}

/* ---------- race ---------- */

struct cpu_arg {
    unsigned long long seed;
    int stop;
    uint64_t writes;
};

static const uint64_t mapped_ranges[][2] = {{0, 2 * MIB}, {2 * MIB, 4 * MIB}, {4 * MIB, 64 * MIB}, {GIB, 2 * GIB}};

static void *cpu_thread(void *arg)
{
    struct cpu_arg *c = arg;
    unsigned long long s = c->seed;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        const uint64_t *r = mapped_ranges[t_rand(&s) % 4];
        uint64_t pages = (r[1] - r[0]) / PG;
        uint64_t gpa = r[0] + (t_rand(&s) % (t_rand(&s) & 1 ? 64 : pages)) * PG; /* half the time a hot set */
        if (cpu_write(gpa))
            c->writes++;
    }
    return NULL;
}

/* Returns the number of stale pages (0: nothing missed). */
static uint64_t race(unsigned long long seed, bool with_flush, int ms)
{
    build();
    memset(gen, 0, SPACE_PAGES * 4);
    memset(tlb, 0, SPACE_PAGES * 4);
    struct migr_ept e = mk();
    if (!with_flush)
        e.flush = NULL;
    uint64_t words = migr_bitmap_words(SPACE_PAGES);
    uint64_t *bm = calloc(words, 8);
    uint32_t *shadow = calloc(SPACE_PAGES, 4);
    T_ASSERT(bm && shadow);
    /* "start": clear what is dirty, shadow = memory */
    T_OK(migr_ept_harvest(&e, bm));
    struct cpu_arg c = {.seed = seed};
    pthread_t t;
    T_ASSERT(pthread_create(&t, NULL, cpu_thread, &c) == 0);
    uint64_t t0 = migr_now_ns(), harvests = 0, reported = 0;
    for (bool last = false;;) {
        if (!last && migr_now_ns() - t0 > (uint64_t)ms * 1000000ull) {
            __atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
            pthread_join(t, NULL);
            last = true; /* one more harvest with the CPU stopped */
        }
        memset(bm, 0, words * 8);
        long n = migr_ept_harvest(&e, bm);
        T_OK(n);
        harvests++;
        reported += (uint64_t)n;
        for (uint64_t w = 0; w < words; w++)
            for (uint64_t v = bm[w]; v; v &= v - 1) {
                uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(v);
                shadow[i] = __atomic_load_n(&gen[i], __ATOMIC_ACQUIRE);
            }
        if (last)
            break;
        if (harvests % 4 == 0)
            sched_yield();
    }
    uint64_t stale = 0, written = 0;
    for (uint64_t i = 0; i < SPACE_PAGES; i++) {
        written += gen[i] != 0;
        stale += shadow[i] != gen[i];
    }
    printf("race %s flush: %llu CPU writes to %llu pages, %llu harvests, %llu pages reported "
           "(large leaves report all their pages), %llu pages stale\n",
           with_flush ? "with" : "without", (unsigned long long)c.writes, (unsigned long long)written,
           (unsigned long long)harvests, (unsigned long long)reported, (unsigned long long)stale);
    T_ASSERT(written > 100);
    free(bm);
    free(shadow);
    return stale;
}

/* ---------- malformed tables ---------- */

static void expect_refused(const char *what, int err_want, const char *msg_part)
{
    struct migr_ept e = mk();
    uint64_t *bm = calloc(migr_bitmap_words(SPACE_PAGES), 8);
    T_ASSERT(bm);
    uint64_t d_before = tab(pt0)[9];
    long n = migr_ept_harvest(&e, bm);
    if (n != -err_want || !strstr(migr_last_error(), msg_part))
        T_FAIL("%s: harvest returned %ld, message '%s' (wanted -%d and '%s')", what, n, migr_last_error(),
               err_want, msg_part);
    T_EQ(migr_ept_check(&e), -err_want);
    T_EQ(tab(pt0)[9], d_before); /* nothing cleared */
    T_EQ(migr_bitmap_count(bm, SPACE_PAGES), 0);
    printf("refused (%s): %s\n", what, migr_last_error());
    free(bm);
}

static void test_malformed(void)
{
    static const struct {
        const char *what;
        int which;       /* 0 pt0[100], 1 pd0[3], 2 pml4[1], 3 pdpt0[1] */
        uint64_t value;  /* ORed in (or replaces, below) */
        bool replace;
        int err;
        const char *msg;
    } cases[] = {
        {"reserved address bit 50 in a PTE", 0, 1ull << 50, false, EINVAL, "reserved address bits"},
        {"write without read", 0, MIGR_EPT_W | MIGR_EPT_MT_WB | BACK(0), true, EINVAL, "write without read"},
        {"memory type 2", 0, (2ull << 3) | RWX | BACK(0), true, EINVAL, "memory type"},
        {"reserved bit 12 of a 2 MiB leaf", 1, 1ull << 12, false, EINVAL, "2 MiB page"},
        {"reserved bit 20 of a 1 GiB leaf", 3, 1ull << 20, false, EINVAL, "1 GiB page"},
        {"page size in a PML4E", 2, 0, false, EINVAL, "PML4E"},
        {"reserved bits 6:3 of a PDE", 1, 0, false, EINVAL, "non-leaf"},
    };
    for (size_t k = 0; k < MIGR_ARRAY_SIZE(cases); k++) {
        build();
        T_ASSERT(cpu_write(9 * PG)); /* a dirty leaf that must stay dirty */
        T_ASSERT(tab(pt0)[9] & MIGR_EPT_D);
        uint64_t *slot = cases[k].which == 0 ? &tab(pt0)[100] : cases[k].which == 1 ? &tab(pd0)[3]
                       : cases[k].which == 2 ? &tab(pml4)[1] : &tab(pdpt0)[1];
        if (cases[k].which == 2)
            *slot = pdpt0 | RWX | MIGR_EPT_LARGE; /* no such thing as a 512 GiB page */
        else if (k == 6)
            *slot = new_table() | RWX | (1ull << 4); /* a PD entry pointing to a PT, bit 4 set */
        else if (cases[k].replace)
            *slot = cases[k].value;
        else
            *slot |= cases[k].value;
        expect_refused(cases[k].what, cases[k].err, cases[k].msg);
    }
    /* a loop: a PDE pointing back to the PD itself */
    build();
    T_ASSERT(cpu_write(9 * PG));
    tab(pd0)[40] = pd0 | RWX;
    expect_refused("a PDE pointing to its own PD", EINVAL, "already reached");
    /* a loop to the root */
    build();
    T_ASSERT(cpu_write(9 * PG));
    tab(pdpt0)[7] = pml4 | RWX;
    expect_refused("a PDPTE pointing to the PML4", EINVAL, "already reached");
    /* a page table shared by two PDEs */
    build();
    T_ASSERT(cpu_write(9 * PG));
    tab(pd0)[40] = pt0 | RWX;
    expect_refused("a page table shared by two PDEs", EINVAL, "shared");
    /* a table the callback cannot reach */
    build();
    T_ASSERT(cpu_write(9 * PG));
    tab(pd0)[41] = 0x7000000000ull | RWX;
    expect_refused("a table outside the arena", EFAULT, "not reachable");
    /* the EPTP: A/D off, 5-level, bad memory type */
    build();
    T_ASSERT(cpu_write(9 * PG));
    uint64_t good = eptp;
    eptp = good & ~MIGR_EPTP_AD;
    expect_refused("EPTP without A/D", EINVAL, "bit 6 clear");
    eptp = (good & ~0x38ull) | (4ull << 3);
    expect_refused("5-level EPTP", EINVAL, "page-walk length 5");
    eptp = (good & ~7ull) | 1;
    expect_refused("EPTP memory type 1", EINVAL, "memory type 1");
    eptp = good;
    /* A flush that fails: the next harvest reports every mapped page. */
    struct migr_ept e = mk();
    e.flush = NULL;
    uint64_t *bm = calloc(migr_bitmap_words(SPACE_PAGES), 8);
    T_ASSERT(bm);
    T_EQ(migr_ept_harvest(&e, bm), 1);
    free(bm);
}

static int failing_flush(void *arg, uint64_t p)
{
    (void)arg;
    (void)p;
    return -EIO;
}

static void test_flush_failure(void)
{
    build();
    struct migr_ept e = mk();
    e.flush = failing_flush;
    uint64_t *bm = calloc(migr_bitmap_words(SPACE_PAGES), 8);
    T_ASSERT(bm);
    T_ASSERT(cpu_write(9 * PG));
    T_EQ(migr_ept_harvest(&e, bm), -EIO);
    T_ASSERT(strstr(migr_last_error(), "every mapped page"));
    T_ASSERT(migr_bit_test(bm, 9)); /* reported before the failure: stays reported */
    e.flush = invept;
    memset(bm, 0, migr_bitmap_words(SPACE_PAGES) * 8);
    T_EQ(migr_ept_harvest(&e, bm), 512 + 341 + 30 * 512 + 262144); /* every mapped page in the bitmap */
    memset(bm, 0, migr_bitmap_words(SPACE_PAGES) * 8);
    T_EQ(migr_ept_harvest(&e, bm), 0); /* back to normal */
    free(bm);
}

/* ---------- the tracker ---------- */

static void test_tracker(void)
{
    build();
    static const struct migr_hv_ops ops = {.name = "tinyvisor-test"};
    static struct migr_hv hv;
    hv.ops = &ops;
    hv.kvm_vm_fd = -1;
    hv.nregions = 2;
    hv.regions[0] = (struct migr_hv_region){.gpa = 0, .size = 64 * MIB};
    hv.regions[1] = (struct migr_hv_region){.gpa = GIB, .size = GIB};
    hv.ram_pages = (64 * MIB + GIB) / PG;
    struct migr_dirty *d;
    T_EQ(migr_dirty_open("ept", &hv, &d), -ENOTSUP);
    T_ASSERT(strstr(migr_last_error(), "migr_ept_attach"));
    struct migr_ept e = mk();
    T_OK(migr_ept_attach(&hv, &e));
    T_EQ(migr_ept_attach(&hv, &e), -EBUSY);
    T_OK(migr_dirty_open("auto", &hv, &d));
    T_ASSERT(strcmp(d->ops->name, "ept") == 0);
    T_ASSERT(cpu_write(3 * PG)); /* before start: not reported */
    T_OK(migr_dirty_start(d));
    uint64_t *bm = calloc(migr_bitmap_words(hv.ram_pages), 8);
    T_ASSERT(bm);
    T_EQ(migr_dirty_harvest(d, bm), 0);
    T_ASSERT(cpu_write(7 * PG) && cpu_write(GIB + 5 * PG) && cpu_write(4 * GIB));
    T_EQ(migr_dirty_harvest(d, bm), 1 + 262144);
    T_ASSERT(migr_bit_test(bm, 7) && migr_bit_test(bm, 64 * MIB / PG) && !migr_bit_test(bm, 3));
    migr_dirty_close(d);
    /* a refused table makes the tracker unsupported, with the reason */
    tab(pd0)[40] = pd0 | RWX;
    T_EQ(migr_dirty_open("ept", &hv, &d), -ENOTSUP);
    T_ASSERT(strstr(migr_last_error(), "already reached"));
    migr_ept_detach(&hv);
    T_EQ(migr_dirty_open("ept", &hv, &d), -ENOTSUP);
    free(bm);
}

int main(void)
{
    unsigned long long seed = t_seed();
    arena = aligned_alloc(PG, NTAB * PG);
    gen = calloc(SPACE_PAGES, 4);
    tlb = calloc(SPACE_PAGES, 4);
    T_ASSERT(arena && gen && tlb);
    test_known();
    test_malformed();
    test_flush_failure();
    test_tracker();
    T_EQ(race(seed, true, 1500), 0);
    /* Without INVEPT the modelled TLB hides writes after a harvest: the same
     * oracle must catch them. */
    T_ASSERT(race(seed, false, 300) > 0);
    free(arena);
    free(gen);
    free(tlb);
    return 0;
}
