/* migr — shared-memory transport: shm:NAME[?ring=SIZE].
 *
 * The listener waits on a unix socket (@migr-shm-NAME, or NAME if it is a
 * path). A connecting peer says hello (magic, the ring size it would like);
 * the listener creates a memfd holding a control page and one ring per
 * direction, plus four eventfds, and passes them back with SCM_RIGHTS. From
 * then on the byte stream flows through the rings:
 *
 *   ring 0: connector -> listener      ring 1: listener -> connector
 *
 * Each ring is a single-producer single-consumer byte ring with free-running
 * 64-bit counters (tail: bytes written, head: bytes read). The producer
 * copies iovecs in and publishes tail (release); the consumer copies out and
 * publishes head. Neither side makes a system call while the other keeps up:
 * a side that finds the ring empty (full) spins for a short while, then sets
 * its "waiting" flag, re-checks, and sleeps in poll() on its eventfd and on
 * the unix socket; the other side, after publishing, sees the flag (a full
 * fence orders the flag and the counter on both sides) and writes the
 * eventfd. The unix socket stays open: the peer's death or close shows as
 * POLLRDHUP on it, and it carries descriptors for send_fds/recv_fds.
 * Sleeps are added to send_wait_ns / recv_wait_ns, so the CPU accounting
 * needs no system call either (wall time minus sleeps).
 *
 * t->fd is an epoll set of the socket and the "data arrived" eventfd: it
 * polls readable on the peer's close and whenever a receiver was told of
 * new data, which is what the engine polls it for (a peer's last words).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

#define SHM_MAGIC "MIGRSHM1"
#define SHM_VERSION 1
#define SHM_CTL_BYTES 4096u
#define SHM_PUBLISH_BYTES (64u << 10)  /* publish tail at least this often */
#define SHM_SPIN_NS 30000u              /* spin this long before sleeping */

struct shm_ring_ctl {
    _Alignas(64) _Atomic uint64_t tail;      /* producer's line ... */
    _Atomic uint32_t prod_waiting;          /* ... producer sleeps for space */
    _Alignas(64) _Atomic uint64_t head;      /* consumer's line ... */
    _Atomic uint32_t cons_waiting;          /* ... consumer sleeps for data */
    _Alignas(64) char pad[64];
};

struct shm_ctl {
    char magic[8];
    uint32_t version;
    uint32_t pad;
    uint64_t ring_bytes;
    _Alignas(64) struct shm_ring_ctl ring[2];
};

_Static_assert(sizeof(struct shm_ctl) <= SHM_CTL_BYTES, "control block fits its page");

/* Handshake messages on the socket. */
struct shm_hello {
    char magic[8];
    uint32_t version;
    uint32_t pad;
    uint64_t ring_bytes;   /* hello: wanted (0 = no wish); reply: chosen */
};

/* One direction as seen from one side. */
struct shm_dir {
    struct shm_ring_ctl *c;
    uint8_t *data;
    uint64_t mask;
    uint64_t pos;          /* our own counter (tail for tx, head for rx) */
    uint64_t other;        /* last seen value of the other side's counter */
    int wait_fd;           /* eventfd we sleep on */
    int wake_fd;           /* eventfd we write to wake the other side */
};

struct shm_transport {
    struct migr_transport pub;   /* first member */
    int sock;
    void *map;
    size_t map_len;
    uint64_t ring_bytes;
    struct shm_dir tx, rx;
    int efd[4];
    _Atomic int shut;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void wake(int fd)
{
    uint64_t one = 1;

    /* Can fail only with EAGAIN at a counter of 2^64-2: then it is readable anyway. */
    while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void drain_efd(int fd)
{
    uint64_t v;

    while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
}

/* Sleep until the eventfd fires or the peer goes away. 0, or -EPIPE once the
 * peer closed (or we were shut down), or -errno. */
static int sleep_on(struct shm_transport *s, int efd, uint64_t *waited)
{
    struct pollfd p[2] = { { .fd = efd, .events = POLLIN }, { .fd = s->sock, .events = POLLRDHUP } };

    if (atomic_load(&s->shut))
        return -EPIPE;
    for (;;) {
        uint64_t t0 = migr_now_ns();
        int n = poll(p, 2, -1);

        __atomic_fetch_add(waited, migr_now_ns() - t0, __ATOMIC_RELAXED);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (p[0].revents & POLLIN)
            drain_efd(efd);
        if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR))
            return -EPIPE;
        return atomic_load(&s->shut) ? -EPIPE : 0;
    }
}

