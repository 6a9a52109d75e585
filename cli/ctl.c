/* The control socket of a VMM process (`migr run`, `migr recv`).
 *
 * Protocol: the client sends one line; the server answers with zero or more
 * "progress ..." lines and one final "ok <json>" or "error <json>" line.
 *   status | cancel | verify | stop | resume | warm | migrate <url> <downtime_ms> <max_rounds> ...
 * After a successful migrate the VMM releases the guest and exits.
 *
 * Threads: the socket is served by its own thread (cli/ctl_thread.c), which
 * answers status and cancel at once, at any moment; the other commands run
 * here, on the VMM's main thread, one at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/ctl_thread.h"
#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/settle.h"
#include "migr/transport.h"
#include "migr/workload.h"

static volatile sig_atomic_t stop_signal;
const char *ctl_log_file;
static char serve_group[80]; /* the VM's group ("" = none), kept across a warm reboot */
/* The VM's dirty tracker ("dirty" of migr run's info; used when migrate says
 * auto) and the one the last migration ran (reported by verify). */
static char vm_tracker[32] = "auto", ran_tracker[32] = "";

struct ctl_server {
    struct migr_listener *l;
    struct ctl_thread *th;
    char path[108];               /* the control socket's final path */
    char tmp[108];                /* take-over: where it is bound until published ("" = at path) */
};

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* Answers to the client of the command the main thread runs. The final line
 * may wait up to 5 s for a slow reader (SO_SNDTIMEO); progress lines never
 * wait (dropped if the client is behind): the engine calls them, sometimes
 * with the guest paused. */
static struct ctl_thread *answering; /* the command whose final answer is next */

static void reply_flags(int fd, int flags, const char *fmt, va_list ap)
{
    char buf[16384];
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    /* A client that went away must not kill the VMM (MSG_NOSIGNAL). */
    for (int off = 0; off < n;) {
        ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL | flags);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += (int)w;
    }
}

/* The final answer to the running command. The control thread learns that
 * the command is over before the client does: a client that sends its next
 * command as soon as it has this answer must not be told "busy". */
static void reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(int fd, const char *fmt, ...)
{
    va_list ap;
    if (answering) {
        ctl_thread_done(answering);
        answering = NULL;
    }
    va_start(ap, fmt);
    reply_flags(fd, 0, fmt, ap);
    va_end(ap);
}

