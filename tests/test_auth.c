/* Authentication (docs/transport.md, "Authentication"; layout in
 * docs/format.md): both sides prove the key before the stream starts.
 *
 * - key files: owner-only or refused, size limits;
 * - the same key: tcp:, unix:, tcp ?channels=3 and shm: carry data both
 *   ways, marked MIGR_LINK_AUTH; a hand-made client following
 *   docs/format.md byte for byte is accepted (the layout is the spec);
 * - a wrong key: the client says "wrong key", the listener drops it and
 *   goes on listening;
 * - a replayed handshake (hello and proof of an earlier session), a
 *   reflected one (the server's own proof sent back): refused;
 * - a client that speaks out of turn, a listener that speaks first: refused;
 * - downgrades: a client without a key at a keyed listener, a keyed client
 *   at a listener without one: refused with a message that says so;
 * - a tcp: listener on a non-loopback address without a key: refused
 *   before binding;
 * - a silent client does not hold up the real one, and is dropped at the
 *   handshake time-out.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "migr/common.h"
#include "migr/format.h"
#include "migr/transport.h"
#include "testlib.h"
#include "transportlib.h"

static char dir[64];
static struct migr_key *key, *other;

static void write_file(const char *path, const char *s, mode_t mode)
{
    FILE *f = fopen(path, "w");

    T_ASSERT(f);
    T_ASSERT(fputs(s, f) >= 0);
    T_OK(fclose(f));
    T_OK(chmod(path, mode));
}

static void test_key_files(void)
{
    char p[128];
    struct migr_key *k;

    snprintf(p, sizeof(p), "%s/key", dir);
    write_file(p, "0123456789abcdef0123456789abcdef\n", 0644);
    T_EQ(migr_key_load(p, &k), -EACCES);
    T_ASSERT(strstr(migr_last_error(), "chmod 600"));
    T_OK(chmod(p, 0640));
    T_EQ(migr_key_load(p, &k), -EACCES);
    T_OK(chmod(p, 0600));
    T_OK(migr_key_load(p, &k));
    migr_key_free(k);
    write_file(p, "short\n", 0600);
    T_EQ(migr_key_load(p, &k), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "16..4096 bytes"));
    snprintf(p, sizeof(p), "%s/missing", dir);
    T_EQ(migr_key_load(p, &k), -ENOENT);
    T_ASSERT(strstr(migr_last_error(), p));
    T_EQ(migr_key_load(dir, &k), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "not a regular file"));
}

struct acc {
    struct migr_listener *l;
    int timeout_ms;
    struct migr_transport *t;
    int ret;
    char err[400];
};

static void *acc_main(void *p)
{
    struct acc *a = p;

    a->ret = migr_listener_accept(a->l, a->timeout_ms, &a->t);
    snprintf(a->err, sizeof(a->err), "%s", migr_last_error());
    return NULL;
}

static void acc_start(struct acc *a, pthread_t *th, struct migr_listener *l, int ms)
{
    memset(a, 0, sizeof(*a));
    a->l = l;
    a->timeout_ms = ms;
    T_EQ(pthread_create(th, NULL, acc_main, a), 0);
}

/* Both ends of url with key k on each side (NULL = none). */
static void pair(const char *url, const struct migr_key *kl, const struct migr_key *kc, struct migr_transport **srv,
                 struct migr_transport **cli)
{
    struct migr_link_opts ol = { .key = kl }, oc = { .key = kc };
    struct migr_listener *l;
    struct acc a;
    pthread_t th;

    T_OK(migr_listener_open_opts(url, &ol, &l));
    acc_start(&a, &th, l, 5000);
    T_OK(migr_transport_connect_opts(l->bound, &oc, cli));
    T_EQ(pthread_join(th, NULL), 0);
    if (a.ret < 0)
        T_FAIL("accept on %s: %s", url, a.err);
    *srv = a.t;
    migr_listener_close(l);
}

static void exchange(struct migr_transport *a, struct migr_transport *b)
{
    static uint8_t x[1 << 20], y[1 << 20];

    T_ASSERT(RAND_bytes(x, sizeof(x)) == 1);
    T_OK(migr_transport_send(a, x, sizeof(x)));
    T_OK(migr_transport_recv(b, y, sizeof(y)));
    T_ASSERT(!memcmp(x, y, sizeof(x)));
    T_OK(migr_transport_send(b, "pong", 4));
    T_OK(migr_transport_recv(a, y, 4));
    T_ASSERT(!memcmp(y, "pong", 4));
}

