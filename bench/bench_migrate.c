/* bench_migrate: live-migrate a running KVM guest between two processes and
 * compare the transfer rate with this machine's limits, measured in the same
 * run (single-thread memcpy, CRC32C, a raw unix / TCP-loopback stream).
 *
 * Per configuration (workload x transport), per repetition:
 *   fork a receiver (listen -> migr_recv -> sample guest progress -> quiesce
 *   -> migr_workload_verify -> result to the parent through a pipe -> destroy);
 *   the parent creates the guest, lets it run ~0.5 s, connects and calls
 *   migr_send with default parameters. A repetition counts only if the
 *   destination's verify passed; a configuration with any failed repetition
 *   is reported FAIL. Figures are medians over the repetitions.
 *
 * A third dimension is the page codec (--compress LIST, default "auto", the
 * engine's default): bench_migrate --only dirty256M/unix --compress
 * none,zero,auto,xbzrle,lz4,zstd compares the bytes on the wire and the time
 * of each (docs/compress.md).
 *
 * Output: a table on stdout, JSON (default bench/results/migrate.json).
 * Exit: 0 all verified, 1 a configuration failed, 2 usage, 77 no /dev/kvm.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/engine.h"
#include "migr/format.h"
#include "migr/hv.h"
#include "migr/transport.h"
#include "migr/workload.h"

#define BENCH_NAME "bench_migrate" /* prefix of benchlib.h messages */
#include "benchlib.h"

#define MiB (1ull << 20)
#define WARMUP_MS 500               /* guest runs this long before migration */
#define AFTER_MS 500                /* destination progress is sampled this long */
#define ACCEPT_TIMEOUT_MS 60000
#define RESULT_TIMEOUT_MS 300000    /* one migration + verify, far above normal */

/* "idle" still needs a non-zero rate: rate=0 means unthrottled. rate=4K is
 * one page write per second, so the image is the same 1 GiB of text pages as
 * in the dirtying rows and only the dirty rate differs. (A tiny ws would
 * leave the rest of RAM zero and measure zero-page detection instead.) */
static const struct {
    const char *name, *spec;
} workloads[] = {
    {"idle", "rate=4K,pattern=random,data=text"},
    {"dirty64M", "rate=64M,pattern=random,data=text"},
    {"dirty256M", "rate=256M,pattern=random,data=text"},
    /* Sparse guests, like a guest that has not touched most of its RAM:
     * the rest of RAM was never written (memfd holes). "sparse" is idle;
     * ws64M/ws256M rewrite 24,576 pages/s (96 MiB/s) of their working set. */
    {"sparse", "rate=4K,ws=16M,pattern=random,data=text"},
    {"ws64M", "rate=96M,ws=64M,pattern=random,data=text"},
    {"ws256M", "rate=96M,ws=256M,pattern=random,data=text"},
};
static const struct {
    const char *name, *listen;
} transports[] = {
    {"unix", "unix:@migr-bench-%d-%d"},   /* abstract: leaves no file behind */
    {"tcp", "tcp:127.0.0.1:0"},
};
#define NC_MAX 8                    /* --compress values */
#define NW (int)MIGR_ARRAY_SIZE(workloads)
#define NT (int)MIGR_ARRAY_SIZE(transports)

struct opts {
    uint64_t mem;
    int reps;
    bool quick;
    const char *json;
    const char *only;             /* run only configurations whose name contains this */
    const char *compress[NC_MAX]; /* --compress values (rows per value) */
    int ncompress;
    uint32_t threads;             /* --compress-threads */
    uint32_t link_mbps;           /* --link-mbps: the auto policy assumes this link rate */
    uint32_t max_mbps;            /* --max-bandwidth: the engine's rate limit, MB/s (0 = none) */
};

struct machine {
    uint64_t buf_bytes, stream_bytes;
    int runs;
    double memcpy_mbps, crc_mbps, populate_mbps, unix_mbps, tcp_mbps;
    double fresh_mbps;            /* raw unix stream into fresh memfd RAM: the first pass's limit */
    double others_limits, others_run;   /* CPUs used by other processes */
};

/* What the receiver child sends back through the pipe (same binary on both
 * ends, so a plain struct). */
struct rx_result {
    int rc;                       /* 0, or -errno of the first failure */
    char error[600];
    struct migr_stats st;
    struct migr_verify_report rep;
    bool verified;                /* verify ran and rep.ok */
    double wps_after;             /* guest page writes/s right after resume */
    uint64_t verify_ns;
    uint64_t dst_memfd;           /* bytes the destination's guest memfd holds after migr_recv */
};

struct rep_result {
    bool ok;
    char why[700];
    int send_rc;
    struct migr_stats st;
    struct rx_result rx;
    double wps_before, wps_during;
    double others;                /* CPUs used by other processes during migr_send */
    int queued;                   /* bytes still in the socket at the last live round's end */
    uint64_t src_shmem0, src_shmem1; /* this (source VMM) process's RssShmem before / after migr_send */
    uint64_t src_memfd0, src_memfd1; /* bytes the source's guest memfd holds before / after */
    double fresh_mbps;            /* the fresh-memory stream limit, measured just before this repetition */
};

