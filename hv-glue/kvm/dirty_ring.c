/* hv-glue/kvm: the kvm-ring tracker, KVM's per-vCPU dirty rings (KVM_CAP_DIRTY_LOG_RING, or
 * _ACQ_REL where offered).
 *
 * Each vCPU has a ring of struct kvm_dirty_gfn {flags, slot, offset} mapped
 * from its fd at KVM_DIRTY_LOG_PAGE_OFFSET. When the vCPU (or KVM on its
 * behalf) first writes a write-protected page, KVM pushes the page's
 * (slot, offset) and publishes the entry by setting its DIRTY flag. The VMM
 * collects entries in ring order, sets each one's RESET flag, and calls
 * KVM_RESET_DIRTY_RINGS: KVM then re-protects exactly the pages of the
 * entries flagged RESET (from its own reset index on), flushes the TLB and
 * makes those slots free again. A ring can only be enabled before the VM's
 * vCPUs exist, so this tracker works for VMs created with one
 * (migr_kvm_create_ring, `migr run --dirty=kvm-ring`); KVM then refuses
 * KVM_GET_DIRTY_LOG, so kvm-bitmap does not work for such VMs.
 *
 * Why no write is ever lost (the caller reads a page only after the harvest
 * that reported it has returned):
 *   - an entry is put in the caller's bitmap before it is flagged RESET, and
 *     its page is re-protected only by a KVM_RESET_DIRTY_RINGS after that
 *     (ours or one from a vCPU thread): a write before the re-protection is
 *     to a page reported by this harvest; a write after it faults and pushes
 *     a new entry, reported by a later harvest;
 *   - a full ring (KVM_EXIT_DIRTY_RING_FULL: KVM will not run the vCPU until
 *     slots are freed) is collected by the vCPU's own thread into a pending
 *     bitmap of the VM (hv-glue/kvm/vmm.c), with the same order of
 *     operations; every harvest drains that bitmap with atomic exchanges;
 *   - one lock per ring: the harvest and a vCPU thread never collect the
 *     same ring at once, so each entry is taken exactly once.
 * With PML (Intel), a write may sit in the vCPU's PML buffer until its next
 * exit: such a page is reported by the next harvest, and the final harvest
 * runs with the vCPUs paused (out of KVM_RUN: buffers flushed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hv-glue/kvm/dirty_ring.h"
#include "hv-glue/kvm/kvm.h"
#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/hv.h"

#define NAME "kvm-ring"

/* RAM index of (slot, offset), or -1. KVM's slot field is as_id << 16 | id;
 * migr uses address space 0 only. */
static int64_t ring_index(const struct migr_hv *hv, uint32_t slot, uint64_t offset)
{
    if (slot >> 16)
        return -1;
    uint64_t base = 0;
    for (uint32_t r = 0; r < hv->nregions; r++) {
        uint64_t n = hv->regions[r].size / MIGR_PAGE_SIZE;
        if (hv->regions[r].slot == slot)
            return offset < n ? (int64_t)(base + offset) : -1;
        base += n;
    }
    return -1;
}

long migr_dirty_ring_collect(struct kvm_dirty_gfn *ring, uint32_t entries, uint32_t *fetch,
                             const struct migr_hv *hv, uint64_t *bm, bool atomic_bm, uint64_t *added)
{
    long n = 0;
    for (uint32_t k = 0; k < entries; k++) {
        struct kvm_dirty_gfn *e = &ring[*fetch & (entries - 1)];
        uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
        if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
            break; /* not (yet) published: the ring ends here */
        int64_t i = ring_index(hv, e->slot, e->offset);
        if (i < 0)
            return migr_errorf(EIO, NAME ": ring entry %u names slot %u (as %u) page %llu, not guest RAM",
                               *fetch, e->slot & 0xffff, e->slot >> 16, (unsigned long long)e->offset);
        uint64_t bit = 1ull << (i & 63), *w = &bm[i >> 6];
        if (atomic_bm) {
            if (!(__atomic_fetch_or(w, bit, __ATOMIC_RELAXED) & bit))
                (*added)++;
        } else if (!(*w & bit)) {
            *w |= bit;
            (*added)++;
        }
        /* Reported before handed back: KVM re-protects the page only after this store. */
        __atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
        (*fetch)++;
        n++;
    }
    return n;
}

