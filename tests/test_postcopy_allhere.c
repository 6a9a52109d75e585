/* A post-copy switch with nothing missing: a hybrid migration of a guest
 * that stops writing (its pages all arrived intact in the rounds) switches
 * without userfaultfd, take-back tracker or fault threads at the
 * destination: no tracker named there, no fault, no checkpoint, no page
 * pushed or requested; the destination sends COMPLETE right after DONE and
 * the guest runs there, verified (proc; kvm where /dev/kvm works; unix and
 * TCP). A guest that keeps writing still goes the post-copy way (the
 * tracker is there). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "migratelib.h"

static void report(const char *what, const struct migr_stats *st, const struct t_rx *x)
{
    char js[8192], jr[8192];
    migr_stats_json(st, js, sizeof(js));
    migr_stats_json(&x->st, jr, sizeof(jr));
    fprintf(stderr, "%s\n  source: %s\n  dest:   %s\n", what, js, jr);
}

static void hybrid(const char *be, const char *url, bool writing)
{
    struct migr_hv *src = t_guest(be, 64ull << 20, 1, "rate=8M,ws=4M,pattern=random,data=text", 100);
    if (!writing) /* nothing written from here on: every page arrives intact in round 1 */
        T_OK(src->ops->pause(src));
    struct migr_send_params p;
    migr_send_params_init(&p);
    p.mode = MIGR_MODE_HYBRID;
    p.cancellable = true;
    struct migr_stats st = MIGR_STATS_INIT;
    struct t_rx x;
    int rc = t_send(src, url, &p, &st, &x);
    char what[128];
    snprintf(what, sizeof(what), "hybrid %s %s %s", be, url, writing ? "writing" : "idle");
    report(what, &st, &x);
    if (rc < 0)
        T_FAIL("send: %s", st.error);
    T_OK(x.rc);
    T_ASSERT(st.verified && strcmp(x.st.mode, "chybrid") == 0);
    if (writing) {
        T_ASSERT(x.st.tracker[0] != 0); /* the take-back tracker ran */
    } else {
        T_ASSERT(x.st.tracker[0] == 0);
        T_EQ(x.st.postcopy.faults, 0);
        T_EQ(x.st.postcopy.epochs, 0);
        T_EQ(x.st.postcopy.demand_pages, 0);
        T_EQ(st.postcopy.pushed_pages + st.postcopy.demand_pages, 0);
    }
    migr_hv_destroy(src);
    struct migr_hv *dst = x.hv;
    uint64_t a = migr_workload_progress(dst);
    usleep(100000);
    T_ASSERT(migr_workload_progress(dst) > a);
    t_verify(dst, "on the destination");
    migr_hv_destroy(dst);
}

int main(void)
{
    const char *bes[2] = {"proc", "kvm"};
    int nb = access("/dev/kvm", R_OK | W_OK) == 0 ? 2 : 1;
    if (nb == 1)
        fprintf(stderr, "kvm part skipped: no /dev/kvm\n");
    for (int b = 0; b < nb; b++) {
        char path[64];
        snprintf(path, sizeof(path), "unix:/tmp/migr-allhere-%d.sock", getpid());
        hybrid(bes[b], path, false);
        hybrid(bes[b], "tcp:127.0.0.1:0", false);
        hybrid(bes[b], "tcp:127.0.0.1:0", true);
    }
    return 0;
}