/* ---------- small helpers ---------- */

/* ---------- the machine's limits ---------- */

/* CRC32C over len bytes: both ends of a migration checksum every page. */
static double measure_crc(uint64_t len, int runs)
{
    uint8_t *a = map_buf(len);
    double v[16];
    volatile uint32_t sink = 0;
    if (!a)
        return 0;
    for (int i = 0; i < runs; i++) {
        uint64_t t0 = migr_now_ns();
        sink ^= migr_crc32c(0, a, len);
        v[i] = mbps(len, migr_now_ns() - t0);
    }
    (void)sink;
    munmap(a, len);
    return median(v, runs);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Allocating fresh guest RAM the way a destination does (memfd, shared
 * mapping, MADV_POPULATE_WRITE): the kernel zeroes every page, and on a
 * nested hypervisor the first touch of host memory may cost more. */
static double measure_populate(uint64_t len, int runs)
{
    double v[16];
    int n = 0;
    for (int i = 0; i < runs; i++) {
        int fd = memfd_create("bench-populate", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)len) < 0) {
            if (fd >= 0)
                close(fd);
            break;
        }
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            uint64_t t0 = migr_now_ns();
            if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
                v[n++] = mbps(len, migr_now_ns() - t0);
            munmap(p, len);
        }
        close(fd);
    }
    return median(v, n);
}

static double measure_stream(const char *url, uint64_t total, uint64_t buf_len, int runs)
{
    double v[16];
    for (int i = 0; i < runs; i++)
        v[i] = measure_stream_once(url, total, buf_len);
    return median(v, runs);
}

/* ---------- one migration ---------- */

static void rx_fail(struct rx_result *r, int rc, const char *what)
{
    if (r->rc == 0) {
        r->rc = rc < 0 ? rc : -EIO;
        snprintf(r->error, sizeof(r->error), "%s: %s", what,
                 migr_last_error()[0] ? migr_last_error() : strerror(-r->rc));
    }
}

/* The receiver child: never returns. Writes the bound URL (char[300]) and
 * then one struct rx_result to wfd. */
static void receiver(const char *listen_url, int wfd)
{
    static struct rx_result r;
    char bound[300] = "";
    struct migr_listener *l = NULL;
    struct migr_transport *t = NULL;
    struct migr_hv *hv = NULL;
    int rc;

    memset(&r, 0, sizeof(r));
    if ((rc = migr_listener_open(listen_url, &l)) < 0)
        rx_fail(&r, rc, "listen");
    else
        snprintf(bound, sizeof(bound), "%s", l->bound);
    if (migr_write_full(wfd, bound, sizeof(bound)) < 0)
        _exit(1);
    if (r.rc == 0 && (rc = migr_listener_accept(l, ACCEPT_TIMEOUT_MS, &t)) < 0)
        rx_fail(&r, rc, "accept");
    /* the destination's decoders: MIGR_RECV_THREADS (this benchmark's knob) */
    const char *dv = getenv("MIGR_RECV_THREADS");
    migr_stats_init(&r.st);
    struct migr_recv_params rp = {.size = sizeof(rp), .decode_threads = dv ? (uint32_t)strtoul(dv, NULL, 10) : 0};
    if (r.rc == 0 && (rc = migr_recv_ex(t, &rp, &hv, &r.st)) < 0)
        rx_fail(&r, rc, "migr_recv");
    if (r.rc == 0) {
        r.dst_memfd = memfd_bytes(hv->regions[0].memfd);
        /* Guest progress right after the switchover: every page it touches
         * first costs an EPT fault on the new VMM. */
        uint64_t w0 = migr_workload_progress(hv);
        double t0 = now_s();
        sleep_ms(AFTER_MS);
        r.wps_after = (double)(migr_workload_progress(hv) - w0) / (now_s() - t0);
        uint64_t v0 = migr_now_ns();
        if (hv->ops->failed(hv))
            rx_fail(&r, -EFAULT, hv->failure);
        else if ((rc = hv->ops->quiesce(hv, 10000)) < 0)
            rx_fail(&r, rc, "quiesce");
        else if ((rc = migr_workload_verify(hv, &r.rep)) < 0)
            rx_fail(&r, rc, "verify");
        else if (!r.rep.ok)
            rx_fail(&r, -EBADMSG, "verify on the destination");
        else
            r.verified = true;
        if (r.rc != 0 && !r.rep.ok && r.rep.first_bad_why[0])
            snprintf(r.error + strlen(r.error), sizeof(r.error) - strlen(r.error), " (%llu bad pages: %s)",
                     (unsigned long long)r.rep.bad_pages, r.rep.first_bad_why);
        r.verify_ns = migr_now_ns() - v0;
    }
    migr_hv_destroy(hv);
    migr_transport_close(t);
    migr_listener_close(l);
    _exit(migr_write_full(wfd, &r, sizeof(r)) == 0 ? 0 : 1);
}

