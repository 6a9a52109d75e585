/* migr — transport front end (URL dispatch, listener, accept) and the socket
 * stream operations shared by the unix and tcp backends. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

#define IOV_WINDOW MIGR_IOV_WINDOW

static const struct migr_transport_backend *backend_for(enum migr_url_kind kind)
{
    switch (kind) {
    case MIGR_URL_UNIX: return &migr_unix_backend;
    case MIGR_URL_TCP: return &migr_tcp_backend;
    case MIGR_URL_SHM: return &migr_shm_backend;
    }
    return NULL;
}

/* Wait until fd is ready for events; EINTR restarts the wait. 0 or -errno. */
static int wait_fd(int fd, short events)
{
    struct pollfd pfd = { .fd = fd, .events = events };

    for (;;) {
        int n = poll(&pfd, 1, -1);

        if (n >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* Copy up to IOV_WINDOW non-empty iovecs starting at iov[i] + off into win. */
int migr_iov_window(struct iovec *win, const struct iovec *iov, int iovcnt, int i, size_t off)
{
    int n = 0;

    for (; i < iovcnt && n < IOV_WINDOW; i++, off = 0) {
        if (iov[i].iov_len <= off)
            continue;
        win[n].iov_base = (char *)iov[i].iov_base + off;
        win[n].iov_len = iov[i].iov_len - off;
        n++;
    }
    return n;
}

/* Move the position (*i, *off) forward by done bytes. */
void migr_iov_advance(const struct iovec *iov, int *i, size_t *off, size_t done)
{
    while (done) {
        size_t avail = iov[*i].iov_len - *off;

        if (done < avail) {
            *off += done;
            return;
        }
        done -= avail;
        (*i)++;
        *off = 0;
    }
}

size_t migr_iov_total(const struct iovec *iov, int iovcnt)
{
    size_t total = 0;

    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    return total;
}

int migr_fd_sendv(int fd, const char *what, const struct iovec *iov, int iovcnt, uint64_t *bytes)
{
    struct iovec win[IOV_WINDOW];
    size_t off = 0;
    int i = 0;

    if (iovcnt < 0)
        return migr_errorf(EINVAL, "send %s: negative iovec count %d", what, iovcnt);
    for (;;) {
        struct msghdr mh = { .msg_iov = win };
        ssize_t n;

        mh.msg_iovlen = (size_t)migr_iov_window(win, iov, iovcnt, i, off);
        if (mh.msg_iovlen == 0)
            return 0;
        n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            int e = errno;

            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                /* Only if someone made the fd non-blocking: wait it out. */
                e = -wait_fd(fd, POLLOUT);
                if (!e)
                    continue;
            }
            migr_errorf_errno(e, "send %s", what);
            return e == ECONNRESET ? -EPIPE : -e;
        }
        if (bytes)
            *bytes += (uint64_t)n;
        migr_iov_advance(iov, &i, &off, (size_t)n);
    }
}

int migr_fd_recvv(int fd, const char *what, const struct iovec *iov, int iovcnt, uint64_t *bytes)
{
    struct iovec win[IOV_WINDOW];
    size_t off = 0, got = 0, total;
    int i = 0;

    if (iovcnt < 0)
        return migr_errorf(EINVAL, "recv %s: negative iovec count %d", what, iovcnt);
    total = migr_iov_total(iov, iovcnt);
    for (;;) {
        struct msghdr mh = { .msg_iov = win };
        ssize_t n;

        mh.msg_iovlen = (size_t)migr_iov_window(win, iov, iovcnt, i, off);
        if (mh.msg_iovlen == 0)
            return 0;
        n = recvmsg(fd, &mh, MSG_WAITALL);
        if (n < 0) {
            int e = errno;

            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                e = -wait_fd(fd, POLLIN);
                if (!e)
                    continue;
            }
            migr_errorf_errno(e, "recv %s (%zu of %zu bytes received)", what, got, total);
            return e == ECONNRESET ? -EPIPE : -e;
        }
        if (n == 0)
            return migr_errorf(EPIPE, "recv %s: peer closed the connection (%zu of %zu bytes received)",
                               what, got, total);
        if (bytes)
            *bytes += (uint64_t)n;
        got += (size_t)n;
        migr_iov_advance(iov, &i, &off, (size_t)n);
    }
}

