/* migr — wire format v1: meta encoders and strict decoders (docs/format.md). */
#include <errno.h>
#include <string.h>

#include "migr/common.h"
#include "migr/format.h"

/* Highest page frame number whose page still lies inside a 64-bit address space. */
#define PFN_LIMIT (UINT64_MAX >> MIGR_PAGE_SHIFT)
#define HELLO_PAGE_SIZE_MAX (1u << 30)
#define ERROR_CODE_MAX 4095

#define BAD(...) migr_errorf(EBADMSG, __VA_ARGS__)

static const char *const type_names[] = {
    [MIGR_REC_HELLO] = "HELLO",
    [MIGR_REC_PAGES] = "PAGES",
    [MIGR_REC_STATE] = "STATE",
    [MIGR_REC_ROUND_END] = "ROUND_END",
    [MIGR_REC_SWITCHOVER] = "SWITCHOVER",
    [MIGR_REC_READY] = "READY",
    [MIGR_REC_COMMIT] = "COMMIT",
    [MIGR_REC_DONE] = "DONE",
    [MIGR_REC_ERROR] = "ERROR",
    [MIGR_REC_MEMFD] = "MEMFD",
    [MIGR_REC_PAGE_REQ] = "PAGE_REQ",
    [MIGR_REC_DISCARD] = "DISCARD",
    [MIGR_REC_COMPLETE] = "COMPLETE",
    [MIGR_REC_EPOCH_END] = "EPOCH_END",
    [MIGR_REC_CANCEL] = "CANCEL",
    [MIGR_REC_FAULT_CHANNEL] = "FAULT_CHANNEL",
    [MIGR_REC_EPOCH_ACK] = "EPOCH_ACK",
    [MIGR_REC_SETTLE] = "SETTLE",
    [MIGR_REC_SETTLED] = "SETTLED",
};

const char *migr_rec_type_name(unsigned type)
{
    if (type < MIGR_ARRAY_SIZE(type_names) && type_names[type])
        return type_names[type];
    return "UNKNOWN";
}

static const char *const enc_names[] = {
    [MIGR_ENC_RAW] = "RAW", [MIGR_ENC_ZERO] = "ZERO", [MIGR_ENC_XBZRLE] = "XBZRLE",
    [MIGR_ENC_LZ4] = "LZ4", [MIGR_ENC_ZSTD] = "ZSTD", [MIGR_ENC_ZLIB] = "ZLIB",
    [MIGR_ENC_LZ4S] = "LZ4S", [MIGR_ENC_ZSTDS] = "ZSTDS",
};

const char *migr_page_enc_name(unsigned enc)
{
    if (enc < MIGR_ARRAY_SIZE(enc_names) && enc_names[enc])
        return enc_names[enc];
    return "UNKNOWN";
}

static int no_space(const char *what, size_t cap, size_t need)
{
    return migr_errorf(ENOSPC, "%s: buffer of %zu bytes too small (need %zu)", what, cap, need);
}

/* ---- HELLO ---- */

/* A NUL-terminated, NUL-padded string field of 16 bytes. */
static int check_name(const uint8_t *p, const char *field)
{
    const uint8_t *nul = memchr(p, 0, 16);

    if (!nul)
        return BAD("HELLO: %s not NUL-terminated within its 16 bytes", field);
    for (const uint8_t *q = nul; q < p + 16; q++)
        if (*q)
            return BAD("HELLO: %s: nonzero byte at offset %d after the terminating NUL",
                       field, (int)(q - p));
    return 0;
}

