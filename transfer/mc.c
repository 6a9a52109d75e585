/* migr — multi-channel TCP: tcp:HOST:PORT?channels=N (2..16).
 *
 * One byte stream over N TCP connections (docs/format.md, "Multiple
 * channels"). Connecting: each connection sends a 32-byte hello (magic,
 * session id, channel index, channel count); the listener groups them by
 * session and, once all N are there, answers an 8-byte ack on channel 0.
 *
 * The stream is cut into frames, each a 16-byte header (sequence number,
 * length, the number of frames that follow on channels 1.., the channel)
 * and its bytes. A sendv below MC_SPLIT bytes is one frame on channel 0. A
 * larger one is cut into k <= N parts: part 0 on channel 0 (written by the
 * caller) announces k-1 followers, parts 1..k-1 go on channels 1..k-1 in
 * parallel (one sender thread per channel). sendv returns when every part
 * is in its socket, so frames of the next sendv come after all of these.
 *
 * The receiver therefore always knows where the next byte is: on channel 0
 * unless followers are announced, then on channels 1, 2, ... in turn. It
 * reads each frame straight into the caller's iovecs (no copy besides the
 * kernel's) and checks every sequence number, so the bytes come out in
 * exactly the order they went in.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

#define MC_HELLO_MAGIC "MIGRMCH1"
#define MC_ACK_MAGIC "MIGRMCA1"
#define MC_SPLIT (256u << 10)          /* smaller sends stay one frame on channel 0 */
#define MC_ROUND_MAX (256ull << 20)    /* at most this much per round of parts */
#define MC_FRAME_HDR 16

struct mc_hello {
    char magic[8];
    uint64_t session;
    uint32_t index;
    uint32_t channels;
    uint64_t reserved;
};

struct mc_job {
    struct iovec *iov;
    int cnt;
    int state;              /* 0 idle, 1 posted, 2 done */
    int ret;
    uint64_t bytes;
    char err[256];
};

struct mc_transport {
    struct migr_transport pub;   /* first member */
    int n;
    int fd[MIGR_MC_MAX_CHANNELS];
    char name[MIGR_MC_MAX_CHANNELS][200];
    /* sending */
    uint64_t tx_seq;
    pthread_mutex_t mu;
    pthread_cond_t cv_job, cv_done;
    struct mc_job job[MIGR_MC_MAX_CHANNELS];
    pthread_t th[MIGR_MC_MAX_CHANNELS];
    int nthreads, quit;
    struct iovec *scratch;
    size_t scratch_cap;
    uint8_t hdr[MIGR_MC_MAX_CHANNELS][MC_FRAME_HDR];
    /* receiving */
    uint64_t rx_seq;
    uint64_t rx_left;
    int rx_chan;
    int rx_follow;          /* followers still to come on channels rx_next.. */
    int rx_next;
    struct iovec *rscratch;
    size_t rscratch_cap;
};

struct mc_worker_arg {
    struct mc_transport *m;
    int ch;
};

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put_hdr(uint8_t *h, uint64_t seq, uint32_t len, uint16_t follow, uint16_t ch)
{
    uint64_t s = htole64(seq);
    uint32_t l = htole32(len);
    uint16_t f = htole16(follow), c = htole16(ch);

    memcpy(h, &s, 8);
    memcpy(h + 8, &l, 4);
    memcpy(h + 12, &f, 2);
    memcpy(h + 14, &c, 2);
}

static int grow(struct iovec **a, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = MIGR_MAX(need, 2 * *cap);
    struct iovec *p = realloc(*a, c * sizeof(**a));

    if (!p)
        return -ENOMEM;
    *a = p;
    *cap = c;
    return 0;
}

