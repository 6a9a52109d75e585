/* bench_compress: per-page codecs on one core, against this machine's memory
 * read bandwidth measured in the same run.
 *
 * Corpora (pools of pages far larger than the caches, filled as the guest
 * workload fills them, hv-glue/workload/workload.h wl_fill_page):
 *   zero       zero pages (XBZRLE: old page zero too)
 *   text       text pages; XBZRLE old page = the page's previous generation
 *   random     random pages; XBZRLE old page = previous generation
 *   delta8/64/512  text page and a copy with 8, 64, 512 random bytes changed
 * Codecs: XBZRLE with each encoder (baseline = word-at-a-time in QEMU's
 * style, scalar, avx2, avx512; dlen 4096 as QEMU), lz4, zstd, zlib (level 1,
 * through the codec interface: output under a page or declined).
 *
 * Per codec and corpus: encode and decode GB/s (page bytes per second, one
 * thread pinned to one CPU), ratio (page bytes / bytes sent, a declined page
 * counted as sent raw), share declined, speed-up over the baseline encoder,
 * and encode speed as % of the memory-read limit (XBZRLE reads two pages per
 * page: limit = read bandwidth / 2). The limit is measured in the same run:
 * both pools read page by page with the fastest loads this CPU has. Timed
 * runs go round-robin over the codecs and the limit read, so a busy machine
 * slows all alike; speeds are medians of --runs runs, speed-ups and % of
 * limit medians of per-run ratios. Slow codecs (CPU-bound) run over as many
 * pages as take 0.25 s. Decoded pages are compared with the originals after
 * the timed runs, so a fast but wrong codec fails the benchmark.
 *
 * Output: a table on stdout, JSON (default bench/results/compress.json).
 * Exit: 0 ok, 1 a codec produced wrong output, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <immintrin.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "hv-glue/workload/workload.h"
#include "migr/codec.h"
#include "migr/common.h"
#include "migr/xbzrle.h"

#define PS MIGR_PAGE_SIZE
#define MAX_RUNS 21
#define SLOW_RUN_S 0.25   /* a slow codec runs over as many pages as take this long */

struct opts {
    uint64_t pool_mib;
    int runs;
    const char *json;
    const char *only;   /* measure only codecs whose name contains this */
};

struct row {
    const char *corpus, *codec;
    int level;                  /* -999: none */
    uint64_t pages;             /* pages per timed run */
    double enc_gbps, dec_gbps;  /* median */
    double ratio;               /* < 0: nothing sent at all (all unchanged) */
    double declined;            /* share of pages */
    double vs_baseline;         /* XBZRLE encoders: encode speed / baseline's; else 0 */
    double pct_limit;           /* encode speed as % of the memory-read limit */
};

static struct row rows[128];
static int nrows;
static double mem_read_gbps;
static const char *mem_read_how;

static uint8_t *pool_a, *pool_b, *pool_o;  /* old, new, encoded (one page slot each) */
static int32_t *lens;                      /* encoded length per page; -1 declined */
static uint64_t npages;

/* ---------- helpers ---------- */

static double now_s(void)
{
    return (double)migr_now_ns() / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *map(uint64_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "bench_compress: cannot map %llu MiB\n", (unsigned long long)(bytes >> 20));
        exit(1);
    }
    return p;
}

/* Read both pools the way an XBZRLE encoder does, a page of each in turn
 * (two streams at once get more out of the memory system than one), with
 * independent accumulators, so that the memory system and not the
 * instructions is the limit: scalar, AVX2 and AVX-512 loads; the limit is
 * the fastest of them. */
static uint64_t read_pair_scalar(const uint8_t *a, const uint8_t *b, uint64_t bytes)
{
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (uint64_t pg = 0; pg < bytes; pg += PS) {
        const uint64_t *x = (const uint64_t *)(a + pg), *y = (const uint64_t *)(b + pg);
        for (unsigned i = 0; i < PS / 8; i += 4) {
            a0 += x[i], a1 += x[i + 1], a2 += x[i + 2], a3 += x[i + 3];
            a4 += y[i], a5 += y[i + 1], a6 += y[i + 2], a7 += y[i + 3];
        }
    }
    return a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7;
}