int migr_hello_decode(const uint8_t *meta, size_t len, struct migr_hello *out)
{
    uint32_t ps, n;
    int ret;

    memset(out, 0, sizeof(*out));
    if (len < MIGR_HELLO_FIXED)
        return BAD("HELLO: meta length %zu too short (at least %u)", len, MIGR_HELLO_FIXED);
    ps = migr_get_le32(meta);
    out->nvcpus = migr_get_le32(meta + 4);
    n = migr_get_le32(meta + 8);
    out->state_version = migr_get_le32(meta + 12);
    if (ps < MIGR_PAGE_SIZE || ps > HELLO_PAGE_SIZE_MAX || (ps & (ps - 1)))
        return BAD("HELLO: page_size %u is not a power of two in %u..%u",
                   ps, MIGR_PAGE_SIZE, HELLO_PAGE_SIZE_MAX);
    if (out->nvcpus < 1 || out->nvcpus > MIGR_MAX_VCPUS)
        return BAD("HELLO: nvcpus %u out of range 1..%u", out->nvcpus, MIGR_MAX_VCPUS);
    if (n < 1 || n > MIGR_MAX_REGIONS)
        return BAD("HELLO: nregions %u out of range 1..%u", n, MIGR_MAX_REGIONS);
    if (len != MIGR_HELLO_FIXED + 16u * n && len != MIGR_HELLO_FIXED + 16u * n + MIGR_HELLO_EXT)
        return BAD("HELLO: meta length %zu (expected %u for %u regions), or %u with features (revision 1.6)",
                   len, MIGR_HELLO_FIXED + 16u * n, n, MIGR_HELLO_FIXED + 16u * n + MIGR_HELLO_EXT);
    ret = check_name(meta + 16, "backend");
    if (ret < 0)
        return ret;
    ret = check_name(meta + 32, "mode");
    if (ret < 0)
        return ret;
    memcpy(out->backend, meta + 16, 16);
    memcpy(out->mode, meta + 32, 16);
    out->page_size = ps;
    out->nregions = n;

    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = meta + MIGR_HELLO_FIXED + 16u * i;
        uint64_t gpa = migr_get_le64(r), size = migr_get_le64(r + 8);

        if (size == 0)
            return BAD("HELLO: region %u: size 0", i);
        if (gpa % ps)
            return BAD("HELLO: region %u: gpa 0x%llx not aligned to page_size %u",
                       i, (unsigned long long)gpa, ps);
        if (size % ps)
            return BAD("HELLO: region %u: size 0x%llx not a multiple of page_size %u",
                       i, (unsigned long long)size, ps);
        if (gpa + size < gpa)
            return BAD("HELLO: region %u: gpa 0x%llx + size 0x%llx overflows",
                       i, (unsigned long long)gpa, (unsigned long long)size);
        if (i > 0) {
            const struct migr_region_desc *prev = &out->regions[i - 1];

            if (gpa < prev->gpa + prev->size)
                return BAD("HELLO: region %u: gpa 0x%llx below the end of region %u (0x%llx): "
                           "regions must be sorted and not overlap", i,
                           (unsigned long long)gpa, i - 1,
                           (unsigned long long)(prev->gpa + prev->size));
        }
        out->regions[i].gpa = gpa;
        out->regions[i].size = size;
    }
    if (len == MIGR_HELLO_FIXED + 16u * n) /* before revision 1.6: no features, no id */
        return 0;
    const uint8_t *x = meta + MIGR_HELLO_FIXED + 16u * n;
    out->has_ext = true;
    out->features = migr_get_le64(x);
    out->requires = migr_get_le64(x + 8);
    memcpy(out->id, x + 16, MIGR_MIGRATION_ID_SIZE);
    uint64_t beyond = migr_features_missing(out->requires, out->features);
    if (beyond)
        return BAD("HELLO: requires 0x%llx names feature 0x%llx that features 0x%llx lacks",
                   (unsigned long long)out->requires, (unsigned long long)beyond,
                   (unsigned long long)out->features);
    return 0;
}

static const char *const feature_names[] = {
    "xbzrle", "lz4", "zstd", "zlib", "post-copy", "cancellable post-copy", "fault channel",
    "post-copy lease", "memfd hand-over", "multiple RAM regions", "settle", "round sync",
    "lz4 stream", "zstd stream",
};

const char *migr_feature_name(uint64_t bit)
{
    for (unsigned i = 0; i < MIGR_ARRAY_SIZE(feature_names); i++)
        if (bit == 1ull << i)
            return feature_names[i];
    return NULL;
}

static int put_name(uint8_t *p, const char *s, const char *field)
{
    size_t n = strnlen(s, 16);

    if (n == 16)
        return migr_errorf(EINVAL, "HELLO: %s '%.16s...' longer than 15 characters", field, s);
    memset(p, 0, 16);
    memcpy(p, s, n);
    return 0;
}

