/* tcp ?channels=N: a randomised stream of records (small control records
 * and large page batches, some rewriting the same page) over 2, 4 and 16
 * channels arrives identical and in order, while the receiver answers on
 * the same transport (both directions busy), also to a slow consumer; one channel killed mid-stream
 * gives a clean error on both sides; a plain client at a multi-channel
 * listener and the reverse; port in use; missing peer. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migr/transport.h"
#include "testlib.h"

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

static void test_errors(void)
{
    struct migr_listener *l, *l2;
    struct migr_transport *t, *s;
    char u[400];

    /* Channel accessor only for multi-channel transports. */
    T_OK(migr_listener_open("tcp:127.0.0.1:0?channels=3", &l));
    T_ASSERT(strstr(l->bound, "?channels=3"));
    /* Port in use, with ?channels too. */
    T_EQ(migr_listener_open(l->bound, &l2), -EADDRINUSE);
    T_ASSERT(strstr(migr_last_error(), "Address already in use"));
    /* A plain client at a multi-channel listener: refused with a reason. */
    snprintf(u, sizeof(u), "%s", l->bound);
    *strchr(u, '?') = '\0';
    T_OK(migr_transport_connect(u, &t));
    T_EQ(migr_transport_channel_fd(t, 0), -EINVAL);
    T_OK(migr_transport_send(t, "migr-preamble-and-then-some-more", 32));
    T_EQ(migr_listener_accept(l, 2000, &s), -EPROTO);
    T_ASSERT(strstr(migr_last_error(), "not a multi-channel client"));
    migr_transport_close(t);
    migr_listener_close(l);

    /* A multi-channel client at a plain listener that closes: a clear error. */
    T_OK(migr_listener_open("tcp:127.0.0.1:0", &l));
    snprintf(u, sizeof(u), "%s?channels=2", l->bound);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        struct migr_transport *c1, *c2;
        if (migr_listener_accept(l, 5000, &c1) < 0 || migr_listener_accept(l, 5000, &c2) < 0)
            _exit(1);
        usleep(50000);
        _exit(0);
    }
    T_EQ(migr_transport_connect(u, &t), -EPROTO);
    T_ASSERT(strstr(migr_last_error(), "does it use ?channels=N too?"));
    T_EQ(waitpid(pid, NULL, 0), pid);
    migr_listener_close(l);

    /* Missing peer. */
    T_OK(migr_listener_open("tcp:127.0.0.1:0?channels=2", &l));
    snprintf(u, sizeof(u), "%s", l->bound);
    migr_listener_close(l);
    T_EQ(migr_transport_connect(u, &t), -ECONNREFUSED);
    T_ASSERT(strstr(migr_last_error(), "channel 0 of 2"));
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

    test_errors();
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
