/* hv-glue/proc: a guest that is a process's own memory — one memfd region at
 * gpa 0 with the KVM guest's layout, written by N "vCPU" threads running the
 * workload loop of hv-glue/kvm/guest/main.c. For hosts without /dev/kvm, and
 * for the process dirty trackers in dirty/. */
#ifndef MIGR_HV_PROC_H
#define MIGR_HV_PROC_H

#include <stdint.h>
#include "migr/hv.h"

/* STATE blob format of the proc backend (see proc.c). */
#define MIGR_PROC_STATE_VERSION 1u

int migr_proc_create(const struct migr_vm_config *cfg, struct migr_hv **out);
/*! Empty shell for an incoming guest. memfd >= 0: map that memory (hand-over;
 *  the fd is owned by the guest from here, closed on failure too). */
int migr_proc_create_incoming(const struct migr_vm_layout *h, int memfd, uint64_t memfd_off,
                              struct migr_hv **out);

/*! Tests only: replace each vCPU's workload step (throttle, choose a page,
 *  write it) by fn(arg, hv, vcpu), called back to back while the guest runs;
 *  pause, quiesce and stop act between two calls. fn = NULL restores the
 *  workload. The guest must be paused. 0, -EINVAL (not a proc guest) or -EBUSY. */
typedef void (*migr_proc_step_fn)(void *arg, struct migr_hv *hv, uint32_t vcpu);
int migr_proc_set_step(struct migr_hv *hv, migr_proc_step_fn fn, void *arg);

#endif
