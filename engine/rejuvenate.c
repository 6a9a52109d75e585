/* engine: the seed-000 rejuvenation round trip, hook by hook, timed. */
#include <string.h>

#include "migr/common.h"
#include "migr/rejuv.h"

int migr_rejuvenate(const struct migr_rejuv_hooks *h, void *ctx, struct migr_rejuv_report *rep)
{
    static const char *const names[MIGR_REJUV_PHASES] = {
        "nesting on", "start VMM 2", "migrate 1->2", "reboot VMM 1", "migrate 2->1", "stop VMM 2", "nesting off",
    };
    memset(rep, 0, sizeof(*rep));
    rep->failed_phase = -1;
    for (int i = 0; i < MIGR_REJUV_PHASES; i++) {
        rep->phase[i] = names[i];
        uint64_t t0 = migr_now_ns();
        int err;
        switch (i) {
        case 0: err = h->nesting_on ? h->nesting_on(ctx) : 0; break;
        case 1: err = h->spawn_vmm(ctx, 2); break;
        case 2: err = h->migrate(ctx, 1, 2); break;
        case 3: err = h->reboot_vmm(ctx, 1); break;
        case 4: err = h->migrate(ctx, 2, 1); break;
        case 5: err = h->stop_vmm(ctx, 2); break;
        default: err = h->nesting_off ? h->nesting_off(ctx) : 0; break;
        }
        rep->ns[i] = migr_now_ns() - t0;
        if (err < 0) {
            rep->failed_phase = i;
            return migr_error_prefix(-err, "rejuvenate: phase (%d) %s", i + 1, names[i]);
        }
    }
    return 0;
}
