/* hv-glue/kvm: the kvm-ring tracker's ring-harvesting logic, shared by the
 * tracker (dirty_ring.c) and the VMM's KVM_EXIT_DIRTY_RING_FULL handler
 * (vmm.c), and tested on rings in ordinary memory
 * (tests/test_dirty_ring.c). */
#ifndef MIGR_HV_KVM_DIRTY_RING_H
#define MIGR_HV_KVM_DIRTY_RING_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

struct migr_hv;

/*! Collect the dirty entries of one vCPU's ring in order, starting at
 *  *fetch (the index of the next entry to look at; it only grows, the slot
 *  is fetch % entries): for each entry KVM has published (flags DIRTY, read
 *  with acquire) map (slot, offset) to a RAM index of hv, set that bit in bm
 *  (with an atomic OR if atomic_bm: several threads share bm) and only then
 *  hand the entry back (flags RESET, store-release) for the next
 *  KVM_RESET_DIRTY_RINGS. Stops at the first entry not published, or after
 *  entries entries. *added counts the bits that were clear before.
 *  entries must be a power of two. Returns the number of entries collected,
 *  or -EIO (message set) at an entry that names no RAM of hv: that entry and
 *  the ones after it stay in the ring, unreported and not reset. */
long migr_dirty_ring_collect(struct kvm_dirty_gfn *ring, uint32_t entries, uint32_t *fetch,
                             const struct migr_hv *hv, uint64_t *bm, bool atomic_bm, uint64_t *added);

#endif
