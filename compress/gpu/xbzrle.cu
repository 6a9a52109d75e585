/* compress/gpu: CUDA zero-page detection and XBZRLE encoding (GMigrate in
 * the seeds). Built only with `make GPU=1` where nvcc exists; the default
 * build uses compress/gpu_stub.c. One GPU thread encodes one page with the
 * code of xbzrle_model.h, so the bytes equal the CPU encoders' (checked on
 * the host by tests/test_codec_gpu.c, on the device where one exists).
 * Simple by intent: a page per thread, synchronous copies, no streams. */
#include <cuda_runtime.h>
#include <errno.h>
#include <stdint.h>

extern "C" {
#include "migr/codec.h"
#include "migr/common.h"
}
#include "compress/gpu/xbzrle_model.h"

__global__ static void k_xbzrle(const uint8_t *o, const uint8_t *n, uint32_t count, uint8_t *dst, int dlen,
                                int *lens)
{
    uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count)
        lens[i] = migr_gpu_xbzrle_model(o + (size_t)i * MIGR_PAGE_SIZE, n + (size_t)i * MIGR_PAGE_SIZE,
                                        MIGR_PAGE_SIZE, dst + (size_t)i * dlen, dlen);
}

__global__ static void k_zero(const uint8_t *p, uint32_t count, uint8_t *zero)
{
    uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count)
        zero[i] = (uint8_t)migr_gpu_page_is_zero(p + (size_t)i * MIGR_PAGE_SIZE, MIGR_PAGE_SIZE);
}

static int cuda_err(cudaError_t e, const char *what)
{
    return migr_errorf(EIO, "gpu: %s: %s", what, cudaGetErrorString(e));
}

extern "C" int migr_gpu_available(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        return migr_errorf(ENODEV, "gpu: no CUDA device: %s", cudaGetErrorString(e));
    return n > 0 ? 0 : migr_errorf(ENODEV, "gpu: no CUDA device");
}

extern "C" int migr_gpu_xbzrle_encode(const uint8_t *old_pages, const uint8_t *new_pages, uint32_t count,
                                      uint8_t *dst, int dlen, int *lens)
{
    size_t in = (size_t)count * MIGR_PAGE_SIZE, out = (size_t)count * (size_t)dlen;
    uint8_t *d_o = NULL, *d_n = NULL, *d_dst = NULL;
    int *d_lens = NULL, err = 0;
    cudaError_t e;
    if (count == 0)
        return 0;
    if (dlen < 0)
        return migr_errorf(EINVAL, "gpu: dlen %d", dlen);
    if ((e = cudaMalloc(&d_o, in)) != cudaSuccess || (e = cudaMalloc(&d_n, in)) != cudaSuccess ||
        (e = cudaMalloc(&d_dst, out ? out : 1)) != cudaSuccess ||
        (e = cudaMalloc(&d_lens, count * sizeof(int))) != cudaSuccess) {
        err = cuda_err(e, "cudaMalloc");
        goto out;
    }
    if ((e = cudaMemcpy(d_o, old_pages, in, cudaMemcpyHostToDevice)) != cudaSuccess ||
        (e = cudaMemcpy(d_n, new_pages, in, cudaMemcpyHostToDevice)) != cudaSuccess) {
        err = cuda_err(e, "copy in");
        goto out;
    }
    k_xbzrle<<<(count + 127) / 128, 128>>>(d_o, d_n, count, d_dst, dlen, d_lens);
    if ((e = cudaGetLastError()) != cudaSuccess || (e = cudaDeviceSynchronize()) != cudaSuccess) {
        err = cuda_err(e, "xbzrle kernel");
        goto out;
    }
    if ((out && (e = cudaMemcpy(dst, d_dst, out, cudaMemcpyDeviceToHost)) != cudaSuccess) ||
        (e = cudaMemcpy(lens, d_lens, count * sizeof(int), cudaMemcpyDeviceToHost)) != cudaSuccess)
        err = cuda_err(e, "copy out");
out:
    cudaFree(d_o);
    cudaFree(d_n);
    cudaFree(d_dst);
    cudaFree(d_lens);
    return err;
}

extern "C" int migr_gpu_zero_pages(const uint8_t *pages, uint32_t count, uint8_t *zero)
{
    size_t in = (size_t)count * MIGR_PAGE_SIZE;
    uint8_t *d_p = NULL, *d_z = NULL;
    int err = 0;
    cudaError_t e;
    if (count == 0)
        return 0;
    if ((e = cudaMalloc(&d_p, in)) != cudaSuccess || (e = cudaMalloc(&d_z, count)) != cudaSuccess) {
        err = cuda_err(e, "cudaMalloc");
        goto out;
    }
    if ((e = cudaMemcpy(d_p, pages, in, cudaMemcpyHostToDevice)) != cudaSuccess) {
        err = cuda_err(e, "copy in");
        goto out;
    }
    k_zero<<<(count + 127) / 128, 128>>>(d_p, count, d_z);
    if ((e = cudaGetLastError()) != cudaSuccess || (e = cudaDeviceSynchronize()) != cudaSuccess ||
        (e = cudaMemcpy(zero, d_z, count, cudaMemcpyDeviceToHost)) != cudaSuccess)
        err = cuda_err(e, "zero kernel");
out:
    cudaFree(d_p);
    cudaFree(d_z);
    return err;
}
