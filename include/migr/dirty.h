/* migr — dirty-page tracker interface.
 *
 * A tracker reports which pages of a guest's RAM were written since the last
 * harvest. It must never miss a write (reported ⊇ written); false positives
 * are allowed and counted. Pages are indexed by "RAM index": region 0's pages
 * first, then region 1's, ... (see migr_hv_ram_pages()).
 *
 * Threads, blocking, signals: the engine opens, starts, harvests and closes
 * a tracker on the thread running migr_send (and, in cancellable post-copy,
 * the destination's on its checkpoint thread); a tracker is used by one
 * thread at a time. Trackers that need them start their own: "uffd-wp" a
 * fault-handling thread from start to close. "mprotect" installs a
 * process-wide SIGSEGV handler (SA_SIGINFO | SA_ONSTACK) at its first start
 * and keeps it for the life of the process; faults outside its ranges go to
 * the handler installed before it (or the default action). A handler
 * installed after it takes the faults away from it.
 */
#ifndef MIGR_DIRTY_H
#define MIGR_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct migr_hv;
struct migr_dirty;

struct migr_dirty_ops {
    const char *name;
    /*! 1 if this tracker can work for hv on this machine, 0 if not (and then
     *  migr_last_error() says why), never negative. */
    int (*supported)(struct migr_hv *hv);
    /*! Begin tracking. The first harvest reports the pages written since
     *  start (callers send all of RAM in round 1). Only the guest's own writes
     *  are seen: code that writes guest RAM through the host mapping while
     *  tracking must account for those pages itself. */
    int (*start)(struct migr_dirty *d);
    /*! OR the pages written since the previous harvest (or start) into bitmap
     *  (one bit per RAM index, little-endian uint64 words) and re-arm
     *  tracking so that a write racing with the harvest is reported either
     *  now or next time. Returns the number of newly set bits or -errno. */
    long (*harvest)(struct migr_dirty *d, uint64_t *bitmap);
    void (*stop)(struct migr_dirty *d);
    /*! Option keys this tracker accepts after its name ("kvm-bitmap?manual=0",
     *  "pagemap-scan?vec=1000"), NULL-terminated; NULL: none. The tracker
     *  reads their values with migr_dirty_option() in start. */
    const char *const *options;
};

struct migr_dirty {
    const struct migr_dirty_ops *ops;
    struct migr_hv *hv;
    uint64_t npages;       /* RAM pages tracked */
    void *priv;            /* backend state */
    uint64_t harvests;     /* statistics */
    uint64_t harvest_ns;
    const char *options;   /* "key=value,key=value" after the name's '?', or "" (library-owned) */
};

/*! Open the tracker called name for hv, one of: the guest backend's own
 *  (hv->ops->trackers: "kvm-bitmap", "kvm-ring" for KVM guests; for a
 *  backend that names none, and for proc, the process trackers
 *  "pagemap-scan", "soft-dirty", "uffd-wp", "mprotect"), a registered one
 *  (migr_dirty_register), or "ept"; "auto": the first of these, in that
 *  order, that supports hv here (docs/dirty.md). -EINVAL for an unknown
 *  name, -ENOTSUP if not supported; the message gives the reason and lists
 *  the trackers that would work for hv. Probes each candidate's supported()
 *  (milliseconds: a test mapping, a pagemap read); starts no thread. */
int migr_dirty_open(const char *name, struct migr_hv *hv, struct migr_dirty **out);
/*! Options: name may end in "?key=value[,key=value...]" (e.g.
 *  "kvm-bitmap?manual=0": KVM_GET_DIRTY_LOG re-protects even where manual
 *  protect is offered; "pagemap-scan?vec=N": N ranges per PAGEMAP_SCAN call).
 *  A key the tracker does not list in ops->options is refused by
 *  migr_dirty_open (-EINVAL, naming it and the known keys). */

/*! For trackers: the value of option key as an unsigned number. 1 and *val
 *  set if given, 0 if not given (*val unchanged), -EINVAL (with a message
 *  naming tracker, key and value) if it is not a number. */
int migr_dirty_option(const struct migr_dirty *d, const char *key, uint64_t *val);
/*! Start tracking: from its return every write is reported by a harvest.
 *  Write-protects guest RAM (time linear in its size); uffd-wp starts its
 *  handler thread, mprotect installs its SIGSEGV handler (once per process). */
int migr_dirty_start(struct migr_dirty *d);
/*! OR the pages written since start or the previous harvest into bitmap
 *  (one bit per RAM page) and re-arm; returns how many, or -errno. Blocks
 *  for the scan (linear in RAM size); vCPUs keep running meanwhile. */
long migr_dirty_harvest(struct migr_dirty *d, uint64_t *bitmap);
/*! Stop tracking and free (joins a tracker's thread; the mprotect SIGSEGV
 *  handler stays installed). NULL ok. */
void migr_dirty_close(struct migr_dirty *d);

/*! The trackers of dirty/, NULL-terminated (for --help, tests and
 *  benchmarks): the process trackers, then ept. A backend's own trackers
 *  (KVM's) are in its ops (struct migr_hv_ops.trackers). */
extern const struct migr_dirty_ops *const migr_dirty_backends[];
/*! pagemap-scan, soft-dirty, uffd-wp, mprotect: for guests whose RAM is
 *  written through this process's mapping (hv->regions[].host). A backend
 *  offers them with .trackers = migr_dirty_process_trackers; a backend that
 *  names no trackers gets them too. NULL-terminated. */
extern const struct migr_dirty_ops *const migr_dirty_process_trackers[];

/*! Register an embedder's own tracker (its KVM dirty log, a PML log, its own
 *  write-protection) beside the built-in ones: migr_dirty_open(ops->name)
 *  finds it for every guest, and "auto" tries it after the guest backend's
 *  own trackers (ops->supported decides which guests it takes). ops and its
 *  strings must stay valid until migr_dirty_unregister. Thread-safe; may not
 *  be called from a tracker's op. 0, -EINVAL (missing op or name), -EEXIST
 *  (the name is taken), -ENOSPC (16 registered). A tracker used only for
 *  one backend's guests can instead be listed in that backend's
 *  struct migr_hv_ops.trackers. */
int migr_dirty_register(const struct migr_dirty_ops *ops);
/*! Undo migr_dirty_register (trackers already open keep working only as
 *  long as ops stays valid). 0 or -ENOENT. */
int migr_dirty_unregister(const struct migr_dirty_ops *ops);

/* Bitmap helpers (one bit per page, uint64 words). */
static inline void migr_bit_set(uint64_t *bm, uint64_t i) { bm[i >> 6] |= 1ull << (i & 63); }
static inline void migr_bit_clear(uint64_t *bm, uint64_t i) { bm[i >> 6] &= ~(1ull << (i & 63)); }
static inline bool migr_bit_test(const uint64_t *bm, uint64_t i) { return bm[i >> 6] >> (i & 63) & 1; }
static inline uint64_t migr_bitmap_words(uint64_t nbits) { return (nbits + 63) / 64; }
/*! Number of set bits among the first nbits. */
uint64_t migr_bitmap_count(const uint64_t *bm, uint64_t nbits);

#ifdef __cplusplus
}
#endif

#endif
