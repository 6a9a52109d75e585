/* tcp ?channels=N: a randomised stream of records (small control records
 * and large page batches, some rewriting the same page) over 2, 4 and 16
 * channels arrives identical and in order, while the receiver answers on
 * the same transport (both directions busy), also to a slow consumer; one channel killed mid-stream
 * gives a clean error on both sides; any tcp listener takes a group and a
 * plain stream alike, a ?channels=2 listener refuses 4 channels and goes
 * on; the sender's channel rule; a multi-channel client at a listener that
 * only closes; port in use; missing peer. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/transport.h"
#include "testlib.h"
#include "transportlib.h"

#define PAGE 4096u
#define NPAGES 512          /* the "guest": pages get rewritten with versions */
#define MAXB 600            /* pages per record at most (2.4 MiB) */

struct rec_hdr {
    uint32_t magic;
    uint32_t npages;        /* 0 = a control record of len bytes */
    uint32_t len;
    uint32_t seq;
};

struct acc {
    struct migr_listener *l;
    struct migr_transport *t;
    int ret;
};

static void *acc_main(void *p)
{
    struct acc *a = p;

    a->ret = migr_listener_accept(a->l, 5000, &a->t);
    if (a->ret < 0)
        fprintf(stderr, "accept: %s\n", migr_last_error());
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

/* Content of page p at version v. */
static void page_fill(uint8_t *b, uint32_t p, uint32_t v)
{
    for (unsigned k = 0; k < PAGE; k += 8) {
        uint64_t x = ((uint64_t)p << 40) ^ ((uint64_t)v << 20) ^ k ^ 0x5bd1e995u;
        memcpy(b + k, &x, 8);
    }
}

struct rx {
    struct migr_transport *t;
    uint32_t nrec;
    int slow;                   /* a slow consumer: sleep before each record */
    int ret;
    uint32_t version[NPAGES];   /* latest version seen per page */
};

/* Receive nrec records, check order and content, answer every 50th with a
 * small ACK the sender reads meanwhile. Pages must arrive with versions
 * that only grow: a newer copy never overtaken by an older one. */
static void *rx_main(void *p)
{
    struct rx *r = p;
    static uint8_t pages[MAXB * PAGE], want[PAGE];
    static uint32_t idx[MAXB], ver[MAXB];
    static uint8_t ctl[4096];

    for (uint32_t s = 0; s < r->nrec; s++) {
        struct rec_hdr h;

        if (r->slow)
            usleep(1000);
        if ((r->ret = migr_transport_recv(r->t, &h, sizeof(h))) < 0)
            return NULL;
        if (h.magic != 0x4d43524d || h.seq != s || h.npages > MAXB || h.len > sizeof(ctl)) {
            fprintf(stderr, "record %u: bad header (seq %u, %u pages)\n", s, h.seq, h.npages);
            r->ret = -EBADMSG;
            return NULL;
        }
        if (h.npages == 0) {
            if ((r->ret = migr_transport_recv(r->t, ctl, h.len)) < 0)
                return NULL;
            for (uint32_t k = 0; k < h.len; k++)
                if (ctl[k] != (uint8_t)(s + k)) {
                    r->ret = -EBADMSG;
                    return NULL;
                }
        } else {
            struct iovec iov[3] = { { idx, h.npages * 4 }, { ver, h.npages * 4 }, { pages, (size_t)h.npages * PAGE } };

            if ((r->ret = migr_transport_recvv(r->t, iov, 3)) < 0)
                return NULL;
            for (uint32_t k = 0; k < h.npages; k++) {
                page_fill(want, idx[k], ver[k]);
                if (idx[k] >= NPAGES || memcmp(want, pages + (size_t)k * PAGE, PAGE) || ver[k] <= r->version[idx[k]]) {
                    fprintf(stderr, "record %u page %u: index %u version %u (had %u)\n", s, k, idx[k], ver[k],
                            idx[k] < NPAGES ? r->version[idx[k]] : 0);
                    r->ret = -EBADMSG;
                    return NULL;
                }
                r->version[idx[k]] = ver[k];
            }
        }
        if (s % 50 == 49 && (r->ret = migr_transport_send(r->t, &s, 4)) < 0)
            return NULL;
    }
    r->ret = 0;
    return NULL;
}

struct acks {
    struct migr_transport *t;
    uint32_t n;
    int ret;
};

static void *ack_main(void *p)
{
    struct acks *a = p;

    for (uint32_t i = 0; i < a->n; i++) {
        uint32_t v;

        if ((a->ret = migr_transport_recv(a->t, &v, 4)) < 0)
            return NULL;
        if (v != i * 50 + 49) {
            a->ret = -EBADMSG;
            return NULL;
        }
    }
    return NULL;
}

/* Send nrec random records; kill_at >= 0: shut channel 2 down before record kill_at. */
static int send_records(struct migr_transport *t, unsigned long long *rng, uint32_t nrec, int kill_at)
{
    static uint8_t pages[MAXB * PAGE];
    static uint32_t idx[MAXB], ver[MAXB], version[NPAGES];
    static uint8_t ctl[4096];
    static struct iovec iov[3 + MAXB];

    memset(version, 0, sizeof(version));
    for (uint32_t s = 0; s < nrec; s++) {
        struct rec_hdr h = { .magic = 0x4d43524d, .seq = s };
        int n = 0, ret;

        if ((int)s == kill_at)
            shutdown(migr_transport_channel_fd(t, 2), SHUT_RDWR);
        iov[n++] = (struct iovec){ &h, sizeof(h) };
        if (t_rand(rng) % 3 == 0) {
            h.len = (uint32_t)(t_rand(rng) % sizeof(ctl));
            for (uint32_t k = 0; k < h.len; k++)
                ctl[k] = (uint8_t)(s + k);
            iov[n++] = (struct iovec){ ctl, h.len };
        } else {
            h.npages = 1 + (uint32_t)(t_rand(rng) % (t_rand(rng) % 2 ? MAXB : 8));
            /* A run of pages from a random start: hot pages get rewritten
             * record after record with a newer version each time. */
            uint32_t p0 = (uint32_t)(t_rand(rng) % NPAGES);
            for (uint32_t k = 0; k < h.npages; k++) {
                idx[k] = (p0 + k) % NPAGES;
                ver[k] = ++version[idx[k]];
                page_fill(pages + (size_t)k * PAGE, idx[k], ver[k]);
            }
            /* a page may appear twice in one record (wrap): later copy is newer */
            iov[n++] = (struct iovec){ idx, h.npages * 4 };
            iov[n++] = (struct iovec){ ver, h.npages * 4 };
            for (uint32_t k = 0; k < h.npages; k++)
                iov[n++] = (struct iovec){ pages + (size_t)k * PAGE, PAGE };
        }
        if ((ret = migr_transport_sendv(t, iov, n)) < 0)
            return ret;
    }
    return 0;
}

static void test_records(const char *u, unsigned long long seed, int slow)
{
    struct migr_transport *srv, *cli;
    static struct rx r;
    struct acks a;
    unsigned long long rng = seed;
    pthread_t th, ta;
    const uint32_t nrec = 400;

    pair(u, &srv, &cli);
    memset(&r, 0, sizeof(r));
    r.t = srv;
    r.nrec = nrec;
    r.slow = slow;
    a = (struct acks){ .t = cli, .n = nrec / 50 };
    T_EQ(pthread_create(&th, NULL, rx_main, &r), 0);
    T_EQ(pthread_create(&ta, NULL, ack_main, &a), 0);
    T_OK(send_records(cli, &rng, nrec, -1));
    T_EQ(pthread_join(th, NULL), 0);
    T_EQ(pthread_join(ta, NULL), 0);
    if (r.ret < 0)
        T_FAIL("%s: receiver: %d %s", u, r.ret, migr_last_error());
    T_OK(a.ret);
    fprintf(stderr, "%s: %u records, %llu bytes\n", u, nrec, (unsigned long long)cli->bytes_sent);
    T_EQ(cli->bytes_sent, srv->bytes_recv);
    T_EQ(srv->bytes_sent, (uint64_t)a.n * 4);
    T_ASSERT(migr_transport_outq(cli) >= 0);
    migr_transport_close(cli);
    migr_transport_close(srv);
}

static void test_kill_channel(unsigned long long seed)
{
    struct migr_transport *srv, *cli;
    static struct rx r;
    unsigned long long rng = seed;
    pthread_t th;

    pair("tcp:127.0.0.1:0?channels=4", &srv, &cli);
    memset(&r, 0, sizeof(r));
    r.t = srv;
    r.nrec = 1000000;
    /* No acks read on this side: the receiver's 4-byte answers just queue. */
    T_EQ(pthread_create(&th, NULL, rx_main, &r), 0);
    int ret = send_records(cli, &rng, 1000000, 40);
    T_EQ(ret, -EPIPE);
    if (!strstr(migr_last_error(), "channel 2"))
        T_FAIL("sender message '%s' does not name the channel", migr_last_error());
    /* As the engine does after a failure: shut the transport down. */
    cli->ops->shutdown(cli);
    T_EQ(pthread_join(th, NULL), 0);
    T_EQ(r.ret, -EPIPE);   /* a clean end, not garbage (-EBADMSG) or a hang */
    migr_transport_close(cli);
    migr_transport_close(srv);
}

/* A raw listening socket on 127.0.0.1 (what an older migr's plain
 * listener looks like to a multi-channel client): its port in *port. */
static int raw_listener(int *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    T_ASSERT(fd >= 0);
    T_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
    T_OK(listen(fd, 16));
    T_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
    *port = ntohs(sa.sin_port);
    return fd;
}

static void test_errors(void)
{
    struct migr_listener *l, *l2;
    struct migr_transport *t, *s;
    char u[400], b[32];

    /* Channel accessor only for multi-channel transports. */
    T_OK(migr_listener_open("tcp:127.0.0.1:0?channels=3", &l));
    T_ASSERT(strstr(l->bound, "?channels=3"));
    /* Port in use, with ?channels too. */
    T_EQ(migr_listener_open(l->bound, &l2), -EADDRINUSE);
    T_ASSERT(strstr(migr_last_error(), "Address already in use"));
    /* A plain client at a ?channels listener: a plain stream (it used to be refused). */
    snprintf(u, sizeof(u), "%s", l->bound);
    *strchr(u, '?') = '\0';
    T_OK(migr_transport_connect(u, &t));
    T_EQ(migr_transport_channel_fd(t, 0), -EINVAL);
    T_OK(migr_transport_send(t, "migr-preamble-and-then-some-more", 32));
    T_OK(migr_listener_accept(l, 2000, &s));
    T_EQ(migr_transport_channel_fd(s, 0), -EINVAL);
    T_OK(migr_transport_recv(s, b, 32));
    T_ASSERT(!memcmp(b, "migr-preamble-and-then-some-more", 32));
    migr_transport_close(s);
    migr_transport_close(t);
    migr_listener_close(l);

    /* A multi-channel client at a listener that only closes (an older
     * migr without ?channels): a clear error. */
    int port, rl = raw_listener(&port);
    snprintf(u, sizeof(u), "tcp:127.0.0.1:%d?channels=2", port);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        int c1 = accept(rl, NULL, NULL), c2 = accept(rl, NULL, NULL);
        if (c1 < 0 || c2 < 0)
            _exit(1);
        char h[32];
        if (read(c1, h, sizeof(h)) != (ssize_t)sizeof(h))   /* the hello read: a clean close, not a reset */
            _exit(1);
        usleep(50000);
        _exit(0);
    }
    T_EQ(migr_transport_connect(u, &t), -EPROTO);
    T_ASSERT(strstr(migr_last_error(), "connect with ?channels=1"));
    int st = 0;
    T_EQ(waitpid(pid, &st, 0), pid);
    T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(rl);

    /* Missing peer. */
    T_OK(migr_listener_open("tcp:127.0.0.1:0?channels=2", &l));
    snprintf(u, sizeof(u), "%s", l->bound);
    migr_listener_close(l);
    T_EQ(migr_transport_connect(u, &t), -ECONNREFUSED);
    T_ASSERT(strstr(migr_last_error(), "channel 0 of 2"));
}

