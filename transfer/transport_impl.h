/* migr — transport internals shared by transport.c, unix.c and tcp.c.
 * Not installed; the public interface is migr/transport.h. */
#ifndef MIGR_TRANSPORT_IMPL_H
#define MIGR_TRANSPORT_IMPL_H

#include <stdint.h>
#include <sys/types.h>
#include "migr/transport.h"

/* ---- authentication (auth.c; docs/format.md, "Authentication") ---- */
#define MIGR_AUTH_VERSION 1u
#define MIGR_AUTH_NONCE 32u
#define MIGR_AUTH_MAC 32u
#define MIGR_AUTH_HELLO_C 48u
#define MIGR_AUTH_HELLO_S 80u
#define MIGR_AUTH_FINISH 40u
#define MIGR_AUTH_RESULT 8u
#define MIGR_AUTH_F_ENCRYPT 1u
#define MIGR_AUTH_MAGIC_C "MIGRAUC1"
#define MIGR_AUTH_MAGIC_S "MIGRAUS1"
#define MIGR_AUTH_MAGIC_F "MIGRAUF1"
#define MIGR_AUTH_MAGIC_X "MIGRAUX1"
#define MIGR_AUTH_OK "MIGRAUOK"
#define MIGR_AUTH_NO "MIGRAUNO"

/* One handshake's transcript and, with encryption, the keys it derived. */
struct migr_auth {
    uint8_t hello_c[MIGR_AUTH_HELLO_C];
    uint8_t hello_s[MIGR_AUTH_HELLO_S];
    uint8_t k_c2s[32], k_s2c[32];   /* client->server, server->client */
    int encrypt;
    int done;
};

/* Client side, blocking until deadline_ns: HELLO_C, check HELLO_S, FINISH,
 * RESULT. 0 with *a filled, or -errno with a message naming url. */
int migr_auth_client(int fd, const char *url, const struct migr_key *k, int want_encrypt, uint64_t deadline_ns,
                     struct migr_auth *a);
/* Server side, one message each (accept.c reads them): check the client's
 * 48-byte hello and write our 80-byte answer; then check its 40-byte
 * FINISH. 0 or -errno with the reason as the message. */
int migr_auth_server_hello(const struct migr_key *k, int want_encrypt, const uint8_t *hello_c,
                           struct migr_auth *a, uint8_t *hello_s);
int migr_auth_server_finish(const struct migr_key *k, struct migr_auth *a, const uint8_t *fin);
/* -EPROTO "who spoke out of turn" if bytes wait on fd, else 0. */
int migr_auth_check_turn(int fd, const char *who);
void migr_auth_wipe(struct migr_auth *a);

/* The options of one connection or listener, owned (the key is a copy). */
struct migr_link_cfg {
    struct migr_key *key;
    int encrypt;
    int handshake_ms;
    int keep_listening;
    int expect_stream;
    void (*on_reject)(void *arg, const char *peer, const char *why);
    void *on_reject_arg;
};

/* Fill cfg from o, or from the process default when o is NULL and the URL
 * kind is tcp (the default applies to tcp only). 0 or -ENOMEM. */
int migr_link_cfg_get(struct migr_link_cfg *cfg, const struct migr_link_opts *o, enum migr_url_kind kind);
void migr_link_cfg_free(struct migr_link_cfg *cfg);

/* A connection in the middle of its handshake at a listener (accept.c). */
enum migr_hs_state {
    MIGR_HS_FREE = 0,
    MIGR_HS_AUTH_HELLO,     /* wait for the client's HELLO_C */
    MIGR_HS_AUTH_FINISH,    /* our HELLO_S sent; wait for its FINISH */
    MIGR_HS_BACKEND_HELLO,  /* shm: / ?channels: wait for the backend's hello */
    MIGR_HS_EXPECT,         /* plain stream: wait until its preamble and HELLO can be peeked */
    MIGR_HS_PROBE,          /* tcp with side connections due: a side hello first? */
    MIGR_HS_SNIFF,          /* tcp: the first bytes say a multi-channel hello or a plain stream */
};

#define MIGR_HS_MAX 16

