/* The tail mode (the CLI's default): pre-copy rounds while each is expected
 * to halve the dirty pages; then, if they converged, the few pages left go
 * inside the pause (pre-copy's switch), and if the guest dirties faster than
 * rounds can chase, the guest switches with its vCPU state and the list of
 * stale pages, and the dirty pages follow in a short cancellable post-copy
 * tail.
 *
 * For each backend (proc always, kvm when /dev/kvm works), over unix and TCP,
 * both ways: the guest arrives with every page verified and keeps running
 * there; the summary names the mode and reports the downtime; converged:
 * nothing follows the switch; chasing (a 16 MiB/s link under a guest that
 * dirties 64 MiB/s): the last dirty pages went after the switch. When the
 * link to the destination breaks right after the switch in the tail (the
 * destination is lost), the source takes the guest back, verified and
 * running, and the destination has dropped its copy. Without take-back the
 * mode refuses to start, and the guest keeps running on the source. */
#include <stdio.h>
#include <unistd.h>
#include "migr/engine.h"
#include "migr/workload.h"
#include "faultlib.h"
#include "migratelib.h"

static void report(const char *what, const struct migr_stats *st, const struct t_rx *x)
{
    char js[8192], jr[8192];
    migr_stats_json(st, js, sizeof(js));
    migr_stats_json(&x->st, jr, sizeof(jr));
    fprintf(stderr, "%s\n  source: %s\n  dest:   %s\n", what, js, jr);
}

/* chasing: a working set rewritten faster than the (limited) link moves it */
static struct migr_hv *guest(const char *be, bool chasing)
{
    return t_guest(be, strcmp(be, "kvm") == 0 ? 128ull << 20 : 64ull << 20, 2,
                   chasing ? "rate=64M,ws=8M,pattern=random,data=text" : "rate=16M,ws=16M,pattern=random,data=text",
                   150);
}

static void tail_params(struct migr_send_params *p, bool chasing)
{
    migr_send_params_init(p);
    p->mode = MIGR_MODE_TAIL;
    if (chasing)
        p->max_bandwidth = 16ull << 20;
}

static void tail_ok(const char *be, const char *url, bool chasing)
{
    struct migr_hv *src = guest(be, chasing);
    struct migr_send_params p;
    tail_params(&p, chasing);
    struct migr_stats st = MIGR_STATS_INIT;
    struct t_rx x;
    int rc = t_send(src, url, &p, &st, &x);
    char what[128];
    snprintf(what, sizeof(what), "tail %s %s %s", be, url, chasing ? "chasing" : "converging");
    report(what, &st, &x);
    if (rc < 0)
        T_FAIL("send: %s", st.error);
    T_OK(x.rc);
    T_ASSERT(strcmp(st.mode, "chybrid-tail") == 0 && strcmp(x.st.mode, "chybrid-tail") == 0);
    T_ASSERT(st.verified && st.downtime_ns > 0 && st.downtime_ns < st.total_ns);
    T_ASSERT(st.precopy.rounds >= 2 && st.precopy.first_pass_pages > 0);
    if (chasing) {
        /* the rounds could not converge: the last dirty pages went after
         * the switch, while the guest ran there */
        T_ASSERT(!st.precopy.converged);
        T_ASSERT(st.postcopy.pushed_pages + st.postcopy.demand_pages + st.postcopy.prepaged_pages > 0);
        T_ASSERT(st.postcopy.ns > 0 && x.st.postcopy.ns > 0);
    } else {
        /* converged: the few pages left went inside the pause */
        T_ASSERT(st.precopy.converged && st.postcopy.ns == 0 && st.postcopy.pushed_pages == 0 && x.st.postcopy.ns == 0);
    }
    uint64_t at_switch = migr_workload_progress(src);
    T_ASSERT(src->paused);
    migr_hv_destroy(src);
    struct migr_hv *dst = x.hv;
    usleep(150000);
    T_ASSERT(migr_workload_progress(dst) > at_switch);
    t_verify(dst, "on the destination");
    T_ASSERT(!dst->ops->failed(dst));
    migr_hv_destroy(dst);
}

/* The link breaks right after the destination said DONE: the guest ran
 * there, pages still missing; the source takes it back. */
static void tail_lost(const char *be)
{
    struct migr_hv *src = guest(be, true);
    struct migr_send_params p;
    tail_params(&p, true);
    struct t_rx x;
    struct fl_relay relay;
    t_rx_start(&x, "tcp:127.0.0.1:0");
    fl_relay_start(&relay, fl_port(x.l->bound), &(struct fl_rule){FL_TO_SRC, MIGR_REC_DONE, 1, FL_CUT_AFTER, 0}, 1);
    struct migr_transport *t;
    T_OK(migr_transport_connect(relay.url, &t));
    struct migr_stats st = MIGR_STATS_INIT;
    int rc = migr_send(src, t, &p, &st);
    migr_transport_close(t);
    t_rx_join(&x);
    T_EQ(fl_relay_join(&relay), 1);
    char what[128];
    snprintf(what, sizeof(what), "tail %s: link cut after DONE", be);
    report(what, &st, &x);
    T_ASSERT(rc < 0);
    T_ASSERT(st.resumed_on_source && !st.ownership_in_doubt && !src->paused);
    T_ASSERT(strstr(st.error, "taken back") != NULL);
    T_ASSERT(x.rc < 0 && x.hv == NULL); /* the destination dropped its copy */
    uint64_t w = migr_workload_progress(src);
    usleep(150000);
    T_ASSERT(migr_workload_progress(src) > w);
    t_verify(src, "on the source after the tail was lost");
    migr_hv_destroy(src);
}

static void tail_needs_takeback(const char *be)
{
    struct migr_hv *src = guest(be, false);
    struct migr_send_params p;
    tail_params(&p, false);
    p.cancellable = false;
    struct migr_stats st = MIGR_STATS_INIT;
    struct t_rx x;
    int rc = t_send(src, "tcp:127.0.0.1:0", &p, &st, &x);
    T_EQ(rc, -EINVAL);
    T_ASSERT(strstr(st.error, "take-back") != NULL && st.resumed_on_source && !src->paused);
    T_ASSERT(x.rc < 0 && x.hv == NULL);
    uint64_t w = migr_workload_progress(src);
    usleep(100000);
    T_ASSERT(migr_workload_progress(src) > w);
    migr_hv_destroy(src);
}

int main(void)
{
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/migr-tail-%d.sock", getpid());
    const char *backends[] = {"proc", "kvm"};
    for (int b = 0; b < 2; b++) {
        if (b == 1 && !migr_hv_available("kvm")) {
            fprintf(stderr, "kvm: skipped (%s)\n", migr_last_error());
            continue;
        }
        tail_ok(backends[b], path, false);
        tail_ok(backends[b], "tcp:127.0.0.1:0", false);
        tail_ok(backends[b], path, true);
        tail_ok(backends[b], "tcp:127.0.0.1:0", true);
        tail_lost(backends[b]);
    }
    tail_needs_takeback("proc");
    return 0;
}
