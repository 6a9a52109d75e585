/* model: the formulas of seed paper 002 (eq. 1–6) against values worked out
 * by hand below, the paper's conclusions (section 4.3) with its parameters,
 * the edge cases T_vmm ≤ T_os, m = 1 and n = 1, the Table 1 γ values,
 * validation of impossible parameters, and reading migr's JSON summaries.
 *
 * Units: seconds. T_vmm = 28 d = 2419200 s, T_os = 7 d = 604800 s.
 * Each OS rejuvenation costs D_os + δ·R_os = 41 + 0.35·410 = 41 + 143.5 =
 * 184.5 s of "lost seconds" per T_vmm; a method's loss in seconds is
 * D + rate·period + 184.5·N, and its factor is 1 − loss/T_vmm. */
#include <math.h>

#include "migr/model.h"
#include "testlib.h"

#define T_VMM 2419200.0
#define T_OS 604800.0

#define T_NEAR(a, b, eps) do { double a_ = (a), b_ = (b); \
        if (!(fabs(a_ - b_) <= (eps))) T_FAIL("%s = %.12g, expected %s = %.12g", #a, a_, #b, b_); } while (0)

enum { WARM, COLD, MIGRATE, LIVE, LIVE_RC };

static void eval_all(const struct migr_model_params *p, struct migr_model_eval *ev)
{
    struct migr_model_method m[MIGR_MODEL_PAPER_METHODS];
    T_EQ(migr_model_paper_methods(p, m), MIGR_MODEL_PAPER_METHODS);
    for (int i = 0; i < MIGR_MODEL_PAPER_METHODS; i++)
        T_OK(migr_model_eval(p, &m[i], &ev[i]));
}

static void test_paper_params(void)
{
    struct migr_model_params p;
    migr_model_paper_params(&p, 11);
    T_NEAR(p.t_vmm, T_VMM, 0);
    T_NEAR(p.t_os, T_OS, 0);
    T_NEAR(p.d_w, 59, 1e-12);
    T_NEAR(p.d_c, 219, 0);
    T_NEAR(p.r_os, 410, 0);         /* (n−1)·D_os = 10·41 */
    T_NEAR(p.m_l, 181, 1e-12);
    T_NEAR(p.m_lrc, 950, 1e-12);
    T_NEAR(p.d_m * 11, 165, 1e-12); /* D_m = M_t/n */
    T_OK(migr_model_check(&p));
}

/* The four formulas with the paper's parameters (n = 11). */
static void test_formulas(void)
{
    struct migr_model_params p;
    struct migr_model_eval ev[MIGR_MODEL_PAPER_METHODS];
    migr_model_paper_params(&p, 11);
    eval_all(&p, ev);

    /* (1)(2) Warm-VM Reboot: N_w = (2419200 − 59)/604800 = 4 − 59/604800 = 3.99990244709
     * A_w = 1 − (59 + 41·N_w)/T_vmm = 1 − (59 + 163.99600033)/2419200 = 1 − 222.99600033/2419200
     * loss = 59 + 0.61·25 + 184.5·N_w = 74.25 + 737.98200149 = 812.23200149
     * factor = 1 − 812.23200149/2419200 = 0.999664255952 */
    T_NEAR(ev[WARM].n_os, 3.99990244709, 1e-10);
    T_NEAR(ev[WARM].avail, 1 - 222.99600033 / T_VMM, 1e-11);
    T_NEAR(ev[WARM].factor, 0.999664255952, 1e-11);
    T_ASSERT(!ev[WARM].spare);

    /* (3)(4) Cold-VM Reboot: N_c = (2419200 − 219)/604800 = 3.99964, ⌊N_c⌋ = 3
     * A_c = 1 − (219 + 3·41)/T_vmm = 1 − 342/2419200
     * loss = 219 + 123 + 0.72·397 + 3·143.5 = 219 + 123 + 285.84 + 430.5 = 1058.34
     * factor = 1 − 1058.34/2419200 = 0.999562524802 */
    T_NEAR(ev[COLD].n_os, 3, 0);
    T_NEAR(ev[COLD].avail, 1 - 342 / T_VMM, 1e-12);
    T_NEAR(ev[COLD].factor, 0.999562524802, 1e-11);

    /* (5) migration: N_m = (2419200 − 15)/604800 = 3.99997519841; degraded (n−1)·D_m = 150 s
     * loss = 15 + 0.6·150 + 184.5·N_m = 105 + 737.99542411 = 842.99542411
     * factor = 1 − 842.99542411/2419200 = 0.999651539590, times (m−1)/m */
    T_NEAR(ev[MIGRATE].n_os, 3.99997519841, 1e-10);
    T_NEAR(ev[MIGRATE].factor, 0.999651539590, 1e-11);
    T_ASSERT(ev[MIGRATE].spare);
    /* m = 100: 0.999651539590·99/100 = 0.989655024194 */
    T_NEAR(migr_model_index(&ev[MIGRATE], 100), 0.989655024194, 1e-11);

    /* (6) live migration: N_l = 2419200/604800 = 4, A_l = 1 − 164/2419200
     * loss = 4·41 + 0.58·181 + 4·143.5 = 164 + 104.98 + 574 = 842.98 → 0.999651545966
     * with rate control: 164 + 0.23·950 + 574 = 956.5 → 0.999604621362 */
    T_NEAR(ev[LIVE].n_os, 4, 0);
    T_NEAR(ev[LIVE].avail, 1 - 164 / T_VMM, 1e-12);
    T_NEAR(ev[LIVE].factor, 0.999651545966, 1e-11);
    T_NEAR(ev[LIVE_RC].factor, 0.999604621362, 1e-11);
}

/* Section 4.3: Warm-VM Reboot best everywhere; migration beats cold reboot
 * only beyond about 11,000 hosts. */
static void test_paper_conclusions(void)
{
    struct migr_model_params p;
    struct migr_model_eval ev[MIGR_MODEL_PAPER_METHODS];
    migr_model_paper_params(&p, 11);
    eval_all(&p, ev);
    uint64_t m;
    /* f_m·(m−1)/m > f_c ⇔ m > f_m/(f_m − f_c) = 0.999651539590·2419200/(1058.34 − 842.99542411)
     *                                        = 2418357.0/215.34457589 = 11230.17 → 11231 */
    T_EQ(migr_model_crossover(&ev[MIGRATE], &ev[COLD], &m), 1);
    T_EQ(m, 11231);
    /* live: 0.999651545966·2419200/(1058.34 − 842.98) = 2418357.0/215.36 = 11229.37 → 11230 */
    T_EQ(migr_model_crossover(&ev[LIVE], &ev[COLD], &m), 1);
    T_EQ(m, 11230);
    /* live-rc: 0.999604621362·2419200/(1058.34 − 956.5) = 2418243.5/101.84 = 23745.5 → 23746 */
    T_EQ(migr_model_crossover(&ev[LIVE_RC], &ev[COLD], &m), 1);
    T_EQ(m, 23746);
    /* The crossover is exact: one host fewer and cold reboot is still ahead. */
    T_ASSERT(migr_model_index(&ev[LIVE], 11229) <= ev[COLD].factor);
    T_ASSERT(migr_model_index(&ev[LIVE], 11230) > ev[COLD].factor);
    for (int i = COLD; i <= LIVE_RC; i++)
        T_EQ(migr_model_crossover(&ev[i], &ev[WARM], &m), 0);
    for (double hosts = 1; hosts <= 1e9; hosts *= 1.5)
        for (int i = COLD; i <= LIVE_RC; i++)
            if (migr_model_index(&ev[i], hosts) >= migr_model_index(&ev[WARM], hosts))
                T_FAIL("method %d beats Warm-VM Reboot at m = %.0f", i, hosts);
}

/* T_vmm ≤ T_os: T_vmm = 7 d = 604800 s, T_os = 14 d = 1209600 s. */
static void test_tvmm_le_tos(void)
{
    struct migr_model_params p;
    struct migr_model_eval ev[MIGR_MODEL_PAPER_METHODS];
    migr_model_paper_params(&p, 11);
    p.t_vmm = 604800;
    p.t_os = 1209600;
    eval_all(&p, ev);
    /* Warm: N_w = (604800 − 59)/1209600 = 0.499951223545 (an average: every other T_vmm)
     * loss = 59 + 15.25 + 184.5·0.499951223545 = 74.25 + 92.24100074 = 166.49100074 */
    T_NEAR(ev[WARM].n_os, 0.499951223545, 1e-11);
    T_NEAR(ev[WARM].factor, 1 - 166.49100074 / 604800, 1e-11);
    /* Cold: the reboot always comes first, ⌊N_c⌋ = 0; loss = 219 + 285.84 = 504.84 */
    T_NEAR(ev[COLD].n_os, 0, 0);
    T_NEAR(ev[COLD].factor, 1 - 504.84 / 604800, 1e-12);
    /* T_vmm = T_os and D_c = 0: (T − 0)/T_os = 1 would floor to 1, but the paper's
     * rule for T_vmm ≤ T_os (Fig. 2 (b)) gives 0. */
    p.t_os = p.t_vmm;
    p.d_c = 0;
    eval_all(&p, ev);
    T_NEAR(ev[COLD].n_os, 0, 0);
    /* ... and just above T_os it is 1: T_vmm = 2·T_os − 1 s, D_c = 0 → ⌊(2·604800 − 1)/604800⌋ = 1 */
    p.t_vmm = 2 * 604800.0 - 1;
    eval_all(&p, ev);
    T_NEAR(ev[COLD].n_os, 1, 0);
    /* floor must not be fooled by binary fractions: 0.3/0.1 = 2.9999999999999996 → 3 */
    p.t_vmm = 0.3;
    p.t_os = 0.1;
    p.d_c = p.d_w = p.d_m = p.d_os = 0;
    p.r_vmm = p.r_vmm_c = p.r_os = p.m_l = p.m_lrc = 0;
    eval_all(&p, ev);
    T_NEAR(ev[COLD].n_os, 3, 0);
}

/* m = 1: a spare-host method has no host left to serve. */
static void test_one_host(void)
{
    struct migr_model_params p;
    struct migr_model_eval ev[MIGR_MODEL_PAPER_METHODS];
    migr_model_paper_params(&p, 11);
    eval_all(&p, ev);
    T_NEAR(migr_model_index(&ev[MIGRATE], 1), 0, 0);
    T_NEAR(migr_model_index(&ev[LIVE], 1), 0, 0);
    T_NEAR(migr_model_index(&ev[WARM], 1), 0.999664255952, 1e-11);
    /* m = 2: half the hosts serve: 0.999651545966/2 = 0.499825772983 */
    T_NEAR(migr_model_index(&ev[LIVE], 2), 0.499825772983, 1e-11);
    /* Two spare-host methods tie at m = 1; the better one wins from m = 2. */
    uint64_t m;
    T_EQ(migr_model_crossover(&ev[LIVE], &ev[LIVE_RC], &m), 1);
    T_EQ(m, 2);
    T_EQ(migr_model_crossover(&ev[LIVE_RC], &ev[LIVE], &m), 0);
    /* A no-spare method ahead of a spare one's limit wins from m = 1. */
    T_EQ(migr_model_crossover(&ev[WARM], &ev[LIVE], &m), 1);
    T_EQ(m, 1);
}

/* n = 1: one VM per host; nothing else on the host to degrade. */
static void test_one_vm(void)
{
    struct migr_model_params p;
    struct migr_model_eval ev[MIGR_MODEL_PAPER_METHODS];
    migr_model_paper_params(&p, 1);
    /* D_w(1) = 59/11 = 5.363636 s, R_os = 0·41 = 0, M_l = 181/11 = 16.454545 s */
    T_NEAR(p.d_w, 59.0 / 11, 1e-12);
    T_NEAR(p.r_os, 0, 0);
    T_NEAR(p.m_l, 181.0 / 11, 1e-12);
    eval_all(&p, ev);
    /* Warm: N_w = (2419200 − 5.363636)/604800 = 3.99999113155
     *       loss = 5.36363636 + 41·3.99999113155 + 0.61·25 = 5.36363636 + 163.99963639 + 15.25 = 184.61327276 */
    T_NEAR(ev[WARM].factor, 1 - 184.61327276 / T_VMM, 1e-11);
    /* Cold: loss = 219 + 3·41 + 285.84 + 3·0.35·0 = 627.84 */
    T_NEAR(ev[COLD].factor, 1 - 627.84 / T_VMM, 1e-12);
    /* Migrate: (n−1)·D_m = 0, so γ does not matter: loss = 15 + 41·3.99997519841 = 178.99898313 */
    T_NEAR(ev[MIGRATE].factor, 1 - 178.99898313 / T_VMM, 1e-11);
    /* Live: loss = 164 + 0.58·16.454545 = 164 + 9.54363636 = 173.54363636 */
    T_NEAR(ev[LIVE].factor, 1 - 173.54363636 / T_VMM, 1e-11);
}

/* γ and γ' from Table 1 (n = 11, p = 560): the paper says γ = 0.60 and, with
 * rate control, γ' = 0.23; plain live migration's γ' is lost in the text. */
static void test_table1(void)
{
    double g;
    /* Σ M(i) = 0.61·66 + 12·11 = 172.26; V_c = 202.455; γ = 1 − 202.455/(10/11·560) = 0.6023 */
    T_OK(migr_model_table1_gamma(0, &g));
    T_NEAR(g, 0.6023, 5e-4);
    /* Σ M(i) = 0.57·66 + 13·11 = 180.62; V_c' = 237.585; γ' = 1 − 237.585/560 = 0.5757 */
    T_OK(migr_model_table1_gamma(1, &g));
    T_NEAR(g, 0.5757, 5e-4);
    /* Σ M(i) = −0.55·66 + 89·11 = 942.7; V_c' = 427.441; γ' = 1 − 427.441/560 = 0.2367 (paper: 0.23) */
    T_OK(migr_model_table1_gamma(2, &g));
    T_NEAR(g, 0.2367, 5e-4);
    T_EQ(migr_model_table1_gamma(3, &g), -EINVAL);
}

#define EXPECT_BAD(field, value, what) do { \
        struct migr_model_params q_; migr_model_paper_params(&q_, 11); q_.field = value; \
        T_EQ(migr_model_check(&q_), -EINVAL); \
        if (!strstr(migr_last_error(), what)) T_FAIL("message '%s' does not name %s", migr_last_error(), what); \
    } while (0)

