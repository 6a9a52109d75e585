/* libFuzzer harness: the parsers of user-supplied text — migration URLs
 * (transfer/url.c), the `migrate` command's key=value settings and mode
 * (cli/migrate_opts.c) and sizes (migr_parse_size). A crash, a sanitizer
 * report, a refusal without a message, or an accepted value outside its
 * documented range is a bug. Built and run by tests/fuzz/run.sh.
 *
 * First input byte: 0 URL, 1 migrate setting, 2 mode, 3 size; the rest is
 * the text (a NUL ends it early). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "migr/common.h"
#include "migr/engine.h"
#include "migr/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[2048], err[400];
    struct migr_send_params p;
    struct migr_url u;
    uint64_t v;
    int r;

    if (size < 1)
        return 0;
    size_t n = size - 1 < sizeof(text) - 1 ? size - 1 : sizeof(text) - 1;
    memcpy(text, data + 1, n);
    text[n] = 0;
    migr_send_params_init(&p);
    switch (data[0] & 3) {
    case 0:
        memset(&u, 0xa5, sizeof(u));
        r = migr_url_parse(text, &u);
        if (r < 0 && !migr_last_error()[0])
            abort();
        if (r == 0) {
            if (u.kind != MIGR_URL_UNIX && u.kind != MIGR_URL_TCP && u.kind != MIGR_URL_SHM)
                abort();
            if (!memchr(u.path, 0, sizeof(u.path)) || !memchr(u.host, 0, sizeof(u.host)))
                abort();
        }
        break;
    case 1:
        err[0] = 0;
        r = cli_migrate_option(&p, text, err, sizeof(err));
        if (r < 0 && !err[0])
            abort();
        if (r == 0 && (p.prepage > 512 || p.stall_timeout_ms > 3600000 || p.compress_threads > 16 ||
                       (p.postcopy_lease_ms && p.postcopy_lease_ms < 100)))
            abort();
        break;
    case 2:
        r = cli_migrate_mode(&p, text);
        if (r == 0 && p.mode == MIGR_MODE_HYBRID && p.hybrid_rounds == 0)
            abort();
        break;
    case 3:
        r = migr_parse_size(text, &v);
        (void)r;
        break;
    }
    return 0;
}
