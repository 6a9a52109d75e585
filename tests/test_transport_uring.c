/* ?uring=1 on unix: and tcp: (transfer/uring.c): a randomised page stream
 * (headers and 4 KiB pages in random iovec groups) verified on the other
 * side while the receiver reads in odd-sized pieces; peer closing early
 * (-EPIPE with a message); shutdown() waking a receiver blocked in the ring;
 * bad option values refused; the fallback when the kernel refuses rings
 * (a child process whose seccomp filter fails io_uring_setup with EPERM)
 * still carries the stream and says so; and an engine migration of a small
 * proc guest over unix:...?uring=1, pre-copy and post-copy (both directions
 * busy at once). Without io_uring on the machine the io_uring assertions
 * print SKIP lines; the fallback still runs. */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migr/crc32c.h"
#include "migr/transport.h"
#include "migratelib.h"
#include "transportlib.h"

#define PAGE 4096
#define NPAGES 4096u           /* 16 MiB of pages per stream */
#define HDR 16
#define STREAM_BYTES ((size_t)NPAGES * (HDR + PAGE))

static int have_uring;          /* the kernel gave us rings */

/* As a host whose policy forbids io_uring: io_uring_setup fails with EPERM,
 * every other system call is allowed. Irreversible: only in a child. */
static void deny_io_uring(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    T_EQ(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    T_EQ(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog), 0);
}

static void connect_pair(const char *url, struct migr_transport **srv, struct migr_transport **cli)
{
    char bound[300];
    t_connect_pair(url, srv, cli, bound, sizeof(bound));
    T_ASSERT(strstr(bound, "?uring=1"));
}

/* The transport is on the path it should be: io_uring when the machine has
 * it (and the fallback is not forced), the plain path otherwise, and the
 * note says which. */
static void check_path(const struct migr_transport *t, int want_uring)
{
    T_ASSERT(t->uring_note[0]);
    if (want_uring) {
        T_EQ(t->uring, 1);
        T_ASSERT(strstr(t->uring_note, "io_uring:"));
    } else {
        T_EQ(t->uring, 0);
        T_ASSERT(strstr(t->uring_note, "unavailable"));
    }
}

struct rx_arg {
    struct migr_transport *t;
    uint8_t *buf;
    unsigned long long rng;
    int ret;
};

/* Receive the stream in odd-sized pieces (1..12345 bytes, one or two iovecs). */
static void *rx_thread(void *p)
{
    struct rx_arg *a = p;
    size_t pos = 0;

    while (pos < STREAM_BYTES) {
        size_t r = (t_rand(&a->rng) % 6173) * 2 + 1, l = MIGR_MIN(r, STREAM_BYTES - pos), h = l / 3;
        struct iovec iov[2] = { { a->buf + pos, h }, { a->buf + pos + h, l - h } };

        a->ret = migr_transport_recvv(a->t, iov, 2);
        if (a->ret < 0) {
            fprintf(stderr, "rx: %s\n", migr_last_error());
            return NULL;
        }
        pos += l;
    }
    return NULL;
}

/* NPAGES records of a 16-byte header (index, checksum) and a random page,
 * sent in groups of 1..64 pages (2 iovecs per page); verified byte by byte
 * and by header. */
