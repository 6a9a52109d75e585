/* Extra `key=value` settings of the control socket's `migrate` command.
 *
 * `migr send` turns its options into these tokens after the positional
 * arguments (URL downtime rounds tracker mode); the VMM applies them to
 * struct migr_send_params here. One row per setting: adding an engine knob
 * to the CLI is one row here and one option in cmd_send.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "migr/common.h"
#include "migr/engine.h"

static int set_prepage(struct migr_send_params *p, const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < 0 || n > 512)
        return -1;
    p->prepage = (uint32_t)n;
    return 0;
}

static int set_max_bw(struct migr_send_params *p, const char *v)
{
    return migr_parse_size(v, &p->max_bandwidth) < 0 ? -1 : 0;
}

static int set_min_bw(struct migr_send_params *p, const char *v)
{
    return migr_parse_size(v, &p->min_bandwidth) < 0 || p->min_bandwidth == 0 ? -1 : 0;
}

static int set_adaptive(struct migr_send_params *p, const char *v)
{
    if (strcmp(v, "0") && strcmp(v, "1"))
        return -1;
    p->adaptive_bw = v[0] == '1';
    return 0;
}

static int set_compress(struct migr_send_params *p, const char *v)
{
    static const char *const names[] = {"none", "zero", "xbzrle", "lz4", "zlib", "zstd", "auto"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(v, names[i]) == 0) {
            p->compress = names[i];
            return 0;
        }
    return -1;
}

static int set_int(const char *v, long lo, long hi, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < lo || n > hi)
        return -1;
    *out = n;
    return 0;
}

static int set_compress_level(struct migr_send_params *p, const char *v)
{
    long n;
    if (set_int(v, -65537, 22, &n) < 0) /* each codec checks its own range (codec.h) */
        return -1;
    p->compress_level = (int)n;
    return 0;
}

static int set_xbzrle_cache(struct migr_send_params *p, const char *v)
{
    if (strcmp(v, "auto") == 0) {
        p->xbzrle_cache_mib = MIGR_XBZRLE_CACHE_AUTO;
        return 0;
    }
    long n;
    if (set_int(v, 0, 65536, &n) < 0)
        return -1;
    p->xbzrle_cache_mib = (uint32_t)n;
    return 0;
}

static int set_compress_threads(struct migr_send_params *p, const char *v)
{
    long n;
    if (set_int(v, 1, 16, &n) < 0)
        return -1;
    p->compress_threads = (uint32_t)n;
    return 0;
}

static int set_stall_timeout(struct migr_send_params *p, const char *v)
{
    long n;
    if (set_int(v, 0, 3600000, &n) < 0)
        return -1;
    p->stall_timeout_ms = (uint32_t)n;
    return 0;
}

static int set_postcopy_lease(struct migr_send_params *p, const char *v)
{
    long n;
    if (set_int(v, 100, 3600000, &n) < 0)
        return -1;
    p->postcopy_lease_ms = (uint32_t)n;
    return 0;
}

int cli_migrate_mode(struct migr_send_params *p, const char *text)
{
    static const struct {
        const char *name;
        enum migr_mode mode;
    } modes[] = {{"precopy", MIGR_MODE_PRECOPY}, {"handover", MIGR_MODE_HANDOVER},
                 {"postcopy", MIGR_MODE_POSTCOPY}, {"hybrid", MIGR_MODE_HYBRID}, {"tail", MIGR_MODE_TAIL}};
    size_t len = strcspn(text, ":");
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strlen(modes[i].name) != len || strncmp(text, modes[i].name, len))
            continue;
        p->mode = modes[i].mode;
        if (text[len] == 0)
            return 0;
        long n;
        if (modes[i].mode != MIGR_MODE_HYBRID || set_int(text + len + 1, 1, 1000000, &n) < 0)
            return -1;
        p->hybrid_rounds = (uint32_t)n;
        return 0;
    }
    return -1;
}

static const struct {
    const char *key;
    int (*set)(struct migr_send_params *p, const char *v);
    const char *expect;
} migrate_opts[] = {
    {"prepage", set_prepage, "0..512 pages"},
    {"max-bandwidth", set_max_bw, "bytes per second (K, M, G suffixes)"},
    {"min-bandwidth", set_min_bw, "bytes per second above 0 (K, M, G suffixes)"},
    {"adaptive", set_adaptive, "0 or 1"},
    {"compress", set_compress, "none, zero, xbzrle, lz4, zlib, zstd or auto"},
    {"compress-level", set_compress_level, "a codec level (lz4 -65537..12, zstd up to 22, zlib 1..9)"},
    {"xbzrle-cache", set_xbzrle_cache, "0..65536 MiB or auto"},
    {"compress-threads", set_compress_threads, "1..16 threads"},
    {"stall-timeout", set_stall_timeout, "0..3600000 ms (0 = wait forever)"},
    {"postcopy-lease", set_postcopy_lease, "100..3600000 ms"},
};

int cli_migrate_option(struct migr_send_params *p, const char *token, char *err, size_t cap)
{
    const char *eq = strchr(token, '=');
    if (!eq) {
        snprintf(err, cap, "migrate: '%s' is not key=value", token);
        return -1;
    }
    size_t klen = (size_t)(eq - token);
    for (size_t i = 0; i < sizeof(migrate_opts) / sizeof(migrate_opts[0]); i++) {
        if (strlen(migrate_opts[i].key) != klen || strncmp(token, migrate_opts[i].key, klen))
            continue;
        if (migrate_opts[i].set(p, eq + 1) < 0) {
            snprintf(err, cap, "migrate: %s=%s: expected %s", migrate_opts[i].key, eq + 1, migrate_opts[i].expect);
            return -1;
        }
        return 0;
    }
    snprintf(err, cap, "migrate: unknown setting '%.*s'", (int)klen, token);
    return -1;
}
