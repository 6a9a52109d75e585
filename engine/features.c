/* engine: the features of HELLO (docs/format.md, HELLO, revision 1.6).
 *
 * What this build implements, and what a stream will use: the receiver
 * compares the two at HELLO, so that a destination without something the
 * stream needs refuses it up front, naming it, instead of failing mid-stream
 * ("unknown encoding 4"). migr_features_supported lives in a file of its own
 * so that a test can wrap it (-Wl,--wrap: tests/no_feature.c).
 */
#include <string.h>

#include "migr/format.h"
#include "engine/engine_impl.h"
#include "engine/mode.h"

uint64_t migr_features_supported(void)
{
    return MIGR_FEAT_KNOWN;
}

/* The codecs a --compress setting may put on the wire (auto: its cost model
 * picks among delta, lz4 and zstd, engine/encode.c). lz4 and zstd go as
 * their stream encodings (format revision 1.8). */
static uint64_t codec_features(const struct migr_send_params *p, const struct migr_hv *hv)
{
    const char *c = p->compress ? p->compress : "auto";
    uint64_t delta = engine_xbzrle_cache_bytes(p, hv) ? MIGR_FEAT_XBZRLE : 0;
    if (strcmp(c, "xbzrle") == 0)
        return delta;
    if (strcmp(c, "lz4") == 0)
        return MIGR_FEAT_LZ4S;
    if (strcmp(c, "zlib") == 0)
        return MIGR_FEAT_ZLIB;
    if (strcmp(c, "zstd") == 0)
        return MIGR_FEAT_ZSTDS;
    if (strcmp(c, "auto") == 0)
        return delta | MIGR_FEAT_LZ4S | MIGR_FEAT_ZSTDS;
    return 0; /* none, zero */
}

uint64_t engine_stream_requires(const struct sender *s, uint32_t nregions)
{
    const struct engine_mode *m = s->mode;
    uint64_t f = nregions > 1 ? MIGR_FEAT_REGIONS : 0;
    if (m->mode == MIGR_MODE_HANDOVER)
        return f | MIGR_FEAT_HANDOVER;
    f |= MIGR_FEAT_ROUND_SYNC; /* the sync before the pause (engine/switchover.c) */
    if (m->mode != MIGR_MODE_POSTCOPY) /* pre-copy rounds: the page codecs */
        f |= codec_features(s->p, s->hv);
    if (m->postcopy)
        f |= MIGR_FEAT_POSTCOPY | MIGR_FEAT_FAULT_CHANNEL;
    if (m->postcopy && s->cancellable)
        f |= MIGR_FEAT_CANCELLABLE | MIGR_FEAT_LEASE;
    return f;
}
