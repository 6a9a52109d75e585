/* Golden files (tests/golden/): encoded XBZRLE deltas checked byte for byte
 * against every encoder, and decoded back; one lz4, zstd and zlib payload
 * each, decoded (their encoders' exact bytes depend on the library version,
 * so only decoding is pinned); a sample stream with the codec page
 * encodings of docs/format.md 1.3 (stream_pages_codecs.hex), made by the
 * record and PAGES encoders and read back by the decoders. A format change
 * shows up here.
 *
 * The inputs are made by this file alone (xorshift64 and a word list), so a
 * change elsewhere cannot move them. To rewrite the files after an
 * intended format change: MIGR_GOLDEN_UPDATE=1 build/tests/test_codecs_golden
 * (from the source tree), then review the diff.
 * File format: '#' comment lines, then the bytes in hex, 32 per line. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sys/uio.h>

#include "migr/codec.h"
#include "migr/crc32c.h"
#include "migr/format.h"
#include "migr/record.h"
#include "migr/transport.h"
#include "migr/xbzrle.h"
#include "testlib.h"

#define PS 4096
#define MAXS 16384

static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Text-like page: words from a list, separated by spaces, from seed. */
static void text_page(uint8_t *p, int len, uint64_t seed)
{
    static const char *const words[16] = {"the ", "page ", "guest ", "memory ", "dirty ",
                                          "round ", "delta ", "cache ", "of ", "and ",
                                          "migrate ", "zero ", "run ", "length ", "xor ", "\n"};
    int pos = 0;
    while (pos < len) {
        const char *w = words[xs(&seed) % 16];
        while (*w && pos < len)
            p[pos++] = (uint8_t)*w++;
    }
}

/* Change n distinct bytes at positions from seed (never to the same value). */
static void change_bytes(const uint8_t *o, uint8_t *n, int len, int count, uint64_t seed)
{
    memcpy(n, o, (size_t)len);
    for (int k = 0; k < count;) {
        int at = (int)(xs(&seed) % (uint64_t)len);
        if (n[at] != o[at])
            continue;
        n[at] = (uint8_t)(o[at] ^ (1 + xs(&seed) % 255));
        k++;
    }
}

struct gcase {
    const char *file;
    const char *about;
    int slen;
    void (*make)(uint8_t *o, uint8_t *n, int slen, int arg);
    int arg;
};

static void mk_docs(uint8_t *o, uint8_t *n, int slen, int arg)
{
    static const uint8_t ob[] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 0x68, 0, 0,
                                 0x6b, 0, 0x6d};
    static const uint8_t nb[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x68, 0, 0,
                                 0x67, 0, 0x69};
    memset(o, 0, (size_t)slen);
    memset(n, 0, (size_t)slen);
    memcpy(o + 1001, ob, sizeof(ob));
    memcpy(n + 1001, nb, sizeof(nb));
}

static void mk_text_changes(uint8_t *o, uint8_t *n, int slen, int count)
{
    text_page(o, slen, 0x1234u + (uint64_t)count);
    change_bytes(o, n, slen, count, 0xabcdu + (uint64_t)count);
}

static void mk_runs(uint8_t *o, uint8_t *n, int slen, int arg)
{
    /* zero old page; non-zero runs of 127, 128, 129 bytes, zero runs of 127,
     * 128, 129 between them, starting at an odd offset */
    memset(o, 0, (size_t)slen);
    memset(n, 0, (size_t)slen);
    int at = 3;
    for (int k = 0; k < 9 && at < slen - 300; k++) {
        int len = 127 + k % 3;
        for (int i = 0; i < len; i++)
            n[at + i] = (uint8_t)(1 + (at + i) % 251);
        at += len + 127 + (k / 3) % 3;
    }
}