int migr_sock_sendv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    return migr_fd_sendv(t->fd, t->peer, iov, iovcnt, &t->bytes_sent);
}

int migr_sock_recvv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    return migr_fd_recvv(t->fd, t->peer, iov, iovcnt, &t->bytes_recv);
}

int migr_read_deadline(int fd, void *buf, size_t len, uint64_t deadline_ns)
{
    size_t got = 0;

    while (got < len) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int wait = -1, n;
        ssize_t r;

        if (deadline_ns) {
            uint64_t now = migr_now_ns();

            if (now >= deadline_ns)
                return -ETIMEDOUT;
            wait = (int)((deadline_ns - now + 999999) / 1000000);
        }
        n = poll(&pfd, 1, wait);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            continue;   /* the deadline check above ends the loop */
        r = recv(fd, (char *)buf + got, len - got, MSG_DONTWAIT);
        if (r == 0)
            return -EPIPE;
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return errno == ECONNRESET ? -EPIPE : -errno;
        }
        got += (size_t)r;
    }
    return 0;
}

void migr_sock_shutdown(struct migr_transport *t)
{
    /* Fails only if not connected, and then there is nothing to wake. */
    (void)shutdown(t->fd, SHUT_RDWR);
}

void migr_sock_close(struct migr_transport *t)
{
    migr_side_origin_free(((struct migr_sock_transport *)t)->origin);
    if (t->fd >= 0)
        close(t->fd);
    free(t);
}

struct migr_side_origin **migr_sock_origin(struct migr_transport *t)
{
    return &((struct migr_sock_transport *)t)->origin;
}

int migr_sock_connect(int fd, const void *addr, socklen_t len)
{
    int err;
    socklen_t elen = sizeof(err);

    if (connect(fd, addr, len) == 0)
        return 0;
    if (errno != EINTR && errno != EINPROGRESS)
        return -errno;
    /* Interrupted: the connection attempt goes on in the background; wait
     * for it and collect its result (connect(2), EINTR). */
    err = wait_fd(fd, POLLOUT);
    if (err < 0)
        return err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
        return -errno;
    return -err;
}

static long read_sysctl(const char *path)
{
    char buf[32];
    long v = -1;
    FILE *f = fopen(path, "re");

    if (!f)
        return -1;
    if (fgets(buf, sizeof(buf), f))
        v = strtol(buf, NULL, 10);
    fclose(f);
    return v;
}

