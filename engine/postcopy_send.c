/* engine: post-copy, source side.
 *
 * The guest runs on the destination; the source (paused, holding the only
 * copy of the pages the destination lacks) answers fault requests first and
 * pushes the rest in the background, continuing after the last fault so that
 * the push follows the guest's locality. A reader thread collects PAGE_REQ
 * records and the final COMPLETE while this thread sends.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <time.h>

#include "engine/engine_impl.h"
#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/dirty.h"
#include "migr/record.h"

#define REQ_QUEUE 65536u
#define PUSH_CHUNK 64u   /* background pages between two looks at the request queue */
/* Background pages queued in the socket delay every fault answer behind
 * them (FIFO): keep at most this much unsent before pushing more. */
#define PUSH_BACKLOG (256u << 10)

struct pc_src {
    struct sender *s;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t q[REQ_QUEUE];        /* requested pfns */
    uint32_t head, tail;
    bool complete, failed, cancel_done;
    int err;
    char why[512];
    uint8_t *meta;
    /* cancellable: the checkpoint being received, applied at EPOCH_END */
    uint8_t *stage;               /* page data */
    uint64_t *stage_idx;          /* RAM index of each staged page */
    uint64_t nstage, stage_cap;
    uint8_t *state, *pending_state;
    size_t state_len, pending_len;
};

/* A PAGES record of a checkpoint: staged until its EPOCH_END arrives, so that
 * a checkpoint cut short by a failure is never half applied. */
static int stage_pages(struct pc_src *pc, const struct migr_rec_hdr *h)
{
    struct sender *s = pc->s;
    uint32_t round, count;
    int err = migr_pages_decode_hdr(pc->meta, h->meta_len, h->bulk_len, &round, &count);
    if (err < 0)
        return err;
    if (pc->nstage + count > pc->stage_cap) {
        uint64_t cap = (pc->nstage + count) * 2;
        uint8_t *st = realloc(pc->stage, cap * MIGR_PAGE_SIZE);
        uint64_t *ix = st ? realloc(pc->stage_idx, cap * 8) : NULL;
        if (st)
            pc->stage = st;
        if (!st || !ix)
            return -ENOMEM;
        pc->stage_idx = ix;
        pc->stage_cap = cap;
    }
    struct migr_page_entry e;
    for (uint32_t i = 0; i < count; i++) {
        migr_page_entry_decode(pc->meta, i, &e);
        int64_t idx = migr_hv_pfn_index(s->hv, e.pfn);
        if (e.enc != MIGR_ENC_RAW || idx < 0)
            return migr_errorf(EBADMSG, "checkpoint: entry %u (page 0x%llx) is not a RAW page of guest RAM", i,
                               (unsigned long long)e.pfn);
        pc->stage_idx[pc->nstage + i] = (uint64_t)idx;
    }
    if ((err = migr_transport_recv(s->t, pc->stage + pc->nstage * MIGR_PAGE_SIZE, h->bulk_len)) < 0)
        return err;
    for (uint32_t i = 0; i < count; i++) {
        migr_page_entry_decode(pc->meta, i, &e);
        if (migr_crc32c(0, pc->stage + (pc->nstage + i) * MIGR_PAGE_SIZE, MIGR_PAGE_SIZE) != e.crc)
            return migr_errorf(EBADMSG, "checkpoint: page 0x%llx fails its CRC", (unsigned long long)e.pfn);
    }
    pc->nstage += count;
    return 0;
}

/* EPOCH_END: the checkpoint is whole; apply it to our RAM and keep its state. */
static void apply_checkpoint(struct pc_src *pc)
{
    struct sender *s = pc->s;
    for (uint64_t i = 0; i < pc->nstage; i++)
        memcpy(migr_hv_page(s->hv, pc->stage_idx[i]), pc->stage + i * MIGR_PAGE_SIZE, MIGR_PAGE_SIZE);
    s->st->back_pages += pc->nstage;
    s->st->epochs++;
    pc->nstage = 0;
    free(pc->state);
    pc->state = pc->pending_state;
    pc->state_len = pc->pending_len;
    pc->pending_state = NULL;
}

