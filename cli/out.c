/* CLI output: tiny JSON field reader (for our own flat summaries), the
 * progress bar, and the human-readable summary table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char *json_find(const char *json, const char *key)
{
    char pat[80];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? p + strlen(pat) : NULL;
}

bool json_get_num(const char *json, const char *key, double *out)
{
    const char *p = json_find(json, key);
    if (!p)
        return false;
    char *end;
    *out = strtod(p, &end);
    return end != p;
}

bool json_get_bool(const char *json, const char *key, bool *out)
{
    const char *p = json_find(json, key);
    if (!p)
        return false;
    *out = strncmp(p, "true", 4) == 0;
    return *out || strncmp(p, "false", 5) == 0;
}

bool json_get_str(const char *json, const char *key, char *out, size_t cap)
{
    const char *p = json_find(json, key);
    if (!p || *p != '"' || cap == 0)
        return false;
    size_t j = 0;
    for (p++; *p && *p != '"' && j + 1 < cap; p++) {
        if (*p == '\\' && p[1])
            p++;
        out[j++] = *p;
    }
    out[j] = 0;
    return true;
}

static bool bar_shown;

void cli_progress_line(void *arg, const char *line, int fd)
{
    (void)arg;
    if (!isatty(2))
        return;
    char phase[32];
    unsigned round;
    unsigned long long done, total, bytes;
    double secs;
    if (sscanf(line, "%31s %u %llu %llu %llu %lf", phase, &round, &done, &total, &bytes, &secs) != 6)
        return;
    int width = 30, fill = total ? (int)(done * (unsigned long long)width / total) : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r  %-13s round %-3u [%s] %5.1f%%  %8.1f MiB sent  %6.2f s ", phase, round, bar,
            total ? 100.0 * (double)done / (double)total : 100.0, (double)bytes / 1048576.0, secs);
    if (total && done == total && strcmp(phase, "switchover") != 0)
        fputc('\n', stderr);
    bar_shown = true;
}

void cli_progress_done(void)
{
    if (bar_shown && isatty(2))
        fputc('\n', stderr);
    bar_shown = false;
}

/* Pages per codec and what they saved, from a summary's "codecs" object. */
static void print_summary_codecs(FILE *f, const char *js)
{
    static const char *const names[] = {"raw", "zero", "xbzrle", "lz4", "zstd", "zlib"};
    const char *c = strstr(js, "\"codecs\":{");
    double before = 0, after = 0;
    if (!c || !json_get_num(js, "page_bytes_before", &before) || !json_get_num(js, "page_bytes_after", &after) ||
        before == 0)
        return;
    fprintf(f, "  %-22s", "pages by codec");
    bool first = true;
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        char key[32];
        snprintf(key, sizeof(key), "\"%s\":{", names[k]);
        const char *e = strstr(c, key);
        double pages = 0;
        if (!e || !json_get_num(e, "pages", &pages) || pages == 0)
            continue;
        fprintf(f, "%s%s %.0f", first ? "" : ", ", names[k], pages);
        first = false;
    }
    fputc('\n', f);
    double saved = 0;
    json_get_num(js, "bytes_saved", &saved);
    fprintf(f, "  %-22s%.1f MiB of pages sent as %.1f MiB (%.1fx smaller, %.1f MiB saved)\n", "compression",
            before / 1048576.0, after / 1048576.0, after > 0 ? before / after : 0.0, saved / 1048576.0);
}

