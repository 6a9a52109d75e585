/* hv-glue/vcpu.c — the vCPU run state machine shared by kvm and proc
 * (see vcpu.h for the states and who moves them). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "hv-glue/vcpu.h"
#include "migr/common.h"

/* A kicked vCPU is kicked again this often while we wait: the signal can
 * land just before its thread enters KVM_RUN. */
#define REKICK_NS 2000000ull

static struct timespec ts_of(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
}

/* Under lock, after any change of the three requests. */
static void update_hold(struct hv_vcpus *v)
{
    __atomic_store_n(&v->hold, (uint32_t)(v->pause_req || v->quiesce_hold || v->stop_req), __ATOMIC_RELEASE);
    pthread_cond_broadcast(&v->cond);
}

void hv_vcpus_init(struct hv_vcpus *v, struct migr_hv *hv, const struct hv_vcpus_ops *ops, void *arg)
{
    pthread_condattr_t ca;
    pthread_mutex_init(&v->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->cond, &ca);
    pthread_condattr_destroy(&ca);
    v->ops = ops;
    v->hv = hv;
    v->arg = arg;
    v->pause_req = true;
    v->hold = 1;
    for (uint32_t i = 0; i < WL_MAX_VCPUS; i++)
        v->state[i] = HV_VCPU_PAUSED;
    hv->paused = true;
}

int hv_vcpus_start(struct hv_vcpus *v, uint32_t i, void *(*fn)(void *), void *arg)
{
    int err = pthread_create(&v->thread[i], NULL, fn, arg);
    if (err)
        return migr_errorf(err, "pthread_create for vCPU %u", i);
    v->started[i] = true;
    return 0;
}

void hv_vcpus_destroy(struct hv_vcpus *v)
{
    pthread_mutex_lock(&v->lock);
    v->stop_req = true;
    update_hold(v);
    pthread_mutex_unlock(&v->lock);
    for (uint32_t i = 0; i < WL_MAX_VCPUS; i++) {
        if (!v->started[i])
            continue;
        /* A vCPU inside guest code sees no request until it is kicked. */
        for (bool done = !v->ops->kick; !done;) {
            pthread_mutex_lock(&v->lock);
            done = v->state[i] == HV_VCPU_EXITED;
            if (!done)
                v->ops->kick(v, i);
            pthread_mutex_unlock(&v->lock);
            if (!done)
                usleep(1000);
        }
        pthread_join(v->thread[i], NULL);
        v->started[i] = false;
    }
    pthread_mutex_destroy(&v->lock);
    pthread_cond_destroy(&v->cond);
}

/* ---------- on a vCPU thread ---------- */

bool hv_vcpus_park(struct hv_vcpus *v, uint32_t i)
{
    for (;;) {
        if (v->stop_req)
            return false;
        int want = v->state[i] == HV_VCPU_EXITED                  ? HV_VCPU_EXITED
                   : v->pause_req                                 ? HV_VCPU_PAUSED
                   : v->quiesce_hold && v->ops->park_on_quiesce   ? HV_VCPU_QUIESCED
                                                                  : HV_VCPU_RUNNING;
        if (want == HV_VCPU_RUNNING) {
            v->state[i] = HV_VCPU_RUNNING;
            return true;
        }
        if (v->state[i] != want) {
            if (want == HV_VCPU_PAUSED && v->ops->before_park)
                v->ops->before_park(v, i);
            v->state[i] = want;
            pthread_cond_broadcast(&v->cond);
        }
        pthread_cond_wait(&v->cond, &v->lock);
    }
}

void hv_vcpus_exit(struct hv_vcpus *v, uint32_t i)
{
    v->state[i] = HV_VCPU_EXITED;
    pthread_cond_broadcast(&v->cond);
}

void hv_vcpus_fail(struct hv_vcpus *v, uint32_t i, const char *fmt, ...)
{
    struct migr_hv *hv = v->hv;
    if (hv->failure[0] == 0) {
        va_list ap;
        int n = snprintf(hv->failure, sizeof(hv->failure), "vCPU %u: ", i);
        va_start(ap, fmt);
        vsnprintf(hv->failure + n, sizeof(hv->failure) - (size_t)n, fmt, ap);
        va_end(ap);
        migr_logf(MIGR_LOG_ERROR, "guest stopped: %s", hv->failure);
    }
    hv_vcpus_exit(v, i);
}

void hv_vcpus_quiesced(struct hv_vcpus *v, uint32_t i)
{
    v->state[i] = HV_VCPU_QUIESCED;
    pthread_cond_broadcast(&v->cond);
    while (v->quiesce_hold && !v->stop_req && !v->pause_req)
        pthread_cond_wait(&v->cond, &v->lock);
}

