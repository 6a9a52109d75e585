/* migr — TCP transport: tcp:HOST:PORT, tcp:[IPV6]:PORT (a listener also groups ?channels=N clients: mc.c). */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

static const struct migr_transport_ops tcp_ops = {
    .name = "tcp",
    .sendv = migr_sock_sendv,
    .recvv = migr_sock_recvv,
    .shutdown = migr_sock_shutdown,
    .close = migr_sock_close,
    .caps = MIGR_TCAP_SIDE | MIGR_TCAP_POLL_DATA,
    .origin = migr_sock_origin,
};

static int gai_errno(int rc)
{
    switch (rc) {
    case EAI_SYSTEM: return errno ? errno : EIO;
    case EAI_MEMORY: return ENOMEM;
    case EAI_AGAIN: return EAGAIN;
    case EAI_SERVICE: return EINVAL;
    default: return EHOSTUNREACH;
    }
}

static int resolve(const struct migr_url *u, const char *url, const char *what, int passive,
                   struct addrinfo **res)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
    };
    char port[8];
    int rc;

    snprintf(port, sizeof(port), "%u", u->port);
    rc = getaddrinfo(u->host, port, &hints, res);
    if (rc != 0)
        return migr_errorf(gai_errno(rc), "%s %s: cannot resolve '%s': %s", what, url, u->host,
                           rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    return 0;
}

static int set_nodelay(int fd)
{
    int one = 1;

    /* Records are written whole with one sendmsg; Nagle would only hold the
     * last segment of each back (READY/COMMIT round trips). */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        return -errno;
    return 0;
}

/* "tcp:1.2.3.4:5" or "tcp:[::1]:5" for a socket address. */
static void format_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];

    if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, cap, "tcp:?");
        return;
    }
    snprintf(out, cap, strchr(host, ':') ? "tcp:[%s]:%s" : "tcp:%s:%s", host, serv);
}

static int tcp_connect(const struct migr_url *u, const char *url)
{
    struct addrinfo *res, *ai;
    int fd = -1, err = EHOSTUNREACH, ret;

    if (u->port == 0)
        return migr_errorf(EINVAL, "connect %s: port 0 is only valid for listening", url);
    ret = resolve(u, url, "connect", 0, &res);
    if (ret < 0)
        return ret;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* Before connect: the window scale is fixed by the SYN. */
        migr_sock_set_bufs(fd, MIGR_SOCK_BUF_BYTES, 1);
        ret = migr_sock_connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (ret == 0)
            ret = set_nodelay(fd);
        if (ret == 0)
            break;
        err = -ret;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return migr_errorf_errno(err, "connect %s", url);
    return fd;
}

/* Append ?KEY=V (or &KEY=V after the first) to l->bound. */
static void bound_option(struct migr_listener *l, const char *fmt, unsigned v)
{
    size_t k = strlen(l->bound);
    int n = snprintf(l->bound + k, sizeof(l->bound) - k, "%c", strchr(l->bound, '?') ? '&' : '?');

    if (n > 0 && (size_t)n < sizeof(l->bound) - k)
        snprintf(l->bound + k + 1, sizeof(l->bound) - k - 1, fmt, v);
}

static int tcp_listen(struct migr_listener *l, const char *url)
{
    struct addrinfo *res, *ai;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = -1, err = EADDRNOTAVAIL, one = 1, ret;

    ret = resolve(&l->url, url, "listen", 1, &res);
    if (ret < 0)
        return ret;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* Accepted sockets inherit the buffer sizes from the listener. */
        migr_sock_set_bufs(fd, MIGR_SOCK_BUF_BYTES, 1);
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return migr_errorf_errno(err, "listen %s", url);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        ret = migr_errorf_errno(errno, "listen %s: getsockname", url);
        close(fd);
        return ret;
    }
    format_addr((struct sockaddr *)&ss, len, l->bound, sizeof(l->bound));
    /* Only what the user asked for: a client connecting to l->bound then
     * uses it too (channels: the sender's rule otherwise). */
    if (l->url.channels)
        bound_option(l, "channels=%u", l->url.channels);
    if (l->url.uring)
        bound_option(l, "uring=%u", 1u);
    l->fd = fd;
    return 0;
}

int migr_tcp_accepted_fd(int fd, char *peer, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int ret = set_nodelay(fd);

    if (ret < 0)
        return migr_errorf_errno(-ret, "TCP_NODELAY");
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
        return migr_errorf_errno(errno, "getpeername");
    format_addr((struct sockaddr *)&ss, len, peer, cap);
    return 0;
}

static int tcp_accepted(struct migr_listener *l, int fd, char *peer, size_t cap)
{
    int ret = migr_tcp_accepted_fd(fd, peer, cap);

    return ret < 0 ? migr_error_prefix(-ret, "accept on %s", l->bound) : 0;
}

static void tcp_unlisten(struct migr_listener *l)
{
    (void)l;   /* nothing but the fd, which the caller closes */
}

unsigned migr_tcp_rtt_us(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return 0;
    return ti.tcpi_rtt;
}

/* Any tcp listener takes a multi-channel group (its hello, optional:
 * hello_magic) as well as a plain stream (accept.c, HS_SNIFF). */
static size_t tcp_hello_len(const struct migr_listener *l)
{
    (void)l;
    return MIGR_MC_HELLO_LEN;
}

const struct migr_transport_backend migr_tcp_backend = {
    .kind = MIGR_URL_TCP,
    .ops = &tcp_ops,
    .connect = tcp_connect,
    .listen = tcp_listen,
    .accepted = tcp_accepted,
    .unlisten = tcp_unlisten,
    .wrap = migr_mc_wrap,   /* a connection that begins with the multi-channel hello */
    .hello_len = tcp_hello_len,
    .hello_magic = MIGR_MC_HELLO_MAGIC,
};
