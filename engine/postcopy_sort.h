/* engine: the post-copy switch's sort of the destination's pages (postcopy_recv.c). */
#ifndef MIGR_ENGINE_POSTCOPY_SORT_H
#define MIGR_ENGINE_POSTCOPY_SORT_H

#include <stdint.h>

/* The pre-copy rounds' view of each page (bitmaps of npages bits). */
struct engine_pc_pages {
    const uint64_t *received, *torn, *alloc, *nonzero;
    uint64_t npages;
};

/*! Sort the pages at a post-copy switch: a page received and not torn is
 *  valid; valid and allocated or nonzero -> set in resident, valid otherwise
 *  -> set in zero (resident and zero: zeroed bitmaps of npages bits, set
 *  here); allocated and not valid -> dropped: punch(arg, first, n) once per
 *  run of consecutive dropped pages, in order. Works 64 pages at a time (it
 *  runs inside the pause). Returns the number of valid pages, or punch's
 *  first negative return. */
int64_t engine_pc_sort(const struct engine_pc_pages *p, uint64_t *resident, uint64_t *zero,
                       int (*punch)(void *arg, uint64_t first, uint64_t n), void *arg);

#endif
