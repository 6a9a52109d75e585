/* migr — unix stream socket transport: unix:PATH, unix:@ABSTRACT. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

static const struct migr_transport_ops unix_ops = {
    .name = "unix",
    .sendv = migr_sock_sendv,
    .recvv = migr_sock_recvv,
    .shutdown = migr_sock_shutdown,
    .close = migr_sock_close,
    .caps = MIGR_TCAP_PASS_FDS | MIGR_TCAP_SIDE | MIGR_TCAP_POLL_DATA,
};

static int is_abstract(const struct migr_url *u)
{
    return u->path[0] == '@';
}

/* '@name' becomes an abstract address: a leading NUL, then the name, with
 * the length (not a terminator) marking its end. */
static socklen_t unix_addr(const struct migr_url *u, struct sockaddr_un *sa)
{
    size_t n = strlen(u->path);   /* < sizeof(sa->sun_path), checked by the URL parser */

    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, u->path, n);
    if (is_abstract(u)) {
        sa->sun_path[0] = '\0';
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

static int unix_socket(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    /* No autotuning for unix sockets: a larger send buffer (clamped by
     * net.core.wmem_max) means fewer wakeups per MiB. */
    migr_sock_set_bufs(fd, MIGR_SOCK_BUF_BYTES, 0);
    return fd;
}

int migr_unix_peer_check(int fd, const char *what)
{
    struct ucred uc;
    socklen_t len = sizeof(uc);
    uid_t me = geteuid();

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return migr_errorf_errno(errno, "%s: SO_PEERCRED", what);
    if (uc.uid == me || uc.uid == 0)
        return 0;
    if (me == 0)
        return migr_errorf(EACCES, "%s: refused a process of uid %u (pid %d): only root may use it", what,
                           (unsigned)uc.uid, (int)uc.pid);
    return migr_errorf(EACCES, "%s: refused a process of uid %u (pid %d): only uid %u or root may use it", what,
                       (unsigned)uc.uid, (int)uc.pid, (unsigned)me);
}

static int unix_connect(const struct migr_url *u, const char *url)
{
    struct sockaddr_un sa;
    socklen_t len = unix_addr(u, &sa);
    struct ucred uc;
    socklen_t cl = sizeof(uc);
    int fd, ret;

    fd = unix_socket();
    if (fd < 0)
        return migr_errorf_errno(-fd, "connect %s: socket", url);
    ret = migr_sock_connect(fd, &sa, len);
    if (ret < 0) {
        close(fd);
        return migr_errorf_errno(-ret, "connect %s", url);
    }
    /* The listener must be ours or root's: another user may have taken the
     * name first (an abstract @name, or a path in a shared directory) to be
     * handed a guest, or to feed us one. */
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &cl) < 0) {
        ret = migr_errorf_errno(errno, "connect %s: SO_PEERCRED", url);
        close(fd);
        return ret;
    }
    if (uc.uid != geteuid() && uc.uid != 0) {
        close(fd);
        return migr_errorf(EACCES, "connect %s: the listener runs as uid %u (pid %d), neither us (uid %u) nor root: "
                           "refused (another user's socket under that name?)", url, (unsigned)uc.uid, (int)uc.pid,
                           (unsigned)geteuid());
    }
    return fd;
}

/* bind() said EADDRINUSE for a path: 1 if it is a socket nobody listens on
 * (left behind by a crashed process), 0 if it is live or not a socket. */
static int stale_socket(const struct sockaddr_un *sa, socklen_t len, const char *path)
{
    struct stat st;
    int fd, ret;

    if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return 0;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    ret = migr_sock_connect(fd, sa, len);
    close(fd);
    return ret == -ECONNREFUSED;
}

static void unix_unlisten(struct migr_listener *l)
{
    struct migr_listener_impl *li = listener_impl(l);
    struct stat st;

    char aside[sizeof(l->url.path) + 32];

    if (!li->owns_path)
        return;
    li->owns_path = 0;
    /* A successor may rename its own socket onto the path at any moment
     * (migr upgrade's take-over), so "stat, then unlink if it is ours" could
     * remove the successor's socket. Move the name aside atomically first;
     * what was moved is looked at under the private name, and put back
     * unless it is ours. Best effort throughout: nothing to do if it fails. */
    snprintf(aside, sizeof(aside), "%s.closing.%ld", l->url.path, (long)getpid());
    if (rename(l->url.path, aside) < 0)
        return;
    if (stat(aside, &st) < 0 || st.st_dev != li->dev || st.st_ino != li->ino)
        (void)link(aside, l->url.path);   /* EEXIST: a newer one is there already */
    (void)unlink(aside);
}

static int unix_listen(struct migr_listener *l, const char *url)
{
    struct migr_listener_impl *li = listener_impl(l);
    const struct migr_url *u = &l->url;
    struct sockaddr_un sa;
    socklen_t len = unix_addr(u, &sa);
    struct stat st;
    int fd, ret;

    fd = unix_socket();
    if (fd < 0)
        return migr_errorf_errno(-fd, "listen %s: socket", url);
    ret = bind(fd, (struct sockaddr *)&sa, len);
    /* Keep bind's errno: the probe below may fail with another one (ENOENT
     * when the owner unlinks its socket meanwhile), and callers retry on
     * EADDRINUSE. */
    int bind_err = ret < 0 ? errno : 0;
    if (ret < 0 && bind_err == EADDRINUSE && !is_abstract(u) && stale_socket(&sa, len, u->path)) {
        if (unlink(u->path) < 0 && errno != ENOENT) {
            ret = migr_errorf_errno(errno, "listen %s: removing stale socket", url);
            close(fd);
            return ret;
        }
        ret = bind(fd, (struct sockaddr *)&sa, len);
        bind_err = ret < 0 ? errno : 0;
    }
    if (ret < 0) {
        ret = migr_errorf_errno(bind_err, "listen %s", url);
        close(fd);
        return ret;
    }
    if (!is_abstract(u)) {
        /* Remember which file we created, so that close does not unlink a
         * socket that another listener put there after us. */
        if (stat(u->path, &st) == 0) {
            li->owns_path = 1;
            li->dev = st.st_dev;
            li->ino = st.st_ino;
        }
    }
    l->fd = fd;
    snprintf(l->bound, sizeof(l->bound), "unix:%s%s", u->path, u->uring ? "?uring=1" : "");
    /* Owner-only whatever the umask, before anyone can connect (listen()
     * comes after): a control socket stops or migrates a VM. Abstract
     * sockets have no file mode: accept checks the peer's uid instead. */
    if (!is_abstract(u) && chmod(u->path, 0600) < 0) {
        ret = migr_errorf_errno(errno, "listen %s: chmod 600", url);
        close(fd);
        l->fd = -1;
        unix_unlisten(l);
        return ret;
    }
    if (listen(fd, 16) < 0) {
        ret = migr_errorf_errno(errno, "listen %s", url);
        close(fd);
        l->fd = -1;
        unix_unlisten(l);
        return ret;
    }
    return 0;
}

static int unix_accepted(struct migr_listener *l, int fd, char *peer, size_t cap)
{
    char what[340];

    /* Unix peers are nameless; name the connection by the listening path. */
    snprintf(peer, cap, "%s", l->bound);
    snprintf(what, sizeof(what), "accept on %s", l->bound);
    return migr_unix_peer_check(fd, what);
}

const struct migr_transport_backend migr_unix_backend = {
    .kind = MIGR_URL_UNIX,
    .ops = &unix_ops,
    .connect = unix_connect,
    .listen = unix_listen,
    .accepted = unix_accepted,
    .unlisten = unix_unlisten,
};