void migr_sock_set_bufs(int fd, int bytes, int keep_autotune)
{
    /* Failures are ignored on purpose: the kernel's default buffers work,
     * only slower. */
    if (!keep_autotune || read_sysctl("/proc/sys/net/core/wmem_max") >= bytes)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    if (!keep_autotune || read_sysctl("/proc/sys/net/core/rmem_max") >= bytes)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

void migr_transport_init(struct migr_transport *t, int fd, const struct migr_transport_ops *ops,
                         const char *peer)
{
    t->ops = ops;
    t->fd = fd;
    snprintf(t->peer, sizeof(t->peer), "%s", peer);
}

static int transport_new(int fd, const struct migr_transport_ops *ops, const char *peer,
                         struct migr_transport **out)
{
    struct migr_sock_transport *t = calloc(1, sizeof(*t));

    if (!t)
        return migr_errorf(ENOMEM, "%s: out of memory for the transport", peer);
    migr_transport_init(&t->pub, fd, ops, peer);
    *out = &t->pub;
    return 0;
}

/* ---- link options: the process default and one connection's copy ---- */

static pthread_mutex_t def_lock = PTHREAD_MUTEX_INITIALIZER;
static struct migr_link_cfg def_cfg;

static int cfg_from(struct migr_link_cfg *cfg, const struct migr_link_opts *o)
{
    memset(cfg, 0, sizeof(*cfg));
    if (!o)
        return 0;
    if (o->key && migr_key_dup(o->key, &cfg->key) < 0)
        return -ENOMEM;
    cfg->encrypt = o->encrypt;
    cfg->handshake_ms = o->handshake_ms;
    cfg->keep_listening = o->keep_listening;
    cfg->expect_stream = o->expect_stream;
    cfg->on_reject = o->on_reject;
    cfg->on_reject_arg = o->on_reject_arg;
    return 0;
}

int migr_link_cfg_copy(struct migr_link_cfg *dst, const struct migr_link_cfg *src)
{
    *dst = *src;
    dst->key = NULL;
    return src->key ? migr_key_dup(src->key, &dst->key) : 0;
}

void migr_link_cfg_free(struct migr_link_cfg *cfg)
{
    migr_key_free(cfg->key);
    memset(cfg, 0, sizeof(*cfg));
}

int migr_link_cfg_get(struct migr_link_cfg *cfg, const struct migr_link_opts *o, enum migr_url_kind kind)
{
    int err = 0;

    if (o || kind != MIGR_URL_TCP)
        return cfg_from(cfg, o);
    pthread_mutex_lock(&def_lock);
    *cfg = def_cfg;
    cfg->key = NULL;
    if (def_cfg.key && migr_key_dup(def_cfg.key, &cfg->key) < 0)
        err = -ENOMEM;
    pthread_mutex_unlock(&def_lock);
    return err;
}

int migr_link_set_default(const struct migr_link_opts *o)
{
    struct migr_link_cfg c, old;
    int err = cfg_from(&c, o);

    if (err < 0) {
        migr_link_cfg_free(&c);
        return err;
    }
    pthread_mutex_lock(&def_lock);
    old = def_cfg;
    def_cfg = c;
    pthread_mutex_unlock(&def_lock);
    migr_link_cfg_free(&old);
    return 0;
}

int migr_plain_transport_new(int fd, const struct migr_transport_backend *be, const struct migr_url *u,
                             const char *peer, struct migr_transport **out)
{
    return u->uring ? migr_uring_transport_new(fd, be->ops->name, peer, out) : transport_new(fd, be->ops, peer, out);
}

static uint64_t connect_deadline(const struct migr_link_cfg *cfg)
{
    return migr_now_ns() + (uint64_t)(cfg->handshake_ms > 0 ? cfg->handshake_ms : 10000) * 1000000ull;
}

int migr_transport_connect_opts(const char *url, const struct migr_link_opts *o, struct migr_transport **out)
{
    const struct migr_transport_backend *be;
    struct migr_link_cfg cfg;
    struct migr_auth a;
    struct migr_url u;
    int fd, ret;

    ret = migr_url_parse(url, &u);
    if (ret < 0)
        return migr_error_prefix(-ret, "connect");
    if ((ret = migr_link_cfg_get(&cfg, o, u.kind)) < 0)
        return migr_errorf(-ret, "connect %s: out of memory", url);
    cfg.encrypt |= (int)u.encrypt;
    if (cfg.encrypt && !cfg.key) {
        migr_link_cfg_free(&cfg);
        return migr_errorf(EINVAL, "connect %s: encryption needs a key (--key-file)", url);
    }
    be = backend_for(u.kind);
    if (u.kind == MIGR_URL_TCP)
        u.channels = migr_url_channels_for_peer(&u);   /* the sender decides; any tcp listener takes both */
    if (u.kind == MIGR_URL_TCP && u.channels > 1)
        ret = migr_mc_connect(&u, url, &cfg, out);
    else if (be->connect_t)
        ret = be->connect_t(&u, url, &cfg, out);
    else if ((fd = be->connect(&u, url)) < 0)
        ret = fd;
    else if (cfg.key && (ret = migr_auth_client(fd, url, cfg.key, cfg.encrypt, connect_deadline(&cfg), &a)) < 0)
        close(fd);
    else if ((ret = migr_plain_transport_new(fd, be, &u, url, out)) < 0)
        close(fd);
    else if (cfg.key)
        ret = migr_link_finish(out, &a, 1);
    /* A side connection (migr_transport_side_offer) goes the same way. */
    if (ret == 0 && (ret = migr_side_origin_client(*out, &u, &cfg)) < 0) {
        migr_transport_close(*out);
        *out = NULL;
    }
    if (cfg.key)
        migr_auth_wipe(&a);
    migr_link_cfg_free(&cfg);
    return ret;
}

int migr_transport_connect(const char *url, struct migr_transport **out)
{
    return migr_transport_connect_opts(url, NULL, out);
}

int migr_transport_from_fd(int fd, const char *kind, const char *peer, struct migr_transport **out)
{
    const struct migr_transport_ops *ops;
    char name[32];

    if (fd < 0)
        return migr_errorf(EBADF, "transport from fd %d: invalid descriptor", fd);
    if (!kind || !strcmp(kind, "unix"))
        ops = migr_unix_backend.ops;
    else if (!strcmp(kind, "tcp"))
        ops = migr_tcp_backend.ops;
    else
        return migr_errorf(EINVAL, "transport from fd %d: unknown kind '%s' (expected unix or tcp)",
                           fd, kind);
    if (!peer) {
        snprintf(name, sizeof(name), "fd:%d", fd);
        peer = name;
    }
    return transport_new(fd, ops, peer, out);
}

/* tcp: 1 if every address host resolves to is loopback (127.0.0.0/8, ::1,
 * ::ffff:127.x), 0 if one is not, -errno if it does not resolve. */
static int loopback_only(const char *host)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res, *ai;
    int ret = 1, e = getaddrinfo(host, NULL, &hints, &res);

    if (e)
        return migr_errorf(EINVAL, "cannot resolve '%s': %s", host, gai_strerror(e));
    for (ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            const struct sockaddr_in *a = (const void *)ai->ai_addr;

            if ((ntohl(a->sin_addr.s_addr) >> 24) != 127)
                ret = 0;
        } else if (ai->ai_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const void *)ai->ai_addr;
            const uint8_t *b = a->sin6_addr.s6_addr;

            if (!IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) && !(IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && b[12] == 127))
                ret = 0;
        } else {
            ret = 0;
        }
    }
    freeaddrinfo(res);
    return ret;
}

