/* libFuzzer harness: the control socket's protocol as its own thread
 * serves it (cli/ctl_thread.c): the input is what one client sends
 * (split into writes at each 0xff byte), on a real socket, to a real
 * control thread with no guest yet. Whatever it sends, the thread must
 * stay up and keep answering `status` to the next client; a line it hands
 * to the main thread (a command other than status and cancel) is taken and
 * answered here. Built and run by tests/fuzz/run.sh. */
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/ctl_thread.h"
#include "migr/common.h"
#include "migr/transport.h"

static struct ctl_thread *th;
static char path[108];

static int dial(void)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        abort();
    return fd;
}

/* Read until a newline or EOF (at most wait_ms). */
static size_t answer(int fd, char *buf, size_t cap, int wait_ms)
{
    size_t n = 0;
    while (n < cap - 1) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, wait_ms) <= 0)
            break;
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (memchr(buf, '\n', n))
            break;
    }
    buf[n] = 0;
    return n;
}

static void setup(void)
{
    struct migr_listener *l;
    char url[160];
    signal(SIGPIPE, SIG_IGN); /* the thread closes clients it refuses: our writes may meet a closed socket */
    snprintf(path, sizeof(path), "/tmp/migr-fuzz-ctl.%d", (int)getpid());
    unlink(path);
    snprintf(url, sizeof(url), "unix:%s", path);
    if (migr_listener_open(url, &l) < 0 || ctl_thread_start(l, "waiting", &th) < 0) {
        fprintf(stderr, "fuzz_ctl: %s\n", migr_last_error());
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[4096];
    struct ctl_job job;

    if (!th)
        setup();
    int fd = dial();
    size_t start = 0;
    for (size_t i = 0; i <= size; i++)
        if (i == size || data[i] == 0xff) {
            if (i > start)
                (void)!send(fd, data + start, i - start, MSG_NOSIGNAL);
            start = i + 1;
        }
    shutdown(fd, SHUT_WR);
    /* A command for the main thread: take it, answer it, like ctl_run. */
    while (ctl_thread_next(th, memchr(data, '\n', size) ? 50 : 0, &job) == 1) {
        if (strlen(job.cmd) >= sizeof(job.cmd))
            abort();
        (void)!write(job.fd, "error {}\n", 9);
        close(job.fd);
        ctl_thread_done(th);
    }
    answer(fd, buf, sizeof(buf), 200);
    close(fd);
    /* the thread still serves the next client */
    fd = dial();
    (void)!write(fd, "status\n", 7);
    if (!answer(fd, buf, sizeof(buf), 5000) || strncmp(buf, "ok {", 4)) {
        fprintf(stderr, "fuzz_ctl: no status after that input: '%s'\n", buf);
        abort();
    }
    close(fd);
    return 0;
}
