/* engine: the destination side.
 *
 * Nothing from the wire is trusted: every page number is checked against the
 * guest's RAM before a byte is placed, every page's CRC is checked after, and
 * the guest is resumed only when every page of RAM has arrived intact, the
 * state loaded, and the source has said COMMIT. Any failure destroys the
 * half-built guest and tells the source why (ERROR record).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "migr/codec.h"
#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/dirty.h"
#include "migr/engine.h"
#include "migr/record.h"
#include "migr/settle.h"
#include "engine/abi.h"
#include "engine/engine_impl.h"
#include "engine/stage.h"
#include "engine/mode.h"
#include "engine/validate.h"


static int rec_err(struct receiver *r, int err, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int rec_err(struct receiver *r, int err, const char *type, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return migr_errorf(err, "record %llu (%s): %s", (unsigned long long)r->seq, type, msg);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Allocate the destination pages of a batch in one call before the data
 * lands: taking a page fault per 4 KiB page inside the socket copy costs
 * ~2.5x more here (measured: 670 vs 1700 MB/s for a 1 GiB unix stream).
 * Only pages not written before are populated; zero pages never are. Pages
 * the prefault thread populated already are skipped; if this batch had to
 * populate pages itself, the thread has fallen behind and jumps ahead. */
#define PREFAULT_LEAD 2048u       /* 8 MiB: where a thread that fell behind goes on */
static void populate(struct receiver *r, uint32_t nraw)
{
    uint32_t i = 0;
    bool self = false;
    while (r->can_populate && i < nraw) {
        if (migr_bit_test(r->alloc, r->raw_idx[i]) || engine_prefaulted(r, r->raw_idx[i])) {
            i++;
            continue;
        }
        self = true;
        uint8_t *start = migr_hv_page(r->hv, r->raw_idx[i]);
        uint32_t j = i + 1;
        while (j < nraw && r->raw_idx[j] == r->raw_idx[j - 1] + 1 && !migr_bit_test(r->alloc, r->raw_idx[j]) &&
               !engine_prefaulted(r, r->raw_idx[j]) &&
               migr_hv_page(r->hv, r->raw_idx[j]) == start + (size_t)(j - i) * MIGR_PAGE_SIZE)
            j++;
        if (madvise(start, (size_t)(j - i) * MIGR_PAGE_SIZE, MADV_POPULATE_WRITE) < 0 && errno == EINVAL)
            r->can_populate = false; /* kernel before 5.14: fault pages in as they come */
        i = j;
    }
    if (self && nraw)
        engine_prefault_claim(r, r->raw_idx[nraw - 1] + 1 + PREFAULT_LEAD);
}

/* Read bulk data straight into guest pages, 1024 iovecs at a time. */
static int read_iov(struct receiver *r, int n)
{
    int err = migr_transport_recvv(r->t, r->iov, n);
    if (err < 0)
        return migr_error_prefix(-err, "record %llu (PAGES) data", (unsigned long long)r->seq);
    return 0;
}

/* A ZERO run [first, last]: only pages that hold data here are cleared; the
 * others (never written: a fresh memfd) are not touched, so a sparse guest
 * stays sparse. A word at a time: runs of holes span whole guests. */
static void zero_run(struct receiver *r, uint64_t first, uint64_t last)
{
    for (uint64_t k = first; k <= last;) {
        uint64_t w = k >> 6, lo = k & 63, n = last - k + 1 < 64 - lo ? last - k + 1 : 64 - lo;
        uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << lo;
        for (uint64_t nz = r->nonzero[w] & mask; nz; nz &= nz - 1)
            memset(migr_hv_page(r->hv, w * 64 + (uint64_t)__builtin_ctzll(nz)), 0, MIGR_PAGE_SIZE);
        r->nonzero[w] &= ~mask;
        __atomic_fetch_or(&r->received[w], mask, __ATOMIC_RELAXED); /* read by the prefault thread */
        r->torn[w] &= ~mask;
        k += n;
    }
}

/* Pre-copy placement: a ZERO run clears what holds data; a page with data is
 * noted, to be read straight into guest RAM (RAW) or into a codec slot. */
static int precopy_zero(void *arg, uint32_t i, const struct migr_page_entry *e, uint64_t idx, uint64_t n)
{
    struct receiver *r = arg;
    zero_run(r, idx, idx + n - 1);
    r->st->zero_pages += n;
    r->st->codec[MIGR_ENC_ZERO].pages += n;
    r->st->pages += n;
    return 0;
}

