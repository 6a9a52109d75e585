/* dirty/ept: EPT dirty-bit harvester (include/migr/ept.h) and the "ept"
 * tracker for guests whose hypervisor attached its EPT (migr_ept_attach).
 *
 * A walk is two passes over the tables: the first only reads and refuses
 * tables it cannot trust (reserved bits, misconfigured entries, a table
 * referenced twice — loops and shared tables — or unreachable), so a bad
 * table never has half of its D bits cleared; the second reports and clears
 * D bits (atomic fetch-and: the CPU sets D with a locked OR, so a D set
 * between our load and our AND is either returned by the AND, and reported
 * now, or set after it, and reported next time), then the flush hook runs
 * (INVEPT), before the caller reads any page.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/ept.h"
#include "migr/hv.h"

#define ENTRIES 512u
#define PG 4096ull

static const char *const level_name[] = {"", "PTE", "PDE", "PDPTE", "PML4E"};

/* Table addresses seen in one walk: open addressing, grows at half full. */
struct seen {
    uint64_t *slot;
    size_t cap, n;
};

static int seen_add(struct seen *s, uint64_t hpa)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        uint64_t *ns = calloc(cap, sizeof(uint64_t));
        if (!ns)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slot[i])
                continue;
            size_t h = (size_t)((s->slot[i] >> 12) * 0x9E3779B97F4A7C15ull) & (cap - 1);
            while (ns[h])
                h = (h + 1) & (cap - 1);
            ns[h] = s->slot[i];
        }
        free(s->slot);
        s->slot = ns;
        s->cap = cap;
    }
    uint64_t key = hpa | 1; /* 0 marks a free slot; table addresses are 4 KiB aligned */
    size_t h = (size_t)((hpa >> 12) * 0x9E3779B97F4A7C15ull) & (s->cap - 1);
    while (s->slot[h]) {
        if (s->slot[h] == key)
            return 1;
        h = (h + 1) & (s->cap - 1);
    }
    s->slot[h] = key;
    s->n++;
    return 0;
}

struct walk {
    struct migr_ept *e;
    uint64_t addr_mask;      /* bits 51:12 below maxphyaddr */
    bool clear;              /* second pass: report and clear */
    bool all;                /* resync: report every present leaf */
    migr_ept_dirty_fn fn;
    void *arg;
    struct seen seen;
    long dirty;
};

static int bad(const char *lvl, uint64_t table, unsigned i, uint64_t gpa, uint64_t v, const char *why)
{
    return migr_errorf(EINVAL, "ept: %s %u of the table at hpa 0x%llx (gpa 0x%llx) = 0x%016llx: %s", lvl, i,
                       (unsigned long long)table, (unsigned long long)gpa, (unsigned long long)v, why);
}

/* Check one present entry at level (4 = PML4E .. 1 = PTE); leaf says whether it maps a page. */
static int check_entry(const struct walk *w, int level, bool leaf, uint64_t table, unsigned i, uint64_t gpa,
                       uint64_t v)
{
    const char *lvl = level_name[level];
    char why[120];
    if ((v & (MIGR_EPT_R | MIGR_EPT_W)) == MIGR_EPT_W)
        return bad(lvl, table, i, gpa, v, "write without read (EPT misconfiguration)");
    uint64_t high = v & 0x000ffffffffff000ull & ~w->addr_mask;
    if (high) {
        snprintf(why, sizeof(why), "reserved address bits 0x%llx above MAXPHYADDR %u",
                 (unsigned long long)high, w->e->maxphyaddr ? w->e->maxphyaddr : 46);
        return bad(lvl, table, i, gpa, v, why);
    }
    if (level == 4 && (v & 0xf8))
        return bad(lvl, table, i, gpa, v, "reserved bits 7:3 of a PML4E set (a PML4E cannot map a page)");
    if (!leaf && level > 1 && (v & 0x78))
        return bad(lvl, table, i, gpa, v, "reserved bits 6:3 of a non-leaf entry set");
    if (leaf) {
        uint64_t mt = (v >> 3) & 7;
        if (mt == 2 || mt == 3 || mt == 7)
            return bad(lvl, table, i, gpa, v, "reserved memory type (2, 3 or 7) in bits 5:3");
        uint64_t rsv = level == 3 ? 0x3ffff000ull : level == 2 ? 0x1ff000ull : 0;
        if (v & rsv) {
            snprintf(why, sizeof(why), "reserved bits 0x%llx of a %s page set", (unsigned long long)(v & rsv),
                     level == 3 ? "1 GiB" : "2 MiB");
            return bad(lvl, table, i, gpa, v, why);
        }
    }
    return 0;
}

