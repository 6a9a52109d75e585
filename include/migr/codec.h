/* migr — per-page codec interface.
 *
 * A codec turns one guest page into a wire encoding (enum migr_page_enc in
 * format.h) and back. Encoders may decline ("does not pay") so that the
 * engine falls back to the next codec, finally RAW.
 *
 * Blocking and threads: every function here runs on the caller's thread
 * for time proportional to its input and never waits for anything (the
 * GPU calls wait for their device work: synchronous); none starts a thread
 * or installs a signal handler. The engine's encoder and decoder threads
 * (engine.h) call the codec ops concurrently.
 */
#ifndef MIGR_CODEC_H
#define MIGR_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "migr/format.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MIGR_CODEC_DECLINE 1   /* encode(): this codec does not pay for this page */

struct migr_codec_ops {
    const char *name;      /* "zero", "raw", ... */
    uint8_t enc;           /* wire encoding (MIGR_ENC_*) */
    /*! Encode page (MIGR_PAGE_SIZE bytes). old: the page as the receiver last
     *  got it, or NULL. Writes at most cap bytes into out and sets *len.
     *  Returns 0, MIGR_CODEC_DECLINE, or -errno. */
    int (*encode)(const uint8_t *page, const uint8_t *old, uint8_t *out, size_t cap, size_t *len);
    /*! Decode len bytes of src into page (MIGR_PAGE_SIZE bytes, holding the
     *  receiver's current copy for delta codecs). Strict: -EBADMSG for any
     *  malformed input, never reading or writing out of bounds. */
    int (*decode)(const uint8_t *src, size_t len, uint8_t *page);
    /*! Codecs with levels (lz4, zstd, zlib), else NULL: encode() at this
     *  level (one a caller checked with migr_codec_check_level), whatever
     *  migr_codec_set_level holds — so that each user (an engine's encoder)
     *  keeps a level of its own. */
    int (*encode_at)(const uint8_t *page, uint8_t *out, size_t cap, size_t *len, int level);
};

/*! True if the page (MIGR_PAGE_SIZE bytes, 8-byte aligned) is all zero. */
bool migr_page_is_zero(const void *page);

extern const struct migr_codec_ops migr_codec_raw;
extern const struct migr_codec_ops migr_codec_zero;

/* Wire encodings of the compressing codecs: the MIGR_ENC_* values of
 * format.h (docs/format.md revision 1.3, "Page Encodings"). */
#define MIGR_CODEC_ENC_XBZRLE MIGR_ENC_XBZRLE   /* delta against the receiver's copy (xbzrle.h) */
#define MIGR_CODEC_ENC_LZ4 MIGR_ENC_LZ4         /* one LZ4 block */
#define MIGR_CODEC_ENC_ZSTD MIGR_ENC_ZSTD       /* one zstd frame */
#define MIGR_CODEC_ENC_ZLIB MIGR_ENC_ZLIB       /* one zlib (RFC 1950) stream */

/* Compressing codecs. encode() returns MIGR_CODEC_DECLINE when the result
 * would not be shorter than a page (xbzrle: not shorter than 3/4 page, or
 * old is NULL); *len = 0 from xbzrle means "unchanged". decode() needs
 * len < MIGR_PAGE_SIZE and for lz4/zstd/zlib exactly MIGR_PAGE_SIZE bytes
 * out; on -EBADMSG xbzrle leaves the page alone, the others may have
 * written any bytes of it. Thread-safe: the library contexts are per
 * thread (allocated at first use, freed at thread exit); encode may return
 * -ENOMEM. */
extern const struct migr_codec_ops migr_codec_xbzrle;
extern const struct migr_codec_ops migr_codec_lz4;
extern const struct migr_codec_ops migr_codec_zstd;
extern const struct migr_codec_ops migr_codec_zlib;

/*! Codec for a wire encoding, or NULL if this build has none. */
const struct migr_codec_ops *migr_codec_for_enc(uint8_t enc);

/*! Codec by name ("raw", "zero", "xbzrle", "lz4", "zstd", "zlib"), or NULL. */
const struct migr_codec_ops *migr_codec_by_name(const char *name);

/*! The i-th codec of this build (0, 1, ...), NULL past the last. */
const struct migr_codec_ops *migr_codec_at(size_t i);

/*! Set the compression level of "lz4", "zstd" or "zlib" for all threads
 *  (takes effect at each thread's next encode). Ranges and defaults:
 *    lz4:  -65537 ... 12, default 1. <= 1: LZ4 fast with acceleration
 *          max(1, -level) ("--fast=N" is -N); 2: acceleration 1 too;
 *          3 ... 12: LZ4 HC at that level.
 *    zstd: ZSTD_minCLevel() ... ZSTD_maxCLevel(), default 1 (0 means zstd's
 *          default, 3).
 *    zlib: 1 ... 9, default 1.
 *  Returns 0; -ENOENT for another codec name; -ERANGE (message names the
 *  range) outside it. Decoders need no level. */
