/* migr bench NAME [OPTIONS]: run a benchmark binary built next to this one
 * (build/bench/bench_NAME for build/migr), passing the options through. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char *const benches[][2] = {
    {"copy", "ways of moving 4 KiB pages between two processes on one host (bench/README.md)"},
    {"compress", "page codecs: XBZRLE, lz4, zlib, zstd, zero detection"},
    {"dirty", "dirty-page trackers: harvest time by guest size and dirty share"},
    {"handover", "zero-copy hand-over downtime by guest size"},
    {"migrate", "live migration by workload, transport and codec"},
    {"postcopy", "post-copy: downtime, time to resident, fault latency"},
    {"rejuvenate", "VMM upgrade / rejuvenation round trips"},
    {"holes", "never-written guest pages: source growth and time"},
};

void usage_bench(FILE *f)
{
    fprintf(f, "usage: migr bench NAME [OPTIONS]\n\n"
               "Run the benchmark NAME (the binary bench/bench_NAME beside this migr), passing OPTIONS\n"
               "through; `migr bench NAME --help` lists them. Every one takes --quick (a smoke run of\n"
               "seconds: small guests, one repetition; its figures are not for comparison) and\n"
               "--json PATH (default bench/results/NAME.json, which the plots read). `make` builds\n"
               "them all; `make bench` builds and runs the whole (long) suite, then the plots.\n"
               "Exit status: the benchmark's (0 ok, 77 skipped: it says why, 1 failed); 1 = not\n"
               "built, 2 = bad arguments.\n\n");
    for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
        fprintf(f, "  %-10s %s\n", benches[i][0], benches[i][1]);
    fprintf(f, "  e.g. migr bench copy --quick   (table, bench/results/copy.json; plot: python3 bench/plot.py)\n");
}

int cmd_bench(int argc, char **argv)
{
    const struct cli_cmd *self = cli_find("bench");
    char exe[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n;
    size_t i;

    if (argc < 2)
        return cli_bad_args(self, "which benchmark?");
    for (i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
        if (!strcmp(argv[1], benches[i][0]))
            break;
    if (i == sizeof(benches) / sizeof(benches[0]))
        return cli_bad_args(self, "unknown benchmark '%s'", argv[1]);
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0) {
        fprintf(stderr, "migr bench: /proc/self/exe: %s\n", strerror(errno));
        return 1;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(path, sizeof(path), "%s/bench/bench_%s", slash ? exe : ".", argv[1]);
    if (access(path, X_OK) < 0) {
        fprintf(stderr, "migr bench: %s: %s (`make` builds the benchmarks)\n", path, strerror(errno));
        return 1;
    }
    argv[1] = path; /* bench_NAME OPTIONS...: NAME itself is not an option */
    execv(path, argv + 1);
    fprintf(stderr, "migr bench: exec %s: %s\n", path, strerror(errno));
    return 1;
}