int migr_listener_open_opts(const char *url, const struct migr_link_opts *o, struct migr_listener **out)
{
    struct migr_listener_impl *li;
    int ret, fl;

    li = calloc(1, sizeof(*li));
    if (!li)
        return migr_errorf(ENOMEM, "listen %s: out of memory", url ? url : "(null)");
    li->pub.fd = -1;
    ret = migr_url_parse(url, &li->pub.url);
    if (ret < 0) {
        free(li);
        return migr_error_prefix(-ret, "listen");
    }
    if ((ret = migr_link_cfg_get(&li->cfg, o, li->pub.url.kind)) < 0) {
        free(li);
        return migr_errorf(-ret, "listen %s: out of memory", url);
    }
    li->cfg.encrypt |= (int)li->pub.url.encrypt;
    if (li->cfg.encrypt && !li->cfg.key) {
        ret = migr_errorf(EINVAL, "listen %s: encryption needs a key (--key-file)", url);
        goto fail;
    }
    if (li->pub.url.kind == MIGR_URL_TCP && !li->cfg.key) {
        ret = loopback_only(li->pub.url.host);
        if (ret == 0)
            ret = migr_errorf(EACCES, "listen %s: a TCP listener on an address other than loopback would let anyone "
                              "who can reach the port stream a guest in: give a key (--key-file)", url);
        if (ret < 0) {
            if (ret != -EACCES)
                migr_error_prefix(-ret, "listen %s", url);
            goto fail;
        }
    }
    li->be = backend_for(li->pub.url.kind);
    ret = li->be->listen(&li->pub, url);
    if (ret < 0)
        goto fail;
    if (li->pub.url.encrypt) {   /* the URL to connect to says it too */
        size_t k = strlen(li->pub.bound);

        snprintf(li->pub.bound + k, sizeof(li->pub.bound) - k, "%sencrypt=1", strchr(li->pub.bound, '?') ? "&" : "?");
    }
    li->pid = getpid();
    /* Non-blocking, so that accept() after poll() cannot hang when the
     * client gave up in between (or another thread took the connection:
     * side.c). Accepted sockets do not inherit it. */
    fl = fcntl(li->pub.fd, F_GETFL);
    if (fl < 0 || fcntl(li->pub.fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        ret = migr_errorf_errno(errno, "listen %s: fcntl O_NONBLOCK", url);
        migr_listener_close(&li->pub);
        return ret;
    }
    if (li->pub.url.kind == MIGR_URL_TCP && (ret = migr_side_hub_new(&li->pub, &li->cfg, &li->hub)) < 0) {
        migr_listener_close(&li->pub);
        return ret;
    }
    *out = &li->pub;
    return 0;
fail:
    migr_link_cfg_free(&li->cfg);
    free(li);
    return ret;
}

int migr_listener_open(const char *url, struct migr_listener **out)
{
    return migr_listener_open_opts(url, NULL, out);
}

void migr_listener_close(struct migr_listener *l)
{
    struct migr_listener_impl *li;

    if (!l)
        return;
    li = listener_impl(l);
    if (li->pid != getpid()) {
        /* A forked child: its copies of the descriptors only. No unlink,
         * no shutdown, no lock (another thread of the parent may have held
         * one at the fork): the parent's listener goes on as it was. */
        for (int i = 0; i < MIGR_HS_MAX; i++)
            if (li->hs[i].st != MIGR_HS_FREE && li->hs[i].fd >= 0)
                close(li->hs[i].fd);
        if (l->fd >= 0)
            close(l->fd);
        return;   /* the memory is the parent's copy; the child's ends with it */
    }
    /* Unlink before closing: while we still listen, a successor probing the
     * path finds it alive and cannot have replaced it, so the file we unlink
     * is ours (closing first let a successor's fresh socket be unlinked). */
    li->be->unlisten(l);
    migr_mc_listener_free(l);
    migr_hs_hand_to_hub(l);   /* nothing read from them yet: a side connection among them still gets in */
    migr_hs_free(l);
    if (li->hub)
        migr_side_hub_close(li->hub);   /* the socket lives on while accepted transports need it */
    else if (l->fd >= 0)
        close(l->fd);
    migr_link_cfg_free(&li->cfg);
    free(li);
}

int migr_transport_send(struct migr_transport *t, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return migr_transport_sendv(t, &iov, 1);
}

int migr_transport_recv(struct migr_transport *t, void *buf, size_t len)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };

    return migr_transport_recvv(t, &iov, 1);
}

