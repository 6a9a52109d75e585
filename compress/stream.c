/* compress/stream: the stream codecs LZ4S and ZSTDS (docs/format.md
 * revision 1.8, "Page Encodings"; docs/compress.md, "Stream codecs").
 *
 * A stream is the pages of one lane of one PAGES record in one encoding:
 * each page is compressed with the stream's earlier pages as context, so
 * that what repeats across pages (an application's structures, its heap's
 * headers) is sent once per stream instead of once per page. Each entry
 * still decodes to exactly one page and carries that page's CRC; entries
 * must be decoded in stream order.
 *
 *   LZ4S:  one LZ4 block per page, compressed with up to the last 64 KiB of
 *          the stream's pages (in order) as prefix. Both ends keep those
 *          pages in a window buffer; when the next page does not fit, the
 *          last 64 KiB move to its start (encoder: LZ4_saveDict).
 *   ZSTDS: the stream's entries, concatenated, are one zstd frame, flushed
 *          after each page and never ended (window at most 1 MiB).
 *
 * A context serves one stream at a time; it is not thread-safe.
 */
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "compress/internal.h"
#include "migr/codec.h"
#include "migr/common.h"
#include "migr/format.h"

#define LZ4S_HISTORY 65536u                    /* LZ4's longest match distance */
#define LZ4S_WINDOW (2 * LZ4S_HISTORY)         /* history + room for pages */
#define ZSTDS_WINDOW_LOG 20                    /* 1 MiB: a record's lane is at most 4096 pages, but the
                                                  encoder's level-1 window is 512 KiB; a decoder refuses more */

struct migr_lane {
    const struct migr_lane_ops *ops;
    bool open;                                 /* a stream is open (its first page was coded) */
    /* lz4s */
    LZ4_stream_t *ls;
    uint8_t *win;
    uint32_t pos;
    /* zstds */
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    int zlevel;
    uint8_t *scratch;                          /* decoder: 2 pages, to see a page that decodes too long */
};

/* ---- lz4s ---- */

static int lz4s_encode(struct migr_lane *l, const uint8_t *page, int level, uint8_t *out, size_t cap, size_t *len,
                       bool *started)
{
    if (!l->ls && !(l->ls = LZ4_createStream()))
        return migr_errorf(ENOMEM, "lz4 stream: no memory for a context");
    if (!l->win && !(l->win = malloc(LZ4S_WINDOW)))
        return migr_errorf(ENOMEM, "lz4 stream: no memory for its window");
    *started = !l->open;
    if (!l->open) {
        LZ4_resetStream_fast(l->ls);
        l->pos = 0;
    } else if (l->pos + MIGR_PAGE_SIZE > LZ4S_WINDOW) {
        l->pos = (uint32_t)LZ4_saveDict(l->ls, (char *)l->win, LZ4S_HISTORY);
    }
    uint8_t *src = l->win + l->pos;
    memcpy(src, page, MIGR_PAGE_SIZE);
    char tmp[LZ4_COMPRESSBOUND(MIGR_PAGE_SIZE)];
    int r = LZ4_compress_fast_continue(l->ls, (const char *)src, tmp, MIGR_PAGE_SIZE, (int)sizeof(tmp),
                                       level < -1 ? -level : 1);
    if (r <= 0 || r >= (int)MIGR_PAGE_SIZE || (size_t)r > cap) {
        l->open = false;                       /* the context holds this page: the next one starts afresh */
        return MIGR_CODEC_DECLINE;
    }
    memcpy(out, tmp, (size_t)r);
    l->pos += MIGR_PAGE_SIZE;
    l->open = true;
    *len = (size_t)r;
    return 0;
}

