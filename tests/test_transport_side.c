/* Side connections (docs/transport.md, "Side connections") and the
 * FAULT_CHANNEL codec that carries their offer:
 *   - the codec: round trip, and each malformed record with its words;
 *   - unix: a socketpair end passed along the stream;
 *   - tcp, the connecting side offers (migr recv's case: the listener is
 *     already closed), and the accepting side offers; afterwards nobody
 *     listens any more;
 *   - tcp with a key and encryption while another thread sits in
 *     migr_listener_accept on the same listener: the side connection is
 *     recognised there and delivered, and a stranger's side hello with a
 *     wrong cookie is not taken for it; a real client still gets in; the
 *     same when the accepting side offers;
 *   - tcp ?channels=N: the side connection is one plain connection;
 *   - a side connection that reaches migr recv's listener before its
 *     stream is complete is kept for it, not dropped, also when its side
 *     hello comes 700 ms after the connection (past the probe's wait);
 *   - with the listener closed and nobody accepting (the side waiter
 *     drives the socket), a side hello 400 ms late behind a silent
 *     stranger's connection still reaches its waiter, in time;
 *   - transports without the capability say -ENOTSUP and send nothing;
 *     bytes that do not fit the stream are refused;
 *   - giving up and closing in any order.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/format.h"
#include "migr/record.h"
#include "migr/transport.h"
#include "testlib.h"
#include "transportlib.h"

static char tmpdir[64];

/* The offer's bytes go raw on the stream (the engine wraps them in a record). */
static int send_raw(void *arg, const uint8_t *b, size_t n)
{
    return migr_transport_send(arg, b, n);
}

static int calls;
static int count_send(void *arg, const uint8_t *b, size_t n)
{
    (void)arg, (void)b, (void)n;
    calls++;
    return 0;
}

/* Bytes both ways on a and b. */
static void check_link(struct migr_transport *a, struct migr_transport *b)
{
    char x[6] = {0};

    T_OK(migr_transport_send(a, "ping!", 6));
    T_OK(migr_transport_recv(b, x, 6));
    T_ASSERT(!strcmp(x, "ping!"));
    T_OK(migr_transport_send(b, "pong!", 6));
    T_OK(migr_transport_recv(a, x, 6));
    T_ASSERT(!strcmp(x, "pong!"));
}

/* Offer on off, open on peer, collect; the two side ends must talk. */
static void side_pair(struct migr_transport *off, struct migr_transport *peer, struct migr_transport **so,
                      struct migr_transport **sp)
{
    struct migr_side *s;
    uint8_t b[MIGR_FAULT_CHANNEL_SIZE];

    T_OK(migr_transport_side_offer(off, send_raw, off, &s));
    T_OK(migr_transport_recv(peer, b, sizeof(b)));
    T_OK(migr_transport_side_open(peer, b, sizeof(b), 5000, sp));
    T_OK(migr_side_collect(s, 5000, so));
    migr_side_free(s);
    check_link(*so, *sp);
    check_link(off, peer); /* the stream goes on */
}

