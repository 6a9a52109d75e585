/* bench_rejuvenate: the rejuvenation path through the CLI, as an operator
 * runs it, for guests of several sizes (sparse memfd RAM, the same 64 MiB
 * working set in each):
 *
 *   upgrade     migr upgrade: one zero-copy hand-over to a fresh VMM process
 *   handover    migr rejuvenate --handover: the seed-000 round trip (start
 *               VMM 2, hand over 1->2, reboot VMM 1, hand over 2->1, stop VMM 2)
 *   copy        migr rejuvenate --copy: the same round trip with pre-copy
 *               migrations (256 MiB and 1 GiB guests only: it reads all RAM)
 *   warm        migr rejuvenate --warm: Warm-VM Reboot (seed 002), the VMM
 *               process re-execs and resumes the guest from the same memory
 *   group3      migr upgrade --group: three 256 MiB guests with one joint
 *               switchover (group downtime)
 *
 * Each repetition verifies the guest afterwards (migr verify) and counts only
 * if it passed. The machine's floor, measured in the same run: one CLI round
 * trip to a VMM (`migr status`: process start + control socket), which every
 * CLI-driven step pays at least once.
 *
 * Output: a table, bench/results/rejuvenate.json whose "summaries" are the
 * CLI's own JSON lines (migr model --from-bench reads them: migr-handover
 * from the upgrades and hand-over moves, migr-live from the copy moves,
 * migr-warm from the warm reboots).
 * Exit: 0 all verified, 1 a configuration failed, 2 usage, 77 no /dev/kvm.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_rejuvenate"
#include "benchlib.h"

#define MAX_REPS 20

static char migr_bin[2048], dir[256];
static FILE *summaries; /* collected CLI JSON lines */

/* Run a shell command, capture stdout's last line into out. Returns exit status. */
static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[65536];
    out[0] = 0;
    while (fgets(line, sizeof(line), p))
        if (line[0] && line[0] != '\n')
            snprintf(out, cap, "%s", line);
    int st = pclose(p);
    size_t n = strlen(out);
    if (n && out[n - 1] == '\n')
        out[n - 1] = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool num(const char *json, const char *key, double *v)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        return false;
    p += strlen(pat);
    if (*p == '[')
        p++;
    char *e;
    *v = strtod(p, &e);
    return e != p;
}

static pid_t start_vm(const char *ctl, const char *mem, const char *extra)
{
    char log[400];
    snprintf(log, sizeof(log), "%s.log", ctl);
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        if (!freopen(log, "a", stderr))
            _exit(127);
        char *argv[] = {"migr", "run", "--mem", (char *)mem, "--workload", "rate=64M,ws=64M,pattern=random,data=text",
                        "--ctl", (char *)ctl, extra ? "--group" : NULL, (char *)extra, NULL};
        execv(migr_bin, argv);
        _exit(127);
    }
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof(cmd), "%s status --ctl %s --wait 20 2>/dev/null", migr_bin, ctl);
    if (pid < 0 || run(cmd, out, sizeof(out)) != 0) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        return -1;
    }
    return pid;
}

static void stop_vm(const char *ctl, pid_t pid)
{
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof(cmd), "%s stop --ctl %s 2>/dev/null", migr_bin, ctl);
    run(cmd, out, sizeof(out));
    /* The VMM serving ctl now may be a descendant we did not fork (upgrade,
     * rejuvenate): it exits on stop. Our own child is reaped here. */
    if (pid > 0) {
        for (int i = 0; i < 200 && waitpid(pid, NULL, WNOHANG) == 0; i++)
            sleep_ms(10);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    char pat[400];
    snprintf(pat, sizeof(pat), "pkill -9 -f -- '--ctl %s' 2>/dev/null", ctl);
    if (system(pat) < 0)
        perror("pkill");
}

static bool verify(const char *ctl)
{
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof(cmd), "%s verify --ctl %s 2>&1", migr_bin, ctl);
    return run(cmd, out, sizeof(out)) == 0;
}

struct row {
    const char *what, *mem;
    int ok, reps; /* set at run time */
    double down[MAX_REPS], down2[MAX_REPS], total[MAX_REPS];
};

static void record(struct row *r, const char *json, double d, double d2, double t)
{
    r->down[r->ok] = d;
    r->down2[r->ok] = d2;
    r->total[r->ok] = t;
    r->ok++;
    fprintf(summaries, "%s\n", json);
}

