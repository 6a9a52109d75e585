/* migr — the cluster throughput model of VMM rejuvenation (seed paper 002,
 * Kourai, "VMMのソフトウェア若化を考慮したクラスタ性能の比較", sections 3–4).
 *
 * A cluster of m hosts, n VMs per host; every host's VMM is rejuvenated every
 * T_vmm, every guest OS every T_os. Each way of rejuvenating the VMM costs
 * downtime (availability A) and a period of degraded throughput; the result
 * is the total throughput P as a fraction of the maximum m·p:
 *
 *     P/(m·p) = (A − (rate·period + N·δ·R_os)/T_vmm) · (m−1)/m if a spare host is needed,
 *                                                      · 1     otherwise.
 *
 * docs/model.md gives every formula, symbol and reading of the paper.
 * All times are in seconds, rates in [0, 1]. Nothing here allocates; every
 * function is thread-safe (errors go to the thread's migr_last_error()).
 * Nothing blocks, starts a thread or installs a signal handler, except that
 * migr_model_bench_load reads a file (blocking file I/O on the caller's
 * thread).
 */
#ifndef MIGR_MODEL_H
#define MIGR_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The paper's measurements (section 4, Table 1) at n = 11 VMs of 1 GB. */
#define MIGR_MODEL_PAPER_N 11u

/* Every parameter of the paper's model for one host of n VMs. */
struct migr_model_params {
    unsigned n;          /* VMs per host */
    double t_vmm;        /* T_vmm: VMM rejuvenation interval */
    double t_os;         /* T_os: guest OS rejuvenation interval */
    double d_os;         /* D_os: downtime of one OS rejuvenation */
    double delta;        /* δ: throughput degradation rate after/while an OS reboots */
    double r_os;         /* R_os: duration of that degradation, per OS rejuvenation round */
    double d_w;          /* D_w(n): downtime of Warm-VM Reboot */
    double omega;        /* ω: degradation rate after Warm-VM Reboot */
    double r_vmm;        /* R_vmm: its duration */
    double d_c;          /* D_c(n): downtime of Cold-VM Reboot */
    double omega_c;      /* ω': degradation rate after Cold-VM Reboot */
    double r_vmm_c;      /* R'_vmm: its duration */
    double d_m;          /* D_m: mean downtime of one VM's (stop-and-copy) migration = M_t/n */
    double gamma;        /* γ: degradation rate while the other n−1 VMs migrate */
    double m_l;          /* M_l: total time to live-migrate all n VMs */
    double gamma_l;      /* γ': degradation rate during live migration */
    double m_lrc;        /* M_l with Xen's adaptive transfer-rate control */
    double gamma_lrc;    /* γ' with transfer-rate control */
};

/* One way of rejuvenating the VMM, reduced to the three numbers the formulas
 * need plus two properties of the method. */
struct migr_model_method {
    char name[16];       /* short key: "warm", "cold", "migrate", "live", "live-rc", ... */
    char label[48];      /* for people: "Warm-VM Reboot" */
    char eq[8];          /* the paper's equation, "(2)", or "" for migr's own rows */
    double down;         /* D: downtime of each VM per VMM rejuvenation */
    double rate;         /* ω, ω', γ or γ': degradation rate */
    double period;       /* R_vmm, R'_vmm, (n−1)·D_m or M_l: degraded time */
    bool resets_os;      /* the VMM rejuvenation reboots the OSes too (Cold): N = ⌊·⌋ */
    bool spare;          /* needs a spare host: only m−1 hosts serve */
};

/* The model evaluated for one method. */
struct migr_model_eval {
    double n_os;         /* N: OS rejuvenations per T_vmm (N_w, ⌊N_c⌋, N_m, N_l) */
    double avail;        /* A = 1 − (D + N·D_os)/T_vmm */
    double degr;         /* (rate·period + N·δ·R_os)/T_vmm */
    double factor;       /* A − degr: P/(m·p) when all m hosts serve */
    bool spare;          /* P/(m·p) = factor·(m−1)/m */
};

/*! Fill p with the paper's parameters (section 4: T_vmm 28 days, T_os 7 days,
 *  Table 1 and the figures of 4.1/4.2), scaled to n VMs where the paper says
 *  how a quantity depends on n: D_w(n) ∝ n, R_os = (n−1)·D_os, M_l ∝ n (one VM
 *  after another). For n = 11 these are exactly the paper's values. */
void migr_model_paper_params(struct migr_model_params *p, unsigned n);

/*! 0 if p describes a possible host (non-negative finite times, rates in
 *  [0, 1], every downtime shorter than its interval, n ≥ 1), else -EINVAL
 *  with a message naming the parameter ("t_os: 0 s; must be > 0"). */
int migr_model_check(const struct migr_model_params *p);

