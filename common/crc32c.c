/* migr — CRC-32C (Castagnoli): SSE4.2 crc32 instruction when the CPU has it,
 * slicing-by-8 tables otherwise. Both paths update the same "raw" register
 * (no pre/post inversion); migr_crc32c() adds the inversions, so chaining
 * works: crc(crc(0, a), b) == crc(0, a || b).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "migr/crc32c.h"
#include "common/crc32c_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#define HAVE_X86_CRC 1
#include <nmmintrin.h>
#else
#define HAVE_X86_CRC 0
#endif

#define POLY 0x82F63B78u   /* reflected 0x1EDC6F41 */

/* Stream length for the 3-way interleaved hardware loop: three streams of
 * 1360 bytes cover 4080 of a 4 KiB page, the rest goes through the single
 * stream loop. A multiple of 8 so every stream is whole 64-bit steps. */
#define BLK 1360u

static uint32_t table[8][256];
/* shift_tab[k][v]: the raw register v << 8k advanced over BLK zero bytes,
 * i.e. multiplied by x^(8*BLK) mod P. Used to combine the three streams:
 * the register is linear, so f(c, A||B) = f(c, 0^|B|) ^ f(0, B). */
static uint32_t shift_tab[4][256];
static int have_hw;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static uint32_t sw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (len >= 8) {
        uint64_t w;

        memcpy(&w, p, 8);
        w ^= crc;
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^
              table[5][(w >> 16) & 0xff] ^ table[4][(w >> 24) & 0xff] ^
              table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
              table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        len -= 8;
    }
#endif
    while (len--)
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

static inline uint32_t shift_blk(uint32_t c)
{
    return shift_tab[0][c & 0xff] ^ shift_tab[1][(c >> 8) & 0xff] ^
           shift_tab[2][(c >> 16) & 0xff] ^ shift_tab[3][c >> 24];
}

static void crc_init(void)
{
    uint32_t basis[32];

    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int b = 0; b < 8; b++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int i = 0; i < 256; i++)
            table[k][i] = (table[k - 1][i] >> 8) ^ table[0][table[k - 1][i] & 0xff];

    for (int b = 0; b < 32; b++) {
        uint32_t c = 1u << b;

        for (unsigned i = 0; i < BLK; i++)
            c = table[0][c & 0xff] ^ (c >> 8);
        basis[b] = c;
    }
    for (int k = 0; k < 4; k++)
        for (int v = 0; v < 256; v++) {
            uint32_t c = 0;

            for (int j = 0; j < 8; j++)
                if (v & (1 << j))
                    c ^= basis[8 * k + j];
            shift_tab[k][v] = c;
        }

#if HAVE_X86_CRC
    __builtin_cpu_init();
    have_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

#if HAVE_X86_CRC
static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t hw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len >= 3 * BLK) {
        uint64_t c0 = crc, c1 = 0, c2 = 0;

        for (unsigned i = 0; i < BLK; i += 8) {
            c0 = _mm_crc32_u64(c0, load64(p + i));
            c1 = _mm_crc32_u64(c1, load64(p + BLK + i));
            c2 = _mm_crc32_u64(c2, load64(p + 2 * BLK + i));
        }
        crc = shift_blk(shift_blk((uint32_t)c0) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 3 * BLK;
        len -= 3 * BLK;
    }
    {
        uint64_t c = crc;

        for (; len >= 8; p += 8, len -= 8)
            c = _mm_crc32_u64(c, load64(p));
        crc = (uint32_t)c;
    }
    for (; len; p++, len--)
        crc = _mm_crc32_u8(crc, *p);
    return crc;
}
#else
/* 32-bit x86: 4 bytes at a time, single stream. */
__attribute__((target("sse4.2")))
static uint32_t hw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
    for (; len >= 4; p += 4, len -= 4) {
        uint32_t v;

        memcpy(&v, p, 4);
        crc = _mm_crc32_u32(crc, v);
    }
    for (; len; p++, len--)
        crc = _mm_crc32_u8(crc, *p);
    return crc;
}
#endif
#endif /* HAVE_X86_CRC */

uint32_t migr_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&init_once, crc_init);
    return ~sw_raw(~crc, buf, len);
}

uint32_t migr_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&init_once, crc_init);
#if HAVE_X86_CRC
    if (have_hw)
        return ~hw_raw(~crc, buf, len);
#endif
    return ~sw_raw(~crc, buf, len);
}

int migr_crc32c_hw_available(void)
{
    pthread_once(&init_once, crc_init);
    return have_hw;
}

uint32_t migr_crc32c(uint32_t crc, const void *buf, size_t len)
{
    return migr_crc32c_hw(crc, buf, len);
}
