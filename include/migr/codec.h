/* migr — per-page codec interface.
 *
 * A codec turns one guest page into a wire encoding (enum migr_page_enc in
 * format.h) and back. Encoders may decline ("does not pay") so that the
 * engine falls back to the next codec, finally RAW.
 */
#ifndef MIGR_CODEC_H
#define MIGR_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIGR_CODEC_DECLINE 1   /* encode(): this codec does not pay for this page */

struct migr_codec_ops {
    const char *name;      /* "zero", "raw", ... */
    uint8_t enc;           /* wire encoding (MIGR_ENC_*) */
    /*! Encode page (MIGR_PAGE_SIZE bytes). old: the page as the receiver last
     *  got it, or NULL. Writes at most cap bytes into out and sets *len.
     *  Returns 0, MIGR_CODEC_DECLINE, or -errno. */
    int (*encode)(const uint8_t *page, const uint8_t *old, uint8_t *out, size_t cap, size_t *len);
    /*! Decode len bytes of src into page (MIGR_PAGE_SIZE bytes, holding the
     *  receiver's current copy for delta codecs). Strict: -EBADMSG for any
     *  malformed input, never reading or writing out of bounds. */
    int (*decode)(const uint8_t *src, size_t len, uint8_t *page);
};

/*! True if the page (MIGR_PAGE_SIZE bytes, 8-byte aligned) is all zero. */
bool migr_page_is_zero(const void *page);

extern const struct migr_codec_ops migr_codec_raw;
extern const struct migr_codec_ops migr_codec_zero;

/*! Codec for a wire encoding, or NULL if this build has none. */
const struct migr_codec_ops *migr_codec_for_enc(uint8_t enc);

#endif
