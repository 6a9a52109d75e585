/* bench_handover: zero-copy hand-over of a running KVM guest to a second VMM
 * process on the same host (params.handover over a unix socket: the guest's
 * RAM memfd is passed, no page is copied), for guests of 256 MiB, 4 GiB and
 * 16 GiB, and a pre-copy migration of the 256 MiB guest in the same run.
 *
 * Every guest has the same 64 MiB working set (ws=64M, random text pages
 * rewritten at 64 MiB/s): memfd RAM is sparse and the guest is filled only
 * where it works, so a 16 GiB guest costs ~64 MiB of memory. The benchmark
 * checks that (the memfd's allocated size on both sides, and the receiver's
 * RSS) and fails the row if a guest's memory was touched beyond its
 * working set.
 *
 * Per configuration, per repetition: fork a receiver (listen -> migr_recv ->
 * sample the guest 0.5 s -> memory check -> quiesce -> migr_workload_verify
 * -> result to the parent through a pipe -> destroy); the parent creates the
 * guest, lets it run 0.5 s, connects and calls migr_send. A repetition
 * counts only if migr_send succeeded, the destination confirmed it and its
 * verify passed.
 *
 * The machine's limit, measured in the same run: what any switch-over on one
 * host costs at least without moving memory: pause + save_state on one side,
 * load_state + resume on the other (measured on one VM, so the vCPU threads
 * already exist), plus the two request/answer round trips of the protocol
 * (SWITCHOVER -> READY, COMMIT -> DONE) over a unix socket.
 *
 * Output: tables on stdout, JSON (default bench/results/handover.json).
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/engine.h"
#include "migr/format.h"
#include "migr/hv.h"
#include "migr/transport.h"
#include "migr/workload.h"

#define BENCH_NAME "bench_handover" /* prefix of benchlib.h messages */
#include "benchlib.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define WS_BYTES (64 * MiB)
#define WORKLOAD "rate=64M,ws=64M,pattern=random,data=text"
#define WARMUP_MS 500
#define AFTER_MS 500
#define ACCEPT_TIMEOUT_MS 60000
#define RESULT_TIMEOUT_MS 120000
#define REP_WATCHDOG_S 120
/* A guest whose memfd holds more than its working set plus this is not
 * sparse any more (metadata, code and page tables are well under 8 MiB). */
#define SPARSE_SLACK (64 * MiB)

static const struct {
    const char *name;
    uint64_t mem;
    bool handover;
} configs[] = {
    {"handover/256M", 256 * MiB, true},
    {"handover/4G", 4 * GiB, true},
    {"handover/16G", 16 * GiB, true},
    {"precopy/256M", 256 * MiB, false},
};
#define NC (int)MIGR_ARRAY_SIZE(configs)

struct opts {
    int reps;
    bool quick;
    const char *json;
    const char *only;
};

struct machine {
    double rtt_p50_us, rtt_p99_us;     /* 16 B request, 16 B answer, two processes */
    double switch_p50_us;              /* pause + save_state + load_state + resume, one VM */
    double pause_us, save_us, load_us, resume_us;
    size_t state_bytes;
    double floor_us;                   /* switch + 2 round trips */
    double others_limits, others_run;
};

struct rep_result {
    bool ok;
    char why[800];
    int send_rc;
    struct migr_stats st;
    struct rx_result rx;
    double wps_before;
    struct mem_use src_mem;            /* source, after creation and warm-up */
    uint64_t create_ns;
    uint64_t dst_setup_ns;             /* a destination VM on this memfd: migr_hv_create_shared */
    double others;
};

/* ---------- the machine's limit (measure_rtt: bench/benchlib.h) ---------- */

/* The work of a switch-over on one host, done on one running guest:
 * pause, save_state, load_state (back into the same VM), resume. */
