/* hv-glue/kvm: the kvm-bitmap tracker, KVM's per-memslot dirty bitmap (KVM_GET_DIRTY_LOG), with
 * manual re-protection (KVM_CLEAR_DIRTY_LOG) where KVM offers it.
 *
 * Enabling KVM_MEM_LOG_DIRTY_PAGES write-protects the whole slot (we do not
 * ask for KVM_DIRTY_LOG_INITIALLY_SET), so the first harvest reports only the
 * pages written since start; callers send all of RAM in round 1 anyway.
 *
 * Why no write is ever lost (the caller reads a page's contents only after
 * the harvest that reported it has returned):
 *   - non-manual mode: KVM_GET_DIRTY_LOG atomically takes and zeroes each
 *     bitmap word, then write-protects the pages it took and flushes the TLB
 *     before returning. A write that lands before the re-protection is to a
 *     page reported by this harvest (its bit was set, or it would not have
 *     been writable); a write after it faults and is reported next time.
 *   - manual mode: KVM_GET_DIRTY_LOG only copies the bitmap. We then
 *     KVM_CLEAR_DIRTY_LOG exactly the bits that copy held. A write between GET
 *     and CLEAR either goes to a page whose bit was in our copy (reported now;
 *     the caller reads it after we return) or to a page that was still
 *     write-protected at GET time: that write faults and sets a bit that was
 *     not in our copy, so CLEAR leaves it set and the next harvest reports it.
 *     A write after CLEAR re-protected a page faults and is reported next time.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hv-glue/kvm/kvm.h"
#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/hv.h"

/* Runs of set words closer than this are cleared with one ioctl: KVM skips a
 * zero word in a few ns, a syscall costs microseconds. */
#define CLEAR_MERGE_WORDS 512u
/* KVM_CLEAR_DIRTY_LOG's num_pages is 32-bit; keep chunks 64-page aligned. */
#define CLEAR_MAX_PAGES (1ull << 30)

struct kvm_bitmap {
    bool manual;           /* KVM_CLEAR_DIRTY_LOG re-protects, not KVM_GET_DIRTY_LOG */
    uint64_t *scratch;     /* one slot's bitmap, sized for the largest region */
};

static int kb_supported(struct migr_hv *hv)
{
    if (hv->kvm_vm_fd < 0) {
        migr_errorf(ENOTSUP, "guest backend '%s' is not KVM (no VM fd)", hv->ops->name);
        return 0;
    }
    if (!hv->ops->set_dirty_log) {
        migr_errorf(ENOTSUP, "guest backend '%s' cannot turn on dirty logging", hv->ops->name);
        return 0;
    }
    if (!migr_kvm_is_vm(hv)) {
        migr_errorf(ENOTSUP, "guest backend '%s' is not migr's KVM VMM", hv->ops->name);
        return 0;
    }
    if (((struct kvm_vm *)hv)->ring_entries) {
        migr_errorf(ENOTSUP, "the VM logs dirty pages to rings (created for kvm-ring): "
                    "KVM refuses KVM_GET_DIRTY_LOG then");
        return 0;
    }
    return 1;
}

