/* The guest: a CPL3 program with no kernel, no IDT and no interrupts.
 * Each vCPU enters _start with rdi = vCPU id and rsp = its stack (set by the
 * VMM), then rewrites working-set pages at the configured rate forever
 * (run.c). It must never fault: any exception is a triple fault (see DESIGN.md). */
#include <stdint.h>
#include "hv-glue/kvm/guest/run.h"

__asm__(".section .text.start\n"
        ".global _start\n"
        "_start:\n"
        "    call guest_main\n"
        "1:  movabs $0x1000000014, %rdx\n"   /* WL_MMIO_GPA + WL_DB_PANIC */
        "    movl $0xdead, (%rdx)\n"
        "    jmp 1b\n"
        ".previous\n");

void guest_main(uint64_t id);
void guest_main(uint64_t id)
{
    struct wl_boot *b = (struct wl_boot *)WL_BOOT_GPA;
    if (b->magic != WL_BOOT_MAGIC || b->version != WL_VERSION || id >= b->nvcpus)
        guest_doorbell(WL_DB_PANIC, 1);
    guest_run(b, id);
}
