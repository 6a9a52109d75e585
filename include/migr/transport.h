/* migr — transport interface: byte streams between the two sides of a migration.
 *
 * URLs:  unix:PATH            unix stream socket (abstract socket if PATH starts with '@')
 *        tcp:HOST:PORT        TCP (HOST may be a name, IPv4, or [IPv6]); PORT 0 = any (listen only)
 *        tcp:HOST:PORT?channels=N
 *                             N (2..16) TCP connections carrying one byte stream cut into
 *                             sequenced frames (docs/format.md, "Multiple channels");
 *                             channels=1 is plain TCP. Without channels= the sender picks
 *                             (migr_url_channels_for_peer); a listener takes a plain stream
 *                             and a group of up to N (default 16) channels alike.
 *        shm:NAME[?ring=SIZE] two processes on one host: a shared-memory ring per direction
 *                             (SIZE a power of two, 64K..1G, default 8M) in a memfd handed
 *                             over the unix socket @migr-shm-NAME (or NAME itself when it
 *                             starts with '/'), which stays open as the liveness channel.
 *        unix:PATH?uring=1, tcp:HOST:PORT?uring=1
 *                             the stream's sendv/recvv go through io_uring (IORING_OP_SENDMSG/
 *                             RECVMSG); if the kernel refuses a ring (ENOSYS, EPERM:
 *                             kernel.io_uring_disabled, seccomp) the plain path is used and
 *                             t->uring / t->uring_note say so. Not with channels=N > 1.
 *        unix:...?encrypt=1, tcp:...?encrypt=1 (with a key, migr_link_opts)
 *                             the stream is carried in AES-256-GCM frames after the
 *                             authentication handshake (docs/transport.md, "Authentication").
 * A transport carries framed records (see record.h); it knows nothing of pages.
 */
#ifndef MIGR_TRANSPORT_H
#define MIGR_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

enum migr_url_kind { MIGR_URL_UNIX = 1, MIGR_URL_TCP = 2, MIGR_URL_SHM = 3 };

struct migr_url {
    enum migr_url_kind kind;
    char path[108];  /* unix: socket path ('@' prefix = abstract) */
    char host[256];  /* tcp: host without brackets */
    uint16_t port;   /* tcp */
    unsigned channels;    /* tcp: ?channels=N (0 = not given: migr_url_channels_for_peer) */
    uint64_t ring_bytes;  /* shm: ?ring=SIZE (0 = not given = default) */
    char name[96];        /* shm: NAME as written (path holds the socket address) */
    unsigned uring;       /* unix:, tcp: ?uring=1: send/recv through io_uring (0 = plain) */
    unsigned encrypt;     /* unix:, tcp: ?encrypt=1: AES-256-GCM framing (needs a key) */
};

#define MIGR_MC_MAX_CHANNELS 16
/* A sender's choice for a remote host when the URL does not say: one stream.
 * Measured on shaped links (bench/README.md, "Choosing the channels by
 * measurement", 2026-12-03): 4 channels won only where one stream's window
 * limits it (10 Gbit/s with 10 ms RTT, 0.79x) and lost or tied elsewhere
 * (1G, 1G-10ms, 1G-loss0.1%, 10G-loss0.1%: 0.99-1.12x). */
#define MIGR_MC_DEFAULT_CHANNELS 1
#define MIGR_SHM_RING_DEFAULT (8u << 20)

/*! Parse url into *out. Returns 0 or -EINVAL with a message naming the problem
 *  ("unknown scheme 'foo' in 'foo:bar' (expected unix: or tcp:)"). */
int migr_url_parse(const char *url, struct migr_url *out);

/*! How many TCP connections a sender opens for u (docs/transport.md,
 *  "Choosing the channels"): an explicit channels=N always wins; else 1
 *  with uring=1 (io_uring is single-stream), 1 for a loopback host
 *  (127.0.0.0/8, ::1, ::ffff:127.x.y.z, "localhost": no loss, no RTT, the
 *  channel threads only cost CPU), MIGR_MC_DEFAULT_CHANNELS otherwise
 *  (above: 1 since the measurements of 2026-12-03; ask ?channels=4 on a
 *  fast link with a long RTT). Names are not resolved. 1 for unix: and shm:. */
