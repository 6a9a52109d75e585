/* migr — the sender's cache of old page copies, for XBZRLE deltas.
 *
 * A delta needs the page as the receiver last got it. The sender keeps those
 * copies for as many pages as the cache size allows (--xbzrle-cache) and
 * decides which to keep. Policies:
 *
 *   SETASSOC (default): 8-way set-associative; set = pfn mod (an odd number
 *     of sets), so a contiguous range spreads evenly and power-of-two
 *     strides do not pile up. Each way remembers the round of its last
 *     insert or hit. A new page takes a free way; else it replaces the least
 *     recently used way of its set if that way has been idle for 4 rounds,
 *     or for 2 rounds if the page was refused recently (each set remembers
 *     its last 8 refused pfns); else it is refused and remembered. So pages
 *     written every round (hot) stay, a page written once (cold) does not
 *     push them out, and a hot page that was refused gets in soon after.
 *   QEMU: QEMU's migration/page_cache.c, for comparison: direct-mapped,
 *     slots = largest power of two <= size/page, slot = pfn mod slots; a slot
 *     whose page was inserted or hit in the last 2 rounds is not replaced.
 *
 * Usage on the sender, per dirty page (docs/compress.md, "Page cache"):
 *
 *     copy the page into a private snapshot;
 *     old = migr_pagecache_lookup(c, pfn);
 *     if (old) { encode the delta snapshot vs old; send it (or send the page
 *                another way); memcpy(old, snapshot, 4096); }
 *     else     { send the page another way;
 *                if ((slot = migr_pagecache_insert(c, pfn))) memcpy(slot, snapshot, 4096); }
 *
 * and migr_pagecache_next_round() after each dirty-log sync. Like QEMU, use
 * the cache only from the second round on: pages of the first (bulk) round
 * have not shown that they are written at all. The cached copy
 * must always equal what the receiver has: a page sent in a way the cache
 * cannot follow must be dropped (migr_pagecache_drop).
 *
 * Not thread-safe: one thread uses a cache at a time (or shard the pfns over
 * several caches, one per worker).
 */
/* Blocking and threads: none of these blocks, starts a thread or installs
 * a signal handler; a cache is used by one thread at a time (the engine's
 * encoder stage holds it). */
#ifndef MIGR_PAGECACHE_H
#define MIGR_PAGECACHE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum migr_pagecache_policy {
    MIGR_PAGECACHE_SETASSOC = 0,
    MIGR_PAGECACHE_QEMU = 1,
};

struct migr_pagecache;

struct migr_pagecache_stats {
    uint64_t capacity;   /* pages the cache can hold */
    uint64_t used;       /* pages it holds */
    uint64_t lookups;
    uint64_t hits;
    uint64_t inserts;    /* insert calls that got a slot (new or existing page) */
    uint64_t evictions;  /* pages replaced by another */
    uint64_t refused;    /* inserts the policy declined (QEMU: slot still fresh) */
};

/*! Create a cache of at most bytes (>= one page; rounded down to what the
 *  policy can use). The page memory is mapped lazily. Returns 0 and *out,
 *  -EINVAL (bytes too small, unknown policy) or -ENOMEM. */
int migr_pagecache_create(uint64_t bytes, enum migr_pagecache_policy policy,
                          struct migr_pagecache **out);

/*! Free the cache and every copy in it. NULL is allowed. */
void migr_pagecache_destroy(struct migr_pagecache *c);

/*! A dirty-log sync happened: a new round begins (ages for the QEMU policy). */
void migr_pagecache_next_round(struct migr_pagecache *c);

/*! The cached copy of page pfn (MIGR_PAGE_SIZE bytes, 64-byte aligned,
 *  writable so the caller can refresh it), or NULL. A hit counts as a use
 *  for the replacement policy. Valid until the next insert or drop. */
uint8_t *migr_pagecache_lookup(struct migr_pagecache *c, uint64_t pfn);

/*! A slot for page pfn: its current copy if cached, else a slot freed by
 *  the policy (the caller must fill all MIGR_PAGE_SIZE bytes before the next
 *  lookup of pfn). NULL if the policy keeps what it has (then pfn stays
 *  uncached: send it without a delta). */
uint8_t *migr_pagecache_insert(struct migr_pagecache *c, uint64_t pfn);

/*! Forget page pfn if cached. */
void migr_pagecache_drop(struct migr_pagecache *c, uint64_t pfn);

/*! Counters since creation. */
void migr_pagecache_get_stats(const struct migr_pagecache *c, struct migr_pagecache_stats *s);

/*! "setassoc", "qemu"; "?" for others. */
const char *migr_pagecache_policy_name(enum migr_pagecache_policy p);

#ifdef __cplusplus
}
#endif

#endif