int migr_codec_set_level(const char *name, int level);

/*! 0 if level is within the range of "lz4", "zstd" or "zlib" (as for
 *  migr_codec_set_level), else -ENOENT / -ERANGE with a message. */
int migr_codec_check_level(const char *name, int level);

/*! Store the current level of "lz4", "zstd" or "zlib" in *level: 0, or
 *  -ENOENT for another name. */
int migr_codec_get_level(const char *name, int *level);

/* ---- stream codecs (format revision 1.8: LZ4S, ZSTDS) ----
 *
 * The pages of one lane of one PAGES record in one stream encoding are a
 * stream: each is compressed with the stream's earlier pages as context
 * (docs/format.md, "Page Encodings"; compress/stream.c). A context (struct
 * migr_lane) codes one stream at a time, in order, on one thread at a time.
 * Encoder: migr_lane_restart() at the start of each record; each
 * migr_lane_encode() says in *started whether its entry starts a stream
 * (the entry's MIGR_LANE_START); after MIGR_CODEC_DECLINE (the page does
 * not pay: sent another way) the next page starts a stream afresh.
 * Decoder: migr_lane_decode(start = the entry's MIGR_LANE_START); after an
 * error only a start entry is taken. */
struct migr_lane;
struct migr_lane_ops {
    const char *name;      /* "lz4s", "zstds" */
    uint8_t enc;           /* MIGR_ENC_LZ4S, MIGR_ENC_ZSTDS */
    uint8_t page_enc;      /* the per-page codec it extends (its level, its stats slot): LZ4, ZSTD */
    int (*encode)(struct migr_lane *l, const uint8_t *page, int level, uint8_t *out, size_t cap, size_t *len,
                  bool *started);
    int (*decode)(struct migr_lane *l, const uint8_t *src, size_t len, bool start, uint8_t *page);
    void (*free)(struct migr_lane *l);
};
extern const struct migr_lane_ops migr_lane_lz4;
extern const struct migr_lane_ops migr_lane_zstd;

/*! The stream codec of a wire encoding (LZ4S, ZSTDS), NULL for others. */
const struct migr_lane_ops *migr_lane_for_enc(uint8_t enc);

/*! A context for ops, to encode or to decode (one or the other). 0 or -ENOMEM. */
int migr_lane_new(const struct migr_lane_ops *ops, struct migr_lane **out);
void migr_lane_free(struct migr_lane *l);   /* NULL is fine */
/*! Encoder: the next page starts a new stream (a new record). */
void migr_lane_restart(struct migr_lane *l);
/*! Encode page at level (lz4: as migr_codec_set_level's; zstd: its level)
 *  into out (at most cap bytes, cap < MIGR_PAGE_SIZE gives no gain).
 *  0 with *len and *started; MIGR_CODEC_DECLINE; -errno. */
int migr_lane_encode(struct migr_lane *l, const uint8_t *page, int level, uint8_t *out, size_t cap, size_t *len,
                     bool *started);
/*! Decode one entry's len bytes into page (MIGR_PAGE_SIZE bytes). Strict:
 *  -EBADMSG with a message for a payload of 0 or >= 4096 bytes, a
 *  continuation without an open stream, a malformed block or frame, one that
 *  does not decode to exactly one page or leaves bytes over, a zstd frame
 *  that ends or needs a window over 1 MiB. */
int migr_lane_decode(struct migr_lane *l, const uint8_t *src, size_t len, bool start, uint8_t *page);

/* ---- GPU (CUDA; only in a `make GPU=1` build, compress/gpu/) ---- */

/*! 0 if this build has CUDA and a device; else -ENOTSUP (no CUDA in the
 *  build) or -ENODEV (no device), with a message. */
int migr_gpu_available(void);

/*! XBZRLE-encode count page pairs on the GPU: page i of old_pages and of
 *  new_pages (MIGR_PAGE_SIZE bytes each, consecutive) into dst + i * dlen;
 *  lens[i] = what migr_xbzrle_encode(old, new, 4096, dst, dlen) returns for
 *  that pair (same bytes, same -1 cases). Synchronous. 0 or -errno. */
int migr_gpu_xbzrle_encode(const uint8_t *old_pages, const uint8_t *new_pages, uint32_t count, uint8_t *dst,
                           int dlen, int *lens);

/*! zero[i] = 1 if page i of pages (consecutive) is all zero, else 0. 0 or -errno. */
int migr_gpu_zero_pages(const uint8_t *pages, uint32_t count, uint8_t *zero);

#ifdef __cplusplus
}
#endif

#endif
