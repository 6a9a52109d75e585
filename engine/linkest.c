/* engine: auto's link estimate (linkest.h). */
#include "engine/linkest.h"

/* Up by EWMA, at most 25% a sample: on a shaped or lossy link single
 * delivery samples read far above it — tbf's burst, a recovery's SACKed
 * segments delivered at once (1 Gbit/s links: samples of 440-630 MB/s
 * between ones of 60-120) — and a jump there sent the next records raw. */
static double rise(double bw, double rate)
{
    double up = bw + 0.2 * (rate - bw);
    return up > 1.25 * bw ? 1.25 * bw : up;
}

void engine_link_est_update(struct engine_link_est *l, const struct engine_link_sample *s)
{
    double rate = s->rate;
    l->cap = s->cap > 0 ? s->cap : 0;
    if (rate <= 0 && l->several && l->link_seen)
        return; /* several channels, inside an acknowledgement window: no sample */
    if (rate > 0) {
        if (s->link_limited) {
            /* One stream: down at once, up slowly — a shaped link's first
             * samples can read its burst (tbf at 1 Gbit/s: 3.0 GB/s), and an
             * EWMA from there sent 5,700 pages raw before it came down to
             * 0.12. Several channels: EWMA both ways — their 2 ms windows of
             * acknowledged bytes are noisy, and taking the low ones at once
             * made auto compress everything over loopback (bench/peers
             * 2G-ws1G-max tcp ?channels=4: 7.4 s against 2.9). */
            if (!l->link_seen || (!l->several && rate < l->bw))
                l->bw = rate;
            else
                l->bw = rate > l->bw ? rise(l->bw, rate) : l->bw + 0.2 * (rate - l->bw);
            l->link_seen = true;
            return;
        }
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
