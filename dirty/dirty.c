/* dirty: tracker selection and the generic wrapper around a backend's ops
 * (see include/migr/dirty.h). Backends live one per file in this folder. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/hv.h"

extern const struct migr_dirty_ops migr_dirty_kvm_bitmap;
extern const struct migr_dirty_ops migr_dirty_kvm_ring;
extern const struct migr_dirty_ops migr_dirty_pagemap_scan;
extern const struct migr_dirty_ops migr_dirty_soft_dirty;
extern const struct migr_dirty_ops migr_dirty_uffd_wp;
extern const struct migr_dirty_ops migr_dirty_mprotect;
extern const struct migr_dirty_ops migr_dirty_ept;

/* In order of preference: "auto" picks the first supported one. KVM guests
 * support kvm-bitmap, or kvm-ring if created with a dirty ring (then only
 * that: KVM gives a VM one or the other); process guests (proc) the four
 * after them, best
 * first: pagemap-scan (no trap to user space, harvest and re-arm in one
 * call), soft-dirty (no trap, but process-wide and the guest is paused for
 * each harvest), uffd-wp (a trap to our handler thread per first write),
 * mprotect (a signal per first write; portable). ept: guests whose
 * hypervisor owns its EPT and attached it (include/migr/ept.h). */
const struct migr_dirty_ops *const migr_dirty_backends[] = {
    &migr_dirty_kvm_bitmap,
    &migr_dirty_kvm_ring,
    &migr_dirty_pagemap_scan,
    &migr_dirty_soft_dirty,
    &migr_dirty_uffd_wp,
    &migr_dirty_mprotect,
    &migr_dirty_ept,
    NULL,
};

/* The public struct plus what only this file needs. */
struct dirty_impl {
    struct migr_dirty d;   /* first: a struct migr_dirty * is a struct dirty_impl * */
    bool started;
    char options[128];     /* d.options points here */
};

static void known_names(char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; migr_dirty_backends[i] && n < cap; i++) {
        int w = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", migr_dirty_backends[i]->name);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

/* "auto (= X), X, Y" — the trackers that support hv here. Clobbers the
 * thread's error message (each supported() may record one). */
static void supported_names(struct migr_hv *hv, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; migr_dirty_backends[i] && n < cap; i++) {
        if (migr_dirty_backends[i]->supported(hv) <= 0)
            continue;
        int w = n == 0 ? snprintf(buf, cap, "auto (= %s), %s", migr_dirty_backends[i]->name,
                                  migr_dirty_backends[i]->name)
                       : snprintf(buf + n, cap - n, ", %s", migr_dirty_backends[i]->name);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    if (n == 0)
        snprintf(buf, cap, "none");
}

static const struct migr_dirty_ops *find_backend(const char *name)
{
    for (size_t i = 0; migr_dirty_backends[i]; i++)
        if (strcmp(migr_dirty_backends[i]->name, name) == 0)
            return migr_dirty_backends[i];
    return NULL;
}

/* Every key in opts ("k=v,k=v") is one the tracker lists. */
static int check_options(const struct migr_dirty_ops *ops, const char *opts)
{
    for (const char *p = opts; *p;) {
        size_t klen = strcspn(p, "=,");
        bool known = false;
        for (size_t i = 0; ops->options && ops->options[i]; i++)
            if (strlen(ops->options[i]) == klen && strncmp(ops->options[i], p, klen) == 0)
                known = true;
        if (!known || p[klen] != '=') {
            char list[120] = "";
            for (size_t i = 0, n = 0; ops->options && ops->options[i] && n < sizeof(list); i++) {
                int w = snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", ops->options[i]);
                n += w > 0 ? (size_t)w : 0;
            }
            return migr_errorf(EINVAL, "dirty tracker %s: %s option '%.*s' (known: %s)", ops->name,
                               known ? "no value for" : "unknown", (int)klen, p, list[0] ? list : "none");
        }
        p += klen + 1;
        p += strcspn(p, ",");
        p += *p == ',';
    }
    return 0;
}

int migr_dirty_option(const struct migr_dirty *d, const char *key, uint64_t *val)
{
    size_t klen = strlen(key);
    for (const char *p = d->options ? d->options : ""; *p; p += strcspn(p, ","), p += *p == ',') {
        if (strncmp(p, key, klen) != 0 || p[klen] != '=')
            continue;
        const char *v = p + klen + 1;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 0);
        size_t vlen = strcspn(v, ",");
        if (vlen == 0 || *v == '-' || errno || end != v + vlen)
            return migr_errorf(EINVAL, "dirty tracker %s: option %s='%.*s' is not a number",
                               d->ops->name, key, (int)vlen, v);
        *val = x;
        return 1;
    }
    return 0;
}

static int open_named(const char *name, struct migr_hv *hv, const struct migr_dirty_ops **out);

