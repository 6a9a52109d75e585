/* The one grammar for sizes, rates and times of every migr option.
 *
 *   size:  NUMBER[UNIT]   NUMBER: digits with an optional fraction (1.5)
 *          UNIT: B (or none) | K M G T = KiB MiB GiB TiB (powers of 1024) |
 *                KiB MiB GiB TiB | KB MB GB TB (powers of 1000); case-insensitive
 *   rate:  a size, optionally followed by "/s": bytes per second (100M = 100 MiB/s)
 *   time:  NUMBER[UNIT]   UNIT: ms | s | m | min | h | d; none = the option's own unit
 *
 * migr prints sizes with the binary units (MiB) and rates in MiB/s, so what it
 * prints can be given back to it.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "migr/common.h"

static const struct {
    const char *name;
    double mult;
} size_units[] = {
    {"", 1}, {"b", 1},
    {"k", 1024.0}, {"m", 1048576.0}, {"g", 1073741824.0}, {"t", 1099511627776.0},
    {"kib", 1024.0}, {"mib", 1048576.0}, {"gib", 1073741824.0}, {"tib", 1099511627776.0},
    {"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
};

static const struct {
    const char *name;
    double s;
} time_units[] = {
    {"ms", 1e-3}, {"s", 1}, {"m", 60}, {"min", 60}, {"h", 3600}, {"d", 86400},
};

/* NUMBER: digits, optionally '.' and digits; no sign, no exponent, no hex. */
static int parse_number(const char *text, double *v, const char **rest)
{
    const char *p = text;
    size_t digits = 0;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++, digits++;
    }
    if (!digits)
        return -1;
    char buf[64];
    if ((size_t)(p - text) >= sizeof(buf))
        return -1;
    memcpy(buf, text, (size_t)(p - text));
    buf[p - text] = 0;
    *v = strtod(buf, NULL);
    *rest = p;
    return isfinite(*v) ? 0 : -1;
}

int cli_parse_size(const char *text, uint64_t *out)
{
    double v;
    const char *unit;
    if (!text || parse_number(text, &v, &unit) < 0)
        return migr_errorf(EINVAL, "'%s' is not a size (examples: 4096, 64M, 512MiB, 1.5G, 100MB)", text ? text : "");
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(size_units); i++)
        if (strcasecmp(unit, size_units[i].name) == 0) {
            double b = v * size_units[i].mult;
            if (b >= 18446744073709551616.0)
                return migr_errorf(ERANGE, "'%s': too large", text);
            if (b != floor(b))
                return migr_errorf(EINVAL, "'%s' is not a whole number of bytes", text);
            *out = (uint64_t)b;
            return 0;
        }
    return migr_errorf(EINVAL, "'%s': unknown unit '%s' (K, M, G, T = KiB..TiB; KB, MB, GB, TB = powers of 1000)",
                       text, unit);
}

int cli_parse_rate(const char *text, uint64_t *out)
{
    char buf[64];
    size_t n = text ? strlen(text) : 0;
    if (n >= 2 && n < sizeof(buf) && strcasecmp(text + n - 2, "/s") == 0) {
        memcpy(buf, text, n - 2);
        buf[n - 2] = 0;
        text = buf;
    }
    return cli_parse_size(text, out);
}

int cli_parse_time(const char *text, double bare_unit_s, double *seconds)
{
    double v;
    const char *unit;
    if (!text || parse_number(text, &v, &unit) < 0)
        return migr_errorf(EINVAL, "'%s' is not a time (examples: 500ms, 1s, 0.5, 10m, 2h, 28d)", text ? text : "");
    if (!*unit) {
        *seconds = v * bare_unit_s;
        return 0;
    }
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(time_units); i++)
        if (strcasecmp(unit, time_units[i].name) == 0) {
            *seconds = v * time_units[i].s;
            return 0;
        }
    return migr_errorf(EINVAL, "'%s': unknown time unit '%s' (ms, s, m, h, d)", text, unit);
}

int cli_parse_ms(const char *text, double bare_unit_s, double lo_ms, double hi_ms, uint64_t *ms)
{
    double s;
    if (cli_parse_time(text, bare_unit_s, &s) < 0)
        return -EINVAL;
    double v = s * 1e3;
    if (v < lo_ms || v > hi_ms)
        return migr_errorf(ERANGE, "'%s' is out of range (%g ms .. %g ms)", text, lo_ms, hi_ms);
    *ms = (uint64_t)llround(v);
    return 0;
}

void cli_fmt_size(double bytes, char *out, size_t cap)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4)
        bytes /= 1024, i++;
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", bytes, u[i]);
}
