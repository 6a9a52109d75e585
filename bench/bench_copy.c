/* bench_copy: ways of moving 4 KiB pages between two processes on one host.
 *
 * Every strategy moves the same stream: a source buffer of --buf bytes (out
 * of the caches, 64 MiB) of 4 KiB pages, again and again until --total bytes
 * went, into a destination buffer of the same size in another process (the
 * memcpy variants copy within one process: they are the ceiling). A batch is
 * what one call moves (4 KiB .. 2 MiB; transports get it as an iovec of
 * 4 KiB pages, like the engine's page records). Each run ends with the
 * receiver's checksum of its buffer, which must equal the sender's: a fast
 * but wrong copy cannot win. The machine's single-thread memcpy bandwidth is
 * measured in the same run and every figure is also given as its ratio.
 *
 *   bench_copy [--quick] [--reps N] [--total SIZE] [--only TEXT] [--json PATH]
 *
 * Output: a table (MB/s and % of memcpy per strategy and batch), JSON
 * (bench/results/copy.json), and the two aims of issue 5 checked.
 */
#define BENCH_NAME "bench_copy"
#include "benchlib.h"

#include <fcntl.h>
#include <getopt.h>
#include <immintrin.h>
#include <linux/userfaultfd.h>
#include <liburing.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/errqueue.h>
#include <netinet/in.h>

#include "migr/transport.h"

#define PAGE 4096u
#define MAX_BATCH (2u << 20)
#define RAW_STREAMS 4
#define MC_CHANNELS 4

static uint64_t buf_bytes = 64ull << 20;
static uint64_t total_bytes = 256ull << 20;
static uint8_t *src;            /* the sender's pages (parent) */
static uint64_t src_sum;
static const char *shm_ring;    /* --ring SIZE for the shm: strategy */

/* ---- helpers ---- */

static uint64_t sum64(const uint8_t *p, uint64_t len)
{
    uint64_t s = 0;
    for (uint64_t i = 0; i < len; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        s = s * 31 + v;
    }
    return s;
}

static void fill_src(void)
{
    unsigned long long r = 0x243F6A8885A308D3ull;
    for (uint64_t i = 0; i < buf_bytes; i += 8) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        memcpy(src + i, &r, 8);
    }
    src_sum = sum64(src, buf_bytes);
}

/* The 4 KiB pages of [off, off+len) of base as iovecs; returns the count. */
static int page_iov(uint8_t *base, uint64_t off, uint64_t len, struct iovec *iov)
{
    int n = 0;
    for (uint64_t o = 0; o < len; o += PAGE) {
        iov[n].iov_base = base + off + o;
        iov[n++].iov_len = MIGR_MIN(PAGE, len - o);
    }
    return n;
}

static int send_msg(int fd, const void *p, size_t n)
{
    return migr_write_full(fd, p, n);
}

static int recv_msg(int fd, void *p, size_t n)
{
    return read_timeout(fd, p, n, 60000);
}

/* ---- memcpy variants (one process) ---- */

static void copy_libc(uint8_t *d, const uint8_t *s, size_t n)
{
    memcpy(d, s, n);
}

