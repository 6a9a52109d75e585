/* engine: post-copy, destination side.
 *
 * The guest runs before all of its memory is here. Guest RAM is registered
 * with userfaultfd (MISSING): a vCPU that touches a missing page blocks in
 * the host page fault (KVM resolves guest faults through the host mapping)
 * until the page is placed with UFFDIO_COPY. A fault thread turns fault
 * events into PAGE_REQ records; the main thread places every page that
 * arrives (requested or pushed) and, when all RAM is resident, sends
 * COMPLETE and unregisters.
 *
 * Page states (under pc->lock):
 *   resident   the page holds its final contents
 *   zero       known to be zero, not allocated; a fault on it is resolved
 *              here with UFFDIO_ZEROPAGE, without asking the source
 *   requested  a PAGE_REQ was sent; whoever makes the page resident or zero
 *              must wake the faulting vCPU (UFFDIO_COPY and UFFDIO_ZEROPAGE do)
 *
 * With a fault channel (FAULT_CHANNEL) the fault thread sends its PAGE_REQ
 * there and places the answers itself, as they come: a fault is served by
 * one thread here and one at the source, with nothing queued in front of
 * it. The main thread places the push meanwhile. Both copy pages in outside
 * the lock (UFFDIO_COPY refuses a page that is there already: EEXIST, so a
 * page is placed exactly once) and mark them resident under it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/uffd.h"
#include "engine/engine_impl.h"
#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/dirty.h"
#include "migr/record.h"
#include "engine/validate.h"
#include "engine/postcopy_sort.h"

#define MAX_SAMPLES (1u << 20)

/* One stream that brings pages: the main one or the fault channel. */
struct pc_chan {
    struct migr_transport *t;
    uint8_t *meta;                /* MIGR_META_MAX */
    uint64_t *seq;
    uint8_t *buf;                 /* bulk data of one PAGES record */
    size_t buf_cap;
    uint64_t hdr_ns;              /* when the header of the record being placed was read */
};

#define PHASE_SAMPLES (1u << 16)
#define WAITQ (1u << 12)          /* outstanding faults watched (more are not timed) */
#define RELEASE_TIMEOUT_MS 10000

struct postcopy_dst {
    int uffd, stopfd;
    pthread_t fault_thread;
    bool thread_started;
    pthread_mutex_t lock;         /* page states */
    pthread_mutex_t send_lock;    /* records to the source: fault thread + main thread */
    uint64_t *resident, *zero, *requested;
    uint64_t *req_ns;             /* when the fault was seen, per page */
    uint64_t resolved, npages;
    float *lat_us;                /* fault-to-placed samples */
    uint32_t nlat;
    /* Where a fault's time goes (fault channel only): event read -> request
     * sent -> answer's header read -> page placed. */
    uint64_t *sent_ns;            /* when its PAGE_REQ was sent, per page */
    float *ph_req, *ph_wait, *ph_place;
    uint32_t nph;
    struct pc_chan main, fch;
    uint64_t fseq;
    int fault_err;                /* the fault thread's failure, if any */
    char fault_why[256];
    /* liveness (the fault thread watches): a fault unanswered, or the main
     * stream silent, for r->postcopy_timeout_ms ends post-copy */
    uint64_t main_rx_ns;          /* last record on the main stream; atomic */
    uint64_t fch_busy_ns;         /* a fault-channel record is being read since (0: none); atomic */
    /* cancellable: the lease (format 1.4). The guest may run here only while
     * the last checkpoint the source acknowledged (EPOCH_ACK) was sent less
     * than lease_ms ago; the source takes it back after twice that without a
     * record from us. */
    uint64_t lease_ns;            /* when the last acknowledged checkpoint was sent (start: post-copy's) */
    uint64_t lease_ms;
    uint64_t epoch_sent_ns[64];   /* when checkpoint n's EPOCH_END went, at [n % 64] */
    uint64_t *waitq;              /* RAM indices of faults sent to the source, in order */
    uint32_t wq_head, wq_tail;
    pthread_t watch_thread;
    bool watch_started;
    int dead_err;                 /* the watchdog gave up on the source (set before the links are cut) */
    char dead_why[256];
    /* cancellable post-copy: checkpoints back to the source */
    struct migr_dirty *trk;
    pthread_t epoch_thread;
    bool epoch_started, epoch_stop;
    bool cancel_req;              /* CANCEL arrived: the epoch thread sends the last checkpoint */
    bool final_sent;              /* ... and has sent it (the guest stays paused) */
    pthread_cond_t epoch_cond;
    uint64_t epoch;
    uint64_t *ebm;
    uint8_t *snap;
    size_t snap_cap;
    struct engine_batch cbatch;   /* the checkpoint's PAGES records */
    int epoch_err;
    /* Every page was resident at the switch: no userfaultfd, no tracker, no
     * threads; the post-copy phase is DONE then COMPLETE (docs/format.md:
     * it runs from DONE until every page is resident, checkpoints optional). */
    bool all_here;
};

#define EPOCH_MS 50

int engine_recv_send(struct receiver *r, uint16_t type, const void *meta, uint32_t len)
{
    if (!r->pc)
        return migr_rec_send(r->t, type, meta, len, NULL, 0);
    pthread_mutex_lock(&r->pc->send_lock);
    int err = migr_rec_send(r->t, type, meta, len, NULL, 0);
    pthread_mutex_unlock(&r->pc->send_lock);
    return err;
}

int engine_punch(struct receiver *r, uint64_t first, uint64_t n)
{
    uint64_t base = 0;
    for (uint32_t i = 0; i < r->hv->nregions && n; i++) {
        const struct migr_hv_region *g = &r->hv->regions[i];
        uint64_t np = g->size / MIGR_PAGE_SIZE;
        if (first >= base + np) {
            base += np;
            continue;
        }
        uint64_t k = first + n <= base + np ? n : base + np - first; /* the part in this region */
        off_t off = (off_t)(g->memfd_off + (first - base) * MIGR_PAGE_SIZE);
        if (fallocate(g->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)(k * MIGR_PAGE_SIZE)) < 0)
            return migr_errorf_errno(errno, "post-copy: drop stale pages at RAM index %llu (+%llu)",
                                     (unsigned long long)first, (unsigned long long)k);
        first += k;
        n -= k;
        base += np;
    }
    return 0;
}

/* How long the destination waits for its end of the fault channel. */
#define FCH_OPEN_MS 10000

int engine_postcopy_on_channel(struct receiver *r, const struct migr_rec_hdr *h)
{
    if (r->fch)
        return migr_errorf(EPROTO, "record %llu (FAULT_CHANNEL): a second one", (unsigned long long)r->seq);
    int err = migr_transport_side_open(r->t, r->meta, h->meta_len, FCH_OPEN_MS, &r->fch);
    if (err < 0)
        return migr_error_prefix(-err, "record %llu (FAULT_CHANNEL)", (unsigned long long)r->seq);
    return 0;
}

