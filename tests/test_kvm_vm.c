/* The KVM backend: a CPL3 guest runs and dirties memory; quiesce + verify
 * finds the image intact and finds injected damage (torn, stale, lost pages);
 * pause + save_state + load_state into a second VM continues the guest
 * exactly (its writes keep counting and the image still verifies). */
#include <string.h>
#include <unistd.h>
#include "hv-glue/workload/workload.h"
#include "migr/format.h"
#include "migr/hv.h"
#include "migr/workload.h"
#include "testlib.h"

static void verify_ok(struct migr_hv *hv, const char *when)
{
    struct migr_verify_report rep;
    T_OK(hv->ops->quiesce(hv, 5000));
    T_OK(migr_workload_verify(hv, &rep));
    T_OK(hv->ops->unquiesce(hv));
    if (!rep.ok)
        T_FAIL("%s: verify failed: %s (%llu bad pages)", when, rep.first_bad_why,
               (unsigned long long)rep.bad_pages);
    T_ASSERT(rep.pages_checked > 0);
}

static uint64_t progress_after(struct migr_hv *hv, int ms)
{
    uint64_t a = migr_workload_progress(hv);
    usleep((useconds_t)ms * 1000);
    return migr_workload_progress(hv) - a;
}

static void damage_is_found(struct migr_hv *hv)
{
    struct migr_verify_report rep;
    const struct wl_boot *b = (const struct wl_boot *)migr_hv_gpa(hv, WL_BOOT_GPA, 4096);
    T_OK(hv->ops->quiesce(hv, 5000));
    uint8_t *page = migr_hv_gpa(hv, b->ws_gpa + 5 * 4096, 4096);
    uint32_t *gen = (uint32_t *)migr_hv_gpa(hv, b->gen_gpa, 4096);
    uint8_t saved[4096];
    memcpy(saved, page, 4096);
    page[4000] ^= 1; /* torn */
    T_OK(migr_workload_verify(hv, &rep));
    T_ASSERT(!rep.ok && rep.bad_pages == 1 && rep.first_bad_page == 5);
    memcpy(page, saved, 4096);
    if (b->data != MIGR_WL_ZERO) {
        memset(page, 0, 4096); /* lost */
        T_OK(migr_workload_verify(hv, &rep));
        T_ASSERT(!rep.ok && rep.bad_pages == 1);
        memcpy(page, saved, 4096);
    }
    gen[5]++; /* stale page (table newer than the page; for zero data only the sum shows it) */
    T_OK(migr_workload_verify(hv, &rep));
    T_ASSERT(!rep.ok && rep.bad_pages == (b->data != MIGR_WL_ZERO));
    gen[5]--;
    T_OK(migr_workload_verify(hv, &rep));
    T_ASSERT(rep.ok);
    T_OK(hv->ops->unquiesce(hv));
}

static void run_case(uint32_t nvcpus, const char *wl)
{
    struct migr_vm_config cfg = {.mem_bytes = 64ull << 20, .nvcpus = nvcpus};
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse(wl, &cfg.wl));
    struct migr_hv *src, *dst;
    T_OK(migr_hv_create("kvm", &cfg, &src));
    verify_ok(src, "before start");
    T_OK(src->ops->resume(src));
    T_ASSERT(progress_after(src, 300) > 0);
    T_ASSERT(!src->ops->failed(src));
    verify_ok(src, "running");
    damage_is_found(src);

    T_OK(src->ops->pause(src));
    uint64_t at_pause = migr_workload_progress(src);
    usleep(50000);
    T_EQ(migr_workload_progress(src), at_pause); /* paused means paused */
    uint8_t *blob;
    size_t len;
    T_OK(src->ops->save_state(src, &blob, &len));
    struct migr_hello h;
    migr_hv_describe(src, &h);
    T_OK(migr_hv_create_incoming(&h, &dst));
    memcpy(dst->regions[0].host, src->regions[0].host, src->regions[0].size);
    T_OK(dst->ops->load_state(dst, blob, len));
    /* a truncated or altered blob is refused */
    T_ASSERT(dst->ops->load_state(dst, blob, len - 1) == -EBADMSG);
    T_ASSERT(dst->ops->load_state(dst, blob + 1, len - 1) == -EBADMSG);
    T_OK(dst->ops->load_state(dst, blob, len));
    free(blob);
    migr_hv_destroy(src);
    T_OK(dst->ops->resume(dst));
    T_ASSERT(progress_after(dst, 300) > 0);
    T_ASSERT(migr_workload_progress(dst) > at_pause);
    verify_ok(dst, "after state transfer");
    T_ASSERT(!dst->ops->failed(dst));
    migr_hv_destroy(dst);
}

int main(void)
{
    if (!migr_hv_available("kvm"))
        T_SKIP("no usable /dev/kvm: %s", migr_last_error());
    run_case(1, "rate=64M,pattern=random,data=text");
    run_case(2, "rate=0,pattern=sequential,data=random,ws=16M");
    run_case(2, "rate=32M,pattern=hotcold,data=zero");
    return 0;
}