/* Progress callback: how much of what the engine has "sent" still sits in
 * the socket when the live rounds end. The destination drains that backlog
 * after the pause, so it counts in the downtime. (SIOCOUTQ: unread bytes on
 * unix; bytes not yet in the peer's receive buffer on TCP, so a lower bound.) */
struct queue_probe {
    int fd;
    int queued;
};

static void on_progress(void *arg, const struct migr_progress *p)
{
    struct queue_probe *q = arg;
    int n;
    if (strcmp(p->phase, "precopy") == 0 && p->pages_done == p->pages_total && ioctl(q->fd, SIOCOUTQ, &n) == 0)
        q->queued = n;
}

static void run_rep(const struct opts *o, int wi, int ti, int ci, int seq, struct rep_result *res)
{
    char listen_url[128], bound[300];
    struct migr_vm_config cfg = {.mem_bytes = o->mem, .nvcpus = 1};
    struct migr_hv *src = NULL;
    struct migr_transport *t = NULL;
    int pfd[2], rc;

    memset(res, 0, sizeof(*res));
    snprintf(listen_url, sizeof(listen_url), transports[ti].listen, (int)getpid(), seq);
    if (pipe(pfd) < 0) {
        snprintf(res->why, sizeof(res->why), "pipe: %s", strerror(errno));
        return;
    }
    fflush(NULL);
    /* Fork before the guest exists: the child must not inherit its VM. */
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(res->why, sizeof(res->why), "fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return;
    }
    if (pid == 0) {
        close(pfd[0]);
        receiver(listen_url, pfd[1]);
    }
    close(pfd[1]);
    int rfd = pfd[0];

    if ((rc = read_timeout(rfd, bound, sizeof(bound), 10000)) < 0 || !bound[0]) {
        snprintf(res->why, sizeof(res->why), "receiver did not listen on %s", listen_url);
        goto out_kill;
    }
    migr_workload_defaults(&cfg.wl);
    if ((rc = migr_workload_parse(workloads[wi].spec, &cfg.wl)) < 0 ||
        (rc = migr_hv_create("kvm", &cfg, &src)) < 0 || (rc = src->ops->resume(src)) < 0) {
        snprintf(res->why, sizeof(res->why), "source guest: %s", migr_last_error());
        goto out_kill;
    }
    /* Progress before: skip the first 100 ms (vCPU start-up). */
    sleep_ms(100);
    uint64_t w0 = migr_workload_progress(src);
    double t0 = now_s();
    sleep_ms(WARMUP_MS - 100);
    res->wps_before = (double)(migr_workload_progress(src) - w0) / (now_s() - t0);
    if (src->ops->failed(src)) {
        snprintf(res->why, sizeof(res->why), "source guest stopped: %s", src->failure);
        goto out_kill;
    }
    if ((rc = migr_transport_connect(bound, &t)) < 0) {
        snprintf(res->why, sizeof(res->why), "%s", migr_last_error());
        goto out_kill;
    }
    struct migr_send_params p;
    migr_send_params_init(&p);
    p.compress = o->compress[ci];
    p.compress_threads = o->threads;
    p.link_mbps = o->link_mbps;
    p.max_bandwidth = (uint64_t)o->max_mbps * 1000000;
    struct queue_probe qp = {.fd = t->fd, .queued = -1};
    p.progress = on_progress;
    p.progress_arg = &qp;
    w0 = migr_workload_progress(src);
    struct cpu_mark c0, c1;
    res->src_shmem0 = self_rss_shmem();
    res->src_memfd0 = memfd_bytes(src->regions[0].memfd);
    cpu_mark(&c0, pid);
    migr_stats_init(&res->st);
    res->send_rc = migr_send(src, t, &p, &res->st);
    cpu_mark(&c1, pid);
    res->src_shmem1 = self_rss_shmem();
    res->src_memfd1 = memfd_bytes(src->regions[0].memfd);
    res->others = others_cpus(&c0, &c1);
    res->queued = qp.queued;
    /* On success the source is paused at the switchover: writes up to then. */
    uint64_t live_ns = res->st.total_ns > res->st.downtime_ns ? res->st.total_ns - res->st.downtime_ns : 0;
    if (res->send_rc == 0 && live_ns)
        res->wps_during = (double)(migr_workload_progress(src) - w0) / ((double)live_ns / 1e9);
    migr_hv_destroy(src);
    src = NULL;

    rc = read_timeout(rfd, &res->rx, sizeof(res->rx), RESULT_TIMEOUT_MS);
    migr_transport_close(t);
    close(rfd);
    if (res->send_rc < 0)
        snprintf(res->why, sizeof(res->why), "send: %s", res->st.error);
    else if (rc < 0)
        snprintf(res->why, sizeof(res->why), "no result from the receiver (%s)",
                 rc == -ETIMEDOUT ? "timed out" : "it died");
    else if (res->rx.rc < 0)
        snprintf(res->why, sizeof(res->why), "receiver: %s", res->rx.error);
    else if (!res->st.verified || !res->rx.verified)
        snprintf(res->why, sizeof(res->why), "not verified");
    else
        res->ok = true;
    reap(pid, rc == -ETIMEDOUT ? 0 : 5000, res->why, sizeof(res->why));
    return;

out_kill:
    migr_hv_destroy(src);
    migr_transport_close(t);
    close(rfd);
    reap(pid, 0, NULL, 0);
}

