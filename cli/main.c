/* migr — command-line front end: `migr <command> [options]`. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "migr/common.h"
#include "migr/version.h"

int cmd_run(int argc, char **argv);
int cmd_recv(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_upgrade(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_rejuvenate(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
void usage_run(FILE *f);
void usage_recv(FILE *f);
void usage_send(FILE *f);
void usage_verify(FILE *f);
void usage_stop(FILE *f);
void usage_status(FILE *f);
void usage_resume(FILE *f);
void usage_demo(FILE *f);
void usage_upgrade(FILE *f);
void usage_cancel(FILE *f);
void usage_rejuvenate(FILE *f);
void usage_model(FILE *f);
void usage_bench(FILE *f);

static const struct cli_cmd cmds[] = {
    {"demo", cmd_demo, "live-migrate a running guest between two VMM processes and verify it", usage_demo},
    {"run", cmd_run, "start a VM running the test workload, serve a control socket", usage_run},
    {"recv", cmd_recv, "wait for an incoming guest, then run it", usage_recv},
    {"send", cmd_send, "live-migrate the VM behind a control socket to a receiver", usage_send},
    {"rejuvenate", cmd_rejuvenate, "rejuvenate the VMM: move the guest to a second VMM and back", usage_rejuvenate},
    {"upgrade", cmd_upgrade, "replace the VMM process under a running guest (zero-copy hand-over)", usage_upgrade},
    {"verify", cmd_verify, "check the whole guest image (pauses the workload briefly)", usage_verify},
    {"status", cmd_status, "the VM and its running migration (phase, rates, expected downtime); --watch", usage_status},
    {"resume", cmd_resume, "resume a guest a failed migration left paused", usage_resume},
    {"cancel", cmd_cancel, "cancel a running migration (on either side); the guest stays on (or returns to) the source", usage_cancel},
    {"stop", cmd_stop, "stop the VM and its VMM process", usage_stop},
    {"model", cmd_model, "cluster throughput of VMM rejuvenation methods (a queueing model)", usage_model},
    {"bench", cmd_bench, "run a benchmark; --quick: a smoke run of seconds (migr bench --help lists them)", usage_bench},
};

const char *cli_argv0;

const struct cli_cmd *cli_find(const char *name)
{
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(cmds[i].name, name) == 0)
            return &cmds[i];
    return NULL;
}

int cli_bad_args(const struct cli_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "migr %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cmd->usage(stderr);
    return 2;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: migr <command> [options]     (migr help <command> or migr <command> --help; migr --version)\n\n"
               "migr live-migrates running virtual machines between VMM processes.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].summary);
    fprintf(f, "\nexample:\n"
               "  migr run  --mem 256M --workload rate=64M --ctl /tmp/src.ctl &\n"
               "  migr recv --listen unix:/tmp/mig.sock --ctl /tmp/dst.ctl &\n"
               "  migr send --ctl /tmp/src.ctl --to unix:/tmp/mig.sock\n"
               "  migr verify --ctl /tmp/dst.ctl && migr stop --ctl /tmp/dst.ctl\n"
               "\nsizes: 4096, 64M (MiB), 512MiB, 1.5G, 100MB (10^6); rates: a size per second (100M = 100 MiB/s);\n"
               "times: 500ms, 1s, 0.5, 10m, 2h, 28d. Exit status of every command: 0 = done, 1 = failed (the\n"
               "reason on stderr), 2 = bad arguments (with the usage).\n");
}

int main(int argc, char **argv)
{
    cli_argv0 = argv[0];
    migr_log_set(migr_log_stderr, NULL); /* the library's warnings go where the CLI's messages go */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("migr %s (libmigr %s)\n", MIGR_VERSION_STRING, migr_version());
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 && argc > 2) { /* migr help CMD */
        const struct cli_cmd *h = cli_find(argv[2]);
        if (!h) {
            fprintf(stderr, "migr: unknown command '%s'\n", argv[2]);
            usage(stderr);
            return 2;
        }
        h->usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    const struct cli_cmd *c = cli_find(argv[1]);
    if (!c) {
        fprintf(stderr, "migr: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    /* migr bench NAME --help is the benchmark's own help */
    for (int i = 2; i < argc && !(c->fn == cmd_bench && i > 2); i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            c->usage(stdout);
            return 0;
        }
    return c->fn(argc - 1, argv + 1);
}
