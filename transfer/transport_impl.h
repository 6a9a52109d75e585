/* migr — transport internals shared by transport.c, unix.c and tcp.c.
 * Not installed; the public interface is migr/transport.h. */
#ifndef MIGR_TRANSPORT_IMPL_H
#define MIGR_TRANSPORT_IMPL_H

#include <stdint.h>
#include <sys/types.h>
#include "migr/transport.h"

/* A listener as allocated by migr_listener_open(); backends reach their
 * extra fields from the public pointer with listener_impl(). */
struct migr_listener_impl {
    struct migr_listener pub;   /* first member */
    const struct migr_transport_backend *be;
    int owns_path;              /* unix: we created the socket file ... */
    dev_t dev;                  /* ... with this identity, so close unlinks */
    ino_t ino;                  /*     only our file, not a successor's */
    void *mc_pending;           /* tcp ?channels: sessions still being assembled */
};

static inline struct migr_listener_impl *listener_impl(struct migr_listener *l)
{
    return (struct migr_listener_impl *)l;
}

/* One backend per URL kind. */
struct migr_transport_backend {
    enum migr_url_kind kind;
    const struct migr_transport_ops *ops;
    /*! Connect; return a connected stream socket fd or -errno (message set,
     *  naming the URL text). */
    int (*connect)(const struct migr_url *u, const char *url);
    /*! Bind and listen on l->url; set l->fd and l->bound. 0 or -errno. */
    int (*listen)(struct migr_listener *l, const char *url);
    /*! Set up a socket just accepted on l (socket options) and write its peer
     *  name into peer (cap bytes). 0 or -errno. */
    int (*accepted)(struct migr_listener *l, int fd, char *peer, size_t cap);
    /*! Undo what listen() created besides the fd (the unix socket file). */
    void (*unlisten)(struct migr_listener *l);
    /*! Optional: turn an accepted, set-up socket into a transport (shm
     *  handshake, multi-channel grouping). Owns fd from the call on. 0 with
     *  *out set, -EAGAIN when fd joined a session that is not complete yet
     *  (keep accepting), or -errno with a message. NULL = plain stream. */
    int (*wrap)(struct migr_listener *l, int fd, const char *peer, uint64_t deadline_ns,
                struct migr_transport **out);
    /*! Optional: connect and build the transport (shm:, tcp ?channels). */
    int (*connect_t)(const struct migr_url *u, const char *url, struct migr_transport **out);
};

extern const struct migr_transport_backend migr_unix_backend;
extern const struct migr_transport_backend migr_tcp_backend;
extern const struct migr_transport_backend migr_shm_backend;

/* Fill the public part of a transport the backend allocated (first member). */
void migr_transport_init(struct migr_transport *t, int fd, const struct migr_transport_ops *ops,
                         const char *peer);

/* Stream I/O on one descriptor: every byte of iov (sendmsg MSG_NOSIGNAL /
 * recvmsg MSG_WAITALL), retrying EINTR and partial transfers; a reset
 * connection is -EPIPE like an orderly close. what names the stream in
 * messages; *bytes (if not NULL) grows by what moved. 0 or -errno. */
int migr_fd_sendv(int fd, const char *what, const struct iovec *iov, int iovcnt, uint64_t *bytes);
int migr_fd_recvv(int fd, const char *what, const struct iovec *iov, int iovcnt, uint64_t *bytes);

/* iovecs handed to one sendmsg/recvmsg; also keeps us under IOV_MAX (1024). */
#define MIGR_IOV_WINDOW 256

/* The position (i, off) in an iovec array: copy up to MIGR_IOV_WINDOW
 * non-empty pieces from there into win (returns how many; 0 = all done),
 * move it forward by done bytes, and the array's total length. */
int migr_iov_window(struct iovec *win, const struct iovec *iov, int iovcnt, int i, size_t off);
void migr_iov_advance(const struct iovec *iov, int *i, size_t *off, size_t done);
size_t migr_iov_total(const struct iovec *iov, int iovcnt);

/* io_uring stream path for ?uring=1 (uring.c): wrap a connected unix or tcp
 * socket fd (kind "unix"/"tcp") as a transport whose sendv/recvv go through
 * io_uring, or, when the kernel refuses a ring (or MIGR_TEST_NO_URING=1 is
 * set), through the plain socket path; t->uring and t->uring_note tell
 * which. Owns fd on success only. 0 or -errno with a message. */
int migr_uring_transport_new(int fd, const char *kind, const char *peer, struct migr_transport **out);

/* SCM_RIGHTS descriptor passing on a unix socket (a one-byte message 'F'). */
int migr_fd_send_fds(int fd, const char *peer, uint64_t *bytes, const int *fds, int n);
int migr_fd_recv_fds(int fd, const char *peer, uint64_t *bytes, int *fds, int n);

/* Multi-channel TCP (mc.c). */
int migr_mc_connect(const struct migr_url *u, const char *url, struct migr_transport **out);
int migr_mc_wrap(struct migr_listener *l, int fd, const char *peer, uint64_t deadline_ns,
                 struct migr_transport **out);
void migr_mc_listener_free(struct migr_listener *l);
int migr_mc_channel_fd(const struct migr_transport *t, int i);

/* Read exactly len bytes from fd before deadline_ns (0 = no deadline). 0,
 * -EPIPE at EOF, -ETIMEDOUT, or -errno (message not set). */
int migr_read_deadline(int fd, void *buf, size_t len, uint64_t deadline_ns);

/* Socket stream operations shared by the unix and tcp backends. They use
 * sendmsg(MSG_NOSIGNAL)/recvmsg, retry EINTR and partial transfers, and
 * report a reset connection as -EPIPE like an orderly close. */
int migr_sock_sendv(struct migr_transport *t, const struct iovec *iov, int iovcnt);
int migr_sock_recvv(struct migr_transport *t, const struct iovec *iov, int iovcnt);
void migr_sock_shutdown(struct migr_transport *t);
void migr_sock_close(struct migr_transport *t);

/*! Connect fd to addr, finishing the connection if a signal interrupts
 *  connect(). 0 or -errno (message not set). */
int migr_sock_connect(int fd, const void *addr, socklen_t len);

/*! Best-effort socket buffer sizing: ask for bytes on SO_SNDBUF/SO_RCVBUF.
 *  With keep_autotune, a buffer is only set when net.core.{w,r}mem_max allow
 *  the full size: a fixed smaller buffer would switch off TCP autotuning,
 *  which grows further than the default sysctl maximum. */
void migr_sock_set_bufs(int fd, int bytes, int keep_autotune);

#define MIGR_SOCK_BUF_BYTES (4 << 20)

#endif
