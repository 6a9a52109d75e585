/* dirty/compat.h — kernel UAPI newer than the build host's headers.
 *
 * Debian 12 ships linux-libc-dev 6.1; the process trackers use interfaces of
 * 6.4-6.7 that the running kernel (6.18 here) has. Values and layouts are the
 * kernel's ABI (include/uapi/linux/userfaultfd.h and fs.h), which never change
 * once released; whether the *running* kernel offers them is probed at run
 * time by each tracker's supported(). Newer headers win: every definition is
 * guarded. */
#ifndef MIGR_DIRTY_COMPAT_H
#define MIGR_DIRTY_COMPAT_H

#include <linux/fs.h>
#include <linux/types.h>
#include <sys/ioctl.h>
#include "common/uffd.h"

/* userfaultfd features (UFFDIO_API): common/uffd.h, with the helpers. */

/* PAGEMAP_SCAN (6.7): an ioctl on /proc/PID/pagemap */
#ifndef PAGEMAP_SCAN
struct page_region {
    __u64 start;
    __u64 end;
    __u64 categories;
};

struct pm_scan_arg {
    __u64 size;                 /* sizeof(struct pm_scan_arg) */
    __u64 flags;                /* PM_SCAN_* */
    __u64 start, end;           /* address range to walk */
    __u64 walk_end;             /* out: where the walk stopped (vec full or max_pages) */
    __u64 vec, vec_len;         /* out: struct page_region[vec_len] */
    __u64 max_pages;            /* 0 = no limit */
    __u64 category_inverted, category_mask, category_anyof_mask, return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)

#define PM_SCAN_WP_MATCHING (1 << 0)    /* write-protect the pages that match */
#define PM_SCAN_CHECK_WPASYNC (1 << 1)  /* -EPERM unless the range is async-WP registered */

#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)
#endif

#endif
