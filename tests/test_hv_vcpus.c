/* hv-glue/vcpu.c, the vCPU state machine of the kvm and proc backends, on a
 * toy backend of host threads, in both of its shapes:
 *   - proc's: threads look at the requests between two steps and park by
 *     themselves, quiesce included (no ops but park_on_quiesce);
 *   - KVM's: a thread "in guest code" sees no request until it is kicked,
 *     the guest reaches its consistent point when asked through quiesce_req
 *     and reports it (hv_vcpus_quiesced), and before_park runs before PAUSED.
 * Each: pause / resume / quiesce / unquiesce acknowledged by every vCPU,
 * a quiesce that times out, a failing vCPU, and destroy joining threads
 * that only a kick gets out of guest code. */
#include <pthread.h>
#include <unistd.h>

#include "hv-glue/vcpu.h"
#include "testlib.h"

#define N 3

struct toy {
    struct migr_hv hv;
    struct hv_vcpus sm;
    uint32_t id[N];
    int kicked[N];      /* atomic: the kick that ends a stay in guest code */
    int quiesce_req;    /* atomic: the guest is asked to reach its point */
    int stuck;          /* atomic: vCPU 0 ignores everything (quiesce timeout) */
    int fail;           /* atomic: vCPU 1 fails at its next step */
    int kicks, parks;   /* under sm.lock */
};
HV_VCPUS_VM_CHECK(struct toy);

static void toy_kick(struct hv_vcpus *v, uint32_t i)
{
    struct toy *t = v->arg;
    t->kicks++;
    __atomic_store_n(&t->kicked[i], 1, __ATOMIC_RELEASE);
}

static void toy_quiesce_req(struct hv_vcpus *v, bool on)
{
    __atomic_store_n(&((struct toy *)v->arg)->quiesce_req, on, __ATOMIC_RELEASE);
}

static void toy_before_park(struct hv_vcpus *v, uint32_t i)
{
    ((struct toy *)v->arg)->parks++;
}

static const struct hv_vcpus_ops proc_like = {
    .quiesce_late = "the toy threads did not reach a step boundary",
    .park_on_quiesce = true,
};
static const struct hv_vcpus_ops kvm_like = {
    .quiesce_late = "the toy guest did not reach a consistent point",
    .kick = toy_kick,
    .quiesce_req = toy_quiesce_req,
    .before_park = toy_before_park,
};

/* One stay in "guest code": until a request (proc-like) or a kick (KVM-like). */
static void *toy_thread(void *arg)
{
    uint32_t *idp = arg, i = *idp;
    struct toy *t = (struct toy *)((char *)(idp - i) - offsetof(struct toy, id));
    bool kvm = t->sm.ops == &kvm_like;
    pthread_mutex_lock(&t->sm.lock);
    while (hv_vcpus_park(&t->sm, i)) {
        pthread_mutex_unlock(&t->sm.lock);
        bool failed = false, at_point = false;
        for (;;) {
            usleep(200);
            if (i == 0 && __atomic_load_n(&t->stuck, __ATOMIC_ACQUIRE))
                continue;
            if (i == 1 && __atomic_load_n(&t->fail, __ATOMIC_ACQUIRE)) {
                failed = true;
                break;
            }
            if (kvm ? __atomic_exchange_n(&t->kicked[i], 0, __ATOMIC_ACQ_REL) : hv_vcpus_held(&t->sm))
                break;
            if (kvm && __atomic_load_n(&t->quiesce_req, __ATOMIC_ACQUIRE)) {
                at_point = true;
                break;
            }
        }
        pthread_mutex_lock(&t->sm.lock);
        if (failed)
            hv_vcpus_fail(&t->sm, i, "boom %d", 42);
        else if (at_point)
            hv_vcpus_quiesced(&t->sm, i);
    }
    hv_vcpus_exit(&t->sm, i);
    pthread_mutex_unlock(&t->sm.lock);
    return NULL;
}

static bool all(struct toy *t, int state)
{
    pthread_mutex_lock(&t->sm.lock);
    bool ok = true;
    for (uint32_t i = 0; i < N; i++)
        ok = ok && t->sm.state[i] == state;
    pthread_mutex_unlock(&t->sm.lock);
    return ok;
}

static bool eventually(struct toy *t, int state)
{
    for (int k = 0; k < 2000; k++) {
        if (all(t, state))
            return true;
        usleep(1000);
    }
    return false;
}

