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
#include "engine/engine_impl.h"
#include "engine/stage.h"
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
    r->st->pages_sent += n;
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
    for (uint32_t i = 0; i < nraw; i++) {
        r->iov[niov++] = r->raw_slot[i] ? (struct iovec){.iov_base = r->raw_slot[i], .iov_len = r->raw_len[i]}
                                        : (struct iovec){.iov_base = migr_hv_page(hv, r->raw_idx[i]),
                                                         .iov_len = MIGR_PAGE_SIZE};
        if (niov == (int)MIGR_ARRAY_SIZE(r->iov) || i + 1 == nraw) {
            if ((err = read_iov(r, niov)) < 0)
                return err;
            niov = 0;
        }
    }
    if ((err = engine_decode_run(r)) < 0) /* codec entries: decode, CRC, mark received */
        return err;
    /* Second pass: CRC of what landed. */
    uint32_t k = 0;
    for (uint32_t i = 0; i < count; i++) {
        migr_page_entry_decode(r->meta, i, e);
        if (e->enc != MIGR_ENC_ZERO && e->enc != MIGR_ENC_RAW)
            k++;
        if (e->enc != MIGR_ENC_RAW)
            continue;
        uint64_t idx = r->raw_idx[k++];
        migr_bit_set(r->nonzero, idx);
        migr_bit_set(r->alloc, idx);
        if (migr_crc32c(0, migr_hv_page(hv, idx), MIGR_PAGE_SIZE) != e->crc) {
            migr_bit_set(r->torn, idx);   /* written while sent: the source resends it */
            r->st->torn_pages++;
        } else {
            __atomic_fetch_or(&r->received[idx >> 6], 1ull << (idx & 63), __ATOMIC_RELAXED); /* prefault.c */
            migr_bit_clear(r->torn, idx);
        }
        r->st->raw_pages++;
        r->st->codec[MIGR_ENC_RAW].pages++;
        r->st->codec[MIGR_ENC_RAW].bytes_out += MIGR_PAGE_SIZE;
        r->st->pages_sent++;
    }
    return 0;
}

/* Hybrid: pages the guest dirtied after they were sent. Their copies here are
 * stale and will be fetched again in post-copy: drop them now (the source may
 * still be running the guest: a discard round), one punch per run of pages
 * that hold something, so that the pause has only the last few to drop. */
static int on_discard(struct receiver *r, const struct migr_rec_hdr *h)
{
    static struct migr_range rg[MIGR_RANGES_MAX];
    uint32_t n;
    int err = migr_ranges_decode("DISCARD", r->meta, h->meta_len, rg, &n);
    if (err < 0)
        return migr_error_prefix(-err, "record %llu", (unsigned long long)r->seq);
    engine_prefault_stop(r); /* it must not refill what is punched here */
    for (uint32_t i = 0; i < n; i++) {
        int64_t first = migr_hv_pfn_index(r->hv, rg[i].pfn);
        int64_t last = migr_hv_pfn_index(r->hv, rg[i].pfn + rg[i].npages - 1);
        if (first < 0 || last != first + (int64_t)rg[i].npages - 1)
            return rec_err(r, EBADMSG, "DISCARD", "range %u (pfn 0x%llx, %llu pages) leaves guest RAM", i,
                           (unsigned long long)rg[i].pfn, (unsigned long long)rg[i].npages);
        uint64_t run = 0, run_len = 0;
        for (uint64_t k = (uint64_t)first; k <= (uint64_t)last + 1; k++) {
            bool drop = k <= (uint64_t)last && migr_bit_test(r->alloc, k);
            if (drop && run_len && run + run_len == k) {
                run_len++;
                continue;
            }
            if (run_len && (err = engine_punch(r, run, run_len)) < 0)
                return err;
            run = k;
            run_len = drop;
        }
        for (uint64_t k = (uint64_t)first; k <= (uint64_t)last; k++) {
            migr_bit_clear(r->alloc, k);
            migr_bit_clear(r->nonzero, k);
            migr_bit_clear(r->received, k);
            migr_bit_clear(r->torn, k);
        }
        r->discarded += rg[i].npages;
    }
    return 0;
}

