/* Transports: unix and tcp connect/accept, 64 MiB of random data in random
 * iovec splits checked on the other side, early close -> -EPIPE (no
 * SIGPIPE: the default action would kill this test), bad URLs, address in
 * use, stale and missing unix sockets, abstract sockets, accept timeout;
 * the stream tests also over shm: and tcp ?channels=4. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "migr/transport.h"
#include "testlib.h"
#include "transportlib.h"

#define STREAM_BYTES (64u << 20)
#define MAX_IOV 1100   /* more than IOV_MAX: sendv/recvv must split */

static char tmpdir[64];

static void connect_pair(const char *url, struct migr_transport **srv, struct migr_transport **cli)
{
    t_connect_pair(url, srv, cli, NULL, 0);
}

/* Cut [0, len) of buf into a random iovec array (some empty entries). */
static int random_iov(unsigned long long *rng, uint8_t *buf, size_t len, struct iovec *iov)
{
    int n = 1 + (int)(t_rand(rng) % MAX_IOV), i;
    size_t pos = 0;
    size_t chunk = t_rand(rng) % 3 == 0 ? 16 : 128 * 1024;

    for (i = 0; i < n && pos < len; i++) {
        size_t l = t_rand(rng) % 8 == 0 ? 0 : 1 + t_rand(rng) % chunk;

        l = MIGR_MIN(l, len - pos);
        iov[i].iov_base = buf + pos;
        iov[i].iov_len = l;
        pos += l;
    }
    return i;
}

struct rx_arg {
    struct migr_transport *t;
    uint8_t *buf;
    unsigned long long seed;
    int ret;
};

static void *rx_thread(void *p)
{
    struct rx_arg *a = p;
    static struct iovec iov[MAX_IOV];
    size_t pos = 0;

    while (pos < STREAM_BYTES) {
        int n = random_iov(&a->seed, a->buf + pos, STREAM_BYTES - pos, iov);
        size_t got = 0;

        for (int i = 0; i < n; i++)
            got += iov[i].iov_len;
        a->ret = migr_transport_recvv(a->t, iov, n);
        if (a->ret < 0) {
            fprintf(stderr, "rx: %s\n", migr_last_error());
            return NULL;
        }
        pos += got;
    }
    return NULL;
}

static void test_stream(const char *url, uint8_t *src, uint8_t *dst, unsigned long long seed)
{
    static struct iovec iov[MAX_IOV];
    struct migr_transport *srv, *cli;
    struct rx_arg rx = { .buf = dst, .seed = seed ^ 0xabcdef };
    unsigned long long rng = seed;
    pthread_t th;
    size_t pos = 0;

    connect_pair(url, &srv, &cli);
    rx.t = srv;
    memset(dst, 0, STREAM_BYTES);
    T_EQ(pthread_create(&th, NULL, rx_thread, &rx), 0);
    while (pos < STREAM_BYTES) {
        int n = random_iov(&rng, src + pos, STREAM_BYTES - pos, iov);
        size_t sent = 0;

        for (int i = 0; i < n; i++)
            sent += iov[i].iov_len;
        T_OK(migr_transport_sendv(cli, iov, n));
        pos += sent;
    }
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(rx.ret);
    if (memcmp(src, dst, STREAM_BYTES)) {
        size_t i = 0;

        while (src[i] == dst[i])
            i++;
        T_FAIL("%s: data differs at offset %zu", url, i);
    }
    T_EQ(cli->bytes_sent, STREAM_BYTES);
    T_EQ(srv->bytes_recv, STREAM_BYTES);
    T_EQ(cli->bytes_recv, 0);

    /* And back the other way, one buffer. */
    T_OK(migr_transport_send(srv, src, 12345));
    T_OK(migr_transport_recv(cli, dst, 12345));
    T_ASSERT(!memcmp(src, dst, 12345));
    migr_transport_close(cli);
    migr_transport_close(srv);
}

