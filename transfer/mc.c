/* migr — multi-channel TCP: tcp:HOST:PORT?channels=N (2..16), or chosen by
 * the sender (migr_url_channels_for_peer).
 *
 * One byte stream over N TCP connections (docs/format.md, "Multiple
 * channels"). Connecting: each connection sends a 32-byte hello (magic,
 * session id, channel index, channel count) right after its authentication;
 * any tcp listener tells it from a plain stream by the magic (accept.c),
 * groups the channels by session and, once all N are there, answers an
 * 8-byte ack on channel 0 ("MIGRMCA1"), or "MIGRMCN" and the most channels
 * it takes when N is more than its ?channels=.
 *
 * The stream is cut into rounds, a round into frames. A sendv below MC_SPLIT
 * bytes is a round of one frame on channel 0. A larger one is cut into
 * k <= N parts of equal size P (the last may be shorter): part j travels as
 * frame j on channel j. Every frame has a 32-byte header (sequence number,
 * length, channel; frame 0 also the round's length, P and k). Part 0 is
 * written by the caller, parts 1..k-1 by one sender thread per channel, in
 * parallel; sendv returns when every part is in its socket, so the frames
 * of the next round come after all of these.
 *
 * Reading frame 0's header tells the receiver where every byte of the round
 * is. A recvv that falls within one frame reads it in the calling thread;
 * one that spans several frames (a page batch) has one receiver thread per
 * further channel read its piece straight into the caller's iovecs while
 * the caller reads the first: no copy besides the kernel's, the channels
 * drained in parallel. Every header's sequence number, channel and length
 * are checked, so the bytes come out in exactly the order they went in.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

#define MC_HELLO_MAGIC MIGR_MC_HELLO_MAGIC
#define MC_ACK_MAGIC "MIGRMCA1"
#define MC_NAK_MAGIC "MIGRMCN"           /* + one byte: the most channels the listener takes */
#define MC_SPLIT (256u << 10)          /* smaller sends stay one frame on channel 0 */
#define MC_ROUND_MAX (256ull << 20)    /* at most this much per round of parts */

struct mc_hello {
    char magic[8];
    uint64_t session;
    uint32_t index;
    uint32_t channels;
    uint64_t reserved;
};

#define MC_HDR 32
_Static_assert(sizeof(struct mc_hello) == MIGR_MC_HELLO_LEN, "hello length known to the listener");

/* A piece of I/O for a channel's thread (sending or receiving). */
struct mc_job {
    struct iovec *iov;
    int cnt;
    int state;              /* 0 idle, 1 posted, 2 done */
    int ret;
    uint64_t bytes;
    char err[256];
};

struct mc_transport;

/* One thread per channel 1..n-1, for one direction. */
struct mc_pool {
    struct mc_transport *m;
    int rx;
    pthread_mutex_t mu;
    pthread_cond_t cv_job, cv_done;
    struct mc_job job[MIGR_MC_MAX_CHANNELS];
    pthread_t th[MIGR_MC_MAX_CHANNELS];
    int nthreads, quit;
};

struct mc_transport {
    struct migr_transport pub;   /* first member */
    struct migr_side_origin *origin;   /* side connections: plain tcp, the same way (side.c) */
    int n;
    int fd[MIGR_MC_MAX_CHANNELS];
    char name[MIGR_MC_MAX_CHANNELS][200];
    struct mc_pool txp, rxp;
    /* sending */
    uint64_t tx_seq;
    struct iovec *scratch;
    size_t scratch_cap;
    uint8_t hdr[MIGR_MC_MAX_CHANNELS][MC_HDR];
    /* receiving: the current round */
    uint64_t rx_seq;        /* sequence number of the round's frame 0 */
    uint64_t r_len, r_part, r_pos;
    int r_frames;
    int r_active;
    uint8_t r_hdr_read[MIGR_MC_MAX_CHANNELS];
    uint8_t rhdr[MIGR_MC_MAX_CHANNELS][MC_HDR];
    struct iovec *rscratch;
    size_t rscratch_cap;
};

struct mc_worker_arg {
    struct mc_pool *p;
    int ch;
};

