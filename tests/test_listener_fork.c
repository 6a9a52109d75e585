/* migr_listener_close in a forked child (a VMM that forks a helper with
 * the listener inherited): the child's close must leave the parent's
 * listener alone — the socket file stays (unix:), the parent's accept
 * thread, blocked in migr_listener_accept at the fork, goes on and takes
 * the next client (unix: and tcp:, whose socket is shared with the
 * transports it accepted). In the parent, close still unlinks the path.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/transport.h"
#include "testlib.h"
#include "transportlib.h"

static void check(const char *url, const char *path)
{
    struct t_acc_arg a = {0};
    struct migr_transport *cli;
    struct stat st;
    pthread_t th;
    int status;

    T_OK(migr_listener_open(url, &a.l));
    if (path)
        T_OK(stat(path, &st));
    T_EQ(pthread_create(&th, NULL, t_accept_thread, &a), 0);
    usleep(50000); /* the thread is in its poll */
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        migr_listener_close(a.l);
        _exit(0);
    }
    T_EQ(waitpid(pid, &status, 0), pid);
    T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (path)
        T_OK(stat(path, &st)); /* not unlinked by the child */
    T_OK(migr_transport_connect(a.l->bound, &cli));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(a.ret);
    T_OK(migr_transport_send(cli, "x", 1));
    char c;
    T_OK(migr_transport_recv(a.t, &c, 1));
    T_EQ(c, 'x');
    migr_listener_close(a.l);
    if (path)
        T_ASSERT(stat(path, &st) < 0 && errno == ENOENT); /* the parent's close unlinks */
    migr_transport_close(cli);
    migr_transport_close(a.t);
}

int main(void)
{
    char dir[64] = "/tmp/migr-lfork-XXXXXX", path[128], url[160];

    T_ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/l.sock", dir);
    snprintf(url, sizeof(url), "unix:%s", path);
    check(url, path);
    check("tcp:127.0.0.1:0", NULL);
    rmdir(dir);
    return 0;
}