unsigned migr_url_channels_for_peer(const struct migr_url *u);

struct migr_transport;

struct migr_transport_ops {
    const char *name;
    /* Send every byte of iov (retrying partial writes). 0 or -errno. */
    int (*sendv)(struct migr_transport *t, const struct iovec *iov, int iovcnt);
    /* Receive exactly the total length of iov. 0, -EPIPE on orderly EOF, or -errno. */
    int (*recvv)(struct migr_transport *t, const struct iovec *iov, int iovcnt);
    /* Shut down both directions (wakes a peer blocked in recv). */
    void (*shutdown)(struct migr_transport *t);
    void (*close)(struct migr_transport *t);
    /* With MIGR_TCAP_PASS_FDS: pass descriptors. NULL = with SCM_RIGHTS on
     * the socket in t->fd (unix:); without the capability -ENOTSUP. */
    int (*send_fds)(struct migr_transport *t, const int *fds, int n);
    int (*recv_fds)(struct migr_transport *t, int *fds, int n);
    /* Optional: bytes sent but not yet taken in by the peer (NULL = SIOCOUTQ on fd). */
    long long (*outq)(struct migr_transport *t);
    /* 1: the backend adds every sleep to send_wait_ns/recv_wait_ns, so the
     * CPU accounting can use wall time minus those (no system call per
     * call); 0: the thread CPU clock is read around each call. */
    int cpu_from_wall;
    /* What this transport can do beyond a byte stream (MIGR_TCAP_*). */
    unsigned caps;
    /* Internal (transfer/side.c), with MIGR_TCAP_SIDE: where this
     * transport keeps how its connection was made (connected to which URL
     * with which options, or accepted at which listener), for opening a
     * side connection the same way. NULL = not known. */
    struct migr_side_origin **(*origin)(struct migr_transport *t);
};

/* Capabilities (migr_transport_ops.caps). */
#define MIGR_TCAP_PASS_FDS 1u  /* send_fds/recv_fds carry descriptors (unix:, shm:) */
#define MIGR_TCAP_SIDE 2u      /* a side connection can be opened next to the stream
                                  (migr_transport_side_offer; unix: a socketpair passed
                                  along, tcp: a second connection the same way) */
#define MIGR_TCAP_POLL_DATA 4u /* fd is readable exactly when recvv has bytes to give (none
                                  held in user space): the engine may poll it for the few
                                  hundred us of the switch instead of sleeping in recvv */

struct migr_transport {
    const struct migr_transport_ops *ops;
    int fd;                /* pollable descriptor (readable = data or EOF); tcp ?channels:
                              channel 0's socket; shm: an epoll set, readable on the peer's
                              close and when a receiver was woken for data (docs/transport.md) */
    char peer[160];        /* for messages: "unix:/tmp/x", "tcp:127.0.0.1:4444" */
    uint64_t bytes_sent;   /* updated by sendv */
    uint64_t bytes_recv;   /* updated by recvv */
    /* Accounting, kept by migr_transport_sendv/recvv (and a backend's own
     * threads): CPU time spent sending and receiving (the thread CPU clock;
     * shm: wall time minus sleeps, which also counts preemption), calls,
     * and the time sendv slept in the rate limiter. */
    uint64_t send_cpu_ns;
    uint64_t recv_cpu_ns;
    uint64_t send_calls;
    uint64_t recv_calls;
    uint64_t rate_wait_ns;
    uint64_t send_wait_ns;  /* shm: time sendv slept waiting for ring space */
    uint64_t recv_wait_ns;  /* shm: time recvv slept waiting for data */
    /* Rate limiter state (migr_transport_set_rate); internal. */
    uint64_t rate_bps;     /* 0 = unlimited */
    int64_t rate_tokens;   /* bytes that may go out now (negative = debt) */
    uint64_t rate_last_ns;
    /* ?uring=1 (transfer/uring.c): 1 if sendv/recvv go through io_uring, 0
     * if they use plain sendmsg/recvmsg (not asked for, or the kernel refused
     * a ring); uring_note says which, and why, in one line ("" if not asked). */
    int uring;
    char uring_note[160];
    /* MIGR_LINK_AUTH: both sides proved the key (handshake done);
     * MIGR_LINK_ENCRYPT: the stream travels in AES-256-GCM frames. */
    unsigned link;
};

