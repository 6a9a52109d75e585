/* auto's link estimate (engine/linkest.c), fed the samples the shaped links
 * of bench/netns produced, without a link: of the link-limited samples one
 * stream takes the fourth lowest of its last nine, lower at once and higher
 * by at most 25% a sample (several channels: EWMA both ways); one the
 * receiver's window limited is a lower bound; in the first slow start a
 * higher one is taken at once; app-limited samples above the estimate raise
 * it by at most 25% each, below it change nothing once TCP has said the
 * link limits; before that, bytes over send time (unix, shm); and while TCP
 * holds bytes back the window per round trip caps the rate used, without
 * moving the link estimate itself. */
#include <math.h>
#include "engine/linkest.h"
#include "testlib.h"

#define MBPS(x) ((x) * 1e-3)      /* MB/s -> bytes per ns */

static void sample(struct engine_link_est *l, double rate_mbps, bool link_limited, double cap_mbps)
{
    struct engine_link_sample s = {.rate = MBPS(rate_mbps), .link_limited = link_limited, .cap = MBPS(cap_mbps),
                                   .bytes = 1 << 20, .ns = 1000000};
    engine_link_est_update(l, &s);
}

/* A link-limited sample with TCP's other words on it. */
static void sample_as(struct engine_link_est *l, double rate_mbps, bool recv_limited, bool slow_start)
{
    struct engine_link_sample s = {.rate = MBPS(rate_mbps), .link_limited = true, .recv_limited = recv_limited,
                                   .slow_start = slow_start, .bytes = 1 << 20, .ns = 1000000};
    engine_link_est_update(l, &s);
}

static bool near(double got, double want_mbps)
{
    return fabs(got * 1e3 - want_mbps) < 1e-6 * (want_mbps + 1);
}

