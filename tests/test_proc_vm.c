/* The proc backend by itself: layout, pause/resume/quiesce at page boundaries,
 * throttling, strict state blobs, an incoming shell filled by hand (a
 * migration without the engine), a shared-memory shell, and a destination
 * whose RAM holds no guest. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hv-glue/proc/proc.h"
#include "hv-glue/workload/workload.h"
#include "migr/format.h"
#include "migr/hv.h"
#include "migr/workload.h"
#include "testlib.h"

static void verify(struct migr_hv *hv, const char *where)
{
    struct migr_verify_report rep;
    T_OK(hv->ops->quiesce(hv, 5000));
    T_OK(migr_workload_verify(hv, &rep));
    T_OK(hv->ops->unquiesce(hv));
    if (!rep.ok)
        T_FAIL("verify %s: %s", where, rep.first_bad_why);
    T_ASSERT(rep.pages_checked > 0);
}

static struct migr_hv *make(uint64_t mem, uint32_t nvcpus, const char *wl)
{
    struct migr_vm_config cfg = {.mem_bytes = mem, .nvcpus = nvcpus};
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse(wl, &cfg.wl));
    struct migr_hv *hv;
    T_OK(migr_hv_create("proc", &cfg, &hv));
    return hv;
}

static void test_config_errors(void)
{
    struct migr_vm_config cfg = {.mem_bytes = 7ull << 20, .nvcpus = 1};
    migr_workload_defaults(&cfg.wl);
    struct migr_hv *hv;
    T_EQ(migr_hv_create("proc", &cfg, &hv), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "multiple of 2 MiB"));
    cfg.mem_bytes = 8ull << 20;
    cfg.nvcpus = 0;
    T_EQ(migr_hv_create("proc", &cfg, &hv), -EINVAL);
    cfg.nvcpus = 65;
    T_EQ(migr_hv_create("proc", &cfg, &hv), -EINVAL);
    cfg.nvcpus = 1;
    cfg.wl.ws_bytes = 8ull << 20;
    T_EQ(migr_hv_create("proc", &cfg, &hv), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "does not fit"));
    T_EQ(migr_hv_create("nope", &cfg, &hv), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "proc"));
    T_EQ(migr_hv_available("proc"), 1);
}

/* Layout, lifecycle, throttle. */
static void test_lifecycle(void)
{
    struct migr_hv *hv = make(32ull << 20, 2, "rate=16M,pattern=random,data=text");
    T_ASSERT(strcmp(hv->ops->name, "proc") == 0);
    T_EQ(hv->kvm_vm_fd, -1);
    T_EQ(hv->nregions, 1);
    T_EQ(hv->regions[0].gpa, 0);
    T_EQ(hv->regions[0].size, 32ull << 20);
    T_ASSERT(hv->regions[0].memfd >= 0);
    T_EQ(hv->ram_pages, (32ull << 20) / MIGR_PAGE_SIZE);
    T_EQ(hv->state_version, MIGR_PROC_STATE_VERSION);
    T_ASSERT(hv->paused);
    const struct wl_boot *b = (const struct wl_boot *)migr_hv_gpa(hv, WL_BOOT_GPA, sizeof(*b));
    T_ASSERT(b && b->magic == WL_BOOT_MAGIC && b->nvcpus == 2);
    T_EQ(b->ws_gpa, WL_GEN_GPA + wl_gen_bytes(32ull << 20));
    verify(hv, "fresh (paused)");

    usleep(50000);
    T_EQ(migr_workload_progress(hv), 0); /* created paused */
    T_OK(hv->ops->resume(hv));
    uint64_t t0 = migr_now_ns();
    usleep(500000);
    T_OK(hv->ops->pause(hv));
    double s = (double)(migr_now_ns() - t0) / 1e9;
    uint64_t w = migr_workload_progress(hv);
    double want = 16.0 * 1024 * 1024 / 4096 * s;
    fprintf(stderr, "rate=16M: %llu pages in %.2f s (%.0f expected)\n", (unsigned long long)w, s, want);
    T_ASSERT(w > want * 0.5 && w < want * 1.3);
    usleep(50000);
    T_EQ(migr_workload_progress(hv), w); /* paused: nothing moves */
    T_OK(hv->ops->pause(hv));            /* idempotent */
    const struct wl_vcpu *v = (const struct wl_vcpu *)migr_hv_gpa(hv, WL_VCPU_GPA, 4096);
    T_ASSERT(v[0].inflight == 0 && v[1].inflight == 0); /* paused at a page boundary */
    T_ASSERT(v[0].writes > 0 && v[1].writes > 0);
    verify(hv, "paused");

    T_OK(hv->ops->resume(hv));
    usleep(100000);
    T_ASSERT(migr_workload_progress(hv) > w);
    verify(hv, "running (quiesced)");
    w = migr_workload_progress(hv);
    usleep(50000);
    T_ASSERT(migr_workload_progress(hv) > w); /* unquiesce let it run on */
    T_ASSERT(!hv->ops->failed(hv));
    migr_hv_destroy(hv); /* running: destroy stops the threads */
    migr_hv_destroy(NULL);

    /* unthrottled, sequential, zero pages: still verifies */
    hv = make(16ull << 20, 3, "rate=0,pattern=sequential,data=zero");
    T_OK(hv->ops->resume(hv));
    usleep(100000);
    T_ASSERT(migr_workload_progress(hv) > 1000);
    verify(hv, "unthrottled");
    migr_hv_destroy(hv);
}