static int on_switchover(struct receiver *r, const struct migr_rec_hdr *h)
{
    struct migr_switchover so;
    struct migr_hv *hv = r->hv;
    int err = migr_switchover_decode(r->meta, h->meta_len, &so);
    if (err < 0)
        return err;
    r->st->rounds = so.rounds;
    if (!r->state)
        return rec_err(r, EPROTO, "SWITCHOVER", "no STATE record before switchover");
    if (r->postcopy) {
        /* Missing pages will be fetched while the guest runs. */
        if ((err = engine_postcopy_prepare(r)) < 0)
            return err;
        return hv->ops->load_state(hv, r->state, r->state_len);
    }
    for (uint64_t w = 0; !r->handover && w < migr_bitmap_words(hv->ram_pages); w++) {
        uint64_t missing = ~r->received[w], bad = r->torn[w];
        uint64_t valid = w * 64 + 64 <= hv->ram_pages ? ~0ull : (1ull << (hv->ram_pages & 63)) - 1;
        if ((missing | bad) & valid) {
            uint64_t i = w * 64 + (uint64_t)__builtin_ctzll((missing | bad) & valid);
            return rec_err(r, EPROTO, "SWITCHOVER", "page 0x%llx %s; refusing to run an incomplete guest",
                           (unsigned long long)migr_hv_index_pfn(hv, i),
                           migr_bit_test(r->torn, i) ? "failed its CRC and was not resent"
                                                     : "was never received");
        }
    }
    if ((err = hv->ops->load_state(hv, r->state, r->state_len)) < 0)
        return err;
    return 0;
}

static int send_ack(struct receiver *r, uint16_t type)
{
    uint8_t meta[MIGR_ACK_SIZE];
    struct migr_ack a = {.pages = r->st->pages_sent, .t_ns = migr_now_ns()};
    int len = migr_ack_encode(&a, meta, sizeof(meta));
    if (len < 0)
        return len;
    return engine_recv_send(r, type, meta, (uint32_t)len);
}

/* Hand-over: the next record names the source's RAM memfds, which follow
 * as descriptors; the guest is built on that memory without copying it. */
static int recv_memfds(struct receiver *r, const struct migr_hello *hello)
{
    struct migr_rec_hdr h;
    struct migr_memfd_desc m;
    int fds[MIGR_MAX_REGIONS];
    uint64_t offs[MIGR_MAX_REGIONS];
    int err = migr_rec_recv(r->t, &r->seq, &h, r->meta, MIGR_META_MAX);
    if (err < 0)
        return err;
    if (h.type != MIGR_REC_MEMFD)
        return rec_err(r, EPROTO, migr_rec_type_name(h.type), "expected MEMFD after a handover HELLO");
    if ((err = migr_memfd_decode(r->meta, h.meta_len, &m)) < 0)
        return err;
    if (m.nregions != hello->nregions)
        return rec_err(r, EBADMSG, "MEMFD", "%u regions, HELLO announced %u", m.nregions, hello->nregions);
    for (uint32_t i = 0; i < m.nregions; i++) {
        if (m.r[i].gpa != hello->regions[i].gpa || m.r[i].size != hello->regions[i].size)
            return rec_err(r, EBADMSG, "MEMFD", "region %u differs from HELLO's layout", i);
        offs[i] = m.r[i].off;
    }
    if ((err = migr_transport_recv_fds(r->t, fds, (int)m.nregions)) < 0)
        return err;
    return migr_hv_create_shared(hello, fds, offs, &r->hv);
}

