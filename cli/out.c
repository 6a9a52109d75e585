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

void cli_print_summary(FILE *f, const char *js)
{
    double v;
    bool b;
    char s[600];
    fprintf(f, "  %-22s", "result");
    if (json_get_bool(js, "ok", &b) && b)
        fprintf(f, "migrated\n");
    else
        fprintf(f, "FAILED: %s\n", json_get_str(js, "error", s, sizeof(s)) ? s : "?");
    if (json_get_str(js, "mode", s, sizeof(s)))
        fprintf(f, "  %-22s%s", "mode", s);
    if (json_get_str(js, "transport", s, sizeof(s)))
        fprintf(f, " over %s", s);
    if (json_get_str(js, "tracker", s, sizeof(s)) && s[0])
        fprintf(f, ", tracker %s", s);
    fputc('\n', f);
    if (json_get_num(js, "ram_bytes", &v))
        fprintf(f, "  %-22s%.0f MiB\n", "guest RAM", v / 1048576.0);
    if (json_get_num(js, "total_ms", &v))
        fprintf(f, "  %-22s%.1f ms\n", "total time", v);
    if (json_get_num(js, "downtime_ms", &v))
        fprintf(f, "  %-22s%.2f ms\n", "downtime", v);
    if (json_get_num(js, "rounds", &v))
        fprintf(f, "  %-22s%.0f (converged: %s)\n", "pre-copy rounds", v,
                json_get_bool(js, "converged", &b) && b ? "yes" : "no");
    if (json_get_num(js, "pages_sent", &v)) {
        double z = 0;
        json_get_num(js, "zero_pages", &z);
        fprintf(f, "  %-22s%.0f (%.0f zero)\n", "pages sent", v, z);
    }
    if (json_get_num(js, "bytes_sent", &v))
        fprintf(f, "  %-22s%.1f MiB\n", "bytes on the wire", v / 1048576.0);
    double fp = 0;
    json_get_num(js, "first_pass_mbps", &fp);
    if (json_get_num(js, "throughput_mbps", &v)) {
        fprintf(f, "  %-22s%.0f MB/s", "throughput", v);
        if (fp > 0)
            fprintf(f, " (first pass %.0f MB/s)", fp);
        fputc('\n', f);
    }
    if (json_get_num(js, "postcopy_ms", &v)) {
        double dem = 0, push = 0;
        json_get_num(js, "demand_pages", &dem);
        json_get_num(js, "pushed_pages", &push);
        fprintf(f, "  %-22s%.1f ms after the switchover (%.0f pages on demand, %.0f pushed)\n",
                "post-copy", v, dem, push);
    }
    if (json_get_bool(js, "verified", &b))
        fprintf(f, "  %-22s%s\n", "pages intact (CRC)", b ? "yes" : "no");
}
