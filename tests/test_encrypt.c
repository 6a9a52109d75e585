/* Encryption (docs/format.md, "Encryption"): AES-256-GCM frames after the
 * authentication handshake.
 *   - tcp:, unix:, tcp ?channels=3: 8 MiB of random data in random iovec
 *     splits both ways, verified, with either side asking (?encrypt=1 on
 *     the client's URL or the listener's, or o->encrypt);
 *   - through a relay that records the wire: the plaintext never appears;
 *   - the relay flips one bit of a frame: the receiver refuses the frame
 *     ("failed its authentication tag"), no byte of it is handed out;
 *   - the relay clears the encryption flag of the client's hello (a
 *     downgrade): both sides refuse the handshake;
 *   - encryption without a key: refused.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "migr/common.h"
#include "migr/transport.h"
#include "testlib.h"

static struct migr_key *key;
static unsigned long long seed;

struct acc {
    struct migr_listener *l;
    struct migr_transport *t;
    int ret;
    char err[400];
};

static void *acc_main(void *p)
{
    struct acc *a = p;

    a->ret = migr_listener_accept(a->l, 3000, &a->t);
    snprintf(a->err, sizeof(a->err), "%s", migr_last_error());
    return NULL;
}

/* Send n bytes in random pieces, receive them in other random pieces. */
static void *sender(void *p)
{
    void **v = p;
    struct migr_transport *t = v[0];
    const uint8_t *buf = v[1];
    size_t n = (size_t)v[2], off = 0;
    unsigned long long s = seed ^ (unsigned long long)n;

    while (off < n) {
        struct iovec iov[8];
        int k = 0;

        for (; k < 8 && off < n; k++) {
            size_t r = (size_t)(t_rand(&s) % 300000), len = MIGR_MIN(n - off, r);   /* MIGR_MIN evaluates twice */

            iov[k] = (struct iovec){ .iov_base = (void *)(buf + off), .iov_len = len };
            off += len;
        }
        if (migr_transport_sendv(t, iov, k) < 0)
            T_FAIL("sendv");
    }
    return NULL;
}

static void stream(struct migr_transport *a, struct migr_transport *b, size_t n)
{
    uint8_t *x = malloc(n), *y = malloc(n);
    void *arg[3] = { a, x, (void *)n };
    unsigned long long s = seed;
    pthread_t th;
    size_t off = 0;

    T_ASSERT(x && y);
    T_ASSERT(RAND_bytes(x, (int)n) == 1);
    T_EQ(pthread_create(&th, NULL, sender, arg), 0);
    while (off < n) {
        size_t r = (size_t)(t_rand(&s) % 70000 + 1), len = MIGR_MIN(n - off, r);

        T_OK(migr_transport_recv(b, y + off, len));
        off += len;
    }
    T_EQ(pthread_join(th, NULL), 0);
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            T_FAIL("%s: byte %zu of %zu differs", a->peer, i, n);
    free(x);
    free(y);
}

static void pair(const char *lurl, int lenc, const char *csuffix, int cenc, struct migr_transport **srv,
                 struct migr_transport **cli)
{
    struct migr_link_opts ol = { .key = key, .encrypt = lenc }, oc = { .key = key, .encrypt = cenc };
    struct migr_listener *l;
    struct acc a = { 0 };
    pthread_t th;
    char url[400];

    T_OK(migr_listener_open_opts(lurl, &ol, &l));
    a.l = l;
    T_EQ(pthread_create(&th, NULL, acc_main, &a), 0);
    snprintf(url, sizeof(url), "%s%s", l->bound, csuffix);
    T_OK(migr_transport_connect_opts(url, &oc, cli));
    T_EQ(pthread_join(th, NULL), 0);
    if (a.ret < 0)
        T_FAIL("accept %s: %s", lurl, a.err);
    *srv = a.t;
    migr_listener_close(l);
}