static void test_validation(void)
{
    EXPECT_BAD(t_vmm, 0, "T_vmm");
    EXPECT_BAD(t_os, -1, "T_os");
    EXPECT_BAD(d_w, -1, "D_w");
    EXPECT_BAD(r_os, -410, "R_os");
    EXPECT_BAD(d_c, NAN, "D_c");
    EXPECT_BAD(delta, 1.5, "delta");
    EXPECT_BAD(omega, -0.01, "omega");
    EXPECT_BAD(gamma, 2, "gamma");
    EXPECT_BAD(gamma_lrc, NAN, "gamma'");
    EXPECT_BAD(d_os, T_OS, "D_os");            /* the OS would never be up */
    EXPECT_BAD(d_c, T_VMM, "D_c");
    EXPECT_BAD(d_m, T_VMM / 11, "D_m");        /* n·D_m = T_vmm */
    EXPECT_BAD(m_l, T_VMM + 1, "M_l");
    EXPECT_BAD(n, 0, "--vms");
    /* A possible parameter set whose losses exceed the interval. */
    struct migr_model_params p;
    struct migr_model_eval e;
    migr_model_paper_params(&p, 11);
    struct migr_model_method x = {.name = "x", .down = T_VMM * 0.6, .rate = 1, .period = T_VMM * 0.6};
    T_EQ(migr_model_eval(&p, &x, &e), -EINVAL);
    x = (struct migr_model_method){.name = "x", .down = 1, .rate = 1.2, .period = 1};
    T_EQ(migr_model_eval(&p, &x, &e), -EINVAL);

    double v;
    T_OK(migr_model_parse_time("28d", &v));
    T_NEAR(v, T_VMM, 0);
    T_OK(migr_model_parse_time("500ms", &v));
    T_NEAR(v, 0.5, 1e-15);
    T_OK(migr_model_parse_time("1.5h", &v));
    T_NEAR(v, 5400, 0);
    T_OK(migr_model_parse_time("41", &v));
    T_NEAR(v, 41, 0);
    T_EQ(migr_model_parse_time("-5", &v), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "negative"));
    T_EQ(migr_model_parse_time("5x", &v), -EINVAL);
    T_EQ(migr_model_parse_time("", &v), -EINVAL);
    T_EQ(migr_model_parse_time("inf", &v), -EINVAL);
    T_OK(migr_model_parse_rate("0.35", &v));
    T_NEAR(v, 0.35, 0);
    T_OK(migr_model_parse_rate("0", &v));
    T_OK(migr_model_parse_rate("1", &v));
    T_EQ(migr_model_parse_rate("1.01", &v), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "[0, 1]"));
    T_EQ(migr_model_parse_rate("-0.1", &v), -EINVAL);
    T_EQ(migr_model_parse_rate("nan", &v), -EINVAL);
    T_EQ(migr_model_parse_rate("0.5s", &v), -EINVAL);
}

