/* migr — side connections next to a stream (the post-copy fault channel).
 *
 * unix: (MIGR_TCAP_PASS_FDS): the offering side makes a socketpair and
 * passes one end along the stream, right after the bytes of its offer.
 *
 * tcp: the side connection goes the way the stream went: the side that
 * connected (origin->client) connects again to the same address and port,
 * sends a 16-byte side hello ("MIGRSID1", the cookie of the offer), then,
 * with a key, the same authentication as the stream; the side that
 * accepted takes it at the listener it accepted the stream on. So it
 * reaches wherever the stream reached (NAT, port forward, proxy), and the
 * listener's key is checked again.
 *
 * The listener's socket lives in a hub shared by the listener and the
 * transports it accepted (origin->hub), so that it outlives
 * migr_listener_close (`migr recv` closes its listener at once) until those
 * transports opened or released their side connection. A connection at the
 * socket is handled by exactly one thread:
 *   - a thread in migr_listener_accept (accept.c): while the hub has live
 *     origins, it looks at each new connection's first bytes; a side hello
 *     goes through the handshake there and is delivered to the hub;
 *   - else one side waiter at a time (hub->driving) accepts itself: a side
 *     hello is delivered, anything else is parked for the listener's next
 *     accept (or closed if the listener is closed).
 * Waiters find their connection among the delivered ones by cookie. The
 * hub's lock guards every field; the listening socket is non-blocking, so
 * two threads polling it never both take one connection.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/format.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

#define SIDE_MAGIC "MIGRSID1"
#define DRIVE_SLICE_MS 50
#define SIDE_ARRIVALS 4

struct migr_side_hub {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs;
    int fd;                       /* the listening socket (non-blocking), closed with the last ref */
    int open;                     /* the listener is open */
    int accepting;                /* threads in migr_listener_accept */
    int driving;                  /* a waiter accepts on fd itself */
    int live;                     /* origins that may still open a side connection */
    struct migr_link_cfg cfg;     /* the listener's key, encryption, handshake time */
    char bound[300];
    struct { uint64_t cookie; struct migr_transport *t; } arr[SIDE_ARRIVALS];
    int narr;
    struct parked { int fd; int settled; uint64_t until; char peer[160]; } parked[MIGR_HS_MAX];
    int nparked;                  /* settled: its first bytes are not a side hello; until: watched for a late one */
    struct { int fd; uint64_t since, deadline; char peer[160]; } adopted[MIGR_HS_MAX];   /* from the listener's slots, oldest first */
    int nadopted;
};

/* ---- the hub ---- */

