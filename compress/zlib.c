/* compress/zlib: one zlib stream (RFC 1950: deflate with a 2-byte header and
 * an Adler-32 trailer) per page, as zlib's compress2() makes it. */
#include <errno.h>
#include <stdlib.h>
#include <zlib.h>

#include "compress/internal.h"
#include "migr/codec.h"
#include "migr/common.h"
#include "migr/format.h"

/* A 4 KiB window covers the page: a smaller deflate state than the default
 * 32 KiB, and the same output for one page. */
#define ZLIB_WBITS 12

struct zlib_ctx {
    z_stream def, inf;
    int def_level;   /* level def was set up for; 0 = not set up */
    int inf_ok;
};

static void zlib_ctx_free(void *p)
{
    struct zlib_ctx *c = p;
    if (c) {
        if (c->def_level)
            deflateEnd(&c->def);
        if (c->inf_ok)
            inflateEnd(&c->inf);
        free(c);
    }
}

static struct migr__tls zlib_tls = MIGR__TLS_INIT(sizeof(struct zlib_ctx), zlib_ctx_free);

static int zlib_encode_at(const uint8_t *page, uint8_t *out, size_t cap, size_t *len, int level)
{
    struct zlib_ctx *c = migr__tls_get(&zlib_tls);
    if (!c)
        return migr_errorf(ENOMEM, "zlib: no memory for a context");
    if (c->def_level != level) {
        if (c->def_level)
            deflateEnd(&c->def);
        c->def_level = 0;
        c->def = (z_stream){0};
        int r = deflateInit2(&c->def, level, Z_DEFLATED, ZLIB_WBITS, 8, Z_DEFAULT_STRATEGY);
        if (r != Z_OK)
            return migr_errorf(r == Z_MEM_ERROR ? ENOMEM : EINVAL, "zlib: deflateInit2 (level %d): %d",
                               level, r);
        c->def_level = level;
    } else if (deflateReset(&c->def) != Z_OK) {
        return migr_errorf(EIO, "zlib: deflateReset failed");
    }
    c->def.next_in = (Bytef *)page;
    c->def.avail_in = MIGR_PAGE_SIZE;
    c->def.next_out = out;
    c->def.avail_out = (uInt)MIGR_MIN(cap, (size_t)MIGR_PAGE_SIZE - 1);
    int r = deflate(&c->def, Z_FINISH);
    if (r == Z_STREAM_END) {
        *len = c->def.total_out;
        return 0;
    }
    if (r == Z_OK || r == Z_BUF_ERROR)
        return MIGR_CODEC_DECLINE;   /* did not fit: no gain */
    return migr_errorf(EIO, "zlib: deflate: %d", r);
}

static int zlib_encode(const uint8_t *page, const uint8_t *old, uint8_t *out, size_t cap, size_t *len)
{
    return zlib_encode_at(page, out, cap, len, __atomic_load_n(&migr__zlib_level, __ATOMIC_RELAXED));
}

static int zlib_decode(const uint8_t *src, size_t len, uint8_t *page)
{
    if (len == 0 || len >= MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "zlib page: payload of %zu bytes (must be 1 ... %u)", len,
                           MIGR_PAGE_SIZE - 1);
    struct zlib_ctx *c = migr__tls_get(&zlib_tls);
    if (!c)
        return migr_errorf(ENOMEM, "zlib: no memory for a context");
    if (!c->inf_ok) {
        c->inf = (z_stream){0};
        int r = inflateInit(&c->inf);
        if (r != Z_OK)
            return migr_errorf(ENOMEM, "zlib: inflateInit: %d", r);
        c->inf_ok = 1;
    } else if (inflateReset(&c->inf) != Z_OK) {
        return migr_errorf(EIO, "zlib: inflateReset failed");
    }
    c->inf.next_in = (Bytef *)src;
    c->inf.avail_in = (uInt)len;
    c->inf.next_out = page;
    c->inf.avail_out = MIGR_PAGE_SIZE;
    int r = inflate(&c->inf, Z_FINISH);
    if (r == Z_STREAM_END && c->inf.avail_out == 0 && c->inf.avail_in == 0)
        return 0;
    if (r == Z_STREAM_END && c->inf.avail_out)
        return migr_errorf(EBADMSG, "zlib page: stream decodes to %lu bytes (must be %u)",
                           c->inf.total_out, MIGR_PAGE_SIZE);
    if (r == Z_STREAM_END)
        return migr_errorf(EBADMSG, "zlib page: %u bytes after the end of the stream",
                           c->inf.avail_in);
    if (r == Z_DATA_ERROR || r == Z_NEED_DICT)
        return migr_errorf(EBADMSG, "zlib page: malformed stream of %zu bytes: %s", len,
                           c->inf.msg ? c->inf.msg : "needs a dictionary");
    return migr_errorf(EBADMSG, "zlib page: stream of %zu bytes is %s", len,
                       c->inf.avail_out ? "truncated" : "longer than a page");
}

const struct migr_codec_ops migr_codec_zlib = {
    .name = "zlib",
    .enc = MIGR_CODEC_ENC_ZLIB,
    .encode = zlib_encode,
    .decode = zlib_decode,
    .encode_at = zlib_encode_at,
};