static int kr_supported(struct migr_hv *hv)
{
    if (!migr_kvm_has_ring(hv)) {
        migr_error_prefix(ENOTSUP, NAME);
        return 0;
    }
    if (!hv->ops->set_dirty_log) {
        migr_errorf(ENOTSUP, NAME ": guest backend '%s' cannot turn on dirty logging", hv->ops->name);
        return 0;
    }
    return 1;
}

/* Collect every vCPU's ring into bm (NULL: discard) and reset; then take the
 * pages vCPU threads collected from full rings. Returns the bits added. */
static long kr_collect_all(struct kvm_vm *vm, uint64_t *bm)
{
    struct migr_hv *hv = &vm->hv;
    uint64_t added = 0, words = migr_bitmap_words(hv->ram_pages);
    long taken = 0;
    uint64_t *sink = bm ? bm : calloc(words, sizeof(uint64_t));
    if (!sink)
        return migr_errorf(ENOMEM, NAME ": out of memory");
    for (uint32_t v = 0; v < hv->nvcpus; v++) {
        struct kvm_vcpu_ctx *c = &vm->vcpus[v];
        pthread_mutex_lock(&c->ring_lock);
        long n = migr_dirty_ring_collect(c->ring, vm->ring_entries, &c->ring_fetch, hv, sink, false, &added);
        pthread_mutex_unlock(&c->ring_lock);
        if (n < 0) {
            if (!bm)
                free(sink);
            return migr_error_prefix((int)-n, "vCPU %u", v);
        }
        taken += n;
    }
    if (taken && ioctl(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0) {
        int err = errno;
        if (!bm)
            free(sink);
        return migr_errorf_errno(err, NAME ": KVM_RESET_DIRTY_RINGS");
    }
    if (__atomic_exchange_n(&vm->ring_pending_bits, 0, __ATOMIC_ACQ_REL)) {
        for (uint64_t w = 0; w < words; w++) {
            if (!__atomic_load_n(&vm->ring_pending[w], __ATOMIC_RELAXED))
                continue;
            uint64_t v = __atomic_exchange_n(&vm->ring_pending[w], 0, __ATOMIC_ACQ_REL);
            added += (uint64_t)__builtin_popcountll(v & ~sink[w]);
            sink[w] |= v;
        }
    }
    if (!bm)
        free(sink);
    return (long)added;
}

static int kr_start(struct migr_dirty *d)
{
    struct kvm_vm *vm = (struct kvm_vm *)d->hv;
    /* Entries left by an earlier tracking session are of no use now. */
    long n = kr_collect_all(vm, NULL);
    if (n < 0)
        return (int)n;
    int err = d->hv->ops->set_dirty_log(d->hv, true, false);
    if (err < 0)
        return migr_error_prefix(-err, NAME ": start");
    return 0;
}

static long kr_harvest(struct migr_dirty *d, uint64_t *bitmap)
{
    return kr_collect_all((struct kvm_vm *)d->hv, bitmap);
}

static void kr_stop(struct migr_dirty *d)
{
    /* Nothing to report to: stop cannot fail, and the guest runs on either way. */
    (void)d->hv->ops->set_dirty_log(d->hv, false, false);
    /* Free the ring slots: a full ring would stop the vCPU. */
    (void)kr_collect_all((struct kvm_vm *)d->hv, NULL);
}

const struct migr_dirty_ops migr_kvm_dirty_ring = {
    .name = NAME,
    .supported = kr_supported,
    .start = kr_start,
    .harvest = kr_harvest,
    .stop = kr_stop,
};