static int precopy_data(void *arg, uint32_t i, const struct migr_page_entry *e, uint64_t idx)
{
    struct receiver *r = arg;
    uint8_t *slot = NULL;
    int err = engine_decode_note(r, i, e, idx, &slot); /* RAW (len checked) or a codec's payload */
    if (err < 0)
        return err;
    r->raw_slot[r->nraw] = slot;
    r->raw_len[r->nraw] = e->len;
    r->raw_idx[r->nraw++] = (uint32_t)idx;
    return 0;
}

static const struct engine_placement precopy_placement = {
    .encs = ENGINE_ENCS_ANY, .phase = "a pre-copy round", .zero = precopy_zero, .data = precopy_data};

/* RAW pages are read and checked a chunk at a time: a page's CRC is
 * computed right after the socket copy put it in the cache. Checked after
 * the whole record (up to 4096 pages) instead, the CRC read it back from
 * further away: 244 perf samples (of 0.5 ms) per GiB, 92 per chunk
 * (bench_migrate idle/unix, perf record -g -F 2000), on a thread that
 * bounds round 1. 32 pages: one socket read per 128 KiB. */
#define CHUNK_PAGES 32u

struct chunk {
    uint32_t n;                   /* RAW entries in the chunk */
    uint32_t k[CHUNK_PAGES];      /* their positions in raw_idx */
    uint32_t crc[CHUNK_PAGES];
};

static void finish_chunk(struct receiver *r, struct chunk *c)
{
    for (uint32_t j = 0; j < c->n; j++) {
        uint64_t idx = r->raw_idx[c->k[j]];
        migr_bit_set(r->nonzero, idx);
        migr_bit_set(r->alloc, idx);
        if (migr_crc32c(0, migr_hv_page(r->hv, idx), MIGR_PAGE_SIZE) != c->crc[j]) {
            migr_bit_set(r->torn, idx);   /* written while sent: the source resends it */
            r->st->torn_pages++;
        } else {
            __atomic_fetch_or(&r->received[idx >> 6], 1ull << (idx & 63), __ATOMIC_RELAXED); /* prefault.c */
            migr_bit_clear(r->torn, idx);
        }
        r->st->raw_pages++;
        r->st->codec[MIGR_ENC_RAW].pages++;
        r->st->codec[MIGR_ENC_RAW].bytes_out += MIGR_PAGE_SIZE;
        r->st->pages++;
    }
    c->n = 0;
}

static int on_pages(struct receiver *r, const struct migr_rec_hdr *h)
{
    uint32_t round, count;
    int err = engine_pages_header(r->meta, h->meta_len, h->bulk_len, r->seq, &round, &count);
    if (err < 0)
        return err;
    struct migr_hv *hv = r->hv;
    struct migr_page_entry e[1];
    int niov = 0;
    /* First pass: check every entry, then read the data into place. */
    r->nraw = 0;
    if ((err = engine_pages_walk(hv, r->meta, count, r->seq, &precopy_placement, r)) < 0)
        return err;
    uint32_t nraw = r->nraw;
    if (round == 1 && nraw && !r->pf_tried) {
        /* the holes came first (ZERO runs): the pages still missing are data */
        r->pf_tried = true;
        if ((err = engine_prefault_start(r, r->raw_idx[0])) < 0)
            return err;
    }
    populate(r, nraw);
    /* Second pass: read, a chunk at a time, and check the RAW pages' CRC
     * (codec entries: decoded and checked after the record). */
    struct chunk c = {.n = 0};
    for (uint32_t i = 0, k = 0; i < count && k < nraw; i++) {
        migr_page_entry_decode(r->meta, i, e);
        if (e->enc == MIGR_ENC_ZERO)
            continue;
        uint32_t idx = r->raw_idx[k];
        if (r->raw_slot[k]) {
            r->iov[niov++] = (struct iovec){.iov_base = r->raw_slot[k], .iov_len = r->raw_len[k]};
        } else {
            r->iov[niov++] = (struct iovec){.iov_base = migr_hv_page(hv, idx), .iov_len = MIGR_PAGE_SIZE};
            c.k[c.n] = k;
            c.crc[c.n++] = e->crc;
        }
        if (++k == nraw || niov == (int)MIGR_ARRAY_SIZE(r->iov) || c.n == CHUNK_PAGES) {
            if ((err = read_iov(r, niov)) < 0)
                return err;
            finish_chunk(r, &c);
            niov = 0;
        }
    }
    return engine_decode_run(r); /* codec entries: decode, CRC, mark received */
}

