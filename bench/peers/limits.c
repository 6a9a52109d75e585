/* bench/peers/limits: this machine's limits, measured in the same run as the
 * QEMU-vs-migr comparison (bench/peers/qemu.py): single-thread memcpy, a unix
 * stream from pre-faulted memory into *fresh* memory (what a migration
 * destination does), and populating fresh memory (memfd, as migr's guest
 * RAM; anonymous, as QEMU's). Prints one JSON object, MB/s (10^6 B/s). */
#define BENCH_NAME "limits"
#include <sys/socket.h>
#include "bench/benchlib.h"

#define LEN (256ull << 20)

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

/* socketpair(AF_UNIX, SOCK_STREAM): parent writes LEN from a pre-faulted
 * buffer in 1 MiB writes, the child reads it into a fresh mapping. */
static double stream_fresh(void)
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
        uint8_t *dst = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (dst == MAP_FAILED || migr_read_full(sv[1], dst, LEN) < 0)
            _exit(1);
        char ack = 'k';
        _exit(write(sv[1], &ack, 1) == 1 ? 0 : 1);
    }
    close(sv[1]);
    uint8_t *src = map_buf(LEN);
    double r = 0;
    uint64_t t0 = migr_now_ns(), sent = 0;
    while (src && sent < LEN && migr_write_full(sv[0], src + sent, STREAM_WRITE) == 0)
        sent += STREAM_WRITE;
    char ack;
    if (sent == LEN && read_timeout(sv[0], &ack, 1, 30000) == 0)
        r = mbps(LEN, migr_now_ns() - t0);
    close(sv[0]);
    if (src)
        munmap(src, LEN);
    reap(pid, 5000, NULL, 0);
    return r;
}

int main(void)
{
    double v[3];
    printf("{\"memcpy_mbps\":%.1f", measure_memcpy(LEN, 5));
    for (int i = 0; i < 3; i++)
        v[i] = stream_fresh();
    printf(",\"unix_fresh_mbps\":%.1f", median(v, 3));
    for (int i = 0; i < 3; i++)
        v[i] = populate(1);
    printf(",\"populate_memfd_mbps\":%.1f", median(v, 3));
    for (int i = 0; i < 3; i++)
        v[i] = populate(0);
    printf(",\"populate_anon_mbps\":%.1f}\n", median(v, 3));
    return 0;
}
