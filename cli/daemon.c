/* --daemon of migr run / migr recv: return to the shell only once the VMM is
 * ready (its control socket bound and served; migr recv: listening), so that
 * the next command of a script finds it.
 *
 * The fork comes before anything is created (KVM descriptors and threads do
 * not survive a fork): the child goes on as the VMM in its own session; the
 * parent waits on a pipe for the child's one ready line and exits 0, or 1
 * when the child exits without it (its error is on the shared stderr). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "migr/common.h"

int cli_daemonize(const char *cmd, int *ready_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        fprintf(stderr, "migr %s: --daemon: pipe: %s\n", cmd, strerror(errno));
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "migr %s: --daemon: fork: %s\n", cmd, strerror(errno));
        close(p[0]);
        close(p[1]);
        return 1;
    }
    if (pid == 0) {
        close(p[0]);
        if (setsid() < 0)
            fprintf(stderr, "migr %s: --daemon: setsid: %s\n", cmd, strerror(errno));
        /* not the parent's stdout: `pid=$(migr run --daemon ...)` must not wait for us */
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, 1) < 0)
            fprintf(stderr, "migr %s: --daemon: /dev/null: %s\n", cmd, strerror(errno));
        if (null > 1)
            close(null);
        *ready_fd = p[1];
        return -1; /* the caller goes on as the VMM */
    }
    close(p[1]);
    char line[512];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(p[0], line + n, sizeof(line) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (memchr(line, '\n', n) || n == sizeof(line) - 1)
            break;
    }
    close(p[0]);
    line[n] = 0;
    if (n == 0) {
        int st = 0;
        waitpid(pid, &st, 0);
        fprintf(stderr, "migr %s: the VMM exited before it was ready (status %d)\n", cmd,
                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        return 1;
    }
    printf("%d\n", (int)pid); /* the VMM's pid, for a script: pid=$(migr run --daemon ...) */
    return 0;
}

void cli_ready(int *ready_fd, const char *what)
{
    if (*ready_fd < 0)
        return;
    char line[512];
    snprintf(line, sizeof(line), "%s\n", what);
    if (migr_write_full(*ready_fd, line, strlen(line)) < 0)
        fprintf(stderr, "migr: --daemon: cannot tell the parent we are ready: %s\n", migr_last_error());
    close(*ready_fd);
    *ready_fd = -1;
}
