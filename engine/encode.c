/* engine: the source's page codec stage (pre-copy rounds).
 *
 * send_pages() queues guest pages here; a batch of up to ENGINE_BATCH_PAGES
 * is encoded by the workers (page i by worker pfn % nthreads, which owns the
 * page-cache shard of that pfn) and then sent as one PAGES record, entries in
 * the order the pages were queued. Batches are encoded one after another and
 * a batch is sent before the next is encoded, so records leave in order and a
 * newer copy of a page never overtakes an older one.
 *
 * Rules (docs/compress.md, "In the engine"; docs/format.md, "Page Encodings"):
 *   - a page that is compressed or delta-encoded is first copied from guest
 *     RAM into a private snapshot; it is encoded from the snapshot and its CRC
 *     is the snapshot's, so such pages are never torn;
 *   - the cache holds exactly the bytes the destination has: a page sent from
 *     a snapshot (any encoding) refreshes or fills its cache slot with the
 *     snapshot; a page sent RAW from live RAM (may be torn) or as ZERO is
 *     dropped from the cache. A failed send ends the migration and the cache
 *     with it.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_delivery_rate (glibc's lacks it) */
#include <sys/socket.h>

#include "migr/codec.h"
#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/pagecache.h"
#include "engine/engine_impl.h"
#include "engine/linkest.h"
#include "engine/stage.h"

/* ---------- fork-join pool ---------- */

