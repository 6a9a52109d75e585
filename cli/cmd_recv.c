/* migr recv: wait for one incoming guest, then run it and serve its control socket. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "migr/common.h"
#include "migr/transport.h"

void usage_recv(FILE *f)
{
    fprintf(f,
            "usage: migr recv --listen URL --ctl PATH [--timeout SECONDS] [--json]\n"
            "\n"
            "Wait for one migration stream on URL (unix:PATH or tcp:HOST:PORT; port 0 picks\n"
            "a free port, printed on stderr as \"listening on URL\"). The guest is resumed\n"
            "here only once every page has arrived intact and the source has committed;\n"
            "then this process becomes its VMM and serves the control socket PATH.\n"
            "A bad or truncated stream makes it exit 1 with the reason; no guest runs.\n"
            "\n"
            "  --listen URL       where to wait for the source\n"
            "  --ctl PATH         control socket to serve once the guest runs\n"
            "  --timeout SECONDS  give up if no source connects in time (default: wait forever)\n"
            "  --json             print the migration summary as JSON on stdout\n");
}

int cmd_recv(int argc, char **argv)
{
    const struct cli_cmd *self = cli_find("recv");
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'}, {"ctl", required_argument, 0, 'C'},
        {"timeout", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'}, {0, 0, 0, 0},
    };
    const char *listen = NULL, *ctl = NULL;
    bool json = false;
    int timeout_ms = -1;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'l': listen = optarg; break;
        case 'C': ctl = optarg; break;
        case 'j': json = true; break;
        case 't': {
            char *end;
            long s = strtol(optarg, &end, 10);
            if (*end || s <= 0 || s > 86400)
                return cli_bad_args(self, "--timeout %s: expected 1..86400 seconds", optarg);
            timeout_ms = (int)s * 1000;
            break;
        }
        default:
            return cli_bad_args(self, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_bad_args(self, "unexpected argument '%s'", argv[optind]);
    if (!listen || !ctl)
        return cli_bad_args(self, "--listen URL and --ctl PATH are required");
    struct migr_listener *l;
    if (migr_listener_open(listen, &l) < 0) {
        fprintf(stderr, "migr recv: %s\n", migr_last_error());
        return 1;
    }
    fprintf(stderr, "migr recv: listening on %s\n", l->bound);
    struct migr_transport *t;
    if (migr_listener_accept(l, timeout_ms, &t) < 0) {
        fprintf(stderr, "migr recv: %s\n", migr_last_error());
        migr_listener_close(l);
        return 1;
    }
    migr_listener_close(l);
    struct migr_hv *hv = NULL;
    struct migr_stats st;
    int err = migr_recv(t, &hv, &st);
    migr_transport_close(t);
    char js[16384];
    migr_stats_json(&st, js, sizeof(js));
    if (err < 0) {
        fprintf(stderr, "migr recv: %s\n", st.error);
        if (json)
            printf("%s\n", js);
        return 1;
    }
    fprintf(stderr, "migr recv: guest running here (%llu MiB in %.1f ms, %llu pages, %llu torn and resent)\n",
            (unsigned long long)(st.ram_bytes >> 20), (double)st.total_ns / 1e6,
            (unsigned long long)st.pages_sent, (unsigned long long)st.torn_pages);
    if (json) {
        printf("%s\n", js);
        fflush(stdout);
    }
    char info[256];
    snprintf(info, sizeof(info), "\"backend\":\"%s\",\"ram_bytes\":%llu,\"vcpus\":%u,\"incoming\":true",
             hv->ops->name, (unsigned long long)st.ram_bytes, hv->nvcpus);
    return ctl_serve(hv, ctl, info);
}