/* Wait until the other side's counter differs from what cond() rejects:
 * for tx, until there is space; for rx, until there is data. */
static int wait_tx_space(struct shm_transport *s)
{
    struct shm_dir *d = &s->tx;
    uint64_t t0 = 0;

    for (unsigned spins = 0;; spins++) {
        d->other = atomic_load_explicit(&d->c->head, memory_order_acquire);
        if (d->pos - d->other < s->ring_bytes)
            return 0;
        if (atomic_load_explicit(&s->shut, memory_order_relaxed))
            return -EPIPE;
        if ((spins & 255) == 0) {
            uint64_t now = migr_now_ns();

            if (!t0)
                t0 = now;
            else if (now - t0 > SHM_SPIN_NS) {
                atomic_store(&d->c->prod_waiting, 1);   /* seq_cst: before the re-check */
                d->other = atomic_load(&d->c->head);
                if (d->pos - d->other < s->ring_bytes) {
                    atomic_store(&d->c->prod_waiting, 0);
                    return 0;
                }
                int err = sleep_on(s, d->wait_fd, &s->pub.send_wait_ns);

                atomic_store(&d->c->prod_waiting, 0);
                if (err < 0)
                    return err;
                t0 = 0;
            }
        }
        cpu_relax();
    }
}

/* 0 when data is there, -EPIPE when the peer is gone and the ring is empty. */
static int wait_rx_data(struct shm_transport *s)
{
    struct shm_dir *d = &s->rx;
    uint64_t t0 = 0;

    for (unsigned spins = 0;; spins++) {
        d->other = atomic_load_explicit(&d->c->tail, memory_order_acquire);
        if (d->other != d->pos)
            return 0;
        if (atomic_load_explicit(&s->shut, memory_order_relaxed))
            return -EPIPE;
        if ((spins & 255) == 0) {
            uint64_t now = migr_now_ns();

            if (!t0)
                t0 = now;
            else if (now - t0 > SHM_SPIN_NS) {
                atomic_store(&d->c->cons_waiting, 1);
                d->other = atomic_load(&d->c->tail);
                if (d->other != d->pos) {
                    atomic_store(&d->c->cons_waiting, 0);
                    return 0;
                }
                int err = sleep_on(s, d->wait_fd, &s->pub.recv_wait_ns);

                atomic_store(&d->c->cons_waiting, 0);
                if (err < 0) {
                    /* The peer's last bytes were published before it closed. */
                    d->other = atomic_load(&d->c->tail);
                    return d->other != d->pos ? 0 : err;
                }
                t0 = 0;
            }
        }
        cpu_relax();
    }
}

static void publish_tx(struct shm_transport *s)
{
    struct shm_dir *d = &s->tx;

    atomic_store(&d->c->tail, d->pos);   /* seq_cst: ordered before the flag load */
    if (atomic_load(&d->c->cons_waiting) && atomic_exchange(&d->c->cons_waiting, 0))
        wake(d->wake_fd);
}

static void publish_rx(struct shm_transport *s)
{
    struct shm_dir *d = &s->rx;

    atomic_store(&d->c->head, d->pos);
    if (atomic_load(&d->c->prod_waiting) && atomic_exchange(&d->c->prod_waiting, 0))
        wake(d->wake_fd);
}

