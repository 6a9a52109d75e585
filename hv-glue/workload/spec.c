/* The workload spec parser shared by the CLI and the PVH guest (spec.h). */
#include "hv-glue/workload/spec.h"

static int eq(const char *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n && lit[i]; i++)
        if (s[i] != lit[i])
            return 0;
    return i == n && lit[i] == 0;
}

int wl_spec_size(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    int shift = 0;
    if (n == 0 || s[0] < '0' || s[0] > '9')
        return -1;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (i < n) {
        switch (s[i]) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        default: return -1;
        }
        if (i + 1 != n)
            return -1;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

int wl_spec_number(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    size_t i = 0;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    }
    if (i == n)
        return -1;
    for (; i < n; i++) {
        unsigned d;
        char c = s[i];
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        if (v > (UINT64_MAX - d) / base)
            return -1;
        v = v * base + d;
    }
    *out = v;
    return 0;
}

int wl_spec_set(struct migr_workload_cfg *c, const char *k, size_t kl, const char *v, size_t vl)
{
    uint64_t x;
    if (eq(k, kl, "rate") || eq(k, kl, "ws")) {
        if (wl_spec_size(v, vl, &x) < 0)
            return WL_SPEC_BAD_SIZE;
        *(eq(k, kl, "rate") ? &c->rate_bytes : &c->ws_bytes) = x;
    } else if (eq(k, kl, "pattern")) {
        if (eq(v, vl, "sequential"))
            c->pattern = MIGR_WL_SEQUENTIAL;
        else if (eq(v, vl, "random"))
            c->pattern = MIGR_WL_RANDOM;
        else if (eq(v, vl, "hotcold") || eq(v, vl, "hot/cold"))
            c->pattern = MIGR_WL_HOTCOLD;
        else
            return WL_SPEC_BAD_PATTERN;
    } else if (eq(k, kl, "data")) {
        if (eq(v, vl, "zero"))
            c->data = MIGR_WL_ZERO;
        else if (eq(v, vl, "text"))
            c->data = MIGR_WL_TEXT;
        else if (eq(v, vl, "random"))
            c->data = MIGR_WL_RANDOM_DATA;
        else if (eq(v, vl, "app"))
            c->data = MIGR_WL_APP;
        else
            return WL_SPEC_BAD_DATA;
    } else if (eq(k, kl, "seed")) {
        if (wl_spec_number(v, vl, &x) < 0)
            return WL_SPEC_BAD_NUMBER;
        c->seed = x;
    } else {
        return WL_SPEC_UNKNOWN_KEY;
    }
    return WL_SPEC_OK;
}

size_t wl_spec_next(const char *s, size_t len, size_t *pos, const char **tok)
{
    size_t i = *pos, start;
    while (i < len && (s[i] == ',' || s[i] == ' ' || s[i] == '\t' || s[i] == '\n'))
        i++;
    start = i;
    while (i < len && s[i] && s[i] != ',' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n')
        i++;
    *pos = i;
    *tok = s + start;
    return i - start;
}
