/* engine internals shared by the source-side files (send.c, postcopy_send.c)
 * and the destination-side files (recv.c, postcopy_recv.c). */
#ifndef MIGR_ENGINE_IMPL_H
#define MIGR_ENGINE_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include "migr/engine.h"
#include "migr/format.h"
#include "migr/hv.h"
#include "migr/record.h"
#include "migr/settle.h"
#include "migr/transport.h"
#include "engine/batch.h"

/* Where the guest is, as the source sees it. The switchover unit
 * (switchover.c) moves it forward; its failure path switches on it — the one
 * place that decides where the guest is after a failure. */
enum engine_owner {
    OWNER_SOURCE,                 /* runs on the source; the migration has not paused it */
    OWNER_SOURCE_PAUSED,          /* paused for the switchover: the source resumes it on failure */
    OWNER_COMMITTING,             /* COMMIT is (being) sent, DONE not read: the destination may run it */
    OWNER_DEST,                   /* DONE read: runs on the destination (post-copy: on our pages) */
    OWNER_TAKEN_BACK,             /* cancellable post-copy ended early: our RAM and state are its last checkpoint */
    OWNER_IN_DOUBT,               /* failure after COMMIT without take-back: kept paused here */
};

/* Where a failure came from, as a value (never by matching its message). */
enum engine_origin {
    ORIGIN_NONE,
    ORIGIN_LOCAL,                 /* this side failed (memory, hypervisor, a bad setting) */
    ORIGIN_LINK,                  /* the connection broke */
    ORIGIN_PEER_REFUSED,          /* the destination sent ERROR */
    ORIGIN_PEER_ABORTED,          /* the source sent ERROR */
    ORIGIN_CANCELLED,             /* migr_cancel_request() */
    ORIGIN_STALLED,               /* the stall watchdog */
};

struct engine_mode;

struct sender {
    const struct engine_mode *mode; /* engine/mode.h */
    bool cancellable;             /* post-copy with take-back */
    bool postcopy;                /* pages follow the switchover (mode->postcopy; the tail decides
                                     at the end of its rounds, mode_tail.c) */
    uint32_t hybrid_rounds;       /* hybrid: pre-copy rounds at most before post-copy */
    enum engine_owner owner;
    enum engine_origin origin;    /* of the failure being handled */
    struct migr_hv *hv;
    struct migr_transport *t;
    const struct migr_send_params *p;
    struct migr_stats *st;
    uint64_t t0;
    uint64_t last_progress;
    struct engine_batch b;        /* pages on the main stream; b.round is the current round */
    uint64_t *seen;               /* pages seen holding data (engine/holes.c) */
    uint64_t *bm;                 /* dirty pages of the round (RAM indices); seen lies behind it */
    uint64_t *need;               /* hybrid: pages discarded in discard rounds */
    uint64_t words;               /* of each bitmap */
    struct migr_dirty *d;         /* the dirty tracker, or NULL (post-copy, hand-over) */
    struct migr_range *ranges;    /* hybrid: DISCARD ranges being built (MIGR_RANGES_MAX) */
    uint8_t *ranges_meta;         /* ... and their record */
    uint64_t cpu0;                /* migr_thread_cpu_ns() at the start */
    uint64_t t_pause, t_done;     /* when the guest was paused; when DONE came */
    uint64_t rx_seq;              /* records received from the destination */
    bool took_back;               /* cancellable post-copy failed or was cancelled: the
                                     destination's last checkpoint is loaded here */
    struct encoder *enc;          /* pre-copy page codec stage (engine/encode.c), NULL = RAW/ZERO */
    struct migr_transport *fch;   /* post-copy fault channel (FAULT_CHANNEL), or NULL */
    struct migr_side *fside;      /* the fault channel offered, until collected (transport.h) */
    struct migr_cancel *cancel;   /* p->cancel, or the engine's own (for the watchdog) */
    bool own_cancel;
    const struct migr_settle_params *settle; /* migr_send_settled, or NULL (engine/settle.c) */
    uint8_t id[MIGR_MIGRATION_ID_SIZE]; /* this migration's, in HELLO */
    uint64_t requires;            /* HELLO's requires: the features this stream uses */
    uint64_t synced_bytes;        /* t->bytes_sent when the destination last confirmed a sync */
    uint64_t t_lost;              /* CLOCK_REALTIME ns when the link was lost after COMMIT */
};