static void test_codec(void)
{
    struct migr_fault_channel f = {.kind = MIGR_FCH_TCP, .arg = MIGR_FCH_F_SOURCE_CONNECTS, .cookie = 0x1122334455667788ull}, g;
    uint8_t b[MIGR_FAULT_CHANNEL_SIZE];

    T_EQ(migr_fault_channel_encode(&f, b, sizeof(b)), 16);
    T_EQ(migr_get_le32(b), 3);
    T_EQ(migr_get_le32(b + 4), 1);
    T_OK(migr_fault_channel_decode(b, sizeof(b), &g));
    T_ASSERT(g.kind == f.kind && g.arg == f.arg && g.cookie == f.cookie);
    T_EQ(migr_fault_channel_encode(&f, b, 15), -ENOSPC);
    static const struct {
        struct migr_fault_channel f;
        size_t len;
        const char *words;
    } bad[] = {
        {{MIGR_FCH_TCP, 0, 1}, 15, "meta length 15 (expected 16)"},
        {{MIGR_FCH_TCP, 0, 1}, 17, "meta length 17"},
        {{0, 0, 0}, 16, "unknown kind 0"},
        {{4, 0, 1}, 16, "unknown kind 4"},
        {{MIGR_FCH_FD, 1, 0}, 16, "port and cookie must be 0"},
        {{MIGR_FCH_FD, 0, 9}, 16, "port and cookie must be 0"},
        {{MIGR_FCH_TCP_BACK, 0, 9}, 16, "port 0 out of range"},
        {{MIGR_FCH_TCP_BACK, 65536, 9}, 16, "port 65536 out of range"},
        {{MIGR_FCH_TCP, 2, 9}, 16, "unknown flags 0x2"},
        {{MIGR_FCH_TCP, 0, 0}, 16, "cookie 0"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t m[32] = {0};
        migr_fault_channel_encode(&bad[i].f, m, sizeof(m));
        T_EQ(migr_fault_channel_decode(m, bad[i].len, &g), -EBADMSG);
        if (!strstr(migr_last_error(), bad[i].words) || !strstr(migr_last_error(), "FAULT_CHANNEL"))
            T_FAIL("case %zu: '%s' lacks '%s'", i, migr_last_error(), bad[i].words);
    }
    f = (struct migr_fault_channel){.kind = MIGR_FCH_FD};
    migr_fault_channel_encode(&f, b, sizeof(b));
    T_OK(migr_fault_channel_decode(b, sizeof(b), &g));
}

/* After the side is open, nobody listens at url's port any more. */
static void check_refused(const char *bound)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(strrchr(bound, ':') + 1))};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    T_ASSERT(fd >= 0);
    T_ASSERT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == ECONNREFUSED);
    close(fd);
}

static void test_pair(const char *url, int offer_on_client)
{
    struct migr_transport *srv, *cli, *a, *b;
    char bound[300];

    t_connect_pair(url, &srv, &cli, bound, sizeof(bound)); /* closes its listener */
    if (offer_on_client)
        side_pair(cli, srv, &a, &b);
    else
        side_pair(srv, cli, &a, &b);
    if (!strncmp(url, "tcp:", 4))
        check_refused(bound);
    /* any order */
    migr_transport_close(srv);
    check_link(a, b);
    migr_transport_close(a);
    migr_transport_close(b);
    migr_transport_close(cli);
}

/* ---- a keyed listener with an accept running in another thread ---- */

/* A plain connection to a tcp:127.0.0.1:PORT listener, saying nothing. */
static int raw_connect(const char *bound)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(strrchr(bound, ':') + 1))};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    T_ASSERT(fd >= 0);
    T_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
    return fd;
}

/* A side hello on a new connection, after delay_us of silence (a relay
 * that connects on before its client has spoken). */
static void side_hello_send(int fd, uint64_t cookie)
{
    uint8_t h[16];

    memcpy(h, "MIGRSID1", 8);
    migr_put_le64(h + 8, cookie);
    T_EQ(send(fd, h, sizeof(h), MSG_NOSIGNAL), 16);
}

static int raw_side_hello_after(const char *bound, uint64_t cookie, useconds_t delay_us)
{
    int fd = raw_connect(bound);

    if (delay_us)
        usleep(delay_us);
    side_hello_send(fd, cookie);
    return fd;
}

/* The stream's side_open for `cookie` finds the raw connection `side`:
 * what it sends arrives there. */
static void side_open_echo(struct migr_transport *srv, uint64_t cookie, int side)
{
    struct migr_fault_channel f = {.kind = MIGR_FCH_TCP, .arg = MIGR_FCH_F_SOURCE_CONNECTS, .cookie = cookie};
    uint8_t by[MIGR_FAULT_CHANNEL_SIZE];
    struct migr_transport *b;
    char x[5];

    migr_fault_channel_encode(&f, by, sizeof(by));
    T_OK(migr_transport_side_open(srv, by, sizeof(by), 2000, &b));
    T_OK(migr_transport_send(b, "side", 5));
    T_EQ(recv(side, x, 5, MSG_WAITALL), 5);
    T_ASSERT(!strcmp(x, "side"));
    migr_transport_close(b);
}

static int raw_side_hello(const char *bound, uint64_t cookie)
{
    return raw_side_hello_after(bound, cookie, 0);
}

