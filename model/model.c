/* model: the availability and throughput formulas of seed paper 002
 * (sections 3.1–3.3) and the paper's measured parameters (section 4).
 * docs/model.md explains every formula and every reading of the paper. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migr/common.h"
#include "migr/model.h"

#define DAY 86400.0

void migr_model_paper_params(struct migr_model_params *p, unsigned n)
{
    double per_vm = (double)n / MIGR_MODEL_PAPER_N;
    *p = (struct migr_model_params){
        .n = n,
        .t_vmm = 28 * DAY, .t_os = 7 * DAY,                 /* 4.3 */
        .d_os = 41, .delta = 0.35,                          /* 4.1 */
        /* 4.1: the others degrade while each OS reboots: (n−1)·D_os = 410 s at n = 11. */
        .r_os = (n > 0 ? n - 1 : 0) * 41.0,
        .d_w = 59 * per_vm, .omega = 0.61, .r_vmm = 25,     /* 4.1; 3.1: D_w(n) ∝ n */
        .d_c = 219, .omega_c = 0.72, .r_vmm_c = 397,        /* 4.1 */
        .d_m = 15, .gamma = 0.60,                           /* 4.2: D_m = M_t/n = 165/11 */
        /* 4.2: M_l for all n VMs; γ' of plain live migration is lost in the text:
         * 0.58 is Table 1's value (migr_model_table1_gamma(1) = 0.576). */
        .m_l = 181 * per_vm, .gamma_l = 0.58,
        .m_lrc = 950 * per_vm, .gamma_lrc = 0.23,
    };
}

static int bad_time(const char *what, double v, bool positive)
{
    if (!isfinite(v) || v < 0 || (positive && v == 0))
        return migr_errorf(EINVAL, "%s is %.9g s; must be %s", what, v, positive ? "> 0" : ">= 0");
    return 0;
}

static int bad_rate(const char *what, double v)
{
    if (!(v >= 0 && v <= 1))
        return migr_errorf(EINVAL, "%s is %g; a rate must be in [0, 1]", what, v);
    return 0;
}

static int too_long(const char *what, double v, const char *limit_name, double limit, bool strict)
{
    if (strict ? v >= limit : v > limit)
        return migr_errorf(EINVAL, "%s (%.9g s) must be %s %s (%.9g s)", what, v,
                           strict ? "shorter than" : "at most", limit_name, limit);
    return 0;
}

int migr_model_check(const struct migr_model_params *p)
{
    int rc;
    if (p->n < 1 || p->n > 1000000)
        return migr_errorf(EINVAL, "n (--vms) is %u; must be 1..1000000", p->n);
    const struct { const char *what; double v; bool positive; } times[] = {
        {"T_vmm (--t-vmm)", p->t_vmm, true}, {"T_os (--t-os)", p->t_os, true},
        {"D_os (--d-os)", p->d_os, false}, {"R_os (--r-os)", p->r_os, false},
        {"D_w (--d-warm)", p->d_w, false}, {"R_vmm (--r-warm)", p->r_vmm, false},
        {"D_c (--d-cold)", p->d_c, false}, {"R'_vmm (--r-cold)", p->r_vmm_c, false},
        {"D_m (--d-mig)", p->d_m, false}, {"M_l (--m-live)", p->m_l, false},
        {"M_l with rate control (--m-live-rc)", p->m_lrc, false},
    };
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(times); i++)
        if ((rc = bad_time(times[i].what, times[i].v, times[i].positive)) < 0)
            return rc;
    const struct { const char *what; double v; } rates[] = {
        {"delta (--delta)", p->delta}, {"omega (--omega)", p->omega}, {"omega' (--omega-cold)", p->omega_c},
        {"gamma (--gamma)", p->gamma}, {"gamma' (--gamma-live)", p->gamma_l},
        {"gamma' with rate control (--gamma-live-rc)", p->gamma_lrc},
    };
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(rates); i++)
        if ((rc = bad_rate(rates[i].what, rates[i].v)) < 0)
            return rc;
    if ((rc = too_long("D_os (--d-os)", p->d_os, "T_os (--t-os)", p->t_os, true)) < 0 ||
        (rc = too_long("R_os (--r-os)", p->r_os, "T_os (--t-os)", p->t_os, false)) < 0 ||
        (rc = too_long("D_w (--d-warm)", p->d_w, "T_vmm (--t-vmm)", p->t_vmm, true)) < 0 ||
        (rc = too_long("R_vmm (--r-warm)", p->r_vmm, "T_vmm (--t-vmm)", p->t_vmm, false)) < 0 ||
        (rc = too_long("D_c (--d-cold)", p->d_c, "T_vmm (--t-vmm)", p->t_vmm, true)) < 0 ||
        (rc = too_long("R'_vmm (--r-cold)", p->r_vmm_c, "T_vmm (--t-vmm)", p->t_vmm, false)) < 0 ||
        (rc = too_long("n·D_m (--vms × --d-mig)", p->n * p->d_m, "T_vmm (--t-vmm)", p->t_vmm, true)) < 0 ||
        (rc = too_long("M_l (--m-live)", p->m_l, "T_vmm (--t-vmm)", p->t_vmm, true)) < 0 ||
        (rc = too_long("M_l with rate control (--m-live-rc)", p->m_lrc, "T_vmm (--t-vmm)", p->t_vmm, true)) < 0)
        return rc;
    return 0;
}