static void *worker(void *p)
{
    struct mc_worker_arg *a = p;
    struct mc_transport *m = a->m;
    int ch = a->ch;

    free(a);
    pthread_mutex_lock(&m->mu);
    for (;;) {
        while (!m->quit && m->job[ch].state != 1)
            pthread_cond_wait(&m->cv_job, &m->mu);
        if (m->quit)
            break;
        struct mc_job *j = &m->job[ch];
        pthread_mutex_unlock(&m->mu);
        uint64_t c0 = thread_cpu_ns(), bytes = 0;
        int ret = migr_fd_sendv(m->fd[ch], m->name[ch], j->iov, j->cnt, &bytes);

        __atomic_fetch_add(&m->pub.send_cpu_ns, thread_cpu_ns() - c0, __ATOMIC_RELAXED);
        pthread_mutex_lock(&m->mu);
        j->ret = ret;
        j->bytes = bytes;
        if (ret < 0)
            snprintf(j->err, sizeof(j->err), "%s", migr_last_error());
        j->state = 2;
        pthread_cond_broadcast(&m->cv_done);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static int start_workers(struct mc_transport *m)
{
    for (int ch = 1; ch < m->n; ch++) {
        struct mc_worker_arg *a = malloc(sizeof(*a));
        int e;

        if (!a)
            return migr_errorf(ENOMEM, "send %s: out of memory for sender threads", m->pub.peer);
        a->m = m;
        a->ch = ch;
        e = pthread_create(&m->th[ch], NULL, worker, a);
        if (e) {
            free(a);
            return migr_errorf_errno(e, "send %s: starting the sender thread of channel %d", m->pub.peer, ch);
        }
        m->nthreads = ch;
    }
    return 0;
}

/* Append to out the slice [*i,*off) .. +len of iov; advance the position. */
static int slice(const struct iovec *iov, int cnt, int *i, size_t *off, size_t len, struct iovec *out)
{
    int k = 0;

    while (len && *i < cnt) {
        size_t avail = iov[*i].iov_len - *off;

        if (avail == 0) {
            (*i)++;
            *off = 0;
            continue;
        }
        size_t take = MIGR_MIN(avail, len);

        out[k].iov_base = (char *)iov[*i].iov_base + *off;
        out[k++].iov_len = take;
        len -= take;
        *off += take;
        if (*off == iov[*i].iov_len) {
            (*i)++;
            *off = 0;
        }
    }
    return k;
}

static int mc_sendv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    struct mc_transport *m = (struct mc_transport *)t;
    uint64_t total = 0;
    size_t off = 0;
    int i = 0;

    if (iovcnt < 0)
        return migr_errorf(EINVAL, "send %s: negative iovec count %d", t->peer, iovcnt);
    for (int k = 0; k < iovcnt; k++)
        total += iov[k].iov_len;
    if (grow(&m->scratch, &m->scratch_cap, (size_t)iovcnt + 2 * MIGR_MC_MAX_CHANNELS + 2) < 0)
        return migr_errorf(ENOMEM, "send %s: out of memory", t->peer);
    while (total) {
        uint64_t round = MIGR_MIN(total, MC_ROUND_MAX);
        int parts = (int)MIGR_MIN((uint64_t)m->n, (round + MC_SPLIT - 1) / MC_SPLIT);
        uint64_t part = MIGR_ALIGN_UP((round + (uint64_t)parts - 1) / (uint64_t)parts, MIGR_PAGE_SIZE);
        struct iovec *s = m->scratch;
        uint64_t left = round;
        int used = 0, ret = 0;

        if (parts > 1 && m->nthreads == 0 && (ret = start_workers(m)) < 0)
            return ret;
        /* Lay out every part: [header, slices...]. */
        int first[MIGR_MC_MAX_CHANNELS], count[MIGR_MC_MAX_CHANNELS], np = 0;
        uint64_t seq0 = m->tx_seq;
        for (int p = 0; p < parts && left; p++, np++) {
            uint64_t len = MIGR_MIN(part, left);

            put_hdr(m->hdr[p], m->tx_seq++, (uint32_t)len, 0, (uint16_t)p);
            first[p] = used;
            s[used].iov_base = m->hdr[p];
            s[used++].iov_len = MC_FRAME_HDR;
            used += slice(iov, iovcnt, &i, &off, (size_t)len, s + used);
            count[p] = used - first[p];
            left -= len;
        }
        /* Part 0 announces its followers. */
        put_hdr(m->hdr[0], seq0, (uint32_t)MIGR_MIN(part, round), (uint16_t)(np - 1), 0);
        if (np > 1) {
            pthread_mutex_lock(&m->mu);
            for (int p = 1; p < np; p++) {
                m->job[p] = (struct mc_job){ .iov = s + first[p], .cnt = count[p], .state = 1 };
            }
            pthread_cond_broadcast(&m->cv_job);
            pthread_mutex_unlock(&m->mu);
        }
        uint64_t b0 = 0;
        ret = migr_fd_sendv(m->fd[0], m->name[0], s + first[0], count[0], &b0);
        /* bytes_sent counts the stream, not the frame headers. */
        t->bytes_sent += b0 > MC_FRAME_HDR ? b0 - MC_FRAME_HDR : 0;
        if (np > 1) {
            int bad = -1;

            pthread_mutex_lock(&m->mu);
            for (int p = 1; p < np; p++) {
                while (m->job[p].state != 2)
                    pthread_cond_wait(&m->cv_done, &m->mu);
                t->bytes_sent += m->job[p].bytes > MC_FRAME_HDR ? m->job[p].bytes - MC_FRAME_HDR : 0;
                if (m->job[p].ret < 0 && bad < 0)
                    bad = p;
                m->job[p].state = 0;
            }
            pthread_mutex_unlock(&m->mu);
            if (ret == 0 && bad > 0) {
                ret = m->job[bad].ret;
                migr_errorf(-ret, "%s", m->job[bad].err);
            }
        }
        if (ret < 0)
            return ret;
        total -= round;
    }
    return 0;
}

static int next_frame(struct mc_transport *m)
{
    int ch = m->rx_follow > 0 ? m->rx_next : 0;
    uint8_t h[MC_FRAME_HDR];
    struct iovec v = { h, sizeof(h) };
    uint64_t seq;
    uint32_t len;
    uint16_t follow, hch;
    int ret = migr_fd_recvv(m->fd[ch], m->name[ch], &v, 1, NULL);

    if (ret < 0)
        return ret;
    memcpy(&seq, h, 8);
    memcpy(&len, h + 8, 4);
    memcpy(&follow, h + 12, 2);
    memcpy(&hch, h + 14, 2);
    seq = le64toh(seq);
    len = le32toh(len);
    follow = le16toh(follow);
    hch = le16toh(hch);
    if (seq != m->rx_seq || hch != ch || len == 0 || (ch == 0 && follow >= m->n) || (ch != 0 && follow))
        return migr_errorf(EPROTO, "recv %s: bad frame (seq %llu, expected %llu; channel %u, read on %d; "
                           "%u followers; %u bytes)", m->name[ch], (unsigned long long)seq,
                           (unsigned long long)m->rx_seq, hch, ch, follow, len);
    m->rx_seq++;
    m->rx_left = len;
    m->rx_chan = ch;
    if (ch == 0) {
        m->rx_follow = follow;
        m->rx_next = 1;
    } else {
        m->rx_follow--;
        m->rx_next++;
    }
    return 0;
}

static int mc_recvv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    struct mc_transport *m = (struct mc_transport *)t;
    uint64_t total = 0;
    size_t off = 0;
    int i = 0;

    if (iovcnt < 0)
        return migr_errorf(EINVAL, "recv %s: negative iovec count %d", t->peer, iovcnt);
    for (int k = 0; k < iovcnt; k++)
        total += iov[k].iov_len;
    if (grow(&m->rscratch, &m->rscratch_cap, (size_t)iovcnt + 1) < 0)
        return migr_errorf(ENOMEM, "recv %s: out of memory", t->peer);
    uint64_t want = total, b0 = t->bytes_recv;
    while (total) {
        int ret = 0, ch = m->rx_chan;

        if (m->rx_left == 0) {
            ch = m->rx_follow > 0 ? m->rx_next : 0;
            ret = next_frame(m);
        }
        if (m->rx_left) {
            uint64_t take = MIGR_MIN(total, m->rx_left);
            int k = slice(iov, iovcnt, &i, &off, (size_t)take, m->rscratch);
            uint64_t got = t->bytes_recv;

            ret = migr_fd_recvv(m->fd[ch], m->name[ch], m->rscratch, k, &t->bytes_recv);
            m->rx_left -= t->bytes_recv - got;
            total -= t->bytes_recv - got;
        }
        if (ret == -EPIPE)
            return migr_errorf(EPIPE, "recv %s: peer closed channel %d (%llu of %llu bytes received)", t->peer,
                               ch, (unsigned long long)(t->bytes_recv - b0), (unsigned long long)want);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static void mc_shutdown(struct migr_transport *t)
{
    struct mc_transport *m = (struct mc_transport *)t;

    for (int i = 0; i < m->n; i++)
        (void)shutdown(m->fd[i], SHUT_RDWR);
}

static void mc_free(struct mc_transport *m)
{
    if (m->nthreads) {
        pthread_mutex_lock(&m->mu);
        m->quit = 1;
        pthread_cond_broadcast(&m->cv_job);
        pthread_mutex_unlock(&m->mu);
        for (int ch = 1; ch <= m->nthreads; ch++)
            pthread_join(m->th[ch], NULL);
    }
    for (int i = 0; i < m->n; i++)
        if (m->fd[i] >= 0)
            close(m->fd[i]);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv_job);
    pthread_cond_destroy(&m->cv_done);
    free(m->scratch);
    free(m->rscratch);
    free(m);
}

static void mc_close(struct migr_transport *t)
{
    mc_free((struct mc_transport *)t);
}

static const struct migr_transport_ops mc_ops = {
    .name = "tcp",
    .sendv = mc_sendv,
    .recvv = mc_recvv,
    .shutdown = mc_shutdown,
    .close = mc_close,
};

int migr_mc_channel_fd(const struct migr_transport *t, int i)
{
    const struct mc_transport *m = (const struct mc_transport *)t;

    if (t->ops != &mc_ops || i < 0 || i >= m->n)
        return migr_errorf(EINVAL, "%s: no channel %d (not a tcp ?channels=N transport, or out of range)",
                           t->peer, i);
    return m->fd[i];
}

/* Takes the n descriptors (closed on failure too). */
static int mc_build(const int *fds, int n, const char *peer, struct migr_transport **out)
{
    struct mc_transport *m = calloc(1, sizeof(*m));

    if (!m) {
        for (int i = 0; i < n; i++)
            close(fds[i]);
        return migr_errorf(ENOMEM, "%s: out of memory for the transport", peer);
    }
    m->n = n;
    for (int i = 0; i < n; i++) {
        m->fd[i] = fds[i];
        snprintf(m->name[i], sizeof(m->name[i]), "%.160s channel %d", peer, i);
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv_job, NULL);
    pthread_cond_init(&m->cv_done, NULL);
    migr_transport_init(&m->pub, fds[0], &mc_ops, peer);
    *out = &m->pub;
    return 0;
}

static uint64_t new_session(void)
{
    uint64_t s = 0;

    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
        s = migr_now_ns() ^ ((uint64_t)getpid() << 32);
    return s ? s : 1;
}

int migr_mc_connect(const struct migr_url *u, const char *url, struct migr_transport **out)
{
    int n = (int)u->channels, fds[MIGR_MC_MAX_CHANNELS], err = 0;
    uint64_t session = new_session();
    struct migr_url plain = *u;

    plain.channels = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = migr_tcp_backend.connect(&plain, url);
        if (fds[i] < 0) {
            err = migr_error_prefix(-fds[i], "channel %d of %d", i, n);
            for (int k = 0; k < i; k++)
                close(fds[k]);
            return err;
        }
    }
    for (int i = 0; i < n && !err; i++) {
        struct mc_hello h = { .magic = MC_HELLO_MAGIC, .session = htole64(session), .index = htole32((uint32_t)i),
                              .channels = htole32((uint32_t)n) };

        err = migr_write_full(fds[i], &h, sizeof(h));
        if (err < 0)
            err = migr_errorf_errno(-err, "connect %s: hello on channel %d", url, i);
    }
    if (!err) {
        char ack[8];

        err = migr_read_deadline(fds[0], ack, sizeof(ack), migr_now_ns() + 10000000000ull);
        if (err == -ETIMEDOUT)
            err = migr_errorf(ETIMEDOUT, "connect %s: no multi-channel answer within 10 s "
                              "(does the listener use ?channels=N too?)", url);
        else if (err < 0)
            err = migr_errorf(EPROTO, "connect %s: the listener closed the connection during the "
                              "multi-channel handshake (does it use ?channels=N too?)", url);
        else if (memcmp(ack, MC_ACK_MAGIC, 8))
            err = migr_errorf(EPROTO, "connect %s: bad multi-channel answer", url);
    }
    if (err < 0) {
        for (int i = 0; i < n; i++)
            close(fds[i]);
        return err;
    }
    return mc_build(fds, n, url, out);
}