static void *reader(void *arg)
{
    struct pc_src *pc = arg;
    struct sender *s = pc->s;
    static struct migr_range rg[MIGR_RANGES_MAX];
    struct migr_rec_hdr h;
    for (;;) {
        int err = migr_rec_recv(s->t, &s->rx_seq, &h, pc->meta, MIGR_META_MAX);
        uint32_t n = 0;
        bool cancellable = !s->p->no_cancel;
        if (err == 0 && h.type == MIGR_REC_PAGE_REQ) {
            err = migr_ranges_decode("PAGE_REQ", pc->meta, h.meta_len, rg, &n);
        } else if (err == 0 && cancellable && h.type == MIGR_REC_PAGES) {
            err = stage_pages(pc, &h);
            if (err == 0)
                continue;
        } else if (err == 0 && cancellable && h.type == MIGR_REC_STATE) {
            free(pc->pending_state);
            if (!(pc->pending_state = malloc(h.meta_len ? h.meta_len : 1)))
                err = -ENOMEM;
            else {
                memcpy(pc->pending_state, pc->meta, h.meta_len);
                pc->pending_len = h.meta_len;
                continue;
            }
        } else if (err == 0 && cancellable && h.type == MIGR_REC_EPOCH_END) {
            struct migr_ack a;
            if ((err = migr_ack_decode(pc->meta, h.meta_len, &a)) == 0 && !pc->pending_state)
                err = migr_errorf(EBADMSG, "checkpoint %llu without its STATE", (unsigned long long)a.pages);
            if (err == 0) {
                pthread_mutex_lock(&pc->lock);
                apply_checkpoint(pc);
                if (a.t_ns & MIGR_EPOCH_FINAL)
                    pc->cancel_done = true;
                pthread_cond_broadcast(&pc->cond);
                bool stop = pc->cancel_done;
                pthread_mutex_unlock(&pc->lock);
                if (stop)
                    return NULL;
                continue;
            }
        }
        if (err == 0 && h.type == MIGR_REC_ERROR)
            err = migr_errorf(EIO, "the destination failed during post-copy");
        else if (err == 0 && h.type != MIGR_REC_COMPLETE && h.type != MIGR_REC_PAGE_REQ)
            err = migr_errorf(EPROTO, "record %llu (%s) unexpected during post-copy",
                              (unsigned long long)s->rx_seq, migr_rec_type_name(h.type));
        pthread_mutex_lock(&pc->lock);
        if (err < 0) {
            pc->failed = true;
            pc->err = err;
            snprintf(pc->why, sizeof(pc->why), "%s", migr_last_error());
        } else if (h.type == MIGR_REC_COMPLETE) {
            pc->complete = true;
        }
        for (uint32_t i = 0; i < n; i++)
            for (uint64_t k = 0; k < rg[i].npages && k < 64; k++)
                if (pc->tail - pc->head < REQ_QUEUE)
                    pc->q[pc->tail++ % REQ_QUEUE] = rg[i].pfn + k;
        bool stop = pc->failed || pc->complete;
        pthread_cond_broadcast(&pc->cond);
        pthread_mutex_unlock(&pc->lock);
        if (stop)
            return NULL;
    }
}

/* Send page idx unless it went already. Returns 1 if added, 0, or -errno. */
static int push_one(struct sender *s, uint64_t *sent, const uint64_t *need, uint64_t *left, uint64_t idx)
{
    if (idx >= s->hv->ram_pages || migr_bit_test(sent, idx))
        return 0;
    migr_bit_set(sent, idx);
    if (!need || migr_bit_test(need, idx))
        (*left)--;
    int err = engine_add_page(s, migr_hv_page(s->hv, idx), migr_hv_index_pfn(s->hv, idx));
    return err < 0 ? err : 1;
}