int migr_hello_encode(const struct migr_hello *h, uint8_t *buf, size_t cap)
{
    struct migr_hello check;
    size_t need;
    int ret;

    if (h->nregions < 1 || h->nregions > MIGR_MAX_REGIONS)
        return migr_errorf(EINVAL, "HELLO: nregions %u out of range 1..%u",
                           h->nregions, MIGR_MAX_REGIONS);
    need = MIGR_HELLO_FIXED + 16u * h->nregions + (h->has_ext ? MIGR_HELLO_EXT : 0);
    if (cap < need)
        return no_space("HELLO", cap, need);
    migr_put_le32(buf, h->page_size);
    migr_put_le32(buf + 4, h->nvcpus);
    migr_put_le32(buf + 8, h->nregions);
    migr_put_le32(buf + 12, h->state_version);
    ret = put_name(buf + 16, h->backend, "backend");
    if (ret < 0)
        return ret;
    ret = put_name(buf + 32, h->mode, "mode");
    if (ret < 0)
        return ret;
    for (uint32_t i = 0; i < h->nregions; i++) {
        migr_put_le64(buf + MIGR_HELLO_FIXED + 16u * i, h->regions[i].gpa);
        migr_put_le64(buf + MIGR_HELLO_FIXED + 16u * i + 8, h->regions[i].size);
    }
    if (h->has_ext) {
        uint8_t *x = buf + MIGR_HELLO_FIXED + 16u * h->nregions;
        migr_put_le64(x, h->features);
        migr_put_le64(x + 8, h->requires);
        memcpy(x + 16, h->id, MIGR_MIGRATION_ID_SIZE);
    }
    /* Never send what a receiver must refuse. */
    ret = migr_hello_decode(buf, need, &check);
    if (ret < 0)
        return migr_error_prefix(EINVAL, "cannot encode");
    return (int)need;
}

/* ---- PAGES ---- */

/* Checks of one entry that need no receiver state; err is EBADMSG when
 * decoding, EINVAL when encoding. */
static int check_entry(const struct migr_page_entry *e, uint32_t i, int err)
{
    if (e->enc > MIGR_ENC_MAX_V1)
        return migr_errorf(err, "PAGES: entry %u: unknown encoding %u", i, e->enc);
    if (e->pfn > PFN_LIMIT)
        return migr_errorf(err, "PAGES: entry %u: pfn 0x%llx beyond the 64-bit address space",
                           i, (unsigned long long)e->pfn);
    if (!migr_enc_is_stream(e->enc) ? e->lane != 0 : (e->lane & ~(MIGR_LANE_MASK | MIGR_LANE_START)) != 0)
        return migr_errorf(err, "PAGES: entry %u: %s with lane byte 0x%02x (%s)", i, migr_page_enc_name(e->enc),
                           e->lane, migr_enc_is_stream(e->enc) ? "bits 4-6 must be 0" : "reserved: must be 0");
    switch (e->enc) {
    case MIGR_ENC_RAW:
        if (e->len != MIGR_PAGE_SIZE)
            return migr_errorf(err, "PAGES: entry %u: RAW length %u (expected %u)",
                               i, e->len, MIGR_PAGE_SIZE);
        break;
    case MIGR_ENC_ZERO:
        if (e->len == 0)
            return migr_errorf(err, "PAGES: entry %u: ZERO run of 0 pages", i);
        if (e->crc != 0)
            return migr_errorf(err, "PAGES: entry %u: ZERO crc 0x%08x (must be 0)", i, e->crc);
        if (e->len - 1 > PFN_LIMIT - e->pfn)
            return migr_errorf(err, "PAGES: entry %u: ZERO run of %u pages from pfn 0x%llx "
                               "overflows", i, e->len, (unsigned long long)e->pfn);
        break;
    case MIGR_ENC_XBZRLE:
        if (e->len >= MIGR_PAGE_SIZE)
            return migr_errorf(err, "PAGES: entry %u: XBZRLE delta of %u bytes (at most %u)",
                               i, e->len, MIGR_PAGE_SIZE - 1);
        break;
    default: /* LZ4, ZSTD, ZLIB, LZ4S, ZSTDS: a payload shorter than the page */
        if (e->len == 0 || e->len >= MIGR_PAGE_SIZE)
            return migr_errorf(err, "PAGES: entry %u: %s payload of %u bytes (expected 1..%u)",
                               i, migr_page_enc_name(e->enc), e->len, MIGR_PAGE_SIZE - 1);
        break;
    }
    return 0;
}

/* A stream entry either starts its (encoding, lane) stream or continues
 * one this record started; *open: a bit per stream begun so far. */
