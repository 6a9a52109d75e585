/* The workload's parameter spelling ("rate=64M,ws=128M,pattern=random,
 * data=text,seed=7"), parsed without libc so that the PVH guest
 * (bench/peers/pvh/) reads its kernel command line with the same code as
 * `migr run --workload`. Compiled twice, like workload.c. */
#ifndef MIGR_WL_SPEC_H
#define MIGR_WL_SPEC_H

#include <stddef.h>
#include <stdint.h>
#include "migr/workload.h"

enum wl_spec_err {
    WL_SPEC_OK = 0,
    WL_SPEC_NOT_KV,      /* token is not key=value */
    WL_SPEC_UNKNOWN_KEY,
    WL_SPEC_BAD_SIZE,    /* rate= / ws=: not digits with an optional K/M/G/T suffix, or too large */
    WL_SPEC_BAD_PATTERN,
    WL_SPEC_BAD_DATA,
    WL_SPEC_BAD_NUMBER,  /* seed=: not a number */
};

/* Parse a size: decimal digits and an optional K/M/G/T (any case) suffix,
 * the grammar of migr_parse_size(). 0 or -1. */
int wl_spec_size(const char *s, size_t n, uint64_t *out);

/* Parse a number (decimal, or hex after 0x). 0 or -1. */
int wl_spec_number(const char *s, size_t n, uint64_t *out);

/* Set one workload key (rate, ws, pattern, data, seed) from its value.
 * Returns WL_SPEC_OK or the error; cfg is unchanged on error. */
int wl_spec_set(struct migr_workload_cfg *cfg, const char *key, size_t klen, const char *val, size_t vlen);

/* Next token of a spec: tokens are separated by commas, blanks or newlines.
 * Returns the token's length (0 at the end) and sets *tok; advances *pos. */
size_t wl_spec_next(const char *s, size_t len, size_t *pos, const char **tok);

#endif