int engine_send(struct migr_hv *hv, struct migr_transport *t, const struct migr_send_params *p,
                const struct migr_settle_params *sp, struct migr_stats *st);
/* Features this stream will use (engine/features.c), for HELLO's requires. */
uint64_t engine_stream_requires(const struct sender *s, uint32_t nregions);
/* The XBZRLE cache's bytes for this guest: as set, or MIGR_XBZRLE_CACHE_AUTO's share (engine/encode.c). */
uint64_t engine_xbzrle_cache_bytes(const struct migr_send_params *p, const struct migr_hv *hv);
/* In doubt after COMMIT with s->settle set: ask the destination (engine/settle.c).
 * Moves s->owner to OWNER_DEST (COMMITTED), OWNER_SOURCE_PAUSED (ABORTED:
 * the caller resumes) or leaves OWNER_IN_DOUBT, and says so in st->error. */
void engine_settle(struct sender *s);
/* COMMIT refused (ERROR): tell the destination we know (one short query), so it stops waiting. */
void engine_settle_refused(struct sender *s);
/* Whether the source settles doubt in this migration (pre-copy switchover). */
bool engine_settles(const struct sender *s);

/* engine/switchover.c: the switchover and the ownership decision. hello:
 * preamble and HELLO; pause: the guest stops (SOURCE_PAUSED); commit: STATE
 * ... DONE (COMMITTING, then DEST); expect: the destination's next record,
 * of this type (an ERROR record becomes the error); fail: the failure path —
 * st->error, ERROR to the peer, where the guest is. Each returns 0 or -errno
 * (fail: the error it settled on). */
int engine_switch_hello(struct sender *s);
int engine_switch_pause(struct sender *s);
int engine_switch_commit(struct sender *s);
int engine_switch_fail(struct sender *s, int err);
int engine_expect(struct sender *s, uint16_t type, struct migr_ack *ack);
/* Inside the switch, where the guest is paused and the peer answers within
 * microseconds: wait for t's next bytes on the CPU (at most
 * ENGINE_SWITCH_SPIN_NS), not asleep in recvv — on this nested host a
 * sleeping thread took 20-70 us more to wake for each of the switch's
 * messages. Only where the transport's fd tells data exactly
 * (MIGR_TCAP_POLL_DATA); else, or past the bound, returns at once and the
 * caller's recv sleeps as before. */
#define ENGINE_SWITCH_SPIN_NS 1000000ull
void engine_spin_readable(const struct migr_transport *t);
/* Set the transport's rate, unless p asks for no rate control (send.c). */
void engine_set_rate(struct sender *s, uint64_t rate);

/* engine/cancel.c: the cancel handle's engine side. attach: the migration
 * runs over t (a stall watchdog starts if stall_timeout_ms); commit: about to
 * send COMMIT — false if a cancel or the watchdog came first (then do not);
 * reason: -ECANCELED / -ETIMEDOUT (message set) if one of them ended the
 * migration before COMMIT, else 0; detach: the migration is over. */
int engine_cancel_attach(struct migr_cancel *c, struct migr_transport *t, uint32_t stall_timeout_ms);
bool engine_cancel_commit(struct migr_cancel *c);
int engine_cancel_reason(struct migr_cancel *c);
void engine_cancel_detach(struct migr_cancel *c);
/* The receiver's handle (migr_recv_params.cancel): attach_dest: it receives
 * over t; take: at COMMIT, false if a cancel came first, else later requests
 * are refused. Detach as above. */