int migr_side_hub_new(struct migr_listener *l, const struct migr_link_cfg *cfg, struct migr_side_hub **out)
{
    struct migr_side_hub *h = calloc(1, sizeof(*h));

    if (!h || migr_link_cfg_copy(&h->cfg, cfg) < 0) {
        free(h);
        return migr_errorf(ENOMEM, "listen %s: out of memory", l->bound);
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->refs = 1;
    h->fd = l->fd;
    h->open = 1;
    snprintf(h->bound, sizeof(h->bound), "%s", l->bound);
    *out = h;
    return 0;
}

/* A reference for someone who may still take a side connection (an
 * origin, an offer's thread): while there is one, accepting threads look
 * at each new connection's first bytes. */
static void hub_hold(struct migr_side_hub *h)
{
    pthread_mutex_lock(&h->lock);
    h->refs++;
    h->live++;
    pthread_mutex_unlock(&h->lock);
}

static void hub_unref(struct migr_side_hub *h);

static void hub_drop(struct migr_side_hub *h)
{
    pthread_mutex_lock(&h->lock);
    h->live--;
    pthread_mutex_unlock(&h->lock);
    hub_unref(h);
}

static void hub_unref(struct migr_side_hub *h)
{
    pthread_mutex_lock(&h->lock);
    int last = --h->refs == 0;
    pthread_mutex_unlock(&h->lock);
    if (!last)
        return;
    for (int i = 0; i < h->narr; i++)
        migr_transport_close(h->arr[i].t);
    for (int i = 0; i < h->nparked; i++)
        close(h->parked[i].fd);
    for (int i = 0; i < h->nadopted; i++)
        close(h->adopted[i].fd);
    close(h->fd);
    migr_link_cfg_free(&h->cfg);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

void migr_side_hub_close(struct migr_side_hub *h)
{
    pthread_mutex_lock(&h->lock);
    h->open = 0;
    for (int i = 0; i < h->nparked; i++)
        close(h->parked[i].fd);   /* they came for the listener, which is gone */
    h->nparked = 0;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    hub_unref(h);
}

int migr_side_hub_live(struct migr_side_hub *h)
{
    pthread_mutex_lock(&h->lock);
    int n = h->live;
    pthread_mutex_unlock(&h->lock);
    return n;
}

void migr_side_hub_accepting(struct migr_side_hub *h, int delta)
{
    pthread_mutex_lock(&h->lock);
    h->accepting += delta;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* The oldest connection adopted from the listener's slots, out of the
 * hub (caller holds the lock, nadopted > 0). */
static int hub_take_adopted(struct migr_side_hub *h, char *peer, size_t cap, uint64_t *since, uint64_t *deadline)
{
    int fd = h->adopted[0].fd;

    if (since)
        *since = h->adopted[0].since;
    if (deadline)
        *deadline = h->adopted[0].deadline;
    snprintf(peer, cap, "%s", h->adopted[0].peer);
    h->nadopted--;
    memmove(&h->adopted[0], &h->adopted[1], sizeof(h->adopted[0]) * (size_t)h->nadopted);
    return fd;
}

int migr_side_hub_unpark(struct migr_side_hub *h, char *peer, size_t cap, uint64_t *since, uint64_t *deadline)
{
    int fd = -1;

    *since = *deadline = 0;
    pthread_mutex_lock(&h->lock);
    if (h->nparked > 0) {
        h->nparked--;
        fd = h->parked[h->nparked].fd;
        snprintf(peer, cap, "%s", h->parked[h->nparked].peer);
    } else if (h->nadopted > 0 && h->open) {
        /* No side waiter looked at it: the listener's again, in the order
         * the listener had them (clients that open several connections
         * and tell them apart by that order), with its handshake's times. */
        fd = hub_take_adopted(h, peer, cap, since, deadline);
    }
    pthread_mutex_unlock(&h->lock);
    return fd;
}

static uint64_t deadline_after(int ms);

/* When a connection's handshake must be done by, from now: the listener's
 * handshake time (default 5 s). */
static uint64_t hub_handshake_deadline(const struct migr_side_hub *h)
{
    return deadline_after(h->cfg.handshake_ms > 0 ? h->cfg.handshake_ms : 5000);
}

/* settled: its first bytes were seen and are not a side hello (else it was
 * only silent, and a driving waiter still watches it for a late one). */
static void hub_park(struct migr_side_hub *h, int fd, const char *peer, int settled)
{
    pthread_mutex_lock(&h->lock);
    /* With the listener closed only a silent one is kept: it may still be
     * a side connection (drive_parked watches it); the rest came for the
     * listener, which is gone. */
    if ((h->open || !settled) && h->nparked < MIGR_HS_MAX) {
        struct parked *k = &h->parked[h->nparked++];
        k->fd = fd;
        k->settled = settled;
        k->until = hub_handshake_deadline(h);
        snprintf(k->peer, sizeof(k->peer), "%s", peer);
        fd = -1;
    }
    pthread_mutex_unlock(&h->lock);
    if (fd >= 0)
        close(fd);   /* nobody listens any more (or too many): refused */
}

void migr_side_hub_adopt(struct migr_side_hub *h, int fd, const char *peer, uint64_t since, uint64_t deadline)
{
    pthread_mutex_lock(&h->lock);
    if (h->nadopted < MIGR_HS_MAX) {
        h->adopted[h->nadopted].fd = fd;
        h->adopted[h->nadopted].since = since;
        h->adopted[h->nadopted].deadline = deadline;
        snprintf(h->adopted[h->nadopted].peer, sizeof(h->adopted[0].peer), "%s", peer);
        h->nadopted++;
        fd = -1;
    }
    pthread_mutex_unlock(&h->lock);
    if (fd >= 0)
        close(fd);
}

void migr_side_hub_deliver(struct migr_side_hub *h, uint64_t cookie, struct migr_transport *t)
{
    struct migr_transport *drop = NULL;

    pthread_mutex_lock(&h->lock);
    if (h->narr == SIDE_ARRIVALS) {   /* nobody took the oldest: a replay or a late one */
        drop = h->arr[0].t;
        memmove(&h->arr[0], &h->arr[1], sizeof(h->arr[0]) * (SIDE_ARRIVALS - 1));
        h->narr--;
    }
    h->arr[h->narr].cookie = cookie;
    h->arr[h->narr++].t = t;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    migr_transport_close(drop);
}

/* Under the lock: take the connection with cookie, or NULL. */
static struct migr_transport *hub_take(struct migr_side_hub *h, uint64_t cookie)
{
    for (int i = 0; i < h->narr; i++) {
        if (h->arr[i].cookie != cookie)
            continue;
        struct migr_transport *t = h->arr[i].t;
        memmove(&h->arr[i], &h->arr[i + 1], sizeof(h->arr[0]) * (size_t)(h->narr - i - 1));
        h->narr--;
        return t;
    }
    return NULL;
}

/* ---- origins ---- */

void migr_side_origin_free(struct migr_side_origin *o)
{
    if (!o)
        return;
    migr_transport_side_release_origin(o);
    migr_link_cfg_free(&o->cfg);
    free(o);
}

void migr_transport_side_release_origin(struct migr_side_origin *o)
{
    struct migr_side_hub *h = o->hub;

    if (!h)
        return;
    o->hub = NULL;
    hub_drop(h);
}

static struct migr_side_origin **origin_slot(struct migr_transport *t)
{
    return (t->ops->caps & MIGR_TCAP_SIDE) && t->ops->origin ? t->ops->origin(t) : NULL;
}

void migr_side_set_origin(struct migr_transport *t, struct migr_side_origin *o)
{
    struct migr_side_origin **slot = origin_slot(t);

    if (!slot) {
        migr_side_origin_free(o);
        return;
    }
    migr_side_origin_free(*slot);
    *slot = o;
}

int migr_side_origin_client(struct migr_transport *t, const struct migr_url *u, const struct migr_link_cfg *cfg)
{
    struct migr_side_origin *o;

    if (u->kind != MIGR_URL_TCP || !origin_slot(t))
        return 0;
    if (!(o = calloc(1, sizeof(*o))) || migr_link_cfg_copy(&o->cfg, cfg) < 0) {
        free(o);
        return migr_errorf(ENOMEM, "connect %s: out of memory", t->peer);
    }
    o->client = 1;
    o->url = *u;
    o->url.channels = 0;
    o->url.uring = 0;
    o->url.encrypt = 0;
    snprintf(o->name, sizeof(o->name), strchr(u->host, ':') ? "tcp:[%s]:%u" : "tcp:%s:%u", u->host, u->port);
    migr_side_set_origin(t, o);
    return 0;
}

int migr_side_origin_server(struct migr_transport *t, struct migr_side_hub *h)
{
    struct migr_side_origin *o;

    if (!h || !origin_slot(t))
        return 0;
    if (!(o = calloc(1, sizeof(*o))))
        return migr_errorf(ENOMEM, "accept on %s: out of memory", h->bound);
    hub_hold(h);
    o->hub = h;
    snprintf(o->name, sizeof(o->name), "%s", h->bound);
    migr_side_set_origin(t, o);
    return 0;
}

void migr_transport_side_release(struct migr_transport *t)
{
    struct migr_side_origin **slot = t ? origin_slot(t) : NULL;

    if (slot && *slot)
        migr_transport_side_release_origin(*slot);
}

/* ---- one side connection, either end ---- */

static uint64_t deadline_after(int ms)
{
    return migr_now_ns() + (uint64_t)(ms > 0 ? ms : 0) * 1000000ull;
}

static int send_all(int fd, const void *p, size_t n)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};

    return migr_fd_sendv(fd, "side connection", &iov, 1, NULL);
}

/* The connecting end: to url, the hello, the authentication with cfg's key. */
static int side_connect(const struct migr_url *u, const char *url, const struct migr_link_cfg *cfg, uint64_t cookie,
                        uint64_t deadline, struct migr_transport **out)
{
    uint8_t hello[16];
    struct migr_auth a;
    char peer[300];
    int fd, ret;

    if ((fd = migr_tcp_backend.connect(u, url)) < 0)
        return migr_error_prefix(-fd, "side connection");
    memcpy(hello, SIDE_MAGIC, 8);
    migr_put_le64(hello + 8, cookie);
    if ((ret = send_all(fd, hello, sizeof(hello))) < 0) {
        close(fd);
        return migr_error_prefix(-ret, "side connection to %s", url);
    }
    if (cfg->key && (ret = migr_auth_client(fd, url, cfg->key, cfg->encrypt, deadline, &a)) < 0) {
        close(fd);
        return migr_error_prefix(-ret, "side connection");
    }
    snprintf(peer, sizeof(peer), "%s (side)", url);
    if ((ret = migr_plain_transport_new(fd, &migr_tcp_backend, u, peer, out)) < 0)
        close(fd);
    else if (cfg->key)
        ret = migr_link_finish(out, &a, 1);
    if (cfg->key)
        migr_auth_wipe(&a);
    return ret;
}

/* The server's half of the authentication, blocking until deadline. */
static int auth_server(int fd, const struct migr_link_cfg *cfg, uint64_t deadline, struct migr_auth *a)
{
    uint8_t hc[MIGR_AUTH_HELLO_C], hs[MIGR_AUTH_HELLO_S], fin[MIGR_AUTH_FINISH];
    int err;

    if ((err = migr_read_deadline(fd, hc, sizeof(hc), deadline)) < 0 ||
        (err = migr_auth_server_hello(cfg->key, cfg->encrypt, hc, a, hs)) < 0 ||
        (err = send_all(fd, hs, sizeof(hs))) < 0 || (err = migr_read_deadline(fd, fin, sizeof(fin), deadline)) < 0)
        return err;
    if ((err = migr_auth_server_finish(cfg->key, a, fin)) < 0) {
        (void)send_all(fd, MIGR_AUTH_NO, MIGR_AUTH_RESULT);
        return err;
    }
    return send_all(fd, MIGR_AUTH_OK, MIGR_AUTH_RESULT);
}

int migr_side_accepted(struct migr_side_hub *h, int fd, const char *peer, const struct migr_auth *a,
                       uint64_t cookie)
{
    struct migr_url u = {.kind = MIGR_URL_TCP};
    struct migr_transport *t;
    char name[300];
    int ret;

    snprintf(name, sizeof(name), "%s (side)", peer);
    if ((ret = migr_plain_transport_new(fd, &migr_tcp_backend, &u, name, &t)) < 0) {
        close(fd);
        return ret;
    }
    if (a && (ret = migr_link_finish(&t, a, 0)) < 0)
        return ret;
    migr_side_hub_deliver(h, cookie, t);
    return 0;
}

int migr_side_hello_check(const uint8_t *b, size_t got)
{
    return memcmp(b, SIDE_MAGIC, MIGR_MIN(got, 8)) == 0 ? (got >= 16 ? 1 : 0) : -1;
}

/* A connection whose first 16 bytes are a side hello (still unread): take
 * them, authenticate with the listener's key, deliver it. A side hello that
 * fails its handshake is a stranger's: closed. */
static void side_take(struct migr_side_hub *h, int fd, const char *peer, uint64_t deadline)
{
    uint8_t b[16];
    struct migr_auth a;

    if (recv(fd, b, sizeof(b), MSG_DONTWAIT) != (ssize_t)sizeof(b) ||
        (h->cfg.key && auth_server(fd, &h->cfg, deadline, &a) < 0)) {
        if (h->cfg.key)
            migr_auth_wipe(&a);
        close(fd);
        return;
    }
    (void)migr_side_accepted(h, fd, peer, h->cfg.key ? &a : NULL, migr_get_le64(b + 8));
    if (h->cfg.key)
        migr_auth_wipe(&a);
}

/* What the first bytes of fd say, without waiting: 1 a whole side hello, 0
 * not yet known (silent, or a prefix of one), -1 not a side hello (other
 * bytes, or the peer has gone). */
static int peek_side(int fd)
{
    uint8_t b[16];
    ssize_t r = recv(fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);

    if (r > 0)
        return migr_side_hello_check(b, (size_t)r);
    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        return -1;
    return 0;
}

/* The driving waiter: one connection from the socket. A side hello is
 * delivered; anything else is parked for the listener — one that only
 * stayed silent for MIGR_SIDE_PROBE_MS (a client waiting for us to speak,
 * or a side connection whose hello is late behind a relay) is watched
 * until the handshake deadline by drive_parked. */
static void drive_one(struct migr_side_hub *h, int fd, const char *peer)
{
    uint64_t since = migr_now_ns(), deadline = hub_handshake_deadline(h);
    int is;

    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if ((is = peek_side(fd)) != 0)
            break;
        if (migr_now_ns() - since >= MIGR_SIDE_PROBE_MS * 1000000ull || migr_now_ns() >= deadline)
            break;
        (void)poll(&p, 1, 10);
    }
    if (is <= 0)
        hub_park(h, fd, peer, is < 0);
    else
        side_take(h, fd, peer, deadline);
}