static void copy_movsb(uint8_t *d, const uint8_t *s, size_t n)
{
    __asm__ __volatile__("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

__attribute__((target("avx2"))) static void copy_avx2_nt(uint8_t *d, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(s + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(s + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(s + i + 64));
        __m256i e = _mm256_loadu_si256((const __m256i *)(s + i + 96));
        _mm256_stream_si256((__m256i *)(d + i), a);
        _mm256_stream_si256((__m256i *)(d + i + 32), b);
        _mm256_stream_si256((__m256i *)(d + i + 64), c);
        _mm256_stream_si256((__m256i *)(d + i + 96), e);
    }
    _mm_sfence();
}

__attribute__((target("avx512f"))) static void copy_avx512_nt(uint8_t *d, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i += 256) {
        __m512i a = _mm512_loadu_si512((const void *)(s + i));
        __m512i b = _mm512_loadu_si512((const void *)(s + i + 64));
        __m512i c = _mm512_loadu_si512((const void *)(s + i + 128));
        __m512i e = _mm512_loadu_si512((const void *)(s + i + 192));
        _mm512_stream_si512((void *)(d + i), a);
        _mm512_stream_si512((void *)(d + i + 64), b);
        _mm512_stream_si512((void *)(d + i + 128), c);
        _mm512_stream_si512((void *)(d + i + 192), e);
    }
    _mm_sfence();
}

typedef void (*copy_fn)(uint8_t *, const uint8_t *, size_t);

struct mc_arg {
    copy_fn fn;
    uint8_t *dst;
    uint64_t off, len, batch;
};

static void *memcpy_thread(void *p)
{
    struct mc_arg *a = p;
    for (uint64_t done = 0; done < a->len; done += a->batch) {
        uint64_t o = (a->off + done) % buf_bytes;
        a->fn(a->dst + o, src + o, (size_t)MIGR_MIN(a->batch, a->len - done));
    }
    return NULL;
}

static uint8_t *mc_dst;

static double run_memcpy(copy_fn fn, int threads, uint64_t batch)
{
    if (!mc_dst) {
        if (!(mc_dst = map_buf(buf_bytes)))
            return -1;
        /* Not shared copy-on-write with the children forked later. */
        (void)madvise(mc_dst, buf_bytes, MADV_DONTFORK);
    }
    struct mc_arg a[2];
    pthread_t th[2];
    uint64_t t0 = migr_now_ns();
    for (int i = 0; i < threads; i++) {
        a[i] = (struct mc_arg){fn, mc_dst, i * (total_bytes / threads), total_bytes / threads, batch};
        if (threads == 1)
            memcpy_thread(&a[i]);
        else if (pthread_create(&th[i], NULL, memcpy_thread, &a[i]))
            return -1;
    }
    for (int i = 0; threads > 1 && i < threads; i++)
        pthread_join(th[i], NULL);
    uint64_t ns = migr_now_ns() - t0;
    return sum64(mc_dst, buf_bytes) == src_sum ? mbps(total_bytes, ns) : -1;
}

/* ---- two processes ---- */

enum kind {
    K_PIPE, K_VMSPLICE, K_UNIX, K_TCP, K_TCP_RAW1, K_TCP_RAW_N, K_MC, K_SHM, K_URING, K_ZC, K_PVM_WRITE, K_PVM_READ, K_UFFD, K_MEMFD,
    K_UNIX_UR, K_TCP_UR,  /* the transports with ?uring=1 */
    K_TCP_ENC, K_MC_ENC   /* with ?encrypt=1 (a key as the process default) */
};

struct ctx {
    enum kind kind;
    uint64_t batch, total;
    int ctl;                     /* socketpair to the child */
    int nraw;                    /* raw TCP: connections (and threads per side) */
    int pipe_fd[2];
    struct migr_listener *l;
    pid_t child;
};

/* Receive total bytes in batches into dst (cyclic). 0 or -1. */
static int rx_stream(struct ctx *c, struct migr_transport *t, int fd, uint8_t *dst)
{
    static struct iovec iov[MAX_BATCH / PAGE];
    for (uint64_t done = 0; done < c->total;) {
        uint64_t o = done % buf_bytes, len = MIGR_MIN(c->batch, c->total - done);
        if (t) {
            int n = page_iov(dst, o, len, iov);
            if (migr_transport_recvv(t, iov, n) < 0)
                return -1;
        } else if (migr_read_full(fd, dst + o, len) < 0) {
            return -1;
        }
        done += len;
    }
    return 0;
}

static int tx_stream(struct ctx *c, struct migr_transport *t, int fd)
{
    static struct iovec iov[MAX_BATCH / PAGE];
    for (uint64_t done = 0; done < c->total;) {
        uint64_t o = done % buf_bytes, len = MIGR_MIN(c->batch, c->total - done);
        if (t) {
            int n = page_iov(src, o, len, iov);
            if (migr_transport_sendv(t, iov, n) < 0)
                return -1;
        } else if (c->kind == K_VMSPLICE) {
            int n = page_iov(src, o, len, iov), i = 0;
            while (i < n) {
                ssize_t w = vmsplice(fd, iov + i, (unsigned long)MIGR_MIN(n - i, 1024), 0);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    return -1;
                /* skip what went (whole and partial pages) */
                while (w > 0) {
                    if ((size_t)w >= iov[i].iov_len) {
                        w -= (ssize_t)iov[i].iov_len;
                        i++;
                    } else {
                        iov[i].iov_base = (uint8_t *)iov[i].iov_base + w;
                        iov[i].iov_len -= (size_t)w;
                        w = 0;
                    }
                }
            }
        } else if (migr_write_full(fd, src + o, len) < 0) {
            return -1;
        }
        done += len;
    }
    return 0;
}

/* Raw multi-stream TCP: one thread per connection, each moving its share. */
struct raw_arg {
    struct ctx *c;
    int fd, idx, rx;
    uint8_t *dst;
    int ret;
};

static void *raw_thread(void *p)
{
    struct raw_arg *a = p;
    uint64_t share = a->c->total / (uint64_t)a->c->nraw, base = share * (uint64_t)a->idx;
    a->ret = 0;
    for (uint64_t done = 0; done < share;) {
        uint64_t o = (base + done) % buf_bytes, len = MIGR_MIN(a->c->batch, share - done);
        len = MIGR_MIN(len, buf_bytes - o);
        int r = a->rx ? migr_read_full(a->fd, a->dst + o, len) : migr_write_full(a->fd, src + o, len);
        if (r < 0) {
            a->ret = -1;
            return NULL;
        }
        done += len;
    }
    return NULL;
}

static int raw_n(struct ctx *c, int *fds, int rx, uint8_t *dst)
{
    struct raw_arg a[RAW_STREAMS];
    pthread_t th[RAW_STREAMS];
    int ret = 0;
    for (int i = 0; i < c->nraw; i++) {
        a[i] = (struct raw_arg){c, fds[i], i, rx, dst, 0};
        if (pthread_create(&th[i], NULL, raw_thread, &a[i]))
            return -1;
    }
    for (int i = 0; i < c->nraw; i++) {
        pthread_join(th[i], NULL);
        ret |= a[i].ret;
    }
    return ret;
}

static int uring_io(struct io_uring *ring, int fd, uint8_t *base, uint64_t off, uint64_t len, int rx)
{
    while (len) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        struct io_uring_cqe *cqe;
        if (rx)
            io_uring_prep_read_fixed(sqe, fd, base + off, (unsigned)len, 0, 0);
        else
            io_uring_prep_write_fixed(sqe, fd, base + off, (unsigned)len, 0, 0);
        if (io_uring_submit_and_wait(ring, 1) < 0 || io_uring_wait_cqe(ring, &cqe) < 0)
            return -1;
        int r = cqe->res;
        io_uring_cqe_seen(ring, cqe);
        if (r == -EINTR || r == -EAGAIN)
            continue;
        if (r <= 0)
            return -1;
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    return 0;
}

static int uring_stream(struct ctx *c, int fd, uint8_t *base, int rx)
{
    struct io_uring ring;
    struct iovec reg = {base, buf_bytes};
    if (io_uring_queue_init(8, &ring, 0) < 0)
        return -1;
    int ret = io_uring_register_buffers(&ring, &reg, 1);
    for (uint64_t done = 0; ret == 0 && done < c->total;) {
        uint64_t o = done % buf_bytes, len = MIGR_MIN(c->batch, c->total - done);
        ret = uring_io(&ring, fd, base, o, len, rx);
        done += len;
    }
    io_uring_queue_exit(&ring);
    return ret;
}

/* MSG_ZEROCOPY sender: every send is pinned and completed asynchronously;
 * completions come on the error queue and must be reaped (or sends fail
 * with ENOBUFS). Counts sends the kernel said it had to copy anyway. */
static uint64_t zc_sends, zc_done, zc_copied;

static int zc_reap(int fd, int block)
{
    for (;;) {
        char cbuf[128];
        struct msghdr mh = {.msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
        if (block) {
            struct pollfd p = {.fd = fd, .events = 0};
            if (poll(&p, 1, 1000) <= 0)
                return -1;
        }
        if (recvmsg(fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
            struct sock_extended_err e;
            if (!((h->cmsg_level == SOL_IP && h->cmsg_type == IP_RECVERR) ||
                  (h->cmsg_level == SOL_IPV6 && h->cmsg_type == IPV6_RECVERR)))
                continue;
            memcpy(&e, CMSG_DATA(h), sizeof(e));
            if (e.ee_origin != SO_EE_ORIGIN_ZEROCOPY)
                continue;
            uint64_t n = (uint64_t)(e.ee_data - e.ee_info) + 1;
            zc_done += n;
            if (e.ee_code & SO_EE_CODE_ZEROCOPY_COPIED)
                zc_copied += n;
        }
        if (block)
            return 0;
    }
}

static int zc_stream(struct ctx *c, int fd)
{
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)) < 0)
        return -1;
    zc_sends = zc_done = zc_copied = 0;
    for (uint64_t done = 0; done < c->total;) {
        uint64_t o = done % buf_bytes, len = MIGR_MIN(c->batch, c->total - done);
        ssize_t w = send(fd, src + o, len, MSG_ZEROCOPY | MSG_NOSIGNAL);
        if (w < 0 && errno == ENOBUFS) {
            if (zc_reap(fd, 1) < 0)
                return -1;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        zc_sends++;
        done += (uint64_t)w;
        if (zc_reap(fd, 0) < 0)
            return -1;
    }
    while (zc_done < zc_sends)
        if (zc_reap(fd, 1) < 0)
            return -1;
    return 0;
}

static const char *kind_url(enum kind k, char *buf, size_t cap)
{
    switch (k) {
    case K_UNIX: snprintf(buf, cap, "unix:@migr-bench-copy-%d", getpid()); break;
    case K_UNIX_UR: snprintf(buf, cap, "unix:@migr-bench-copy-%d?uring=1", getpid()); break;
    case K_TCP_UR: snprintf(buf, cap, "tcp:127.0.0.1:0?uring=1"); break;
    case K_TCP_ENC: snprintf(buf, cap, "tcp:127.0.0.1:0?encrypt=1"); break;
    case K_MC_ENC: snprintf(buf, cap, "tcp:127.0.0.1:0?channels=%d&encrypt=1", MC_CHANNELS); break;
    case K_SHM:
        snprintf(buf, cap, "shm:migr-bench-copy-%d%s%s", getpid(), shm_ring ? "?ring=" : "", shm_ring ? shm_ring : "");
        break;
    case K_MC: snprintf(buf, cap, "tcp:127.0.0.1:0?channels=%d", MC_CHANNELS); break;
    case K_TCP: case K_URING: case K_ZC: case K_TCP_RAW1: case K_TCP_RAW_N: snprintf(buf, cap, "tcp:127.0.0.1:0"); break;
    case K_MEMFD: snprintf(buf, cap, "unix:@migr-bench-copy-memfd-%d", getpid()); break;
    default: return NULL;
    }
    return buf;
}

/* The receiving child. Says 'r' when ready, then its checksum when done. */
static int child_main(struct ctx *c, const char *bound)
{
    uint8_t *dst = NULL;
    struct migr_transport *t = NULL, *ts[RAW_STREAMS] = {0};
    int ret = -1, fd = -1;

    if (c->kind != K_UFFD && c->kind != K_MEMFD && c->kind != K_PVM_READ && !(dst = map_buf(buf_bytes)))
        return 1;
    switch (c->kind) {
    case K_PIPE:
    case K_VMSPLICE:
        close(c->pipe_fd[1]);
        fd = c->pipe_fd[0];
        break;
    case K_UNIX: case K_TCP: case K_MC: case K_SHM: case K_URING: case K_ZC: case K_MEMFD: case K_UNIX_UR: case K_TCP_UR: case K_TCP_ENC:
    case K_MC_ENC:
        if (migr_transport_connect(bound, &t) < 0)
            return 2;
        fd = t->fd;
        break;
    case K_TCP_RAW1: case K_TCP_RAW_N:
        for (int i = 0; i < c->nraw; i++)
            if (migr_transport_connect(bound, &ts[i]) < 0)
                return 2;
        break;
    case K_PVM_WRITE:
        if (send_msg(c->ctl, &dst, sizeof(dst)) < 0)
            return 3;
        break;
    case K_PVM_READ: {
        /* This child is the sender here: its pages are the source. */
        uint8_t *s = src;
        if (send_msg(c->ctl, &s, sizeof(s)) < 0)
            return 3;
        break;
    }
    case K_UFFD: {
        dst = mmap(NULL, buf_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
        if (u < 0)
            u = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
        struct uffdio_api api = {.api = UFFD_API};
        struct uffdio_register reg = {.range = {(uint64_t)(uintptr_t)dst, buf_bytes}, .mode = UFFDIO_REGISTER_MODE_MISSING};
        struct migr_transport *ct;
        if (dst == MAP_FAILED || u < 0 || ioctl(u, UFFDIO_API, &api) < 0 || ioctl(u, UFFDIO_REGISTER, &reg) < 0 ||
            migr_transport_from_fd(dup(c->ctl), "unix", "ctl", &ct) < 0 || migr_transport_send_fds(ct, &u, 1) < 0 ||
            send_msg(c->ctl, &dst, sizeof(dst)) < 0)
            return 3;
        break;
    }
    default:
        break;
    }
    if (send_msg(c->ctl, "r", 1) < 0)
        return 4;
    switch (c->kind) {
    case K_PIPE: case K_VMSPLICE: case K_URING: case K_ZC:
        ret = c->kind == K_URING ? uring_stream(c, fd, dst, 1) : rx_stream(c, NULL, fd, dst);
        break;
    case K_UNIX: case K_TCP: case K_MC: case K_SHM: case K_UNIX_UR: case K_TCP_UR: case K_TCP_ENC: case K_MC_ENC:
        ret = rx_stream(c, t, -1, dst);
        break;
    case K_TCP_RAW1: case K_TCP_RAW_N: {
        int fds[RAW_STREAMS];
        for (int i = 0; i < c->nraw; i++)
            fds[i] = ts[i]->fd;
        ret = raw_n(c, fds, 1, dst);
        break;
    }
    case K_PVM_WRITE: case K_PVM_READ: case K_UFFD: {
        char done;
        ret = recv_msg(c->ctl, &done, 1);
        break;
    }
    case K_MEMFD: {
        int mfd;
        ret = migr_transport_recv_fds(t, &mfd, 1);
        if (ret == 0) {
            dst = mmap(NULL, buf_bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, mfd, 0);
            ret = dst == MAP_FAILED ? -1 : 0;
            close(mfd);
        }
        break;
    }
    }
    /* Done: the clock stops at this message; the checksum follows. */
    if (ret < 0 || send_msg(c->ctl, "d", 1) < 0)
        return 5;
    uint64_t s = c->kind == K_PVM_READ ? 0 : sum64(dst, buf_bytes);
    if (send_msg(c->ctl, &s, sizeof(s)) < 0)
        return 6;
    char bye;
    (void)recv_msg(c->ctl, &bye, 1);
    migr_transport_close(t);
    for (int i = 0; i < RAW_STREAMS; i++)
        migr_transport_close(ts[i]);
    return 0;
}

static double run_pair(enum kind kind, uint64_t batch)
{
    struct ctx c = {.kind = kind, .batch = batch, .total = total_bytes, .pipe_fd = {-1, -1},
                    .nraw = kind == K_TCP_RAW1 ? 1 : RAW_STREAMS};
    char ubuf[128];
    const char *url = kind_url(kind, ubuf, sizeof(ubuf));
    int sp[2];
    double r = -1;
    uint8_t *dst = NULL;
    struct migr_transport *t = NULL, *ts[RAW_STREAMS] = {0};
    int fd = -1, ok = 0, u = -1;
    uint8_t *remote = NULL;
    char ch;

    if (kind == K_UFFD || kind == K_MEMFD)
        c.total = buf_bytes;   /* a region is filled (or handed over) once */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        return -1;
    if ((kind == K_PIPE || kind == K_VMSPLICE) && pipe2(c.pipe_fd, O_CLOEXEC) < 0)
        return -1;
    if (kind == K_PIPE || kind == K_VMSPLICE)
        (void)fcntl(c.pipe_fd[1], F_SETPIPE_SZ, 1 << 20);
    if (kind == K_TCP_ENC || kind == K_MC_ENC) {
        /* Both processes (the child inherits it) authenticate with it. */
        static const char secret[] = "bench_copy key, not a secret....";
        struct migr_key *k;
        struct migr_link_opts lo = {0};
        if (migr_key_new(secret, sizeof(secret) - 1, &k) < 0)
            return -1;
        lo.key = k;
        int e = migr_link_set_default(&lo);
        migr_key_free(k);
        if (e < 0)
            return -1;
    } else if (migr_link_set_default(NULL) < 0) {
        return -1;
    }
    if (url && migr_listener_open(url, &c.l) < 0) {
        fprintf(stderr, "bench_copy: %s\n", migr_last_error());
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(sp[0]);
        c.ctl = sp[1];
        _exit(child_main(&c, c.l ? c.l->bound : NULL));
    }
    close(sp[1]);
    c.ctl = sp[0];
    c.child = pid;
    /* After the fork: pages the child shares copy-on-write would fault. */
    if (kind == K_PVM_READ && !(dst = map_buf(buf_bytes)))
        goto out;

    if (kind == K_PIPE || kind == K_VMSPLICE) {
        close(c.pipe_fd[0]);
        fd = c.pipe_fd[1];
    } else if (kind == K_TCP_RAW1 || kind == K_TCP_RAW_N) {
        for (int i = 0; i < c.nraw; i++)
            if (migr_listener_accept(c.l, 10000, &ts[i]) < 0)
                goto out;
    } else if (c.l) {
        if (migr_listener_accept(c.l, 10000, &t) < 0)
            goto out;
        fd = t->fd;
        if ((kind == K_UNIX_UR || kind == K_TCP_UR) && !t->uring)
            fprintf(stderr, "bench_copy: %s: %s\n", url, t->uring_note);
    }
    if (kind == K_PVM_WRITE || kind == K_PVM_READ) {
        if (recv_msg(c.ctl, &remote, sizeof(remote)) < 0)
            goto out;
    } else if (kind == K_UFFD) {
        struct migr_transport *ct;
        if (migr_transport_from_fd(dup(c.ctl), "unix", "ctl", &ct) < 0 || migr_transport_recv_fds(ct, &u, 1) < 0 ||
            recv_msg(c.ctl, &remote, sizeof(remote)) < 0)
            goto out;
        migr_transport_close(ct);
    }
    if (recv_msg(c.ctl, &ch, 1) < 0 || ch != 'r')
        goto out;

    uint64_t t0 = migr_now_ns();
    int ret = 0;
    switch (kind) {
    case K_PIPE: case K_VMSPLICE:
        ret = tx_stream(&c, NULL, fd);
        break;
    case K_URING:
        ret = uring_stream(&c, fd, src, 0);
        break;
    case K_ZC:
        ret = zc_stream(&c, fd);
        break;
    case K_UNIX: case K_TCP: case K_MC: case K_SHM: case K_UNIX_UR: case K_TCP_UR: case K_TCP_ENC: case K_MC_ENC:
        ret = tx_stream(&c, t, -1);
        break;
    case K_TCP_RAW1: case K_TCP_RAW_N: {
        int fds[RAW_STREAMS];
        for (int i = 0; i < c.nraw; i++)
            fds[i] = ts[i]->fd;
        ret = raw_n(&c, fds, 0, NULL);
        break;
    }
    case K_PVM_WRITE: case K_PVM_READ: {
        static struct iovec l[MAX_BATCH / PAGE], rv[MAX_BATCH / PAGE];
        for (uint64_t done = 0; ret == 0 && done < c.total;) {
            uint64_t o = done % buf_bytes, len = MIGR_MIN(batch, c.total - done);
            uint8_t *lb = kind == K_PVM_WRITE ? src : dst;
            int n = page_iov(lb, o, len, l);
            page_iov(remote, o, len, rv);
            ssize_t w = kind == K_PVM_WRITE ? process_vm_writev(pid, l, (unsigned long)n, rv, (unsigned long)n, 0)
                                            : process_vm_readv(pid, l, (unsigned long)n, rv, (unsigned long)n, 0);
            if (w != (ssize_t)len)
                ret = -1;
            done += len;
        }
        if (send_msg(c.ctl, "x", 1) < 0)
            ret = -1;
        break;
    }
    case K_UFFD:
        for (uint64_t done = 0; ret == 0 && done < c.total; done += batch) {
            struct uffdio_copy cp = {.dst = (uint64_t)(uintptr_t)(remote + done), .src = (uint64_t)(uintptr_t)(src + done),
                                     .len = MIGR_MIN(batch, c.total - done)};
            if (ioctl(u, UFFDIO_COPY, &cp) < 0 || cp.copy != (int64_t)cp.len)
                ret = -1;
        }
        if (send_msg(c.ctl, "x", 1) < 0)
            ret = -1;
        break;
    case K_MEMFD: {
        int mfd = memfd_create("migr-bench", MFD_CLOEXEC);
        /* the guest RAM would already live in the memfd: fill it untimed? No:
         * hand-over passes memory that exists; we time only the pass + map. */
        if (mfd < 0 || ftruncate(mfd, (off_t)buf_bytes) < 0) {
            ret = -1;
            break;
        }
        uint8_t *m = mmap(NULL, buf_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
        if (m == MAP_FAILED) {
            ret = -1;
            break;
        }
        memcpy(m, src, buf_bytes);
        t0 = migr_now_ns();
        ret = migr_transport_send_fds(t, &mfd, 1);
        close(mfd);
        munmap(m, buf_bytes);
        break;
    }
    }
    char d;
    if (ret < 0 || recv_msg(c.ctl, &d, 1) < 0 || d != 'd')
        goto out;
    uint64_t ns = migr_now_ns() - t0;
    uint64_t sum;
    if (recv_msg(c.ctl, &sum, sizeof(sum)) < 0)
        goto out;
    if (kind == K_PVM_READ)
        sum = sum64(dst, buf_bytes);
    if (sum != src_sum) {
        fprintf(stderr, "bench_copy: kind %d batch %llu: checksum mismatch\n", kind, (unsigned long long)batch);
        goto out;
    }
    ok = 1;
    r = mbps(c.total, ns);
out:
    (void)send_msg(c.ctl, "b", 1);
    migr_transport_close(t);
    for (int i = 0; i < RAW_STREAMS; i++)
        migr_transport_close(ts[i]);
    migr_listener_close(c.l);
    if (fd >= 0 && !t)
        close(fd);
    if (u >= 0)
        close(u);
    close(c.ctl);
    reap(pid, ok ? 5000 : 0, NULL, 0);
    if (dst)
        munmap(dst, buf_bytes);
    return r;
}

/* ---- the table ---- */

struct strat {
    const char *name;
    int threads;
    enum kind kind;
    copy_fn fn;               /* memcpy variants */
    const char *needs;        /* CPU feature */
    int one_batch;            /* memfd: batch means nothing */
    const char *why;
};

static const struct strat strats[] = {
    {"memcpy-libc", 1, 0, copy_libc, NULL, 0, "glibc memcpy, one process"},
    {"memcpy-libc", 2, 0, copy_libc, NULL, 0, "two threads, halves"},
    {"rep-movsb", 1, 0, copy_movsb, NULL, 0, "ERMS string copy"},
    {"avx2-nt", 1, 0, copy_avx2_nt, "avx2", 0, "32-byte non-temporal stores"},
    {"avx512-nt", 1, 0, copy_avx512_nt, "avx512f", 0, "64-byte non-temporal stores"},
    {"process_vm_writev", 1, K_PVM_WRITE, NULL, NULL, 0, "sender writes into the receiver"},
    {"process_vm_readv", 1, K_PVM_READ, NULL, NULL, 0, "receiver reads from the sender"},
    {"vmsplice+read", 1, K_VMSPLICE, NULL, NULL, 0, "pages spliced into a pipe, read out"},
    {"pipe", 1, K_PIPE, NULL, NULL, 0, "write/read, 1 MiB pipe"},
    {"unix", 1, K_UNIX, NULL, NULL, 0, "migr unix: transport"},
    {"tcp", 1, K_TCP, NULL, NULL, 0, "migr tcp: transport, loopback"},
    {"unix?uring=1", 1, K_UNIX_UR, NULL, NULL, 0, "migr unix: via IORING_OP_SENDMSG/RECVMSG"},
    {"tcp?uring=1", 1, K_TCP_UR, NULL, NULL, 0, "migr tcp: via IORING_OP_SENDMSG/RECVMSG"},
    {"tcp-raw-1", 1, K_TCP_RAW1, NULL, NULL, 0, "1 connection, plain write/read"},
    {"tcp-raw-4", 4, K_TCP_RAW_N, NULL, NULL, 0, "4 connections, a thread each side"},
    {"tcp?channels=4", 4, K_MC, NULL, NULL, 0, "migr multi-channel transport"},
    {"tcp?encrypt=1", 1, K_TCP_ENC, NULL, NULL, 0, "migr tcp:, AES-256-GCM frames"},
    {"tcp?channels=4&encrypt=1", 4, K_MC_ENC, NULL, NULL, 0, "multi-channel, AES-256-GCM frames"},
    {"tcp-msg_zerocopy", 1, K_ZC, NULL, NULL, 0, "send(MSG_ZEROCOPY), completions reaped"},
    {"io_uring-tcp", 1, K_URING, NULL, NULL, 0, "registered buffers, read/write_fixed"},
    {"shm", 1, K_SHM, NULL, NULL, 0, "migr shm: ring (8 MiB)"},
    {"uffdio_copy", 1, K_UFFD, NULL, NULL, 0, "sender fills the receiver's registered region"},
    {"memfd-handover", 1, K_MEMFD, NULL, NULL, 1, "memfd passed + mapped, no copy"},
};

static int cpu_has(const char *feat)
{
    __builtin_cpu_init();
    if (!strcmp(feat, "avx2"))
        return __builtin_cpu_supports("avx2");
    if (!strcmp(feat, "avx512f"))
        return __builtin_cpu_supports("avx512f");
    return 0;
}

#define NSTRAT (sizeof(strats) / sizeof(strats[0]))
#define MAXB 6

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_copy [--quick] [--reps N] [--total SIZE] [--only TEXT] [--json PATH]\n"
               "  --quick      64 MiB per run, 1 repetition, batches 4K/64K/2M\n"
               "  --reps N     repetitions per cell (median; default 3)\n"
               "  --total SIZE bytes moved per run (default 256M; the 64 MiB buffers are reused)\n"
               "  --only TEXT  only strategies whose name contains TEXT\n"
               "  --json PATH  default bench/results/copy.json\n"
               "  --ring SIZE  ring size of the shm: strategy (default: the transport's, 8M)\n");
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"quick", 0, 0, 'q'}, {"reps", 1, 0, 'r'}, {"total", 1, 0, 't'},
                                       {"only", 1, 0, 'o'}, {"json", 1, 0, 'j'}, {"ring", 1, 0, 'R'},
                                       {"help", 0, 0, 'h'}, {0}};
    const char *json = "bench/results/copy.json", *only = NULL;
    int reps = 0, quick = 0, c;
    uint64_t batches[MAXB] = {4096, 16384, 65536, 262144, 2u << 20};
    int nb = 5;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'q': quick = 1; break;
        case 'r': reps = atoi(optarg); break;
        case 't':
            if (migr_parse_size(optarg, &total_bytes) < 0) {
                fprintf(stderr, "bench_copy: %s\n", migr_last_error());
                return 2;
            }
            break;
        case 'o': only = optarg; break;
        case 'j': json = optarg; break;
        case 'R': shm_ring = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (reps == 0)
        reps = quick ? 1 : 3;
    if (reps < 1 || reps > 64 || total_bytes < buf_bytes || total_bytes % buf_bytes) {
        fprintf(stderr, "bench_copy: --reps 1..64, --total a multiple of 64M\n");
        return 2;
    }
    if (quick) {
        total_bytes = buf_bytes;
        nb = 3;
        batches[0] = 4096, batches[1] = 65536, batches[2] = 2u << 20;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!(src = map_buf(buf_bytes)))
        return 1;
    fill_src();

    struct cpu_mark m0, m1;
    cpu_mark(&m0, 0);
    double memcpy_bw = measure_memcpy(buf_bytes, quick ? 3 : 5);
    double res[NSTRAT][MAXB];
    double all[NSTRAT][MAXB][64];

    printf("bench_copy: %llu MiB per run through %llu MiB buffers, %d rep(s), medians in MB/s (%% of memcpy)\n",
           (unsigned long long)(total_bytes >> 20), (unsigned long long)(buf_bytes >> 20), reps);
    printf("single-thread memcpy (libc, 64 MiB, out of cache): %.0f MB/s\n\n", memcpy_bw);
    printf("%-18s %3s", "strategy", "thr");
    for (int b = 0; b < nb; b++) {
        char h[16];
        if (batches[b] >= (1u << 20))
            snprintf(h, sizeof(h), "%lluM", (unsigned long long)(batches[b] >> 20));
        else
            snprintf(h, sizeof(h), "%lluK", (unsigned long long)(batches[b] >> 10));
        printf(" %14s", h);
    }
    printf("\n");
    for (size_t s = 0; s < NSTRAT; s++) {
        const struct strat *st = &strats[s];
        for (int b = 0; b < nb; b++)
            res[s][b] = -2;   /* not run */
        if (only && !strstr(st->name, only))
            continue;
        if (st->needs && !cpu_has(st->needs)) {
            printf("%-18s %3d  (CPU has no %s)\n", st->name, st->threads, st->needs);
            continue;
        }
        printf("%-18s %3d", st->name, st->threads);
        fflush(stdout);
        for (int b = 0; b < nb; b++) {
            if (st->one_batch && b != nb - 1) {
                printf(" %14s", "-");
                continue;
            }
            for (int r = 0; r < reps; r++)
                all[s][b][r] = st->fn ? run_memcpy(st->fn, st->threads, batches[b]) : run_pair(st->kind, batches[b]);
            res[s][b] = median(all[s][b], reps);
            for (int r = 0; r < reps; r++)
                if (all[s][b][r] < 0)
                    res[s][b] = -1;
            if (res[s][b] < 0)
                printf(" %14s", "FAIL");
            else
                printf(" %7.0f (%3.0f%%)", res[s][b], 100 * res[s][b] / memcpy_bw);
            fflush(stdout);
        }
        printf("\n");
    }
    cpu_mark(&m1, 0);
    double other = others_cpus(&m0, &m1);
    if (zc_sends)
        printf("MSG_ZEROCOPY (last cell): %llu sends, the kernel copied %llu of them anyway\n",
               (unsigned long long)zc_sends, (unsigned long long)zc_copied);

    /* The aims of issue 5. */
    size_t i_shm = 0, i_mc = 0, i_raw = 0;
    for (size_t s = 0; s < NSTRAT; s++) {
        if (strats[s].kind == K_SHM)
            i_shm = s;
        if (strats[s].kind == K_MC)
            i_mc = s;
        if (strats[s].kind == K_TCP_RAW_N)
            i_raw = s;
    }
    double shm_best = 0, mc_best = 0, raw_best = 0;
    for (int b = 0; b < nb; b++) {
        shm_best = MIGR_MAX(shm_best, res[i_shm][b]);
        mc_best = MIGR_MAX(mc_best, res[i_mc][b]);
        raw_best = MIGR_MAX(raw_best, res[i_raw][b]);
    }
    if (shm_best > 0)
    printf("\naim: shm ring >= 80%% of memcpy: best %.0f MB/s = %.0f%% -> %s\n", shm_best, 100 * shm_best / memcpy_bw,
           shm_best >= 0.8 * memcpy_bw ? "met" : "NOT met");
    if (mc_best > 0 && raw_best > 0)
    printf("aim: tcp?channels=%d >= 90%% of the best raw %d-stream loop: %.0f vs %.0f MB/s = %.0f%% -> %s\n",
           MC_CHANNELS, RAW_STREAMS, mc_best, raw_best, raw_best > 0 ? 100 * mc_best / raw_best : 0,
           mc_best >= 0.9 * raw_best ? "met" : "NOT met");
    if (other > 0.2)
        printf("note: other processes used %.2f CPUs meanwhile: figures are pessimistic\n", other);

    if (mkdir_p(json) < 0) {
        perror("bench_copy: results directory");
        return 1;
    }
    FILE *f = fopen(json, "w");
    if (!f) {
        perror(json);
        return 1;
    }
    fprintf(f, "{\"bench\":\"copy\",\"params\":{\"total_bytes\":%llu,\"buf_bytes\":%llu,\"reps\":%d,\"quick\":%s},\n",
            (unsigned long long)total_bytes, (unsigned long long)buf_bytes, reps, quick ? "true" : "false");
    fprintf(f, "\"machine\":{\"memcpy_mbps\":%.1f,\"cpus\":%ld},\"other_load_cpus_run\":%.2f,\n", memcpy_bw,
            sysconf(_SC_NPROCESSORS_ONLN), other);
    fprintf(f, "\"batches\":[");
    for (int b = 0; b < nb; b++)
        fprintf(f, "%s%llu", b ? "," : "", (unsigned long long)batches[b]);
    fprintf(f, "],\n\"aims\":{\"shm_best_mbps\":%.1f,\"shm_pct_memcpy\":%.1f,\"mc_best_mbps\":%.1f,"
               "\"raw_multi_best_mbps\":%.1f,\"mc_pct_raw\":%.1f},\n\"rows\":[",
            shm_best, 100 * shm_best / memcpy_bw, mc_best, raw_best, raw_best > 0 ? 100 * mc_best / raw_best : 0);
    int first = 1;
    for (size_t s = 0; s < NSTRAT; s++) {
        for (int b = 0; b < nb; b++) {
            if (res[s][b] == -2)
                continue;
            fprintf(f, "%s\n{\"strategy\":", first ? "" : ",");
            json_str(f, strats[s].name);
            fprintf(f, ",\"threads\":%d,\"batch\":%llu,\"status\":\"%s\",\"mbps\":%.1f,\"pct_memcpy\":%.1f,\"what\":",
                    strats[s].threads, (unsigned long long)batches[b], res[s][b] < 0 ? "fail" : "ok",
                    MIGR_MAX(res[s][b], 0), 100 * MIGR_MAX(res[s][b], 0) / memcpy_bw);
            json_str(f, strats[s].why);
            fprintf(f, "}");
            first = 0;
        }
    }
    fprintf(f, "\n]}\n");
    fclose(f);
    printf("results: %s\n", json);
    for (size_t s = 0; s < NSTRAT; s++)
        for (int b = 0; b < nb; b++)
            if (res[s][b] == -1)
                return 1;
    return 0;
}
