#ifndef MIGR_CRC32C_H
#define MIGR_CRC32C_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of buf, continuing
 *  from crc (pass 0 to start). crc32c("123456789") == 0xE3069283.
 *  Uses SSE4.2 when the CPU has it (checked once at run time). Thread-safe;
 *  never blocks. */
uint32_t migr_crc32c(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