static int walk_table(struct walk *w, int level, uint64_t table, uint64_t gpa0)
{
    uint64_t *t = w->e->hpa_to_ptr(w->e->arg, table);
    if (!t)
        return migr_errorf(EFAULT, "ept: the %s table at hpa 0x%llx (gpa 0x%llx) is not reachable "
                           "(hpa_to_ptr returned NULL)", level_name[level], (unsigned long long)table,
                           (unsigned long long)gpa0);
    if (!w->clear)
        w->e->stats.tables++;
    int shift = 12 + 9 * (level - 1);
    for (unsigned i = 0; i < ENTRIES; i++) {
        uint64_t *p = &t[i];
        uint64_t v = __atomic_load_n(p, __ATOMIC_RELAXED);
        if (!(v & 7))
            continue; /* not present */
        uint64_t gpa = gpa0 + ((uint64_t)i << shift);
        bool leaf = level == 1 || ((level == 2 || level == 3) && (v & MIGR_EPT_LARGE));
        if (!w->clear) {
            int err = check_entry(w, level, leaf, table, i, gpa, v);
            if (err < 0)
                return err;
        }
        if (!leaf) {
            uint64_t next = v & w->addr_mask;
            if (!w->clear) {
                int r = seen_add(&w->seen, next);
                if (r < 0)
                    return migr_errorf(ENOMEM, "ept: out of memory");
                if (r > 0)
                    return bad(level_name[level], table, i, gpa, v,
                               "points to a table already reached by this walk (a loop, or a table "
                               "shared by two entries: its D bits could not say which gpa was written)");
            }
            int err = walk_table(w, level - 1, next, gpa);
            if (err < 0)
                return err;
            continue;
        }
        if (!w->clear) {
            if (level == 1)
                w->e->stats.leaves_4k++;
            else if (level == 2)
                w->e->stats.leaves_2m++;
            else
                w->e->stats.leaves_1g++;
            continue;
        }
        if (!(v & MIGR_EPT_D) && !w->all)
            continue;
        uint64_t old = __atomic_fetch_and(p, ~MIGR_EPT_D, __ATOMIC_SEQ_CST);
        if (!(old & MIGR_EPT_D) && !w->all)
            continue;
        w->e->stats.dirty_leaves++;
        w->dirty++;
        w->fn(w->arg, gpa, 1ull << shift);
    }
    return 0;
}

static int check_eptp(struct migr_ept *e, uint64_t addr_mask)
{
    uint64_t p = e->eptp;
    if (!e->hpa_to_ptr)
        return migr_errorf(EINVAL, "ept: no hpa_to_ptr callback");
    if (e->maxphyaddr && (e->maxphyaddr < 32 || e->maxphyaddr > 52))
        return migr_errorf(EINVAL, "ept: MAXPHYADDR %u out of range 32..52", e->maxphyaddr);
    if (!(p & MIGR_EPTP_AD))
        return migr_errorf(EINVAL, "ept: EPTP 0x%llx has bit 6 clear: accessed/dirty flags are off and "
                           "the CPU never sets D", (unsigned long long)p);
    if ((p & 0x38) != MIGR_EPTP_WALK4)
        return migr_errorf(EINVAL, "ept: EPTP 0x%llx: page-walk length %llu (only 4-level EPT is walked)",
                           (unsigned long long)p, (unsigned long long)((p >> 3) & 7) + 1);
    if ((p & 7) != 0 && (p & 7) != 6)
        return migr_errorf(EINVAL, "ept: EPTP 0x%llx: memory type %llu (must be 0 or 6)",
                           (unsigned long long)p, (unsigned long long)(p & 7));
    if (p & 0xf00 || (p & 0x000ffffffffff000ull & ~addr_mask))
        return migr_errorf(EINVAL, "ept: EPTP 0x%llx: reserved bits set", (unsigned long long)p);
    return 0;
}

static uint64_t mask_of(const struct migr_ept *e)
{
    unsigned m = e->maxphyaddr ? e->maxphyaddr : 46;
    if (m < 12 || m > 52)
        m = 46;
    return ((1ull << m) - 1) & ~(PG - 1);
}

static int do_pass(struct walk *w)
{
    memset(&w->seen, 0, sizeof(w->seen));
    uint64_t root = w->e->eptp & w->addr_mask;
    int err = seen_add(&w->seen, root) < 0 ? migr_errorf(ENOMEM, "ept: out of memory") : 0;
    if (!err)
        err = walk_table(w, 4, root, 0);
    free(w->seen.slot);
    return err;
}

int migr_ept_check(struct migr_ept *e)
{
    struct walk w = {.e = e, .addr_mask = mask_of(e)};
    memset(&e->stats, 0, sizeof(e->stats));
    int err = check_eptp(e, w.addr_mask);
    return err < 0 ? err : do_pass(&w);
}

long migr_ept_walk(struct migr_ept *e, migr_ept_dirty_fn fn, void *arg)
{
    int err = migr_ept_check(e);
    if (err < 0)
        return err;
    struct walk w = {.e = e, .addr_mask = mask_of(e), .clear = true, .all = e->resync, .fn = fn, .arg = arg};
    if ((err = walk_table(&w, 4, e->eptp & w.addr_mask, 0)) < 0)
        return err; /* the tables changed under us since the check */
    if (w.dirty && e->flush) {
        e->stats.flushes++;
        if ((err = e->flush(e->arg, e->eptp)) < 0) {
            e->resync = true;
            return migr_error_prefix(-err, "ept: flush (INVEPT) after clearing %ld D bits; the next harvest "
                                     "reports every mapped page", w.dirty);
        }
    }
    e->resync = false;
    return w.dirty;
}