void migr_transport_close(struct migr_transport *t)
{
    if (t)
        t->ops->close(t);
}

/* ---- descriptor passing (unix sockets) ---- */

int migr_transport_can_pass_fds(const struct migr_transport *t)
{
    return (t->ops->caps & MIGR_TCAP_PASS_FDS) != 0;
}

int migr_transport_send_fds(struct migr_transport *t, const int *fds, int n)
{
    if (!(t->ops->caps & MIGR_TCAP_PASS_FDS))
        return migr_errorf(ENOTSUP, "passing memory to %s needs a unix socket, not %s", t->peer, t->ops->name);
    if (t->ops->send_fds)
        return t->ops->send_fds(t, fds, n);
    return migr_fd_send_fds(t->fd, t->peer, &t->bytes_sent, fds, n);
}

int migr_transport_recv_fds(struct migr_transport *t, int *fds, int n)
{
    if (!(t->ops->caps & MIGR_TCAP_PASS_FDS))
        return migr_errorf(ENOTSUP, "receiving memory from %s needs a unix socket, not %s", t->peer, t->ops->name);
    if (t->ops->recv_fds)
        return t->ops->recv_fds(t, fds, n);
    return migr_fd_recv_fds(t->fd, t->peer, &t->bytes_recv, fds, n);
}