static int on_hello(struct receiver *r, const struct migr_rec_hdr *h)
{
    struct migr_hello hello;
    int err = migr_hello_decode(r->meta, h->meta_len, &hello);
    if (err < 0)
        return err;
    if (hello.page_size != MIGR_PAGE_SIZE)
        return rec_err(r, EPROTO, "HELLO", "page size %u is not supported here (this receiver uses %u)",
                       hello.page_size, MIGR_PAGE_SIZE);
    r->handover = strcmp(hello.mode, "handover") == 0;
    r->postcopy = !strcmp(hello.mode, "postcopy") || !strcmp(hello.mode, "cpostcopy") ||
                  !strcmp(hello.mode, "hybrid") || !strcmp(hello.mode, "chybrid");
    r->cancellable = r->postcopy && hello.mode[0] == 'c';
    if (strcmp(hello.mode, "precopy") != 0 && !r->handover && !r->postcopy)
        return rec_err(r, EPROTO, "HELLO", "mode '%s' is not supported by this receiver", hello.mode);
    snprintf(r->st->mode, sizeof(r->st->mode), "%s", hello.mode);
    if (r->handover)
        err = recv_memfds(r, &hello);
    else
        err = migr_hv_create_incoming(&hello, &r->hv);
    if (err < 0)
        return migr_error_prefix(-err, "record %llu (%s)", (unsigned long long)r->seq,
                                 migr_rec_type_name(r->handover ? MIGR_REC_MEMFD : MIGR_REC_HELLO));
    if (hello.state_version != r->hv->state_version)
        return rec_err(r, EPROTO, "HELLO", "%s state version %u, this receiver reads %u", hello.backend,
                       hello.state_version, r->hv->state_version);
    r->st->ram_bytes = r->hv->ram_pages * MIGR_PAGE_SIZE;
    if (r->handover)
        return send_ack(r, MIGR_REC_READY); /* VM built on the shared memory: the source may pause now */
    uint64_t words = migr_bitmap_words(r->hv->ram_pages);
    r->received = calloc(words, 8);
    r->torn = calloc(words, 8);
    r->nonzero = calloc(words, 8);
    r->alloc = calloc(words, 8);
    if (!r->received || !r->torn || !r->nonzero || !r->alloc)
        return -ENOMEM;
    return 0;
}

/* Receive the next record; an ERROR from the source becomes our error. */
static int next(struct receiver *r, struct migr_rec_hdr *h)
{
    int err = migr_rec_recv(r->t, &r->seq, h, r->meta, MIGR_META_MAX);
    if (err < 0)
        return err;
    if (h->type == MIGR_REC_ERROR) {
        int code;
        char msg[MIGR_ERROR_MSG_MAX + 1];
        if (migr_error_decode(r->meta, h->meta_len, &code, msg, sizeof(msg)) < 0)
            return rec_err(r, EPROTO, "ERROR", "malformed");
        return migr_errorf(ECANCELED, "the source aborted: %s", msg);
    }
    if (h->type != MIGR_REC_PAGES && h->bulk_len)
        return rec_err(r, EBADMSG, migr_rec_type_name(h->type), "unexpected bulk data (%u bytes)", h->bulk_len);
    return 0;
}

int migr_recv(struct migr_transport *t, struct migr_hv **out, struct migr_stats *st)
{
    return migr_recv_ex(t, NULL, out, st);
}

int migr_recv_ex(struct migr_transport *t, const struct migr_recv_params *p, struct migr_hv **out,
                 struct migr_stats *st)
{
    struct receiver *r = calloc(1, sizeof(*r));
    struct migr_rec_hdr h;
    uint64_t t0 = migr_now_ns(), t_switch = 0, cpu0 = migr_thread_cpu_ns();
    int err;

