/* The small control-socket commands: verify, status, resume, stop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "migr/common.h"
#include "migr/workload.h"

static void usage_common(FILE *f, const char *name, const char *what)
{
    fprintf(f, "usage: migr %s --ctl PATH [--wait TIME] [--json]%s\n\n%s\n\n"
               "  --ctl PATH        control socket of the VMM (migr run / migr recv)\n"
               "  --wait TIME       retry connecting for this long: 5 = 5s, 500ms, 1m (default 0: once)\n"
               "  --json            print the answer as one JSON object on stdout (docs/control.md)\n",
            name, strcmp(name, "status") == 0 ? " [--watch [INTERVAL]]" : "", what);
    if (strcmp(name, "status") == 0)
        fprintf(f, "  --watch [INTERVAL] ask again every INTERVAL (default 1s) until the VMM goes away\n"
                   "                    (a source VMM exits once its guest has moved) or Ctrl-C\n");
    fprintf(f, "\nExit status: 0 = done, 1 = the VMM refused or is not there (the reason on stderr),\n"
               "2 = bad arguments.\n");
}

void usage_verify(FILE *f)
{
    usage_common(f, "verify", "Stop the guest workload at a consistent point, check every page of its\n"
                              "working set against its generation (lost, stale or torn pages are found),\n"
                              "and let it run again. Exit 0 if intact, 1 if not.");
    fprintf(f, "\nusage: migr verify --image FILE [--json]\n\n"
               "Check a raw image of guest RAM instead (byte offset = guest-physical address),\n"
               "e.g. QEMU's `pmemsave 0 SIZE FILE` of the stopped PVH guest\n"
               "(build/bench/peers/pvh.elf). A page a vCPU was writing when it stopped is\n"
               "accepted if every byte holds its old or its new generation.\n");
}
void usage_status(FILE *f)
{
    usage_common(f, "status", "Show the VMM and its guest (running, failed, page writes) and, while a\n"
                              "migration runs, its live progress: phase, round, pages done and left, dirty\n"
                              "rate, transfer rate, expected downtime, elapsed time, pages per codec. A\n"
                              "receiving `migr recv` shows the bytes received and their rate. Rates are in\n"
                              "MiB/s (the M of --max-bandwidth). Without --json the answer is printed for\n"
                              "people when stdout is a terminal, as JSON when it is not (scripts).\n"
                              "--watch on a terminal prints the full picture at each update; into a pipe or\n"
                              "a file one line per update (time, guest, phase, round, pages, rates, expected\n"
                              "downtime), and with --json one JSON object per line. Never terminal codes.");
}
void usage_resume(FILE *f)
{
    usage_common(f, "resume", "Resume a guest that a failed migration left paused because ownership was\n"
                              "in doubt. Only do this when the destination is not running it.");
}
void usage_cancel(FILE *f)
{
    usage_common(f, "cancel", "Cancel the migration the VMM is running.\n\n"
                              "On the source (migr run, or a VMM sending): before the switchover the guest\n"
                              "simply keeps running here; in (cancellable) post-copy the destination stops it\n"
                              "and sends back its last checkpoint, and the guest resumes here.\n\n"
                              "On the destination (a receiving migr recv): before COMMIT the receiver drops\n"
                              "the stream and never runs the guest (it exits 1, \"cancelled on the\n"
                              "destination\"), and the source, told why, resumes the guest (migr send exits\n"
                              "1, resumed on the source). From COMMIT (the post-copy switch included) the\n"
                              "guest is the destination's: the cancel is refused (exit 1) with the reason.\n"
                              "A migr recv still waiting for a source stops waiting and exits 0.");
}
void usage_stop(FILE *f) { usage_common(f, "stop", "Stop the VM; its VMM process exits."); }

/* migr status --watch into a pipe or a log: one line per update, no
 * terminal codes, the time first (a `tail -f` or a script reads it). */