int migr_fd_send_fds(int fd, const char *peer, uint64_t *bytes, const int *fds, int n)
{
    if (n < 1 || n > 64)
        return migr_errorf(EINVAL, "send_fds: %d descriptors (1..64)", n);
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(64 * sizeof(int))];
    } c;
    memset(&c, 0, sizeof(c));
    char byte = 'F';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
                       .msg_controllen = CMSG_SPACE((size_t)n * sizeof(int))};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
    memcpy(CMSG_DATA(h), fds, (size_t)n * sizeof(int));
    for (;;) {
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w == 1) {
            (*bytes)++;
            return 0;
        }
        if (w < 0 && errno == EINTR)
            continue;
        return migr_errorf_errno(w < 0 ? (errno == ECONNRESET ? EPIPE : errno) : EIO,
                                 "send %d descriptors to %s", n, peer);
    }
}

int migr_fd_recv_fds(int fd, const char *peer, uint64_t *bytes, int *fds, int n)
{
    if (n < 1 || n > 64)
        return migr_errorf(EINVAL, "recv_fds: %d descriptors (1..64)", n);
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(64 * sizeof(int))];
    } c;
    char byte = 0;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf)};
    ssize_t r;
    do
        r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return migr_errorf(EPIPE, "%s closed the stream before passing memory", peer);
    if (r < 0)
        return migr_errorf_errno(errno, "receive descriptors from %s", peer);
    (*bytes)++;
    int got = 0, total = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        int k = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k; i++, total++) {
            int rfd;
            memcpy(&rfd, CMSG_DATA(h) + (size_t)i * sizeof(int), sizeof(int));
            if (got < n)
                fds[got++] = rfd;
            else
                close(rfd);
        }
    }
    if (byte != 'F' || total != n || (m.msg_flags & MSG_CTRUNC)) {
        for (int i = 0; i < got; i++)
            close(fds[i]);
        return migr_errorf(EBADMSG, "expected %d memory descriptors from %s, got %d%s", n, peer, total,
                           byte != 'F' ? " (no descriptor message)" : "");
    }
    return 0;
}

/* ---- the common send/receive path: rate limiter and accounting ---- */

int migr_transport_set_rate(struct migr_transport *t, uint64_t bytes_per_s)
{
    __atomic_store_n(&t->rate_bps, bytes_per_s, __ATOMIC_RELAXED);
    return 0;
}

/* Token bucket: refill at rate, hold at most one burst, then take len (the
 * balance may go negative) and sleep the debt off. */
static void rate_take(struct migr_transport *t, uint64_t rate, uint64_t burst, size_t len)
{
    uint64_t now = migr_now_ns();

    if (t->rate_last_ns == 0) {
        t->rate_last_ns = now;
        t->rate_tokens = (int64_t)burst;
    }
    t->rate_tokens += (int64_t)((double)(now - t->rate_last_ns) * (double)rate / 1e9);
    if (t->rate_tokens > (int64_t)burst)
        t->rate_tokens = (int64_t)burst;
    t->rate_last_ns = now;
    t->rate_tokens -= (int64_t)len;
    if (t->rate_tokens < 0) {
        uint64_t ns = (uint64_t)((double)-t->rate_tokens * 1e9 / (double)rate);
        struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        /* The sleep refilled the debt; count from its end. Measured, not
         * ns: an oversleep is waiting too, not CPU time. */
        t->rate_last_ns = migr_now_ns();
        t->rate_wait_ns += t->rate_last_ns - now;
        t->rate_tokens = 0;
    }
}

