/* The control socket's own thread: see cli/ctl_thread.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/ctl_thread.h"
#include "migr/common.h"
#include "migr/transport.h"
#include "migr/workload.h"

#define MAX_CLIENTS 32
#define LINE_MAX_BYTES 1024
#define CLIENT_TIMEOUT_MS 5000

struct client {
    int fd;                          /* -1: free slot */
    uint64_t deadline;               /* a whole line by then, or dropped */
    size_t n;
    char line[LINE_MAX_BYTES];
};

struct ctl_thread {
    struct migr_listener *l;
    int stopfd;
    pthread_t th;
    struct client cl[MAX_CLIENTS];
    pthread_mutex_t lock;            /* everything below */
    pthread_cond_t cond;
    bool job_pending, job_running;
    struct ctl_job job;
    struct migr_hv *hv;
    char info[1024];
    char phase[32];
    struct migr_cancel *cancel;      /* a migration runs */
    struct migr_progress prog;
    char prog_phase[32];
    bool have_prog;
    /* an incoming migration (migr recv): its link, read for status */
    const struct migr_transport *in;
    uint64_t in_t0, in_t1, in_b1;   /* when it began; the last rate sample (time, bytes) */
    double in_rate;                 /* bytes/s between the last two samples (~1 s apart) */
    /* migr recv waiting for a source: `stop` shuts this listener down */
    struct migr_listener *wait_l;
    bool stop_req;
    /* migr recv: the receiver's cancel handle (migr_recv_params.cancel) */
    struct migr_cancel *recv_cancel;
    uint64_t recv_cancel_ns;        /* a cancel was asked then (0: not): a second one cuts the link */
    char ownership[600];            /* the guest kept paused in doubt: why ("" = not in doubt) */
};

static const char *const enc_names[MIGR_STATS_ENCS] = {"raw", "zero", "xbzrle", "lz4", "zstd", "zlib"};

/* The outgoing migration's progress as a JSON object (docs/control.md). Lock held. */
static int progress_json(const struct ctl_thread *c, char *out, size_t cap)
{
    const struct migr_progress *p = &c->prog;
    size_t n = 0;
#define OUT(...) do { int k_ = snprintf(out + n, n < cap ? cap - n : 0, __VA_ARGS__); if (k_ > 0) n += (size_t)k_; } while (0)
    OUT(",\"progress\":{\"side\":\"source\",\"phase\":\"%s\",\"round\":%u,\"pages_done\":%llu,\"pages_total\":%llu,"
        "\"pages_left\":%llu,\"pages_sent\":%llu,\"ram_pages\":%llu,\"bytes_sent\":%llu,\"elapsed_s\":%.3f,"
        "\"dirty_pages\":%llu,\"dirty_rate\":%.0f,\"transfer_rate\":%.0f,\"expected_downtime_ms\":%.1f,"
        "\"max_bandwidth\":%llu,\"codecs\":{",
        c->prog_phase, p->round, (unsigned long long)p->pages_done, (unsigned long long)p->pages_total,
        (unsigned long long)(p->pages_total > p->pages_done ? p->pages_total - p->pages_done : 0),
        (unsigned long long)p->pages_sent, (unsigned long long)p->ram_pages, (unsigned long long)p->bytes_sent,
        p->elapsed_s, (unsigned long long)p->dirty_pages, p->dirty_rate, p->transfer_rate, p->expected_downtime_ms,
        (unsigned long long)p->max_bandwidth);
    for (int k = 0; k < MIGR_STATS_ENCS; k++)
        OUT("%s\"%s\":{\"pages\":%llu,\"bytes\":%llu}", k ? "," : "", enc_names[k],
            (unsigned long long)p->codec_pages[k], (unsigned long long)p->codec_bytes[k]);
    OUT("}}");
#undef OUT
    return (int)n;
}

