/* dirty/soft-dirty: the kernel's soft-dirty pte bit (CONFIG_MEM_SOFT_DIRTY).
 *
 * Writing "4" to /proc/self/clear_refs clears the soft-dirty bit of every
 * pte of the *whole process* and write-protects them; the first write to a
 * page afterwards faults and sets the bit again. /proc/self/pagemap shows
 * it as bit 55 of each page's 64-bit entry. A harvest reads the entries of
 * guest RAM and then clears.
 *
 * Why no write is ever lost — and why this tracker stops the guest: reading
 * pagemap and writing clear_refs are two separate system calls, and there is
 * no way to clear only what was read. A write that lands after its page's
 * entry was read and before clear_refs would be erased unseen. So the
 * harvest pauses the guest (hv->ops->pause: proc vCPU threads stop at a page
 * boundary, every store they made is visible) for the read + clear, and
 * resumes it; if the guest is already paused (stop-and-copy) it stays so.
 * After the clear every pte is write-protected with the TLB flushed, so the
 * first write after resume faults and sets the bit. Consequences:
 *   - only the guest's own vCPUs may write guest RAM while tracking: a
 *     writer the guest's pause does not stop can lose writes;
 *   - clear_refs is process-wide: one soft-dirty tracker per process at a
 *     time (start says -EBUSY otherwise), and every other page of the
 *     process pays a write fault after each harvest;
 *   - the bit lives in the pte: if the kernel dropped the pte of a written
 *     page (reclaim of shared memory to swap), the bit would go with it. We
 *     mlock guest RAM while tracking; if that fails and swap is on, start
 *     refuses.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dirty/process.h"
#include "migr/common.h"

#define NAME "soft-dirty"
#define PM_SOFT_DIRTY (1ull << 55)
#define CHUNK 8192u   /* pagemap entries per read (64 KiB) */

struct sd {
    int pagemap, clear_refs;
    bool locked;
    uint64_t *buf;
};

static int active; /* one soft-dirty tracker per process: clear_refs is process-wide */

/* Probe without side effects (no clear_refs): a freshly written page must
 * read as soft-dirty (always 0 without CONFIG_MEM_SOFT_DIRTY), and
 * clear_refs must be writable. */
static int probe_rc;
static char probe_why[200];

static void probe(void)
{
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    uint8_t *p = mmap(NULL, MIGR_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t e = 0;
    probe_rc = 0;
    if (fd < 0 || p == MAP_FAILED) {
        snprintf(probe_why, sizeof(probe_why), "open /proc/self/pagemap: %s", strerror(errno));
        goto out;
    }
    p[0] = 1;
    if (pread(fd, &e, 8, (off_t)((uintptr_t)p / MIGR_PAGE_SIZE * 8)) != 8) {
        snprintf(probe_why, sizeof(probe_why), "read /proc/self/pagemap: %s", strerror(errno));
        goto out;
    }
    if (!(e & PM_SOFT_DIRTY)) {
        snprintf(probe_why, sizeof(probe_why), "a written page is not soft-dirty in pagemap "
                 "(kernel built without CONFIG_MEM_SOFT_DIRTY?)");
        goto out;
    }
    int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (cr < 0) {
        snprintf(probe_why, sizeof(probe_why), "open /proc/self/clear_refs: %s", strerror(errno));
        goto out;
    }
    close(cr);
    probe_rc = 1;
out:
    if (p != MAP_FAILED)
        munmap(p, MIGR_PAGE_SIZE);
    if (fd >= 0)
        close(fd);
}

static int sd_supported(struct migr_hv *hv)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!dirty_probed(hv, NAME, &once, probe, &probe_rc, probe_why))
        return 0;
    if (__atomic_load_n(&active, __ATOMIC_ACQUIRE)) {
        migr_errorf(ENOTSUP, NAME ": another soft-dirty tracker is running in this process "
                    "(clear_refs clears every page of the process)");
        return 0;
    }
    return 1;
}

static bool swap_on(void)
{
    FILE *f = fopen("/proc/swaps", "re");
    char line[256];
    int lines = 0;
    if (!f)
        return true; /* cannot tell: assume the worst */
    while (fgets(line, sizeof(line), f))
        lines++;
    fclose(f);
    return lines > 1; /* a header line, then one per swap area */
}

/* Stop the guest's writers if they run; *was_paused tells sd_thaw what to do. */
static int sd_freeze(struct migr_hv *hv, bool *was_paused)
{
    *was_paused = hv->paused;
    if (hv->paused)
        return 0;
    int err = hv->ops->pause(hv);
    return err < 0 ? migr_error_prefix(-err, NAME ": pausing the guest for a harvest") : 0;
}

static void sd_thaw(struct migr_hv *hv, bool was_paused)
{
    if (!was_paused)
        (void)hv->ops->resume(hv); /* fails only if the guest stopped by itself: nothing to do */
}

