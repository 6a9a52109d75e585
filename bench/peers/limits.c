/* bench/peers/limits: this machine's limits, measured in the same run as the
 * QEMU-vs-migr comparison (bench/peers/qemu.py): single-thread memcpy, a unix
 * stream from pre-faulted memory into *fresh* memory (what a migration
 * destination does), and populating fresh memory (memfd, as migr's guest
 * RAM; anonymous, as QEMU's). Prints one JSON object, MB/s (10^6 B/s).
 *
 * "Fresh" memory comes in two kinds on a virtual machine whose host takes
 * free memory back (virtio-balloon free page reporting, as here): memory
 * this kernel freed a moment ago is still backed by the host (hot: the
 * 256 MiB figures above, measured right after one another), memory it
 * reported free long ago must be backed anew by the host on first touch
 * (cold: a fault in the outer hypervisor per page). A migration's
 * destination allocates its guest RAM when the stream begins, mostly cold.
 * populate_cold_*: a fresh memfd of COLD_LEN (larger than what this program
 * touched before), by one thread and then, on another fresh COLD_LEN (the
 * first still held), by one thread per CPU claiming 32 MiB pieces — the most a destination can
 * allocate per second, with nothing else to do.
 * unix_rtt_4k_*: a 16-byte request and a 4 KiB answer between two processes
 * (a post-copy fault's round trip, before the page is placed), idle and
 * with every CPU kept busy by nice +5 threads (as the post-copy push keeps
 * them). */
#define BENCH_NAME "limits"
#include <pthread.h>
#include <sys/socket.h>
#include "bench/benchlib.h"

#define LEN (256ull << 20)
#define COLD_LEN (2048ull << 20)
#define COLD_PIECE (32ull << 20)

static double populate(int memfd_backed)
{
    int fd = -1;
    void *p;
    if (memfd_backed) {
        fd = memfd_create("limits", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)LEN) < 0) {
            fprintf(stderr, "limits: memfd of %llu bytes: %s\n", (unsigned long long)LEN, strerror(errno));
            return 0;
        }
        p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    } else {
        p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    if (p == MAP_FAILED) {
        fprintf(stderr, "limits: mmap %llu bytes: %s\n", (unsigned long long)LEN, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 0;
    }
    uint64_t t0 = migr_now_ns();
    if (madvise(p, LEN, MADV_POPULATE_WRITE) < 0)
        fprintf(stderr, "limits: MADV_POPULATE_WRITE: %s\n", strerror(errno));
    double r = mbps(LEN, migr_now_ns() - t0);
    munmap(p, LEN);
    if (fd >= 0)
        close(fd);
    return r;
}

struct cold {
    uint8_t *p;
    uint64_t next;                /* atomic: the next piece's offset */
    int err;
};

static void *cold_worker(void *arg)
{
    struct cold *c = arg;
    uint64_t off;
    while ((off = __atomic_fetch_add(&c->next, COLD_PIECE, __ATOMIC_RELAXED)) < COLD_LEN)
        if (madvise(c->p + off, COLD_PIECE, MADV_POPULATE_WRITE) < 0)
            __atomic_store_n(&c->err, errno, __ATOMIC_RELAXED);
    return NULL;
}

/* A fresh memfd of COLD_LEN populated by nthreads threads: MB/s, 0 on
 * failure. Its mapping is left in *keep (the caller unmaps it once every
 * cold figure is taken: memory freed here would be hot for the next). */
static double populate_cold(int nthreads, void **keep)
{
    struct cold c = {0};
    pthread_t th[16];
    *keep = NULL;
    int fd = memfd_create("limits-cold", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)COLD_LEN) < 0) {
        fprintf(stderr, "limits: memfd of %llu bytes: %s\n", (unsigned long long)COLD_LEN, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 0;
    }
    c.p = mmap(NULL, COLD_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (c.p == MAP_FAILED) {
        fprintf(stderr, "limits: mmap %llu bytes: %s\n", (unsigned long long)COLD_LEN, strerror(errno));
        return 0;
    }
    if (nthreads > 16)
        nthreads = 16;
    int started = 0;
    uint64_t t0 = migr_now_ns();
    for (; started < nthreads; started++)
        if (pthread_create(&th[started], NULL, cold_worker, &c) != 0)
            break;
    if (!started)
        cold_worker(&c);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double r = mbps(COLD_LEN, migr_now_ns() - t0);
    if (c.err) {
        fprintf(stderr, "limits: MADV_POPULATE_WRITE: %s\n", strerror(c.err));
        r = 0;
    }
    *keep = c.p;
    return r;
}

/* socketpair(AF_UNIX, SOCK_STREAM): parent writes len bytes from a
 * pre-faulted buffer of LEN (again and again) in 1 MiB writes, the child
 * reads them into a fresh mapping of len. */
static double stream_fresh(uint64_t len)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        fprintf(stderr, "limits: socketpair: %s\n", strerror(errno));
        return 0;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "limits: fork: %s\n", strerror(errno));
        return 0;
    }
    if (pid == 0) {
        close(sv[0]);
        uint8_t *dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (dst == MAP_FAILED || migr_read_full(sv[1], dst, len) < 0)
            _exit(1);
        char ack = 'k';
        _exit(write(sv[1], &ack, 1) == 1 ? 0 : 1);
    }
    close(sv[1]);
    uint8_t *src = map_buf(LEN);
    double r = 0;
    uint64_t t0 = migr_now_ns(), sent = 0;
    while (src && sent < len && migr_write_full(sv[0], src + sent % LEN, STREAM_WRITE) == 0)
        sent += STREAM_WRITE;
    char ack;
    if (sent == len && read_timeout(sv[0], &ack, 1, 30000) == 0)
        r = mbps(len, migr_now_ns() - t0);
    close(sv[0]);
    if (src)
        munmap(src, LEN);
    reap(pid, 5000, NULL, 0);
    return r;
}