/* ---------- reporting ---------- */

enum { M_TOTAL, M_DOWN, M_BYTES, M_ROUNDS, M_FIRST, M_ALL, M_FIRST_PCT, M_ALL_PCT, M_FIRST_LINK,
       M_WPS_BEFORE, M_WPS_DURING, M_WPS_AFTER, M_DST_DOWN, M_VERIFY, M_OTHERS, M_QUEUED, M_FIRST_FRESH,
       M_SRC_SHMEM_GROWTH, M_SRC_MEMFD_GROWTH, M_DST_MEMFD, M_FRESH, M_COUNT };
static const char *const metric_names[M_COUNT] = {
    "total_ms", "downtime_ms", "bytes_sent", "rounds", "first_pass_mbps", "overall_mbps",
    "first_pass_pct_memcpy", "overall_pct_memcpy", "first_pass_pct_stream",
    "writes_per_s_before", "writes_per_s_during", "writes_per_s_after", "dst_downtime_ms", "verify_ms",
    "other_load_cpus", "queued_at_pause_bytes", "first_pass_pct_fresh_stream",
    "src_rss_shmem_growth_bytes", "src_memfd_growth_bytes", "dst_memfd_bytes", "fresh_stream_mbps",
};

struct row {
    int wi, ti, ci, nok, nconv;
    double med[M_COUNT];
};

static void rep_metrics(const struct rep_result *r, const struct machine *m, int ti, double *v)
{
    const struct migr_stats *s = &r->st;
    double link = ti == 0 ? m->unix_mbps : m->tcp_mbps;
    v[M_TOTAL] = (double)s->total_ns / 1e6;
    v[M_DOWN] = (double)s->downtime_ns / 1e6;
    v[M_BYTES] = (double)s->wire_bytes;
    v[M_ROUNDS] = s->precopy.rounds;
    v[M_FIRST] = mbps(s->precopy.first_pass_pages * MIGR_PAGE_SIZE, s->precopy.first_pass_ns);
    v[M_ALL] = mbps(s->pages * MIGR_PAGE_SIZE, s->total_ns);
    v[M_FIRST_PCT] = m->memcpy_mbps > 0 ? 100 * v[M_FIRST] / m->memcpy_mbps : 0;
    v[M_ALL_PCT] = m->memcpy_mbps > 0 ? 100 * v[M_ALL] / m->memcpy_mbps : 0;
    v[M_FIRST_LINK] = link > 0 ? 100 * v[M_FIRST] / link : 0;
    v[M_WPS_BEFORE] = r->wps_before;
    v[M_WPS_DURING] = r->wps_during;
    v[M_WPS_AFTER] = r->rx.wps_after;
    v[M_DST_DOWN] = (double)r->rx.st.downtime_ns / 1e6;
    v[M_VERIFY] = (double)r->rx.verify_ns / 1e6;
    v[M_OTHERS] = r->others;
    v[M_QUEUED] = r->queued;
    /* against the limit of this very repetition: on a loaded machine the
     * limit measured once at the start moved by 2.6x between runs */
    double fresh = r->fresh_mbps > 0 ? r->fresh_mbps : m->fresh_mbps;
    v[M_FIRST_FRESH] = fresh > 0 ? 100 * v[M_FIRST] / fresh : 0;
    v[M_FRESH] = fresh;
    v[M_SRC_SHMEM_GROWTH] = (double)r->src_shmem1 - (double)r->src_shmem0;
    v[M_SRC_MEMFD_GROWTH] = (double)r->src_memfd1 - (double)r->src_memfd0;
    v[M_DST_MEMFD] = (double)r->rx.dst_memfd;
}

