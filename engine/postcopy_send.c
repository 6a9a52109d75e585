/* engine: post-copy, source side.
 *
 * The guest runs on the destination; the source (paused, holding the only
 * copy of the pages the destination lacks) answers fault requests first and
 * pushes the rest in the background, continuing after the last fault so that
 * the push follows the guest's locality. A reader thread collects PAGE_REQ
 * records and the final COMPLETE while this thread sends.
 *
 * With a fault channel (FAULT_CHANNEL, format 1.3) faults take another road:
 * a fault server thread blocks on the channel, and answers each PAGE_REQ at
 * once with the page read from RAM (one PAGES record), then its pre-paged
 * neighbours (a second record): no queue, no hand-over to this thread, and
 * nothing of the background push in front of the answer. The pages sent
 * are one bitmap (`sent`, set atomically) for both threads; a faulted page
 * is answered even if the push has sent it already (its copy may still sit
 * in the push stream behind a few hundred KiB).
 *
 * Cancellable post-copy keeps a lease (format 1.4): each checkpoint applied
 * here is answered with EPOCH_ACK, and the destination stops its guest when
 * its last acknowledged checkpoint is older than the lease. So when nothing
 * at all comes from the destination for twice the lease (a partition, a
 * frozen peer), its guest has stopped, and the source takes the guest back.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_impl.h"
#include "migr/codec.h"
#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/dirty.h"
#include "migr/record.h"
#include "engine/validate.h"

#define REQ_QUEUE 65536u
#define PUSH_CHUNK 64u   /* background pages between two looks at the request queue */
/* Background pages queued in the socket delay every fault answer behind
 * them (FIFO): keep at most this much unsent before pushing more. */
#define PUSH_BACKLOG (256u << 10)
/* Once everything is pushed, one page goes again this often until COMPLETE
 * (see push_loop): the destination's wait for its last page, at worst. A
 * short tail is over in a few ms, so 20 ms here was most of its time. */
#define PUSH_NUDGE_NS 2000000ull