void engine_cancel_attach_dest(struct migr_cancel *c, struct migr_transport *t);
bool engine_cancel_take(struct migr_cancel *c);


/* Memfd holes (engine/holes.c). data_scan: set in data (RAM indices) every
 * page that holds data or may (no memfd); returns how many, or -errno.
 * holes_filter: after a harvest, clear from bm the dirty pages that are holes
 * and were never seen holding data (tracker false positives), marking the
 * others in seen; returns how many were dropped, or -errno. send_holes: send
 * every page not in data as ZERO runs (round 1, before its data pages). */
long engine_data_scan(struct migr_hv *hv, uint64_t *data);
long engine_holes_filter(struct migr_hv *hv, uint64_t *bm, uint64_t *seen);
int engine_send_holes(struct sender *s, const uint64_t *data);
/* This side's CPU and rate-limiter accounting into st (cpu0: migr_thread_cpu_ns() at the start). */
void engine_account(struct migr_stats *st, const struct migr_transport *t, uint64_t cpu0);
void engine_progress(struct sender *s, const char *phase, uint64_t done, uint64_t total, bool force);
/* The sync (format 1.7): a ROUND_END with flag SYNC, then the destination's
 * READY once it has taken in everything sent; a no-op where the stream does
 * not require 'round sync' or nothing was sent since the last one. */
int engine_sync(struct sender *s);
/* Step i of the switch done now: st->switch_us[i] = µs since t0 (docs: migr_stats). */
void engine_switch_step(struct migr_stats *st, int i, uint64_t t0);

/* Post-copy, source side: serve the destination's faults and push the pages
 * in need (RAM indices; NULL = all RAM) until it reports COMPLETE. The guest
 * is paused here and owned by the destination. */
int engine_postcopy_push(struct sender *s, const uint64_t *need);

/* The fault channel (format 1.3, FAULT_CHANNEL): a second connection that
 * carries only PAGE_REQ and the pages answering them, so that a fault never
 * waits behind the background push; a side connection of the transport
 * (migr_transport_side_offer), where it has them, else faults share the
 * stream. offer: right after HELLO; accept: before the pause (collect the
 * connection); close: at the end (NULL-safe). */
int engine_postcopy_offer_channel(struct sender *s);
/* Post-copy: the calling thread (push, placing the push) yields to the
 * fault path: nice +ENGINE_BULK_NICE (a thread of its own: nice cannot be
 * lowered again without privileges). */
#define ENGINE_BULK_NICE 5
void engine_bulk_priority(void);
int engine_postcopy_accept_channel(struct sender *s);
void engine_postcopy_close_channel(struct sender *s);

struct postcopy_dst;

