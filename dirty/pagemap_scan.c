/* dirty/pagemap-scan: userfaultfd write-protection in async mode
 * (UFFD_FEATURE_WP_ASYNC) plus the PAGEMAP_SCAN ioctl (Linux 6.7).
 *
 * start registers guest RAM with UFFDIO_REGISTER_MODE_WP on a userfaultfd
 * opened with WP_ASYNC and write-protects all of it. In async mode a write
 * to a protected page never reaches user space: the fault handler just
 * clears the page's uffd-wp bit (first write per page per round, ~1 us).
 * A harvest is one PAGEMAP_SCAN per region with PM_SCAN_WP_MATCHING and
 * category PAGE_IS_WRITTEN: the kernel returns the written ranges and
 * write-protects exactly those pages again, in the same walk.
 *
 * Why no write is ever lost: the walk examines and re-protects each pte
 * under its page-table lock, and flushes the TLB for the ptes it changed
 * before dropping that lock. A racing write is either ordered before the
 * re-protection of its pte — the pte is "written", so this scan reports the
 * page, and the caller reads the page after the harvest returns — or after
 * it, in which case it faults, and the fault (serialised by the same lock)
 * clears the uffd-wp bit, so the next scan reports it. When the output
 * vector fills, the kernel stops *before* the first matching page it cannot
 * report (walk_end) and leaves that page unprotected; we continue from
 * walk_end. Unpopulated ptes read as written (a false positive) and get a
 * marker, so a page the kernel drops and refills is still watched.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dirty/compat.h"
#include "dirty/process.h"
#include "migr/common.h"

#define NAME "pagemap-scan"
/* Ranges per PAGEMAP_SCAN call. When the vector fills, the next call starts
 * a new walk at walk_end: 8192 ranges (192 KiB) keep that to a few calls
 * even at 10% of 16 GiB dirty in isolated pages (bench/README.md). */
#define VEC_LEN 8192u
#define PROBE_VEC 16u
#define FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM)

struct pms {
    int uffd, pagemap;
    struct page_region *vec;
    uint64_t vec_len;
};

/* One scan of [start, end): report into bm from RAM index base, re-arm. */
static long scan(int pagemap, struct page_region *vec, uint64_t vec_len, uint8_t *start, uint8_t *end,
                 uint64_t *bm, uint64_t base, uint8_t *region)
{
    long added = 0;
    while (start < end) {
        struct pm_scan_arg a = {
            .size = sizeof(a), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            .start = (uintptr_t)start, .end = (uintptr_t)end,
            .vec = (uintptr_t)vec, .vec_len = vec_len,
            .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
        };
        long n = ioctl(pagemap, PAGEMAP_SCAN, &a);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue; /* nothing reported is lost: unreported pages stay unprotected */
            return migr_errorf_errno(errno, NAME ": PAGEMAP_SCAN 0x%llx-0x%llx",
                                     (unsigned long long)(uintptr_t)start, (unsigned long long)(uintptr_t)end);
        }
        for (long i = 0; bm && i < n; i++) {
            uint64_t first = base + (vec[i].start - (uintptr_t)region) / MIGR_PAGE_SIZE;
            uint64_t pages = (vec[i].end - vec[i].start) / MIGR_PAGE_SIZE;
            if (pages == 1) { /* the common case when writes are scattered */
                uint64_t bit = 1ull << (first & 63), *w = &bm[first >> 6];
                added += !(*w & bit);
                *w |= bit;
            } else {
                added += (long)dirty_set_range(bm, first, pages);
            }
        }
        if (a.walk_end <= (uintptr_t)start)
            return migr_errorf(EIO, NAME ": PAGEMAP_SCAN made no progress at 0x%llx",
                               (unsigned long long)(uintptr_t)start);
        start = (uint8_t *)(uintptr_t)a.walk_end;
    }
    return added;
}

/* The whole mechanism once, on a scratch memfd page set: register, protect,
 * write one page, scan. Result cached for the process. */
static int probe_rc;
static char probe_why[256];

