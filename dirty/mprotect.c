/* dirty/mprotect: PROT_READ + a SIGSEGV handler — the portable fallback
 * (POSIX only: no userfaultfd, no pagemap).
 *
 * start maps guest RAM read-only. A write faults; the handler, running on
 * the writing thread, makes the page writable again, records it in
 * `pending` and returns, and the write is retried. A harvest takes the
 * pending bits and makes those pages read-only again.
 *
 * Why no write is ever lost: the handler un-protects *before* it sets the
 * bit; the harvest takes (atomically exchanges) the bits *before* it
 * re-protects, and re-protects exactly the pages whose bits it took
 * (mprotect flushes the TLB before it returns). So a page that the harvest
 * leaves writable either had no bit to take — its handler had un-protected
 * it and will set the bit, which the next harvest takes — or was never
 * protected since the last harvest re-protected it. A write to a page whose
 * bit this harvest took lands before the re-protection (the caller reads
 * the page after the harvest returns and sees it) or faults again after it.
 * The handler runs on the writer's own thread, so a write never completes
 * before its page is recorded: when the guest is paused, every write of it
 * is in `pending`. If mprotect fails inside the handler (out of VMAs) the
 * process aborts rather than lose a write; if re-protection fails in a
 * harvest the untaken bits are put back and the harvest fails.
 *
 * Costs and limits: one signal per first write per page per round (several
 * microseconds); each writable page splits the mapping (one VMA per run), so
 * pages are un-protected in grains of 2^k pages chosen at start to stay
 * within vm.max_map_count (1 page for guests up to ~60k pages here); the
 * kernel's own writes into a read-only page (read(2) into guest RAM) fail
 * with EFAULT instead of faulting — only user-space stores are tracked.
 * Another SIGSEGV handler installed after ours takes the faults away from us.
 * Under ASan run with ASAN_OPTIONS=handle_segv=0 (ASan otherwise keeps
 * SIGSEGV for itself); faults that are not ours are passed on to the
 * handler that was installed before ours, or to the default action.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dirty/process.h"
#include "migr/common.h"

#define NAME "mprotect"
#define MAX_SLOTS 64          /* regions under watch, all mprotect trackers of the process */
#define RETIRED 16
#define MAP_MARGIN 2048       /* VMAs left for everything else in the process */
/* Taken runs closer than this are re-protected with one mprotect. Protecting
 * a gap page again is harmless: it is read-only already, or a handler is
 * about to record it (then the write faults once more and is recorded), or
 * its bit was set after our exchange (then it is reported next time). */
#define MERGE_GAP 32u

enum { SLOT_FREE = 0, SLOT_ACTIVE = 1, SLOT_RETIRING = 2 };

/* Read by the signal handler: fields are published by a release store of
 * state, and a slot is freed only when no handler is inside it (users). */
struct slot {
    int state;
    int users;
    uintptr_t start, end;
    uint64_t *pending;        /* region-relative bitmap, atomic ops */
    unsigned grain_shift;
};

static struct slot slots[MAX_SLOTS];
static struct {
    uintptr_t start, end;
} retired[RETIRED];           /* ranges of recently stopped slots */
static unsigned retired_next;
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction old_segv;
static int installed;
static __thread uintptr_t last_stale;
static __thread unsigned stale_repeats;

struct mp {
    uint32_t first_slot;      /* regions use slots listed in slot_of[] */
    int slot_of[MIGR_MAX_REGIONS];
};

static void die(const char *msg)
{
    ssize_t r = write(2, msg, strlen(msg));
    (void)r;
    abort();
}

