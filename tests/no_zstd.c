/* A stand-in for a migr build without zstd: the real CLI, linked with
 * -Wl,--wrap=migr_features_supported, so its receiver reports every feature
 * but zstd and its stream encoding (include/migr/format.h). tests/it_hello_features.sh sends a zstd
 * stream to it and expects the refusal at HELLO that names the feature,
 * with the guest still running on its source. */
#include <stdint.h>

#include "migr/format.h"

uint64_t __real_migr_features_supported(void);
uint64_t __wrap_migr_features_supported(void);

uint64_t __wrap_migr_features_supported(void)
{
    return __real_migr_features_supported() & ~(uint64_t)(MIGR_FEAT_ZSTD | MIGR_FEAT_ZSTDS);
}