static int measure_switch(struct machine *m, int n)
{
    struct migr_vm_config cfg = {.mem_bytes = 256 * MiB, .nvcpus = 1};
    struct migr_hv *hv = NULL;
    double v[4][64], tot[64];
    int k = 0, rc;
    n = n > 64 ? 64 : n;
    migr_workload_defaults(&cfg.wl);
    if ((rc = migr_workload_parse(WORKLOAD, &cfg.wl)) < 0 || (rc = migr_hv_create("kvm", &cfg, &hv)) < 0 ||
        (rc = hv->ops->resume(hv)) < 0) {
        fprintf(stderr, "bench_handover: limit guest: %s\n", migr_last_error());
        migr_hv_destroy(hv);
        return rc;
    }
    sleep_ms(200);
    for (int i = 0; i < n; i++) {
        uint8_t *blob = NULL;
        size_t len = 0;
        uint64_t t0 = migr_now_ns();
        if ((rc = hv->ops->pause(hv)) < 0)
            break;
        uint64_t t1 = migr_now_ns();
        if ((rc = hv->ops->save_state(hv, &blob, &len)) < 0)
            break;
        uint64_t t2 = migr_now_ns();
        rc = hv->ops->load_state(hv, blob, len);
        uint64_t t3 = migr_now_ns();
        free(blob);
        if (rc < 0 || (rc = hv->ops->resume(hv)) < 0)
            break;
        uint64_t t4 = migr_now_ns();
        v[0][k] = (double)(t1 - t0) / 1e3;
        v[1][k] = (double)(t2 - t1) / 1e3;
        v[2][k] = (double)(t3 - t2) / 1e3;
        v[3][k] = (double)(t4 - t3) / 1e3;
        tot[k++] = (double)(t4 - t0) / 1e3;
        m->state_bytes = len;
        sleep_ms(10);
    }
    if (rc < 0)
        fprintf(stderr, "bench_handover: switch limit: %s\n", migr_last_error());
    migr_hv_destroy(hv);
    m->pause_us = median(v[0], k);
    m->save_us = median(v[1], k);
    m->load_us = median(v[2], k);
    m->resume_us = median(v[3], k);
    m->switch_p50_us = median(tot, k);
    return rc < 0 ? rc : 0;
}

/* ---------- one migration ---------- */

/* A hand-over keeps guest RAM sparse: the destination's memfd holds the
 * working set, not all of RAM. */
static void check_sparse(struct rx_result *r, struct migr_hv *hv, void *arg)
{
    uint64_t ram = *(const uint64_t *)arg;
    if (r->mem.memfd_alloc > WS_BYTES + SPARSE_SLACK) {
        r->rc = -EFBIG;
        snprintf(r->error, sizeof(r->error), "guest RAM is not sparse on the destination: the memfd "
                 "holds %llu MiB of %llu MiB for a %llu MiB working set",
                 (unsigned long long)(r->mem.memfd_alloc >> 20), (unsigned long long)(ram >> 20),
                 (unsigned long long)(WS_BYTES >> 20));
    }
}

/* The receiver child (benchlib.h): never returns. */
static void receiver(const char *listen_url, uint64_t ram, int wfd)
{
    bench_receiver(listen_url, wfd, &(struct rx_opts){.accept_ms = ACCEPT_TIMEOUT_MS, .after_ms = AFTER_MS,
                                                      .check = check_sparse, .arg = &ram});
}

