/* migr — the migration engine: pre-copy today.
 *
 * migr_send() moves a running guest to the peer at the other end of a
 * transport; migr_recv() builds the guest from an incoming stream and
 * resumes it. The source owns the guest until the destination has everything
 * (READY) and the source has said COMMIT: any failure before that resumes the
 * guest on the source. Between COMMIT and DONE ownership is in doubt; the
 * source then keeps the guest paused (never running two copies).
 *
 * Threads, blocking, signals (every function below says its own):
 *  - migr_send / migr_recv* block the calling thread for the whole
 *    migration and return only after every thread they started has been
 *    joined. Before COMMIT every wait is bounded by stall_timeout_ms of
 *    silence on the link (0 = unbounded) and by migr_cancel_request(); in
 *    post-copy by the lease / postcopy_timeout_ms. The source's wait for
 *    DONE after COMMIT has no bound of the engine's: a destination that
 *    keeps the link open and says nothing is waited for (the link breaking
 *    ends it, with ownership in doubt).
 *  - Threads they start, all joined before they return: the stall
 *    watchdog (before COMMIT, both sides); source: compress_threads - 1
 *    encoders, in post-copy the push thread (nice +5), the main stream's
 *    reader, the fault server, the lease watcher and, while the fault
 *    channel is offered, its accept thread; destination: decode_threads - 1
 *    decoders, the prefault thread (round 1), in post-copy the fault
 *    thread, the main stream's placement thread (nice +5), the watchdog
 *    and, cancellable, the checkpoint thread. The trackers and the
 *    transports start their own (libmigr.3, "THREADS AND SIGNALS").
 *  - Callbacks: progress on the thread running migr_send (the push thread
 *    in post-copy); switchover_hook on migr_send's thread; the hv ops
 *    (pause, save_state, resume, load_state) and the tracker on migr_send's
 *    thread, on the destination on migr_recv's thread, and in cancellable
 *    post-copy also on the destination's checkpoint thread (pause,
 *    save_state, resume, the tracker's harvest); the builder's create on
 *    migr_recv's thread; the log function (common.h) on any libmigr thread.
 *  - Signal handlers: the engine installs none itself. The "mprotect"
 *    tracker installs a process-wide SIGSEGV handler at its first start
 *    (kept for the process's lifetime, chaining to the previous one); the
 *    kvm backend a SIGUSR1 handler (vCPU kicks) at the first guest it
 *    creates. Under ASan run with handle_segv=0 for the first.
 */