static void test_stream(const char *url, int want_uring, unsigned long long seed)
{
    uint8_t *pages = malloc((size_t)NPAGES * PAGE), *hdrs = malloc((size_t)NPAGES * HDR);
    uint8_t *dst = malloc(STREAM_BYTES);
    struct migr_transport *srv, *cli;
    struct rx_arg rx = { .rng = seed ^ 0x5eed };
    unsigned long long rng = seed;
    struct iovec iov[128];
    pthread_t th;

    T_ASSERT(pages && hdrs && dst);
    for (size_t i = 0; i < (size_t)NPAGES * PAGE / 8; i++) {
        uint64_t v = t_rand(&rng);

        memcpy(pages + i * 8, &v, 8);
    }
    for (uint64_t i = 0; i < NPAGES; i++) {
        uint64_t sum = migr_crc32c(0, pages + i * PAGE, PAGE);

        memcpy(hdrs + i * HDR, &i, 8);
        memcpy(hdrs + i * HDR + 8, &sum, 8);
    }
    connect_pair(url, &srv, &cli);
    check_path(srv, want_uring);
    check_path(cli, want_uring);
    rx.t = srv;
    rx.buf = dst;
    T_EQ(pthread_create(&th, NULL, rx_thread, &rx), 0);
    for (int i = 0; i < (int)NPAGES;) {
        unsigned long long r = 1 + t_rand(&rng) % 64;   /* MIGR_MIN evaluates twice */
        int n = (int)MIGR_MIN(r, (unsigned long long)(NPAGES - (unsigned)i));

        for (int k = 0; k < n; k++) {
            iov[2 * k].iov_base = hdrs + (size_t)(i + k) * HDR;
            iov[2 * k].iov_len = HDR;
            iov[2 * k + 1].iov_base = pages + (size_t)(i + k) * PAGE;
            iov[2 * k + 1].iov_len = PAGE;
        }
        T_OK(migr_transport_sendv(cli, iov, 2 * n));
        i += n;
    }
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(rx.ret);
    for (uint64_t i = 0; i < NPAGES; i++) {
        const uint8_t *rec = dst + i * (HDR + PAGE);
        uint64_t idx, sum;

        memcpy(&idx, rec, 8);
        memcpy(&sum, rec + 8, 8);
        if (idx != i || sum != migr_crc32c(0, rec + HDR, PAGE) || memcmp(rec + HDR, pages + i * PAGE, PAGE))
            T_FAIL("%s: page %llu arrived wrong (index %llu)", url, (unsigned long long)i,
                   (unsigned long long)idx);
    }
    T_EQ(cli->bytes_sent, STREAM_BYTES);
    T_EQ(srv->bytes_recv, STREAM_BYTES);
    /* And back the other way. */
    T_OK(migr_transport_send(srv, pages, 12345));
    T_OK(migr_transport_recv(cli, dst, 12345));
    T_ASSERT(!memcmp(pages, dst, 12345));
    fprintf(stderr, "%s: %zu bytes verified; %s\n", url, STREAM_BYTES, cli->uring_note);
    migr_transport_close(cli);
    migr_transport_close(srv);
    free(pages);
    free(hdrs);
    free(dst);
}

static void test_peer_close(const char *url)
{
    static uint8_t buf[1u << 20];
    struct migr_transport *srv, *cli;
    uint8_t b[16];
    int ret = 0;

    /* Sender side: the receiver closes with data unread. */
    connect_pair(url, &srv, &cli);
    check_path(cli, 1);
    T_OK(migr_transport_send(cli, buf, 1000));
    migr_transport_close(srv);
    for (int i = 0; i < 64 && ret == 0; i++)
        ret = migr_transport_send(cli, buf, sizeof(buf));
    if (ret != -EPIPE)
        T_FAIL("%s: send to a closed peer returned %d, expected -EPIPE", url, ret);
    if (!strstr(migr_last_error(), "send ") || !strstr(migr_last_error(), "io_uring"))
        T_FAIL("%s: unclear message '%s'", url, migr_last_error());
    migr_transport_close(cli);

    /* Receiver side: EOF after a partial read, then at once. */
    connect_pair(url, &srv, &cli);
    T_OK(migr_transport_send(srv, "abc", 3));
    migr_transport_close(srv);
    T_EQ(migr_transport_recv(cli, b, sizeof(b)), -EPIPE);
    if (!strstr(migr_last_error(), "3 of 16 bytes") || !strstr(migr_last_error(), "peer closed"))
        T_FAIL("%s: unclear message '%s'", url, migr_last_error());
    T_EQ(migr_transport_recv(cli, b, 1), -EPIPE);
    migr_transport_close(cli);
}

static void test_bad_options(void)
{
    static const struct { const char *url, *msg; } bad[] = {
        { "unix:/tmp/x?uring=2", "uring=2" },
        { "tcp:127.0.0.1:1?uring=yes", "uring=yes" },
        { "tcp:127.0.0.1:1?uring=", "not key=value" },
        { "unix:/tmp/x?ring=1M", "unix: takes uring" },
        { "shm:x?uring=1", "unknown option 'uring'" },
        { "tcp:127.0.0.1:1?channels=4&uring=1", "not with channels=4" },
    };
    struct migr_url u;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        T_EQ(migr_url_parse(bad[i].url, &u), -EINVAL);
        if (!strstr(migr_last_error(), bad[i].msg))
            T_FAIL("%s: message '%s' lacks '%s'", bad[i].url, migr_last_error(), bad[i].msg);
    }
    T_OK(migr_url_parse("unix:/tmp/x?uring=1", &u));
    T_EQ(u.kind, MIGR_URL_UNIX);
    T_EQ(u.uring, 1);
    T_ASSERT(!strcmp(u.path, "/tmp/x"));
    T_OK(migr_url_parse("tcp:127.0.0.1:7?uring=0,channels=1", &u));
    T_EQ(u.uring, 0);
    T_EQ(u.port, 7);
    T_OK(migr_url_parse("unix:@abs?uring=1", &u));
    T_ASSERT(!strcmp(u.path, "@abs"));
}