/* Runs of set bits of d (page base + bit) are punched, coalesced with the
 * run carried in *run / *run_len from the words before. */
static int punch_word(uint64_t d, uint64_t base, uint64_t *run, uint64_t *run_len,
                      int (*punch)(void *, uint64_t, uint64_t), void *arg)
{
    while (d) {
        unsigned a = (unsigned)__builtin_ctzll(d);
        uint64_t rest = ~(d >> a);    /* the run's end: the first 0 at or above a */
        unsigned n = rest ? (unsigned)__builtin_ctzll(rest) : 64 - a;
        uint64_t first = base + a;
        if (*run_len && *run + *run_len == first) {
            *run_len += n;
        } else {
            int err = *run_len ? punch(arg, *run, *run_len) : 0;
            if (err < 0)
                return err;
            *run = first;
            *run_len = n;
        }
        d = a + n >= 64 ? 0 : d & ~((2ull << (a + n - 1)) - 1);
    }
    return 0;
}

int64_t engine_pc_sort(const struct engine_pc_pages *p, uint64_t *resident, uint64_t *zero,
                       int (*punch)(void *arg, uint64_t first, uint64_t n), void *arg)
{
    uint64_t words = migr_bitmap_words(p->npages), run = 0, run_len = 0;
    int64_t nvalid = 0;
    int err;
    for (uint64_t w = 0; w < words; w++) {
        uint64_t mask = w + 1 == words && (p->npages & 63) ? (1ull << (p->npages & 63)) - 1 : ~0ull;
        uint64_t recv = p->received[w] & mask, alloc = p->alloc[w] & mask;
        if (!recv && !alloc)
            continue;
        uint64_t valid = recv & ~p->torn[w];
        uint64_t res = valid & (alloc | p->nonzero[w]);
        resident[w] |= res;
        zero[w] |= valid & ~res;
        nvalid += __builtin_popcountll(valid);
        if ((err = punch_word(alloc & ~valid, w * 64, &run, &run_len, punch, arg)) < 0)
            return err;
    }
    if (run_len && (err = punch(arg, run, run_len)) < 0)
        return err;
    return nvalid;
}

static int punch_cb(void *arg, uint64_t first, uint64_t n)
{
    return engine_punch(arg, first, n);
}

static void pc_free(struct postcopy_dst *pc)
{
    free(pc->ebm);
    free(pc->snap);
    pthread_cond_destroy(&pc->epoch_cond);
    if (pc->stopfd >= 0)
        close(pc->stopfd);
    free(pc->resident);
    free(pc->zero);
    free(pc->requested);
    free(pc->req_ns);
    free(pc->lat_us);
    free(pc->sent_ns);
    free(pc->waitq);
    free(pc->ph_req);
    free(pc->main.buf);
    free(pc->fch.buf);
    free(pc->fch.meta);
    pthread_mutex_destroy(&pc->lock);
    pthread_mutex_destroy(&pc->send_lock);
    free(pc);
}

/* The destination's post-copy state, without the parts that depend on the
 * switch (what arrived, the fault channel): NULL if out of memory. */
static struct postcopy_dst *pc_new(const struct migr_hv *hv)
{
    struct postcopy_dst *pc = calloc(1, sizeof(*pc));
    uint64_t words = migr_bitmap_words(hv->ram_pages);
    if (!pc)
        return NULL;
    pc->uffd = pc->stopfd = -1;
    pthread_mutex_init(&pc->lock, NULL);
    pthread_mutex_init(&pc->send_lock, NULL);
    pthread_cond_init(&pc->epoch_cond, NULL);
    pc->npages = hv->ram_pages;
    pc->resident = calloc(words, 8);
    pc->zero = calloc(words, 8);
    pc->requested = calloc(words, 8);
    pc->req_ns = calloc(hv->ram_pages, 8);
    pc->lat_us = malloc(MAX_SAMPLES * sizeof(float));
    pc->sent_ns = calloc(hv->ram_pages, 8);
    pc->waitq = malloc(WAITQ * sizeof(uint64_t));
    pc->ph_req = malloc(3 * PHASE_SAMPLES * sizeof(float));
    pc->ph_wait = pc->ph_req ? pc->ph_req + PHASE_SAMPLES : NULL;
    pc->ph_place = pc->ph_req ? pc->ph_req + 2 * PHASE_SAMPLES : NULL;
    if (!pc->resident || !pc->zero || !pc->requested || !pc->req_ns || !pc->lat_us || !pc->sent_ns || !pc->waitq ||
        !pc->ph_req) {
        pc_free(pc);
        return NULL;
    }
    return pc;
}

/* What the post-copy switch needs, made before the pause where the mode
 * says it will come (HELLO of post-copy and hybrid, the tail's first
 * DISCARD), so that it is not inside the guest's downtime: the state's
 * allocations (~75-120 us for 1 GiB here: their first page touches are
 * faults under this nested hypervisor) and, for cancellable post-copy, the
 * take-back tracker. Starting that tracker is a memslot update that
 * write-protects all of RAM (0.45-0.6 ms for 1 GiB here, opening included).
 * Only a tracker of guest-mode writes can start early: the backend's own
 * (KVM's dirty log) does not see the receiving thread's writes through the
 * host mapping, while the process trackers (for a guest that runs in this
 * process) would trap every page the receiver places. Nothing here is
 * needed: what is missing (out of memory, a tracker that cannot start
 * early or fails to) is made at the switch as before, which reports
 * failures. engine_postcopy_drop_ahead undoes it if no switch comes. */
static bool backend_tracker(const struct migr_hv *hv, const struct migr_dirty_ops *ops)
{
    for (const struct migr_dirty_ops *const *t = hv->ops->trackers; t && *t; t++)
        if (*t == ops)
            return true;
    return false;
}

void engine_postcopy_ahead(struct receiver *r)
{
    struct migr_hv *hv = r->hv;
    struct migr_dirty *d;
    if (r->pc_ahead || r->pc || !hv || !(r->pc_ahead = pc_new(hv)))
        return;
    if (!r->cancellable || !hv->ops->trackers || hv->ops->trackers == migr_dirty_process_trackers)
        return;
    if (migr_dirty_open("auto", hv, &d) == 0 && backend_tracker(hv, d->ops) && migr_dirty_start(d) == 0) {
        r->pc_ahead->trk = d;
        return;
    }
    if (d)
        migr_dirty_close(d);
    migr_clear_error(); /* not a failure: the switch opens it (and reports why it cannot) */
}

void engine_postcopy_drop_ahead(struct receiver *r)
{
    if (!r->pc_ahead)
        return;
    migr_dirty_close(r->pc_ahead->trk);
    pc_free(r->pc_ahead);
    r->pc_ahead = NULL;
}