__attribute__((target("avx2"))) static uint64_t read_pair_avx2(const uint8_t *a, const uint8_t *b,
                                                               uint64_t bytes)
{
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (uint64_t pg = 0; pg < bytes; pg += PS) {
        for (unsigned i = 0; i < PS; i += 64) {
            s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i *)(a + pg + i)));
            s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i *)(a + pg + i + 32)));
            s2 = _mm256_add_epi64(s2, _mm256_load_si256((const __m256i *)(b + pg + i)));
            s3 = _mm256_add_epi64(s3, _mm256_load_si256((const __m256i *)(b + pg + i + 32)));
        }
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    return (uint64_t)_mm256_extract_epi64(s0, 0) ^ (uint64_t)_mm256_extract_epi64(s0, 3);
}

__attribute__((target("avx512f"))) static uint64_t read_pair_avx512(const uint8_t *a,
                                                                    const uint8_t *b,
                                                                    uint64_t bytes)
{
    __m512i s0 = _mm512_setzero_si512(), s1 = s0;
    for (uint64_t pg = 0; pg < bytes; pg += PS) {
        for (unsigned i = 0; i < PS; i += 64) {
            s0 = _mm512_add_epi64(s0, _mm512_load_si512(a + pg + i));
            s1 = _mm512_add_epi64(s1, _mm512_load_si512(b + pg + i));
        }
    }
    /* not _mm512_reduce_add_epi64: its signed adds overflow (UBSan) on these sums */
    uint64_t v[8];
    _mm512_storeu_si512(v, _mm512_add_epi64(s0, s1));
    return v[0] ^ v[7];
}

typedef uint64_t (*read_fn)(const uint8_t *, const uint8_t *, uint64_t);
static read_fn read_best;

/* The fastest way to read here: each kind once over both pools. */
static void choose_read(void)
{
    static const char *const names[] = {"scalar", "avx2", "avx512"};
    read_fn fns[3] = {read_pair_scalar, __builtin_cpu_supports("avx2") ? read_pair_avx2 : NULL,
                      __builtin_cpu_supports("avx512f") ? read_pair_avx512 : NULL};
    volatile uint64_t sink = 0;
    double best = 1e30;
    for (int k = 0; k < 3; k++) {
        if (!fns[k])
            continue;
        double t = now_s();
        sink += fns[k](pool_a, pool_b, npages * PS);
        t = now_s() - t;
        if (t < best) {
            best = t;
            read_best = fns[k];
            mem_read_how = names[k];
        }
    }
    (void)sink;
}

/* One timed read of both pools' first n pages: bytes read per second. */
static double read_pass(uint64_t n)
{
    volatile uint64_t sink;
    double t = now_s();
    sink = read_best(pool_a, pool_b, n * PS);
    (void)sink;
    return 2.0 * (double)(n * PS) / (now_s() - t) / 1e9;
}

/* ---------- corpora ---------- */

enum corpus { C_ZERO, C_TEXT, C_RANDOM, C_D8, C_D64, C_D512, NCORPUS };
static const char *const corpus_names[NCORPUS] = {"zero", "text", "random",
                                                  "delta8", "delta64", "delta512"};

static void make_corpus(enum corpus c)
{
    unsigned long long s = 0x9e3779b97f4a7c15ull + (unsigned)c;
    for (uint64_t i = 0; i < npages; i++) {
        uint8_t *a = pool_a + i * PS, *b = pool_b + i * PS;
        switch (c) {
        case C_ZERO:
            memset(a, 0, PS);
            memset(b, 0, PS);
            break;
        case C_TEXT:
        case C_RANDOM:
            wl_fill_page(a, i, 1, c == C_TEXT ? 1 : 2, 42);
            wl_fill_page(b, i, 2, c == C_TEXT ? 1 : 2, 42);
            break;
        default: {
            int n = c == C_D8 ? 8 : c == C_D64 ? 64 : 512;
            wl_fill_page(a, i, 1, 1, 42);
            memcpy(b, a, PS);
            for (int k = 0; k < n;) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                unsigned at = (unsigned)(s >> 16) % PS;
                if (b[at] != a[at])
                    continue;   /* n distinct bytes */
                b[at] = (uint8_t)(a[at] ^ (1 + (s & 0xff) % 255));
                k++;
            }
        }
        }
    }
}