static void mk_limit(uint8_t *o, uint8_t *n, int slen, int arg)
{
    /* slen 16384: arg 0: zero run of 16383 then 1 change; arg 1: non-zero
     * run of 16383 after one unchanged byte */
    text_page(o, slen, 77);
    memcpy(n, o, (size_t)slen);
    if (arg == 0)
        n[slen - 1] ^= 0x5a;
    else
        for (int i = 1; i < slen; i++)
            n[i] ^= (uint8_t)(1 + i % 255);
}

static void mk_words(uint8_t *o, uint8_t *n, int slen, int arg)
{
    /* runs of 1 ... 20 bytes that start 5 ... 7 bytes into a word */
    uint64_t s = 99;
    text_page(o, slen, 5);
    memcpy(n, o, (size_t)slen);
    for (int at = 5; at < slen - 40; at += 61) {
        int len = 1 + (int)(xs(&s) % 20);
        for (int i = at; i < at + len; i++)
            n[i] = (uint8_t)(o[i] ^ (1 + xs(&s) % 255));
    }
}

static const struct gcase cases[] = {
    {"xbzrle_qemu_docs.hex", "the example of QEMU's docs/xbzrle.txt", PS, mk_docs, 0},
    {"xbzrle_text_8.hex", "text page, 8 random bytes changed", PS, mk_text_changes, 8},
    {"xbzrle_text_64.hex", "text page, 64 random bytes changed", PS, mk_text_changes, 64},
    {"xbzrle_text_512.hex", "text page, 512 random bytes changed", PS, mk_text_changes, 512},
    {"xbzrle_runs_127_128_129.hex", "runs of 127, 128 and 129 bytes (1- and 2-byte lengths)", PS,
     mk_runs, 0},
    {"xbzrle_words.hex", "short runs crossing 8-byte words", PS, mk_words, 0},
    {"xbzrle_limit_zrun.hex", "slen 16384: zero run of 16383 (largest 2-byte length)", MAXS,
     mk_limit, 0},
    {"xbzrle_limit_nzrun.hex", "slen 16384: non-zero run of 16383", MAXS, mk_limit, 1},
};

static const char *dir(void)
{
    const char *d = getenv("MIGR_GOLDEN_DIR");
    return d ? d : "tests/golden";
}

static void write_hex(const char *file, const char *about, const uint8_t *b, int len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir(), file);
    FILE *f = fopen(path, "w");
    if (!f)
        T_FAIL("cannot write %s", path);
    fprintf(f, "# %s\n# %d bytes; made by tests/test_codecs_golden.c (MIGR_GOLDEN_UPDATE=1)\n",
            about, len);
    for (int i = 0; i < len; i++)
        fprintf(f, "%02x%s", b[i], i % 32 == 31 || i == len - 1 ? "\n" : "");
    fclose(f);
}

/* Read a hex file into buf; returns its length. */
static int read_hex(const char *file, uint8_t *buf, int cap)
{
    char path[512], line[1024];
    snprintf(path, sizeof(path), "%s/%s", dir(), file);
    FILE *f = fopen(path, "r");
    if (!f)
        T_FAIL("cannot read %s (run from the source tree, or set MIGR_GOLDEN_DIR)", path);
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#')
            continue;
        for (char *p = line; p[0] && p[1] && p[0] != '\n'; p += 2) {
            unsigned v;
            if (sscanf(p, "%2x", &v) != 1 || n >= cap)
                T_FAIL("%s: bad hex at byte %d", path, n);
            buf[n++] = (uint8_t)v;
        }
    }
    fclose(f);
    return n;
}