/* The driving waiter, between accepts: a parked connection that was only
 * silent and now shows a side hello is taken back from the park and
 * delivered (test_transport_side: a side hello 400 ms late behind a silent
 * stranger, with the listener closed); one that shows other bytes stays parked for the listener and
 * is not watched again. Waits up to ms for the listening socket too:
 * returns 1 if it is readable. */
static int drive_parked(struct migr_side_hub *h, int ms)
{
    struct pollfd p[1 + MIGR_HS_MAX];
    int n = 1, partial = 0;
    uint64_t now = migr_now_ns();

    p[0] = (struct pollfd){.fd = h->fd, .events = POLLIN};
    pthread_mutex_lock(&h->lock);
    for (int i = 0; i < h->nparked; i++) {
        struct parked *q = &h->parked[i];
        if (!h->open && (q->settled || now >= q->until)) {
            close(q->fd);   /* the listener is gone and it is no side connection */
            *q = h->parked[--h->nparked];
            i--;
        } else if (!q->settled && now < q->until) {
            p[n++] = (struct pollfd){.fd = q->fd, .events = POLLIN};
        }
    }
    pthread_mutex_unlock(&h->lock);
    if (poll(p, (nfds_t)n, ms) <= 0)
        return 0;
    for (int k = 1; k < n; k++) {
        if (!p[k].revents)
            continue;
        int fd = -1;
        char peer[160];
        uint64_t until = 0;
        pthread_mutex_lock(&h->lock);
        for (int i = 0; i < h->nparked; i++) {
            struct parked *q = &h->parked[i];
            if (q->fd != p[k].fd || q->settled)
                continue;   /* the listener took it meanwhile (its fd may be reused) */
            int is = peek_side(q->fd);
            partial |= is == 0;
            if (is < 0) {
                q->settled = 1;
            } else if (is > 0) {
                fd = q->fd;
                until = q->until;
                snprintf(peer, sizeof(peer), "%s", q->peer);
                *q = h->parked[--h->nparked];
            }
            break;
        }
        pthread_mutex_unlock(&h->lock);
        if (fd >= 0)
            side_take(h, fd, peer, until);
    }
    if (partial && !p[0].revents)
        (void)poll(NULL, 0, 10);   /* a side hello begun but not whole: no busy loop */
    return p[0].revents != 0;
}