/* n bytes of a pattern from seed both ways over the pair: intact, in order. */
static void roundtrip(struct migr_transport *a, struct migr_transport *b, size_t n, unsigned seed)
{
    uint8_t *x = malloc(n), *y = malloc(n);

    T_ASSERT(x && y);
    for (size_t i = 0; i < n; i++)
        x[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
    T_OK(migr_transport_send(a, x, n));
    T_OK(migr_transport_recv(b, y, n));
    T_ASSERT(!memcmp(x, y, n));
    T_OK(migr_transport_send(b, y, n));
    memset(x, 0, n);
    T_OK(migr_transport_recv(a, x, n));
    T_ASSERT(!memcmp(x, y, n));
    free(x);
    free(y);
}

struct conn_arg {
    char url[400];
    int ret;
    struct migr_transport *t;
    char err[400];
};

static void *connect_main(void *p)
{
    struct conn_arg *a = p;

    a->ret = migr_transport_connect(a->url, &a->t);
    if (a->ret < 0)
        snprintf(a->err, sizeof(a->err), "%s", migr_last_error());
    return NULL;
}

/* The listener takes both (docs/transport.md, "Choosing the channels"): one
 * listener without ?channels, and a 4-channel sender, then a plain one, then
 * 4 channels again; each stream round-trips intact. The bound URL carries no
 * ?channels. */
static void test_listener_takes_both(void)
{
    static const char *const opts[3] = { "?channels=4", "", "?channels=4" };
    struct migr_listener *l;

    T_OK(migr_listener_open("tcp:127.0.0.1:0", &l));
    T_ASSERT(!strchr(l->bound, '?'));
    for (int i = 0; i < 3; i++) {
        struct conn_arg a = { 0 };
        struct migr_transport *s;
        pthread_t th;

        snprintf(a.url, sizeof(a.url), "%s%s", l->bound, opts[i]);
        T_EQ(pthread_create(&th, NULL, connect_main, &a), 0);
        T_OK(migr_listener_accept(l, 5000, &s));
        T_EQ(pthread_join(th, NULL), 0);
        if (a.ret < 0)
            T_FAIL("connect %s: %s", a.url, a.err);
        /* 4 channels on both ends, or one plain stream. */
        T_EQ(migr_transport_channel_fd(s, 3) >= 0, opts[i][0] != 0);
        T_EQ(migr_transport_channel_fd(a.t, 3) >= 0, opts[i][0] != 0);
        T_EQ(migr_transport_channel_fd(s, 4), -EINVAL);
        roundtrip(a.t, s, (size_t)3 << 20, (unsigned)i);   /* 3 MiB: a round over all channels */
        migr_transport_close(a.t);
        migr_transport_close(s);
    }
    /* A plain client that waits for the listener to speak first: after a
     * short look (no multi-channel hello came) it is a plain stream. */
    struct migr_transport *c, *s;
    T_OK(migr_transport_connect(l->bound, &c));
    uint64_t t0 = migr_now_ns();
    T_OK(migr_listener_accept(l, 5000, &s));
    T_ASSERT(migr_now_ns() - t0 < 2000000000ull);
    T_EQ(migr_transport_channel_fd(s, 0), -EINVAL);
    roundtrip(s, c, 4096, 3u);
    migr_transport_close(c);
    migr_transport_close(s);
    migr_listener_close(l);
}

/* A listener's ?channels=2 is the largest group it takes: a 4-channel
 * sender is refused with a reason on both sides, and the next client (2
 * channels, then a plain one) gets in. */
static void test_group_too_big(void)
{
    struct migr_link_opts o = { .keep_listening = 1, .handshake_ms = 2000, .on_reject = t_on_reject };
    static const char *const opts[2] = { "?channels=2", "?channels=1" };
    struct migr_listener *l;
    struct migr_transport *t, *s;
    char u[400];

    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0?channels=2", &o, &l));
    T_ASSERT(strstr(l->bound, "?channels=2"));
    snprintf(u, sizeof(u), "%.*s?channels=4", (int)(strchr(l->bound, '?') - l->bound), l->bound);
    for (int i = 0; i < 2; i++) {
        struct conn_arg a = { 0 };
        pthread_t th;

        t_rejects[0] = 0;
        snprintf(a.url, sizeof(a.url), "%s", u);
        T_EQ(pthread_create(&th, NULL, connect_main, &a), 0);
        /* The group is refused channel by channel; the listener goes on and times out. */
        T_EQ(migr_listener_accept(l, 500, &s), -ETIMEDOUT);
        T_EQ(pthread_join(th, NULL), 0);
        T_EQ(a.ret, -EPROTO);
        if (!strstr(a.err, "the listener takes at most 2 channels, not 4 (connect with ?channels=2)"))
            T_FAIL("sender's message: %s", a.err);
        if (!strstr(t_rejects, "asks for 4 channels; this listener takes at most 2"))
            T_FAIL("listener's rejects: %s", t_rejects);

        /* The next valid client. */
        memset(&a, 0, sizeof(a));
        snprintf(a.url, sizeof(a.url), "%.*s%s", (int)(strchr(l->bound, '?') - l->bound), l->bound, opts[i]);
        T_EQ(pthread_create(&th, NULL, connect_main, &a), 0);
        T_OK(migr_listener_accept(l, 5000, &s));
        T_EQ(pthread_join(th, NULL), 0);
        if (a.ret < 0)
            T_FAIL("connect %s: %s", a.url, a.err);
        T_EQ(migr_transport_channel_fd(s, 1) >= 0, i == 0);
        roundtrip(a.t, s, (size_t)1 << 20, 7u + (unsigned)i);
        t = a.t;
        migr_transport_close(t);
        migr_transport_close(s);
    }
    migr_listener_close(l);
}

/* The sender's rule, a pure function of the URL (R: a remote host's default). */
static void test_channel_rule(void)
{
    enum { R = MIGR_MC_DEFAULT_CHANNELS };
    static const struct {
        const char *url;
        unsigned n;
    } cases[] = {
        { "tcp:127.0.0.1:7000", 1 },         { "tcp:127.1.2.3:7000", 1 },
        { "tcp:[::1]:7000", 1 },             { "tcp:[::ffff:127.0.0.1]:7000", 1 },
        { "tcp:localhost:7000", 1 },         { "tcp:LocalHost:7000", 1 },
        { "tcp:10.77.1.2:7000", R },         { "tcp:192.168.0.9:7000", R },
        { "tcp:[fd00::2]:7000", R },         { "tcp:db1.example:7000", R },
        { "tcp:128.0.0.1:7000", R },         { "tcp:localhost.example:7000", R },
        { "tcp:10.77.1.2:7000?channels=1", 1 }, { "tcp:10.77.1.2:7000?channels=2", 2 },
        { "tcp:127.0.0.1:7000?channels=4", 4 }, { "tcp:10.77.1.2:7000?uring=1", 1 },
        { "tcp:10.77.1.2:7000?uring=1&channels=1", 1 }, { "tcp:10.77.1.2:7000?encrypt=1", R },
        { "unix:/tmp/x.sock", 1 },           { "shm:x", 1 },
    };
    struct migr_url u;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        T_OK(migr_url_parse(cases[i].url, &u));
        if (migr_url_channels_for_peer(&u) != cases[i].n)
            T_FAIL("%s: %u channels, expected %u", cases[i].url, migr_url_channels_for_peer(&u), cases[i].n);
    }
    /* Both explicit: still refused. */
    T_EQ(migr_url_parse("tcp:10.77.1.2:7000?uring=1&channels=4", &u), -EINVAL);
}