    memset(st, 0, sizeof(*st));
    snprintf(st->transport, sizeof(st->transport), "%.*s", (int)strcspn(t->peer, ":"), t->peer);
    if (!r || !(r->meta = malloc(MIGR_META_MAX))) {
        err = -ENOMEM;
        goto fail;
    }
    r->t = t;
    r->st = st;
    r->can_populate = true;
    r->decode_threads = p && p->decode_threads ? p->decode_threads : 1;
    r->postcopy_timeout_ms = p && p->postcopy_timeout_ms ? p->postcopy_timeout_ms : 10000;
    if ((err = migr_preamble_recv(t)) < 0 || (err = next(r, &h)) < 0)
        goto fail;
    if (h.type != MIGR_REC_HELLO) {
        err = rec_err(r, EPROTO, migr_rec_type_name(h.type), "the stream must start with HELLO");
        goto fail;
    }
    if ((err = on_hello(r, &h)) < 0)
        goto fail;
    for (;;) {
        if ((err = next(r, &h)) < 0)
            goto fail;
        if (h.type == MIGR_REC_PAGES && !r->handover) {
            if ((err = on_pages(r, &h)) < 0)
                goto fail;
        } else if (h.type == MIGR_REC_FAULT_CHANNEL && r->postcopy) {
            if ((err = engine_postcopy_on_channel(r, &h)) < 0)
                goto fail;
        } else if (h.type == MIGR_REC_DISCARD && r->postcopy) {
            if ((err = on_discard(r, &h)) < 0)
                goto fail;
        } else if (h.type == MIGR_REC_ROUND_END && !r->handover) {
            struct migr_round_end re;
            if ((err = migr_round_end_decode(r->meta, h.meta_len, &re)) < 0)
                goto fail;
            engine_prefault_stop(r); /* round 1 is in; later rounds land in allocated pages */
            /* the end of a discard round: the source pauses once we are done */
            if (r->discarded && (err = send_ack(r, MIGR_REC_READY)) < 0)
                goto fail;
            r->discarded = 0;
        } else if (h.type == MIGR_REC_STATE) {
            free(r->state);
            if (!(r->state = malloc(h.meta_len ? h.meta_len : 1))) {
                err = -ENOMEM;
                goto fail;
            }
            memcpy(r->state, r->meta, h.meta_len);
            r->state_len = h.meta_len;
            st->state_bytes = h.meta_len;
        } else if (h.type == MIGR_REC_SWITCHOVER) {
            t_switch = migr_now_ns();
            engine_prefault_stop(r);
            if ((err = on_switchover(r, &h)) < 0)
                goto fail;
            break;
        } else {
            err = rec_err(r, EPROTO, migr_rec_type_name(h.type), "unexpected before SWITCHOVER");
            goto fail;
        }
    }
    st->verified = true;
    if ((err = send_ack(r, MIGR_REC_READY)) < 0)
        goto fail;
    if ((err = next(r, &h)) < 0)
        goto fail;
    if (h.type != MIGR_REC_COMMIT) {
        err = rec_err(r, EPROTO, migr_rec_type_name(h.type), "expected COMMIT");
        goto fail;
    }
    /* The guest is ours now. */
    if (r->postcopy) {
        /* DONE goes before the resume here: once the guest runs, its faults
         * produce PAGE_REQ records, which must follow DONE on the wire. */
        if ((err = engine_postcopy_start(r)) < 0 || (err = send_ack(r, MIGR_REC_DONE)) < 0)
            goto fail;
    }
    if ((err = r->hv->ops->resume(r->hv)) < 0)
        goto fail;
    if (r->postcopy && (err = engine_postcopy_start_epochs(r)) < 0)
        goto fail;
    uint64_t t_run = migr_now_ns();
    st->downtime_ns = t_run - t_switch;
    if (!r->postcopy && send_ack(r, MIGR_REC_DONE) < 0)
        fprintf(stderr, "migr: recv: DONE not delivered (%s); the guest runs here\n", migr_last_error());
    if (r->postcopy) {
        uint64_t p0 = migr_now_ns();
        if ((err = engine_postcopy_run(r)) < 0)
            goto fail;
        st->postcopy_ns = migr_now_ns() - p0;
        engine_postcopy_finish(r);
    }
    migr_transport_close(r->fch);
    st->total_ns = migr_now_ns() - t0;
    st->bytes_sent = t->bytes_recv;
    engine_account(st, t, cpu0);
    *out = r->hv;
    engine_decoder_destroy(r);
    free(r->meta);
    free(r->received);
    free(r->torn);
    free(r->nonzero);
    free(r->alloc);
    free(r->state);
    free(r);
    return 0;

fail:
    snprintf(st->error, sizeof(st->error), "%s", migr_last_error()[0] ? migr_last_error() : strerror(-err));
    if (err != -EPIPE && err != -ECONNRESET && !st->cancelled && !strstr(st->error, "the source aborted"))
        migr_rec_send_error(t, -err, st->error);
    /* Before COMMIT the source still owns the guest: drop ours. */
    if (r) {
        engine_prefault_stop(r);
        if (r->pc)
            engine_postcopy_finish(r);
        engine_decoder_destroy(r);
        migr_transport_close(r->fch);
        migr_hv_destroy(r->hv);
        free(r->meta);
        free(r->received);
        free(r->torn);
        free(r->nonzero);
        free(r->alloc);
        free(r->state);
    }
    free(r);
    st->total_ns = migr_now_ns() - t0;
    engine_account(st, t, cpu0);
    migr_errorf(-err, "%s", st->error);
    return err;
}