static void drive_slice(struct migr_side_hub *h)
{
    char peer[160];
    int afd = -1;

    pthread_mutex_lock(&h->lock);
    if (h->nadopted > 0)
        afd = hub_take_adopted(h, peer, sizeof(peer), NULL, NULL);
    pthread_mutex_unlock(&h->lock);
    if (afd >= 0) {
        drive_one(h, afd, peer);
        return;
    }
    if (!drive_parked(h, DRIVE_SLICE_MS))
        return;
    int fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;   /* another thread took it, or the client went away */
    if (migr_tcp_accepted_fd(fd, peer, sizeof(peer)) < 0) {
        close(fd);
        return;
    }
    drive_one(h, fd, peer);
}

/* The accepting end: wait for the connection with cookie at h. */
static int hub_wait(struct migr_side_hub *h, uint64_t cookie, uint64_t deadline, const int *stop,
                    struct migr_transport **out)
{
    pthread_mutex_lock(&h->lock);
    for (;;) {
        if ((*out = hub_take(h, cookie)))
            break;
        if (migr_now_ns() >= deadline || (stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE)))
            break;
        if (!h->accepting && !h->driving) {
            h->driving = 1;
            pthread_mutex_unlock(&h->lock);
            drive_slice(h);
            pthread_mutex_lock(&h->lock);
            h->driving = 0;
            pthread_cond_broadcast(&h->cond);
            continue;
        }
        struct timespec ts = migr_realtime_after_ms(DRIVE_SLICE_MS);
        pthread_cond_timedwait(&h->cond, &h->lock, &ts);
    }
    pthread_mutex_unlock(&h->lock);
    if (*out)
        return 0;
    return -ETIMEDOUT;
}