static void probe(void)
{
    const size_t len = 4 * MIGR_PAGE_SIZE;
    int memfd = -1, pagemap = -1, uffd = -1;
    uint8_t *p = MAP_FAILED;
    struct page_region vec[PROBE_VEC];
    probe_rc = 0;
    if ((pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(probe_why, sizeof(probe_why), "open /proc/self/pagemap: %s", strerror(errno));
        goto out;
    }
    if ((uffd = dirty_uffd_open(FEATURES, NAME)) < 0) {
        snprintf(probe_why, sizeof(probe_why), "%s", migr_last_error());
        goto out;
    }
    if ((memfd = memfd_create("migr-probe", MFD_CLOEXEC)) < 0 || ftruncate(memfd, (off_t)len) < 0 ||
        (p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0)) == MAP_FAILED) {
        snprintf(probe_why, sizeof(probe_why), "probe memfd: %s", strerror(errno));
        goto out;
    }
    memset(p, 1, len);
    struct uffdio_register reg = {.range = {(uintptr_t)p, len}, .mode = UFFDIO_REGISTER_MODE_WP};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
        snprintf(probe_why, sizeof(probe_why), "UFFDIO_REGISTER_MODE_WP on a memfd mapping: %s",
                 strerror(errno));
        goto out;
    }
    if (uffd_wp(uffd, p, len, true) < 0) {
        snprintf(probe_why, sizeof(probe_why), "UFFDIO_WRITEPROTECT: %s", strerror(errno));
        goto out;
    }
    p[2 * MIGR_PAGE_SIZE] = 2;
    struct pm_scan_arg a = {
        .size = sizeof(a), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
        .start = (uintptr_t)p, .end = (uintptr_t)p + len, .vec = (uintptr_t)vec, .vec_len = PROBE_VEC,
        .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
    };
    long n = ioctl(pagemap, PAGEMAP_SCAN, &a);
    if (n < 0) {
        snprintf(probe_why, sizeof(probe_why), "PAGEMAP_SCAN: %s%s", strerror(errno),
                 errno == ENOTTY || errno == EINVAL ? " (kernel older than 6.7?)" : "");
        goto out;
    }
    if (n != 1 || vec[0].start != (uintptr_t)p + 2 * MIGR_PAGE_SIZE ||
        vec[0].end != (uintptr_t)p + 3 * MIGR_PAGE_SIZE) {
        snprintf(probe_why, sizeof(probe_why), "PAGEMAP_SCAN self-test: wrote page 2 of 4, "
                 "the scan returned %ld ranges", n);
        goto out;
    }
    probe_rc = 1;
out:
    if (p != MAP_FAILED)
        munmap(p, len);
    if (memfd >= 0)
        close(memfd);
    if (uffd >= 0)
        close(uffd);
    if (pagemap >= 0)
        close(pagemap);
}

static int pms_supported(struct migr_hv *hv)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!dirty_probed(hv, NAME, &once, probe, &probe_rc, probe_why))
        return 0;
    return dirty_uffd_can_register(hv, FEATURES, UFFDIO_REGISTER_MODE_WP, NAME);
}

static int pms_start(struct migr_dirty *d)
{
    struct migr_hv *hv = d->hv;
    struct pms *t = calloc(1, sizeof(*t));
    int err;
    if (!t)
        return migr_errorf(ENOMEM, NAME ": out of memory");
    t->uffd = t->pagemap = -1;
    /* Tests shrink the vector to make it overflow: "pagemap-scan?vec=N". */
    t->vec_len = VEC_LEN;
    if ((err = migr_dirty_option(d, "vec", &t->vec_len)) < 0)
        goto fail;
    if (t->vec_len == 0 || t->vec_len > (1u << 20)) {
        err = migr_errorf(EINVAL, NAME ": vec=%llu (1 to 1048576 ranges)", (unsigned long long)t->vec_len);
        goto fail;
    }
    if (!(t->vec = calloc(t->vec_len, sizeof(*t->vec)))) {
        err = migr_errorf(ENOMEM, NAME ": out of memory");
        goto fail;
    }
    if ((t->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) {
        err = migr_errorf_errno(errno, NAME ": open /proc/self/pagemap");
        goto fail;
    }
    if ((err = t->uffd = dirty_uffd_open(FEATURES, NAME)) < 0)
        goto fail;
    if ((err = uffd_register_ram(t->uffd, hv, UFFDIO_REGISTER_MODE_WP, 0, NAME)) < 0)
        goto fail;
    if ((err = uffd_wp_ram(t->uffd, hv, NAME)) < 0) {
        uffd_unregister_ram(t->uffd, hv);
        goto fail;
    }
    d->priv = t;
    return 0;
fail:
    if (t->uffd >= 0)
        close(t->uffd);
    if (t->pagemap >= 0)
        close(t->pagemap);
    free(t->vec);
    free(t);
    return err;
}

static long scan_region(void *arg, const struct migr_hv_region *g, uint32_t r, uint64_t *bitmap, uint64_t base)
{
    struct pms *t = arg;
    return scan(t->pagemap, t->vec, t->vec_len, g->host, g->host + g->size, bitmap, base, g->host);
}

/* On error, pages already reported to bm stay reported; those not yet
 * walked were not re-protected, so the next harvest still finds them. */
static long pms_harvest(struct migr_dirty *d, uint64_t *bitmap)
{
    return dirty_each_region(d->hv, bitmap, scan_region, d->priv);
}

static void pms_stop(struct migr_dirty *d)
{
    struct pms *t = d->priv;
    if (!t)
        return;
    uffd_unregister_ram(t->uffd, d->hv);
    close(t->uffd);
    close(t->pagemap);
    free(t->vec);
    free(t);
    d->priv = NULL;
}

static const char *const options[] = {"vec", NULL};

const struct migr_dirty_ops migr_dirty_pagemap_scan = {
    .name = NAME,
    .supported = pms_supported,
    .start = pms_start,
    .harvest = pms_harvest,
    .stop = pms_stop,
    .options = options,
};
