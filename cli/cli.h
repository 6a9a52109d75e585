/* migr CLI: shared helpers. One file per subcommand (cmd_*.c), dispatched from main.c. */
#ifndef MIGR_CLI_H
#define MIGR_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "migr/engine.h"
#include "migr/hv.h"

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

/* ---- the control socket (ctl.c) ---- */
/* Serve the guest on a unix control socket at path until `stop`, a completed
 * migration, or SIGTERM/SIGINT. Destroys hv before returning. info: JSON
 * fragment describing the VM for `status`. Returns the process exit code. */
int ctl_serve(struct migr_hv *hv, const char *path, const char *info_json);
/* Same, writing `ready` to ready_fd (then closing it) once the socket is bound. */
int ctl_serve_ready(struct migr_hv *hv, const char *path, const char *info_json, int ready_fd, const char *ready);

/* Client: connect (retrying up to wait_ms), send one command line, call
 * on_line for every "progress ..." line; the final "ok <json>" / "error <json>"
 * is copied into result. Returns 0 for ok, 1 for error, -errno if the VMM
 * could not be reached (message in migr_last_error()). */
struct migr_send_params;
/*! Apply one `key=value` token of the ctl `migrate` command to p
 *  (cli/migrate_opts.c). 0, or -1 with err set ("migrate: unknown setting 'x'"). */
int cli_migrate_option(struct migr_send_params *p, const char *token, char *err, size_t cap);
typedef void (*ctl_line_fn)(void *arg, const char *line);
int ctl_call(const char *path, const char *command, int wait_ms, ctl_line_fn on_line, void *arg,
             char *result, size_t cap);

/* ---- output helpers (out.c) ---- */
bool json_get_num(const char *json, const char *key, double *out);
bool json_get_bool(const char *json, const char *key, bool *out);
bool json_get_str(const char *json, const char *key, char *out, size_t cap);
/* Render a progress line from the ctl ("progress <phase> <round> <done> <total> <bytes> <secs>")
 * as a bar on stderr when it is a TTY. */
void cli_progress_line(void *arg, const char *line);
void cli_progress_done(void);
/* Human summary of a migration JSON object. */
void cli_print_summary(FILE *f, const char *json);

/* ---- VMM processes (vmm_spawn.c) ---- */
#include <sys/types.h>
/*! Start `binary recv` listening on a fresh unix socket (written to sock)
 *  that will serve ctl once it runs a guest; detached (own session, output
 *  appended to ctl.log). Returns its pid once it listens, or -errno. */
pid_t cli_spawn_recv(const char *binary, const char *ctl, char *sock, size_t cap);
/*! Move the guest served at from_ctl to the VMM new_pid listening on sock
 *  (mode: handover | precopy | postcopy ...), and wait until new_pid answers
 *  on to_ctl. res gets the migration's JSON summary. 0 or -errno; on failure
 *  the new VMM is stopped and the guest stays where it was (engine rules). */
int cli_move_guest(const char *from_ctl, const char *sock, const char *mode, const char *to_ctl,
                   pid_t new_pid, char *res, size_t cap);

#endif
