/* migr — common definitions: error reporting, page size, small helpers.
 *
 * Conventions (all of libmigr):
 *   - functions return 0 (or a count) on success and -errno on failure;
 *   - a failing function records a human-readable message with context
 *     (what, which record/page/offset, errno) in a thread-local buffer,
 *     read with migr_last_error();
 *   - the library never calls exit().
 *
 * Blocking and threads (this header): the error and clock functions never
 * block and are thread-safe (errors are per thread); migr_write_full /
 * migr_read_full block in write(2)/read(2) until done (no timeout);
 * migr_logf calls the installed log function on the calling thread.
 * Nothing here starts a thread or installs a signal handler.
 */
#ifndef MIGR_COMMON_H
#define MIGR_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MIGR_PAGE_SIZE 4096u
#define MIGR_PAGE_SHIFT 12

/*! Record an error message (printf format) for this thread and return -err.
 *  If err is an errno value, ": strerror(err)" is NOT appended automatically;
 *  use migr_errorf_errno() for that.  err must be > 0. */
int migr_errorf(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*! Like migr_errorf(), appending ": <strerror(err)>" to the message. */
int migr_errorf_errno(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*! Prefix the current thread's error message with "prefix: " and return -err.
 *  Used to add outer context while an error propagates up. */
int migr_error_prefix(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*! The last error message recorded by this thread ("" if none). Valid until
 *  the next migr_errorf*() call in this thread. */
const char *migr_last_error(void);

/*! Clear this thread's error message. */
void migr_clear_error(void);

/*! Monotonic time in nanoseconds (CLOCK_MONOTONIC). */
uint64_t migr_now_ns(void);
/*! Host wall clock in nanoseconds since the epoch (CLOCK_REALTIME). */
uint64_t migr_wall_ns(void);
/*! CLOCK_REALTIME now + ms, for pthread_cond_timedwait on a default condition variable. */
struct timespec migr_realtime_after_ms(long ms);
/*! CPU time consumed by the calling thread, ns. */
uint64_t migr_thread_cpu_ns(void);

/*! Parse a size with optional K/M/G/T suffix (binary units, "64M" = 64 MiB).
 *  Returns 0 and sets *out, or -EINVAL (with a message naming the text). */
int migr_parse_size(const char *text, uint64_t *out);

/*! Write all of buf to fd (retrying short writes and EINTR). 0 or -errno. */
int migr_write_full(int fd, const void *buf, size_t len);

/*! Read exactly len bytes (retrying short reads and EINTR). 0, -EPIPE at
 *  end of file (also after a partial read), or -errno. */
int migr_read_full(int fd, void *buf, size_t len);

/* Logging. libmigr never writes to stderr by itself: what it has to say
 * outside an error return (a warning, a step a supervisor should know of,
 * such as "DONE not delivered; the guest runs here") goes to the log
 * function the embedder installs; without one it is dropped. */
enum migr_log_level { MIGR_LOG_ERROR = 0, MIGR_LOG_WARN = 1, MIGR_LOG_INFO = 2 };

/*! Called with one message (no trailing newline), from whichever libmigr
 *  thread has something to say (the migration's, a post-copy fault or
 *  checkpoint thread, a tracker's handler thread): it must be thread-safe
 *  and must not call back into libmigr. */
typedef void (*migr_log_fn)(void *arg, enum migr_log_level level, const char *msg);

/*! Install fn (NULL: silence, the default) for the whole process. Not
 *  synchronised with messages in flight: install it before starting work. */
void migr_log_set(migr_log_fn fn, void *arg);

/*! A ready-made log function: "migr: MESSAGE\n" on stderr (warnings as
 *  "migr: warning: MESSAGE"), for programs that want the old behaviour. */
void migr_log_stderr(void *arg, enum migr_log_level level, const char *msg);

/*! Format and pass a message to the installed log function (if any), on
 *  the calling thread; blocks as long as that function does. */
void migr_logf(enum migr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define MIGR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIGR_ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define MIGR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MIGR_MAX(a, b) ((a) > (b) ? (a) : (b))

#ifdef __cplusplus
}
#endif

#endif