static void test_peer_close(const char *url, uint8_t *buf)
{
    struct migr_transport *srv, *cli;
    uint8_t b[16];
    int ret = 0;

    /* Sender side: the receiver closes with data unread. */
    connect_pair(url, &srv, &cli);
    T_OK(migr_transport_send(cli, buf, 1000));
    migr_transport_close(srv);
    for (int i = 0; i < 64 && ret == 0; i++)
        ret = migr_transport_send(cli, buf, 1u << 20);
    if (ret != -EPIPE)
        T_FAIL("%s: send to a closed peer returned %d, expected -EPIPE", url, ret);
    T_ASSERT(strstr(migr_last_error(), "send "));
    migr_transport_close(cli);

    /* Receiver side: EOF at once and after a partial read. */
    connect_pair(url, &srv, &cli);
    T_OK(migr_transport_send(srv, "abc", 3));
    migr_transport_close(srv);
    T_EQ(migr_transport_recv(cli, b, sizeof(b)), -EPIPE);
    T_ASSERT(strstr(migr_last_error(), "3 of 16 bytes"));
    T_EQ(migr_transport_recv(cli, b, 1), -EPIPE);
    migr_transport_close(cli);
}

static void test_bad_urls(void)
{
    static const char *const bad[] = {
        "", "foo:bar", "nothing", "unix:", "unix:@", "tcp:", "tcp:host", "tcp:host:",
        "shm:", "shm:?ring=1M", "shm:x?ring=3M", "shm:x?ring=1K", "shm:x?ring", "shm:x?ring=", "shm:x?",
        "shm:x?channels=2", "shm:a b", "tcp:h:1?channels=0", "tcp:h:1?channels=17", "tcp:h:1?channels=x",
        "tcp:h:1?foo=1", "tcp:h:1?", "tcp:h:1?channels=2&ring=1M",
        "tcp::80", "tcp:host:99999", "tcp:host:12ab", "tcp:host:-1", "tcp:[::1", "tcp:[::1]80",
        "tcp:[]:80", "tcp:::1:80", "tcp:ho st:80", "tcp:host:80 ",
        ("unix:/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),   /* a path over 107 bytes */
    };
    struct migr_transport *t = NULL;
    struct migr_listener *l = NULL;
    struct migr_url u;

    for (size_t i = 0; i < MIGR_ARRAY_SIZE(bad); i++) {
        if (migr_url_parse(bad[i], &u) != -EINVAL)
            T_FAIL("URL '%s' accepted", bad[i]);
        T_ASSERT(migr_last_error()[0]);
        T_EQ(migr_transport_connect(bad[i], &t), -EINVAL);
        T_EQ(migr_listener_open(bad[i], &l), -EINVAL);
    }
    T_EQ(migr_url_parse(NULL, &u), -EINVAL);
    T_EQ(migr_url_parse("foo:bar", &u), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "unknown scheme 'foo' in 'foo:bar'"));
    /* port 0 is for listening only */
    T_EQ(migr_transport_connect("tcp:127.0.0.1:0", &t), -EINVAL);

    T_OK(migr_url_parse("tcp:[::1]:80", &u));
    T_EQ(u.kind, MIGR_URL_TCP);
    T_ASSERT(!strcmp(u.host, "::1"));
    T_EQ(u.port, 80);
    T_OK(migr_url_parse("tcp:example.com:65535", &u));
    T_ASSERT(!strcmp(u.host, "example.com"));
    T_EQ(u.port, 65535);
    T_OK(migr_url_parse("unix:@abstract", &u));
    T_EQ(u.kind, MIGR_URL_UNIX);
    T_ASSERT(!strcmp(u.path, "@abstract"));
    T_EQ(migr_url_parse("tcp:h:1?channels=0", &u), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "channels=0 (expected 1..16)"));
    T_EQ(migr_url_parse("tcp:h:1?speed=9", &u), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "unknown option 'speed'"));
    T_EQ(migr_url_parse("shm:", &u), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "no name after 'shm:'"));
    T_OK(migr_url_parse("tcp:[::1]:80?channels=4", &u));
    T_ASSERT(!strcmp(u.host, "::1"));
    T_EQ(u.port, 80);
    T_EQ(u.channels, 4);
    T_OK(migr_url_parse("shm:vm1?ring=1M", &u));
    T_EQ(u.kind, MIGR_URL_SHM);
    T_ASSERT(!strcmp(u.path, "@migr-shm-vm1"));
    T_EQ(u.ring_bytes, 1u << 20);
    T_OK(migr_url_parse("shm:/tmp/x.sock", &u));
    T_ASSERT(!strcmp(u.path, "/tmp/x.sock"));
    T_OK(migr_url_parse("unix:/tmp/x.sock", &u));
    T_ASSERT(!strcmp(u.path, "/tmp/x.sock"));
}

