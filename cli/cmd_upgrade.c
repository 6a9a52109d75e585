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
    char sock[300], listen[320], log[320];
    snprintf(sock, sizeof(sock), "%s.upgrade.%d", ctl, (int)getpid());
    snprintf(listen, sizeof(listen), "unix:%s", sock);
    snprintf(log, sizeof(log), "%s.log", ctl);
    pid_t pid = fork();
    if (pid < 0) {
        perror("migr upgrade: fork");
        return 1;
    }
    if (pid == 0) {
        /* The new VMM outlives this command: its own session, output to PATH.log. */
        setsid();
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char *nargv[] = {"migr", "recv", "--listen", listen, "--ctl", (char *)ctl, "--timeout", "30", NULL};
        execv(binary, nargv);
        _exit(127);
    }
    /* Wait for the new VMM's socket, then hand the guest over. */
    int rc = -1;
    for (int i = 0; i < 500; i++) {
        struct stat sb;
        if (stat(sock, &sb) == 0)
            break;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "migr upgrade: the new VMM (%s) exited at start; see %s\n", binary, log);
            return 1;
        }
        usleep(10000);
    }
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "migrate %s 300 30 auto handover", listen);
    rc = ctl_call(ctl, cmd, 0, NULL, NULL, res, sizeof(res));
    if (rc != 0) {
        char why[800];
        fprintf(stderr, "migr upgrade: failed: %s\n",
                rc < 0 ? migr_last_error() : json_get_str(res, "error", why, sizeof(why)) ? why : res);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        unlink(sock);
        return 1;
    }
    /* The new VMM takes over the control socket once the old one let go. */
    double new_pid = 0;
    if (ctl_call(ctl, "status", 0, NULL, NULL, st, sizeof(st)) != 0 || !json_get_num(st, "pid", &new_pid) ||
        new_pid == old_pid) {
        for (int i = 0; i < 250 && (new_pid == 0 || new_pid == old_pid); i++) {
            usleep(20000);
            if (ctl_call(ctl, "status", 0, NULL, NULL, st, sizeof(st)) == 0)
                json_get_num(st, "pid", &new_pid);
        }
    }
    if (new_pid == 0 || new_pid == old_pid) {
        fprintf(stderr, "migr upgrade: the guest moved but the new VMM does not answer on %s; see %s\n", ctl, log);
        return 1;
    }
    double down = 0;
    json_get_num(res, "downtime_ms", &down);
    if (json)
        printf("%s\n", res);
    else
        printf("upgraded: VMM pid %.0f -> %.0f, guest paused %.2f ms, no memory copied\n", old_pid, new_pid, down);
    return 0;
}