int engine_recv_ack(struct receiver *r, uint16_t type)
{
    uint8_t meta[MIGR_ACK_SIZE];
    struct migr_ack a = {.pages = r->st->pages, .t_ns = migr_now_ns()};
    int len = migr_ack_encode(&a, meta, sizeof(meta));
    if (len < 0)
        return len;
    return engine_recv_send(r, type, meta, (uint32_t)len);
}

int engine_recv_done(struct receiver *r)
{
    if (engine_recv_ack(r, MIGR_REC_DONE) < 0)
        migr_logf(MIGR_LOG_WARN, "recv: DONE not delivered (%s); the guest runs here", migr_last_error());
    return 0;
}

int engine_recv_check_state_version(struct receiver *r, const struct migr_hello *hello)
{
    if (hello->state_version != r->hv->state_version)
        return rec_err(r, EPROTO, "HELLO", "%s state version %u, this receiver reads %u", hello->backend,
                       hello->state_version, r->hv->state_version);
    r->st->ram_bytes = r->hv->ram_pages * MIGR_PAGE_SIZE;
    return 0;
}

/* RAM arrives as pages (every mode but hand-over): an empty guest of the
 * HELLO's shape, and what the page validator keeps track of. */
int engine_recv_setup_copy(struct receiver *r, const struct migr_hello *hello)
{
    struct migr_vm_layout layout;
    migr_hello_layout(hello, &layout);
    int err = migr_hv_build(&layout, NULL, NULL, &r->hv); /* the caller's builder for hello's VMM type */
    if (err < 0)
        return migr_error_prefix(-err, "record %llu (HELLO)", (unsigned long long)r->seq);
    if ((err = engine_recv_check_state_version(r, hello)) < 0)
        return err;
    uint64_t words = migr_bitmap_words(r->hv->ram_pages);
    r->received = calloc(words, 8);
    r->torn = calloc(words, 8);
    r->nonzero = calloc(words, 8);
    r->alloc = calloc(words, 8);
    if (!r->received || !r->torn || !r->nonzero || !r->alloc)
        return -ENOMEM;
    return 0;
}

/* HELLO: its mode string is parsed here, once, into the mode's unit. */
static int on_hello(struct receiver *r, const struct migr_rec_hdr *h)
{
    struct migr_hello hello;
    int err = migr_hello_decode(r->meta, h->meta_len, &hello);
    if (err < 0)
        return err;
    if (hello.page_size != MIGR_PAGE_SIZE)
        return rec_err(r, EPROTO, "HELLO", "page size %u is not supported here (this receiver uses %u)",
                       hello.page_size, MIGR_PAGE_SIZE);
    uint64_t lack = migr_features_missing(hello.requires, migr_features_supported());
    if (lack) {
        const char *name = migr_feature_name(lack);
        char bit[32];
        snprintf(bit, sizeof(bit), "bit 0x%llx", (unsigned long long)lack);
        return rec_err(r, ENOTSUP, "HELLO", "the source needs feature '%s' that this destination lacks",
                       name ? name : bit);
    }
    if (hello.has_ext) {
        memcpy(r->fate.id, hello.id, sizeof(r->fate.id));
        r->fate.known = true;
        r->fate.source_settles = (hello.features & MIGR_FEAT_SETTLE) != 0;
    }
    if (!(r->mode = engine_mode_by_name(hello.mode, &r->cancellable)))
        return rec_err(r, EPROTO, "HELLO", "mode '%s' is not supported by this receiver", hello.mode);
    snprintf(r->st->mode, sizeof(r->st->mode), "%s", hello.mode);
    if (!r->mode->postcopy) /* no fault channel will come: the listener's socket may close */
        migr_transport_side_release(r->t);
    return r->mode->recv_setup(r, &hello);
}

