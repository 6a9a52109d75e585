/* migr — small helpers: clock, size parsing, full reads and writes. */
#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "migr/common.h"

uint64_t migr_thread_cpu_ns(void)
{
    struct timespec ts;

    /* Cannot fail for the calling thread's own clock. */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct timespec migr_realtime_after_ms(long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

uint64_t migr_now_ns(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t migr_wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int size_shift(char c)
{
    switch (c) {
    case 'k': case 'K': return 10;
    case 'm': case 'M': return 20;
    case 'g': case 'G': return 30;
    case 't': case 'T': return 40;
    default: return -1;
    }
}

int migr_parse_size(const char *text, uint64_t *out)
{
    const char *p = text;
    uint64_t v = 0;
    int shift = 0;

    if (!text || !*text)
        return migr_errorf(EINVAL, "invalid size '': empty");
    if (*p == '-')
        return migr_errorf(EINVAL, "invalid size '%s': negative", text);
    /* Digits only: no sign, no leading blanks, no hex (strtoull would take all three). */
    if (*p < '0' || *p > '9')
        return migr_errorf(EINVAL, "invalid size '%s': expected digits with optional K/M/G/T", text);
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');

        if (v > (UINT64_MAX - d) / 10)
            return migr_errorf(EINVAL, "invalid size '%s': too large", text);
        v = v * 10 + d;
    }
    if (*p) {
        shift = size_shift(*p);
        if (shift < 0 || p[1])
            return migr_errorf(EINVAL, "invalid size '%s': bad suffix '%s' (expected K, M, G or T)",
                               text, p);
    }
    if (shift && v > (UINT64_MAX >> shift))
        return migr_errorf(EINVAL, "invalid size '%s': too large", text);
    *out = v << shift;
    return 0;
}

int migr_write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return migr_errorf_errno(errno, "write fd %d (%zu of %zu bytes written)", fd, done, len);
        }
        if (n == 0)
            return migr_errorf(EIO, "write fd %d: wrote nothing (%zu of %zu bytes written)",
                               fd, done, len);
        done += (size_t)n;
    }
    return 0;
}

int migr_read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t n = read(fd, p + done, len - done);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return migr_errorf_errno(errno, "read fd %d (%zu of %zu bytes read)", fd, done, len);
        }
        if (n == 0)
            return migr_errorf(EPIPE, "read fd %d: end of file after %zu of %zu bytes",
                               fd, done, len);
        done += (size_t)n;
    }
    return 0;
}