void cli_print_summary(FILE *f, const char *js)
{
    double v;
    bool b, ok = json_get_bool(js, "ok", &b) && b;
    bool cancelled = json_get_bool(js, "cancelled", &b) && b;
    bool back = json_get_bool(js, "resumed_on_source", &b) && b;
    bool doubt = json_get_bool(js, "ownership_in_doubt", &b) && b;
    char s[600], mode[32] = "";
    json_get_str(js, "mode", mode, sizeof(mode));
    /* the reason of a failure is on stderr (once); here: where the guest is */
    fprintf(f, "  %-22s%s\n", "result",
            ok ? "migrated: the guest runs on the destination"
               : doubt ? "FAILED after the commit: the guest is kept paused on the source (see stderr)"
               : cancelled || back ? "not migrated: the guest runs on the source"
                                   : "FAILED (see stderr)");
    bool post = strstr(mode, "postcopy") != NULL, hybrid = strstr(mode, "hybrid") != NULL;
    static const struct { const char *wire, *words; } modes[] = {
        {"precopy", "pre-copy"}, {"handover", "hand-over (memory passed, not copied)"},
        {"cpostcopy", "post-copy (cancellable)"}, {"postcopy", "post-copy"},
        {"chybrid", "hybrid: pre-copy, then post-copy (cancellable)"}, {"hybrid", "hybrid: pre-copy, then post-copy"},
    };
    const char *words = mode;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (strcmp(mode, modes[i].wire) == 0)
            words = modes[i].words;
    fprintf(f, "  %-22s%s", "mode", words);
    if (json_get_str(js, "transport", s, sizeof(s)))
        fprintf(f, " over %s", s);
    if (json_get_str(js, "tracker", s, sizeof(s)) && s[0])
        fprintf(f, ", dirty tracker %s", s);
    fputc('\n', f);
    if (json_get_num(js, "ram_bytes", &v))
        fprintf(f, "  %-22s%.0f MiB\n", "guest RAM", v / 1048576.0);
    if (json_get_num(js, "total_ms", &v))
        fprintf(f, "  %-22s%.1f ms\n", "total time", v);
    if (ok && json_get_num(js, "downtime_ms", &v))
        fprintf(f, "  %-22s%.2f ms\n", "downtime", v);
    if (json_get_num(js, "rounds", &v) && !post && strcmp(mode, "handover") != 0 && (ok || v > 0)) {
        if (hybrid)
            fprintf(f, "  %-22s%.0f, then post-copy\n", "pre-copy rounds", v);
        else
            fprintf(f, "  %-22s%.0f (%s)\n", "pre-copy rounds", v,
                    json_get_bool(js, "converged", &b) && b ? "converged: the rest fit the downtime target"
                                                            : "did not converge: switched when rounds stopped shrinking");
    }
    if (json_get_num(js, "pages_sent", &v)) {
        double z = 0;
        json_get_num(js, "zero_pages", &z);
        fprintf(f, "  %-22s%.0f (%.0f zero)\n", "pages sent", v, z);
    }
    if (json_get_num(js, "bytes_sent", &v))
        fprintf(f, "  %-22s%.1f MiB\n", "bytes on the wire", v / 1048576.0);
    print_summary_codecs(f, js);
    double fp = 0;
    json_get_num(js, "first_pass_mbps", &fp);
    if (json_get_num(js, "throughput_mbps", &v)) {
        fprintf(f, "  %-22s%.1f MiB/s", "guest memory moved", v * 1e6 / 1048576.0);
        if (fp > 0)
            fprintf(f, " (first pass %.1f MiB/s)", fp * 1e6 / 1048576.0);
        fputc('\n', f);
    }
    if ((post || hybrid) && json_get_num(js, "postcopy_ms", &v) && ok) {
        double dem = 0, push = 0;
        json_get_num(js, "demand_pages", &dem);
        json_get_num(js, "pushed_pages", &push);
        fprintf(f, "  %-22s%.1f ms after the switchover (%.0f pages on demand, %.0f pushed)\n",
                "post-copy", v, dem, push);
    }
    if ((post || hybrid) && cancelled) {
        double ep = 0, bp = 0;
        json_get_num(js, "epochs", &ep);
        json_get_num(js, "back_pages", &bp);
        fprintf(f, "  %-22staken back from the destination's checkpoint %.0f (%.0f pages sent back)\n", "cancelled",
                ep, bp);
    }
    if (ok && json_get_bool(js, "verified", &b))
        fprintf(f, "  %-22s%s\n", "pages intact (CRC)", b ? "yes, every page" : "no");
}