/* Manual protect if KVM offers it, unless option manual=0/1 forces a mode. */
static int kb_choose_mode(struct migr_dirty *d, bool *manual)
{
    int caps = ioctl(d->hv->kvm_vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
    bool offered = caps > 0 && (caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
    uint64_t want;
    int given = migr_dirty_option(d, "manual", &want);
    if (given < 0)
        return given;
    if (!given) {
        *manual = offered;
        return 0;
    }
    if (want > 1)
        return migr_errorf(EINVAL, "kvm-bitmap: manual=%llu (must be 0 or 1)", (unsigned long long)want);
    if (want && !offered)
        return migr_errorf(ENOTSUP, "kvm-bitmap: manual=1 but this KVM does not offer "
                           "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (check returned %d)", caps);
    *manual = want;
    return 0;
}

static int kb_start(struct migr_dirty *d)
{
    struct migr_hv *hv = d->hv;
    struct kvm_bitmap *kb = calloc(1, sizeof(*kb));
    if (!kb)
        return migr_errorf(ENOMEM, "kvm-bitmap: out of memory");
    int err = kb_choose_mode(d, &kb->manual);
    if (err < 0)
        goto fail;
    uint64_t max_words = 1;
    for (uint32_t r = 0; r < hv->nregions; r++)
        max_words = MIGR_MAX(max_words, migr_bitmap_words(hv->regions[r].size / MIGR_PAGE_SIZE));
    kb->scratch = calloc(max_words, sizeof(uint64_t));
    if (!kb->scratch) {
        err = migr_errorf(ENOMEM, "kvm-bitmap: out of memory for a %llu-word bitmap",
                          (unsigned long long)max_words);
        goto fail;
    }
    if ((err = hv->ops->set_dirty_log(hv, true, kb->manual)) < 0) {
        err = migr_error_prefix(-err, "kvm-bitmap: start (%s mode)",
                                kb->manual ? "manual-protect" : "get-and-clear");
        goto fail;
    }
    d->priv = kb;
    return 0;
fail:
    free(kb->scratch);
    free(kb);
    return err;
}

/* OR the first n bits of src into dst at bit offset base; returns the number
 * of bits that were not set in dst before. dst must hold base + n bits. */
static uint64_t or_bits_at(uint64_t *dst, uint64_t base, const uint64_t *src, uint64_t n)
{
    uint64_t added = 0, words = migr_bitmap_words(n), d0 = base >> 6;
    unsigned s = (unsigned)(base & 63);
    for (uint64_t w = 0; w < words; w++) {
        uint64_t v = src[w];
        if (w == words - 1 && n % 64)
            v &= (1ull << (n % 64)) - 1;
        if (!v)
            continue;
        uint64_t *p = &dst[d0 + w];
        uint64_t lo = v << s;
        added += (uint64_t)__builtin_popcountll(lo & ~*p);
        *p |= lo;
        if (s) {
            /* Non-zero only for bits below base + n, so p[1] is inside dst. */
            uint64_t hi = v >> (64 - s);
            if (hi) {
                added += (uint64_t)__builtin_popcountll(hi & ~p[1]);
                p[1] |= hi;
            }
        }
    }
    return added;
}

/* Re-protect exactly the pages set in bm (the slot's bitmap from GET). KVM
 * wants first_page and num_pages in multiples of 64 (num_pages may instead end
 * at the slot's end), and clears only the bits set in the bitmap we pass. */
static int kb_clear(struct migr_hv *hv, uint32_t slot, const uint64_t *bm, uint64_t npages)
{
    uint64_t words = migr_bitmap_words(npages), w = 0;
    while (w < words) {
        if (!bm[w]) {
            w++;
            continue;
        }
        uint64_t first = w, last = w; /* last: final non-zero word of this run */
        for (uint64_t k = w + 1; k < words && k - last <= CLEAR_MERGE_WORDS &&
                                 (k + 1 - first) * 64 <= CLEAR_MAX_PAGES; k++)
            if (bm[k])
                last = k;
        uint64_t first_page = first * 64;
        uint64_t num = MIGR_MIN((last + 1 - first) * 64, npages - first_page);
        struct kvm_clear_dirty_log c = {
            .slot = slot, .num_pages = (uint32_t)num, .first_page = first_page,
            .dirty_bitmap = (void *)&bm[first],
        };
        if (ioctl(hv->kvm_vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
            return migr_errorf_errno(errno, "KVM_CLEAR_DIRTY_LOG slot %u pages %llu+%llu", slot,
                                     (unsigned long long)first_page, (unsigned long long)num);
        w = last + 1;
    }
    return 0;
}

/* On error the caller's bitmap may already hold some of this harvest's bits
 * (never fewer than KVM took away), so keeping it loses nothing. */
static long kb_harvest(struct migr_dirty *d, uint64_t *bitmap)
{
    struct migr_hv *hv = d->hv;
    struct kvm_bitmap *kb = d->priv;
    uint64_t base = 0, added = 0;
    for (uint32_t r = 0; r < hv->nregions; r++) {
        const struct migr_hv_region *g = &hv->regions[r];
        uint64_t npages = g->size / MIGR_PAGE_SIZE;
        struct kvm_dirty_log log = {.slot = g->slot, .dirty_bitmap = kb->scratch};
        if (ioctl(hv->kvm_vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
            return migr_errorf_errno(errno, "KVM_GET_DIRTY_LOG slot %u", g->slot);
        added += or_bits_at(bitmap, base, kb->scratch, npages);
        if (kb->manual) {
            int err = kb_clear(hv, g->slot, kb->scratch, npages);
            if (err < 0)
                return err;
        }
        base += npages;
    }
    return (long)added;
}

static void kb_stop(struct migr_dirty *d)
{
    struct kvm_bitmap *kb = d->priv;
    if (!kb)
        return;
    /* Nothing to report to: stop cannot fail, and the guest runs on either way. */
    (void)d->hv->ops->set_dirty_log(d->hv, false, kb->manual);
    free(kb->scratch);
    free(kb);
    d->priv = NULL;
}

static const char *const options[] = {"manual", NULL};

const struct migr_dirty_ops migr_kvm_dirty_bitmap = {
    .name = "kvm-bitmap",
    .supported = kb_supported,
    .start = kb_start,
    .harvest = kb_harvest,
    .stop = kb_stop,
    .options = options,
};