static void test_streams(void)
{
    char unix_url[96];

    snprintf(unix_url, sizeof(unix_url), "unix:/tmp/migr-test-enc-%d.sock", getpid());
    struct { const char *l; int le; const char *cs; int ce; } cases[] = {
        { "tcp:127.0.0.1:0?encrypt=1", 0, "", 0 },          /* the listener asks (its bound URL says so) */
        { "tcp:127.0.0.1:0", 0, "?encrypt=1", 0 },          /* the client asks */
        { "tcp:127.0.0.1:0", 1, "", 0 },                    /* the listener's options ask */
        { unix_url, 0, "", 1 },                             /* the client's options ask */
        { "tcp:127.0.0.1:0?channels=3", 0, "&encrypt=1", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct migr_transport *s, *c;

        pair(cases[i].l, cases[i].le, cases[i].cs, cases[i].ce, &s, &c);
        T_ASSERT(c->link == (MIGR_LINK_AUTH | MIGR_LINK_ENCRYPT));
        T_ASSERT(s->link == (MIGR_LINK_AUTH | MIGR_LINK_ENCRYPT));
        stream(c, s, 8u << 20);
        stream(s, c, 1u << 20);
        if (c->bytes_sent != 8u << 20)
            T_FAIL("case %zu (%s): bytes_sent %llu", i, cases[i].l, (unsigned long long)c->bytes_sent);
        T_EQ(s->bytes_recv, 8u << 20);
        migr_transport_close(c);
        migr_transport_close(s);
    }
    /* Without ?encrypt anywhere: authenticated only. */
    struct migr_transport *s, *c;
    pair("tcp:127.0.0.1:0", 0, "", 0, &s, &c);
    T_EQ(c->link, MIGR_LINK_AUTH);
    migr_transport_close(c);
    migr_transport_close(s);
}

/* ---- a relay between client and listener that can read and alter ---- */

struct relay {
    int lfd, port;
    int upstream_port;
    long flip_at;          /* flip bit 0 of this client->server byte (-1: none) */
    int clear_encrypt;     /* clear the encrypt flag of HELLO_C */
    uint8_t *rec;          /* client->server bytes */
    size_t nrec, cap;
};

static int tcp_to(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    T_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
    return fd;
}

static void *relay_main(void *p)
{
    struct relay *r = p;
    int c = accept(r->lfd, NULL, NULL), u = tcp_to(r->upstream_port);
    uint8_t b[65536];
    size_t off = 0;

    T_ASSERT(c >= 0);
    for (;;) {
        struct pollfd pf[2] = { { .fd = c, .events = POLLIN }, { .fd = u, .events = POLLIN } };

        if (poll(pf, 2, 5000) <= 0)
            break;
        if (pf[0].revents) {
            ssize_t n = read(c, b, sizeof(b));
            if (n <= 0)
                break;
            for (ssize_t i = 0; i < n; i++, off++) {
                if ((long)off == r->flip_at)
                    b[i] ^= 1;
                if (r->clear_encrypt && off == 10)
                    b[i] &= (uint8_t)~1u;
            }
            if (r->nrec + (size_t)n <= r->cap) {
                memcpy(r->rec + r->nrec, b, (size_t)n);
                r->nrec += (size_t)n;
            }
            if (write(u, b, (size_t)n) != n)
                break;
        }
        if (pf[1].revents) {
            ssize_t n = read(u, b, sizeof(b));
            if (n <= 0 || write(c, b, (size_t)n) != n)
                break;
        }
    }
    close(c);
    close(u);
    return NULL;
}

static void relay_start(struct relay *r, pthread_t *th, int upstream_port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t sl = sizeof(sa);

    r->upstream_port = upstream_port;
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    T_OK(bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)));
    T_OK(listen(r->lfd, 2));
    T_OK(getsockname(r->lfd, (struct sockaddr *)&sa, &sl));
    r->port = ntohs(sa.sin_port);
    r->cap = 4u << 20;
    r->rec = malloc(r->cap);
    T_EQ(pthread_create(th, NULL, relay_main, r), 0);
}

static void relay_end(struct relay *r, pthread_t th)
{
    T_EQ(pthread_join(th, NULL), 0);
    close(r->lfd);
}

static void test_relay(int mode)
{
    struct migr_link_opts ol = { .key = key, .handshake_ms = 2000 }, oc = { .key = key, .encrypt = 1 };
    struct migr_listener *l;
    struct acc a = { 0 };
    struct relay r = { .flip_at = -1 };
    pthread_t th, rt;
    char url[64];
    struct migr_transport *c;

    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0", &ol, &l));
    a.l = l;
    if (mode == 1)
        r.flip_at = 48 + 40 + 4 + 1000;   /* inside the first frame's ciphertext */
    if (mode == 2)
        r.clear_encrypt = 1;
    relay_start(&r, &rt, atoi(strrchr(l->bound, ':') + 1));
    T_EQ(pthread_create(&th, NULL, acc_main, &a), 0);
    snprintf(url, sizeof(url), "tcp:127.0.0.1:%d", r.port);
    if (mode == 2) {
        T_EQ(migr_transport_connect_opts(url, &oc, &c), -EACCES);   /* mac_s does not cover our hello */
        T_EQ(pthread_join(th, NULL), 0);
        T_EQ(a.ret, -ETIMEDOUT);
        T_ASSERT(strstr(l->last_reject, "key differs from ours"));
        relay_end(&r, rt);
        free(r.rec);
        migr_listener_close(l);
        return;
    }
    T_OK(migr_transport_connect_opts(url, &oc, &c));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(a.ret);
    uint8_t msg[4096], got[4096];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)("a secret page of guest memory. "[i % 31]);
    T_OK(migr_transport_send(c, msg, sizeof(msg)));
    if (mode == 0) {
        T_OK(migr_transport_recv(a.t, got, sizeof(got)));
        T_ASSERT(!memcmp(msg, got, sizeof(msg)));
        migr_transport_close(c);
        migr_transport_close(a.t);
        relay_end(&r, rt);   /* the relay ends when both sides have closed */
        T_ASSERT(r.nrec >= sizeof(msg));
        T_ASSERT(!memmem(r.rec, r.nrec, "a secret page", 13));
        free(r.rec);
    } else {
        memset(got, 0, sizeof(got));
        T_EQ(migr_transport_recv(a.t, got, sizeof(got)), -EBADMSG);
        T_ASSERT(strstr(migr_last_error(), "failed its authentication tag"));
        for (size_t i = 0; i < sizeof(got); i++)
            T_ASSERT(got[i] == 0);   /* nothing of the altered frame was handed out */
        migr_transport_close(c);
        migr_transport_close(a.t);
        relay_end(&r, rt);
        free(r.rec);
    }
    migr_listener_close(l);
}

static void test_no_key(void)
{
    struct migr_listener *l;
    struct migr_transport *t;
    struct migr_link_opts o = { .encrypt = 1 };

    T_EQ(migr_listener_open("tcp:127.0.0.1:0?encrypt=1", &l), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "encryption needs a key"));
    T_EQ(migr_transport_connect_opts("tcp:127.0.0.1:9", &o, &t), -EINVAL);
    T_EQ(migr_listener_open("tcp:127.0.0.1:0?encrypt=2", &l), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "encrypt=2"));
    T_EQ(migr_listener_open("shm:x?encrypt=1", &l), -EINVAL);
}

int main(void)
{
    seed = t_seed();
    T_OK(migr_key_new("0123456789abcdef0123456789abcdef", 32, &key));
    test_streams();
    test_relay(0);
    test_relay(1);
    test_relay(2);
    test_no_key();
    migr_key_free(key);
    return 0;
}
