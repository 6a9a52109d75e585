/* Host side of the workload: configuration parsing and whole-image verification. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "hv-glue/workload/spec.h"
#include "hv-glue/workload/workload.h"
#include "migr/common.h"
#include "migr/hv.h"
#include "migr/workload.h"

static const char *const pattern_names[] = {"sequential", "random", "hotcold"};
static const char *const data_names[] = {"zero", "text", "random", "app"};

void migr_workload_defaults(struct migr_workload_cfg *c)
{
    memset(c, 0, sizeof(*c));
    c->rate_bytes = 64ull << 20;
    c->pattern = MIGR_WL_RANDOM;
    c->data = MIGR_WL_TEXT;
    c->seed = 1;
}

int migr_workload_parse(const char *spec, struct migr_workload_cfg *c)
{
    char buf[256];
    if (strlen(spec) >= sizeof(buf))
        return migr_errorf(EINVAL, "workload: spec too long");
    strcpy(buf, spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1])
            return migr_errorf(EINVAL, "workload: '%s' is not key=value "
                               "(keys: rate, ws, pattern, data, seed)", tok);
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        /* The values are parsed by spec.c, which the PVH guest shares. */
        switch (wl_spec_set(c, k, strlen(k), v, strlen(v))) {
        case WL_SPEC_OK:
            break;
        case WL_SPEC_BAD_SIZE: {
            uint64_t x;
            if (migr_parse_size(v, &x) < 0)
                return migr_error_prefix(EINVAL, "workload: %s=%s", k, v);
            return migr_errorf(EINVAL, "workload: %s=%s: invalid size", k, v);
        }
        case WL_SPEC_BAD_PATTERN:
            return migr_errorf(EINVAL, "workload: %s=%s: expected sequential, random or hotcold", k, v);
        case WL_SPEC_BAD_DATA:
            return migr_errorf(EINVAL, "workload: %s=%s: expected zero, text, random or app", k, v);
        case WL_SPEC_BAD_NUMBER:
            return migr_errorf(EINVAL, "workload: seed=%s is not a number", v);
        default:
            return migr_errorf(EINVAL, "workload: unknown key '%s' (keys: rate, ws, pattern, data, seed)", k);
        }
    }
    return 0;
}

void migr_workload_format(const struct migr_workload_cfg *c, char *buf, uint64_t cap)
{
    snprintf(buf, cap, "rate=%lluK,ws=%lluK,pattern=%s,data=%s,seed=%llu",
             (unsigned long long)(c->rate_bytes >> 10), (unsigned long long)(c->ws_bytes >> 10),
             pattern_names[c->pattern % 3], data_names[c->data % 4], (unsigned long long)c->seed);
}

static const struct wl_boot *boot_of(struct migr_hv *hv)
{
    const struct wl_boot *b = (const struct wl_boot *)migr_hv_gpa(hv, WL_BOOT_GPA, sizeof(*b));
    return b && b->magic == WL_BOOT_MAGIC && b->version == WL_VERSION ? b : NULL;
}

uint64_t migr_workload_progress(struct migr_hv *hv)
{
    const struct wl_boot *b = boot_of(hv);
    if (!b)
        return 0;
    const struct wl_vcpu *v = (const struct wl_vcpu *)migr_hv_gpa(hv, WL_VCPU_GPA, 4096);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < b->nvcpus && i < WL_MAX_VCPUS; i++)
        sum += v[i].writes;
    return sum;
}

static const char *const why[] = {"ok", "no page header (lost or never written)",
                                  "header names another page", "stale: generation differs",
                                  "torn: body differs from its generation", "zero page holds data"};

/* Guest memory as the verifier sees it: a running VM's regions, or a raw
 * RAM image (offset = guest-physical address). */
struct wl_view {
    struct migr_hv *hv;        /* NULL: image */
    const uint8_t *image;
    uint64_t image_size;
};

static const uint8_t *view_gpa(const struct wl_view *w, uint64_t gpa, uint64_t len)
{
    if (w->hv)
        return migr_hv_gpa(w->hv, gpa, len);
    if (gpa > w->image_size || len > w->image_size - gpa)
        return NULL;
    return w->image + gpa;
}

/* What a page should hold: the deterministic fill, or (data=app) the
 * application image's page under the usual header. */