/* ---- the offering side ---- */

struct migr_side {
    pthread_t th;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;                     /* the thread has its result (under lock) */
    int stop;                     /* atomic: give up */
    int err;                      /* the result, after the join */
    char why[300];
    struct migr_transport *t;     /* the result */
    uint64_t cookie;
    int client;
    struct migr_url url;          /* client: where to connect */
    char name[300];
    struct migr_link_cfg cfg;     /* client: the stream's options */
    struct migr_side_hub *hub;    /* server: referenced */
    int timeout_ms;
};

static void *side_main(void *arg)
{
    struct migr_side *s = arg;
    uint64_t deadline = deadline_after(s->timeout_ms);

    migr_clear_error();
    if (s->client)
        s->err = side_connect(&s->url, s->name, &s->cfg, s->cookie, deadline, &s->t);
    else
        s->err = hub_wait(s->hub, s->cookie, deadline, &s->stop, &s->t);
    if (s->err == -ETIMEDOUT && !s->client)
        snprintf(s->why, sizeof(s->why), "no connection with its cookie at %.200s within %d ms", s->name,
                 s->timeout_ms);
    else if (s->err < 0)
        snprintf(s->why, sizeof(s->why), "%s", migr_last_error());
    pthread_mutex_lock(&s->lock);
    s->done = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* How long the background connect or accept may take: the peer opens its
 * end as soon as it reads the offer. */
#define SIDE_TIMEOUT_MS 10000

int migr_transport_side_offer(struct migr_transport *t, int (*send)(void *arg, const uint8_t *bytes, size_t len),
                              void *arg, struct migr_side **out)
{
    struct migr_side_origin **slot = origin_slot(t);
    struct migr_fault_channel fc = {0};
    uint8_t b[MIGR_FAULT_CHANNEL_SIZE];
    struct migr_side *s;
    int err;

    *out = NULL;
    if (!(t->ops->caps & MIGR_TCAP_SIDE) || (!(t->ops->caps & MIGR_TCAP_PASS_FDS) && (!slot || !*slot)))
        return -ENOTSUP;
    if (!(s = calloc(1, sizeof(*s))))
        return migr_errorf(ENOMEM, "side connection on %s: out of memory", t->peer);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (t->ops->caps & MIGR_TCAP_PASS_FDS) {
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            free(s);
            return migr_errorf_errno(errno, "side connection on %s: socketpair", t->peer);
        }
        fc.kind = MIGR_FCH_FD;
        migr_fault_channel_encode(&fc, b, sizeof(b));
        if ((err = send(arg, b, sizeof(b))) < 0 || (err = migr_transport_send_fds(t, &sv[1], 1)) < 0 ||
            (err = migr_transport_from_fd(sv[0], "unix", "side connection", &s->t)) < 0) {
            close(sv[0]);
            close(sv[1]);
            free(s);
            return err;
        }
        close(sv[1]);
        *out = s;
        return 0;
    }
    const struct migr_side_origin *o = *slot;
    if (getrandom(&s->cookie, sizeof(s->cookie), 0) != sizeof(s->cookie) || !s->cookie) {
        free(s);
        return migr_errorf_errno(errno ? errno : EIO, "side connection on %s: getrandom", t->peer);
    }
    s->client = o->client;
    s->url = o->url;
    snprintf(s->name, sizeof(s->name), "%s", o->name);
    s->timeout_ms = SIDE_TIMEOUT_MS;
    if (o->client && migr_link_cfg_copy(&s->cfg, &o->cfg) < 0) {
        free(s);
        return migr_errorf(ENOMEM, "side connection on %s: out of memory", t->peer);
    }
    if (!o->client) {
        s->hub = o->hub;
        hub_hold(s->hub);
    }
    fc = (struct migr_fault_channel){.kind = MIGR_FCH_TCP, .arg = o->client ? MIGR_FCH_F_SOURCE_CONNECTS : 0,
                                     .cookie = s->cookie};
    migr_fault_channel_encode(&fc, b, sizeof(b));
    if ((err = send(arg, b, sizeof(b))) < 0) {
        migr_side_free(s);
        return err;
    }
    /* Our origin's part is done: the hub has our reference now. */
    migr_transport_side_release_origin(*slot);
    if ((err = pthread_create(&s->th, NULL, side_main, s)) != 0) {
        migr_side_free(s);
        return migr_errorf(err, "side connection on %s: start its thread", t->peer);
    }
    s->started = 1;
    *out = s;
    return 0;
}

