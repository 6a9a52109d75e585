/* migr — ?uring=1: the unix/tcp stream's sendv/recvv through io_uring
 * (IORING_OP_SENDMSG / IORING_OP_RECVMSG on the caller's iovecs), with the
 * plain sendmsg/recvmsg path as the run-time fallback when the kernel will
 * not give us a ring. docs/transport.md, "io_uring and MSG_ZEROCOPY". */
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

/* One operation is in flight per direction at a time: a small queue. */
#define URING_DEPTH 4

enum { DIR_SEND = 0, DIR_RECV = 1 };

/* Two rings, one per direction: sendv and recvv may run at the same time in
 * two threads (post-copy), and a ring's submission and completion queues
 * are not safe to share between threads without a lock. */
struct uring_transport {
    struct migr_sock_transport s;   /* first member: the plain ops work on it too */
    struct io_uring ring[2];
};

static struct uring_transport *ut(struct migr_transport *t)
{
    return (struct uring_transport *)t;
}

/* Submit one prepared SQE and wait for its completion. The result (bytes
 * moved, or -errno from the operation), or -errno if the ring failed. */
static int ring_run(struct io_uring *r, int fd)
{
    struct io_uring_cqe *cqe;
    int ret, res;

    do
        ret = io_uring_submit(r);
    while (ret == -EINTR || ret == -EAGAIN);
    if (ret < 0)
        return ret;
    do
        ret = io_uring_wait_cqe(r, &cqe);
    while (ret == -EINTR || ret == -EAGAIN);
    if (ret < 0) {
        /* The operation may still be in flight and point at our msghdr:
         * end it (shut the socket) and wait for it before returning. */
        (void)shutdown(fd, SHUT_RDWR);
        do
            res = io_uring_wait_cqe(r, &cqe);
        while (res == -EINTR);
        if (res == 0)
            io_uring_cqe_seen(r, cqe);
        return ret;
    }
    res = cqe->res;
    io_uring_cqe_seen(r, cqe);
    return res;
}

/* Move all of iov in direction dir, resubmitting the rest after a short
 * transfer; the socket layer's MSG_WAITALL (io_uring retries it itself on
 * stream sockets) keeps short ones rare. 0 or -errno with a message. */
static int uring_xfer(struct migr_transport *t, int dir, const struct iovec *iov, int iovcnt)
{
    struct io_uring *r = &ut(t)->ring[dir];
    const char *verb = dir == DIR_SEND ? "send" : "recv";
    struct iovec win[MIGR_IOV_WINDOW];
    size_t off = 0, done = 0, total;
    int i = 0;

    if (iovcnt < 0)
        return migr_errorf(EINVAL, "%s %s: negative iovec count %d", verb, t->peer, iovcnt);
    total = migr_iov_total(iov, iovcnt);
    for (;;) {
        struct msghdr mh = { .msg_iov = win };
        struct io_uring_sqe *sqe;
        int res;

        mh.msg_iovlen = (size_t)migr_iov_window(win, iov, iovcnt, i, off);
        if (mh.msg_iovlen == 0)
            return 0;
        sqe = io_uring_get_sqe(r);
        if (!sqe)   /* cannot happen: nothing else is queued on this ring */
            return migr_errorf(EBUSY, "%s %s: io_uring submission queue full", verb, t->peer);
        if (dir == DIR_SEND)
            io_uring_prep_sendmsg(sqe, t->fd, &mh, MSG_NOSIGNAL | MSG_WAITALL);
        else
            io_uring_prep_recvmsg(sqe, t->fd, &mh, MSG_WAITALL);
        res = ring_run(r, t->fd);
        if (res == -EINTR || res == -EAGAIN)
            continue;
        if (res < 0) {
            migr_errorf_errno(-res, "%s %s (io_uring; %zu of %zu bytes %s)", verb, t->peer, done, total,
                              dir == DIR_SEND ? "sent" : "received");
            return res == -ECONNRESET ? -EPIPE : res;
        }
        if (res == 0 && dir == DIR_RECV)
            return migr_errorf(EPIPE, "recv %s: peer closed the connection (%zu of %zu bytes received)",
                               t->peer, done, total);
        if (dir == DIR_SEND)
            t->bytes_sent += (uint64_t)res;
        else
            t->bytes_recv += (uint64_t)res;
        done += (size_t)res;
        migr_iov_advance(iov, &i, &off, (size_t)res);
    }
}

static int uring_sendv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    return uring_xfer(t, DIR_SEND, iov, iovcnt);
}

static int uring_recvv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    return uring_xfer(t, DIR_RECV, iov, iovcnt);
}

static void uring_close(struct migr_transport *t)
{
    io_uring_queue_exit(&ut(t)->ring[DIR_SEND]);
    io_uring_queue_exit(&ut(t)->ring[DIR_RECV]);
    migr_sock_close(t);   /* closes the socket, frees the whole struct */
}

/* The plain transports' capabilities: descriptor passing and side
 * connections work on the socket in t->fd. */
static const struct migr_transport_ops uring_unix_ops = {
    .name = "unix",
    .sendv = uring_sendv,
    .recvv = uring_recvv,
    .shutdown = migr_sock_shutdown,
    .close = uring_close,
    .caps = MIGR_TCAP_PASS_FDS | MIGR_TCAP_SIDE,
};

static const struct migr_transport_ops uring_tcp_ops = {
    .name = "tcp",
    .sendv = uring_sendv,
    .recvv = uring_recvv,
    .shutdown = migr_sock_shutdown,
    .close = uring_close,
    .caps = MIGR_TCAP_SIDE,
    .origin = migr_sock_origin,
};

/* Both rings or none. 0, or -errno and why in note. */
static int rings_init(struct uring_transport *u, char *note, size_t cap)
{
    int ret = io_uring_queue_init(URING_DEPTH, &u->ring[DIR_SEND], 0);
    if (ret == 0) {
        ret = io_uring_queue_init(URING_DEPTH, &u->ring[DIR_RECV], 0);
        if (ret < 0)
            io_uring_queue_exit(&u->ring[DIR_SEND]);
    }
    if (ret < 0)
        snprintf(note, cap, "io_uring_queue_init: %s%s", strerror(-ret),
                 ret == -EPERM ? ", kernel.io_uring_disabled or seccomp?" : "");
    return ret;
}

int migr_uring_transport_new(int fd, const char *kind, const char *peer, struct migr_transport **out)
{
    int tcp = kind && !strcmp(kind, "tcp");
    struct uring_transport *u = calloc(1, sizeof(*u));
    char why[96];

    if (!u)
        return migr_errorf(ENOMEM, "%s: out of memory for the transport", peer);
    if (rings_init(u, why, sizeof(why)) == 0) {
        migr_transport_init(&u->s.pub, fd, tcp ? &uring_tcp_ops : &uring_unix_ops, peer);
        u->s.pub.uring = 1;
        snprintf(u->s.pub.uring_note, sizeof(u->s.pub.uring_note),
                 "io_uring: IORING_OP_SENDMSG/RECVMSG, a ring of %d per direction", URING_DEPTH);
    } else {
        /* The plain backend's ops; its close frees the struct from its
         * first member, which is the whole allocation. */
        migr_transport_init(&u->s.pub, fd, tcp ? migr_tcp_backend.ops : migr_unix_backend.ops, peer);
        u->s.pub.uring = 0;
        snprintf(u->s.pub.uring_note, sizeof(u->s.pub.uring_note),
                 "io_uring unavailable (%s): plain sendmsg/recvmsg", why);
    }
    *out = &u->s.pub;
    return 0;
}