int migr_dirty_open(const char *spec, struct migr_hv *hv, struct migr_dirty **out)
{
    const struct migr_dirty_ops *ops;
    char name[64];
    *out = NULL;
    if (!spec || !hv)
        return migr_errorf(EINVAL, "dirty tracker: no name or no guest given");
    size_t nlen = strcspn(spec, "?");
    const char *opts = spec[nlen] ? spec + nlen + 1 : "";
    struct dirty_impl *t = calloc(1, sizeof(*t));
    if (!t)
        return migr_errorf(ENOMEM, "dirty tracker %s: out of memory", spec);
    if (nlen >= sizeof(name) || strlen(opts) >= sizeof(t->options)) {
        free(t);
        return migr_errorf(EINVAL, "dirty tracker '%.40s...': name or options too long", spec);
    }
    memcpy(name, spec, nlen);
    name[nlen] = 0;
    int err = open_named(name, hv, &ops);
    if (err == 0 && opts[0] && strcmp(name, "auto") == 0)
        err = migr_errorf(EINVAL, "dirty tracker auto takes no options (got '%s')", opts);
    if (err == 0)
        err = check_options(ops, opts);
    if (err < 0) {
        free(t);
        return err;
    }
    snprintf(t->options, sizeof(t->options), "%s", opts);
    t->d.ops = ops;
    t->d.hv = hv;
    t->d.npages = hv->ram_pages;
    t->d.options = t->options;
    *out = &t->d;
    return 0;
}

/* The tracker called name ("auto": the first that supports hv) in *out. */
static int open_named(const char *name, struct migr_hv *hv, const struct migr_dirty_ops **out)
{
    const struct migr_dirty_ops *ops = NULL;
    if (strcmp(name, "auto") == 0) {
        /* Collect every backend's reason so the user sees why none fits. */
        char why[1000] = "";
        size_t n = 0;
        for (size_t i = 0; migr_dirty_backends[i]; i++) {
            migr_clear_error();
            if (migr_dirty_backends[i]->supported(hv) > 0) {
                ops = migr_dirty_backends[i];
                break;
            }
            if (n < sizeof(why)) {
                int w = snprintf(why + n, sizeof(why) - n, "%s%s: %s", n ? "; " : "",
                                 migr_dirty_backends[i]->name, migr_last_error());
                if (w > 0)
                    n += (size_t)w;
            }
        }
        if (!ops)
            return migr_errorf(ENOTSUP, "dirty tracker auto: no tracker supports backend '%s' (%s)",
                               hv->ops->name, why);
    } else {
        char names[200], ok[200];
        ops = find_backend(name);
        if (!ops) {
            known_names(names, sizeof(names));
            supported_names(hv, ok, sizeof(ok));
            return migr_errorf(EINVAL, "unknown dirty tracker '%s' (known: auto, %s; for backend '%s' "
                               "this machine supports: %s)", name, names, hv->ops->name, ok);
        }
        migr_clear_error();
        if (ops->supported(hv) <= 0) {
            char why[300];
            snprintf(why, sizeof(why), "%s", migr_last_error());
            supported_names(hv, ok, sizeof(ok));
            return migr_errorf(ENOTSUP, "dirty tracker %s not supported for backend '%s': %s "
                               "(this machine supports: %s)", ops->name, hv->ops->name, why, ok);
        }
    }
    *out = ops;
    return 0;
}

int migr_dirty_start(struct migr_dirty *d)
{
    struct dirty_impl *t = (struct dirty_impl *)d;
    if (t->started)
        return migr_errorf(EBUSY, "dirty tracker %s: already started", d->ops->name);
    int err = d->ops->start(d);
    if (err < 0)
        return err;
    t->started = true;
    return 0;
}

long migr_dirty_harvest(struct migr_dirty *d, uint64_t *bitmap)
{
    struct dirty_impl *t = (struct dirty_impl *)d;
    if (!t->started)
        return migr_errorf(EINVAL, "dirty tracker %s: harvest before start", d->ops->name);
    uint64_t t0 = migr_now_ns();
    long n = d->ops->harvest(d, bitmap);
    d->harvest_ns += migr_now_ns() - t0;
    if (n >= 0)
        d->harvests++;
    return n;
}

void migr_dirty_close(struct migr_dirty *d)
{
    struct dirty_impl *t = (struct dirty_impl *)d;
    if (!t)
        return;
    if (t->started)
        d->ops->stop(d);
    free(t);
}

uint64_t migr_bitmap_count(const uint64_t *bm, uint64_t nbits)
{
    uint64_t n = 0, full = nbits / 64;
    for (uint64_t i = 0; i < full; i++)
        n += (uint64_t)__builtin_popcountll(bm[i]);
    if (nbits % 64)
        n += (uint64_t)__builtin_popcountll(bm[full] & ((1ull << (nbits % 64)) - 1));
    return n;
}
