/* Rate control: a running guest migrated with --max-bandwidth keeps the wire
 * under the limit (total time >= bytes / limit) and verifies; adaptive mode
 * starts at min_bandwidth and raises the next round's rate to the dirty rate
 * + min_bandwidth (capped by the maximum); the JSON summary reports the
 * limits and this side's CPU accounting. Backend: proc (runs anywhere). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "migr/engine.h"
#include "migr/workload.h"
#include "migratelib.h"

#define MiB (1ull << 20)

static void migrate(const char *wl, uint64_t max_bw, bool adaptive, uint64_t min_bw, struct migr_stats *st)
{
    struct migr_hv *src = t_guest("proc", 64 * MiB, 1, wl, 300);
    char url[64];
    snprintf(url, sizeof(url), "unix:/tmp/migr-rate-%d.sock", getpid());
    struct t_rx x;
    struct migr_send_params p;
    migr_send_params_init(&p);
    p.max_bandwidth = max_bw;
    p.compress = "zero"; /* the limiter is under test, not the codecs (auto compresses on a slow link) */
    p.adaptive_bw = adaptive;
    if (min_bw)
        p.min_bandwidth = min_bw;
    if (t_send(src, url, &p, st, &x) < 0)
        T_FAIL("send: %s", st->error);
    T_OK(x.rc);
    char js[8192];
    migr_stats_json(st, js, sizeof(js));
    fprintf(stderr, "%s\n", js);
    T_ASSERT(strstr(js, "\"engine_cpu_ms\":") && strstr(js, "\"io_cpu_ms\":") && strstr(js, "\"rate\":"));
    T_ASSERT(st->verified && st->engine_cpu_ns > 0 && st->io_cpu_ns > 0);
    migr_hv_destroy(src);
    t_verify(x.hv, "verify on the destination");
    migr_hv_destroy(x.hv);
}

int main(void)
{
    if (!migr_hv_available("proc"))
        T_SKIP("proc backend not usable: %s", migr_last_error());
    struct migr_stats st = MIGR_STATS_INIT;

    /* 1. A fixed limit: ~40 MiB of text pages at 64 MiB/s take >= ~0.6 s, and
     *    the wire never goes much above the limit (one burst of slack). */
    migrate("rate=16M,ws=40M,pattern=random,data=text", 64 * MiB, false, 0, &st);
    double secs = (double)st.total_ns / 1e9, limit = 64.0 * MiB;
    fprintf(stderr, "limited: %llu bytes in %.3f s = %.1f MiB/s (limit 64), waited %.3f s\n",
            (unsigned long long)st.wire_bytes, secs, (double)st.wire_bytes / secs / MiB, (double)st.rate_wait_ns / 1e9);
    T_ASSERT(st.wire_bytes > 30 * MiB);
    T_ASSERT((double)st.wire_bytes <= limit * secs + limit / 50 + 256 * 1024);
    T_ASSERT(st.rate_wait_ns > 0);
    T_ASSERT(st.max_bandwidth == 64 * MiB && st.precopy.round[0].rate == 64 * MiB);

    /* 2. Adaptive: round 1 at min (32 MiB/s), round 2 at the dirty rate of
     *    round 1 + min, capped at max (256 MiB/s). */
    migrate("rate=32M,ws=40M,pattern=random,data=text", 256 * MiB, true, 32 * MiB, &st);
    T_ASSERT(st.adaptive_bw && st.precopy.rounds >= 2);
    T_ASSERT(st.precopy.round[0].rate == 32 * MiB);
    const struct migr_round_stats *r1 = &st.precopy.round[0];
    uint64_t dirty_bps = (uint64_t)((double)r1->dirty_after * 4096 * 1e9 / (double)r1->ns);
    uint64_t want = dirty_bps + 32 * MiB > 256 * MiB ? 256 * MiB : dirty_bps + 32 * MiB;
    fprintf(stderr, "adaptive: round 1 at %llu, dirty %llu B/s, round 2 at %llu (expected %llu)\n",
            (unsigned long long)st.precopy.round[0].rate, (unsigned long long)dirty_bps,
            (unsigned long long)st.precopy.round[1].rate, (unsigned long long)want);
    T_ASSERT(st.precopy.round[1].rate == want);
    T_ASSERT(st.precopy.round[1].rate > st.precopy.round[0].rate);

    /* 3. Unlimited: no waiting at all. */
    migrate("rate=16M,ws=8M,pattern=random,data=text", 0, false, 0, &st);
    T_ASSERT(st.rate_wait_ns == 0 && st.precopy.round[0].rate == 0);
    return 0;
}