static void migrate(const char *url, int postcopy_after)
{
    struct migr_vm_config cfg = { .mem_bytes = 32ull << 20, .nvcpus = 1 };
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse("rate=32M,pattern=random,data=text", &cfg.wl));
    struct migr_hv *src;
    T_OK(migr_hv_create("proc", &cfg, &src));
    T_OK(src->ops->resume(src));
    usleep(50000);

    struct t_rx x;
    t_rx_start(&x, url);
    struct migr_transport *t;
    T_OK(migr_transport_connect(x.l->bound, &t));
    check_path(t, 1);
    struct migr_send_params p;
    migr_send_params_init(&p);
    p.mode = postcopy_after < 0 ? MIGR_MODE_PRECOPY : postcopy_after == 0 ? MIGR_MODE_POSTCOPY : MIGR_MODE_HYBRID;
    p.hybrid_rounds = postcopy_after > 0 ? (uint32_t)postcopy_after : 1;
    struct migr_stats st = MIGR_STATS_INIT;
    int rc = migr_send(src, t, &p, &st);
    if (rc < 0)
        T_FAIL("send over %s: %s", url, st.error);
    fprintf(stderr, "proc %s postcopy_after=%d: %llu bytes sent, %llu received\n", x.l->bound, postcopy_after,
            (unsigned long long)t->bytes_sent, (unsigned long long)t->bytes_recv);
    T_ASSERT(t->bytes_sent > 0);
    migr_transport_close(t);
    t_rx_join(&x);
    T_OK(x.rc);
    T_ASSERT(st.verified || postcopy_after >= 0);
    migr_hv_destroy(src);
    t_verify(x.hv, url);
    T_ASSERT(!x.hv->ops->failed(x.hv));
    migr_hv_destroy(x.hv);
}

int main(void)
{
    unsigned long long seed = t_seed();
    char uurl[96];
    struct migr_transport *srv, *cli;

    snprintf(uurl, sizeof(uurl), "unix:@migr-uring-%d?uring=1", getpid());
    test_bad_options();

    /* Does the kernel give us rings? The transport tells. */
    connect_pair(uurl, &srv, &cli);
    have_uring = cli->uring;
    if (!have_uring)
        printf("SKIP: io_uring assertions: %s\n", cli->uring_note);
    migr_transport_close(cli);
    migr_transport_close(srv);

    if (have_uring) {
        test_stream(uurl, 1, seed);
        test_stream("tcp:127.0.0.1:0?uring=1", 1, seed + 1);
        test_peer_close(uurl);
        test_peer_close("tcp:127.0.0.1:0?uring=1");
        t_check_shutdown(uurl);
        t_check_shutdown("tcp:127.0.0.1:0?uring=1");
    }

    /* The kernel refuses rings: same calls, the plain path, reported. */
    fflush(stdout);
    pid_t child = fork();
    T_ASSERT(child >= 0);
    if (child == 0) {
        deny_io_uring();
        test_stream(uurl, 0, seed + 2);
        test_stream("tcp:127.0.0.1:0?uring=1", 0, seed + 3);
        connect_pair(uurl, &srv, &cli);
        T_ASSERT(strstr(cli->uring_note, "io_uring_queue_init: Operation not permitted"));
        migr_transport_close(cli);
        migr_transport_close(srv);
        _exit(0);
    }
    int status;
    T_EQ(waitpid(child, &status, 0), child);
    T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    if (!have_uring)
        return 0;
    if (!migr_hv_available("proc")) {
        printf("SKIP: engine over io_uring: proc backend unusable: %s\n", migr_last_error());
        return 0;
    }
    migrate(uurl, -1);
    migrate(uurl, 0);
    return 0;
}