static void fmt_rate(double bps, char *out, size_t cap)
{
    snprintf(out, cap, "%.1f MiB/s", bps / 1048576.0);
}

/* The codec mix of a status's progress object: "raw 1200, zero 3000, lz4 400 (52% smaller)". */
static void print_codecs(FILE *f, const char *js)
{
    static const char *const names[] = {"raw", "zero", "xbzrle", "lz4", "zstd", "zlib"};
    const char *c = strstr(js, "\"codecs\":{");
    if (!c)
        return;
    double pages_all = 0, bytes_all = 0;
    bool first = true;
    fprintf(f, "  %-20s", "pages by codec");
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        char key[32];
        snprintf(key, sizeof(key), "\"%s\":{", names[k]);
        const char *e = strstr(c, key);
        double pages = 0, bytes = 0;
        if (!e || !json_get_num(e, "pages", &pages) || !json_get_num(e, "bytes", &bytes) || pages == 0)
            continue;
        fprintf(f, "%s%s %.0f", first ? "" : ", ", names[k], pages);
        first = false;
        pages_all += pages;
        bytes_all += bytes;
    }
    if (first)
        fprintf(f, "none yet");
    else if (pages_all > 0)
        fprintf(f, " (%.1f MiB of pages as %.1f MiB on the wire)", pages_all * 4096 / 1048576.0, bytes_all / 1048576.0);
    fputc('\n', f);
}

void cli_print_status(FILE *f, const char *js)
{
    double pid = 0;
    bool b;
    char s[700], r1[32], r2[32];
    json_get_num(js, "pid", &pid);
    if (json_get_bool(js, "incoming", &b) && b && json_get_bool(js, "running", &b) && !b) {
        json_get_str(js, "phase", s, sizeof(s));
        fprintf(f, "VMM pid %.0f: no guest yet (%s)\n", pid, s[0] ? s : "starting");
    } else {
        double ram = 0, vcpus = 0, writes = 0;
        char backend[32] = "?";
        json_get_num(js, "ram_bytes", &ram);
        json_get_num(js, "vcpus", &vcpus);
        json_get_num(js, "writes", &writes);
        json_get_str(js, "backend", backend, sizeof(backend));
        bool failed = json_get_bool(js, "failed", &b) && b;
        bool running = json_get_bool(js, "running", &b) && b;
        fprintf(f, "VMM pid %.0f: guest %s (%.0f MiB, %.0f vCPU%s, %s backend), %.0f page writes so far\n", pid,
                failed ? "FAILED" : running ? "running" : "paused", ram / 1048576.0, vcpus, vcpus == 1 ? "" : "s",
                backend, writes);
        if (failed && json_get_str(js, "failure", s, sizeof(s)))
            fprintf(f, "  %-20s%s\n", "failure", s);
        if (json_get_str(js, "ownership", s, sizeof(s)))
            fprintf(f, "  %-20s%s\n", "ownership", s);
    }
    const char *p = strstr(js, "\"progress\":{");
    if (!p) {
        if (json_get_bool(js, "migrating", &b) && b)
            fprintf(f, "  migration starting (connecting)\n");
        return;
    }
    json_get_str(p, "side", s, sizeof(s));
    if (strcmp(s, "destination") == 0) {
        double bytes = 0, el = 0, rate = 0;
        json_get_num(p, "bytes_received", &bytes);
        json_get_num(p, "elapsed_s", &el);
        json_get_num(p, "transfer_rate", &rate);
        fmt_rate(rate, r1, sizeof(r1));
        fprintf(f, "  receiving a guest: %.1f MiB in %.1f s (%s)\n", bytes / 1048576.0, el, r1);
        return;
    }
    double round = 0, done = 0, total = 0, left = 0, sent = 0, ram = 0, bytes = 0, el = 0;
    json_get_str(p, "phase", s, sizeof(s));
    json_get_num(p, "round", &round);
    json_get_num(p, "pages_done", &done);
    json_get_num(p, "pages_total", &total);
    json_get_num(p, "pages_left", &left);
    json_get_num(p, "pages_sent", &sent);
    json_get_num(p, "ram_pages", &ram);
    json_get_num(p, "bytes_sent", &bytes);
    json_get_num(p, "elapsed_s", &el);
    fprintf(f, "  %-20s%s, round %.0f: %.0f of %.0f pages (%.0f left)\n", "migrating", s, round, done, total, left);
    fprintf(f, "  %-20s%.0f pages of %.0f in RAM, %.1f MiB on the wire, %.1f s\n", "so far", sent, ram,
            bytes / 1048576.0, el);
    double dr = 0, tr = 0, lim = 0, down = -1;
    json_get_num(p, "dirty_rate", &dr);
    json_get_num(p, "transfer_rate", &tr);
    json_get_num(p, "max_bandwidth", &lim);
    json_get_num(p, "expected_downtime_ms", &down);
    fmt_rate(tr, r1, sizeof(r1));
    fmt_rate(lim, r2, sizeof(r2));
    fprintf(f, "  %-20s%s%s%s%s\n", "transfer rate", r1, lim > 0 ? " (limit " : "", lim > 0 ? r2 : "",
            lim > 0 ? ")" : "");
    fmt_rate(dr, r1, sizeof(r1));
    fprintf(f, "  %-20s%s\n", "dirty rate", dr > 0 ? r1 : "not known yet (round 1)");
    if (down >= 0)
        fprintf(f, "  %-20s%.1f ms (what is dirty now, at the transfer rate)\n", "expected downtime", down);
    else
        fprintf(f, "  %-20snot known yet (round 1)\n", "expected downtime");
    print_codecs(f, p);
}

