/* A listener that strangers cannot stop or block (docs/transport.md,
 * "Strangers at a listener"): with keep_listening and expect_stream (what
 * migr recv uses), without a key:
 *   - a silent client and one that sent half a preamble are pending while
 *     the real source (preamble + HELLO) is accepted at once, and are
 *     dropped at the handshake time-out; the stream is not consumed by the
 *     check (the engine reads the preamble itself);
 *   - garbage, a HELLO with a bad CRC, a stream that does not start with
 *     HELLO: dropped with the reason, the listener goes on;
 *   - a flood of more connections than handshake slots: the oldest go, the
 *     real source still gets in;
 *   - tcp (a connection that begins with the multi-channel magic) and shm:
 *     listeners drop a bad hello and go on.
 * Without keep_listening accept still returns the error (test_transport_mc,
 * test_transport_shm).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/format.h"
#include "migr/record.h"
#include "migr/transport.h"
#include "testlib.h"

static int raw_connect(const struct migr_listener *l)
{
    const char *port = strrchr(l->bound, ':');
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port + 1)) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    T_ASSERT(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    T_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
    return fd;
}

static char rejects[8192];

static void on_reject(void *arg, const char *peer, const char *why)
{
    size_t n = strlen(rejects);

    (void)arg;
    snprintf(rejects + n, sizeof(rejects) - n, "%s: %s\n", peer, why);
}

/* A source's first bytes: preamble and a HELLO record (its content is the
 * engine's to judge; the listener checks the framing and CRC). */