/* Receive the next record; an ERROR from the source becomes our error. */
static int next(struct receiver *r, struct migr_rec_hdr *h)
{
    int err = migr_rec_recv(r->t, &r->seq, h, r->meta, MIGR_META_MAX);
    if (err == 0 && migr_cancel_requested(r->cancel))
        return -ECANCELED; /* before COMMIT only: from it on requests are refused */
    if (err < 0)
        return err;
    if (h->type == MIGR_REC_ERROR) {
        int code;
        char msg[MIGR_ERROR_MSG_MAX + 1];
        if (migr_error_decode(r->meta, h->meta_len, &code, msg, sizeof(msg)) < 0)
            return rec_err(r, EPROTO, "ERROR", "malformed");
        r->origin = ORIGIN_PEER_ABORTED;
        return migr_errorf(ECANCELED, "the source aborted: %s", msg);
    }
    if (h->type != MIGR_REC_PAGES && h->bulk_len)
        return rec_err(r, EBADMSG, migr_rec_type_name(h->type), "unexpected bulk data (%u bytes)", h->bulk_len);
    return 0;
}

static int on_state(struct receiver *r, const struct migr_rec_hdr *h)
{
    free(r->state);
    if (!(r->state = malloc(h->meta_len ? h->meta_len : 1)))
        return -ENOMEM;
    memcpy(r->state, r->meta, h->meta_len);
    r->state_len = h->meta_len;
    r->st->state_bytes = h->meta_len;
    return 0;
}

static int on_round_end(struct receiver *r, const struct migr_rec_hdr *h)
{
    struct migr_round_end re;
    int err = migr_round_end_decode(r->meta, h->meta_len, &re);
    if (err < 0)
        return err;
    engine_prefault_stop(r); /* round 1 is in; later rounds land in allocated pages */
    /* the end of a discard round, or the sync before the pause: the source
     * pauses once we are done with everything it sent */
    if ((r->discarded || (re.flags & MIGR_ROUND_END_SYNC)) && (err = engine_recv_ack(r, MIGR_REC_READY)) < 0)
        return err;
    r->sync_answered = (re.flags & MIGR_ROUND_END_SYNC) != 0;
    r->discarded = 0;
    return 0;
}

static int on_switchover(struct receiver *r, const struct migr_rec_hdr *h)
{
    struct migr_switchover so;
    int err = migr_switchover_decode(r->meta, h->meta_len, &so);
    if (err < 0)
        return err;
    r->st->precopy.rounds = so.rounds;
    if (!r->state)
        return rec_err(r, EPROTO, "SWITCHOVER", "no STATE record before switchover");
    if (r->mode->recv_switchover && (err = r->mode->recv_switchover(r)) < 0)
        return err;
    return r->hv->ops->load_state(r->hv, r->state, r->state_len);
}

/* The records of the mode up to SWITCHOVER (those it takes: recv_records). */
static int recv_until_switchover(struct receiver *r)
{
    struct migr_rec_hdr h;
    for (;;) {
        if (r->sync_answered) { /* the source pauses now: its last pages and STATE are inside the downtime */
            r->sync_answered = false;
            engine_spin_readable(r->t);
        }
        int err = next(r, &h);
        if (err < 0)
            return err;
        if (h.type != MIGR_REC_SWITCHOVER && (h.type >= 32 || !(r->mode->recv_records & ENGINE_REC_BIT(h.type))))
            return rec_err(r, EPROTO, migr_rec_type_name(h.type), "unexpected before SWITCHOVER");
        switch (h.type) {
        case MIGR_REC_PAGES: err = on_pages(r, &h); break;
        case MIGR_REC_FAULT_CHANNEL: err = engine_postcopy_on_channel(r, &h); break;
        case MIGR_REC_DISCARD: err = engine_recv_discard(r, &h); break;
        case MIGR_REC_ROUND_END: err = on_round_end(r, &h); break;
        case MIGR_REC_STATE: err = on_state(r, &h); break;
        case MIGR_REC_SWITCHOVER:
            r->t_switch = migr_now_ns();
            engine_prefault_stop(r);
            engine_switch_step(r->st, 0, r->t_switch);
            err = on_switchover(r, &h);
            engine_switch_step(r->st, 1, r->t_switch);
            return err;
        }
        if (err < 0)
            return err;
    }
}

