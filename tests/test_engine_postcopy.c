/* Post-copy and hybrid, in one process: a running, dirtying KVM guest is
 * switched over at once (post-copy) or after one pre-copy round (hybrid); the
 * destination runs it while missing pages are fetched on fault (userfaultfd)
 * and pushed in the background; the image verifies once every page is
 * resident, and the guest keeps running. A fault storm (the guest touching
 * every page as fast as it can) completes too. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include "migr/engine.h"
#include "migr/workload.h"
#include "migratelib.h"

/* cancel_at: cancel once the destination has this fraction of the pages (0 = never). */
static void migrate_ex(const char *url, const char *wl, uint32_t nvcpus, int after, double cancel_at);
static void migrate(const char *url, const char *wl, uint32_t nvcpus, int after)
{
    migrate_ex(url, wl, nvcpus, after, 0);
}

static void migrate_ex(const char *url, const char *wl, uint32_t nvcpus, int after, double cancel_at)
{
    struct migr_hv *src = t_guest("kvm", 128ull << 20, nvcpus, wl, 200);
    struct t_rx x;
    struct migr_send_params p;
    migr_send_params_init(&p);
    p.mode = after < 0 ? MIGR_MODE_PRECOPY : after == 0 ? MIGR_MODE_POSTCOPY : MIGR_MODE_HYBRID;
    p.hybrid_rounds = after > 0 ? (uint32_t)after : 1;
    struct migr_stats st = MIGR_STATS_INIT;
    struct t_canceller k;
    struct migr_transport *t;
    if (cancel_at > 0) {
        /* Slow the push (32 MiB/s) so that the destination's count, which
         * the canceller watches, runs close behind the source's. */
        T_ASSERT((p.cancel = migr_cancel_new()) != NULL);
        p.max_bandwidth = 32ull << 20;
    }
    t_rx_start(&x, url);
    T_OK(migr_transport_connect(x.l->bound, &t));
    if (cancel_at > 0)
        t_cancel_start(&k, p.cancel, &x.st.pages, (uint64_t)(cancel_at * (double)src->ram_pages) + 1);
    int rc = migr_send(src, t, &p, &st);
    if (cancel_at > 0) {
        t_cancel_stop(&k);
        migr_cancel_free(p.cancel);
    }
    migr_transport_close(t);
    t_rx_join(&x);
    if (cancel_at > 0) {
        /* The guest comes back to the source, verified and running; the
         * destination has dropped its copy. */
        char js[4096];
        migr_stats_json(&st, js, sizeof(js));
        fprintf(stderr, "cancel at %.0f%%: %s\n  dest: %s\n", cancel_at * 100, js, x.st.error);
        T_ASSERT(rc == -ECANCELED && st.cancelled && st.resumed_on_source && !src->paused);
        T_ASSERT(x.rc < 0 && x.hv == NULL);
        uint64_t w = migr_workload_progress(src);
        usleep(200000);
        T_ASSERT(migr_workload_progress(src) > w);
        t_verify(src, "verify on the source after cancel");
        migr_hv_destroy(src);
        return;
    }
    if (rc < 0)
        T_FAIL("send: %s", st.error);
    T_OK(x.rc);
    char js[4096], jr[4096];
    migr_stats_json(&st, js, sizeof(js));
    migr_stats_json(&x.st, jr, sizeof(jr));
    fprintf(stderr, "%s %s after=%d\n  source: %s\n  dest:   %s\n", url, wl, after, js, jr);
    T_ASSERT(strcmp(st.mode, after == 0 ? "cpostcopy" : "chybrid") == 0);
    T_ASSERT(x.st.pages > 0);
    /* KVM's dirty log sees guest-mode writes only: the destination started
     * its take-back tracker (and made its post-copy state) before the pause */
    T_ASSERT(x.st.switch_ahead);
    uint64_t at_switch = migr_workload_progress(src);
    migr_hv_destroy(src);

    struct migr_hv *dst = x.hv;
    usleep(200000);
    T_ASSERT(migr_workload_progress(dst) > at_switch);
    t_verify(dst, "verify on the destination");
    T_ASSERT(!dst->ops->failed(dst));
    migr_hv_destroy(dst);
}

int main(void)
{
    if (!migr_hv_available("kvm"))
        T_SKIP("no usable /dev/kvm: %s", migr_last_error());
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/migr-pc-%d.sock", getpid());
    if (getenv("PC_ONLY_STORM")) { migrate(path, "rate=0,pattern=sequential,data=text", 2, 0); return 0; }
    migrate(path, "rate=64M,pattern=random,data=text", 1, 0);
    migrate("tcp:127.0.0.1:0", "rate=128M,pattern=hotcold,data=random", 2, 0);
    migrate(path, "rate=64M,pattern=random,data=text", 2, 1);
    /* cancellable post-copy: cancel early, midway and late; the guest comes back */
    migrate_ex(path, "rate=64M,pattern=random,data=text", 2, 0, 0.01);
    migrate_ex(path, "rate=64M,pattern=random,data=text", 2, 0, 0.50);
    migrate_ex("tcp:127.0.0.1:0", "rate=64M,pattern=random,data=text", 2, 0, 0.99);
    /* fault storm: every vCPU sweeps the whole working set unthrottled */
    migrate(path, "rate=0,pattern=sequential,data=text", 2, 0);
    return 0;
}
