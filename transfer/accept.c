/* migr — accepting connections: the listener's handshake state machine.
 *
 * A connection is handed to the caller only once its handshake is done:
 * with a key, the authentication (auth.c); then the backend's hello (shm:;
 * tcp: optional, a multi-channel group's, told from a plain stream by its
 * first 8 bytes); for a plain stream with an expected beginning (migr recv:
 * the preamble and a whole, CRC-checked HELLO record), those bytes, peeked. Every connection in its
 * handshake has a slot here with its own state and deadline, and all of
 * them are polled together with the listening socket, so a client that
 * connects and says nothing, or says it slowly, holds up nobody: it is
 * dropped at its deadline while the real source goes through.
 *
 *   accept4 -> AUTH_HELLO -> AUTH_FINISH -> BACKEND_HELLO -> (transport)
 *                  (key)        (key)          (shm:)
 *           -> SNIFF -> BACKEND_HELLO -> (transport)   (tcp: "MIGRMCH1" first)
 *                    -> EXPECT / (transport)           (tcp: other bytes, or silence
 *                                                       when no stream is expected)
 *           -> EXPECT -> (transport)           (plain stream, expect set)
 *           -> (transport)                     (plain stream, nothing to check)
 *
 * A connection that fails or times out is dropped. With keep_listening (or
 * a key) accept reports it (l->rejected, l->last_reject, on_reject) and
 * goes on waiting; without, accept returns its error, as it always did.
 * When all MIGR_HS_MAX slots are taken, the oldest handshake is dropped.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/format.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

#define DEFAULT_HANDSHAKE_MS 5000
#define REPEEK_MS 10

static int handshake_ms(const struct migr_listener_impl *li)
{
    return li->cfg.handshake_ms > 0 ? li->cfg.handshake_ms : DEFAULT_HANDSHAKE_MS;
}

static size_t backend_hello(const struct migr_listener_impl *li)
{
    return li->be->wrap && li->be->hello_len ? li->be->hello_len(&li->pub) : 0;
}

static void hs_release(struct migr_hs_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    migr_auth_wipe(&c->auth);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

/* Connections still in their handshake with nothing read from them yet
 * go to the hub: one of them may be a side connection whose hello is still
 * on its way (a relay connects on before its client has spoken), and once
 * the listener has returned its stream nobody may step its slot again. A
 * side waiter looks at each as at a new connection; what is no side
 * connection comes back to the listener's next accept (hs_unparked). */
void migr_hs_hand_to_hub(struct migr_listener *l)
{
    struct migr_listener_impl *li = listener_impl(l);

    if (!li->hub)
        return;
    for (int i = 0; i < MIGR_HS_MAX; i++) {
        struct migr_hs_conn *c = &li->hs[i];
        /* PROBE is the first state; SNIFF and EXPECT only peek (after an
         * authentication, with a key, bytes were read: kept). */
        if (c->fd < 0 || !(c->st == MIGR_HS_PROBE ||
                           (!li->cfg.key && (c->st == MIGR_HS_SNIFF || c->st == MIGR_HS_EXPECT))))
            continue;
        migr_side_hub_adopt(li->hub, c->fd, c->peer, c->since, c->deadline);
        c->fd = -1;
        hs_release(c);
    }
}

void migr_hs_free(struct migr_listener *l)
{
    struct migr_listener_impl *li = listener_impl(l);

    for (int i = 0; i < MIGR_HS_MAX; i++)
        if (li->hs[i].st != MIGR_HS_FREE)
            hs_release(&li->hs[i]);
}

/* Drop c (its message is set). Returns err for the caller to pass on
 * (without keep_listening) or 0 (the listener goes on). */
static int hs_reject(struct migr_listener *l, struct migr_hs_conn *c, int err)
{
    struct migr_listener_impl *li = listener_impl(l);
    char why[300], peer[sizeof(c->peer)];

    snprintf(why, sizeof(why), "%s", migr_last_error());
    snprintf(peer, sizeof(peer), "%s", c->peer);
    hs_release(c);
    l->rejected++;
    snprintf(l->last_reject, sizeof(l->last_reject), "%s", why);
    if (!(li->cfg.keep_listening || li->cfg.key))
        return migr_errorf(-err, "%s", why);
    if (li->cfg.on_reject)
        li->cfg.on_reject(li->cfg.on_reject_arg, peer, why);
    return 0;
}

