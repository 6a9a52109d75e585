/* shm: transport between two processes: a randomised page stream from a
 * child verified in the parent (and back), descriptors passed over it,
 * a slow consumer behind a full ring, a sender blocked on a full ring whose
 * peer closes, a peer killed mid-stream (recv and the pollable fd notice),
 * a non-shm client, a missing peer, a name in use, the rate limiter and the
 * accounting. */
#include <errno.h>
#include <sys/prctl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migr/transport.h"
#include "testlib.h"

#define PAGE 4096u

static char url[128];

/* Page i of the stream for seed s: deterministic, so both sides know it. */
static void fill_page(uint8_t *p, unsigned long long s, uint64_t i)
{
    unsigned long long r = s ^ (i * 0x9E3779B97F4A7C15ull) ^ 1;

    for (unsigned k = 0; k < PAGE; k += 8) {
        uint64_t v = t_rand(&r);

        memcpy(p + k, &v, 8);
    }
}

struct acc {
    struct migr_listener *l;
    struct migr_transport *t;
    int ret;
};

static void *acc_main(void *p)
{
    struct acc *a = p;

    a->ret = migr_listener_accept(a->l, 5000, &a->t);
    return NULL;
}

static void pair(const char *u, struct migr_transport **srv, struct migr_transport **cli)
{
    struct acc a = { 0 };
    pthread_t th;

    T_OK(migr_listener_open(u, &a.l));
    T_EQ(pthread_create(&th, NULL, acc_main, &a), 0);
    T_OK(migr_transport_connect(a.l->bound, cli));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(a.ret);
    *srv = a.t;
    migr_listener_close(a.l);
}

/* Child: connect, send npages pages in random batches (iovec per page),
 * then receive a memfd and answer its first 8 bytes; exit 0 on success. */
static int child_main(unsigned long long seed, uint64_t npages, int die_after)
{
    struct migr_transport *t;
    static uint8_t buf[256 * PAGE];
    static struct iovec iov[256];
    unsigned long long rng = seed ^ 77;
    uint64_t i = 0;

    if (migr_transport_connect(url, &t) < 0) {
        fprintf(stderr, "child: %s\n", migr_last_error());
        return 2;
    }
    while (i < npages) {
        int n = 1 + (int)(t_rand(&rng) % 256);

        n = (int)MIGR_MIN((uint64_t)n, npages - i);
        for (int k = 0; k < n; k++) {
            fill_page(buf + (size_t)k * PAGE, seed, i + (uint64_t)k);
            iov[k].iov_base = buf + (size_t)k * PAGE;
            iov[k].iov_len = PAGE;
        }
        if (migr_transport_sendv(t, iov, n) < 0) {
            fprintf(stderr, "child: %s\n", migr_last_error());
            return 3;
        }
        i += (uint64_t)n;
        if (die_after && i >= (uint64_t)die_after)
            raise(SIGKILL);
    }
    int fd;
    uint64_t v;
    if (migr_transport_recv_fds(t, &fd, 1) < 0 || pread(fd, &v, 8, 0) != 8 || migr_transport_send(t, &v, 8) < 0) {
        fprintf(stderr, "child: %s\n", migr_last_error());
        return 4;
    }
    close(fd);
    /* Wait for the parent to close: EOF. */
    if (migr_transport_recv(t, &v, 8) != -EPIPE)
        return 5;
    migr_transport_close(t);
    return 0;
}

