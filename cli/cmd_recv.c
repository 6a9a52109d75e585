/* migr recv: wait for one incoming guest, then run it and serve its control socket. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "cli/cli.h"
#include "migr/common.h"
#include "migr/format.h"
#include "migr/settle.h"
#include "migr/transport.h"

void usage_recv(FILE *f)
{
    fprintf(f,
            "usage: migr recv --listen URL --ctl PATH [--timeout SECONDS] [--group NAME] [--decode-threads N]\n"
            "                 [--take-over-ctl] [--postcopy-timeout MS] [--stall-timeout MS] [--key-file PATH] [--handshake-timeout MS]\n"
            "                 [--settle-window TIME]\n"
            "                 [--json | --daemon]\n"
            "\n"
            "Wait for one migration stream on URL (unix:PATH or tcp:HOST:PORT; port 0 picks\n"
            "a free port, printed on stderr as \"listening on URL\"). The guest is resumed\n"
            "here only once every page has arrived intact and the source has committed;\n"
            "then this process becomes its VMM and serves the control socket PATH.\n"
            "A bad or truncated stream makes it exit 1 with the reason; no guest runs.\n"
            "\n"
            "  --listen URL       where to wait for the source: unix:PATH, tcp:HOST:PORT (port 0: any\n"
            "                     free port), shm:NAME (same host, shared-memory ring); tcp: takes\n"
            "                     ?channels=N (take at most N connections; without it a source's\n"
            "                     one stream or group of up to 16, as the source chooses),\n"
            "                     ?uring=1 (io_uring) and ?encrypt=1 (AES-256-GCM; needs --key-file\n"
            "                     on both sides), joined with &\n"
            "  --daemon           return once listening (the VMM goes on in the background; its pid\n"
            "                     is printed on stdout)\n"
            "  --ctl PATH         control socket: bound at start (status answers at once;\n"
            "                     a path that cannot be bound is refused before any guest\n"
            "                     comes), serving the guest once it runs here\n"
            "  --take-over-ctl    PATH is the control socket of the VMM whose guest comes\n"
            "                     here (migr upgrade does this): serve PATH.new.PID until\n"
            "                     the guest runs here, then take PATH over\n"
            "  --timeout SECONDS  give up if no source connects in time (default: wait forever)\n"
            "  --key-file PATH    the source must prove it knows the key in PATH (owner-only file,\n"
            "                     16..4096 bytes, e.g. `openssl rand -hex 32 >PATH; chmod 600 PATH`)\n"
            "                     before a byte of its stream is read; required for a tcp: URL\n"
            "                     that is not loopback. tcp:...?encrypt=1 also encrypts the stream\n"
            "  --handshake-timeout MS  a connection that has not completed its handshake (the\n"
            "                     authentication, or the first bytes of a migr stream) within MS\n"
            "                     is dropped and the receiver goes on listening (default 5000)\n"
            "  --json             print the migration summary as JSON on stdout (docs/control.md)\n"
            "  --group NAME       the guest that arrives is a member of VM group NAME (migr run --group);\n"
            "                     if its COMMIT fails after the group's joint switchover (settled\n"
            "                     ABORTED), listen again: migr send --group migrates it once more\n"
            "  --decode-threads N threads decoding compressed pages, 1..16 (default 1)\n"
            "  --postcopy-timeout MS  post-copy: if the source leaves a fault unanswered or\n"
            "                     sends nothing for MS (dead, or a link that stopped), post-copy\n"
            "                     ends here: the guest stops, and a source that still runs takes\n"
            "                     it back (default 10000)\n"
            "  --stall-timeout MS before COMMIT: nothing from the source for MS (a stalled\n"
            "                     source or a partition) ends the migration here: the guest\n"
            "                     being built is dropped, the source still owns it (default 10000)\n"
            "  --settle-window TIME  after the source's COMMIT could have been lost (its DONE\n"
            "                     answer, or COMMIT itself): stay reachable on URL this long for the\n"
            "                     source's question whether the guest runs here (COMMITTED) or never\n"
            "                     will (ABORTED), so that it settles without an operator (default\n"
            "                     60s; a bare number is ms; 0 = never: the source stays in doubt)\n"
            "  --log-file PATH    (internal: migr upgrade) the file this VMM's output goes to; removed\n"
            "                     when the VM is stopped here\n"
            "  --warm SPEC        (internal) continue a guest after a warm VMM reboot: the\n"
            "                     exec'd VMM maps the memory it inherited (migr rejuvenate --warm)\n"
            "\n"
            "`migr cancel --ctl PATH` before the source's COMMIT stops the migration here: no guest\n"
            "runs here, the source keeps it (after COMMIT it is refused: the guest is ours).\n"
            "Exit status: 0 = the guest ran here and was stopped (or moved on), or a waiting\n"
            "receiver was stopped or cancelled; 1 = no guest came, it arrived broken, or the\n"
            "migration was cancelled here (the reason on stderr); 2 = bad arguments.\n");
}

/* After a warm reboot: the previous VMM process exec'd us with the guest's
 * RAM memfd, a memfd holding its vCPU state and the client's connection. */