static struct toy *toy_new(const struct hv_vcpus_ops *ops)
{
    struct toy *t = calloc(1, sizeof(*t));
    T_ASSERT(t);
    t->hv.nvcpus = N;
    hv_vcpus_init(&t->sm, &t->hv, ops, t);
    T_ASSERT(t->hv.paused && all(t, HV_VCPU_PAUSED));
    for (uint32_t i = 0; i < N; i++) {
        t->id[i] = i;
        T_OK(hv_vcpus_start(&t->sm, i, toy_thread, &t->id[i]));
    }
    return t;
}

static void run(const struct hv_vcpus_ops *ops)
{
    bool kvm = ops == &kvm_like;
    struct toy *t = toy_new(ops);

    T_OK(hv_vcpus_resume(&t->hv));
    T_ASSERT(!t->hv.paused && eventually(t, HV_VCPU_RUNNING));
    T_OK(hv_vcpus_pause(&t->hv));
    T_ASSERT(t->hv.paused && all(t, HV_VCPU_PAUSED));
    if (kvm)
        T_ASSERT(t->kicks >= N && t->parks == N);
    T_OK(hv_vcpus_quiesce(&t->hv, 1000)); /* paused: nothing moves, nothing to do */
    T_ASSERT(all(t, HV_VCPU_PAUSED) && !t->sm.quiesce_hold);

    T_OK(hv_vcpus_resume(&t->hv));
    T_ASSERT(eventually(t, HV_VCPU_RUNNING));
    int kicks = t->kicks;
    T_OK(hv_vcpus_quiesce(&t->hv, 2000));
    T_ASSERT(all(t, HV_VCPU_QUIESCED) && !t->hv.paused);
    T_ASSERT(t->kicks == kicks);          /* quiesce waits for the guest, it kicks no one */
    if (kvm)
        T_ASSERT(t->quiesce_req == 1);
    T_OK(hv_vcpus_unquiesce(&t->hv));
    T_ASSERT(t->quiesce_req == 0 && eventually(t, HV_VCPU_RUNNING));

    /* A vCPU that never reaches its point: a timeout naming the backend's
     * point, and the quiesce withdrawn (the others run again). */
    __atomic_store_n(&t->stuck, 1, __ATOMIC_RELEASE);
    T_EQ(hv_vcpus_quiesce(&t->hv, 50), -ETIMEDOUT);
    T_ASSERT(strstr(migr_last_error(), ops->quiesce_late) && strstr(migr_last_error(), "within 50 ms"));
    T_ASSERT(!t->sm.quiesce_hold && t->quiesce_req == 0 && !hv_vcpus_held(&t->sm));
    T_ASSERT(eventually(t, HV_VCPU_RUNNING));
    __atomic_store_n(&t->stuck, 0, __ATOMIC_RELEASE);

    /* A failing vCPU: its reason is the guest's, it counts as stopped. */
    __atomic_store_n(&t->fail, 1, __ATOMIC_RELEASE);
    for (int k = 0; k < 2000 && !hv_vcpus_failed(&t->hv); k++)
        usleep(1000);
    T_ASSERT(hv_vcpus_failed(&t->hv));
    T_ASSERT(strcmp(t->hv.failure, "vCPU 1: boom 42") == 0);
    T_EQ(hv_vcpus_quiesce(&t->hv, 1000), -EIO);
    T_ASSERT(strstr(migr_last_error(), "vCPU 1: boom 42"));
    T_OK(hv_vcpus_pause(&t->hv));
    pthread_mutex_lock(&t->sm.lock);
    T_ASSERT(t->sm.state[0] == HV_VCPU_PAUSED && t->sm.state[1] == HV_VCPU_EXITED);
    pthread_mutex_unlock(&t->sm.lock);
    T_EQ(hv_vcpus_resume(&t->hv), -EIO);
    T_ASSERT(t->hv.paused);

    /* Running threads (KVM-like: ones only a kick gets out of guest code)
     * are joined. */
    t->hv.failure[0] = 0;
    __atomic_store_n(&t->fail, 0, __ATOMIC_RELEASE);
    T_OK(hv_vcpus_resume(&t->hv));
    usleep(5000);
    hv_vcpus_destroy(&t->sm);
    for (uint32_t i = 0; i < N; i++)
        T_ASSERT(!t->sm.started[i]);
    free(t);
}

int main(void)
{
    run(&proc_like);
    run(&kvm_like);
    return 0;
}
