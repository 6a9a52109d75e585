/* The guest's workload loop, shared by migr's flat guest (main.c) and the
 * PVH guest (bench/peers/pvh/): CPL3, freestanding, never faults. */
#ifndef MIGR_GUEST_RUN_H
#define MIGR_GUEST_RUN_H

#include <stdint.h>
#include "hv-glue/workload/workload.h"

static inline void guest_doorbell(uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)(WL_MMIO_GPA + off) = v;
}

static inline uint64_t guest_rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

/* Rewrite working-set pages of b at b->rate_bytes as vCPU id, forever.
 * Rings WL_DB_QUIESCED when the VMM asks for a consistent point and
 * WL_DB_SLEEP when throttled; both return at once where no VMM listens
 * (QEMU), and the TSC alone keeps the rate. */
void guest_run(struct wl_boot *b, uint64_t id) __attribute__((noreturn));

#endif
