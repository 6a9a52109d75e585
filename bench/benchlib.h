/* benchlib.h: helpers shared by bench_migrate.c, bench_postcopy.c and
 * bench_handover.c (timing, statistics, JSON, CPU accounting, child
 * processes, the machine's memcpy / stream limits).
 *
 * Header-only: every function is static inline, so each benchmark stays a
 * single translation unit. Define BENCH_NAME (the program name, used as the
 * prefix of error messages) before including this file.
 */
#ifndef BENCH_BENCHLIB_H
#define BENCH_BENCHLIB_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/engine.h"
#include "migr/hv.h"
#include "migr/transport.h"
#include "migr/workload.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME before including benchlib.h"
#endif

#define STREAM_WRITE (1u << 20)     /* the transport ceiling uses 1 MiB writes */

/* Monotonic time in seconds. */
static inline double now_s(void)
{
    return (double)migr_now_ns() / 1e9;
}

/* Sleep ms milliseconds, resuming after signals. */
static inline void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* qsort comparator for doubles, ascending. */
static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of the first n (at most 64) values of v; 0 when n <= 0. */
static inline double median(const double *v, int n)
{
    if (n <= 0)
        return 0;
    double s[64];
    n = n > 64 ? 64 : n;
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Percentile of a sorted array. */
static inline double pct_sorted(const double *s, int n, int p)
{
    return n ? s[(int64_t)n * p / 100 >= n ? n - 1 : (int64_t)n * p / 100] : 0;
}

/* bytes over ns as MB/s (10^6 bytes per second); 0 when ns is 0. */
static inline double mbps(uint64_t bytes, uint64_t ns)
{
    return ns ? (double)bytes * 1e3 / (double)ns : 0;
}

/* Write s to f as a JSON string literal. */
static inline void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

/* Create every directory leading up to path's last component. */
static inline int mkdir_p(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return 0;
}

/* CPU accounting, to tell how much of the machine other processes took
 * while we measured (a shared 2-core machine: their guests spin too). */
struct cpu_mark {
    uint64_t busy, total;          /* /proc/stat, all CPUs, clock ticks */
    uint64_t ours;                 /* this process (all threads) + the live receiver */
};

/* CPU ticks used by pid and its reaped children, from /proc/<pid>/stat. */
static inline uint64_t proc_pid_cpu(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* comm may contain spaces */
    unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
    /* utime stime cutime cstime: reaped children (stream readers, receivers) count as ours */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &ut, &st, &cut,
                     &cst) != 4)
        return 0;
    return ut + st + cut + cst;
}

/* Snapshot /proc/stat and our own (plus child's) CPU ticks into m. */
static inline void cpu_mark(struct cpu_mark *m, pid_t child)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    memset(m, 0, sizeof(*m));
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]) == 8) {
            for (int i = 0; i < 8; i++)
                m->total += v[i];
            m->busy = m->total - v[3] - v[4]; /* minus idle, iowait (guest time is inside user) */
        }
        fclose(f);
    }
    m->ours = proc_pid_cpu(getpid()) + (child > 0 ? proc_pid_cpu(child) : 0);
}

/* CPUs' worth of work done by other processes between a and b. */
static inline double others_cpus(const struct cpu_mark *a, const struct cpu_mark *b)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (b->total <= a->total || ncpu < 1)
        return 0;
    double wall = (double)(b->total - a->total) / (double)ncpu;
    double other = (double)(b->busy - a->busy) - (double)(b->ours - a->ours);
    return other > 0 ? other / wall : 0;
}

