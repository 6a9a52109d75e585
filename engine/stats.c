/* engine: the JSON summary of a migration (one object, stable field names;
 * README.md documents them), and the accounting both sides put in it. */
#include <stdio.h>
#include <string.h>

#include "migr/common.h"
#include "migr/engine.h"
#include "engine/abi.h"
#include "engine/engine_impl.h"
#include "engine/mode.h"

static double ms(uint64_t ns) { return (double)ns / 1e6; }
static double mbps(uint64_t bytes, uint64_t ns) { return ns ? (double)bytes / ((double)ns / 1e9) / 1e6 : 0; }

/* Both sides (send.c, recv.c): this side's CPU and rate-limiter accounting into st. */
void engine_account(struct migr_stats *st, const struct migr_transport *t, uint64_t cpu0)
{
    st->engine_cpu_ns = migr_thread_cpu_ns() - cpu0;
    st->io_cpu_ns = t->send_cpu_ns + t->recv_cpu_ns;
    st->rate_wait_ns = t->rate_wait_ns;
}

/* The mode the summary names can switch as post-copy (its unit says so, not
 * its name): its post-copy fields are printed. */
void engine_switch_step(struct migr_stats *st, int i, uint64_t t0)
{
    uint64_t us = (migr_now_ns() - t0) / 1000;
    st->switch_us[i] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static bool has_postcopy(const struct migr_stats *st)
{
    bool cancellable;
    const struct engine_mode *m = engine_mode_by_name(st->mode, &cancellable);
    return m && m->postcopy;
}

static int stats_json(const struct migr_stats *st, char *buf, size_t cap)
{
    bool pc = has_postcopy(st);
    const struct migr_precopy_stats *pre = &st->precopy;
    const struct migr_postcopy_stats *post = &st->postcopy;
    size_t n = 0;
#define OUT(...) do { int k_ = snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__); if (k_ > 0) n += (size_t)k_; } while (0)
    char err[sizeof(st->error) * 2];
    size_t j = 0;
    for (const char *p = st->error; *p && j < sizeof(err) - 2; p++) {
        if (*p == '"' || *p == '\\')
            err[j++] = '\\';
        err[j++] = (*p >= 0x20) ? *p : ' ';
    }
    err[j] = 0;
    uint64_t moved = st->pages * 4096;
    OUT("{\"mode\":\"%s\",\"transport\":\"%s\",\"tracker\":\"%s\",", st->mode, st->transport, st->tracker);
    OUT("\"ok\":%s,\"error\":\"%s\",", st->error[0] ? "false" : "true", err);
    OUT("\"total_ms\":%.3f,\"downtime_ms\":%.3f,\"setup_ms\":%.3f,", ms(st->total_ns), ms(st->downtime_ns),
        ms(st->setup_ns));
    if (st->paused_wall_ns) /* wall clock, seconds since the epoch: the blackout is resumed_at_s - paused_at_s */
        OUT("\"paused_at_s\":%llu.%09llu,", (unsigned long long)(st->paused_wall_ns / 1000000000ull),
            (unsigned long long)(st->paused_wall_ns % 1000000000ull));
    if (st->resumed_wall_ns)
        OUT("\"resumed_at_s\":%llu.%09llu,", (unsigned long long)(st->resumed_wall_ns / 1000000000ull),
            (unsigned long long)(st->resumed_wall_ns % 1000000000ull));
    OUT("\"rounds\":%u,\"pages_sent\":%llu,\"zero_pages\":%llu,\"raw_pages\":%llu,\"torn_pages\":%llu,",
        pre->rounds, (unsigned long long)st->pages, (unsigned long long)st->zero_pages,
        (unsigned long long)st->raw_pages, (unsigned long long)st->torn_pages);
    OUT("\"hole_pages\":%llu,\"prefaulted_pages\":%llu,", (unsigned long long)st->hole_pages,
        (unsigned long long)st->prefaulted_pages);
    OUT("\"bytes_sent\":%llu,\"ram_bytes\":%llu,\"state_bytes\":%llu,", (unsigned long long)st->wire_bytes,
        (unsigned long long)st->ram_bytes, (unsigned long long)st->state_bytes);
    OUT("\"throughput_mbps\":%.1f,\"wire_mbps\":%.1f,", mbps(moved, st->total_ns), mbps(st->wire_bytes, st->total_ns));
    OUT("\"first_pass_ms\":%.3f,\"first_pass_mbps\":%.1f,", ms(pre->first_pass_ns),
        mbps(pre->first_pass_pages * 4096, pre->first_pass_ns));
    OUT("\"converged\":%s,\"verified\":%s,\"resumed_on_source\":%s,\"ownership_in_doubt\":%s,",
        pre->converged ? "true" : "false", st->verified ? "true" : "false",
        st->resumed_on_source ? "true" : "false", st->ownership_in_doubt ? "true" : "false");
    if (pc)
        OUT("\"epochs\":%llu,\"back_pages\":%llu,\"cancelled\":%s,", (unsigned long long)post->epochs,
            (unsigned long long)post->back_pages, st->cancelled ? "true" : "false");
    if (pc)
        OUT("\"postcopy_ms\":%.3f,\"demand_pages\":%llu,\"pushed_pages\":%llu,\"faults\":%llu,"
            "\"fault_p50_us\":%.1f,\"fault_p99_us\":%.1f,\"fault_max_us\":%.1f,", ms(post->ns),
            (unsigned long long)post->demand_pages, (unsigned long long)post->pushed_pages,
            (unsigned long long)post->faults, post->fault_p50_us, post->fault_p99_us, post->fault_max_us);
    OUT("\"max_bandwidth\":%llu,\"adaptive_bw\":%s,\"engine_cpu_ms\":%.3f,\"io_cpu_ms\":%.3f,"
        "\"rate_wait_ms\":%.3f,", (unsigned long long)st->max_bandwidth, st->adaptive_bw ? "true" : "false",
        ms(st->engine_cpu_ns), ms(st->io_cpu_ns), ms(st->rate_wait_ns));
    /* page codecs: per wire encoding, pages, payload bytes, CPU time (encode or decode) */
    static const char *const encs[MIGR_STATS_ENCS] = {"raw", "zero", "xbzrle", "lz4", "zstd", "zlib"};
    uint64_t before = 0, after = 0;
    OUT("\"compress\":\"%s\",\"compress_threads\":%u,\"codecs\":{", st->compress, st->compress_threads);
    for (int k = 0; k < MIGR_STATS_ENCS; k++) {
        const struct migr_codec_stats *c = &st->codec[k];
        before += c->pages * 4096;
        after += c->bytes_out;
        OUT("%s\"%s\":{\"pages\":%llu,\"bytes\":%llu,\"cpu_ms\":%.3f}", k ? "," : "", encs[k],
            (unsigned long long)c->pages, (unsigned long long)c->bytes_out, ms(c->cpu_ns));
    }
    OUT("},\"page_bytes_before\":%llu,\"page_bytes_after\":%llu,\"bytes_saved\":%llu,\"unchanged_pages\":%llu,"
        "\"stream_pages\":%llu,", (unsigned long long)before, (unsigned long long)after,
        (unsigned long long)(before + st->unchanged_pages * 4096 - after), (unsigned long long)st->unchanged_pages,
        (unsigned long long)st->stream_pages);
    OUT("\"xbzrle_cache_bytes\":%llu,\"cache_lookups\":%llu,\"cache_hits\":%llu,\"cache_hit_rate\":%.4f,"
        "\"probes\":%llu,\"link_mbps\":%.1f,", (unsigned long long)st->xbzrle_cache_bytes,
        (unsigned long long)st->cache_lookups, (unsigned long long)st->cache_hits,
        st->cache_lookups ? (double)st->cache_hits / (double)st->cache_lookups : 0.0,
        (unsigned long long)st->probes, st->link_mbps);
    if (pc) {
        /* time to full residence = postcopy_ms; bytes sent back = back_pages x 4096 */
        OUT("\"resident_ms\":%.3f,\"back_bytes\":%llu,\"prepaged_pages\":%llu,\"fault_channel\":%s,"
            "\"switch_ahead\":%s,\"fault_hist_us\":{", ms(post->ns), (unsigned long long)post->back_pages * 4096,
            (unsigned long long)post->prepaged_pages, post->fault_channel ? "true" : "false",
            st->switch_ahead ? "true" : "false");
        for (int i = 0; i < MIGR_FAULT_BUCKETS; i++)
            if (i + 1 < MIGR_FAULT_BUCKETS)
                OUT("%s\"lt%.0f\":%llu", i ? "," : "", MIGR_FAULT_BUCKET_US[i], (unsigned long long)post->fault_hist[i]);
            else
                OUT(",\"ge%.0f\":%llu", MIGR_FAULT_BUCKET_US[i - 1], (unsigned long long)post->fault_hist[i]);
        OUT("},\"fault_req_us\":%.1f,\"fault_wait_us\":%.1f,\"fault_place_us\":%.1f,\"serve_p50_us\":%.1f,",
            post->fault_req_us, post->fault_wait_us, post->fault_place_us, post->serve_p50_us);
    }
    if (st->paused_wall_ns || st->resumed_wall_ns) {
        /* the switch's steps (µs): the source's from its pause, the destination's from SWITCHOVER */
        static const char *const src[MIGR_SWITCH_STEPS] = {"paused", "last_pages", "state_sent", "ready", "done"};
        static const char *const dst[MIGR_SWITCH_STEPS] = {"prefault_stopped", "state_loaded", "ready_sent",
                                                           "commit", "resume"};
        const char *const *name = st->paused_wall_ns ? src : dst;
        OUT("\"switch_us\":{");
        for (int i = 0; i < MIGR_SWITCH_STEPS; i++)
            OUT("%s\"%s\":%u", i ? "," : "", name[i], st->switch_us[i]);
        OUT("},");
    }
    OUT("\"round_stats\":[");
    for (uint32_t i = 0; i < pre->rounds && i < MIGR_MAX_ROUNDS_KEPT; i++)
        OUT("%s{\"round\":%u,\"pages\":%llu,\"bytes\":%llu,\"ms\":%.3f,\"dirty_after\":%llu,\"rate\":%llu}",
            i ? "," : "", i + 1, (unsigned long long)pre->round[i].pages, (unsigned long long)pre->round[i].bytes,
            ms(pre->round[i].ns), (unsigned long long)pre->round[i].dirty_after,
            (unsigned long long)pre->round[i].rate);
    OUT("]}");
#undef OUT
    return (int)n;
}

/* st may be an older caller's, shorter than ours: read only its size. */
int migr_stats_json(const struct migr_stats *st, char *buf, size_t cap)
{
    struct migr_stats full = MIGR_STATS_INIT;
    int err = engine_abi_check_out(st, "stats", "MIGR_STATS_INIT");
    if (cap)
        buf[0] = 0;
    if (err < 0)
        return err;
    memcpy(&full, st, st->size < sizeof(full) ? st->size : sizeof(full));
    return stats_json(&full, buf, cap);
}
