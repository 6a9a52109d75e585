/* Zero-copy hand-over: a running guest moves to a second VM that maps the
 * same memfd; no page crosses the socket (bytes on the wire stay tiny), the
 * source releases its mapping, and the guest verifies and keeps running on
 * the destination. Over TCP, hand-over is refused and the guest keeps running
 * on the source. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "migr/engine.h"
#include "migr/workload.h"
#include "migratelib.h"



static int handover(struct migr_hv *src, const char *url, struct migr_hv **dst, struct migr_stats *st)
{
    struct t_rx x;
    struct migr_send_params p;
    migr_send_params_init(&p);
    p.mode = MIGR_MODE_HANDOVER;
    int rc = t_send(src, url, &p, st, &x);
    *dst = x.hv;
    if (rc == 0)
        T_OK(x.rc);
    else
        T_ASSERT(x.rc < 0 && x.hv == NULL);
    return rc;
}

int main(void)
{
    if (!migr_hv_available("kvm"))
        T_SKIP("no usable /dev/kvm: %s", migr_last_error());
    struct migr_vm_config cfg = {.mem_bytes = 256ull << 20, .nvcpus = 2};
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse("rate=64M,pattern=random,data=text", &cfg.wl));
    struct migr_hv *src, *dst, *back;
    struct migr_stats st = MIGR_STATS_INIT;
    T_OK(migr_hv_create("kvm", &cfg, &src));
    T_OK(src->ops->resume(src));
    usleep(200000);

    /* TCP cannot carry memory: refused, guest still running on the source */
    T_ASSERT(handover(src, "tcp:127.0.0.1:0", &dst, &st) < 0);
    T_ASSERT(st.resumed_on_source && !src->paused);
    fprintf(stderr, "tcp refused as expected: %s\n", st.error);
    uint64_t w = migr_workload_progress(src);
    usleep(100000);
    T_ASSERT(migr_workload_progress(src) > w);
    t_verify(src, "on the source after the refused hand-over");

    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/migr-ho-%d.sock", getpid());
    T_OK(handover(src, path, &dst, &st));
    char js[4096];
    migr_stats_json(&st, js, sizeof(js));
    fprintf(stderr, "handover: %s\n", js);
    T_ASSERT(st.pages == 0 && st.wire_bytes < 64 * 1024); /* nothing copied */
    uint64_t at = migr_workload_progress(src);
    migr_hv_destroy(src); /* the source unmaps; the memory lives on in dst */
    usleep(200000);
    T_ASSERT(migr_workload_progress(dst) > at);
    t_verify(dst, "after hand-over");

    /* and back again (the rejuvenation round trip's second leg), over the
     * shared-memory transport: it passes descriptors too */
    char shm[64];
    snprintf(shm, sizeof(shm), "shm:migr-ho-%d", getpid());
    T_OK(handover(dst, shm, &back, &st));
    T_ASSERT(st.pages == 0 && !strcmp(st.transport, "shm"));
    migr_hv_destroy(dst);
    usleep(100000);
    t_verify(back, "after the hand-over back over shm:");
    T_ASSERT(!back->ops->failed(back));
    migr_hv_destroy(back);
    return 0;
}
