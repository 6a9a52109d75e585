/* engine: auto's link estimate (encode.c), a unit of its own so that its
 * rules can be tested without a shaped link (tests/test_linkest.c).
 *
 * After each PAGES record the encoder feeds one sample: what TCP says of
 * its sockets (tcp_info, read by encode.c) and the record's send — bytes
 * over the send's wall time. docs/compress.md, "The link rate", has the
 * rules and the measurements behind each. */
#ifndef MIGR_ENGINE_LINKEST_H
#define MIGR_ENGINE_LINKEST_H

#include <stdbool.h>
#include <stdint.h>

#define LINK_EST_WINDOW 9

struct engine_link_est {
    double bw;                    /* the link, bytes per ns */
    double cap;                   /* TCP holding bytes back: a window per round trip (bytes per ns), else 0 */
    bool link_seen;               /* TCP once said the link, not we, limited a delivery sample */
    bool several;                 /* tcp ?channels=N: samples are windows of acknowledged bytes */
    double win[LINK_EST_WINDOW];  /* one stream: the last link-limited samples (bytes per ns) */
    unsigned nwin;                /* samples in win (at most LINK_EST_WINDOW), and */
    unsigned wpos;                /* where the next one goes */
};

struct engine_link_sample {
    double rate;                  /* TCP's delivery rate (several: acknowledged bytes over >= 2 ms), bytes per ns; 0: none */
    bool link_limited;            /* that rate was limited by the link, not by the sender */
    bool recv_limited;            /* ... or by the receiver: its window held the socket(s) back */
    bool slow_start;              /* one stream in its first slow start (no loss yet: ssthresh unset) */
    double cap;                   /* every socket had unsent bytes: the sum of cwnd x mss / rtt; 0: not so */
    uint64_t bytes, ns;           /* the record's send: bytes written, wall time */
};

/*! Take one sample (docs/compress.md "The link rate"). */
void engine_link_est_update(struct engine_link_est *l, const struct engine_link_sample *s);

/*! The rate pages leave at now: the link estimate, or less while TCP's
 *  windows hold the bytes back (bytes per ns). */
static inline double engine_link_est_rate(const struct engine_link_est *l)
{
    return l->cap > 0 && l->cap < l->bw ? l->cap : l->bw;
}

#endif