static void expect_load(struct migr_hv *hv, const uint8_t *blob, size_t len, int err, const char *what)
{
    int rc = hv->ops->load_state(hv, blob, len);
    if (rc != err)
        T_FAIL("load_state(%s) returned %d, expected %d", what, rc, err);
    if (err)
        fprintf(stderr, "load_state(%s): %s\n", what, migr_last_error());
}

/* The engine's path by hand: describe, shell, copy RAM, load state, resume. */
static void test_manual_migration(void)
{
    struct migr_hv *src = make(16ull << 20, 2, "rate=32M,pattern=hotcold,data=random");
    uint8_t *blob;
    size_t len;
    T_OK(src->ops->resume(src));
    T_EQ(src->ops->save_state(src, &blob, &len), -EBUSY);
    usleep(100000);
    T_OK(src->ops->pause(src));
    T_OK(src->ops->save_state(src, &blob, &len));
    T_EQ(len, 32);

    struct migr_hello h;
    migr_hv_describe(src, &h);
    T_ASSERT(strcmp(h.backend, "proc") == 0);
    struct migr_hv *dst;
    T_OK(migr_hv_create_incoming(&h, &dst));
    T_ASSERT(dst->paused && dst->nvcpus == 2 && dst->ram_pages == src->ram_pages);
    T_ASSERT(dst->regions[0].host != src->regions[0].host);

    /* before RAM arrives (post-copy): the blob alone decides */
    expect_load(dst, blob, len, 0, "RAM not there yet");

    memcpy(dst->regions[0].host, src->regions[0].host, src->regions[0].size);
    uint8_t bad[64];
    memcpy(bad, blob, len);
    bad[0] ^= 1;
    expect_load(dst, bad, len, -EBADMSG, "bad magic");
    expect_load(dst, blob, len - 1, -EBADMSG, "short");
    memcpy(bad, blob, len);
    bad[len] = 0;
    expect_load(dst, bad, len + 1, -EBADMSG, "long");
    memcpy(bad, blob, len);
    bad[8] = 2;
    expect_load(dst, bad, len, -EPROTO, "version 2");
    memcpy(bad, blob, len);
    bad[12] = 3;
    expect_load(dst, bad, len, -EBADMSG, "3 vCPUs");
    memcpy(bad, blob, len);
    bad[17] ^= 1;
    expect_load(dst, bad, len, -EBADMSG, "RAM size");
    memcpy(bad, blob, len);
    bad[24] = 1;
    expect_load(dst, bad, len, -EBADMSG, "flags");
    memcpy(bad, blob, len);
    bad[31] = 1;
    expect_load(dst, bad, len, -EBADMSG, "reserved");
    expect_load(dst, blob, len, 0, "good");
    free(blob);

    uint64_t at = migr_workload_progress(src);
    verify(src, "source after the copy");
    migr_hv_destroy(src);
    T_OK(dst->ops->resume(dst));
    usleep(150000);
    T_ASSERT(migr_workload_progress(dst) > at);
    verify(dst, "destination");
    migr_hv_destroy(dst);
}

