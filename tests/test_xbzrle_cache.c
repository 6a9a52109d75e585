/* The XBZRLE page cache (include/migr/pagecache.h): a hit always returns the
 * copy last stored for that pfn (random operations against a model), sizes
 * and edge cases, and the hit rates of the default setassoc policy and QEMU's
 * direct-mapped policy on the same hot/cold migration traces: setassoc must
 * beat QEMU where hot pages collide and at least match it elsewhere. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migr/pagecache.h"
#include "testlib.h"

#define PS 4096

/* ---- content: a hit returns exactly the last copy stored for the pfn ---- */

static void stamp(uint8_t *p, uint64_t pfn, uint64_t ver)
{
    for (int i = 0; i < PS; i += 16) {
        memcpy(p + i, &pfn, 8);
        memcpy(p + i + 8, &ver, 8);
    }
}

static void check_stamp(const uint8_t *p, uint64_t pfn, uint64_t ver, const char *pol)
{
    for (int i = 0; i < PS; i += 16) {
        uint64_t a, b;
        memcpy(&a, p + i, 8);
        memcpy(&b, p + i + 8, 8);
        if (a != pfn || b != ver)
            T_FAIL("%s: pfn %llu: cached copy holds pfn %llu version %llu at %d (want version %llu)",
                   pol, (unsigned long long)pfn, (unsigned long long)a, (unsigned long long)b, i,
                   (unsigned long long)ver);
    }
}

static void test_content(enum migr_pagecache_policy pol, unsigned long long *seed)
{
    const char *name = migr_pagecache_policy_name(pol);
    const uint64_t npfn = 3000;
    uint64_t *ver = calloc(npfn, sizeof(*ver));   /* 0: the cache must not have it */
    struct migr_pagecache *c;
    T_ASSERT(ver);
    T_OK(migr_pagecache_create(200 * PS + 123, pol, &c));
    struct migr_pagecache_stats st;
    migr_pagecache_get_stats(c, &st);
    T_ASSERT(st.capacity > 0 && st.capacity <= 200);
    if (pol == MIGR_PAGECACHE_QEMU)
        T_EQ(st.capacity, 128);
    else
        T_ASSERT(st.capacity >= 184);   /* 8 ways x odd number of sets */
    for (int it = 0; it < 200000; it++) {
        /* skewed pfns: some hot, some spread, some with a power-of-two stride */
        uint64_t r = t_rand(seed), pfn;
        switch (r % 3) {
        case 0: pfn = r >> 8 & 63; break;
        case 1: pfn = (r >> 8) % npfn; break;
        default: pfn = ((r >> 8) % 11) * 256; break;
        }
        int op = (int)(t_rand(seed) % 10);
        if (op < 6) {
            uint8_t *p = migr_pagecache_lookup(c, pfn);
            if (p) {
                if (!ver[pfn])
                    T_FAIL("%s: hit for pfn %llu, which was never stored or was dropped", name,
                           (unsigned long long)pfn);
                check_stamp(p, pfn, ver[pfn], name);
                stamp(p, pfn, ++ver[pfn]);   /* refresh in place, as the sender does */
            }
        } else if (op < 9) {
            uint8_t *p = migr_pagecache_insert(c, pfn);
            if (p) {
                T_ASSERT(((uintptr_t)p & 63) == 0);
                stamp(p, pfn, ver[pfn] ? ++ver[pfn] : (ver[pfn] = 1));
            }
        } else {
            migr_pagecache_drop(c, pfn);
            ver[pfn] = 0;
        }
        if (it % 64 == 0)
            migr_pagecache_next_round(c);
        /* a pfn the cache lost must not come back with old content: forget
         * versions of pfns that now miss */
        if (it % 997 == 0) {
            for (uint64_t q = 0; q < npfn; q++) {
                if (!ver[q])
                    continue;
                uint8_t *p = migr_pagecache_lookup(c, q);
                if (p)
                    check_stamp(p, q, ver[q], name);
                else
                    ver[q] = 0;
            }
        }
    }
    migr_pagecache_get_stats(c, &st);
    T_ASSERT(st.used <= st.capacity && st.hits <= st.lookups);
    migr_pagecache_destroy(c);
    migr_pagecache_destroy(NULL);
    free(ver);
}

