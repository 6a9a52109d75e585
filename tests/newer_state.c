/* A stand-in for a newer migr binary whose guests carry another STATE
 * format: the real CLI, linked with -Wl,--wrap=migr_hv_build, so every
 * incoming guest the engine builds announces state version 99 (a test
 * decorator over the guest builders of include/migr/hv.h). The
 * upgrade tests hand a guest to it and expect the refusal that names the
 * state version, with the guest still running on its old VMM
 * (tests/it_upgrade.sh, tests/it_group.sh). */
#include <stdint.h>

#include "migr/hv.h"

#define NEWER_STATE_VERSION 99

int __real_migr_hv_build(const struct migr_vm_layout *layout, const int *memfds, const uint64_t *offs,
                         struct migr_hv **out);
int __wrap_migr_hv_build(const struct migr_vm_layout *layout, const int *memfds, const uint64_t *offs,
                         struct migr_hv **out);

int __wrap_migr_hv_build(const struct migr_vm_layout *layout, const int *memfds, const uint64_t *offs,
                         struct migr_hv **out)
{
    int err = __real_migr_hv_build(layout, memfds, offs, out);
    if (err == 0)
        (*out)->state_version = NEWER_STATE_VERSION;
    return err;
}