/* After a step of slot c returned ret: 1 = its transport is in *out (the
 * slot is free again), 0 = go on, <0 = accept returns that. */
static int hs_settle(struct migr_listener *l, struct migr_hs_conn *c, int ret)
{
    if (ret > 0 || ret == -EAGAIN) {   /* done, or its fd joined a ?channels session */
        memset(c, 0, sizeof(*c));
        c->fd = -1;
        return ret > 0;
    }
    return ret < 0 ? hs_reject(l, c, ret) : 0;
}

/* The stream starts: build the transport for c's socket. 1 with *out set,
 * or -errno (c's socket is gone either way). */
static int hs_complete(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);
    const struct migr_auth *a = li->cfg.key ? &c->auth : NULL;
    int fd = c->fd, ret;

    c->fd = -1;
    if (c->st == MIGR_HS_BACKEND_HELLO) {
        ret = li->be->wrap(l, fd, c->peer, c->buf, a, out);   /* owns fd */
        if (ret == 0 && (ret = migr_side_origin_server(*out, li->hub)) < 0) {
            migr_transport_close(*out);
            *out = NULL;
        }
        return ret < 0 ? ret : 1;
    }
    if ((ret = migr_plain_transport_new(fd, li->be, &l->url, c->peer, out)) < 0) {
        close(fd);
        return ret;
    }
    if (a && (ret = migr_link_finish(out, a, 0)) < 0)
        return ret;
    /* Its side connection (if one is offered) comes here too. */
    if ((ret = migr_side_origin_server(*out, li->hub)) < 0) {
        migr_transport_close(*out);
        *out = NULL;
        return ret;
    }
    return 1;
}

static int hs_sniff(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out);

/* A plain stream: its beginning checked (EXPECT), or built at once. */
static int hs_plain(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);

    c->have = 0;
    c->partial = 0;
    if (li->cfg.expect_stream && !li->cfg.key) {
        c->st = MIGR_HS_EXPECT;
        c->need = MIGR_PREAMBLE_SIZE + MIGR_REC_HDR_SIZE;
        return 0;
    }
    c->st = MIGR_HS_EXPECT;   /* any state but FREE: hs_complete builds a plain stream */
    return hs_complete(l, c, out);
}

/* How long a silent connection may be a multi-channel client still on its
 * way (the listener does not expect a stream, so a plain client may wait
 * for us to speak first): the side probe's time plus two round trips, from
 * the moment the client could speak (accept; with a key, our AUTH_OK). */
static uint64_t sniff_until(const struct migr_listener_impl *li, const struct migr_hs_conn *c)
{
    if (li->cfg.expect_stream)
        return 0;   /* a source speaks first: wait for its bytes (the deadline still holds) */
    return (li->cfg.key ? migr_now_ns() : c->since) + MIGR_SIDE_PROBE_MS * 1000000ull +
           2000ull * migr_tcp_rtt_us(c->fd);
}

/* The state after the authentication (or at once without a key). */
static int hs_next(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);
    size_t hl = backend_hello(li);

    c->have = 0;
    c->partial = 0;
    if (c->side) {   /* its hello (and authentication) done: the waiter's */
        int fd = c->fd, ret;

        c->fd = -1;
        ret = migr_side_accepted(li->hub, fd, c->peer, li->cfg.key ? &c->auth : NULL, c->cookie);
        return ret < 0 ? ret : -EAGAIN;
    }
    if (hl && li->be->hello_magic) {   /* the hello or a plain stream: its first bytes tell */
        c->st = MIGR_HS_SNIFF;
        c->sniff_until = sniff_until(li, c);
        return hs_sniff(l, c, out);
    }
    if (hl) {
        c->st = MIGR_HS_BACKEND_HELLO;
        c->need = hl;
        return 0;
    }
    return hs_plain(l, c, out);
}

static int hs_eof(struct migr_listener *l, const struct migr_hs_conn *c);
static int hs_step(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out);
static int hs_probe(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out);

/* HS_SNIFF: peek at the first bytes. The backend's hello magic: read the
 * hello (BACKEND_HELLO); other bytes, or silence until c->sniff_until: a
 * plain stream. Nothing is consumed. */
