/* engine: the page batch — guest pages collected into one PAGES record and
 * sent. The bottom of the engine's source side: the pre-copy rounds, the
 * codec stage (encode.c), the post-copy push and fault server and the
 * destination's checkpoints all send pages through it, and it calls nothing
 * of theirs. */
#ifndef MIGR_ENGINE_BATCH_H
#define MIGR_ENGINE_BATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include "migr/engine.h"
#include "migr/format.h"
#include "migr/transport.h"

#define ENGINE_BATCH_PAGES 256u

struct engine_batch {
    struct migr_transport *t;     /* where the records go */
    struct migr_stats *st;        /* pages counted here (NULL: the caller counts) */
    struct migr_cancel *cancel;   /* a requested cancel fails the next flush (NULL: not looked at) */
    uint32_t round;               /* round number of the records */
    bool codec_round;             /* the codec stage runs: holes count as codec[ZERO] pages too */
    uint32_t n;
    int niov;
    struct migr_page_entry e[ENGINE_BATCH_PAGES];
    struct iovec iov[ENGINE_BATCH_PAGES];
    uint8_t meta[MIGR_PAGES_FIXED + ENGINE_BATCH_PAGES * MIGR_PAGE_ENTRY_SIZE];
};

/*! Append one guest page as RAW (its CRC computed now) or, if all zero, to a
 *  ZERO run; counts it in b->st; flushes a full batch. 1 if it flushed, 0,
 *  or -errno. */
int engine_batch_page(struct engine_batch *b, const uint8_t *page, uint64_t pfn);
/*! Append pages [pfn, pfn+n) as ZERO runs without reading them (memfd
 *  holes); counts them; flushes full batches. 1 if it flushed, 0, or -errno. */
int engine_batch_zero_run(struct engine_batch *b, uint64_t pfn, uint64_t n);
/*! Append an entry as it is (encoded by the caller, counted by the caller):
 *  a ZERO entry of one page extends a ZERO run, any other carries len bytes
 *  of data. The caller flushes before the batch is full (engine_batch_full). */
void engine_batch_put(struct engine_batch *b, const struct migr_page_entry *e, const void *data);
/*! True when the next put may not fit. */
bool engine_batch_full(const struct engine_batch *b);
/*! Send what is queued as one PAGES record (nothing if empty). 0 or -errno;
 *  -ECANCELED if b->cancel was requested. */
int engine_batch_flush(struct engine_batch *b);

#endif