static void print_rep_json(FILE *f, const struct rep_result *r)
{
    static char js[16384];
    fprintf(f, "{\"ok\":%s,\"fresh_stream_mbps\":%.1f,\"error\":", r->ok ? "true" : "false", r->fresh_mbps);
    json_str(f, r->why);
    migr_stats_json(&r->st, js, sizeof(js));
    fprintf(f, ",\"send\":%s", js);
    migr_stats_json(&r->rx.st, js, sizeof(js));
    fprintf(f, ",\"recv\":%s", js);
    fprintf(f, ",\"verify\":{\"ok\":%s,\"pages_checked\":%llu,\"bad_pages\":%llu,\"ms\":%.1f,\"why\":",
            r->rx.verified ? "true" : "false", (unsigned long long)r->rx.rep.pages_checked,
            (unsigned long long)r->rx.rep.bad_pages, (double)r->rx.verify_ns / 1e6);
    json_str(f, r->rx.rep.first_bad_why);
    fprintf(f, "},\"writes_per_s\":{\"before\":%.0f,\"during\":%.0f,\"after\":%.0f},\"other_load_cpus\":%.2f,"
                  "\"queued_at_pause_bytes\":%d,\"src_rss_shmem\":[%llu,%llu],\"src_memfd_bytes\":[%llu,%llu],"
                  "\"dst_memfd_bytes\":%llu}",
            r->wps_before, r->wps_during, r->rx.wps_after, r->others, r->queued,
            (unsigned long long)r->src_shmem0, (unsigned long long)r->src_shmem1,
            (unsigned long long)r->src_memfd0, (unsigned long long)r->src_memfd1,
            (unsigned long long)r->rx.dst_memfd);
}