static void print_status_line(FILE *f, const char *js)
{
    char ts[16], s[300];
    time_t now = time(NULL);
    strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&now));
    bool b;
    double writes = 0;
    fprintf(f, "%s ", ts);
    if (json_get_bool(js, "incoming", &b) && b && json_get_bool(js, "running", &b) && !b) {
        json_get_str(js, "phase", s, sizeof(s));
        fprintf(f, "no guest yet (%s)", s[0] ? s : "starting");
    } else {
        json_get_num(js, "writes", &writes);
        bool failed = json_get_bool(js, "failed", &b) && b, running = json_get_bool(js, "running", &b) && b;
        fprintf(f, "guest %s, %.0f page writes", failed ? "FAILED" : running ? "running" : "paused", writes);
    }
    const char *p = strstr(js, "\"progress\":{");
    if (!p) {
        fprintf(f, "%s\n", json_get_bool(js, "migrating", &b) && b ? "; migration starting (connecting)" : "");
        return;
    }
    double v[12] = {0};
    v[11] = -1;
    json_get_str(p, "side", s, sizeof(s));
    if (strcmp(s, "destination") == 0) {
        json_get_num(p, "bytes_received", &v[0]);
        json_get_num(p, "elapsed_s", &v[1]);
        json_get_num(p, "transfer_rate", &v[2]);
        fprintf(f, "; receiving: %.1f MiB in %.1f s, %.1f MiB/s\n", v[0] / 1048576.0, v[1], v[2] / 1048576.0);
        return;
    }
    static const char *const keys[] = {"round", "pages_done", "pages_total", "pages_left", "pages_sent", "bytes_sent",
                                       "elapsed_s", "transfer_rate", "dirty_rate", "max_bandwidth", "ram_pages",
                                       "expected_downtime_ms"};
    for (int i = 0; i < 12; i++)
        json_get_num(p, keys[i], &v[i]);
    json_get_str(p, "phase", s, sizeof(s));
    fprintf(f, "; %s round %.0f: %.0f/%.0f pages (%.0f left); %.0f pages sent, %.1f MiB, %.1f s; "
               "transfer %.1f MiB/s", s, v[0], v[1], v[2], v[3], v[4], v[5] / 1048576.0, v[6], v[7] / 1048576.0);
    if (v[9] > 0)
        fprintf(f, " (limit %.1f)", v[9] / 1048576.0);
    if (v[8] > 0)
        fprintf(f, ", dirty %.1f MiB/s", v[8] / 1048576.0);
    else
        fprintf(f, ", dirty rate not known yet");
    if (v[11] >= 0)
        fprintf(f, ", expected downtime %.1f ms", v[11]);
    fprintf(f, "\n");
}

static volatile sig_atomic_t watch_stop;
static void on_watch_signal(int sig) { watch_stop = sig; }

/* The human line for the answer of a small command (without --json). */
static void print_human(const char *name, int rc, const char *res)
{
    char why[600];
    if (rc != 0) { /* refused: the reason goes to stderr only */
        fprintf(stderr, "migr %s: %s\n", name, json_get_str(res, "error", why, sizeof(why)) ? why : res);
        return;
    }
    bool b;
    if (strcmp(name, "stop") == 0) {
        printf("%s\n", json_get_bool(res, "incoming", &b) && b ? "stopped: no guest had arrived; the receiver exits"
                                                               : "stopped: the VM is shut down and its VMM exits");
    } else if (strcmp(name, "resume") == 0) {
        printf("resumed: the guest runs here\n");
    } else if (strcmp(name, "cancel") == 0 && json_get_bool(res, "stopped", &b) && b) {
        printf("cancelled: the receiver stops waiting (no guest had arrived) and exits\n");
    } else if (strcmp(name, "cancel") == 0 && strstr(res, "\"side\":\"destination\"")) {
        printf("cancelling: the destination drops the stream before COMMIT; the guest keeps running on the source\n");
    } else if (strcmp(name, "cancel") == 0) {
        printf("cancelling: the guest stays on (or comes back to) the source; `migr status` shows when it runs\n");
    } else if (strcmp(name, "status") == 0) {
        if (isatty(1))
            cli_print_status(stdout, res);
        else
            printf("%s\n", res);
    }
}

static int ctl_simple(int argc, char **argv, const char *name, const char *command)
{
    const struct cli_cmd *self = cli_find(name);
    static const struct option opts[] = {
        {"ctl", required_argument, 0, 'C'}, {"wait", required_argument, 0, 'w'},
        {"json", no_argument, 0, 'j'}, {"watch", optional_argument, 0, 'W'}, {0, 0, 0, 0},
    };
    const char *ctl = NULL;
    uint64_t wait_ms = 0, watch_ms = 0;
    bool json = false;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (o) {
        case 'C': ctl = optarg; break;
        case 'j': json = true; break;
        case 'w':
            if (cli_parse_ms(optarg, 1, 0, 3600e3, &wait_ms) < 0)
                return cli_bad_args(self, "--wait %s: expected a time up to 1h (5, 0.5, 500ms, 1m)", optarg);
            break;
        case 'W': {
            if (strcmp(name, "status") != 0)
                return cli_bad_args(self, "unknown option '--watch' (only migr status watches)");
            /* --watch INTERVAL or --watch=INTERVAL; a bare --watch is 1 s */
            const char *iv = optarg;
            if (!iv && optind < argc && argv[optind][0] != '-')
                iv = argv[optind++];
            watch_ms = 1000;
            if (iv && cli_parse_ms(iv, 1, 50, 3600e3, &watch_ms) < 0)
                return cli_bad_args(self, "--watch %s: expected an interval from 50ms to 1h (1, 0.5, 250ms)", iv);
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
    if (!ctl)
        return cli_bad_args(self, "--ctl PATH is required");
    char res[16384];
    if (watch_ms) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_watch_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        bool answered = false;
        while (!watch_stop) {
            int rc = ctl_call(ctl, command, answered ? 0 : (int)wait_ms, NULL, NULL, res, sizeof(res));
            if (rc < 0) {
                if (!answered) {
                    fprintf(stderr, "migr %s: %s\n", name, migr_last_error());
                    return 1;
                }
                fprintf(stderr, "migr status: the VMM at %s is gone (a source VMM exits once its guest has moved)\n",
                        ctl);
                return 0;
            }
            answered = true;
            if (json) {
                printf("%s\n", res);
            } else if (!isatty(1)) {
                print_status_line(stdout, res);
            } else {
                time_t now = time(NULL);
                char ts[16];
                strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&now));
                printf("-- %s\n", ts);
                cli_print_status(stdout, res);
            }
            fflush(stdout);
            for (uint64_t slept = 0; slept < watch_ms && !watch_stop; slept += 50)
                usleep(50000);
        }
        return 0;
    }
    int rc = ctl_call(ctl, command, (int)wait_ms, NULL, NULL, res, sizeof(res));
    if (rc < 0) {
        fprintf(stderr, "migr %s: %s\n", name, migr_last_error());
        return 1;
    }
    if (json) {
        printf("%s\n", res);
        if (rc != 0 && strcmp(name, "verify") != 0) {
            char why[600];
            fprintf(stderr, "migr %s: %s\n", name, json_get_str(res, "error", why, sizeof(why)) ? why : res);
        }
    } else if (strcmp(name, "verify") == 0) {
        double pages = 0, bad = 0, ms = 0;
        char why[400] = "";
        json_get_num(res, "pages_checked", &pages);
        json_get_num(res, "bad_pages", &bad);
        json_get_num(res, "pause_ms", &ms);
        json_get_str(res, "first_bad", why, sizeof(why));
        if (rc == 0)
            printf("verified: %.0f pages intact (workload paused %.1f ms)\n", pages, ms);
        else if (!json_get_str(res, "error", why, sizeof(why)) || bad > 0 || why[0])
            fprintf(stderr, "migr verify: NOT verified: %.0f of %.0f pages bad; %s\n", bad, pages, why);
    } else {
        print_human(name, rc, res);
    }
    return rc == 0 ? 0 : 1;
}