static void chain(int sig, siginfo_t *si, void *uc)
{
    if (old_segv.sa_flags & SA_SIGINFO) {
        if (old_segv.sa_sigaction) {
            old_segv.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (old_segv.sa_handler != SIG_DFL && old_segv.sa_handler != SIG_IGN) {
        old_segv.sa_handler(sig);
        return;
    }
    /* Default action: restore it and return; the access faults again and the
     * process dies with SIGSEGV (and a core) at the right instruction. */
    signal(SIGSEGV, SIG_DFL);
}

static bool handle(struct slot *s, uintptr_t a)
{
    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_ACTIVE || a < s->start || a >= s->end)
        return false;
    uint64_t npages = (s->end - s->start) / MIGR_PAGE_SIZE, page = (a - s->start) / MIGR_PAGE_SIZE;
    uint64_t g = page >> s->grain_shift << s->grain_shift;
    uint64_t n = MIGR_MIN(1ull << s->grain_shift, npages - g);
    /* Un-protect first, then record: see the race argument above. */
    if (mprotect((void *)(s->start + g * MIGR_PAGE_SIZE), n * MIGR_PAGE_SIZE, PROT_READ | PROT_WRITE) != 0)
        die("migr: mprotect dirty tracker: cannot make a written page writable again "
            "(out of memory or VMAs?); aborting rather than losing the write\n");
    for (uint64_t i = g; i < g + n; i++)
        __atomic_fetch_or(&s->pending[i >> 6], 1ull << (i & 63), __ATOMIC_RELEASE);
    return true;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    int saved_errno = errno;
    uintptr_t a = (uintptr_t)si->si_addr;
    if (si->si_code == SEGV_ACCERR) {
        for (int i = 0; i < MAX_SLOTS; i++) {
            struct slot *s = &slots[i];
            __atomic_fetch_add(&s->users, 1, __ATOMIC_SEQ_CST);
            bool mine = handle(s, a);
            __atomic_fetch_sub(&s->users, 1, __ATOMIC_SEQ_CST);
            if (mine) {
                last_stale = 0;
                errno = saved_errno;
                return;
            }
        }
        /* A fault taken just before a tracker stopped and made its range
         * writable again: retry the access (twice at most, in case the
         * memory is now read-only for a reason of its own). */
        for (unsigned i = 0; i < RETIRED; i++) {
            uintptr_t rs = __atomic_load_n(&retired[i].start, __ATOMIC_ACQUIRE);
            uintptr_t re = __atomic_load_n(&retired[i].end, __ATOMIC_ACQUIRE);
            if (a >= rs && a < re) {
                stale_repeats = a == last_stale ? stale_repeats + 1 : 1;
                last_stale = a;
                if (stale_repeats <= 2) {
                    errno = saved_errno;
                    return;
                }
                break;
            }
        }
    }
    errno = saved_errno;
    chain(sig, si, uc);
}

static int install(void)
{
    if (installed)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) < 0)
        return migr_errorf_errno(errno, NAME ": sigaction SIGSEGV");
    installed = 1;
    return 0;
}

static int mp_supported(struct migr_hv *hv)
{
    return dirty_proc_guest(hv, NAME);
}

static long read_long(const char *path, long dflt)
{
    FILE *f = fopen(path, "re");
    long v = dflt;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = dflt;
        fclose(f);
    }
    return v;
}

static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    long n = 0;
    int c;
    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Pages per trap, so that the worst case (every other grain writable: one
 * VMA per grain) fits in what vm.max_map_count leaves. */
static int choose_grain(uint64_t npages, unsigned *shift)
{
    long budget = read_long("/proc/sys/vm/max_map_count", 65530) - count_maps() - MAP_MARGIN;
    if (budget < 64)
        return migr_errorf(ENOMEM, NAME ": vm.max_map_count leaves only %ld mappings", budget);
    for (*shift = 0; *shift < 20 && (npages >> *shift) > (uint64_t)budget; (*shift)++)
        ;
    return 0;
}

static void free_slot(int i)
{
    struct slot *s = &slots[i];
    __atomic_store_n(&s->state, SLOT_RETIRING, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&s->users, __ATOMIC_SEQ_CST))
        sched_yield();
    unsigned k = retired_next++ % RETIRED;
    __atomic_store_n(&retired[k].start, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&retired[k].end, s->end, __ATOMIC_RELEASE);
    __atomic_store_n(&retired[k].start, s->start, __ATOMIC_RELEASE);
    free(s->pending);
    s->pending = NULL;
    __atomic_store_n(&s->state, SLOT_FREE, __ATOMIC_RELEASE);
}

static void mp_release(struct migr_hv *hv, struct mp *t)
{
    pthread_mutex_lock(&slots_lock);
    for (uint32_t r = 0; r < hv->nregions; r++) {
        int i = t->slot_of[r];
        if (i < 0)
            continue;
        /* Writable first: no new fault can name this slot after this. */
        if (mprotect(hv->regions[r].host, hv->regions[r].size, PROT_READ | PROT_WRITE) != 0)
            migr_logf(MIGR_LOG_WARN, NAME ": restoring PROT_WRITE on region %u: %s", r, strerror(errno));
        free_slot(i);
    }
    pthread_mutex_unlock(&slots_lock);
    free(t);
}