static void side_join(struct migr_side *s)
{
    if (!s->started)
        return;
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    pthread_join(s->th, NULL);
    s->started = 0;
}

int migr_side_collect(struct migr_side *s, int timeout_ms, struct migr_transport **out)
{
    *out = NULL;
    if (s->started) {
        uint64_t deadline = deadline_after(timeout_ms);
        pthread_mutex_lock(&s->lock);
        while (!s->done && (timeout_ms < 0 || migr_now_ns() < deadline)) {
            struct timespec ts = migr_realtime_after_ms(DRIVE_SLICE_MS);
            pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        }
        int done = s->done;
        pthread_mutex_unlock(&s->lock);
        side_join(s);   /* at once if done; else it stops within a slice (or its connect's own time-out) */
        if (!done) {
            migr_transport_close(s->t);
            s->t = NULL;
            return migr_errorf(ETIMEDOUT, "the peer did not open the side connection within %d ms (%s)", timeout_ms,
                               s->client ? "connecting" : "accepting");
        }
        if (s->err < 0)
            return migr_errorf(-s->err, "the peer did not open the side connection (%s)", s->why);
    }
    if (!s->t)
        return migr_errorf(EPROTO, "side connection: collected twice");
    *out = s->t;
    s->t = NULL;
    return 0;
}