/* Unread data queued on the channels counts, on all of them. */
static void test_outq(void)
{
    struct migr_transport *srv, *cli;
    static uint8_t buf[1u << 20];   /* 256 KiB per channel: fits unread in any socket buffer */

    pair("tcp:127.0.0.1:0?channels=4", &srv, &cli);
    T_OK(migr_transport_send(cli, buf, sizeof(buf)));
    long long q = migr_transport_outq(cli);
    /* Loopback moves most of it into the receiver's buffers at once; what
     * is still queued can only be less than what was sent. */
    T_ASSERT(q >= 0 && q <= (long long)sizeof(buf) + 4 * 32);
    T_OK(migr_transport_recv(srv, buf, sizeof(buf)));
    for (int i = 0; i < 100 && migr_transport_outq(cli) > 0; i++)
        usleep(10000);
    T_EQ(migr_transport_outq(cli), 0);
    migr_transport_close(cli);
    migr_transport_close(srv);
}

int main(void)
{
    unsigned long long seed = t_seed();

    test_channel_rule();
    test_errors();
    test_listener_takes_both();
    test_group_too_big();
    test_records("tcp:127.0.0.1:0?channels=2", seed, 0);
    test_records("tcp:127.0.0.1:0?channels=4", seed + 1, 0);
    test_records("tcp:127.0.0.1:0?channels=16", seed + 2, 0);
    test_records("tcp:127.0.0.1:0?channels=3", seed + 3, 0);
    /* A slow consumer: the socket buffers fill, the sender threads block,
     * nothing is lost or reordered. */
    test_records("tcp:127.0.0.1:0?channels=4", seed + 5, 1);
    test_kill_channel(seed + 4);
    test_outq();
    return 0;
}