struct mc_frame {
    uint64_t seq, round_len;
    uint32_t len, part;
    uint16_t frames, ch;
};

static void put_hdr(uint8_t *h, const struct mc_frame *f)
{
    uint64_t s = htole64(f->seq), r = htole64(f->round_len);
    uint32_t l = htole32(f->len), p = htole32(f->part), z = 0;
    uint16_t k = htole16(f->frames), c = htole16(f->ch);

    memcpy(h, &s, 8);
    memcpy(h + 8, &r, 8);
    memcpy(h + 16, &l, 4);
    memcpy(h + 20, &p, 4);
    memcpy(h + 24, &k, 2);
    memcpy(h + 26, &c, 2);
    memcpy(h + 28, &z, 4);
}

static void get_hdr(const uint8_t *h, struct mc_frame *f)
{
    memcpy(&f->seq, h, 8);
    memcpy(&f->round_len, h + 8, 8);
    memcpy(&f->len, h + 16, 4);
    memcpy(&f->part, h + 20, 4);
    memcpy(&f->frames, h + 24, 2);
    memcpy(&f->ch, h + 26, 2);
    f->seq = le64toh(f->seq);
    f->round_len = le64toh(f->round_len);
    f->len = le32toh(f->len);
    f->part = le32toh(f->part);
    f->frames = le16toh(f->frames);
    f->ch = le16toh(f->ch);
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
    struct mc_pool *pl = a->p;
    struct mc_transport *m = pl->m;
    int ch = a->ch;

    free(a);
    pthread_mutex_lock(&pl->mu);
    for (;;) {
        while (!pl->quit && pl->job[ch].state != 1)
            pthread_cond_wait(&pl->cv_job, &pl->mu);
        if (pl->quit)
            break;
        struct mc_job *j = &pl->job[ch];
        pthread_mutex_unlock(&pl->mu);
        uint64_t c0 = migr_thread_cpu_ns(), bytes = 0;
        int ret = pl->rx ? migr_fd_recvv(m->fd[ch], m->name[ch], j->iov, j->cnt, &bytes)
                         : migr_fd_sendv(m->fd[ch], m->name[ch], j->iov, j->cnt, &bytes);

        __atomic_fetch_add(pl->rx ? &m->pub.recv_cpu_ns : &m->pub.send_cpu_ns, migr_thread_cpu_ns() - c0,
                           __ATOMIC_RELAXED);
        pthread_mutex_lock(&pl->mu);
        j->ret = ret;
        j->bytes = bytes;
        if (ret < 0)
            snprintf(j->err, sizeof(j->err), "%s", migr_last_error());
        j->state = 2;
        pthread_cond_broadcast(&pl->cv_done);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

static void pool_init(struct mc_pool *pl, struct mc_transport *m, int rx)
{
    pl->m = m;
    pl->rx = rx;
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->cv_job, NULL);
    pthread_cond_init(&pl->cv_done, NULL);
}

static int pool_start(struct mc_pool *pl)
{
    struct mc_transport *m = pl->m;

    for (int ch = pl->nthreads + 1; ch < m->n; ch++) {
        struct mc_worker_arg *a = malloc(sizeof(*a));
        int e;

        if (!a)
            return migr_errorf(ENOMEM, "%s: out of memory for channel threads", m->pub.peer);
        a->p = pl;
        a->ch = ch;
        e = pthread_create(&pl->th[ch], NULL, worker, a);
        if (e) {
            free(a);
            return migr_errorf_errno(e, "%s: starting the thread of channel %d", m->pub.peer, ch);
        }
        pl->nthreads = ch;
    }
    return 0;
}

static void pool_stop(struct mc_pool *pl)
{
    if (pl->nthreads) {
        pthread_mutex_lock(&pl->mu);
        pl->quit = 1;
        pthread_cond_broadcast(&pl->cv_job);
        pthread_mutex_unlock(&pl->mu);
        for (int ch = 1; ch <= pl->nthreads; ch++)
            pthread_join(pl->th[ch], NULL);
    }
    pthread_mutex_destroy(&pl->mu);
    pthread_cond_destroy(&pl->cv_job);
    pthread_cond_destroy(&pl->cv_done);
}

/* Post jobs for channels [from, to) (iov/cnt already set). */
static void pool_post(struct mc_pool *pl, int from, int to)
{
    pthread_mutex_lock(&pl->mu);
    for (int c = from; c < to; c++)
        pl->job[c].state = 1;
    pthread_cond_broadcast(&pl->cv_job);
    pthread_mutex_unlock(&pl->mu);
}

/* Wait for them; *bytes grows by what they moved; the first failure's
 * return value (its message restored in this thread), else 0. */
static int pool_wait(struct mc_pool *pl, int from, int to, uint64_t *bytes)
{
    int bad = -1, ret = 0;

    pthread_mutex_lock(&pl->mu);
    for (int c = from; c < to; c++) {
        while (pl->job[c].state != 2)
            pthread_cond_wait(&pl->cv_done, &pl->mu);
        *bytes += pl->job[c].bytes;
        if (pl->job[c].ret < 0 && bad < 0)
            bad = c;
        pl->job[c].state = 0;
    }
    pthread_mutex_unlock(&pl->mu);
    if (bad >= 0) {
        ret = pl->job[bad].ret;
        migr_errorf(-ret, "%s", pl->job[bad].err);
    }
    return ret;
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
        uint64_t part = parts == 1 ? round : MIGR_ALIGN_UP((round + (uint64_t)parts - 1) / (uint64_t)parts, MIGR_PAGE_SIZE);
        struct iovec *s = m->scratch;
        uint64_t left = round, moved = 0;
        int used = 0, ret, np = 0, first[MIGR_MC_MAX_CHANNELS], count[MIGR_MC_MAX_CHANNELS];

        if (parts > 1 && m->txp.nthreads < m->n - 1 && (ret = pool_start(&m->txp)) < 0)
            return ret;
        /* Lay out every part: [header, slices...]. */
        for (; left; np++) {
            uint64_t len = MIGR_MIN(part, left);
            struct mc_frame f = { .seq = m->tx_seq + (uint64_t)np, .len = (uint32_t)len, .ch = (uint16_t)np };

            first[np] = used;
            s[used].iov_base = m->hdr[np];
            s[used++].iov_len = MC_HDR;
            used += slice(iov, iovcnt, &i, &off, (size_t)len, s + used);
            count[np] = used - first[np];
            left -= len;
            if (np == 0) {
                f.round_len = round;
                f.part = (uint32_t)part;
            }
            put_hdr(m->hdr[np], &f);
        }
        /* Frame 0 announces how many frames the round has. */
        struct mc_frame f0 = { .seq = m->tx_seq, .round_len = round, .len = (uint32_t)MIGR_MIN(part, round),
                               .part = (uint32_t)part, .frames = (uint16_t)np, .ch = 0 };
        put_hdr(m->hdr[0], &f0);
        m->tx_seq += (uint64_t)np;
        for (int p = 1; p < np; p++) {
            m->txp.job[p].iov = s + first[p];
            m->txp.job[p].cnt = count[p];
        }
        if (np > 1)
            pool_post(&m->txp, 1, np);
        ret = migr_fd_sendv(m->fd[0], m->name[0], s + first[0], count[0], &moved);
        if (np > 1) {
            int r2 = pool_wait(&m->txp, 1, np, &moved);

            if (ret == 0)
                ret = r2;
        }
        /* bytes_sent counts the stream, not the frame headers. */
        t->bytes_sent += moved > (uint64_t)np * MC_HDR ? moved - (uint64_t)np * MC_HDR : 0;
        if (ret < 0)
            return ret;
        total -= round;
    }
    return 0;
}

