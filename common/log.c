/* common: the library's log — silent unless the embedder installs a function. */
#include <stdarg.h>
#include <stdio.h>

#include "migr/common.h"

static migr_log_fn log_fn;
static void *log_arg;

void migr_log_set(migr_log_fn fn, void *arg)
{
    log_arg = arg;
    log_fn = fn;
}

void migr_log_stderr(void *arg, enum migr_log_level level, const char *msg)
{
    (void)arg;
    fprintf(stderr, "migr: %s%s\n", level == MIGR_LOG_WARN ? "warning: " : "", msg);
}

void migr_logf(enum migr_log_level level, const char *fmt, ...)
{
    migr_log_fn fn = log_fn;
    if (!fn)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fn(log_arg, level, msg);
}