/* The phases, in order: HELLO, records, SWITCHOVER, READY, COMMIT, resume. */
static int run(struct receiver *r)
{
    const struct engine_mode *m;
    struct migr_rec_hdr h;
    int err;
    if ((err = migr_preamble_recv(r->t)) < 0 || (err = next(r, &h)) < 0)
        return err;
    if (h.type != MIGR_REC_HELLO)
        return rec_err(r, EPROTO, migr_rec_type_name(h.type), "the stream must start with HELLO");
    if ((err = on_hello(r, &h)) < 0 || (err = recv_until_switchover(r)) < 0)
        return err;
    m = r->mode;
    if (r->pc) /* post-copy follows the switchover: take-back and the lease, not settling */
        r->fate.source_settles = false;
    r->st->verified = true;
    r->fate.ready_sent = true; /* from here the source may send COMMIT (even if READY fails to go out) */
    if ((err = engine_recv_ack(r, MIGR_REC_READY)) < 0)
        return err;
    engine_switch_step(r->st, 2, r->t_switch);
    engine_spin_readable(r->t);
    if ((err = next(r, &h)) < 0)
        return err;
    if (h.type != MIGR_REC_COMMIT)
        return rec_err(r, EPROTO, migr_rec_type_name(h.type), "expected COMMIT");
    engine_switch_step(r->st, 3, r->t_switch);
    /* The watchdog keeps off the link from here; if it fired just now the
     * link is already down and the source cannot hear our DONE: refuse. */
    if (!engine_cancel_commit(r->watchdog))
        return -ETIMEDOUT;
    if (r->cancel && !engine_cancel_take(r->cancel))
        return -ECANCELED;
    /* The guest is ours now. */
    if (m->recv_commit && (err = m->recv_commit(r)) < 0)
        return err;
    /* stamped as the vCPUs are let go (QEMU's RESUME event, too, precedes its
     * vCPUs' start): a woken vCPU thread may preempt this one for a few ms */
    uint64_t wall = migr_wall_ns();
    engine_switch_step(r->st, 4, r->t_switch);
    if ((err = r->hv->ops->resume(r->hv)) < 0)
        return err;
    r->st->resumed_wall_ns = wall;
    r->fate.fate = MIGR_FATE_COMMITTED; /* it has run here: never ABORTED from now on */
    if (m->recv_resumed && (err = m->recv_resumed(r)) < 0)
        return err;
    r->st->downtime_ns = migr_now_ns() - r->t_switch;
    return m->recv_run(r);
}

static void watchdog_end(struct receiver *r)
{
    if (r->cancel)
        engine_cancel_detach(r->cancel);
    r->cancel = NULL;
    if (!r->watchdog)
        return;
    engine_cancel_detach(r->watchdog);
    migr_cancel_free(r->watchdog);
    r->watchdog = NULL;
}

static void receiver_free(struct receiver *r)
{
    engine_postcopy_drop_ahead(r); /* not taken by a post-copy switch */
    engine_decoder_destroy(r);
    migr_transport_close(r->fch);
    free(r->meta);
    free(r->ranges);
    free(r->received);
    free(r->torn);
    free(r->nonzero);
    free(r->alloc);
    free(r->state);
    free(r);
}

int migr_recv(struct migr_transport *t, struct migr_hv **out, struct migr_stats *st)
{
    return migr_recv_ex(t, NULL, out, st);
}

/* What this destination tells a settle query (include/migr/settle.h). */
static void fate_out(struct receiver *r, int err, struct migr_recv_fate *f)
{
    memset(f, 0, sizeof(*f));
    if (!r)
        return;
    *f = r->fate;
    if (err < 0 && f->fate != MIGR_FATE_COMMITTED)
        f->fate = MIGR_FATE_ABORTED; /* the guest built here is destroyed below: it never runs */
}

static int recv_main(struct migr_transport *t, const struct migr_recv_params *p, struct migr_hv **out,
                     struct migr_stats *st, struct migr_recv_fate *f)
{
    struct receiver *r = calloc(1, sizeof(*r));
    uint64_t t0 = migr_now_ns(), cpu0 = migr_thread_cpu_ns();
    bool cancelled_here = false;
    int err;