void migr_side_free(struct migr_side *s)
{
    if (!s)
        return;
    side_join(s);
    migr_transport_close(s->t);
    migr_link_cfg_free(&s->cfg);
    if (s->hub)
        hub_drop(s->hub);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* ---- the peer ---- */

/* Kind 2 (revision 1.3 sources): connect back to the stream's peer address at the port given. */
static int open_back(struct migr_transport *t, const struct migr_fault_channel *fc, struct migr_transport **out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[NI_MAXHOST], url[NI_MAXHOST + 16];
    uint8_t b[8];
    int err;

    if (getpeername(t->fd, (struct sockaddr *)&ss, &sl) < 0)
        return migr_errorf_errno(errno, "side connection: getpeername");
    if ((err = getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), NULL, 0, NI_NUMERICHOST)) != 0)
        return migr_errorf(EINVAL, "side connection: getnameinfo: %s", gai_strerror(err));
    snprintf(url, sizeof(url), ss.ss_family == AF_INET6 ? "tcp:[%s]:%u" : "tcp:%s:%u", host, fc->arg);
    if ((err = migr_transport_connect(url, out)) < 0)
        return migr_error_prefix(-err, "side connection");
    migr_put_le64(b, fc->cookie);
    if ((err = migr_transport_send(*out, b, 8)) < 0) {
        migr_transport_close(*out);
        *out = NULL;
        return migr_error_prefix(-err, "side connection");
    }
    return 0;
}

