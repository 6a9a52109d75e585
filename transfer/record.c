/* migr — record framing: preamble, header + meta + CRC-32C + bulk. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/format.h"
#include "migr/record.h"

/* Record iovecs kept on the stack; more bulk iovecs than this are rare
 * (a full 4096-entry batch) and get a heap array. */
#define REC_IOV_STACK 64

#define ERROR_SEND_WAIT_MS 1000

int migr_preamble_send(struct migr_transport *t)
{
    uint8_t p[MIGR_PREAMBLE_SIZE] = { 0 };
    int ret;

    memcpy(p, MIGR_STREAM_MAGIC, 8);
    migr_put_le16(p + 8, MIGR_STREAM_VERSION);
    ret = migr_transport_send(t, p, sizeof(p));
    if (ret < 0)
        return migr_error_prefix(-ret, "sending preamble");
    return 0;
}

int migr_preamble_recv(struct migr_transport *t)
{
    uint8_t p[MIGR_PREAMBLE_SIZE];
    uint64_t before = t->bytes_recv;
    uint16_t version, flags;
    int ret;

    ret = migr_transport_recv(t, p, sizeof(p));
    if (ret == -EPIPE)
        return migr_errorf(EPIPE, "stream ended %s the preamble (%llu of %u bytes)",
                           t->bytes_recv == before ? "before" : "inside",
                           (unsigned long long)(t->bytes_recv - before), MIGR_PREAMBLE_SIZE);
    if (ret < 0)
        return migr_error_prefix(-ret, "receiving preamble");
    if (memcmp(p, MIGR_STREAM_MAGIC, 8))
        return migr_errorf(EPROTO, "not a migr stream (bad magic)");
    version = migr_get_le16(p + 8);
    flags = migr_get_le16(p + 10);
    if (version != MIGR_STREAM_VERSION)
        return migr_errorf(EPROTO, "stream version %u not supported (this build reads %u)",
                           version, MIGR_STREAM_VERSION);
    if (flags)
        return migr_errorf(EPROTO, "preamble flags 0x%04x not zero", flags);
    if (migr_get_le32(p + 12))
        return migr_errorf(EPROTO, "preamble reserved field 0x%08x not zero",
                           migr_get_le32(p + 12));
    return 0;
}

static void put_hdr(uint8_t *p, uint16_t type, uint32_t meta_len, uint32_t bulk_len)
{
    migr_put_le16(p, type);
    migr_put_le16(p + 2, 0);
    migr_put_le32(p + 4, meta_len);
    migr_put_le32(p + 8, bulk_len);
}

int migr_rec_send(struct migr_transport *t, uint16_t type, const void *meta, uint32_t meta_len,
                  const struct iovec *bulk, int nbulk)
{
    struct iovec stack_iov[REC_IOV_STACK], *iov = stack_iov;
    uint8_t hdr[MIGR_REC_HDR_SIZE], crc_le[4];
    uint64_t bulk_len = 0;
    uint32_t crc;
    int ret;

    if (type < 1 || type > MIGR_REC_TYPE_MAX_V1)
        return migr_errorf(EINVAL, "send record: type %u not defined in v1", type);
    if (meta_len > MIGR_META_MAX)
        return migr_errorf(EINVAL, "send record (%s): meta length %u exceeds %u",
                           migr_rec_type_name(type), meta_len, MIGR_META_MAX);
    if (nbulk < 0 || nbulk > INT_MAX - 3 || (nbulk > 0 && !bulk))
        return migr_errorf(EINVAL, "send record (%s): bad bulk iovec array",
                           migr_rec_type_name(type));
    for (int i = 0; i < nbulk; i++)
        bulk_len += bulk[i].iov_len;
    if (bulk_len > MIGR_BULK_MAX)
        return migr_errorf(EINVAL, "send record (%s): bulk length %llu exceeds %u",
                           migr_rec_type_name(type), (unsigned long long)bulk_len, MIGR_BULK_MAX);
    if (bulk_len && type != MIGR_REC_PAGES)
        return migr_errorf(EINVAL, "send record (%s): only PAGES records carry bulk data",
                           migr_rec_type_name(type));
    if (meta_len && (type == MIGR_REC_COMMIT || type == MIGR_REC_CANCEL))
        return migr_errorf(EINVAL, "send record (%s): meta must be empty", migr_rec_type_name(type));

    put_hdr(hdr, type, meta_len, (uint32_t)bulk_len);
    crc = migr_crc32c(0, hdr, sizeof(hdr));
    if (meta_len)
        crc = migr_crc32c(crc, meta, meta_len);
    migr_put_le32(crc_le, crc);

    if (nbulk + 3 > REC_IOV_STACK) {
        iov = malloc(sizeof(*iov) * ((size_t)nbulk + 3));
        if (!iov)
            return migr_errorf(ENOMEM, "send record (%s): out of memory for %d iovecs",
                               migr_rec_type_name(type), nbulk + 3);
    }
    iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
    iov[1] = (struct iovec){ .iov_base = (void *)meta, .iov_len = meta_len };
    iov[2] = (struct iovec){ .iov_base = crc_le, .iov_len = sizeof(crc_le) };
    if (nbulk)
        memcpy(iov + 3, bulk, sizeof(*iov) * (size_t)nbulk);
    ret = migr_transport_sendv(t, iov, nbulk + 3);
    if (iov != stack_iov)
        free(iov);
    if (ret < 0)
        return migr_error_prefix(-ret, "sending %s record", migr_rec_type_name(type));
    return 0;
}

