/* dirty/: helpers of the process trackers (see process.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/uffd.h"
#include "dirty/process.h"
#include "migr/common.h"

int dirty_proc_guest(struct migr_hv *hv, const char *name)
{
    if (hv->kvm_vm_fd >= 0) {
        /* A KVM guest writes through its EPT/NPT: the host page tables see
         * only KVM's own faults, and PROT_READ would make KVM_RUN fail. */
        migr_errorf(ENOTSUP, "%s watches this process's page tables; guest backend '%s' writes "
                    "through KVM (use kvm-bitmap)", name, hv->ops->name);
        return 0;
    }
    if (hv->nregions == 0) {
        migr_errorf(ENOTSUP, "%s: the guest has no RAM regions", name);
        return 0;
    }
    for (uint32_t r = 0; r < hv->nregions; r++) {
        const struct migr_hv_region *g = &hv->regions[r];
        if (!g->host || (uintptr_t)g->host % MIGR_PAGE_SIZE || g->size % MIGR_PAGE_SIZE || !g->size) {
            migr_errorf(ENOTSUP, "%s: region %u has no page-aligned host mapping", name, r);
            return 0;
        }
    }
    return 1;
}

int dirty_probed(struct migr_hv *hv, const char *name, pthread_once_t *once, void (*probe)(void),
                 const int *rc, const char *why)
{
    if (!dirty_proc_guest(hv, name))
        return 0;
    pthread_once(once, probe);
    if (!*rc) {
        migr_errorf(ENOTSUP, "%s: %s", name, why);
        return 0;
    }
    return 1;
}

long dirty_each_region(struct migr_hv *hv, uint64_t *bitmap, dirty_region_fn fn, void *t)
{
    long added = 0;
    uint64_t base = 0;
    for (uint32_t r = 0; r < hv->nregions; r++) {
        long n = fn(t, &hv->regions[r], r, bitmap, base);
        if (n < 0)
            return n;
        added += n;
        base += hv->regions[r].size / MIGR_PAGE_SIZE;
    }
    return added;
}

uint64_t dirty_region_base(const struct migr_hv *hv, uint32_t r)
{
    uint64_t base = 0;
    for (uint32_t i = 0; i < r; i++)
        base += hv->regions[i].size / MIGR_PAGE_SIZE;
    return base;
}

uint64_t dirty_set_range(uint64_t *bm, uint64_t first, uint64_t n)
{
    uint64_t added = 0, end = first + n;
    while (first < end) {
        unsigned s = (unsigned)(first & 63);
        uint64_t k = MIGR_MIN(64 - s, end - first);
        uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << s;
        uint64_t *w = &bm[first >> 6];
        added += (uint64_t)__builtin_popcountll(mask & ~*w);
        *w |= mask;
        first += k;
    }
    return added;
}

uint64_t dirty_or_at(uint64_t *dst, uint64_t base, const uint64_t *src, uint64_t n)
{
    uint64_t added = 0, words = migr_bitmap_words(n);
    for (uint64_t w = 0; w < words; w++) {
        uint64_t v = src[w];
        if (w == words - 1 && n % 64)
            v &= (1ull << (n % 64)) - 1;
        while (v) {
            uint64_t i = base + w * 64 + (uint64_t)__builtin_ctzll(v);
            v &= v - 1;
            if (!migr_bit_test(dst, i)) {
                migr_bit_set(dst, i);
                added++;
            }
        }
    }
    return added;
}

int dirty_uffd_open(uint64_t features, const char *name)
{
    return uffd_open(features, UFFD_OPEN_USER_MODE_OK, name);
}

int dirty_uffd_can_register(struct migr_hv *hv, uint64_t features, uint64_t mode, const char *name)
{
    int fd = dirty_uffd_open(features, name);
    if (fd < 0)
        return 0;
    int err = uffd_register_ram(fd, hv, mode, 0, name);
    close(fd); /* closing unregisters what this fd registered */
    if (err == -EBUSY)
        migr_errorf(EBUSY, "%s: guest RAM cannot be registered with a userfaultfd: another one "
                    "(e.g. post-copy's) holds it", name);
    return err == 0;
}
