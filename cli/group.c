/* VM groups (seed 003): VMs started with `--group NAME` move together, with
 * one joint switchover, so cooperating guests never run split across two
 * VMMs.
 *
 * Registry: a directory per group, $MIGR_RUN_DIR/groups/NAME (default
 * MIGR_RUN_DIR = /tmp/migr-UID), one file per member whose content is the
 * member's control socket path. A member is whoever answers `status` on that
 * path with "group":"NAME"; files of VMMs that are gone are removed when the
 * group is listed, so a VMM killed with -9 leaves nothing that matters.
 *
 * Joint switchover: the coordinator asks every member to migrate with the
 * setting barrier=1. Each member's engine stops twice and reports it on its
 * control connection as a progress line "barrier pause" (about to pause the
 * guest) and "barrier commit" (paused, destination ready, about to COMMIT),
 * then waits for "go". The coordinator answers "go" only when every member
 * reached the same point, and "abort" to all as soon as one fails before
 * COMMIT: every guest then resumes on its source (engine rules). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "migr/common.h"

int cli_group_check_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return migr_errorf(EINVAL, "group name '%s': 1..64 characters", name);
    for (size_t i = 0; i < n; i++)
        if (!(name[i] >= 'a' && name[i] <= 'z') && !(name[i] >= 'A' && name[i] <= 'Z') &&
            !(name[i] >= '0' && name[i] <= '9') && name[i] != '-' && name[i] != '_' && name[i] != '.')
            return migr_errorf(EINVAL, "group name '%s': only letters, digits, '-', '_' and '.'", name);
    if (name[0] == '.')
        return migr_errorf(EINVAL, "group name '%s' cannot start with '.'", name);
    return 0;
}

/* The run directory (in /tmp by default) must be ours alone: a directory
 * someone else made first could list their sockets as our group's members.
 * One of ours that others may enter is closed to 0700 (mkdir's mode is
 * already 0700 or less, whatever the umask). */
static int private_dir(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return migr_errorf_errno(errno, "run directory %s", path);
    if (!S_ISDIR(st.st_mode))
        return migr_errorf(EACCES, "run directory %s is not a directory (a symbolic link?): refused", path);
    if (st.st_uid != geteuid())
        return migr_errorf(EACCES, "run directory %s belongs to uid %u, not to us (uid %u): refused", path,
                           (unsigned)st.st_uid, (unsigned)geteuid());
    if ((st.st_mode & 077) && chmod(path, 0700) < 0)
        return migr_errorf_errno(errno, "run directory %s: chmod 700", path);
    return 0;
}

static int group_dir(const char *name, char *dir, size_t cap, bool create)
{
    const char *run = getenv("MIGR_RUN_DIR");
    char base[256];
    if (run && *run)
        snprintf(base, sizeof(base), "%s", run);
    else
        snprintf(base, sizeof(base), "/tmp/migr-%u", (unsigned)getuid());
    int w = snprintf(dir, cap, "%s/groups/%s", base, name);
    if (w < 0 || (size_t)w >= cap)
        return migr_errorf(ENAMETOOLONG, "group directory for '%s' too long", name);
    if (!create) {
        /* Members are read from it: it must be ours (if it exists at all). */
        struct stat st;
        if (lstat(base, &st) == 0 && private_dir(base) < 0)
            return migr_error_prefix(EACCES, "group %s", name);
        return 0;
    }
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/groups", base);
    const char *mk[] = {base, sub, dir};
    for (int i = 0; i < 3; i++) {
        if (mkdir(mk[i], 0700) < 0 && errno != EEXIST)
            return migr_errorf_errno(errno, "group %s: mkdir %s", name, mk[i]);
        if (private_dir(mk[i]) < 0)
            return migr_error_prefix(EACCES, "group %s", name);
    }
    return 0;
}

/* The member file for a control socket: its path with '/' turned into '_'. */
static void member_file(const char *dir, const char *ctl, char *out, size_t cap)
{
    char flat[200];
    size_t j = 0;
    for (const char *c = ctl; *c && j + 1 < sizeof(flat); c++)
        flat[j++] = *c == '/' ? '_' : *c;
    flat[j] = 0;
    snprintf(out, cap, "%s/%s", dir, flat);
}

int cli_group_join(const char *name, const char *ctl)
{
    char dir[400], file[700], abs[4096];
    int err = group_dir(name, dir, sizeof(dir), true);
    if (err < 0)
        return err;
    if (ctl[0] == '/')
        snprintf(abs, sizeof(abs), "%s", ctl);
    else if (!getcwd(abs, sizeof(abs) - 300))
        return migr_errorf_errno(errno, "group %s: getcwd", name);
    else
        snprintf(abs + strlen(abs), sizeof(abs) - strlen(abs), "/%s", ctl);
    member_file(dir, abs, file, sizeof(file));
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return migr_errorf_errno(errno, "group %s: create %s", name, file);
    err = migr_write_full(fd, abs, strlen(abs));
    close(fd);
    if (err < 0)
        return migr_error_prefix(-err, "group %s: write %s", name, file);
    return 0;
}

