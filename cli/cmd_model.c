/* migr model: the cluster throughput model of seed paper 002 (Warm-VM Reboot,
 * Cold-VM Reboot, migration, live migration), optionally with migr's own
 * measured live migration and hand-over plugged in. The formulas live in
 * model/; this file parses options and prints the table, JSON and plot. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "migr/common.h"
#include "migr/model.h"

#define MAX_HOSTS 1000
#define MAX_METHODS (MIGR_MODEL_PAPER_METHODS + 3)
#define PLOT_POINTS 240
#define DEFAULT_HOSTS "1-100000"

/* Every parameter of struct migr_model_params that an option sets. */
static const struct param_opt {
    const char *opt;
    size_t off;
    bool rate;
    const char *sym;
    const char *help;
} popts[] = {
    {"t-vmm", offsetof(struct migr_model_params, t_vmm), false, "T_vmm", "VMM rejuvenation interval"},
    {"t-os", offsetof(struct migr_model_params, t_os), false, "T_os", "guest OS rejuvenation interval"},
    {"d-os", offsetof(struct migr_model_params, d_os), false, "D_os", "downtime of one OS rejuvenation"},
    {"delta", offsetof(struct migr_model_params, delta), true, "delta", "degradation rate around an OS reboot"},
    {"r-os", offsetof(struct migr_model_params, r_os), false, "R_os", "its duration, follows (n-1)·D_os"},
    {"d-warm", offsetof(struct migr_model_params, d_w), false, "D_w(n)", "Warm-VM Reboot downtime (∝ n)"},
    {"omega", offsetof(struct migr_model_params, omega), true, "omega", "degradation rate after Warm-VM Reboot"},
    {"r-warm", offsetof(struct migr_model_params, r_vmm), false, "R_vmm", "its duration"},
    {"d-cold", offsetof(struct migr_model_params, d_c), false, "D_c(n)", "Cold-VM Reboot downtime"},
    {"omega-cold", offsetof(struct migr_model_params, omega_c), true, "omega'", "degradation rate after Cold-VM Reboot"},
    {"r-cold", offsetof(struct migr_model_params, r_vmm_c), false, "R'_vmm", "its duration"},
    {"d-mig", offsetof(struct migr_model_params, d_m), false, "D_m", "downtime of one VM's stop-and-copy migration"},
    {"gamma", offsetof(struct migr_model_params, gamma), true, "gamma", "degradation rate while migrating"},
    {"m-live", offsetof(struct migr_model_params, m_l), false, "M_l", "time to live-migrate all n VMs (∝ n)"},
    {"gamma-live", offsetof(struct migr_model_params, gamma_l), true, "gamma'", "degradation rate, live migration"},
    {"m-live-rc", offsetof(struct migr_model_params, m_lrc), false, "M_l rc", "the same with rate control (∝ n)"},
    {"gamma-live-rc", offsetof(struct migr_model_params, gamma_lrc), true, "gamma'rc", "... with rate control"},
};
#define NPOPTS MIGR_ARRAY_SIZE(popts)

static double *pfield(struct migr_model_params *p, size_t i) { return (double *)((char *)p + popts[i].off); }