    snprintf(st->transport, sizeof(st->transport), "%.*s", (int)strcspn(t->peer, ":"), t->peer);
    if (!r || !(r->meta = malloc(MIGR_META_MAX)) || !(r->ranges = malloc(MIGR_RANGES_MAX * sizeof(*r->ranges)))) {
        err = -ENOMEM;
        goto fail;
    }
    r->t = t;
    r->st = st;
    r->can_populate = true;
    r->decode_threads = p && p->decode_threads ? p->decode_threads : 1;
    r->postcopy_timeout_ms = p && p->postcopy_timeout_ms ? p->postcopy_timeout_ms : 10000;
    r->stall_timeout_ms = p && p->stall_timeout_ms ? p->stall_timeout_ms : 10000;
    if (!(r->watchdog = migr_cancel_new())) {
        err = -ENOMEM;
        goto fail;
    }
    if (p && (r->cancel = p->cancel))
        engine_cancel_attach_dest(r->cancel, t);
    if ((err = engine_cancel_attach(r->watchdog, t, r->stall_timeout_ms)) < 0 || (err = run(r)) < 0)
        goto fail;
    watchdog_end(r);
    st->total_ns = migr_now_ns() - t0;
    st->wire_bytes = t->bytes_recv;
    engine_account(st, t, cpu0);
    *out = r->hv;
    fate_out(r, 0, f);
    receiver_free(r);
    return 0;

fail:
    if (r && r->watchdog && engine_cancel_reason(r->watchdog) == -ETIMEDOUT) {
        migr_errorf(ETIMEDOUT, "nothing from the source for %u ms before COMMIT (stalled source or network): "
                    "no guest runs here, the source still owns it", r->stall_timeout_ms);
        err = -ETIMEDOUT;
    } else if (r && r->cancel && engine_cancel_reason(r->cancel) == -ECANCELED) {
        migr_errorf(ECANCELED, "cancelled on the destination (migr cancel) before COMMIT: no guest runs here, "
                    "the source keeps it");
        err = -ECANCELED;
        cancelled_here = true;
    }
    if (r)
        watchdog_end(r);
    snprintf(st->error, sizeof(st->error), "%s", migr_last_error()[0] ? migr_last_error() : strerror(-err));
    if (err != -EPIPE && err != -ECONNRESET && !st->cancelled && (!r || r->origin != ORIGIN_PEER_ABORTED))
        migr_rec_send_error(t, -err, st->error);
    st->cancelled = cancelled_here;
    fate_out(r, err, f);
    /* Before COMMIT the source still owns the guest: drop ours. */
    if (r) {
        engine_prefault_stop(r);
        if (r->pc)
            engine_postcopy_finish(r);
        engine_postcopy_drop_ahead(r);
        engine_decoder_destroy(r);
        migr_transport_close(r->fch);
        r->fch = NULL;
        migr_hv_destroy(r->hv);
        receiver_free(r);
    }
    st->total_ns = migr_now_ns() - t0;
    engine_account(st, t, cpu0);
    migr_errorf(-err, "%s", st->error);
    return err;
}

/* As migr_send: full-size copies of the caller's structs unless its stats
 * are ours (engine.h, "ABI"). */
int migr_recv_ex(struct migr_transport *t, const struct migr_recv_params *p, struct migr_hv **out,
                 struct migr_stats *st)
{
    struct migr_recv_fate f = MIGR_RECV_FATE_INIT;
    return migr_recv_fated(t, p, out, st, &f);
}

int migr_recv_fated(struct migr_transport *t, const struct migr_recv_params *p, struct migr_hv **out,
                    struct migr_stats *st, struct migr_recv_fate *f)
{
    struct migr_recv_params pl = MIGR_RECV_PARAMS_INIT;
    struct migr_stats sl = MIGR_STATS_INIT;
    struct migr_recv_fate fl = MIGR_RECV_FATE_INIT;
    int err = engine_abi_check_out(st, "recv stats", "MIGR_STATS_INIT");
    if (err < 0 || (err = engine_abi_check_out(f, "recv fate", "MIGR_RECV_FATE_INIT")) < 0)
        return err;
    engine_abi_out(f, &fl, sizeof(fl)); /* nothing known yet */
    if (p && (err = engine_abi_in(&pl, sizeof(pl), p, "recv params", "MIGR_RECV_PARAMS_INIT")) < 0) {
        snprintf(sl.error, sizeof(sl.error), "%s", migr_last_error());
        engine_abi_out(st, &sl, sizeof(sl));
        return err;
    }
    struct migr_stats *use = engine_abi_out_begin(st, &sl, sizeof(sl));
    err = recv_main(t, &pl, out, use, &fl);
    engine_abi_out(st, use, sizeof(sl));
    engine_abi_out(f, &fl, sizeof(fl));
    return err;
}