int engine_postcopy_push(struct sender *s, const uint64_t *need)
{
    struct migr_hv *hv = s->hv;
    uint64_t words = migr_bitmap_words(hv->ram_pages);
    uint64_t *sent = calloc(words, 8);
    struct pc_src *pc = calloc(1, sizeof(*pc));
    uint64_t reqs[256];
    pthread_t th;
    int err = 0;
    if (!sent || !pc || !(pc->meta = malloc(MIGR_META_MAX))) {
        free(sent);
        if (pc)
            free(pc->meta);
        free(pc);
        return -ENOMEM;
    }
    pc->s = s;
    pthread_mutex_init(&pc->lock, NULL);
    pthread_cond_init(&pc->cond, NULL);
    if ((err = pthread_create(&th, NULL, reader, pc)) != 0) {
        free(sent);
        free(pc->meta);
        free(pc);
        return migr_errorf(err, "post-copy: start the request reader");
    }
    uint64_t left = need ? migr_bitmap_count(need, hv->ram_pages) : hv->ram_pages, cursor = 0;
    uint64_t total = left;
    bool cancel_sent = false;
    for (;;) {
        pthread_mutex_lock(&pc->lock);
        if ((left == 0 || cancel_sent) && !pc->complete && !pc->failed && !pc->cancel_done && pc->head == pc->tail) {
            struct timespec dl; /* wake up now and then to look at the cancel flag */
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_nsec += 50000000L;
            if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&pc->cond, &pc->lock, &dl);
        }
        uint32_t nreq = 0;
        while (pc->head != pc->tail && nreq < MIGR_ARRAY_SIZE(reqs))
            reqs[nreq++] = pc->q[pc->head++ % REQ_QUEUE];
        bool done = pc->complete, failed = pc->failed, cancelled = pc->cancel_done;
        pthread_mutex_unlock(&pc->lock);
        if (cancelled) {
            err = migr_errorf(ECANCELED, "migration cancelled during post-copy");
            break;
        }
        if (failed) {
            err = migr_errorf(pc->err < 0 ? -pc->err : EIO, "%s", pc->why);
            break;
        }
        if (done)
            break;
        bool want_cancel = (s->p->cancel && *s->p->cancel) ||
                           (s->p->cancel_after_pages && total - left >= s->p->cancel_after_pages);
        if (!s->p->no_cancel && want_cancel && !cancel_sent) {
            if ((err = engine_flush(s)) < 0 ||
                (err = migr_rec_send(s->t, MIGR_REC_CANCEL, NULL, 0, NULL, 0)) < 0)
                break;
            cancel_sent = true;
        }
        /* Faults first, each with a few pages after it (pre-paging). After a
         * CANCEL too: the destination stops its guest at a consistent point
         * for the last checkpoint, and a proc vCPU blocked in a fault gets
         * there only once its page is here. */
        for (uint32_t i = 0; i < nreq && err >= 0; i++) {
            int64_t idx = migr_hv_pfn_index(hv, reqs[i]);
            if (idx < 0)
                continue;
            if (!migr_bit_test(sent, (uint64_t)idx))
                s->st->demand_pages++;
            for (uint64_t k = 0; k <= s->p->prepage && err >= 0; k++)
                err = push_one(s, sent, need, &left, (uint64_t)idx + k);
            cursor = (uint64_t)idx + s->p->prepage + 1;
        }
        if (err >= 0 && nreq)
            err = engine_flush(s);
        if (err >= 0 && cancel_sent)
            continue; /* no more background push: wait for the last checkpoint */
        /* Then the background push, from where the guest last faulted, unless
         * the socket still holds enough to keep the link busy. */
        int outq = 0;
        if (left && ioctl(s->t->fd, SIOCOUTQ, &outq) == 0 && outq > (int)PUSH_BACKLOG) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_nsec += 100000;
            if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
            }
            pthread_mutex_lock(&pc->lock);
            if (pc->head == pc->tail && !pc->complete && !pc->failed)
                pthread_cond_timedwait(&pc->cond, &pc->lock, &dl);
            pthread_mutex_unlock(&pc->lock);
            continue;
        }
        /* Then the background push, from where the guest last faulted. */
        for (uint32_t pushed = 0; err >= 0 && left && pushed < PUSH_CHUNK; cursor++) {
            if (cursor >= hv->ram_pages)
                cursor = 0;
            if (need && !migr_bit_test(need, cursor))
                continue;
            err = push_one(s, sent, need, &left, cursor);
            pushed += err > 0;
            if (err > 0)
                s->st->pushed_pages++;
        }
        if (err >= 0)
            err = engine_flush(s);
        if (err < 0)
            break;
        engine_progress(s, "postcopy", total - left, total, false);
    }
    if (err < 0) {
        /* Wake the reader: the destination sees EOF or an error soon. */
        s->t->ops->shutdown(s->t);
    }
    pthread_join(th, NULL);
    if (err < 0 && !s->p->no_cancel) {
        /* Take the guest back: our RAM already holds every complete
         * checkpoint; its vCPU state goes with the last one (none yet: the
         * state we paused with is still loaded). */
        int e2 = pc->state ? hv->ops->load_state(hv, pc->state, pc->state_len) : 0;
        if (e2 == 0)
            s->took_back = true;
        else
            migr_error_prefix(-err, "taking the guest back failed (%d)", e2);
    }
    free(pc->stage);
    free(pc->stage_idx);
    free(pc->state);
    free(pc->pending_state);
    engine_progress(s, "postcopy", total - left, total, true);
    free(sent);
    free(pc->meta);
    pthread_mutex_destroy(&pc->lock);
    pthread_cond_destroy(&pc->cond);
    free(pc);
    return err < 0 ? err : 0;
}
