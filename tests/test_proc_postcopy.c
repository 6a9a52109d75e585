/* Post-copy, hybrid and cancellable post-copy of a proc guest (RAM in a
 * memfd, workload threads in this process), in one process, over unix and
 * TCP: the destination runs the guest while missing pages are fetched on
 * fault (userfaultfd) and pushed in the background, and tracks what it
 * writes with async write-protection on the same userfaultfd. Cancel at 1,
 * 50 and 99 % of the post-copy phase and a dropped connection take the guest
 * back to the source, which verifies and keeps running; a link that breaks
 * with COMPLETE or the source's release in flight leaves one copy paused and
 * at most one running; a fault storm (every vCPU sweeping all of its pages
 * unthrottled) completes. Needs no /dev/kvm. */
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include "migr/engine.h"
#include "migr/workload.h"
#include "faultlib.h"
#include "migratelib.h"

#define MEM (64ull << 20)

enum end { END_OK, END_CANCEL, END_DROP, END_LOSE_COMPLETE, END_LOSE_RELEASE };

struct dropper {
    struct migr_transport *t;
    uint64_t after_bytes;
};

/* Cut the link under the running post-copy (both directions), as a pulled
 * cable or a dead peer would, once a third of RAM has gone. */
static void *drop_main(void *arg)
{
    struct dropper *d = arg;
    uint64_t until = migr_now_ns() + 10000000000ull;
    while (__atomic_load_n(&d->t->bytes_sent, __ATOMIC_RELAXED) < d->after_bytes && migr_now_ns() < until)
        usleep(100);
    shutdown(d->t->fd, SHUT_RDWR);
    return NULL;
}

static void migrate(const char *url, const char *wl, uint32_t nvcpus, int after, bool no_cancel, enum end how,
                    double cancel_at)
{
    struct migr_hv *src = t_guest("proc", MEM, nvcpus, wl, 100);

    struct t_rx x;
    struct fl_relay relay;
    bool window = how == END_LOSE_COMPLETE || how == END_LOSE_RELEASE;
    if (window)
        url = "tcp:127.0.0.1:0"; /* through the relay (TCP) */
    t_rx_start(&x, url);
    if (how == END_LOSE_COMPLETE) /* the link breaks with COMPLETE in flight */
        fl_relay_start(&relay, fl_port(x.l->bound), &(struct fl_rule){FL_TO_SRC, MIGR_REC_COMPLETE, 1, FL_CUT_BEFORE, 0}, 1);
    if (how == END_LOSE_RELEASE) /* ... with the source's release (the second COMMIT) in flight */
        fl_relay_start(&relay, fl_port(x.l->bound), &(struct fl_rule){FL_TO_DST, MIGR_REC_COMMIT, 2, FL_CUT_BEFORE, 0}, 1);
    struct migr_transport *t;
    T_OK(migr_transport_connect(window ? relay.url : x.l->bound, &t));
    struct migr_send_params p;
    migr_send_params_init(&p);
    p.mode = after < 0 ? MIGR_MODE_PRECOPY : after == 0 ? MIGR_MODE_POSTCOPY : MIGR_MODE_HYBRID;
    p.hybrid_rounds = after > 0 ? (uint32_t)after : 1;
    p.cancellable = !no_cancel;
    struct t_canceller k;
    if (how == END_CANCEL) {
        /* Once the destination has this fraction of the post-copy pages (hybrid:
         * at = 0, the first one after round 1's); the push slowed to 32 MiB/s so
         * that its count runs close behind the source's. */
        T_ASSERT((p.cancel = migr_cancel_new()) != NULL);
        p.max_bandwidth = 32ull << 20;
        uint64_t pre = after > 0 ? src->ram_pages : 0;
        t_cancel_start(&k, p.cancel, &x.st.pages, pre + (uint64_t)(cancel_at * (double)src->ram_pages) + 1);
    }
    pthread_t dth;
    struct dropper d = {.t = t, .after_bytes = MEM / 3};
    if (how == END_DROP)
        T_ASSERT(pthread_create(&dth, NULL, drop_main, &d) == 0);
    struct migr_stats st = MIGR_STATS_INIT;
    int rc = migr_send(src, t, &p, &st);
    if (how == END_CANCEL) {
        t_cancel_stop(&k);
        migr_cancel_free(p.cancel);
    }
    if (how == END_DROP)
        pthread_join(dth, NULL);
    migr_transport_close(t);
    t_rx_join(&x);
    if (window)
        T_EQ(fl_relay_join(&relay), 1);
    char js[8192], jr[8192];
    migr_stats_json(&st, js, sizeof(js));
    migr_stats_json(&x.st, jr, sizeof(jr));
    fprintf(stderr, "%s %s after=%d end=%d at=%.2f\n  source: %s\n  dest:   %s\n", url, wl, after, how, cancel_at,
            js, jr);
    if (how == END_LOSE_COMPLETE || how == END_LOSE_RELEASE) {
        /* The window around COMPLETE: every page is at the destination, and
         * either the source never read COMPLETE (it takes the guest back) or
         * it did and its release was lost. The destination cannot tell which,
         * so its guest stays paused: one copy runs at most, and no copy is
         * lost (the operator resumes the right one). */
        T_OK(x.rc);
        T_ASSERT(x.st.ownership_in_doubt && x.hv && x.hv->paused);
        uint64_t w = migr_workload_progress(x.hv);
        usleep(100000);
        T_EQ(migr_workload_progress(x.hv), w);
        struct migr_hv *runner = x.hv;
        if (how == END_LOSE_COMPLETE) {
            T_ASSERT(rc < 0 && st.resumed_on_source && !src->paused);
            migr_hv_destroy(x.hv);
            runner = src;
        } else {
            /* The source sent its release and let go (its send succeeded:
             * the relay lost it), so it keeps the guest paused. */
            T_ASSERT(rc == 0 && src->paused);
            migr_hv_destroy(src);
            T_OK(runner->ops->resume(runner)); /* what `migr resume` does there */
        }
        w = migr_workload_progress(runner);
        usleep(100000);
        T_ASSERT(migr_workload_progress(runner) > w);
        t_verify(runner, "after the COMPLETE window");
        migr_hv_destroy(runner);
        return;
    }
    if (how != END_OK) {
        T_ASSERT(rc < 0);
        /* The guest comes back to the source, verified and running; the
         * destination has dropped its copy. */
        T_ASSERT(st.resumed_on_source && !src->paused);
        T_ASSERT(how != END_CANCEL || (rc == -ECANCELED && st.cancelled));
        T_ASSERT(x.rc < 0 && x.hv == NULL);
        uint64_t w = migr_workload_progress(src);
        usleep(100000);
        T_ASSERT(migr_workload_progress(src) > w);
        t_verify(src, "on the source after take-back");
        migr_hv_destroy(src);
        return;
    }
    if (rc < 0)
        T_FAIL("send: %s", st.error);
    T_OK(x.rc);
    T_ASSERT(x.st.pages > 0);
    /* the process trackers would trap the receiver's own writes: a
     * cancellable switch starts its tracker at COMMIT, not before the pause */
    T_ASSERT(x.st.switch_ahead == no_cancel);
    uint64_t at_switch = migr_workload_progress(src);
    migr_hv_destroy(src);
    struct migr_hv *dst = x.hv;
    usleep(100000);
    T_ASSERT(migr_workload_progress(dst) > at_switch);
    t_verify(dst, "on the destination");
    T_ASSERT(!dst->ops->failed(dst));
    migr_hv_destroy(dst);
}