static void test_concurrent_accept(void)
{
    struct migr_key *k;
    struct migr_listener *l;
    struct migr_transport *srv, *cli, *a, *b, *late;
    struct migr_side *s;
    struct t_acc_arg acc = {0};
    pthread_t th;
    uint8_t by[MIGR_FAULT_CHANNEL_SIZE];

    T_OK(migr_key_new("0123456789abcdef0123456789abcdef", 32, &k));
    struct migr_link_opts o = {.key = k, .encrypt = 1, .handshake_ms = 3000, .keep_listening = 1};
    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0", &o, &l));
    acc.l = l;
    T_EQ(pthread_create(&th, NULL, t_accept_thread, &acc), 0);
    T_OK(migr_transport_connect_opts(l->bound, &o, &cli));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(acc.ret);
    srv = acc.t;
    T_ASSERT(srv->link & MIGR_LINK_ENCRYPT);
    /* The listener stays open, and a thread accepts on it all along. */
    acc.t = NULL;
    T_EQ(pthread_create(&th, NULL, t_accept_thread, &acc), 0);
    T_OK(migr_transport_side_offer(cli, send_raw, cli, &s));
    T_OK(migr_transport_recv(srv, by, sizeof(by)));
    /* A stranger who guessed the scheme, not the cookie. */
    int stranger = raw_side_hello(l->bound, migr_get_le64(by + 8) ^ 1);
    T_OK(migr_transport_side_open(srv, by, sizeof(by), 5000, &b));
    T_OK(migr_side_collect(s, 5000, &a));
    migr_side_free(s);
    T_ASSERT(a->link & MIGR_LINK_ENCRYPT);
    T_ASSERT(b->link & MIGR_LINK_ENCRYPT);
    check_link(a, b);
    /* The accepting thread is still waiting for a real client: it gets one. */
    T_OK(migr_transport_connect_opts(l->bound, &o, &late));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(acc.ret);
    check_link(late, acc.t);
    close(stranger);
    migr_listener_close(l); /* before the transports: they hold nothing of it now */
    migr_transport_close(late);
    migr_transport_close(acc.t);
    migr_transport_close(a);
    migr_transport_close(b);
    migr_transport_close(srv);
    migr_transport_close(cli);
    migr_key_free(k);
}

/* The accepting side offers while another thread accepts on its (open)
 * listener: the side connection must reach the offer, not that thread,
 * which goes on to take a real client. */
static void test_offer_while_accepting(void)
{
    struct migr_listener *l;
    struct migr_transport *srv, *cli, *a, *b, *late;
    struct migr_side *s;
    struct t_acc_arg acc = {0};
    pthread_t th;
    uint8_t by[MIGR_FAULT_CHANNEL_SIZE];

    T_OK(migr_listener_open("tcp:127.0.0.1:0", &l));
    acc.l = l;
    T_EQ(pthread_create(&th, NULL, t_accept_thread, &acc), 0);
    T_OK(migr_transport_connect(l->bound, &cli));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(acc.ret);
    srv = acc.t;
    acc.t = NULL;
    T_EQ(pthread_create(&th, NULL, t_accept_thread, &acc), 0);
    usleep(20000);
    T_OK(migr_transport_side_offer(srv, send_raw, srv, &s));
    T_OK(migr_transport_recv(cli, by, sizeof(by)));
    T_OK(migr_transport_side_open(cli, by, sizeof(by), 5000, &b));
    T_OK(migr_side_collect(s, 5000, &a));
    migr_side_free(s);
    check_link(a, b);
    T_ASSERT(acc.t == NULL);
    T_OK(migr_transport_connect(l->bound, &late));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(acc.ret);
    check_link(late, acc.t);
    migr_transport_close(srv); /* the stream before its side, the listener last */
    migr_transport_close(cli);
    check_link(a, b);
    migr_transport_close(a);
    migr_transport_close(b);
    migr_transport_close(late);
    migr_transport_close(acc.t);
    migr_listener_close(l);
}

/* m (connected to l, silent so far) sends its preamble and HELLO; the
 * accept thread th returns the stream's server end, and l is closed, as
 * migr recv closes its listener at once. */
static struct migr_transport *stream_accepted(struct migr_listener *l, struct migr_transport *m, pthread_t th,
                                              struct t_acc_arg *acc)
{
    uint8_t meta[64] = {0};

    T_OK(migr_preamble_send(m));
    T_OK(migr_rec_send(m, MIGR_REC_HELLO, meta, sizeof(meta), NULL, 0));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(acc->ret);
    migr_listener_close(l);
    return acc->t;
}

/* migr recv's listener (expect_stream) sees the side connection before
 * the stream it belongs to is complete (a proxy between them can reorder
 * them): it is kept, not dropped as "not a migr source", and the stream's
 * side_open finds it after the listener was closed. */