static void test_two_processes(unsigned long long seed)
{
    const uint64_t npages = 32768;   /* 128 MiB through a 1 MiB ring */
    struct migr_listener *l;
    struct migr_transport *t;
    static uint8_t got[256 * PAGE], want[PAGE];
    pid_t pid;
    int st;

    snprintf(url, sizeof(url), "shm:migr-shm-test-%d?ring=1M", getpid());
    T_OK(migr_listener_open(url, &l));
    pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a test killed by its timeout */
        _exit(child_main(seed, npages, 0));
    }
    T_OK(migr_listener_accept(l, 5000, &t));
    T_ASSERT(migr_transport_can_pass_fds(t));
    /* Receive in batches that do not match the sender's. */
    unsigned long long rng = seed;
    for (uint64_t i = 0; i < npages;) {
        uint64_t n = 1 + t_rand(&rng) % 256;   /* not inside MIGR_MIN: it evaluates twice */

        n = MIGR_MIN(n, npages - i);
        T_OK(migr_transport_recv(t, got, n * PAGE));
        for (uint64_t k = 0; k < n; k++) {
            fill_page(want, seed, i + k);
            if (memcmp(want, got + k * PAGE, PAGE))
                T_FAIL("page %llu differs", (unsigned long long)(i + k));
        }
        i += n;
    }
    T_EQ(t->bytes_recv, npages * PAGE);
    T_ASSERT(t->recv_calls > 0 && t->recv_cpu_ns > 0);

    /* A memfd through the transport (hand-over uses this). */
    int mfd = memfd_create("t", MFD_CLOEXEC);
    uint64_t magic = 0x1234567890abcdefull, back = 0;
    T_ASSERT(mfd >= 0 && pwrite(mfd, &magic, 8, 0) == 8);
    T_OK(migr_transport_send_fds(t, &mfd, 1));
    close(mfd);
    T_OK(migr_transport_recv(t, &back, 8));
    T_EQ(back, magic);
    migr_transport_close(t);
    T_EQ(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        T_FAIL("child status %#x", st);

    /* A child killed mid-stream: recv drains what was sent, then -EPIPE,
     * and the pollable fd said so. */
    pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a test killed by its timeout */
        _exit(child_main(seed, npages, 1000));
    }
    T_OK(migr_listener_accept(l, 5000, &t));
    uint64_t i = 0;
    int ret;
    while ((ret = migr_transport_recv(t, got, PAGE)) == 0) {
        fill_page(want, seed, i);
        T_ASSERT(!memcmp(want, got, PAGE));
        i++;
    }
    T_EQ(ret, -EPIPE);
    T_ASSERT(strstr(migr_last_error(), "peer closed"));
    T_ASSERT(i >= 1000 && i < npages);
    struct pollfd pfd = { .fd = t->fd, .events = POLLIN };
    T_EQ(poll(&pfd, 1, 1000), 1);
    migr_transport_close(t);
    T_EQ(waitpid(pid, &st, 0), pid);
    T_ASSERT(WIFSIGNALED(st));
    migr_listener_close(l);
}

struct slow {
    struct migr_transport *t;
    unsigned long long seed;
    uint64_t bytes;
    int ret;
};

static void *slow_reader(void *p)
{
    struct slow *s = p;
    static uint8_t b[64 << 10], want[64 << 10];
    unsigned long long r = s->seed;

    for (uint64_t pos = 0; pos < s->bytes; pos += sizeof(b)) {
        usleep(2000);
        s->ret = migr_transport_recv(s->t, b, sizeof(b));
        if (s->ret < 0)
            return NULL;
        for (size_t k = 0; k < sizeof(want); k += 8) {
            uint64_t v = t_rand(&r);
            memcpy(want + k, &v, 8);
        }
        if (memcmp(b, want, sizeof(b))) {
            s->ret = -EBADMSG;
            return NULL;
        }
    }
    return NULL;
}

static void *close_later(void *p)
{
    usleep(100000);
    migr_transport_close(p);
    return NULL;
}

/* A slow consumer behind a 64 KiB ring: the sender waits (sleeping, not
 * failing), every byte arrives. Then a sender blocked on a full ring sees
 * the peer close: -EPIPE, not a hang. */
static void test_full_ring(unsigned long long seed)
{
    struct migr_transport *srv, *cli;
    struct slow s = { .seed = seed, .bytes = 4u << 20 };
    static uint8_t buf[4u << 20];
    unsigned long long r = seed;
    pthread_t th;

    for (size_t k = 0; k < sizeof(buf); k += 8) {
        uint64_t v = t_rand(&r);
        memcpy(buf + k, &v, 8);
    }
    snprintf(url, sizeof(url), "shm:migr-shm-slow-%d?ring=64K", getpid());
    pair(url, &srv, &cli);
    s.t = srv;
    T_EQ(pthread_create(&th, NULL, slow_reader, &s), 0);
    uint64_t t0 = migr_now_ns();
    T_OK(migr_transport_send(cli, buf, sizeof(buf)));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(s.ret);
    /* 64 reads 2 ms apart: the sender cannot have finished much sooner. */
    T_ASSERT(migr_now_ns() - t0 > 100000000ull);
    T_ASSERT(cli->send_cpu_ns < migr_now_ns() - t0);   /* it slept */

    /* Fill the ring, then block; the peer closes meanwhile. */
    T_OK(migr_transport_send(cli, buf, 64 << 10));
    pthread_t ct;
    T_EQ(pthread_create(&ct, NULL, close_later, srv), 0);
    t0 = migr_now_ns();
    int ret = migr_transport_send(cli, buf, 1 << 20);
    T_EQ(ret, -EPIPE);
    T_ASSERT(strstr(migr_last_error(), "peer closed"));
    T_ASSERT(migr_now_ns() - t0 > 50000000ull);
    T_EQ(pthread_join(ct, NULL), 0);
    migr_transport_close(cli);
}

