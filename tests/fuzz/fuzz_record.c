/* libFuzzer harness: the input is a migr stream, read the way a receiver
 * does (preamble, records, every decoder, bulk skipped). Any crash, hang,
 * sanitizer report or error without a message is a bug.
 *
 * Build and run (from the top directory):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -I. -D_GNU_SOURCE \
 *         tests/fuzz/fuzz_record.c $(find common transfer -name '*.c') -o fuzz_record
 *   ./fuzz_record -max_total_time=60 corpus/ tests/fuzz/corpus_record/
 *
 * tests/fuzz/corpus_record/ holds seeds: the golden stream with the codec
 * page encodings (tests/golden/stream_pages_codecs.hex), whole and as records.
 *
 * First input byte, low two bits:
 *   0  a valid preamble is supplied, the rest is records (so the fuzzer
 *      reaches records without having to find the magic first);
 *   1  the rest is the whole stream, preamble included;
 *   2, 3  decoders only, past the record CRC: then u8 type, u32 bulk_len
 *      (little-endian), meta.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "migr/common.h"
#include "migr/format.h"
#include "migr/record.h"
#include "migr/transport.h"

/* A read-only in-memory transport. */
struct mem_transport {
    struct migr_transport t;
    const uint8_t *data;
    size_t len, pos;
};

static int mem_sendv(struct migr_transport *t, const struct iovec *iov, int n)
{
    (void)t; (void)iov; (void)n;
    return migr_errorf(EPIPE, "read-only transport");
}

static int mem_recvv(struct migr_transport *t, const struct iovec *iov, int n)
{
    struct mem_transport *m = (struct mem_transport *)t;

    for (int i = 0; i < n; i++) {
        size_t k = MIGR_MIN(iov[i].iov_len, m->len - m->pos);

        if (k)
            memcpy(iov[i].iov_base, m->data + m->pos, k);
        m->pos += k;
        t->bytes_recv += k;
        if (k < iov[i].iov_len)
            return migr_errorf(EPIPE, "mem: end of input");
    }
    return 0;
}

static void mem_shutdown(struct migr_transport *t)
{
    (void)t;
}

static void mem_close(struct migr_transport *t)
{
    (void)t;
}

static const struct migr_transport_ops mem_ops = {
    .name = "mem", .sendv = mem_sendv, .recvv = mem_recvv,
    .shutdown = mem_shutdown, .close = mem_close,
};

static const uint8_t preamble[16] = { 0x89, 'M', 'I', 'G', 'R', '\r', '\n', 0x1a, 1 };

static uint8_t meta[MIGR_META_MAX];

static void decode(const struct migr_rec_hdr *h, int *ret)
{
    struct migr_hello hello;
    struct migr_round_end re;
    struct migr_switchover so;
    struct migr_ack ack;
    struct migr_page_entry e;
    uint32_t round, count;
    char msg[64];
    int code;

    switch (h->type) {
    case MIGR_REC_HELLO: *ret = migr_hello_decode(meta, h->meta_len, &hello); break;
    case MIGR_REC_ROUND_END: *ret = migr_round_end_decode(meta, h->meta_len, &re); break;
    case MIGR_REC_SWITCHOVER: *ret = migr_switchover_decode(meta, h->meta_len, &so); break;
    case MIGR_REC_READY:
    case MIGR_REC_DONE: *ret = migr_ack_decode(meta, h->meta_len, &ack); break;
    case MIGR_REC_ERROR:
        *ret = migr_error_decode(meta, h->meta_len, &code, msg, sizeof(msg));
        if (*ret == 0 && strlen(msg) >= sizeof(msg))
            abort();
        break;
    case MIGR_REC_PAGES:
        *ret = migr_pages_decode_hdr(meta, h->meta_len, h->bulk_len, &round, &count);
        for (uint32_t i = 0; *ret == 0 && i < count; i++) {
            *ret = migr_page_entry_decode(meta, i, &e);
            if (*ret == 0 && e.enc > MIGR_ENC_MAX_V1)
                abort();
            /* codec pages (format.md 1.3) carry 0..4095 bytes, LZ4/ZSTD/ZLIB at least 1 */
            if (*ret == 0 && e.enc >= MIGR_ENC_XBZRLE && (e.len >= 4096 || (e.enc != MIGR_ENC_XBZRLE && !e.len)))
                abort();
            /* the lane byte (format.md 1.8): stream encodings only, bits 4-6 clear */
            if (*ret == 0 && (migr_enc_is_stream(e.enc) ? (e.lane & 0x70) != 0 : e.lane != 0))
                abort();
        }
        break;
    case MIGR_REC_FAULT_CHANNEL: {
        struct migr_fault_channel fc;
        uint8_t back[MIGR_FAULT_CHANNEL_SIZE];
        *ret = migr_fault_channel_decode(meta, h->meta_len, &fc);
        /* what decodes is a known kind and encodes back to the same bytes */
        if (*ret == 0 && (fc.kind < MIGR_FCH_FD || fc.kind > MIGR_FCH_TCP ||
                          migr_fault_channel_encode(&fc, back, sizeof(back)) != MIGR_FAULT_CHANNEL_SIZE ||
                          memcmp(back, meta, sizeof(back))))
            abort();
        break;
    }
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[1 << 16];
    struct mem_transport m = { .t = { .ops = &mem_ops, .fd = -1, .peer = "fuzz" } };
    uint8_t *stream = NULL;
    struct migr_rec_hdr h;
    uint64_t seq = 0;
    int ret;

    if (size == 0)
        return 0;
    if (data[0] & 2) {
        if (size < 6 || size - 6 > MIGR_META_MAX)
            return 0;
        h.type = data[1];
        h.bulk_len = migr_get_le32(data + 2);
        h.meta_len = (uint32_t)(size - 6);
        memcpy(meta, data + 6, size - 6);
        ret = 0;
        decode(&h, &ret);
        if (ret < 0 && !migr_last_error()[0])
            abort();
        return 0;
    }
    if (data[0] & 1) {
        m.data = data + 1;
        m.len = size - 1;
    } else {
        stream = malloc(size - 1 + sizeof(preamble));
        if (!stream)
            return 0;
        memcpy(stream, preamble, sizeof(preamble));
        memcpy(stream + sizeof(preamble), data + 1, size - 1);
        m.data = stream;
        m.len = size - 1 + sizeof(preamble);
    }

    migr_clear_error();
    ret = migr_preamble_recv(&m.t);
    while (ret == 0) {
        ret = migr_rec_recv(&m.t, &seq, &h, meta, (uint32_t)sizeof(meta));
        if (ret < 0)
            break;
        if (h.meta_len > MIGR_META_MAX || h.bulk_len > MIGR_BULK_MAX)
            abort();
        decode(&h, &ret);
        for (uint32_t left = h.bulk_len; ret == 0 && left; ) {
            uint32_t k = MIGR_MIN(left, (uint32_t)sizeof(buf));

            ret = migr_transport_recv(&m.t, buf, k);
            left -= k;
        }
    }
    /* The input always runs out, so every run ends in an error with a message. */
    if (ret >= 0 || !migr_last_error()[0])
        abort();
    free(stream);
    return 0;
}