static void test_xbzrle_golden(int update)
{
    static _Alignas(64) uint8_t o[MAXS], n[MAXS], enc[3 * MAXS], got[3 * MAXS], gold[3 * MAXS];
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const struct gcase *g = &cases[c];
        g->make(o, n, g->slen, g->arg);
        int len = migr_xbzrle_encoder(MIGR_XBZRLE_BASELINE)(o, n, g->slen, enc, (int)sizeof(enc));
        T_ASSERT(len > 0);
        if (update) {
            write_hex(g->file, g->about, enc, len);
            continue;
        }
        int glen = read_hex(g->file, gold, (int)sizeof(gold));
        if (glen != len || memcmp(gold, enc, (size_t)len))
            T_FAIL("%s: the encoding (%d bytes) differs from the golden file (%d bytes)", g->file,
                   len, glen);
        for (int k = 0; k < MIGR_XBZRLE_NIMPL; k++) {
            migr_xbzrle_encode_fn fn = migr_xbzrle_encoder(k);
            if (!fn)
                continue;
            int l = fn(o, n, g->slen, got, (int)sizeof(got));
            if (l != glen || memcmp(got, gold, (size_t)glen))
                T_FAIL("%s: %s encoder differs from the golden file", g->file,
                       migr_xbzrle_impl_name(k));
        }
        int r = migr_xbzrle_decode(gold, glen, o, g->slen);
        T_ASSERT(r > 0 && r <= g->slen);
        if (memcmp(o, n, (size_t)g->slen))
            T_FAIL("%s: decoding the golden delta does not give the new page", g->file);
    }
}

static void test_codec_golden(int update)
{
    static const char *const names[] = {"lz4", "zstd", "zlib"};
    static _Alignas(64) uint8_t page[PS], back[PS], buf[PS];
    text_page(page, PS, 4242);
    for (int c = 0; c < 3; c++) {
        const struct migr_codec_ops *ops = migr_codec_by_name(names[c]);
        char file[64];
        snprintf(file, sizeof(file), "%s_text.hex", names[c]);
        if (update) {
            size_t len;
            T_OK(ops->encode(page, NULL, buf, sizeof(buf), &len));
            char about[128];
            snprintf(about, sizeof(about), "%s (level 1) of a text page; decode-only golden",
                     names[c]);
            write_hex(file, about, buf, (int)len);
            continue;
        }
        int len = read_hex(file, buf, PS);
        memset(back, 0, PS);
        int r = ops->decode(buf, (size_t)len, back);
        if (r || memcmp(back, page, PS))
            T_FAIL("%s: golden payload does not decode to the page (%d: %s)", file, r,
                   migr_last_error());
    }
}

/* An in-memory transport: sends append to buf, receives read from it. */
struct memt {
    struct migr_transport t;
    uint8_t buf[16384];
    size_t len, pos;
};

static int memt_sendv(struct migr_transport *t, const struct iovec *iov, int n)
{
    struct memt *m = (struct memt *)t;
    for (int i = 0; i < n; i++) {
        if (m->len + iov[i].iov_len > sizeof(m->buf))
            return -ENOSPC;
        if (iov[i].iov_len)
            memcpy(m->buf + m->len, iov[i].iov_base, iov[i].iov_len);
        m->len += iov[i].iov_len;
    }
    return 0;
}

static int memt_recvv(struct migr_transport *t, const struct iovec *iov, int n)
{
    struct memt *m = (struct memt *)t;
    for (int i = 0; i < n; i++) {
        if (m->pos + iov[i].iov_len > m->len)
            return migr_errorf(EPIPE, "end of golden stream");
        memcpy(iov[i].iov_base, m->buf + m->pos, iov[i].iov_len);
        m->pos += iov[i].iov_len;
    }
    return 0;
}

static void memt_noop(struct migr_transport *t) { (void)t; }

static const struct migr_transport_ops memt_ops = {
    .name = "mem", .sendv = memt_sendv, .recvv = memt_recvv, .shutdown = memt_noop, .close = memt_noop,
};

/* preamble; PAGES round 2 {ZERO 0x10 x3, XBZRLE 0x20 (QEMU docs delta)};
 * PAGES round 2 {LZ4 0x21 (the lz4 golden payload)} */
