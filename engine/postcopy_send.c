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
    bool complete, failed;
    int err;
    char why[512];
    uint8_t *meta;
};

static void *reader(void *arg)
{
    struct pc_src *pc = arg;
    struct sender *s = pc->s;
    static struct migr_range rg[MIGR_RANGES_MAX];
    struct migr_rec_hdr h;
    for (;;) {
        int err = migr_rec_recv(s->t, &s->rx_seq, &h, pc->meta, MIGR_META_MAX);
        uint32_t n = 0;
        if (err == 0 && h.type == MIGR_REC_PAGE_REQ)
            err = migr_ranges_decode("PAGE_REQ", pc->meta, h.meta_len, rg, &n);
        else if (err == 0 && h.type == MIGR_REC_ERROR)
            err = migr_errorf(ECANCELED, "the destination failed during post-copy");
        else if (err == 0 && h.type != MIGR_REC_COMPLETE)
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
    for (;;) {
        pthread_mutex_lock(&pc->lock);
        while (left == 0 && !pc->complete && !pc->failed && pc->head == pc->tail)
            pthread_cond_wait(&pc->cond, &pc->lock);
        uint32_t nreq = 0;
        while (pc->head != pc->tail && nreq < MIGR_ARRAY_SIZE(reqs))
            reqs[nreq++] = pc->q[pc->head++ % REQ_QUEUE];
        bool done = pc->complete, failed = pc->failed;
        pthread_mutex_unlock(&pc->lock);
        if (failed) {
            err = migr_errorf(pc->err < 0 ? -pc->err : EIO, "%s", pc->why);
            break;
        }
        if (done)
            break;
        /* Faults first, each with a few pages after it (pre-paging). */
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
    engine_progress(s, "postcopy", total - left, total, true);
    free(sent);
    free(pc->meta);
    pthread_mutex_destroy(&pc->lock);
    pthread_cond_destroy(&pc->cond);
    free(pc);
    return err < 0 ? err : 0;
}