int engine_postcopy_prepare(struct receiver *r)
{
    struct migr_hv *hv = r->hv;
    struct postcopy_dst *pc = r->pc_ahead ? r->pc_ahead : pc_new(hv);
    r->st->switch_ahead = r->pc_ahead && (!r->cancellable || r->pc_ahead->trk);
    r->pc_ahead = NULL;
    if (!pc)
        return -ENOMEM;
    r->pc = pc;
    pc->main = (struct pc_chan){.t = r->t, .meta = r->meta, .seq = &r->seq};
    pc->fch = (struct pc_chan){.t = r->fch, .seq = &pc->fseq};
    if (r->fch && !(pc->fch.meta = malloc(MIGR_META_MAX)))
        return -ENOMEM;
    r->st->postcopy.fault_channel = r->fch != NULL;

    /* What arrived in pre-copy rounds and is still valid stays (a page we
     * cleared for a ZERO entry too: it holds its final zeros); torn copies
     * are dropped (DISCARD dropped the stale ones already). A word of 64
     * pages at a time: this runs inside the pause. */
    struct engine_pc_pages pages = {.received = r->received, .torn = r->torn, .alloc = r->alloc,
                                    .nonzero = r->nonzero, .npages = hv->ram_pages};
    int64_t valid = engine_pc_sort(&pages, pc->resident, pc->zero, punch_cb, r);
    if (valid < 0)
        return (int)valid;
    pc->resolved = (uint64_t)valid;
    if ((pc->all_here = pc->resolved == pc->npages))
        return 0;

    /* Not user-mode-only: the kernel's own accesses to guest RAM must wait
     * for their pages too. */
    int fd = uffd_open(0, 0, "post-copy");
    if (fd < 0)
        return fd;
    pc->uffd = fd;
    int err = uffd_register_ram(fd, hv, UFFDIO_REGISTER_MODE_MISSING, 1ull << _UFFDIO_COPY, "post-copy");
    if (err < 0)
        return err;
    pc->stopfd = eventfd(0, EFD_CLOEXEC);
    if (pc->stopfd < 0)
        return migr_errorf_errno(errno, "post-copy: eventfd");
    return 0;
}

static int64_t addr_index(struct migr_hv *hv, uint64_t addr)
{
    uint64_t base = 0;
    for (uint32_t i = 0; i < hv->nregions; i++) {
        uint64_t start = (uint64_t)(uintptr_t)hv->regions[i].host;
        if (addr >= start && addr - start < hv->regions[i].size)
            return (int64_t)(base + (addr - start) / MIGR_PAGE_SIZE);
        base += hv->regions[i].size / MIGR_PAGE_SIZE;
    }
    return -1;
}

/* Resolve a known-zero page (waking whoever faulted on it). Lock held. */
static int place_zero(struct postcopy_dst *pc, uint8_t *page)
{
    struct uffdio_zeropage z = {.range = {.start = (uint64_t)(uintptr_t)page, .len = MIGR_PAGE_SIZE}};
    if (ioctl(pc->uffd, UFFDIO_ZEROPAGE, &z) == 0 || errno == EEXIST)
        return errno == EEXIST ? (ioctl(pc->uffd, UFFDIO_WAKE, &z.range), 0) : 0;
    return -errno;
}

static int place_pages(struct receiver *r, struct pc_chan *ch, const struct migr_rec_hdr *h);

/* Fault channel: one answer (PAGES) arrived; place it here. */
static int fch_read(struct receiver *r)
{
    struct postcopy_dst *pc = r->pc;
    struct migr_rec_hdr h;
    __atomic_store_n(&pc->fch_busy_ns, migr_now_ns(), __ATOMIC_RELAXED); /* the watchdog times the record */
    int err = migr_rec_recv(r->fch, pc->fch.seq, &h, pc->fch.meta, MIGR_META_MAX);
    if (err < 0)
        err = migr_error_prefix(-err, "fault channel");
    else if (h.type != MIGR_REC_PAGES)
        err = migr_errorf(EPROTO, "fault channel: record %llu (%s) is not PAGES",
                          (unsigned long long)*pc->fch.seq, migr_rec_type_name(h.type));
    pc->fch.hdr_ns = migr_now_ns();
    if (err == 0)
        err = place_pages(r, &pc->fch, &h);
    __atomic_store_n(&pc->fch_busy_ns, 0, __ATOMIC_RELAXED);
    return err;
}

/* The source must answer every fault and keep the main stream going (its
 * push, or a page now and then once all went out) until COMPLETE. If it does
 * not — dead without a word, or a link that silently stopped forwarding —
 * post-copy ends here within the time-out instead of leaving the guest
 * frozen on both sides: the links are shut down, so the source (if it still
 * runs) sees the break and takes the guest back. A thread of its own: the
 * readers of both streams may sit in a blocking read that only this ends. */
/* t (0: unset) lies more than limit before now. Other threads store their
 * times while we look, so t may be a little after now. */
static bool older(uint64_t now, uint64_t t, uint64_t limit)
{
    return t && now > t && now - t > limit;
}

static int check_alive(struct receiver *r, uint64_t now)
{
    struct postcopy_dst *pc = r->pc;
    uint64_t limit = (uint64_t)r->postcopy_timeout_ms * 1000000ull;
    if (!limit)
        return 0;
    pthread_mutex_lock(&pc->lock);
    if (pc->resolved >= pc->npages) { /* every page is here: nothing left to wait for */
        pthread_mutex_unlock(&pc->lock);
        return 0;
    }
    while (pc->wq_head != pc->wq_tail) {
        uint64_t idx = pc->waitq[pc->wq_head % WAITQ];
        if (!migr_bit_test(pc->resident, idx) && !migr_bit_test(pc->zero, idx))
            break;
        pc->wq_head++;
    }
    uint64_t oldest = pc->wq_head != pc->wq_tail ? pc->waitq[pc->wq_head % WAITQ] : UINT64_MAX;
    uint64_t asked = oldest != UINT64_MAX ? pc->req_ns[oldest] : 0;
    pthread_mutex_unlock(&pc->lock);
    uint64_t heard = __atomic_load_n(&pc->main_rx_ns, __ATOMIC_RELAXED);
    uint64_t lease = __atomic_load_n(&pc->lease_ns, __ATOMIC_RELAXED);
    uint64_t lease_ms = __atomic_load_n(&pc->lease_ms, __ATOMIC_RELAXED);
    if (r->cancellable && older(now, lease, lease_ms * 1000000ull))
        return migr_errorf(ETIMEDOUT, "no checkpoint acknowledged by the source for %llu ms: the guest stops "
                           "here (the source takes it back after twice that)", (unsigned long long)lease_ms);
    uint64_t busy = __atomic_load_n(&pc->fch_busy_ns, __ATOMIC_RELAXED);
    if (older(now, busy, limit))
        return migr_errorf(ETIMEDOUT, "the fault channel stopped in the middle of a record for %u ms "
                           "(a link that stopped forwarding?)", r->postcopy_timeout_ms);
    if (older(now, asked, limit))
        return migr_errorf(ETIMEDOUT, "the source did not answer a fault on page 0x%llx within %u ms%s",
                           (unsigned long long)migr_hv_index_pfn(r->hv, oldest), r->postcopy_timeout_ms,
                           r->fch ? " (fault channel lost?)" : "");
    if (older(now, heard, limit))
        return migr_errorf(ETIMEDOUT, "nothing from the source for %u ms (dead source or broken link)",
                           r->postcopy_timeout_ms);
    return 0;
}