struct receiver {
    const struct engine_mode *mode; /* parsed from HELLO once */
    enum engine_origin origin;    /* ORIGIN_PEER_ABORTED: the source said ERROR (we do not answer it) */
    uint32_t decode_threads;      /* migr_recv_params.decode_threads (>= 1) */
    uint32_t postcopy_timeout_ms; /* migr_recv_params.postcopy_timeout_ms (0 = none) */
    struct migr_cancel *watchdog; /* before COMMIT: a source silent for stall_timeout_ms ends it */
    struct migr_cancel *cancel;   /* migr_recv_params.cancel, or NULL */
    uint32_t stall_timeout_ms;
    struct migr_transport *t;
    struct migr_stats *st;
    struct migr_hv *hv;
    uint64_t seq;                 /* records received */
    uint8_t *meta;                /* MIGR_META_MAX */
    uint64_t *received;           /* page has arrived intact at least once */
    uint64_t *torn;               /* last copy failed its CRC: a resend must follow */
    uint64_t *nonzero;            /* page may hold data (a zero page must be cleared) */
    uint8_t *state;               /* STATE blob */
    size_t state_len;
    struct iovec iov[1024];
    uint32_t raw_idx[MIGR_BATCH_MAX];
    uint8_t *raw_slot[MIGR_BATCH_MAX];     /* codec entries: where their bulk goes (else NULL) */
    uint32_t raw_len[MIGR_BATCH_MAX];
    uint32_t nraw;                /* entries of the record being read that carry data */
    bool can_populate;
    bool cancellable;             /* post-copy, and the source can take the guest back */
    uint64_t t_switch;            /* SWITCHOVER arrived */
    struct migr_range *ranges;    /* DISCARD being read (MIGR_RANGES_MAX) */
    uint64_t *alloc;              /* page was written with data at some point (may be allocated) */
    struct postcopy_dst *pc;
    struct postcopy_dst *pc_ahead; /* made before the pause for the post-copy switch (postcopy_recv.c) */
    struct decoder *dec;          /* PAGES with codec entries (engine/decode.c) */
    struct migr_transport *fch;   /* post-copy fault channel, or NULL (faults go on t) */
    uint64_t discarded;           /* hybrid: pages discarded since the last ROUND_END */
    bool discard_seen;            /* a DISCARD arrived: the tail switches as post-copy (mode_tail.c) */
    bool sync_answered;           /* READY went to a SYNC: the pause comes next (engine_spin_readable) */
    struct prefault *pf;          /* round 1: allocating RAM ahead of the stream, or NULL */
    bool pf_tried;
    struct migr_recv_fate fate;   /* what became of this migration (engine/settle.c) */
};

/* Destination, round 1 (engine/prefault.c): a thread populates the pages not
 * received yet, from RAM index `from` upwards, ahead of the stream. start: at
 * the first data record (the holes have arrived as ZERO runs by then; a
 * failure to start is not an error); prefaulted: the thread populated idx;
 * claim: the receiving thread populates up to `past` itself, the thread moves
 * beyond; stop: join, add what it populated to r->alloc (NULL-safe, idempotent;
 * before DISCARD, SWITCHOVER and on failure). */
int engine_prefault_start(struct receiver *r, uint64_t from);
bool engine_prefaulted(const struct receiver *r, uint64_t idx);
void engine_prefault_claim(struct receiver *r, uint64_t past);
void engine_prefault_stop(struct receiver *r);

/* Post-copy, destination side (postcopy_recv.c). prepare: at SWITCHOVER,
 * drop stale copies and register guest RAM with userfaultfd; start: after
 * COMMIT, before resume (fault thread); run: receive pages until every page
 * is resident, then send COMPLETE and unregister. finish: free (also after
 * failures; closing the userfaultfd releases any blocked vCPU). */
int engine_postcopy_prepare(struct receiver *r);
int engine_postcopy_start(struct receiver *r);
void engine_postcopy_ahead(struct receiver *r);      /* before the pause: what the switch needs */
void engine_postcopy_drop_ahead(struct receiver *r); /* no switch came */
int engine_postcopy_start_epochs(struct receiver *r);
int engine_postcopy_run(struct receiver *r);
void engine_postcopy_finish(struct receiver *r);
int engine_recv_send(struct receiver *r, uint16_t type, const void *meta, uint32_t len);
/* recv.c: READY / DONE with the pages received so far; the HELLO's STATE
 * version against the guest built; mode_hybrid.c: a DISCARD record. */
int engine_recv_ack(struct receiver *r, uint16_t type);
int engine_recv_check_state_version(struct receiver *r, const struct migr_hello *hello);
int engine_recv_discard(struct receiver *r, const struct migr_rec_hdr *h);
/* Give RAM pages [first, first+n) back to their memfd so that they fault. */
int engine_punch(struct receiver *r, uint64_t first, uint64_t n);
/* FAULT_CHANNEL arrived (before SWITCHOVER): take the descriptor or connect. */
int engine_postcopy_on_channel(struct receiver *r, const struct migr_rec_hdr *h);

#endif
