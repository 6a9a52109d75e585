/* engine: the migration modes as a table (in the spirit of the KVM
 * selftests' struct log_mode). Each mode is one file that fills one struct
 * engine_mode: its HELLO name, the phases it runs and its hooks on both
 * sides. migr_send (send.c) and migr_recv (recv.c) only walk the phases;
 * the switchover (switchover.c) is the same for every mode.
 *
 *   source:       HELLO · setup · live · pause · paused · STATE … DONE · owned
 *   destination:  HELLO · recv_setup · records · SWITCHOVER · recv_switchover ·
 *                 READY · COMMIT · recv_commit · resume · recv_resumed · recv_run
 *
 * A NULL hook is a phase the mode does not run.
 */
#ifndef MIGR_ENGINE_MODE_H
#define MIGR_ENGINE_MODE_H

#include <stdbool.h>
#include <stdint.h>
#include "migr/engine.h"
#include "migr/format.h"

struct sender;
struct receiver;

#define ENGINE_REC_BIT(type) (1u << (type))

struct engine_mode {
    enum migr_mode mode;
    const char *name;             /* HELLO mode (docs/format.md), without take-back */
    const char *cname;            /* ... cancellable (take-back); NULL: the mode has no such variant */
    bool cancellable_only;        /* the source refuses to run it without take-back */
    bool postcopy;                /* pages follow the switchover (the guest runs on the destination first) */
    bool group_ok;                /* may join a group's joint switchover (switchover_hook) */
    uint32_t recv_records;        /* record types the destination takes before SWITCHOVER (ENGINE_REC_BIT) */
    /* source, in order */
    int (*setup)(struct sender *s);      /* after HELLO, the guest running: channels, tracker, codecs */
    int (*live)(struct sender *s);       /* the guest running: rounds */
    int (*pre_pause)(struct sender *s);  /* just before the pause */
    int (*paused)(struct sender *s);     /* the guest paused, before STATE */
    int (*owned)(struct sender *s);      /* after DONE: the destination runs the guest */
    /* destination, in order */
    int (*recv_setup)(struct receiver *r, const struct migr_hello *h); /* build the guest (r->hv) */
    int (*recv_switchover)(struct receiver *r);  /* SWITCHOVER arrived, before the state is loaded */
    int (*recv_commit)(struct receiver *r);      /* COMMIT arrived, before the resume */
    int (*recv_resumed)(struct receiver *r);     /* right after the resume */
    int (*recv_run)(struct receiver *r);         /* the guest runs here: until the migration ends */
};

extern const struct engine_mode engine_mode_precopy;   /* mode_precopy.c */
extern const struct engine_mode engine_mode_handover;  /* mode_handover.c */
extern const struct engine_mode engine_mode_postcopy;  /* mode_postcopy.c */
extern const struct engine_mode engine_mode_hybrid;    /* mode_hybrid.c */
extern const struct engine_mode engine_mode_tail;      /* mode_tail.c */

/*! The unit of a mode, or NULL for a value outside enum migr_mode. */
const struct engine_mode *engine_mode_of(enum migr_mode mode);
/*! The unit whose HELLO name is name (*cancellable: its take-back variant), or NULL. */
const struct engine_mode *engine_mode_by_name(const char *name, bool *cancellable);
/*! The mode's name in HELLO and in the summary: cname if cancellable post-copy. */
const char *engine_mode_label(const struct engine_mode *m, bool cancellable);

/* The destination side of both post-copy modes (post-copy, hybrid). */
#define ENGINE_POSTCOPY_RECV                                                                              \
    .recv_records = ENGINE_REC_BIT(MIGR_REC_PAGES) | ENGINE_REC_BIT(MIGR_REC_ROUND_END) |                 \
                    ENGINE_REC_BIT(MIGR_REC_STATE) | ENGINE_REC_BIT(MIGR_REC_FAULT_CHANNEL) |             \
                    ENGINE_REC_BIT(MIGR_REC_DISCARD),                                                     \
    .recv_setup = engine_postcopy_recv_setup, .recv_switchover = engine_postcopy_prepare,                    \
    .recv_commit = engine_postcopy_recv_commit, .recv_resumed = engine_postcopy_recv_resumed,             \
    .recv_run = engine_postcopy_recv_run

/* Shared by the units. */
int engine_precopy_setup(struct sender *s);              /* codec stage and dirty tracker */
/* When pre-copy rounds stop (mode_precopy.c): after `limit` rounds, when the
 * dirty pages would go in under target_ns at the last round's rate or are
 * done_pages at most (converged), after 3 rounds without a new minimum,
 * and, with halve, as soon as the next round is not expected to halve them. */
struct engine_rounds {
    uint32_t limit;
    uint64_t target_ns;
    uint64_t done_pages;
    bool halve;
};
int engine_precopy_rounds(struct sender *s, const struct engine_rounds *rule);
long engine_harvest(struct sender *s, uint64_t *bm);     /* without the tracker's holes (holes.c) */
int engine_send_round_end(struct sender *s, uint64_t pages, uint64_t dirty, uint32_t flags);
int engine_recv_setup_copy(struct receiver *r, const struct migr_hello *h); /* RAM arrives as pages */
int engine_recv_done(struct receiver *r);                /* DONE once the guest runs (non-fatal) */
int engine_postcopy_owned(struct sender *s);             /* mode_postcopy.c, hybrid too */
int engine_hybrid_setup(struct sender *s);               /* mode_hybrid.c, the tail too */
int engine_hybrid_discard_rounds(struct sender *s);
int engine_hybrid_paused(struct sender *s);
int engine_precopy_paused(struct sender *s);             /* mode_precopy.c: stop-and-copy */
int engine_precopy_recv_switchover(struct receiver *r);  /* every page intact, or refuse */
int engine_postcopy_recv_setup(struct receiver *r, const struct migr_hello *h);
int engine_postcopy_recv_commit(struct receiver *r);
int engine_postcopy_recv_resumed(struct receiver *r);
int engine_postcopy_recv_run(struct receiver *r);
int engine_postcopy_prepare(struct receiver *r);     /* postcopy_recv.c */

#endif