static void *watch_main(void *arg)
{
    struct receiver *r = arg;
    struct postcopy_dst *pc = r->pc;
    for (;;) {
        struct pollfd p = {.fd = pc->stopfd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0)
            return NULL;
        int dead = check_alive(r, migr_now_ns());
        if (dead < 0) {
            snprintf(pc->dead_why, sizeof(pc->dead_why), "%s", migr_last_error());
            __atomic_store_n(&pc->dead_err, dead, __ATOMIC_RELEASE);
            /* wake both streams' readers: they fail, and the reason is ours */
            r->t->ops->shutdown(r->t);
            if (r->fch)
                r->fch->ops->shutdown(r->fch);
            return NULL;
        }
    }
}

static void *fault_main(void *arg)
{
    struct receiver *r = arg;
    struct postcopy_dst *pc = r->pc;
    struct uffd_msg msgs[64];
    struct migr_range req[64];
    uint8_t meta[8 + 64 * 16];
    int np = r->fch ? 3 : 2;
    for (;;) {
        struct pollfd p[3] = {{.fd = pc->uffd, .events = POLLIN}, {.fd = pc->stopfd, .events = POLLIN},
                              {.fd = r->fch ? r->fch->fd : -1, .events = POLLIN}};
        if (poll(p, (nfds_t)np, -1) < 0) {
            if (errno == EINTR)
                continue;
            pc->fault_err = -errno;
            break;
        }
        if (p[1].revents)
            break;
        if (np == 3 && p[2].revents) {
            int err = fch_read(r);
            if (err < 0) {
                pc->fault_err = err;
                snprintf(pc->fault_why, sizeof(pc->fault_why), "%s", migr_last_error());
                break;
            }
        }
        if (!p[0].revents)
            continue;
        ssize_t n = read(pc->uffd, msgs, sizeof(msgs));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            pc->fault_err = migr_errorf_errno(errno, "post-copy: read userfaultfd");
            break;
        }
        uint64_t now = migr_now_ns();
        uint32_t nreq = 0;
        pthread_mutex_lock(&pc->lock);
        for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
                continue;
            uint64_t addr = msgs[i].arg.pagefault.address & ~(uint64_t)(MIGR_PAGE_SIZE - 1);
            int64_t idx = addr_index(r->hv, addr);
            if (idx < 0)
                continue;
            r->st->postcopy.faults++;
            uint8_t *page = (uint8_t *)(uintptr_t)addr;
            if (migr_bit_test(pc->resident, (uint64_t)idx)) {
                struct uffdio_range w = {.start = addr, .len = MIGR_PAGE_SIZE};
                ioctl(pc->uffd, UFFDIO_WAKE, &w);
            } else if (migr_bit_test(pc->zero, (uint64_t)idx)) {
                if (place_zero(pc, page) < 0 && !pc->fault_err)
                    pc->fault_err = migr_errorf_errno(errno, "post-copy: UFFDIO_ZEROPAGE at RAM index %lld",
                                                      (long long)idx);
            } else if (!migr_bit_test(pc->requested, (uint64_t)idx)) {
                migr_bit_set(pc->requested, (uint64_t)idx);
                pc->req_ns[idx] = now;
                if (pc->wq_tail - pc->wq_head < WAITQ)
                    pc->waitq[pc->wq_tail++ % WAITQ] = (uint64_t)idx;
                req[nreq++] = (struct migr_range){migr_hv_index_pfn(r->hv, (uint64_t)idx), 1};
            }
        }
        pthread_mutex_unlock(&pc->lock);
        if (nreq) {
            int len = migr_ranges_encode("PAGE_REQ", req, nreq, meta, sizeof(meta));
            int err = len < 0 ? len
                      : r->fch ? migr_rec_send(r->fch, MIGR_REC_PAGE_REQ, meta, (uint32_t)len, NULL, 0)
                               : engine_recv_send(r, MIGR_REC_PAGE_REQ, meta, (uint32_t)len);
            if (err < 0) {
                pc->fault_err = err;
                snprintf(pc->fault_why, sizeof(pc->fault_why), "%s", migr_last_error());
                break;
            }
            uint64_t sent = migr_now_ns();
            pthread_mutex_lock(&pc->lock);
            for (uint32_t i = 0; i < nreq; i++) {
                int64_t idx = migr_hv_pfn_index(r->hv, req[i].pfn);
                if (idx >= 0)
                    pc->sent_ns[idx] = sent;
            }
            pthread_mutex_unlock(&pc->lock);
            r->st->postcopy.demand_pages += nreq;
            /* No busy wait for the answer here: measured on this 2-CPU
             * machine, spinning 30 us took the CPU the source's fault server
             * needed (p50 25-56 us with, 22-29 us without). */
        }
    }
    return NULL;
}

/* Cancellable post-copy: send the source a consistent checkpoint — the pages
 * the guest wrote since the last one, copied while it is paused, and its
 * vCPU state — so that it can take the guest back. final: the guest is
 * already paused and stays so (answer to CANCEL). */