static void test_in_use(void)
{
    struct migr_listener *l, *l2 = NULL;
    struct migr_transport *t;
    char url[400], msg[400];
    struct stat st;
    int fd;

    T_OK(migr_listener_open("tcp:127.0.0.1:0", &l));
    T_ASSERT(!strncmp(l->bound, "tcp:127.0.0.1:", 14));
    T_ASSERT(strcmp(l->bound, "tcp:127.0.0.1:0"));
    T_EQ(migr_listener_open(l->bound, &l2), -EADDRINUSE);
    snprintf(msg, sizeof(msg), "listen %s: Address already in use", l->bound);
    if (strcmp(migr_last_error(), msg))
        T_FAIL("message '%s', expected '%s'", migr_last_error(), msg);
    snprintf(url, sizeof(url), "%s", l->bound);
    migr_listener_close(l);
    /* Nobody listens any more: connection refused, with the URL in the message. */
    T_EQ(migr_transport_connect(url, &t), -ECONNREFUSED);
    T_ASSERT(strstr(migr_last_error(), url));

    /* unix: a live socket is in use ... */
    snprintf(url, sizeof(url), "unix:%s/live.sock", tmpdir);
    T_OK(migr_listener_open(url, &l));
    T_EQ(migr_listener_open(url, &l2), -EADDRINUSE);
    T_ASSERT(strstr(migr_last_error(), "Address already in use"));
    T_EQ(stat(url + 5, &st), 0);
    migr_listener_close(l);
    /* ... and close removed the socket file it created. */
    T_EQ(stat(url + 5, &st), -1);

    /* A stale socket file (its owner died) is replaced. */
    snprintf(url, sizeof(url), "unix:%s/stale.sock", tmpdir);
    {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        T_ASSERT(strlen(url + 5) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, url + 5, strlen(url + 5) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        T_ASSERT(fd >= 0);
        T_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
    }
    T_EQ(stat(url + 5, &st), 0);
    T_OK(migr_listener_open(url, &l));
    migr_listener_close(l);

    /* A regular file is not ours to remove. */
    snprintf(url, sizeof(url), "unix:%s/file", tmpdir);
    fd = open(url + 5, O_CREAT | O_WRONLY, 0600);
    T_ASSERT(fd >= 0);
    close(fd);
    T_EQ(migr_listener_open(url, &l2), -EADDRINUSE);
    T_EQ(stat(url + 5, &st), 0);
    T_EQ(unlink(url + 5), 0);
}

static void test_missing_unix(void)
{
    struct migr_transport *t = NULL;
    char url[128], msg[300];

    snprintf(url, sizeof(url), "unix:%s/missing.sock", tmpdir);
    T_EQ(migr_transport_connect(url, &t), -ENOENT);
    snprintf(msg, sizeof(msg), "connect %s: No such file or directory", url);
    if (strcmp(migr_last_error(), msg))
        T_FAIL("message '%s', expected '%s'", migr_last_error(), msg);
    T_ASSERT(t == NULL);
}

static void test_accept_timeout(void)
{
    struct migr_listener *l;
    struct migr_transport *t;
    uint64_t t0;

    T_OK(migr_listener_open("tcp:127.0.0.1:0", &l));
    t0 = migr_now_ns();
    T_EQ(migr_listener_accept(l, 100, &t), -ETIMEDOUT);
    T_ASSERT(migr_now_ns() - t0 >= 90000000ull);
    T_EQ(migr_listener_accept(l, 0, &t), -ETIMEDOUT);
    migr_listener_close(l);
}

static void test_abstract_and_v6(void)
{
    struct migr_transport *srv, *cli;
    struct migr_listener *l;
    char url[128], b[5];

    snprintf(url, sizeof(url), "unix:@migr-test-%d", (int)getpid());
    connect_pair(url, &srv, &cli);
    T_OK(migr_transport_send(cli, "hello", 5));
    T_OK(migr_transport_recv(srv, b, 5));
    T_ASSERT(!memcmp(b, "hello", 5));
    migr_transport_close(cli);
    migr_transport_close(srv);

    if (migr_listener_open("tcp:[::1]:0", &l) < 0)
        return;   /* no IPv6 loopback here: nothing more to check */
    T_ASSERT(!strncmp(l->bound, "tcp:[::1]:", 10));
    T_OK(migr_transport_connect(l->bound, &cli));
    T_OK(migr_listener_accept(l, 5000, &srv));
    T_ASSERT(!strncmp(srv->peer, "tcp:[::1]:", 10));
    T_OK(migr_transport_send(srv, "hello", 5));
    T_OK(migr_transport_recv(cli, b, 5));
    migr_transport_close(cli);
    migr_transport_close(srv);
    migr_listener_close(l);
}

/* MIGR_TCAP_POLL_DATA: where a transport claims it, its fd is readable
 * exactly when a byte is there (the engine polls it during the switch,
 * engine/switchover.c); transports that hold bytes in user space must not
 * claim it, or the engine would poll past bytes already read ahead. */
static void test_poll_data(const char *url, bool claims)
{
    struct migr_transport *srv, *cli;
    connect_pair(url, &srv, &cli);
    if (((srv->ops->caps & MIGR_TCAP_POLL_DATA) != 0) != claims ||
        ((cli->ops->caps & MIGR_TCAP_POLL_DATA) != 0) != claims)
        T_FAIL("%s: MIGR_TCAP_POLL_DATA %s expected", url, claims ? "set" : "not");
    if (claims) {
        struct pollfd p = {.fd = srv->fd, .events = POLLIN};
        T_ASSERT(poll(&p, 1, 0) == 0); /* nothing sent yet */
        uint8_t b = 7, got = 0;
        T_OK(migr_transport_send(cli, &b, 1));
        T_ASSERT(poll(&p, 1, 2000) == 1 && (p.revents & POLLIN));
        T_OK(migr_transport_recv(srv, &got, 1));
        T_ASSERT(got == 7);
        p.revents = 0;
        T_ASSERT(poll(&p, 1, 0) == 0); /* read: not readable any more */
    }
    migr_transport_close(cli);
    migr_transport_close(srv);
}

static void cleanup(void)
{
    rmdir(tmpdir);
}

int main(void)
{
    unsigned long long seed = t_seed(), rng = seed;
    uint8_t *src = malloc(STREAM_BYTES), *dst = malloc(STREAM_BYTES);
    char url[128];

    T_ASSERT(src && dst);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/migr-test-XXXXXX");
    T_ASSERT(mkdtemp(tmpdir));
    atexit(cleanup);
    for (size_t i = 0; i < STREAM_BYTES; i += 8) {
        uint64_t v = t_rand(&rng);

        memcpy(src + i, &v, 8);
    }

    test_bad_urls();
    test_missing_unix();
    test_in_use();
    test_accept_timeout();
    test_abstract_and_v6();

    snprintf(url, sizeof(url), "unix:%s/stream.sock", tmpdir);
    test_stream(url, src, dst, seed);
    test_peer_close(url, src);
    t_check_shutdown(url);
    test_stream("tcp:127.0.0.1:0", src, dst, seed + 1);
    test_peer_close("tcp:127.0.0.1:0", src);
    t_check_shutdown("tcp:127.0.0.1:0");
    /* The same stream rules over the shared-memory ring (small ring: it
     * fills and wraps many times) and over four TCP channels. */
    snprintf(url, sizeof(url), "shm:migr-test-%d?ring=256K", getpid());
    test_stream(url, src, dst, seed + 2);
    test_peer_close(url, src);
    t_check_shutdown(url);
    snprintf(url, sizeof(url), "shm:%s/shm.sock", tmpdir);
    test_stream(url, src, dst, seed + 3);
    test_stream("tcp:127.0.0.1:0?channels=4", src, dst, seed + 4);
    snprintf(url, sizeof(url), "unix:%s/poll.sock", tmpdir);
    test_poll_data(url, true);
    test_poll_data("tcp:127.0.0.1:0", true);
    test_poll_data("tcp:127.0.0.1:0?channels=4", false);
    snprintf(url, sizeof(url), "shm:migr-test-poll-%d", getpid());
    test_poll_data(url, false);
    test_peer_close("tcp:127.0.0.1:0?channels=4", src);
    t_check_shutdown("tcp:127.0.0.1:0?channels=4");

    free(src);
    free(dst);
    return 0;
}