/* Read exactly len bytes from fd within timeout_ms. 0, -ETIMEDOUT, -EPIPE. */
static inline int read_timeout(int fd, void *buf, size_t len, int timeout_ms)
{
    uint8_t *p = buf;
    double deadline = now_s() + timeout_ms / 1e3;
    while (len) {
        int left = (int)((deadline - now_s()) * 1e3);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0)
            return -ETIMEDOUT;
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Wait up to grace_ms for child pid to exit, then kill it. A receiver that
 * died by itself (or that we had to kill) is noted in why. */
static inline void reap(pid_t pid, int grace_ms, char *why, size_t cap)
{
    int status = 0;
    pid_t r;
    for (int waited = 0;; waited += 10) {
        r = waitpid(pid, &status, WNOHANG);
        if (r != 0 || waited >= grace_ms)
            break;
        sleep_ms(10);
    }
    if (r == 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (why && grace_ms > 0)
            snprintf(why + strlen(why), cap - strlen(why), " (receiver killed after %d ms)", grace_ms);
        return;
    }
    if (why && r == pid && WIFSIGNALED(status))
        snprintf(why + strlen(why), cap - strlen(why), " (receiver died of signal %d)", WTERMSIG(status));
    else if (why && r == pid && WIFEXITED(status) && WEXITSTATUS(status) != 0)
        snprintf(why + strlen(why), cap - strlen(why), " (receiver exit status %d)", WEXITSTATUS(status));
}

/* Round trips over a unix socket between two processes: a 16-byte request,
 * an answer of `answer` bytes (at most 4 KiB + 16: a post-copy fault's page
 * and its header; 16: a small record each way, as a switch-over's), back
 * to back. busy > 0: that many threads (in a third process, nice +5 as
 * migr's post-copy push) keep the CPUs busy meanwhile, and each request
 * follows a 20 us sleep, so that both sides sleep between round trips as a
 * fault path does under a post-copy's push. */
static inline void *rtt_busy_loop(void *arg)
{
    (void)arg;
    (void)setpriority(PRIO_PROCESS, 0, 5);
    static volatile uint8_t sink[1 << 16];
    for (;;)
        for (unsigned i = 0; i < sizeof(sink); i += 64)
            sink[i]++;
    return NULL;
}

static inline void measure_rtt(int n, size_t answer, int busy, double *p50, double *p99)
{
    int sv[2];
    pid_t hog = -1;
    *p50 = *p99 = 0;
    if (answer > 4096 + 16)
        answer = 4096 + 16;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    fflush(NULL);
    if (busy > 0 && (hog = fork()) == 0) {
        close(sv[0]);
        close(sv[1]);
        for (int i = 0; i < busy; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, rtt_busy_loop, NULL) != 0)
                _exit(1);
        }
        for (;;)
            pause();
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        if (hog > 0)
            reap(hog, 0, NULL, 0);
        return;
    }
    if (pid == 0) {
        static uint8_t page[4096 + 16];
        uint8_t req[16];
        close(sv[0]);
        memset(page, 0x33, sizeof(page));
        for (;;) {
            if (migr_read_full(sv[1], req, sizeof(req)) < 0)
                _exit(0);
            if (migr_write_full(sv[1], page, answer) < 0)
                _exit(1);
        }
    }
    close(sv[1]);
    double *v = calloc((size_t)n, sizeof(double));
    static uint8_t page[4096 + 16];
    uint8_t req[16] = {1};
    int k = 0;
    for (int i = 0; v && i < n + 100; i++) {
        if (busy > 0)
            usleep(20);
        uint64_t t0 = migr_now_ns();
        if (migr_write_full(sv[0], req, sizeof(req)) < 0 || migr_read_full(sv[0], page, answer) < 0)
            break;
        if (i >= 100) /* warm-up */
            v[k++] = (double)(migr_now_ns() - t0) / 1e3;
    }
    close(sv[0]);
    reap(pid, 5000, NULL, 0);
    if (hog > 0)
        reap(hog, 0, NULL, 0);
    if (v && k) {
        qsort(v, (size_t)k, sizeof(double), cmp_double);
        *p50 = pct_sorted(v, k, 50);
        *p99 = pct_sorted(v, k, 99);
    }
    free(v);
}

/* An anonymous private mapping of len bytes, every page touched; NULL on failure. */
static inline void *map_buf(uint64_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0x5a, len); /* fault everything in before timing */
    return p;
}

/* Single-thread memcpy of len bytes, buffers far larger than the caches. */
static inline double measure_memcpy(uint64_t len, int runs)
{
    uint8_t *a = map_buf(len), *b = map_buf(len);
    double v[16];
    if (!a || !b)
        return 0;
    memcpy(b, a, len); /* warm the TLB and the allocator path once */
    for (int i = 0; i < runs; i++) {
        uint64_t t0 = migr_now_ns();
        memcpy(b, a, len);
        __asm__ __volatile__("" ::"r"(b) : "memory");
        v[i] = mbps(len, migr_now_ns() - t0);
    }
    munmap(a, len);
    munmap(b, len);
    return median(v, runs);
}

/* One process writes total bytes in 1 MiB writes to another over a socket
 * set up by migr's own transport code (same buffer sizes, TCP_NODELAY);
 * timed from the first write to the reader's one-byte acknowledgement. Both
 * sides walk through a buffer of buf_len bytes (out of cache, like guest RAM
 * on both ends of a migration); a 1 MiB cache-hot buffer would beat memcpy. */
