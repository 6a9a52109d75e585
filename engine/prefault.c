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
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/dirty.h"
#include "engine/engine_impl.h"
#include "engine/prefault.h"

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
    uint8_t *bounce;              /* fresh pages through the memfd (prefault.h), or NULL */
};

/* The memfd and offset of RAM index idx, and how many pages its region has
 * from there on; false if idx is outside RAM. */
static bool page_file(const struct migr_hv *hv, uint64_t idx, int *fd, off_t *off, uint64_t *left)
{
    for (uint32_t i = 0; i < hv->nregions; i++) {
        const struct migr_hv_region *g = &hv->regions[i];
        uint64_t np = g->size / MIGR_PAGE_SIZE;
        if (idx < np) {
            *fd = g->memfd;
            *off = (off_t)(g->memfd_off + idx * MIGR_PAGE_SIZE);
            *left = np - idx;
            return true;
        }
        idx -= np;
    }
    return false;
}

/* Allocate pages [i, i+n) ahead of their data: fallocate when the data will
 * come by pwrite (nothing zeroed: shmem zeroes a page only if it is read or
 * mapped before it is written), else populate the mapping. */
static int allocate(struct prefault *pf, uint64_t i, uint64_t n)
{
    struct migr_hv *hv = pf->r->hv;
    if (!pf->bounce)
        return madvise(migr_hv_page(hv, i), n * MIGR_PAGE_SIZE, MADV_POPULATE_WRITE) < 0 ? -errno : 0;
    int fd;
    off_t off;
    uint64_t left;
    if (!page_file(hv, i, &fd, &off, &left) || left < n)
        return -EINVAL;
    return fallocate(fd, FALLOC_FL_KEEP_SIZE, off, (off_t)(n * MIGR_PAGE_SIZE)) < 0 ? -errno : 0;
}

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
            int fd;
            off_t off;
            uint64_t left;
            if (!page_file(r->hv, i, &fd, &off, &left))
                break;
            uint64_t j = i + 1;
            /* at most SUB_PAGES per call: the receiving thread sees the progress soon */
            while (j < end && j - i < SUB_PAGES && j - i < left && !received(r, j))
                j++;
            int err = allocate(pf, i, j - i);
            if (err < 0) {
                pf->err = err;
                snprintf(pf->why, sizeof(pf->why), "prefault: %s of RAM pages %llu..%llu: %s",
                         pf->bounce ? "fallocate" : "MADV_POPULATE_WRITE", (unsigned long long)i,
                         (unsigned long long)(j - 1), strerror(-err));
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
    bool files = true;
    for (uint32_t i = 0; i < r->hv->nregions; i++)
        files = files && r->hv->regions[i].memfd >= 0;
    /* without it (no memory for 1 MiB, RAM without a memfd) pages land in the mapping */
    if (files)
        pf->bounce = aligned_alloc(MIGR_PAGE_SIZE, (size_t)ENGINE_BOUNCE_PAGES * MIGR_PAGE_SIZE);
    int err = pthread_create(&pf->th, NULL, prefault_main, pf);
    if (err) {
        /* not fatal: the receiving thread populates every batch itself */
        free(pf->bounce);
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
        fprintf(stderr, "migr: recv: %s (the receiving thread populated the rest)\n", pf->why);
    free(pf->bounce);
    free(pf->done);
    free(pf);
    r->pf = NULL;
}

uint8_t *engine_prefault_bounce(const struct receiver *r)
{
    return r->pf ? r->pf->bounce : NULL;
}

int engine_prefault_write(struct receiver *r, uint64_t idx, const uint8_t *src, uint64_t n)
{
    while (n) {
        int fd;
        off_t off;
        uint64_t left;
        if (!page_file(r->hv, idx, &fd, &off, &left))
            return migr_errorf(EINVAL, "recv: RAM index %llu is outside guest RAM", (unsigned long long)idx);
        size_t len = (size_t)((left < n ? left : n) * MIGR_PAGE_SIZE), done = 0;
        while (done < len) {
            ssize_t w = pwrite(fd, src + done, len - done, off + (off_t)done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return migr_errorf_errno(w < 0 ? errno : EIO, "recv: writing RAM pages %llu..%llu to the memfd",
                                         (unsigned long long)idx, (unsigned long long)(idx + len / MIGR_PAGE_SIZE - 1));
            done += (size_t)w;
        }
        idx += len / MIGR_PAGE_SIZE;
        src += len;
        n -= len / MIGR_PAGE_SIZE;
    }
    return 0;
}