/* Once evicted, a pfn must miss until it is inserted again: track exactly. */
static void test_exact_membership(enum migr_pagecache_policy pol, unsigned long long *seed)
{
    struct migr_pagecache *c;
    T_OK(migr_pagecache_create(64 * PS, pol, &c));
    const uint64_t npfn = 500;
    uint8_t *in = calloc(npfn, 1);
    T_ASSERT(in);
    for (int it = 0; it < 50000; it++) {
        uint64_t pfn = t_rand(seed) % npfn;
        if (t_rand(seed) % 2) {
            uint8_t *p = migr_pagecache_insert(c, pfn);
            if (p) {
                stamp(p, pfn, 1);
                /* the cache may have evicted anything: recompute membership */
                for (uint64_t q = 0; q < npfn; q++) {
                    if (!in[q] || q == pfn)
                        continue;
                    in[q] = migr_pagecache_lookup(c, q) != NULL;
                }
                in[pfn] = 1;
            }
        } else {
            uint8_t *p = migr_pagecache_lookup(c, pfn);
            if (!!p != in[pfn])
                T_FAIL("%s: pfn %llu: lookup %s, expected %s", migr_pagecache_policy_name(pol),
                       (unsigned long long)pfn, p ? "hit" : "miss", in[pfn] ? "hit" : "miss");
            if (p)
                check_stamp(p, pfn, 1, migr_pagecache_policy_name(pol));
        }
        if (it % 100 == 0)
            migr_pagecache_next_round(c);
    }
    migr_pagecache_destroy(c);
    free(in);
}

static void test_edges(void)
{
    struct migr_pagecache *c = NULL;
    T_EQ(migr_pagecache_create(PS - 1, MIGR_PAGECACHE_SETASSOC, &c), -EINVAL);
    T_EQ(migr_pagecache_create(8 * PS, (enum migr_pagecache_policy)7, &c), -EINVAL);
    for (int pol = 0; pol < 2; pol++) {
        struct migr_pagecache_stats st;
        T_OK(migr_pagecache_create(PS, pol, &c));   /* one page */
        migr_pagecache_get_stats(c, &st);
        T_EQ(st.capacity, 1);
        T_ASSERT(!migr_pagecache_lookup(c, 5));
        uint8_t *p = migr_pagecache_insert(c, 5);
        T_ASSERT(p);
        memset(p, 0xab, PS);
        T_ASSERT(migr_pagecache_lookup(c, 5) == p);
        T_ASSERT(migr_pagecache_insert(c, 5) == p);   /* existing page: same slot */
        migr_pagecache_drop(c, 5);
        T_ASSERT(!migr_pagecache_lookup(c, 5));
        migr_pagecache_drop(c, 5);
        T_ASSERT(!migr_pagecache_lookup(c, ~0ull));
        T_ASSERT(!migr_pagecache_insert(c, ~0ull));
        migr_pagecache_get_stats(c, &st);
        T_EQ(st.used, 0);
        migr_pagecache_destroy(c);
    }
    /* QEMU: a fresh slot is not replaced; after 2 rounds it is */
    T_OK(migr_pagecache_create(4 * PS, MIGR_PAGECACHE_QEMU, &c));
    T_ASSERT(migr_pagecache_insert(c, 1));
    T_ASSERT(!migr_pagecache_insert(c, 5));   /* same slot, fresh */
    migr_pagecache_next_round(c);
    T_ASSERT(!migr_pagecache_insert(c, 5));
    migr_pagecache_next_round(c);
    T_ASSERT(migr_pagecache_insert(c, 5));
    T_ASSERT(!migr_pagecache_lookup(c, 1));
    migr_pagecache_destroy(c);
}

/* ---- hit rates on migration traces ---- */

struct trace {
    const char *name;
    uint64_t ws;          /* working-set pages */
    uint64_t cache;       /* cache pages */
    double hot_frac;      /* share of pages that are hot */
    double hot_writes;    /* share of writes that go to hot pages */
    uint64_t writes;      /* page writes per round */
    int scattered;        /* hot pages spread over the pfns (else the first ones) */
    int rounds;
    double margin;        /* setassoc's hit rate must be >= QEMU's + margin */
};

/* Round 1 sends every page without the cache (as QEMU: no XBZRLE in the
 * bulk stage); later rounds send the pages written during the previous one,
 * in pfn order (a dirty-bitmap walk). Each page: lookup; on a miss, insert.
 * Hit rate over rounds 3 ... (round 2 can only miss). */