static inline double measure_stream_once(const char *listen_url, uint64_t total, uint64_t buf_len)
{
    struct migr_listener *l;
    if (migr_listener_open(listen_url, &l) < 0) {
        fprintf(stderr, BENCH_NAME ": stream %s: %s\n", listen_url, migr_last_error());
        return 0;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        migr_listener_close(l);
        return 0;
    }
    if (pid == 0) { /* reader */
        struct migr_transport *t;
        uint8_t *buf = map_buf(buf_len);
        if (!buf || migr_transport_connect(l->bound, &t) < 0)
            _exit(1);
        uint64_t got = 0, off = 0;
        while (got < total) {
            ssize_t n = read(t->fd, buf + off, STREAM_WRITE);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                _exit(1);
            got += (uint64_t)n;
            off = (off + (uint64_t)n) % (buf_len - STREAM_WRITE);
        }
        char ack = 'k';
        _exit(write(t->fd, &ack, 1) == 1 ? 0 : 1);
    }
    double r = 0;
    struct migr_transport *t = NULL;
    uint8_t *buf = map_buf(buf_len);
    if (buf && migr_listener_accept(l, 10000, &t) == 0) {
        uint64_t t0 = migr_now_ns(), sent = 0;
        while (sent < total && migr_write_full(t->fd, buf + sent % buf_len, STREAM_WRITE) == 0)
            sent += STREAM_WRITE;
        char ack;
        if (sent >= total && read_timeout(t->fd, &ack, 1, 30000) == 0)
            r = mbps(total, migr_now_ns() - t0);
    }
    migr_transport_close(t);
    migr_listener_close(l);
    if (buf)
        munmap(buf, buf_len);
    reap(pid, r == 0 ? 0 : 5000, NULL, 0);
    return r;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* The fresh-memory stream limit: as measure_stream_once, but the reader
 * receives total bytes into a new memfd mapping (what a destination's guest
 * RAM is), allocating each 1 MiB with MADV_POPULATE_WRITE just before it
 * reads into it: the kernel's allocation and zeroing of every page is in
 * the figure, as it is in a migration's first pass. */
static inline double measure_stream_fresh_once(const char *listen_url, uint64_t total, uint64_t buf_len)
{
    struct migr_listener *l;
    if (migr_listener_open(listen_url, &l) < 0) {
        fprintf(stderr, BENCH_NAME ": stream %s: %s\n", listen_url, migr_last_error());
        return 0;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        migr_listener_close(l);
        return 0;
    }
    if (pid == 0) { /* reader */
        struct migr_transport *t;
        int fd = memfd_create("bench-fresh", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)total) < 0)
            _exit(1);
        uint8_t *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mem == MAP_FAILED || migr_transport_connect(l->bound, &t) < 0)
            _exit(1);
        for (uint64_t got = 0; got < total; got += STREAM_WRITE) {
            if (madvise(mem + got, STREAM_WRITE, MADV_POPULATE_WRITE) < 0 ||
                migr_read_full(t->fd, mem + got, STREAM_WRITE) < 0)
                _exit(1);
        }
        char ack = 'k';
        _exit(write(t->fd, &ack, 1) == 1 ? 0 : 1);
    }
    double r = 0;
    struct migr_transport *t = NULL;
    uint8_t *buf = map_buf(buf_len);
    if (buf && migr_listener_accept(l, 10000, &t) == 0) {
        uint64_t t0 = migr_now_ns(), sent = 0;
        while (sent < total && migr_write_full(t->fd, buf + sent % buf_len, STREAM_WRITE) == 0)
            sent += STREAM_WRITE;
        char ack;
        if (sent >= total && read_timeout(t->fd, &ack, 1, 30000) == 0)
            r = mbps(total, migr_now_ns() - t0);
    }
    migr_transport_close(t);
    migr_listener_close(l);
    if (buf)
        munmap(buf, buf_len);
    reap(pid, r == 0 ? 0 : 5000, NULL, 0);
    return r;
}

/* This process's shared RSS (RssShmem of /proc/self/status, bytes), 0 if unknown. */
static inline uint64_t self_rss_shmem(void)
{
    char line[256];
    uint64_t v = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long kb;
        if (sscanf(line, "RssShmem: %llu kB", &kb) == 1)
            v = (uint64_t)kb << 10;
    }
    fclose(f);
    return v;
}

/* Bytes the memfd holds (st_blocks), 0 if unknown. */
static inline uint64_t memfd_bytes(int fd)
{
    struct stat sb;
    return fd >= 0 && fstat(fd, &sb) == 0 ? (uint64_t)sb.st_blocks * 512 : 0;
}

/* A repetition that hangs (an engine bug) must not leave a receiver behind:
 * register receivers in g_children, arm alarm() with on_watchdog as the
 * SIGALRM handler; on expiry they are killed and the run ends with a FAIL. */
#define MAX_CHILDREN 2
static volatile pid_t g_children[MAX_CHILDREN];

static inline void on_watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: a repetition did not finish within the watchdog; receivers killed\n";
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_children[i] > 0)
            kill(g_children[i], SIGKILL);
    if (write(2, msg, sizeof(msg) - 1) < 0) {
    }
    _exit(1);
}

/* --reps N: 1..64 into *reps, or -1 with a message. */
static inline int bench_opt_reps(const char *arg, int *reps)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (*end || v < 1 || v > 64) {
        fprintf(stderr, BENCH_NAME ": --reps %s: need 1..64\n", arg);
        return -1;
    }
    *reps = (int)v;
    return 0;
}