int migr_transport_side_open(struct migr_transport *t, const uint8_t *bytes, size_t len, int timeout_ms,
                             struct migr_transport **out)
{
    struct migr_side_origin **slot = origin_slot(t);
    struct migr_fault_channel fc;
    int err, fd;

    *out = NULL;
    if ((err = migr_fault_channel_decode(bytes, len, &fc)) < 0)
        return err;
    if (fc.kind == MIGR_FCH_FD) {
        if (!(t->ops->caps & MIGR_TCAP_PASS_FDS))
            return migr_errorf(EBADMSG, "side connection: kind 1 (a descriptor) on a %s stream", t->ops->name);
        if ((err = migr_transport_recv_fds(t, &fd, 1)) < 0)
            return err;
        if ((err = migr_transport_from_fd(fd, "unix", "side connection", out)) < 0)
            close(fd);
        return err;
    }
    if (!slot || !*slot || (t->ops->caps & MIGR_TCAP_PASS_FDS))
        return migr_errorf(EBADMSG, "side connection: kind %u on a %s stream", fc.kind, t->ops->name);
    struct migr_side_origin *o = *slot;
    if (fc.kind == MIGR_FCH_TCP_BACK) {
        migr_transport_side_release_origin(o);
        return open_back(t, &fc, out);
    }
    int source_connects = (fc.arg & MIGR_FCH_F_SOURCE_CONNECTS) != 0;
    if (source_connects != !o->client)
        return migr_errorf(EPROTO, "side connection: the source says it %s, but this side %s the stream",
                           source_connects ? "connects" : "accepts", o->client ? "connected" : "accepted");
    uint64_t deadline = deadline_after(timeout_ms);
    if (o->client)
        err = side_connect(&o->url, o->name, &o->cfg, fc.cookie, deadline, out);
    else if ((err = hub_wait(o->hub, fc.cookie, deadline, NULL, out)) == -ETIMEDOUT)
        err = migr_errorf(ETIMEDOUT, "side connection: none with the cookie at %s within %d ms", o->name, timeout_ms);
    migr_transport_side_release_origin(o);
    return err;
}