/* End of the JSON value starting at p (a string, number, literal, object or array). */
static const char *json_value_end(const char *p)
{
    int depth = 0;
    bool str = false;
    for (; *p; p++) {
        if (str) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                str = false;
            if (!str && depth == 0)
                return p + 1;
            continue;
        }
        if (*p == '"')
            str = true;
        else if (*p == '{' || *p == '[')
            depth++;
        else if (*p == '}' || *p == ']') {
            if (depth == 0)
                return p;
            if (--depth == 0)
                return p + 1;
        } else if (*p == ',' && depth == 0)
            return p;
    }
    return p;
}

int cli_json_edit(const char *in, const char *insert, const char *const *drop, char *out, size_t cap)
{
    size_t n = 0;
#define PUT(s_, l_) do { size_t l__ = (l_); if (n + l__ + 1 < cap) { memcpy(out + n, (s_), l__); n += l__; } else return -1; } while (0)
    const char *p = in;
    while (*p == ' ')
        p++;
    if (*p != '{')
        return -1;
    p++;
    PUT("{", 1);
    bool first = true;
    if (insert && *insert) {
        PUT(insert, strlen(insert));
        first = false;
    }
    while (*p && *p != '}') {
        if (*p == ',' || *p == ' ') {
            p++;
            continue;
        }
        if (*p != '"')
            return -1;
        const char *k = p + 1, *ke = strchr(k, '"');
        if (!ke || ke[1] != ':')
            return -1;
        const char *v = ke + 2, *ve = json_value_end(v);
        bool skip = false;
        for (const char *const *d = drop; d && *d && !skip; d++)
            skip = strlen(*d) == (size_t)(ke - k) && strncmp(*d, k, (size_t)(ke - k)) == 0;
        if (!skip) {
            if (!first)
                PUT(",", 1);
            PUT(p, (size_t)(ve - p));
            first = false;
        }
        p = ve;
    }
    PUT("}", 1);
    out[n] = 0;
#undef PUT
    return (int)n;
}