#define MIGR_LINK_AUTH 1u
#define MIGR_LINK_ENCRYPT 2u

/* ---- authentication and encryption (docs/transport.md, "Authentication") ---- */

struct migr_key;   /* a shared secret; opaque, wiped when freed */

/*! Load the key in path: a regular file owned by the caller (or root), with
 *  no permission bits for group or others, holding 16..4096 bytes (one
 *  trailing newline is dropped, so `openssl rand -hex 32 >F` works). The
 *  bytes are the key. -EACCES "key file F: mode 0644 lets other users read it
 *  (chmod 600 F)", -EINVAL for the size, -errno for open/read. On success
 *  *out is owned by the caller (migr_key_free). */
int migr_key_load(const char *path, struct migr_key **out);
/*! A key from len (16..4096) bytes at p (copied). 0 or -EINVAL/-ENOMEM. */
int migr_key_new(const void *p, size_t len, struct migr_key **out);
/*! A copy of k (the same secret). 0 or -ENOMEM. */
int migr_key_dup(const struct migr_key *k, struct migr_key **out);
/*! Wipe (OPENSSL_cleanse) and free. NULL ok. */
void migr_key_free(struct migr_key *k);

/* How a connection is set up beyond its URL. All zero = today's plain
 * streams. The structure is copied by the calls that take it; key is
 * copied too (the caller may free its own at once). */
struct migr_link_opts {
    /* Both sides prove knowledge of key before the stream starts (mutual
     * HMAC-SHA256 challenge-response); a peer without it is refused. A
     * listener with a key drops every connection that fails the handshake
     * and keeps listening (keep_listening is implied). */
    const struct migr_key *key;
    /* 1: carry the stream in AES-256-GCM frames (needs key; the same as
     * ?encrypt=1). Either side asking is enough; the answer is inside the
     * authenticated handshake, so it cannot be stripped. */
    int encrypt;
    /* A peer must complete its handshake (authentication, shm:/?channels
     * hello, the preamble check) within this many ms, else it is dropped
     * (listener) or refused (connect). 0 = 5000 for a listener, 10000 for
     * a connect. */
    int handshake_ms;
    /* Listener: a connection whose handshake fails or times out is closed,
     * reported to on_reject, and accept waits for the next one (up to its
     * own timeout). 0 = accept returns that connection's error (the
     * behaviour without opts). */
    int keep_listening;
    /* Listener, plain unix:/tcp: streams without a key: accept returns a
     * connection only once its first bytes are the stream preamble and a
     * whole HELLO record with a valid CRC-32C (docs/format.md; peeked, not
     * consumed), so a silent, babbling or stalling client never reaches
     * the engine (migr recv). With a key the handshake is the gate. */
    int expect_stream;
    /* Listener: called (in accept's thread) for each connection dropped
     * with keep_listening, with its peer name and the reason. NULL = none. */
    void (*on_reject)(void *arg, const char *peer, const char *why);
    void *on_reject_arg;
};

/*! Connect to url as migr_transport_connect(), with opts o (NULL = the
 *  process default of migr_link_set_default()). With a key: the
 *  authentication handshake, then (if either side asked) encryption;
 *  -EACCES "wrong key: ..." / "... refused our proof", -EPROTO when the
 *  listener does not authenticate ("... closed during authentication: does
 *  it have a key?"), -ETIMEDOUT. */
int migr_transport_connect_opts(const char *url, const struct migr_link_opts *o, struct migr_transport **out);

/*! The process-wide default used by migr_transport_connect(),
 *  migr_listener_open() and the _opts calls given NULL: so that connections
 *  the engine makes itself (the post-copy fault channel over TCP) are
 *  authenticated with the same key. Copied (key too); NULL clears it.
 *  Thread-safe; a connection takes the default in force when it starts.
 *  0 or -ENOMEM/-EINVAL. */
