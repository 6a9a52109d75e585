/* compress/pagecache: the sender's cache of old page copies (pagecache.h has
 * the policies and their reasons). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "migr/common.h"
#include "migr/pagecache.h"

#define WAYS 8
#define EMPTY (~0ull)
#define GHOSTS 8           /* recently refused pfns remembered per set */
#define SEEN_AGE 2         /* a refused pfn seen again may replace a way idle this many rounds */
#define IDLE_AGE 4         /* any pfn may replace a way idle this many rounds */
#define QEMU_LIFETIME 2    /* QEMU's CACHED_PAGE_LIFETIME, in rounds */

struct migr_pagecache {
    enum migr_pagecache_policy policy;
    uint64_t nsets, ways, capacity;
    uint64_t *tag;        /* pfn per slot, EMPTY if free */
    uint64_t *stamp;      /* round of the slot's last insert or hit */
    uint8_t *hit;         /* setassoc: hit since inserted */
    uint64_t *ghost;      /* setassoc: GHOSTS refused pfns per set, EMPTY if none */
    uint8_t *ghost_next;  /* setassoc: FIFO position per set */
    uint8_t *data;        /* capacity pages, mmap'ed */
    uint64_t round;
    struct migr_pagecache_stats st;
};

const char *migr_pagecache_policy_name(enum migr_pagecache_policy p)
{
    return p == MIGR_PAGECACHE_SETASSOC ? "setassoc" : p == MIGR_PAGECACHE_QEMU ? "qemu" : "?";
}

