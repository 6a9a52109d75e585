/* dirty: tracker selection and the generic wrapper around a backend's ops
 * (see include/migr/dirty.h). Backends live one per file in this folder. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/hv.h"

extern const struct migr_dirty_ops migr_dirty_pagemap_scan;
extern const struct migr_dirty_ops migr_dirty_soft_dirty;
extern const struct migr_dirty_ops migr_dirty_uffd_wp;
extern const struct migr_dirty_ops migr_dirty_mprotect;
extern const struct migr_dirty_ops migr_dirty_ept;

/* Where a guest's trackers come from, in the order "auto" tries them:
 *   1. its backend's own (hv->ops->trackers: KVM's dirty log and rings live
 *      in hv-glue/kvm/), or, for a backend that names none, the process
 *      trackers below;
 *   2. the ones an embedder registered (migr_dirty_register), in order;
 *   3. ept, for any guest whose hypervisor attached its EPT (migr_ept_attach).
 * The process trackers, best first: pagemap-scan (no trap to user space,
 * harvest and re-arm in one call), soft-dirty (no trap, but process-wide and
 * the guest is paused for each harvest), uffd-wp (a trap to our handler
 * thread per first write), mprotect (a signal per first write; portable). */
const struct migr_dirty_ops *const migr_dirty_process_trackers[] = {
    &migr_dirty_pagemap_scan,
    &migr_dirty_soft_dirty,
    &migr_dirty_uffd_wp,
    &migr_dirty_mprotect,
    NULL,
};

const struct migr_dirty_ops *const migr_dirty_backends[] = {
    &migr_dirty_pagemap_scan,
    &migr_dirty_soft_dirty,
    &migr_dirty_uffd_wp,
    &migr_dirty_mprotect,
    &migr_dirty_ept,
    NULL,
};

static const struct migr_dirty_ops *const generic[] = {&migr_dirty_ept, NULL};

#define MAX_REGISTERED 16
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct migr_dirty_ops *registered[MAX_REGISTERED + 1]; /* NULL-terminated */

/* The public struct plus what only this file needs. */
struct dirty_impl {
    struct migr_dirty d;   /* first: a struct migr_dirty * is a struct dirty_impl * */
    bool started;
    char options[128];     /* d.options points here */
};

/* The candidate lists for hv, in order (see the top of this file). */
static void candidate_lists(const struct migr_hv *hv, const struct migr_dirty_ops *const *lists[3])
{
    lists[0] = hv->ops->trackers ? hv->ops->trackers : migr_dirty_process_trackers;
    lists[1] = registered;
    lists[2] = generic;
}

/* Call fn for each candidate of hv until it returns true; that one, or NULL.
 * Under reg_lock: registrations do not change under a walk. */
static const struct migr_dirty_ops *walk(const struct migr_hv *hv,
                                         bool (*fn)(const struct migr_dirty_ops *, void *), void *arg)
{
    const struct migr_dirty_ops *const *lists[3], *found = NULL;
    candidate_lists(hv, lists);
    pthread_mutex_lock(&reg_lock);
    for (int l = 0; l < 3 && !found; l++)
        for (size_t i = 0; lists[l][i] && !found; i++)
            if (fn(lists[l][i], arg))
                found = lists[l][i];
    pthread_mutex_unlock(&reg_lock);
    return found;
}

struct names {
    char buf[400];
    size_t n;
    struct migr_hv *hv;    /* only the supported ones; NULL: all */
};

static bool add_name(const struct migr_dirty_ops *ops, void *arg)
{
    struct names *x = arg;
    if (x->n >= sizeof(x->buf) || (x->hv && ops->supported(x->hv) <= 0))
        return false;
    int w = x->hv && x->n == 0 ? snprintf(x->buf, sizeof(x->buf), "auto (= %s), %s", ops->name, ops->name)
                               : snprintf(x->buf + x->n, sizeof(x->buf) - x->n, ", %s", ops->name);
    if (w > 0)
        x->n += (size_t)w;
    return false;
}

/* ", X, Y" — every tracker offered to hv; or, with supported, "auto (= X),
 * X, Y" — those that support it here. Clobbers the thread's error message
 * (each supported() may record one). */
static void list_names(struct migr_hv *hv, bool supported, struct names *x)
{
    x->buf[0] = 0;
    x->n = 0;
    x->hv = supported ? hv : NULL;
    walk(hv, add_name, x);
    if (supported && x->n == 0)
        snprintf(x->buf, sizeof(x->buf), "none");
}

static bool name_is(const struct migr_dirty_ops *ops, void *name)
{
    return strcmp(ops->name, name) == 0;
}

struct why {
    struct migr_hv *hv;
    char buf[1000];
    size_t n;
};