struct migr_hs_conn {
    enum migr_hs_state st;
    int fd;
    uint64_t since, deadline;
    size_t need, have;
    int partial;            /* HS_EXPECT: some bytes there, re-peek on a timer */
    int side;               /* a side connection (its hello came first) */
    uint64_t cookie;        /* ... and its cookie */
    uint64_t sniff_until;   /* HS_SNIFF: silent until then = a plain stream (0: wait for bytes) */
    uint8_t buf[96];
    struct migr_auth auth;
    char peer[160];
};

/* ---- side connections (side.c) ---- */
struct migr_side_hub;   /* a tcp listener's socket, shared with the transports it accepted */

/* How a transport's connection was made (its ops->origin slot). */
struct migr_side_origin {
    int client;                 /* 1: we connected to url; 0: accepted at hub */
    struct migr_url url;        /* client: the address and port reached (no options) */
    struct migr_link_cfg cfg;   /* client: the stream's key, encryption, handshake time */
    struct migr_side_hub *hub;  /* server: referenced until the side is open or released */
    char name[300];             /* for messages: the URL, or the listener's address */
};

/* The plain socket transports (unix, tcp, and uring.c's, which begins with
 * one): the public part and the origin slot. */
struct migr_sock_transport {
    struct migr_transport pub;  /* first member */
    struct migr_side_origin *origin;
};
struct migr_side_origin **migr_sock_origin(struct migr_transport *t);

void migr_side_origin_free(struct migr_side_origin *o);
/* Drop o's hold on its hub (idempotent). */
void migr_transport_side_release_origin(struct migr_side_origin *o);
/* Give t (if it has an origin slot) the origin of a connection to u with
 * cfg (tcp only), or of one accepted at h. 0 or -ENOMEM. */
int migr_side_origin_client(struct migr_transport *t, const struct migr_url *u, const struct migr_link_cfg *cfg);
int migr_side_origin_server(struct migr_transport *t, struct migr_side_hub *h);
void migr_side_set_origin(struct migr_transport *t, struct migr_side_origin *o);

/* The hub: new (owns l->fd from now on, refs = 1 for the listener); close:
 * the listener is gone (parked connections are closed; the socket stays
 * while transports hold it); live: origins that may still open a side;
 * accepting: a thread enters (+1) / leaves (-1) migr_listener_accept;
 * unpark: a connection a side waiter accepted (since = deadline = 0), or
 * one adopted and not looked at (with its handshake's start and deadline),
 * for the listener, or -1;
 * accepted: a side connection (its hello read, authenticated with a) is
 * made a transport and delivered (takes fd). */
int migr_side_hub_new(struct migr_listener *l, const struct migr_link_cfg *cfg, struct migr_side_hub **out);
void migr_side_hub_close(struct migr_side_hub *h);
int migr_side_hub_live(struct migr_side_hub *h);
void migr_side_hub_accepting(struct migr_side_hub *h, int delta);
int migr_side_hub_unpark(struct migr_side_hub *h, char *peer, size_t cap, uint64_t *since, uint64_t *deadline);
void migr_side_hub_deliver(struct migr_side_hub *h, uint64_t cookie, struct migr_transport *t);
/* A connection the listener stepped but read nothing from (at its close,
 * or left in a slot when accept returned a stream): a side waiter looks at
 * it as at a new connection, or the listener's next accept takes it back
 * (unpark); takes fd. */
void migr_side_hub_adopt(struct migr_side_hub *h, int fd, const char *peer, uint64_t since, uint64_t deadline);
int migr_side_accepted(struct migr_side_hub *h, int fd, const char *peer, const struct migr_auth *a,
                       uint64_t cookie);
/* The first got bytes of a connection: 1 = a whole side hello (16 bytes),
 * 0 = its beginning so far, -1 = something else. */
int migr_side_hello_check(const uint8_t *b, size_t got);
#define MIGR_SIDE_HELLO 16u
/* A new connection that has said nothing for this long is not a side
 * connection (yet: a side hello that comes later, while the listener's
 * handshake still waits for the stream, goes back to the side path, SNIFF in
 * accept.c). Longer would hold up a plain client that waits for us to speak,
 * and the silence that tells one (SNIFF) must stay inside short handshake
 * deadlines (400 ms in tests/test_auth.c). */