/* --mem SIZE: a multiple of 2 MiB, at least 8 MiB, into *mem, or -1 with a message. */
static inline int bench_opt_mem(const char *arg, uint64_t *mem)
{
    if (migr_parse_size(arg, mem) < 0 || *mem < (8ull << 20) || *mem % (2ull << 20)) {
        fprintf(stderr, BENCH_NAME ": --mem %s: need a multiple of 2M, at least 8M\n", arg);
        return -1;
    }
    return 0;
}

/* ---------- the receiver child (bench_migrate, bench_postcopy, bench_handover) ---------- */

/* The memory a process and its guest's memfds hold. */
struct mem_use {
    uint64_t memfd_alloc;              /* bytes the memfds hold (st_blocks) */
    uint64_t rss, rss_shmem, rss_anon; /* the process's, /proc/self/status */
};

/* m: this process's RSS and the bytes of every memfd of hv's RAM. */
static inline void mem_use(struct migr_hv *hv, struct mem_use *m)
{
    char line[256];
    memset(m, 0, sizeof(*m));
    for (uint32_t i = 0; hv && i < hv->nregions; i++)
        m->memfd_alloc += memfd_bytes(hv->regions[i].memfd);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long kb;
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
            m->rss = kb << 10;
        else if (sscanf(line, "RssShmem: %llu kB", &kb) == 1)
            m->rss_shmem = kb << 10;
        else if (sscanf(line, "RssAnon: %llu kB", &kb) == 1)
            m->rss_anon = kb << 10;
    }
    fclose(f);
}

/* What the receiver child sends back through its pipe. */
struct rx_result {
    int rc;                       /* 0, or -errno of the first failure */
    char error[600];
    struct migr_stats st;
    struct migr_verify_report rep;
    bool verified;                /* verify ran and rep.ok */
    uint64_t dst_memfd;           /* bytes the guest's memfd holds when migr_recv returned */
    uint64_t w_ret;               /* guest page writes when migr_recv returned */
    double wps_after;             /* ... per second over the next after_ms */
    struct mem_use mem;           /* after those after_ms */
    uint64_t verify_ns;
};

static inline void rx_fail(struct rx_result *r, int rc, const char *what)
{
    if (r->rc == 0) {
        r->rc = rc < 0 ? rc : -EIO;
        snprintf(r->error, sizeof(r->error), "%s: %s", what,
                 migr_last_error()[0] ? migr_last_error() : strerror(-r->rc));
    }
}

struct rx_opts {
    const struct migr_recv_params *rp; /* NULL: the defaults */
    int accept_ms, after_ms;
    bool early;                   /* a first struct rx_result once migr_recv returned (or failed) and
                                     the rate after it is sampled, so the parent goes on meanwhile */
    /* after verification, if it passed: the benchmark's own check */
    void (*check)(struct rx_result *r, struct migr_hv *hv, void *arg);
    void *arg;
};

/* The receiver child: listen on listen_url, write the bound URL (char[300])
 * to wfd, receive one guest, sample its progress for after_ms, verify it,
 * write struct rx_result (twice with o->early), exit. Never returns. */
static inline __attribute__((noreturn)) void bench_receiver(const char *listen_url, int wfd, const struct rx_opts *o)
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
    if (r.rc == 0 && (rc = migr_listener_accept(l, o->accept_ms, &t)) < 0)
        rx_fail(&r, rc, "accept");
    migr_stats_init(&r.st);
    if (r.rc == 0 && (rc = migr_recv_ex(t, o->rp, &hv, &r.st)) < 0)
        rx_fail(&r, rc, "migr_recv");
    if (r.rc != 0 && o->early && migr_write_full(wfd, &r, sizeof(r)) < 0)
        _exit(1);
    if (r.rc == 0) {
        /* migr_recv returns once every page is resident (post-copy) or
         * right after the resume; the guest's first touches here cost a
         * fault each (new VM, new EPT). */
        r.dst_memfd = memfd_bytes(hv->regions[0].memfd);
        r.w_ret = migr_workload_progress(hv);
        double t0 = now_s();
        sleep_ms(o->after_ms);
        r.wps_after = (double)(migr_workload_progress(hv) - r.w_ret) / (now_s() - t0);
        mem_use(hv, &r.mem);
        /* nothing is measured during verification */
        if (o->early && migr_write_full(wfd, &r, sizeof(r)) < 0)
            _exit(1);
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
        if (r.rc == 0 && o->check)
            o->check(&r, hv, o->arg);
    }
    migr_hv_destroy(hv);
    migr_transport_close(t);
    migr_listener_close(l);
    _exit(migr_write_full(wfd, &r, sizeof(r)) == 0 ? 0 : 1);
}

#endif /* BENCH_BENCHLIB_H */