/* ---------- codecs ---------- */

struct codec {
    const char *name;
    int xb_impl;                           /* XBZRLE encoder, or -1 */
    const struct migr_codec_ops *ops;      /* library codec, or NULL */
    int level;
};

/* Encode pages [0, n) once; returns seconds. */
static double encode_pass(const struct codec *c, uint64_t n)
{
    double t = now_s();
    if (c->xb_impl >= 0) {
        migr_xbzrle_encode_fn fn = migr_xbzrle_encoder(c->xb_impl);
        for (uint64_t i = 0; i < n; i++)
            lens[i] = fn(pool_a + i * PS, pool_b + i * PS, PS, pool_o + i * PS, PS);
    } else {
        for (uint64_t i = 0; i < n; i++) {
            size_t len;
            int r = c->ops->encode(pool_b + i * PS, NULL, pool_o + i * PS, PS, &len);
            lens[i] = r == 0 ? (int32_t)len : -1;
        }
    }
    return now_s() - t;
}

/* Decode pages [0, n) into pool_a (XBZRLE: in place over the old page; a
 * second pass gives the same result, so runs can repeat). Declined pages
 * are skipped; returns seconds and the page bytes decoded. */
static double decode_pass(const struct codec *c, uint64_t n, uint64_t *bytes)
{
    uint64_t done = 0;
    double t = now_s();
    for (uint64_t i = 0; i < n; i++) {
        if (lens[i] <= 0)
            continue;   /* declined, or unchanged (XBZRLE): nothing to decode */
        if (c->xb_impl >= 0) {
            if (migr_xbzrle_decode(pool_o + i * PS, lens[i], pool_a + i * PS, PS) < 0)
                return -1;
        } else if (c->ops->decode(pool_o + i * PS, (size_t)lens[i], pool_a + i * PS)) {
            return -1;
        }
        done++;
    }
    *bytes = done * PS;
    return now_s() - t;
}

static void print_row(const struct row *r);

/* Pages per timed run: all, or for a slow codec as many as take SLOW_RUN_S
 * (slow codecs are CPU-bound: whether the pages are cached matters little). */
static uint64_t pages_for(const struct codec *c)
{
    uint64_t probe = MIGR_MIN(npages, (uint64_t)256);
    double est = encode_pass(c, probe) / (double)probe * (double)npages;
    if (est <= SLOW_RUN_S)
        return npages;
    return MIGR_MAX((uint64_t)(SLOW_RUN_S / est * (double)npages), MIGR_MIN(npages, (uint64_t)1024));
}

static void set_level(const struct codec *c)
{
    if (c->ops && c->level != -999 && migr_codec_set_level(c->ops->name, c->level)) {
        fprintf(stderr, "bench_compress: %s\n", migr_last_error());
        exit(1);
    }
}

/* Decode timing and check for one codec (after an untimed encode pass).
 * XBZRLE decodes over the old pages (a repeat gives the same pages, so runs
 * can repeat); the others into pool_a. Then every decoded page must equal
 * the original. Restores pool_a for XBZRLE. */
static bool measure_decode(const struct codec *c, enum corpus corp, uint64_t n, int runs,
                           double *gbps)
{
    double dv[MAX_RUNS];
    int dn = 0;
    bool ok = true;
    set_level(c);
    encode_pass(c, n);
    for (int k = 0; k < runs; k++) {
        uint64_t bytes;
        double t = decode_pass(c, n, &bytes);
        if (t < 0) {
            ok = false;
            break;
        }
        if (bytes)
            dv[dn++] = (double)bytes / t / 1e9;
    }
    *gbps = dn ? median(dv, dn) : 0;
    for (uint64_t i = 0; ok && i < n; i++)
        if (lens[i] >= 0 && memcmp(pool_a + i * PS, pool_b + i * PS, PS))
            ok = false;
    if (!ok)
        fprintf(stderr, "bench_compress: %s on %s: decoded pages differ from the originals\n",
                c->name, corpus_names[corp]);
    make_corpus(corp);   /* pool_a was overwritten */
    return ok;
}

