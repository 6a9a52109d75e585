/* compress: the GPU entry points of a build without CUDA (the default; `make
 * GPU=1` builds compress/gpu/xbzrle.cu instead and defines MIGR_HAVE_GPU). */
#include <errno.h>

#include "migr/codec.h"
#include "migr/common.h"

#ifndef MIGR_HAVE_GPU
int migr_gpu_available(void)
{
    return migr_errorf(ENOTSUP, "gpu: this build has no CUDA support (make GPU=1 with nvcc)");
}

int migr_gpu_xbzrle_encode(const uint8_t *old_pages, const uint8_t *new_pages, uint32_t count, uint8_t *dst,
                           int dlen, int *lens)
{
    (void)old_pages, (void)new_pages, (void)count, (void)dst, (void)dlen, (void)lens;
    return migr_gpu_available();
}

int migr_gpu_zero_pages(const uint8_t *pages, uint32_t count, uint8_t *zero)
{
    (void)pages, (void)count, (void)zero;
    return migr_gpu_available();
}
#endif