int main(void)
{
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/migr-ppc-%d.sock", getpid());
    const char *only = getenv("PC_ONLY");
    if (!only || !strcmp(only, "ok")) {
        migrate(path, "rate=64M,pattern=random,data=text", 1, 0, true, END_OK, 0);
        migrate(path, "rate=64M,pattern=random,data=text", 2, 0, false, END_OK, 0);
        migrate("tcp:127.0.0.1:0", "rate=128M,pattern=hotcold,data=random", 2, 0, false, END_OK, 0);
        migrate(path, "rate=64M,pattern=random,data=text", 2, 1, false, END_OK, 0);
        migrate(path, "rate=64M,pattern=random,data=text", 2, 1, true, END_OK, 0);
    }
    if (!only || !strcmp(only, "cancel")) {
        migrate(path, "rate=64M,pattern=random,data=text", 2, 0, false, END_CANCEL, 0.01);
        migrate(path, "rate=64M,pattern=random,data=text", 2, 0, false, END_CANCEL, 0.50);
        migrate("tcp:127.0.0.1:0", "rate=64M,pattern=random,data=text", 2, 0, false, END_CANCEL, 0.99);
        migrate(path, "rate=64M,pattern=random,data=text", 2, 1, false, END_CANCEL, 0);
    }
    if (!only || !strcmp(only, "drop"))
        migrate(path, "rate=64M,pattern=random,data=text", 2, 0, false, END_DROP, 0);
    if (!only || !strcmp(only, "window")) {
        migrate(path, "rate=64M,pattern=random,data=text", 2, 0, false, END_LOSE_COMPLETE, 0);
        migrate(path, "rate=64M,pattern=random,data=text", 2, 0, false, END_LOSE_RELEASE, 0);
    }
    if (!only || !strcmp(only, "storm"))
        migrate(path, "rate=0,pattern=sequential,data=text", 2, 0, false, END_OK, 0);
    return 0;
}