/* Shared memory: the second guest maps the first one's memfd. */
static void test_shared(void)
{
    struct migr_hv *src = make(16ull << 20, 1, "rate=32M");
    T_OK(src->ops->resume(src));
    usleep(50000);
    T_OK(src->ops->pause(src));
    struct migr_hello h;
    migr_hv_describe(src, &h);
    int fd = fcntl(src->regions[0].memfd, F_DUPFD_CLOEXEC, 0);
    T_ASSERT(fd >= 0);
    uint64_t off = 0;
    struct migr_hv *dst;
    T_OK(migr_hv_create_shared(&h, &fd, &off, &dst));
    T_EQ(dst->regions[0].memfd, fd);
    uint64_t at = migr_workload_progress(src);
    T_EQ(migr_workload_progress(dst), at);
    uint8_t *blob;
    size_t len;
    T_OK(src->ops->save_state(src, &blob, &len));
    T_OK(dst->ops->load_state(dst, blob, len));
    free(blob);
    migr_hv_destroy(src);
    T_OK(dst->ops->resume(dst));
    usleep(100000);
    T_ASSERT(migr_workload_progress(dst) > at);
    verify(dst, "shared");
    migr_hv_destroy(dst);

    /* a memfd too small for the layout is refused and closed */
    fd = memfd_create("small", MFD_CLOEXEC);
    T_ASSERT(fd >= 0 && ftruncate(fd, 4096) == 0);
    T_EQ(migr_hv_create_shared(&h, &fd, &off, &dst), -EINVAL);
    T_ASSERT(fcntl(fd, F_GETFD) < 0);
}

/* A resumed guest with no workload in RAM stops with a reason, never writes. */
static void test_panic(void)
{
    struct migr_hello h = {.page_size = MIGR_PAGE_SIZE, .nvcpus = 2, .nregions = 1,
                           .state_version = MIGR_PROC_STATE_VERSION, .backend = "proc",
                           .regions = {{0, 8ull << 20}}};
    struct migr_hv *hv;
    T_OK(migr_hv_create_incoming(&h, &hv));
    T_OK(hv->ops->resume(hv));
    for (int i = 0; i < 200 && !hv->ops->failed(hv); i++)
        usleep(1000);
    T_ASSERT(hv->ops->failed(hv));
    T_ASSERT(strstr(hv->failure, "boot page"));
    T_EQ(hv->ops->resume(hv), -EIO);
    T_EQ(hv->ops->quiesce(hv, 100), -EIO);
    T_OK(hv->ops->pause(hv));
    migr_hv_destroy(hv);
    h.regions[0].gpa = 1ull << 30;
    T_EQ(migr_hv_create_incoming(&h, &hv), -EINVAL);

    /* a boot page that points the working set outside RAM: the threads refuse it */
    struct migr_hv *src = make(8ull << 20, 1, "rate=0");
    struct migr_hello hs;
    migr_hv_describe(src, &hs);
    T_OK(migr_hv_create_incoming(&hs, &hv));
    memcpy(hv->regions[0].host, src->regions[0].host, src->regions[0].size);
    migr_hv_destroy(src);
    struct wl_boot *b = (struct wl_boot *)migr_hv_gpa(hv, WL_BOOT_GPA, sizeof(*b));
    b->ws_pages = hv->ram_pages;
    T_OK(hv->ops->resume(hv));
    for (int i = 0; i < 200 && !hv->ops->failed(hv); i++)
        usleep(1000);
    T_ASSERT(hv->ops->failed(hv) && strstr(hv->failure, "does not fit"));
    migr_hv_destroy(hv);
}

/* The test hook: a custom step replaces the workload. */
struct step_arg {
    uint64_t calls[2];
};
static void step(void *arg, struct migr_hv *hv, uint32_t vcpu)
{
    struct step_arg *a = arg;
    __atomic_add_fetch(&a->calls[vcpu], 1, __ATOMIC_RELAXED);
    migr_hv_page(hv, 1000 + vcpu)[0]++;
}

static void test_step_hook(void)
{
    struct migr_hv *hv = make(8ull << 20, 2, "rate=0");
    struct step_arg a = {{0, 0}};
    T_OK(hv->ops->resume(hv));
    T_EQ(migr_proc_set_step(hv, step, &a), -EBUSY);
    T_OK(hv->ops->pause(hv));
    T_OK(migr_proc_set_step(hv, step, &a));
    uint64_t w = migr_workload_progress(hv);
    T_OK(hv->ops->resume(hv));
    usleep(20000);
    T_OK(hv->ops->pause(hv));
    T_ASSERT(a.calls[0] > 0 && a.calls[1] > 0);
    T_EQ(migr_workload_progress(hv), w);
    T_EQ(migr_hv_page(hv, 1000)[0], (uint8_t)a.calls[0]);
    T_OK(migr_proc_set_step(hv, NULL, NULL));
    T_OK(hv->ops->resume(hv));
    usleep(20000);
    T_ASSERT(migr_workload_progress(hv) > w);
    migr_hv_destroy(hv);
}

int main(void)
{
    test_config_errors();
    test_lifecycle();
    test_manual_migration();
    test_shared();
    test_panic();
    test_step_hook();
    return 0;
}
