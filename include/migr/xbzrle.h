/* migr — XOR+RLE page delta, byte-compatible with QEMU's XBZRLE.
 *
 * The delta of two equally long buffers old and new is their XOR, cut into
 * maximal runs of zero bytes (bytes that did not change) and non-zero bytes
 * (bytes that did). The encoding is
 *
 *     delta = zrun nzrun { zrun nzrun }      (no trailing zero run)
 *     zrun  = length                        (bytes unchanged; 0 only first)
 *     nzrun = length byte{length}           (length >= 1, then the new bytes)
 *     length = unsigned LEB128 of 1 or 2 bytes (0 ... 0x3fff)
 *
 * exactly as QEMU's migration/xbzrle.c writes and reads it (docs/compress.md
 * has the details, the overflow rule and the cases in which migr differs).
 */
/* Blocking and threads: pure functions on the caller's thread (encode and
 * decode linear in the page); none starts a thread or installs a signal
 * handler. */
#ifndef MIGR_XBZRLE_H
#define MIGR_XBZRLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MIGR_XBZRLE_RUN_MAX 0x3fff   /* largest run a 2-byte LEB128 holds */

/*! Encode new_page against old_page (slen bytes each; slen a multiple of 8
 *  and both 8-byte aligned, as in QEMU, though any slen >= 0 works) into dst,
 *  which has dlen bytes.
 *  Returns 0 if the pages are identical (or slen is 0), the encoded length if
 *  it fits, or -1 if it does not fit in dlen. The fit test is QEMU's: it also
 *  fails when fewer than 2 bytes are free at a point where QEMU checks for 2
 *  (so identical pages with dlen < 2, and deltas that end in unchanged bytes
 *  with fewer than 2 bytes to spare, give -1 too). Also -1 for slen < 0 and
 *  for a run longer than MIGR_XBZRLE_RUN_MAX (only possible with slen >
 *  16384; QEMU aborts there). Bytes of dst past the returned length (and all
 *  of dst after -1) are unspecified. Thread-safe; runs the fastest encoder
 *  this CPU has (see migr_xbzrle_set_impl). */
int migr_xbzrle_encode(const uint8_t *old_page, const uint8_t *new_page, int slen,
                       uint8_t *dst, int dlen);

/*! Apply the delta src (slen bytes) in place to dst (dlen bytes, holding the
 *  old page). Returns the offset just past the last changed byte (the
 *  "decoded length", dlen when the last byte changed; 0 for slen 0), or -1
 *  if src is malformed: a zero run of length 0 anywhere but first, a
 *  non-zero run of length 0, a length with a third LEB128 byte, a length
 *  that runs past slen or dlen, or an item cut short (QEMU's rules, which
 *  also accept a 2-byte LEB128 whose second byte is 0). On -1 dst is left
 *  unchanged (QEMU may have written part of it). Also -1 for slen or dlen
 *  < 0. Never reads or writes outside src[0, slen) and dst[0, dlen). */
int migr_xbzrle_decode(const uint8_t *src, int slen, uint8_t *dst, int dlen);

/* ---- encoder implementations (tests and benchmarks) ---- */

enum migr_xbzrle_impl {
    MIGR_XBZRLE_BASELINE = 0,  /* word-at-a-time, in the style of QEMU's C encoder */
    MIGR_XBZRLE_SCALAR = 1,    /* 64-byte blocks, byte-change masks and ctz (portable C) */
    MIGR_XBZRLE_AVX2 = 2,      /* the same with AVX2 compares */
    MIGR_XBZRLE_AVX512 = 3,    /* the same with AVX-512BW mask compares */
    MIGR_XBZRLE_NIMPL = 4,
};

typedef int (*migr_xbzrle_encode_fn)(const uint8_t *old_page, const uint8_t *new_page, int slen,
                                     uint8_t *dst, int dlen);

/*! The encoder impl, or NULL if this CPU (cpuid) or build lacks it. All
 *  encoders produce the same bytes and return values. */
migr_xbzrle_encode_fn migr_xbzrle_encoder(enum migr_xbzrle_impl impl);

/*! "baseline", "scalar", "avx2", "avx512"; "?" for others. */
const char *migr_xbzrle_impl_name(enum migr_xbzrle_impl impl);

/*! The impl migr_xbzrle_encode() uses: the best the CPU has, unless changed
 *  with migr_xbzrle_set_impl() or the environment variable MIGR_XBZRLE_IMPL
 *  (a name as above, read once at the first encode). */
enum migr_xbzrle_impl migr_xbzrle_active_impl(void);

/*! Make migr_xbzrle_encode() use impl (all threads). 0, or -ENOTSUP if the
 *  CPU lacks it, -EINVAL for an unknown impl. */
int migr_xbzrle_set_impl(enum migr_xbzrle_impl impl);

#ifdef __cplusplus
}
#endif

#endif