static int shm_sendv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    struct shm_transport *s = (struct shm_transport *)t;
    struct shm_dir *d = &s->tx;
    uint64_t unpublished = 0, start = d->pos;

    if (iovcnt < 0)
        return migr_errorf(EINVAL, "send %s: negative iovec count %d", t->peer, iovcnt);
    if (atomic_load_explicit(&s->shut, memory_order_relaxed))
        return migr_errorf(EPIPE, "send %s: transport shut down", t->peer);
    for (int i = 0; i < iovcnt; i++) {
        const uint8_t *src = iov[i].iov_base;
        size_t left = iov[i].iov_len;

        while (left) {
            uint64_t space = s->ring_bytes - (d->pos - d->other);

            if (space == 0) {
                if (unpublished) {
                    publish_tx(s);
                    unpublished = 0;
                }
                int err = wait_tx_space(s);

                if (err < 0) {
                    t->bytes_sent += d->pos - start;
                    return migr_errorf(EPIPE, "send %s: peer closed the connection (%llu bytes unread in the ring)",
                                       t->peer, (unsigned long long)(d->pos - d->other));
                }
                continue;
            }
            uint64_t off = d->pos & d->mask;
            size_t n = (size_t)MIGR_MIN(MIGR_MIN((uint64_t)left, space), s->ring_bytes - off);

            memcpy(d->data + off, src, n);
            src += n;
            left -= n;
            d->pos += n;
            unpublished += n;
            if (unpublished >= SHM_PUBLISH_BYTES) {
                publish_tx(s);
                unpublished = 0;
            }
        }
    }
    if (unpublished)
        publish_tx(s);
    t->bytes_sent += d->pos - start;
    return 0;
}

static int shm_recvv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    struct shm_transport *s = (struct shm_transport *)t;
    struct shm_dir *d = &s->rx;
    uint64_t start = d->pos, total = 0, unpublished = 0;

    if (iovcnt < 0)
        return migr_errorf(EINVAL, "recv %s: negative iovec count %d", t->peer, iovcnt);
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    for (int i = 0; i < iovcnt; i++) {
        uint8_t *dst = iov[i].iov_base;
        size_t left = iov[i].iov_len;

        while (left) {
            uint64_t avail = d->other - d->pos;

            if (avail == 0) {
                if (unpublished) {
                    publish_rx(s);
                    unpublished = 0;
                }
                int err = wait_rx_data(s);

                if (err < 0) {
                    t->bytes_recv += d->pos - start;
                    return migr_errorf(EPIPE, "recv %s: peer closed the connection (%llu of %llu bytes received)",
                                       t->peer, (unsigned long long)(d->pos - start), (unsigned long long)total);
                }
                continue;
            }
            uint64_t off = d->pos & d->mask;
            size_t n = (size_t)MIGR_MIN(MIGR_MIN((uint64_t)left, avail), s->ring_bytes - off);

            memcpy(dst, d->data + off, n);
            dst += n;
            left -= n;
            d->pos += n;
            unpublished += n;
            if (unpublished >= SHM_PUBLISH_BYTES) {
                publish_rx(s);
                unpublished = 0;
            }
        }
    }
    if (unpublished)
        publish_rx(s);
    t->bytes_recv += d->pos - start;
    return 0;
}

static void shm_shutdown(struct migr_transport *t)
{
    struct shm_transport *s = (struct shm_transport *)t;

    atomic_store(&s->shut, 1);
    (void)shutdown(s->sock, SHUT_RDWR);   /* the peer sees RDHUP */
    wake(s->tx.wait_fd);                 /* our own sleepers see the flag */
    wake(s->rx.wait_fd);
}

static void shm_close(struct migr_transport *t)
{
    struct shm_transport *s = (struct shm_transport *)t;

    if (s->map)
        munmap(s->map, s->map_len);
    for (int i = 0; i < 4; i++)
        if (s->efd[i] >= 0)
            close(s->efd[i]);
    if (s->sock >= 0)
        close(s->sock);
    if (t->fd >= 0)
        close(t->fd);
    free(s);
}

