/* migr CLI: shared helpers. One file per subcommand (cmd_*.c), dispatched from main.c. */
#ifndef MIGR_CLI_H
#define MIGR_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "migr/engine.h"
#include "migr/hv.h"

/* The "schema" of every JSON object migr prints (docs/control.md): raised
 * when a field changes meaning or goes away, not when one is added. */
#define CLI_JSON_SCHEMA 1

struct cli_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    void (*usage)(FILE *f);
};

extern const char *cli_argv0;   /* path of this binary (for spawning VMMs) */

/* Print "migr <cmd>: <msg>" and the command's usage to stderr; returns 2. */
int cli_bad_args(const struct cli_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const struct cli_cmd *cli_find(const char *name);

/* ---- sizes, rates and times of every option (units.c) ---- */
/*! "4096", "64M" (MiB), "512MiB", "1.5G", "100MB" (10^6) into bytes. 0 or -EINVAL/-ERANGE (message set). */
int cli_parse_size(const char *text, uint64_t *out);
/*! A size per second, "/s" optional: "100M" = "100MiB/s" = 104857600 bytes/s. */
int cli_parse_rate(const char *text, uint64_t *out);
/*! "500ms", "1s", "1.5m", "2h", "28d"; a bare number is in bare_unit_s seconds. */
int cli_parse_time(const char *text, double bare_unit_s, double *seconds);
/*! cli_parse_time into whole ms within [lo_ms, hi_ms]. 0 or -errno (message set). */
int cli_parse_ms(const char *text, double bare_unit_s, double lo_ms, double hi_ms, uint64_t *ms);
/*! "512.0 MiB", "4 B": bytes with a binary unit. */
void cli_fmt_size(double bytes, char *out, size_t cap);

/* ---- --daemon (daemon.c) ---- */
/*! Fork for --daemon. Returns -1 in the child (go on as the VMM; *ready_fd is
 *  the pipe to pass to cli_ready), or the parent's exit code once the child
 *  is ready (0; its pid printed on stdout) or died (1). */
int cli_daemonize(const char *cmd, int *ready_fd);
/*! The VMM is ready: tell a waiting --daemon parent (no-op if *ready_fd < 0). */
void cli_ready(int *ready_fd, const char *what);

/* ---- the control socket (ctl.c) ---- */
struct ctl_server;
/*! Bind the control socket at path and serve status on it at once (before a
 *  guest exists). take_over: path belongs to the VMM whose guest migrates
 *  here (migr upgrade): bind PATH.new.PID now and rename it over path once
 *  the guest runs here. 0, or -errno with the reason (in use, too long,
 *  no such directory, abstract). */
int ctl_open(const char *path, bool take_over, struct ctl_server **out);
/*! A log file to remove when the VM is stopped here (migr stop or a signal),
 *  not when it moves away (migr recv --log-file; NULL = none). */
extern const char *ctl_log_file;
/*! What status says until ctl_run ("receiving"). */
void ctl_set_phase(struct ctl_server *srv, const char *phase);
/*! An incoming migration runs over t (status shows its bytes), or ended (NULL, before t is closed). */
void ctl_set_incoming(struct ctl_server *srv, const struct migr_transport *t);
/*! migr recv: the cancel handle `migr cancel` requests (migr_recv_params.cancel). */
struct migr_cancel *ctl_recv_cancel(struct ctl_server *srv);
/*! migr recv waits on l (NULL: no longer); `stop` on the control socket then
 *  shuts l down and ctl_stop_requested turns true. */
struct migr_listener;
void ctl_set_waiting(struct ctl_server *srv, struct migr_listener *l);
bool ctl_stop_requested(struct ctl_server *srv);
/*! Stop serving and free srv (no guest came). NULL ok. */
void ctl_close(struct ctl_server *srv);
/*! Serve the guest on srv until `stop`, a completed migration, or
 *  SIGTERM/SIGINT; then free srv and destroy hv. info: JSON fragment
 *  describing the VM for `status`; ready (if ready_fd >= 0) is written to
 *  ready_fd once the socket serves the guest. Returns the exit code. */
int ctl_run(struct ctl_server *srv, struct migr_hv *hv, const char *info_json, int ready_fd, const char *ready);
/*! ctl_open + ctl_run for a fresh guest (migr run): if the socket cannot be
 *  bound, the guest is destroyed and 1 returned. */
int ctl_serve(struct migr_hv *hv, const char *path, const char *info_json);
/*! The same for a guest that must not be lost (after a warm reboot): if the
 *  socket cannot be bound, it says so on ready_fd and the guest runs on,
 *  unserved, until a signal. */
int ctl_serve_ready(struct migr_hv *hv, const char *path, const char *info_json, int ready_fd, const char *ready);

/* Client: connect (retrying up to wait_ms), send one command line, call
 * on_line for every "progress ..." line; the final "ok <json>" / "error <json>"
 * is copied into result. Returns 0 for ok, 1 for error, -errno if the VMM
 * could not be reached (message in migr_last_error()). */
struct migr_send_params;
/*! Apply one `key=value` token of the ctl `migrate` command to p
 *  (cli/migrate_opts.c). 0, or -1 with err set ("migrate: unknown setting 'x'"). */
int cli_migrate_option(struct migr_send_params *p, const char *token, char *err, size_t cap);
/*! The `migrate` command's mode: precopy | handover | postcopy | hybrid[:N]
 *  (N pre-copy rounds at most, default 1) into p->mode / p->hybrid_rounds.
 *  0, or -1 for anything else. */
int cli_migrate_mode(struct migr_send_params *p, const char *text);
/*! SIGINT/SIGTERM are counted in cli_signals and interrupt ctl_call's wait:
 *  at the first, fn(arg) runs once (migr send: cancel the migration) and the
 *  wait goes on for the final answer; at the second ctl_call returns -EINTR. */
#include <signal.h>
extern volatile sig_atomic_t cli_signals;
typedef void (*cli_interrupt_fn)(void *arg);
void cli_catch_signals(cli_interrupt_fn fn, void *arg);
/* fd: the control connection, for an answer (a group barrier's "go"). */
typedef void (*ctl_line_fn)(void *arg, const char *line, int fd);
int ctl_call(const char *path, const char *command, int wait_ms, ctl_line_fn on_line, void *arg,
             char *result, size_t cap);

/* ---- VM groups (group.c) ---- */
#include <pthread.h>
/*! 0 if name is a usable group name, else -EINVAL with a message. */
int cli_group_check_name(const char *name);
/*! Register the VMM serving ctl as a member of group name. 0 or -errno. */
int cli_group_join(const char *name, const char *ctl);
/*! The control sockets of the running members of group name (sorted), at
 *  most max. Returns the count (≥ 1) or -errno (-ENOENT: no member). */
int cli_group_members(const char *name, char (*ctl)[256], int max);
/* The coordinator's side of a joint switchover: one per group move, shared
 * by one thread per member (each in ctl_call with cli_barrier_line). */
struct cli_barrier {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int members;
    int arrived[2];          /* at "pause", at "commit" */
    bool aborted;            /* a member failed before everyone passed "commit" */
    uint64_t t_release[2];   /* when the last member arrived (migr_now_ns) */
    int done;                /* members whose guest runs on the destination */
    uint64_t t_done;         /* when the last of them said so */
    uint32_t wait_ms;        /* at "commit" a member waits at most this long for the others, then all
                                abort (0 = no bound): its idle link's watchdog must not end it after "go" */
    bool timed_out;          /* aborted because a member waited wait_ms */
};
void cli_barrier_init(struct cli_barrier *b, int members);
void cli_barrier_destroy(struct cli_barrier *b);
/*! A member's migration failed: release everyone waiting with "abort". */
void cli_barrier_fail(struct cli_barrier *b);
/*! ctl_line_fn for a member's migrate command (arg = the barrier). */
void cli_barrier_line(void *arg, const char *line, int fd);
struct cli_group_job {
    char ctl[256];           /* the member's control socket */
    char cmd[1024];          /* its migrate command, with barrier=1 */
    char res[16384];         /* its JSON summary */
};
/*! Run every job's migrate command at once with one joint switchover; 0 if
 *  all succeeded, else -ECANCELED ("2 of 3 members failed; ...": before the
 *  joint COMMIT every guest resumed on its source). group_downtime_ms: from
 *  the release of the pause barrier to the last member's answer. */
int cli_group_switch(struct cli_group_job *jobs, int n, double *group_downtime_ms);
/*! Print the group's summary: one JSON object {"group","ok","members",
 *  "group_downtime_ms","max_member_downtime_ms","vms":[member summaries]}
 *  if json, else one line, plus each failed member's error on stderr. */
void cli_group_report(FILE *f, const char *group, const struct cli_group_job *jobs, int n, double gdown, bool ok,
                      bool json);

/* ---- output helpers (out.c) ---- */
/*! Copy in into out (cap bytes) as the inside of a JSON string: quotes and
 *  backslashes escaped, control characters as spaces (cli/ctl.c). */
void json_escape(const char *in, char *out, size_t cap);
bool json_get_num(const char *json, const char *key, double *out);
bool json_get_bool(const char *json, const char *key, bool *out);
bool json_get_str(const char *json, const char *key, char *out, size_t cap);
/* Render a progress line from the ctl ("progress <phase> <round> <done> <total> <bytes> <secs>")
 * as a bar on stderr when it is a TTY. */
void cli_progress_line(void *arg, const char *line, int fd);
void cli_progress_done(void);
/*! Copy the JSON object in to out with insert ("\"schema\":1,\"side\":\"source\"") as its
 *  first fields and without the top-level keys listed in drop (NULL-terminated; NULL = none).
 *  Returns the length, or -1 (not an object, or out too small). */
int cli_json_edit(const char *in, const char *insert, const char *const *drop, char *out, size_t cap);
/*! Human form of a `status` answer (the VM, and the live migration's progress). */
void cli_print_status(FILE *f, const char *json);
/* Human summary of a migration JSON object. */
void cli_print_summary(FILE *f, const char *json);

/* ---- VMM processes (vmm_spawn.c) ---- */
#include <sys/types.h>
/*! Start `binary recv` listening on a fresh unix socket (written to sock)
 *  that will serve ctl once it runs a guest (as a member of group, if not
 *  NULL); detached (own session, output
 *  appended to ctl.log). Returns its pid once it listens, or -errno. */
pid_t cli_spawn_recv(const char *binary, const char *ctl, const char *group, char *sock, size_t cap);
/*! Move the guest served at from_ctl to the VMM new_pid listening on sock
 *  (mode: handover | precopy | postcopy ...), and wait until new_pid answers
 *  on to_ctl. res gets the migration's JSON summary. 0 or -errno; on failure
 *  the new VMM is stopped and the guest stays where it was (engine rules). */
int cli_move_guest(const char *from_ctl, const char *sock, const char *mode, const char *to_ctl,
                   pid_t new_pid, char *res, size_t cap);
/*! Wait up to 15 s until the VMM new_pid answers `status` on to_ctl. 0 or -ETIMEDOUT. */
int cli_wait_vmm(const char *to_ctl, pid_t new_pid);
/*! The same with extra key=value settings for the ctl migrate command
 *  (NULL = none) and a callback for its progress lines (NULL = none). */
int cli_move_guest_ex(const char *from_ctl, const char *sock, const char *mode, const char *settings,
                      ctl_line_fn on_line, void *arg, const char *to_ctl, pid_t new_pid, char *res, size_t cap);

#endif
