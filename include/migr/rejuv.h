/* migr — the rejuvenation round trip of seed 000, as an engine-level flow.
 *
 * (1) nesting ON: a thin host hypervisor slides under the running VMM 1
 * (2) start guest VMM 2 beside it
 * (3) migrate every VM 1 -> 2 (inside the host: hand-over or copy)
 * (4) reboot VMM 1
 * (5) migrate every VM 2 -> 1
 * (6) stop VMM 2
 * (7) nesting OFF
 *
 * The hooks are what a hypervisor implements (docs/hv-glue.md): for migr's
 * KVM backend they start and stop VMM processes on this host and nesting is a
 * no-op; a nested hypervisor such as TinyVisor would switch nesting and own
 * the guest VMMs. Every hook returns 0 or -errno (message in migr_last_error()).
 */
#ifndef MIGR_REJUV_H
#define MIGR_REJUV_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct migr_rejuv_hooks {
    int (*nesting_on)(void *ctx);
    int (*spawn_vmm)(void *ctx, int which);          /* start guest VMM `which` (2; or 1 after its reboot) */
    int (*migrate)(void *ctx, int from, int to);     /* move every VM of VMM from to VMM to */
    int (*reboot_vmm)(void *ctx, int which);         /* VMM `which` has no VM left: reboot it */
    int (*stop_vmm)(void *ctx, int which);
    int (*nesting_off)(void *ctx);
};

#define MIGR_REJUV_PHASES 7

struct migr_rejuv_report {
    const char *phase[MIGR_REJUV_PHASES];
    uint64_t ns[MIGR_REJUV_PHASES];
    int failed_phase;        /* -1 if all went well */
};

/*! Run phases (1)..(7) in order, timing each. Stops at the first failing hook
 *  (report->failed_phase says which); the hooks' own failure handling keeps
 *  the guests running where they are. Returns 0 or that hook's -errno.
 *  Blocks for the whole round trip: the hooks are called in order on the
 *  caller's thread and bound it (a hook that waits forever stalls it);
 *  starts no thread of its own, installs no signal handler. */
int migr_rejuvenate(const struct migr_rejuv_hooks *h, void *ctx, struct migr_rejuv_report *report);

#ifdef __cplusplus
}
#endif

#endif