int migr_link_set_default(const struct migr_link_opts *o);

/*! Connect to url. On success *out owns the connection (free with
 *  migr_transport_close). -errno with "connect tcp:1.2.3.4:5: Connection refused". */
int migr_transport_connect(const char *url, struct migr_transport **out);

struct migr_listener {
    int fd;
    struct migr_url url;
    char bound[300];       /* URL actually bound (tcp port 0 -> real port) */
    unsigned rejected;     /* connections dropped so far (keep_listening) */
    char last_reject[300]; /* the last one's peer and reason ("" = none) */
};

/*! Bind and listen on url (unix: removes a stale socket file first; tcp: SO_REUSEADDR).
 *  -EADDRINUSE etc. with a message naming the URL. */
int migr_listener_open(const char *url, struct migr_listener **out);

/*! migr_listener_open() with opts o (NULL = the process default). A tcp:
 *  listener on an address that is not loopback (127.0.0.0/8, ::1) needs a
 *  key: without one -EACCES "... would let anyone who can reach the port
 *  stream a guest in: give a key (--key-file)", refused before binding.
 *  ?encrypt=1 (or o->encrypt) without a key: -EINVAL. */
int migr_listener_open_opts(const char *url, const struct migr_link_opts *o, struct migr_listener **out);

/*! Wait up to timeout_ms (-1 = forever) for one connection whose handshake
 *  (see migr_link_opts) completed. Handshakes of several connections run
 *  side by side, each within its own time-out, so a silent client delays
 *  nobody. -ETIMEDOUT on timeout (the message names the last connection
 *  dropped, if any). Unix-socket listeners (unix:, shm:) accept only peers
 *  of the same uid or root (SO_PEERCRED). */
int migr_listener_accept(struct migr_listener *l, int timeout_ms, struct migr_transport **out);

/*! For a connected unix socket fd: 0 if the process at the other end runs
 *  as our effective uid or as root (SO_PEERCRED), else -EACCES "what:
 *  refused a process of uid U (pid P): only uid E or root may use it".
 *  migr's unix listeners (unix:, shm:) apply it to every connection, and
 *  unix connects apply the same rule to the listener. */
int migr_unix_peer_check(int fd, const char *what);

/*! Close the listener (and unlink a unix socket path it created). NULL ok.
 *  Transports it accepted over tcp keep its socket open until their side
 *  connection is open or released (migr_transport_side_release): until
 *  then a new connection waits in the backlog and is closed unaccepted.
 *  In a forked child (another pid than the one that opened l) it only
 *  closes the child's descriptors: the parent's socket file stays, its
 *  sockets are not shut down. */
void migr_listener_close(struct migr_listener *l);

/*! Send every byte of iov through t: the rate limiter (if set), the backend,
 *  then the accounting above. 0 or -errno. */
int migr_transport_sendv(struct migr_transport *t, const struct iovec *iov, int n);
/*! Receive exactly the total length of iov. 0, -EPIPE on EOF, or -errno. */
int migr_transport_recvv(struct migr_transport *t, const struct iovec *iov, int n);

/*! Limit what sendv puts on the wire to bytes_per_s (token bucket with a
 *  burst of 1/50 s, at least 64 KiB; large sends are cut to the burst so the
 *  rate stays smooth). 0 = unlimited. May be called from another thread
 *  while a send runs; the new rate applies to the next burst. Returns 0. */
int migr_transport_set_rate(struct migr_transport *t, uint64_t bytes_per_s);

/*! Bytes sent on t that the peer has not taken in yet: the socket send
 *  queue (SIOCOUTQ; for ?channels the sum over the channels), or what sits
 *  in the shm: ring. For the engine's "let it drain before pausing" wait,
 *  which otherwise sees only one socket (or, on shm:, none). -errno if it
 *  cannot tell. */
long long migr_transport_outq(struct migr_transport *t);

/*! 1 if send_fds/recv_fds work on t (MIGR_TCAP_PASS_FDS: unix: and shm:), else 0. */
int migr_transport_can_pass_fds(const struct migr_transport *t);