static int hs_sniff(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);
    uint8_t b[8];
    ssize_t r = recv(c->fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);

    if (r == 0)
        return hs_eof(l, c);
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return migr_errorf_errno(errno, "accept on %s: %s", l->bound, c->peer);
    /* A side hello after all, later than the probe waited for it (a relay
     * that connects on to us before its client has said anything, a busy
     * machine): the side path, not a plain stream that is no stream. */
    if (r > 0 && li->hub && !c->side && migr_side_hello_check(b, (size_t)r) >= 0) {
        c->st = MIGR_HS_PROBE;
        return hs_probe(l, c, out);
    }
    if (r > 0 && memcmp(b, li->be->hello_magic, (size_t)r))
        return hs_plain(l, c, out);
    if (r == (ssize_t)sizeof(b)) {
        c->st = MIGR_HS_BACKEND_HELLO;
        c->need = backend_hello(li);
        c->have = 0;
        c->partial = 0;
        return hs_step(l, c, out);
    }
    if (r < 0 && c->sniff_until && migr_now_ns() >= c->sniff_until)
        return hs_plain(l, c, out);   /* silent: a plain client waiting for us */
    /* The magic's beginning, or silence: look again (on a timer while the
     * silence may end the sniff, else when bytes come). */
    c->partial = r > 0 || c->sniff_until;
    return 0;
}

/* The first state of a new connection (after PROBE, if any). */
static int hs_first(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out)
{
    c->have = 0;
    c->partial = 0;
    if (listener_impl(l)->cfg.key) {
        c->st = MIGR_HS_AUTH_HELLO;
        c->need = MIGR_AUTH_HELLO_C;
        return 0;
    }
    return hs_next(l, c, out);
}

/* HS_PROBE (tcp, while a transport accepted here may still open a side
 * connection): a side hello first? A client that says nothing for
 * MIGR_SIDE_PROBE_MS, or other bytes, goes on as usual. */