static int check_stream(const struct migr_page_entry *e, uint32_t i, uint32_t *open, int err)
{
    if (!migr_enc_is_stream(e->enc))
        return 0;
    uint32_t bit = 1u << ((e->enc == MIGR_ENC_ZSTDS ? MIGR_LANES : 0) + (e->lane & MIGR_LANE_MASK));
    if (e->lane & MIGR_LANE_START)
        *open |= bit;
    else if (!(*open & bit))
        return migr_errorf(err, "PAGES: entry %u: %s lane %u continues a stream this record did not start", i,
                           migr_page_enc_name(e->enc), e->lane & MIGR_LANE_MASK);
    return 0;
}

/* Bytes of bulk data an entry carries. */
static uint64_t entry_data_len(const struct migr_page_entry *e)
{
    return e->enc == MIGR_ENC_ZERO ? 0 : e->len;
}

int migr_pages_encode(uint32_t round, const struct migr_page_entry *e, uint32_t count,
                      uint8_t *buf, size_t cap)
{
    size_t need;

    if (count < 1 || count > MIGR_BATCH_MAX)
        return migr_errorf(EINVAL, "PAGES: count %u out of range 1..%u", count, MIGR_BATCH_MAX);
    need = MIGR_PAGES_FIXED + (size_t)count * MIGR_PAGE_ENTRY_SIZE;
    if (cap < need)
        return no_space("PAGES", cap, need);
    migr_put_le32(buf, round);
    migr_put_le32(buf + 4, count);
    uint32_t open = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint8_t *p = buf + MIGR_PAGES_FIXED + (size_t)i * MIGR_PAGE_ENTRY_SIZE;
        int ret = check_entry(&e[i], i, EINVAL);

        if (ret == 0)
            ret = check_stream(&e[i], i, &open, EINVAL);
        if (ret < 0)
            return ret;
        memset(p, 0, MIGR_PAGE_ENTRY_SIZE);
        migr_put_le64(p, e[i].pfn);
        p[8] = e[i].enc;
        p[9] = e[i].lane;
        migr_put_le32(p + 12, e[i].len);
        migr_put_le32(p + 16, e[i].crc);
    }
    return (int)need;
}

int migr_page_entry_decode(const uint8_t *meta, uint32_t i, struct migr_page_entry *out)
{
    const uint8_t *p = meta + MIGR_PAGES_FIXED + (size_t)i * MIGR_PAGE_ENTRY_SIZE;

    out->pfn = migr_get_le64(p);
    out->enc = p[8];
    out->lane = p[9];
    out->len = migr_get_le32(p + 12);
    out->crc = migr_get_le32(p + 16);
    if (p[10] || p[11] || migr_get_le32(p + 20))
        return BAD("PAGES: entry %u: reserved bytes not zero", i);
    return check_entry(out, i, EBADMSG);
}

int migr_pages_decode_hdr(const uint8_t *meta, size_t len, uint32_t bulk_len,
                          uint32_t *round, uint32_t *count)
{
    uint64_t data = 0;
    uint32_t n;

    if (len < MIGR_PAGES_FIXED)
        return BAD("PAGES: meta length %zu too short (at least %u)", len, MIGR_PAGES_FIXED);
    n = migr_get_le32(meta + 4);
    if (n < 1 || n > MIGR_BATCH_MAX)
        return BAD("PAGES: count %u out of range 1..%u", n, MIGR_BATCH_MAX);
    if (len != MIGR_PAGES_FIXED + (size_t)n * MIGR_PAGE_ENTRY_SIZE)
        return BAD("PAGES: meta length %zu (expected %zu for %u entries)",
                   len, MIGR_PAGES_FIXED + (size_t)n * MIGR_PAGE_ENTRY_SIZE, n);
    uint32_t open = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct migr_page_entry e;
        int ret = migr_page_entry_decode(meta, i, &e);

        if (ret == 0)
            ret = check_stream(&e, i, &open, EBADMSG);
        if (ret < 0)
            return ret;
        data += entry_data_len(&e);
    }
    if (data != bulk_len)
        return BAD("PAGES: bulk length %u does not match the entries' data (%llu bytes)",
                   bulk_len, (unsigned long long)data);
    *round = migr_get_le32(meta);
    *count = n;
    return 0;
}

