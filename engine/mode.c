/* engine: the table of modes (mode.h), by enum migr_mode and by HELLO name. */
#include <stddef.h>
#include <string.h>

#include "migr/common.h"
#include "engine/mode.h"

static const struct engine_mode *const modes[] = {
    [MIGR_MODE_PRECOPY] = &engine_mode_precopy,
    [MIGR_MODE_HANDOVER] = &engine_mode_handover,
    [MIGR_MODE_POSTCOPY] = &engine_mode_postcopy,
    [MIGR_MODE_HYBRID] = &engine_mode_hybrid,
    [MIGR_MODE_TAIL] = &engine_mode_tail,
};

const struct engine_mode *engine_mode_of(enum migr_mode mode)
{
    return (unsigned)mode < MIGR_ARRAY_SIZE(modes) ? modes[mode] : NULL;
}

const struct engine_mode *engine_mode_by_name(const char *name, bool *cancellable)
{
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(modes); i++) {
        if (strcmp(name, modes[i]->name) == 0 || (modes[i]->cname && strcmp(name, modes[i]->cname) == 0)) {
            *cancellable = modes[i]->cname && strcmp(name, modes[i]->cname) == 0;
            return modes[i];
        }
    }
    return NULL;
}

const char *engine_mode_label(const struct engine_mode *m, bool cancellable)
{
    return m->postcopy && cancellable ? m->cname : m->name;
}