static int checkpoint(struct receiver *r, bool final)
{
    struct postcopy_dst *pc = r->pc;
    struct migr_hv *hv = r->hv;
    uint8_t *blob = NULL;
    size_t blen = 0;
    int err;
    if (!final && (err = hv->ops->pause(hv)) < 0)
        return err;
    memset(pc->ebm, 0, migr_bitmap_words(hv->ram_pages) * 8);
    long n = migr_dirty_harvest(pc->trk, pc->ebm);
    err = n < 0 ? (int)n : 0;
    uint64_t count = n < 0 ? 0 : migr_bitmap_count(pc->ebm, hv->ram_pages);
    if (!err && count * MIGR_PAGE_SIZE > pc->snap_cap) {
        free(pc->snap);
        pc->snap_cap = MIGR_ALIGN_UP(count * MIGR_PAGE_SIZE, 1u << 20);
        if (!(pc->snap = malloc(pc->snap_cap))) {
            pc->snap_cap = 0;
            err = -ENOMEM;
        }
    }
    uint64_t k = 0;
    for (uint64_t i = 0; !err && i < hv->ram_pages; i++)
        if (migr_bit_test(pc->ebm, i))
            memcpy(pc->snap + (k++) * MIGR_PAGE_SIZE, migr_hv_page(hv, i), MIGR_PAGE_SIZE);
    if (!err)
        err = hv->ops->save_state(hv, &blob, &blen);
    if (!final) {
        int e2 = hv->ops->resume(hv);
        err = err ? err : e2;
    }
    /* Now send, with the guest running again: RAW pages of the snapshot
     * (a zero page too: the source applies a checkpoint page by page). */
    struct engine_batch *b = &pc->cbatch;
    *b = (struct engine_batch){.t = r->t, .round = (uint32_t)pc->epoch};
    k = 0;
    for (uint64_t i = 0; !err && i < hv->ram_pages; i++) {
        if (!migr_bit_test(pc->ebm, i))
            continue;
        uint8_t *data = pc->snap + (k++) * MIGR_PAGE_SIZE;
        engine_batch_put(b, &(struct migr_page_entry){.pfn = migr_hv_index_pfn(hv, i), .enc = MIGR_ENC_RAW,
                                                      .len = MIGR_PAGE_SIZE,
                                                      .crc = migr_crc32c(0, data, MIGR_PAGE_SIZE)}, data);
        if (engine_batch_full(b) || k == count) {
            pthread_mutex_lock(&pc->send_lock);
            err = engine_batch_flush(b);
            pthread_mutex_unlock(&pc->send_lock);
        }
    }
    if (!err && blen > MIGR_META_MAX)
        err = migr_errorf(E2BIG, "checkpoint: state of %zu bytes", blen);
    if (!err)
        err = engine_recv_send(r, MIGR_REC_STATE, blob, (uint32_t)blen);
    free(blob);
    if (!err) {
        uint8_t m[MIGR_ACK_SIZE];
        uint64_t next = pc->epoch + 1;
        struct migr_ack a = {.pages = next, .t_ns = final ? MIGR_EPOCH_FINAL : 0};
        int len = migr_ack_encode(&a, m, sizeof(m));
        /* before it goes: the source cannot have it earlier */
        __atomic_store_n(&pc->epoch_sent_ns[next % 64], migr_now_ns(), __ATOMIC_RELAXED);
        __atomic_store_n(&pc->epoch, next, __ATOMIC_RELEASE);
        err = len < 0 ? len : engine_recv_send(r, MIGR_REC_EPOCH_END, m, (uint32_t)len);
        r->st->postcopy.epochs = pc->epoch;
        r->st->postcopy.back_pages += count;
    }
    return err;
}

static void *epoch_main(void *arg)
{
    struct receiver *r = arg;
    struct postcopy_dst *pc = r->pc;
    pthread_mutex_lock(&pc->lock);
    while (!pc->epoch_stop) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += EPOCH_MS * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        if (!pc->cancel_req)
            pthread_cond_timedwait(&pc->epoch_cond, &pc->lock, &dl);
        if (pc->epoch_stop)
            break;
        bool final = pc->cancel_req;
        pthread_mutex_unlock(&pc->lock);
        /* The last checkpoint (CANCEL) is taken here, not on the main thread:
         * a pause waits for every vCPU to reach a consistent point, and a
         * vCPU blocked in a fault (a proc thread mid-page) gets there only
         * when the main thread places its page. */
        int err = final ? r->hv->ops->pause(r->hv) : 0;
        if (err == 0)
            err = checkpoint(r, final);
        pthread_mutex_lock(&pc->lock);
        if (final) {
            pc->final_sent = err == 0;
            if (err < 0) {
                /* The source then takes the guest back from the last
                 * complete checkpoint once the link closes. */
                pc->epoch_err = err;
                migr_logf(MIGR_LOG_WARN, "post-copy: last checkpoint failed: %s", migr_last_error());
                r->t->ops->shutdown(r->t);
            }
            break;
        }
        if (err < 0) {
            /* The source keeps the last complete checkpoint; we go on without. */
            pc->epoch_err = err;
            migr_logf(MIGR_LOG_WARN, "post-copy checkpoint failed: %s", migr_last_error());
            break;
        }
    }
    pthread_mutex_unlock(&pc->lock);
    return NULL;
}

/* After the resume: checkpoints pause and resume the guest, so they must not
 * start before it runs. */
int engine_postcopy_start_epochs(struct receiver *r)
{
    struct postcopy_dst *pc = r->pc;
    if (pc->all_here) { /* nothing to take back: the guest's writes are its own */
        migr_dirty_close(pc->trk);
        pc->trk = NULL;
    }
    if (!r->cancellable || pc->all_here)
        return 0;
    int err = pthread_create(&pc->epoch_thread, NULL, epoch_main, r);
    if (err)
        return migr_errorf(err, "post-copy: start the checkpoint thread");
    pc->epoch_started = true;
    return 0;
}

static void stop_epochs(struct postcopy_dst *pc)
{
    if (!pc->epoch_started)
        return;
    pthread_mutex_lock(&pc->lock);
    pc->epoch_stop = true;
    pthread_cond_broadcast(&pc->epoch_cond);
    pthread_mutex_unlock(&pc->lock);
    pthread_join(pc->epoch_thread, NULL);
    pc->epoch_started = false;
}

int engine_postcopy_start(struct receiver *r)
{
    struct postcopy_dst *pc = r->pc;
    int err;
    pc->main_rx_ns = migr_now_ns(); /* the source's silence is timed from here */
    pc->lease_ns = pc->main_rx_ns;
    pc->lease_ms = r->postcopy_timeout_ms;
    /* Nothing to fetch: the guest never faults, and COMPLETE follows DONE
     * before a checkpoint is due, so nothing tracks its writes either (after
     * COMPLETE they are the destination's alone). */
    if (pc->all_here)
        return 0; /* a tracker started ahead is closed after the resume (engine_postcopy_start_epochs) */
    if (r->cancellable) {
        /* Track the guest's writes from its first instruction here. */
        if (!pc->trk && ((err = migr_dirty_open("auto", r->hv, &pc->trk)) < 0 || (err = migr_dirty_start(pc->trk)) < 0))
            return migr_error_prefix(-err, "cancellable post-copy");
        /* proc: "mprotect", since post-copy's userfaultfd holds the range */
        snprintf(r->st->tracker, sizeof(r->st->tracker), "%s", pc->trk->ops->name);
        if (!(pc->ebm = calloc(migr_bitmap_words(r->hv->ram_pages), 8)))
            return -ENOMEM;
    }
    if ((err = pthread_create(&pc->fault_thread, NULL, fault_main, r)) != 0)
        return migr_errorf(err, "post-copy: start the fault thread");
    pc->thread_started = true;
    if ((err = pthread_create(&pc->watch_thread, NULL, watch_main, r)) != 0)
        return migr_errorf(err, "post-copy: start the watchdog");
    pc->watch_started = true;
    return 0;
}