/* ---- ROUND_END, SWITCHOVER, READY/DONE ---- */

static int check_fixed(const char *name, size_t len, size_t want)
{
    if (len != want)
        return BAD("%s: meta length %zu (expected %zu)", name, len, want);
    return 0;
}

int migr_round_end_encode(const struct migr_round_end *r, uint8_t *buf, size_t cap)
{
    if (cap < MIGR_ROUND_END_SIZE)
        return no_space("ROUND_END", cap, MIGR_ROUND_END_SIZE);
    migr_put_le32(buf, r->round);
    migr_put_le32(buf + 4, r->flags);
    migr_put_le64(buf + 8, r->pages_sent);
    migr_put_le64(buf + 16, r->dirty_pages);
    return MIGR_ROUND_END_SIZE;
}

int migr_round_end_decode(const uint8_t *meta, size_t len, struct migr_round_end *out)
{
    int ret = check_fixed("ROUND_END", len, MIGR_ROUND_END_SIZE);

    if (ret < 0)
        return ret;
    if (migr_get_le32(meta + 4) & ~MIGR_ROUND_END_SYNC)
        return BAD("ROUND_END: unknown flags 0x%08x", migr_get_le32(meta + 4) & ~MIGR_ROUND_END_SYNC);
    out->flags = migr_get_le32(meta + 4);
    out->round = migr_get_le32(meta);
    out->pages_sent = migr_get_le64(meta + 8);
    out->dirty_pages = migr_get_le64(meta + 16);
    return 0;
}

int migr_switchover_encode(const struct migr_switchover *s, uint8_t *buf, size_t cap)
{
    if (cap < MIGR_SWITCHOVER_SIZE)
        return no_space("SWITCHOVER", cap, MIGR_SWITCHOVER_SIZE);
    migr_put_le32(buf, s->rounds);
    migr_put_le32(buf + 4, 0);
    migr_put_le64(buf + 8, s->total_pages_sent);
    return MIGR_SWITCHOVER_SIZE;
}

int migr_switchover_decode(const uint8_t *meta, size_t len, struct migr_switchover *out)
{
    int ret = check_fixed("SWITCHOVER", len, MIGR_SWITCHOVER_SIZE);

    if (ret < 0)
        return ret;
    if (migr_get_le32(meta + 4))
        return BAD("SWITCHOVER: reserved field 0x%08x not zero", migr_get_le32(meta + 4));
    out->rounds = migr_get_le32(meta);
    out->total_pages_sent = migr_get_le64(meta + 8);
    return 0;
}

int migr_ack_encode(const struct migr_ack *a, uint8_t *buf, size_t cap)
{
    if (cap < MIGR_ACK_SIZE)
        return no_space("READY/DONE", cap, MIGR_ACK_SIZE);
    migr_put_le64(buf, a->pages);
    migr_put_le64(buf + 8, a->t_ns);
    return MIGR_ACK_SIZE;
}

int migr_ack_decode(const uint8_t *meta, size_t len, struct migr_ack *out)
{
    int ret = check_fixed("READY/DONE", len, MIGR_ACK_SIZE);

    if (ret < 0)
        return ret;
    out->pages = migr_get_le64(meta);
    out->t_ns = migr_get_le64(meta + 8);
    return 0;
}

/* ---- ERROR ---- */

int migr_error_encode(int code, const char *msg, uint8_t *buf, size_t cap)
{
    size_t n;

    if (code < 1 || code > ERROR_CODE_MAX)
        return migr_errorf(EINVAL, "ERROR: code %d out of range 1..%d", code, ERROR_CODE_MAX);
    if (!msg)
        msg = "";
    n = strnlen(msg, MIGR_ERROR_MSG_MAX);
    if (cap < 8 + n)
        return no_space("ERROR", cap, 8 + n);
    migr_put_le32(buf, (uint32_t)code);
    migr_put_le32(buf + 4, (uint32_t)n);
    memcpy(buf + 8, msg, n);
    return (int)(8 + n);
}