struct engine_pool {
    unsigned n;
    pthread_t th[ENGINE_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;
    unsigned pending;
    bool stop;
    void (*fn)(void *, unsigned);
    void *arg;
};

struct pool_thread_arg {
    struct engine_pool *p;
    unsigned w;
};

static void *pool_main(void *a)
{
    struct pool_thread_arg *ta = a;
    struct engine_pool *p = ta->p;
    unsigned w = ta->w;
    free(ta);
    pthread_mutex_lock(&p->mu);
    uint64_t seen = 0; /* runs start after creation: gen was 0 then (the thread may start late) */
    for (;;) {
        while (p->gen == seen && !p->stop)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->stop)
            break;
        seen = p->gen;
        void (*fn)(void *, unsigned) = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, w);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int engine_pool_create(unsigned n, struct engine_pool **out)
{
    if (n < 1 || n > ENGINE_MAX_THREADS)
        return migr_errorf(EINVAL, "worker pool: %u threads (1..%u)", n, ENGINE_MAX_THREADS);
    struct engine_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    for (unsigned w = 1; w < n; w++) {
        struct pool_thread_arg *ta = malloc(sizeof(*ta));
        if (ta)
            *ta = (struct pool_thread_arg){p, w}; /* before the thread starts: it frees ta */
        int err = ta ? pthread_create(&p->th[w], NULL, pool_main, ta) : ENOMEM;
        if (err) {
            free(ta);
            engine_pool_destroy(p);
            return migr_errorf(err, "worker pool: cannot start thread %u of %u", w, n);
        }
        p->n = w + 1;
    }
    p->n = n;
    *out = p;
    return 0;
}

void engine_pool_run(struct engine_pool *p, void (*fn)(void *arg, unsigned w), void *arg)
{
    if (p->n > 1) {
        pthread_mutex_lock(&p->mu);
        p->fn = fn;
        p->arg = arg;
        p->pending = p->n - 1;
        p->gen++;
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0);
    if (p->n > 1) {
        pthread_mutex_lock(&p->mu);
        while (p->pending)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

void engine_pool_destroy(struct engine_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (unsigned w = 1; w < p->n; w++)
        if (p->th[w])
            pthread_join(p->th[w], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
}

/* ---------- the encoder ---------- */

_Static_assert(ENGINE_MAX_THREADS <= MIGR_LANES, "a worker's streams are lane w of each record");

enum cmode { C_NONE, C_ZERO, C_XBZRLE, C_LZ4, C_ZLIB, C_ZSTD, C_AUTO };
static const char *const cmode_names[] = {"none", "zero", "xbzrle", "lz4", "zlib", "zstd", "auto"};

/* What a page became. */
enum { P_ZERO, P_RAW_LIVE, P_SNAP, P_SKIP };

struct enc_page {
    const uint8_t *live;
    uint64_t pfn;
    uint8_t kind;                 /* P_* */
    uint8_t enc;                  /* MIGR_ENC_* for P_SNAP (RAW or a codec) */
    uint8_t lane;                 /* stream encodings: the entry's lane byte (worker, MIGR_LANE_START) */
    uint32_t len, crc;
};

/* Auto policy, per worker: what each codec made of the pages it encoded
 * (EWMA of output bytes, declines counted as a whole page) and how long it
 * took (EWMA of ns per page). */
#define AUTO_CODECS 3             /* xbzrle, lz4, zstd */
#define PROBE_EVERY 64            /* every 64th page of a worker re-measures another codec */
#define EWMA 0.1
struct model {
    double bytes[AUTO_CODECS], ns[AUTO_CODECS];
    bool measured[AUTO_CODECS];
    uint32_t since_probe, next_probe;
};
static const uint8_t auto_enc[AUTO_CODECS] = {MIGR_ENC_XBZRLE, MIGR_ENC_LZ4S, MIGR_ENC_ZSTDS};

struct worker {
    struct migr_pagecache *cache; /* shard: pfns with pfn % nthreads == w */
    struct migr_lane *lane[2];    /* its LZ4S and ZSTDS streams: lane w of each record */
    uint8_t id;                   /* w */
    struct model m;
    struct migr_codec_stats cs[MIGR_STATS_ENCS];
    uint64_t unchanged, probes, stream_pages;
    uint64_t cpu_ns;              /* this worker's thread CPU time in the last batch */
} __attribute__((aligned(64)));

struct encoder {
    enum cmode mode;
    unsigned nthreads;
    struct engine_pool *pool;
    struct worker w[ENGINE_MAX_THREADS];
    uint8_t *snap, *out;          /* ENGINE_BATCH_PAGES pages each */
    struct enc_page pg[ENGINE_BATCH_PAGES];
    uint32_t n;
    uint32_t round;               /* round of the queued pages */
    bool cache_on;                /* this round uses the cache (round >= 2) */
    bool final;                   /* the guest is paused: last round, nothing tears, no round follows */
    struct engine_link_est est;   /* the link (auto; linkest.c) */
    bool bw_fixed;
    bool no_tcp_info;             /* the transport's fd is not a TCP socket */
    int fds[MIGR_MC_MAX_CHANNELS];  /* the stream's sockets: one, or each channel of tcp ?channels=N */
    int nfds;
    uint64_t acked_sum, acked_t;  /* several channels: their bytes acknowledged, when (ns) */
    uint64_t busy_us[MIGR_MC_MAX_CHANNELS], rwnd_us[MIGR_MC_MAX_CHANNELS]; /* TCP's busy and receive-window-limited time so far */
    bool rwnd_bound;              /* the receivers' windows held the sockets back over the last tick */
    double par;                   /* encoder CPU seconds per wall second of the encode phase (measured) */
    int level;                    /* compress_level for level_enc's codec (0: the codec's default) */
    uint8_t level_enc;
    int lane_level[2];            /* the LZ4S and ZSTDS streams' levels for the record being encoded */
};

static const struct migr_codec_ops *codec_of(uint8_t enc)
{
    return migr_codec_for_enc(enc);
}

/* Time a page costs the pipeline: CPU spread over the workers overlaps with
 * the link (the socket buffer decouples them); the smaller part still counts
 * a little, so ties go to fewer bytes. */
static double cost(const struct encoder *e, double ns, double bytes)
{
    double cpu = ns / e->par, wire = (bytes + MIGR_PAGE_ENTRY_SIZE) / engine_link_est_rate(&e->est);
    return cpu > wire ? cpu + 0.1 * wire : wire + 0.1 * cpu;
}

/* Auto: the codec to try first for this page (AUTO_CODECS = send RAW). */
static int auto_pick(struct encoder *e, struct worker *wk, bool has_old)
{
    struct model *m = &wk->m;
    if (++m->since_probe >= PROBE_EVERY) {
        m->since_probe = 0;
        for (int k = 0; k < AUTO_CODECS; k++) {
            int c = (int)(m->next_probe++ % AUTO_CODECS);
            if (c != 0 || has_old) {
                wk->probes++;
                return c;
            }
        }
    }
    for (int c = 0; c < AUTO_CODECS; c++)
        if (!m->measured[c] && (c != 0 || has_old))
            return c; /* measure each codec once before trusting the model */
    int best = AUTO_CODECS;
    double best_cost = cost(e, 0, MIGR_PAGE_SIZE);
    for (int c = has_old ? 0 : 1; c < AUTO_CODECS; c++) {
        double k = cost(e, m->ns[c], m->bytes[c]);
        if (k < best_cost) {
            best_cost = k;
            best = c;
        }
    }
    return best;
}

static void model_update(struct model *m, int c, double ns, double bytes)
{
    if (!m->measured[c]) {
        m->ns[c] = ns;
        m->bytes[c] = bytes;
        m->measured[c] = true;
        return;
    }
    /* Time is wall time: a worker preempted inside a codec (a busy host)
     * would otherwise inflate the estimate for many pages. */
    if (ns > 3 * m->ns[c])
        ns = 3 * m->ns[c];
    m->ns[c] += EWMA * (ns - m->ns[c]);
    m->bytes[c] += EWMA * (bytes - m->bytes[c]);
}

/* The wire statistics slot of an encoding: stream encodings count as the
 * per-page codec they extend (MIGR_STATS_ENCS; migr_stats.stream_pages says
 * how many went as streams). */
static uint8_t stats_enc(uint8_t enc)
{
    const struct migr_lane_ops *l = migr_lane_for_enc(enc);
    return l ? l->page_enc : enc;
}

/* Run codec enc on the snapshot (at this encoder's level, if it set one for
 * the codec): 1 and *len if it paid, 0 if it declined. A stream encoding
 * codes the page in the worker's lane and sets *lane. */
static int try_codec(const struct encoder *e, struct worker *wk, uint8_t enc, const uint8_t *snap, const uint8_t *old,
                     uint8_t *out, uint32_t *len, uint8_t *lane)
{
    size_t l = 0;
    int rc;
    const struct migr_lane_ops *so = migr_lane_for_enc(enc);
    if (so) {
        struct migr_lane **ctx = &wk->lane[enc == MIGR_ENC_ZSTDS];
        bool started = false;
        if (!*ctx && migr_lane_new(so, ctx) < 0)
            return 0;
        rc = migr_lane_encode(*ctx, snap, e->lane_level[enc == MIGR_ENC_ZSTDS], out, MIGR_PAGE_SIZE - 1, &l, &started);
        *lane = (uint8_t)(wk->id | (started ? MIGR_LANE_START : 0));
    } else {
        const struct migr_codec_ops *c = codec_of(enc);
        rc = e->level && enc == e->level_enc ? c->encode_at(snap, out, MIGR_PAGE_SIZE - 1, &l, e->level)
                                             : c->encode(snap, old, out, MIGR_PAGE_SIZE - 1, &l);
    }
    if (rc != 0)
        return 0; /* declined, or -ENOMEM for a library context: send the page another way */
    *len = (uint32_t)l;
    return 1;
}

static void encode_one(struct encoder *e, struct worker *wk, uint32_t i)
{
    struct enc_page *pg = &e->pg[i];
    uint8_t *snap = e->snap + (size_t)i * MIGR_PAGE_SIZE, *out = e->out + (size_t)i * MIGR_PAGE_SIZE;
    uint64_t t0 = migr_now_ns();
    uint8_t *old = NULL;
    pg->kind = P_RAW_LIVE;
    if (e->mode == C_NONE)
        goto raw_live;
    if (migr_page_is_zero(pg->live)) {
        pg->kind = P_ZERO;
        if (wk->cache)
            migr_pagecache_drop(wk->cache, pg->pfn);
        goto done;
    }
    if (e->mode == C_ZERO)
        goto raw_live;
    bool cache = wk->cache && e->cache_on;
    if (cache)
        old = migr_pagecache_lookup(wk->cache, pg->pfn);
    int pick = -1;                /* auto: model index tried first */
    if (e->mode == C_AUTO) {
        pick = auto_pick(e, wk, old != NULL);
        if (pick == AUTO_CODECS && (!cache || e->final))
            goto raw_live;        /* nothing to gain from a copy (final round: no cache to keep up) */
    } else if (e->mode == C_XBZRLE && !cache) {
        goto raw_live;            /* round 1: no cache yet (as QEMU) */
    }
    memcpy(snap, pg->live, MIGR_PAGE_SIZE);
    pg->kind = P_SNAP;
    pg->enc = MIGR_ENC_RAW;
    pg->len = MIGR_PAGE_SIZE;
    uint8_t first = e->mode == C_XBZRLE ? MIGR_ENC_XBZRLE : e->mode == C_LZ4 ? MIGR_ENC_LZ4S
                  : e->mode == C_ZLIB ? MIGR_ENC_ZLIB : e->mode == C_ZSTD ? MIGR_ENC_ZSTDS
                  : pick < AUTO_CODECS ? auto_enc[pick] : MIGR_ENC_RAW;
    if (first == MIGR_ENC_XBZRLE && !old)
        first = MIGR_ENC_RAW;
    if (first != MIGR_ENC_RAW) {
        uint64_t c0 = migr_now_ns();
        int ok = try_codec(e, wk, first, snap, old, out, &pg->len, &pg->lane);
        uint64_t c1 = migr_now_ns();
        if (pick >= 0)
            model_update(&wk->m, pick, (double)(c1 - c0), ok ? (double)pg->len : (double)MIGR_PAGE_SIZE);
        if (ok && first == MIGR_ENC_XBZRLE && pg->len == 0) {
            pg->kind = P_SKIP;    /* unchanged: the destination has these bytes */
            wk->unchanged++;
            goto done;
        }
        if (ok) {
            pg->enc = first;
        } else {
            pg->len = MIGR_PAGE_SIZE;
            /* auto: a declined delta may still compress */
            if (pick == 0) {
                int alt = 1;
                double best = cost(e, 0, MIGR_PAGE_SIZE);
                for (int c = 1; c < AUTO_CODECS; c++)
                    if (wk->m.measured[c] && cost(e, wk->m.ns[c], wk->m.bytes[c]) < best) {
                        best = cost(e, wk->m.ns[c], wk->m.bytes[c]);
                        alt = c + AUTO_CODECS;
                    }
                if (alt >= AUTO_CODECS) {
                    alt -= AUTO_CODECS;
                    c0 = migr_now_ns();
                    ok = try_codec(e, wk, auto_enc[alt], snap, NULL, out, &pg->len, &pg->lane);
                    model_update(&wk->m, alt, (double)(migr_now_ns() - c0),
                                 ok ? (double)pg->len : (double)MIGR_PAGE_SIZE);
                    if (ok)
                        pg->enc = auto_enc[alt];
                    else
                        pg->len = MIGR_PAGE_SIZE;
                }
            }
        }
    }
    pg->crc = migr_crc32c(0, snap, MIGR_PAGE_SIZE);
    if (e->final) {
        /* no round follows: the cache is not read again */
    } else if (old) {
        memcpy(old, snap, MIGR_PAGE_SIZE);
    } else if (cache) {
        uint8_t *slot = migr_pagecache_insert(wk->cache, pg->pfn);
        if (slot)
            memcpy(slot, snap, MIGR_PAGE_SIZE);
    }
    (void)out;
    goto done;

raw_live:
    pg->kind = P_RAW_LIVE;
    if (wk->cache)
        migr_pagecache_drop(wk->cache, pg->pfn);
    pg->crc = migr_crc32c(0, pg->live, MIGR_PAGE_SIZE);
done:;
    uint8_t enc = stats_enc(pg->kind == P_ZERO ? MIGR_ENC_ZERO : pg->kind == P_SNAP ? pg->enc : MIGR_ENC_RAW);
    if (pg->kind != P_SKIP) {
        wk->stream_pages += pg->kind == P_SNAP && migr_enc_is_stream(pg->enc);
        wk->cs[enc].pages++;
        wk->cs[enc].bytes_out += pg->kind == P_ZERO ? 0 : pg->kind == P_RAW_LIVE ? MIGR_PAGE_SIZE : pg->len;
    }
    wk->cs[enc].cpu_ns += migr_now_ns() - t0;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0; /* no thread clock: par keeps its last value (see encode_send) */
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void encode_worker(void *arg, unsigned w)
{
    struct encoder *e = arg;
    uint64_t c0 = thread_cpu_ns();
    for (uint32_t i = 0; i < e->n; i++)
        if (e->pg[i].pfn % e->nthreads == w)
            encode_one(e, &e->w[w], i);
    e->w[w].cpu_ns = c0 ? thread_cpu_ns() - c0 : 0;
}

/* The XBZRLE cache's bytes: as set, or by default 1/256 of the guest's RAM,
 * at most 64 MiB. The cache is memory the source touches for the first time
 * as it fills (from round 2): at QEMU's fixed 64 MiB it was 6% of a 1 GiB
 * guest's size in new RSS, and its first touches cost the source ~10 us a
 * page of CPU on a cold host (docs/compress.md, "In the engine"). */
uint64_t engine_xbzrle_cache_bytes(const struct migr_send_params *p, const struct migr_hv *hv)
{
    if (p->xbzrle_cache_mib != MIGR_XBZRLE_CACHE_AUTO)
        return (uint64_t)p->xbzrle_cache_mib << 20;
    uint64_t share = hv->ram_pages * MIGR_PAGE_SIZE / MIGR_XBZRLE_CACHE_AUTO_SHARE;
    return MIGR_MIN(share, MIGR_XBZRLE_CACHE_AUTO_MAX) & ~(uint64_t)(MIGR_PAGE_SIZE - 1);
}

static int parse_mode(const char *name)
{
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(cmode_names); i++)
        if (strcmp(name, cmode_names[i]) == 0)
            return (int)i;
    return -1;
}

int engine_encoder_create(struct sender *s)
{
    const struct migr_send_params *p = s->p;
    const char *name = p->compress ? p->compress : "auto";
    int mode = parse_mode(name);
    if (mode < 0)
        return migr_errorf(EINVAL, "compress '%s': expected none, zero, xbzrle, lz4, zlib, zstd or auto", name);
    /* Default: two encoders where there are two CPUs — measured here: lz4 and
     * zstd migrations 2-3x faster with 2 than with 1, raw/zero/auto within
     * the noise of a shared machine (docs/compress.md, "Parallel pipeline"). */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = p->compress_threads ? p->compress_threads : cpus >= 2 ? 2 : 1;
    if (n > ENGINE_MAX_THREADS)
        return migr_errorf(EINVAL, "compress threads %u: expected 1..%u", n, ENGINE_MAX_THREADS);
    struct encoder *e = aligned_alloc(64, MIGR_ALIGN_UP(sizeof(*e), 64)); /* struct worker is 64-aligned */
    if (!e)
        return -ENOMEM;
    memset(e, 0, sizeof(*e));
    s->enc = e;
    s->b.codec_round = true;
    e->mode = (enum cmode)mode;
    e->nthreads = n;
    for (unsigned w = 0; w < n; w++)
        e->w[w].id = (uint8_t)w;   /* its lane (ENGINE_MAX_THREADS = MIGR_LANES) */
    e->est.bw = p->link_mbps ? p->link_mbps * 1e-3 : 1.0; /* bytes per ns; 1.0 = 1 GB/s until measured */
    e->bw_fixed = p->link_mbps != 0;
    e->par = n;                   /* until measured: every worker on a core of its own */
    e->fds[0] = s->t->fd;
    e->nfds = 1;
    if (migr_transport_channel_fd(s->t, 0) >= 0) /* tcp ?channels=N: each channel's share of the link */
        for (e->nfds = 0; e->nfds < MIGR_MC_MAX_CHANNELS; e->nfds++)
            if ((e->fds[e->nfds] = migr_transport_channel_fd(s->t, e->nfds)) < 0)
                break;
    e->est.several = e->nfds > 1;
    migr_clear_error(); /* the probe's "no channel" is not an error */
    snprintf(s->st->compress, sizeof(s->st->compress), "%s", cmode_names[mode]);
    s->st->compress_threads = n;
    int err;
    if (p->compress_level) {
        /* this encoder's own level: other migrations in the process keep theirs */
        const char *lname = mode == C_LZ4 ? "lz4" : mode == C_ZLIB ? "zlib"
                         : mode == C_ZSTD || mode == C_AUTO ? "zstd" : NULL;
        if (!lname)
            return migr_errorf(EINVAL, "compress level %d: only lz4, zlib, zstd and auto (zstd) have levels",
                               p->compress_level);
        if ((err = migr_codec_check_level(lname, p->compress_level)) < 0)
            return err;
        e->level = p->compress_level;
        e->level_enc = migr_codec_by_name(lname)->enc;
    }
    if (e->mode >= C_XBZRLE &&
        (!(e->snap = aligned_alloc(64, ENGINE_BATCH_PAGES * MIGR_PAGE_SIZE)) ||
         !(e->out = aligned_alloc(64, ENGINE_BATCH_PAGES * MIGR_PAGE_SIZE))))
        return -ENOMEM;
    uint64_t cache = engine_xbzrle_cache_bytes(p, s->hv), shard = MIGR_MAX(cache / n, MIGR_PAGE_SIZE);
    if ((e->mode == C_XBZRLE || e->mode == C_AUTO) && cache) {
        for (unsigned w = 0; w < n; w++)
            if ((err = migr_pagecache_create(shard, MIGR_PAGECACHE_SETASSOC, &e->w[w].cache)) < 0)
                return migr_error_prefix(-err, "xbzrle cache of %llu KiB over %u threads",
                                         (unsigned long long)(cache >> 10), n);
        s->st->xbzrle_cache_bytes = shard * n;
    }
    if (e->mode == C_XBZRLE && !cache)
        return migr_errorf(EINVAL, "compress xbzrle needs an xbzrle cache (size 0 given)");
    if (n > 1 && (err = engine_pool_create(n, &e->pool)) < 0)
        return err;
    return 0;
}

void engine_encoder_destroy(struct sender *s)
{
    struct encoder *e = s->enc;
    if (!e)
        return;
    engine_pool_destroy(e->pool);
    for (unsigned w = 0; w < ENGINE_MAX_THREADS; w++) {
        migr_pagecache_destroy(e->w[w].cache);
        migr_lane_free(e->w[w].lane[0]);
        migr_lane_free(e->w[w].lane[1]);
    }
    free(e->snap);
    free(e->out);
    free(e);
    s->enc = NULL;
    s->b.codec_round = false;
}

/* The parallelism the encoders actually got: their thread CPU time over the
 * wall time of the encode phase. On free cores it is near nthreads; on a
 * busy host (other processes, the vCPUs, the receiver on the same machine)
 * it falls, and codec time costs the pipeline more than ns / nthreads.
 * Batches shorter than 200 us (mostly zero or raw pages) say little. */
static void update_par(struct encoder *e, uint64_t wall_ns)
{
    uint64_t cpu = 0;
    for (unsigned w = 0; w < e->nthreads; w++) {
        if (!e->w[w].cpu_ns)
            return;
        cpu += e->w[w].cpu_ns;
    }
    if (wall_ns < 200000)
        return;
    double sample = (double)cpu / (double)wall_ns;
    if (sample < 0.25)
        sample = 0.25;
    if (sample > e->nthreads)
        sample = e->nthreads;
    e->par += 0.2 * (sample - e->par);
}

/* The link estimate (auto's cost model, docs/compress.md "auto").
 *
 * A flush's bytes over its wall time is how fast the socket took the bytes:
 * the link's rate only when the send had to wait for it. With TCP's large
 * send buffers (4 MiB, autotuned) a 1 Gbit/s link takes every 1 MiB batch at
 * memory speed, and that estimate read 2.6-4.4 GB/s against a link of
 * 0.12 GB/s. TCP knows better: tcpi_delivery_rate is the rate the peer
 * acknowledged bytes at over the last round trip, and
 * tcpi_delivery_rate_app_limited says whether we (not the link) were the
 * limit. So on TCP: a link-limited delivery rate is a sample of the link; an
 * app-limited one is a lower bound (the link is at least that fast); and the
 * flush speed is used only until TCP has once said the link was the limit
 * (loopback, or a link faster than everything we can feed it, never says
 * so). Unix sockets and shm have no such report and keep the flush speed:
 * there the peer reading is the link, and a full socket buffer makes the
 * flush wait for it. */
/* tcpi_snd_ssthresh before the first loss (the kernel's TCP_INFINITE_SSTHRESH) */
#define TCP_SSTHRESH_UNSET 0x7fffffffu

/* Was the receiver's window the limit? TCP's chrono counters (microseconds,
 * advanced at the kernel's tick), summed over the stream's sockets: most of
 * their busy time since the last sample limited by the receive window. The
 * peer did not read as fast as the link delivered (bench/netns 1G-10ms:
 * delivery samples of 13-70 MB/s on a 116 MB/s link, each with the sender
 * rwnd-limited, while the destination decoded on the cores the source's
 * encoders shared; bench/peers over loopback with ?channels=4: an estimate of
 * 104 MB/s, and auto compressed 72,501 pages). A sample whose counters did
 * not move keeps the last verdict. */
static void recv_window_add(struct encoder *e, int i, const struct tcp_info *ti, socklen_t len, uint64_t *db,
                            uint64_t *dr)
{
    if (len < offsetof(struct tcp_info, tcpi_rwnd_limited) + sizeof(ti->tcpi_rwnd_limited))
        return; /* a kernel before 4.10 */
    if (ti->tcpi_busy_time >= e->busy_us[i] && ti->tcpi_rwnd_limited >= e->rwnd_us[i]) {
        *db += ti->tcpi_busy_time - e->busy_us[i];
        *dr += ti->tcpi_rwnd_limited - e->rwnd_us[i];
    }
    e->busy_us[i] = ti->tcpi_busy_time;
    e->rwnd_us[i] = ti->tcpi_rwnd_limited;
}

/* The link's delivery rate as TCP sees it (bytes per ns), 0 if there is no
 * sample; in smp also link_limited (a socket was limited by the link, not
 * by us), recv_limited, slow_start and cap. One socket: its
 * tcpi_delivery_rate. Several (?channels=N): each socket's sample is a
 * burst of its own, and bursts that did not overlap added up to 4x the
 * link (auto then sent raw what lz4 should have: 1G-10ms, 24,562 raw pages
 * against 6,407 with one stream); so the bytes all of them had
 * acknowledged, over at least 2 ms. */
#define ACKED_WINDOW_NS 2000000ull
static double delivery_rate(struct encoder *e, struct engine_link_sample *smp)
{
    double sum = 0, cap = 0;
    uint64_t acked = 0, busy = 0, rwnd = 0;
    bool backlogged = true;
    smp->link_limited = false;
    smp->cap = 0; /* also when TCP_INFO fails below */
    for (int i = 0; i < e->nfds && !e->no_tcp_info; i++) {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        memset(&ti, 0, sizeof(ti));
        if (getsockopt(e->fds[i], IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
            e->no_tcp_info = true; /* not TCP (unix, shm's epoll fd): flush speed only */
            return 0;
        }
        if (len < offsetof(struct tcp_info, tcpi_delivery_rate) + sizeof(ti.tcpi_delivery_rate)) {
            backlogged = false; /* a kernel before 4.9: no delivery rate, no cap */
            continue;
        }
        sum += (double)ti.tcpi_delivery_rate / 1e9;
        acked += ti.tcpi_bytes_acked;
        if (ti.tcpi_delivery_rate > 0 && !ti.tcpi_delivery_rate_app_limited)
            smp->link_limited = true;
        recv_window_add(e, i, &ti, len, &busy, &rwnd);
        if (e->nfds == 1)
            smp->slow_start = ti.tcpi_snd_ssthresh >= TCP_SSTHRESH_UNSET;
        if (ti.tcpi_notsent_bytes > 0 && ti.tcpi_rtt > 0 && ti.tcpi_snd_cwnd > 0) /* notsent: before delivery_rate */
            cap += (double)ti.tcpi_snd_cwnd * ti.tcpi_snd_mss / ((double)ti.tcpi_rtt * 1e3);
        else
            backlogged = false;
    }
    /* Bytes waiting in every socket that TCP has not sent: its congestion
     * window, not we, is the limit, and a window per round trip is what
     * leaves now — in slow start (a 10 ms link's first round trips: 10
     * segments per RTT, 1.2 MB/s) and after losses alike, where no delivery
     * sample has said so yet or the last one read the line rate between
     * losses. Not backlogged (we are the limit): no cap, the link may be
     * faster than the windows TCP kept. */
    smp->cap = backlogged ? cap : 0;
    if (busy > 0)
        e->rwnd_bound = 2 * rwnd >= busy;
    smp->recv_limited = e->rwnd_bound;
    if (e->nfds == 1 || e->no_tcp_info)
        return sum;
    uint64_t now = migr_now_ns(), dt = now - e->acked_t;
    double rate = e->acked_t && acked >= e->acked_sum && dt >= ACKED_WINDOW_NS
                      ? (double)(acked - e->acked_sum) / (double)dt : 0;
    if (!e->acked_t || dt >= ACKED_WINDOW_NS) {
        e->acked_t = now;
        e->acked_sum = acked;
    }
    return rate;
}

static void update_bw(struct encoder *e, uint64_t bytes, uint64_t ns)
{
    struct engine_link_sample smp = {.bytes = bytes, .ns = ns};
    smp.rate = delivery_rate(e, &smp);
    engine_link_est_update(&e->est, &smp);
}

/* Encode the queued batch, build the PAGES record in queue order, send it. */
static int encode_send(struct sender *s)
{
    struct encoder *e = s->enc;
    if (e->n == 0)
        return 0;
    uint64_t w0 = migr_now_ns();
    for (unsigned w = 0; w < e->nthreads; w++) {   /* each record starts its streams afresh */
        migr_lane_restart(e->w[w].lane[0]);
        migr_lane_restart(e->w[w].lane[1]);
    }
    /* the streams' levels, once per record (not per page): this encoder's
     * own for its codec, else the process's (migr_codec_set_level) */
    for (int k = 0; k < 2; k++) {
        const struct migr_lane_ops *so = k ? &migr_lane_zstd : &migr_lane_lz4;
        if (e->level && e->level_enc == so->page_enc)
            e->lane_level[k] = e->level;
        else
            (void)migr_codec_get_level(migr_codec_for_enc(so->page_enc)->name, &e->lane_level[k]);
    }
    if (e->pool)
        engine_pool_run(e->pool, encode_worker, e);
    else
        encode_worker(e, 0);
    update_par(e, migr_now_ns() - w0);
    struct migr_stats *st = s->st;
    for (unsigned w = 0; w < e->nthreads; w++) {
        struct worker *wk = &e->w[w];
        for (int k = 0; k < MIGR_STATS_ENCS; k++) {
            st->codec[k].pages += wk->cs[k].pages;
            st->codec[k].bytes_out += wk->cs[k].bytes_out;
            st->codec[k].cpu_ns += wk->cs[k].cpu_ns;
        }
        memset(wk->cs, 0, sizeof(wk->cs));
        st->unchanged_pages += wk->unchanged;
        st->probes += wk->probes;
        st->stream_pages += wk->stream_pages;
        wk->unchanged = wk->probes = wk->stream_pages = 0;
    }
    for (uint32_t i = 0; i < e->n; i++) {
        const struct enc_page *pg = &e->pg[i];
        if (pg->kind == P_SKIP)
            continue;
        st->pages++;
        if (pg->kind == P_ZERO) {
            st->zero_pages++;
            engine_batch_put(&s->b, &(struct migr_page_entry){.pfn = pg->pfn, .enc = MIGR_ENC_ZERO, .len = 1}, NULL);
            continue;
        }
        const void *data = pg->kind == P_RAW_LIVE ? pg->live
                         : pg->enc == MIGR_ENC_RAW ? e->snap + (size_t)i * MIGR_PAGE_SIZE
                         : e->out + (size_t)i * MIGR_PAGE_SIZE;
        uint8_t enc = pg->kind == P_RAW_LIVE ? MIGR_ENC_RAW : pg->enc;
        uint32_t len = pg->kind == P_RAW_LIVE ? MIGR_PAGE_SIZE : pg->len;
        if (enc == MIGR_ENC_RAW)
            st->raw_pages++;
        engine_batch_put(&s->b, &(struct migr_page_entry){.pfn = pg->pfn, .enc = enc, .len = len, .crc = pg->crc,
                                                          .lane = migr_enc_is_stream(enc) ? pg->lane : 0},
                         data);
    }
    e->n = 0;
    uint64_t b0 = s->t->bytes_sent, t0 = migr_now_ns();
    int err = engine_batch_flush(&s->b);
    uint64_t ns = migr_now_ns() - t0, bytes = s->t->bytes_sent - b0;
    if (err == 0 && !e->bw_fixed)
        update_bw(e, bytes, ns);
    /* A rate limit on the transport is the link as far as we are concerned:
     * its burst lets single flushes look faster than it. */
    uint64_t limit = __atomic_load_n(&s->t->rate_bps, __ATOMIC_RELAXED);
    if (!e->bw_fixed && limit && e->est.bw > (double)limit / 1e9)
        e->est.bw = (double)limit / 1e9;
    st->link_mbps = engine_link_est_rate(&e->est) * 1e3;
    return err;
}

int engine_encode_page(struct sender *s, const uint8_t *page, uint64_t pfn)
{
    struct encoder *e = s->enc;
    if (e->n && e->round != s->b.round) {
        int err = encode_send(s);
        if (err < 0)
            return err;
    }
    if (e->round != s->b.round) {
        e->round = s->b.round;
        e->cache_on = s->b.round >= 2;
        e->final = s->hv->paused;
        for (unsigned w = 0; w < e->nthreads; w++)
            if (e->w[w].cache)
                migr_pagecache_next_round(e->w[w].cache);
    }
    e->pg[e->n++] = (struct enc_page){.live = page, .pfn = pfn};
    if (e->n < ENGINE_BATCH_PAGES)
        return 0;
    int err = encode_send(s);
    return err < 0 ? err : 1;
}

int engine_encode_flush(struct sender *s)
{
    int err = encode_send(s);
    if (err == 0 && s->enc) {
        struct migr_stats *st = s->st;
        for (unsigned w = 0; w < s->enc->nthreads; w++) {
            struct migr_pagecache_stats cs;
            if (!s->enc->w[w].cache)
                continue;
            migr_pagecache_get_stats(s->enc->w[w].cache, &cs);
            if (w == 0)
                st->cache_lookups = st->cache_hits = 0;
            st->cache_lookups += cs.lookups;
            st->cache_hits += cs.hits;
        }
    }
    return err;
}
