/* dirty/uffd-wp: synchronous userfaultfd write-protection — the seeds'
 * shadow-paging approach: a trap on the first write of each page per round.
 *
 * start registers guest RAM with UFFDIO_REGISTER_MODE_WP and write-protects
 * all of it. A write to a protected page blocks the writing thread in the
 * kernel and queues a message; our handler thread reads it, records the
 * page in `pending` and un-protects the page, which wakes the writer. A
 * harvest moves `pending` into the caller's bitmap and write-protects those
 * pages again.
 *
 * Why no write is ever lost: one invariant, kept by a mutex that both the
 * handler (record + un-protect) and the harvest (re-protect + clear) hold:
 * outside those critical sections, a page that is writable has its bit set
 * in `pending`. The handler sets the bit *before* it un-protects (and so
 * before the writer is woken: a writer never completes a write the tracker
 * has not yet recorded, which matters when the guest is paused right after
 * — a paused guest's writes are all recorded). The harvest re-protects a
 * run of pages first (UFFDIO_WRITEPROTECT flushes the TLB before it returns)
 * and only then moves their bits to the caller: a racing write to such a
 * page lands before the re-protection (the caller reads the page after the
 * harvest returns, so it sees the write) or faults after it (recorded for the
 * next harvest). A stale message for a page already re-protected only
 * un-protects it with its bit set: a false positive, never a miss. If a
 * re-protection fails, the bits not yet moved stay in `pending`.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "dirty/compat.h"
#include "dirty/process.h"
#include "migr/common.h"

#define NAME "uffd-wp"
#define FEATURES UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define MSGS 64

struct uw {
    struct migr_hv *hv;
    int uffd, stop_fd;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    uint64_t *pending;          /* RAM-index bitmap, under lock */
    int error;                  /* first handler failure (errno), under lock */
    char why[200];
};

/* Region and RAM index of a faulting address, or -1. */
static int64_t index_of(const struct migr_hv *hv, uint64_t addr)
{
    uint64_t base = 0;
    for (uint32_t r = 0; r < hv->nregions; r++) {
        uint64_t h = (uintptr_t)hv->regions[r].host, n = hv->regions[r].size / MIGR_PAGE_SIZE;
        if (addr >= h && addr - h < hv->regions[r].size)
            return (int64_t)(base + (addr - h) / MIGR_PAGE_SIZE);
        base += n;
    }
    return -1;
}

static void handle(struct uw *t, const struct uffd_msg *m)
{
    if (m->event != UFFD_EVENT_PAGEFAULT)
        return; /* we asked for no other event */
    uint64_t addr = m->arg.pagefault.address & ~(uint64_t)(MIGR_PAGE_SIZE - 1);
    int64_t i = index_of(t->hv, addr);
    if (i < 0) {
        if (!t->error) {
            t->error = EFAULT;
            snprintf(t->why, sizeof(t->why), "fault at 0x%llx outside guest RAM", (unsigned long long)addr);
        }
        return;
    }
    migr_bit_set(t->pending, (uint64_t)i);   /* first the record ... */
    int err = uffd_wp(t->uffd, (void *)(uintptr_t)addr, MIGR_PAGE_SIZE, false); /* ... then the wake */
    if (err < 0 && !t->error) {
        t->error = -err;
        snprintf(t->why, sizeof(t->why), "un-protecting page %lld: %s", (long long)i, strerror(-err));
    }
}

static void *handler_thread(void *arg)
{
    struct uw *t = arg;
    struct uffd_msg msgs[MSGS];
    pthread_setname_np(pthread_self(), "migr-uffd-wp");
    for (;;) {
        struct pollfd p[2] = {{.fd = t->uffd, .events = POLLIN}, {.fd = t->stop_fd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        ssize_t n = read(t->uffd, msgs, sizeof(msgs));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            pthread_mutex_lock(&t->lock);
            if (!t->error) {
                t->error = errno;
                snprintf(t->why, sizeof(t->why), "read userfaultfd: %s", strerror(errno));
            }
            pthread_mutex_unlock(&t->lock);
            break;
        }
        pthread_mutex_lock(&t->lock);
        for (ssize_t k = 0; k < n / (ssize_t)sizeof(msgs[0]); k++)
            handle(t, &msgs[k]);
        pthread_mutex_unlock(&t->lock);
    }
    return NULL;
}

static int probe_rc;
static char probe_why[256];

static void probe(void)
{
    int fd = dirty_uffd_open(FEATURES, NAME);
    probe_rc = fd >= 0;
    if (fd < 0)
        snprintf(probe_why, sizeof(probe_why), "%s", migr_last_error());
    else
        close(fd);
}

static int uw_supported(struct migr_hv *hv)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!dirty_probed(hv, NAME, &once, probe, &probe_rc, probe_why))
        return 0;
    return dirty_uffd_can_register(hv, FEATURES, UFFDIO_REGISTER_MODE_WP, NAME);
}

static void uw_free(struct uw *t, bool registered)
{
    if (t->thread_started) {
        uint64_t one = 1;
        if (write(t->stop_fd, &one, 8) != 8)
            migr_logf(MIGR_LOG_WARN, NAME ": cannot stop the handler thread: %s", strerror(errno));
        pthread_join(t->thread, NULL);
    }
    if (registered)
        uffd_unregister_ram(t->uffd, t->hv); /* wakes any writer still waiting */
    if (t->uffd >= 0)
        close(t->uffd);
    if (t->stop_fd >= 0)
        close(t->stop_fd);
    pthread_mutex_destroy(&t->lock);
    free(t->pending);
    free(t);
}