/* Both orders, and a side hello that comes after the probe has given up
 * waiting (700 ms of silence > MIGR_SIDE_PROBE_MS): still the side's. */
static void side_before_stream(useconds_t delay_us)
{
    struct migr_listener *l;
    struct migr_transport *srv, *m;
    struct t_acc_arg acc = {0};
    pthread_t th;

    struct migr_link_opts o = {.keep_listening = 1, .expect_stream = 1, .handshake_ms = 2000};
    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0", &o, &l));
    acc.l = l;
    T_EQ(pthread_create(&th, NULL, t_accept_thread, &acc), 0);
    T_OK(migr_transport_connect(l->bound, &m)); /* says nothing yet */
    int side = raw_side_hello_after(l->bound, 0xfeedull, delay_us);
    usleep(100000);
    srv = stream_accepted(l, m, th, &acc);
    side_open_echo(srv, 0xfeed, side);
    close(side);
    migr_transport_close(srv);
    migr_transport_close(m);
}

static void test_side_first(void)
{
    side_before_stream(0);
    side_before_stream(700000);
}

/* A listener that stays open (libmigr's own use; tests/migratelib.h): the
 * stream and its side connection both arrive silent (a relay connects on
 * to us before its client has spoken) and are in their handshake slots
 * when the stream's bytes complete it. accept returns the stream; the side
 * connection, left in its slot, must still reach side_open when its hello
 * comes, and a late real client still reaches the listener's next accept. */
static void test_side_in_slot_open_listener(void)
{
    struct migr_listener *l;
    struct migr_transport *srv, *m, *late;
    struct t_acc_arg acc = {0};
    pthread_t th;
    uint8_t meta[64] = {0};

    struct migr_link_opts o = {.keep_listening = 1, .expect_stream = 1, .handshake_ms = 3000};
    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0", &o, &l));
    acc.l = l;
    T_EQ(pthread_create(&th, NULL, t_accept_thread, &acc), 0);
    T_OK(migr_transport_connect(l->bound, &m));   /* silent so far */
    int side = raw_connect(l->bound);             /* silent so far */
    usleep(30000);                                /* both in their slots */
    T_OK(migr_preamble_send(m));
    T_OK(migr_rec_send(m, MIGR_REC_HELLO, meta, sizeof(meta), NULL, 0));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(acc.ret);
    srv = acc.t;
    side_hello_send(side, 0xc0ffee);
    side_open_echo(srv, 0xc0ffee, side);
    /* The listener still takes the next source. */
    acc.t = NULL;
    T_EQ(pthread_create(&th, NULL, t_accept_thread, &acc), 0);
    T_OK(migr_transport_connect(l->bound, &late));
    T_OK(migr_preamble_send(late));
    T_OK(migr_rec_send(late, MIGR_REC_HELLO, meta, sizeof(meta), NULL, 0));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(acc.ret);
    T_ASSERT(acc.t != NULL);
    close(side);
    migr_transport_close(acc.t);
    migr_transport_close(late);
    migr_transport_close(srv);
    migr_transport_close(m);
    migr_listener_close(l);
}

/* Plain connections that wait in the listener's slots while accept returns
 * one of them come out of the next accepts in the order they connected,
 * even after a trip through the side hub (a client that opens several and
 * tells them apart by that order, as bench_copy's tcp-raw-4 does). */
static void test_slots_keep_order(void)
{
    struct migr_listener *l;
    struct migr_transport *t[3];
    int fd[3];

    T_OK(migr_listener_open("tcp:127.0.0.1:0", &l));
    for (int i = 0; i < 3; i++)
        fd[i] = raw_connect(l->bound);   /* silent: all three wait in slots */
    for (int i = 0; i < 3; i++)
        T_OK(migr_listener_accept(l, 3000, &t[i]));
    for (int i = 0; i < 3; i++) {
        uint8_t b = (uint8_t)('a' + i);
        T_EQ(send(fd[i], &b, 1, MSG_NOSIGNAL), 1);
    }
    for (int i = 0; i < 3; i++) {
        char b = 0;
        T_OK(migr_transport_recv(t[i], &b, 1));
        T_EQ(b, 'a' + i);
    }
    for (int i = 0; i < 3; i++) {
        migr_transport_close(t[i]);
        close(fd[i]);
    }
    migr_listener_close(l);
}