static int hs_probe(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out)
{
    uint8_t b[MIGR_SIDE_HELLO];
    ssize_t r = recv(c->fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
    int is;

    if (r == 0)
        return hs_eof(l, c);
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return migr_errorf_errno(errno, "accept on %s: %s", l->bound, c->peer);
    if (r <= 0) {
        if (migr_now_ns() - c->since >= MIGR_SIDE_PROBE_MS * 1000000ull)
            return hs_first(l, c, out);
        c->partial = 1;
        return 0;
    }
    if ((is = migr_side_hello_check(b, (size_t)r)) < 0)
        return hs_first(l, c, out);
    if (is == 0) {
        c->partial = 1;
        return 0;
    }
    if (recv(c->fd, b, sizeof(b), MSG_DONTWAIT) != (ssize_t)sizeof(b))
        return migr_errorf_errno(errno ? errno : EIO, "accept on %s: %s: side hello", l->bound, c->peer);
    c->side = 1;
    c->cookie = migr_get_le64(b + 8);
    return hs_first(l, c, out);
}

/* HS_EXPECT: peek at the first bytes; they must be the preamble and a whole
 * HELLO record with its CRC (docs/format.md), else the peer is no source.
 * c->need grows from preamble + header to the whole record. */
#define HELLO_META_MAX MIGR_HELLO_META_MAX
static int hs_peek_stream(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out)
{
    static const uint8_t pre[8] = { 1, 0, 0, 0, 0, 0, 0, 0 };   /* version 1, flags 0, reserved 0 */
    uint8_t b[MIGR_PREAMBLE_SIZE + MIGR_REC_HDR_SIZE + HELLO_META_MAX + 4];
    const uint8_t *h = b + MIGR_PREAMBLE_SIZE;
    ssize_t r = recv(c->fd, b, c->need, MSG_PEEK | MSG_DONTWAIT);
    size_t got;

    if (r == 0)
        return hs_eof(l, c);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                   ? 0 : migr_errorf_errno(errno, "accept on %s: %s", l->bound, c->peer);
    got = (size_t)r;
    if (memcmp(b, MIGR_STREAM_MAGIC, MIGR_MIN(got, 8)) || (got > 8 && memcmp(b + 8, pre, MIGR_MIN(got - 8, 8))))
        return migr_errorf(EPROTO, "accept on %s: %s is not a migr source (its first bytes are not a migr stream)",
                           l->bound, c->peer);
    if (got >= MIGR_PREAMBLE_SIZE + MIGR_REC_HDR_SIZE && c->need == MIGR_PREAMBLE_SIZE + MIGR_REC_HDR_SIZE) {
        uint32_t meta = migr_get_le32(h + 4);

        if (migr_get_le16(h) != MIGR_REC_HELLO || migr_get_le16(h + 2) != 0 || meta < 48 || meta > HELLO_META_MAX)
            return migr_errorf(EPROTO, "accept on %s: %s is not a migr source (its stream does not begin with a "
                               "HELLO record)", l->bound, c->peer);
        c->need += meta + 4;
        return hs_peek_stream(l, c, out);
    }
    if (got < c->need) {
        c->partial = 1;   /* the rest is not there yet: look again on a timer */
        return 0;
    }
    size_t mlen = c->need - MIGR_PREAMBLE_SIZE - MIGR_REC_HDR_SIZE - 4;
    uint32_t crc = migr_crc32c(migr_crc32c(0, h, MIGR_REC_HDR_SIZE), h + MIGR_REC_HDR_SIZE, mlen);
    if (crc != migr_get_le32(h + MIGR_REC_HDR_SIZE + mlen))
        return migr_errorf(EPROTO, "accept on %s: %s is not a migr source (its HELLO record has a bad CRC)", l->bound,
                           c->peer);
    return hs_complete(l, c, out);
}

static int hs_eof(struct migr_listener *l, const struct migr_hs_conn *c)
{
    static const char *const when[] = {
        [MIGR_HS_AUTH_HELLO] = "before authenticating",
        [MIGR_HS_AUTH_FINISH] = "during authentication (its key differs?)",
        [MIGR_HS_BACKEND_HELLO] = "before its hello (does it connect with the same kind of URL?)",
        [MIGR_HS_EXPECT] = "before its stream began",
        [MIGR_HS_PROBE] = "before it said anything",
        [MIGR_HS_SNIFF] = "before its stream or multi-channel hello began",
    };
    return migr_errorf(EPROTO, "accept on %s: %s closed the connection %s", l->bound, c->peer, when[c->st]);
}

/* c's socket is readable (or, partial, due for a re-peek): one step. 1 =
 * done (*out set), 0 = waiting, <0 = drop it (message set). */
static int hs_step(struct migr_listener *l, struct migr_hs_conn *c, struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);
    ssize_t r;
    int err;

    if (c->st == MIGR_HS_EXPECT)
        return hs_peek_stream(l, c, out);
    if (c->st == MIGR_HS_PROBE)
        return hs_probe(l, c, out);
    if (c->st == MIGR_HS_SNIFF)
        return hs_sniff(l, c, out);
    r = recv(c->fd, c->buf + c->have, c->need - c->have, MSG_DONTWAIT);
    if (r == 0)
        return hs_eof(l, c);
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                   ? 0 : migr_errorf_errno(errno, "accept on %s: %s", l->bound, c->peer);
    c->have += (size_t)r;
    if (c->have < c->need)
        return 0;
    switch (c->st) {
    case MIGR_HS_AUTH_HELLO: {
        uint8_t hs[MIGR_AUTH_HELLO_S];

        /* The hello first: a source without a key is told so, not just that it spoke too much. */
        if ((err = migr_auth_server_hello(li->cfg.key, li->cfg.encrypt, c->buf, &c->auth, hs)) < 0 ||
            (err = migr_auth_check_turn(c->fd, "the client")) < 0)
            return migr_error_prefix(-err, "accept on %s: %s", l->bound, c->peer);
        /* 80 bytes into a fresh socket's empty buffer: never blocks. */
        r = send(c->fd, hs, sizeof(hs), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r != (ssize_t)sizeof(hs))
            return migr_errorf_errno(r < 0 ? errno : EIO, "accept on %s: %s: authentication answer", l->bound,
                                     c->peer);
        c->st = MIGR_HS_AUTH_FINISH;
        c->need = MIGR_AUTH_FINISH;
        c->have = 0;
        return 0;
    }
    case MIGR_HS_AUTH_FINISH:
        if ((err = migr_auth_check_turn(c->fd, "the client")) < 0 ||
            (err = migr_auth_server_finish(li->cfg.key, &c->auth, c->buf)) < 0) {
            (void)!send(c->fd, MIGR_AUTH_NO, MIGR_AUTH_RESULT, MSG_DONTWAIT | MSG_NOSIGNAL);
            return migr_error_prefix(-err, "accept on %s: %s", l->bound, c->peer);
        }
        r = send(c->fd, MIGR_AUTH_OK, MIGR_AUTH_RESULT, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r != MIGR_AUTH_RESULT)
            return migr_errorf_errno(r < 0 ? errno : EIO, "accept on %s: %s: authentication result", l->bound,
                                     c->peer);
        return hs_next(l, c, out);
    case MIGR_HS_BACKEND_HELLO:
        return hs_complete(l, c, out);
    default:
        return migr_errorf(EINVAL, "accept on %s: bad handshake state %d", l->bound, (int)c->st);
    }
}