/* Read frame 0's header on channel 0: the layout of the next round. */
static int next_round(struct mc_transport *m)
{
    struct iovec v = { m->rhdr[0], MC_HDR };
    struct mc_frame f;
    int ret = migr_fd_recvv(m->fd[0], m->name[0], &v, 1, NULL);

    if (ret < 0)
        return ret;
    get_hdr(m->rhdr[0], &f);
    if (f.seq != m->rx_seq || f.ch != 0 || f.frames < 1 || f.frames > m->n || f.round_len == 0 ||
        f.part == 0 || f.len != MIGR_MIN((uint64_t)f.part, f.round_len) ||
        (uint64_t)f.part * f.frames < f.round_len || (uint64_t)f.part * (f.frames - 1u) >= f.round_len)
        return migr_errorf(EPROTO, "recv %s: bad frame (seq %llu, expected %llu; channel %u; %u frames of %u "
                           "bytes for a %llu-byte round)", m->name[0], (unsigned long long)f.seq,
                           (unsigned long long)m->rx_seq, f.ch, f.frames, f.part, (unsigned long long)f.round_len);
    m->r_len = f.round_len;
    m->r_part = f.part;
    m->r_frames = f.frames;
    m->r_pos = 0;
    m->r_active = 1;
    memset(m->r_hdr_read, 0, sizeof(m->r_hdr_read));
    m->r_hdr_read[0] = 1;
    return 0;
}