static int shm_send_fds(struct migr_transport *t, const int *fds, int n)
{
    struct shm_transport *s = (struct shm_transport *)t;

    return migr_fd_send_fds(s->sock, t->peer, &t->bytes_sent, fds, n);
}

static int shm_recv_fds(struct migr_transport *t, int *fds, int n)
{
    struct shm_transport *s = (struct shm_transport *)t;

    return migr_fd_recv_fds(s->sock, t->peer, &t->bytes_recv, fds, n);
}

static long long shm_outq(struct migr_transport *t)
{
    struct shm_transport *s = (struct shm_transport *)t;

    return (long long)(s->tx.pos - atomic_load(&s->tx.c->head));
}

static const struct migr_transport_ops shm_ops = {
    .name = "shm",
    .sendv = shm_sendv,
    .recvv = shm_recvv,
    .shutdown = shm_shutdown,
    .close = shm_close,
    .send_fds = shm_send_fds,
    .recv_fds = shm_recv_fds,
    .outq = shm_outq,
    .cpu_from_wall = 1,   /* sleeps are counted in send_wait_ns/recv_wait_ns */
    .caps = MIGR_TCAP_PASS_FDS,
};

/* Map memfd and set up both directions. side 0 = connector, 1 = listener.
 * efd: 0 ring0-data, 1 ring0-space, 2 ring1-data, 3 ring1-space. Takes
 * ownership of sock, memfd and efd[] (closed on failure as well). */
static int shm_build(int sock, int memfd, const int efd[4], uint64_t ring, int side, const char *peer,
                     struct migr_transport **out)
{
    struct shm_transport *s = calloc(1, sizeof(*s));
    size_t len = SHM_CTL_BYTES + 2 * (size_t)ring;
    int err;

    if (!s) {
        err = migr_errorf(ENOMEM, "%s: out of memory for the transport", peer);
        goto fail_fds;
    }
    s->sock = sock;
    s->pub.fd = -1;
    for (int i = 0; i < 4; i++)
        s->efd[i] = efd[i];
    s->ring_bytes = ring;
    s->map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
    if (s->map == MAP_FAILED) {
        s->map = NULL;
        err = migr_errorf_errno(errno, "%s: mapping the %zu-byte ring memory", peer, len);
        goto fail;
    }
    close(memfd);
    memfd = -1;
    s->map_len = len;
    struct shm_ctl *ctl = s->map;
    if (memcmp(ctl->magic, SHM_MAGIC, 8) || ctl->version != SHM_VERSION || ctl->ring_bytes != ring) {
        err = migr_errorf(EPROTO, "%s: the shared ring memory has a bad header", peer);
        goto fail;
    }
    int txr = side == 0 ? 0 : 1, rxr = 1 - txr;
    uint8_t *base = (uint8_t *)s->map + SHM_CTL_BYTES;

    s->tx = (struct shm_dir){ .c = &ctl->ring[txr], .data = base + (size_t)txr * ring, .mask = ring - 1,
                              .wait_fd = efd[txr * 2 + 1], .wake_fd = efd[txr * 2] };
    s->rx = (struct shm_dir){ .c = &ctl->ring[rxr], .data = base + (size_t)rxr * ring, .mask = ring - 1,
                              .wait_fd = efd[rxr * 2], .wake_fd = efd[rxr * 2 + 1] };
    s->tx.pos = atomic_load(&s->tx.c->tail);
    s->tx.other = atomic_load(&s->tx.c->head);
    s->rx.pos = atomic_load(&s->rx.c->head);
    s->rx.other = s->rx.pos;

