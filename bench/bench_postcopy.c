/* bench_postcopy: pre-copy, hybrid and cancellable post-copy of a running
 * KVM guest between two processes over a unix socket, at three dirty rates,
 * and what each costs the guest: its own write rate before, during and after
 * the migration on whichever side it runs.
 *
 * Per configuration (workload x mode), per repetition:
 *   fork a receiver (listen -> migr_recv, which for post-copy returns once
 *   every page is resident -> guest progress at that moment -> sample the
 *   guest for 0.5 s -> quiesce -> migr_workload_verify -> result to the
 *   parent through a pipe -> destroy); the parent creates the guest, lets it
 *   run 0.5 s, connects and calls migr_send. A repetition counts only if
 *   migr_send succeeded, the destination confirmed every page and its verify
 *   passed; a configuration with a failed repetition is reported FAIL.
 *
 * The guest's rate while it runs on the destination in post-copy is
 *   (progress when migr_recv returned - progress at the pause on the source)
 *   / the destination's postcopy_ns,
 * since the write counters live in guest RAM and move with it.
 *
 * Also measured in the same run: the machine's limits (memcpy, raw unix
 * stream, a unix-socket round trip carrying a 4 KiB reply, a local
 * userfaultfd fault resolved with UFFDIO_COPY), and the nested
 * hypervisor's own first-touch cost of a guest page (a guest sweeping fresh,
 * host-populated and already-touched memory).
 *
 * Output: tables on stdout, JSON (default bench/results/postcopy.json).
 * Exit: 0 all verified, 1 a configuration failed, 2 usage, 77 no /dev/kvm.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/engine.h"
#include "migr/hv.h"
#include "migr/transport.h"
#include "migr/workload.h"

#define BENCH_NAME "bench_postcopy" /* prefix of benchlib.h messages */
#include "benchlib.h"

#define MiB (1ull << 20)
#define WARMUP_MS 500               /* guest runs this long before migration */
#define AFTER_MS 500                /* destination progress is sampled this long after residence */
#define ACCEPT_TIMEOUT_MS 60000
#define RESULT_TIMEOUT_MS 120000    /* one migration + verify, far above normal */
#define REP_WATCHDOG_S 180          /* a repetition that hangs ends the benchmark (nothing left running) */
#define TOUCH_WS (128 * MiB)        /* first-touch guest: working set swept */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Text pages everywhere (the same 1 GiB image of non-zero, compressible
 * pages in every row). A 1 GiB text guest with one vCPU writes at most
 * ~55,000 pages/s (~215 MiB/s) here: rate=512M would be the same as rate=0,
 * so the middle rate is one it can hold. */
static const struct {
    const char *name, *spec;
} workloads[] = {
    {"dirty64M", "rate=64M,pattern=random,data=text"},
    {"dirty128M", "rate=128M,pattern=random,data=text"},
    {"unthrottled", "rate=0,pattern=random,data=text"},
    /* a sparse guest: 256 MiB written, the rest of RAM never (memfd holes) */
    {"ws256M", "rate=96M,ws=256M,pattern=random,data=text"},
};
static const struct {
    const char *name;
    int postcopy_after;
} modes[] = {
    {"precopy", -1},
    {"hybrid", 1},      /* one pre-copy round, then post-copy; cancellable (the default) */
    {"postcopy", 0},    /* switch at once; cancellable (the default) */
};
/* --quick without --only: a smoke run of seconds, one workload in every
 * mode (ws256M would not fit in --quick's 128 MiB guest). */
static const char *const quick_workload = "dirty64M";
#define NW (int)MIGR_ARRAY_SIZE(workloads)
#define NM (int)MIGR_ARRAY_SIZE(modes)

struct opts {
    uint64_t mem;
    int reps;
    bool quick;
    bool no_touch;
    bool no_cancel;               /* post-copy without take-back (no checkpoints) */
    const char *json;
    const char *only;
    double link_mbps;             /* --link: the source's stream limited to this (0 = not) */
    bool tcp;                     /* --tcp: TCP loopback instead of a unix socket */
};

struct machine {
    uint64_t buf_bytes, stream_bytes;
    int runs;
    double memcpy_mbps, unix_mbps;
    double rtt_p50_us, rtt_p99_us;        /* 16-byte request, 4 KiB + 16 reply, two processes */
    double uffd_p50_us, uffd_p99_us;      /* local MISSING fault on memfd -> UFFDIO_COPY -> resumed */
    double others_limits, others_run;
};

struct touch_result {
    bool ok;
    char why[300];
    double sweep1_ns, sweep2_ns;          /* per page */
};

enum { T_FRESH, T_POPULATED, T_COUNT };
static const char *const touch_names[T_COUNT] = {"fresh", "populated"};
static const char *const touch_desc[T_COUNT] = {
    "fresh memfd (host allocates + zeroes, KVM maps)",
    "host-populated (KVM maps only)",
};

struct rep_result {
    bool ok;
    char why[800];
    int send_rc;
    struct migr_stats st;
    struct rx_result rx;
    uint64_t w_pause;             /* guest page writes at the pause on the source */
    double wps_before, wps_live, wps_pc;
    bool has_live, has_pc;
    double others;
};

/* ---------- small helpers (as in bench_migrate.c) ---------- */


/* ---------- the machine's limits ---------- */

struct uffd_job {
    int uffd, stopfd;
    uint8_t *src;
    int served;
};