static int check_follower(struct mc_transport *m, int j)
{
    struct mc_frame f;
    uint64_t len = MIGR_MIN(m->r_part, m->r_len - (uint64_t)j * m->r_part);

    get_hdr(m->rhdr[j], &f);
    if (f.seq != m->rx_seq + (uint64_t)j || f.ch != j || f.len != len || f.frames || f.round_len)
        return migr_errorf(EPROTO, "recv %s: bad frame (seq %llu, expected %llu; channel %u; %u bytes, expected "
                           "%llu)", m->name[j], (unsigned long long)f.seq, (unsigned long long)(m->rx_seq + (uint64_t)j),
                           f.ch, f.len, (unsigned long long)len);
    return 0;
}

static int mc_recvv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    struct mc_transport *m = (struct mc_transport *)t;
    uint64_t total = 0, want, b0 = t->bytes_recv;
    size_t off = 0;
    int i = 0, ret = 0, ch = 0;

    if (iovcnt < 0)
        return migr_errorf(EINVAL, "recv %s: negative iovec count %d", t->peer, iovcnt);
    for (int k = 0; k < iovcnt; k++)
        total += iov[k].iov_len;
    want = total;
    if (grow(&m->rscratch, &m->rscratch_cap, (size_t)iovcnt + 2 * MIGR_MC_MAX_CHANNELS + 2) < 0)
        return migr_errorf(ENOMEM, "recv %s: out of memory", t->peer);
    while (total && ret == 0) {
        if (!m->r_active || m->r_pos == m->r_len) {
            if (m->r_active)
                m->rx_seq += (uint64_t)m->r_frames;
            m->r_active = 0;
            ch = 0;
            if ((ret = next_round(m)) < 0)
                break;
        }
        uint64_t take = MIGR_MIN(total, m->r_len - m->r_pos), a = m->r_pos, e = a + take;
        int j0 = (int)(a / m->r_part), j1 = (int)((e - 1) / m->r_part), used = 0;
        int first[MIGR_MC_MAX_CHANNELS], count[MIGR_MC_MAX_CHANNELS];
        struct iovec *s = m->rscratch;
        uint64_t moved = 0, hdrs = 0;

        /* The piece of every frame this window covers, with the header of
         * a follower frame not read yet in front. */
        for (int j = j0; j <= j1; j++) {
            uint64_t fa = MIGR_MAX(a, (uint64_t)j * m->r_part), fe = MIGR_MIN(e, (uint64_t)(j + 1) * m->r_part);

            first[j] = used;
            if (!m->r_hdr_read[j]) {
                s[used].iov_base = m->rhdr[j];
                s[used++].iov_len = MC_HDR;
                hdrs += MC_HDR;
            }
            used += slice(iov, iovcnt, &i, &off, (size_t)(fe - fa), s + used);
            count[j] = used - first[j];
        }
        if (j1 > j0) {
            for (int j = j0 + 1; j <= j1; j++) {
                m->rxp.job[j].iov = s + first[j];
                m->rxp.job[j].cnt = count[j];
            }
            if (m->rxp.nthreads < m->n - 1 && (ret = pool_start(&m->rxp)) < 0)
                return ret;
            pool_post(&m->rxp, j0 + 1, j1 + 1);
        }
        ch = j0;
        ret = migr_fd_recvv(m->fd[j0], m->name[j0], s + first[j0], count[j0], &moved);
        if (j1 > j0) {
            int r2 = pool_wait(&m->rxp, j0 + 1, j1 + 1, &moved);

            if (ret == 0) {
                ret = r2;
                ch = j0 + 1;
            }
        }
        for (int j = j0; j <= j1 && ret == 0; j++) {
            if (!m->r_hdr_read[j]) {
                m->r_hdr_read[j] = 1;
                ret = check_follower(m, j);
            }
        }
        moved = moved > hdrs ? moved - hdrs : 0;
        t->bytes_recv += moved;
        m->r_pos += take;
        total -= take;
    }
    if (ret == -EPIPE)
        return migr_errorf(EPIPE, "recv %s: peer closed %s (%llu of %llu bytes received)", t->peer,
                           ch ? "a channel" : "channel 0", (unsigned long long)(t->bytes_recv - b0),
                           (unsigned long long)want);
    return ret;
}

