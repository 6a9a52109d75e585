/* migr — the shape of a guest as a destination sees it before any page
 * arrives: RAM regions (guest-physical base and size, holes allowed between
 * them), page size, vCPU count, and which VMM (type string and the version of
 * its state blob) it comes from. Shared by the hypervisor interface (hv.h:
 * the caller builds the incoming guest from it) and the wire format
 * (format.h: HELLO carries it); neither depends on the other. */
#ifndef MIGR_LAYOUT_H
#define MIGR_LAYOUT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MIGR_MAX_REGIONS 64u
#define MIGR_MAX_VCPUS 64u

struct migr_layout_region {
    uint64_t gpa;    /* guest-physical base, page aligned */
    uint64_t size;   /* bytes, page aligned, > 0 */
};

struct migr_vm_layout {
    uint32_t page_size;          /* 4096 */
    uint32_t nvcpus;             /* 1..MIGR_MAX_VCPUS */
    uint32_t nregions;           /* 1..MIGR_MAX_REGIONS, ascending, not overlapping */
    uint32_t state_version;      /* version of the VMM's state blob */
    char vmm[16];                /* the VMM's type ("kvm", "proc", or an embedder's), NUL-terminated */
    struct migr_layout_region regions[MIGR_MAX_REGIONS];
};

#ifdef __cplusplus
}
#endif

#endif
