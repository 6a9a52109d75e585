/* hv-glue/kvm internals shared by vmm.c and state.c. */
#ifndef MIGR_HV_KVM_H
#define MIGR_HV_KVM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "migr/hv.h"

#define MIGR_KVM_STATE_VERSION 1u
#define KVM_MAX_SAVED_MSRS 32

enum { VCPU_PAUSED = 1, VCPU_RUNNING = 2, VCPU_QUIESCED = 3, VCPU_EXITED = 4 };

struct kvm_vm;

struct kvm_vcpu_ctx {
    struct kvm_vm *vm;
    int id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    bool io_pending;       /* last exit was I/O: complete it before saving state */
    int state;             /* VCPU_*, under vm->lock */
    uint64_t exits;
};

struct kvm_vm {
    struct migr_hv hv;     /* first: a struct migr_hv * is a struct kvm_vm * */
    int kvm_fd, vm_fd, memfd;
    uint8_t *mem;
    uint64_t mem_size;
    uint64_t memfd_off;
    uint64_t tsc_khz;
    size_t run_size;
    struct kvm_cpuid2 *cpuid;
    bool manual_protect;
    uint32_t nmsrs;        /* MSRs this KVM lets us read, saved with each vCPU */
    uint32_t msrs[KVM_MAX_SAVED_MSRS];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool pause_req, stop_req, quiesce_hold;
    struct kvm_vcpu_ctx vcpus[64];
};

int migr_kvm_available(void);
int migr_kvm_create(const struct migr_vm_config *cfg, struct migr_hv **out);
int migr_kvm_create_incoming(const struct migr_hello *h, int memfd, uint64_t memfd_off, struct migr_hv **out);
int migr_kvm_probe_msrs(struct kvm_vm *vm);
void migr_kvm_install_kick(void);
int kvm_unquiesce_impl(struct kvm_vm *vm);

#endif
