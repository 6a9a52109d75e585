/* Helpers for the in-process engine tests: a receiver thread running
 * migr_recv() behind a listener, and whole-image verification. */
#ifndef MIGR_TEST_MIGRATELIB_H
#define MIGR_TEST_MIGRATELIB_H

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include "migr/engine.h"
#include "migr/workload.h"
#include "testlib.h"

struct t_rx {
    uint32_t decode_threads;      /* migr_recv_params.decode_threads (t_rx_start_ex) */
    struct migr_listener *l;
    pthread_t th;
    struct migr_hv *hv;           /* the received guest, if migr_recv succeeded */
    struct migr_stats st;
    int rc;
};

static inline void *t_rx_main(void *arg)
{
    struct t_rx *x = arg;
    struct migr_transport *t;
    x->rc = migr_listener_accept(x->l, 10000, &t);
    if (x->rc < 0)
        return NULL;
    struct migr_recv_params p = {.size = sizeof(p), .decode_threads = x->decode_threads};
    migr_stats_init(&x->st);
    x->rc = migr_recv_ex(t, &p, &x->hv, &x->st);
    if (x->rc < 0)
        fprintf(stderr, "recv: %s\n", x->st.error);
    migr_transport_close(t);
    return NULL;
}

/* Listen on url and receive one guest in a thread with decode_threads
 * decoders (0 = the default); x->l->bound is the URL to connect to. */
static inline void t_rx_start_ex(struct t_rx *x, const char *url, uint32_t decode_threads)
{
    memset(x, 0, sizeof(*x));
    x->decode_threads = decode_threads;
    T_OK(migr_listener_open(url, &x->l));
    T_ASSERT(pthread_create(&x->th, NULL, t_rx_main, x) == 0);
}

static inline void t_rx_start(struct t_rx *x, const char *url)
{
    t_rx_start_ex(x, url, 0);
}

static inline void t_rx_join(struct t_rx *x)
{
    pthread_join(x->th, NULL);
    migr_listener_close(x->l);
    x->l = NULL;
}

/* A running guest of backend ("kvm", "proc") with workload spec wl, left to
 * dirty memory for warm_ms first. */
static inline struct migr_hv *t_guest(const char *backend, uint64_t mem, uint32_t nvcpus, const char *wl, int warm_ms)
{
    struct migr_vm_config cfg = {.mem_bytes = mem, .nvcpus = nvcpus};
    struct migr_hv *hv;
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse(wl, &cfg.wl));
    T_OK(migr_hv_create(backend, &cfg, &hv));
    T_OK(hv->ops->resume(hv));
    usleep((useconds_t)warm_ms * 1000);
    return hv;
}

/* Migrate src to a receiver thread listening on url with params p; st gets
 * the source's summary, x the destination's result (x->hv, x->rc, x->st).
 * Returns migr_send's result. */
static inline int t_send(struct migr_hv *src, const char *url, const struct migr_send_params *p,
                         struct migr_stats *st, struct t_rx *x)
{
    struct migr_transport *t;
    t_rx_start(x, url);
    T_OK(migr_transport_connect(x->l->bound, &t));
    int rc = migr_send(src, t, p, st);
    migr_transport_close(t);
    t_rx_join(x);
    return rc;
}

/* Cancel a migration from outside, as `migr cancel` does: a thread calls
 * migr_cancel_request(c) once *count (a counter another thread updates, e.g.
 * the destination's x.st.pages) reaches at. t_cancel_stop: join. */
struct t_canceller {
    struct migr_cancel *c;
    const uint64_t *count;
    uint64_t at;
    bool stop, fired;
    pthread_t th;
};

static inline void *t_cancel_main(void *arg)
{
    struct t_canceller *k = arg;
    while (!__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(k->count, __ATOMIC_RELAXED) >= k->at) {
            migr_cancel_request(k->c);
            k->fired = true;
            break;
        }
        usleep(100);
    }
    return NULL;
}

static inline void t_cancel_start(struct t_canceller *k, struct migr_cancel *c, const uint64_t *count, uint64_t at)
{
    *k = (struct t_canceller){.c = c, .count = count, .at = at};
    T_ASSERT(pthread_create(&k->th, NULL, t_cancel_main, k) == 0);
}

static inline void t_cancel_stop(struct t_canceller *k)
{
    __atomic_store_n(&k->stop, true, __ATOMIC_RELEASE);
    pthread_join(k->th, NULL);
}

/* Quiesce, verify every page, let the guest run again; fails the test if not intact. */
static inline void t_verify(struct migr_hv *hv, const char *where)
{
    struct migr_verify_report rep;
    T_OK(hv->ops->quiesce(hv, 5000));
    T_OK(migr_workload_verify(hv, &rep));
    T_OK(hv->ops->unquiesce(hv));
    if (!rep.ok)
        T_FAIL("verify %s: %s (%llu bad pages)", where, rep.first_bad_why, (unsigned long long)rep.bad_pages);
    T_ASSERT(rep.pages_checked > 0);
}

/* Page writes the guest makes in ms milliseconds. */
static inline uint64_t t_progress_after(struct migr_hv *hv, int ms)
{
    uint64_t a = migr_workload_progress(hv);
    usleep((useconds_t)ms * 1000);
    return migr_workload_progress(hv) - a;
}

#endif
