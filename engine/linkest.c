/* engine: auto's link estimate (linkest.h). */
#include "engine/linkest.h"

/* Up by at most 25% a sample: on a shaped or lossy link single delivery
 * samples read far above it — tbf's burst after a quiet moment, a
 * recovery's SACKed segments delivered at once (1 Gbit/s links: samples of
 * 440-630 MB/s between ones of 60-120, five such in a row at a round's
 * end) — and a jump there sent the next records raw. */
static double rise(double bw, double rate)
{
    double up = bw + 0.2 * (rate - bw);
    return up > 1.25 * bw ? 1.25 * bw : up;
}

/* One stream's last link-limited samples, their fourth lowest of nine (of
 * fewer, as far down): a shaped link's delivery samples err upwards more
 * than downwards (bursts), and the median of nine still read 120-186 MB/s
 * on the lossy 1 Gbit/s link (119 MB/s of line rate), enough for auto to
 * send pages raw. */
static double window_low(const struct engine_link_est *l)
{
    double v[LINK_EST_WINDOW];
    unsigned n = l->nwin;
    for (unsigned i = 0; i < n; i++) {   /* insertion sort: nine values */
        double x = l->win[i];
        unsigned j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
    return v[(n - 1) * 3 / 8];
}

/* One stream, a sample of the link: the fourth lowest of the last nine,
 * taken at once when lower, at most 25% a sample when higher. A shaped
 * link's first sample can read its burst (tbf at 1 Gbit/s: 3.0 GB/s), and
 * of it and the next the lower counts; a lossy link's samples swing
 * between its troughs and its recoveries' bursts (1G-loss0.1%: 13-350 MB/s
 * on a link that carries 70-90), and taking each trough at once, as this
 * did before, kept the estimate in them — auto then sent a third of the
 * pages with zstd, CPU-bound on this machine. In the first slow start (no
 * loss yet) TCP's window doubles each round trip and the samples with it:
 * a higher one is taken at once, and the window starts again from it (25%
 * a sample held a 10 ms link's estimate at a sixth of its samples for
 * 100 ms, zstd's pages). */
static void one_stream_sample(struct engine_link_est *l, double rate, bool slow_start)
{
    bool grown = !l->link_seen || (slow_start && rate > l->bw);
    if (grown)
        l->nwin = l->wpos = 0;   /* the lower samples are of the past */
    l->win[l->wpos] = rate;
    l->wpos = (l->wpos + 1) % LINK_EST_WINDOW;
    if (l->nwin < LINK_EST_WINDOW)
        l->nwin++;
    double m = grown ? rate : window_low(l);
    l->bw = (grown || m < 1.25 * l->bw) ? m : 1.25 * l->bw;
}

void engine_link_est_update(struct engine_link_est *l, const struct engine_link_sample *s)
{
    double rate = s->rate;
    l->cap = s->cap > 0 ? s->cap : 0;
    if (rate <= 0 && l->several && l->link_seen)
        return; /* several channels, inside an acknowledgement window: no sample */
    if (rate > 0) {
        if (s->link_limited && !s->recv_limited) {
            /* Several channels: EWMA both ways — their 2 ms windows of
             * acknowledged bytes are noisy, and taking the low ones at once
             * made auto compress everything over loopback (bench/peers
             * 2G-ws1G-max tcp ?channels=4: 7.4 s against 2.9). */
            if (!l->several)
                one_stream_sample(l, rate, s->slow_start);
            else if (!l->link_seen)
                l->bw = rate;
            else
                l->bw = rate > l->bw ? rise(l->bw, rate) : l->bw + 0.2 * (rate - l->bw);
            l->link_seen = true;
            return;
        }
        /* App-limited, or limited by the receiver's window (the peer did not
         * read as fast as the link delivers: its CPU, not the link, and
         * heavier compression only adds to that CPU): a lower bound. */
        if (l->link_seen) {
            if (rate > l->bw) /* a lower bound of the link: up, as a link-limited sample goes */
                l->bw = rise(l->bw, rate);
            return;
        }
    }
    if (s->bytes >= 64 * 1024 && s->ns > 0) {
        /* No word from TCP (unix, shm, or a link TCP never found limiting):
         * bytes over send time. The socket buffer absorbs small records at
         * memory speed; the estimate comes down as soon as sends start to
         * wait for the link. */
        double sample = (double)s->bytes / (double)s->ns;
        l->bw += 0.2 * (sample - l->bw);
    }
}