struct late_arg {
    const char *bound;
    useconds_t before_us, delay_us;
    uint64_t cookie;
    int fd;
};

static void *late_hello_thread(void *p)
{
    struct late_arg *a = p;

    usleep(a->before_us);
    a->fd = raw_side_hello_after(a->bound, a->cookie, a->delay_us);
    return NULL;
}

/* migr recv's case behind a relay that connects on at once: its listener
 * is closed, the destination's side_open drives the socket itself, and the
 * side hello comes 400 ms after the connection. A stranger who connects
 * first and never speaks must not hold it up. */
static void test_side_late_driving(void)
{
    struct migr_listener *l;
    struct migr_transport *srv, *m, *b;
    struct t_acc_arg acc = {0};
    pthread_t th, tl;
    uint8_t by[MIGR_FAULT_CHANNEL_SIZE];
    char bound[300];

    struct migr_link_opts o = {.keep_listening = 1, .expect_stream = 1, .handshake_ms = 3000};
    T_OK(migr_listener_open_opts("tcp:127.0.0.1:0", &o, &l));
    snprintf(bound, sizeof(bound), "%s", l->bound);
    acc.l = l;
    T_EQ(pthread_create(&th, NULL, t_accept_thread, &acc), 0);
    T_OK(migr_transport_connect(l->bound, &m));
    srv = stream_accepted(l, m, th, &acc);
    int stranger = raw_connect(bound);
    struct late_arg la = {.bound = bound, .before_us = 50000, .delay_us = 400000, .cookie = 0xbeef, .fd = -1};
    T_EQ(pthread_create(&tl, NULL, late_hello_thread, &la), 0);
    struct migr_fault_channel f = {.kind = MIGR_FCH_TCP, .arg = MIGR_FCH_F_SOURCE_CONNECTS, .cookie = 0xbeef};
    migr_fault_channel_encode(&f, by, sizeof(by));
    uint64_t t0 = migr_now_ns();
    T_OK(migr_transport_side_open(srv, by, sizeof(by), 3000, &b));
    T_ASSERT(migr_now_ns() - t0 < 2000000000ull);
    T_EQ(pthread_join(tl, NULL), 0);
    T_OK(migr_transport_send(b, "side", 5));
    char x[5];
    T_EQ(recv(la.fd, x, 5, MSG_WAITALL), 5);
    T_ASSERT(!strcmp(x, "side"));
    close(la.fd);
    close(stranger);
    migr_transport_close(b);
    migr_transport_close(srv);
    migr_transport_close(m);
}

static void test_not_capable(void)
{
    struct migr_transport *srv, *cli, *t;
    struct migr_side *s = (struct migr_side *)1;
    char url[128];
    int sv[2];

    /* A tcp transport around an fd: nobody knows where it leads. */
    T_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    T_OK(migr_transport_from_fd(sv[0], "tcp", NULL, &t));
    calls = 0;
    T_EQ(migr_transport_side_offer(t, count_send, NULL, &s), -ENOTSUP);
    T_ASSERT(s == NULL && calls == 0);
    migr_transport_close(t);
    close(sv[1]);
    /* shm: faults share the stream. */
    snprintf(url, sizeof(url), "shm:migr-side-%d", (int)getpid());
    t_connect_pair(url, &srv, &cli, NULL, 0);
    T_EQ(migr_transport_side_offer(cli, count_send, NULL, &s), -ENOTSUP);
    T_ASSERT(calls == 0);
    migr_transport_close(srv);
    migr_transport_close(cli);
}