struct pc_src {
    struct sender *s;
    const uint64_t *need;         /* pages the destination lacks (NULL = all) */
    uint64_t *sent;               /* page went (either channel); atomic */
    uint64_t left;                /* pages of need not sent yet; atomic */
    uint64_t *data;               /* pages holding data; the others are memfd holes, sent as ZERO unread */
    /* fault server (fault channel) */
    pthread_t fserver;
    bool fserver_started, stopping;
    uint8_t *fmeta;
    struct migr_range *frg;
    struct migr_range *rrg;       /* PAGE_REQ ranges read by the reader (MIGR_RANGES_MAX) */
    uint64_t fseq;
    uint64_t f_demand, f_prepaged; /* pages the fault server sent (stats at the end) */
    uint64_t f_raw, f_zero;
    float serve_us[4096];         /* PAGE_REQ read -> its page's record sent, first requests */
    uint32_t nserve;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t q[REQ_QUEUE];        /* requested pfns */
    uint32_t head, tail;
    bool complete, failed, cancel_done;
    uint64_t to_ack, acked;       /* cancellable: checkpoints applied / acknowledged (EPOCH_ACK) */
    uint64_t rx_ns;               /* last record from the destination; atomic */
    pthread_t lease_thread;
    bool lease_started, lease_lost;
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

static int stage_note(void *arg, uint32_t i, const struct migr_page_entry *e, uint64_t idx)
{
    struct pc_src *pc = arg;
    pc->stage_idx[pc->nstage + i] = idx;
    return 0;
}

/* A checkpoint holds RAW pages only (checked by the walk: no ZERO run reaches here). */
static const struct engine_placement stage_placement = {
    .encs = ENGINE_ENC_BIT(MIGR_ENC_RAW), .phase = "a checkpoint", .data = stage_note};

/* A PAGES record of a checkpoint: staged until its EPOCH_END arrives, so that
 * a checkpoint cut short by a failure is never half applied. */
static int stage_pages(struct pc_src *pc, const struct migr_rec_hdr *h)
{
    struct sender *s = pc->s;
    uint32_t round, count;
    int err = engine_pages_header(pc->meta, h->meta_len, h->bulk_len, s->rx_seq, &round, &count);
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
    if ((err = engine_pages_walk(s->hv, pc->meta, count, s->rx_seq, &stage_placement, pc)) < 0)
        return migr_error_prefix(-err, "checkpoint");
    if ((err = migr_transport_recv(s->t, pc->stage + pc->nstage * MIGR_PAGE_SIZE, h->bulk_len)) < 0)
        return err;
    struct migr_page_entry e;
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
    s->st->postcopy.back_pages += pc->nstage;
    s->st->postcopy.epochs++;
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
    struct migr_range *rg = pc->rrg;
    struct migr_rec_hdr h;
    for (;;) {
        int err = migr_rec_recv(s->t, &s->rx_seq, &h, pc->meta, MIGR_META_MAX);
        uint32_t n = 0;
        __atomic_store_n(&pc->rx_ns, migr_now_ns(), __ATOMIC_RELAXED);
        bool cancellable = s->cancellable;
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
                pc->to_ack = a.pages; /* the push loop sends EPOCH_ACK */
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

/* Claim page idx for sending: true if nobody sent it before (and counts it). */
static bool claim(struct pc_src *pc, uint64_t idx)
{
    uint64_t bit = 1ull << (idx & 63);
    if (__atomic_fetch_or(&pc->sent[idx >> 6], bit, __ATOMIC_RELAXED) & bit)
        return false;
    if (!pc->need || migr_bit_test(pc->need, idx))
        __atomic_fetch_sub(&pc->left, 1, __ATOMIC_RELAXED);
    return true;
}

static uint64_t pages_left(struct pc_src *pc)
{
    return __atomic_load_n(&pc->left, __ATOMIC_RELAXED);
}

/* Send page idx unless it went already. Returns 1 if added, 0, or -errno. */
static int push_one(struct pc_src *pc, uint64_t idx)
{
    struct sender *s = pc->s;
    if (idx >= s->hv->ram_pages || (pc->need && !migr_bit_test(pc->need, idx)) || !claim(pc, idx))
        return 0;
    int err = engine_batch_page(&s->b, migr_hv_page(s->hv, idx), migr_hv_index_pfn(s->hv, idx));
    return err < 0 ? err : 1;
}

/* ---------- the fault channel ---------- */

/* The transport's offer goes out as the FAULT_CHANNEL record, unread. */
static int send_fch(void *arg, const uint8_t *bytes, size_t len)
{
    struct sender *s = arg;
    return migr_rec_send(s->t, MIGR_REC_FAULT_CHANNEL, bytes, (uint32_t)len, NULL, 0);
}

int engine_postcopy_offer_channel(struct sender *s)
{
    int err = migr_transport_side_offer(s->t, send_fch, s, &s->fside);
    if (err == -ENOTSUP)
        return 0; /* faults share the stream */
    return err < 0 ? migr_error_prefix(-err, "post-copy: fault channel") : 0;
}

/* The destination opens its end as soon as it reads FAULT_CHANNEL; the
 * transport connects or accepts in the background meanwhile, so this
 * waits only if it has not happened yet. */
#define FCH_COLLECT_MS 10000

int engine_postcopy_accept_channel(struct sender *s)
{
    if (!s->fside)
        return 0;
    int err = migr_side_collect(s->fside, FCH_COLLECT_MS, &s->fch);
    migr_side_free(s->fside);
    s->fside = NULL;
    return err < 0 ? migr_error_prefix(-err, "post-copy: fault channel") : 0;
}

void engine_postcopy_close_channel(struct sender *s)
{
    migr_side_free(s->fside);
    s->fside = NULL;
    migr_transport_close(s->fch);
    s->fch = NULL;
}

/* Send the given pages (RAM indices, data from buf[i] or RAM) in one PAGES record. */
static int fserve_send(struct pc_src *pc, const uint64_t *idx, uint8_t *const *data, uint32_t n)
{
    struct sender *s = pc->s;
    struct migr_page_entry e[16];
    struct iovec iov[16];
    uint8_t meta[MIGR_PAGES_FIXED + 16 * MIGR_PAGE_ENTRY_SIZE];
    int niov = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t pfn = migr_hv_index_pfn(s->hv, idx[i]);
        if (!migr_bit_test(pc->data, idx[i]) || migr_page_is_zero(data[i])) {
            e[i] = (struct migr_page_entry){.pfn = pfn, .enc = MIGR_ENC_ZERO, .len = 1};
            pc->f_zero++;
        } else {
            e[i] = (struct migr_page_entry){.pfn = pfn, .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE,
                                            .crc = migr_crc32c(0, data[i], MIGR_PAGE_SIZE)};
            iov[niov++] = (struct iovec){.iov_base = data[i], .iov_len = MIGR_PAGE_SIZE};
            pc->f_raw++;
        }
    }
    int len = migr_pages_encode(0, e, n, meta, sizeof(meta));
    return len < 0 ? len : migr_rec_send(s->fch, MIGR_REC_PAGES, meta, (uint32_t)len, iov, niov);
}

/* One faulted page: itself at once, then up to 15 neighbours nobody has
 * sent yet, all straight from RAM. A checkpoint may be rewriting the faulted
 * page while it goes (if the push's copy got there first and the guest wrote
 * it), but then the destination has the page and drops this copy unread; a
 * neighbour never sent cannot be in a checkpoint at all. */
static int fserve_one(struct pc_src *pc, uint64_t idx, uint64_t t_req)
{
    struct sender *s = pc->s;
    uint8_t *data[16];
    uint64_t ix[16];
    if (claim(pc, idx))
        pc->f_demand++;
    ix[0] = idx;
    data[0] = migr_hv_page(s->hv, idx);
    int err = fserve_send(pc, ix, data, 1);
    if (pc->nserve < MIGR_ARRAY_SIZE(pc->serve_us))
        pc->serve_us[pc->nserve++] = (float)((double)(migr_now_ns() - t_req) / 1000.0);
    uint32_t n = 0;
    uint64_t prepage = s->p->prepage < 15 ? s->p->prepage : 15;
    for (uint64_t k = idx + 1; err == 0 && k <= idx + prepage && k < s->hv->ram_pages; k++) {
        if ((pc->need && !migr_bit_test(pc->need, k)) || !claim(pc, k))
            continue;
        ix[n] = k;
        data[n++] = migr_hv_page(s->hv, k);
    }
    if (err == 0 && n) {
        pc->f_prepaged += n;
        err = fserve_send(pc, ix, data, n);
    }
    return err;
}

static void *fault_server(void *arg)
{
    struct pc_src *pc = arg;
    struct sender *s = pc->s;
    struct migr_rec_hdr h;
    for (;;) {
        uint32_t n = 0;
        int err = migr_rec_recv(s->fch, &pc->fseq, &h, pc->fmeta, MIGR_META_MAX);
        uint64_t t_req = migr_now_ns();
        if (err == 0 && h.type != MIGR_REC_PAGE_REQ)
            err = migr_errorf(EPROTO, "fault channel: record %llu (%s) is not a PAGE_REQ",
                              (unsigned long long)pc->fseq, migr_rec_type_name(h.type));
        if (err == 0)
            err = migr_ranges_decode("PAGE_REQ", pc->fmeta, h.meta_len, pc->frg, &n);
        for (uint32_t i = 0; err == 0 && i < n; i++)
            for (uint64_t k = 0; err == 0 && k < pc->frg[i].npages && k < 64; k++) {
                int64_t idx = migr_hv_pfn_index(s->hv, pc->frg[i].pfn + k);
                if (idx >= 0)
                    err = fserve_one(pc, (uint64_t)idx, t_req);
            }
        if (err == 0)
            continue;
        /* The end of the channel alone proves nothing (the destination closes
         * it when it is done, maybe before we read its COMPLETE on the main
         * stream, which decides); a malformed request is a failure. */
        pthread_mutex_lock(&pc->lock);
        if (!pc->stopping && err != -EPIPE && err != -ECONNRESET && !pc->failed) {
            pc->failed = true;
            pc->err = err;
            snprintf(pc->why, sizeof(pc->why), "%s", migr_last_error());
            pthread_cond_broadcast(&pc->cond);
        }
        pthread_mutex_unlock(&pc->lock);
        return NULL;
    }
}

/* Cancellable post-copy: watch for the destination's silence (see the top).
 * A thread of its own: the push and the reader may both sit in calls that
 * only a shut-down link ends. */
static void *lease_main(void *arg)
{
    struct pc_src *pc = arg;
    struct sender *s = pc->s;
    uint64_t limit = 2ull * s->p->postcopy_lease_ms * 1000000ull;
    for (;;) {
        pthread_mutex_lock(&pc->lock);
        bool over = pc->complete || pc->failed || pc->cancel_done || pc->stopping;
        if (!over) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_nsec += 100000000L;
            if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&pc->cond, &pc->lock, &dl);
            over = pc->complete || pc->failed || pc->cancel_done || pc->stopping;
        }
        uint64_t now = migr_now_ns(), rx = __atomic_load_n(&pc->rx_ns, __ATOMIC_RELAXED);
        bool lost = !over && now > rx && now - rx > limit; /* the reader may store a later time meanwhile */
        if (lost)
            pc->lease_lost = true;
        pthread_mutex_unlock(&pc->lock);
        if (over)
            return NULL;
        if (lost) {
            s->t->ops->shutdown(s->t); /* wakes the reader: it reports the failure */
            if (s->fch)
                s->fch->ops->shutdown(s->fch);
            return NULL;
        }
    }
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Every memfd hole the destination lacks goes first, as ZERO runs, unread
 * (engine/holes.c): the guest is paused here, so a hole stays one. */
static int push_holes(struct pc_src *pc)
{
    struct sender *s = pc->s;
    struct migr_hv *hv = s->hv;
    for (uint64_t i = 0; i < hv->ram_pages; i++) {
        if ((i & 63) == 0 && pc->data[i >> 6] == ~0ull) {
            i += 63;
            continue;
        }
        if (migr_bit_test(pc->data, i) || (pc->need && !migr_bit_test(pc->need, i)) || !claim(pc, i))
            continue;
        int err = engine_batch_zero_run(&s->b, migr_hv_index_pfn(hv, i), 1);
        if (err < 0)
            return err;
    }
    return engine_batch_flush(&s->b);
}

static void pc_free(struct pc_src *pc)
{
    free(pc->data);
    free(pc->sent);
    free(pc->meta);
    free(pc->fmeta);
    free(pc->frg);
    free(pc->rrg);
    free(pc->stage);
    free(pc->stage_idx);
    free(pc->state);
    free(pc->pending_state);
    pthread_mutex_destroy(&pc->lock);
    pthread_cond_destroy(&pc->cond);
    free(pc);
}

/* The push's state, and its threads: the reader (th), the fault server, the
 * lease watcher. *out is NULL after a failure. */
static int push_start(struct sender *s, const uint64_t *need, struct pc_src **out, pthread_t *thp)
{
    struct migr_hv *hv = s->hv;
    struct pc_src *pc = calloc(1, sizeof(*pc));
    pthread_t th;
    int err = 0;
    *out = NULL;
    if (!pc)
        return -ENOMEM;
    pthread_mutex_init(&pc->lock, NULL);
    pthread_cond_init(&pc->cond, NULL);
    pc->s = s;
    pc->need = need;
    if (!(pc->sent = calloc(migr_bitmap_words(hv->ram_pages), 8)) || !(pc->meta = malloc(MIGR_META_MAX)) ||
        !(pc->rrg = malloc(MIGR_RANGES_MAX * sizeof(*pc->rrg))) ||
        (s->fch && (!(pc->fmeta = malloc(MIGR_META_MAX)) ||
                    !(pc->frg = malloc(MIGR_RANGES_MAX * sizeof(*pc->frg)))))) {
        pc_free(pc);
        return -ENOMEM;
    }
    /* After pre-copy rounds (need) every hole went in round 1 and the pages
     * in need were seen holding data (the harvests are filtered,
     * engine/holes.c): no scan (~7 ms per GiB of data) delays the push. */
    uint64_t dbytes = migr_bitmap_words(hv->ram_pages) * 8;
    long ndata = !(pc->data = malloc(dbytes)) ? -ENOMEM
                 : need                       ? (memset(pc->data, 0xff, dbytes), 0)
                                              : engine_data_scan(hv, pc->data);
    if (ndata < 0) {
        pc_free(pc);
        return (int)ndata;
    }
    pc->left = need ? migr_bitmap_count(need, hv->ram_pages) : hv->ram_pages;
    pc->rx_ns = migr_now_ns();
    if ((err = pthread_create(&th, NULL, reader, pc)) != 0) {
        pc_free(pc);
        return migr_errorf(err, "post-copy: start the request reader");
    }
    if (s->fch) {
        if ((err = pthread_create(&pc->fserver, NULL, fault_server, pc)) != 0) {
            err = migr_errorf(err, "post-copy: start the fault server");
            s->t->ops->shutdown(s->t);
            pthread_join(th, NULL);
            pc_free(pc);
            return err;
        }
        pc->fserver_started = true;
    }
    if (s->cancellable && s->p->postcopy_lease_ms) {
        if ((err = pthread_create(&pc->lease_thread, NULL, lease_main, pc)) != 0) {
            err = migr_errorf(err, "post-copy: start the lease watcher");
            s->t->ops->shutdown(s->t);
            pthread_join(th, NULL);
            if (pc->fserver_started) {
                s->fch->ops->shutdown(s->fch);
                pthread_join(pc->fserver, NULL);
            }
            pc_free(pc);
            return err;
        }
        pc->lease_started = true;
    }
    *out = pc;
    *thp = th;
    return 0;
}

/* A push that failed because the destination closed: it may have had every
 * page (some came through the fault server) and closed after its COMPLETE,
 * which the reader has not read yet. The reader, which sees the COMPLETE or
 * the end of the stream soon, says which; only a stream that ended without
 * COMPLETE is the failure. */
static int send_failed(struct pc_src *pc, int err)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    pthread_mutex_lock(&pc->lock);
    while (!pc->complete && !pc->failed && !pc->cancel_done)
        if (pthread_cond_timedwait(&pc->cond, &pc->lock, &dl) == ETIMEDOUT)
            break;
    bool complete = pc->complete;
    pthread_mutex_unlock(&pc->lock);
    return complete ? 0 : err;
}

