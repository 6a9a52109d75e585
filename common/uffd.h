/* common/uffd.h — userfaultfd helpers of libmigr (internal, not installed):
 * dirty/'s write-protect trackers (uffd-wp, pagemap-scan) and the post-copy
 * destination (engine/postcopy_recv.c, missing pages) open and register
 * guest RAM through these.
 *
 * Also the userfaultfd UAPI newer than the build host's headers (Debian 12:
 * linux-libc-dev 6.1). Values are the kernel's ABI, which never changes once
 * released; whether the running kernel offers a feature is asked at run
 * time (uffd_open). Newer headers win: every definition is guarded. */
#ifndef MIGR_COMMON_UFFD_H
#define MIGR_COMMON_UFFD_H

#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stdint.h>
#include "migr/hv.h"

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)   /* 5.19: WP on shmem/memfd */
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)       /* 6.4: WP markers on empty anon ptes */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)             /* 6.7: the kernel resolves WP faults itself */
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* uffd_open flags */
#define UFFD_OPEN_USER_MODE_OK 1u /* may fall back to a fd that sees user-mode faults only */

/* A userfaultfd (O_CLOEXEC | O_NONBLOCK) with UFFDIO_API done for features.
 * Where the syscall is not allowed (EPERM) it falls back to a user-mode-only
 * fd if flags has UFFD_OPEN_USER_MODE_OK (enough for a tracker: the guest's
 * threads write in user mode; not for post-copy, where the kernel's own
 * accesses to guest RAM must fault too), then to /dev/userfaultfd. Returns
 * the fd or -errno with a message "name: ..." naming the missing feature
 * and what the kernel offers. */
int uffd_open(uint64_t features, unsigned flags, const char *name);

/* UFFDIO_REGISTER (mode) every region of hv. need_ioctls: _UFFDIO_* bits
 * that every region must offer (reg.ioctls), else -ENOTSUP naming the
 * first missing one. On failure nothing stays registered. 0 or -errno with
 * the reason. */
int uffd_register_ram(int uffd, const struct migr_hv *hv, uint64_t mode, uint64_t need_ioctls,
                      const char *name);
/* UFFDIO_UNREGISTER every region of hv (also drops the write protection and
 * wakes any waiter). */
void uffd_unregister_ram(int uffd, const struct migr_hv *hv);

/* UFFDIO_WRITEPROTECT [addr, addr + len): protect, or unprotect and wake the
 * threads waiting on it. Retries EAGAIN (the mm is changing). 0 or -errno. */
int uffd_wp(int uffd, void *addr, uint64_t len, bool protect);
/* Write-protect every region of hv. 0 or -errno with "name: ...". */
int uffd_wp_ram(int uffd, const struct migr_hv *hv, const char *name);

#endif
