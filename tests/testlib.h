/* Minimal test helpers: one binary per feature; exit 0 pass, 1 fail, 77 skip.
 * Silent on success; a failure prints file:line, the expression, errno and
 * migr_last_error(). */
#ifndef MIGR_TESTLIB_H
#define MIGR_TESTLIB_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "migr/common.h"

#define T_SKIP(...) do { printf("SKIP: "); printf(__VA_ARGS__); printf("\n"); exit(77); } while (0)

#define T_FAIL(...) do { \
        int e_ = errno; \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__); \
        fprintf(stderr, " (errno %d %s; migr: %s)\n", e_, strerror(e_), migr_last_error()); \
        exit(1); \
    } while (0)

#define T_ASSERT(expr) do { if (!(expr)) T_FAIL("%s", #expr); } while (0)

/* Assert a migr call returns >= 0. */
#define T_OK(expr) do { long r_ = (long)(expr); \
        if (r_ < 0) T_FAIL("%s returned %ld (%s)", #expr, r_, strerror((int)-r_)); } while (0)

/* expr must return err and migr's message must contain substr. */
#define T_ERR(expr, err, substr) do { \
        long r2_ = (long)(expr); \
        if (r2_ != (long)(err)) \
            T_FAIL("%s returned %ld, expected %ld", #expr, r2_, (long)(err)); \
        if (!strstr(migr_last_error(), (substr))) \
            T_FAIL("%s: message '%s' lacks '%s'", #expr, migr_last_error(), (substr)); \
    } while (0)

#define T_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
        if (a_ != b_) T_FAIL("%s == %s: %lld != %lld", #a, #b, a_, b_); } while (0)

/* Seeded randomness: the seed is printed on failure paths by the caller via
 * T_SEED; replay with MIGR_TEST_SEED=<n>. */
static inline unsigned long long t_seed(void)
{
    const char *s = getenv("MIGR_TEST_SEED");
    unsigned long long seed = s ? strtoull(s, NULL, 0) : (unsigned long long)migr_now_ns();
    fprintf(stderr, "seed %llu (replay: MIGR_TEST_SEED=%llu)\n", seed, seed);
    return seed;
}
static inline unsigned long long t_rand(unsigned long long *s)
{
    unsigned long long x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x;
}

#endif
