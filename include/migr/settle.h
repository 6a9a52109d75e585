/* migr — settling doubt after COMMIT (docs/reliability.md, "Settling doubt";
 * records SETTLE and SETTLED in docs/format.md).
 *
 * Once the source has sent COMMIT, a lost DONE leaves it unable to tell
 * whether the destination runs the guest. Instead of keeping the guest
 * paused for an operator, the two sides settle it: the destination remembers
 * what became of the migration HELLO named (its random id) — COMMITTED (it
 * runs the guest) or ABORTED (it never ran it and never will) — and stays
 * reachable on its listening address for a window; the source, in doubt,
 * connects again with the same URL and link options and asks. Only if
 * nothing answers within its window does the guest stay paused on the source.
 *
 * Pre-copy and hand-over only (and the tail when it ended without post-copy):
 * a post-copy source in doubt has its own rules (take-back).
 */
#ifndef MIGR_SETTLE_H
#define MIGR_SETTLE_H

#include <stdbool.h>
#include <stdint.h>
#include "migr/engine.h"
#include "migr/format.h"
#include "migr/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* SETTLE meta (24 bytes): u8 id[16], u32 kind, u32 rsvd (0). */
#define MIGR_SETTLE_SIZE 24u
enum migr_settle_kind {
    MIGR_SETTLE_QUERY = 0,        /* on a new connection: what became of migration id? */
    MIGR_SETTLE_RELEASED = 1,     /* on the migration's own stream, right after DONE: the source read
                                     DONE, nobody will ask (the destination need not stay reachable) */
};

/* SETTLED meta (24 bytes): u8 id[16], u32 fate, u32 rsvd (0). */
enum migr_fate {
    MIGR_FATE_NONE = 0,           /* not a fate: the destination has not decided (never on the wire) */
    MIGR_FATE_COMMITTED = 1,      /* the destination got COMMIT and runs the guest */
    MIGR_FATE_ABORTED = 2,        /* it never ran the guest and never will; the source resumes it */
    MIGR_FATE_UNKNOWN = 3,        /* this destination knows no migration of that id */
};

/*! "COMMITTED", "ABORTED", "UNKNOWN", "NONE"; "?" for other values. */
const char *migr_fate_name(unsigned fate);

/* ---- source ---- */

struct migr_settle_params {
    uint32_t size;                /* sizeof(struct migr_settle_params) as the caller compiled it
                                     (MIGR_SETTLE_PARAMS_INIT; engine.h, "ABI") */
    const char *url;              /* the destination's URL, as migr_send's transport was connected */
    const struct migr_link_opts *link; /* the same link options (key, encryption); NULL = the default */
    uint32_t done_timeout_ms;     /* after COMMIT: DONE not read within this long puts the source in
                                     doubt (0 = the send params' stall_timeout_ms, or 10000) */
    uint32_t window_ms;           /* in doubt: ask the destination for this long (0 = 20000) */
    uint32_t retry_ms;            /* between two attempts (0 = 250) */
};
#define MIGR_SETTLE_PARAMS_INIT {.size = sizeof(struct migr_settle_params)}

/*! migr_send() that settles doubt after COMMIT (sp NULL: exactly migr_send).
 *  When DONE does not come back within sp->done_timeout_ms, or the link
 *  breaks after COMMIT, it reconnects to sp->url and asks: COMMITTED returns
 *  0 (the guest runs on the destination; hv is left paused, as on success),
 *  ABORTED resumes the guest here (st->resumed_on_source), and if nothing
 *  answers within sp->window_ms the guest stays paused with
 *  st->ownership_in_doubt and st->error saying "ownership in doubt:
 *  destination unreachable since <UTC time>". Same threads and ownership as
 *  migr_send. */
int migr_send_settled(struct migr_hv *hv, struct migr_transport *t, const struct migr_send_params *p,
                      const struct migr_settle_params *sp, struct migr_stats *st);

/* ---- destination ---- */

/* What this destination knows of the migration it received. */
struct migr_recv_fate {
    uint32_t size;                /* in: sizeof(struct migr_recv_fate) as the caller compiled it
                                     (MIGR_RECV_FATE_INIT); out: the bytes the library filled */
    uint8_t id[MIGR_MIGRATION_ID_SIZE];
    bool known;                   /* a 1.6 HELLO named the migration (id valid) */
    bool source_settles;          /* ... and its source settles doubt (feature settle; pre-copy,
                                     hand-over, or the tail without post-copy) */
    bool ready_sent;              /* READY went out: the source may have sent COMMIT */
    enum migr_fate fate;          /* COMMITTED (the guest was resumed here) or ABORTED */
};
#define MIGR_RECV_FATE_INIT {.size = sizeof(struct migr_recv_fate)}

/*! migr_recv_ex() that also says what became of the migration in *f. */
int migr_recv_fated(struct migr_transport *t, const struct migr_recv_params *p, struct migr_hv **out,
                    struct migr_stats *st, struct migr_recv_fate *f);

/*! Whether the destination must stay reachable for a settle query: the
 *  source settles, and it may be in doubt (READY was sent: it may have sent
 *  COMMIT). After a success, call migr_settle_await_release first. */
bool migr_settle_needed(const struct migr_recv_fate *f);

/*! After a successful migr_recv_fated with f->source_settles: wait up to
 *  timeout_ms on the migration's stream t for the source's RELEASED. 1 = it
 *  came (the source knows; no query will follow), 0 = it did not (serve
 *  queries), -errno only for a malformed record. */
int migr_settle_await_release(struct migr_transport *t, const struct migr_recv_fate *f, uint32_t timeout_ms);

/*! Answer settle queries on l (opened on the migration's listening URL with
 *  the same link options, without expect_stream) for up to window_ms, or
 *  until the query for f's migration was answered (returns 1), or *stop
 *  becomes true (checked every 200 ms; may be NULL). A query for another id
 *  is answered UNKNOWN. A connection that sends nothing within 2 s is
 *  dropped (peers that fail the listener's handshake are its business:
 *  keep_listening). 0 = the window passed without the query; -errno if
 *  accepting failed (l was shut down). */
int migr_settle_serve(struct migr_listener *l, const struct migr_recv_fate *f, uint32_t window_ms,
                      const volatile bool *stop);

#ifdef __cplusplus
}
#endif

#endif