    /* The pollable descriptor: peer close, or data we were woken for. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        err = migr_errorf_errno(errno, "%s: epoll_create1", peer);
        goto fail;
    }
    s->pub.fd = ep;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
    ev.data.fd = sock;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev) < 0) {
        err = migr_errorf_errno(errno, "%s: epoll_ctl", peer);
        goto fail;
    }
    ev.events = EPOLLIN;
    ev.data.fd = s->rx.wait_fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->rx.wait_fd, &ev) < 0) {
        err = migr_errorf_errno(errno, "%s: epoll_ctl", peer);
        goto fail;
    }
    migr_transport_init(&s->pub, ep, &shm_ops, peer);
    *out = &s->pub;
    return 0;

fail:
    if (memfd >= 0)
        close(memfd);
    shm_close(&s->pub);
    return err;
fail_fds:
    close(sock);
    close(memfd);
    for (int i = 0; i < 4; i++)
        close(efd[i]);
    return err;
}

static int shm_connect(const struct migr_url *u, const char *url, const struct migr_link_cfg *cfg,
                       struct migr_transport **out)
{
    struct shm_hello h = { .magic = SHM_MAGIC, .version = SHM_VERSION, .ring_bytes = u->ring_bytes };
    struct migr_url uu = *u;
    struct migr_auth a;
    uint64_t dummy = 0;
    int fds[5], sock, err;

    if (cfg->encrypt)
        return migr_errorf(EINVAL, "connect %s: encryption is for unix: and tcp: streams (shm: rings stay in "
                           "memory shared with the peer alone)", url);
    uu.kind = MIGR_URL_UNIX;
    sock = migr_unix_backend.connect(&uu, url);
    if (sock < 0)
        return sock;
    if (cfg->key) {
        err = migr_auth_client(sock, url, cfg->key, 0, migr_now_ns() + (uint64_t)(cfg->handshake_ms > 0 ?
                               cfg->handshake_ms : 10000) * 1000000ull, &a);
        migr_auth_wipe(&a);
        if (err < 0) {
            close(sock);
            return err;
        }
    }
    err = migr_write_full(sock, &h, sizeof(h));
    if (err < 0) {
        close(sock);
        return migr_errorf_errno(-err, "connect %s: hello", url);
    }
    /* The reply: the chosen ring size, then the memory and the eventfds. */
    err = migr_read_deadline(sock, &h, sizeof(h), migr_now_ns() + 10000000000ull);
    if (err < 0) {
        close(sock);
        return err == -EPIPE ? migr_errorf(EPROTO, "connect %s: the listener closed during the handshake "
                                           "(is it a shm: listener?)", url)
                             : migr_errorf_errno(-err, "connect %s: waiting for the ring", url);
    }
    if (memcmp(h.magic, SHM_MAGIC, 8) || h.version != SHM_VERSION || h.ring_bytes < 4096 ||
        (h.ring_bytes & (h.ring_bytes - 1)) || h.ring_bytes > (1u << 30)) {
        close(sock);
        return migr_errorf(EPROTO, "connect %s: bad handshake reply", url);
    }
    err = migr_fd_recv_fds(sock, url, &dummy, fds, 5);
    if (err < 0) {
        close(sock);
        return migr_error_prefix(-err, "connect %s", url);
    }
    struct stat st;
    if (fstat(fds[0], &st) < 0 || (uint64_t)st.st_size < SHM_CTL_BYTES + 2 * h.ring_bytes) {
        for (int i = 0; i < 5; i++)
            close(fds[i]);
        close(sock);
        return migr_errorf(EPROTO, "connect %s: the ring memory is smaller than announced", url);
    }
    err = shm_build(sock, fds[0], fds + 1, h.ring_bytes, 0, url, out);
    if (!err && cfg->key)
        (*out)->link = MIGR_LINK_AUTH;
    return err;
}

static size_t shm_hello_len(const struct migr_listener *l)
{
    (void)l;
    return sizeof(struct shm_hello);
}

