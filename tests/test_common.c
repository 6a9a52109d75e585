/* common/: error messages (per thread, prefixing), size parsing, full reads
 * and writes, the monotonic clock, the log (silent by default). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

static void test_errors(void)
{
    char longtext[1000];

    migr_clear_error();
    T_ASSERT(!strcmp(migr_last_error(), ""));
    T_EQ(migr_errorf(EINVAL, "bad %s %d", "thing", 42), -EINVAL);
    T_ASSERT(!strcmp(migr_last_error(), "bad thing 42"));
    T_EQ(migr_errorf_errno(ENOENT, "open %s", "/x"), -ENOENT);
    T_ASSERT(!strcmp(migr_last_error(), "open /x: No such file or directory"));
    T_EQ(migr_error_prefix(ENOENT, "recv %s", "unix:/y"), -ENOENT);
    T_ASSERT(!strcmp(migr_last_error(), "recv unix:/y: open /x: No such file or directory"));
    migr_clear_error();
    T_EQ(migr_error_prefix(EIO, "alone"), -EIO);
    T_ASSERT(!strcmp(migr_last_error(), "alone"));
    /* A wrong sign or 0 still gives a negative return, never "success". */
    T_EQ(migr_errorf(-EPIPE, "x"), -EPIPE);
    T_ASSERT(migr_errorf(0, "x") < 0);
    /* errno survives */
    errno = EAGAIN;
    migr_errorf(EIO, "x");
    T_EQ(errno, EAGAIN);
    /* Long messages are cut, not overflowed (the buffer is 512 bytes). */
    memset(longtext, 'a', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = 0;
    migr_errorf(EIO, "%s", longtext);
    T_EQ(strlen(migr_last_error()), 511);
    migr_error_prefix(EIO, "%s", longtext);
    T_EQ(strlen(migr_last_error()), 511);
    migr_errorf_errno(EIO, "%s", longtext);
    T_EQ(strlen(migr_last_error()), 511);
}

static void *other_thread(void *arg)
{
    (void)arg;
    if (migr_last_error()[0])   /* each thread starts empty */
        return (void *)1;
    migr_errorf(EIO, "thread message");
    return NULL;
}

static void test_thread_local(void)
{
    pthread_t th;
    void *ret;

    migr_errorf(EIO, "main message");
    T_EQ(pthread_create(&th, NULL, other_thread, NULL), 0);
    T_EQ(pthread_join(th, &ret), 0);
    T_ASSERT(ret == NULL);
    T_ASSERT(!strcmp(migr_last_error(), "main message"));
}

static void test_parse_size(void)
{
    static const struct { const char *text; uint64_t want; } good[] = {
        { "0", 0 }, { "4096", 4096 }, { "2k", 2048 }, { "2K", 2048 }, { "64M", 64ull << 20 },
        { "64m", 64ull << 20 }, { "1G", 1ull << 30 }, { "3T", 3ull << 40 },
        { "18446744073709551615", UINT64_MAX }, { "16777215T", 16777215ull << 40 },
        { "007", 7 },
    };
    static const char *const bad[] = {
        "", "-1", "-64M", "+5", " 5", "5 ", "abc", "0x10", "64MB", "64MiB", "1.5G", "5P", "M",
        "18446744073709551616", "99999999999999999999", "16777216T", "17179869184G", "1e6",
    };
    uint64_t v;

    for (size_t i = 0; i < MIGR_ARRAY_SIZE(good); i++) {
        v = 12345;
        if (migr_parse_size(good[i].text, &v) != 0 || v != good[i].want)
            T_FAIL("'%s' -> %llu (%s)", good[i].text, (unsigned long long)v, migr_last_error());
    }
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(bad); i++) {
        char quoted[64];

        v = 12345;
        if (migr_parse_size(bad[i], &v) != -EINVAL)
            T_FAIL("'%s' accepted as %llu", bad[i], (unsigned long long)v);
        T_EQ(v, 12345);
        snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
        if (!strstr(migr_last_error(), quoted))
            T_FAIL("message '%s' does not name %s", migr_last_error(), quoted);
    }
    T_EQ(migr_parse_size(NULL, &v), -EINVAL);
}

static void test_full_io(void)
{
    static uint8_t out[1 << 20], in[1 << 20];
    int p[2];

    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i * 13 + 7);
    T_EQ(pipe(p), 0);
    /* A pipe holds 64 KiB: writing 1 MiB needs a reader at the same time. */
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        _exit(migr_write_full(p[1], out, sizeof(out)) == 0 ? 0 : 1);
    }
    close(p[1]);
    T_OK(migr_read_full(p[0], in, sizeof(in)));
    T_ASSERT(!memcmp(in, out, sizeof(in)));
    /* The writer is done: end of file, also after a partial read. */
    T_EQ(migr_read_full(p[0], in, 1), -EPIPE);
    T_ASSERT(strstr(migr_last_error(), "end of file after 0 of 1 bytes"));
    close(p[0]);
    T_EQ(migr_read_full(p[0], in, 1), -EBADF);
    T_EQ(migr_write_full(-1, out, 1), -EBADF);
    {
        int status;

        T_EQ(waitpid(pid, &status, 0), pid);
        T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    T_EQ(pipe(p), 0);
    T_OK(migr_write_full(p[1], "abc", 3));
    close(p[1]);
    T_EQ(migr_read_full(p[0], in, 8), -EPIPE);
    T_ASSERT(strstr(migr_last_error(), "end of file after 3 of 8 bytes"));
    close(p[0]);
    T_OK(migr_read_full(p[0], in, 0));   /* nothing to do, fd not touched */
}

static void test_clock(void)
{
    uint64_t a = migr_now_ns(), b;

    usleep(2000);
    b = migr_now_ns();
    T_ASSERT(b - a >= 2000000ull && b - a < 10000000000ull);
}

struct log_seen {
    int n;
    enum migr_log_level level;
    char msg[64];
};

static void log_keep(void *arg, enum migr_log_level level, const char *msg)
{
    struct log_seen *l = arg;
    l->n++;
    l->level = level;
    snprintf(l->msg, sizeof(l->msg), "%s", msg);
}

static void test_log(void)
{
    struct log_seen seen = {0};
    migr_logf(MIGR_LOG_WARN, "dropped %d", 1); /* no function: nothing happens */
    migr_log_set(log_keep, &seen);
    migr_logf(MIGR_LOG_WARN, "page %u of %s", 7u, "ram");
    T_ASSERT(seen.n == 1 && seen.level == MIGR_LOG_WARN);
    T_ASSERT(strcmp(seen.msg, "page 7 of ram") == 0);
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    migr_logf(MIGR_LOG_INFO, "%s", big); /* truncated, not overflowed */
    T_ASSERT(seen.n == 2 && strlen(seen.msg) == sizeof(seen.msg) - 1);
    migr_log_set(NULL, NULL);
    migr_logf(MIGR_LOG_ERROR, "silent again");
    T_ASSERT(seen.n == 2);
}

int main(void)
{
    test_log();
    test_errors();
    test_thread_local();
    test_parse_size();
    test_full_io();
    test_clock();
    return 0;
}