/* A receiving migr recv: what it sees of the stream without the engine's help. Lock held. */
static void incoming_json(struct ctl_thread *c, char *out, size_t cap)
{
    uint64_t now = migr_now_ns(), b = c->in->bytes_recv;
    double el = (double)(now - c->in_t0) / 1e9;
    snprintf(out, cap, ",\"progress\":{\"side\":\"destination\",\"phase\":\"receiving\",\"bytes_received\":%llu,"
             "\"elapsed_s\":%.3f,\"transfer_rate\":%.0f}", (unsigned long long)b, el,
             c->in_rate > 0 ? c->in_rate : el > 0 ? (double)b / el : 0);
}

/* Every poll turn (≤ 200 ms): a new rate sample once a second has passed. */
static void sample_incoming(struct ctl_thread *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->in) {
        uint64_t now = migr_now_ns(), b = c->in->bytes_recv;
        if (now - c->in_t1 >= 1000000000ull) {
            c->in_rate = (double)(b - c->in_b1) * 1e9 / (double)(now - c->in_t1);
            c->in_t1 = now;
            c->in_b1 = b;
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* One short answer from this thread: never blocks (a client that does not
 * read its answer loses it). */
static void answer(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void answer(int fd, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    (void)!send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Lock held. */
static void do_status(struct ctl_thread *c, int fd)
{
    char job[2048] = "";
    if (c->job_running || c->cancel) {
        int n = snprintf(job, sizeof(job), ",\"job\":\"%.*s\"", (int)strcspn(c->job.cmd, " "), c->job.cmd);
        if (c->cancel)
            n += snprintf(job + n, sizeof(job) - (size_t)n, ",\"migrating\":true");
        if (c->cancel && c->have_prog)
            progress_json(c, job + n, sizeof(job) - (size_t)n);
    }
    if (!c->hv) {
        if (c->in)
            incoming_json(c, job, sizeof(job));
        answer(fd, "ok {\"schema\":%d,\"pid\":%d,\"running\":false,\"incoming\":true,\"phase\":\"%s\"%s}",
               CLI_JSON_SCHEMA, (int)getpid(), c->phase, job);
        return;
    }
    /* The guest's flags are read while the main thread may change them: a
     * status is a snapshot, each field as it was at some instant. */
    const volatile struct migr_hv *hv = c->hv;
    char why[300], own[700];
    json_escape((const char *)hv->failure, why, sizeof(why));
    if (c->ownership[0] && hv->paused) { /* settle.h: the destination could not be asked */
        size_t n = strlen(job);
        json_escape(c->ownership, own, sizeof(own));
        snprintf(job + n, sizeof(job) - n, ",\"ownership\":\"%s\"", own);
    }
    answer(fd, "ok {\"schema\":%d,%s,\"pid\":%d,\"running\":%s,\"failed\":%s,\"failure\":\"%s\",\"writes\":%llu%s}",
           CLI_JSON_SCHEMA, c->info, (int)getpid(), hv->paused ? "false" : "true", why[0] ? "true" : "false", why,
           (unsigned long long)migr_workload_progress(c->hv), job);
}

/* migr recv waits for a source (no guest, no stream): `stop` or `cancel`
 * ends the wait, answered with ok. Lock held. */
static void stop_waiting(struct ctl_thread *c, int fd, const char *ok)
{
    /* A TCP listener wakes its accept when shut down; a unix one does not
     * (Linux): then this process, which holds no guest, exits from here,
     * removing its socket files first. */
    c->stop_req = true;
    answer(fd, "%s", ok);
    if (c->wait_l && c->wait_l->url.kind == MIGR_URL_TCP) {
        if (shutdown(c->wait_l->fd, SHUT_RDWR) < 0)
            fprintf(stderr, "migr: control socket: stop: shut the listener down: %s\n", strerror(errno));
    } else {
        if (c->wait_l && c->wait_l->url.path[0] && c->wait_l->url.path[0] != '@')
            unlink(c->wait_l->url.path);
        if (c->l->url.path[0])
            unlink(c->l->url.path);
        fprintf(stderr, "migr recv: stopped before a guest arrived\n");
        _exit(0);
    }
}

/* `cancel` on a migr recv without a guest. Before COMMIT the receiver stops
 * at its next record and tells the source, which resumes the guest; a second
 * cancel (or one second without an end) shuts the link down. Lock held. */
static void cancel_incoming(struct ctl_thread *c, int fd)
{
    if (!c->in) {
        if (c->wait_l)
            stop_waiting(c, fd, "ok {\"schema\":1,\"cancelling\":true,\"stopped\":true,\"incoming\":true}");
        else
            answer(fd, "error {\"error\":\"no migration is running (the receiver is %s)\"}", c->phase);
        return;
    }
    int r = migr_cancel_request(c->recv_cancel);
    if (r < 0) {
        char why[400];
        json_escape(migr_last_error(), why, sizeof(why));
        answer(fd, "error {\"error\":\"too late to cancel: %s; the destination owns the guest (migr stop "
                   "stops it, or migrate it back)\"}", why);
        return;
    }
    if (!c->recv_cancel_ns)
        c->recv_cancel_ns = migr_now_ns();
    answer(fd, "ok {\"schema\":1,\"cancelling\":true,\"side\":\"destination\",\"link_closed\":%s}",
           r ? "true" : "false");
}

/* A whole line arrived from slot i. Lock held. Returns true if the client
 * went to the main thread (the slot is free then, its fd not closed). */
static bool dispatch(struct ctl_thread *c, struct client *k)
{
    if (strcmp(k->line, "status") == 0) {
        do_status(c, k->fd);
    } else if (strcmp(k->line, "stop") == 0 && !c->hv && !c->job_pending && !c->job_running) {
        /* No guest here yet: nothing to hand to the main thread, which waits
         * for a source (woken by shutting its listener down) or receives one. */
        if (c->in)
            answer(k->fd, "error {\"error\":\"a guest is arriving: stop it once it runs here, or cancel the "
                          "migration (migr cancel, here or on the source)\"}");
        else
            stop_waiting(c, k->fd, "ok {\"schema\":1,\"stopped\":true,\"incoming\":true}");
    } else if (strcmp(k->line, "cancel") == 0) {
        if (!c->cancel && !c->hv) {
            cancel_incoming(c, k->fd);
        } else if (!c->cancel) {
            answer(k->fd, "error {\"error\":\"no migration is running\"}");
        } else {
            int woke = migr_cancel_request(c->cancel);
            answer(k->fd, "ok {\"cancelling\":true,\"link_closed\":%s}", woke ? "true" : "false");
        }
    } else if (c->job_pending || c->job_running) {
        char what[64];
        snprintf(what, sizeof(what), "%.*s", (int)strcspn(c->job.cmd, " "), c->job.cmd);
        answer(k->fd, "error {\"error\":\"busy: '%s' is running; only status and cancel are served meanwhile\"}",
               what);
    } else {
        /* Without a guest yet (an incoming one still arriving, post-copy
         * included), the command waits for it: the main thread takes it
         * once the guest runs here. */
        c->job.fd = k->fd;
        snprintf(c->job.cmd, sizeof(c->job.cmd), "%s", k->line);
        c->job_pending = true;
        pthread_cond_broadcast(&c->cond);
        k->fd = -1;
        return true;
    }
    return false;
}

static void drop(struct client *k)
{
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
}

static void take_new(struct ctl_thread *c)
{
    for (;;) {
        int fd = accept4(c->l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                fprintf(stderr, "migr: control socket: accept: %s\n", strerror(errno));
            return;
        }
        /* The socket file is 0600, but a path's mode is only as good as its
         * directory and whoever chmods it: check who is calling, too. */
        if (migr_unix_peer_check(fd, "control socket") < 0) {
            char why[300];
            json_escape(migr_last_error(), why, sizeof(why));
            answer(fd, "error {\"error\":\"%s\"}", why);
            fprintf(stderr, "migr: %s\n", migr_last_error());
            close(fd);
            continue;
        }
        struct client *k = NULL;
        for (int i = 0; i < MAX_CLIENTS && !k; i++)
            if (c->cl[i].fd < 0)
                k = &c->cl[i];
        if (!k) {
            answer(fd, "error {\"error\":\"too many control connections\"}");
            close(fd);
            continue;
        }
        *k = (struct client){.fd = fd, .deadline = migr_now_ns() + CLIENT_TIMEOUT_MS * 1000000ull};
    }
}

/* Read what slot k has; true once it holds a whole line (newline dropped). */
static bool read_some(struct client *k)
{
    for (;;) {
        ssize_t r = read(k->fd, k->line + k->n, sizeof(k->line) - 1 - k->n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        if (r <= 0) {
            drop(k);
            return false;
        }
        k->n += (size_t)r;
        char *nl = memchr(k->line, '\n', k->n);
        if (nl) {
            *nl = 0;
            return true;
        }
        if (k->n == sizeof(k->line) - 1) {
            answer(k->fd, "error {\"error\":\"command line too long\"}");
            drop(k);
            return false;
        }
    }
}

static void *ctl_main(void *arg)
{
    struct ctl_thread *c = arg;
    for (;;) {
        struct pollfd p[2 + MAX_CLIENTS];
        int map[2 + MAX_CLIENTS], np = 2;
        p[0] = (struct pollfd){.fd = c->stopfd, .events = POLLIN};
        p[1] = (struct pollfd){.fd = c->l->fd, .events = POLLIN};
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (c->cl[i].fd >= 0) {
                map[np] = i;
                p[np++] = (struct pollfd){.fd = c->cl[i].fd, .events = POLLIN};
            }
        int n = poll(p, (nfds_t)np, 200);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "migr: control socket: poll: %s\n", strerror(errno));
            usleep(100000);
            continue;
        }
        if (n > 0 && p[0].revents)
            break;
        if (n > 0 && p[1].revents)
            take_new(c);
        sample_incoming(c);
        uint64_t now = migr_now_ns();
        pthread_mutex_lock(&c->lock);
        if (c->recv_cancel_ns && c->in && now - c->recv_cancel_ns > 1000000000ull) {
            /* the receiver did not stop at a record within 1 s: the source
             * sends nothing; cut the link (it still owns the guest) */
            (void)migr_cancel_request(c->recv_cancel);
            c->recv_cancel_ns = 0;
        }
        pthread_mutex_unlock(&c->lock);
        for (int j = 2; j < np; j++) {
            struct client *k = &c->cl[map[j]];
            if (k->fd < 0)
                continue;
            if (n > 0 && p[j].revents && read_some(k)) {
                pthread_mutex_lock(&c->lock);
                if (!dispatch(c, k))
                    drop(k);
                pthread_mutex_unlock(&c->lock);
            } else if (k->fd >= 0 && now > k->deadline) {
                drop(k);
            }
        }
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        drop(&c->cl[i]);
    return NULL;
}

int ctl_thread_start(struct migr_listener *l, const char *phase, struct ctl_thread **out)
{
    struct ctl_thread *c = calloc(1, sizeof(*c));
    if (!c)
        return migr_errorf(ENOMEM, "control socket: out of memory");
    c->l = l;
    for (int i = 0; i < MAX_CLIENTS; i++)
        c->cl[i].fd = -1;
    snprintf(c->phase, sizeof(c->phase), "%s", phase ? phase : "");
    c->stopfd = eventfd(0, EFD_CLOEXEC);
    if (c->stopfd < 0 || !(c->recv_cancel = migr_cancel_new())) {
        int err = c->stopfd < 0 ? migr_errorf_errno(errno, "control socket: eventfd")
                                : migr_errorf(ENOMEM, "control socket: out of memory");
        if (c->stopfd >= 0)
            close(c->stopfd);
        free(c);
        return err;
    }
    int fl = fcntl(l->fd, F_GETFL);
    if (fl < 0 || fcntl(l->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int err = migr_errorf_errno(errno, "control socket: make %s non-blocking", l->bound);
        migr_cancel_free(c->recv_cancel);
        close(c->stopfd);
        free(c);
        return err;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    int err = pthread_create(&c->th, NULL, ctl_main, c);
    if (err) {
        migr_cancel_free(c->recv_cancel);
        close(c->stopfd);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
        free(c);
        return migr_errorf(err, "control socket: start its thread");
    }
    *out = c;
    return 0;
}

void ctl_thread_stop(struct ctl_thread *c)
{
    if (!c)
        return;
    uint64_t one = 1;
    if (write(c->stopfd, &one, sizeof(one)) != sizeof(one))
        fprintf(stderr, "migr: control socket: cannot stop its thread: %s\n", strerror(errno));
    pthread_join(c->th, NULL);
    close(c->stopfd);
    migr_cancel_free(c->recv_cancel);
    if (c->job_pending)
        close(c->job.fd);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

int ctl_thread_next(struct ctl_thread *c, int ms, struct ctl_job *job)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->lock);
    while (!c->job_pending && pthread_cond_timedwait(&c->cond, &c->lock, &dl) == 0)
        ;
    int got = c->job_pending;
    if (got) {
        *job = c->job;
        c->job_pending = false;
        c->job_running = true;
    }
    pthread_mutex_unlock(&c->lock);
    return got;
}

void ctl_thread_done(struct ctl_thread *c)
{
    pthread_mutex_lock(&c->lock);
    c->job_running = false;
    pthread_mutex_unlock(&c->lock);
}

void ctl_thread_set_vm(struct ctl_thread *c, struct migr_hv *hv, const char *info_json)
{
    pthread_mutex_lock(&c->lock);
    c->hv = hv;
    snprintf(c->info, sizeof(c->info), "%s", info_json ? info_json : "");
    c->phase[0] = 0;
    pthread_mutex_unlock(&c->lock);
}

void ctl_thread_set_ownership(struct ctl_thread *c, const char *why)
{
    pthread_mutex_lock(&c->lock);
    snprintf(c->ownership, sizeof(c->ownership), "%s", why ? why : "");
    pthread_mutex_unlock(&c->lock);
}

void ctl_thread_set_phase(struct ctl_thread *c, const char *phase)
{
    pthread_mutex_lock(&c->lock);
    snprintf(c->phase, sizeof(c->phase), "%s", phase);
    pthread_mutex_unlock(&c->lock);
}

void ctl_thread_migrating(struct ctl_thread *c, struct migr_cancel *cancel)
{
    pthread_mutex_lock(&c->lock);
    c->cancel = cancel;
    c->have_prog = false;
    pthread_mutex_unlock(&c->lock);
}

void ctl_thread_progress(struct ctl_thread *c, const struct migr_progress *p)
{
    pthread_mutex_lock(&c->lock);
    c->prog = *p;
    snprintf(c->prog_phase, sizeof(c->prog_phase), "%s", p->phase ? p->phase : "");
    c->prog.phase = NULL;
    c->have_prog = true;
    pthread_mutex_unlock(&c->lock);
}

struct migr_cancel *ctl_thread_recv_cancel(struct ctl_thread *c) { return c->recv_cancel; }

void ctl_thread_incoming(struct ctl_thread *c, const struct migr_transport *t)
{
    pthread_mutex_lock(&c->lock);
    c->in = t;
    c->recv_cancel_ns = 0;
    c->in_t0 = c->in_t1 = migr_now_ns();
    c->in_b1 = t ? t->bytes_recv : 0;
    c->in_rate = 0;
    pthread_mutex_unlock(&c->lock);
}

void ctl_thread_waiting(struct ctl_thread *c, struct migr_listener *l)
{
    pthread_mutex_lock(&c->lock);
    c->wait_l = l;
    pthread_mutex_unlock(&c->lock);
}

bool ctl_thread_stop_requested(struct ctl_thread *c)
{
    pthread_mutex_lock(&c->lock);
    bool r = c->stop_req;
    pthread_mutex_unlock(&c->lock);
    return r;
}
