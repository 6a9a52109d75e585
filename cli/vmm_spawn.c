/* Starting a fresh VMM process to receive a guest, and moving a guest to it:
 * shared by migr upgrade and migr rejuvenate. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "migr/common.h"

/* The socket file appears at bind(), a moment before listen(): a connect in
 * between is refused. 1 once the kernel lists sock as a listening unix
 * socket (/proc/net/unix, flag __SO_ACCEPTCON), 0 not yet, -1 if that cannot
 * be read (then the file's existence has to do). */
static int unix_listening(const char *sock)
{
    FILE *f = fopen("/proc/net/unix", "re");
    if (!f)
        return -1;
    char line[600];
    size_t n = strlen(sock);
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        size_t len = strcspn(line, "\n");
        unsigned flags;
        line[len] = 0;
        /* Num RefCount Protocol Flags Type St Inode Path */
        if (len > n && line[len - n - 1] == ' ' && strcmp(line + len - n, sock) == 0 &&
            sscanf(line, "%*s %*s %*s %x", &flags) == 1 && (flags & 0x10000))
            found = 1;
    }
    fclose(f);
    return found;
}

pid_t cli_spawn_recv(const char *binary, const char *ctl, const char *group, char *sock, size_t cap)
{
    char listen[400], log[320];
    static int seq;
    snprintf(sock, cap, "%s.in.%d.%d", ctl, (int)getpid(), seq++);
    snprintf(listen, sizeof(listen), "unix:%s", sock);
    snprintf(log, sizeof(log), "%s.log", ctl);
    pid_t pid = fork();
    if (pid < 0)
        return migr_errorf_errno(errno, "fork");
    if (pid == 0) {
        /* The new VMM outlives this command: its own session, output to CTL.log. */
        setsid();
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char *nargv[] = {"migr", "recv", "--listen", listen, "--ctl", (char *)ctl, "--take-over-ctl", "--timeout",
                         "30", "--log-file", log, group ? "--group" : NULL, (char *)group, NULL};
        execv(binary, nargv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        struct stat sb;
        if (stat(sock, &sb) == 0 && unix_listening(sock) != 0)
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return migr_errorf(ECHILD, "the new VMM (%s) exited at start; see %s", binary, log);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return migr_errorf(ETIMEDOUT, "the new VMM (%s) did not listen within 5 s; see %s", binary, log);
}

int cli_move_guest(const char *from_ctl, const char *sock, const char *mode, const char *to_ctl,
                   pid_t new_pid, char *res, size_t cap)
{
    return cli_move_guest_ex(from_ctl, sock, mode, NULL, NULL, NULL, to_ctl, new_pid, res, cap);
}

int cli_move_guest_ex(const char *from_ctl, const char *sock, const char *mode, const char *settings,
                      ctl_line_fn on_line, void *arg, const char *to_ctl, pid_t new_pid, char *res, size_t cap)
{
    char cmd[900];
    snprintf(cmd, sizeof(cmd), "migrate unix:%s 300 30 auto %s%s%s", sock, mode, settings ? " " : "",
             settings ? settings : "");
    int rc = ctl_call(from_ctl, cmd, 0, on_line, arg, res, cap);
    if (rc != 0) {
        char why[800];
        migr_errorf(EIO, "%s", rc < 0 ? migr_last_error() : json_get_str(res, "error", why, sizeof(why)) ? why : res);
        kill(new_pid, SIGTERM);
        waitpid(new_pid, NULL, 0);
        unlink(sock);
        return -EIO;
    }
    return cli_wait_vmm(to_ctl, new_pid);
}

int cli_wait_vmm(const char *to_ctl, pid_t new_pid)
{
    char st[4096];
    /* The new VMM serves to_ctl once the guest runs there (and, when it is the
     * same path, once the old VMM let go of it). */
    for (int i = 0; i < 1500; i++) { /* 15 s: on a loaded machine the new VMM may take a while */
        double pid = 0;
        if (ctl_call(to_ctl, "status", 0, NULL, NULL, st, sizeof(st)) == 0 && json_get_num(st, "pid", &pid) &&
            (pid_t)pid == new_pid)
            return 0;
        usleep(10000);
    }
    return migr_errorf(ETIMEDOUT, "the guest moved but the new VMM does not answer on %s within 15 s", to_ctl);
}