static void test_same_key(void)
{
    char url[128];
    const char *urls[4] = { "tcp:127.0.0.1:0", url, "tcp:127.0.0.1:0?channels=3", NULL };
    char shm[64];

    snprintf(url, sizeof(url), "unix:%s/s.sock", dir);
    snprintf(shm, sizeof(shm), "shm:migr-auth-%d", getpid());
    urls[3] = shm;
    for (int i = 0; i < 4; i++) {
        struct migr_transport *s, *c;

        pair(urls[i], key, key, &s, &c);
        T_ASSERT(s->link & MIGR_LINK_AUTH);
        T_ASSERT(c->link & MIGR_LINK_AUTH);
        exchange(c, s);
        migr_transport_close(c);
        migr_transport_close(s);
    }
}

/* ---- a client made by hand from docs/format.md, "Authentication" ---- */

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

static void raw_read(int fd, void *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);

        if (r <= 0)
            T_FAIL("read %zu bytes: got %zu", n, got);
        got += (size_t)r;
    }
}

static void mac(const char *secret, const char *label, const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
                uint8_t *out)
{
    uint8_t msg[256];
    unsigned int ml = 0;
    size_t ll = strlen(label);

    memcpy(msg, label, ll);
    memcpy(msg + ll, a, an);
    memcpy(msg + ll + an, b, bn);
    T_ASSERT(HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, ll + an + bn, out, &ml));
    T_EQ(ml, 32);
}

static const char SECRET[] = "the key both sides know, 32 bytes";

static void hello_c(uint8_t h[48])
{
    memset(h, 0, 48);
    memcpy(h, "MIGRAUC1", 8);
    h[8] = 1;   /* version 1, flags 0, reserved 0 */
    T_ASSERT(RAND_bytes(h + 16, 32) == 1);
}