static void record_latency(struct receiver *r, const struct pc_chan *ch, uint64_t idx, uint64_t now)
{
    struct postcopy_dst *pc = r->pc;
    if (!migr_bit_test(pc->requested, idx))
        return;
    double us = (double)(now - pc->req_ns[idx]) / 1000.0;
    if (pc->nlat < MAX_SAMPLES)
        pc->lat_us[pc->nlat++] = (float)us;
    if (ch == &pc->fch && pc->sent_ns[idx] && pc->nph < PHASE_SAMPLES && ch->hdr_ns >= pc->sent_ns[idx]) {
        pc->ph_req[pc->nph] = (float)((double)(pc->sent_ns[idx] - pc->req_ns[idx]) / 1000.0);
        pc->ph_wait[pc->nph] = (float)((double)(ch->hdr_ns - pc->sent_ns[idx]) / 1000.0);
        pc->ph_place[pc->nph++] = (float)((double)(now - ch->hdr_ns) / 1000.0);
    }
    int i = 0;
    while (i + 1 < MIGR_FAULT_BUCKETS && us >= MIGR_FAULT_BUCKET_US[i])
        i++;
    r->st->postcopy.fault_hist[i]++;
    migr_bit_clear(pc->requested, idx); /* counted once */
}

/* Place n consecutive RAW pages [k0, k0+n) from data: one UFFDIO_COPY for
 * the run (a page already there, placed by the other stream, ends a part
 * with EEXIST and is skipped). Marks what this call placed resident. */
static int copy_run(struct receiver *r, const struct pc_chan *ch, uint64_t k0, uint64_t n, const uint8_t *data)
{
    struct postcopy_dst *pc = r->pc;
    uint64_t i = 0;
    bool single = false;
    while (i < n) {
        uint8_t *page = migr_hv_page(r->hv, k0 + i);
        struct uffdio_copy c = {.dst = (uint64_t)(uintptr_t)page, .src = (uint64_t)(uintptr_t)(data + i * MIGR_PAGE_SIZE),
                                .len = (single ? 1 : n - i) * MIGR_PAGE_SIZE};
        int rc = ioctl(pc->uffd, UFFDIO_COPY, &c);
        int e = errno;
        uint64_t done = rc == 0 ? c.len / MIGR_PAGE_SIZE : c.copy > 0 ? (uint64_t)c.copy / MIGR_PAGE_SIZE : 0;
        uint64_t now = migr_now_ns();
        pthread_mutex_lock(&pc->lock);
        for (uint64_t k = k0 + i; k < k0 + i + done; k++) {
            migr_bit_set(pc->resident, k);
            record_latency(r, ch, k, now);
            pc->resolved++;
            r->st->raw_pages++;
            r->st->pages++;
        }
        pthread_mutex_unlock(&pc->lock);
        i += done;
        if (rc == 0) {
            if (single)
                continue;
            break;
        }
        if (e == ENOENT && !single && n - i > 1)
            single = true; /* the run spans two mappings (the mprotect tracker splits them): page by page */
        else if (e == EEXIST && done == 0)
            i++; /* this page is there: the other stream placed it */
        else if (e != EAGAIN && e != EEXIST)
            return migr_errorf_errno(e, "post-copy: UFFDIO_COPY pages 0x%llx (+%llu)",
                                     (unsigned long long)migr_hv_index_pfn(r->hv, k0 + i),
                                     (unsigned long long)(n - i));
    }
    return 0;
}

/* Post-copy placement of one record (either stream): consecutive RAW pages
 * gather into a run placed with one UFFDIO_COPY, ZERO runs are marked (and
 * resolved where a fault waits). */
struct uffd_place {
    struct receiver *r;
    struct pc_chan *ch;
    const uint8_t *data;          /* the next RAW page's bytes in ch->buf */
    const uint8_t *run_data;
    uint64_t run0, run_n;
};

static int flush_run(struct uffd_place *u)
{
    int err = u->run_n ? copy_run(u->r, u->ch, u->run0, u->run_n, u->run_data) : 0;
    u->run_n = 0;
    return err;
}

static int uffd_data(void *arg, uint32_t i, const struct migr_page_entry *e, uint64_t idx)
{
    struct uffd_place *u = arg;
    struct postcopy_dst *pc = u->r->pc;
    /* Read without the lock (the fault thread wants it): resident and zero
     * bits are only ever set in this phase, so a set bit is the truth, and a
     * page placed meanwhile ends its UFFDIO_COPY with EEXIST. */
    bool dup = (__atomic_load_n(&pc->resident[idx >> 6], __ATOMIC_RELAXED) |
                __atomic_load_n(&pc->zero[idx >> 6], __ATOMIC_RELAXED)) >> (idx & 63) & 1;
    int err;
    if (u->run_n && (dup || u->run0 + u->run_n != idx) && (err = flush_run(u)) < 0)
        return err;
    /* A duplicate (request and push crossed) is dropped unread: the source
     * may have sent it from a page a checkpoint was rewriting. */
    if (!dup && migr_crc32c(0, u->data, MIGR_PAGE_SIZE) != e->crc)
        /* the source is paused: a bad CRC now is corruption, not a torn page */
        return migr_errorf(EBADMSG, "record %llu (PAGES): entry %u: page 0x%llx fails its CRC",
                           (unsigned long long)*u->ch->seq, i, (unsigned long long)e->pfn);
    if (!dup) {
        if (!u->run_n) {
            u->run0 = idx;
            u->run_data = u->data;
        }
        u->run_n++;
    }
    u->data += MIGR_PAGE_SIZE;
    return 0;
}

static int uffd_zero(void *arg, uint32_t i, const struct migr_page_entry *e, uint64_t idx, uint64_t n)
{
    struct uffd_place *u = arg;
    struct receiver *r = u->r;
    struct postcopy_dst *pc = r->pc;
    int err = flush_run(u);
    if (err < 0)
        return err;
    pthread_mutex_lock(&pc->lock);
    for (uint64_t k = idx; k < idx + n; k++) {
        if (migr_bit_test(pc->resident, k) || migr_bit_test(pc->zero, k))
            continue;
        migr_bit_set(pc->zero, k);
        if (migr_bit_test(pc->requested, k) && (err = place_zero(pc, migr_hv_page(r->hv, k))) < 0) {
            pthread_mutex_unlock(&pc->lock);
            return migr_errorf(-err, "post-copy: UFFDIO_ZEROPAGE page 0x%llx", (unsigned long long)e->pfn);
        }
        r->st->zero_pages++;
        record_latency(r, u->ch, k, migr_now_ns());
        pc->resolved++;
        r->st->pages++;
    }
    pthread_mutex_unlock(&pc->lock);
    return 0;
}

static const struct engine_placement uffd_placement = {
    .encs = ENGINE_ENCS_PLAIN, .phase = "the post-copy phase", .zero = uffd_zero, .data = uffd_data};