/* Until COMPLETE (0), the last checkpoint of a cancel, or a failure: serve
 * the faults of the main stream, acknowledge checkpoints, pass a cancel on,
 * and push the rest from where the guest last faulted. */
static int push_loop(struct pc_src *pc, uint64_t total)
{
    struct sender *s = pc->s;
    struct migr_hv *hv = s->hv;
    uint64_t reqs[256], cursor = 0;
    bool cancel_sent = false;
    uint64_t last_nudge = migr_now_ns();
    int err = push_holes(pc);
    while (err >= 0) {
        pthread_mutex_lock(&pc->lock);
        if ((pages_left(pc) == 0 || cancel_sent) && !pc->complete && !pc->failed && !pc->cancel_done &&
            pc->head == pc->tail) {
            struct timespec dl; /* wake up now and then to look at the cancel flag (and to nudge) */
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_nsec += s->fch && !cancel_sent ? (long)PUSH_NUDGE_NS : 50000000L;
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
        uint64_t ack = pc->to_ack > pc->acked ? pc->to_ack : 0;
        pc->acked = ack ? ack : pc->acked;
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
        if (ack && !cancel_sent) {
            /* the destination may run on: checkpoint `ack` is safe here */
            uint8_t m[MIGR_ACK_SIZE];
            struct migr_ack a = {.pages = ack, .t_ns = s->p->postcopy_lease_ms};
            int len = migr_ack_encode(&a, m, sizeof(m));
            if ((err = engine_batch_flush(&s->b)) < 0 ||
                (err = len < 0 ? len : migr_rec_send(s->t, MIGR_REC_EPOCH_ACK, m, (uint32_t)len, NULL, 0)) < 0)
                break;
        }
        if (s->cancellable && migr_cancel_requested(s->cancel) && !cancel_sent) {
            if ((err = engine_batch_flush(&s->b)) < 0 ||
                (err = migr_rec_send(s->t, MIGR_REC_CANCEL, NULL, 0, NULL, 0)) < 0)
                break;
            cancel_sent = true;
        }
        /* Faults that came on the main stream (no fault channel), each with
         * a few pages after it (pre-paging). After a CANCEL too: the
         * destination stops its guest at a consistent point for the last
         * checkpoint, and a proc vCPU blocked in a fault gets there only once
         * its page is here. */
        for (uint32_t i = 0; i < nreq && err >= 0; i++) {
            int64_t idx = migr_hv_pfn_index(hv, reqs[i]);
            if (idx < 0)
                continue;
            if (!migr_bit_test(pc->sent, (uint64_t)idx))
                s->st->postcopy.demand_pages++;
            for (uint64_t k = 0; k <= s->p->prepage && err >= 0; k++)
                err = push_one(pc, (uint64_t)idx + k);
            cursor = (uint64_t)idx + s->p->prepage + 1;
        }
        if (err >= 0 && nreq)
            err = engine_batch_flush(&s->b);
        if (err >= 0 && cancel_sent)
            continue; /* no more background push: wait for the last checkpoint */
        if (err >= 0 && s->fch && pages_left(pc) == 0 && migr_now_ns() - last_nudge >= PUSH_NUDGE_NS) {
            /* Everything went out, but the destination's last page may have
             * come on the fault channel while its main-stream reader sat in a
             * blocking read that nothing else would end: resend one page now
             * and then. The destination drops it unread if it has the page;
             * if not, this RAM still holds the page's current bytes (a page
             * the destination lacks cannot have been written there). A
             * failed send is not ours to report: COMPLETE may be crossing it
             * and the destination gone; the reader says which. */
            if (engine_batch_page(&s->b, migr_hv_page(hv, 0), migr_hv_index_pfn(hv, 0)) >= 0)
                (void)engine_batch_flush(&s->b);
            last_nudge = migr_now_ns();
        }
        /* Then the background push, from where the guest last faulted, unless
         * the socket still holds enough to keep the link busy. */
        if (pages_left(pc) && migr_transport_outq(s->t) > (long long)PUSH_BACKLOG) {
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
        for (uint32_t pushed = 0, scanned = 0; err >= 0 && pages_left(pc) && pushed < PUSH_CHUNK &&
                                                scanned < hv->ram_pages; cursor++, scanned++) {
            if (cursor >= hv->ram_pages)
                cursor = 0;
            err = push_one(pc, cursor);
            pushed += err > 0;
            if (err > 0)
                s->st->postcopy.pushed_pages++;
        }
        if (err >= 0)
            err = engine_batch_flush(&s->b);
        if (err < 0)
            break;
        engine_progress(s, "postcopy", total - pages_left(pc), total, false);
    }
    if (err == -EPIPE || err == -ECONNRESET)
        err = send_failed(pc, err);
    return err;
}

/* COMPLETE read (err 0): the release; then stop the threads, take the
 * fault server's counts, and on a failure take the guest back. */
static int push_end(struct pc_src *pc, pthread_t th, int err, uint64_t total)
{
    struct sender *s = pc->s;
    struct migr_hv *hv = s->hv;
    if (err == 0 && s->cancellable) {
        /* COMPLETE read: the guest is the destination's from here on, come
         * what may; tell it (COMMIT, the release), or it keeps the guest
         * paused, unable to tell this from our taking it back. */
        if (migr_rec_send(s->t, MIGR_REC_COMMIT, NULL, 0, NULL, 0) < 0) {
            s->st->ownership_in_doubt = true;
            snprintf(s->st->error, sizeof(s->st->error),
                     "every page reached the destination, but the release did not (%s): the guest is paused "
                     "there; `migr resume` it there (this side has released it)", migr_last_error());
        }
    }
    if (err < 0) {
        /* Wake the reader: the destination sees EOF or an error soon. */
        s->t->ops->shutdown(s->t);
    }
    pthread_join(th, NULL);
    if (pc->lease_started) {
        pthread_mutex_lock(&pc->lock);
        pc->stopping = true;
        pthread_cond_broadcast(&pc->cond);
        pthread_mutex_unlock(&pc->lock);
        pthread_join(pc->lease_thread, NULL);
        if (err < 0 && pc->lease_lost)
            err = migr_errorf(ETIMEDOUT, "nothing from the destination for %u ms (its lease of %u ms ran out: "
                              "it has stopped the guest)", 2 * s->p->postcopy_lease_ms, s->p->postcopy_lease_ms);
    }
    if (pc->fserver_started) {
        pthread_mutex_lock(&pc->lock);
        pc->stopping = true;
        pthread_mutex_unlock(&pc->lock);
        s->fch->ops->shutdown(s->fch);
        pthread_join(pc->fserver, NULL);
        s->st->postcopy.demand_pages += pc->f_demand;
        s->st->postcopy.prepaged_pages += pc->f_prepaged;
        s->st->raw_pages += pc->f_raw;
        s->st->zero_pages += pc->f_zero;
        s->st->pages += pc->f_raw + pc->f_zero;
        if (pc->nserve) {
            qsort(pc->serve_us, pc->nserve, sizeof(float), cmp_f);
            s->st->postcopy.serve_p50_us = pc->serve_us[pc->nserve / 2];
        }
    }
    if (err < 0 && s->cancellable) {
        /* Take the guest back: our RAM already holds every complete
         * checkpoint; its vCPU state goes with the last one (none yet: the
         * state we paused with is still loaded). */
        int e2 = pc->state ? hv->ops->load_state(hv, pc->state, pc->state_len) : 0;
        if (e2 == 0)
            s->took_back = true;
        else
            migr_error_prefix(-err, "taking the guest back failed (%d)", e2);
    }
    engine_progress(s, "postcopy", total - pages_left(pc), total, true);
    pc_free(pc);
    return err < 0 ? err : 0;
}

static int push_main(struct sender *s, const uint64_t *need)
{
    struct pc_src *pc;
    pthread_t th;
    int err = push_start(s, need, &pc, &th);
    if (err < 0)
        return err;
    uint64_t total = pc->left;
    return push_end(pc, th, push_loop(pc, total), total);
}

void engine_bulk_priority(void)
{
    /* best effort: at worst the push competes with the fault path as before */
    int cur = getpriority(PRIO_PROCESS, (id_t)gettid());
    if (cur < ENGINE_BULK_NICE)
        (void)setpriority(PRIO_PROCESS, (id_t)gettid(), ENGINE_BULK_NICE);
}

struct bulk_arg {
    struct sender *s;
    const uint64_t *need;
    int ret;
    char why[512];
};

static void *bulk_thread(void *arg)
{
    struct bulk_arg *a = arg;
    engine_bulk_priority();
    a->ret = push_main(a->s, a->need);
    if (a->ret < 0)
        snprintf(a->why, sizeof(a->why), "%s", migr_last_error());
    return NULL;
}

/* The push runs on a thread of its own at a lower priority than the fault
 * server, so that a fault's answer does not wait for a CPU behind it. */
int engine_postcopy_push(struct sender *s, const uint64_t *need)
{
    struct bulk_arg a = {.s = s, .need = need};
    pthread_t th;
    int err = pthread_create(&th, NULL, bulk_thread, &a);
    if (err)
        return push_main(s, need);
    pthread_join(th, NULL);
    if (a.ret < 0)
        migr_errorf(-a.ret, "%s", a.why); /* the message is per thread */
    return a.ret;
}