static void *uffd_handler(void *arg)
{
    struct uffd_job *j = arg;
    struct uffd_msg m;
    for (;;) {
        struct pollfd p[2] = {{.fd = j->uffd, .events = POLLIN}, {.fd = j->stopfd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return NULL;
        if (p[1].revents)
            return NULL;
        if (read(j->uffd, &m, sizeof(m)) != sizeof(m) || m.event != UFFD_EVENT_PAGEFAULT)
            continue;
        struct uffdio_copy c = {.dst = m.arg.pagefault.address & ~(uint64_t)4095,
                                .src = (uint64_t)(uintptr_t)j->src, .len = 4096};
        if (ioctl(j->uffd, UFFDIO_COPY, &c) == 0)
            j->served++;
    }
}

/* The local cost of a userfaultfd fault on shared memfd memory (what guest
 * RAM is): one thread touches a missing page, another resolves it with
 * UFFDIO_COPY. A post-copy fault cannot be served faster than this plus a
 * socket round trip. */
static void measure_uffd(int n, double *p50, double *p99)
{
    uint64_t len = (uint64_t)n * 4096;
    int fd = memfd_create("bench-uffd", MFD_CLOEXEC);
    struct uffd_job j = {.uffd = -1, .stopfd = -1};
    uint8_t *mem = MAP_FAILED;
    double *v = calloc((size_t)n, sizeof(double));
    pthread_t th;
    bool started = false;
    *p50 = *p99 = 0;
    if (fd < 0 || ftruncate(fd, (off_t)len) < 0 || !v)
        goto out;
    mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    j.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    j.stopfd = eventfd(0, EFD_CLOEXEC);
    if (mem == MAP_FAILED || j.uffd < 0 || j.stopfd < 0)
        goto out;
    struct uffdio_api api = {.api = UFFD_API};
    struct uffdio_register reg = {.range = {.start = (uint64_t)(uintptr_t)mem, .len = len},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(j.uffd, UFFDIO_API, &api) < 0 || ioctl(j.uffd, UFFDIO_REGISTER, &reg) < 0)
        goto out;
    j.src = map_buf(4096);
    if (!j.src || pthread_create(&th, NULL, uffd_handler, &j) != 0)
        goto out;
    started = true;
    for (int i = 0; i < n; i++) {
        uint64_t t0 = migr_now_ns();
        (void)*(volatile uint8_t *)(mem + (uint64_t)i * 4096);
        v[i] = (double)(migr_now_ns() - t0) / 1e3;
    }
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    *p50 = pct_sorted(v, n, 50);
    *p99 = pct_sorted(v, n, 99);
out:
    if (started) {
        uint64_t one = 1;
        if (write(j.stopfd, &one, sizeof(one)) != sizeof(one))
            pthread_cancel(th);
        pthread_join(th, NULL);
    }
    if (j.src)
        munmap(j.src, 4096);
    if (mem != MAP_FAILED)
        munmap(mem, len);
    if (j.uffd >= 0)
        close(j.uffd);
    if (j.stopfd >= 0)
        close(j.stopfd);
    if (fd >= 0)
        close(fd);
    free(v);
}

/* ---------- the nested hypervisor's first-touch cost ---------- */

/* A guest sweeps a working set sequentially as fast as it can (data=zero: a
 * page write is 4 KiB of stores, so a fault stands out). Its first sweep
 * touches every page for the first time, its second does not; the
 * difference per page is what a first touch costs the guest.
 *   T_FRESH: the memfd pages do not exist yet (the host kernel allocates and
 *     zeroes each one, then KVM maps it: what a post-copy destination's
 *     guest pays on top of the fetch, and any guest touching new RAM);
 *   T_POPULATED: the host populated them before the guest started, so only
 *     KVM's mapping (an EPT violation handled through the outer hypervisor
 *     on this nested host) remains: what the guest pays on a pre-copy
 *     destination, whose RAM the receiver wrote but the guest never touched.
 * The first eighth of each sweep is skipped (vCPU start-up, the wrap). */
static void touch_once(int variant, struct touch_result *r)
{
    struct migr_vm_config cfg = {.mem_bytes = TOUCH_WS + 8 * MiB, .nvcpus = 1};
    struct migr_hv *hv = NULL;
    char spec[128];
    int rc;
    memset(r, 0, sizeof(*r));
    snprintf(spec, sizeof(spec), "rate=0,ws=%lluM,pattern=sequential,data=zero",
             (unsigned long long)(TOUCH_WS >> 20));
    migr_workload_defaults(&cfg.wl);
    if ((rc = migr_workload_parse(spec, &cfg.wl)) < 0 || (rc = migr_hv_create("kvm", &cfg, &hv)) < 0) {
        snprintf(r->why, sizeof(r->why), "guest: %s", migr_last_error());
        return;
    }
    for (uint32_t i = 0; variant == T_POPULATED && i < hv->nregions; i++)
        if (madvise(hv->regions[i].host, hv->regions[i].size, MADV_POPULATE_WRITE) < 0) {
            snprintf(r->why, sizeof(r->why), "MADV_POPULATE_WRITE: %s", strerror(errno));
            goto out;
        }
    uint64_t n = TOUCH_WS / MIGR_PAGE_SIZE;
    const uint64_t thr[4] = {n / 8, n, n + n / 8, 2 * n};
    uint64_t tt[4] = {0}, deadline = migr_now_ns() + 30000000000ull;
    int k = 0;
    if ((rc = hv->ops->resume(hv)) < 0) {
        snprintf(r->why, sizeof(r->why), "resume: %s", migr_last_error());
        goto out;
    }
    while (k < 4) {
        uint64_t w = migr_workload_progress(hv), t = migr_now_ns();
        while (k < 4 && w >= thr[k])
            tt[k++] = t;
        if (t > deadline || hv->ops->failed(hv))
            break;
        while (migr_now_ns() - t < 2000) /* don't hammer the counter's cache line */
            __asm__ __volatile__("pause");
    }
    if (k < 4) {
        snprintf(r->why, sizeof(r->why), "the guest did not finish two sweeps (%s)",
                 hv->ops->failed(hv) ? hv->failure : "timeout");
        goto out;
    }
    r->sweep1_ns = (double)(tt[1] - tt[0]) / (double)(n - n / 8);
    r->sweep2_ns = (double)(tt[3] - tt[2]) / (double)(n - n / 8);
    struct migr_verify_report rep;
    if ((rc = hv->ops->quiesce(hv, 10000)) < 0 || (rc = migr_workload_verify(hv, &rep)) < 0)
        snprintf(r->why, sizeof(r->why), "verify: %s", migr_last_error());
    else if (!rep.ok)
        snprintf(r->why, sizeof(r->why), "verify: %s", rep.first_bad_why);
    else
        r->ok = true;
out:
    migr_hv_destroy(hv);
}

/* ---------- one migration ---------- */

/* The receiver child (benchlib.h): never returns. Writes the bound URL, then
 * struct rx_result twice: once when the migration is over and the guest's
 * rate after it sampled, once more after verification. */
static void receiver(const char *listen_url, int wfd)
{
    bench_receiver(listen_url, wfd, &(struct rx_opts){.accept_ms = ACCEPT_TIMEOUT_MS, .after_ms = AFTER_MS, .early = true});
}

/* One repetition in three steps, so that creating the next source guest
 * (filling its RAM) overlaps the previous receiver's verification, which
 * measures nothing:
 *   job_start:  fork the receiver, create the source guest (paused);
 *   job_run:    resume, sample the guest, migrate, wait for the receiver's
 *               first message (migration result, rate after);
 *   job_finish: wait for the verification, reap the receiver.
 * Order: start(j), finish(j-1), run(j). */
struct job {
    int wi, mi, seq;
    bool no_cancel;
    double link_mbps;
    pid_t pid;
    int rfd;
    struct migr_hv *src;
    char bound[300];
    bool dead;                    /* failed before the migration: why is set */
    struct rep_result *res;
};

static void watch_child(pid_t pid, bool on)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (on ? g_children[i] == 0 : g_children[i] == pid) {
            g_children[i] = on ? pid : 0;
            return;
        }
}

static void job_kill(struct job *j)
{
    migr_hv_destroy(j->src);
    j->src = NULL;
    if (j->rfd >= 0)
        close(j->rfd);
    j->rfd = -1;
    if (j->pid > 0) {
        reap(j->pid, 0, NULL, 0);
        watch_child(j->pid, false);
    }
    j->pid = 0;
    j->dead = true;
}

static void job_start(const struct opts *o, struct job *j)
{
    char listen_url[128];
    struct migr_vm_config cfg = {.mem_bytes = o->mem, .nvcpus = 1};
    struct rep_result *res = j->res;
    int pfd[2], rc;

    memset(res, 0, sizeof(*res));
    res->wps_live = res->wps_pc = NAN;
    j->rfd = -1;
    if (o->tcp)
        snprintf(listen_url, sizeof(listen_url), "tcp:127.0.0.1:0");
    else
        snprintf(listen_url, sizeof(listen_url), "unix:@migr-bench-pc-%d-%d", (int)getpid(), j->seq);
    if (pipe(pfd) < 0) {
        snprintf(res->why, sizeof(res->why), "pipe: %s", strerror(errno));
        j->dead = true;
        return;
    }
    fflush(NULL);
    pid_t pid = fork(); /* before the guest exists: the child must not inherit its VM */
    if (pid < 0) {
        snprintf(res->why, sizeof(res->why), "fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        j->dead = true;
        return;
    }
    if (pid == 0) {
        close(pfd[0]);
        receiver(listen_url, pfd[1]);
    }
    j->pid = pid;
    watch_child(pid, true);
    close(pfd[1]);
    j->rfd = pfd[0];
    if ((rc = read_timeout(j->rfd, j->bound, sizeof(j->bound), 10000)) < 0 || !j->bound[0]) {
        snprintf(res->why, sizeof(res->why), "receiver did not listen on %s", listen_url);
        job_kill(j);
        return;
    }
    migr_workload_defaults(&cfg.wl);
    if ((rc = migr_workload_parse(workloads[j->wi].spec, &cfg.wl)) < 0 ||
        (rc = migr_hv_create("kvm", &cfg, &j->src)) < 0) {
        snprintf(res->why, sizeof(res->why), "source guest: %s", migr_last_error());
        job_kill(j);
    }
}

/* Progress callback: the guest's write count at the switch-over. It must be
 * read here, not after migr_send returns: in cancellable post-copy the source
 * applies the destination's checkpoints to its own RAM, write counters
 * included, so afterwards its copy shows the last checkpoint's count. */
struct pause_probe {
    struct migr_hv *hv;
    uint64_t w;
    bool seen;
};

static void on_progress(void *arg, const struct migr_progress *p)
{
    struct pause_probe *q = arg;
    if (!q->seen && strcmp(p->phase, "switchover") == 0) {
        q->w = migr_workload_progress(q->hv);
        q->seen = true;
    }
}

/* --link: a link slower than the guest dirties. The source's stream goes
 * through this wrapper, which lets sendv return only once the link would
 * have carried the bytes (a token bucket, no burst). Its transport name is
 * "limited", not "unix", so the engine opens no fault channel beside it (a
 * socketpair the wrapper could not slow down): faults and their answers
 * share the one limited stream, as on a real slow link. The destination's
 * checkpoints to the source are not limited. */
struct limited {
    struct migr_transport pub;    /* first */
    struct migr_transport *in;
    double ns_per_byte;
    uint64_t next_ns;
};
static struct migr_transport_ops lim_ops;

static int lim_sendv(struct migr_transport *t, const struct iovec *iov, int n)
{
    struct limited *l = (struct limited *)t;
    uint64_t len = 0;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    int err = l->in->ops->sendv(l->in, iov, n);
    t->bytes_sent = l->in->bytes_sent;
    uint64_t now = migr_now_ns();
    if (l->next_ns < now)
        l->next_ns = now;
    l->next_ns += (uint64_t)((double)len * l->ns_per_byte);
    if (l->next_ns > now) {
        struct timespec ts = {.tv_sec = (time_t)(l->next_ns / 1000000000ull),
                              .tv_nsec = (long)(l->next_ns % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
    }
    return err;
}

static int lim_recvv(struct migr_transport *t, const struct iovec *iov, int n)
{
    struct limited *l = (struct limited *)t;
    int err = l->in->ops->recvv(l->in, iov, n);
    t->bytes_recv = l->in->bytes_recv;
    return err;
}

static void lim_shutdown(struct migr_transport *t)
{
    struct limited *l = (struct limited *)t;
    l->in->ops->shutdown(l->in);
}

static void lim_close(struct migr_transport *t)
{
    struct limited *l = (struct limited *)t;
    migr_transport_close(l->in);
    free(l);
}

/* Wrap in (owned from here) so that it carries at most mbps MB/s. */
static struct migr_transport *limit_link(struct migr_transport *in, double mbps)
{
    struct limited *l = calloc(1, sizeof(*l));
    if (!l)
        return in;
    lim_ops = (struct migr_transport_ops){.name = "limited", .sendv = lim_sendv, .recvv = lim_recvv,
                                          .shutdown = lim_shutdown, .close = lim_close};
    l->in = in;
    l->ns_per_byte = 1e3 / mbps;
    l->pub.ops = &lim_ops;
    l->pub.fd = in->fd;
    snprintf(l->pub.peer, sizeof(l->pub.peer), "%s", in->peer);
    return &l->pub;
}

static void job_run(struct job *j)
{
    struct rep_result *res = j->res;
    struct migr_hv *src = j->src;
    struct migr_transport *t = NULL;
    int rc;
    if (j->dead)
        return;
    if ((rc = src->ops->resume(src)) < 0) {
        snprintf(res->why, sizeof(res->why), "source guest: %s", migr_last_error());
        job_kill(j);
        return;
    }
    sleep_ms(100); /* skip vCPU start-up */
    uint64_t w0 = migr_workload_progress(src);
    double t0 = now_s();
    sleep_ms(WARMUP_MS - 100);
    res->wps_before = (double)(migr_workload_progress(src) - w0) / (now_s() - t0);
    if (src->ops->failed(src)) {
        snprintf(res->why, sizeof(res->why), "source guest stopped: %s", src->failure);
        job_kill(j);
        return;
    }
    if ((rc = migr_transport_connect(j->bound, &t)) < 0) {
        snprintf(res->why, sizeof(res->why), "%s", migr_last_error());
        job_kill(j);
        return;
    }
    if (j->link_mbps > 0)
        t = limit_link(t, j->link_mbps);
    struct migr_send_params p;
    migr_send_params_init(&p);
    p.mode = modes[j->mi].postcopy_after < 0 ? MIGR_MODE_PRECOPY : modes[j->mi].postcopy_after == 0 ? MIGR_MODE_POSTCOPY : MIGR_MODE_HYBRID;
    p.hybrid_rounds = modes[j->mi].postcopy_after > 0 ? (uint32_t)modes[j->mi].postcopy_after : 1;
    p.cancellable = !j->no_cancel;
    struct pause_probe probe = {.hv = src};
    p.progress = on_progress;
    p.progress_arg = &probe;
    w0 = migr_workload_progress(src);
    struct cpu_mark c0, c1;
    cpu_mark(&c0, j->pid);
    migr_stats_init(&res->st);
    res->send_rc = migr_send(src, t, &p, &res->st);
    cpu_mark(&c1, j->pid);
    res->others = others_cpus(&c0, &c1);
    res->w_pause = probe.w;
    if (res->send_rc == 0 && !probe.seen) {
        snprintf(res->why, sizeof(res->why), "migr_send never reported the switchover");
        res->send_rc = -EPROTO;
    }
    uint64_t live_ns = res->st.total_ns - MIGR_MIN(res->st.total_ns, res->st.downtime_ns + res->st.postcopy.ns);
    if (res->send_rc == 0 && modes[j->mi].postcopy_after != 0 && live_ns) {
        res->has_live = true;
        res->wps_live = (double)(res->w_pause - w0) / ((double)live_ns / 1e9);
    }
    migr_hv_destroy(src);
    j->src = NULL;
    rc = read_timeout(j->rfd, &res->rx, sizeof(res->rx), RESULT_TIMEOUT_MS);
    migr_transport_close(t);
    if (rc < 0) {
        snprintf(res->why, sizeof(res->why), "%sno result from the receiver (%s)",
                 res->send_rc < 0 ? "send failed and " : "", rc == -ETIMEDOUT ? "timed out" : "it died");
        if (res->send_rc < 0)
            snprintf(res->why + strlen(res->why), sizeof(res->why) - strlen(res->why), ": %s", res->st.error);
        job_kill(j);
        return;
    }
    if (res->rx.rc == 0 && modes[j->mi].postcopy_after >= 0 && res->rx.st.postcopy.ns) {
        res->has_pc = true;
        res->wps_pc = (double)(res->rx.w_ret - res->w_pause) / ((double)res->rx.st.postcopy.ns / 1e9);
    }
}

static void job_finish(struct job *j)
{
    struct rep_result *res = j->res;
    if (j->dead)
        return;
    int rc = read_timeout(j->rfd, &res->rx, sizeof(res->rx), RESULT_TIMEOUT_MS);
    close(j->rfd);
    j->rfd = -1;
    if (res->send_rc < 0 && res->st.error[0])
        snprintf(res->why, sizeof(res->why), "send: %s", res->st.error);
    else if (res->send_rc < 0)
        ; /* why says it */
    else if (rc < 0)
        snprintf(res->why, sizeof(res->why), "no verification from the receiver (%s)",
                 rc == -ETIMEDOUT ? "timed out" : "it died");
    else if (res->rx.rc < 0)
        snprintf(res->why, sizeof(res->why), "receiver: %s", res->rx.error);
    else if (!res->st.verified || !res->rx.verified)
        snprintf(res->why, sizeof(res->why), "not verified");
    else
        res->ok = true;
    reap(j->pid, rc == -ETIMEDOUT ? 0 : 5000, res->why, sizeof(res->why));
    watch_child(j->pid, false);
    j->pid = 0;
}

/* ---------- reporting ---------- */

enum { M_TOTAL, M_DOWN, M_DST_DOWN, M_BYTES, M_ROUNDS, M_RESID, M_RESID_FLOOR, M_WPS_BEFORE, M_WPS_LIVE,
       M_WPS_PC, M_PC_PCT, M_WPS_AFTER, M_FAULTS, M_P50, M_P99, M_MAX, M_DEMAND, M_PUSHED, M_EPOCHS,
       M_BACK, M_SRC_EPOCHS, M_SRC_BACK, M_SRC_PUSHED, M_VERIFY, M_OTHERS, M_FREQ, M_FWAIT, M_FPLACE,
       M_SERVE, M_COUNT };
static const char *const metric_names[M_COUNT] = {
    "total_ms", "downtime_ms", "dst_downtime_ms", "bytes_sent", "rounds", "residence_ms",
    "residence_x_stream_floor", "writes_per_s_before", "writes_per_s_live_src", "writes_per_s_postcopy_dst",
    "postcopy_pct_of_before", "writes_per_s_after", "faults", "fault_p50_us", "fault_p99_us", "fault_max_us",
    "demand_pages", "pushed_pages", "epochs", "back_pages", "src_epochs_applied", "src_back_pages",
    "src_pushed_pages",
    "verify_ms", "other_load_cpus", "fault_req_us", "fault_wait_us", "fault_place_us", "src_serve_us",
};

struct row {
    int wi, mi, nok, nconv;
    double med[M_COUNT];
};

static void rep_metrics(const struct rep_result *r, const struct machine *m, double *v)
{
    const struct migr_stats *s = &r->st, *d = &r->rx.st;
    bool has_pc = r->has_pc;
    v[M_TOTAL] = (double)s->total_ns / 1e6;
    v[M_DOWN] = (double)s->downtime_ns / 1e6;
    v[M_DST_DOWN] = (double)d->downtime_ns / 1e6;
    v[M_BYTES] = (double)s->wire_bytes;
    v[M_ROUNDS] = s->precopy.rounds;
    v[M_RESID] = has_pc ? (double)d->postcopy.ns / 1e6 : NAN;
    /* the floor: the whole RAM through the raw unix stream */
    double floor_ms = m->unix_mbps > 0 ? (double)s->ram_bytes / m->unix_mbps / 1e3 : 0;
    v[M_RESID_FLOOR] = has_pc && floor_ms > 0 ? v[M_RESID] / floor_ms : NAN;
    v[M_WPS_BEFORE] = r->wps_before;
    v[M_WPS_LIVE] = r->has_live ? r->wps_live : NAN;
    v[M_WPS_PC] = has_pc ? r->wps_pc : NAN;
    v[M_PC_PCT] = has_pc && r->wps_before > 0 ? 100 * r->wps_pc / r->wps_before : NAN;
    v[M_WPS_AFTER] = r->rx.wps_after;
    v[M_FAULTS] = has_pc ? (double)d->postcopy.faults : NAN;
    v[M_P50] = has_pc ? d->postcopy.fault_p50_us : NAN;
    v[M_P99] = has_pc ? d->postcopy.fault_p99_us : NAN;
    v[M_MAX] = has_pc ? d->postcopy.fault_max_us : NAN;
    v[M_DEMAND] = has_pc ? (double)d->postcopy.demand_pages : NAN;
    v[M_PUSHED] = has_pc ? (double)d->postcopy.pushed_pages : NAN;
    v[M_EPOCHS] = has_pc ? (double)d->postcopy.epochs : NAN;
    v[M_BACK] = has_pc ? (double)d->postcopy.back_pages : NAN;
    v[M_SRC_EPOCHS] = has_pc ? (double)s->postcopy.epochs : NAN;
    v[M_SRC_BACK] = has_pc ? (double)s->postcopy.back_pages : NAN;
    v[M_SRC_PUSHED] = has_pc ? (double)s->postcopy.pushed_pages : NAN;
    v[M_VERIFY] = (double)r->rx.verify_ns / 1e6;
    v[M_OTHERS] = r->others;
    bool ph = has_pc && d->postcopy.fault_channel && d->postcopy.fault_wait_us > 0;
    v[M_FREQ] = ph ? d->postcopy.fault_req_us : NAN;
    v[M_FWAIT] = ph ? d->postcopy.fault_wait_us : NAN;
    v[M_FPLACE] = ph ? d->postcopy.fault_place_us : NAN;
    v[M_SERVE] = has_pc && s->postcopy.serve_p50_us > 0 ? s->postcopy.serve_p50_us : NAN;
}

/* Median over the values that exist (NaN = not applicable). */
static double median_nan(const double *v, int n)
{
    double s[64];
    int k = 0;
    for (int i = 0; i < n && k < 64; i++)
        if (!isnan(v[i]))
            s[k++] = v[i];
    return k ? median(s, k) : NAN;
}

static void json_num(FILE *f, double x, const char *fmt)
{
    if (isnan(x))
        fputs("null", f);
    else
        fprintf(f, fmt, x);
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
    fprintf(f, "},\"writes\":{\"at_pause\":%llu,\"at_residence\":%llu},\"writes_per_s\":{\"before\":%.0f,"
               "\"live_src\":", (unsigned long long)r->w_pause, (unsigned long long)r->rx.w_ret, r->wps_before);
    json_num(f, r->has_live ? r->wps_live : NAN, "%.0f");
    fputs(",\"postcopy_dst\":", f);
    json_num(f, r->has_pc ? r->wps_pc : NAN, "%.0f");
    fprintf(f, ",\"after\":%.0f},\"other_load_cpus\":%.2f}", r->rx.wps_after, r->others);
}

static int write_json(const struct opts *o, const struct machine *m, const struct touch_result (*tr)[64],
                      int ntouch, const double *touch_med, const struct row *rows, int nrows,
                      struct rep_result (*reps)[64])
{
    int err = mkdir_p(o->json);
    FILE *f = err < 0 ? NULL : fopen(o->json, "w");
    if (!f) {
        fprintf(stderr, "bench_postcopy: cannot write %s: %s\n", o->json, strerror(err < 0 ? -err : errno));
        return -1;
    }
    struct utsname u;
    uname(&u);
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\"bench\":\"postcopy\",\"version\":1,\"date\":\"%s\",\"host\":{\"cpus\":%ld,\"kernel\":", date,
            sysconf(_SC_NPROCESSORS_ONLN));
    json_str(f, u.release);
    fprintf(f, "},\n\"params\":{\"mem_bytes\":%llu,\"reps\":%d,\"quick\":%s,\"vcpus\":1,\"transport\":\"unix\","
               "\"downtime_target_ms\":300,\"warmup_ms\":%d,\"after_ms\":%d,\"prepage\":8,\"no_cancel\":%s,"
               "\"link_mbps\":%.0f,\"migration_transport\":\"%s\"},\n",
            (unsigned long long)o->mem, o->reps, o->quick ? "true" : "false", WARMUP_MS, AFTER_MS,
            o->no_cancel ? "true" : "false", o->link_mbps, o->tcp ? "tcp" : "unix");
    fprintf(f, "\"machine\":{\"memcpy_mbps\":%.1f,\"unix_stream_mbps\":%.1f,\"unix_rtt_4k_p50_us\":%.2f,"
               "\"unix_rtt_4k_p99_us\":%.2f,\"uffd_fault_p50_us\":%.2f,\"uffd_fault_p99_us\":%.2f,"
               "\"fault_floor_us\":%.2f,\"buffer_bytes\":%llu,\"stream_bytes\":%llu,\"runs\":%d,"
               "\"other_load_cpus\":%.2f},\n\"other_load_cpus_run\":%.2f,\n",
            m->memcpy_mbps, m->unix_mbps, m->rtt_p50_us, m->rtt_p99_us, m->uffd_p50_us, m->uffd_p99_us,
            m->rtt_p50_us + m->uffd_p50_us, (unsigned long long)m->buf_bytes, (unsigned long long)m->stream_bytes,
            m->runs, m->others_limits, m->others_run);
    fprintf(f, "\"first_touch\":{\"measured\":%s,\"ws_bytes\":%llu,\"spec\":\"rate=0,pattern=sequential,"
               "data=zero\",\"variants\":[",
            ntouch ? "true" : "false", (unsigned long long)TOUCH_WS);
    for (int v = 0; ntouch && v < T_COUNT; v++) {
        int nok = 0;
        for (int k = 0; k < ntouch; k++)
            nok += tr[v][k].ok;
        fprintf(f, "%s{\"name\":\"%s\",\"what\":\"%s\",\"status\":\"%s\",\"median\":{\"first_sweep_ns_per_page\":",
                v ? "," : "", touch_names[v], touch_desc[v], nok == ntouch ? "ok" : "FAIL");
        json_num(f, touch_med[v * 3 + 0], "%.1f");
        fputs(",\"touched_sweep_ns_per_page\":", f);
        json_num(f, touch_med[v * 3 + 1], "%.1f");
        fputs(",\"first_touch_ns_per_page\":", f);
        json_num(f, touch_med[v * 3 + 2], "%.1f");
        fputs("},\"runs\":[", f);
        for (int k = 0; k < ntouch; k++) {
            fprintf(f, "%s{\"ok\":%s,\"first_sweep_ns_per_page\":%.1f,\"touched_sweep_ns_per_page\":%.1f,\"error\":",
                    k ? "," : "", tr[v][k].ok ? "true" : "false", tr[v][k].sweep1_ns, tr[v][k].sweep2_ns);
            json_str(f, tr[v][k].why);
            fputc('}', f);
        }
        fputs("]}", f);
    }
    fputs("]},\n\"rows\":[\n", f);
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        fprintf(f, "{\"name\":\"%s/%s\",\"workload\":\"%s\",\"workload_spec\":\"%s\",\"mode\":\"%s\","
                   "\"postcopy_after\":%d,\"status\":\"%s\",\"reps\":%d,\"verified_reps\":%d,\"converged_reps\":%d,"
                   "\"median\":{",
                workloads[r->wi].name, modes[r->mi].name, workloads[r->wi].name, workloads[r->wi].spec,
                modes[r->mi].name, modes[r->mi].postcopy_after, r->nok == o->reps ? "ok" : "FAIL", o->reps, r->nok,
                r->nconv);
        for (int k = 0; k < M_COUNT; k++) {
            fprintf(f, "%s\"%s\":", k ? "," : "", metric_names[k]);
            json_num(f, r->med[k], "%.3f");
        }
        fprintf(f, "},\n \"runs\":[");
        for (int k = 0; k < o->reps; k++) {
            fprintf(f, k ? ",\n  " : "\n  ");
            print_rep_json(f, &reps[i][k]);
        }
        fprintf(f, "]}%s\n", i + 1 < nrows ? "," : "");
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "bench_postcopy: writing %s: %s\n", o->json, strerror(errno));
        return -1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_postcopy [options]\n"
            "Migrate a running KVM guest between two processes over a unix socket with pre-copy,\n"
            "hybrid (1 pre-copy round, then post-copy) and cancellable post-copy, at three dirty\n"
            "rates (64M, 128M, unthrottled; random text pages); verify every result on the\n"
            "destination; report downtime, time to full residence, fault latency and the guest's\n"
            "own write rate before / during / after, next to this machine's limits; and the\n"
            "nested hypervisor's first-touch cost of a guest page.\n"
            "  --mem SIZE    guest RAM (default 1G; K/M/G suffixes, multiple of 2M)\n"
            "  --reps N      repetitions per configuration, medians reported (default 3)\n"
            "  --quick       --mem 128M --reps 1, workload dirty64M only: a smoke run of seconds\n"
            "                (explicit --mem/--reps/--only still win)\n"
            "  --json PATH   results file (default bench/results/postcopy.json)\n"
            "  --only TEXT   run only configurations whose name (e.g. dirty64M/postcopy) contains TEXT\n"
            "  --no-touch    skip the first-touch measurement\n"
            "  --no-cancel   post-copy and hybrid without take-back (no checkpoints to the source)\n"
            "  --link MBPS   limit the source's stream to MBPS MB/s (a link slower than the guest\n"
            "                dirties; faults share that stream: no fault channel)\n"
            "  --tcp         migrate over TCP loopback instead of a unix socket (limits stay unix)\n"
            "  -h, --help    this text\n"
            "Exit: 0 every migration verified, 1 a configuration failed, 2 usage, 77 no /dev/kvm.\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"mem", required_argument, NULL, 'm'},  {"reps", required_argument, NULL, 'r'},
        {"quick", no_argument, NULL, 'q'},      {"json", required_argument, NULL, 'j'},
        {"only", required_argument, NULL, 'o'}, {"no-touch", no_argument, NULL, 'T'},
        {"no-cancel", no_argument, NULL, 'C'},  {"link", required_argument, NULL, 'L'},
        {"tcp", no_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    uint64_t mem = 0;
    int reps = 0, c;
    *o = (struct opts){.mem = 1ull << 30, .reps = 3, .json = "bench/results/postcopy.json"};
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
        case 'T':
            o->no_touch = true;
            break;
        case 'C':
            o->no_cancel = true;
            break;
        case 'P':
            o->tcp = true;
            break;
        case 'L': {
            char *end;
            o->link_mbps = strtod(optarg, &end);
            if (*end || !(o->link_mbps >= 1 && o->link_mbps <= 1e6)) {
                fprintf(stderr, "bench_postcopy: --link %s: need MB/s, 1..1000000\n", optarg);
                return -1;
            }
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
        fprintf(stderr, "bench_postcopy: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    bool any = !o->only;
    for (int wi = 0; wi < NW; wi++)
        for (int mi = 0; mi < NM; mi++) {
            char cname[48];
            snprintf(cname, sizeof(cname), "%s/%s", workloads[wi].name, modes[mi].name);
            any |= o->only && strstr(cname, o->only);
        }
    if (!any) {
        fprintf(stderr, "bench_postcopy: --only %s matches no configuration "
                        "(dirty64M|dirty128M|unthrottled|ws256M / precopy|hybrid|postcopy)\n", o->only);
        return -1;
    }
    if (o->quick) {
        o->mem = 128 * MiB;
        o->reps = 1;
    }
    if (mem)
        o->mem = mem;
    if (reps)
        o->reps = reps;
    return 0;
}

static void fmt_num(char *buf, size_t cap, double x, const char *fmt)
{
    if (isnan(x))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, fmt, x);
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

    struct machine m = {.buf_bytes = 256 * MiB, .stream_bytes = o.quick ? 256 * MiB : 1024 * MiB,
                        .runs = o.quick ? 3 : 5};
    printf("bench_postcopy: guest %llu MiB, 1 vCPU, unix socket, %d rep%s per configuration, downtime target "
           "300 ms; post-copy %s\n", (unsigned long long)(o.mem >> 20), o.reps, o.reps > 1 ? "s" : "",
           o.no_cancel ? "without take-back (--no-cancel)" : "cancellable (checkpoints back to the source)");
    if (o.tcp)
        printf("transport: TCP loopback (--tcp; the machine limits below are still measured over unix)\n");
    if (o.link_mbps > 0)
        printf("link: the source's stream limited to %.0f MB/s (--link; faults share it: no fault channel)\n",
               o.link_mbps);
    struct cpu_mark run0, c1;
    cpu_mark(&run0, 0);
    m.memcpy_mbps = measure_memcpy(m.buf_bytes, m.runs);
    char url[64];
    double sv[16];
    for (int i = 0; i < 3; i++) {
        snprintf(url, sizeof(url), "unix:@migr-bench-pc-%d-stream%d", (int)getpid(), i);
        sv[i] = measure_stream_once(url, m.stream_bytes, m.buf_bytes);
    }
    m.unix_mbps = median(sv, 3);
    measure_rtt(o.quick ? 2000 : 10000, 4096 + 16, 0, &m.rtt_p50_us, &m.rtt_p99_us);
    measure_uffd(o.quick ? 4096 : 16384, &m.uffd_p50_us, &m.uffd_p99_us);
    cpu_mark(&c1, 0);
    m.others_limits = others_cpus(&run0, &c1);
    printf("machine limits (median): memcpy %.0f MB/s; raw unix stream %.0f MB/s (%.0f%% of memcpy; %llu MiB "
           "of RAM in %.0f ms);\n  unix round trip (16 B out, 4 KiB back) p50 %.1f us, p99 %.1f us; local "
           "userfaultfd fault (memfd, UFFDIO_COPY) p50 %.1f us, p99 %.1f us\n  => a post-copy fault cannot be "
           "served in less than ~%.1f us\n",
           m.memcpy_mbps, m.unix_mbps, m.memcpy_mbps > 0 ? 100 * m.unix_mbps / m.memcpy_mbps : 0,
           (unsigned long long)(o.mem >> 20), m.unix_mbps > 0 ? (double)o.mem / m.unix_mbps / 1e3 : 0,
           m.rtt_p50_us, m.rtt_p99_us, m.uffd_p50_us, m.uffd_p99_us, m.rtt_p50_us + m.uffd_p50_us);

    /* The nested hypervisor's first touch of a guest page. */
    static struct touch_result tr[T_COUNT][64];
    double touch_med[T_COUNT * 3];
    int ntouch = 0, failed = 0;
    fflush(stderr);
    for (int i = 0; i < T_COUNT * 3; i++)
        touch_med[i] = NAN;
    if (!o.no_touch && !o.only) {
        ntouch = o.reps;
        for (int k = 0; k < ntouch; k++)
            for (int v = 0; v < T_COUNT; v++) {
                alarm(REP_WATCHDOG_S);
                touch_once(v, &tr[v][k]);
                alarm(0);
                if (!tr[v][k].ok)
                    fprintf(stderr, "FAIL first-touch %s rep %d: %s\n", touch_names[v], k + 1, tr[v][k].why);
            }
        printf("\nfirst touch of a guest page (guest sweeps %llu MiB sequentially, rate=0, data=zero; ns per page,"
               " median of %d)\n", (unsigned long long)(TOUCH_WS >> 20), ntouch);
        printf("%-50s %-6s %12s %12s %14s\n", "memory", "status", "first sweep", "2nd sweep", "first touch");
        for (int v = 0; v < T_COUNT; v++) {
            double a[64], b[64], d[64];
            int n = 0;
            for (int k = 0; k < ntouch; k++)
                if (tr[v][k].ok) {
                    a[n] = tr[v][k].sweep1_ns;
                    b[n] = tr[v][k].sweep2_ns;
                    d[n] = a[n] - b[n];
                    n++;
                }
            if (n) {
                touch_med[v * 3 + 0] = median(a, n);
                touch_med[v * 3 + 1] = median(b, n);
                touch_med[v * 3 + 2] = median(d, n);
            }
            failed += n != ntouch;
            char s1[32], s2[32], s3[32];
            fmt_num(s1, sizeof(s1), touch_med[v * 3 + 0], "%.0f ns");
            fmt_num(s2, sizeof(s2), touch_med[v * 3 + 1], "%.0f ns");
            fmt_num(s3, sizeof(s3), touch_med[v * 3 + 2], "+%.0f ns");
            printf("%-50s %-6s %12s %12s %14s\n", touch_desc[v], n == ntouch ? "ok" : "FAIL", s1, s2, s3);
        }
        printf("\n");
    } else {
        printf("\nfirst touch of a guest page: not measured (%s)\n\n", o.no_touch ? "--no-touch" : "--only");
    }

    static struct row rows[NW * NM];
    static struct rep_result reps[NW * NM][64];
    static struct job jobs[NW * NM * 64];
    int nrows = 0, njobs = 0;
    for (int wi = 0; wi < NW; wi++)
        for (int mi = 0; mi < NM; mi++) {
            char cname[48];
            snprintf(cname, sizeof(cname), "%s/%s", workloads[wi].name, modes[mi].name);
            if (o.only && !strstr(cname, o.only))
                continue;
            if (o.quick && !o.only && strcmp(workloads[wi].name, quick_workload) != 0)
                continue;
            rows[nrows] = (struct row){.wi = wi, .mi = mi};
            for (int k = 0; k < o.reps; k++, njobs++)
                jobs[njobs] = (struct job){.wi = wi, .mi = mi, .seq = njobs, .no_cancel = o.no_cancel,
                                            .link_mbps = o.link_mbps, .res = &reps[nrows][k]};
            nrows++;
        }
    /* start(j), finish(j-1), run(j): the next guest is built while the
     * previous receiver verifies. */
    for (int k = 0; k <= njobs; k++) {
        alarm(REP_WATCHDOG_S);
        if (k < njobs)
            job_start(&o, &jobs[k]);
        if (k > 0)
            job_finish(&jobs[k - 1]);
        if (k < njobs)
            job_run(&jobs[k]);
        alarm(0);
    }
    for (int i = 0, k = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        static double v[M_COUNT][64];
        char cname[48];
        snprintf(cname, sizeof(cname), "%s/%s", workloads[r->wi].name, modes[r->mi].name);
        for (int rep = 0; rep < o.reps; rep++, k++) {
            struct rep_result *x = jobs[k].res;
            if (!x->ok) {
                fprintf(stderr, "FAIL %s rep %d: %s\n", cname, rep + 1, x->why);
                continue;
            }
            double mv[M_COUNT];
            rep_metrics(x, &m, mv);
            for (int j2 = 0; j2 < M_COUNT; j2++)
                v[j2][r->nok] = mv[j2];
            r->nok++;
            r->nconv += x->st.precopy.converged;
        }
        for (int j2 = 0; j2 < M_COUNT; j2++)
            r->med[j2] = median_nan(v[j2], r->nok);
        failed += r->nok != o.reps;
        fprintf(stderr, "  %s: %d/%d verified\n", cname, r->nok, o.reps);
    }

    printf("migrations over unix (median of %d; MB = 10^6 bytes; down = source paused -> DONE received; dst down =\n"
           " SWITCHOVER received -> guest resumed there; resident = destination's post-copy phase, guest running until\n"
           " every page is there; xfloor = that / (RAM through the raw unix stream))\n", o.reps);
    printf("%-22s %-6s %9s %8s %8s %5s %6s %8s %10s %6s\n", "config", "status", "total ms", "down ms", "dst down",
           "conv", "rounds", "sent MB", "resident", "xfloor");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        char name[48], conv[16], res[32], xf[32];
        snprintf(name, sizeof(name), "%s/%s", workloads[r->wi].name, modes[r->mi].name);
        if (modes[r->mi].postcopy_after == 0)
            snprintf(conv, sizeof(conv), "-"); /* no pre-copy round to converge */
        else
            snprintf(conv, sizeof(conv), "%d/%d", r->nconv, r->nok);
        fmt_num(res, sizeof(res), r->med[M_RESID], "%.0f ms");
        fmt_num(xf, sizeof(xf), r->med[M_RESID_FLOOR], "%.1fx");
        printf("%-22s %-6s %9.1f %8.1f %8.1f %5s %6.0f %8.1f %10s %6s\n", name, r->nok == o.reps ? "ok" : "FAIL",
               r->med[M_TOTAL], r->med[M_DOWN], r->med[M_DST_DOWN], conv, r->med[M_ROUNDS], r->med[M_BYTES] / 1e6,
               res, xf);
    }
    printf("\nthe guest's page writes per second (median): before (source), while pre-copy rounds ran (source),\n"
           "while it ran on the destination during post-copy (and as %% of before), after (destination, the "
           "first %d ms once every page is resident)\n", AFTER_MS);
    printf("%-22s %9s %9s %10s %7s %9s %9s %7s\n", "config", "before", "src live", "dst pcopy", "%", "after",
           "verify ms", "others");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        char name[48], live[32], pc[32], pct[32];
        snprintf(name, sizeof(name), "%s/%s", workloads[r->wi].name, modes[r->mi].name);
        fmt_num(live, sizeof(live), r->med[M_WPS_LIVE], "%.0f");
        fmt_num(pc, sizeof(pc), r->med[M_WPS_PC], "%.0f");
        fmt_num(pct, sizeof(pct), r->med[M_PC_PCT], "%.0f%%");
        printf("%-22s %9.0f %9s %10s %7s %9.0f %9.0f %7.2f\n", name, r->med[M_WPS_BEFORE], live, pc, pct,
               r->med[M_WPS_AFTER], r->med[M_VERIFY], r->med[M_OTHERS]);
    }
    printf("\npost-copy phase, destination's stats (median): fault = guest fault seen -> page placed\n");
    printf("%-22s %7s %7s %7s %7s %7s %8s %8s %6s %7s %7s\n", "config", "faults", "p50 us", "p99 us", "max us",
           "demand", "pushed", "src push", "epochs", "back pg", "src ep.");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        if (modes[r->mi].postcopy_after < 0)
            continue;
        char name[48], c[10][32];
        snprintf(name, sizeof(name), "%s/%s", workloads[r->wi].name, modes[r->mi].name);
        fmt_num(c[0], 32, r->med[M_FAULTS], "%.0f");
        fmt_num(c[1], 32, r->med[M_P50], "%.0f");
        fmt_num(c[2], 32, r->med[M_P99], "%.0f");
        fmt_num(c[3], 32, r->med[M_MAX], "%.0f");
        fmt_num(c[4], 32, r->med[M_DEMAND], "%.0f");
        fmt_num(c[5], 32, r->med[M_PUSHED], "%.0f");
        fmt_num(c[6], 32, r->med[M_EPOCHS], "%.0f");
        fmt_num(c[7], 32, r->med[M_BACK], "%.0f");
        fmt_num(c[8], 32, r->med[M_SRC_EPOCHS], "%.0f");
        fmt_num(c[9], 32, r->med[M_SRC_PUSHED], "%.0f");
        printf("%-22s %7s %7s %7s %7s %7s %8s %8s %6s %7s %7s\n", name, c[0], c[1], c[2], c[3], c[4], c[5], c[9],
               c[6], c[7], c[8]);
    }
    printf("\nwhere a fault's time goes (median, fault channel): req = uffd event read -> PAGE_REQ sent; wait ="
           " -> the\n answer's header read (src serve = PAGE_REQ read -> page sent, at the source); place = -> "
           "UFFDIO_COPY done\n");
    printf("%-22s %8s %8s %10s %8s %8s\n", "config", "p50 us", "req us", "wait us", "(serve)", "place us");
    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        if (modes[r->mi].postcopy_after < 0)
            continue;
        char name[48], c[5][32];
        snprintf(name, sizeof(name), "%s/%s", workloads[r->wi].name, modes[r->mi].name);
        fmt_num(c[0], 32, r->med[M_P50], "%.1f");
        fmt_num(c[1], 32, r->med[M_FREQ], "%.1f");
        fmt_num(c[2], 32, r->med[M_FWAIT], "%.1f");
        fmt_num(c[3], 32, r->med[M_SERVE], "%.1f");
        fmt_num(c[4], 32, r->med[M_FPLACE], "%.1f");
        printf("%-22s %8s %8s %10s %8s %8s\n", name, c[0], c[1], c[2], c[3], c[4]);
    }
    struct cpu_mark run1;
    cpu_mark(&run1, 0);
    m.others_run = others_cpus(&run0, &run1);
    double ept_us = isnan(touch_med[T_POPULATED * 3 + 2]) ? 0 : touch_med[T_POPULATED * 3 + 2] / 1e3;
    printf("(floor for a fault: unix round trip + local userfaultfd fault%s = %.1f us; pushed = the destination's\n"
           " figure (pages placed - demand pages); src push = pages the source pushed in the background;\n"
           " epochs/back pg = checkpoints and pages the destination sent back; src ep. = checkpoints the source\n"
           " applied; others = CPUs used by other processes on this %ld-CPU machine during migr_send, %.2f over\n"
           " the whole run)\n", ept_us > 0 ? " + KVM's first touch of a host-populated page" : "",
           m.rtt_p50_us + m.uffd_p50_us + ept_us, sysconf(_SC_NPROCESSORS_ONLN), m.others_run);
    if (m.others_run > 0.2 || m.others_limits > 0.2)
        printf("WARNING: other processes were busy while this ran (%.2f CPUs on average, %.2f during the "
               "limit measurements): figures are lower and noisier than on an idle machine\n",
               m.others_run, m.others_limits);
    if (write_json(&o, &m, (const struct touch_result(*)[64])tr, ntouch, touch_med, rows, nrows, reps) == 0)
        printf("\nresults: %s\n", o.json);
    if (failed)
        printf("FAIL: %d configuration%s had unverified results (see stderr and the JSON)\n", failed,
               failed > 1 ? "s" : "");
    return failed ? 1 : 0;
}
