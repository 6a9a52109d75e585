/* GPU codecs (compress/gpu/, `make GPU=1`): the per-page code the CUDA
 * kernels run (compress/gpu/xbzrle_model.h) gives the CPU encoders' bytes
 * and return values on random page pairs of every density and on dlen
 * around the fit, and its zero test agrees with migr_page_is_zero — checked
 * on the host in every build. Where a CUDA device exists (GPU build), the
 * device's output is compared with the CPU encoder; otherwise the test ends
 * with "SKIP: no CUDA device/nvcc" after the host checks passed.
 * Seeded (MIGR_TEST_SEED= replays). */
#include <stdlib.h>
#include <string.h>

#include "compress/gpu/xbzrle_model.h"
#include "migr/codec.h"
#include "migr/xbzrle.h"
#include "testlib.h"

#define NP 64
#define PS ((int)MIGR_PAGE_SIZE)

static _Alignas(64) uint8_t o[NP][MIGR_PAGE_SIZE], n[NP][MIGR_PAGE_SIZE];
static uint8_t a[MIGR_PAGE_SIZE + 64], b[MIGR_PAGE_SIZE + 64];

/* Page pair k: density from 0 changed bytes to all, runs of random length. */
static void make_pair(int k, unsigned long long *s)
{
    for (int i = 0; i < PS; i++)
        o[k][i] = (uint8_t)(t_rand(s) % 3 ? 'a' + t_rand(s) % 26 : 0);
    memcpy(n[k], o[k], PS);
    int changes = k == 0 ? 0 : k == 1 ? PS : (int)(t_rand(s) % (64u << (k % 7)));
    for (int c = 0; c < changes; c++) {
        int at = k == 1 ? c : (int)(t_rand(s) % PS), len = 1 + (int)(t_rand(s) % 40);
        for (int i = at; i < at + len && i < PS; i++)
            n[k][i] = (uint8_t)(o[k][i] ^ (1 + t_rand(s) % 255));
    }
    if (k == 2)
        memset(n[k], 0, PS), memset(o[k], 0, PS);
}

int main(void)
{
    unsigned long long s = t_seed();
    for (int k = 0; k < NP; k++)
        make_pair(k, &s);
    /* host: the kernels' code = the CPU encoder, for dlen around the fit */
    for (int k = 0; k < NP; k++) {
        int full = migr_xbzrle_encode(o[k], n[k], MIGR_PAGE_SIZE, a, MIGR_PAGE_SIZE + 64);
        int lo = full > 8 ? full - 8 : 0;
        for (int dlen = lo; dlen <= full + 4 && dlen <= PS + 64; dlen++) {
            int x = migr_xbzrle_encode(o[k], n[k], MIGR_PAGE_SIZE, a, dlen);
            int y = migr_gpu_xbzrle_model(o[k], n[k], MIGR_PAGE_SIZE, b, dlen);
            if (x != y || (x > 0 && memcmp(a, b, (size_t)x)))
                T_FAIL("pair %d dlen %d: CPU %d, GPU model %d bytes%s", k, dlen, x, y, x == y ? " (differ)" : "");
        }
        for (int dlen = 0; dlen < 3; dlen++)
            T_EQ(migr_gpu_xbzrle_model(o[k], n[k], MIGR_PAGE_SIZE, b, dlen),
                 migr_xbzrle_encode(o[k], n[k], MIGR_PAGE_SIZE, a, dlen));
        T_EQ(migr_gpu_page_is_zero(n[k], MIGR_PAGE_SIZE), migr_page_is_zero(n[k]));
    }
    printf("host: the GPU per-page code matches the CPU encoder on %d pairs\n", NP);

    if (migr_gpu_available() < 0)
        T_SKIP("no CUDA device/nvcc (%s); the kernels' code was checked on the host", migr_last_error());
    static uint8_t dst[NP][MIGR_PAGE_SIZE];
    static int lens[NP];
    static uint8_t zero[NP];
    T_OK(migr_gpu_xbzrle_encode(o[0], n[0], NP, dst[0], MIGR_PAGE_SIZE, lens));
    T_OK(migr_gpu_zero_pages(n[0], NP, zero));
    for (int k = 0; k < NP; k++) {
        int x = migr_xbzrle_encode(o[k], n[k], MIGR_PAGE_SIZE, a, MIGR_PAGE_SIZE);
        if (x != lens[k] || (x > 0 && memcmp(a, dst[k], (size_t)x)))
            T_FAIL("pair %d: CPU %d bytes, GPU %d", k, x, lens[k]);
        T_EQ(zero[k], migr_page_is_zero(n[k]));
    }
    printf("device: GPU output equals the CPU encoder on %d pairs\n", NP);
    return 0;
}
