/* The workload loop (run.h) and the two functions gcc may call even in
 * freestanding code. */
#include "hv-glue/kvm/guest/run.h"

void *memset(void *d, int c, unsigned long n);
void *memcpy(void *d, const void *s, unsigned long n);
void *memset(void *d, int c, unsigned long n)
{
    uint8_t *p = d;
    while (n--)
        *p++ = (uint8_t)c;
    return d;
}
void *memcpy(void *d, const void *s, unsigned long n)
{
    uint8_t *p = d;
    const uint8_t *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

void guest_run(struct wl_boot *b, uint64_t id)
{
    struct wl_vcpu *v = (struct wl_vcpu *)WL_VCPU_GPA + id;
    uint8_t *ram;
    /* The guest's view of guest-physical 0, hidden from the optimiser so
     * that offsets from it are not treated as null dereferences. */
    __asm__("" : "=r"(ram) : "0"(0ul));

    if (v->rng == 0)
        v->rng = wl_mix(b->seed ^ (id + 1) * 0x9E3779B97F4A7C15ull) | 1;

    uint64_t tsc_hz = b->tsc_khz * 1000;
    /* TSC ticks between two page writes of this vCPU. */
    uint64_t per_page = b->rate_bytes ? tsc_hz * 4096 * b->nvcpus / b->rate_bytes : 0;
    uint64_t next = guest_rdtsc();
    /* A VMM without the sleep doorbell (QEMU: an ignored MMIO write) returns
     * at once; after 8 such returns in a row the loop spins on PAUSE alone
     * for a second, then tries the doorbell again, so that a throttled guest
     * there costs no exit per iteration (QEMU takes its big lock on each). */
    uint32_t early = 0;
    uint64_t no_sleep_until = next;
    for (;;) {
        if (b->quiesce_req)
            guest_doorbell(WL_DB_QUIESCED, (uint32_t)id);
        if (per_page) {
            uint64_t now = guest_rdtsc();
            if ((int64_t)(next - now) > 0) {
                if (next - now > tsc_hz) {
                    next = now;   /* TSC jumped back (migration to another host) */
                } else {
                    uint64_t us = (next - now) / (tsc_hz / 1000000 ? tsc_hz / 1000000 : 1);
                    v->spins = v->spins + 1;
                    if (us >= 200 && (int64_t)(now - no_sleep_until) >= 0) {
                        guest_doorbell(WL_DB_SLEEP, (uint32_t)us);
                        if (guest_rdtsc() - now < (next - now) / 4) {
                            if (++early >= 8) {
                                no_sleep_until = now + tsc_hz;
                                early = 0;
                            }
                        } else {
                            early = 0;
                        }
                    } else {
                        __asm__ __volatile__("pause");
                    }
                    continue;
                }
            } else if (now - next > tsc_hz / 10) {
                next = now;       /* stalled (paused, migrated): no burst to catch up */
            }
            next += per_page;
        }
        uint64_t index = wl_next_page(b, v, (uint32_t)id);
        if (index != ~0ull)
            wl_write_page(ram, b, v, index);
    }
}