int migr_pagecache_create(uint64_t bytes, enum migr_pagecache_policy policy,
                          struct migr_pagecache **out)
{
    uint64_t pages = bytes / MIGR_PAGE_SIZE;
    if (!pages)
        return migr_errorf(EINVAL, "page cache of %llu bytes: smaller than a page",
                           (unsigned long long)bytes);
    if (policy != MIGR_PAGECACHE_SETASSOC && policy != MIGR_PAGECACHE_QEMU)
        return migr_errorf(EINVAL, "page cache: unknown policy %d", (int)policy);
    struct migr_pagecache *c = calloc(1, sizeof(*c));
    if (!c)
        return migr_errorf(ENOMEM, "page cache: out of memory");
    c->policy = policy;
    if (policy == MIGR_PAGECACHE_SETASSOC) {
        c->ways = MIGR_MIN(pages, (uint64_t)WAYS);
        c->nsets = pages / c->ways;
        if (c->nsets > 1 && !(c->nsets & 1))
            c->nsets--;   /* odd: strides of 2^k pages use every set */
    } else {
        c->ways = 1;
        c->nsets = 1ull << (63 - __builtin_clzll(pages));
    }
    c->capacity = c->nsets * c->ways;
    c->st.capacity = c->capacity;
    c->round = 1;
    c->tag = malloc(c->capacity * sizeof(*c->tag));
    c->stamp = calloc(c->capacity, sizeof(*c->stamp));
    bool ok = c->tag && c->stamp;
    if (policy == MIGR_PAGECACHE_SETASSOC) {
        c->hit = calloc(c->capacity, 1);
        c->ghost = malloc(c->nsets * GHOSTS * sizeof(*c->ghost));
        c->ghost_next = calloc(c->nsets, 1);
        ok = ok && c->hit && c->ghost && c->ghost_next;
    }
    void *d = mmap(NULL, c->capacity * MIGR_PAGE_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    c->data = d == MAP_FAILED ? NULL : d;
    if (!ok || !c->data) {
        uint64_t cap = c->capacity;
        migr_pagecache_destroy(c);
        return migr_errorf(ENOMEM, "page cache: cannot allocate %llu pages",
                           (unsigned long long)cap);
    }
    for (uint64_t i = 0; i < c->capacity; i++)
        c->tag[i] = EMPTY;
    for (uint64_t i = 0; c->ghost && i < c->nsets * GHOSTS; i++)
        c->ghost[i] = EMPTY;
    *out = c;
    return 0;
}

void migr_pagecache_destroy(struct migr_pagecache *c)
{
    if (!c)
        return;
    if (c->data)
        munmap(c->data, c->capacity * MIGR_PAGE_SIZE);
    free(c->tag);
    free(c->stamp);
    free(c->hit);
    free(c->ghost);
    free(c->ghost_next);
    free(c);
}

void migr_pagecache_next_round(struct migr_pagecache *c)
{
    c->round++;
}

static inline uint64_t set_of(const struct migr_pagecache *c, uint64_t pfn)
{
    if (c->policy == MIGR_PAGECACHE_QEMU)
        return pfn & (c->nsets - 1);
    return pfn % c->nsets;
}

/* Slot of pfn, or -1. */
static inline int64_t find(const struct migr_pagecache *c, uint64_t set, uint64_t pfn)
{
    uint64_t base = set * c->ways;
    for (uint64_t w = 0; w < c->ways; w++)
        if (c->tag[base + w] == pfn)
            return (int64_t)(base + w);
    return -1;
}

static inline uint8_t *slot_data(const struct migr_pagecache *c, uint64_t slot)
{
    return c->data + slot * MIGR_PAGE_SIZE;
}

static inline void touch(struct migr_pagecache *c, uint64_t slot)
{
    c->stamp[slot] = c->round;
    if (c->hit)
        c->hit[slot] = 1;
}

uint8_t *migr_pagecache_lookup(struct migr_pagecache *c, uint64_t pfn)
{
    c->st.lookups++;
    if (pfn == EMPTY)
        return NULL;
    int64_t s = find(c, set_of(c, pfn), pfn);
    if (s < 0)
        return NULL;
    c->st.hits++;
    touch(c, (uint64_t)s);
    return slot_data(c, (uint64_t)s);
}

/* setassoc: the slot for a pfn not cached, or -1 to refuse (pagecache.h). */
static int64_t setassoc_slot(struct migr_pagecache *c, uint64_t set, uint64_t pfn)
{
    uint64_t base = set * c->ways, lru = base;
    for (uint64_t w = base; w < base + c->ways; w++) {
        if (c->tag[w] == EMPTY)
            return (int64_t)w;
        /* least recently used by round; among equals one never hit */
        if (c->stamp[w] < c->stamp[lru] ||
            (c->stamp[w] == c->stamp[lru] && c->hit[lru] && !c->hit[w]))
            lru = w;
    }
    uint64_t *g = c->ghost + set * GHOSTS;
    int seen = -1;
    for (int k = 0; k < GHOSTS; k++)
        if (g[k] == pfn)
            seen = k;
    uint64_t idle = c->round - c->stamp[lru];
    if ((seen >= 0 && idle >= SEEN_AGE) || idle >= IDLE_AGE) {
        if (seen >= 0)
            g[seen] = EMPTY;
        return (int64_t)lru;
    }
    if (seen < 0) {
        g[c->ghost_next[set]] = pfn;
        c->ghost_next[set] = (uint8_t)((c->ghost_next[set] + 1) % GHOSTS);
    }
    return -1;
}

uint8_t *migr_pagecache_insert(struct migr_pagecache *c, uint64_t pfn)
{
    if (pfn == EMPTY)
        return NULL;
    uint64_t set = set_of(c, pfn), slot;
    int64_t s = find(c, set, pfn);
    if (s >= 0) {
        touch(c, (uint64_t)s);
        c->st.inserts++;
        return slot_data(c, (uint64_t)s);
    }
    if (c->policy == MIGR_PAGECACHE_SETASSOC) {
        s = setassoc_slot(c, set, pfn);
        if (s < 0) {
            c->st.refused++;
            return NULL;
        }
        slot = (uint64_t)s;
        c->hit[slot] = 0;
    } else {
        slot = set;
        if (c->tag[slot] != EMPTY && c->stamp[slot] + QEMU_LIFETIME > c->round) {
            c->st.refused++;
            return NULL;
        }
    }
    if (c->tag[slot] == EMPTY)
        c->st.used++;
    else
        c->st.evictions++;
    c->tag[slot] = pfn;
    c->stamp[slot] = c->round;
    c->st.inserts++;
    return slot_data(c, slot);
}

void migr_pagecache_drop(struct migr_pagecache *c, uint64_t pfn)
{
    if (pfn == EMPTY)
        return;
    int64_t s = find(c, set_of(c, pfn), pfn);
    if (s < 0)
        return;
    c->tag[s] = EMPTY;
    c->st.used--;
}

void migr_pagecache_get_stats(const struct migr_pagecache *c, struct migr_pagecache_stats *s)
{
    *s = c->st;
}