/* A keyed listener's accept runs in a thread; fd is a raw client. */
static void test_handmade_replay_reflect(void)
{
    struct migr_link_opts o = { .key = key, .handshake_ms = 2000 };
    struct migr_listener *l;
    uint8_t hc[48], hs[80], fin[40], res[8], hs2[80];
    struct acc a;
    pthread_t th;
    int fd;

    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0", &o, &l));
    /* By the book: accepted, and the stream flows after MIGRAUOK. */
    acc_start(&a, &th, l, 5000);
    fd = raw_connect(l);
    hello_c(hc);
    T_EQ(write(fd, hc, 48), 48);
    raw_read(fd, hs, 80);
    T_ASSERT(!memcmp(hs, "MIGRAUS1", 8) && hs[8] == 1 && hs[9] == 0 && hs[10] == 0);
    uint8_t want[32];
    uint8_t part[48];
    memcpy(part, hs, 48);
    mac(SECRET, "migr-auth-v1 server", hc, 48, part, 48, want);
    T_ASSERT(!memcmp(want, hs + 48, 32));
    memcpy(fin, "MIGRAUF1", 8);
    mac(SECRET, "migr-auth-v1 client", hc, 48, hs, 80, fin + 8);
    T_EQ(write(fd, fin, 40), 40);
    raw_read(fd, res, 8);
    T_ASSERT(!memcmp(res, "MIGRAUOK", 8));
    T_EQ(write(fd, "hi", 2), 2);
    T_EQ(pthread_join(th, NULL), 0);
    if (a.ret < 0)
        T_FAIL("hand-made client refused: %s", a.err);
    T_ASSERT(a.t->link & MIGR_LINK_AUTH);
    T_OK(migr_transport_recv(a.t, res, 2));
    T_ASSERT(!memcmp(res, "hi", 2));
    migr_transport_close(a.t);
    close(fd);

    /* Replayed: the same hello and proof on a new connection. */
    acc_start(&a, &th, l, 3000);
    fd = raw_connect(l);
    T_EQ(write(fd, hc, 48), 48);
    raw_read(fd, hs2, 80);
    T_ASSERT(memcmp(hs2 + 16, hs + 16, 32));   /* a fresh server nonce */
    T_EQ(write(fd, fin, 40), 40);
    raw_read(fd, res, 8);
    T_ASSERT(!memcmp(res, "MIGRAUNO", 8));
    T_EQ(pthread_join(th, NULL), 0);
    T_EQ(a.ret, -ETIMEDOUT);   /* dropped; the listener went on */
    T_ASSERT(strstr(l->last_reject, "replayed"));
    close(fd);

    /* Reflected: the server's own proof as the client's. */
    acc_start(&a, &th, l, 3000);
    fd = raw_connect(l);
    hello_c(hc);
    T_EQ(write(fd, hc, 48), 48);
    raw_read(fd, hs, 80);
    memcpy(fin, "MIGRAUF1", 8);
    memcpy(fin + 8, hs + 48, 32);
    T_EQ(write(fd, fin, 40), 40);
    raw_read(fd, res, 8);
    T_ASSERT(!memcmp(res, "MIGRAUNO", 8));
    T_EQ(pthread_join(th, NULL), 0);
    T_EQ(a.ret, -ETIMEDOUT);
    T_ASSERT(strstr(l->last_reject, "does not match our key"));
    close(fd);

    /* Out of turn: the hello and more bytes before the server answered. */
    acc_start(&a, &th, l, 3000);
    fd = raw_connect(l);
    uint8_t two[64];
    hello_c(two);
    memcpy(two + 48, MIGR_STREAM_MAGIC "\1\0\0\0\0\0\0\0", 16);
    T_EQ(write(fd, two, 64), 64);
    T_EQ(pthread_join(th, NULL), 0);
    T_EQ(a.ret, -ETIMEDOUT);
    T_ASSERT(strstr(l->last_reject, "spoke out of turn"));
    close(fd);

    /* Downgrade: a plain source (no key) starts its stream at once. */
    acc_start(&a, &th, l, 3000);
    struct migr_transport *c;
    struct migr_link_opts none = { 0 };
    T_OK(migr_transport_connect_opts(l->bound, &none, &c));
    T_OK(migr_transport_send(c, MIGR_STREAM_MAGIC "\1\0\0\0\0\0\0\0" "more stream bytes and so on ....", 48));
    T_EQ(pthread_join(th, NULL), 0);
    T_EQ(a.ret, -ETIMEDOUT);
    T_ASSERT(strstr(l->last_reject, "without authenticating"));
    T_EQ(migr_transport_recv(c, res, 1), -EPIPE);   /* and it is told by a closed connection */
    migr_transport_close(c);
    T_ASSERT(l->rejected == 4);
    migr_listener_close(l);
}

static void test_wrong_key(void)
{
    struct migr_link_opts ol = { .key = key, .handshake_ms = 2000, .on_reject = t_on_reject },
                          oc = { .key = other };
    struct migr_listener *l;
    struct migr_transport *c;
    struct acc a;
    pthread_t th;

    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0?channels=2", &ol, &l));
    acc_start(&a, &th, l, 1500);
    T_EQ(migr_transport_connect_opts(l->bound, &oc, &c), -EACCES);
    T_ASSERT(strstr(migr_last_error(), "wrong key"));
    T_ASSERT(strstr(migr_last_error(), "channel 0 of 2"));
    T_EQ(pthread_join(th, NULL), 0);
    T_EQ(a.ret, -ETIMEDOUT);
    if (!strstr(t_rejects, "its key differs from ours"))
        T_FAIL("the listener's reasons do not name the key: %s", t_rejects);
    /* ... and the real source still gets in afterwards. */
    ol.key = key;
    acc_start(&a, &th, l, 5000);
    oc.key = key;
    T_OK(migr_transport_connect_opts(l->bound, &oc, &c));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(a.ret);
    exchange(c, a.t);
    migr_transport_close(c);
    migr_transport_close(a.t);
    migr_listener_close(l);
}

/* A keyed client at listeners that do not authenticate. */
static void *plain_server(void *p)
{
    int *fds = p;   /* [0] listening socket, [1] mode: 0 = read the hello and close, 1 = speak first */
    int fd = accept(fds[0], NULL, NULL);
    uint8_t b[48];

    if (fd < 0)
        return NULL;
    if (fds[1] == 1) {
        uint8_t junk[96] = { 0 };
        memcpy(junk, MIGR_STREAM_MAGIC "\1\0\0\0\0\0\0\0", 16);   /* a migr stream, unasked */
        (void)!write(fd, junk, sizeof(junk));
        usleep(300000);
    } else {
        raw_read(fd, b, 48);
    }
    close(fd);
    return NULL;
}

