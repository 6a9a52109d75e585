/* A stand-in for a newer migr binary whose guests carry another STATE
 * format: the real CLI, linked with -Wl,--wrap=migr_hv_create_shared, so
 * every guest it builds for a hand-over announces state version 99. The
 * upgrade tests hand a guest to it and expect the refusal that names the
 * state version, with the guest still running on its old VMM
 * (tests/it_upgrade.sh, tests/it_group.sh). */
#include <stdint.h>

#include "migr/format.h"
#include "migr/hv.h"

#define NEWER_STATE_VERSION 99

int __real_migr_hv_create_shared(const struct migr_hello *hello, const int *memfds, const uint64_t *offs,
                                 struct migr_hv **out);
int __wrap_migr_hv_create_shared(const struct migr_hello *hello, const int *memfds, const uint64_t *offs,
                                 struct migr_hv **out);

int __wrap_migr_hv_create_shared(const struct migr_hello *hello, const int *memfds, const uint64_t *offs,
                                 struct migr_hv **out)
{
    int err = __real_migr_hv_create_shared(hello, memfds, offs, out);
    if (err == 0)
        (*out)->state_version = NEWER_STATE_VERSION;
    return err;
}