struct to_bitmap {
    const struct migr_ept *e;
    uint64_t *bm;
    uint64_t added;
};

static void set_pages(void *arg, uint64_t gpa, uint64_t bytes)
{
    struct to_bitmap *b = arg;
    uint64_t lo = b->e->gpa_base, hi = lo + b->e->npages * PG;
    uint64_t s = MIGR_MAX(gpa, lo), t = MIGR_MIN(gpa + bytes, hi);
    for (uint64_t a = s; a < t; a += PG) {
        uint64_t i = (a - lo) / PG;
        if (!migr_bit_test(b->bm, i)) {
            migr_bit_set(b->bm, i);
            b->added++;
        }
    }
}

long migr_ept_harvest(struct migr_ept *e, uint64_t *bm)
{
    struct to_bitmap b = {.e = e, .bm = bm};
    long n = migr_ept_walk(e, set_pages, &b);
    return n < 0 ? n : (long)b.added;
}

/* ---------- the "ept" tracker ---------- */

#define MAX_ATTACHED 16
static pthread_mutex_t att_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    struct migr_hv *hv;
    struct migr_ept *e;
} attached[MAX_ATTACHED];

int migr_ept_attach(struct migr_hv *hv, struct migr_ept *e)
{
    int free_slot = -1, err = 0;
    pthread_mutex_lock(&att_lock);
    for (int i = 0; i < MAX_ATTACHED; i++) {
        if (attached[i].hv == hv)
            err = migr_errorf(EBUSY, "ept: guest already has an EPT attached");
        if (!attached[i].hv && free_slot < 0)
            free_slot = i;
    }
    if (!err && free_slot < 0)
        err = migr_errorf(ENOSPC, "ept: %d guests have an EPT attached already", MAX_ATTACHED);
    if (!err) {
        attached[free_slot].hv = hv;
        attached[free_slot].e = e;
    }
    pthread_mutex_unlock(&att_lock);
    return err;
}

void migr_ept_detach(struct migr_hv *hv)
{
    pthread_mutex_lock(&att_lock);
    for (int i = 0; i < MAX_ATTACHED; i++)
        if (attached[i].hv == hv)
            attached[i].hv = NULL, attached[i].e = NULL;
    pthread_mutex_unlock(&att_lock);
}

static struct migr_ept *find(struct migr_hv *hv)
{
    struct migr_ept *e = NULL;
    pthread_mutex_lock(&att_lock);
    for (int i = 0; i < MAX_ATTACHED; i++)
        if (attached[i].hv == hv)
            e = attached[i].e;
    pthread_mutex_unlock(&att_lock);
    return e;
}

static int ept_supported(struct migr_hv *hv)
{
    struct migr_ept *e = find(hv);
    if (!e) {
        migr_errorf(ENOTSUP, "ept: guest backend '%s' has no EPT attached (a hypervisor that owns its "
                    "EPT attaches it with migr_ept_attach; docs/hv-glue.md)", hv->ops->name);
        return 0;
    }
    if (migr_ept_check(e) < 0) {
        migr_error_prefix(ENOTSUP, "ept: the attached EPT is refused");
        return 0;
    }
    return 1;
}

struct to_ram {
    struct migr_hv *hv;
    uint64_t *bm;
    uint64_t added;
};

static void set_ram(void *arg, uint64_t gpa, uint64_t bytes)
{
    struct to_ram *b = arg;
    for (uint64_t a = gpa; a < gpa + bytes; a += PG) {
        int64_t i = migr_hv_pfn_index(b->hv, a / PG);
        if (i < 0)
            continue; /* not RAM (e.g. MMIO) */
        if (b->bm && !migr_bit_test(b->bm, (uint64_t)i)) {
            migr_bit_set(b->bm, (uint64_t)i);
            b->added++;
        }
    }
}

static int ept_start(struct migr_dirty *d)
{
    struct migr_ept *e = find(d->hv);
    if (!e)
        return migr_errorf(ENOTSUP, "ept: no EPT attached");
    /* Writes before start are of no interest: clear every D bit (and flush). */
    struct to_ram b = {.hv = d->hv};
    long n = migr_ept_walk(e, set_ram, &b);
    if (n < 0)
        return (int)n;
    d->priv = e;
    return 0;
}

static long ept_harvest(struct migr_dirty *d, uint64_t *bitmap)
{
    struct to_ram b = {.hv = d->hv, .bm = bitmap};
    long n = migr_ept_walk(d->priv, set_ram, &b);
    return n < 0 ? n : (long)b.added;
}

static void ept_stop(struct migr_dirty *d)
{
    d->priv = NULL; /* D bits keep being set by the CPU; nothing to undo */
}

const struct migr_dirty_ops migr_dirty_ept = {
    .name = "ept",
    .supported = ept_supported,
    .start = ept_start,
    .harvest = ept_harvest,
    .stop = ept_stop,
};
