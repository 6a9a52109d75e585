/* Host side of the workload: configuration parsing and whole-image verification. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv-glue/workload/workload.h"
#include "migr/common.h"
#include "migr/hv.h"
#include "migr/workload.h"

static const char *const pattern_names[] = {"sequential", "random", "hotcold"};
static const char *const data_names[] = {"zero", "text", "random"};

void migr_workload_defaults(struct migr_workload_cfg *c)
{
    memset(c, 0, sizeof(*c));
    c->rate_bytes = 64ull << 20;
    c->pattern = MIGR_WL_RANDOM;
    c->data = MIGR_WL_TEXT;
    c->seed = 1;
}

static int lookup(const char *const *names, int n, const char *v, const char *key, uint32_t *out)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], v) == 0) {
            *out = (uint32_t)i;
            return 0;
        }
    if (strcmp(key, "pattern") == 0 && strcmp(v, "hot/cold") == 0) {
        *out = MIGR_WL_HOTCOLD;
        return 0;
    }
    return migr_errorf(EINVAL, "workload: %s=%s: expected %s", key, v,
                       names == pattern_names ? "sequential, random or hotcold" : "zero, text or random");
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
        int err = 0;
        if (strcmp(k, "rate") == 0)
            err = migr_parse_size(v, &c->rate_bytes);
        else if (strcmp(k, "ws") == 0)
            err = migr_parse_size(v, &c->ws_bytes);
        else if (strcmp(k, "pattern") == 0)
            err = lookup(pattern_names, 3, v, k, &c->pattern);
        else if (strcmp(k, "data") == 0)
            err = lookup(data_names, 3, v, k, &c->data);
        else if (strcmp(k, "seed") == 0) {
            char *end;
            errno = 0;
            c->seed = strtoull(v, &end, 0);
            if (errno || *end || !*v)
                err = migr_errorf(EINVAL, "workload: seed=%s is not a number", v);
        } else
            err = migr_errorf(EINVAL, "workload: unknown key '%s' (keys: rate, ws, pattern, data, seed)", k);
        if (err < 0)
            return err;
    }
    return 0;
}

void migr_workload_format(const struct migr_workload_cfg *c, char *buf, uint64_t cap)
{
    snprintf(buf, cap, "rate=%lluK,ws=%lluK,pattern=%s,data=%s,seed=%llu",
             (unsigned long long)(c->rate_bytes >> 10), (unsigned long long)(c->ws_bytes >> 10),
             pattern_names[c->pattern % 3], data_names[c->data % 3], (unsigned long long)c->seed);
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

int migr_workload_verify(struct migr_hv *hv, struct migr_verify_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    const struct wl_boot *b = boot_of(hv);
    if (!b)
        return migr_errorf(EBADMSG, "verify: no workload boot page at gpa 0x%llx",
                           (unsigned long long)WL_BOOT_GPA);
    if (b->nvcpus == 0 || b->nvcpus > WL_MAX_VCPUS || b->nvcpus != hv->nvcpus)
        return migr_errorf(EBADMSG, "verify: boot page names %u vCPUs, the VM has %u", b->nvcpus, hv->nvcpus);
    const uint32_t *gen = (const uint32_t *)migr_hv_gpa(hv, b->gen_gpa, b->ws_pages * 4);
    uint8_t *ws = migr_hv_gpa(hv, b->ws_gpa, b->ws_pages * MIGR_PAGE_SIZE);
    const struct wl_vcpu *v = (const struct wl_vcpu *)migr_hv_gpa(hv, WL_VCPU_GPA, 4096);
    if (!gen || !ws || !v)
        return migr_errorf(EBADMSG, "verify: boot page describes a working set outside guest RAM");
    for (uint32_t i = 0; i < b->nvcpus; i++) {
        rep->total_writes += v[i].writes;
        if (v[i].inflight)
            return migr_errorf(EBUSY, "verify: vCPU %u is in the middle of writing page %llu "
                               "(the guest is not quiesced)", i, (unsigned long long)(v[i].inflight - 1));
    }
    for (uint64_t i = 0; i < b->ws_pages; i++) {
        uint32_t off;
        rep->gen_sum += gen[i];
        int rc = wl_check_page(ws + i * MIGR_PAGE_SIZE, i, gen[i], b->data, b->seed, &off);
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
    rep->ok = rep->bad_pages == 0 && rep->gen_sum == rep->total_writes;
    if (rep->bad_pages == 0 && !rep->ok)
        snprintf(rep->first_bad_why, sizeof(rep->first_bad_why),
                 "generation table sums to %llu but the vCPUs wrote %llu pages (stale table page)",
                 (unsigned long long)rep->gen_sum, (unsigned long long)rep->total_writes);
    return 0;
}