/*! Diagnostics and tests: the socket of channel i of a tcp ?channels=N
 *  transport (i < N), or -EINVAL for other transports / indexes. */
int migr_transport_channel_fd(const struct migr_transport *t, int i);
/* ---- side connections (docs/transport.md, "Side connections") ----
 *
 * A second connection between the same two parties, next to the stream,
 * set up through it: the post-copy fault channel. The offering side (the
 * source) calls migr_transport_side_offer(), which hands 16 opaque bytes to
 * a callback that sends them to the peer inside its own record
 * (FAULT_CHANNEL, docs/format.md); the peer passes the bytes it received to
 * migr_transport_side_open(); the offering side takes the connection with
 * migr_side_collect(). Over tcp the connection goes in the same direction
 * as the stream (the side that connected connects again, to the same
 * address and port; the listening side accepts it, recognised by a random
 * cookie, after the same authentication as the stream), so it works
 * wherever the stream did: through NAT, a port forward or a proxy. */

struct migr_side;   /* a side connection being set up on the offering side */

/*! Offer a side connection on t. send(arg, bytes, 16) must deliver the
 *  bytes to the peer on t (0 or -errno) and is called once; then
 *  descriptors may follow on t (unix:), and the connection is made or
 *  awaited in the background. 0 with *out set; -ENOTSUP (no message) if t
 *  cannot (no MIGR_TCAP_SIDE, or a transport wrapped around an fd): then
 *  send was not called; -errno with a message otherwise. *out is the
 *  caller's (migr_side_free), also after a failed collect. */
int migr_transport_side_offer(struct migr_transport *t, int (*send)(void *arg, const uint8_t *bytes, size_t len),
                              void *arg, struct migr_side **out);
/*! Wait up to timeout_ms for the side connection offered; 0 with *out the
 *  caller's, or -errno with a message naming why (-ETIMEDOUT "... did not
 *  open the side connection within N ms (...)"). Call once. */
int migr_side_collect(struct migr_side *s, int timeout_ms, struct migr_transport **out);
/*! Give up (a background accept or connect is stopped and joined) and
 *  free. NULL ok. */
void migr_side_free(struct migr_side *s);
/*! The peer: open the side connection described by bytes (len 16, as
 *  received), waiting up to timeout_ms. 0 with *out the caller's, -EBADMSG
 *  for bytes that do not fit t ("kind 1 on a tcp stream"), or -errno. */
int migr_transport_side_open(struct migr_transport *t, const uint8_t *bytes, size_t len, int timeout_ms,
                             struct migr_transport **out);
/*! No side connection will be opened on t: let go of what t keeps for one
 *  (over tcp, a listening side keeps its listener's socket, so that the
 *  peer can still connect after the listener was closed). Idempotent; also
 *  done by side_open and close. */
void migr_transport_side_release(struct migr_transport *t);

/*! Wrap an already connected stream socket fd (socketpair, inherited fd) as a
 *  transport. kind is "unix" or "tcp" (NULL = "unix"); peer names it in
 *  messages (NULL = "fd:N"). On success the transport owns fd (closed by
 *  migr_transport_close); on failure the caller still owns it. */
int migr_transport_from_fd(int fd, const char *kind, const char *peer, struct migr_transport **out);

int migr_transport_send(struct migr_transport *t, const void *buf, size_t len);
int migr_transport_recv(struct migr_transport *t, void *buf, size_t len);
/*! Pass n (1..64) file descriptors to the peer (unix transports only):
 *  a one-byte message 'F' carrying them with SCM_RIGHTS. The caller keeps
 *  its own copies. -ENOTSUP on a transport that cannot carry descriptors. */
int migr_transport_send_fds(struct migr_transport *t, const int *fds, int n);
/*! Receive exactly n descriptors sent with migr_transport_send_fds (close-on-exec).
 *  -EBADMSG if the next byte is not such a message or carries a different count. */
int migr_transport_recv_fds(struct migr_transport *t, int *fds, int n);
/*! Close and free. NULL ok. */
void migr_transport_close(struct migr_transport *t);

#ifdef __cplusplus
}
#endif

#endif