static int lz4s_decode(struct migr_lane *l, const uint8_t *src, size_t len, bool start, uint8_t *page)
{
    if (!l->win && !(l->win = malloc(LZ4S_WINDOW)))
        return migr_errorf(ENOMEM, "lz4 stream: no memory for its window");
    if (start) {
        l->pos = 0;
    } else if (l->pos + MIGR_PAGE_SIZE > LZ4S_WINDOW) {
        memmove(l->win, l->win + l->pos - LZ4S_HISTORY, LZ4S_HISTORY);
        l->pos = LZ4S_HISTORY;
    }
    uint32_t hist = l->pos < LZ4S_HISTORY ? l->pos : LZ4S_HISTORY;
    uint8_t *dst = l->win + l->pos;
    int r = LZ4_decompress_safe_usingDict((const char *)src, (char *)dst, (int)len, MIGR_PAGE_SIZE,
                                          (const char *)dst - hist, (int)hist);
    if (r < 0)
        return migr_errorf(EBADMSG, "lz4 stream: malformed block of %zu bytes", len);
    if (r != (int)MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "lz4 stream: block of %zu bytes decodes to %d bytes (must be %u)", len, r,
                           MIGR_PAGE_SIZE);
    memcpy(page, dst, MIGR_PAGE_SIZE);
    l->pos += MIGR_PAGE_SIZE;
    return 0;
}

static void lz4s_free(struct migr_lane *l)
{
    if (l->ls)
        LZ4_freeStream(l->ls);
    free(l->win);
}

/* ---- zstds ---- */

static int zstds_encode(struct migr_lane *l, const uint8_t *page, int level, uint8_t *out, size_t cap, size_t *len,
                        bool *started)
{
    if (!l->zc && !(l->zc = ZSTD_createCCtx()))
        return migr_errorf(ENOMEM, "zstd stream: no memory for a context");
    *started = !l->open;
    if (!l->open || level != l->zlevel) {
        size_t e = ZSTD_CCtx_reset(l->zc, ZSTD_reset_session_only);
        if (!ZSTD_isError(e))
            e = ZSTD_CCtx_setParameter(l->zc, ZSTD_c_compressionLevel, level);
        if (!ZSTD_isError(e))
            e = ZSTD_CCtx_setParameter(l->zc, ZSTD_c_windowLog, ZSTDS_WINDOW_LOG - 1);
        if (ZSTD_isError(e))
            return migr_errorf(EIO, "zstd stream: set up (level %d): %s", level, ZSTD_getErrorName(e));
        l->zlevel = level;
        *started = true;
    }
    uint8_t tmp[ZSTD_COMPRESSBOUND(MIGR_PAGE_SIZE) + 64];
    ZSTD_outBuffer o = {tmp, sizeof(tmp), 0};
    ZSTD_inBuffer in = {page, MIGR_PAGE_SIZE, 0};
    size_t r;
    do {
        r = ZSTD_compressStream2(l->zc, &o, &in, ZSTD_e_flush);
    } while (!ZSTD_isError(r) && r != 0 && o.pos < o.size);
    if (ZSTD_isError(r) || r != 0 || o.pos >= MIGR_PAGE_SIZE || o.pos > cap || o.pos == 0) {
        l->open = false;
        if (ZSTD_isError(r))
            return migr_errorf(EIO, "zstd stream: compress (level %d): %s", level, ZSTD_getErrorName(r));
        return MIGR_CODEC_DECLINE;
    }
    memcpy(out, tmp, o.pos);
    l->open = true;
    *len = o.pos;
    return 0;
}

