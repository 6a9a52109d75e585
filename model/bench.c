/* model: read migr's own JSON migration summaries (engine/stats.c writes
 * them; `migr send --json`, `migr upgrade --json` and bench/results/migrate.json
 * carry them) for `migr model --from-bench`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migr/common.h"
#include "migr/model.h"

#define MAX_FILE (64u << 20)

/* End of the JSON object starting at s ('{'): one past its '}', or NULL. */
static const char *object_end(const char *s)
{
    int depth = 0;
    for (; *s; s++) {
        if (*s == '"') {
            for (s++; *s && *s != '"'; s++)
                if (*s == '\\' && s[1])
                    s++;
            if (!*s)
                return NULL;
        } else if (*s == '{' || *s == '[') {
            depth++;
        } else if (*s == '}' || *s == ']') {
            if (--depth == 0)
                return s + 1;
        }
    }
    return NULL;
}

/* The value after "key": at the top level of the object [obj, end). */
static const char *field(const char *obj, const char *end, const char *key)
{
    char pat[48];
    int depth = 0;
    size_t len = (size_t)snprintf(pat, sizeof(pat), "\"%s\":", key);
    for (const char *s = obj; s < end; s++) {
        if (*s == '"') {
            if (depth == 1 && (size_t)(end - s) > len && memcmp(s, pat, len) == 0)
                return s + len;
            for (s++; s < end && *s != '"'; s++)
                if (*s == '\\')
                    s++;
        } else if (*s == '{' || *s == '[') {
            depth++;
        } else if (*s == '}' || *s == ']') {
            depth--;
        }
    }
    return NULL;
}

static int number(const char *obj, const char *end, const char *key, size_t off, bool required, double *out)
{
    const char *v = field(obj, end, key);
    if (!v) {
        if (!required) {
            *out = 0;
            return 0;
        }
        return migr_errorf(EINVAL, "summary at byte %zu has no \"%s\"", off, key);
    }
    char *e;
    *out = strtod(v, &e);
    if (e == v || *out < 0)
        return migr_errorf(EINVAL, "summary at byte %zu: \"%s\" is not a non-negative number", off, key);
    return 0;
}

/* The key this object is the value of ("send" in {"send":{...}}), or "". */
static void parent_key(const char *text, const char *obj, char *key, size_t cap)
{
    const char *s = obj;
    key[0] = 0;
    while (s > text && (s[-1] == ' ' || s[-1] == '\n' || s[-1] == '\t' || s[-1] == '\r'))
        s--;
    if (s == text || s[-1] != ':')
        return;
    s--;
    while (s > text && (s[-1] == ' ' || s[-1] == '\t'))
        s--;
    if (s == text || s[-1] != '"')
        return;
    const char *close = --s;
    while (s > text && s[-1] != '"')
        s--;
    size_t n = (size_t)(close - s);
    if (n >= cap)
        n = cap - 1;
    memcpy(key, s, n);
    key[n] = 0;
}

static void add(struct migr_model_measured *m, double down, double total, double ram)
{
    /* Running means keep the struct meaningful after every call. */
    m->count++;
    m->downtime_ms += (down - m->downtime_ms) / m->count;
    m->total_ms += (total - m->total_ms) / m->count;
    m->ram_bytes += (ram - m->ram_bytes) / m->count;
}

int migr_model_bench_parse(const char *text, struct migr_model_bench *out)
{
    static const char start[] = "{\"mode\":\"";
    memset(out, 0, sizeof(*out));
    for (const char *s = strstr(text, start); s; s = strstr(s + 1, start)) {
        size_t off = (size_t)(s - text);
        const char *end = object_end(s);
        if (!end)
            return migr_errorf(EINVAL, "summary at byte %zu is not a complete JSON object", off);
        char key[32];
        parent_key(text, s, key, sizeof(key));
        if (strcmp(key, "recv") == 0) {
            /* The receiver's account of a migration whose sender is counted. */
            out->skipped++;
            continue;
        }
        char mode[16];
        const char *v = s + sizeof(start) - 1;
        size_t n = strcspn(v, "\"");
        if (n >= sizeof(mode))
            n = sizeof(mode) - 1;
        memcpy(mode, v, n);
        mode[n] = 0;
        struct migr_model_measured *m;
        if (strcmp(mode, "precopy") == 0)
            m = &out->precopy;
        else if (strcmp(mode, "handover") == 0)
            m = &out->handover;
        else if (strcmp(mode, "warm") == 0)
            m = &out->warm;
        else if (!strcmp(mode, "postcopy") || !strcmp(mode, "cpostcopy") || !strcmp(mode, "hybrid") ||
                 !strcmp(mode, "chybrid")) {
            out->skipped++; /* the model has no post-copy method (docs/model.md) */
            continue;
        } else
            return migr_errorf(EINVAL, "summary at byte %zu: unknown mode \"%s\" (precopy, handover, warm)", off,
                               mode);
        const char *ok = field(s, end, "ok");
        if (ok && strncmp(ok, "false", 5) == 0) {
            out->failed++;
            continue;
        }
        double down, total, ram;
        int rc;
        if ((rc = number(s, end, "downtime_ms", off, true, &down)) < 0 ||
            (rc = number(s, end, "total_ms", off, true, &total)) < 0 ||
            (rc = number(s, end, "ram_bytes", off, false, &ram)) < 0)
            return rc;
        add(m, down, total, ram);
    }
    unsigned used = out->precopy.count + out->handover.count + out->warm.count;
    if (used == 0)
        return migr_errorf(ENOENT, "no successful migration summary ({\"mode\":...} objects; %u failed)",
                           out->failed);
    return (int)used;
}

int migr_model_bench_load(const char *path, struct migr_model_bench *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return migr_errorf_errno(errno, "%s", path);
    char *buf = malloc(MAX_FILE + 1);
    if (!buf) {
        fclose(f);
        return migr_errorf(ENOMEM, "%s: no memory for %u bytes", path, MAX_FILE);
    }
    size_t n = fread(buf, 1, MAX_FILE + 1, f);
    int err = ferror(f) ? EIO : 0;
    fclose(f);
    int rc;
    if (err)
        rc = migr_errorf(err, "%s: read error", path);
    else if (n > MAX_FILE)
        rc = migr_errorf(EFBIG, "%s: larger than %u MiB", path, MAX_FILE >> 20);
    else {
        buf[n] = 0;
        rc = migr_model_bench_parse(buf, out);
        if (rc < 0)
            migr_error_prefix(-rc, "%s", path);
    }
    free(buf);
    return rc;
}