int main(void)
{
    double v[3];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    /* Cold first: nothing of this program's own was freed before them. */
    void *k1, *k2;
    double cold1 = populate_cold(1, &k1);
    double coldn = populate_cold(ncpu > 0 ? (int)ncpu : 1, &k2);
    double scold = stream_fresh(COLD_LEN); /* with both still held: into cold memory too */
    if (k1)
        munmap(k1, COLD_LEN);
    if (k2)
        munmap(k2, COLD_LEN);
    printf("{\"populate_cold_mbps\":%.1f,\"populate_cold_threads\":%ld,\"populate_cold_1t_mbps\":%.1f,"
           "\"unix_cold_mbps\":%.1f", coldn, ncpu > 0 ? ncpu : 1, cold1, scold);
    printf(",\"memcpy_mbps\":%.1f", measure_memcpy(LEN, 5));
    for (int i = 0; i < 3; i++)
        v[i] = stream_fresh(LEN);
    printf(",\"unix_fresh_mbps\":%.1f", median(v, 3));
    for (int i = 0; i < 3; i++)
        v[i] = populate(1);
    printf(",\"populate_memfd_mbps\":%.1f", median(v, 3));
    for (int i = 0; i < 3; i++)
        v[i] = populate(0);
    printf(",\"populate_anon_mbps\":%.1f", median(v, 3));
    /* The floor of a post-copy fault's round trip: idle, and with every CPU
     * kept busy at nice +5 (as the push keeps them during post-copy). */
    double p50, p99;
    measure_rtt(5000, 4096 + 16, 0, &p50, &p99);
    printf(",\"unix_rtt_4k_p50_us\":%.1f,\"unix_rtt_4k_p99_us\":%.1f", p50, p99);
    measure_rtt(5000, 4096 + 16, ncpu > 0 ? (int)ncpu : 1, &p50, &p99);
    printf(",\"unix_rtt_4k_busy_p50_us\":%.1f,\"unix_rtt_4k_busy_p99_us\":%.1f}\n", p50, p99);
    return 0;
}
