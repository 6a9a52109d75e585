/* The workload's page format and write step. Compiled twice: freestanding
 * into the guest binary, and hosted into libmigr (set-up and verification),
 * so both sides agree on every byte by construction. */
#include "hv-glue/workload/workload.h"
#include "migr/workload.h"

#define barrier() __asm__ __volatile__("" ::: "memory")

/* Words for text-like pages: compressible like prose or logs (lz4 ~2-3x). */
static const char *const wl_words[64] = {
    "the ", "of ", "and ", "to ", "in ", "is ", "that ", "for ", "it ", "as ", "was ",
    "with ", "be ", "by ", "on ", "not ", "he ", "this ", "are ", "or ", "his ", "from ",
    "at ", "which ", "but ", "have ", "an ", "had ", "they ", "you ", "were ", "their ",
    "one ", "all ", "we ", "can ", "her ", "has ", "there ", "been ", "if ", "more ",
    "when ", "will ", "would ", "who ", "so ", "no ", "migration ", "memory ", "page ",
    "guest ", "dirty ", "round ", "kernel ", "vcpu ", "error: ", "ok\n", "INFO ",
    "WARN ", "2026-11-21 ", "request=", "id=", "status=200\n",
};

static uint64_t wl_page_seed(uint64_t index, uint32_t gen, uint64_t seed)
{
    return wl_mix(index * 0x9E3779B97F4A7C15ull ^ ((uint64_t)gen << 40) ^ seed) | 1;
}

void wl_fill_page(uint8_t *page, uint64_t index, uint32_t gen, uint32_t data, uint64_t seed)
{
    uint64_t *w = (uint64_t *)page;
    if (data == 0) {
        for (int i = 0; i < 512; i++)
            w[i] = 0;
        return;
    }
    struct wl_page_hdr *h = (struct wl_page_hdr *)page;
    h->magic = WL_PAGE_MAGIC;
    h->index = index;
    h->gen = gen;
    h->data = data;
    h->check = wl_mix(index ^ ((uint64_t)gen << 40) ^ seed);
    uint64_t s = wl_page_seed(index, gen, seed);
    if (data == 2) {
        for (int i = WL_HDR_SIZE / 8; i < 512; i++)
            w[i] = wl_xorshift(&s);
        return;
    }
    uint32_t pos = WL_HDR_SIZE;
    while (pos < 4096) {
        uint64_t r = wl_xorshift(&s);
        for (int k = 0; k < 10 && pos < 4096; k++, r >>= 6) {
            const char *word = wl_words[r & 63];
            while (*word && pos < 4096)
                page[pos++] = (uint8_t)*word++;
        }
    }
}

int wl_compare_page(const uint8_t *page, const uint8_t *ref, uint64_t index, uint32_t gen, uint32_t *off)
{
    const struct wl_page_hdr *h = (const struct wl_page_hdr *)page, *r = (const struct wl_page_hdr *)ref;
    const uint64_t *w = (const uint64_t *)page, *x = (const uint64_t *)ref;
    int hdr = r->magic == WL_PAGE_MAGIC; /* a zero page has no header */
    *off = 0;
    if (hdr) {
        if (h->magic != WL_PAGE_MAGIC)
            return 1;
        if (h->index != index)
            return 2;
        if (h->gen != gen) {
            *off = 16;
            return 3;
        }
    }
    for (uint32_t i = 0; i < 512; i++) {
        if (w[i] != x[i]) {
            *off = i * 8;
            return hdr ? 4 : 5;
        }
    }
    return 0;
}

static const uint64_t *app_index(const struct wl_app_hdr *h)
{
    return (const uint64_t *)((const uint8_t *)h + 4096 * (1 + h->pages + h->changed));
}

int wl_app_check_image(const struct wl_app_hdr *h, uint64_t avail)
{
    if (avail < 4096 || h->magic != WL_APP_MAGIC || h->version != WL_APP_VERSION)
        return 1;
    if (h->pages == 0 || h->pages > WL_APP_MAX_PAGES || h->changed > h->pages)
        return 2;
    if (h->image_bytes != wl_app_bytes(h->pages, h->changed) || h->image_bytes > avail)
        return 3;
    const uint64_t *idx = app_index(h);
    for (uint64_t j = 0; j < h->changed; j++)
        if (idx[j] >= h->pages || (j && idx[j] <= idx[j - 1]))
            return 4;
    return 0;
}

const uint8_t *wl_app_source(const struct wl_app_hdr *h, uint64_t index, uint32_t gen)
{
    const uint8_t *base = (const uint8_t *)h + 4096;
    if (gen & 1) {
        const uint64_t *idx = app_index(h);
        uint64_t lo = 0, hi = h->changed;
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (idx[mid] < index)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < h->changed && idx[lo] == index)
            return base + 4096 * (h->pages + lo);
    }
    return base + 4096 * index;
}

void wl_app_fill_page(uint8_t *page, const uint8_t *src, uint64_t index, uint32_t gen, uint64_t seed)
{
    const uint64_t *s = (const uint64_t *)src;
    uint64_t *w = (uint64_t *)page, any = 0;
    int first = 0;
    for (int i = 0; i < 512; i++)
        any |= s[i];
    if (any) {   /* every byte is written once, with its final value (an in-flight page is old or new) */
        struct wl_page_hdr *h = (struct wl_page_hdr *)page;
        h->magic = WL_PAGE_MAGIC;
        h->index = index;
        h->gen = gen;
        h->data = MIGR_WL_APP;
        h->check = wl_mix(index ^ ((uint64_t)gen << 40) ^ seed);
        first = WL_HDR_SIZE / 8;
    }
    for (int i = first; i < 512; i++)
        w[i] = s[i];
}

uint64_t wl_next_page(const struct wl_boot *b, struct wl_vcpu *v, uint32_t id)
{
    uint64_t pages = b->data == MIGR_WL_APP ? b->app_changed : b->ws_pages;
    uint64_t nv = b->nvcpus, share = pages > id ? (pages - id + nv - 1) / nv : 0;
    uint64_t r;
    if (share == 0)
        return ~0ull;
    switch (b->pattern) {
    case 0: /* sequential */
        r = v->cursor++;
        if (r >= share) {
            v->cursor = 1;
            r = 0;
        }
        break;
    case 2: { /* hot/cold: 90% of writes to the first 10% of the pages */
        uint64_t x = wl_xorshift(&v->rng);
        uint64_t hot = share / 10 ? share / 10 : 1;
        r = (x >> 32) % 10 < 9 ? (x & 0xffffffff) % hot : (x & 0xffffffff) % share;
        break;
    }
    default: /* random */
        r = wl_xorshift(&v->rng) % share;
        break;
    }
    return id + r * nv;
}

void wl_write_page(uint8_t *ram, const struct wl_boot *b, struct wl_vcpu *v, uint64_t index)
{
    uint32_t *gen = (uint32_t *)(ram + b->gen_gpa);
    const struct wl_app_hdr *app = (const struct wl_app_hdr *)(ram + b->app_gpa);
    if (b->data == MIGR_WL_APP)
        index = app_index(app)[index];   /* a slot of the index (wl_next_page) */
    v->inflight = index + 1;
    barrier();
    uint32_t g = gen[index] + 1;
    if (b->data == MIGR_WL_APP)
        wl_app_fill_page(ram + b->ws_gpa + index * 4096, wl_app_source(app, index, g), index, g, b->seed);
    else
        wl_fill_page(ram + b->ws_gpa + index * 4096, index, g, b->data, b->seed);
    barrier();
    gen[index] = g;
    barrier();
    v->writes = v->writes + 1;
    v->inflight = 0;
}
