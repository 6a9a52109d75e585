/* hv-glue/kvm internals shared by vmm.c and state.c. */
#ifndef MIGR_HV_KVM_H
#define MIGR_HV_KVM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "hv-glue/vcpu.h"
#include "migr/hv.h"

#define MIGR_KVM_STATE_VERSION 1u
#define KVM_MAX_SAVED_MSRS 32

struct kvm_vm;

struct kvm_vcpu_ctx {
    struct kvm_vm *vm;
    int id;
    int fd;
    struct kvm_run *run;
    bool io_pending;       /* last exit was I/O: complete it before saving state */
    char console[160];     /* the CONSOLE doorbell's current line, logged at '\n' or when full */
    uint32_t console_len;
    uint64_t exits;
    /* Dirty ring (VMs created with one, see migr_kvm_create_ring): KVM's
     * kvm_dirty_gfn array mapped from the vCPU fd, our next index to look
     * at, and the lock that lets one thread at a time collect it (the
     * tracker's harvest or this vCPU's KVM_EXIT_DIRTY_RING_FULL). */
    struct kvm_dirty_gfn *ring;
    uint32_t ring_fetch;
    pthread_mutex_t ring_lock;
    uint64_t ring_full_exits;
};

struct kvm_vm {
    struct migr_hv hv;     /* first: a struct migr_hv * is a struct kvm_vm * */
    struct hv_vcpus sm;    /* second: the vCPUs' run states and their lock (hv-glue/vcpu.h) */
    int kvm_fd, vm_fd, memfd;
    uint8_t *mem;
    uint64_t mem_size;
    uint64_t memfd_off;
    uint64_t tsc_khz;
    size_t run_size;
    struct kvm_cpuid2 *cpuid;
    bool manual_protect;
    uint32_t ring_entries; /* per-vCPU dirty ring entries; 0: the VM has no ring */
    bool ring_acq_rel;     /* enabled as KVM_CAP_DIRTY_LOG_RING_ACQ_REL */
    /* Pages that vCPU threads collected from their full rings, waiting for
     * the tracker's next harvest (atomic ORs / exchanges), and a count of
     * the bits added since the last harvest took them (0: nothing to scan). */
    uint64_t *ring_pending;
    uint64_t ring_pending_bits;
    uint32_t nmsrs;        /* MSRs this KVM lets us read, saved with each vCPU */
    uint32_t msrs[KVM_MAX_SAVED_MSRS];
    struct kvm_vcpu_ctx vcpus[WL_MAX_VCPUS];
};

int migr_kvm_available(void);
int migr_kvm_create(const struct migr_vm_config *cfg, struct migr_hv **out);

/* Default entries of a vCPU's dirty ring (16 bytes each: 64 KiB). */
#define MIGR_KVM_RING_DEFAULT 4096u
/*! As migr_kvm_create, with a dirty ring of ring_entries (a power of two;
 *  0: none, as migr_kvm_create) enabled on the VM before its vCPUs exist,
 *  so that the kvm-ring tracker can run (and kvm-bitmap cannot: KVM gives
 *  a VM one or the other). -ENOTSUP with the reason if KVM lacks
 *  KVM_CAP_DIRTY_LOG_RING or the size is out of its range. */
int migr_kvm_create_ring(const struct migr_vm_config *cfg, uint32_t ring_entries, struct migr_hv **out);
/*! 1 if this machine's KVM offers dirty rings (KVM_CAP_DIRTY_LOG_RING), else 0. */
int migr_kvm_ring_offered(void);
/*! 1 if hv is a VM of this backend (its struct migr_hv is a struct kvm_vm). */
int migr_kvm_is_vm(const struct migr_hv *hv);
/* The trackers this backend offers its guests (kvm_ops.trackers), best first. */
extern const struct migr_dirty_ops migr_kvm_dirty_bitmap, migr_kvm_dirty_ring;
extern const struct migr_dirty_ops *const migr_kvm_trackers[];
/*! 1 if hv is a KVM VM with a dirty ring, else 0 with the reason recorded. */
int migr_kvm_has_ring(struct migr_hv *hv);
int migr_kvm_create_incoming(const struct migr_vm_layout *h, int memfd, uint64_t memfd_off, struct migr_hv **out);
int migr_kvm_probe_msrs(struct kvm_vm *vm);
void migr_kvm_install_kick(void);

#endif