static int hs_timeout(struct migr_listener *l, const struct migr_hs_conn *c)
{
    static const char *const what[] = {
        [MIGR_HS_AUTH_HELLO] = "sent no authentication hello (a client without a key, or a stranger)",
        [MIGR_HS_AUTH_FINISH] = "did not finish authenticating",
        [MIGR_HS_BACKEND_HELLO] = "sent no hello",
        [MIGR_HS_EXPECT] = "did not begin a migr stream",
        [MIGR_HS_PROBE] = "sent no whole side hello",
        [MIGR_HS_SNIFF] = "did not begin a migr stream",
    };
    uint8_t b;
    const char *w = what[c->st];
    if (c->st == MIGR_HS_PROBE && recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
        w = what[MIGR_HS_SNIFF]; /* it said nothing at all */
    return migr_errorf(ETIMEDOUT, "accept on %s: %s %s within %d ms; dropped", l->bound, c->peer, w,
                       handshake_ms(listener_impl(l)));
}

/* A new connection: a slot (the oldest handshake makes room if none is
 * free), then its first state. Same returns as hs_step, for slot *cp. */
static int hs_start(struct migr_listener *l, int fd, const char *peer, uint64_t since, uint64_t deadline,
                    struct migr_hs_conn **cp, struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);
    struct migr_hs_conn *c = NULL, *old = NULL;
    uint64_t now = migr_now_ns();
    int err;

    for (int i = 0; i < MIGR_HS_MAX && !c; i++) {
        if (li->hs[i].st == MIGR_HS_FREE)
            c = &li->hs[i];
        else if (!old || li->hs[i].since < old->since)
            old = &li->hs[i];
    }
    if (!c) {
        migr_errorf(EBUSY, "accept on %s: %s dropped: %d connections in their handshake at once", l->bound,
                    old->peer, MIGR_HS_MAX);
        if ((err = hs_reject(l, old, -EBUSY)) < 0) {
            close(fd);
            return err;
        }
        c = old;
    }
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->since = since ? since : now;   /* a connection back from the hub keeps its times */
    c->deadline = deadline ? deadline : now + (uint64_t)handshake_ms(li) * 1000000ull;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    *cp = c;
    /* A side connection may come before the stream it belongs to is handed
     * out (a proxy between them, another thread): where clients speak
     * first anyway, always look; else only while one is due. */
    if (li->hub && (li->cfg.key || li->cfg.expect_stream || backend_hello(li) || migr_side_hub_live(li->hub) > 0)) {
        c->st = MIGR_HS_PROBE;
        return hs_probe(l, c, out);
    }
    return hs_first(l, c, out);
}

/* A connection a side waiter accepted for us (side.c): start it. 0 = go
 * on, 1 = *out set, <0 = accept returns that. */
static int hs_unparked(struct migr_listener *l, struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);
    char peer[160];
    uint64_t since, deadline;
    int fd, ret;

    while (li->hub && (fd = migr_side_hub_unpark(li->hub, peer, sizeof(peer), &since, &deadline)) >= 0) {
        struct migr_hs_conn *c = NULL;

        ret = hs_start(l, fd, peer, since, deadline, &c, out);
        if (!c)
            return ret;
        if ((ret = hs_settle(l, c, ret)) != 0)
            return ret;
    }
    return 0;
}

