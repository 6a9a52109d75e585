/* engine: the destination's one page validator. Every PAGES record that
 * reaches guest memory — pre-copy rounds (recv.c), the post-copy phase on
 * either stream (postcopy_recv.c), a checkpoint staged at the source
 * (postcopy_send.c) — passes its entries through engine_pages_walk(), which
 * applies the rules of docs/format.md (PAGES) and of the phase, and hands
 * each valid entry to the placement given: copy into RAM, UFFDIO_COPY, or a
 * staging buffer. */
#ifndef MIGR_ENGINE_VALIDATE_H
#define MIGR_ENGINE_VALIDATE_H

#include <stdint.h>
#include "migr/format.h"
#include "migr/hv.h"

#define ENGINE_ENC_BIT(enc) (1u << (enc))
#define ENGINE_ENCS_ANY 0xffffffffu                       /* pre-copy rounds: every built-in codec */
#define ENGINE_ENCS_PLAIN (ENGINE_ENC_BIT(MIGR_ENC_RAW) | ENGINE_ENC_BIT(MIGR_ENC_ZERO))

struct engine_placement {
    uint32_t encs;                /* ENGINE_ENC_BIT()s this phase accepts */
    const char *phase;            /* names the phase in a refusal: "the post-copy phase" */
    /* a ZERO run of n pages from RAM index idx (all inside guest RAM) */
    int (*zero)(void *arg, uint32_t i, const struct migr_page_entry *e, uint64_t idx, uint64_t n);
    /* an entry that carries data (RAW or a codec's), for the page at RAM index idx */
    int (*data)(void *arg, uint32_t i, const struct migr_page_entry *e, uint64_t idx);
};

/*! Check a PAGES record's meta against its bulk length (record seq names it
 *  in a refusal). 0 or -errno (message set). */
int engine_pages_header(const uint8_t *meta, uint32_t meta_len, uint32_t bulk_len, uint64_t seq,
                        uint32_t *round, uint32_t *count);

/*! Validate the count entries of meta in order — encoding allowed here, page
 *  (or whole ZERO run) inside hv's RAM — and call the placement for each.
 *  Stops at the first refusal (-EBADMSG, the message names record, entry and
 *  page) or placement error. 0 or -errno. */
int engine_pages_walk(struct migr_hv *hv, const uint8_t *meta, uint32_t count, uint64_t seq,
                      const struct engine_placement *pl, void *arg);

#endif