/* All codecs on one corpus. The timed runs go round-robin over the codecs
 * and a read of the same pages (the limit), so a busy machine slows all of
 * them alike; speed-ups and % of limit are medians of per-run ratios. */
static bool run_corpus(enum corpus corp, const struct codec *cs, int nc, const struct opts *o,
                       double *lim_all, int *nlim)
{
    uint64_t n[16];
    double ev[16][MAX_RUNS], lim[MAX_RUNS];
    int base = -1;
    make_corpus(corp);
    for (int k = 0; k < nc; k++) {
        set_level(&cs[k]);
        n[k] = pages_for(&cs[k]);
        if (cs[k].xb_impl == MIGR_XBZRLE_BASELINE)
            base = k;
    }
    for (int r = 0; r < o->runs; r++) {
        lim[r] = read_pass(npages);
        lim_all[(*nlim)++] = lim[r];
        for (int k = 0; k < nc; k++) {
            set_level(&cs[k]);
            ev[k][r] = (double)(n[k] * PS) / encode_pass(&cs[k], n[k]) / 1e9;
        }
    }
    bool ok = true;
    double xb_dec = -1;
    for (int k = 0; k < nc; k++) {
        const struct codec *c = &cs[k];
        struct row *w = &rows[nrows++];
        *w = (struct row){.corpus = corpus_names[corp], .codec = c->name, .level = c->level,
                          .pages = n[k]};
        double v[MAX_RUNS];
        memcpy(v, ev[k], sizeof(double) * (size_t)o->runs);
        w->enc_gbps = median(v, o->runs);
        if (c->xb_impl >= 0 && base >= 0 && k != base) {
            for (int r = 0; r < o->runs; r++)
                v[r] = ev[k][r] / ev[base][r];
            w->vs_baseline = median(v, o->runs);
        }
        for (int r = 0; r < o->runs; r++)
            v[r] = 100.0 * ev[k][r] / (c->xb_impl >= 0 ? lim[r] / 2 : lim[r]);
        w->pct_limit = median(v, o->runs);
        /* ratio from this codec's own output */
        set_level(c);
        encode_pass(c, n[k]);
        uint64_t sent = 0, declined = 0;
        for (uint64_t i = 0; i < n[k]; i++) {
            sent += lens[i] < 0 ? PS : (uint64_t)lens[i];
            declined += lens[i] < 0;
        }
        w->ratio = sent ? (double)(n[k] * PS) / (double)sent : -1;
        w->declined = (double)declined / (double)n[k];
        /* decode: the same XBZRLE decoder for every encoder, so once; but
         * every encoder's output is checked by decoding it */
        if (c->xb_impl < 0 || xb_dec < 0) {
            ok &= measure_decode(c, corp, n[k], o->runs, &w->dec_gbps);
            if (c->xb_impl >= 0)
                xb_dec = w->dec_gbps;
        } else {
            double unused;
            ok &= measure_decode(c, corp, n[k], 1, &unused);
            w->dec_gbps = xb_dec;
        }
        print_row(w);
        fflush(stdout);
    }
    return ok;
}

/* ---------- output ---------- */

static void print_row(const struct row *r)
{
    char ratio[16], dec[16], vs[16];
    if (r->ratio < 0)
        snprintf(ratio, sizeof(ratio), "all same");
    else
        snprintf(ratio, sizeof(ratio), "%.2f", r->ratio);
    if (r->dec_gbps > 0)
        snprintf(dec, sizeof(dec), "%.2f", r->dec_gbps);
    else
        snprintf(dec, sizeof(dec), "-");
    if (r->vs_baseline > 0)
        snprintf(vs, sizeof(vs), "%.2fx", r->vs_baseline);
    else
        snprintf(vs, sizeof(vs), "-");
    printf("%-9s %-16s %9.2f %9s %9s %7.1f%% %8s %8.0f%%\n", r->corpus, r->codec, r->enc_gbps,
           dec, ratio, 100 * r->declined, vs, r->pct_limit);
}

