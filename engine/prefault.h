/* engine: round 1's fresh pages written through the memfd (prefault.c).
 *
 * A fresh page of the destination's memfd written through its mapping is
 * first zeroed by the kernel (a write fault or MADV_POPULATE_WRITE), then
 * overwritten by the socket copy. Written with pwrite() a whole page is
 * allocated without the zeroing (shmem zeroes only what a write leaves out).
 * So while the prefault thread runs (round 1) and every region has a memfd,
 * the receiving thread reads fresh RAW pages into a bounce buffer that stays
 * in the cache, checks their CRC there, and pwrites the intact ones: a torn
 * page is never even allocated. The prefault thread then allocates ahead
 * with fallocate() (no zeroing either) instead of populating the mapping.
 */
#ifndef MIGR_ENGINE_PREFAULT_H
#define MIGR_ENGINE_PREFAULT_H

#include <stdint.h>
#include "engine/engine_impl.h"

#define ENGINE_BOUNCE_PAGES 256u  /* 1 MiB: one sender batch, kept in L2 */

/* The bounce buffer (ENGINE_BOUNCE_PAGES pages) while fresh pages go through
 * the memfd, else NULL (no prefault thread, a region without a memfd). */
uint8_t *engine_prefault_bounce(const struct receiver *r);

/* Write n pages from src to RAM indices [idx, idx+n) through their memfds
 * (split across regions as needed). 0 or -errno with the page named. */
int engine_prefault_write(struct receiver *r, uint64_t idx, const uint8_t *src, uint64_t n);

#endif
