/* compress: the codecs of this build, by wire encoding (format.h MIGR_ENC_*). */
#include <stddef.h>

#include "migr/codec.h"
#include "migr/common.h"

static const struct migr_codec_ops *const codecs[] = {
    &migr_codec_raw,
    &migr_codec_zero,
};

const struct migr_codec_ops *migr_codec_for_enc(uint8_t enc)
{
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(codecs); i++)
        if (codecs[i]->enc == enc)
            return codecs[i];
    return NULL;
}