/* ,"group":"NAME" for a VMM that serves a group member ("" otherwise). */
static void group_info(const char *group, char *out, size_t cap)
{
    if (group)
        snprintf(out, cap, ",\"group\":\"%s\"", group);
    else
        out[0] = 0;
}

static int warm_continue(const char *spec, const char *ctl, const char *group)
{
    int memfd, sfd, cfd;
    unsigned long long off, size, t0;
    unsigned nvcpus, sv;
    size_t slen;
    char backend[16];
    if (sscanf(spec, "%d:%llu:%llu:%u:%d:%zu:%d:%llu:%u:%15s", &memfd, &off, &size, &nvcpus, &sfd, &slen, &cfd, &t0,
               &sv, backend) != 10) {
        fprintf(stderr, "migr recv: --warm %s: malformed\n", spec);
        return 2;
    }
    struct migr_hello h = {.page_size = MIGR_PAGE_SIZE, .nvcpus = nvcpus, .nregions = 1, .state_version = sv};
    snprintf(h.backend, sizeof(h.backend), "%s", backend);
    h.regions[0].gpa = 0;
    h.regions[0].size = size;
    uint64_t offs[1] = {off};
    struct migr_hv *hv;
    uint8_t *blob = malloc(slen ? slen : 1);
    int err = blob ? 0 : -ENOMEM;
    if (!err && pread(sfd, blob, slen, 0) != (ssize_t)slen)
        err = migr_errorf_errno(errno, "warm reboot: read the vCPU state");
    close(sfd);
    if (!err)
        err = migr_hv_create_shared(&h, &memfd, offs, &hv);
    else
        close(memfd);
    if (!err && (err = hv->ops->load_state(hv, blob, slen)) == 0)
        err = hv->ops->resume(hv);
    free(blob);
    char line[512];
    if (err < 0) {
        /* The memory is still in the memfd, but no process can run the guest
         * now: say so loudly (the VMM that exec'd us is gone). */
        snprintf(line, sizeof(line), "error {\"error\":\"warm reboot failed: %s; the guest is lost\"}\n",
                 migr_last_error());
        migr_write_full(cfd, line, strlen(line));
        close(cfd);
        fprintf(stderr, "migr recv: %s", line);
        return 1;
    }
    double down = (double)(migr_now_ns() - t0) / 1e6;
    snprintf(line, sizeof(line), "ok {\"mode\":\"warm\",\"ok\":true,\"downtime_ms\":%.3f,\"pid\":%d}\n", down,
             (int)getpid());
    fprintf(stderr, "migr recv: warm reboot: guest paused %.2f ms, memory kept in place\n", down);
    char info[360], gi[100];
    group_info(group, gi, sizeof(gi));
    snprintf(info, sizeof(info), "\"backend\":\"%s\",\"ram_bytes\":%llu,\"vcpus\":%u,\"warm\":true%s", backend,
             size, nvcpus, gi);
    return ctl_serve_ready(hv, ctl, info, cfd, line);
}

