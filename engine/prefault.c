/* engine: the destination allocates guest RAM ahead of the stream.
 *
 * Every page of the destination's fresh memfd costs the kernel an allocation
 * and a zeroing (0.6-1.2 GB/s here) before data can land in it; done inline,
 * one batch at a time, that was 82-85% of the receiver's CPU in round 1 while
 * the second CPU idled. A prefault thread now populates (MADV_POPULATE_WRITE)
 * the pages round 1 will bring, ahead of the receiving thread, so that most
 * batches land in memory that exists already.
 *
 * Which pages: the source sends every never-written page (memfd hole) of
 * round 1 as ZERO runs before the first data page (engine/holes.c), so once
 * the first data record arrives, the pages not yet received are the data
 * still to come. The thread starts there and walks RAM upwards in chunks,
 * skipping received pages (read atomically: the receiving thread marks them).
 * It never allocates a hole. A page it allocates that then arrives as ZERO
 * (data that happened to be zero) holds zeros already, so it is correct,
 * only allocated; a page the source has no data for is never in this walk
 * because it arrived as a hole first.
 *
 * The two threads never populate the same chunk twice on purpose: the
 * receiving thread populates a batch itself only where the prefault thread
 * has not been, and then moves the thread's cursor past that batch
 * (engine_prefault_claim), so a thread that fell behind jumps ahead instead
 * of competing for the same pages.
 *
 * Stopped (joined) at the end of round 1, before anything that punches or
 * registers guest RAM (DISCARD, SWITCHOVER: post-copy must see every page it
 * lacks as missing), and on failure; the pages it populated are then added
 * to r->alloc, so post-copy's prepare drops those that never got data.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "migr/common.h"
#include "migr/dirty.h"
#include "engine/engine_impl.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define CHUNK_PAGES 512u          /* 2 MiB per claim of the cursor */
#define SUB_PAGES 64u             /* 256 KiB per MADV_POPULATE_WRITE */

struct prefault {
    struct receiver *r;
    pthread_t th;
    uint64_t next;                /* atomic: next RAM index nobody has claimed */
    int stop;                     /* atomic */
    uint64_t *done;               /* pages this thread populated; atomic bits */
    uint64_t pages;               /* how many */
    int err;                      /* first failure (the thread just stops) */
    char why[256];
};

static bool claim_chunk(struct prefault *pf, uint64_t *first)
{
    uint64_t i = __atomic_load_n(&pf->next, __ATOMIC_RELAXED);
    do {
        if (i >= pf->r->hv->ram_pages)
            return false;
    } while (!__atomic_compare_exchange_n(&pf->next, &i, i + CHUNK_PAGES, false, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    *first = i;
    return true;
}

static bool received(const struct receiver *r, uint64_t i)
{
    return __atomic_load_n(&r->received[i >> 6], __ATOMIC_RELAXED) >> (i & 63) & 1;
}

static void *prefault_main(void *arg)
{
    struct prefault *pf = arg;
    struct receiver *r = pf->r;
    uint64_t first;
    while (!__atomic_load_n(&pf->stop, __ATOMIC_RELAXED) && claim_chunk(pf, &first)) {
        uint64_t end = first + CHUNK_PAGES < r->hv->ram_pages ? first + CHUNK_PAGES : r->hv->ram_pages;
        for (uint64_t i = first; i < end;) {
            if (received(r, i)) {
                i++;
                continue;
            }
            uint8_t *start = migr_hv_page(r->hv, i);
            uint64_t j = i + 1;
            /* at most SUB_PAGES per call: the receiving thread sees the progress soon */
            while (j < end && j - i < SUB_PAGES && !received(r, j) &&
                   migr_hv_page(r->hv, j) == start + (j - i) * MIGR_PAGE_SIZE)
                j++;
            if (madvise(start, (j - i) * MIGR_PAGE_SIZE, MADV_POPULATE_WRITE) < 0) {
                pf->err = -errno;
                snprintf(pf->why, sizeof(pf->why), "prefault: MADV_POPULATE_WRITE of RAM pages %llu..%llu: %s",
                         (unsigned long long)i, (unsigned long long)(j - 1), strerror(errno));
                return NULL;
            }
            for (uint64_t k = i; k < j; k++)
                __atomic_fetch_or(&pf->done[k >> 6], 1ull << (k & 63), __ATOMIC_RELEASE);
            pf->pages += j - i;
            i = j;
        }
    }
    return NULL;
}

int engine_prefault_start(struct receiver *r, uint64_t from)
{
    if (r->pf || !r->can_populate)
        return 0;
    struct prefault *pf = calloc(1, sizeof(*pf));
    if (!pf || !(pf->done = calloc(migr_bitmap_words(r->hv->ram_pages), 8))) {
        free(pf);
        return migr_errorf(ENOMEM, "prefault: out of memory for a %llu-page bitmap",
                           (unsigned long long)r->hv->ram_pages);
    }
    pf->r = r;
    pf->next = from;
    int err = pthread_create(&pf->th, NULL, prefault_main, pf);
    if (err) {
        /* not fatal: the receiving thread populates every batch itself */
        free(pf->done);
        free(pf);
        return 0;
    }
    r->pf = pf;
    return 0;
}

bool engine_prefaulted(const struct receiver *r, uint64_t idx)
{
    return r->pf && __atomic_load_n(&r->pf->done[idx >> 6], __ATOMIC_ACQUIRE) >> (idx & 63) & 1;
}

void engine_prefault_claim(struct receiver *r, uint64_t past)
{
    if (!r->pf)
        return;
    uint64_t i = __atomic_load_n(&r->pf->next, __ATOMIC_RELAXED);
    while (i < past && !__atomic_compare_exchange_n(&r->pf->next, &i, past, false, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED))
        ;
}

void engine_prefault_stop(struct receiver *r)
{
    struct prefault *pf = r->pf;
    if (!pf)
        return;
    __atomic_store_n(&pf->stop, 1, __ATOMIC_RELAXED);
    pthread_join(pf->th, NULL);
    uint64_t words = migr_bitmap_words(r->hv->ram_pages);
    for (uint64_t w = 0; w < words; w++)
        r->alloc[w] |= pf->done[w];
    r->st->prefaulted_pages += pf->pages;
    if (pf->err)
        migr_logf(MIGR_LOG_WARN, "recv: %s (the receiving thread populated the rest)", pf->why);
    free(pf->done);
    free(pf);
    r->pf = NULL;
}