static void mc_shutdown(struct migr_transport *t)
{
    struct mc_transport *m = (struct mc_transport *)t;

    for (int i = 0; i < m->n; i++)
        (void)shutdown(m->fd[i], SHUT_RDWR);
}

static void mc_free(struct mc_transport *m)
{
    pool_stop(&m->txp);
    pool_stop(&m->rxp);
    for (int i = 0; i < m->n; i++)
        if (m->fd[i] >= 0)
            close(m->fd[i]);
    free(m->scratch);
    free(m->rscratch);
    migr_side_origin_free(m->origin);
    free(m);
}

static void mc_close(struct migr_transport *t)
{
    mc_free((struct mc_transport *)t);
}

static long long mc_outq(struct migr_transport *t)
{
    struct mc_transport *m = (struct mc_transport *)t;
    long long sum = 0;

    for (int i = 0; i < m->n; i++) {
        int q = 0;

        if (ioctl(m->fd[i], SIOCOUTQ, &q) < 0)
            return migr_errorf_errno(errno, "%s: SIOCOUTQ", m->name[i]);
        sum += q;
    }
    return sum;
}

static struct migr_side_origin **mc_origin(struct migr_transport *t)
{
    return &((struct mc_transport *)t)->origin;
}

static const struct migr_transport_ops mc_ops = {
    .name = "tcp",
    .sendv = mc_sendv,
    .recvv = mc_recvv,
    .shutdown = mc_shutdown,
    .close = mc_close,
    .outq = mc_outq,
    .caps = MIGR_TCAP_SIDE,
    .origin = mc_origin,
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
    pool_init(&m->txp, m, 0);
    pool_init(&m->rxp, m, 1);
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

/* The listener's answer on channel 0: the ack, or a refusal naming how
 * many channels it takes. 0 or -errno with a message. */
static int read_answer(int fd, const char *url, int n)
{
    char ack[8];
    int err = migr_read_deadline(fd, ack, sizeof(ack), migr_now_ns() + 10000000000ull);

    if (err == -ETIMEDOUT)
        return migr_errorf(ETIMEDOUT, "connect %s: no multi-channel answer within 10 s (an older migr listening "
                           "without ?channels=N takes one stream only: connect with ?channels=1)", url);
    if (err < 0)
        return migr_errorf(EPROTO, "connect %s: the listener closed the connection during the multi-channel "
                           "handshake (an older migr listening without ?channels=N takes one stream only: "
                           "connect with ?channels=1)", url);
    if (!memcmp(ack, MC_NAK_MAGIC, 7))
        return migr_errorf(EPROTO, "connect %s: the listener takes at most %u channels, not %d (connect with "
                           "?channels=%u)", url, (unsigned char)ack[7], n, (unsigned char)ack[7]);
    if (memcmp(ack, MC_ACK_MAGIC, 8))
        return migr_errorf(EPROTO, "connect %s: bad multi-channel answer", url);
    return 0;
}

int migr_mc_connect(const struct migr_url *u, const char *url, const struct migr_link_cfg *cfg,
                    struct migr_transport **out)
{
    int n = (int)u->channels, fds[MIGR_MC_MAX_CHANNELS], err = 0;
    uint64_t session = new_session();
    uint64_t hs_deadline = migr_now_ns() + (uint64_t)(cfg->handshake_ms > 0 ? cfg->handshake_ms : 10000) * 1000000ull;
    struct migr_url plain = *u;
    struct migr_auth a0, a;

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
    /* With a key every channel authenticates on its own; channel 0's
     * handshake keys the encryption of the one stream. Each channel's hello
     * follows its own handshake at once: the listener tells a group from a
     * plain stream by it, and may take a long silence for a plain stream. */
    for (int i = 0; i < n && !err; i++) {
        struct mc_hello h = { .magic = MC_HELLO_MAGIC, .session = htole64(session), .index = htole32((uint32_t)i),
                              .channels = htole32((uint32_t)n) };

        if (cfg->key) {
            err = migr_auth_client(fds[i], url, cfg->key, cfg->encrypt, hs_deadline, i ? &a : &a0);
            if (err < 0)
                err = migr_error_prefix(-err, "channel %d of %d", i, n);
            if (i)
                migr_auth_wipe(&a);
            if (err < 0)
                break;
        }
        err = migr_write_full(fds[i], &h, sizeof(h));
        if (err < 0)
            err = migr_errorf_errno(-err, "connect %s: hello on channel %d", url, i);
    }
    if (!err)
        err = read_answer(fds[0], url, n);
    if (err < 0) {
        for (int i = 0; i < n; i++)
            close(fds[i]);
        if (cfg->key)
            migr_auth_wipe(&a0);
        return err;
    }
    err = mc_build(fds, n, url, out);
    if (!err && cfg->key)
        err = migr_link_finish(out, &a0, 1);
    if (cfg->key)
        migr_auth_wipe(&a0);
    return err;
}

/* ---- listener side: group connections into sessions ---- */

struct mc_pending {
    struct mc_pending *next;
    uint64_t session;
    uint64_t started_ns;
    int n, have;
    int fds[MIGR_MC_MAX_CHANNELS];
    char peer[160];
    int authed;                 /* channel 0 authenticated: auth0 keys the stream */
    struct migr_auth auth0;
};

static void pending_free(struct mc_pending *p)
{
    migr_auth_wipe(&p->auth0);
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

int migr_mc_wrap(struct migr_listener *l, int fd, const char *peer, const uint8_t *hello,
                 const struct migr_auth *a, struct migr_transport **out)
{
    struct migr_listener_impl *li = listener_impl(l);
    struct mc_pending **pp, *p;
    struct mc_hello h;
    uint64_t now = migr_now_ns();
    int err;

    memcpy(&h, hello, sizeof(h));
    uint64_t session = le64toh(h.session);
    uint32_t idx = le32toh(h.index), n = le32toh(h.channels);
    /* The listener's channels=N is the largest group it takes (1: plain streams only). */
    uint32_t max = l->url.channels ? l->url.channels : MIGR_MC_MAX_CHANNELS;
    const char nak[8] = { 'M', 'I', 'G', 'R', 'M', 'C', 'N', (char)max };
    if (memcmp(h.magic, MC_HELLO_MAGIC, 8) || n < 2 || n > MIGR_MC_MAX_CHANNELS || idx >= n) {
        close(fd);
        return migr_errorf(EPROTO, "accept on %s: %s is not a multi-channel client (bad hello: channel %u of %u)",
                           l->bound, peer, idx, n);
    }
    if (n > max) {   /* told on channel 0 (where the client waits for the answer), then closed */
        if (idx == 0)
            (void)!send(fd, nak, sizeof(nak), MSG_DONTWAIT | MSG_NOSIGNAL);
        close(fd);
        return migr_errorf(EPROTO, "accept on %s: %s asks for %u channels; this listener takes at most %u "
                           "(listen with ?channels=%u, or connect with ?channels=%u)", l->bound, peer, n, max, n, max);
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
    if (idx == 0 && a) {
        p->auth0 = *a;
        p->authed = 1;
    }
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
    if (!err && p->authed)
        err = migr_link_finish(out, &p->auth0, 0);
    migr_auth_wipe(&p->auth0);
    free(p);
    return err;
}
