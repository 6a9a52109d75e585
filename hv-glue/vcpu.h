/* hv-glue/vcpu.h — the vCPU run state machine of migr's backends (kvm,
 * proc); private to hv-glue.
 *
 * One lock and one condition variable per guest. Callers post requests
 * under the lock (pause, quiesce, stop); each vCPU thread acknowledges them
 * by moving its own state (PAUSED, QUIESCED, EXITED) and broadcasting; the
 * caller waits until every vCPU has, within a timeout:
 *
 *   RUNNING ──pause──▶ PAUSED ──resume──▶ RUNNING      any ──stop──▶ EXITED
 *   RUNNING ──quiesce──▶ QUIESCED ──unquiesce──▶ RUNNING
 *   a failing vCPU (hv_vcpus_fail) is EXITED and stays so until stop.
 *
 * What differs between backends is in struct hv_vcpus_ops: how a vCPU is
 * pushed out of guest code (KVM: immediate_exit + a signal; proc's threads
 * look at the requests after every page), how the guest is asked to reach
 * its consistent point (KVM: a flag in guest RAM, the guest rings the
 * QUIESCED doorbell; proc: the thread parks between two pages), and what a
 * vCPU does before it reports PAUSED (KVM: complete a pending MMIO exit).
 */
#ifndef MIGR_HV_VCPU_H
#define MIGR_HV_VCPU_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv-glue/workload/workload.h"
#include "migr/hv.h"

enum hv_vcpu_state { HV_VCPU_PAUSED = 1, HV_VCPU_RUNNING = 2, HV_VCPU_QUIESCED = 3, HV_VCPU_EXITED = 4 };

#define HV_VCPU_PAUSE_TIMEOUT_MS 5000

struct hv_vcpus;

struct hv_vcpus_ops {
    /* quiesce's timeout message: "<what> within N ms". */
    const char *quiesce_late;
    /* true: a vCPU thread parks in QUIESCED by itself while a quiesce is
     * held (hv_vcpus_park). false: the guest reports it (hv_vcpus_quiesced). */
    bool park_on_quiesce;
    /* Lock held: push vCPU i (RUNNING or QUIESCED, or any but EXITED when
     * stopping) out of guest code to its loop. NULL: the threads look at
     * the requests by themselves (hv_vcpus_held). */
    void (*kick)(struct hv_vcpus *v, uint32_t i);
    /* Lock held: ask the guest to stop at (on) / go on from (off) its
     * consistent point. NULL: nothing to tell the guest. */
    void (*quiesce_req)(struct hv_vcpus *v, bool on);
    /* Lock held, on vCPU i's thread, before it reports PAUSED. NULL: none. */
    void (*before_park)(struct hv_vcpus *v, uint32_t i);
};

struct hv_vcpus {
    pthread_mutex_t lock;
    pthread_cond_t cond;                   /* CLOCK_MONOTONIC: state changes and timed sleeps */
    bool pause_req, stop_req, quiesce_hold; /* under lock */
    uint32_t hold;                         /* any of the three; read without the lock (hv_vcpus_held) */
    const struct hv_vcpus_ops *ops;
    struct migr_hv *hv;                    /* nvcpus, paused, failure */
    void *arg;                             /* the backend's VM, for the ops */
    int state[WL_MAX_VCPUS];               /* enum hv_vcpu_state, under lock */
    pthread_t thread[WL_MAX_VCPUS];
    bool started[WL_MAX_VCPUS];
};

/* Set up v for hv (paused, every vCPU PAUSED, no thread yet). */
void hv_vcpus_init(struct hv_vcpus *v, struct migr_hv *hv, const struct hv_vcpus_ops *ops, void *arg);
/* Start vCPU i's thread fn(arg). 0 or -errno with the reason. */
int hv_vcpus_start(struct hv_vcpus *v, uint32_t i, void *(*fn)(void *), void *arg);
/* Stop and join every started thread (kicking them if the ops can), then
 * free the lock and condition variable. */
void hv_vcpus_destroy(struct hv_vcpus *v);

/* ---- on a vCPU thread, lock held ---- */
/* Wait while vCPU i must not run, acknowledging each request. true: run
 * (state RUNNING); false: stop requested, the thread ends (hv_vcpus_exit). */
bool hv_vcpus_park(struct hv_vcpus *v, uint32_t i);
/* The thread ends: EXITED. */
void hv_vcpus_exit(struct hv_vcpus *v, uint32_t i);
/* vCPU i stopped by itself: record "vCPU i: <why>" as the guest's failure
 * (the first one wins; logged), EXITED. */
void hv_vcpus_fail(struct hv_vcpus *v, uint32_t i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The guest on vCPU i stands at its consistent point: QUIESCED until the
 * quiesce is withdrawn or a pause or stop comes. */
void hv_vcpus_quiesced(struct hv_vcpus *v, uint32_t i);
/* Nothing to do until deadline_ns (migr_now_ns clock): wait, unless a
 * request comes first. */
void hv_vcpus_sleep_until(struct hv_vcpus *v, uint64_t deadline_ns);

/* Without the lock: a request is pending (the thread should go park). */
static inline bool hv_vcpus_held(struct hv_vcpus *v)
{
    return __atomic_load_n(&v->hold, __ATOMIC_ACQUIRE) != 0;
}

/* ---- the backend's migr_hv_ops, lock not held ----
 * A backend's VM starts with the layout of struct hv_vcpus_vm (its struct
 * migr_hv, then its struct hv_vcpus; HV_VCPUS_VM_CHECK says so at compile
 * time) and puts these in its migr_hv_ops as they are. */
struct hv_vcpus_vm {
    struct migr_hv hv;
    struct hv_vcpus sm;
};
#define HV_VCPUS_VM_CHECK(type)                                                                  \
    _Static_assert(offsetof(type, hv) == offsetof(struct hv_vcpus_vm, hv) &&                     \
                   offsetof(type, sm) == offsetof(struct hv_vcpus_vm, sm),                       \
                   #type " must start with struct migr_hv hv, then struct hv_vcpus sm")
int hv_vcpus_pause(struct migr_hv *hv);
int hv_vcpus_resume(struct migr_hv *hv);
int hv_vcpus_quiesce(struct migr_hv *hv, int timeout_ms);
int hv_vcpus_unquiesce(struct migr_hv *hv);
int hv_vcpus_failed(struct migr_hv *hv);

#endif