/* A connection the listener dropped (a failed or silent handshake): say so
 * and go on waiting for the real source. */
static void on_reject(void *arg, const char *peer, const char *why)
{
    (void)arg;
    (void)peer;
    fprintf(stderr, "migr recv: dropped a connection: %s; still listening\n", why);
}

/* Settling (include/migr/settle.h): the source may be in doubt whether we
 * run its guest, and asks on our listening URL with the same link options. */
struct settle_job {
    char url[320];
    struct migr_link_opts lo;     /* key: owned by the job (committed: it outlives cmd_recv's) */
    struct migr_key *key;
    struct migr_recv_fate fate;
    uint32_t window_ms;
    struct migr_transport *t;     /* committed: the migration's stream, for RELEASED */
    volatile bool stop;           /* committed: the guest is gone from here, stop answering */
};

/* Answer the source's question for the window; 1 if it asked. */
static int settle_serve(struct settle_job *j, struct ctl_server *srv)
{
    struct migr_listener *l;
    j->lo.key = j->key;
    int err = migr_listener_open_opts(j->url, &j->lo, &l);
    if (err < 0) {
        fprintf(stderr, "migr recv: cannot stay reachable for the source's settle query: %s\n", migr_last_error());
        return err;
    }
    fprintf(stderr, "migr recv: answering the source's settle query on %s for %.0f s: %s\n", l->bound,
            j->window_ms / 1e3, migr_fate_name(j->fate.fate));
    if (srv)
        ctl_set_waiting(srv, l); /* migr stop ends the wait */
    err = migr_settle_serve(l, &j->fate, j->window_ms, &j->stop);
    if (srv)
        ctl_set_waiting(srv, NULL);
    migr_listener_close(l);
    if (err > 0)
        fprintf(stderr, "migr recv: settled with the source: %s\n", migr_fate_name(j->fate.fate));
    else if (err == 0)
        fprintf(stderr, "migr recv: no settle query within %.0f s\n", j->window_ms / 1e3);
    return err;
}

/* Committed: the guest runs here. Unless the source says it read DONE
 * (RELEASED), it may be in doubt: answer its query in the background. */
static void *settle_committed(void *arg)
{
    struct settle_job *j = arg;
    int rel = migr_settle_await_release(j->t, &j->fate, 5000);
    migr_transport_close(j->t);
    if (rel <= 0 && !j->stop)
        settle_serve(j, NULL);
    return NULL;
}

/* A migration that failed here: why, and what became of the guest. */
static void report_failure(int err, const struct migr_stats *st)
{
    fprintf(stderr, "migr recv: %s\n", st->error);
    if ((err == -EPIPE || err == -ECONNRESET) && !strstr(st->error, "lost"))
        fprintf(stderr, "migr recv: the stream from the source ended before the switchover: no guest runs "
                        "here, the source kept it (if the source VMM died, the guest is lost)\n");
}