void usage_model(FILE *f)
{
    struct migr_model_params d;
    migr_model_paper_params(&d, MIGR_MODEL_PAPER_N);
    fprintf(f,
            "usage: migr model [--hosts LIST] [--vms N] [PARAMETER VALUE ...] [--from-bench FILE] [--json]\n"
            "                  [--plot FILE.png]\n"
            "\n"
            "The cluster throughput model of Kourai's Warm-VM Reboot paper: m hosts of n VMs, the\n"
            "VMM rejuvenated every T_vmm and each guest OS every T_os. Prints P/(m·p), the\n"
            "total throughput as a fraction of its maximum, for Warm-VM Reboot (eq. 2),\n"
            "Cold-VM Reboot (4), migration to a spare host (5) and live migration without\n"
            "and with rate control (6), the host count from which migration beats cold\n"
            "reboot, and with --from-bench the same for migr's own live migration and\n"
            "hand-over. Defaults are the paper's measurements (n = 11); docs/model.md has\n"
            "every formula. Times take a unit: ms, s (default), m, h, d.\n"
            "\n"
            "  --hosts LIST         cluster sizes m: N, A-B (1-2-5 steps) or a comma list (default %s)\n"
            "  --vms N              VMs per host n (default %u)\n",
            DEFAULT_HOSTS, MIGR_MODEL_PAPER_N);
    for (size_t i = 0; i < NPOPTS; i++) {
        char name[40], def[24];
        snprintf(name, sizeof(name), "--%s %s", popts[i].opt, popts[i].rate ? "RATE" : "TIME");
        double v = *pfield(&d, i);
        if (popts[i].rate)
            snprintf(def, sizeof(def), "%g", v);
        else if (v >= 86400 && fmod(v, 86400) == 0)
            snprintf(def, sizeof(def), "%gd", v / 86400);
        else
            snprintf(def, sizeof(def), "%gs", v);
        fprintf(f, "  %-20s %-8s %s (default %s)\n", name, popts[i].sym, popts[i].help, def);
    }
    fprintf(f,
            "  --from-bench FILE    migr's JSON migration summaries (migr send --json lines,\n"
            "                       migr upgrade --json, bench/results/migrate.json): adds rows\n"
            "                       migr-live (mode precopy), migr-handover (mode handover) and\n"
            "                       migr-warm (migr rejuvenate --warm --json)\n"
            "  --vm-ram SIZE        scale migr's measured transfer time to VMs of SIZE (e.g. 1G)\n"
            "  --migr-gamma RATE    degradation rate during migr's live migration (default --gamma-live)\n"
            "  --handover-omega RATE  degradation rate during migr's hand-overs (default 0)\n"
            "  --json               print everything as one JSON object\n"
            "  --plot FILE.png      also draw P/(m·p) over m like the paper's Fig. 7\n"
            "Exit status: 0 = printed, 1 = a --from-bench file could not be read (the reason on stderr), 2 = bad arguments.\n"
            "                       (python3 + matplotlib: scripts/install-deps.sh --bench)\n");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int parse_count(const char *s, const char *e, uint64_t *out)
{
    if (s == e || *s < '0' || *s > '9')
        return -1;
    uint64_t v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9' || v > 1000000000000ull / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v < 1 || v > 1000000000000ull)
        return -1;
    *out = v;
    return 0;
}

/* "N", "A-B" (A, B and the 1-2-5 steps between) or a comma list of these. */
static int parse_hosts(const struct cli_cmd *self, const char *text, uint64_t *hosts, size_t *nh)
{
    size_t n = 0;
    const char *s = text;
    for (;;) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        const char *dash = memchr(s, '-', (size_t)(end - s));
        uint64_t a, b;
        if (parse_count(s, dash ? dash : end, &a) < 0 || (dash && parse_count(dash + 1, end, &b) < 0))
            return cli_bad_args(self, "--hosts %s: expected host counts 1..10^12 as N, A-B or a comma list", text);
        if (!dash)
            b = a;
        if (b < a)
            return cli_bad_args(self, "--hosts %s: range %llu-%llu runs backwards", text, (unsigned long long)a,
                                (unsigned long long)b);
        for (uint64_t dec = 1; n < MAX_HOSTS; dec *= 10) {
            static const unsigned steps[] = {1, 2, 5};
            for (size_t k = 0; k < 3 && n < MAX_HOSTS; k++)
                if (dec * steps[k] > a && dec * steps[k] < b)
                    hosts[n++] = dec * steps[k];
            if (dec > b / 10)
                break;
        }
        if (n + 2 > MAX_HOSTS)
            return cli_bad_args(self, "--hosts %s: more than %d cluster sizes", text, MAX_HOSTS - 2);
        hosts[n++] = a;
        hosts[n++] = b;
        if (!comma)
            break;
        s = comma + 1;
    }
    qsort(hosts, n, sizeof(hosts[0]), cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || hosts[i] != hosts[u - 1])
            hosts[u++] = hosts[i];
    *nh = u;
    return 0;
}

struct model {
    struct migr_model_params p;
    struct migr_model_method m[MAX_METHODS];
    struct migr_model_eval ev[MAX_METHODS];
    int n;                        /* methods */
    bool have_bench;
    const char *bench_path;
    struct migr_model_bench bench;
    double vm_ram, migr_gamma, handover_omega;
    int best_flat;                /* the no-spare method with the highest factor */
    int best_spare;               /* the spare-host method with the highest factor, or -1 */
    uint64_t best_switch;         /* m from which best_spare beats best_flat, 0 never */
    char notes[3][240];
    int nnotes;
};