/* ---- listener side: group connections into sessions ---- */

struct mc_pending {
    struct mc_pending *next;
    uint64_t session;
    uint64_t started_ns;
    int n, have;
    int fds[MIGR_MC_MAX_CHANNELS];
    char peer[160];
};

static void pending_free(struct mc_pending *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->fds[i] >= 0)
            close(p->fds[i]);
    free(p);
}

void migr_mc_listener_free(struct migr_listener *l)
{
    struct migr_listener_impl *li = listener_impl(l);
    struct mc_pending *p = li->mc_pending;

    while (p) {
        struct mc_pending *nx = p->next;

        pending_free(p);
        p = nx;
    }
    li->mc_pending = NULL;
}

int migr_mc_wrap(struct migr_listener *l, int fd, const char *peer, uint64_t deadline_ns,
                 struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);
    struct mc_pending **pp, *p;
    struct mc_hello h;
    uint64_t now = migr_now_ns();
    int err = migr_read_deadline(fd, &h, sizeof(h), deadline_ns);

    if (err < 0) {
        close(fd);
        if (err == -ETIMEDOUT)
            return migr_errorf(ETIMEDOUT, "accept on %s: %s sent no multi-channel hello", l->bound, peer);
        return migr_errorf(EPROTO, "accept on %s: %s closed before its multi-channel hello "
                           "(does it connect with ?channels=N?)", l->bound, peer);
    }
    uint64_t session = le64toh(h.session);
    uint32_t idx = le32toh(h.index), n = le32toh(h.channels);
    if (memcmp(h.magic, MC_HELLO_MAGIC, 8) || n < 2 || n > MIGR_MC_MAX_CHANNELS || idx >= n) {
        close(fd);
        return migr_errorf(EPROTO, "accept on %s: %s is not a multi-channel client (bad hello; "
                           "connect with ?channels=N)", l->bound, peer);
    }
    /* Forget sessions whose other channels never came. */
    for (pp = (struct mc_pending **)&li->mc_pending; (p = *pp);) {
        if (now - p->started_ns > 30000000000ull) {
            *pp = p->next;
            pending_free(p);
        } else {
            pp = &p->next;
        }
    }
    for (p = li->mc_pending; p && p->session != session; p = p->next)
        ;
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p) {
            close(fd);
            return migr_errorf(ENOMEM, "accept on %s: out of memory", l->bound);
        }
        p->session = session;
        p->started_ns = now;
        p->n = (int)n;
        for (int i = 0; i < p->n; i++)
            p->fds[i] = -1;
        snprintf(p->peer, sizeof(p->peer), "%.140s?channels=%u", peer, n);
        p->next = li->mc_pending;
        li->mc_pending = p;
    }
    if ((uint32_t)p->n != n || p->fds[idx] >= 0) {
        close(fd);
        return migr_errorf(EPROTO, "accept on %s: %s sent a conflicting hello (channel %u of %u)", l->bound,
                           peer, idx, n);
    }
    p->fds[idx] = fd;
    if (++p->have < p->n)
        return -EAGAIN;
    /* Complete: unlink, answer on channel 0, build. */
    for (pp = (struct mc_pending **)&li->mc_pending; *pp != p; pp = &(*pp)->next)
        ;
    *pp = p->next;
    err = migr_write_full(p->fds[0], MC_ACK_MAGIC, 8);
    if (err < 0) {
        pending_free(p);
        return migr_errorf_errno(-err, "accept on %s: answering %s", l->bound, peer);
    }
    err = mc_build(p->fds, p->n, p->peer, out);
    free(p);
    return err;
}