static int mp_start(struct migr_dirty *d)
{
    struct migr_hv *hv = d->hv;
    struct mp *t = calloc(1, sizeof(*t));
    unsigned shift = 0;
    int err;
    if (!t)
        return migr_errorf(ENOMEM, NAME ": out of memory");
    for (uint32_t r = 0; r < MIGR_MAX_REGIONS; r++)
        t->slot_of[r] = -1;
    if ((err = choose_grain(d->npages, &shift)) < 0) {
        free(t);
        return err;
    }
    pthread_mutex_lock(&slots_lock);
    if ((err = install()) < 0)
        goto fail_locked;
    for (uint32_t r = 0; r < hv->nregions; r++) {
        int i = 0;
        while (i < MAX_SLOTS && __atomic_load_n(&slots[i].state, __ATOMIC_ACQUIRE) != SLOT_FREE)
            i++;
        if (i == MAX_SLOTS) {
            err = migr_errorf(EBUSY, NAME ": more than %d regions under watch in this process", MAX_SLOTS);
            goto fail_locked;
        }
        struct slot *s = &slots[i];
        uint64_t npages = hv->regions[r].size / MIGR_PAGE_SIZE;
        if (!(s->pending = calloc(migr_bitmap_words(npages), 8))) {
            err = migr_errorf(ENOMEM, NAME ": out of memory");
            goto fail_locked;
        }
        s->start = (uintptr_t)hv->regions[r].host;
        s->end = s->start + hv->regions[r].size;
        s->grain_shift = shift;
        __atomic_store_n(&s->state, SLOT_ACTIVE, __ATOMIC_RELEASE);
        t->slot_of[r] = i;
    }
    pthread_mutex_unlock(&slots_lock);
    /* Published before protected: every fault from here on finds its slot. */
    for (uint32_t r = 0; r < hv->nregions; r++)
        if (mprotect(hv->regions[r].host, hv->regions[r].size, PROT_READ) != 0) {
            err = migr_errorf_errno(errno, NAME ": mprotect region %u read-only", r);
            mp_release(hv, t);
            return err;
        }
    d->priv = t;
    return 0;
fail_locked:
    pthread_mutex_unlock(&slots_lock);
    mp_release(hv, t);
    return err;
}

static void put_back(uint64_t *pending, uint64_t first, uint64_t n)
{
    for (uint64_t i = first; i < first + n; i++)
        __atomic_fetch_or(&pending[i >> 6], 1ull << (i & 63), __ATOMIC_RELAXED);
}

/* Re-protect [rs, re) of slot s; on failure put those bits back. */
static int protect_run(const struct slot *s, uint32_t r, uint64_t rs, uint64_t re)
{
    if (mprotect((void *)(s->start + rs * MIGR_PAGE_SIZE), (re - rs) * MIGR_PAGE_SIZE, PROT_READ) == 0)
        return 0;
    int e = errno;
    put_back(s->pending, rs, re - rs);
    return migr_errorf_errno(e, NAME ": re-protecting region %u pages %llu+%llu", r,
                             (unsigned long long)rs, (unsigned long long)(re - rs));
}

static long harvest_region(void *arg, const struct migr_hv_region *g, uint32_t r, uint64_t *bitmap, uint64_t base)
{
    struct slot *s = &slots[((struct mp *)arg)->slot_of[r]];
    uint64_t npages = (s->end - s->start) / MIGR_PAGE_SIZE, words = migr_bitmap_words(npages);
    uint64_t rs = 0, re = 0; /* open run of taken pages, not yet re-protected */
    long added = 0;
    int err;
    for (uint64_t w = 0; w < words; w++) {
        if (!__atomic_load_n(&s->pending[w], __ATOMIC_RELAXED))
            continue;
        uint64_t v = __atomic_exchange_n(&s->pending[w], 0, __ATOMIC_ACQ_REL);
        if (bitmap)
            added += (long)dirty_or_at(bitmap, base + w * 64, &v, 64);
        while (v) {
            uint64_t b = (uint64_t)__builtin_ctzll(v), rest = ~(v >> b);
            uint64_t len = rest ? (uint64_t)__builtin_ctzll(rest) : 64 - b; /* run of ones from bit b */
            uint64_t s0 = w * 64 + b, e0 = s0 + len;
            v = b + len >= 64 ? 0 : v & ~(((1ull << len) - 1) << b);
            if (re > rs && s0 - re <= MERGE_GAP) {
                re = e0; /* one call over the gap: see MERGE_GAP */
                continue;
            }
            if (re > rs && (err = protect_run(s, r, rs, re)) < 0) {
                put_back(s->pending, s0, e0 - s0);
                for (; v; v &= v - 1)
                    put_back(s->pending, w * 64 + (uint64_t)__builtin_ctzll(v), 1);
                return err;
            }
            rs = s0;
            re = e0;
        }
    }
    if (re > rs && (err = protect_run(s, r, rs, re)) < 0)
        return err;
    return added;
}

/* On failure the pages not re-protected keep their bits: reported again. */
static long mp_harvest(struct migr_dirty *d, uint64_t *bitmap)
{
    return dirty_each_region(d->hv, bitmap, harvest_region, d->priv);
}

static void mp_stop(struct migr_dirty *d)
{
    if (d->priv)
        mp_release(d->hv, d->priv);
    d->priv = NULL;
}

const struct migr_dirty_ops migr_dirty_mprotect = {
    .name = NAME,
    .supported = mp_supported,
    .start = mp_start,
    .harvest = mp_harvest,
    .stop = mp_stop,
};
