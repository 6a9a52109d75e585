/* The engine, unchanged, migrates a proc guest (RAM in a memfd, workload
 * threads in this process): pre-copy over unix with every process dirty
 * tracker this machine supports (others print SKIP), pre-copy over TCP with
 * "auto", and a zero-copy hand-over there and back. The destination is
 * verified page by page, keeps running, and the source is released only
 * after DONE. Needs no /dev/kvm. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "migr/dirty.h"
#include "migr/engine.h"
#include "migr/workload.h"
#include "testlib.h"

/* Under ASan the mprotect tracker needs SIGSEGV (ASan keeps it otherwise). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "handle_segv=0"; }

struct rx {
    struct migr_listener *l;
    struct migr_hv *hv;
    struct migr_stats st;
    int rc;
};

static void *rx_main(void *arg)
{
    struct rx *x = arg;
    struct migr_transport *t;
    x->rc = migr_listener_accept(x->l, 10000, &t);
    if (x->rc < 0)
        return NULL;
    migr_stats_init(&x->st);
    x->rc = migr_recv(t, &x->hv, &x->st);
    if (x->rc < 0)
        fprintf(stderr, "recv: %s\n", x->st.error);
    migr_transport_close(t);
    return NULL;
}

static void verify(struct migr_hv *hv, const char *where)
{
    struct migr_verify_report rep;
    T_OK(hv->ops->quiesce(hv, 5000));
    T_OK(migr_workload_verify(hv, &rep));
    T_OK(hv->ops->unquiesce(hv));
    if (!rep.ok)
        T_FAIL("verify %s: %s", where, rep.first_bad_why);
    T_ASSERT(!hv->ops->failed(hv));
}

static struct migr_hv *make(uint64_t mem, uint32_t nvcpus, const char *wl)
{
    struct migr_vm_config cfg = {.mem_bytes = mem, .nvcpus = nvcpus};
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse(wl, &cfg.wl));
    struct migr_hv *hv;
    T_OK(migr_hv_create("proc", &cfg, &hv));
    T_OK(hv->ops->resume(hv));
    usleep(100000);
    return hv;
}

/* Send src to url; returns the destination guest (running) or NULL. */
static int send_to(struct migr_hv *src, const char *url, const struct migr_send_params *p,
                   struct migr_stats *st, struct migr_hv **dst)
{
    struct rx x = {0};
    T_OK(migr_listener_open(url, &x.l));
    pthread_t th;
    T_ASSERT(pthread_create(&th, NULL, rx_main, &x) == 0);
    struct migr_transport *t;
    T_OK(migr_transport_connect(x.l->bound, &t));
    int rc = migr_send(src, t, p, st);
    migr_transport_close(t);
    pthread_join(th, NULL);
    migr_listener_close(x.l);
    *dst = x.hv;
    if (rc == 0)
        T_OK(x.rc);
    else
        T_ASSERT(x.rc < 0 && x.hv == NULL);
    return rc;
}

static void precopy(const char *url, const char *tracker, const char *wl, uint32_t nvcpus)
{
    struct migr_hv *src = make(128ull << 20, nvcpus, wl), *dst;
    struct migr_send_params p;
    struct migr_stats st = MIGR_STATS_INIT;
    migr_send_params_init(&p);
    p.tracker = tracker;
    int rc = send_to(src, url, &p, &st, &dst);
    if (rc < 0)
        T_FAIL("send (%s, %s): %s", url, tracker, st.error);
    char js[4096];
    migr_stats_json(&st, js, sizeof(js));
    fprintf(stderr, "%s %s %s: %s\n", url, tracker, wl, js);
    T_ASSERT(st.verified && st.precopy.rounds >= 2 && st.pages >= src->ram_pages);
    if (strcmp(tracker, "auto") != 0)
        T_ASSERT(strcmp(st.tracker, tracker) == 0);
    T_ASSERT(src->paused); /* the source keeps its copy paused until destroyed */
    uint64_t at_switch = migr_workload_progress(src);
    migr_hv_destroy(src);
    usleep(150000);
    T_ASSERT(migr_workload_progress(dst) > at_switch);
    verify(dst, "on the destination");
    printf("precopy %-22s %-12s %-40s rounds %u, %llu pages sent, downtime %.1f ms, tracker %s: verified\n",
           url, tracker, wl, st.precopy.rounds, (unsigned long long)st.pages, (double)st.downtime_ns / 1e6,
           st.tracker);
    migr_hv_destroy(dst);
}

static void handover(const char *path)
{
    struct migr_hv *src = make(64ull << 20, 2, "rate=64M,pattern=random,data=text"), *dst, *back;
    struct migr_send_params p;
    struct migr_stats st = MIGR_STATS_INIT;
    migr_send_params_init(&p);
    p.mode = MIGR_MODE_HANDOVER;

    /* TCP cannot carry memory: refused, the guest runs on at the source */
    T_ASSERT(send_to(src, "tcp:127.0.0.1:0", &p, &st, &dst) < 0);
    T_ASSERT(st.resumed_on_source && !src->paused);
    uint64_t w = migr_workload_progress(src);
    usleep(50000);
    T_ASSERT(migr_workload_progress(src) > w);

    T_OK(send_to(src, path, &p, &st, &dst));
    T_ASSERT(st.pages == 0 && st.wire_bytes < 64 * 1024); /* nothing copied */
    T_ASSERT(dst->regions[0].host != src->regions[0].host);
    uint64_t at = migr_workload_progress(src);
    migr_hv_destroy(src); /* the source unmaps; the memory lives on in dst */
    usleep(100000);
    T_ASSERT(migr_workload_progress(dst) > at);
    verify(dst, "after hand-over");

    T_OK(send_to(dst, path, &p, &st, &back)); /* and back again */
    migr_hv_destroy(dst);
    usleep(100000);
    verify(back, "after the hand-over back");
    printf("handover %s: there and back, %llu bytes on the wire, verified\n", path,
           (unsigned long long)st.wire_bytes);
    migr_hv_destroy(back);
}

int main(void)
{
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/migr-proc-%d.sock", getpid());
    int ran = 0;
    for (size_t i = 0; migr_dirty_backends[i]; i++) {
        const char *name = migr_dirty_backends[i]->name;
        if (strcmp(name, "kvm-bitmap") == 0)
            continue;
        struct migr_vm_config cfg = {.mem_bytes = 8ull << 20, .nvcpus = 1};
        migr_workload_defaults(&cfg.wl);
        struct migr_hv *hv;
        T_OK(migr_hv_create("proc", &cfg, &hv));
        migr_clear_error();
        int ok = migr_dirty_backends[i]->supported(hv);
        migr_hv_destroy(hv);
        if (ok <= 0) {
            printf("precopy %-12s SKIP: %s\n", name, migr_last_error());
            continue;
        }
        precopy(path, name, "rate=64M,pattern=random,data=text", 2);
        ran++;
    }
    T_ASSERT(ran > 0); /* mprotect needs nothing but POSIX */
    precopy("tcp:127.0.0.1:0", "auto", "rate=128M,pattern=sequential,data=random", 2);
    precopy(path, "auto", "rate=0,ws=8M,pattern=hotcold,data=text", 2);
    handover(path);
    return 0;
}