static void test_bad_bytes(void)
{
    struct migr_transport *srv, *cli, *t = NULL;
    uint8_t b[MIGR_FAULT_CHANNEL_SIZE];
    char url[128];

    t_connect_pair("tcp:127.0.0.1:0", &srv, &cli, NULL, 0);
    struct migr_fault_channel f = {.kind = MIGR_FCH_FD};
    migr_fault_channel_encode(&f, b, sizeof(b));
    T_EQ(migr_transport_side_open(srv, b, sizeof(b), 100, &t), -EBADMSG);
    T_ASSERT(strstr(migr_last_error(), "kind 1 (a descriptor) on a tcp stream"));
    /* The source claims to accept, but it connected: the destination is told. */
    f = (struct migr_fault_channel){.kind = MIGR_FCH_TCP, .arg = 0, .cookie = 7};
    migr_fault_channel_encode(&f, b, sizeof(b));
    T_EQ(migr_transport_side_open(srv, b, sizeof(b), 100, &t), -EPROTO);
    T_ASSERT(strstr(migr_last_error(), "the source says it accepts, but this side accepted"));
    /* Nobody connects: a time-out naming where it waited. */
    f.arg = MIGR_FCH_F_SOURCE_CONNECTS;
    migr_fault_channel_encode(&f, b, sizeof(b));
    T_EQ(migr_transport_side_open(srv, b, sizeof(b), 200, &t), -ETIMEDOUT);
    T_ASSERT(strstr(migr_last_error(), "none with the cookie at tcp:127.0.0.1:"));
    T_ASSERT(t == NULL);
    migr_transport_close(srv);
    migr_transport_close(cli);
    snprintf(url, sizeof(url), "unix:%s/bad.sock", tmpdir);
    t_connect_pair(url, &srv, &cli, NULL, 0);
    f = (struct migr_fault_channel){.kind = MIGR_FCH_TCP, .arg = 1, .cookie = 7};
    migr_fault_channel_encode(&f, b, sizeof(b));
    T_EQ(migr_transport_side_open(srv, b, sizeof(b), 100, &t), -EBADMSG);
    T_ASSERT(strstr(migr_last_error(), "kind 3 on a unix stream"));
    migr_transport_close(srv);
    migr_transport_close(cli);
}

/* Give up before the peer came, close the stream first, then the side. */
static void test_give_up(void)
{
    struct migr_transport *srv, *cli, *t;
    struct migr_side *s;
    uint8_t b[MIGR_FAULT_CHANNEL_SIZE];

    /* The accepting side offers; nobody opens: collect times out, free is clean. */
    t_connect_pair("tcp:127.0.0.1:0", &srv, &cli, NULL, 0);
    T_OK(migr_transport_side_offer(srv, send_raw, srv, &s));
    T_OK(migr_transport_recv(cli, b, sizeof(b)));
    migr_transport_close(srv);
    migr_transport_close(cli);
    uint64_t t0 = migr_now_ns();
    T_EQ(migr_side_collect(s, 300, &t), -ETIMEDOUT);
    T_ASSERT(strstr(migr_last_error(), "did not open the side connection"));
    T_ASSERT(migr_now_ns() - t0 < 3000000000ull);
    migr_side_free(s);
    /* Freed without a collect while the thread still waits. */
    t_connect_pair("tcp:127.0.0.1:0", &srv, &cli, NULL, 0);
    T_OK(migr_transport_side_offer(srv, send_raw, srv, &s));
    migr_side_free(s);
    migr_transport_close(cli);
    migr_transport_close(srv);
    /* The accepted stream closed before its side came: the socket is gone, the side connect fails. */
    t_connect_pair("tcp:127.0.0.1:0", &srv, &cli, NULL, 0);
    T_OK(migr_transport_side_offer(cli, send_raw, cli, &s));
    T_OK(migr_transport_recv(srv, b, sizeof(b)));
    migr_transport_close(srv);
    T_ASSERT(migr_side_collect(s, 2000, &t) < 0);
    migr_side_free(s);
    migr_transport_close(cli);
}

static void cleanup(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    (void)!system(cmd);
}

int main(void)
{
    char url[128];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/migr-side-XXXXXX");
    T_ASSERT(mkdtemp(tmpdir) != NULL);
    atexit(cleanup);
    test_codec();
    snprintf(url, sizeof(url), "unix:%s/s.sock", tmpdir);
    test_pair(url, 1);
    test_pair(url, 0);
    snprintf(url, sizeof(url), "unix:%s/s.sock?uring=1", tmpdir);
    test_pair(url, 1);
    test_pair("tcp:127.0.0.1:0", 1);
    test_pair("tcp:127.0.0.1:0", 0);
    test_pair("tcp:127.0.0.1:0?uring=1", 1);
    test_pair("tcp:127.0.0.1:0?channels=3", 1);
    test_pair("tcp:127.0.0.1:0?channels=3", 0);
    test_concurrent_accept();
    test_offer_while_accepting();
    test_side_first();
    test_side_late_driving();
    test_side_in_slot_open_listener();
    test_slots_keep_order();
    test_not_capable();
    test_bad_bytes();
    test_give_up();
    return 0;
}