static void bench_one(struct row *r)
{
    char ctl[300], cmd[8192], out[65536];
    snprintf(ctl, sizeof(ctl), "%s/%s-%s.ctl", dir, r->what, r->mem);
    pid_t pid = start_vm(ctl, r->mem, NULL);
    if (pid < 0) {
        fprintf(stderr, "bench_rejuvenate: %s %s: VM did not start (see %s.log)\n", r->what, r->mem, ctl);
        return;
    }
    sleep_ms(500);
    for (int i = 0; i < r->reps; i++) {
        if (!strcmp(r->what, "upgrade"))
            snprintf(cmd, sizeof(cmd), "%s upgrade --ctl %s --json 2>>%s.log", migr_bin, ctl, ctl);
        else
            snprintf(cmd, sizeof(cmd), "%s rejuvenate --ctl %s --%s --json 2>>%s.log", migr_bin, ctl, r->what, ctl);
        double d = 0, d2 = 0, t = 0;
        if (run(cmd, out, sizeof(out)) != 0 || !num(out, "downtime_ms", &d) || !num(out, "total_ms", &t)) {
            fprintf(stderr, "bench_rejuvenate: %s %s rep %d failed: %.300s\n", r->what, r->mem, i, out);
            continue;
        }
        const char *second = strstr(out, "\"downtime_ms\":[");
        if (second && (second = strchr(second, ',')))
            d2 = strtod(second + 1, NULL);
        if (!verify(ctl)) {
            fprintf(stderr, "bench_rejuvenate: %s %s rep %d: guest does not verify\n", r->what, r->mem, i);
            continue;
        }
        record(r, out, d, d2, t);
        sleep_ms(200);
    }
    stop_vm(ctl, pid);
}

static void bench_group(struct row *r)
{
    char ctl[3][300], cmd[8192], out[65536];
    pid_t pid[3];
    int started = 0;
    for (; started < 3; started++) {
        snprintf(ctl[started], sizeof(ctl[0]), "%s/group-vm%d.ctl", dir, started);
        if ((pid[started] = start_vm(ctl[started], r->mem, "bench")) < 0)
            break;
    }
    if (started == 3) {
        sleep_ms(500);
        for (int i = 0; i < r->reps; i++) {
            snprintf(cmd, sizeof(cmd), "%s upgrade --group bench --json 2>>%s/group.log", migr_bin, dir);
            double d = 0, t = 0;
            bool ok = run(cmd, out, sizeof(out)) == 0 && num(out, "group_downtime_ms", &d) &&
                      num(out, "max_member_downtime_ms", &t);
            for (int v = 0; ok && v < 3; v++)
                ok = verify(ctl[v]);
            if (!ok) {
                fprintf(stderr, "bench_rejuvenate: group rep %d failed: %.300s\n", i, out);
                continue;
            }
            r->down[r->ok] = d;
            r->down2[r->ok] = t;
            r->total[r->ok] = d;
            r->ok++;
            sleep_ms(200);
        }
    }
    for (int v = 0; v < started; v++)
        stop_vm(ctl[v], pid[v]);
}

