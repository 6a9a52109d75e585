/* engine: the page codec stage of the pre-copy rounds (encode.c on the
 * source, decode.c on the destination) and the fork-join worker pool both
 * use. docs/compress.md, "In the engine", describes the rules. */
#ifndef MIGR_ENGINE_STAGE_H
#define MIGR_ENGINE_STAGE_H

#include <stdint.h>
#include "migr/format.h"

#define ENGINE_MAX_THREADS 16u

/* A fork-join pool: engine_pool_run() calls fn(arg, w) once for each worker
 * w = 0 .. n-1 (w = 0 in the calling thread) and returns when all are done. */
struct engine_pool;
int engine_pool_create(unsigned n, struct engine_pool **out);
void engine_pool_run(struct engine_pool *p, void (*fn)(void *arg, unsigned w), void *arg);
void engine_pool_destroy(struct engine_pool *p);   /* NULL is fine */

struct sender;
struct receiver;
struct migr_rec_hdr;

/*! Source: set up s->enc from s->p (compress, level, cache, threads). 0 or
 *  -errno (-EINVAL with a message for a bad setting). */
int engine_encoder_create(struct sender *s);
void engine_encoder_destroy(struct sender *s);
/*! Queue one guest page of the current round; a full batch is encoded and
 *  sent. Returns 1 if it sent, 0 if queued, or -errno. */
int engine_encode_page(struct sender *s, const uint8_t *page, uint64_t pfn);
/*! Encode and send what is queued (end of a round). 0 or -errno. */
int engine_encode_flush(struct sender *s);

/*! Destination, in on_pages(): note each entry that carries bulk (RAW or a
 *  codec), in entry order; a codec entry gets *slot, where its bytes are to
 *  be read. Refuses (-EBADMSG/-EPROTO, message names record and entry) a page
 *  named twice in one record and an XBZRLE delta for a page without an
 *  intact copy. */
struct migr_page_entry;
int engine_decode_note(struct receiver *r, uint32_t i, const struct migr_page_entry *e, uint64_t idx,
                       uint8_t **slot);
/*! Once the record's bulk is read: decode the noted codec entries into guest
 *  RAM (workers), check their CRCs, mark them received. 0 or -EBADMSG. */
int engine_decode_run(struct receiver *r);
void engine_decoder_destroy(struct receiver *r);

#endif
