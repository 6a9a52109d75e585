/* dirty/: helpers of the process trackers (see process.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dirty/compat.h"
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

static int uffd_new(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0 || errno != EPERM)
        return fd >= 0 ? fd : -errno;
    /* vm.unprivileged_userfaultfd=0: faults from user mode are still allowed
     * (the guest's threads write in user mode). */
    fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd >= 0)
        return fd;
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0)
        return -EPERM;
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    int err = errno;
    close(dev);
    return fd >= 0 ? fd : -err;
}

int dirty_uffd_open(uint64_t features, const char *name)
{
    int fd = uffd_new();
    if (fd < 0)
        return migr_errorf_errno(-fd, "%s: userfaultfd", name);
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    if (ioctl(fd, UFFDIO_API, &api) == 0)
        return fd;
    int err = errno;
    close(fd);
    /* Ask again with no feature to learn what this kernel offers. */
    uint64_t offered = 0;
    if ((fd = uffd_new()) >= 0) {
        struct uffdio_api q = {.api = UFFD_API, .features = 0};
        if (ioctl(fd, UFFDIO_API, &q) == 0)
            offered = q.features;
        close(fd);
    }
    return migr_errorf(err == EINVAL ? ENOTSUP : err,
                       "%s: userfaultfd features 0x%llx not offered by this kernel (missing 0x%llx)",
                       name, (unsigned long long)features, (unsigned long long)(features & ~offered));
}

int dirty_uffd_wp(int uffd, void *addr, uint64_t len, bool protect)
{
    struct uffdio_writeprotect wp = {
        .range = {.start = (uintptr_t)addr, .len = len},
        .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };
    for (;;) {
        if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
    }
}

int dirty_uffd_register(int uffd, struct migr_hv *hv, uint64_t mode, const char *name)
{
    for (uint32_t r = 0; r < hv->nregions; r++) {
        struct uffdio_register reg = {
            .range = {.start = (uintptr_t)hv->regions[r].host, .len = hv->regions[r].size},
            .mode = mode,
        };
        if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
            int err = errno;
            for (uint32_t k = 0; k < r; k++) {
                struct uffdio_range rg = {.start = (uintptr_t)hv->regions[k].host, .len = hv->regions[k].size};
                ioctl(uffd, UFFDIO_UNREGISTER, &rg);
            }
            return migr_errorf_errno(err, "%s: UFFDIO_REGISTER region %u (%llu MiB)", name, r,
                                     (unsigned long long)(hv->regions[r].size >> 20));
        }
    }
    return 0;
}

void dirty_uffd_unregister(int uffd, struct migr_hv *hv)
{
    /* Unregistering also drops the write protection (and wakes any waiter). */
    for (uint32_t r = 0; r < hv->nregions; r++) {
        struct uffdio_range rg = {.start = (uintptr_t)hv->regions[r].host, .len = hv->regions[r].size};
        ioctl(uffd, UFFDIO_UNREGISTER, &rg);
    }
}

int dirty_uffd_can_register(struct migr_hv *hv, uint64_t features, uint64_t mode, const char *name)
{
    int fd = dirty_uffd_open(features, name);
    if (fd < 0)
        return 0;
    for (uint32_t r = 0; r < hv->nregions; r++) {
        struct uffdio_register reg = {
            .range = {.start = (uintptr_t)hv->regions[r].host, .len = hv->regions[r].size},
            .mode = mode,
        };
        if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
            int err = errno;
            close(fd); /* closing unregisters what this fd registered */
            migr_errorf_errno(err, "%s: guest RAM region %u cannot be registered with a userfaultfd%s",
                              name, r, err == EBUSY ? " (another one, e.g. post-copy's, holds it)" : "");
            return 0;
        }
    }
    close(fd);
    return 1;
}