struct wl_expect {
    uint32_t data;
    uint64_t seed;
    const struct wl_app_hdr *app;   /* data=app: the image in guest memory */
};

static void expect_fill(const struct wl_expect *e, uint8_t *page, uint64_t index, uint32_t gen)
{
    if (e->app)
        wl_app_fill_page(page, wl_app_source(e->app, index, gen), index, gen, e->seed);
    else
        wl_fill_page(page, index, gen, e->data, e->seed);
}

/* wl_compare_page's codes for either kind of page. */
static int expect_check(const struct wl_expect *e, const uint8_t *page, uint64_t index, uint32_t gen, uint32_t *off)
{
    uint64_t ref[512];
    expect_fill(e, (uint8_t *)ref, index, gen);
    return wl_compare_page(page, (const uint8_t *)ref, index, gen, off);
}

/* A page a vCPU was writing when the image was taken (wl_write_page stopped
 * anywhere): each byte holds either generation gen (the old contents, or
 * the new ones once the table was bumped) or gen + 1 (the new contents,
 * written front to back before the table is bumped). Bytes, not words: a
 * text page is filled a byte at a time, so a word can be half old, half new. */
static int inflight_page_ok(const struct wl_expect *e, const uint8_t *page, uint64_t index, uint32_t gen)
{
    uint8_t a[4096], b[4096];
    expect_fill(e, a, index, gen);
    expect_fill(e, b, index, gen + 1);
    for (int i = 0; i < 4096; i++)
        if (page[i] != a[i] && page[i] != b[i])
            return 0;
    return 1;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* data=app: the image the boot page names, whole and unchanged (its CRC),
 * clear of the working set and the generation table. */
static int app_view(const struct wl_view *w, const struct wl_boot *b, const struct wl_app_hdr **out)
{
    const struct wl_app_hdr *h = (const struct wl_app_hdr *)view_gpa(w, b->app_gpa, 4096);
    if (!b->app_gpa || !h || h->magic != WL_APP_MAGIC)
        return migr_errorf(EBADMSG, "verify: data=app but no application image at gpa 0x%llx",
                           (unsigned long long)b->app_gpa);
    uint64_t n = h->image_bytes;
    const uint8_t *all = n >= 4096 && n <= wl_app_bytes(WL_APP_MAX_PAGES, WL_APP_MAX_PAGES)
                         ? view_gpa(w, b->app_gpa, n) : NULL;
    int bad = all ? wl_app_check_image(h, n) : 3;
    if (bad)
        return migr_errorf(EBADMSG, "verify: application image at gpa 0x%llx: %s", (unsigned long long)b->app_gpa,
                           bad == 1 ? "bad version" : bad == 2 ? "bad page counts"
                           : bad == 3 ? "its size is wrong or runs past guest RAM" : "index not ascending or "
                           "outside the working set");
    if (h->pages != b->ws_pages || h->changed != b->app_changed)
        return migr_errorf(EBADMSG, "verify: the boot page names %llu pages / %llu changed, the application "
                           "image %llu / %llu", (unsigned long long)b->ws_pages, (unsigned long long)b->app_changed,
                           (unsigned long long)h->pages, (unsigned long long)h->changed);
    if (overlaps(b->app_gpa, n, b->ws_gpa, b->ws_pages * MIGR_PAGE_SIZE) ||
        overlaps(b->app_gpa, n, b->gen_gpa, b->ws_pages * 4))
        return migr_errorf(EBADMSG, "verify: the application image at gpa 0x%llx overlaps the working set "
                           "or the generation table", (unsigned long long)b->app_gpa);
    uLong crc = crc32(0L, Z_NULL, 0);
    for (uint64_t off = 4096; off < n; off += 1u << 30) {
        uint64_t len = n - off < (1u << 30) ? n - off : (1u << 30);
        crc = crc32(crc, all + off, (uInt)len);
    }
    if ((uint32_t)crc != h->crc32)
        return migr_errorf(EBADMSG, "verify: application image at gpa 0x%llx: CRC-32 0x%08x, its header says "
                           "0x%08x (the image itself was damaged)", (unsigned long long)b->app_gpa,
                           (unsigned)crc, h->crc32);
    *out = h;
    return 0;
}

static int verify_view(const struct wl_view *w, uint32_t nvcpus, bool inflight_ok, struct migr_verify_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    const struct wl_boot *b = (const struct wl_boot *)view_gpa(w, WL_BOOT_GPA, sizeof(*b));
    if (!b || b->magic != WL_BOOT_MAGIC || b->version != WL_VERSION)
        return migr_errorf(EBADMSG, "verify: no workload boot page at gpa 0x%llx",
                           (unsigned long long)WL_BOOT_GPA);
    if (b->nvcpus == 0 || b->nvcpus > WL_MAX_VCPUS || (nvcpus && b->nvcpus != nvcpus))
        return migr_errorf(EBADMSG, "verify: boot page names %u vCPUs, the VM has %u", b->nvcpus, nvcpus);
    if (b->ws_pages > UINT64_MAX / MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "verify: boot page names %llu working-set pages",
                           (unsigned long long)b->ws_pages);
    const uint32_t *gen = (const uint32_t *)view_gpa(w, b->gen_gpa, b->ws_pages * 4);
    const uint8_t *ws = view_gpa(w, b->ws_gpa, b->ws_pages * MIGR_PAGE_SIZE);
    const struct wl_vcpu *v = (const struct wl_vcpu *)view_gpa(w, WL_VCPU_GPA, 4096);
    if (!gen || !ws || !v)
        return migr_errorf(EBADMSG, "verify: boot page describes a working set outside guest RAM");
    struct wl_expect e = {.data = b->data, .seed = b->seed};
    if (b->data == MIGR_WL_APP) {
        int err = app_view(w, b, &e.app);
        if (err < 0)
            return err;
    }
    uint64_t inflight[WL_MAX_VCPUS];
    uint32_t ninflight = 0;
    for (uint32_t i = 0; i < b->nvcpus; i++) {
        rep->total_writes += v[i].writes;
        if (!v[i].inflight)
            continue;
        if (!inflight_ok)
            return migr_errorf(EBUSY, "verify: vCPU %u is in the middle of writing page %llu "
                               "(the guest is not quiesced)", i, (unsigned long long)(v[i].inflight - 1));
        if (v[i].inflight > b->ws_pages)
            return migr_errorf(EBADMSG, "verify: vCPU %u writes page %llu of a %llu-page working set", i,
                               (unsigned long long)(v[i].inflight - 1), (unsigned long long)b->ws_pages);
        inflight[ninflight++] = v[i].inflight - 1;
    }
    for (uint64_t i = 0; i < b->ws_pages; i++) {
        uint32_t off;
        rep->gen_sum += gen[i];
        int rc = expect_check(&e, ws + i * MIGR_PAGE_SIZE, i, gen[i], &off);
        for (uint32_t k = 0; rc && k < ninflight; k++)
            if (inflight[k] == i && inflight_page_ok(&e, ws + i * MIGR_PAGE_SIZE, i, gen[i])) {
                rc = 0;
                rep->inflight_pages++;
            }
        rep->pages_checked++;
        if (rc) {
            if (rep->bad_pages++ == 0) {
                rep->first_bad_page = i;
                snprintf(rep->first_bad_why, sizeof(rep->first_bad_why),
                         "page %llu (gpa 0x%llx): %s at byte %u (generation %u)",
                         (unsigned long long)i, (unsigned long long)(b->ws_gpa + i * MIGR_PAGE_SIZE),
                         why[rc], off, gen[i]);
            }
        }
    }
    /* A vCPU stopped between bumping the table and counting the write has
     * one more generation than writes. */
    bool sums = rep->gen_sum >= rep->total_writes && rep->gen_sum - rep->total_writes <= ninflight;
    rep->ok = rep->bad_pages == 0 && sums;
    if (rep->bad_pages == 0 && !rep->ok)
        snprintf(rep->first_bad_why, sizeof(rep->first_bad_why),
                 "generation table sums to %llu but the vCPUs wrote %llu pages (stale table page)",
                 (unsigned long long)rep->gen_sum, (unsigned long long)rep->total_writes);
    return 0;
}

int migr_workload_verify(struct migr_hv *hv, struct migr_verify_report *rep)
{
    struct wl_view w = {.hv = hv};
    return verify_view(&w, hv->nvcpus, false, rep);
}

int migr_workload_verify_image(const uint8_t *ram, uint64_t size, struct migr_verify_report *rep)
{
    struct wl_view w = {.image = ram, .image_size = size};
    return verify_view(&w, 0, true, rep);
}