static void test_keyed_client_plain_listener(void)
{
    struct migr_link_opts oc = { .key = key, .handshake_ms = 2000 };
    for (int mode = 0; mode < 2; mode++) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t sl = sizeof(sa);
        int fds[2] = { socket(AF_INET, SOCK_STREAM, 0), mode };
        struct migr_transport *c;
        pthread_t th;
        char url[64];

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        T_OK(bind(fds[0], (struct sockaddr *)&sa, sizeof(sa)));
        T_OK(listen(fds[0], 4));
        T_OK(getsockname(fds[0], (struct sockaddr *)&sa, &sl));
        snprintf(url, sizeof(url), "tcp:127.0.0.1:%u", ntohs(sa.sin_port));
        T_EQ(pthread_create(&th, NULL, plain_server, fds), 0);
        if (mode == 1)
            usleep(100000);   /* let it speak before we do */
        int ret = migr_transport_connect_opts(url, &oc, &c);
        T_ASSERT(ret == -EPROTO);
        if (mode == 0)
            T_ASSERT(strstr(migr_last_error(), "does it have a key?"));
        else if (!strstr(migr_last_error(), "spoke out of turn") &&   /* its bytes came before our hello */
                 !strstr(migr_last_error(), "not a migr authentication answer"))   /* or just after it */
            T_FAIL("a listener that speaks first: %s", migr_last_error());
        T_EQ(pthread_join(th, NULL), 0);
        close(fds[0]);
    }
}

static void test_non_loopback(void)
{
    struct migr_listener *l;
    struct migr_link_opts o = { .key = key };

    T_EQ(migr_listener_open("tcp:0.0.0.0:0", &l), -EACCES);
    T_ASSERT(strstr(migr_last_error(), "give a key (--key-file)"));
    T_EQ(migr_listener_open("tcp:[::]:0", &l), -EACCES);
    /* Loopback needs none, a key is always fine there. */
    T_OK(migr_listener_open("tcp:127.0.0.1:0", &l));
    migr_listener_close(l);
    T_OK(migr_listener_open("tcp:localhost:0", &l));
    migr_listener_close(l);
    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0", &o, &l));
    migr_listener_close(l);
}

static void test_silent_client(void)
{
    struct migr_link_opts ol = { .key = key, .handshake_ms = 400 }, oc = { .key = key };
    struct migr_listener *l;
    struct migr_transport *c;
    struct acc a;
    pthread_t th;

    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0", &ol, &l));
    int silent = raw_connect(l), half = raw_connect(l);
    uint8_t hc[48];
    hello_c(hc);
    T_EQ(write(half, hc, 20), 20);   /* part of a hello, then nothing */
    acc_start(&a, &th, l, 5000);
    usleep(50000);
    uint64_t t0 = migr_now_ns();
    T_OK(migr_transport_connect_opts(l->bound, &oc, &c));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(a.ret);
    T_ASSERT(migr_now_ns() - t0 < 300000000ull);   /* not after the silent ones' 400 ms */
    exchange(c, a.t);
    migr_transport_close(c);
    migr_transport_close(a.t);
    /* They are dropped at their deadline while the listener waits on. */
    acc_start(&a, &th, l, 800);
    T_EQ(pthread_join(th, NULL), 0);
    T_EQ(a.ret, -ETIMEDOUT);
    T_EQ(l->rejected, 2);
    T_ASSERT(strstr(l->last_reject, "within 400 ms"));
    uint8_t b;
    T_EQ(read(silent, &b, 1), 0);
    T_EQ(read(half, &b, 1), 0);
    close(silent);
    close(half);
    migr_listener_close(l);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/migr-test-auth-%d", getpid());
    T_OK(mkdir(dir, 0700));
    T_OK(migr_key_new(SECRET, strlen(SECRET), &key));
    T_OK(migr_key_new("another key, the same length....", 32, &other));
    test_key_files();
    test_same_key();
    test_handmade_replay_reflect();
    test_wrong_key();
    test_keyed_client_plain_listener();
    test_non_loopback();
    test_silent_client();
    migr_key_free(key);
    migr_key_free(other);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    T_OK(system(cmd));
    return 0;
}