int cmd_recv(int argc, char **argv)
{
    const struct cli_cmd *self = cli_find("recv");
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'}, {"ctl", required_argument, 0, 'C'},
        {"timeout", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
        {"warm", required_argument, 0, 'W'}, {"group", required_argument, 0, 'g'},
        {"decode-threads", required_argument, 0, 'T'}, {"take-over-ctl", no_argument, 0, 'O'},
        {"postcopy-timeout", required_argument, 0, 'P'}, {"key-file", required_argument, 0, 'K'},
        {"stall-timeout", required_argument, 0, 'S'},
        {"handshake-timeout", required_argument, 0, 'H'}, {"daemon", no_argument, 0, 'd'},
        {"log-file", required_argument, 0, 'L'}, {"settle-window", required_argument, 0, 'w'}, {0, 0, 0, 0},
    };
    const char *listen = NULL, *ctl = NULL, *warm = NULL, *group = NULL, *key_file = NULL;
    int handshake_ms = 0;
    uint64_t settle_ms = 60000;
    struct migr_recv_params rp = {.size = sizeof(rp), .decode_threads = 1};
    bool json = false, take_over = false, daemon = false;
    int timeout_ms = -1;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (o) {
        case 'l': listen = optarg; break;
        case 'C': ctl = optarg; break;
        case 'j': json = true; break;
        case 'd': daemon = true; break;
        case 'L': ctl_log_file = optarg; break;
        case 'W': warm = optarg; break;
        case 'O': take_over = true; break;
        case 'K': key_file = optarg; break;
        case 'w':
            if (cli_parse_ms(optarg, 1e-3, 0, 3600e3, &settle_ms) < 0)
                return cli_bad_args(self, "--settle-window %s: expected 0..1h (a bare number is ms: 60000, 60s)",
                                    optarg);
            break;
        case 'H': {
            uint64_t ms;
            if (cli_parse_ms(optarg, 1e-3, 10, 600e3, &ms) < 0)
                return cli_bad_args(self, "--handshake-timeout %s: expected 10ms..10m (a bare number is ms)", optarg);
            handshake_ms = (int)ms;
            break;
        }
        case 'P': {
            uint64_t ms;
            if (cli_parse_ms(optarg, 1e-3, 100, 3600e3, &ms) < 0)
                return cli_bad_args(self, "--postcopy-timeout %s: expected 100ms..1h (a bare number is ms)", optarg);
            rp.postcopy_timeout_ms = (uint32_t)ms;
            break;
        }
        case 'S': {
            uint64_t ms;
            if (cli_parse_ms(optarg, 1e-3, 100, 3600e3, &ms) < 0)
                return cli_bad_args(self, "--stall-timeout %s: expected 100ms..1h (a bare number is ms)", optarg);
            rp.stall_timeout_ms = (uint32_t)ms;
            break;
        }
        case 'T': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 16)
                return cli_bad_args(self, "--decode-threads %s: expected 1..16", optarg);
            rp.decode_threads = (uint32_t)n;
            break;
        }
        case 'g':
            if (cli_group_check_name(optarg) < 0)
                return cli_bad_args(self, "--group: %s", migr_last_error());
            group = optarg;
            break;
        case 't': {
            uint64_t ms;
            if (cli_parse_ms(optarg, 1, 1, 86400e3, &ms) < 0)
                return cli_bad_args(self, "--timeout %s: expected 1ms..1d (a bare number is seconds: 60, 1.5, "
                                    "500ms, 10m)", optarg);
            timeout_ms = (int)ms;
            break;
        }
        case ':':
            return cli_bad_args(self, "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_bad_args(self, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_bad_args(self, "unexpected argument '%s'", argv[optind]);
    if (warm && ctl)
        return warm_continue(warm, ctl, group);
    if (!listen || !ctl)
        return cli_bad_args(self, "--listen URL and --ctl PATH are required");
    struct migr_url lu;
    if (strstr(listen, "://"))
        return cli_bad_args(self, "--listen %s: migr URLs have no '//': write unix:PATH, tcp:HOST:PORT or shm:NAME",
                            listen);
    if (migr_url_parse(listen, &lu) < 0)
        return cli_bad_args(self, "--listen: %s", migr_last_error());
    if (daemon && json)
        return cli_bad_args(self, "--json prints the summary when the guest has arrived: a --daemon has no stdout "
                            "by then (use migr status --json)");
    int ready_fd = -1;
    if (daemon) {
        int rc = cli_daemonize("recv", &ready_fd);
        if (rc >= 0)
            return rc;
    }
    /* Everything the guest will need here is acquired before a source can
     * give it to us: once it has committed, nothing may make us drop it. */
    struct ctl_server *srv;
    if (ctl_open(ctl, take_over, &srv) < 0) {
        fprintf(stderr, "migr recv: %s\n", migr_last_error());
        return 1;
    }
    rp.cancel = ctl_recv_cancel(srv); /* migr cancel --ctl on this side */
    struct migr_key *key = NULL;
    if (key_file && migr_key_load(key_file, &key) < 0) {
        fprintf(stderr, "migr recv: %s\n", migr_last_error());
        ctl_close(srv);
        return 1;
    }
    /* The same key for the connections the engine makes itself (the
     * post-copy fault channel over TCP connects back to the source). A
     * connection that has not begun a migr stream (the preamble and a whole
     * HELLO record; with a key: not authenticated) within the handshake
     * time-out is dropped, and we go on listening. */
    struct migr_link_opts lo = {.key = key, .handshake_ms = handshake_ms, .keep_listening = 1,
                                .expect_stream = 1, .on_reject = on_reject};
    struct migr_link_opts def = {.key = key, .handshake_ms = handshake_ms};
    struct migr_url pu;
    if (migr_url_parse(listen, &pu) == 0)
        def.encrypt = (int)pu.encrypt; /* the fault channel connects back encrypted too */
    uint64_t until = timeout_ms < 0 ? 0 : migr_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    struct migr_hv *hv = NULL;
    struct migr_stats st = MIGR_STATS_INIT;
    bool received = false; /* a migration was tried (st holds its result) */
    bool reported = false; /* its failure was told already (before a settle window) */
    struct migr_recv_fate fate = MIGR_RECV_FATE_INIT;
    struct migr_transport *committed_t = NULL;
    struct settle_job *sj = NULL;
    char url[320];
    int err = migr_link_set_default(key ? &def : NULL);
    snprintf(url, sizeof(url), "%s", listen);
    for (int attempt = 0; err == 0; attempt++) {
        struct migr_listener *l = NULL;
        struct migr_transport *t;
        if ((err = migr_listener_open_opts(url, &lo, &l)) < 0)
            break;
        if (attempt == 0 && key_file)
            fprintf(stderr, "migr recv: a source must prove the key of %s%s\n", key_file,
                    l->url.encrypt ? "; the stream is encrypted" : "");
        fprintf(stderr, "migr recv: %slistening on %s\n", attempt ? "again " : "", l->bound);
        /* before readiness: a --daemon caller may ask (status, stop) at once */
        ctl_set_phase(srv, "waiting");
        ctl_set_waiting(srv, l);
        cli_ready(&ready_fd, l->bound);
        snprintf(url, sizeof(url), "%s", l->bound); /* the same port next time */
        int left = -1;
        if (until) {
            uint64_t now = migr_now_ns();
            left = now >= until ? 0 : (int)((until - now) / 1000000ull);
        }
        /* a stop that came before the listener was known here */
        err = ctl_stop_requested(srv) ? -ECANCELED : migr_listener_accept(l, left, &t);
        ctl_set_waiting(srv, NULL);
        /* One source at a time: from here a second one is refused (nobody listens). */
        migr_listener_close(l);
        if (ctl_stop_requested(srv)) { /* migr stop before a guest came */
            if (err == 0)
                migr_transport_close(t); /* the source resumes its guest */
            fprintf(stderr, "migr recv: stopped before a guest arrived\n");
            migr_key_free(key);
            migr_link_set_default(NULL);
            ctl_close(srv);
            return 0;
        }
        if (err < 0)
            break;
        ctl_set_phase(srv, "receiving");
        ctl_set_incoming(srv, t);
        err = migr_recv_fated(t, &rp, &hv, &st, &fate);
        ctl_set_incoming(srv, NULL);
        if (err == 0 && settle_ms && migr_settle_needed(&fate))
            committed_t = t; /* the source's RELEASED may still come on it */
        else
            migr_transport_close(t);
        if (err < 0 && !hv && st.ram_bytes == 0 && !st.cancelled) {
            /* It never got past HELLO: nothing was built for it. A stranger
             * that speaks the first bytes of migr must not end the wait for
             * the real source. */
            fprintf(stderr, "migr recv: dropped a connection: %s; listening again\n", st.error);
            err = 0;
            continue;
        }
        if (err < 0 && settle_ms && migr_settle_needed(&fate)) {
            /* Never committed: we promise the source never to run its guest.
             * Say so now: the settle window may outlast whoever reads us. */
            report_failure(err, &st);
            reported = true;
            struct settle_job aj = {.lo = {.handshake_ms = handshake_ms, .keep_listening = 1,
                                           .on_reject = on_reject, .encrypt = def.encrypt},
                                    .key = key, .fate = fate, .window_ms = (uint32_t)settle_ms};
            snprintf(aj.url, sizeof(aj.url), "%s", url);
            ctl_set_phase(srv, "settling");
            int asked = settle_serve(&aj, srv);
            if (asked > 0 && group && !ctl_stop_requested(srv)) {
                /* A group member: the group may move it again on its own
                 * (cli/group.c), so that it joins the members that committed. */
                fprintf(stderr, "migr recv: %s; listening again (group %s)\n", st.error, group);
                err = 0;
                continue;
            }
        }
        received = true;
        break;
    }
    if (received && err == 0 && settle_ms && migr_settle_needed(&fate) && (sj = calloc(1, sizeof(*sj)))) {
        snprintf(sj->url, sizeof(sj->url), "%s", url);
        sj->lo = (struct migr_link_opts){.handshake_ms = handshake_ms, .keep_listening = 1, .on_reject = on_reject,
                                         .encrypt = def.encrypt};
        sj->key = key;
        key = NULL;
        sj->fate = fate;
        sj->window_ms = (uint32_t)settle_ms;
    }
    pthread_t settle_th;
    bool settling = false;
    if (committed_t) {
        if (sj)
            sj->t = committed_t;
        settling = sj && pthread_create(&settle_th, NULL, settle_committed, sj) == 0;
        if (!settling) {
            migr_transport_close(committed_t);
            if (sj)
                migr_key_free(sj->key);
            free(sj);
            sj = NULL;
        }
    }
    migr_key_free(key);
    migr_link_set_default(NULL);
    if (!received) { /* a listen or accept failure */
        fprintf(stderr, "migr recv: %s\n", migr_last_error());
        ctl_close(srv);
        return 1;
    }
    char raw[16384], js[16384];
    migr_stats_json(&st, raw, sizeof(raw));
    /* this side's summary: what only the source measures is left out */
    static const char *const source_only[] = {
        "tracker", "setup_ms", "hole_pages", "first_pass_ms", "first_pass_mbps", "converged", "resumed_on_source",
        "max_bandwidth", "adaptive_bw", "rate_wait_ms", "compress", "unchanged_pages", "cache_lookups",
        "cache_hits", "cache_hit_rate", "probes", "link_mbps", "round_stats", "serve_p50_us", "prepaged_pages",
        NULL};
    if (cli_json_edit(raw, "\"schema\":1,\"side\":\"destination\"", source_only, js, sizeof(js)) < 0)
        snprintf(js, sizeof(js), "%s", raw);
    if (err < 0) {
        if (!reported)
            report_failure(err, &st);
        if (json)
            printf("%s\n", js);
        ctl_close(srv);
        return 1;
    }
    if (st.ownership_in_doubt) /* cancellable post-copy: the source's release did not arrive */
        fprintf(stderr, "migr recv: %s\n", st.error);
    else
        fprintf(stderr, "migr recv: guest running here (%llu MiB in %.1f ms, %llu pages, %llu torn and resent)\n",
                (unsigned long long)(st.ram_bytes >> 20), (double)st.total_ns / 1e6,
                (unsigned long long)st.pages, (unsigned long long)st.torn_pages);
    if (json) {
        printf("%s\n", js);
        fflush(stdout);
    }
    char info[360], gi[100];
    group_info(group, gi, sizeof(gi));
    snprintf(info, sizeof(info), "\"backend\":\"%s\",\"ram_bytes\":%llu,\"vcpus\":%u,\"incoming\":true%s",
             hv->ops->name, (unsigned long long)st.ram_bytes, hv->nvcpus, gi);
    int rc = ctl_run(srv, hv, info, -1, NULL);
    if (settling) { /* the guest is gone from here: no more answers (their listener closed) */
        sj->stop = true;
        pthread_join(settle_th, NULL);
        migr_key_free(sj->key);
        free(sj);
    }
    return rc;
}