static int accept_loop(struct migr_listener *l, int timeout_ms, struct migr_transport **out);

int migr_listener_accept(struct migr_listener *l, int timeout_ms, struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);
    int ret;

    if (!li->hub)
        return accept_loop(l, timeout_ms, out);
    /* While we accept, side connections are ours to recognise (side.c). */
    migr_side_hub_accepting(li->hub, 1);
    ret = accept_loop(l, timeout_ms, out);
    if (ret == 0)
        migr_hs_hand_to_hub(l);   /* the stream's side connection may be among them */
    migr_side_hub_accepting(li->hub, -1);
    return ret;
}

static int accept_loop(struct migr_listener *l, int timeout_ms, struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);
    uint64_t deadline = timeout_ms < 0 ? 0 : migr_now_ns() + (uint64_t)timeout_ms * 1000000u;

    for (;;) {
        struct pollfd pfd[1 + MIGR_HS_MAX];
        int map[1 + MIGR_HS_MAX], np = 1, n, ret;
        uint64_t now = migr_now_ns(), wake = deadline;
        struct migr_hs_conn *c;

        if ((ret = hs_unparked(l, out)) != 0)
            return ret < 0 ? ret : 0;
        pfd[0] = (struct pollfd){ .fd = l->fd, .events = POLLIN };
        for (int i = 0; i < MIGR_HS_MAX; i++) {
            c = &li->hs[i];
            if (c->st == MIGR_HS_FREE)
                continue;
            uint64_t w = c->partial ? MIGR_MIN(c->deadline, now + REPEEK_MS * 1000000ull) : c->deadline;
            if (!wake || w < wake)
                wake = w;
            if (!c->partial) {
                map[np] = i;
                pfd[np++] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
            }
        }
        int wait = !wake ? -1 : wake <= now ? 0 : (int)((wake - now + 999999) / 1000000);
        n = poll(pfd, (nfds_t)np, wait);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return migr_errorf_errno(errno, "accept on %s: poll", l->bound);
        }
        now = migr_now_ns();
        /* Connections in their handshake first: one that is done is returned. */
        for (int j = 1; j < np; j++) {
            c = &li->hs[map[j]];
            if (!pfd[j].revents || c->st == MIGR_HS_FREE)
                continue;
            if ((ret = hs_settle(l, c, hs_step(l, c, out))) != 0)
                return ret < 0 ? ret : 0;
        }
        for (int i = 0; i < MIGR_HS_MAX; i++) {
            c = &li->hs[i];
            if (c->st == MIGR_HS_FREE)
                continue;
            if (c->partial && (ret = hs_settle(l, c, hs_step(l, c, out))) != 0)
                return ret < 0 ? ret : 0;
            if (c->st != MIGR_HS_FREE && now >= c->deadline && (ret = hs_reject(l, c, hs_timeout(l, c))) < 0)
                return ret;
        }
        if (pfd[0].revents) {
            char peer[sizeof((*out)->peer)];
            int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);

            if (fd < 0) {
                /* The client went away between poll and accept, or a signal. */
                if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
                    return migr_errorf_errno(errno, "accept on %s", l->bound);
            } else if ((ret = li->be->accepted(l, fd, peer, sizeof(peer))) < 0) {
                struct migr_hs_conn tmp = { .fd = fd, .st = MIGR_HS_EXPECT };

                snprintf(tmp.peer, sizeof(tmp.peer), "a client of %.140s", l->bound);
                if ((ret = hs_reject(l, &tmp, ret)) < 0)
                    return ret;
            } else {
                c = NULL;
                ret = hs_start(l, fd, peer, 0, 0, &c, out);
                if (!c)
                    return ret;   /* making room failed (its error) */
                if ((ret = hs_settle(l, c, ret)) != 0)
                    return ret < 0 ? ret : 0;
            }
        }
        if (deadline && migr_now_ns() >= deadline) {
            if (l->last_reject[0] && l->rejected)
                return migr_errorf(ETIMEDOUT, "accept on %s: no connection within %d ms (%u dropped; the last: %s)",
                                   l->bound, timeout_ms, l->rejected, l->last_reject);
            return migr_errorf(ETIMEDOUT, "accept on %s: no connection within %d ms", l->bound, timeout_ms);
        }
    }
}