static void test_errors(void)
{
    struct migr_listener *l, *l2;
    struct migr_transport *t;
    char u[128];

    /* Nobody there. */
    snprintf(u, sizeof(u), "shm:migr-nobody-%d", getpid());
    T_EQ(migr_transport_connect(u, &t), -ECONNREFUSED);
    T_ASSERT(strstr(migr_last_error(), u));
    /* Name in use. */
    T_OK(migr_listener_open(u, &l));
    T_EQ(migr_listener_open(u, &l2), -EADDRINUSE);
    T_ASSERT(strstr(migr_last_error(), "Address already in use"));
    /* A plain unix client that does not speak the handshake. */
    char uu[140];
    snprintf(uu, sizeof(uu), "unix:@migr-shm-migr-nobody-%d", getpid());
    T_OK(migr_transport_connect(uu, &t));
    T_OK(migr_transport_send(t, "GET / HTTP/1.0\r\n\r\n......", 24));
    struct migr_transport *s;
    T_EQ(migr_listener_accept(l, 2000, &s), -EPROTO);
    T_ASSERT(strstr(migr_last_error(), "not a shm: client"));
    migr_transport_close(t);
    migr_listener_close(l);
    /* Not a descriptor-passing transport: a clear refusal. */
    T_OK(migr_listener_open("tcp:127.0.0.1:0", &l));
    T_OK(migr_transport_connect(l->bound, &t));
    T_OK(migr_listener_accept(l, 2000, &s));
    T_ASSERT(!migr_transport_can_pass_fds(t));
    int fd = 0;
    T_EQ(migr_transport_send_fds(t, &fd, 1), -ENOTSUP);
    migr_transport_close(t);
    migr_transport_close(s);
    migr_listener_close(l);
}

/* The token bucket: 8 MiB at 32 MiB/s takes about a quarter second. */
static void test_rate(void)
{
    struct migr_transport *srv, *cli;
    static uint8_t buf[8u << 20];

    snprintf(url, sizeof(url), "shm:migr-shm-rate-%d", getpid());
    pair(url, &srv, &cli);
    T_OK(migr_transport_set_rate(cli, 32u << 20));
    uint64_t t0 = migr_now_ns();
    T_OK(migr_transport_send(cli, buf, 4u << 20));   /* fits the 8 MiB ring: no reader needed */
    double secs = (double)(migr_now_ns() - t0) / 1e9;
    /* (4 MiB - one 655 KB burst) / 32 MiB/s = 0.105 s */
    if (secs < 0.09 || secs > 1.0)
        T_FAIL("4 MiB at 32 MiB/s took %.3f s", secs);
    T_ASSERT(cli->rate_wait_ns > 50000000ull);
    /* Nothing read yet: all 4 MiB wait in the ring. */
    T_EQ(migr_transport_outq(cli), 4u << 20);
    T_OK(migr_transport_recv(srv, buf, 4u << 20));
    T_EQ(migr_transport_outq(cli), 0);
    T_OK(migr_transport_set_rate(cli, 0));
    t0 = migr_now_ns();
    T_OK(migr_transport_send(cli, buf, 4u << 20));
    secs = (double)(migr_now_ns() - t0) / 1e9;
    T_ASSERT(secs < 0.09);
    T_EQ(cli->bytes_sent, 8u << 20);
    T_EQ(cli->send_calls, 2);
    migr_transport_close(cli);
    migr_transport_close(srv);
}

int main(void)
{
    unsigned long long seed = t_seed();

    test_errors();
    test_two_processes(seed);
    test_full_ring(seed);
    test_rate();
    return 0;
}