int cli_group_members(const char *name, char (*ctl)[256], int max)
{
    char dir[400];
    int err = group_dir(name, dir, sizeof(dir), false);
    if (err < 0)
        return err;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? migr_errorf(ENOENT, "group %s has no members (no VM was started with --group %s)",
                                             name, name)
                               : migr_errorf_errno(errno, "group %s: open %s", name, dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char file[700], path[256] = "", st[4096], g[80];
        snprintf(file, sizeof(file), "%s/%s", dir, e->d_name);
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        ssize_t r = fd >= 0 ? read(fd, path, sizeof(path) - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (r <= 0)
            continue;
        path[r] = 0;
        /* Still a member? Its VMM must answer and say so. */
        if (ctl_call(path, "status", 0, NULL, NULL, st, sizeof(st)) != 0 || !json_get_str(st, "group", g, sizeof(g)) ||
            strcmp(g, name) != 0) {
            unlink(file);
            continue;
        }
        if (n == max) {
            closedir(d);
            return migr_errorf(E2BIG, "group %s has more than %d members", name, max);
        }
        snprintf(ctl[n++], 256, "%s", path);
    }
    closedir(d);
    if (n == 0)
        return migr_errorf(ENOENT, "group %s has no running members", name);
    /* A stable order for messages and summaries. */
    qsort(ctl, (size_t)n, sizeof(ctl[0]), (int (*)(const void *, const void *))strcmp);
    return n;
}

/* ---- the joint switchover ---- */

void cli_barrier_init(struct cli_barrier *b, int members)
{
    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    b->members = members;
}

void cli_barrier_destroy(struct cli_barrier *b)
{
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
}

void cli_barrier_fail(struct cli_barrier *b)
{
    pthread_mutex_lock(&b->lock);
    /* After every member got past "commit" nobody waits any more: a late
     * failure is that member's own (its summary says where its guest is). */
    if (b->arrived[1] < b->members)
        b->aborted = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* A progress line of one member's migration (ctl_line_fn): answer the
 * barrier lines once every member is there. */
void cli_barrier_line(void *arg, const char *line, int fd)
{
    struct cli_barrier *b = arg;
    int point;
    if (strcmp(line, "barrier done") == 0) {
        pthread_mutex_lock(&b->lock);
        b->done++;
        b->t_done = migr_now_ns();
        pthread_mutex_unlock(&b->lock);
        return;
    }
    if (strcmp(line, "barrier pause") == 0)
        point = 0;
    else if (strcmp(line, "barrier commit") == 0)
        point = 1;
    else
        return;
    pthread_mutex_lock(&b->lock);
    if (++b->arrived[point] == b->members) {
        b->t_release[point] = migr_now_ns();
        pthread_cond_broadcast(&b->cond);
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += b->wait_ms / 1000;
    until.tv_nsec += (long)(b->wait_ms % 1000) * 1000000L; /* used at "commit" only */
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    /* Only the commit barrier is bounded: a member that waits at "pause"
     * and is cut off by its watchdog fails before COMMIT, which aborts all. */
    uint32_t wait_ms = point == 1 ? b->wait_ms : 0;
    while (b->arrived[point] < b->members && !b->aborted) {
        if (!wait_ms) {
            pthread_cond_wait(&b->cond, &b->lock);
        } else if (pthread_cond_timedwait(&b->cond, &b->lock, &until) == ETIMEDOUT &&
                   b->arrived[point] < b->members) {
            /* Nothing moves on this member's link while it waits: past its
             * --stall-timeout its watchdog would end it after a late "go",
             * while the others commit (a split group). All abort now, each
             * guest resumes on its source. */
            b->aborted = b->timed_out = true;
            pthread_cond_broadcast(&b->cond);
        }
    }
    bool go = !b->aborted;
    pthread_mutex_unlock(&b->lock);
    const char *answer = go ? "go\n" : "abort\n";
    if (send(fd, answer, strlen(answer), MSG_NOSIGNAL) < 0)
        cli_barrier_fail(b);
}

struct member_job {
    struct cli_group_job *job;
    struct cli_barrier *b;
    pthread_t th;
    int rc;
    uint64_t t_end;
};

static void *member_thread(void *arg)
{
    struct member_job *m = arg;
    m->rc = ctl_call(m->job->ctl, m->job->cmd, 0, cli_barrier_line, m->b, m->job->res, sizeof(m->job->res));
    m->t_end = migr_now_ns();
    if (m->rc != 0) {
        if (m->rc < 0)
            snprintf(m->job->res, sizeof(m->job->res), "{\"ok\":false,\"error\":\"%s\"}", migr_last_error());
        cli_barrier_fail(m->b);
    }
    return NULL;
}

int cli_group_switch(struct cli_group_job *jobs, int n, double *group_downtime_ms)
{
    struct cli_barrier b;
    struct member_job *m = calloc((size_t)n, sizeof(*m));
    if (!m)
        return migr_errorf(ENOMEM, "group switchover: no memory");
    cli_barrier_init(&b, n);
    /* at the commit barrier: 3/4 of the links' stall time-out (migr send
     * --stall-timeout, default 10 s), whose watchdog counts from READY */
    const char *st = strstr(jobs[0].cmd, " stall-timeout=");
    b.wait_ms = (st ? (uint32_t)strtoul(st + 15, NULL, 10) : 10000) / 4 * 3;
    int started = 0, failed = 0;
    for (; started < n; started++) {
        m[started] = (struct member_job){.job = &jobs[started], .b = &b};
        if (pthread_create(&m[started].th, NULL, member_thread, &m[started]) != 0) {
            snprintf(jobs[started].res, sizeof(jobs[started].res), "{\"ok\":false,\"error\":\"no thread\"}");
            cli_barrier_fail(&b);
            break;
        }
    }
    uint64_t t_end = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(m[i].th, NULL);
        if (m[i].rc != 0)
            failed++;
        if (m[i].t_end > t_end)
            t_end = m[i].t_end;
    }
    failed += n - started;
    /* From the moment every member may pause to the moment the last one
     * reported its guest running on the destination (right after its DONE;
     * its final answer if that line is missing): an upper bound of the time
     * during which some member of the group was paused. */
    uint64_t t_last = b.done == n ? b.t_done : t_end;
    uint64_t t_release = b.t_release[0];
    bool aborted = b.aborted, timed_out = b.timed_out, all_went = b.arrived[1] == n;
    uint32_t wait_ms = b.wait_ms;
    /* Past the joint "go" a member whose COMMIT failed and came back to its
     * source (the destination refused COMMIT, or it was lost and settled
     * ABORTED: include/migr/settle.h) would leave the group split while the
     * others moved. Its destination listens again for it (migr recv
     * --group): migrate it on its own, as the last one over. */
    int retried = 0;
    if (failed && failed < n && all_went && !aborted) {
        for (int i = 0; i < started; i++) {
            bool back = false;
            if (m[i].rc == 0 || !json_get_bool(jobs[i].res, "resumed_on_source", &back) || !back)
                continue;
            char solo[sizeof(jobs[i].cmd)], *bar;
            snprintf(solo, sizeof(solo), "%s", jobs[i].cmd);
            if ((bar = strstr(solo, " barrier=1")))
                memmove(bar, bar + 10, strlen(bar + 10) + 1);
            fprintf(stderr, "migr send: %s: its COMMIT failed after the joint switchover while the other members "
                            "moved; it runs on its source again: migrating it on its own\n", jobs[i].ctl);
            if (ctl_call(jobs[i].ctl, solo, 0, NULL, NULL, jobs[i].res, sizeof(jobs[i].res)) == 0) {
                m[i].rc = 0;
                failed--;
                retried++;
            }
        }
    }
    if (retried) /* the group was split until the last retry moved */
        t_last = migr_now_ns();
    *group_downtime_ms = t_release && !failed ? (double)(t_last - t_release) / 1e6 : 0;
    cli_barrier_destroy(&b);
    free(m);
    if (failed && timed_out)
        return migr_errorf(ETIMEDOUT, "%d of %d members failed; a member waited %u ms (3/4 of the --stall-timeout) "
                           "for the others at the joint switchover: it was aborted, every guest resumed on its "
                           "source", failed, n, wait_ms);
    if (failed)
        return migr_errorf(ECANCELED, "%d of %d members failed%s", failed, n,
                           aborted ? "; the switchover was aborted, every guest resumed on its source" : "");
    return 0;
}

void cli_group_report(FILE *f, const char *group, const struct cli_group_job *jobs, int n, double gdown, bool ok,
                      bool json)
{
    double maxdown = 0;
    int resumed = 0;
    for (int i = 0; i < n; i++) {
        double d = 0;
        bool b = false;
        char why[800];
        if (json_get_num(jobs[i].res, "downtime_ms", &d) && d > maxdown)
            maxdown = d;
        if (json_get_bool(jobs[i].res, "resumed_on_source", &b) && b)
            resumed++;
        if (!ok && json_get_str(jobs[i].res, "error", why, sizeof(why)) && why[0])
            fprintf(stderr, "  %s: %s\n", jobs[i].ctl, why);
    }
    if (json) {
        fprintf(f, "{\"group\":\"%s\",\"ok\":%s,\"members\":%d,\"group_downtime_ms\":%.3f,"
                   "\"max_member_downtime_ms\":%.3f,\"resumed_on_source\":%d,\"vms\":[",
                group, ok ? "true" : "false", n, gdown, maxdown, resumed);
        for (int i = 0; i < n; i++)
            fprintf(f, "%s%s", i ? "," : "", jobs[i].res[0] ? jobs[i].res : "{}");
        fprintf(f, "]}\n");
    } else if (ok) {
        fprintf(f, "group %s: %d VMs moved with one joint switchover; group downtime %.2f ms "
                   "(longest member pause %.2f ms)\n", group, n, gdown, maxdown);
    } else {
        fprintf(f, "group %s: not moved; %d of %d guests resumed on their source\n", group, resumed, n);
    }
}