#define MIGR_SIDE_PROBE_MS 100

/* tcp.c: socket options and the peer's name of an accepted socket. */
int migr_tcp_accepted_fd(int fd, char *peer, size_t cap);
/* tcp.c: the kernel's smoothed round-trip time of a connected socket in
 * microseconds (TCP_INFO), 0 if it cannot tell. */
unsigned migr_tcp_rtt_us(int fd);

/* A copy of src (the key duplicated). 0 or -ENOMEM. */
int migr_link_cfg_copy(struct migr_link_cfg *dst, const struct migr_link_cfg *src);

/* A listener as allocated by migr_listener_open(); backends reach their
 * extra fields from the public pointer with listener_impl(). */
struct migr_listener_impl {
    struct migr_listener pub;   /* first member */
    const struct migr_transport_backend *be;
    int owns_path;              /* unix: we created the socket file ... */
    dev_t dev;                  /* ... with this identity, so close unlinks */
    ino_t ino;                  /*     only our file, not a successor's */
    void *mc_pending;           /* tcp ?channels: sessions still being assembled */
    struct migr_link_cfg cfg;
    struct migr_hs_conn hs[MIGR_HS_MAX];
    struct migr_side_hub *hub;  /* tcp: owns the listening socket (side.c) */
    pid_t pid;                  /* who opened it: a forked child's close only closes */
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
    /*! Optional: turn an accepted, set-up socket whose hello_len-byte hello
     *  the listener has read (its state machine, accept.c) into a transport
     *  (shm handshake, multi-channel grouping). a is the connection's
     *  finished authentication, or NULL without a key. Owns fd from the call
     *  on. 0 with *out set, -EAGAIN when fd joined a session that is not
     *  complete yet (keep accepting), or -errno with a message. NULL =
     *  plain stream. */
    int (*wrap)(struct migr_listener *l, int fd, const char *peer, const uint8_t *hello,
                const struct migr_auth *a, struct migr_transport **out);
    /*! Length of the hello wrap() takes. */
    size_t (*hello_len)(const struct migr_listener *l);
    /*! NULL: every connection sends the hello. Else the hello is optional
     *  and begins with these 8 bytes; a connection whose first bytes differ
     *  (or that stays silent, when the listener does not expect a stream) is
     *  a plain stream (tcp: a multi-channel group or one connection). */
    const char *hello_magic;
    /*! Optional: connect and build the transport (shm:, tcp ?channels). */
    int (*connect_t)(const struct migr_url *u, const char *url, const struct migr_link_cfg *cfg,
                     struct migr_transport **out);
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
int migr_mc_connect(const struct migr_url *u, const char *url, const struct migr_link_cfg *cfg,
                    struct migr_transport **out);
int migr_mc_wrap(struct migr_listener *l, int fd, const char *peer, const uint8_t *hello,
                 const struct migr_auth *a, struct migr_transport **out);
#define MIGR_MC_HELLO_LEN 32u
#define MIGR_MC_HELLO_MAGIC "MIGRMCH1"
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

/* A plain (unix/tcp, optionally io_uring) transport around a connected fd
 * (transport.c). Owns fd on success only. */
int migr_plain_transport_new(int fd, const struct migr_transport_backend *be, const struct migr_url *u,
                             const char *peer, struct migr_transport **out);

/* The finished handshake a of a transport t: mark it authenticated and,
 * if a says so, wrap t in AES-256-GCM frames (aead.c); client says which
 * side t is. Takes t (closed on failure). 0 or -errno. */
int migr_link_finish(struct migr_transport **t, const struct migr_auth *a, int client);

/* Close the connections still in their handshake at l (accept.c). */
void migr_hs_free(struct migr_listener *l);
/* Slots with nothing read from them yet go to the listener's hub (at close,
 * and when accept returns a stream): a side connection among them gets in. */
void migr_hs_hand_to_hub(struct migr_listener *l);

#endif