/* migr verify --image FILE: the workload's image check on a file, offline. */
static int verify_image(const char *path, bool json)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "migr verify: open %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0) {
        fprintf(stderr, "migr verify: %s: %s\n", path, st.st_size <= 0 ? "empty image" : strerror(errno));
        close(fd);
        return 1;
    }
    size_t len = (size_t)st.st_size;
    void *ram = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (ram == MAP_FAILED) {
        fprintf(stderr, "migr verify: mmap %s (%zu bytes): %s\n", path, len, strerror(e));
        return 1;
    }
    struct migr_verify_report rep;
    int err = migr_workload_verify_image(ram, len, &rep);
    munmap(ram, len);
    if (err < 0) {
        if (json)
            printf("{\"ok\":false,\"image\":\"%s\",\"error\":\"%s\"}\n", path, migr_last_error());
        fprintf(stderr, "migr verify: %s: %s\n", path, migr_last_error());
        return 1;
    }
    if (json)
        printf("{\"ok\":%s,\"image\":\"%s\",\"pages_checked\":%llu,\"bad_pages\":%llu,\"inflight_pages\":%llu,"
               "\"writes\":%llu,\"first_bad\":\"%s\"}\n", rep.ok ? "true" : "false", path,
               (unsigned long long)rep.pages_checked, (unsigned long long)rep.bad_pages,
               (unsigned long long)rep.inflight_pages, (unsigned long long)rep.total_writes, rep.first_bad_why);
    else if (rep.ok)
        printf("verified: %llu pages intact (image %s, %llu writes, %llu page%s in flight accepted)\n",
               (unsigned long long)rep.pages_checked, path, (unsigned long long)rep.total_writes,
               (unsigned long long)rep.inflight_pages, rep.inflight_pages == 1 ? "" : "s");
    else
        printf("NOT verified: %llu of %llu pages bad; %s\n", (unsigned long long)rep.bad_pages,
               (unsigned long long)rep.pages_checked, rep.first_bad_why);
    return rep.ok ? 0 : 1;
}

int cmd_verify(int argc, char **argv)
{
    bool by_image = false, json = false;
    const char *image = NULL;
    for (int i = 1; i < argc; i++)
        by_image |= strncmp(argv[i], "--image", 7) == 0;
    if (!by_image)
        return ctl_simple(argc, argv, "verify", "verify");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--image") == 0 && i + 1 < argc)
            image = argv[++i];
        else if (strncmp(argv[i], "--image=", 8) == 0)
            image = argv[i] + 8;
        else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else
            return cli_bad_args(cli_find("verify"), "--image FILE takes only --json (got '%s')", argv[i]);
    }
    if (!image || !*image)
        return cli_bad_args(cli_find("verify"), "--image needs a FILE");
    return verify_image(image, json);
}
int cmd_status(int argc, char **argv) { return ctl_simple(argc, argv, "status", "status"); }
int cmd_resume(int argc, char **argv) { return ctl_simple(argc, argv, "resume", "resume"); }
int cmd_stop(int argc, char **argv) { return ctl_simple(argc, argv, "stop", "stop"); }
int cmd_cancel(int argc, char **argv) { return ctl_simple(argc, argv, "cancel", "cancel"); }
