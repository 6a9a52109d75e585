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

static const struct {
    const char *key;
    int (*set)(struct migr_send_params *p, const char *v);
    const char *expect;
} migrate_opts[] = {
    {"prepage", set_prepage, "0..512 pages"},
    {"max_bandwidth", set_max_bw, "bytes per second (K, M, G suffixes)"},
    {"min_bandwidth", set_min_bw, "bytes per second above 0 (K, M, G suffixes)"},
    {"adaptive_bw", set_adaptive, "0 or 1"},
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
