/* The per-page XBZRLE encoder and zero-page test that the CUDA kernels
 * (xbzrle.cu) run, one GPU thread per page. The same code compiles for the
 * host (MIGR_HD empty), so tests/test_codec_gpu.c checks it against the CPU
 * encoders on every build, with or without a GPU.
 *
 * A byte-at-a-time model of QEMU's xbzrle_encode_buffer (docs/compress.md,
 * "Encoder"): 2 bytes free before each zero run and before each non-zero
 * run, the run's bytes must fit, a trailing zero run is not written,
 * identical pages give 0, a run longer than 16383 bytes gives -1. */
#ifndef MIGR_COMPRESS_GPU_XBZRLE_MODEL_H
#define MIGR_COMPRESS_GPU_XBZRLE_MODEL_H

#include <stdint.h>

#ifdef __CUDACC__
#define MIGR_HD __host__ __device__
#else
#define MIGR_HD static inline
#endif

MIGR_HD int migr_gpu_uleb(uint8_t *p, int v)
{
    if (v < 0x80) {
        p[0] = (uint8_t)v;
        return 1;
    }
    p[0] = (uint8_t)((v & 0x7f) | 0x80);
    p[1] = (uint8_t)(v >> 7);
    return 2;
}

MIGR_HD int migr_gpu_xbzrle_model(const uint8_t *o, const uint8_t *n, int slen, uint8_t *dst, int dlen)
{
    int i = 0, d = 0;
    while (i < slen) {
        if (d + 2 > dlen)
            return -1;
        int zrun = 0;
        while (i < slen && o[i] == n[i]) {
            i++;
            zrun++;
        }
        if (zrun == slen)
            return 0;
        if (i == slen)
            return d;
        if (zrun > 0x3fff)
            return -1;
        d += migr_gpu_uleb(dst + d, zrun);
        if (d + 2 > dlen)
            return -1;
        int start = i, nz = 0;
        while (i < slen && o[i] != n[i]) {
            i++;
            nz++;
        }
        if (nz > 0x3fff)
            return -1;
        d += migr_gpu_uleb(dst + d, nz);
        if (d + nz > dlen)
            return -1;
        for (int k = 0; k < nz; k++)
            dst[d + k] = n[start + k];
        d += nz;
    }
    return d;
}

MIGR_HD int migr_gpu_page_is_zero(const uint8_t *p, int len)
{
    const uint64_t *w = (const uint64_t *)p;
    uint64_t acc = 0;
    for (int i = 0; i < len / 8; i++)
        acc |= w[i];
    return acc == 0;
}

#endif