static int find(const struct model *md, const char *name)
{
    for (int i = 0; i < md->n; i++)
        if (strcmp(md->m[i].name, name) == 0)
            return i;
    return -1;
}

static int best_at(const struct model *md, double hosts)
{
    int b = 0;
    for (int i = 1; i < md->n; i++)
        if (migr_model_index(&md->ev[i], hosts) > migr_model_index(&md->ev[b], hosts))
            b = i;
    return b;
}

static const char *crossover_str(const struct model *md, int x, int base, char *buf, size_t cap)
{
    uint64_t m;
    if (x == base)
        snprintf(buf, cap, "-");
    else if (migr_model_crossover(&md->ev[x], &md->ev[base], &m))
        snprintf(buf, cap, "%llu", (unsigned long long)m);
    else
        snprintf(buf, cap, "never");
    return buf;
}

/* Smallest crossover of the paper's migration methods over cold reboot. */
static int headline(const struct model *md, uint64_t *m)
{
    static const char *const mig[] = {"migrate", "live", "live-rc"};
    int who = -1, cold = find(md, "cold");
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(mig); i++) {
        int x = find(md, mig[i]);
        uint64_t c;
        if (migr_model_crossover(&md->ev[x], &md->ev[cold], &c) && (who < 0 || c < *m)) {
            who = x;
            *m = c;
        }
    }
    return who;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_measured(FILE *f, const char *name, const struct migr_model_measured *m)
{
    fprintf(f, "\"%s\":{\"count\":%u,\"downtime_ms\":%.6g,\"total_ms\":%.6g,\"ram_bytes\":%.0f}", name, m->count,
            m->downtime_ms, m->total_ms, m->ram_bytes);
}

static void print_json(FILE *f, const struct model *md, const uint64_t *hosts, size_t nh)
{
    struct migr_model_params p = md->p;
    fprintf(f, "{\"model\":\"seed-002-cluster-throughput\",\"version\":1,\"params\":{\"vms\":%u", p.n);
    for (size_t i = 0; i < NPOPTS; i++) {
        char key[24];
        snprintf(key, sizeof(key), "%s", popts[i].opt);
        for (char *c = key; *c; c++)
            if (*c == '-')
                *c = '_';
        fprintf(f, ",\"%s%s\":%.12g", key, popts[i].rate ? "" : "_s", *pfield(&p, i));
    }
    fprintf(f, "}");
    if (md->have_bench) {
        fprintf(f, ",\"bench\":{\"file\":");
        json_str(f, md->bench_path);
        fprintf(f, ",");
        json_measured(f, "precopy", &md->bench.precopy);
        fprintf(f, ",");
        json_measured(f, "handover", &md->bench.handover);
        fprintf(f, ",");
        json_measured(f, "warm", &md->bench.warm);
        fprintf(f, ",\"failed\":%u,\"skipped_recv\":%u,\"vm_ram_bytes\":%.0f,\"migr_gamma\":%g,"
                   "\"handover_omega\":%g}",
                md->bench.failed, md->bench.skipped, md->vm_ram, md->migr_gamma, md->handover_omega);
    }
    int cold = find(md, "cold"), warm = find(md, "warm");
    fprintf(f, ",\"methods\":[");
    for (int i = 0; i < md->n; i++) {
        const struct migr_model_method *m = &md->m[i];
        const struct migr_model_eval *e = &md->ev[i];
        uint64_t c;
        fprintf(f, "%s{\"name\":\"%s\",\"label\":", i ? "," : "", m->name);
        json_str(f, m->label);
        fprintf(f, ",\"equation\":\"%s\",\"spare_host\":%s,\"downtime_s\":%.12g,\"rate\":%.12g,\"period_s\":%.12g,"
                   "\"os_rejuvenations\":%.12g,\"availability\":%.12g,\"degradation\":%.12g,\"factor\":%.12g",
                m->eq, m->spare ? "true" : "false", m->down, m->rate, m->period, e->n_os, e->avail, e->degr,
                e->factor);
        fprintf(f, ",\"beats_cold_from_hosts\":");
        if (i != cold && migr_model_crossover(e, &md->ev[cold], &c))
            fprintf(f, "%llu", (unsigned long long)c);
        else
            fprintf(f, "null");
        fprintf(f, ",\"beats_warm_from_hosts\":");
        if (i != warm && migr_model_crossover(e, &md->ev[warm], &c))
            fprintf(f, "%llu", (unsigned long long)c);
        else
            fprintf(f, "null");
        fprintf(f, "}");
    }
    fprintf(f, "],\"rows\":[");
    for (size_t r = 0; r < nh; r++) {
        fprintf(f, "%s{\"hosts\":%llu", r ? "," : "", (unsigned long long)hosts[r]);
        for (int i = 0; i < md->n; i++)
            fprintf(f, ",\"%s\":%.12g", md->m[i].name, migr_model_index(&md->ev[i], (double)hosts[r]));
        fprintf(f, ",\"best\":\"%s\"}", md->m[best_at(md, (double)hosts[r])].name);
    }
    uint64_t cross = 0;
    int who = headline(md, &cross);
    fprintf(f, "],\"crossover_hosts\":");
    if (who >= 0)
        fprintf(f, "%llu,\"crossover_method\":\"%s\"", (unsigned long long)cross, md->m[who].name);
    else
        fprintf(f, "null,\"crossover_method\":null");
    fprintf(f, ",\"best_small\":\"%s\",\"best_large\":", md->m[md->best_flat].name);
    if (md->best_switch)
        fprintf(f, "\"%s\",\"best_switch_hosts\":%llu", md->m[md->best_spare].name,
                (unsigned long long)md->best_switch);
    else
        fprintf(f, "\"%s\",\"best_switch_hosts\":null", md->m[md->best_flat].name);
    fprintf(f, ",\"notes\":[");
    for (int i = 0; i < md->nnotes; i++) {
        fprintf(f, "%s", i ? "," : "");
        json_str(f, md->notes[i]);
    }
    fprintf(f, "]}\n");
}