static int uw_start(struct migr_dirty *d)
{
    struct migr_hv *hv = d->hv;
    struct uw *t = calloc(1, sizeof(*t));
    bool registered = false;
    int err;
    if (!t)
        return migr_errorf(ENOMEM, NAME ": out of memory");
    t->hv = hv;
    t->uffd = t->stop_fd = -1;
    pthread_mutex_init(&t->lock, NULL);
    if (!(t->pending = calloc(migr_bitmap_words(d->npages), 8))) {
        err = migr_errorf(ENOMEM, NAME ": out of memory for a %llu-page bitmap", (unsigned long long)d->npages);
        goto fail;
    }
    if ((t->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
        err = migr_errorf_errno(errno, NAME ": eventfd");
        goto fail;
    }
    if ((err = t->uffd = dirty_uffd_open(FEATURES, NAME)) < 0)
        goto fail;
    if ((err = uffd_register_ram(t->uffd, hv, UFFDIO_REGISTER_MODE_WP, 0, NAME)) < 0)
        goto fail;
    registered = true;
    if ((err = pthread_create(&t->thread, NULL, handler_thread, t)) != 0) {
        err = migr_errorf(err, NAME ": pthread_create");
        goto fail;
    }
    t->thread_started = true;
    /* Protect only once the handler runs: a write faulting now is served. */
    if ((err = uffd_wp_ram(t->uffd, hv, NAME)) < 0)
        goto fail;
    d->priv = t;
    return 0;
fail:
    uw_free(t, registered);
    return err;
}

static uint64_t next_set(const uint64_t *bm, uint64_t i, uint64_t end)
{
    while (i < end) {
        uint64_t v = bm[i >> 6] >> (i & 63);
        if (v)
            return MIGR_MIN(end, i + (uint64_t)__builtin_ctzll(v));
        i = (i | 63) + 1;
    }
    return end;
}

static uint64_t next_clear(const uint64_t *bm, uint64_t i, uint64_t end)
{
    while (i < end) {
        uint64_t v = ~bm[i >> 6] >> (i & 63);
        if (v)
            return MIGR_MIN(end, i + (uint64_t)__builtin_ctzll(v));
        i = (i | 63) + 1;
    }
    return end;
}

/* Runs of pending pages closer than this are re-protected with one call:
 * protecting a page that is protected already changes nothing (under the
 * lock, a page without its bit is protected), and an ioctl costs more than
 * walking a few dozen ptes (~30 ns each here, ~1 us per ioctl). */
#define MERGE_GAP 32u

/* Move the pending bits of [i, j) to bitmap; returns how many were new there. */
static long move_bits(uint64_t *pending, uint64_t *bitmap, uint64_t i, uint64_t j)
{
    long added = 0;
    for (uint64_t k = next_set(pending, i, j); k < j; k = next_set(pending, k + 1, j)) {
        migr_bit_clear(pending, k);
        if (bitmap && !migr_bit_test(bitmap, k)) {
            migr_bit_set(bitmap, k);
            added++;
        }
    }
    return added;
}

static long uw_harvest(struct migr_dirty *d, uint64_t *bitmap)
{
    struct uw *t = d->priv;
    struct migr_hv *hv = d->hv;
    long added = 0;
    pthread_mutex_lock(&t->lock);
    if (t->error) {
        int e = t->error;
        char why[sizeof(t->why)];
        memcpy(why, t->why, sizeof(why));
        pthread_mutex_unlock(&t->lock);
        return migr_errorf(e, NAME ": fault handler: %s", why);
    }
    for (uint32_t r = 0; r < hv->nregions; r++) {
        uint64_t base = dirty_region_base(hv, r), end = base + hv->regions[r].size / MIGR_PAGE_SIZE;
        for (uint64_t i = next_set(t->pending, base, end); i < end;) {
            uint64_t j = next_clear(t->pending, i, end), k;
            while ((k = next_set(t->pending, j, end)) < end && k - j <= MERGE_GAP)
                j = next_clear(t->pending, k, end);
            /* Re-protect first, then hand the bits over (see the race argument). */
            int err = uffd_wp(t->uffd, hv->regions[r].host + (i - base) * MIGR_PAGE_SIZE,
                                    (j - i) * MIGR_PAGE_SIZE, true);
            if (err < 0) {
                pthread_mutex_unlock(&t->lock);
                return migr_errorf_errno(-err, NAME ": re-protecting pages %llu+%llu",
                                         (unsigned long long)i, (unsigned long long)(j - i));
            }
            added += move_bits(t->pending, bitmap, i, j);
            i = next_set(t->pending, j, end);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return added;
}

static void uw_stop(struct migr_dirty *d)
{
    if (d->priv)
        uw_free(d->priv, true);
    d->priv = NULL;
}

const struct migr_dirty_ops migr_dirty_uffd_wp = {
    .name = NAME,
    .supported = uw_supported,
    .start = uw_start,
    .harvest = uw_harvest,
    .stop = uw_stop,
};