/* For auto: the first that supports hv; collects every other one's reason. */
static bool supports(const struct migr_dirty_ops *ops, void *arg)
{
    struct why *w = arg;
    migr_clear_error();
    if (ops->supported(w->hv) > 0)
        return true;
    if (w->n < sizeof(w->buf)) {
        int k = snprintf(w->buf + w->n, sizeof(w->buf) - w->n, "%s%s: %s", w->n ? "; " : "", ops->name,
                         migr_last_error());
        if (k > 0)
            w->n += (size_t)k;
    }
    return false;
}

/* Whether list l holds the tracker called name. */
static bool listed(const struct migr_dirty_ops *const *l, const char *name)
{
    for (size_t i = 0; l && l[i]; i++)
        if (strcmp(l[i]->name, name) == 0)
            return true;
    return false;
}

/* A built-in backend that offers name, or NULL. */
static const char *offered_by(const char *name)
{
    static const char *const backends[] = {"kvm", "proc"};
    for (size_t b = 0; b < MIGR_ARRAY_SIZE(backends); b++)
        if (listed(migr_hv_backend_trackers(backends[b]), name))
            return backends[b];
    return NULL;
}

int migr_dirty_register(const struct migr_dirty_ops *ops)
{
    if (!ops || !ops->name || !ops->name[0] || strchr(ops->name, '?') || !ops->supported || !ops->start ||
        !ops->harvest || !ops->stop)
        return migr_errorf(EINVAL, "dirty tracker registration: a name (without '?') and every op "
                           "(supported, start, harvest, stop) are needed");
    if (strcmp(ops->name, "auto") == 0 || offered_by(ops->name))
        return migr_errorf(EEXIST, "dirty tracker %s: the name of a built-in tracker", ops->name);
    if (listed(migr_dirty_backends, ops->name))
        return migr_errorf(EEXIST, "dirty tracker %s: the name of a built-in tracker", ops->name);
    pthread_mutex_lock(&reg_lock);
    size_t n = 0;
    int err = 0;
    for (; registered[n]; n++)
        if (strcmp(registered[n]->name, ops->name) == 0)
            err = migr_errorf(EEXIST, "dirty tracker %s is already registered", ops->name);
    if (!err && n == MAX_REGISTERED)
        err = migr_errorf(ENOSPC, "dirty tracker %s: %d trackers registered already", ops->name, MAX_REGISTERED);
    if (!err)
        registered[n] = ops;
    pthread_mutex_unlock(&reg_lock);
    return err;
}

int migr_dirty_unregister(const struct migr_dirty_ops *ops)
{
    int err = migr_errorf(ENOENT, "dirty tracker %s is not registered", ops && ops->name ? ops->name : "(null)");
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; registered[i]; i++)
        if (registered[i] == ops) {
            memmove(&registered[i], &registered[i + 1], (MAX_REGISTERED - i) * sizeof(registered[0]));
            err = 0;
            break;
        }
    pthread_mutex_unlock(&reg_lock);
    if (err == 0)
        migr_clear_error();
    return err;
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
    const struct migr_dirty_ops *ops;
    struct names all, ok;
    if (strcmp(name, "auto") == 0) {
        struct why w = {.hv = hv};
        ops = walk(hv, supports, &w);
        if (!ops)
            return migr_errorf(ENOTSUP, "dirty tracker auto: no tracker supports backend '%s' (%s)",
                               hv->ops->name, w.buf);
        *out = ops;
        return 0;
    }
    ops = walk(hv, name_is, (void *)name);
    if (!ops) {
        const char *owner = offered_by(name);
        list_names(hv, false, &all);
        list_names(hv, true, &ok);
        if (listed(migr_dirty_process_trackers, name))
            return migr_errorf(ENOTSUP, "dirty tracker %s not supported for backend '%s': %s watches this "
                               "process's page tables, and backend '%s' offers its own trackers (its guests "
                               "do not write RAM through this process's mapping) (this machine supports: %s)",
                               name, hv->ops->name, name, hv->ops->name, ok.buf);
        if (owner)
            return migr_errorf(ENOTSUP, "dirty tracker %s not supported for backend '%s': it is the %s "
                               "backend's own, and guest backend '%s' is not %s (this machine supports: %s)",
                               name, hv->ops->name, owner, hv->ops->name, owner, ok.buf);
        return migr_errorf(EINVAL, "unknown dirty tracker '%s' (known: auto%s; for backend '%s' "
                           "this machine supports: %s)", name, all.buf, hv->ops->name, ok.buf);
    }
    migr_clear_error();
    if (ops->supported(hv) <= 0) {
        char why[300];
        snprintf(why, sizeof(why), "%s", migr_last_error());
        list_names(hv, true, &ok);
        return migr_errorf(ENOTSUP, "dirty tracker %s not supported for backend '%s': %s "
                           "(this machine supports: %s)", ops->name, hv->ops->name, why, ok.buf);
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