int main(int argc, char **argv)
{
    bool quick = false;
    const char *json_path = "bench/results/rejuvenate.json";
    static const struct option opts[] = {{"quick", no_argument, 0, 'q'}, {"json", required_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'q')
            quick = true;
        else if (o == 'j')
            json_path = optarg;
        else {
            fprintf(o == 'h' ? stdout : stderr,
                    "usage: bench_rejuvenate [--quick] [--json FILE]\n"
                    "  upgrade / rejuvenate --handover / --copy / --warm / upgrade --group through the CLI,\n"
                    "  guests of 256 MiB, 4 GiB, 16 GiB (quick: 256 MiB, 1 repetition); writes FILE\n"
                    "  (default bench/results/rejuvenate.json)\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        printf("SKIP: /dev/kvm not usable\n");
        return 77;
    }
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    if (!realpath(build, migr_bin)) {
        fprintf(stderr, "bench_rejuvenate: %s: %s\n", build, strerror(errno));
        return 2;
    }
    strncat(migr_bin, "/migr", sizeof(migr_bin) - strlen(migr_bin) - 1);
    snprintf(dir, sizeof(dir), "/tmp/migr-bench-rejuv.%d", (int)getpid());
    if (mkdir(dir, 0700) < 0) {
        perror(dir);
        return 1;
    }
    setenv("MIGR_RUN_DIR", dir, 1);
    summaries = tmpfile();
    if (!summaries) {
        perror("tmpfile");
        return 1;
    }
    int reps = quick ? 1 : 5;
    static struct row rows[] = {
        {.what = "upgrade", .mem = "256M"}, {.what = "upgrade", .mem = "4G"}, {.what = "upgrade", .mem = "16G"},
        {.what = "handover", .mem = "256M"}, {.what = "handover", .mem = "4G"}, {.what = "handover", .mem = "16G"},
        {.what = "copy", .mem = "256M"}, {.what = "copy", .mem = "1G"},
        {.what = "warm", .mem = "256M"}, {.what = "warm", .mem = "4G"}, {.what = "warm", .mem = "16G"},
        {.what = "group3", .mem = "256M"},
    };
    int nrows = (int)(sizeof(rows) / sizeof(rows[0]));

    /* the floor: one CLI round trip to a running VMM */
    char fctl[300], cmd[8192], out[4096];
    snprintf(fctl, sizeof(fctl), "%s/floor.ctl", dir);
    pid_t fp = start_vm(fctl, "256M", NULL);
    double floor_ms[MAX_REPS];
    int nf = 0;
    snprintf(cmd, sizeof(cmd), "%s status --ctl %s", migr_bin, fctl);
    for (int i = 0; fp > 0 && i < 10 && nf < MAX_REPS; i++) {
        double t0 = now_s();
        if (run(cmd, out, sizeof(out)) == 0)
            floor_ms[nf++] = (now_s() - t0) * 1e3;
    }
    if (fp > 0)
        stop_vm(fctl, fp);
    double floor = nf ? median(floor_ms, nf) : 0;

    int failed = 0;
    for (int i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        r->reps = reps;
        if (quick && strcmp(r->mem, "256M"))
            continue;
        if (!strcmp(r->what, "group3"))
            bench_group(r);
        else
            bench_one(r);
        if (r->ok == 0)
            failed++;
        printf("%-9s %5s  ok %d/%d  downtime %8.3f ms%s  total %9.2f ms (%.1f x CLI floor)\n", r->what, r->mem,
               r->ok, r->reps, r->ok ? median(r->down, r->ok) : 0, r->ok && r->down2[0] ? " (+ back)" : "",
               r->ok ? median(r->total, r->ok) : 0, r->ok && floor > 0 ? median(r->total, r->ok) / floor : 0);
        fflush(stdout);
    }
    printf("\nCLI floor (migr status round trip, process start + control socket): %.2f ms (median of %d)\n",
           floor, nf);
    printf("downtime: median per repetition; for round trips the first move's (the move back is in the JSON);\n"
           "group3: the group's downtime (first member paused -> last resumed), total = the same\n");

    char d2[300];
    snprintf(d2, sizeof(d2), "%s", json_path);
    char *slash = strrchr(d2, '/');
    if (slash) {
        *slash = 0;
        mkdir_p(d2);
    }
    FILE *f = fopen(json_path, "w");
    if (!f) {
        perror(json_path);
        return 1;
    }
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", gmtime(&now));
    fprintf(f, "{\"bench\":\"rejuvenate\",\"when\":\"%s\",\"quick\":%s,\"cli_floor_ms\":%.4f,\"rows\":[", when,
            quick ? "true" : "false", floor);
    bool first = true;
    for (int i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        if (quick && strcmp(r->mem, "256M"))
            continue;
        fprintf(f, "%s{\"what\":\"%s\",\"mem\":\"%s\",\"ok\":%d,\"reps\":%d,\"downtime_ms\":%.4f,"
                   "\"downtime_back_ms\":%.4f,\"total_ms\":%.4f}",
                first ? "" : ",", r->what, r->mem, r->ok, r->reps, r->ok ? median(r->down, r->ok) : 0,
                r->ok ? median(r->down2, r->ok) : 0, r->ok ? median(r->total, r->ok) : 0);
        first = false;
    }
    fprintf(f, "],\"summaries\":[\n");
    rewind(summaries);
    char line[65536];
    first = true;
    while (fgets(line, sizeof(line), summaries)) {
        line[strcspn(line, "\n")] = 0;
        fprintf(f, "%s%s\n", first ? "" : ",", line);
        first = false;
    }
    fprintf(f, "]}\n");
    fclose(f);
    printf("wrote %s\n", json_path);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) < 0)
        perror("rm");
    return failed ? 1 : 0;
}