static void print_text(FILE *f, const struct model *md, const uint64_t *hosts, size_t nh)
{
    const struct migr_model_params *p = &md->p;
    fprintf(f, "Cluster throughput P/(m·p) per VMM rejuvenation method (Kourai's Warm-VM Reboot model, eq. 2-6)\n");
    fprintf(f, "n = %u VMs per host, T_vmm = %g d, T_os = %g d, D_os = %g s, δ = %g, R_os = %g s\n\n", p->n,
            p->t_vmm / 86400, p->t_os / 86400, p->d_os, p->delta, p->r_os);
    fprintf(f, "%-14s %-30s %-4s %-5s %9s %8s %9s %9s %10s %9s  %s\n", "method", "", "eq", "spare", "D [s]",
            "N_os", "A", "degr", "factor", "lost [s]", "beats cold / warm from m =");
    int cold = find(md, "cold"), warm = find(md, "warm");
    for (int i = 0; i < md->n; i++) {
        const struct migr_model_method *m = &md->m[i];
        const struct migr_model_eval *e = &md->ev[i];
        char a[24], b[24];
        fprintf(f, "%-14s %-30s %-4s %-5s %9.3f %8.4f %9.6f %9.6f %10.7f %9.1f  %s / %s\n", m->name, m->label,
                m->eq[0] ? m->eq : "-", m->spare ? "yes" : "no", m->down, e->n_os, e->avail, e->degr, e->factor,
                (1 - e->factor) * p->t_vmm, crossover_str(md, i, cold, a, sizeof(a)),
                crossover_str(md, i, warm, b, sizeof(b)));
    }
    fprintf(f, "(factor = A − degr = P/(m·p) with every host serving, spare-host methods ×(m−1)/m;\n"
               " lost = downtime and degradation in seconds per T_vmm)\n\n");
    fprintf(f, "%10s", "hosts m");
    for (int i = 0; i < md->n; i++)
        fprintf(f, " %*s", md->n > MIGR_MODEL_PAPER_METHODS ? 13 : 10, md->m[i].name);
    fprintf(f, "  best\n");
    for (size_t r = 0; r < nh; r++) {
        fprintf(f, "%10llu", (unsigned long long)hosts[r]);
        for (int i = 0; i < md->n; i++)
            fprintf(f, " %*.6f", md->n > MIGR_MODEL_PAPER_METHODS ? 13 : 10,
                    migr_model_index(&md->ev[i], (double)hosts[r]));
        fprintf(f, "  %s\n", md->m[best_at(md, (double)hosts[r])].name);
    }
    uint64_t cross = 0;
    int who = headline(md, &cross);
    fputc('\n', f);
    if (who >= 0)
        fprintf(f, "crossover: migration beats Cold-VM Reboot from m = %llu hosts (%s; the paper, with its figures: about 11,000)\n",
                (unsigned long long)cross, md->m[who].label);
    else
        fprintf(f, "crossover: no migration method beats Cold-VM Reboot at any cluster size\n");
    if (md->best_switch)
        fprintf(f, "best: %s below m = %llu, %s from there on\n", md->m[md->best_flat].label,
                (unsigned long long)md->best_switch, md->m[md->best_spare].label);
    else
        fprintf(f, "best: %s at every cluster size\n", md->m[md->best_flat].label);
    for (int i = 0; i < md->nnotes; i++)
        fprintf(f, "note: %s\n", md->notes[i]);
}