static int send_limited(struct migr_transport *t, const struct iovec *iov, int n, uint64_t rate)
{
    uint64_t burst = MIGR_MAX(rate / 50, 64u << 10);
    struct iovec win[IOV_WINDOW];
    size_t off = 0;
    int i = 0;

    for (;;) {
        int k = 0;
        size_t len = 0;

        /* The next at most burst bytes, at most IOV_WINDOW pieces. */
        for (int j = i; j < n && k < IOV_WINDOW && len < burst; j++) {
            size_t o = j == i ? off : 0, l = iov[j].iov_len - o;

            if (iov[j].iov_len <= o)
                continue;
            l = MIGR_MIN(l, burst - len);
            win[k].iov_base = (char *)iov[j].iov_base + o;
            win[k++].iov_len = l;
            len += l;
        }
        if (k == 0)
            return 0;
        if (rate)
            rate_take(t, rate, burst, len);
        int ret = t->ops->sendv(t, win, k);
        if (ret < 0)
            return ret;
        migr_iov_advance(iov, &i, &off, len);
        /* The rate may change (or be lifted) between bursts. */
        rate = __atomic_load_n(&t->rate_bps, __ATOMIC_RELAXED);
        burst = rate ? MIGR_MAX(rate / 50, 64u << 10) : SIZE_MAX;
    }
}

/* CPU time of the calling thread, or for a backend that accounts its
 * sleeps, wall time minus them (a vDSO clock read instead of a system call:
 * the shm ring makes none on its fast path). */
static uint64_t cpu_mark_ns(const struct migr_transport *t, const uint64_t *waits)
{
    if (t->ops->cpu_from_wall)
        return migr_now_ns() - __atomic_load_n(waits, __ATOMIC_RELAXED) - t->rate_wait_ns;
    return migr_thread_cpu_ns();
}

int migr_transport_sendv(struct migr_transport *t, const struct iovec *iov, int n)
{
    uint64_t c0 = cpu_mark_ns(t, &t->send_wait_ns), rate = __atomic_load_n(&t->rate_bps, __ATOMIC_RELAXED);
    int ret;

    if (n < 0)
        return migr_errorf(EINVAL, "send %s: negative iovec count %d", t->peer, n);
    ret = rate ? send_limited(t, iov, n, rate) : t->ops->sendv(t, iov, n);
    __atomic_fetch_add(&t->send_cpu_ns, cpu_mark_ns(t, &t->send_wait_ns) - c0, __ATOMIC_RELAXED);
    t->send_calls++;
    return ret;
}

int migr_transport_recvv(struct migr_transport *t, const struct iovec *iov, int n)
{
    /* rate_wait_ns only moves in sendv (another thread): read it the same
     * way at both ends; a change in between would skew one receive, so the
     * receive side leaves it out. */
    uint64_t c0, c1;
    int ret;

    if (t->ops->cpu_from_wall) {
        c0 = migr_now_ns() - __atomic_load_n(&t->recv_wait_ns, __ATOMIC_RELAXED);
        ret = t->ops->recvv(t, iov, n);
        c1 = migr_now_ns() - __atomic_load_n(&t->recv_wait_ns, __ATOMIC_RELAXED);
    } else {
        c0 = migr_thread_cpu_ns();
        ret = t->ops->recvv(t, iov, n);
        c1 = migr_thread_cpu_ns();
    }
    __atomic_fetch_add(&t->recv_cpu_ns, c1 - c0, __ATOMIC_RELAXED);
    t->recv_calls++;
    return ret;
}

long long migr_transport_outq(struct migr_transport *t)
{
    int q = 0;

    if (t->ops->outq)
        return t->ops->outq(t);
    if (ioctl(t->fd, SIOCOUTQ, &q) < 0)
        return migr_errorf_errno(errno, "%s: SIOCOUTQ", t->peer);
    return q;
}

int migr_transport_channel_fd(const struct migr_transport *t, int i)
{
    return migr_mc_channel_fd(t, i);
}