static int zstds_decode(struct migr_lane *l, const uint8_t *src, size_t len, bool start, uint8_t *page)
{
    if (!l->zd) {
        if (!(l->zd = ZSTD_createDCtx()))
            return migr_errorf(ENOMEM, "zstd stream: no memory for a context");
        size_t e = ZSTD_DCtx_setParameter(l->zd, ZSTD_d_windowLogMax, ZSTDS_WINDOW_LOG);
        if (ZSTD_isError(e))
            return migr_errorf(EIO, "zstd stream: set up: %s", ZSTD_getErrorName(e));
    }
    if (!l->scratch && !(l->scratch = malloc(2 * MIGR_PAGE_SIZE)))
        return migr_errorf(ENOMEM, "zstd stream: no memory");
    if (start)
        (void)ZSTD_DCtx_reset(l->zd, ZSTD_reset_session_only);
    ZSTD_outBuffer o = {l->scratch, MIGR_PAGE_SIZE + 1, 0};
    ZSTD_inBuffer in = {src, len, 0};
    size_t r;
    do {
        r = ZSTD_decompressStream(l->zd, &o, &in);
    } while (!ZSTD_isError(r) && r != 0 && in.pos < in.size && o.pos < o.size);
    if (ZSTD_isError(r))
        return migr_errorf(EBADMSG, "zstd stream: malformed data in %zu bytes: %s", len, ZSTD_getErrorName(r));
    if (r == 0)
        return migr_errorf(EBADMSG, "zstd stream: the frame ends in this entry (a stream's frame is never ended)");
    if (in.pos != in.size || o.pos != MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "zstd stream: %zu bytes decode to %s%zu bytes (must be exactly %u, all used)",
                           len, o.pos > MIGR_PAGE_SIZE ? "more than " : "", o.pos > MIGR_PAGE_SIZE ? o.pos - 1 : o.pos,
                           MIGR_PAGE_SIZE);
    memcpy(page, l->scratch, MIGR_PAGE_SIZE);
    return 0;
}

static void zstds_free(struct migr_lane *l)
{
    ZSTD_freeCCtx(l->zc);
    ZSTD_freeDCtx(l->zd);
    free(l->scratch);
}

/* ---- the table ---- */

const struct migr_lane_ops migr_lane_lz4 = {
    .name = "lz4s", .enc = MIGR_ENC_LZ4S, .page_enc = MIGR_ENC_LZ4,
    .encode = lz4s_encode, .decode = lz4s_decode, .free = lz4s_free,
};

const struct migr_lane_ops migr_lane_zstd = {
    .name = "zstds", .enc = MIGR_ENC_ZSTDS, .page_enc = MIGR_ENC_ZSTD,
    .encode = zstds_encode, .decode = zstds_decode, .free = zstds_free,
};

const struct migr_lane_ops *migr_lane_for_enc(uint8_t enc)
{
    return enc == MIGR_ENC_LZ4S ? &migr_lane_lz4 : enc == MIGR_ENC_ZSTDS ? &migr_lane_zstd : NULL;
}

int migr_lane_new(const struct migr_lane_ops *ops, struct migr_lane **out)
{
    struct migr_lane *l = calloc(1, sizeof(*l));
    if (!l)
        return migr_errorf(ENOMEM, "%s: no memory for a context", ops->name);
    l->ops = ops;
    *out = l;
    return 0;
}

void migr_lane_free(struct migr_lane *l)
{
    if (!l)
        return;
    l->ops->free(l);
    free(l);
}

void migr_lane_restart(struct migr_lane *l)
{
    if (l)
        l->open = false;
}

int migr_lane_encode(struct migr_lane *l, const uint8_t *page, int level, uint8_t *out, size_t cap, size_t *len,
                     bool *started)
{
    return l->ops->encode(l, page, level, out, cap, len, started);
}

int migr_lane_decode(struct migr_lane *l, const uint8_t *src, size_t len, bool start, uint8_t *page)
{
    if (len == 0 || len >= MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "%s page: payload of %zu bytes (must be 1 ... %u)", l->ops->name, len,
                           MIGR_PAGE_SIZE - 1);
    if (!start && !l->open)
        return migr_errorf(EBADMSG, "%s page: continues a stream that was not started (or failed)", l->ops->name);
    l->open = false;                           /* until this page decodes */
    int err = l->ops->decode(l, src, len, start, page);
    if (err == 0)
        l->open = true;
    return err;
}