int main(void)
{
    /* One stream: the first link-limited sample replaces the start value
     * (even a tbf burst above it); then the fourth lowest of the last
     * nine, lower at once. */
    struct engine_link_est l = {.bw = MBPS(1000)};
    sample(&l, 3000, true, 0);
    T_ASSERT(l.link_seen && near(l.bw, 3000));
    sample(&l, 120, true, 0);
    T_ASSERT(near(l.bw, 120));
    for (int i = 0; i < 7; i++)
        sample(&l, 120, true, 0);

    /* Five bursts in a row at 600 MB/s (a round's end on tbf): nothing
     * while they are the top five of the window, then 25% at most. */
    for (int i = 0; i < 5; i++) {
        sample(&l, 600, true, 0);
        T_ASSERT(near(l.bw, 120));
    }
    sample(&l, 600, true, 0);
    T_ASSERT(near(l.bw, 150));
    for (int i = 0; i < 5; i++)
        sample(&l, 120, true, 0);
    T_ASSERT(near(l.bw, 120));

    /* A lossy link's trough between bursts (1G-loss0.1%: 20 MB/s among
     * samples of 60-350): one does not move it — taking each at once, the
     * rule before, kept the estimate in the troughs. */
    sample(&l, 20, true, 0);
    T_ASSERT(near(l.bw, 120));
    /* A link that really slowed down: once the window says so. */
    for (int i = 0; i < 4; i++)
        sample(&l, 50, true, 0);
    T_ASSERT(near(l.bw, 50));

    /* App-limited samples above it: a lower bound, at most 25% a sample. */
    double want = 50;
    for (int i = 0; i < 3; i++) {
        sample(&l, 600, false, 0);
        double ewma = want + 0.2 * (600 - want);
        want = ewma < 1.25 * want ? ewma : 1.25 * want;
        T_ASSERT(near(l.bw, want));
    }
    for (int i = 0; i < 9; i++)
        sample(&l, 120, true, 0);
    T_ASSERT(near(l.bw, 120));

    /* An app-limited sample below the estimate is only a lower bound. */
    double before = l.bw;
    sample(&l, 30, false, 0);
    T_ASSERT(l.bw == before);

    /* The cap: used while TCP holds bytes back, gone when it does not; the
     * estimate itself is untouched by it. */
    sample(&l, 1.2, false, 1.2);         /* slow start on a 10 ms link: 10 segments per RTT */
    T_ASSERT(l.bw == before && near(engine_link_est_rate(&l), 1.2));
    sample(&l, 30, false, 5000);         /* a window above the link: the link rules */
    T_ASSERT(engine_link_est_rate(&l) == l.bw);
    sample(&l, 30, false, 0);
    T_ASSERT(l.cap == 0 && engine_link_est_rate(&l) == l.bw);

    /* Several channels: EWMA down as well as up (2 ms windows of acknowledged
     * bytes are noisy), and no sample inside a window. */
    struct engine_link_est m = {.bw = MBPS(1000), .several = true};
    sample(&m, 400, true, 0);
    T_ASSERT(near(m.bw, 400));           /* the first link-limited sample replaces the start value */
    sample(&m, 100, true, 0);
    T_ASSERT(near(m.bw, 400 + 0.2 * (100 - 400)));
    /* ... and a window the receivers held back (loopback, ?channels=4: an
     * estimate of 104 MB/s, and auto compressed what it should have sent
     * raw) is a lower bound there too. */
    before = m.bw;
    struct engine_link_sample rl = {.rate = MBPS(104), .link_limited = true, .recv_limited = true,
                                    .bytes = 1 << 20, .ns = 1000000};
    engine_link_est_update(&m, &rl);
    T_ASSERT(m.bw == before);
    struct engine_link_sample none = {.bytes = 1 << 20, .ns = 1};   /* would read 1 TB/s as flush speed */
    engine_link_est_update(&m, &none);
    T_ASSERT(m.bw == before);

    /* The receiver's window held the sender back (the peer's CPU, not the
     * link: 1G-10ms, samples of 13-70 MB/s on a 116 MB/s link): a lower
     * bound, as an app-limited sample is — down not at all, up as usual. */
    struct engine_link_est r = {.bw = MBPS(1000)};
    sample(&r, 116, true, 0);
    sample_as(&r, 13, true, false);
    T_ASSERT(near(r.bw, 116));
    sample_as(&r, 200, true, false);
    T_ASSERT(near(r.bw, 116 + 0.2 * (200 - 116)));

    /* The first slow start (no loss yet): TCP's window doubles each round
     * trip and the samples with it; a higher one is taken at once (10 ms
     * link: 25% a sample had the estimate at a sixth of the samples for
     * 100 ms). A lower one is still the link's. */
    struct engine_link_est ss = {.bw = MBPS(1000)};
    sample_as(&ss, 1.6, false, true);
    T_ASSERT(near(ss.bw, 1.6));
    sample_as(&ss, 9.8, false, true);
    T_ASSERT(near(ss.bw, 9.8));
    sample_as(&ss, 45, false, true);
    T_ASSERT(near(ss.bw, 45));
    sample_as(&ss, 30, false, true);
    T_ASSERT(near(ss.bw, 30));
    sample_as(&ss, 109, false, false);   /* after the first loss: the lowest of the three */
    T_ASSERT(near(ss.bw, 30));

    /* No word from TCP (unix, shm): bytes over send time, by EWMA; records
     * under 64 KiB (the socket buffer takes them at memory speed) say nothing. */
    struct engine_link_est u = {.bw = MBPS(1000)};
    struct engine_link_sample f = {.bytes = 1 << 20, .ns = (1 << 20) * 2}; /* 500 MB/s */
    engine_link_est_update(&u, &f);
    T_ASSERT(near(u.bw, 1000 + 0.2 * (500 - 1000)));
    before = u.bw;
    f = (struct engine_link_sample){.bytes = 4096, .ns = 1};
    engine_link_est_update(&u, &f);
    T_ASSERT(u.bw == before && !u.link_seen);
    return 0;
}
