/* Engine end to end, in one process: a running, dirtying KVM guest is
 * live-migrated over unix and TCP to a receiver thread and verified there;
 * the source VM is released only after DONE. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "migr/engine.h"
#include "migr/workload.h"
#include "migratelib.h"


static void migrate(const char *url, const char *wl, uint32_t nvcpus)
{
    struct migr_hv *src = t_guest("kvm", 128ull << 20, nvcpus, wl, 200);
    struct t_rx x;
    struct migr_send_params p;
    migr_send_params_init(&p);
    struct migr_stats st = MIGR_STATS_INIT;
    if (t_send(src, url, &p, &st, &x) < 0)
        T_FAIL("send: %s", st.error);
    T_OK(x.rc);
    char js[4096];
    migr_stats_json(&st, js, sizeof(js));
    fprintf(stderr, "%s %s: %s\n", url, wl, js);
    T_ASSERT(st.verified && st.precopy.rounds >= 2 && st.pages >= src->ram_pages);
    T_ASSERT(src->paused); /* the source keeps its copy paused until destroyed */
    uint64_t at_switch = migr_workload_progress(src);
    migr_hv_destroy(src);

    struct migr_hv *dst = x.hv;
    usleep(200000);
    T_ASSERT(migr_workload_progress(dst) > at_switch || strstr(wl, "rate=0"));
    t_verify(dst, "verify on the destination");
    T_ASSERT(!dst->ops->failed(dst));
    migr_hv_destroy(dst);
}

int main(void)
{
    if (!migr_hv_available("kvm"))
        T_SKIP("no usable /dev/kvm: %s", migr_last_error());
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/migr-test-%d.sock", getpid());
    migrate(path, "rate=64M,pattern=random,data=text", 1);
    migrate("tcp:127.0.0.1:0", "rate=128M,pattern=sequential,data=random", 2);
    migrate(path, "rate=0,ws=8M,pattern=hotcold,data=text", 2);
    return 0;
}
