/* migr demo: the main job in one command. Starts a source VMM (migr run) with
 * a guest dirtying memory, a destination VMM (migr recv), live-migrates the
 * running guest over a unix socket, verifies the whole image on the
 * destination, checks the guest keeps running there, and stops it. Every
 * process it starts is reaped, whatever happens. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "migr/common.h"

void usage_demo(FILE *f)
{
    fprintf(f,
            "usage: migr demo [--mem SIZE] [--rate SIZE] [--to unix|tcp] [--json]\n"
            "\n"
            "Live-migrate a running guest between two VMM processes on this host and verify\n"
            "it: a %s guest dirtying %s/s of text-like pages is started by `migr run`,\n"
            "moved to `migr recv` over a unix socket, and verified page by page there.\n"
            "\n"
            "  --mem SIZE    guest RAM (default 256M)\n"
            "  --rate SIZE   bytes dirtied per second (default 64M)\n"
            "  --to KIND     transport: unix (default) or tcp (127.0.0.1, a free port)\n"
            "  --json        print the summary as one JSON object on the last line of stdout\n"
            "\nExit status: 0 = migrated and verified, 1 = a step failed (the reason on stderr), 2 = bad arguments.\n",
            "256 MiB", "64 MiB");
}

struct demo {
    char dir[64];
    pid_t src, dst;
    char src_ctl[128], dst_ctl[128], sock[128], src_log[128], dst_log[128];
};

static pid_t spawn(const char *log, char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    return pid;
}

static void show_log(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    if (!f)
        return;
    fprintf(stderr, "--- %s log (%s) ---\n", what, path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* Reap a child, killing it after timeout_ms. Returns its exit status or -1. */
static int reap(pid_t *pid, int timeout_ms)
{
    int status = 0;
    if (*pid <= 0)
        return -1;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(*pid, &status, WNOHANG);
        if (r == *pid)
            break;
        if (r < 0) {
            *pid = 0;
            return -1;
        }
        if (waited >= timeout_ms) {
            kill(*pid, SIGKILL);
            waitpid(*pid, &status, 0);
            break;
        }
        usleep(10000);
    }
    *pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void cleanup(struct demo *d)
{
    if (d->src > 0)
        kill(d->src, SIGTERM);
    if (d->dst > 0)
        kill(d->dst, SIGTERM);
    reap(&d->src, 3000);
    reap(&d->dst, 3000);
    unlink(d->src_ctl);
    unlink(d->dst_ctl);
    unlink(d->sock);
    unlink(d->src_log);
    unlink(d->dst_log);
    char hl[160];
    snprintf(hl, sizeof(hl), "%s.log", d->dst_ctl); /* the fresh VMM's log (cli_spawn_recv) */
    unlink(hl);
    rmdir(d->dir);
}

static int fail(struct demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct demo *d, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "migr demo: FAILED: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    show_log("source VMM", d->src_log);
    show_log("destination VMM", d->dst_log);
    cleanup(d);
    return 1;
}

/* The receiver prints "listening on URL" once it is ready. */
static int wait_listening(struct demo *d, char *url, size_t cap)
{
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(d->dst_log, "r");
        char line[512];
        while (f && fgets(line, sizeof(line), f)) {
            char *p = strstr(line, "listening on ");
            if (p) {
                snprintf(url, cap, "%s", p + 13);
                url[strcspn(url, "\n")] = 0;
                fclose(f);
                return 0;
            }
        }
        if (f)
            fclose(f);
        if (waitpid(d->dst, NULL, WNOHANG) == d->dst) {
            d->dst = 0;
            return -1;
        }
        usleep(10000);
    }
    return -1;
}