static struct migr_model_method method(const char *name, const char *label, const char *eq, double down,
                                       double rate, double period, bool resets_os, bool spare)
{
    struct migr_model_method m = {.down = down, .rate = rate, .period = period, .resets_os = resets_os,
                                  .spare = spare};
    snprintf(m.name, sizeof(m.name), "%s", name);
    snprintf(m.label, sizeof(m.label), "%s", label);
    snprintf(m.eq, sizeof(m.eq), "%s", eq);
    return m;
}

int migr_model_paper_methods(const struct migr_model_params *p, struct migr_model_method *out)
{
    int rc = migr_model_check(p);
    if (rc < 0)
        return rc;
    out[0] = method("warm", "Warm-VM Reboot", "(2)", p->d_w, p->omega, p->r_vmm, false, false);
    out[1] = method("cold", "Cold-VM Reboot", "(4)", p->d_c, p->omega_c, p->r_vmm_c, true, false);
    /* 3.3.1: the VMs move one at a time; while one moves the other n−1 are degraded. */
    out[2] = method("migrate", "migration (stop-and-copy)", "(5)", p->d_m, p->gamma, (p->n - 1) * p->d_m,
                    false, true);
    /* 3.3.2: no downtime of its own; the degraded period is the whole M_l. */
    out[3] = method("live", "live migration", "(6)", 0, p->gamma_l, p->m_l, false, true);
    out[4] = method("live-rc", "live migration, rate control", "(6)", 0, p->gamma_lrc, p->m_lrc, false, true);
    return MIGR_MODEL_PAPER_METHODS;
}

int migr_model_eval(const struct migr_model_params *p, const struct migr_model_method *x,
                    struct migr_model_eval *out)
{
    int rc = migr_model_check(p);
    if (rc < 0)
        return rc;
    if (!isfinite(x->down) || x->down < 0 || x->down >= p->t_vmm)
        return migr_errorf(EINVAL, "%s: downtime %g s must be >= 0 and shorter than T_vmm (%g s)", x->name,
                           x->down, p->t_vmm);
    if (!(x->rate >= 0 && x->rate <= 1))
        return migr_errorf(EINVAL, "%s: degradation rate %g; a rate must be in [0, 1]", x->name, x->rate);
    if (!isfinite(x->period) || x->period < 0 || x->period > p->t_vmm)
        return migr_errorf(EINVAL, "%s: degraded period %g s must be >= 0 and at most T_vmm (%g s)", x->name,
                           x->period, p->t_vmm);
    double n_os = (p->t_vmm - x->down) / p->t_os;
    if (x->resets_os) {
        /* 3.2: the reboot resets the OS timer, so exactly ⌊N_c⌋ OS rejuvenations
         * happen, and none when T_vmm ≤ T_os (Fig. 2 (b)) even if D_c = 0. The
         * 1e-12 keeps 0.3/0.1 = 2.9999999999999996 from flooring to 2. */
        n_os = p->t_vmm <= p->t_os ? 0 : floor(n_os * (1 + 1e-12));
    }
    out->n_os = n_os;
    out->avail = 1 - (x->down + n_os * p->d_os) / p->t_vmm;
    out->degr = (x->rate * x->period + n_os * p->delta * p->r_os) / p->t_vmm;
    out->factor = out->avail - out->degr;
    out->spare = x->spare;
    if (out->factor < 0)
        return migr_errorf(EINVAL, "%s: downtime and degradation (%.0f s) exceed T_vmm (%g s)", x->name,
                           (1 - out->factor) * p->t_vmm, p->t_vmm);
    return 0;
}

double migr_model_index(const struct migr_model_eval *e, double m)
{
    return e->spare ? e->factor * (m - 1) / m : e->factor;
}

#define CROSSOVER_MAX 1e15

int migr_model_crossover(const struct migr_model_eval *x, const struct migr_model_eval *base, uint64_t *m)
{
    double fx = x->factor, fb = base->factor;
    if (x->spare == base->spare) {
        /* Same shape: one is ahead everywhere (both spare: tied at 0 for m = 1). */
        if (fx <= fb)
            return 0;
        *m = x->spare ? 2 : 1;
        return 1;
    }
    if (!x->spare) {
        /* base rises towards fb from 0; x is flat. */
        if (fx < fb || fx <= 0)
            return 0;
        *m = 1;
        return 1;
    }
    /* x rises towards fx: fx·(m−1)/m > fb ⇔ m > fx/(fx − fb). */
    if (fx <= fb)
        return 0;
    double lim = fx / (fx - fb);
    if (lim >= CROSSOVER_MAX)
        return 0;
    uint64_t c = (uint64_t)floor(lim) + 1;
    /* Rounding at the boundary: settle on the exact first winner. */
    while (c > 1 && migr_model_index(x, (double)(c - 1)) > fb)
        c--;
    while (migr_model_index(x, (double)c) <= fb)
        c++;
    *m = c;
    return 1;
}

