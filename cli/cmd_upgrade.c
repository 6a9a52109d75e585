/* migr upgrade: live-upgrade a VMM. Start a fresh VMM process (this binary or
 * another one), hand the running guest over to it without copying memory,
 * and let the old process retire; the new one serves the same control socket. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "migr/common.h"

void usage_upgrade(FILE *f)
{
    fprintf(f,
            "usage: migr upgrade --ctl PATH [--binary NEW_MIGR] [--json]\n"
            "\n"
            "Replace the VMM process serving PATH by a fresh one without stopping the guest\n"
            "for more than a hand-over: the new VMM (NEW_MIGR recv, default this binary)\n"
            "receives the guest's memory as memfds over a unix socket, loads the vCPU state,\n"
            "resumes the guest and takes over the control socket PATH; the old VMM exits.\n"
            "A new binary whose stream or state format differs refuses the guest, and the\n"
            "guest keeps running in the old VMM.\n"
            "\n"
            "  --ctl PATH          control socket of the running VMM\n"
            "  --binary NEW_MIGR   migr binary for the new VMM (default: this one)\n"
            "  --json              print the hand-over summary as JSON\n");
}

int cmd_upgrade(int argc, char **argv)
{
    const struct cli_cmd *self = cli_find("upgrade");
    static const struct option opts[] = {
        {"ctl", required_argument, 0, 'C'}, {"binary", required_argument, 0, 'b'},
        {"json", no_argument, 0, 'j'}, {0, 0, 0, 0},
    };
    const char *ctl = NULL, *binary = "/proc/self/exe";
    bool json = false;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'C': ctl = optarg; break;
        case 'b': binary = optarg; break;
        case 'j': json = true; break;
        default: return cli_bad_args(self, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_bad_args(self, "unexpected argument '%s'", argv[optind]);
    if (!ctl)
        return cli_bad_args(self, "--ctl PATH is required");
    if (access(binary, X_OK) != 0)
        return cli_bad_args(self, "--binary %s: not an executable file", binary);

    char res[16384], st[4096];
    if (ctl_call(ctl, "status", 0, NULL, NULL, st, sizeof(st)) != 0) {
        fprintf(stderr, "migr upgrade: %s\n", migr_last_error());
        return 1;
    }
    double old_pid = 0;
    json_get_num(st, "pid", &old_pid);
    char sock[400];
    pid_t pid = cli_spawn_recv(binary, ctl, sock, sizeof(sock));
    if (pid < 0 || cli_move_guest(ctl, sock, "handover", ctl, pid, res, sizeof(res)) < 0) {
        fprintf(stderr, "migr upgrade: failed: %s\n", migr_last_error());
        return 1;
    }
    double new_pid = pid;
    double down = 0;
    json_get_num(res, "downtime_ms", &down);
    if (json)
        printf("%s\n", res);
    else
        printf("upgraded: VMM pid %.0f -> %.0f, guest paused %.2f ms, no memory copied\n", old_pid, new_pid, down);
    return 0;
}
