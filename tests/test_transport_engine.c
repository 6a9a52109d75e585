/* The engine, unchanged, over the new transports: a running, dirtying guest
 * (KVM if usable, else the proc backend) is live-migrated in pre-copy and
 * in post-copy (both directions busy at once) over shm: and over
 * tcp ?channels=4, and verified on the destination. Also a rate-limited
 * pre-copy: the transport's limiter holds the wire rate. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include "migr/engine.h"
#include "migr/workload.h"
#include "migratelib.h"

static const char *backend;

static void migrate(const char *url, int postcopy_after, uint64_t rate)
{
    struct migr_vm_config cfg = {.mem_bytes = 64ull << 20, .nvcpus = 1};
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse("rate=32M,pattern=random,data=text", &cfg.wl));
    struct migr_hv *src;
    T_OK(migr_hv_create(backend, &cfg, &src));
    T_OK(src->ops->resume(src));
    usleep(100000);

    struct t_rx x;
    t_rx_start(&x, url);
    struct migr_transport *t;
    T_OK(migr_transport_connect(x.l->bound, &t));
    if (rate)
        T_OK(migr_transport_set_rate(t, rate));
    struct migr_send_params p;
    migr_send_params_init(&p);
    p.mode = postcopy_after < 0 ? MIGR_MODE_PRECOPY : postcopy_after == 0 ? MIGR_MODE_POSTCOPY : MIGR_MODE_HYBRID;
    p.hybrid_rounds = postcopy_after > 0 ? (uint32_t)postcopy_after : 1;
    /* Raw pages: with a limited link the auto codec policy would compress
     * so hard that the sender never waits for the limiter, which is what
     * this test checks. */
    p.compress = "none";
    struct migr_stats st = MIGR_STATS_INIT;
    uint64_t t0 = migr_now_ns();
    int rc = migr_send(src, t, &p, &st);
    double secs = (double)(migr_now_ns() - t0) / 1e9;
    if (rc < 0)
        T_FAIL("send over %s: %s", url, st.error);
    fprintf(stderr, "%s %s postcopy_after=%d: %.2f s, %llu bytes, send cpu %.3f s, recv cpu %.3f s, rate wait %.3f s\n",
            backend, x.l->bound, postcopy_after, secs, (unsigned long long)t->bytes_sent, (double)t->send_cpu_ns / 1e9,
            (double)t->recv_cpu_ns / 1e9, (double)t->rate_wait_ns / 1e9);
    T_ASSERT(t->bytes_sent >= cfg.mem_bytes / 2);
    T_ASSERT(t->send_calls > 0 && t->send_cpu_ns > 0);
    if (rate) {
        /* The wire rate may not exceed the limit (one burst of slack). */
        double limit = (double)rate * secs + (double)MIGR_MAX(rate / 50, 64u << 10);
        if ((double)t->bytes_sent > limit)
            T_FAIL("%llu bytes in %.2f s exceeds the %llu B/s limit", (unsigned long long)t->bytes_sent, secs,
                   (unsigned long long)rate);
        T_ASSERT(t->rate_wait_ns > 0);
    }
    migr_transport_close(t);
    t_rx_join(&x);
    T_OK(x.rc);
    T_ASSERT(st.verified || postcopy_after >= 0);
    migr_hv_destroy(src);
    struct migr_hv *dst = x.hv;
    t_verify(dst, url);
    T_ASSERT(!dst->ops->failed(dst));
    migr_hv_destroy(dst);
}

int main(void)
{
    char url[96];

    backend = migr_hv_available("kvm") ? "kvm" : "proc";
    if (!migr_hv_available(backend))
        T_SKIP("neither kvm nor proc backend usable: %s", migr_last_error());
    snprintf(url, sizeof(url), "shm:migr-engine-%d", getpid());
    migrate(url, -1, 0);
    migrate(url, 0, 0);
    migrate("tcp:127.0.0.1:0?channels=4", -1, 0);
    migrate("tcp:127.0.0.1:0?channels=4", 0, 0);
    /* 64 MiB guest at 96 MiB/s: about a second of rate-limited pre-copy. */
    migrate(url, -1, 96ull << 20);
    return 0;
}
