/* dirty/: helpers shared by the trackers that watch this process's own
 * mapping of guest RAM (pagemap-scan, soft-dirty, uffd-wp, mprotect). */
#ifndef MIGR_DIRTY_PROCESS_H
#define MIGR_DIRTY_PROCESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "migr/dirty.h"
#include "migr/hv.h"

/* 1 if hv's guest writes its RAM through hv->regions[].host (a proc guest),
 * else 0 with the reason recorded for tracker name. */
int dirty_proc_guest(struct migr_hv *hv, const char *name);

/* supported() of a tracker that probes the kernel once per process: 1 if
 * hv is a proc guest (dirty_proc_guest) and probe, run once through once,
 * left *rc set; else 0 with "name: <why>" recorded. */
int dirty_probed(struct migr_hv *hv, const char *name, pthread_once_t *once, void (*probe)(void),
                 const int *rc, const char *why);

/* A harvest that reads one region at a time: fn(t, hv's region r, bitmap,
 * RAM index of its first page) for every region; the sum of what they
 * added, or the first error (regions after it are not read: their pages
 * stay armed and are reported by the next harvest). */
typedef long (*dirty_region_fn)(void *t, const struct migr_hv_region *g, uint32_t r, uint64_t *bitmap,
                                uint64_t base);
long dirty_each_region(struct migr_hv *hv, uint64_t *bitmap, dirty_region_fn fn, void *t);

/* RAM index of region r's first page. */
uint64_t dirty_region_base(const struct migr_hv *hv, uint32_t r);

/* Set bits [first, first + n) of bm; returns how many were clear before. */
uint64_t dirty_set_range(uint64_t *bm, uint64_t first, uint64_t n);

/* OR the set bits of src (n bits, region-relative) into dst at bit offset
 * base; returns how many were clear in dst before. */
uint64_t dirty_or_at(uint64_t *dst, uint64_t base, const uint64_t *src, uint64_t n);

/* The userfaultfd of a tracker (common/uffd.h): it sees the guest threads'
 * user-mode writes, so a user-mode-only fd will do. */
int dirty_uffd_open(uint64_t features, const char *name);

/* 1 if hv's RAM can be registered (mode) with a new userfaultfd of these
 * features right now, else 0 with the reason. A range takes one userfaultfd
 * only: guest RAM that post-copy has registered for missing pages is EBUSY. */
int dirty_uffd_can_register(struct migr_hv *hv, uint64_t features, uint64_t mode, const char *name);

#endif