/* The transport reported end of stream while reading part of record seq. */
static int ended_inside(uint64_t seq, const char *type, const char *part,
                        uint64_t got, uint64_t want)
{
    if (got == 0 && !strcmp(part, "header"))
        return migr_errorf(EPIPE, "stream ended before record %llu", (unsigned long long)seq);
    return migr_errorf(EPIPE, "stream ended inside record %llu%s %s (%llu of %llu bytes)",
                       (unsigned long long)seq, type, part, (unsigned long long)got,
                       (unsigned long long)want);
}

int migr_rec_recv(struct migr_transport *t, uint64_t *seq, struct migr_rec_hdr *hdr,
                  uint8_t *meta_buf, uint32_t cap)
{
    uint64_t n = ++*seq, before = t->bytes_recv;
    uint8_t h[MIGR_REC_HDR_SIZE], crc_le[4];
    char tn[24] = "";
    uint32_t got_crc, crc;
    int ret;

    ret = migr_transport_recv(t, h, sizeof(h));
    if (ret < 0) {
        uint64_t got = t->bytes_recv - before;

        /* The type is known once its two bytes are in. */
        if (got >= 2)
            snprintf(tn, sizeof(tn), " (%s)", migr_rec_type_name(migr_get_le16(h)));
        if (ret == -EPIPE)
            return ended_inside(n, tn, "header", got, sizeof(h));
        return migr_error_prefix(-ret, "record %llu%s header", (unsigned long long)n, tn);
    }
    hdr->type = migr_get_le16(h);
    hdr->flags = migr_get_le16(h + 2);
    hdr->meta_len = migr_get_le32(h + 4);
    hdr->bulk_len = migr_get_le32(h + 8);

    /* Check what the header claims before trusting its lengths: a garbage
     * header must not make us wait for a megabyte that never comes. */
    if (hdr->type < 1 || hdr->type > MIGR_REC_TYPE_MAX_V1)
        return migr_errorf(EBADMSG, "record %llu: unknown type %u", (unsigned long long)n,
                           hdr->type);
    snprintf(tn, sizeof(tn), " (%s)", migr_rec_type_name(hdr->type));
    if (hdr->flags)
        return migr_errorf(EBADMSG, "record %llu%s: flags 0x%04x not zero",
                           (unsigned long long)n, tn, hdr->flags);
    if (hdr->meta_len > MIGR_META_MAX)
        return migr_errorf(EBADMSG, "record %llu%s: meta length %u exceeds %u",
                           (unsigned long long)n, tn, hdr->meta_len, MIGR_META_MAX);
    if (hdr->meta_len > cap)
        return migr_errorf(EMSGSIZE, "record %llu%s: meta length %u exceeds the buffer (%u bytes)",
                           (unsigned long long)n, tn, hdr->meta_len, cap);
    if (hdr->bulk_len > MIGR_BULK_MAX)
        return migr_errorf(EBADMSG, "record %llu%s: bulk length %u exceeds %u",
                           (unsigned long long)n, tn, hdr->bulk_len, MIGR_BULK_MAX);
    /* v1 defines bulk data for PAGES only, and an empty COMMIT. */
    if (hdr->bulk_len && hdr->type != MIGR_REC_PAGES)
        return migr_errorf(EBADMSG, "record %llu%s: bulk length %u (only PAGES records carry bulk)",
                           (unsigned long long)n, tn, hdr->bulk_len);
    if (hdr->meta_len && (hdr->type == MIGR_REC_COMMIT || hdr->type == MIGR_REC_CANCEL))
        return migr_errorf(EBADMSG, "record %llu%s: meta length %u (must be 0)",
                           (unsigned long long)n, tn, hdr->meta_len);

    before = t->bytes_recv;
    {
        struct iovec iov[2] = {
            { .iov_base = meta_buf, .iov_len = hdr->meta_len },
            { .iov_base = crc_le, .iov_len = sizeof(crc_le) },
        };

        ret = migr_transport_recvv(t, iov, 2);
    }
    if (ret < 0) {
        uint64_t got = t->bytes_recv - before;

        if (ret == -EPIPE) {
            if (got < hdr->meta_len)
                return ended_inside(n, tn, "meta", got, hdr->meta_len);
            return ended_inside(n, tn, "CRC", got - hdr->meta_len, 4);
        }
        return migr_error_prefix(-ret, "record %llu%s meta", (unsigned long long)n, tn);
    }
    got_crc = migr_get_le32(crc_le);
    crc = migr_crc32c(migr_crc32c(0, h, sizeof(h)), meta_buf, hdr->meta_len);
    if (got_crc != crc)
        return migr_errorf(EBADMSG, "record %llu%s: CRC mismatch (got 0x%08x, computed 0x%08x)",
                           (unsigned long long)n, tn, got_crc, crc);
    return 0;
}

void migr_rec_send_error(struct migr_transport *t, int code, const char *msg)
{
    uint8_t meta[8 + MIGR_ERROR_MSG_MAX];
    char saved[512];
    int len;

    /* Keep the caller's error message: it describes the real failure, not
     * this courtesy message to a peer that may be gone. */
    snprintf(saved, sizeof(saved), "%s", migr_last_error());
    if (code < 0 && code > -4096)
        code = -code;   /* a -errno return passed on as it is */
    if (code < 1 || code > 4095)
        code = EPROTO;
    len = migr_error_encode(code, msg, meta, sizeof(meta));
    if (len >= 0) {
        /* A peer that has stopped reading must not hang our error path:
         * send only if there is room in the socket buffer within a second. */
        struct pollfd pfd = { .fd = t->fd, .events = POLLOUT };

        if (t->fd < 0 || poll(&pfd, 1, ERROR_SEND_WAIT_MS) > 0)
            (void)migr_rec_send(t, MIGR_REC_ERROR, meta, (uint32_t)len, NULL, 0);
    }
    if (saved[0])
        migr_errorf(EIO, "%s", saved);
    else
        migr_clear_error();
}