static int write_json(const struct opts *o, const struct machine *m, const struct row *rows, int nrows,
                      struct rep_result (*reps)[64])
{
    int err = mkdir_p(o->json);
    FILE *f = err < 0 ? NULL : fopen(o->json, "w");
    if (!f) {
        fprintf(stderr, "bench_migrate: cannot write %s: %s\n", o->json, strerror(err < 0 ? -err : errno));
        return -1;
    }
    struct utsname u;
    uname(&u);
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\"bench\":\"migrate\",\"version\":1,\"date\":\"%s\",\"host\":{\"cpus\":%ld,\"kernel\":", date,
            sysconf(_SC_NPROCESSORS_ONLN));
    json_str(f, u.release);
    fprintf(f, "},\n\"params\":{\"mem_bytes\":%llu,\"reps\":%d,\"quick\":%s,\"vcpus\":1,"
               "\"downtime_target_ms\":300,\"warmup_ms\":%d,\"compress_threads\":%u,\"link_mbps\":%u,"
            "\"max_bandwidth_mbps\":%u},\n",
            (unsigned long long)o->mem, o->reps, o->quick ? "true" : "false", WARMUP_MS, o->threads, o->link_mbps,
            o->max_mbps);
    fprintf(f, "\"machine\":{\"memcpy_mbps\":%.1f,\"crc32c_mbps\":%.1f,\"populate_mbps\":%.1f,"
               "\"unix_stream_mbps\":%.1f,\"fresh_stream_mbps\":%.1f,"
               "\"tcp_stream_mbps\":%.1f,\"buffer_bytes\":%llu,\"stream_bytes\":%llu,"
               "\"stream_write_bytes\":%u,\"runs\":%d,\"other_load_cpus\":%.2f},\n"
               "\"other_load_cpus_run\":%.2f,\n\"rows\":[\n",
            m->memcpy_mbps, m->crc_mbps, m->populate_mbps, m->unix_mbps, m->fresh_mbps, m->tcp_mbps,
            (unsigned long long)m->buf_bytes,
            (unsigned long long)m->stream_bytes, STREAM_WRITE, m->runs, m->others_limits, m->others_run);
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        fprintf(f, "{\"name\":\"%s/%s/%s\",\"workload\":\"%s\",\"workload_spec\":\"%s\",\"transport\":\"%s\","
                   "\"compress\":\"%s\",\"status\":\"%s\",\"reps\":%d,\"verified_reps\":%d,\"converged_reps\":%d,"
                   "\"median\":{",
                workloads[r->wi].name, transports[r->ti].name, o->compress[r->ci], workloads[r->wi].name,
                workloads[r->wi].spec, transports[r->ti].name, o->compress[r->ci], r->nok == o->reps ? "ok" : "FAIL",
                o->reps, r->nok, r->nconv);
        for (int k = 0; k < M_COUNT; k++)
            fprintf(f, "%s\"%s\":%.3f", k ? "," : "", metric_names[k], r->med[k]);
        fprintf(f, "},\n \"runs\":[");
        for (int k = 0; k < o->reps; k++) {
            fprintf(f, k ? ",\n  " : "\n  ");
            print_rep_json(f, &reps[i][k]);
        }
        fprintf(f, "]}%s\n", i + 1 < nrows ? "," : "");
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "bench_migrate: writing %s: %s\n", o->json, strerror(errno));
        return -1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_migrate [options]\n"
            "Live-migrate a running KVM guest between two processes (workloads idle, dirty64M,\n"
            "dirty256M, and sparse guests: sparse, ws64M, ws256M; transports unix, tcp 127.0.0.1), verify every result on the destination,\n"
            "and report medians next to this machine's memcpy / CRC32C / raw stream bandwidth.\n"
            "  --mem SIZE    guest RAM (default 1G; K/M/G suffixes, multiple of 2M)\n"
            "  --reps N      repetitions per configuration, medians reported (default 3)\n"
            "  --quick       --mem 256M --reps 1 (explicit --mem/--reps still win)\n"
            "  --json PATH   results file (default bench/results/migrate.json)\n"
            "  --only TEXT   run only configurations whose name (e.g. dirty64M/unix) contains TEXT\n"
            "  --compress LIST  page codecs, comma-separated rows (none,zero,xbzrle,lz4,zlib,zstd,auto;\n"
            "                default auto)\n"
            "  --compress-threads N  encoding threads (default 0: the engine's choice); MIGR_RECV_THREADS\n"
            "                for the decoders\n"
            "  --link-mbps N auto policy: assume an N MB/s link instead of measuring it (no throttling)\n"
            "  --max-bandwidth N  the engine's rate limit (migr send --max-bandwidth): a real N MB/s link\n"
            "  -h, --help    this text\n"
            "Exit: 0 every migration verified, 1 a configuration failed, 2 usage, 77 no /dev/kvm.\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"mem", required_argument, NULL, 'm'}, {"reps", required_argument, NULL, 'r'},
        {"quick", no_argument, NULL, 'q'},     {"json", required_argument, NULL, 'j'},
        {"only", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'},
        {"compress", required_argument, NULL, 'c'}, {"compress-threads", required_argument, NULL, 't'},
        {"link-mbps", required_argument, NULL, 'l'}, {"max-bandwidth", required_argument, NULL, 'B'},
        {NULL, 0, NULL, 0},
    };
    uint64_t mem = 0;
    int reps = 0, c;
    *o = (struct opts){.mem = 1ull << 30, .reps = 3, .json = "bench/results/migrate.json", .threads = 0,
                       .compress = {"auto"}, .ncompress = 1};
    static char clist[256];
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (bench_opt_mem(optarg, &mem) < 0)
                return -1;
            break;
        case 'r':
            if (bench_opt_reps(optarg, &reps) < 0)
                return -1;
            break;
        case 'q':
            o->quick = true;
            break;
        case 'j':
            o->json = optarg;
            break;
        case 'o':
            o->only = optarg;
            break;
        case 'c': {
            snprintf(clist, sizeof(clist), "%s", optarg);
            o->ncompress = 0;
            char *save = NULL;
            for (char *tok = strtok_r(clist, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                char key[64];
                snprintf(key, sizeof(key), ",%.40s,", tok);
                if (o->ncompress == NC_MAX || !strstr(",none,zero,xbzrle,lz4,zlib,zstd,auto,", key)) {
                    fprintf(stderr, "bench_migrate: --compress %s: need up to %d of none,zero,xbzrle,lz4,zlib,"
                                    "zstd,auto\n", optarg, NC_MAX);
                    return -1;
                }
                o->compress[o->ncompress++] = tok;
            }
            if (!o->ncompress)
                return -1;
            break;
        }
        case 't': case 'l': case 'B': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > (c == 't' ? 16 : 1000000)) {
                fprintf(stderr, "bench_migrate: --%s %s: out of range\n",
                        c == 't' ? "compress-threads" : c == 'l' ? "link-mbps" : "max-bandwidth", optarg);
                return -1;
            }
            if (c == 't')
                o->threads = (uint32_t)v;
            else if (c == 'l')
                o->link_mbps = (uint32_t)v;
            else
                o->max_mbps = (uint32_t)v;
            break;
        }
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_migrate: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    bool any = !o->only;
    for (int wi = 0; wi < NW; wi++)
        for (int ti = 0; ti < NT; ti++) {
            char cname[32];
            snprintf(cname, sizeof(cname), "%s/%s", workloads[wi].name, transports[ti].name);
            any |= o->only && strstr(cname, o->only);
        }
    if (!any) {
        fprintf(stderr, "bench_migrate: --only %s matches no configuration (idle|dirty64M|dirty256M|sparse|ws64M|ws256M / unix|tcp)\n",
                o->only);
        return -1;
    }
    if (o->quick) {
        o->mem = 256 * MiB;
        o->reps = 1;
    }
    if (mem)
        o->mem = mem;
    if (reps)
        o->reps = reps;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_args(argc, argv, &o) < 0)
        return 2;
    if (!migr_hv_available("kvm")) {
        printf("SKIP: no usable /dev/kvm: %s\n", migr_last_error());
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct machine m = {.buf_bytes = 256 * MiB, .stream_bytes = o.quick ? 256 * MiB : 1024 * MiB,
                        .runs = o.quick ? 3 : 5};
    printf("bench_migrate: guest %llu MiB, 1 vCPU, %d rep%s per configuration, downtime target 300 ms\n",
           (unsigned long long)(o.mem >> 20), o.reps, o.reps > 1 ? "s" : "");
    struct cpu_mark run0, c1;
    cpu_mark(&run0, 0);
    m.memcpy_mbps = measure_memcpy(m.buf_bytes, m.runs);
    m.crc_mbps = measure_crc(m.buf_bytes, m.runs);
    m.populate_mbps = measure_populate(m.buf_bytes, m.runs);
    char url[64];
    snprintf(url, sizeof(url), "unix:@migr-bench-%d-stream", (int)getpid());
    m.unix_mbps = measure_stream(url, m.stream_bytes, m.buf_bytes, 3);
    m.tcp_mbps = measure_stream("tcp:127.0.0.1:0", m.stream_bytes, m.buf_bytes, 3);
    {
        double v[3];
        for (int i = 0; i < 3; i++)
            v[i] = measure_stream_fresh_once(url, m.stream_bytes, m.buf_bytes);
        m.fresh_mbps = median(v, 3);
    }
    cpu_mark(&c1, 0);
    m.others_limits = others_cpus(&run0, &c1);
    printf("machine limits (median): memcpy %.0f MB/s (%llu MiB buffers, %d runs), CRC32C %.0f MB/s,\n"
           "  fresh memfd RAM (MADV_POPULATE_WRITE) %.0f MB/s,\n"
           "  raw stream, %u KiB writes through %llu MiB buffers (%llu MiB, 3 runs): unix %.0f MB/s (%.0f%% of memcpy), "
           "tcp %.0f MB/s (%.0f%%)\n"
           "  raw unix stream into fresh memfd RAM (populated per MiB, the first pass's limit): %.0f MB/s\n\n",
           m.memcpy_mbps, (unsigned long long)(m.buf_bytes >> 20), m.runs, m.crc_mbps, m.populate_mbps,
           STREAM_WRITE >> 10,
           (unsigned long long)(m.buf_bytes >> 20), (unsigned long long)(m.stream_bytes >> 20), m.unix_mbps,
           m.memcpy_mbps > 0 ? 100 * m.unix_mbps / m.memcpy_mbps : 0, m.tcp_mbps,
           m.memcpy_mbps > 0 ? 100 * m.tcp_mbps / m.memcpy_mbps : 0, m.fresh_mbps);

    static struct row rows[NW * NT * NC_MAX];
    static struct rep_result reps[NW * NT * NC_MAX][64];
    int nrows = 0, failed = 0, seq = 0;
    for (int wi = 0; wi < NW; wi++) {
        for (int ti = 0; ti < NT; ti++) {
          for (int ci = 0; ci < o.ncompress; ci++) {
            char cname[32];
            snprintf(cname, sizeof(cname), "%s/%s", workloads[wi].name, transports[ti].name);
            if (o.only && !strstr(cname, o.only))
                continue;
            struct row *r = &rows[nrows++];
            double v[M_COUNT][64];
            r->wi = wi;
            r->ti = ti;
            r->ci = ci;
            for (int k = 0; k < o.reps; k++) {
                struct rep_result *x = &reps[nrows - 1][k];
                double fresh = measure_stream_fresh_once(url, m.stream_bytes, m.buf_bytes);
                run_rep(&o, wi, ti, ci, seq++, x);
                x->fresh_mbps = fresh;
                if (!x->ok) {
                    fprintf(stderr, "FAIL %s/%s rep %d: %s\n", workloads[wi].name, transports[ti].name, k + 1,
                            x->why);
                    continue;
                }
                double mv[M_COUNT];
                rep_metrics(x, &m, ti, mv);
                for (int j = 0; j < M_COUNT; j++)
                    v[j][r->nok] = mv[j];
                r->nok++;
                r->nconv += x->st.precopy.converged;
            }
            for (int j = 0; j < M_COUNT; j++)
                r->med[j] = median(v[j], r->nok);
            failed += r->nok != o.reps;
            fprintf(stderr, "  %s/%s/%s: %d/%d verified\n", workloads[wi].name, transports[ti].name,
                    o.compress[ci], r->nok, o.reps);
          }
        }
    }

    printf("migrations (median of %d; MB = 10^6 bytes; %%cpy = share of memcpy bandwidth, "
           "%%link = of the raw stream)\n", o.reps);
    printf("%-22s %-6s %9s %8s %8s %6s %5s %9s %6s %6s %9s %6s\n", "config", "status", "total ms", "down ms",
           "sent MB", "rounds", "conv", "1st MB/s", "%cpy", "%link", "all MB/s", "%cpy");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        char name[32], conv[16];
        snprintf(name, sizeof(name), "%s/%s/%s", workloads[r->wi].name, transports[r->ti].name, o.compress[r->ci]);
        snprintf(conv, sizeof(conv), "%d/%d", r->nconv, r->nok);
        printf("%-22s %-6s %9.1f %8.1f %8.1f %6.0f %5s %9.0f %5.1f%% %5.1f%% %9.0f %5.1f%%\n", name,
               r->nok == o.reps ? "ok" : "FAIL", r->med[M_TOTAL], r->med[M_DOWN], r->med[M_BYTES] / 1e6,
               r->med[M_ROUNDS], conv, r->med[M_FIRST], r->med[M_FIRST_PCT], r->med[M_FIRST_LINK], r->med[M_ALL],
               r->med[M_ALL_PCT]);
    }
    printf("\nguest page writes per second (median): before migration, on the source while it was "
           "migrated, on the destination in the first %d ms\n", AFTER_MS);
    printf("%-22s %9s %9s %9s %10s %9s %10s %7s\n", "config", "before", "during", "after", "dst down",
           "queued MB", "verify ms", "others");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        char name[32];
        snprintf(name, sizeof(name), "%s/%s/%s", workloads[r->wi].name, transports[r->ti].name, o.compress[r->ci]);
        printf("%-22s %9.0f %9.0f %9.0f %7.1f ms %9.1f %10.0f %7.2f\n", name, r->med[M_WPS_BEFORE],
               r->med[M_WPS_DURING], r->med[M_WPS_AFTER], r->med[M_DST_DOWN], r->med[M_QUEUED] / 1e6,
               r->med[M_VERIFY], r->med[M_OTHERS]);
    }
    printf("\nfirst pass against the fresh-memory stream measured just before each repetition (limit, and\n"
           "the median of the per-repetition ratios); memory (median; MiB = 2^20 bytes): the source\n"
           "process's shared RSS and its guest memfd, growth during migr_send; the destination's guest memfd\n");
    printf("%-22s %9s %9s %8s %12s %12s %10s\n", "config", "1st MB/s", "limit", "%fresh", "src shm +MiB", "src memfd +",
           "dst memfd");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        char name[32];
        snprintf(name, sizeof(name), "%s/%s/%s", workloads[r->wi].name, transports[r->ti].name, o.compress[r->ci]);
        printf("%-22s %9.0f %9.0f %7.1f%% %12.1f %12.1f %10.1f\n", name, r->med[M_FIRST], r->med[M_FRESH],
               r->med[M_FIRST_FRESH],
               r->med[M_SRC_SHMEM_GROWTH] / MiB, r->med[M_SRC_MEMFD_GROWTH] / MiB, r->med[M_DST_MEMFD] / MiB);
    }
    if (o.ncompress > 1) {
        printf("\npage codecs (median bytes on the wire; x = fewer bytes than the row with --compress none, same\n"
               "workload and transport; codec pages and CPU from the source's summary of the first repetition)\n");
        printf("%-22s %9s %8s %9s %8s %8s %8s %8s %8s %9s\n", "config", "sent MB", "vs none", "total ms", "raw",
               "zero", "xbzrle", "lz4", "zstd", "enc cpu ms");
        for (int i = 0; i < nrows; i++) {
            const struct row *r = &rows[i];
            double none = 0;
            for (int j = 0; j < nrows; j++)
                if (rows[j].wi == r->wi && rows[j].ti == r->ti && !strcmp(o.compress[rows[j].ci], "none"))
                    none = rows[j].med[M_BYTES];
            const struct migr_stats *s = &reps[i][0].st;
            double cpu = 0;
            for (int k = 0; k < MIGR_STATS_ENCS; k++)
                cpu += (double)s->codec[k].cpu_ns / 1e6;
            char name[40], vs[16];
            snprintf(name, sizeof(name), "%s/%s/%s", workloads[r->wi].name, transports[r->ti].name,
                     o.compress[r->ci]);
            snprintf(vs, sizeof(vs), none > 0 && r->med[M_BYTES] > 0 ? "%.2fx" : "-", none / r->med[M_BYTES]);
            printf("%-22s %9.1f %8s %9.1f %8llu %8llu %8llu %8llu %8llu %9.0f\n", name, r->med[M_BYTES] / 1e6, vs,
                   r->med[M_TOTAL], (unsigned long long)s->codec[MIGR_ENC_RAW].pages,
                   (unsigned long long)s->codec[MIGR_ENC_ZERO].pages, (unsigned long long)s->codec[MIGR_ENC_XBZRLE].pages,
                   (unsigned long long)s->codec[MIGR_ENC_LZ4].pages, (unsigned long long)s->codec[MIGR_ENC_ZSTD].pages,
                   cpu);
        }
    }
    struct cpu_mark run1;
    cpu_mark(&run1, 0);
    m.others_run = others_cpus(&run0, &run1);
    printf("(dst down = SWITCHOVER received -> guest resumed on the destination; queued = bytes still in the\n"
           " socket when the live rounds ended, drained inside the downtime; others = CPUs' worth of work done\n"
           " by other processes on this %ld-CPU machine during migr_send, %.2f over the whole run)\n",
           sysconf(_SC_NPROCESSORS_ONLN), m.others_run);
    if (m.others_run > 0.2 || m.others_limits > 0.2)
        printf("WARNING: other processes were busy while this ran (%.2f CPUs on average, %.2f during the "
               "limit measurements): figures are lower and noisier than on an idle machine\n",
               m.others_run, m.others_limits);
    if (write_json(&o, &m, rows, nrows, reps) == 0)
        printf("\nresults: %s\n", o.json);
    if (failed)
        printf("FAIL: %d configuration%s had unverified migrations (see stderr and the JSON)\n", failed,
               failed > 1 ? "s" : "");
    return failed ? 1 : 0;
}