void hv_vcpus_sleep_until(struct hv_vcpus *v, uint64_t deadline_ns)
{
    struct timespec dl = ts_of(deadline_ns);
    while (!v->hold && pthread_cond_timedwait(&v->cond, &v->lock, &dl) == 0)
        ;
}

/* ---------- requests ---------- */

static bool all_in(const struct hv_vcpus *v, int s1, int s2)
{
    for (uint32_t i = 0; i < v->hv->nvcpus; i++)
        if (v->state[i] != s1 && v->state[i] != s2)
            return false;
    return true;
}

/* Wait (lock held) until every vCPU is in s1 or s2, kicking those still
 * in guest code if kick; false after timeout_ms. */
static bool wait_all(struct hv_vcpus *v, int s1, int s2, int timeout_ms, bool kick)
{
    uint64_t deadline = migr_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    kick = kick && v->ops->kick;
    while (!all_in(v, s1, s2)) {
        if (kick)
            for (uint32_t i = 0; i < v->hv->nvcpus; i++)
                if (v->state[i] == HV_VCPU_RUNNING || v->state[i] == HV_VCPU_QUIESCED)
                    v->ops->kick(v, i);
        uint64_t now = migr_now_ns();
        if (now >= deadline)
            return all_in(v, s1, s2);
        struct timespec step = ts_of(kick ? MIGR_MIN(now + REKICK_NS, deadline) : deadline);
        pthread_cond_timedwait(&v->cond, &v->lock, &step);
    }
    return true;
}

static struct hv_vcpus *sm_of(struct migr_hv *hv)
{
    return &((struct hv_vcpus_vm *)hv)->sm;
}

int hv_vcpus_pause(struct migr_hv *hv)
{
    struct hv_vcpus *v = sm_of(hv);
    pthread_mutex_lock(&v->lock);
    v->pause_req = true;
    update_hold(v);
    bool ok = wait_all(v, HV_VCPU_PAUSED, HV_VCPU_EXITED, HV_VCPU_PAUSE_TIMEOUT_MS, true);
    pthread_mutex_unlock(&v->lock);
    if (!ok)
        return migr_errorf(ETIMEDOUT, "pause: the vCPUs did not stop within %d ms", HV_VCPU_PAUSE_TIMEOUT_MS);
    hv->paused = true;
    return 0;
}

int hv_vcpus_resume(struct migr_hv *hv)
{
    struct hv_vcpus *v = sm_of(hv);
    if (hv->failure[0])
        return migr_errorf(EIO, "resume: the guest has stopped: %s", hv->failure);
    pthread_mutex_lock(&v->lock);
    v->pause_req = false;
    update_hold(v);
    pthread_mutex_unlock(&v->lock);
    hv->paused = false;
    return 0;
}

static void unquiesce(struct hv_vcpus *v)
{
    pthread_mutex_lock(&v->lock);
    if (v->ops->quiesce_req)
        v->ops->quiesce_req(v, false);
    v->quiesce_hold = false;
    update_hold(v);
    pthread_mutex_unlock(&v->lock);
}

int hv_vcpus_quiesce(struct migr_hv *hv, int timeout_ms)
{
    struct hv_vcpus *v = sm_of(hv);
    if (hv->paused)
        return 0; /* nothing moves; a KVM vCPU paused mid-page shows as a write caught mid-page */
    if (hv->failure[0])
        return migr_errorf(EIO, "quiesce: the guest has stopped: %s", hv->failure);
    pthread_mutex_lock(&v->lock);
    v->quiesce_hold = true;
    if (v->ops->quiesce_req)
        v->ops->quiesce_req(v, true);
    update_hold(v);
    bool ok = wait_all(v, HV_VCPU_QUIESCED, HV_VCPU_EXITED, timeout_ms, false);
    bool exited = !all_in(v, HV_VCPU_QUIESCED, HV_VCPU_QUIESCED);
    pthread_mutex_unlock(&v->lock);
    if (!ok || exited) {
        unquiesce(v);
        if (hv->failure[0])
            return migr_errorf(EIO, "quiesce: the guest has stopped: %s", hv->failure);
        return migr_errorf(ETIMEDOUT, "quiesce: %s within %d ms", v->ops->quiesce_late, timeout_ms);
    }
    return 0;
}

int hv_vcpus_unquiesce(struct migr_hv *hv)
{
    if (!hv->paused)
        unquiesce(sm_of(hv));
    return 0;
}

int hv_vcpus_failed(struct migr_hv *hv)
{
    return hv->failure[0] != 0;
}