/* One PAGES record of the post-copy phase, from either stream. */
static int place_pages(struct receiver *r, struct pc_chan *ch, const struct migr_rec_hdr *h)
{
    uint32_t round, count;
    int err = engine_pages_header(ch->meta, h->meta_len, h->bulk_len, *ch->seq, &round, &count);
    if (err < 0)
        return err;
    if (h->bulk_len > ch->buf_cap) {
        free(ch->buf);
        ch->buf_cap = h->bulk_len;
        if (!(ch->buf = aligned_alloc(MIGR_PAGE_SIZE, MIGR_ALIGN_UP(ch->buf_cap, MIGR_PAGE_SIZE)))) {
            ch->buf_cap = 0;
            return -ENOMEM;
        }
    }
    if (h->bulk_len && (err = migr_transport_recv(ch->t, ch->buf, h->bulk_len)) < 0)
        return migr_error_prefix(-err, "record %llu (PAGES) data", (unsigned long long)*ch->seq);
    struct uffd_place u = {.r = r, .ch = ch, .data = ch->buf};
    if ((err = engine_pages_walk(r->hv, ch->meta, count, *ch->seq, &uffd_placement, &u)) < 0)
        return err;
    return flush_run(&u);
}

/* After COMPLETE (cancellable): read until the source's COMMIT (release).
 * Push pages still in flight are duplicates; a CANCEL that crossed COMPLETE
 * is moot (the source reads COMPLETE first and releases). */