/*! The paper's five methods from p, in the order warm (eq. 2), cold (4),
 *  migrate (5), live (6), live-rc (6 with rate control). out must hold
 *  MIGR_MODEL_PAPER_METHODS entries. Returns the count or -EINVAL (p invalid). */
#define MIGR_MODEL_PAPER_METHODS 5
int migr_model_paper_methods(const struct migr_model_params *p, struct migr_model_method *out);

/*! Evaluate method x under p (p's OS schedule and n; x's own D, rate,
 *  period). 0, or -EINVAL if p or x is impossible or the losses exceed the
 *  whole interval (factor < 0). */
int migr_model_eval(const struct migr_model_params *p, const struct migr_model_method *x,
                    struct migr_model_eval *out);

/*! P/(m·p) of an evaluated method for a cluster of m ≥ 1 hosts. */
double migr_model_index(const struct migr_model_eval *e, double m);

/*! The smallest host count m from which x has a strictly higher P/(m·p) than
 *  base for every larger cluster too. Returns 1 and sets *m, or 0 if there
 *  is none (x never beats base for good, or only beyond 10^15 hosts). */
int migr_model_crossover(const struct migr_model_eval *x, const struct migr_model_eval *base, uint64_t *m);

/*! γ (which 0: stop-and-copy migration, eq. 5) or γ' (1: live migration,
 *  2: live migration with rate control, eq. 6) computed from the paper's
 *  Table 1 fits of V_s(i), V_m(i), V_d(i), M(i) for n = 11, p = 560 req/s,
 *  weights M(i)/Σ M(i). 0 or -EINVAL (which out of range). */
int migr_model_table1_gamma(int which, double *gamma);

/* ---- migr's own measurements (--from-bench) ---- */

/* Means over the successful summaries of one mode. */
struct migr_model_measured {
    unsigned count;
    double downtime_ms;  /* guest paused, per VM */
    double total_ms;     /* whole migration / hand-over of one VM */
    double ram_bytes;    /* guest RAM */
};

struct migr_model_bench {
    struct migr_model_measured precopy;   /* mode "precopy": live migration */
    struct migr_model_measured handover;  /* mode "handover": same host, fresh VMM */
    struct migr_model_measured warm;      /* mode "warm": migr rejuvenate --warm (VMM re-exec, memory kept) */
    unsigned failed;     /* summaries with "ok":false, left out */
    unsigned skipped;    /* receiver-side summaries ("recv": in bench JSON), left out */
};

/*! Collect migr's JSON migration summaries from text: every object that
 *  starts {"mode":"..." (lines of `migr send --json` / `migr upgrade --json`,
 *  or the "send" objects inside bench/results/migrate.json). Unknown modes
 *  are an error. Returns the number of summaries used (≥ 1), or -EINVAL with
 *  the byte offset of the bad summary, or -ENOENT if there is none. */
int migr_model_bench_parse(const char *text, struct migr_model_bench *out);

/*! migr_model_bench_parse() of the file at path; -errno with the path in the
 *  message if it cannot be read. */
int migr_model_bench_load(const char *path, struct migr_model_bench *out);

/*! migr's live migration as a method (spare host, eq. 6 with downtime):
 *  D = mean downtime, period = n · mean total time (one VM after another),
 *  scaled by vm_ram/ram_bytes if vm_ram > 0; rate = gamma. 0 or -EINVAL. */
int migr_model_migr_live(const struct migr_model_params *p, const struct migr_model_measured *m,
                         double vm_ram, double gamma, struct migr_model_method *out);

/*! migr's same-host hand-over to a fresh VMM as a method (no spare host, no
 *  OS reboot): D = mean hand-over downtime, period = n · mean total time,
 *  rate = omega. 0 or -EINVAL. */
int migr_model_migr_handover(const struct migr_model_params *p, const struct migr_model_measured *m,
                             double omega, struct migr_model_method *out);

/*! migr's Warm-VM Reboot of one VMM process (migr rejuvenate --warm) as a
 *  method: D = mean warm downtime, period = n · mean total time, rate =
 *  omega. 0 or -EINVAL. */
int migr_model_migr_warm(const struct migr_model_params *p, const struct migr_model_measured *m, double omega,
                         struct migr_model_method *out);

/* ---- parsing of user input ---- */

/*! Parse a duration: a non-negative number with an optional unit ms, s, m
 *  (minutes), h, d (days); seconds without one. "28d" = 2419200. 0 or
 *  -EINVAL with a message quoting text. */
int migr_model_parse_time(const char *text, double *seconds);

/*! Parse a rate in [0, 1]. 0 or -EINVAL with a message quoting text. */
int migr_model_parse_rate(const char *text, double *rate);

#ifdef __cplusplus
}
#endif

#endif