static void run_rep(int ci, int seq, struct rep_result *res)
{
    char listen_url[128], bound[300];
    struct migr_vm_config cfg = {.mem_bytes = configs[ci].mem, .nvcpus = 1};
    struct migr_hv *src = NULL;
    struct migr_transport *t = NULL;
    int pfd[2], rc;

    memset(res, 0, sizeof(*res));
    snprintf(listen_url, sizeof(listen_url), "unix:@migr-bench-ho-%d-%d", (int)getpid(), seq);
    if (pipe(pfd) < 0) {
        snprintf(res->why, sizeof(res->why), "pipe: %s", strerror(errno));
        return;
    }
    fflush(NULL);
    pid_t pid = fork(); /* before the guest exists: the child must not inherit its VM */
    if (pid < 0) {
        snprintf(res->why, sizeof(res->why), "fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return;
    }
    if (pid == 0) {
        close(pfd[0]);
        receiver(listen_url, configs[ci].mem, pfd[1]);
    }
    g_children[0] = pid;
    alarm(REP_WATCHDOG_S);
    close(pfd[1]);
    int rfd = pfd[0];

    if ((rc = read_timeout(rfd, bound, sizeof(bound), 10000)) < 0 || !bound[0]) {
        snprintf(res->why, sizeof(res->why), "receiver did not listen on %s", listen_url);
        goto out_kill;
    }
    migr_workload_defaults(&cfg.wl);
    uint64_t c0 = migr_now_ns();
    if ((rc = migr_workload_parse(WORKLOAD, &cfg.wl)) < 0 || (rc = migr_hv_create("kvm", &cfg, &src)) < 0) {
        snprintf(res->why, sizeof(res->why), "source guest: %s", migr_last_error());
        goto out_kill;
    }
    res->create_ns = migr_now_ns() - c0;
    /* What a hand-over destination does when the memfd arrives: build a VM
     * on it (KVM memslot, vCPUs). Timed here, on a second VM of the same
     * size, and destroyed again before the guest runs. */
    struct migr_hello hello;
    struct migr_hv *probe = NULL;
    int pfd0 = dup(src->regions[0].memfd);
    migr_hv_describe(src, &hello);
    c0 = migr_now_ns();
    if (pfd0 < 0 || (rc = migr_hv_create_shared(&hello, &pfd0, &src->regions[0].memfd_off, &probe)) < 0) {
        snprintf(res->why, sizeof(res->why), "destination set-up probe: %s",
                 pfd0 < 0 ? strerror(errno) : migr_last_error());
        goto out_kill;
    }
    res->dst_setup_ns = migr_now_ns() - c0;
    migr_hv_destroy(probe);
    if ((rc = src->ops->resume(src)) < 0) {
        snprintf(res->why, sizeof(res->why), "source guest: %s", migr_last_error());
        goto out_kill;
    }
    sleep_ms(100);
    uint64_t w0 = migr_workload_progress(src);
    double t0 = now_s();
    sleep_ms(WARMUP_MS - 100);
    res->wps_before = (double)(migr_workload_progress(src) - w0) / (now_s() - t0);
    mem_use(src, &res->src_mem);
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
    p.mode = configs[ci].handover ? MIGR_MODE_HANDOVER : MIGR_MODE_PRECOPY;
    struct cpu_mark m0, m1;
    cpu_mark(&m0, pid);
    migr_stats_init(&res->st);
    res->send_rc = migr_send(src, t, &p, &res->st);
    cpu_mark(&m1, pid);
    res->others = others_cpus(&m0, &m1);
    migr_hv_destroy(src); /* hand-over: unmaps; the memory lives on in the receiver */
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
    else if (res->src_mem.memfd_alloc > WS_BYTES + SPARSE_SLACK)
        snprintf(res->why, sizeof(res->why), "guest RAM is not sparse on the source: the memfd holds %llu MiB "
                 "of %llu MiB for a %llu MiB working set", (unsigned long long)(res->src_mem.memfd_alloc >> 20),
                 (unsigned long long)(configs[ci].mem >> 20), (unsigned long long)(WS_BYTES >> 20));
    else if (configs[ci].handover && res->st.pages != 0)
        snprintf(res->why, sizeof(res->why), "hand-over copied %llu pages", (unsigned long long)res->st.pages);
    else
        res->ok = true;
    reap(pid, rc == -ETIMEDOUT ? 0 : 5000, res->why, sizeof(res->why));
    alarm(0);
    g_children[0] = 0;
    return;

out_kill:
    migr_hv_destroy(src);
    migr_transport_close(t);
    close(rfd);
    reap(pid, 0, NULL, 0);
    alarm(0);
    g_children[0] = 0;
}

/* ---------- reporting ---------- */

enum { M_TOTAL, M_DOWN, M_DST_DOWN, M_DST_SETUP, M_SETUP, M_BYTES, M_XFLOOR, M_WPS_BEFORE, M_WPS_AFTER, M_SRC_MEMFD,
       M_DST_MEMFD, M_SRC_RSS, M_DST_RSS, M_CREATE, M_VERIFY, M_OTHERS, M_COUNT };
static const char *const metric_names[M_COUNT] = {
    "total_ms", "downtime_ms", "dst_downtime_ms", "dst_vm_setup_ms", "setup_ms", "bytes_sent", "downtime_x_floor",
    "writes_per_s_before", "writes_per_s_after", "src_memfd_bytes", "dst_memfd_bytes", "src_rss_bytes", "dst_rss_bytes",
    "create_ms", "verify_ms", "other_load_cpus",
};

struct row {
    int ci, nok;
    double med[M_COUNT];
};

static void rep_metrics(const struct rep_result *r, const struct machine *m, double *v)
{
    v[M_TOTAL] = (double)r->st.total_ns / 1e6;
    v[M_DOWN] = (double)r->st.downtime_ns / 1e6;
    v[M_DST_DOWN] = (double)r->rx.st.downtime_ns / 1e6;
    v[M_DST_SETUP] = (double)r->dst_setup_ns / 1e6;
    v[M_SETUP] = (double)r->st.setup_ns / 1e6;
    v[M_BYTES] = (double)r->st.wire_bytes;
    v[M_XFLOOR] = m->floor_us > 0 ? v[M_DOWN] * 1e3 / m->floor_us : 0;
    v[M_WPS_BEFORE] = r->wps_before;
    v[M_WPS_AFTER] = r->rx.wps_after;
    v[M_SRC_MEMFD] = (double)r->src_mem.memfd_alloc;
    v[M_DST_MEMFD] = (double)r->rx.mem.memfd_alloc;
    v[M_SRC_RSS] = (double)r->src_mem.rss;
    v[M_DST_RSS] = (double)r->rx.mem.rss;
    v[M_CREATE] = (double)r->create_ns / 1e6;
    v[M_VERIFY] = (double)r->rx.verify_ns / 1e6;
    v[M_OTHERS] = r->others;
}

static void print_mem_json(FILE *f, const char *name, const struct mem_use *m)
{
    fprintf(f, "\"%s\":{\"memfd_bytes\":%llu,\"rss_bytes\":%llu,\"rss_shmem_bytes\":%llu,\"rss_anon_bytes\":%llu}",
            name, (unsigned long long)m->memfd_alloc, (unsigned long long)m->rss,
            (unsigned long long)m->rss_shmem, (unsigned long long)m->rss_anon);
}

static void print_rep_json(FILE *f, const struct rep_result *r)
{
    static char js[16384];
    fprintf(f, "{\"ok\":%s,\"error\":", r->ok ? "true" : "false");
    json_str(f, r->why);
    migr_stats_json(&r->st, js, sizeof(js));
    fprintf(f, ",\"send\":%s", js);
    migr_stats_json(&r->rx.st, js, sizeof(js));
    fprintf(f, ",\"recv\":%s", js);
    fprintf(f, ",\"verify\":{\"ok\":%s,\"pages_checked\":%llu,\"bad_pages\":%llu,\"ms\":%.1f,\"why\":",
            r->rx.verified ? "true" : "false", (unsigned long long)r->rx.rep.pages_checked,
            (unsigned long long)r->rx.rep.bad_pages, (double)r->rx.verify_ns / 1e6);
    json_str(f, r->rx.rep.first_bad_why);
    fputs("},\"memory\":{", f);
    print_mem_json(f, "source", &r->src_mem);
    fputc(',', f);
    print_mem_json(f, "destination", &r->rx.mem);
    fprintf(f, "},\"create_ms\":%.1f,\"dst_vm_setup_ms\":%.2f,\"writes_per_s\":{\"before\":%.0f,\"after\":%.0f},"
               "\"other_load_cpus\":%.2f}",
            (double)r->create_ns / 1e6, (double)r->dst_setup_ns / 1e6, r->wps_before, r->rx.wps_after, r->others);
}

static int write_json(const struct opts *o, const struct machine *m, const struct row *rows, int nrows,
                      struct rep_result (*reps)[64])
{
    int err = mkdir_p(o->json);
    FILE *f = err < 0 ? NULL : fopen(o->json, "w");
    if (!f) {
        fprintf(stderr, "bench_handover: cannot write %s: %s\n", o->json, strerror(err < 0 ? -err : errno));
        return -1;
    }
    struct utsname u;
    uname(&u);
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\"bench\":\"handover\",\"version\":1,\"date\":\"%s\",\"host\":{\"cpus\":%ld,\"kernel\":", date,
            sysconf(_SC_NPROCESSORS_ONLN));
    json_str(f, u.release);
    fprintf(f, "},\n\"params\":{\"reps\":%d,\"quick\":%s,\"vcpus\":1,\"transport\":\"unix\",\"workload_spec\":\"%s\","
               "\"ws_bytes\":%llu,\"warmup_ms\":%d,\"after_ms\":%d},\n",
            o->reps, o->quick ? "true" : "false", WORKLOAD, (unsigned long long)WS_BYTES, WARMUP_MS, AFTER_MS);
    fprintf(f, "\"machine\":{\"unix_rtt_p50_us\":%.2f,\"unix_rtt_p99_us\":%.2f,\"switch_p50_us\":%.1f,"
               "\"pause_us\":%.1f,\"save_state_us\":%.1f,\"load_state_us\":%.1f,\"resume_us\":%.1f,"
               "\"state_bytes\":%zu,\"floor_us\":%.1f,\"other_load_cpus\":%.2f},\n\"other_load_cpus_run\":%.2f,\n"
               "\"rows\":[\n",
            m->rtt_p50_us, m->rtt_p99_us, m->switch_p50_us, m->pause_us, m->save_us, m->load_us, m->resume_us,
            m->state_bytes, m->floor_us, m->others_limits, m->others_run);
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        fprintf(f, "{\"name\":\"%s\",\"mode\":\"%s\",\"mem_bytes\":%llu,\"status\":\"%s\",\"reps\":%d,"
                   "\"verified_reps\":%d,\"median\":{",
                configs[r->ci].name, configs[r->ci].handover ? "handover" : "precopy",
                (unsigned long long)configs[r->ci].mem, r->nok == o->reps ? "ok" : "FAIL", o->reps, r->nok);
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
        fprintf(stderr, "bench_handover: writing %s: %s\n", o->json, strerror(errno));
        return -1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_handover [options]\n"
            "Hand a running KVM guest over to a second VMM process on this host (its RAM memfd is\n"
            "passed over a unix socket, no page copied) for guests of 256 MiB, 4 GiB and 16 GiB\n"
            "(64 MiB working set, " WORKLOAD "), and pre-copy-migrate the\n"
            "256 MiB guest for comparison; verify every result on the destination; report the\n"
            "downtime next to this machine's floor for a switch-over (pause + save + load + resume\n"
            "+ 2 unix round trips), and check that guest RAM stays sparse.\n"
            "  --reps N      repetitions per configuration, medians reported (default 5)\n"
            "  --quick       --reps 1\n"
            "  --json PATH   results file (default bench/results/handover.json)\n"
            "  --only TEXT   run only configurations whose name (e.g. handover/16G) contains TEXT\n"
            "  -h, --help    this text\n"
            "Exit: 0 every migration verified, 1 a configuration failed, 2 usage, 77 no /dev/kvm.\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"reps", required_argument, NULL, 'r'}, {"quick", no_argument, NULL, 'q'},
        {"json", required_argument, NULL, 'j'}, {"only", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    int reps = 0, c;
    *o = (struct opts){.reps = 5, .json = "bench/results/handover.json"};
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
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
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_handover: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    bool any = !o->only;
    for (int ci = 0; ci < NC; ci++)
        any |= o->only && strstr(configs[ci].name, o->only);
    if (!any) {
        fprintf(stderr, "bench_handover: --only %s matches no configuration (handover/256M|4G|16G, "
                        "precopy/256M)\n", o->only);
        return -1;
    }
    if (o->quick)
        o->reps = 1;
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
    signal(SIGALRM, on_watchdog);
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct machine m = {0};
    printf("bench_handover: 1 vCPU, unix socket, workload %s, %d rep%s per configuration\n", WORKLOAD, o.reps,
           o.reps > 1 ? "s" : "");
    struct cpu_mark run0, c1;
    cpu_mark(&run0, 0);
    measure_rtt(o.quick ? 2000 : 10000, 16, 0, &m.rtt_p50_us, &m.rtt_p99_us); /* a small record each way */
    alarm(REP_WATCHDOG_S);
    int failed = measure_switch(&m, o.quick ? 10 : 30) < 0;
    alarm(0);
    m.floor_us = m.switch_p50_us + 2 * m.rtt_p50_us;
    cpu_mark(&c1, 0);
    m.others_limits = others_cpus(&run0, &c1);
    printf("machine limit (median): unix round trip (16 B each way) %.1f us (p99 %.1f); on one running VM: pause "
           "%.0f us + save_state %.0f us\n  + load_state %.0f us + resume %.0f us = %.0f us (vCPU state %zu bytes)"
           " => a switch-over on this host costs at least %.2f ms\n\n",
           m.rtt_p50_us, m.rtt_p99_us, m.pause_us, m.save_us, m.load_us, m.resume_us, m.switch_p50_us,
           m.state_bytes, m.floor_us / 1e3);

    static struct row rows[NC];
    static struct rep_result reps[NC][64];
    int nrows = 0, seq = 0;
    for (int ci = 0; ci < NC; ci++) {
        if (o.only && !strstr(configs[ci].name, o.only))
            continue;
        struct row *r = &rows[nrows++];
        static double v[M_COUNT][64];
        r->ci = ci;
        for (int k = 0; k < o.reps; k++) {
            struct rep_result *x = &reps[nrows - 1][k];
            run_rep(ci, seq++, x);
            if (!x->ok) {
                fprintf(stderr, "FAIL %s rep %d: %s\n", configs[ci].name, k + 1, x->why);
                continue;
            }
            double mv[M_COUNT];
            rep_metrics(x, &m, mv);
            for (int j = 0; j < M_COUNT; j++)
                v[j][r->nok] = mv[j];
            r->nok++;
        }
        for (int j = 0; j < M_COUNT; j++)
            r->med[j] = median(v[j], r->nok);
        failed += r->nok != o.reps;
        fprintf(stderr, "  %s: %d/%d verified\n", configs[ci].name, r->nok, o.reps);
    }

    printf("switch-overs over unix (median of %d; down = source paused -> DONE; dst down = SWITCHOVER received "
           "-> guest resumed there;\n dst setup = building a VM on the passed memfd (migr_hv_create_shared, timed "
           "separately on the same guest),\n which the destination does after the source sent the memfd; xfloor = "
           "down / the floor above;\n memfd = guest RAM actually allocated, source / destination)\n", o.reps);
    printf("%-14s %-6s %8s %9s %9s %10s %9s %8s %7s %17s\n", "config", "status", "RAM", "total ms", "down ms",
           "dst down", "dst setup", "sent KB", "xfloor", "memfd MiB s / d");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        char ram[16], mem[32];
        uint64_t b = configs[r->ci].mem;
        snprintf(ram, sizeof(ram), b >= GiB ? "%llu GiB" : "%llu MiB",
                 (unsigned long long)(b >= GiB ? b >> 30 : b >> 20));
        snprintf(mem, sizeof(mem), "%.0f / %.0f", r->med[M_SRC_MEMFD] / MiB, r->med[M_DST_MEMFD] / MiB);
        printf("%-14s %-6s %8s %9.1f %9.2f %7.2f ms %9.2f %8.1f %6.1fx %17s\n", configs[r->ci].name,
               r->nok == o.reps ? "ok" : "FAIL", ram, r->med[M_TOTAL], r->med[M_DOWN], r->med[M_DST_DOWN],
               r->med[M_DST_SETUP], r->med[M_BYTES] / 1e3, r->med[M_XFLOOR], mem);
    }
    printf("\nthe guest's page writes per second (median): before (source), after (destination, first %d ms); "
           "time to create the guest;\nRSS of the source (after the warm-up) and of the destination (after %d ms "
           "of the guest running there, before verification)\n", AFTER_MS, AFTER_MS);
    printf("%-14s %9s %9s %10s %11s %11s %10s\n", "config", "before", "after", "create ms", "src RSS MiB",
           "dst RSS MiB", "verify ms");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        printf("%-14s %9.0f %9.0f %10.0f %11.0f %11.0f %10.0f\n", configs[r->ci].name, r->med[M_WPS_BEFORE],
               r->med[M_WPS_AFTER], r->med[M_CREATE], r->med[M_SRC_RSS] / MiB, r->med[M_DST_RSS] / MiB,
               r->med[M_VERIFY]);
    }
    struct cpu_mark run1;
    cpu_mark(&run1, 0);
    m.others_run = others_cpus(&run0, &run1);
    printf("(other processes used %.2f of this machine's %ld CPUs over the whole run; per migration it is in the JSON,\n"
           " but a hand-over lasts less than one clock tick)\n", m.others_run, sysconf(_SC_NPROCESSORS_ONLN));
    if (m.others_run > 0.2 || m.others_limits > 0.2)
        printf("WARNING: other processes were busy while this ran (%.2f CPUs on average, %.2f during the "
               "limit measurements): figures are higher and noisier than on an idle machine\n",
               m.others_run, m.others_limits);
    if (write_json(&o, &m, rows, nrows, reps) == 0)
        printf("\nresults: %s\n", o.json);
    if (failed)
        printf("FAIL: %d configuration%s had unverified results (see stderr and the JSON)\n", failed,
               failed > 1 ? "s" : "");
    return failed ? 1 : 0;
}