static void write_json(const struct opts *o, const char *impl)
{
    FILE *f = fopen(o->json, "w");
    if (!f) {
        fprintf(stderr, "bench_compress: cannot write %s: %s\n", o->json, strerror(errno));
        return;
    }
    struct utsname u;
    uname(&u);
    char cpu[128] = "?";
    FILE *ci = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (ci && fgets(line, sizeof(line), ci)) {
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(cpu, sizeof(cpu), "%s", strchr(line, ':') + 2);
            cpu[strcspn(cpu, "\n\"\\")] = 0;
            break;
        }
    }
    if (ci)
        fclose(ci);
    fprintf(f, "{\n  \"benchmark\": \"compress\",\n");
    fprintf(f, "  \"machine\": {\"cpu\": \"%s\", \"cpus\": %ld, \"kernel\": \"%s\"},\n", cpu,
            sysconf(_SC_NPROCESSORS_ONLN), u.release);
    fprintf(f, "  \"runs\": %d, \"pool_mib\": %llu, \"threads\": 1,\n", o->runs,
            (unsigned long long)o->pool_mib);
    fprintf(f, "  \"mem_read_loads\": \"%s\",\n", mem_read_how);
    fprintf(f, "  \"mem_read_gbps\": %.3f,\n  \"xbzrle_default_impl\": \"%s\",\n", mem_read_gbps,
            impl);
    fprintf(f, "  \"rows\": [\n");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        fprintf(f, "    {\"corpus\": \"%s\", \"codec\": \"%s\", ", r->corpus, r->codec);
        if (r->level != -999)
            fprintf(f, "\"level\": %d, ", r->level);
        fprintf(f, "\"pages\": %llu, \"enc_gbps\": %.3f, ", (unsigned long long)r->pages,
                r->enc_gbps);
        if (r->dec_gbps > 0)
            fprintf(f, "\"dec_gbps\": %.3f, ", r->dec_gbps);
        else
            fprintf(f, "\"dec_gbps\": null, ");   /* nothing to decode */
        if (r->ratio < 0)
            fprintf(f, "\"ratio\": null, ");
        else
            fprintf(f, "\"ratio\": %.4f, ", r->ratio);
        fprintf(f, "\"declined\": %.4f, ", r->declined);
        if (r->vs_baseline > 0)
            fprintf(f, "\"vs_baseline\": %.3f, ", r->vs_baseline);
        fprintf(f, "\"pct_of_mem_read_limit\": %.1f}%s\n", r->pct_limit, i + 1 < nrows ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_compress [options]\n"
            "  --pool MIB   pages per corpus, in MiB (default 384: old + new = 768 MiB,\n"
            "               past the caches)\n"
            "  --runs N     timed runs per figure, median reported (default 5, max %d)\n"
            "  --quick      --pool 4 --runs 1: a smoke run of seconds (explicit options still win)\n"
            "  --json PATH  JSON output (default bench/results/compress.json)\n"
            "  --only TEXT  only codecs whose name contains TEXT (e.g. xbzrle)\n"
            "  -h, --help   this text\n"
            "Exit: 0 ok, 1 a codec decoded wrongly, 2 usage.\n",
            MAX_RUNS);
}