static int sd_clear(struct sd *t)
{
    if (pwrite(t->clear_refs, "4", 1, 0) != 1)
        return migr_errorf_errno(errno, NAME ": write 4 to /proc/self/clear_refs");
    return 0;
}

static int sd_start(struct migr_dirty *d)
{
    struct migr_hv *hv = d->hv;
    int err, expected = 0;
    if (!__atomic_compare_exchange_n(&active, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return migr_errorf(EBUSY, NAME ": another soft-dirty tracker is running in this process");
    struct sd *t = calloc(1, sizeof(*t));
    if (t)
        t->pagemap = t->clear_refs = -1;
    if (!t || !(t->buf = malloc(CHUNK * 8))) {
        err = migr_errorf(ENOMEM, NAME ": out of memory");
        goto fail;
    }
    if ((t->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0 ||
        (t->clear_refs = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)) < 0) {
        err = migr_errorf_errno(errno, NAME ": open /proc/self/%s", t->pagemap < 0 ? "pagemap" : "clear_refs");
        goto fail;
    }
    t->locked = true;
    for (uint32_t r = 0; r < hv->nregions && t->locked; r++)
        if (mlock(hv->regions[r].host, hv->regions[r].size) < 0) {
            int e = errno;
            for (uint32_t k = 0; k < r; k++)
                munlock(hv->regions[k].host, hv->regions[k].size);
            t->locked = false;
            if (swap_on()) {
                err = migr_errorf(e, NAME ": cannot mlock guest RAM (%s) and swap is on: a swapped-out "
                                  "shared page would lose its soft-dirty bit", strerror(e));
                goto fail;
            }
        }
    bool was_paused;
    if ((err = sd_freeze(hv, &was_paused)) < 0)
        goto fail;
    err = sd_clear(t);
    sd_thaw(hv, was_paused);
    if (err < 0)
        goto fail;
    d->priv = t;
    return 0;
fail:
    if (t) {
        if (t->locked)
            for (uint32_t r = 0; r < hv->nregions; r++)
                munlock(hv->regions[r].host, hv->regions[r].size);
        if (t->pagemap >= 0)
            close(t->pagemap);
        if (t->clear_refs >= 0)
            close(t->clear_refs);
        free(t->buf);
        free(t);
    }
    __atomic_store_n(&active, 0, __ATOMIC_RELEASE);
    return err;
}

static long read_region(void *arg, const struct migr_hv_region *g, uint32_t r, uint64_t *bm, uint64_t base)
{
    struct sd *t = arg;
    uint64_t npages = g->size / MIGR_PAGE_SIZE, first = (uintptr_t)g->host / MIGR_PAGE_SIZE;
    long added = 0;
    for (uint64_t i = 0; i < npages; i += CHUNK) {
        uint64_t n = MIGR_MIN(CHUNK, npages - i);
        ssize_t got = pread(t->pagemap, t->buf, n * 8, (off_t)((first + i) * 8));
        if (got != (ssize_t)(n * 8))
            return migr_errorf_errno(got < 0 ? errno : EIO, NAME ": read pagemap for pages %llu+%llu",
                                     (unsigned long long)(base + i), (unsigned long long)n);
        for (uint64_t k = 0; k < n; k++)
            if ((t->buf[k] & PM_SOFT_DIRTY) && bm && !migr_bit_test(bm, base + i + k)) {
                migr_bit_set(bm, base + i + k);
                added++;
            }
    }
    return added;
}

/* On a read error nothing was cleared: the next harvest sees every bit again. */
static long sd_harvest(struct migr_dirty *d, uint64_t *bitmap)
{
    struct sd *t = d->priv;
    struct migr_hv *hv = d->hv;
    bool was_paused;
    int err = sd_freeze(hv, &was_paused);
    if (err < 0)
        return err;
    long added = dirty_each_region(hv, bitmap, read_region, t);
    err = added < 0 ? 0 : sd_clear(t);
    sd_thaw(hv, was_paused);
    return err < 0 ? err : added;
}

static void sd_stop(struct migr_dirty *d)
{
    struct sd *t = d->priv;
    if (!t)
        return;
    if (t->locked)
        for (uint32_t r = 0; r < d->hv->nregions; r++)
            munlock(d->hv->regions[r].host, d->hv->regions[r].size);
    close(t->pagemap);
    close(t->clear_refs);
    free(t->buf);
    free(t);
    d->priv = NULL;
    __atomic_store_n(&active, 0, __ATOMIC_RELEASE);
}

const struct migr_dirty_ops migr_dirty_soft_dirty = {
    .name = NAME,
    .supported = sd_supported,
    .start = sd_start,
    .harvest = sd_harvest,
    .stop = sd_stop,
};