/* A line that is not the answer (a group barrier's), waiting like one. */
static void reply_line(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply_line(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_flags(fd, 0, fmt, ap);
    va_end(ap);
}

static void reply_progress(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply_progress(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_flags(fd, MSG_DONTWAIT, fmt, ap);
    va_end(ap);
}

void json_escape(const char *in, char *out, size_t cap)
{
    size_t j = 0;
    for (; *in && j + 2 < cap; in++) {
        if (*in == '"' || *in == '\\')
            out[j++] = '\\';
        out[j++] = (unsigned char)*in >= 0x20 ? *in : ' ';
    }
    out[j] = 0;
}

static int read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            return -ETIMEDOUT;
        ssize_t r = read(fd, buf + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -EPIPE;
        if (buf[n] == '\n') {
            buf[n] = 0;
            return (int)n;
        }
        n++;
    }
    return -E2BIG;
}

struct progress_sink {
    int fd;
    struct ctl_thread *th;
    struct migr_cancel *cancel;
};

/* Joint switchover of a VM group (cli/group.c): tell the coordinator we are
 * at point and wait for its "go" (a cancel on the control socket ends the wait). */
static int barrier_hook(void *arg, const char *point)
{
    struct progress_sink *s = arg;
    reply_line(s->fd, "progress barrier %s", point);
    if (strcmp(point, "done") == 0)
        return 0; /* nothing to wait for: the guest moved */
    uint64_t deadline = migr_now_ns() + 120ull * 1000000000ull;
    char line[64];
    for (;;) {
        struct pollfd pf = {.fd = s->fd, .events = POLLIN};
        int r = poll(&pf, 1, 100);
        if (r < 0 && errno != EINTR)
            return migr_errorf_errno(errno, "group barrier at %s: poll", point);
        if (r > 0)
            break;
        if (migr_cancel_requested(s->cancel))
            return migr_errorf(ECANCELED, "group barrier at %s: cancelled", point);
        if (migr_now_ns() > deadline)
            return migr_errorf(ETIMEDOUT, "group barrier at %s: the other members did not arrive within 120 s",
                               point);
    }
    int n = read_line(s->fd, line, sizeof(line));
    if (n < 0)
        return migr_errorf(EPIPE, "group barrier at %s: the coordinator went away", point);
    if (strcmp(line, "go") != 0)
        return migr_errorf(ECANCELED, "group switchover aborted at %s: another member of the group failed", point);
    return 0;
}

static void progress_to_client(void *arg, const struct migr_progress *p)
{
    struct progress_sink *s = arg;
    ctl_thread_progress(s->th, p);
    reply_progress(s->fd, "progress %s %u %llu %llu %llu %.3f", p->phase, p->round,
                   (unsigned long long)p->pages_done, (unsigned long long)p->pages_total,
                   (unsigned long long)p->bytes_sent, p->elapsed_s);
}

static void do_verify(struct migr_hv *hv, int fd)
{
    struct migr_verify_report rep;
    uint64_t t0 = migr_now_ns();
    int err = hv->ops->quiesce(hv, 5000);
    if (err == 0) {
        err = migr_workload_verify(hv, &rep);
        hv->ops->unquiesce(hv);
    }
    double pause_ms = (double)(migr_now_ns() - t0) / 1e6;
    char why[400];
    if (err < 0) {
        json_escape(migr_last_error(), why, sizeof(why));
        reply(fd, "error {\"verified\":false,\"error\":\"%s\"}", why);
        return;
    }
    struct migr_dirty *d;
    if (!ran_tracker[0] && migr_dirty_open(vm_tracker, hv, &d) == 0) { /* "auto": say which one */
        snprintf(ran_tracker, sizeof(ran_tracker), "%s", d->ops->name);
        migr_dirty_close(d);
    }
    json_escape(rep.first_bad_why, why, sizeof(why));
    reply(fd, "%s {\"verified\":%s,\"pages_checked\":%llu,\"bad_pages\":%llu,\"writes\":%llu,"
          "\"first_bad\":\"%s\",\"pause_ms\":%.3f,\"tracker\":\"%s\"}", rep.ok ? "ok" : "error", rep.ok ? "true" : "false",
          (unsigned long long)rep.pages_checked, (unsigned long long)rep.bad_pages,
          (unsigned long long)rep.total_writes, why, pause_ms, ran_tracker[0] ? ran_tracker : vm_tracker);
}

/* Returns true if the VMM should exit (guest gone). */
static bool do_migrate(struct migr_hv *hv, int fd, char *args, struct ctl_thread *th)
{
    char url[400];
    unsigned downtime = 300, rounds = 30;
    char tracker[32] = "auto", mode[16] = "tail";
    int used = 0;
    if (sscanf(args, "%399s %u %u %31s %15s%n", url, &downtime, &rounds, tracker, mode, &used) < 1) {
        reply(fd, "error {\"ok\":false,\"error\":\"migrate: missing destination URL\"}");
        return false;
    }
    struct migr_send_params p;
    migr_send_params_init(&p);
    struct migr_settle_params settle = {.size = sizeof(settle), .url = url}; /* doubt after COMMIT: ask the destination again */
    struct migr_key *key = NULL;
    /* key=value settings after the positional arguments (cli/migrate_opts.c) */
    char *save = NULL, *rest = used > 0 ? args + used : NULL;
    for (char *tok = rest ? strtok_r(rest, " ", &save) : NULL; tok; tok = strtok_r(NULL, " ", &save)) {
        char bad[300], esc[400];
        if (strcmp(tok, "barrier=1") == 0) {
            p.switchover_hook = barrier_hook; /* its argument, the sink, is set below */
            continue;
        }
        if (strncmp(tok, "settle-window=", 14) == 0) { /* migr send --settle-window (checked there) */
            settle.window_ms = (uint32_t)strtoul(tok + 14, NULL, 10);
            continue;
        }
        if (strncmp(tok, "key-file=", 9) == 0) {
            /* migr send --key-file: the path, never the key, comes over the socket */
            migr_key_free(key);
            key = NULL;
            if (migr_key_load(tok + 9, &key) < 0) {
                json_escape(migr_last_error(), esc, sizeof(esc));
                reply(fd, "error {\"ok\":false,\"error\":\"migrate: %s\",\"resumed_on_source\":true}", esc);
                return false;
            }
            continue;
        }
        if (cli_migrate_option(&p, tok, bad, sizeof(bad)) < 0) {
            json_escape(bad, esc, sizeof(esc));
            reply(fd, "error {\"ok\":false,\"error\":\"%s\"}", esc);
            migr_key_free(key);
            return false;
        }
    }
    if (cli_migrate_mode(&p, mode) < 0) {
        reply(fd, "error {\"ok\":false,\"error\":\"migrate: mode '%s': expected tail, precopy, handover, postcopy "
                  "or hybrid[:N]\",\"resumed_on_source\":true}", mode);
        return false;
    }
    struct progress_sink sink = {.fd = fd, .th = th, .cancel = migr_cancel_new()};
    char js[16384], why[600];
    if (!sink.cancel) {
        reply(fd, "error {\"ok\":false,\"error\":\"out of memory\",\"resumed_on_source\":true}");
        migr_key_free(key);
        return false;
    }
    /* From here a cancel on the control socket reaches the migration, also
     * while it connects to a destination that does not answer. The key (or
     * none) is also the default for the connections the engine makes
     * itself: the post-copy fault channel's listener. */
    ctl_thread_migrating(th, sink.cancel);
    struct migr_link_opts lo = {.key = key};
    struct migr_url pu;
    if (migr_url_parse(url, &pu) == 0)
        lo.encrypt = (int)pu.encrypt; /* the fault channel's listener too */
    struct migr_transport *t;
    int cerr = migr_link_set_default(key ? &lo : NULL);
    if (cerr == 0)
        cerr = migr_transport_connect_opts(url, &lo, &t);
    migr_key_free(key);
    if (cerr < 0) {
        migr_link_set_default(NULL);
        json_escape(migr_last_error(), why, sizeof(why));
        ctl_thread_migrating(th, NULL);
        migr_cancel_free(sink.cancel);
        reply(fd, "error {\"ok\":false,\"error\":\"%s; the guest keeps running on the source\","
                  "\"resumed_on_source\":true}", why);
        return false;
    }
    p.downtime_ms = downtime;
    p.max_rounds = rounds;
    p.tracker = strcmp(tracker, "auto") == 0 ? vm_tracker : tracker;
    p.cancel = sink.cancel;
    p.switchover_arg = &sink;
    p.progress = progress_to_client;
    p.progress_arg = &sink;
    struct migr_stats st = MIGR_STATS_INIT;
    settle.link = NULL; /* the process default set above: the same key (lo's was freed) */
    int err = migr_send_settled(hv, t, &p, &settle, &st);
    migr_link_set_default(NULL);
    ctl_thread_migrating(th, NULL);
    migr_cancel_free(sink.cancel);
    snprintf(ran_tracker, sizeof(ran_tracker), "%s", st.tracker);
    migr_transport_close(t);
    migr_stats_json(&st, js, sizeof(js));
    if (st.ownership_in_doubt) { /* status says so until a resume */
        const char *d = strstr(st.error, "ownership in doubt");
        ctl_thread_set_ownership(th, d ? d : st.error);
    }
    reply(fd, "%s %s", err == 0 ? "ok" : "error", js);
    if (err < 0)
        fprintf(stderr, "migr: migration to %s failed: %s\n", url, st.error);
    return err == 0;
}

/* Warm VMM reboot (seed 002's Warm-VM Reboot): the guest's memory stays in
 * place while this VMM process restarts. Pause, put the vCPU state in a
 * memfd, keep the RAM memfd, the state memfd and the client's connection
 * open across exec, and exec a fresh VMM (`migr recv --warm`), which maps the
 * same memory, loads the state, resumes and answers the client. Returns only
 * if the exec failed (the guest is resumed here then; the control socket is
 * served again if srv->l is set). */
static void do_warm(struct migr_hv *hv, int fd, struct ctl_server *srv)
{
    uint64_t t0 = migr_now_ns();
    uint8_t *blob = NULL;
    size_t blen = 0;
    int sfd = -1;
    char why[400];
    if (hv->nregions != 1 || hv->regions[0].memfd < 0) {
        reply(fd, "error {\"error\":\"warm reboot needs one memfd-backed RAM region\"}");
        return;
    }
    if (hv->ops->pause(hv) < 0 || hv->ops->save_state(hv, &blob, &blen) < 0)
        goto fail;
    sfd = memfd_create("migr-warm-state", 0);
    if (sfd < 0 || migr_write_full(sfd, blob, blen) < 0) {
        migr_errorf_errno(errno, "warm reboot: state memfd");
        goto fail;
    }
    int keep[] = {hv->regions[0].memfd, sfd, fd};
    for (int i = 0; i < 3; i++)
        if (fcntl(keep[i], F_SETFD, 0) < 0) {
            migr_errorf_errno(errno, "warm reboot: keep fd %d across exec", keep[i]);
            goto fail;
        }
    char spec[300], ctlpath[300];
    snprintf(spec, sizeof(spec), "%d:%llu:%llu:%u:%d:%zu:%d:%llu:%u:%s", hv->regions[0].memfd,
             (unsigned long long)hv->regions[0].memfd_off, (unsigned long long)hv->regions[0].size, hv->nvcpus,
             sfd, blen, fd, (unsigned long long)t0, hv->state_version, hv->ops->name);
    snprintf(ctlpath, sizeof(ctlpath), "%s", srv->path);
    /* the new process binds the same path */
    ctl_thread_stop(srv->th);
    srv->th = NULL;
    answering = NULL;
    migr_listener_close(srv->l);
    srv->l = NULL;
    char *argv[] = {"migr", "recv", "--warm", spec, "--ctl", ctlpath,
                    serve_group[0] ? "--group" : NULL, serve_group, NULL};
    execv("/proc/self/exe", argv);
    migr_errorf_errno(errno, "warm reboot: exec");
    char url[320];
    snprintf(url, sizeof(url), "unix:%s", srv->path);
    if (migr_listener_open(url, &srv->l) < 0 || ctl_thread_start(srv->l, NULL, &srv->th) < 0) {
        fprintf(stderr, "migr: control socket lost after a failed warm reboot: %s\n", migr_last_error());
        migr_listener_close(srv->l);
        srv->l = NULL;
    }
fail:
    json_escape(migr_last_error(), why, sizeof(why));
    if (sfd >= 0)
        close(sfd);
    free(blob);
    hv->ops->resume(hv);
    reply(fd, "error {\"error\":\"%s; the guest keeps running in this VMM\"}", why);
}

int ctl_open(const char *path, bool take_over, struct ctl_server **out)
{
    struct ctl_server *srv = calloc(1, sizeof(*srv));
    char url[300];
    int err;
    if (!srv)
        return migr_errorf(ENOMEM, "control socket: out of memory");
    if (strlen(path) >= sizeof(srv->path)) {
        free(srv);
        return migr_errorf(ENAMETOOLONG, "control socket %s: path longer than %zu bytes", path,
                           sizeof(srv->path) - 1);
    }
    if (path[0] == '@') {
        free(srv);
        return migr_errorf(EINVAL, "control socket %s: abstract sockets have no access control; "
                           "give a file system path", path);
    }
    snprintf(srv->path, sizeof(srv->path), "%s", path);
    if (take_over &&
        snprintf(srv->tmp, sizeof(srv->tmp), "%s.new.%d", path, (int)getpid()) >= (int)sizeof(srv->tmp)) {
        free(srv);
        return migr_errorf(ENAMETOOLONG, "control socket %s: too long to take over (%s.new.PID must fit in "
                           "%zu bytes)", path, path, sizeof(srv->tmp) - 1);
    }
    snprintf(url, sizeof(url), "unix:%s", take_over ? srv->tmp : path);
    if ((err = migr_listener_open(url, &srv->l)) < 0) {
        if (err == -EADDRINUSE)
            migr_errorf(EADDRINUSE, "control socket %s is in use by another process%s", path,
                        take_over ? "" : " (stop it, or choose another --ctl)");
        else
            migr_error_prefix(-err, "control socket");
        free(srv);
        return err;
    }
    if ((err = ctl_thread_start(srv->l, "starting", &srv->th)) < 0) {
        migr_listener_close(srv->l);
        free(srv);
        return err;
    }
    *out = srv;
    return 0;
}

void ctl_close(struct ctl_server *srv)
{
    if (!srv)
        return;
    ctl_thread_stop(srv->th);
    migr_listener_close(srv->l);
    free(srv);
}

void ctl_set_incoming(struct ctl_server *srv, const struct migr_transport *t)
{
    ctl_thread_incoming(srv->th, t);
}

struct migr_cancel *ctl_recv_cancel(struct ctl_server *srv) { return ctl_thread_recv_cancel(srv->th); }

void ctl_set_waiting(struct ctl_server *srv, struct migr_listener *l)
{
    ctl_thread_waiting(srv->th, l);
}

bool ctl_stop_requested(struct ctl_server *srv)
{
    return ctl_thread_stop_requested(srv->th);
}

void ctl_set_phase(struct ctl_server *srv, const char *phase)
{
    ctl_thread_set_phase(srv->th, phase);
}

/* Take-over: the guest runs here now, so the path is ours (the previous VMM
 * may still be bound to it for a moment: rename replaces its name, and it
 * unlinks only a socket that is still its own). */
static void publish(struct ctl_server *srv)
{
    if (!srv->tmp[0])
        return;
    if (rename(srv->tmp, srv->path) < 0) {
        fprintf(stderr, "migr: control socket: cannot take over %s (%s); the guest runs here and is served "
                "at %s\n", srv->path, strerror(errno), srv->tmp);
        return;
    }
    snprintf(srv->l->url.path, sizeof(srv->l->url.path), "%s", srv->path);
    snprintf(srv->l->bound, sizeof(srv->l->bound), "unix:%s", srv->path);
    srv->tmp[0] = 0;
}

int ctl_run(struct ctl_server *srv, struct migr_hv *hv, const char *info_json, int ready_fd, const char *ready)
{
    if (!json_get_str(info_json, "group", serve_group, sizeof(serve_group)))
        serve_group[0] = 0;
    if (!json_get_str(info_json, "dirty", vm_tracker, sizeof(vm_tracker)) || !vm_tracker[0])
        snprintf(vm_tracker, sizeof(vm_tracker), "auto");
    publish(srv);
    ctl_thread_set_vm(srv->th, hv, info_json);
    if (serve_group[0] && cli_group_join(serve_group, srv->path) < 0)
        fprintf(stderr, "migr: %s (the VM runs, but not as a group member)\n", migr_last_error());
    if (ready_fd >= 0) {
        /* Answer whoever waits for us only once the control socket exists. */
        migr_write_full(ready_fd, ready, strlen(ready));
        close(ready_fd);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    bool done = false, stopped = false;
    while (!done && !stop_signal) {
        struct ctl_job job;
        if (!srv->th) {
            /* the control socket was lost (a failed warm reboot): the guest
             * runs on until a signal stops it */
            usleep(200000);
            continue;
        }
        if (!ctl_thread_next(srv->th, 200, &job))
            continue;
        int fd = job.fd;
        answering = srv->th;
        /* blocking from here, but a final answer waits at most 5 s */
        struct timeval tv = {.tv_sec = 5};
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
            fprintf(stderr, "migr: control socket: set up a client: %s\n", strerror(errno));
        char *line = job.cmd, *args = strchr(line, ' ');
        if (args)
            *args++ = 0;
        else
            args = line + strlen(line);
        if (strcmp(line, "verify") == 0) {
            do_verify(hv, fd);
        } else if (strcmp(line, "stop") == 0) {
            reply(fd, "ok {\"schema\":%d,\"stopped\":true}", CLI_JSON_SCHEMA);
            done = true;
            stopped = true;
        } else if (strcmp(line, "warm") == 0) {
            do_warm(hv, fd, srv); /* returns only on failure; the guest runs here */
        } else if (strcmp(line, "resume") == 0) {
            if (hv->ops->resume(hv) == 0) {
                ctl_thread_set_ownership(srv->th, NULL);
                reply(fd, "ok {\"running\":true}");
            } else {
                reply(fd, "error {\"error\":\"resume failed\"}");
            }
        } else if (strcmp(line, "migrate") == 0) {
            if (do_migrate(hv, fd, args, srv->th)) {
                fprintf(stderr, "migr: guest migrated away; this VMM exits\n");
                done = true;
            }
        } else {
            reply(fd, "error {\"error\":\"unknown command '%.100s'\"}", line);
        }
        if (answering) /* a command that did not answer */
            ctl_thread_done(answering);
        answering = NULL;
        close(fd);
    }
    if (stop_signal)
        fprintf(stderr, "migr: signal %d: stopping the VM\n", (int)stop_signal);
    /* The VM ends here (not moved on to a VMM that writes the same log). */
    if ((stopped || stop_signal) && ctl_log_file && unlink(ctl_log_file) < 0 && errno != ENOENT)
        fprintf(stderr, "migr: remove %s: %s\n", ctl_log_file, strerror(errno));
    ctl_close(srv);
    migr_hv_destroy(hv);
    return 0;
}

int ctl_serve(struct migr_hv *hv, const char *path, const char *info_json)
{
    struct ctl_server *srv;
    if (ctl_open(path, false, &srv) < 0) {
        /* a fresh guest (migr run): nothing is lost by not starting it */
        fprintf(stderr, "migr: %s\n", migr_last_error());
        migr_hv_destroy(hv);
        return 1;
    }
    return ctl_run(srv, hv, info_json, -1, NULL);
}

/* A guest that must not be lost but cannot be served: it runs until a signal. */
static int ctl_run_unserved(struct migr_hv *hv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!stop_signal)
        usleep(200000);
    fprintf(stderr, "migr: signal %d: stopping the VM\n", (int)stop_signal);
    migr_hv_destroy(hv);
    return 1;
}

int ctl_serve_ready(struct migr_hv *hv, const char *path, const char *info_json, int ready_fd, const char *ready)
{
    struct ctl_server *srv;
    /* After a warm reboot the previous process let go of the path just before
     * its exec; elsewhere a path in use is another VMM's. */
    int err = ctl_open(path, false, &srv);
    if (err < 0) {
        fprintf(stderr, "migr: %s\n", migr_last_error());
        if (ready_fd >= 0) {
            char line[600], why[400];
            json_escape(migr_last_error(), why, sizeof(why));
            snprintf(line, sizeof(line), "error {\"error\":\"%s; the guest runs without a control socket "
                     "until stopped by a signal\"}\n", why);
            migr_write_full(ready_fd, line, strlen(line));
            close(ready_fd);
        }
        return ctl_run_unserved(hv);
    }
    return ctl_run(srv, hv, info_json, ready_fd, ready);
}

volatile sig_atomic_t cli_signals;
static cli_interrupt_fn intr_fn;
static void *intr_arg;

static void count_signal(int sig)
{
    (void)sig;
    cli_signals++;
}

void cli_catch_signals(cli_interrupt_fn fn, void *arg)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = count_signal; /* no SA_RESTART: a blocked read returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    intr_fn = fn;
    intr_arg = arg;
}

int ctl_call(const char *path, const char *command, int wait_ms, ctl_line_fn on_line, void *arg,
             char *result, size_t cap)
{
    cli_interrupt_fn fn = intr_fn;
    intr_fn = NULL; /* a call made by the handler itself is not interrupted again */
    int seen = cli_signals;
    bool told = false;
    char url[300];
    struct migr_transport *t = NULL;
    snprintf(url, sizeof(url), "unix:%s", path);
    uint64_t deadline = migr_now_ns() + (uint64_t)(wait_ms > 0 ? wait_ms : 0) * 1000000ull;
    for (;;) {
        int err = migr_transport_connect(url, &t);
        if (err == 0)
            break;
        if (migr_now_ns() >= deadline) {
            intr_fn = fn;
            return migr_error_prefix(-err, "no VMM at control socket %s", path);
        }
        usleep(20000);
    }
    char line[16384];
    snprintf(line, sizeof(line), "%s\n", command);
    /* A VMM that refuses us (another user) answers and closes at once: our
     * send may fail then, but its answer is there to read. */
    bool sent = migr_transport_send(t, line, strlen(line)) == 0;
    char send_err[300];
    snprintf(send_err, sizeof(send_err), "%s", sent ? "" : migr_last_error());
    /* Read lines until the final one (no timeout: a migration can be long).
     * The server writes nothing after its final line, so reading ahead in
     * blocks cannot take anything that is not ours. */
    size_t n = 0, have = 0, at = 0;
    char in[4096];
    int rc = -EPIPE;
    for (;;) {
        if (at == have) {
            ssize_t r = read(t->fd, in, sizeof(in));
            if (r < 0 && errno == EINTR) {
                if (fn && cli_signals > seen) {
                    if (cli_signals - seen >= 2) { /* a second Ctrl-C: leave, say so */
                        migr_errorf(EINTR, "interrupted again: stopped waiting; the VMM at %s goes on (migr "
                                    "status / migr cancel --ctl %s)", path, path);
                        rc = -EINTR;
                        break;
                    }
                    if (!told) {
                        told = true;
                        fn(intr_arg);
                    }
                }
                continue;
            }
            if (r <= 0) {
                if (!sent)
                    migr_errorf(EPIPE, "%s", send_err);
                else
                    migr_errorf(EPIPE, "the VMM at %s closed the control connection without an answer", path);
                break;
            }
            have = (size_t)r;
            at = 0;
        }
        char c = in[at++];
        if (c != '\n') {
            if (n + 2 < sizeof(line))
                line[n++] = c;
            continue;
        }
        line[n] = 0;
        n = 0;
        if (strncmp(line, "progress ", 9) == 0) {
            if (on_line)
                on_line(arg, line + 9, t->fd);
            continue;
        }
        bool ok = strncmp(line, "ok ", 3) == 0;
        const char *body = strchr(line, ' ');
        snprintf(result, cap, "%s", body ? body + 1 : "{}");
        rc = ok ? 0 : 1;
        break;
    }
    migr_transport_close(t);
    intr_fn = fn;
    return rc;
}
