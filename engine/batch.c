/* engine: the page batch (batch.h). Pages are sent straight from where they
 * lie (guest RAM, a snapshot, a codec's output): the kernel copies them into
 * the socket, there is no bounce buffer. */
#include <errno.h>
#include <stdint.h>

#include "migr/codec.h"
#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/record.h"
#include "engine/batch.h"

bool engine_batch_full(const struct engine_batch *b)
{
    return b->n >= ENGINE_BATCH_PAGES || b->niov >= (int)ENGINE_BATCH_PAGES;
}

/* The last entry, if a ZERO run that pfn continues and that can grow by one. */
static struct migr_page_entry *zero_tail(struct engine_batch *b, uint64_t pfn)
{
    struct migr_page_entry *last = b->n ? &b->e[b->n - 1] : NULL;
    return last && last->enc == MIGR_ENC_ZERO && last->pfn + last->len == pfn && last->len < UINT32_MAX ? last
                                                                                                         : NULL;
}

void engine_batch_put(struct engine_batch *b, const struct migr_page_entry *e, const void *data)
{
    struct migr_page_entry *last;
    if (e->enc == MIGR_ENC_ZERO) {
        if (e->len == 1 && (last = zero_tail(b, e->pfn)))
            last->len++;
        else
            b->e[b->n++] = *e;
        return;
    }
    b->e[b->n++] = *e;
    b->iov[b->niov++] = (struct iovec){.iov_base = (void *)data, .iov_len = e->len};
}

int engine_batch_page(struct engine_batch *b, const uint8_t *page, uint64_t pfn)
{
    struct migr_page_entry e;
    if (migr_page_is_zero(page))
        e = (struct migr_page_entry){.pfn = pfn, .enc = MIGR_ENC_ZERO, .len = 1};
    else
        e = (struct migr_page_entry){.pfn = pfn, .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE,
                                     .crc = migr_crc32c(0, page, MIGR_PAGE_SIZE)};
    engine_batch_put(b, &e, page);
    if (b->st) {
        if (e.enc == MIGR_ENC_ZERO)
            b->st->zero_pages++;
        else
            b->st->raw_pages++;
        b->st->pages++;
    }
    if (!engine_batch_full(b))
        return 0;
    int err = engine_batch_flush(b);
    return err < 0 ? err : 1;
}

int engine_batch_zero_run(struct engine_batch *b, uint64_t pfn, uint64_t n)
{
    int flushed = 0;
    while (n) {
        struct migr_page_entry *last = zero_tail(b, pfn);
        uint64_t k;
        if (last) {
            k = n < UINT32_MAX - last->len ? n : UINT32_MAX - last->len;
            last->len += (uint32_t)k;
        } else {
            k = n < UINT32_MAX ? n : UINT32_MAX;
            b->e[b->n++] = (struct migr_page_entry){.pfn = pfn, .enc = MIGR_ENC_ZERO, .len = (uint32_t)k};
        }
        if (b->st) {
            b->st->zero_pages += k;
            b->st->hole_pages += k;
            if (b->codec_round) /* the codec stage's round: holes travel as ZERO whatever the codec */
                b->st->codec[MIGR_ENC_ZERO].pages += k;
            b->st->pages += k;
        }
        pfn += k;
        n -= k;
        if (b->n == ENGINE_BATCH_PAGES) {
            int err = engine_batch_flush(b);
            if (err < 0)
                return err;
            flushed = 1;
        }
    }
    return flushed;
}

int engine_batch_flush(struct engine_batch *b)
{
    if (b->cancel && migr_cancel_requested(b->cancel))
        return migr_errorf(ECANCELED, "migration cancelled");
    if (b->n == 0)
        return 0;
    int len = migr_pages_encode(b->round, b->e, b->n, b->meta, sizeof(b->meta));
    if (len < 0)
        return len;
    int err = migr_rec_send(b->t, MIGR_REC_PAGES, b->meta, (uint32_t)len, b->iov, b->niov);
    if (err < 0)
        return migr_error_prefix(-err, "send round %u", b->round);
    b->n = 0;
    b->niov = 0;
    return 0;
}