int migr_model_table1_gamma(int which, double *gamma)
{
    if (which < 0 || which > 2)
        return migr_errorf(EINVAL, "Table 1 has no row %d (0 migrate, 1 live, 2 live with rate control)", which);
    const double p = 560, n = MIGR_MODEL_PAPER_N;
    double mt = 0, vc = 0;
    for (int i = 1; i <= (int)n; i++) {
        double vs, vm = 0, vd, mi;
        if (which == 0) {
            vs = 4.4 * i + 21;
            vd = i <= 2 ? 22 : exp(-0.71 * i + 5.7);
            mi = 0.61 * i + 12;
        } else if (which == 1) {
            vs = 4.2 * i + 19;
            vm = 3.9 * i + 19;
            vd = i <= 2 ? 19 : exp(-0.57 * i + 5.2);
            mi = 0.57 * i + 13;
        } else {
            vs = i < 6 ? 50 : 34;
            vm = i < 6 ? 48 : 29;
            vd = i < 5 ? 48 : 30;
            mi = -0.55 * i + 89;
        }
        mt += mi;
        vc += mi * ((n - i) * vs + vm + (i - 1) * vd);
    }
    vc /= mt;
    /* Stop-and-copy: the moving VM is down, so at most (n−1)/n·p is possible. */
    *gamma = which == 0 ? 1 - vc / ((n - 1) / n * p) : 1 - vc / p;
    return 0;
}

int migr_model_migr_live(const struct migr_model_params *p, const struct migr_model_measured *m,
                         double vm_ram, double gamma, struct migr_model_method *out)
{
    if (m->count == 0)
        return migr_errorf(EINVAL, "no successful live-migration (precopy) summaries");
    double scale = 1;
    if (vm_ram > 0) {
        if (!(m->ram_bytes > 0))
            return migr_errorf(EINVAL, "the precopy summaries carry no ram_bytes; cannot scale to a VM size");
        scale = vm_ram / m->ram_bytes;
    }
    /* Transfer time grows with the RAM copied; the downtime depends on the
     * dirty rate and the link, not on the RAM size, so it is not scaled. */
    *out = method("migr-live", "migr live migration", "", m->downtime_ms / 1e3, gamma,
                  p->n * m->total_ms / 1e3 * scale, false, true);
    return 0;
}

int migr_model_migr_handover(const struct migr_model_params *p, const struct migr_model_measured *m,
                             double omega, struct migr_model_method *out)
{
    if (m->count == 0)
        return migr_errorf(EINVAL, "no successful hand-over summaries");
    *out = method("migr-handover", "migr hand-over to a fresh VMM", "", m->downtime_ms / 1e3, omega,
                  p->n * m->total_ms / 1e3, false, false);
    return 0;
}

int migr_model_migr_warm(const struct migr_model_params *p, const struct migr_model_measured *m, double omega,
                         struct migr_model_method *out)
{
    if (m->count == 0)
        return migr_errorf(EINVAL, "no successful warm-reboot summaries");
    *out = method("migr-warm", "migr warm VMM reboot", "", m->downtime_ms / 1e3, omega, p->n * m->total_ms / 1e3,
                  false, false);
    return 0;
}

int migr_model_parse_time(const char *text, double *seconds)
{
    static const struct { const char *unit; double s; } units[] = {
        {"", 1}, {"s", 1}, {"ms", 1e-3}, {"m", 60}, {"min", 60}, {"h", 3600}, {"d", DAY},
    };
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno || !isfinite(v))
        return migr_errorf(EINVAL, "'%s' is not a time (examples: 41, 41s, 500ms, 12h, 28d)", text);
    if (v < 0)
        return migr_errorf(EINVAL, "'%s': a time cannot be negative", text);
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(units); i++)
        if (strcmp(end, units[i].unit) == 0) {
            *seconds = v * units[i].s;
            return 0;
        }
    return migr_errorf(EINVAL, "'%s': unknown time unit '%s' (ms, s, m, h, d)", text, end);
}

int migr_model_parse_rate(const char *text, double *rate)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || isnan(v))
        return migr_errorf(EINVAL, "'%s' is not a number (a rate in [0, 1], e.g. 0.35)", text);
    if (!(v >= 0 && v <= 1))
        return migr_errorf(EINVAL, "'%s': a rate must be in [0, 1]", text);
    *rate = v;
    return 0;
}
