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
            "usage: migr upgrade --ctl PATH | --group NAME [--binary NEW_MIGR] [--json]\n"
            "\n"
            "Replace the VMM process serving PATH by a fresh one without stopping the guest\n"
            "for more than a hand-over: the new VMM (NEW_MIGR recv, default this binary)\n"
            "receives the guest's memory as memfds over a unix socket, loads the vCPU state,\n"
            "resumes the guest and takes over the control socket PATH; the old VMM exits.\n"
            "A new binary whose stream or state format differs refuses the guest, and the\n"
            "guest keeps running in the old VMM.\n"
            "\n"
            "  --ctl PATH          control socket of the running VMM\n"
            "  --group NAME        upgrade the VMMs of every member of VM group NAME (migr run\n"
            "                      --group) with one joint switchover: all guests pause, all\n"
            "                      state moves, all resume; if one member fails before the joint\n"
            "                      commit, every guest stays in its old VMM\n"
            "  --binary NEW_MIGR   migr binary for the new VMM (default: this one)\n"
            "  --json              print the hand-over summary as JSON\n"
            "\nExit status: 0 = the guest runs in the new VMM, 1 = it stays in the old one (the reason on stderr), 2 = bad arguments.\n");
}

#define MAX_MEMBERS 64

/* Every member gets a fresh VMM; one joint switchover hands all guests over. */
static int upgrade_group(const char *group, const char *binary, bool json)
{
    static char ctl[MAX_MEMBERS][256];
    static struct cli_group_job jobs[MAX_MEMBERS];
    static char sock[MAX_MEMBERS][400];
    pid_t pid[MAX_MEMBERS];
    int n = cli_group_members(group, ctl, MAX_MEMBERS);
    if (n < 0) {
        fprintf(stderr, "migr upgrade: %s\n", migr_last_error());
        return 1;
    }
    int spawned = 0, rc = 0;
    for (; spawned < n; spawned++) {
        pid[spawned] = cli_spawn_recv(binary, ctl[spawned], group, sock[spawned], sizeof(sock[0]));
        if (pid[spawned] < 0) {
            fprintf(stderr, "migr upgrade: group %s: member %s: %s\n", group, ctl[spawned], migr_last_error());
            rc = 1;
            goto out;
        }
        snprintf(jobs[spawned].ctl, sizeof(jobs[0].ctl), "%s", ctl[spawned]);
        snprintf(jobs[spawned].cmd, sizeof(jobs[0].cmd), "migrate unix:%.400s 300 30 auto handover barrier=1",
                 sock[spawned]);
    }
    double gdown = 0;
    if (cli_group_switch(jobs, n, &gdown) < 0) {
        fprintf(stderr, "migr upgrade: group %s: %s\n", group, migr_last_error());
        cli_group_report(stdout, group, jobs, n, 0, false, json);
        rc = 1;
        goto out;
    }
    for (int i = 0; i < n; i++)
        if (cli_wait_vmm(ctl[i], pid[i]) < 0) {
            fprintf(stderr, "migr upgrade: group %s: %s\n", group, migr_last_error());
            rc = 1;
        }
    cli_group_report(stdout, group, jobs, n, gdown, rc == 0, json);
    return rc;
out:
    for (int i = 0; i < spawned; i++) {
        kill(pid[i], SIGTERM);
        waitpid(pid[i], NULL, 0);
        unlink(sock[i]);
    }
    return rc;
}

int cmd_upgrade(int argc, char **argv)
{
    const struct cli_cmd *self = cli_find("upgrade");
    static const struct option opts[] = {
        {"ctl", required_argument, 0, 'C'}, {"binary", required_argument, 0, 'b'},
        {"json", no_argument, 0, 'j'}, {"group", required_argument, 0, 'g'}, {0, 0, 0, 0},
    };
    const char *ctl = NULL, *binary = "/proc/self/exe", *group = NULL;
    bool json = false;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (o) {
        case 'C': ctl = optarg; break;
        case 'b': binary = optarg; break;
        case 'g': group = optarg; break;
        case 'j': json = true; break;
        case ':': return cli_bad_args(self, "option '%s' needs a value", argv[optind - 1]);
        default: return cli_bad_args(self, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_bad_args(self, "unexpected argument '%s'", argv[optind]);
    if (!ctl == !group)
        return cli_bad_args(self, "give one of --ctl PATH or --group NAME");
    if (group && cli_group_check_name(group) < 0)
        return cli_bad_args(self, "--group: %s", migr_last_error());
    if (access(binary, X_OK) != 0)
        return cli_bad_args(self, "--binary %s: not an executable file", binary);
    if (group)
        return upgrade_group(group, binary, json);

    char res[16384], st[4096];
    if (ctl_call(ctl, "status", 0, NULL, NULL, st, sizeof(st)) != 0) {
        fprintf(stderr, "migr upgrade: %s\n", migr_last_error());
        return 1;
    }
    double old_pid = 0;
    json_get_num(st, "pid", &old_pid);
    char sock[400];
    pid_t pid = cli_spawn_recv(binary, ctl, NULL, sock, sizeof(sock));
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
