/* common/uffd.c — userfaultfd helpers (see uffd.h). */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/uffd.h"
#include "migr/common.h"

static int uffd_new(unsigned flags)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0 || errno != EPERM)
        return fd >= 0 ? fd : -errno;
    /* vm.unprivileged_userfaultfd=0: faults from user mode are still allowed. */
    if (flags & UFFD_OPEN_USER_MODE_OK) {
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
        if (fd >= 0)
            return fd;
    }
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0)
        return -EPERM;
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    int err = errno;
    close(dev);
    return fd >= 0 ? fd : -err;
}

int uffd_open(uint64_t features, unsigned flags, const char *name)
{
    int fd = uffd_new(flags);
    if (fd < 0)
        return migr_errorf_errno(-fd, "%s: userfaultfd", name);
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    if (ioctl(fd, UFFDIO_API, &api) == 0)
        return fd;
    int err = errno;
    close(fd);
    if (!features)
        return migr_errorf_errno(err, "%s: UFFDIO_API", name);
    /* Ask again with no feature to learn what this kernel offers. */
    uint64_t offered = 0;
    if ((fd = uffd_new(flags)) >= 0) {
        struct uffdio_api q = {.api = UFFD_API, .features = 0};
        if (ioctl(fd, UFFDIO_API, &q) == 0)
            offered = q.features;
        close(fd);
    }
    return migr_errorf(err == EINVAL ? ENOTSUP : err,
                       "%s: userfaultfd features 0x%llx not offered by this kernel (missing 0x%llx)",
                       name, (unsigned long long)features, (unsigned long long)(features & ~offered));
}

static const char *ioctl_name(unsigned bit)
{
    switch (bit) {
    case _UFFDIO_WAKE: return "UFFDIO_WAKE";
    case _UFFDIO_COPY: return "UFFDIO_COPY";
    case _UFFDIO_ZEROPAGE: return "UFFDIO_ZEROPAGE";
    case _UFFDIO_WRITEPROTECT: return "UFFDIO_WRITEPROTECT";
    default: return "an ioctl";
    }
}

static void unregister_first(int uffd, const struct migr_hv *hv, uint32_t n)
{
    for (uint32_t r = 0; r < n; r++) {
        struct uffdio_range rg = {.start = (uintptr_t)hv->regions[r].host, .len = hv->regions[r].size};
        ioctl(uffd, UFFDIO_UNREGISTER, &rg);
    }
}

int uffd_register_ram(int uffd, const struct migr_hv *hv, uint64_t mode, uint64_t need_ioctls,
                      const char *name)
{
    for (uint32_t r = 0; r < hv->nregions; r++) {
        struct uffdio_register reg = {
            .range = {.start = (uintptr_t)hv->regions[r].host, .len = hv->regions[r].size},
            .mode = mode,
        };
        if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
            int err = errno;
            unregister_first(uffd, hv, r);
            return migr_errorf_errno(err, "%s: UFFDIO_REGISTER guest RAM region %u (%llu MiB)", name, r,
                                     (unsigned long long)(hv->regions[r].size >> 20));
        }
        uint64_t missing = need_ioctls & ~reg.ioctls;
        if (missing) {
            unregister_first(uffd, hv, r + 1);
            return migr_errorf(ENOTSUP, "%s: %s not offered for guest RAM region %u", name,
                               ioctl_name((unsigned)__builtin_ctzll(missing)), r);
        }
    }
    return 0;
}

void uffd_unregister_ram(int uffd, const struct migr_hv *hv)
{
    unregister_first(uffd, hv, hv->nregions);
}

int uffd_wp(int uffd, void *addr, uint64_t len, bool protect)
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

int uffd_wp_ram(int uffd, const struct migr_hv *hv, const char *name)
{
    for (uint32_t r = 0; r < hv->nregions; r++) {
        int err = uffd_wp(uffd, hv->regions[r].host, hv->regions[r].size, true);
        if (err < 0)
            return migr_errorf_errno(-err, "%s: UFFDIO_WRITEPROTECT region %u", name, r);
    }
    return 0;
}