static int shm_wrap(struct migr_listener *l, int fd, const char *peer, const uint8_t *hello,
                    const struct migr_auth *a, struct migr_transport **out)
{
    struct shm_hello h;
    uint64_t ring, dummy = 0;
    int memfd = -1, efd[4] = { -1, -1, -1, -1 }, err;
    char name[160];

    snprintf(name, sizeof(name), "%.150s", l->bound);
    memcpy(&h, hello, sizeof(h));
    if (memcmp(h.magic, SHM_MAGIC, 8) || h.version != SHM_VERSION) {
        close(fd);
        return migr_errorf(EPROTO, "accept on %s: the peer is not a shm: client (bad hello)", name);
    }
    ring = l->url.ring_bytes ? l->url.ring_bytes : MIGR_SHM_RING_DEFAULT;
    if (h.ring_bytes > ring && h.ring_bytes <= (1u << 30) && !(h.ring_bytes & (h.ring_bytes - 1)))
        ring = h.ring_bytes;   /* the larger wish wins */

    memfd = memfd_create("migr-shm", MFD_CLOEXEC);
    if (memfd < 0) {
        err = migr_errorf_errno(errno, "accept on %s: memfd_create", name);
        goto fail;
    }
    if (ftruncate(memfd, (off_t)(SHM_CTL_BYTES + 2 * ring)) < 0) {
        err = migr_errorf_errno(errno, "accept on %s: sizing the ring memory (%llu bytes)", name,
                                (unsigned long long)(SHM_CTL_BYTES + 2 * ring));
        goto fail;
    }
    struct shm_ctl *ctl = mmap(NULL, SHM_CTL_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (ctl == MAP_FAILED) {
        err = migr_errorf_errno(errno, "accept on %s: mapping the ring header", name);
        goto fail;
    }
    memcpy(ctl->magic, SHM_MAGIC, 8);
    ctl->version = SHM_VERSION;
    ctl->ring_bytes = ring;
    munmap(ctl, SHM_CTL_BYTES);
    for (int i = 0; i < 4; i++) {
        efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd[i] < 0) {
            err = migr_errorf_errno(errno, "accept on %s: eventfd", name);
            goto fail;
        }
    }
    h.ring_bytes = ring;
    int fds[5] = { memfd, efd[0], efd[1], efd[2], efd[3] };
    if ((err = migr_write_full(fd, &h, sizeof(h))) < 0 ||
        (err = migr_fd_send_fds(fd, name, &dummy, fds, 5)) < 0) {
        err = migr_errorf_errno(-err, "accept on %s: handing over the ring", name);
        goto fail;
    }
    err = shm_build(fd, memfd, efd, ring, 1, peer, out);
    if (!err && a)
        (*out)->link = MIGR_LINK_AUTH;
    return err;

fail:
    close(fd);
    if (memfd >= 0)
        close(memfd);
    for (int i = 0; i < 4; i++)
        if (efd[i] >= 0)
            close(efd[i]);
    return err;
}

static int shm_listen(struct migr_listener *l, const char *url)
{
    int ret = migr_unix_backend.listen(l, url);

    if (ret == 0) {
        if (l->url.ring_bytes)
            snprintf(l->bound, sizeof(l->bound), "shm:%s?ring=%lluK", l->url.name,
                     (unsigned long long)(l->url.ring_bytes >> 10));
        else
            snprintf(l->bound, sizeof(l->bound), "shm:%s", l->url.name);
    }
    return ret;
}

static void shm_unlisten(struct migr_listener *l)
{
    migr_unix_backend.unlisten(l);
}

static int shm_accepted(struct migr_listener *l, int fd, char *peer, size_t cap)
{
    char what[340];

    snprintf(peer, cap, "%.150s", l->bound);
    /* @migr-shm-NAME is abstract: no file mode guards it, the peer's uid does. */
    snprintf(what, sizeof(what), "accept on %s", l->bound);
    return migr_unix_peer_check(fd, what);
}

const struct migr_transport_backend migr_shm_backend = {
    .kind = MIGR_URL_SHM,
    .ops = &shm_ops,
    .connect = NULL,
    .listen = shm_listen,
    .accepted = shm_accepted,
    .unlisten = shm_unlisten,
    .wrap = shm_wrap,
    .hello_len = shm_hello_len,
    .connect_t = shm_connect,
};