static void test_stream_golden(int update)
{
    static struct memt m;
    static _Alignas(64) uint8_t o[PS], n[PS], page[PS], delta[PS], lz[PS], gold[sizeof(m.buf)];
    uint8_t meta[MIGR_PAGES_FIXED + 2 * MIGR_PAGE_ENTRY_SIZE];
    memset(&m, 0, sizeof(m));
    m.t.ops = &memt_ops;
    m.t.fd = -1;
    mk_docs(o, n, PS, 0);
    int dlen = migr_xbzrle_encode(o, n, PS, delta, PS);
    int lzlen = read_hex("lz4_text.hex", lz, PS);
    text_page(page, PS, 4242);
    T_ASSERT(dlen == 24 && lzlen > 0);
    struct migr_page_entry e[2] = {
        {.pfn = 0x10, .enc = MIGR_ENC_ZERO, .len = 3},
        {.pfn = 0x20, .enc = MIGR_ENC_XBZRLE, .len = (uint32_t)dlen, .crc = migr_crc32c(0, n, PS)},
    };
    struct iovec iv = {delta, (size_t)dlen};
    T_OK(migr_preamble_send(&m.t));
    int len = migr_pages_encode(2, e, 2, meta, sizeof(meta));
    T_EQ(len, MIGR_PAGES_FIXED + 2 * MIGR_PAGE_ENTRY_SIZE);
    T_OK(migr_rec_send(&m.t, MIGR_REC_PAGES, meta, (uint32_t)len, &iv, 1));
    struct migr_page_entry l = {.pfn = 0x21, .enc = MIGR_ENC_LZ4, .len = (uint32_t)lzlen,
                                .crc = migr_crc32c(0, page, PS)};
    struct iovec lv = {lz, (size_t)lzlen};
    len = migr_pages_encode(2, &l, 1, meta, sizeof(meta));
    T_OK(migr_rec_send(&m.t, MIGR_REC_PAGES, meta, (uint32_t)len, &lv, 1));
    if (update) {
        write_hex("stream_pages_codecs.hex", "stream: preamble, PAGES{ZERO x3, XBZRLE}, PAGES{LZ4} (format.md 1.3)",
                  m.buf, (int)m.len);
        return;
    }
    int glen = read_hex("stream_pages_codecs.hex", gold, (int)sizeof(gold));
    if (glen != (int)m.len || memcmp(gold, m.buf, m.len))
        T_FAIL("stream_pages_codecs.hex: the encoders' stream (%zu bytes) differs from the golden file (%d bytes)",
               m.len, glen);
    /* read it back like a receiver */
    uint64_t seq = 0;
    struct migr_rec_hdr h;
    uint32_t round, count;
    static uint8_t rmeta[4096], bulk[PS];
    T_OK(migr_preamble_recv(&m.t));
    for (int r = 0; r < 2; r++) {
        T_OK(migr_rec_recv(&m.t, &seq, &h, rmeta, sizeof(rmeta)));
        T_EQ(h.type, MIGR_REC_PAGES);
        T_OK(migr_pages_decode_hdr(rmeta, h.meta_len, h.bulk_len, &round, &count));
        T_EQ(round, 2);
        T_OK(migr_transport_recv(&m.t, bulk, h.bulk_len));
        struct migr_page_entry d;
        T_OK(migr_page_entry_decode(rmeta, count - 1, &d));
        uint8_t *target = r == 0 ? o : page;
        if (r == 1)
            memset(page, 0, PS);
        const struct migr_codec_ops *ops = migr_codec_for_enc(d.enc);
        T_ASSERT(ops && d.enc == (r == 0 ? MIGR_ENC_XBZRLE : MIGR_ENC_LZ4));
        T_OK(ops->decode(bulk, d.len, target));
        T_EQ(migr_crc32c(0, target, PS), d.crc);
    }
    T_ASSERT(memcmp(o, n, PS) == 0);
}

int main(void)
{
    int update = getenv("MIGR_GOLDEN_UPDATE") && atoi(getenv("MIGR_GOLDEN_UPDATE"));
    test_xbzrle_golden(update);
    test_codec_golden(update);
    test_stream_golden(update);
    if (update)
        printf("golden files written to %s/\n", dir());
    return 0;
}