int cmd_demo(int argc, char **argv)
{
    const struct cli_cmd *self = cli_find("demo");
    static const struct option opts[] = {
        {"mem", required_argument, 0, 'm'}, {"rate", required_argument, 0, 'r'},
        {"to", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'}, {0, 0, 0, 0},
    };
    const char *mem = "256M", *rate = "64M", *kind = "unix";
    bool json = false;
    uint64_t v;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm': mem = optarg; break;
        case 'r': rate = optarg; break;
        case 't': kind = optarg; break;
        case 'j': json = true; break;
        default: return cli_bad_args(self, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_bad_args(self, "unexpected argument '%s'", argv[optind]);
    if (migr_parse_size(mem, &v) < 0 || migr_parse_size(rate, &v) < 0)
        return cli_bad_args(self, "%s", migr_last_error());
    if (strcmp(kind, "unix") != 0 && strcmp(kind, "tcp") != 0)
        return cli_bad_args(self, "--to %s: expected unix or tcp", kind);
    const char *backend = "kvm";
    if (!migr_hv_available("kvm")) {
        fprintf(stderr, "migr demo: no usable KVM here (%s); using the proc backend (guest RAM written by "
                        "host threads)\n", migr_last_error());
        backend = "proc";
    }

    struct demo d;
    memset(&d, 0, sizeof(d));
    /* $TMPDIR when it is short enough for the socket paths below, else /tmp */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 40)
        tmp = "/tmp";
    snprintf(d.dir, sizeof(d.dir), "%.40s/migr-demo-XXXXXX", tmp);
    if (!mkdtemp(d.dir)) {
        perror("migr demo: mkdtemp");
        return 1;
    }
    snprintf(d.src_ctl, sizeof(d.src_ctl), "%s/src.ctl", d.dir);
    snprintf(d.dst_ctl, sizeof(d.dst_ctl), "%s/dst.ctl", d.dir);
    snprintf(d.sock, sizeof(d.sock), "%s/migrate.sock", d.dir);
    snprintf(d.src_log, sizeof(d.src_log), "%s/src.log", d.dir);
    snprintf(d.dst_log, sizeof(d.dst_log), "%s/dst.log", d.dir);

    char wl[128], listen[160], res[16384], vres[2048];
    snprintf(wl, sizeof(wl), "rate=%s,pattern=random,data=text", rate);
    if (strcmp(kind, "unix") == 0)
        snprintf(listen, sizeof(listen), "unix:%s", d.sock);
    else
        snprintf(listen, sizeof(listen), "tcp:127.0.0.1:0");
    char *src_argv[] = {"migr", "run", "--mem", (char *)mem, "--workload", wl, "--ctl", d.src_ctl,
                        "--backend", (char *)backend, NULL};
    char *dst_argv[] = {"migr", "recv", "--listen", listen, "--ctl", d.dst_ctl, "--timeout", "60", NULL};
    if ((d.src = spawn(d.src_log, src_argv)) < 0 || (d.dst = spawn(d.dst_log, dst_argv)) < 0)
        return fail(&d, "fork: %s", strerror(errno));

    fprintf(stderr, "migr demo: source VMM pid %d runs a %s guest dirtying %s/s\n", (int)d.src, mem, rate);
    if (ctl_call(d.src_ctl, "status", 15000, NULL, NULL, res, sizeof(res)) != 0)
        return fail(&d, "the source VMM did not start: %s", migr_last_error());
    char url[200];
    if (wait_listening(&d, url, sizeof(url)) < 0)
        return fail(&d, "the destination VMM did not start listening");
    fprintf(stderr, "migr demo: destination VMM pid %d listens on %s\n", (int)d.dst, url);
    usleep(300000); /* let the guest dirty some memory first */
    if (ctl_call(d.src_ctl, "verify", 0, NULL, NULL, vres, sizeof(vres)) != 0)
        return fail(&d, "the guest does not verify on the source before migration: %s", vres);

    char cmd[400];
    snprintf(cmd, sizeof(cmd), "migrate %s 300 30 auto", url);
    fprintf(stderr, "migr demo: live-migrating ...\n");
    int rc = ctl_call(d.src_ctl, cmd, 0, cli_progress_line, NULL, res, sizeof(res));
    cli_progress_done();
    if (rc != 0)
        return fail(&d, "migration: %s", rc < 0 ? migr_last_error() : res);
    if (reap(&d.src, 5000) != 0)
        return fail(&d, "the source VMM did not exit cleanly after the migration");

    /* The guest must run on the destination and verify there. */
    double w1 = 0, w2 = 0;
    char st[2048];
    if (ctl_call(d.dst_ctl, "status", 10000, NULL, NULL, st, sizeof(st)) != 0)
        return fail(&d, "destination status: %s", st);
    json_get_num(st, "writes", &w1);
    usleep(300000);
    int vrc = ctl_call(d.dst_ctl, "verify", 0, NULL, NULL, vres, sizeof(vres));
    ctl_call(d.dst_ctl, "status", 0, NULL, NULL, st, sizeof(st));
    json_get_num(st, "writes", &w2);
    bool running = w2 > w1;

    /* The rejuvenation path: hand the running guest to a fresh VMM process
     * on this host (its memory is passed, no page is copied), verify again. */
    fprintf(stderr, "migr demo: handing the guest over to a fresh VMM process ...\n");
    char sock2[400], ures[16384], uvres[2048];
    pid_t up = cli_spawn_recv("/proc/self/exe", d.dst_ctl, NULL, sock2, sizeof(sock2));
    if (up < 0)
        return fail(&d, "starting the fresh VMM: %s", migr_last_error());
    if (cli_move_guest(d.dst_ctl, sock2, "handover", d.dst_ctl, up, ures, sizeof(ures)) < 0) {
        kill(up, SIGTERM);
        reap(&up, 3000);
        return fail(&d, "hand-over to a fresh VMM: %s", migr_last_error());
    }
    if (reap(&d.dst, 5000) != 0)
        return fail(&d, "the old destination VMM did not exit cleanly after the hand-over");
    d.dst = up;
    double u1 = 0, u2 = 0, udown = 0, ucopied = -1;
    json_get_num(ures, "downtime_ms", &udown);
    json_get_num(ures, "pages_sent", &ucopied);
    ctl_call(d.dst_ctl, "status", 0, NULL, NULL, st, sizeof(st));
    json_get_num(st, "writes", &u1);
    usleep(300000);
    int uvrc = ctl_call(d.dst_ctl, "verify", 0, NULL, NULL, uvres, sizeof(uvres));
    ctl_call(d.dst_ctl, "status", 0, NULL, NULL, st, sizeof(st));
    json_get_num(st, "writes", &u2);
    bool urunning = u2 > u1;

    if (ctl_call(d.dst_ctl, "stop", 0, NULL, NULL, st, sizeof(st)) != 0 || reap(&d.dst, 5000) != 0)
        return fail(&d, "the destination VMM did not stop cleanly");
    double pages = 0;
    json_get_num(vres, "pages_checked", &pages);

    printf("\nmigr demo: live migration of a running %s %s guest (dirtying %s/s) over %s\n", mem, backend, rate, kind);
    cli_print_summary(stdout, res);
    printf("  %-22s%s (%.0f pages checked on the destination)\n", "guest image verified", vrc == 0 ? "yes" : "NO",
           pages);
    printf("  %-22s%s (%.0f -> %.0f page writes)\n", "guest runs after", running ? "yes" : "NO", w1, w2);
    printf("\nmigr demo: then handed over to a fresh VMM process on this host (migr upgrade's path)\n");
    printf("  %-22s%.3f ms, %.0f pages copied\n", "guest paused", udown, ucopied);
    printf("  %-22s%s, runs: %s (%.0f -> %.0f page writes)\n", "guest image verified", uvrc == 0 ? "yes" : "NO",
           urunning ? "yes" : "NO", u1, u2);
    if (json) {
        res[strlen(res) - 1] = 0; /* drop the closing brace, add the demo's own fields */
        printf("%s,\"workload_verified\":%s,\"guest_progress_after\":%s,\"handover_downtime_ms\":%.3f,"
               "\"handover_pages_copied\":%.0f,\"handover_verified\":%s,\"handover_progress_after\":%s}\n",
               res, vrc == 0 ? "true" : "false", running ? "true" : "false", udown, ucopied,
               uvrc == 0 ? "true" : "false", urunning ? "true" : "false");
    }
    cleanup(&d);
    if (vrc != 0 || !running || uvrc != 0 || !urunning || ucopied != 0) {
        fprintf(stderr, "migr demo: FAILED: %s\n", vrc != 0 ? vres : !running ? "the guest made no progress after migration"
                                                   : uvrc != 0 ? uvres : !urunning ? "no progress after the hand-over"
                                                   : "the hand-over copied pages");
        return 1;
    }
    return 0;
}