int main(int argc, char **argv)
{
    struct opts o = {.pool_mib = 0, .runs = 0, .json = "bench/results/compress.json"};
    bool quick = false;
    static const struct option lo[] = {
        {"pool", required_argument, NULL, 'p'}, {"runs", required_argument, NULL, 'r'},
        {"quick", no_argument, NULL, 'q'},      {"json", required_argument, NULL, 'j'},
        {"only", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'p': o.pool_mib = strtoull(optarg, NULL, 0); break;
        case 'r': o.runs = atoi(optarg); break;
        case 'q': quick = true; break;
        case 'j': o.json = optarg; break;
        case 'o': o.only = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!o.pool_mib)
        o.pool_mib = quick ? 4 : 384;
    if (!o.runs)
        o.runs = quick ? 1 : 5;
    if (o.runs < 1 || o.runs > MAX_RUNS || o.pool_mib < 4) {
        usage(stderr);
        return 2;
    }

    cpu_set_t set;   /* one core: figures are per core */
    CPU_ZERO(&set);
    CPU_SET(sched_getcpu() >= 0 ? sched_getcpu() : 0, &set);
    sched_setaffinity(0, sizeof(set), &set);

    npages = o.pool_mib * (1 << 20) / PS;
    pool_a = map(npages * PS);
    pool_b = map(npages * PS);
    pool_o = map(npages * PS);
    lens = calloc(npages, sizeof(*lens));
    if (!lens)
        return 1;
    make_corpus(C_TEXT);
    memset(pool_o, 0, npages * PS);   /* fault everything in before timing */
    choose_read();

    struct codec codecs[16];
    int nc = 0;
    for (int k = 0; k < MIGR_XBZRLE_NIMPL; k++) {
        if (!migr_xbzrle_encoder(k)) {
            printf("note: CPU lacks %s: xbzrle-%s not measured\n", migr_xbzrle_impl_name(k),
                   migr_xbzrle_impl_name(k));
            continue;
        }
        static char names[MIGR_XBZRLE_NIMPL][32];
        snprintf(names[k], sizeof(names[k]), "xbzrle-%s", migr_xbzrle_impl_name(k));
        codecs[nc++] = (struct codec){names[k], k, NULL, -999};
    }
    codecs[nc++] = (struct codec){"lz4-1", -1, &migr_codec_lz4, 1};
    codecs[nc++] = (struct codec){"zstd-1", -1, &migr_codec_zstd, 1};
    codecs[nc++] = (struct codec){"zstd-3", -1, &migr_codec_zstd, 3};
    codecs[nc++] = (struct codec){"zlib-1", -1, &migr_codec_zlib, 1};

    printf("bench_compress: 1 thread, %llu MiB per pool (%llu pages), median of %d runs\n",
           (unsigned long long)o.pool_mib, (unsigned long long)npages, o.runs);
    printf("xbzrle default encoder here: %s\n\n",
           migr_xbzrle_impl_name(migr_xbzrle_active_impl()));
    printf("%-9s %-16s %9s %9s %9s %8s %8s %9s\n", "corpus", "codec", "enc GB/s", "dec GB/s",
           "ratio", "declined", "vs base", "% limit");
    bool ok = true;
    double lim_all[NCORPUS * MAX_RUNS];
    int nlim = 0;
    for (int corp = 0; corp < NCORPUS; corp++) {
        struct codec cs[16];
        int n = 0;
        for (int k = 0; k < nc; k++)
            if (!o.only || strstr(codecs[k].name, o.only))
                cs[n++] = codecs[k];
        ok &= run_corpus(corp, cs, n, &o, lim_all, &nlim);
    }
    mem_read_gbps = median(lim_all, nlim);
    printf("\nmemory read bandwidth (1 thread, both pools page by page, %s loads, measured "
           "between the codecs' runs): median %.2f GB/s; XBZRLE limit (2 pages read per page) "
           "%.2f GB/s\n", mem_read_how, mem_read_gbps, mem_read_gbps / 2);
    printf("enc/dec GB/s: page bytes per second on one core; ratio: page bytes / bytes sent\n"
           "(declined pages sent raw); vs base: encode speed over xbzrle-baseline (QEMU-style);\n"
           "%% limit: encode speed as %% of the memory-read limit (xbzrle: half the read "
           "bandwidth),\nboth medians of per-run ratios (each run reads the pages once as well).\n"
           "XBZRLE decode is one decoder, timed once per corpus (every encoder's output is "
           "decoded and checked).\n");
    write_json(&o, migr_xbzrle_impl_name(migr_xbzrle_active_impl()));
    printf("results: %s\n", o.json);
    return ok ? 0 : 1;
}