int migr_error_decode(const uint8_t *meta, size_t len, int *code, char *msg, size_t cap)
{
    uint32_t n;
    int32_t c;

    if (len < 8)
        return BAD("ERROR: meta length %zu too short (at least 8)", len);
    c = (int32_t)migr_get_le32(meta);
    n = migr_get_le32(meta + 4);
    if (c < 1 || c > ERROR_CODE_MAX)
        return BAD("ERROR: code %d out of range 1..%d", (int)c, ERROR_CODE_MAX);
    if (n > MIGR_ERROR_MSG_MAX)
        return BAD("ERROR: message length %u exceeds %u", n, MIGR_ERROR_MSG_MAX);
    if (len != 8u + n)
        return BAD("ERROR: meta length %zu (expected %u for a %u-byte message)", len, 8u + n, n);
    *code = c;
    if (cap) {
        size_t m = MIGR_MIN((size_t)n, cap - 1);

        /* The text comes from the peer and ends up on a terminal: no
         * control characters (escape sequences) get through. */
        for (size_t i = 0; i < m; i++) {
            unsigned char ch = meta[8 + i];

            msg[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
        }
        msg[m] = '\0';
    }
    return 0;
}

/* ---- MEMFD ---- */

int migr_memfd_encode(const struct migr_memfd_desc *m, uint8_t *buf, size_t cap)
{
    size_t need = 8 + (size_t)m->nregions * 24;
    if (m->nregions < 1 || m->nregions > MIGR_MAX_REGIONS)
        return migr_errorf(EINVAL, "MEMFD: nregions %u out of range 1..%u", m->nregions, MIGR_MAX_REGIONS);
    if (cap < need)
        return no_space("MEMFD", cap, need);
    migr_put_le32(buf, m->nregions);
    migr_put_le32(buf + 4, 0);
    for (uint32_t i = 0; i < m->nregions; i++) {
        migr_put_le64(buf + 8 + i * 24, m->r[i].gpa);
        migr_put_le64(buf + 16 + i * 24, m->r[i].size);
        migr_put_le64(buf + 24 + i * 24, m->r[i].off);
    }
    return (int)need;
}

int migr_memfd_decode(const uint8_t *meta, size_t len, struct migr_memfd_desc *out)
{
    if (len < 8)
        return BAD("MEMFD: meta length %zu shorter than 8", len);
    out->nregions = migr_get_le32(meta);
    if (out->nregions < 1 || out->nregions > MIGR_MAX_REGIONS)
        return BAD("MEMFD: nregions %u out of range 1..%u", out->nregions, MIGR_MAX_REGIONS);
    if (migr_get_le32(meta + 4))
        return BAD("MEMFD: reserved field not zero");
    if (len != 8 + (size_t)out->nregions * 24)
        return BAD("MEMFD: meta length %zu (expected %u for %u regions)", len, 8 + out->nregions * 24,
                   out->nregions);
    for (uint32_t i = 0; i < out->nregions; i++) {
        out->r[i].gpa = migr_get_le64(meta + 8 + i * 24);
        out->r[i].size = migr_get_le64(meta + 16 + i * 24);
        out->r[i].off = migr_get_le64(meta + 24 + i * 24);
        if (out->r[i].size == 0 || (out->r[i].gpa | out->r[i].size | out->r[i].off) % MIGR_PAGE_SIZE)
            return BAD("MEMFD: region %u (gpa 0x%llx size 0x%llx offset 0x%llx) not page aligned or empty", i,
                       (unsigned long long)out->r[i].gpa, (unsigned long long)out->r[i].size,
                       (unsigned long long)out->r[i].off);
    }
    return 0;
}

/* ---- PAGE_REQ / DISCARD ---- */

int migr_ranges_encode(const char *what, const struct migr_range *r, uint32_t count, uint8_t *buf, size_t cap)
{
    size_t need = 8 + (size_t)count * 16;
    if (count < 1 || count > MIGR_RANGES_MAX)
        return migr_errorf(EINVAL, "%s: %u ranges (1..%u)", what, count, MIGR_RANGES_MAX);
    if (cap < need)
        return no_space(what, cap, need);
    migr_put_le32(buf, count);
    migr_put_le32(buf + 4, 0);
    for (uint32_t i = 0; i < count; i++) {
        migr_put_le64(buf + 8 + i * 16, r[i].pfn);
        migr_put_le64(buf + 16 + i * 16, r[i].npages);
    }
    return (int)need;
}

int migr_ranges_decode(const char *what, const uint8_t *meta, size_t len, struct migr_range *out, uint32_t *count)
{
    if (len < 8)
        return BAD("%s: meta length %zu shorter than 8", what, len);
    uint32_t n = migr_get_le32(meta);
    if (n < 1 || n > MIGR_RANGES_MAX)
        return BAD("%s: count %u out of range 1..%u", what, n, MIGR_RANGES_MAX);
    if (migr_get_le32(meta + 4))
        return BAD("%s: reserved field not zero", what);
    if (len != 8 + (size_t)n * 16)
        return BAD("%s: meta length %zu (expected %u for %u ranges)", what, len, 8 + n * 16, n);
    for (uint32_t i = 0; i < n; i++) {
        out[i].pfn = migr_get_le64(meta + 8 + i * 16);
        out[i].npages = migr_get_le64(meta + 16 + i * 16);
        if (out[i].npages == 0 || out[i].pfn > PFN_LIMIT || out[i].npages > PFN_LIMIT - out[i].pfn)
            return BAD("%s: range %u (pfn 0x%llx, %llu pages) empty or past the address space", what, i,
                       (unsigned long long)out[i].pfn, (unsigned long long)out[i].npages);
    }
    *count = n;
    return 0;
}

void migr_hello_layout(const struct migr_hello *h, struct migr_vm_layout *out)
{
    memset(out, 0, sizeof(*out));
    out->page_size = h->page_size;
    out->nvcpus = h->nvcpus;
    out->nregions = h->nregions < MIGR_MAX_REGIONS ? h->nregions : MIGR_MAX_REGIONS;
    out->state_version = h->state_version;
    memcpy(out->vmm, h->backend, sizeof(out->vmm) - 1);
    for (uint32_t i = 0; i < out->nregions; i++)
        out->regions[i] = (struct migr_layout_region){.gpa = h->regions[i].gpa, .size = h->regions[i].size};
}

void migr_hello_set_layout(struct migr_hello *h, const struct migr_vm_layout *l)
{
    h->page_size = l->page_size;
    h->nvcpus = l->nvcpus;
    h->nregions = l->nregions < MIGR_MAX_REGIONS ? l->nregions : MIGR_MAX_REGIONS;
    h->state_version = l->state_version;
    memset(h->backend, 0, sizeof(h->backend));
    memcpy(h->backend, l->vmm, strnlen(l->vmm, sizeof(l->vmm) - 1));
    for (uint32_t i = 0; i < h->nregions; i++)
        h->regions[i] = (struct migr_region_desc){.gpa = l->regions[i].gpa, .size = l->regions[i].size};
}

int migr_fault_channel_encode(const struct migr_fault_channel *f, uint8_t *buf, size_t cap)
{
    if (cap < MIGR_FAULT_CHANNEL_SIZE)
        return no_space("FAULT_CHANNEL", cap, MIGR_FAULT_CHANNEL_SIZE);
    migr_put_le32(buf, f->kind);
    migr_put_le32(buf + 4, f->arg);
    migr_put_le64(buf + 8, f->cookie);
    return MIGR_FAULT_CHANNEL_SIZE;
}

int migr_fault_channel_decode(const uint8_t *meta, size_t len, struct migr_fault_channel *out)
{
    int ret = check_fixed("FAULT_CHANNEL", len, MIGR_FAULT_CHANNEL_SIZE);

    if (ret < 0)
        return ret;
    out->kind = migr_get_le32(meta);
    out->arg = migr_get_le32(meta + 4);
    out->cookie = migr_get_le64(meta + 8);
    switch (out->kind) {
    case MIGR_FCH_FD:
        if (out->arg || out->cookie)
            return BAD("FAULT_CHANNEL: kind 1 (descriptor): port and cookie must be 0");
        return 0;
    case MIGR_FCH_TCP_BACK:
        if (out->arg == 0 || out->arg > 65535)
            return BAD("FAULT_CHANNEL: kind 2: port %u out of range 1..65535", out->arg);
        return 0;
    case MIGR_FCH_TCP:
        if (out->arg & ~MIGR_FCH_F_SOURCE_CONNECTS)
            return BAD("FAULT_CHANNEL: kind 3: unknown flags 0x%x", out->arg & ~MIGR_FCH_F_SOURCE_CONNECTS);
        if (!out->cookie)
            return BAD("FAULT_CHANNEL: kind 3: cookie 0");
        return 0;
    }
    return BAD("FAULT_CHANNEL: unknown kind %u (expected 1..3)", out->kind);
}