#ifndef MIGR_ENGINE_H
#define MIGR_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "migr/hv.h"
#include "migr/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ABI: structs that outlive a header version.
 *
 * Every struct here that a caller allocates and the library reads or fills
 * (migr_send_params, migr_recv_params, migr_stats) and the one the library
 * hands to a callback (migr_progress) begins with `uint32_t size`: the
 * sizeof the writer was compiled with. So a program built against an older
 * or newer header works with this library:
 *
 *  - Set size with the initializers: MIGR_SEND_PARAMS_INIT /
 *    migr_send_params_init(), MIGR_RECV_PARAMS_INIT, MIGR_STATS_INIT /
 *    migr_stats_init(). They are macros and inline functions, so size is the
 *    caller's own sizeof; they zero the rest (and set send's defaults).
 *  - Parameters in: the library copies min(size, its sizeof) bytes over its
 *    own defaults, so a field the caller's header lacks keeps its default.
 *    A caller struct larger than the library's is accepted when every byte
 *    past the library's sizeof is 0 (options left unset) and refused with
 *    -E2BIG otherwise (the caller asked for something this library lacks).
 *  - Statistics out: the library writes at most size bytes; on return size
 *    is what it filled (min(size, its sizeof)) and bytes past that, up to the
 *    caller's size, are 0. migr_stats_json() reads only size bytes. With
 *    size equal to the library's sizeof st is filled in place as the
 *    migration runs (another thread may watch a counter, racily); with any
 *    other size it is written once, when the call returns.
 *  - Progress: check p->size before reading a field the library may predate:
 *    MIGR_HAS_FIELD(p, field).
 *  - A size of 0 (a struct not set up with its initializer), below 8, above
 *    64 KiB or not a multiple of 4 is refused with -EINVAL and a message
 *    naming the struct ("send params: size 0 (use migr_send_params_init)");
 *    migr_send() and migr_recv*() then touch neither guest nor link.
 *  - For maintainers: fields are only added at the end, never removed or
 *    reordered once released, and a new field starts at or past the
 *    previous version's sizeof: a field that would land in its tail
 *    padding comes after an explicit `uint32_t reserved_N`, which the
 *    library never reads (older callers' padding is not necessarily 0).
 *  - Not sized yet (a change to them still needs callers rebuilt): the
 *    ops tables and configurations of the other headers (migr_vm_config,
 *    migr_hv_builder, migr_hv_ops, migr_dirty_ops, migr_link_opts,
 *    migr_workload_cfg, migr_verify_report, migr_rejuv_*, migr_model_*,
 *    migr_ept, migr_pagecache_stats, migr_codec_ops).
 */
#define MIGR_HAS_FIELD(p, field) \
    ((size_t)(p)->size >= offsetof(__typeof__(*(p)), field) + sizeof((p)->field))

#define MIGR_MAX_ROUNDS_KEPT 64

/* Migration modes (docs/design.md, "The engine as units"). The source's
 * HELLO names the mode on the wire (docs/format.md, HELLO mode). */
enum migr_mode {
    MIGR_MODE_PRECOPY,            /* rounds of dirty pages, then stop-and-copy (the default) */
    MIGR_MODE_HANDOVER,           /* same host, unix socket: pass the RAM memfds, copy no page */
    MIGR_MODE_POSTCOPY,           /* switch at once; pages follow on fault and pushed */
    MIGR_MODE_HYBRID,             /* pre-copy rounds first, then post-copy */
    MIGR_MODE_TAIL,               /* pre-copy rounds while they help, then a short cancellable post-copy
                                     tail for the last dirty pages (the CLI's default; docs/design.md) */
};

/* Per wire encoding counters (index = MIGR_ENC_*), in struct migr_progress and struct migr_stats. */
#define MIGR_STATS_ENCS 6

/* What a running migration reports to migr_send_params.progress (engine/progress.c).
 * Fields are only ever added at the end. */
struct migr_progress {
    uint32_t size;                /* the library's sizeof(struct migr_progress): see MIGR_HAS_FIELD */
    const char *phase;            /* "precopy", "stop-and-copy", "switchover", "postcopy" */
    uint32_t round;
    uint64_t pages_done, pages_total;   /* within this round */
    uint64_t bytes_sent;                /* whole migration */
    double elapsed_s;
    /* since 0.6 */
    uint64_t ram_pages;           /* the guest's RAM, in pages */
    uint64_t pages_sent;          /* whole migration (a zero run counts each page) */
    uint64_t dirty_pages;         /* dirty at the last harvest (0 before the first) */
    double dirty_rate;            /* bytes/s the guest dirtied in the last complete round; 0 = not known yet */
    double transfer_rate;         /* wire bytes/s in the current round (the last one's until 50 ms have passed) */
    double expected_downtime_ms;  /* what is dirty now, at the transfer rate; < 0 = not known yet */
    uint64_t max_bandwidth;       /* the rate limit in force, bytes/s (0 = none) */
    uint64_t codec_pages[MIGR_STATS_ENCS];  /* pages so far per wire encoding (MIGR_ENC_*) */
    uint64_t codec_bytes[MIGR_STATS_ENCS];  /* their payload bytes on the wire */
};

typedef void (*migr_progress_fn)(void *arg, const struct migr_progress *p);

/* Cancelling a migration from another thread (a control socket's thread, a
 * supervisor). Opaque; one per migration, shared by the caller and migr_send. */
struct migr_cancel;

/*! A new cancel handle, or NULL (out of memory). Free with migr_cancel_free
 *  once migr_send has returned. Neither blocks nor starts a thread. */
struct migr_cancel *migr_cancel_new(void);
/*! Free c (NULL is fine); not while a migration uses it. Does not block. */
void migr_cancel_free(struct migr_cancel *c);

/*! Ask the migration using c to stop; thread-safe, returns at once. While the
 *  source still owns the guest (before COMMIT) the link is shut down, so the
 *  engine wakes from any blocked send or receive — a stalled peer included —
 *  and resumes the guest on the source. In cancellable post-copy the guest
 *  comes back with the destination's next checkpoint; plain post-copy cannot
 *  be cancelled. Returns 1 if the link was woken, 0 if the request is left to
 *  the post-copy protocol or nothing runs yet (it applies when it starts).
 *  Any thread, signal handlers excepted (it takes a mutex); does not wait
 *  for the migration to end. */
int migr_cancel_request(struct migr_cancel *c);

/*! True once migr_cancel_request was called on c. Any thread; does not block. */
bool migr_cancel_requested(struct migr_cancel *c);

struct migr_send_params {
    uint32_t size;                /* sizeof(struct migr_send_params) as the caller compiled it (ABI, above) */
    uint32_t downtime_ms;         /* target; default 300 */
    uint32_t max_rounds;          /* default 30 */
    enum migr_mode mode;          /* default MIGR_MODE_PRECOPY */
    const char *tracker;          /* "auto" or a tracker name */
    bool cancellable;             /* post-copy, hybrid: the destination checkpoints back and the source can
                                     take the guest back (default true; false: HELLO mode postcopy/hybrid) */
    uint32_t hybrid_rounds;       /* hybrid: at most this many pre-copy rounds, then post-copy (default 1) */
    uint32_t prepage;             /* post-copy: pages sent after each faulted one (default 8) */
    struct migr_cancel *cancel;   /* optional: migr_cancel_request() stops the migration */
    uint32_t stall_timeout_ms;    /* before COMMIT: no byte moved on the link for this long ends the
                                     migration and resumes the guest on the source (default 10000;
                                     0 = wait forever) */
    uint32_t postcopy_lease_ms;   /* cancellable post-copy: the destination runs the guest only while its
                                     last checkpoint acknowledged here is younger than this; the source
                                     takes the guest back after 2x this without a word from the
                                     destination (default 10000) */
    migr_progress_fn progress;    /* optional; called at most every ~100 ms and at round ends */
    void *progress_arg;
    /* Joint switchover of a VM group (cli/group.c): called with "pause" just
     * before the guest is paused and with "commit" once the destination is
     * ready, just before COMMIT; may block until every member got there. A
     * negative return aborts the migration and the guest resumes on the
     * source. Pre-copy and hand-over only (post-copy refuses it). Called
     * once more with "done" when the destination runs the guest (its return
     * is ignored). NULL = none. */
    int (*switchover_hook)(void *arg, const char *point);
    void *switchover_arg;
    /* Rate control (pre-copy rounds; post-copy pushes too). */
    uint64_t max_bandwidth;       /* bytes/s on the wire, 0 = unlimited */
    uint32_t link_mbps;           /* compress auto policy: assume this link rate (MB/s) instead of measuring it */
    bool adaptive_bw;             /* Xen-style (seed 002, Clark et al.): round 1 at min_bandwidth, then
                                     each round at the previous round's dirty rate + min_bandwidth,
                                     capped by max_bandwidth; stop-and-copy at max_bandwidth */
    uint64_t min_bandwidth;       /* adaptive: first round's rate and the step (default 64 MiB/s) */
    /* page codecs of the pre-copy rounds (docs/compress.md, "In the engine") */
    const char *compress;         /* none|zero|xbzrle|lz4|zlib|zstd|auto (default auto) */
    int compress_level;           /* lz4/zstd/zlib level; 0 = the codec's default */
    uint32_t xbzrle_cache_mib;    /* sender's page cache for deltas in MiB; 0 = no deltas; default
                                     MIGR_XBZRLE_CACHE_AUTO (since 0.8.2; 64 before): 1/256 of guest
                                     RAM, at most 64 MiB, so that migrating grows the source's
                                     memory by under 1% of the guest's */
    uint32_t compress_threads;    /* encoding threads incl. the engine's, 1..16; 0 (default): 2 if 2+ CPUs */
};

/* xbzrle_cache_mib: size the cache by the guest (1/256 of its RAM, at most 64 MiB). */
#define MIGR_XBZRLE_CACHE_AUTO 0xffffffffu
#define MIGR_XBZRLE_CACHE_AUTO_MAX (64ull << 20)
#define MIGR_XBZRLE_CACHE_AUTO_SHARE 256u

/* The defaults, one list for the initializer and the function below. */
#define MIGR_SEND_PARAMS_DEFAULTS_(X)                                                               \
    X(downtime_ms, 300) X(max_rounds, 30) X(mode, MIGR_MODE_PRECOPY) X(tracker, "auto")             \
    X(cancellable, true) X(hybrid_rounds, 1) X(prepage, 8) X(stall_timeout_ms, 10000)               \
    X(postcopy_lease_ms, 10000) X(min_bandwidth, 64ull << 20) X(compress, "auto")                   \
    X(xbzrle_cache_mib, MIGR_XBZRLE_CACHE_AUTO)
#define MIGR_DESIGNATED_(f, v) .f = v,
#define MIGR_ASSIGN_(f, v) p->f = v;

/* The defaults, with size set: `struct migr_send_params p = MIGR_SEND_PARAMS_INIT;` */
#define MIGR_SEND_PARAMS_INIT \
    {.size = sizeof(struct migr_send_params), MIGR_SEND_PARAMS_DEFAULTS_(MIGR_DESIGNATED_)}

/*! Set *p to the defaults (MIGR_SEND_PARAMS_INIT): zeroed, size set, the
 *  defaults filled in. Inline, so size is that of the caller's header.
 *  Neither blocks nor fails. */
static inline void migr_send_params_init(struct migr_send_params *p)
{
    memset(p, 0, sizeof(*p));
    p->size = sizeof(*p);
    MIGR_SEND_PARAMS_DEFAULTS_(MIGR_ASSIGN_)
}

/* Per wire encoding (index = MIGR_ENC_*), on either side of a migration. */
struct migr_codec_stats {
    uint64_t pages;               /* pages carried in this encoding (a ZERO run counts each page) */
    uint64_t bytes_out;           /* payload bytes on the wire (RAW: 4096 per page, ZERO: 0) */
    uint64_t cpu_ns;              /* encoder (source) or decoder (destination) time, all threads */
};

struct migr_round_stats {
    uint64_t pages, bytes, ns, dirty_after;
    uint64_t rate;                /* rate limit in force, bytes/s (0 = none) */
};

/* Pre-copy rounds (pre-copy, hybrid, tail; hand-over counts none). */
struct migr_precopy_stats {
    uint32_t rounds;              /* rounds run (the destination: rounds it took) */
    bool converged;               /* source: the dirty set fitted the downtime target */
    uint64_t first_pass_ns, first_pass_pages;   /* source: round 1 */
    struct migr_round_stats round[MIGR_MAX_ROUNDS_KEPT];  /* source: the first rounds */
};

/* Post-copy (post-copy, hybrid, tail's post-copy tail). */
struct migr_postcopy_stats {
    uint64_t ns;                  /* guest running on the destination until every page is resident */
    uint64_t demand_pages;        /* pages fetched because the guest faulted on them */
    uint64_t pushed_pages;        /* pages pushed in the background */
    uint64_t prepaged_pages;      /* source: neighbours sent with a faulted page (fault channel) */
    uint64_t faults;              /* fault events served (destination) */
    double fault_p50_us, fault_p99_us, fault_max_us;  /* fault to page placed (destination) */
    /* faults served by service time (uffd event read -> UFFDIO_COPY done), bucket
     * i counts times below MIGR_FAULT_BUCKET_US[i] µs (the last: the rest) */
#define MIGR_FAULT_BUCKETS 12
    uint64_t fault_hist[MIGR_FAULT_BUCKETS];
    bool fault_channel;           /* faults had their own connection (FAULT_CHANNEL) */
    /* medians of a fault's phases on the fault channel (destination): uffd event
     * read -> PAGE_REQ sent; -> the answer's header read; -> UFFDIO_COPY done */
    double fault_req_us, fault_wait_us, fault_place_us;
    double serve_p50_us;          /* source: PAGE_REQ read -> the page's record sent */
    uint64_t epochs;              /* cancellable: checkpoints the destination sent back */
    uint64_t back_pages;          /* cancellable: pages the destination sent back */
};

/* What one side of a migration reports: a part common to every mode and
 * side, then a part per kind of mode (filled only when the mode has that
 * phase). Names are side-neutral: `pages` are the pages this side moved,
 * sent by the source and received by the destination. The parts are fixed
 * once released (ABI, above): a later counter goes at the end of struct
 * migr_stats, never into a part. */
struct migr_stats {
    uint32_t size;                /* in: sizeof(struct migr_stats) as the caller compiled it (MIGR_STATS_INIT);
                                     out: the bytes the library filled (ABI, above) */
    char mode[16];
    char transport[16];
    char tracker[24];
    char error[512];              /* why it failed, "" on success */
    bool verified;                /* destination confirmed every page arrived intact (CRC) */
    bool resumed_on_source;       /* failure: the guest runs on the source again */
    bool ownership_in_doubt;      /* failure after COMMIT: guest kept paused on the source */
    bool cancelled;               /* the migration was cancelled and the guest taken back */
    uint64_t ram_bytes;
    uint64_t pages;               /* pages moved: sent (source) or received (destination), a ZERO run
                                     counting each page */
    uint64_t zero_pages, raw_pages, torn_pages;
    uint64_t wire_bytes;          /* bytes on the link, all records: sent (source) or received (destination) */
    uint64_t total_ns, downtime_ns, setup_ns;
    uint64_t state_bytes;
    uint64_t hole_pages;          /* source: zero pages sent without reading them (memfd holes) */
    uint64_t prefaulted_pages;    /* destination: pages allocated ahead of the stream (round 1) */
    /* accounting of this side */
    uint64_t max_bandwidth;       /* the limit asked for (0 = none) */
    bool adaptive_bw;
    uint64_t engine_cpu_ns;       /* CPU time of the thread running migr_send / migr_recv */
    uint64_t io_cpu_ns;           /* CPU time inside the transport's send + receive calls */
    uint64_t rate_wait_ns;        /* time the rate limiter held sends back */
    /* page codecs (pre-copy rounds) */
    char compress[8];             /* the --compress setting ("" on the destination) */
    uint32_t compress_threads;    /* encoding (source) or decoding (destination) threads */
    struct migr_codec_stats codec[MIGR_STATS_ENCS];
    uint64_t unchanged_pages;     /* source: dirty pages whose delta was empty (not resent) */
    uint64_t cache_lookups, cache_hits;  /* source: XBZRLE page cache */
    uint64_t probes;              /* source, auto: pages encoded with another codec to re-measure it */
    double link_mbps;             /* source, auto: link rate the policy used at the end (MB/s) */
    /* per kind of mode */
    struct migr_precopy_stats precopy;
    struct migr_postcopy_stats postcopy;
    /* since 0.7: host wall clock (CLOCK_REALTIME, ns since the epoch; 0 = did
     * not happen) of the guest's stop on the source and its resume on the
     * destination. On one host (or hosts with synchronised clocks) the
     * difference is the guest's blackout, source stop -> destination running,
     * the definition QEMU's STOP and RESUME events give; downtime_ns, the
     * source's own measure, also counts the DONE that tells it so. */
    uint64_t paused_wall_ns;      /* source */
    uint64_t resumed_wall_ns;     /* destination */
    /* since 0.7: the switch step by step, µs since the pause began (source:
     * paused, last pages sent, state sent, READY read, DONE read) or since
     * SWITCHOVER arrived (destination: prefault thread stopped, state loaded,
     * READY sent, COMMIT read, vCPUs let go); JSON "switch_us" */
#define MIGR_SWITCH_STEPS 5
    uint32_t switch_us[MIGR_SWITCH_STEPS];
    /* since 0.8: pages of codec[lz4] and codec[zstd] that went as the stream
     * encodings LZ4S and ZSTDS (each compressed with its lane's earlier pages
     * as context, docs/compress.md "Stream codecs"); JSON "stream_pages" */
    uint64_t stream_pages;
    /* since 0.8.1, destination of a post-copy switch: its state and the
     * take-back tracker were made before the pause, not inside it (the
     * tracker: only the backend's own, e.g. KVM's dirty log; docs/design.md
     * "The tail"); JSON "switch_ahead" */
    bool switch_ahead;
    /* since 0.8.2, source: the bytes of XBZRLE page cache asked for, over all
     * encoding threads (0: none), by default sized by the guest
     * (MIGR_XBZRLE_CACHE_AUTO); JSON "xbzrle_cache_bytes" */
    uint64_t xbzrle_cache_bytes;
};

/* A migr_stats ready to pass: `struct migr_stats st = MIGR_STATS_INIT;` */
#define MIGR_STATS_INIT {.size = sizeof(struct migr_stats)}

/*! Zero *st and set its size (the caller's sizeof). Neither blocks nor fails. */
static inline void migr_stats_init(struct migr_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->size = sizeof(*st);
}

/* Upper bounds of the fault_hist buckets in µs (the last is unbounded). */
static const double MIGR_FAULT_BUCKET_US[MIGR_FAULT_BUCKETS] = {5, 10, 20, 50, 100, 200, 500,
                                                               1000, 2000, 5000, 10000, 1e300};

/*! migr_send_params_init() under its older name, as a library function: it
 *  sets size to the library's sizeof, right only for a caller built against
 *  the same header. Prefer migr_send_params_init(). */
void migr_send_params_defaults(struct migr_send_params *p);  /* does not block */

/*! Live-migrate hv over t (connected). On success the guest runs on the
 *  destination and hv is left paused: the caller destroys it. On failure
 *  st->error says why and st->resumed_on_source / st->ownership_in_doubt say
 *  where the guest is. Returns 0 or -errno.
 *  Blocks the calling thread for the whole migration (bounds and threads:
 *  the top of this header); calls p->progress, p->switchover_hook, hv's
 *  ops and the tracker from it. Installs no signal handler (the mprotect
 *  tracker does, if chosen). */
int migr_send(struct migr_hv *hv, struct migr_transport *t, const struct migr_send_params *p,
              struct migr_stats *st);

/*! Receive a guest over t (accepted connection). On success *out is the
 *  running guest (caller owns it). On failure no guest exists, an ERROR
 *  record was sent to the source when possible, and st->error says why.
 *  Blocks until the guest runs here (pre-copy, hand-over) or every page is
 *  resident (post-copy); the builder and the guest's ops are called on this
 *  thread (and the checkpoint thread's, above). */
int migr_recv(struct migr_transport *t, struct migr_hv **out, struct migr_stats *st);

struct migr_recv_params {
    uint32_t size;                /* sizeof(struct migr_recv_params) as the caller compiled it (ABI, above) */
    uint32_t decode_threads;      /* decoders of compressed pages, 1..16 (0 = 1) */
    uint32_t postcopy_timeout_ms; /* post-copy: a fault the source leaves unanswered, or a main stream
                                     silent, this long ends post-copy (the source takes the guest back
                                     if it can); 0 = the default, 10000 */
    uint32_t stall_timeout_ms;    /* before COMMIT: nothing received from the source for this long ends
                                     the migration here (the source still owns the guest; a partitioned
                                     destination must not hold its half-built guest forever);
                                     0 = the default, 10000 */
    struct migr_cancel *cancel;   /* optional: migr_cancel_request() before COMMIT ends it here (-ECANCELED, the source is told and resumes); from COMMIT on it answers -EBUSY */
};

/* The defaults, with size set: `struct migr_recv_params rp = MIGR_RECV_PARAMS_INIT;`
 * (or `{.size = sizeof(rp), .decode_threads = 2}`). */
#define MIGR_RECV_PARAMS_INIT {.size = sizeof(struct migr_recv_params)}

/*! migr_recv() with settings (p NULL = defaults); blocks and calls back as
 *  migr_recv does, each silence bounded by p's timeouts. */
int migr_recv_ex(struct migr_transport *t, const struct migr_recv_params *p, struct migr_hv **out,
                 struct migr_stats *st);

/*! Write st as one JSON object (no newline) into buf; reads st->size bytes of st.
 *  Returns the length, or -EINVAL (buf "") for a size MIGR_STATS_INIT did not set.
 *  Pure: no blocking, any thread. */
int migr_stats_json(const struct migr_stats *st, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
