/* engine: pages that were never written (memfd holes), on the source.
 *
 * Reading a never-written page of a memfd makes the kernel allocate and zero
 * it (~7 us here), so a sender that reads all of guest RAM grows the source
 * VMM's RSS to the whole guest and spends most of its CPU in the kernel's
 * page allocator, for pages that are zero anyway. The sender therefore asks
 * the memfd where its data is (lseek SEEK_DATA / SEEK_HOLE: two calls per
 * extent; bench_holes measured it cheaper than mincore or pagemap at 1-16 GiB
 * for sparse RAM, and pagemap misses pages written through another mapping)
 * and sends every hole as a ZERO run without touching it.
 *
 * Why no write is lost: a hole is sent as zero only if it was a hole when
 * looked at, and every look happens after the dirty tracker started (round 1)
 * or after the harvest that reported the page (later rounds). A page that is
 * a hole at the look holds zeros then; a write after the look is a write
 * after the tracker started or re-armed, so the next harvest reports it and
 * its data follows in a later round (or in the paused stop-and-copy).
 *
 * Trackers may report holes as dirty (pagemap-scan: an unpopulated pte reads
 * as written). engine_holes_filter() drops such false positives after every
 * harvest, so that convergence counts only real writes: a dirty page that is
 * a hole now and was never seen holding data was never written (nothing
 * punches the source's memfd while it is migrated), and the destination has
 * its zeros from round 1 already.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/dirty.h"
#include "engine/engine_impl.h"
#include "engine/stage.h"

/* [*data, *hole) is the first data extent at or after page `page` of region
 * g (page indices within the region); *data == npages if none is left. */
static int extent(const struct migr_hv_region *g, uint64_t page, uint64_t *data, uint64_t *hole)
{
    uint64_t npages = g->size / MIGR_PAGE_SIZE;
    off_t base = (off_t)g->memfd_off, off = base + (off_t)(page * MIGR_PAGE_SIZE);
    off_t d = lseek(g->memfd, off, SEEK_DATA);
    if (d < 0 && errno == ENXIO) {
        *data = *hole = npages;
        return 0;
    }
    if (d < 0)
        return migr_errorf_errno(errno, "lseek(SEEK_DATA) on guest memfd %d at offset %lld", g->memfd,
                                 (long long)off);
    *data = ((uint64_t)(d - base)) / MIGR_PAGE_SIZE;
    if (*data >= npages) {
        *data = *hole = npages;
        return 0;
    }
    off_t h = lseek(g->memfd, d, SEEK_HOLE);
    if (h < 0)
        return migr_errorf_errno(errno, "lseek(SEEK_HOLE) on guest memfd %d at offset %lld", g->memfd,
                                 (long long)d);
    *hole = ((uint64_t)(h - base) + MIGR_PAGE_SIZE - 1) / MIGR_PAGE_SIZE;
    if (*hole > npages)
        *hole = npages;
    return 0;
}

static void set_range(uint64_t *bm, uint64_t first, uint64_t n)
{
    for (; n && (first & 63); first++, n--)
        migr_bit_set(bm, first);
    for (; n >= 64; first += 64, n -= 64)
        bm[first >> 6] = ~0ull;
    for (; n; first++, n--)
        migr_bit_set(bm, first);
}

long engine_data_scan(struct migr_hv *hv, uint64_t *data)
{
    uint64_t base = 0, count = 0;
    memset(data, 0, migr_bitmap_words(hv->ram_pages) * 8);
    for (uint32_t r = 0; r < hv->nregions; r++) {
        const struct migr_hv_region *g = &hv->regions[r];
        uint64_t npages = g->size / MIGR_PAGE_SIZE;
        if (g->memfd < 0) { /* anonymous RAM: no holes to ask about */
            set_range(data, base, npages);
            count += npages;
            base += npages;
            continue;
        }
        for (uint64_t p = 0; p < npages;) {
            uint64_t d, h;
            int err = extent(g, p, &d, &h);
            if (err < 0)
                return migr_error_prefix(-err, "region %u", r);
            if (d >= npages)
                break;
            set_range(data, base + d, h - d);
            count += h - d;
            p = h;
        }
        base += npages;
    }
    return (long)count;
}

long engine_holes_filter(struct migr_hv *hv, uint64_t *bm, uint64_t *seen)
{
    uint64_t base = 0, dropped = 0;
    for (uint32_t r = 0; r < hv->nregions; r++) {
        const struct migr_hv_region *g = &hv->regions[r];
        uint64_t npages = g->size / MIGR_PAGE_SIZE;
        /* data extent known from the last look: [d, h) */
        uint64_t d = 0, h = 0;
        bool known = false;
        for (uint64_t p = 0; g->memfd >= 0 && p < npages; p++) {
            uint64_t i = base + p, w = i >> 6;
            uint64_t unseen = bm[w] & ~seen[w];
            if ((i & 63) == 0 && !unseen) { /* nothing to look at in this word */
                p += 63;
                continue;
            }
            if (!migr_bit_test(bm, i) || migr_bit_test(seen, i))
                continue;
            if (!known || p >= h) {
                /* one SEEK_DATA: p itself is data, or everything up to d is a hole */
                int err = extent(g, p, &d, &h);
                if (err < 0)
                    return migr_error_prefix(-err, "region %u", r);
                known = true;
            }
            if (p < d) {
                migr_bit_clear(bm, i); /* a hole: never written, the destination has its zeros */
                dropped++;
            } else {
                migr_bit_set(seen, i);
            }
        }
        base += npages;
    }
    return (long)dropped;
}

int engine_send_holes(struct sender *s, const uint64_t *data)
{
    struct migr_hv *hv = s->hv;
    uint64_t base = 0;
    int err;
    if (s->enc && (err = engine_encode_flush(s)) < 0)
        return err;
    for (uint32_t r = 0; r < hv->nregions; r++) {
        uint64_t npages = hv->regions[r].size / MIGR_PAGE_SIZE, pfn0 = hv->regions[r].gpa / MIGR_PAGE_SIZE;
        for (uint64_t p = 0; p < npages;) {
            uint64_t i = base + p;
            if ((i & 63) == 0 && p + 64 <= npages && data[i >> 6] == ~0ull) {
                p += 64;
                continue;
            }
            if (migr_bit_test(data, i)) {
                p++;
                continue;
            }
            uint64_t q = p + 1;
            while (q < npages && !migr_bit_test(data, base + q))
                q += ((base + q) & 63) == 0 && q + 64 <= npages && data[(base + q) >> 6] == 0 ? 64 : 1;
            if ((err = engine_batch_zero_run(&s->b, pfn0 + p, q - p)) < 0)
                return err;
            p = q;
        }
        base += npages;
    }
    return engine_batch_flush(&s->b);
}