static void send_start(struct migr_transport *t)
{
    uint8_t meta[64] = { 0 };

    T_OK(migr_preamble_send(t));
    T_OK(migr_rec_send(t, MIGR_REC_HELLO, meta, sizeof(meta), NULL, 0));
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

static void test_plain(void)
{
    struct migr_link_opts o = { .keep_listening = 1, .expect_stream = 1, .handshake_ms = 400, .on_reject = on_reject };
    struct migr_listener *l;
    struct migr_transport *c, *s;
    uint8_t b[MIGR_PREAMBLE_SIZE];

    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0", &o, &l));
    int silent = raw_connect(l), half = raw_connect(l);
    T_EQ(write(half, MIGR_STREAM_MAGIC, 5), 5);
    T_OK(migr_transport_connect(l->bound, &c));
    send_start(c);
    uint64_t t0 = migr_now_ns();
    T_OK(migr_listener_accept(l, 5000, &s));
    T_ASSERT(migr_now_ns() - t0 < 300000000ull);   /* not held up by the two pending ones (400 ms) */
    T_OK(migr_preamble_recv(s));                    /* nothing was consumed */
    (void)b;
    migr_transport_close(s);
    migr_transport_close(c);
    T_EQ(migr_listener_accept(l, 700, &s), -ETIMEDOUT);
    T_EQ(l->rejected, 2);
    T_ASSERT(strstr(rejects, "did not begin a migr stream within 400 ms"));
    T_ASSERT(strstr(migr_last_error(), "2 dropped"));
    close(silent);
    close(half);

    /* Garbage, a bad CRC, no HELLO first: each dropped, then the source. */
    int g = raw_connect(l);
    T_EQ(write(g, "GET / HTTP/1.0\r\n\r\n", 18), 18);
    int bad = raw_connect(l);
    uint8_t st[MIGR_PREAMBLE_SIZE + MIGR_REC_HDR_SIZE + 64 + 4] = { 0 };
    memcpy(st, MIGR_STREAM_MAGIC, 8);
    st[8] = 1;
    st[16] = MIGR_REC_HELLO;
    st[20] = 64;
    T_EQ(write(bad, st, sizeof(st)), (ssize_t)sizeof(st));   /* CRC 0: wrong */
    int nohello = raw_connect(l);
    st[16] = MIGR_REC_PAGES;
    T_EQ(write(nohello, st, sizeof(st)), (ssize_t)sizeof(st));
    usleep(50000);
    T_OK(migr_transport_connect(l->bound, &c));
    send_start(c);
    T_OK(migr_listener_accept(l, 5000, &s));
    T_OK(migr_preamble_recv(s));
    if (l->rejected != 5)
        T_FAIL("%u rejected, expected 5: %s", l->rejected, rejects);
    T_ASSERT(strstr(rejects, "its first bytes are not a migr stream"));
    T_ASSERT(strstr(rejects, "bad CRC"));
    T_ASSERT(strstr(rejects, "does not begin with a HELLO record"));
    migr_transport_close(s);
    migr_transport_close(c);
    close(g);
    close(bad);
    close(nohello);

    /* A flood: more silent connections than there are handshake slots (the
     * listener accepts meanwhile: the kernel's backlog is only 16 deep). */
    struct acc a = { .l = l };
    pthread_t th;
    int flood[24];
    T_EQ(pthread_create(&th, NULL, acc_main, &a), 0);
    for (int i = 0; i < 24; i++)
        flood[i] = raw_connect(l);
    usleep(50000);
    T_OK(migr_transport_connect(l->bound, &c));
    send_start(c);
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(a.ret);
    s = a.t;
    T_OK(migr_preamble_recv(s));
    T_ASSERT(strstr(rejects, "connections in their handshake at once"));
    migr_transport_close(s);
    migr_transport_close(c);
    for (int i = 0; i < 24; i++)
        close(flood[i]);
    migr_listener_close(l);
}

struct conn_arg {
    const char *url;
    int ret;
    struct migr_transport *t;
};

static void *connect_main(void *p)
{
    struct conn_arg *a = p;

    a->ret = migr_transport_connect(a->url, &a->t);
    return NULL;
}

/* tcp's multi-channel hello and shm:'s are checked by the listener too. */
static void test_backends(void)
{
    struct migr_link_opts o = { .keep_listening = 1, .expect_stream = 1, .handshake_ms = 400, .on_reject = on_reject };
    char shm[64], uu[96];
    const char *urls[2] = { "tcp:127.0.0.1:0?channels=3", shm };

    snprintf(shm, sizeof(shm), "shm:migr-listener-%d", getpid());
    for (int i = 0; i < 2; i++) {
        struct migr_listener *l;
        struct migr_transport *junk, *s;
        struct conn_arg a = { 0 };
        pthread_t th;

        rejects[0] = 0;
        T_OK(migr_listener_open_opts(urls[i], &o, &l));
        if (i == 0) {
            char u[320];
            snprintf(u, sizeof(u), "%s", l->bound);
            *strchr(u, '?') = '\0';
            T_OK(migr_transport_connect(u, &junk));
        } else {
            snprintf(uu, sizeof(uu), "unix:@migr-shm-migr-listener-%d", getpid());
            T_OK(migr_transport_connect(uu, &junk));
        }
        /* tcp: the multi-channel magic, then a hello that makes no sense (0 channels). */
        T_OK(migr_transport_send(junk, i == 0 ? "MIGRMCH1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
                                              : "GET / HTTP/1.0\r\n\r\n..............", 32));
        a.url = l->bound;
        T_EQ(pthread_create(&th, NULL, connect_main, &a), 0);
        T_OK(migr_listener_accept(l, 5000, &s));
        T_EQ(pthread_join(th, NULL), 0);
        T_OK(a.ret);
        T_ASSERT(l->rejected == 1);
        T_ASSERT(strstr(rejects, i == 0 ? "not a multi-channel client" : "not a shm: client"));
        T_OK(migr_transport_send(a.t, "ok", 2));
        char b[2];
        T_OK(migr_transport_recv(s, b, 2));
        migr_transport_close(a.t);
        migr_transport_close(s);
        migr_transport_close(junk);
        migr_listener_close(l);
    }
}

int main(void)
{
    test_plain();
    test_backends();
    return 0;
}
