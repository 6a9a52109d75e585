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

int migr_dirty_open(const char *name, struct migr_hv *hv, struct migr_dirty **out)
{
    const struct migr_dirty_ops *ops = NULL;
    *out = NULL;
    if (!name || !hv)
        return migr_errorf(EINVAL, "dirty tracker: no name or no guest given");
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
    struct dirty_impl *t = calloc(1, sizeof(*t));
    if (!t)
        return migr_errorf(ENOMEM, "dirty tracker %s: out of memory", ops->name);
    t->d.ops = ops;
    t->d.hv = hv;
    t->d.npages = hv->ram_pages;
    *out = &t->d;
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
