/* migr — per-thread error messages (see common.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "migr/common.h"

#define ERR_BUF_SIZE 512

static _Thread_local char err_buf[ERR_BUF_SIZE];

/* err must be > 0; a caller passing -errno or 0 by mistake must still get a
 * negative return, never 0 (which would read as success). */
static int norm_err(int err)
{
    if (err < 0)
        err = -err;
    return err ? err : EIO;
}

static void vset(const char *fmt, va_list ap)
{
    int saved = errno;

    vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
    errno = saved;
}

int migr_errorf(int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vset(fmt, ap);
    va_end(ap);
    return -norm_err(err);
}

int migr_errorf_errno(int err, const char *fmt, ...)
{
    char ebuf[128];
    va_list ap;
    size_t n;

    err = norm_err(err);
    va_start(ap, fmt);
    vset(fmt, ap);
    va_end(ap);
    n = strlen(err_buf);
    snprintf(err_buf + n, sizeof(err_buf) - n, ": %s", strerror_r(err, ebuf, sizeof(ebuf)));
    return -err;
}

/* Append src to err_buf at *pos, truncating at the buffer's end. */
static void append(size_t *pos, const char *src)
{
    size_t n = strlen(src), room = ERR_BUF_SIZE - 1 - *pos;

    if (n > room)
        n = room;
    memcpy(err_buf + *pos, src, n);
    *pos += n;
    err_buf[*pos] = '\0';
}

int migr_error_prefix(int err, const char *fmt, ...)
{
    char prefix[ERR_BUF_SIZE];
    char old[ERR_BUF_SIZE];
    size_t pos = 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof(old));
    append(&pos, prefix);
    if (old[0]) {
        append(&pos, ": ");
        append(&pos, old);
    }
    return -norm_err(err);
}

const char *migr_last_error(void)
{
    return err_buf;
}

void migr_clear_error(void)
{
    err_buf[0] = '\0';
}