static double run_trace(const struct trace *t, enum migr_pagecache_policy pol,
                        unsigned long long trace_seed)
{
    unsigned long long s = trace_seed;
    uint64_t nhot = (uint64_t)(t->ws * t->hot_frac);
    uint64_t *hot = malloc(nhot * sizeof(*hot));
    uint8_t *dirty = calloc(t->ws, 1);
    T_ASSERT(hot && dirty);
    if (t->scattered) {
        /* nhot distinct random pfns */
        for (uint64_t i = 0; i < nhot;) {
            uint64_t p = t_rand(&s) % t->ws;
            if (!dirty[p]) {
                dirty[p] = 1;
                hot[i++] = p;
            }
        }
        memset(dirty, 0, t->ws);
    } else {
        for (uint64_t i = 0; i < nhot; i++)
            hot[i] = i;
    }
    struct migr_pagecache *c;
    T_OK(migr_pagecache_create(t->cache * PS, pol, &c));
    uint64_t lookups = 0, hits = 0;
    memset(dirty, 1, t->ws);
    for (int r = 1; r <= t->rounds; r++) {
        for (uint64_t p = 0; p < t->ws; p++) {
            if (!dirty[p])
                continue;
            dirty[p] = 0;
            if (r == 1)
                continue;
            bool hit = migr_pagecache_lookup(c, p) != NULL;
            if (r > 2) {
                lookups++;
                hits += hit;
            }
            if (!hit)
                (void)migr_pagecache_insert(c, p);   /* the copy itself does not matter here */
        }
        migr_pagecache_next_round(c);
        for (uint64_t w = 0; w < t->writes; w++) {
            uint64_t x = t_rand(&s);
            if ((double)(x >> 11) / (double)(1ull << 53) < t->hot_writes)
                dirty[hot[t_rand(&s) % nhot]] = 1;
            else
                dirty[t_rand(&s) % t->ws] = 1;
        }
    }
    migr_pagecache_destroy(c);
    free(hot);
    free(dirty);
    return lookups ? (double)hits / (double)lookups : 0;
}

static void test_hit_rates(unsigned long long *seed)
{
    /* 256 MiB of guest pages, 32 MiB cache (QEMU's default is 64 MiB for any
     * guest size), 90% of writes to 10% of the pages (the workload's hotcold
     * pattern) — hot pages contiguous as in hv-glue/workload, or scattered
     * as a real guest's are; then a hot set larger than the cache, and a
     * mostly uniform load. */
    const struct trace traces[] = {
        {"hotcold-scattered", 65536, 8192, 0.10, 0.90, 20000, 1, 24, 0.10},
        {"hotcold-contiguous", 65536, 8192, 0.10, 0.90, 20000, 0, 24, -0.01},
        {"hotcold-scattered-smallcache", 65536, 4096, 0.05, 0.90, 12000, 1, 24, 0.10},
        {"hot-exceeds-cache", 65536, 8192, 0.20, 0.90, 30000, 1, 24, 0.03},
        {"uniform", 65536, 8192, 0.10, 0.10, 8000, 1, 24, -0.01},
    };
    unsigned long long ts = t_rand(seed);
    for (size_t i = 0; i < sizeof(traces) / sizeof(traces[0]); i++) {
        const struct trace *t = &traces[i];
        double q = run_trace(t, MIGR_PAGECACHE_QEMU, ts + i);
        double s = run_trace(t, MIGR_PAGECACHE_SETASSOC, ts + i);
        printf("%-30s ws %llu pages, cache %llu: hit rate qemu %5.1f%%  setassoc %5.1f%%\n",
               t->name, (unsigned long long)t->ws, (unsigned long long)t->cache, 100 * q, 100 * s);
        if (s < q + t->margin)
            T_FAIL("%s: setassoc hit rate %.3f, QEMU's %.3f (must be >= QEMU's %+.2f)", t->name, s,
                   q, t->margin);
    }
}

int main(void)
{
    unsigned long long seed = t_seed();
    test_edges();
    migr_clear_error();
    test_content(MIGR_PAGECACHE_SETASSOC, &seed);
    test_content(MIGR_PAGECACHE_QEMU, &seed);
    test_exact_membership(MIGR_PAGECACHE_SETASSOC, &seed);
    test_exact_membership(MIGR_PAGECACHE_QEMU, &seed);
    test_hit_rates(&seed);
    return 0;
}