/* The plotting script: $MIGR_MODEL_PLOT, next to this binary's source tree
 * (build/migr -> bench/model_plot.py), or under the current directory. */
static void plot_script(char *out, size_t cap)
{
    const char *env = getenv("MIGR_MODEL_PLOT");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(out, cap, "%s/../bench/model_plot.py", exe);
            if (access(out, R_OK) == 0)
                return;
        }
    }
    snprintf(out, cap, "bench/model_plot.py");
}

/* Feed json to `PYTHON SCRIPT -o FILE`; its exit status (127: no such python,
 * 3: no matplotlib, which the caller reports once). */
static int run_plotter(const char *python, const char *script, const char *file, const char *json, size_t len)
{
    int fds[2];
    if (pipe(fds) < 0) {
        fprintf(stderr, "migr model: --plot: pipe: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "migr model: --plot: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[0], 0);
        close(fds[0]);
        close(fds[1]);
        execlp(python, python, script, "--quiet-missing", "-o", file, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    for (size_t off = 0; off < len;) {
        ssize_t k = write(fds[1], json + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;           /* the plotter died; its exit status says why */
        off += (size_t)k;
    }
    close(fds[1]);
    signal(SIGPIPE, old);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Draw the plot from the model with dense rows over the --hosts span.
 * 0 drawn, 1 skipped (no python3 / matplotlib; said why), -1 failed. The
 * python3 first on PATH may be a private one (pyenv, venv) without
 * matplotlib, so the distribution's /usr/bin/python3 is tried after it. */
static int plot(const struct model *md, const uint64_t *hosts, size_t nh, const char *file)
{
    static uint64_t dense[PLOT_POINTS + 2];
    size_t nd = 0;
    double lo = log((double)hosts[0]), hi = log((double)hosts[nh - 1]);
    for (int k = 0; k <= PLOT_POINTS; k++) {
        uint64_t v = (uint64_t)llround(exp(lo + (hi - lo) * k / PLOT_POINTS));
        if (nd == 0 || v > dense[nd - 1])
            dense[nd++] = v;
    }
    char script[PATH_MAX + 32];
    plot_script(script, sizeof(script));
    char *json = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&json, &len);
    if (!mem) {
        fprintf(stderr, "migr model: --plot: %s\n", strerror(errno));
        return -1;
    }
    print_json(mem, md, dense, nd);
    fclose(mem);
    static const char *const pythons[] = {"python3", "/usr/bin/python3"};
    int rc = 127;
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(pythons); i++) {
        int r = run_plotter(pythons[i], script, file, json, len);
        if (r == 127 && rc == 3)
            continue;        /* keep the more useful "no matplotlib" */
        rc = r;
        if (r != 3 && r != 127)
            break;
    }
    free(json);
    if (rc == 0)
        return 0;
    if (rc == 127) {
        fprintf(stderr, "migr model: --plot: python3 is not installed; plot skipped\n");
        return 1;
    }
    if (rc == 3) {
        fprintf(stderr, "migr model: --plot: matplotlib is not installed (scripts/install-deps.sh --bench); "
                        "plot skipped\n");
        return 1;
    }
    if (rc > 0)
        fprintf(stderr, "migr model: --plot: %s failed (exit %d)\n", script, rc);
    return -1;
}

static int build(const struct cli_cmd *self, struct model *md)
{
    int rc = migr_model_paper_methods(&md->p, md->m);
    if (rc < 0)
        return cli_bad_args(self, "%s", migr_last_error());
    md->n = rc;
    if (md->have_bench) {
        if (md->bench.precopy.count) {
            if (migr_model_migr_live(&md->p, &md->bench.precopy, md->vm_ram, md->migr_gamma, &md->m[md->n]) < 0)
                return cli_bad_args(self, "--from-bench %s: %s", md->bench_path, migr_last_error());
            md->n++;
        } else {
            snprintf(md->notes[md->nnotes++], sizeof(md->notes[0]),
                     "%s has no successful live-migration (precopy) summary; no migr-live row", md->bench_path);
        }
        if (md->bench.handover.count) {
            if (migr_model_migr_handover(&md->p, &md->bench.handover, md->handover_omega, &md->m[md->n]) < 0)
                return cli_bad_args(self, "--from-bench %s: %s", md->bench_path, migr_last_error());
            md->n++;
            snprintf(md->notes[md->nnotes++], sizeof(md->notes[0]),
                     "migr-handover replaces the VMM process only; rejuvenating the host kernel (KVM) "
                     "still takes one of the other methods (docs/model.md)");
        } else {
            snprintf(md->notes[md->nnotes++], sizeof(md->notes[0]),
                     "%s has no hand-over summary (migr upgrade --json, migr send --handover --json); "
                     "no migr-handover row", md->bench_path);
        }
        if (md->bench.warm.count) {
            if (migr_model_migr_warm(&md->p, &md->bench.warm, md->handover_omega, &md->m[md->n]) < 0)
                return cli_bad_args(self, "--from-bench %s: %s", md->bench_path, migr_last_error());
            md->n++;
        }
    }
    for (int i = 0; i < md->n; i++)
        if (migr_model_eval(&md->p, &md->m[i], &md->ev[i]) < 0)
            return cli_bad_args(self, "%s", migr_last_error());
    md->best_flat = -1;
    md->best_spare = -1;
    for (int i = 0; i < md->n; i++) {
        int *b = md->ev[i].spare ? &md->best_spare : &md->best_flat;
        if (*b < 0 || md->ev[i].factor > md->ev[*b].factor)
            *b = i;
    }
    md->best_switch = 0;
    if (md->best_spare >= 0 &&
        !migr_model_crossover(&md->ev[md->best_spare], &md->ev[md->best_flat], &md->best_switch))
        md->best_switch = 0;
    if (md->p.n != MIGR_MODEL_PAPER_N)
        snprintf(md->notes[md->nnotes++], sizeof(md->notes[0]),
                 "the paper measured n = %u; defaults D_w, R_os, M_l scale with n, the others are kept "
                 "(docs/model.md)", MIGR_MODEL_PAPER_N);
    return 0;
}

int cmd_model(int argc, char **argv)
{
    const struct cli_cmd *self = cli_find("model");
    enum { O_HOSTS = 1000, O_VMS, O_JSON, O_PLOT, O_BENCH, O_VMRAM, O_MGAMMA, O_HOMEGA, O_PARAM = 2000 };
    static struct option opts[NPOPTS + 9];
    static const struct option fixed[] = {
        {"hosts", required_argument, 0, O_HOSTS}, {"vms", required_argument, 0, O_VMS},
        {"json", no_argument, 0, O_JSON}, {"plot", required_argument, 0, O_PLOT},
        {"from-bench", required_argument, 0, O_BENCH}, {"vm-ram", required_argument, 0, O_VMRAM},
        {"migr-gamma", required_argument, 0, O_MGAMMA}, {"handover-omega", required_argument, 0, O_HOMEGA},
    };
    size_t no = 0;
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(fixed); i++)
        opts[no++] = fixed[i];
    for (size_t i = 0; i < NPOPTS; i++)
        opts[no++] = (struct option){popts[i].opt, required_argument, 0, O_PARAM + (int)i};
    opts[no] = (struct option){0, 0, 0, 0};

    static struct model md;
    static uint64_t hosts[MAX_HOSTS];
    memset(&md, 0, sizeof(md));
    double given[NPOPTS] = {0};
    bool set[NPOPTS] = {false};
    const char *hosts_text = DEFAULT_HOSTS, *plot_file = NULL;
    long vms = MIGR_MODEL_PAPER_N;
    bool json = false, mgamma_set = false, vmram_set = false, homega_set = false;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        char *end;
        if (o >= O_PARAM && o < O_PARAM + (int)NPOPTS) {
            size_t i = (size_t)(o - O_PARAM);
            int rc = popts[i].rate ? migr_model_parse_rate(optarg, &given[i])
                                   : migr_model_parse_time(optarg, &given[i]);
            if (rc < 0)
                return cli_bad_args(self, "--%s: %s", popts[i].opt, migr_last_error());
            set[i] = true;
            continue;
        }
        switch (o) {
        case O_HOSTS: hosts_text = optarg; break;
        case O_JSON: json = true; break;
        case O_PLOT: plot_file = optarg; break;
        case O_BENCH: md.bench_path = optarg; break;
        case O_VMS:
            errno = 0;
            vms = strtol(optarg, &end, 10);
            if (*end || end == optarg || errno || vms < 1 || vms > 1000000)
                return cli_bad_args(self, "--vms %s: expected 1..1000000 VMs per host", optarg);
            break;
        case O_VMRAM: {
            uint64_t b;
            if (migr_parse_size(optarg, &b) < 0 || b == 0)
                return cli_bad_args(self, "--vm-ram %s: expected a size > 0 such as 1G", optarg);
            md.vm_ram = (double)b;
            vmram_set = true;
            break;
        }
        case O_MGAMMA:
            if (migr_model_parse_rate(optarg, &md.migr_gamma) < 0)
                return cli_bad_args(self, "--migr-gamma: %s", migr_last_error());
            mgamma_set = true;
            break;
        case O_HOMEGA:
            if (migr_model_parse_rate(optarg, &md.handover_omega) < 0)
                return cli_bad_args(self, "--handover-omega: %s", migr_last_error());
            homega_set = true;
            break;
        case ':':
            return cli_bad_args(self, "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_bad_args(self, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_bad_args(self, "unexpected argument '%s'", argv[optind]);
    if (!md.bench_path && (vmram_set || mgamma_set || homega_set))
        return cli_bad_args(self, "--vm-ram, --migr-gamma and --handover-omega need --from-bench FILE");
    size_t nh = 0;
    if (parse_hosts(self, hosts_text, hosts, &nh) != 0)
        return 2;

    migr_model_paper_params(&md.p, (unsigned)vms);
    for (size_t i = 0; i < NPOPTS; i++)
        if (set[i])
            *pfield(&md.p, i) = given[i];
    /* R_os follows D_os unless given: the paper's R_os is (n−1)·D_os. */
    for (size_t i = 0; i < NPOPTS; i++)
        if (strcmp(popts[i].opt, "r-os") == 0 && !set[i])
            md.p.r_os = (md.p.n - 1) * md.p.d_os;
    if (!mgamma_set)
        md.migr_gamma = md.p.gamma_l;
    if (md.bench_path && access(md.bench_path, R_OK) != 0)
        return cli_bad_args(self, "--from-bench %s: %s", md.bench_path, strerror(errno));
    if (md.bench_path) {
        if (migr_model_bench_load(md.bench_path, &md.bench) < 0) {
            fprintf(stderr, "migr model: --from-bench: %s\n", migr_last_error());
            return 1;
        }
        md.have_bench = true;
    }
    int rc = build(self, &md);
    if (rc)
        return rc;
    if (json)
        print_json(stdout, &md, hosts, nh);
    else
        print_text(stdout, &md, hosts, nh);
    fflush(stdout);
    if (plot_file) {
        int pr = plot(&md, hosts, nh, plot_file);
        if (pr < 0)
            return 1;
        if (pr == 0 && !json)
            printf("plot: %s\n", plot_file);
    }
    return 0;
}