static void test_bench(void)
{
    static const char text[] =
        "{\"mode\":\"precopy\",\"transport\":\"unix\",\"ok\":true,\"error\":\"\",\"total_ms\":1000.0,"
        "\"downtime_ms\":10.0,\"ram_bytes\":1073741824,\"round_stats\":[{\"round\":1,\"ms\":5}]}\n"
        "{\"mode\":\"precopy\",\"ok\":true,\"total_ms\":3000.0,\"downtime_ms\":30.0,\"ram_bytes\":1073741824}\n"
        "{\"mode\":\"precopy\",\"ok\":false,\"error\":\"peer \\\"gone\\\"\",\"total_ms\":99,\"downtime_ms\":99}\n"
        "{\"runs\":[{\"send\":{\"mode\":\"handover\",\"ok\":true,\"total_ms\":4.0,\"downtime_ms\":1.5,"
        "\"ram_bytes\":268435456},\"recv\":{\"mode\":\"handover\",\"ok\":true,\"total_ms\":50,\"downtime_ms\":50}}]}\n";
    struct migr_model_bench b;
    T_EQ(migr_model_bench_parse(text, &b), 3);
    /* precopy: means of (10, 30) ms and (1000, 3000) ms; the failed one is left out */
    T_EQ(b.precopy.count, 2);
    T_NEAR(b.precopy.downtime_ms, 20, 1e-12);
    T_NEAR(b.precopy.total_ms, 2000, 1e-9);
    T_NEAR(b.precopy.ram_bytes, 1073741824, 1e-3);
    T_EQ(b.handover.count, 1);
    T_NEAR(b.handover.downtime_ms, 1.5, 0);
    T_EQ(b.failed, 1);
    T_EQ(b.skipped, 1);

    struct migr_model_params p;
    struct migr_model_method m;
    struct migr_model_eval e, warm;
    migr_model_paper_params(&p, 11);
    struct migr_model_method pm[MIGR_MODEL_PAPER_METHODS];
    T_EQ(migr_model_paper_methods(&p, pm), MIGR_MODEL_PAPER_METHODS);
    T_OK(migr_model_eval(&p, &pm[WARM], &warm));

    /* migr live, scaled to 512 MiB VMs: per VM 2.0 s · 0.5 = 1.0 s, all 11: period 11 s; D = 0.02 s
     * N = (2419200 − 0.02)/604800 = 3.99999996693
     * loss = 0.02 + 0.58·11 + 184.5·N = 0.02 + 6.38 + 737.99999390 = 744.39999390 */
    T_OK(migr_model_migr_live(&p, &b.precopy, 512.0 * 1048576, 0.58, &m));
    T_NEAR(m.down, 0.02, 1e-15);
    T_NEAR(m.period, 11, 1e-12);
    T_ASSERT(m.spare && !m.resets_os);
    T_OK(migr_model_eval(&p, &m, &e));
    T_NEAR(e.factor, 1 - 744.39999390 / T_VMM, 1e-11);
    /* beats Warm-VM Reboot from m > f/(f − f_w) = (2419200 − 744.4)/(812.23200149 − 744.39999390)
     *                                          = 2418455.6/67.83200759 = 35653.5 → 35654 */
    uint64_t cross;
    T_EQ(migr_model_crossover(&e, &warm, &cross), 1);
    T_EQ(cross, 35654);

    /* hand-over: D = 0.0015 s, period 11·0.004 s, ω_h = 0, no spare host
     * loss = 0.0015 + 184.5·(2419200 − 0.0015)/604800 = 0.0015 + 737.99999954 = 738.00149954 */
    T_OK(migr_model_migr_handover(&p, &b.handover, 0, &m));
    T_ASSERT(!m.spare);
    T_OK(migr_model_eval(&p, &m, &e));
    T_NEAR(e.factor, 1 - 738.00149954 / T_VMM, 1e-11);
    T_EQ(migr_model_crossover(&e, &warm, &cross), 1);
    T_EQ(cross, 1);

    /* No summaries, a bad one, an unknown mode, scaling without ram_bytes. */
    T_EQ(migr_model_bench_parse("{\"ok\":true}", &b), -ENOENT);
    T_EQ(migr_model_bench_parse("{\"mode\":\"precopy\",\"ok\":false}", &b), -ENOENT);
    T_EQ(migr_model_bench_parse("{\"mode\":\"precopy\",\"ok\":true,\"total_ms\":5}", &b), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "downtime_ms"));
    T_EQ(migr_model_bench_parse("{\"mode\":\"precopy\",\"total_ms\":5,\"downtime_ms\":-1}", &b), -EINVAL);
    /* post-copy summaries are left out (no such method in the model), an unknown mode is refused */
    T_EQ(migr_model_bench_parse("{\"mode\":\"postcopy\",\"total_ms\":5,\"downtime_ms\":1}", &b), -ENOENT);
    T_EQ(migr_model_bench_parse("{\"mode\":\"teleport\",\"total_ms\":5,\"downtime_ms\":1}", &b), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "teleport"));
    /* warm reboot summaries (migr rejuvenate --warm --json) */
    T_EQ(migr_model_bench_parse("{\"mode\":\"warm\",\"ok\":true,\"total_ms\":40,\"downtime_ms\":30,"
                                "\"ram_bytes\":268435456}\n{\"mode\":\"cpostcopy\",\"ok\":true,\"total_ms\":1,"
                                "\"downtime_ms\":1}", &b), 1);
    T_EQ(b.warm.count, 1);
    T_EQ(b.skipped, 1);
    T_OK(migr_model_migr_warm(&p, &b.warm, 0, &m));
    T_NEAR(m.down, 0.03, 1e-15);
    T_NEAR(m.period, 11 * 0.04, 1e-12);
    T_ASSERT(!m.spare && !m.resets_os);
    T_EQ(migr_model_bench_parse("{\"mode\":\"precopy\",\"total_ms\":5", &b), -EINVAL);
    T_EQ(migr_model_bench_parse("{\"mode\":\"precopy\",\"total_ms\":5,\"downtime_ms\":1}", &b), 1);
    T_EQ(migr_model_migr_live(&p, &b.precopy, 1e9, 0.5, &m), -EINVAL);
    T_EQ(migr_model_bench_load("/nonexistent/bench.json", &b), -ENOENT);
    T_ASSERT(strstr(migr_last_error(), "/nonexistent/bench.json"));
}

int main(void)
{
    test_paper_params();
    test_formulas();
    test_paper_conclusions();
    test_tvmm_le_tos();
    test_one_host();
    test_one_vm();
    test_table1();
    test_validation();
    test_bench();
    return 0;
}
