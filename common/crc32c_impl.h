/* migr — CRC-32C internals, for tests only (the public API is migr/crc32c.h).
 * Same conventions as migr_crc32c(): crc is the previous CRC value, 0 to start. */
#ifndef MIGR_CRC32C_IMPL_H
#define MIGR_CRC32C_IMPL_H
#include <stddef.h>
#include <stdint.h>

/*! The table (slicing-by-8) implementation; works on every CPU. */
uint32_t migr_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/*! The SSE4.2 implementation. Only call it when migr_crc32c_hw_available(). */
uint32_t migr_crc32c_hw(uint32_t crc, const void *buf, size_t len);

/*! 1 if this CPU (and build) has the SSE4.2 crc32 instruction, else 0. */
int migr_crc32c_hw_available(void);

#endif