static int await_release(struct receiver *r)
{
    struct postcopy_dst *pc = r->pc;
    struct migr_rec_hdr h;
    for (;;) {
        struct pollfd p = {.fd = r->t->fd, .events = POLLIN};
        int n = poll(&p, 1, RELEASE_TIMEOUT_MS);
        if (n == 0)
            return migr_errorf(ETIMEDOUT, "no release from the source within %d ms", RELEASE_TIMEOUT_MS);
        if (n < 0 && errno != EINTR)
            return migr_errorf_errno(errno, "waiting for the release");
        if (n < 0)
            continue;
        int err = migr_rec_recv(r->t, &r->seq, &h, r->meta, MIGR_META_MAX);
        if (err < 0)
            return err;
        if (h.type == MIGR_REC_COMMIT)
            return 0;
        if (h.type == MIGR_REC_PAGES) {
            if ((err = place_pages(r, &pc->main, &h)) < 0)
                return err;
        } else if (h.type != MIGR_REC_CANCEL && h.type != MIGR_REC_EPOCH_ACK) {
            return migr_errorf(EPROTO, "record %llu (%s): expected COMMIT (release) after COMPLETE",
                               (unsigned long long)r->seq, migr_rec_type_name(h.type));
        }
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* EPOCH_ACK: the source holds checkpoint a.pages; the lease runs from when
 * that checkpoint was sent. */
static int on_epoch_ack(struct receiver *r, const struct migr_rec_hdr *h)
{
    struct postcopy_dst *pc = r->pc;
    struct migr_ack a;
    int err = migr_ack_decode(r->meta, h->meta_len, &a);
    if (err < 0)
        return err;
    uint64_t sent = __atomic_load_n(&pc->epoch, __ATOMIC_ACQUIRE);
    if (a.pages == 0 || a.pages > sent || a.t_ns == 0) {
        return migr_errorf(EBADMSG, "record %llu (EPOCH_ACK): checkpoint %llu, lease %llu ms (sent: %llu)",
                          (unsigned long long)r->seq, (unsigned long long)a.pages,
                          (unsigned long long)a.t_ns, (unsigned long long)sent);
    }
    /* the shorter lease of the two sides holds */
    if (a.t_ns < __atomic_load_n(&pc->lease_ms, __ATOMIC_RELAXED))
        __atomic_store_n(&pc->lease_ms, a.t_ns, __ATOMIC_RELAXED);
    /* An acknowledgement 64 checkpoints late no longer has its send
     * time: it renews nothing (the lease only ever grows from a time
     * the source cannot have preceded). */
    uint64_t at = __atomic_load_n(&pc->epoch_sent_ns[a.pages % 64], __ATOMIC_RELAXED);
    if (a.pages + 64 > __atomic_load_n(&pc->epoch, __ATOMIC_ACQUIRE) &&
        at > __atomic_load_n(&pc->lease_ns, __ATOMIC_RELAXED))
        __atomic_store_n(&pc->lease_ns, at, __ATOMIC_RELAXED);
    return 0;
}

/* Fault latency figures into the summary (every page is here). */
static void fault_stats(struct receiver *r)
{
    struct postcopy_dst *pc = r->pc;
    if (pc->nlat) {
        qsort(pc->lat_us, pc->nlat, sizeof(float), cmp_float);
        r->st->postcopy.fault_p50_us = pc->lat_us[pc->nlat / 2];
        r->st->postcopy.fault_p99_us = pc->lat_us[(uint64_t)pc->nlat * 99 / 100];
        r->st->postcopy.fault_max_us = pc->lat_us[pc->nlat - 1];
    }
    if (pc->nph) {
        qsort(pc->ph_req, pc->nph, sizeof(float), cmp_float);
        qsort(pc->ph_wait, pc->nph, sizeof(float), cmp_float);
        qsort(pc->ph_place, pc->nph, sizeof(float), cmp_float);
        r->st->postcopy.fault_req_us = pc->ph_req[pc->nph / 2];
        r->st->postcopy.fault_wait_us = pc->ph_wait[pc->nph / 2];
        r->st->postcopy.fault_place_us = pc->ph_place[pc->nph / 2];
    }
    r->st->postcopy.pushed_pages =
        r->st->pages > r->st->postcopy.demand_pages ? r->st->pages - r->st->postcopy.demand_pages : 0;
}

static int run_main(struct receiver *r)
{
    struct postcopy_dst *pc = r->pc;
    struct migr_rec_hdr h;
    int err = 0;
    bool cancelling = false;
    while (pc->resolved < pc->npages || cancelling) {
        /* cancelling: the source closes the link once it has the last checkpoint */
        if ((err = migr_rec_recv(r->t, &r->seq, &h, r->meta, MIGR_META_MAX)) < 0)
            break;
        __atomic_store_n(&pc->main_rx_ns, migr_now_ns(), __ATOMIC_RELAXED);
        if (h.type == MIGR_REC_PAGES) {
            if ((err = place_pages(r, &pc->main, &h)) < 0)
                break;
        } else if (h.type == MIGR_REC_EPOCH_ACK && r->cancellable) {
            if ((err = on_epoch_ack(r, &h)) < 0)
                break;
        } else if (h.type == MIGR_REC_CANCEL && r->cancellable && !cancelling) {
            /* Give the guest back: the epoch thread stops it and sends the
             * last checkpoint; until the source has it and closes the link,
             * we keep placing the pages it still sends for blocked faults. */
            pthread_mutex_lock(&pc->lock);
            pc->cancel_req = true;
            bool alive = pc->epoch_started && !pc->epoch_err;
            pthread_cond_broadcast(&pc->epoch_cond);
            pthread_mutex_unlock(&pc->lock);
            if (!alive) {
                /* no checkpoint thread: the source keeps the last complete one */
                r->t->ops->shutdown(r->t);
                err = migr_errorf(ECANCELED, "the source cancelled the migration; no last checkpoint "
                                  "(checkpoints had failed)");
                break;
            }
            cancelling = true;
        } else if (h.type == MIGR_REC_ERROR) {
            r->origin = ORIGIN_PEER_ABORTED;
            err = migr_errorf(ECANCELED, "the source aborted during post-copy");
            break;
        } else {
            err = migr_errorf(EPROTO, "record %llu (%s): unexpected during post-copy",
                              (unsigned long long)r->seq, migr_rec_type_name(h.type));
            break;
        }
        if (pc->fault_err) {
            err = pc->fault_err;
            if (pc->fault_why[0])
                migr_errorf(-err, "%s", pc->fault_why);
            break;
        }
    }
    if (cancelling) {
        stop_epochs(pc); /* waits for the last checkpoint */
        if (pc->final_sent) {
            r->st->cancelled = true;
            return migr_errorf(ECANCELED, "the source cancelled the migration; the guest went back "
                               "with checkpoint %llu", (unsigned long long)pc->epoch);
        }
        if (err == 0)
            err = migr_errorf(EIO, "the source cancelled the migration and the last checkpoint failed");
    }
    if (err < 0 && r->st->cancelled)
        return err;
    if (err < 0 && __atomic_load_n(&pc->dead_err, __ATOMIC_ACQUIRE)) { /* the watchdog cut the links */
        err = pc->dead_err;
        migr_errorf(-err, "%s", pc->dead_why);
    }
    if (err < 0 && r->cancellable)
        return migr_error_prefix(-err, "post-copy broke with %llu of %llu pages here; the guest stops here — "
                                 "a source that still runs takes it back from checkpoint %llu, else the guest "
                                 "is lost", (unsigned long long)pc->resolved, (unsigned long long)pc->npages,
                                 (unsigned long long)pc->epoch);
    if (err < 0)
        return migr_error_prefix(-err, "post-copy broke with %llu of %llu pages here: the guest is lost "
                                 "(post-copy without take-back)", (unsigned long long)pc->resolved,
                                 (unsigned long long)pc->npages);
    fault_stats(r);
    /* Every page is here: no more checkpoints, the guest is ours alone. */
    stop_epochs(pc);
    migr_dirty_close(pc->trk);
    pc->trk = NULL;
    uint8_t meta[MIGR_ACK_SIZE];
    struct migr_ack a = {.pages = pc->npages, .t_ns = migr_now_ns()};
    int len = migr_ack_encode(&a, meta, sizeof(meta));
    err = len < 0 ? len : engine_recv_send(r, MIGR_REC_COMPLETE, meta, (uint32_t)len);
    if (!r->cancellable) {
        /* plain post-copy: the source cannot take the guest back in any case */
        if (err < 0)
            migr_logf(MIGR_LOG_WARN, "recv: COMPLETE not delivered (%s); the guest runs here", migr_last_error());
        return 0;
    }
    /* Cancellable: until the source has read COMPLETE it may still take the
     * guest back (a link break looks like our death to it). It answers
     * COMPLETE with COMMIT, its release; without that we cannot tell whether
     * it resumed its copy, so ours stops: paused, never two copies running. */
    if (err == 0)
        err = await_release(r);
    if (err < 0) {
        char why[256];
        snprintf(why, sizeof(why), "%s", migr_last_error());
        int e2 = r->hv->ops->pause(r->hv);
        r->st->ownership_in_doubt = true;
        snprintf(r->st->error, sizeof(r->st->error),
                 "every page is here, but the source's release did not arrive (%s): the guest is kept "
                 "paused here (%s); `migr resume` only if the source is not running it",
                 why, e2 == 0 ? "paused" : "pause failed");
    }
    return 0;
}

struct bulk_arg {
    struct receiver *r;
    int ret;
    char why[512];
};

static void *bulk_thread(void *arg)
{
    struct bulk_arg *a = arg;
    engine_bulk_priority();
    a->ret = run_main(a->r);
    if (a->ret < 0)
        snprintf(a->why, sizeof(a->why), "%s", migr_last_error());
    return NULL;
}

/* The push is placed on a thread of its own at a lower priority than the
 * fault thread, so that a fault's answer does not wait for a CPU behind it. */
int engine_postcopy_run(struct receiver *r)
{
    struct bulk_arg a = {.r = r};
    pthread_t th;
    int err = pthread_create(&th, NULL, bulk_thread, &a);
    if (err)
        return run_main(r);
    pthread_join(th, NULL);
    if (a.ret < 0)
        migr_errorf(-a.ret, "%s", a.why); /* the message is per thread */
    return a.ret;
}

/* Teardown, also of a post-copy that broke with vCPUs blocked in faults
 * that will never be served. Order matters (a freeze in D state otherwise):
 * a blocked vCPU holds KVM's memslot SRCU lock, so any memslot change (the
 * tracker turning dirty logging off) waits for it forever. So: first cut the
 * links — the guest is about to see pages that are not its own, and nothing
 * of it may reach the source as a checkpoint — then stop the fault thread and
 * close the userfaultfd, which releases every blocked vCPU; only then stop
 * the checkpoints (a pause waits for those vCPUs) and the tracker. */
void engine_postcopy_finish(struct receiver *r)
{
    struct postcopy_dst *pc = r->pc;
    if (!pc)
        return;
    if (pc->resolved < pc->npages)
        r->t->ops->shutdown(r->t);
    if (r->fch) /* over either way; its reader may sit in a read nothing else ends */
        r->fch->ops->shutdown(r->fch);
    if (pc->thread_started) {
        uint64_t one = 1;
        if (write(pc->stopfd, &one, sizeof(one)) != sizeof(one))
            migr_logf(MIGR_LOG_WARN, "post-copy: cannot stop the fault thread: %s", strerror(errno));
        pthread_join(pc->fault_thread, NULL);
        pc->thread_started = false;
    }
    if (pc->watch_started) /* the stop event is still set: it returns at once */
        pthread_join(pc->watch_thread, NULL);
    pc->watch_started = false;
    /* Closing the userfaultfd unregisters guest RAM and releases any vCPU
     * still waiting on it. */
    if (pc->uffd >= 0)
        close(pc->uffd);
    pc->uffd = -1;
    stop_epochs(pc);
    migr_dirty_close(pc->trk);
    pc->trk = NULL;
    pc_free(pc);
    r->pc = NULL;
}
