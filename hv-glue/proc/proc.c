/* hv-glue/proc: the process-memory backend.
 *
 * Guest RAM is one memfd mapped MAP_SHARED at gpa 0 with the KVM guest's
 * layout (workload.h: boot page, vCPU areas, generation table, working set;
 * no page tables, GDT or code: nothing executes "in" the guest). Each vCPU
 * is a thread running the loop of hv-glue/kvm/guest/main.c on the host
 * mapping: wl_next_page + wl_write_page, throttled by CLOCK_MONOTONIC
 * instead of rdtsc, sleeping on a condition variable instead of the SLEEP
 * doorbell. Everything the workload keeps between two pages (rng, cursor,
 * write counter) lives in struct wl_vcpu in guest RAM, so RAM plus a small
 * header is the whole guest and it migrates like a KVM guest.
 *
 * pause, quiesce and destroy all stop a thread at a page boundary: a thread
 * checks for a request after every page (hv_vcpus_held) and parks; the
 * states and requests are hv-glue/vcpu.c's, shared with the KVM VMM. A KVM vCPU can be stopped
 * mid-page (its registers are saved); a thread cannot be, so proc never is —
 * a paused proc guest is always also quiesced, and wl_vcpu.inflight is 0.
 *
 * Read top to bottom: guest image, the vCPU thread, state, create/destroy.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv-glue/proc/proc.h"
#include "hv-glue/vcpu.h"
#include "hv-glue/workload/workload.h"
#include "migr/common.h"
#include "migr/dirty.h"

#define SPIN_NS 20000ull          /* closer than this to the next page: spin, else sleep */
#define STALL_NS 100000000ull     /* behind by more: no burst to catch up (guest: tsc_hz / 10) */
#define PROC_TICK_KHZ 1000000ull  /* wl_boot.tsc_khz: the proc clock counts ns */

struct proc_vm;

struct proc_vcpu {
    struct proc_vm *vm;
    uint32_t id;
};

struct proc_vm {
    struct migr_hv hv;        /* first: a struct migr_hv * is a struct proc_vm * */
    struct hv_vcpus sm;    /* second: the vCPUs' run states and their lock (hv-glue/vcpu.h) */
    int memfd;
    uint8_t *mem;
    uint64_t mem_size, memfd_off;
    migr_proc_step_fn step;   /* tests: replaces the workload step */
    void *step_arg;
    struct proc_vcpu vcpus[WL_MAX_VCPUS];
};

static const struct migr_hv_ops proc_ops;

/* ---------- guest image ---------- */

/* The boot page describes where the workload writes; on a destination it is
 * whatever arrived, so check it before any thread trusts it (a KVM guest with
 * a bad boot page faults inside the guest; here it would write outside RAM).
 * Returns 0 or -EBADMSG with the reason. */
static int check_boot(const struct proc_vm *vm, const struct wl_boot *b)
{
    uint64_t size = vm->mem_size;
    if (b->magic != WL_BOOT_MAGIC || b->version != WL_VERSION)
        return migr_errorf(EBADMSG, "boot page at gpa 0x%llx: no workload (magic 0x%llx, version %u)",
                           (unsigned long long)WL_BOOT_GPA, (unsigned long long)b->magic, b->version);
    if (b->nvcpus != vm->hv.nvcpus)
        return migr_errorf(EBADMSG, "boot page names %u vCPUs, the guest has %u", b->nvcpus, vm->hv.nvcpus);
    if (b->data > MIGR_WL_RANDOM_DATA)
        return migr_errorf(EBADMSG, "boot page: data kind %u is unknown", b->data);
    if (b->gen_gpa % 4 || b->gen_gpa < WL_VCPU_GPA + 4096 || b->gen_gpa > size ||
        b->ws_pages > (size - b->gen_gpa) / 4)
        return migr_errorf(EBADMSG, "boot page: generation table at 0x%llx for %llu pages does not fit "
                           "in %llu bytes of RAM", (unsigned long long)b->gen_gpa,
                           (unsigned long long)b->ws_pages, (unsigned long long)size);
    if (b->ws_gpa < b->gen_gpa + b->ws_pages * 4 || b->ws_gpa > size ||
        b->ws_pages > (size - b->ws_gpa) / MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "boot page: working set at 0x%llx of %llu pages does not fit "
                           "in %llu bytes of RAM after its generation table",
                           (unsigned long long)b->ws_gpa, (unsigned long long)b->ws_pages,
                           (unsigned long long)size);
    return 0;
}

struct fill_job {
    uint8_t *ws;
    uint64_t first, last;
    const struct wl_boot *b;
};

static void *fill_thread(void *arg)
{
    struct fill_job *j = arg;
    for (uint64_t i = j->first; i < j->last; i++)
        wl_fill_page(j->ws + i * MIGR_PAGE_SIZE, i, 0, j->b->data, j->b->seed);
    return NULL;
}

/* Generation-0 contents of the working set, two threads (as the KVM VMM does). */
static void put_working_set(uint8_t *mem, const struct wl_boot *b)
{
    if (b->data == MIGR_WL_ZERO)
        return; /* a fresh memfd reads as zeroes */
    struct fill_job jobs[2] = {{mem + b->ws_gpa, 0, b->ws_pages / 2, b},
                               {mem + b->ws_gpa, b->ws_pages / 2, b->ws_pages, b}};
    pthread_t t;
    int err = pthread_create(&t, NULL, fill_thread, &jobs[1]);
    fill_thread(&jobs[0]);
    if (err)
        fill_thread(&jobs[1]);
    else
        pthread_join(t, NULL);
}

static int put_guest_image(struct proc_vm *vm, const struct migr_vm_config *cfg)
{
    struct wl_boot *b = (struct wl_boot *)(vm->mem + WL_BOOT_GPA);
    uint64_t ws_gpa = WL_GEN_GPA + wl_gen_bytes(vm->mem_size);
    uint64_t max_pages = (vm->mem_size - ws_gpa) / MIGR_PAGE_SIZE;
    uint64_t ws_pages = cfg->wl.ws_bytes ? cfg->wl.ws_bytes / MIGR_PAGE_SIZE : max_pages;
    if (ws_pages > max_pages)
        return migr_errorf(EINVAL, "working set %llu MiB does not fit in %llu MiB of RAM "
                           "(at most %llu MiB after the guest's metadata)",
                           (unsigned long long)(cfg->wl.ws_bytes >> 20),
                           (unsigned long long)(vm->mem_size >> 20), (unsigned long long)(max_pages >> 8));
    if (ws_pages < cfg->nvcpus)
        return migr_errorf(EINVAL, "working set of %llu pages is smaller than %u vCPUs",
                           (unsigned long long)ws_pages, cfg->nvcpus);
    if (cfg->wl.data > MIGR_WL_RANDOM_DATA || cfg->wl.pattern > MIGR_WL_HOTCOLD)
        return migr_errorf(EINVAL, "workload: pattern %u / data %u unknown", cfg->wl.pattern, cfg->wl.data);
    b->magic = WL_BOOT_MAGIC;
    b->version = WL_VERSION;
    b->nvcpus = cfg->nvcpus;
    b->tsc_khz = PROC_TICK_KHZ;
    b->rate_bytes = cfg->wl.rate_bytes;
    b->ws_gpa = ws_gpa;
    b->ws_pages = ws_pages;
    b->gen_gpa = WL_GEN_GPA;
    b->pattern = cfg->wl.pattern;
    b->data = cfg->wl.data;
    b->seed = cfg->wl.seed;
    put_working_set(vm->mem, b);
    return 0;
}

/* ---------- the vCPU thread ---------- */

/* Nothing to do until deadline: sleep, unless the guest is to stop first. */
static void sleep_until(struct proc_vm *vm, uint64_t deadline)
{
    pthread_mutex_lock(&vm->sm.lock);
    hv_vcpus_sleep_until(&vm->sm, deadline);
    pthread_mutex_unlock(&vm->sm.lock);
}

/* The workload loop of hv-glue/kvm/guest/main.c, until a request comes.
 * Returns 0, or -EBADMSG if the boot page is unusable (the guest "panics"). */
static int vcpu_run(struct proc_vm *vm, struct proc_vcpu *c)
{
    if (vm->step) {
        while (!hv_vcpus_held(&vm->sm))
            vm->step(vm->step_arg, &vm->hv, c->id);
        return 0;
    }
    struct wl_boot *b = (struct wl_boot *)(vm->mem + WL_BOOT_GPA);
    struct wl_vcpu *v = (struct wl_vcpu *)(vm->mem + WL_VCPU_GPA) + c->id;
    int err = check_boot(vm, b);
    if (err < 0)
        return err;
    if (v->rng == 0)
        v->rng = wl_mix(b->seed ^ (c->id + 1) * 0x9E3779B97F4A7C15ull) | 1;
    /* ns between two page writes of this vCPU; 4096 * 64 vCPUs * 1e9 fits easily. */
    uint64_t per_page = b->rate_bytes ? 1000000000ull * MIGR_PAGE_SIZE * b->nvcpus / b->rate_bytes : 0;
    uint64_t next = migr_now_ns();
    while (!hv_vcpus_held(&vm->sm)) {
        if (per_page) {
            uint64_t now = migr_now_ns();
            if (next > now) {
                v->spins = v->spins + 1;
                if (next - now >= SPIN_NS)
                    sleep_until(vm, next);
                else
                    __builtin_ia32_pause();
                continue;
            }
            if (now - next > STALL_NS)
                next = now; /* stalled (paused, migrated): no burst to catch up */
            next += per_page;
        }
        uint64_t index = wl_next_page(b, v, c->id);
        if (index != ~0ull)
            wl_write_page(vm->mem, b, v, index);
    }
    return 0;
}

static void *vcpu_thread(void *arg)
{
    struct proc_vcpu *c = arg;
    struct proc_vm *vm = c->vm;
    char name[16];
    snprintf(name, sizeof(name), "migr-pcpu%u", c->id);
    pthread_setname_np(pthread_self(), name);

    pthread_mutex_lock(&vm->sm.lock);
    while (hv_vcpus_park(&vm->sm, c->id)) {
        pthread_mutex_unlock(&vm->sm.lock);
        int err = vcpu_run(vm, c);
        char why[200];
        if (err < 0)
            snprintf(why, sizeof(why), "%s", migr_last_error());
        pthread_mutex_lock(&vm->sm.lock);
        if (err < 0)
            hv_vcpus_fail(&vm->sm, c->id, "guest panic: %s", why);
    }
    hv_vcpus_exit(&vm->sm, c->id);
    pthread_mutex_unlock(&vm->sm.lock);
    return NULL;
}

/* ---------- pause / resume / quiesce (hv-glue/vcpu.c) ---------- */

/* No kick: a thread looks at the requests after every page. Unlike KVM's,
 * this quiesce writes nothing into guest RAM (no quiesce_req): the request
 * lives in the state machine, so a dirty tracker sees only the workload's
 * writes. */
static const struct hv_vcpus_ops proc_vcpus_ops = {
    .quiesce_late = "the vCPU threads did not reach a page boundary",
    .park_on_quiesce = true,
};

HV_VCPUS_VM_CHECK(struct proc_vm);

int migr_proc_set_step(struct migr_hv *hv, migr_proc_step_fn fn, void *arg)
{
    if (!hv || hv->ops != &proc_ops)
        return migr_errorf(EINVAL, "set_step: not a proc guest");
    struct proc_vm *vm = (struct proc_vm *)hv;
    if (!hv->paused)
        return migr_errorf(EBUSY, "set_step: the guest is running (pause it first)");
    pthread_mutex_lock(&vm->sm.lock);
    vm->step = fn;
    vm->step_arg = arg;
    pthread_mutex_unlock(&vm->sm.lock);
    return 0;
}

/* ---------- state ----------
 * Everything the workload carries from one page to the next is in guest RAM
 * (struct wl_vcpu); a paused thread holds nothing else (its throttle deadline
 * restarts from "now", as the KVM guest's does after a stall). So the blob is
 * a header that lets the destination refuse a guest it cannot run:
 *   off  size  field
 *     0     8  magic "MIGRPROC"
 *     8     4  version (MIGR_PROC_STATE_VERSION), little-endian like all fields
 *    12     4  nvcpus
 *    16     8  RAM bytes (region 0 at gpa 0)
 *    24     4  flags, must be 0
 *    28     4  reserved, must be 0
 */
#define STATE_MAGIC "MIGRPROC"
#define STATE_LEN 32u

static int proc_save_state(struct migr_hv *hv, uint8_t **blob, size_t *len)
{
    struct proc_vm *vm = (struct proc_vm *)hv;
    if (!hv->paused)
        return migr_errorf(EBUSY, "save state: the guest is running (pause it first)");
    uint8_t *p = calloc(1, STATE_LEN);
    if (!p)
        return -ENOMEM;
    uint32_t v = MIGR_PROC_STATE_VERSION, n = hv->nvcpus;
    memcpy(p, STATE_MAGIC, 8);
    memcpy(p + 8, &v, 4);
    memcpy(p + 12, &n, 4);
    memcpy(p + 16, &vm->mem_size, 8);
    *blob = p;
    *len = STATE_LEN;
    return 0;
}

static int proc_load_state(struct migr_hv *hv, const uint8_t *blob, size_t len)
{
    struct proc_vm *vm = (struct proc_vm *)hv;
    if (!hv->paused)
        return migr_errorf(EBUSY, "load state: the guest is running");
    if (len < 8 || memcmp(blob, STATE_MAGIC, 8) != 0)
        return migr_errorf(EBADMSG, "state: not a proc state blob (%zu bytes, bad magic)", len);
    if (len != STATE_LEN)
        return migr_errorf(EBADMSG, "state: proc state blob of %zu bytes (version 1 has %u)", len, STATE_LEN);
    uint32_t v, n, flags, rsvd;
    uint64_t mem;
    memcpy(&v, blob + 8, 4);
    memcpy(&n, blob + 12, 4);
    memcpy(&mem, blob + 16, 8);
    memcpy(&flags, blob + 24, 4);
    memcpy(&rsvd, blob + 28, 4);
    if (v != MIGR_PROC_STATE_VERSION)
        return migr_errorf(EPROTO, "state: proc state version %u (this build reads %u)", v,
                           MIGR_PROC_STATE_VERSION);
    if (n != hv->nvcpus)
        return migr_errorf(EBADMSG, "state: %u vCPUs in the blob, the guest has %u", n, hv->nvcpus);
    if (mem != vm->mem_size)
        return migr_errorf(EBADMSG, "state: %llu bytes of RAM in the blob, the guest has %llu",
                           (unsigned long long)mem, (unsigned long long)vm->mem_size);
    if (flags || rsvd)
        return migr_errorf(EBADMSG, "state: flags 0x%x / reserved 0x%x must be 0", flags, rsvd);
    /* Guest RAM is not looked at here: in post-copy it has not arrived yet
     * (a read would fault into the engine that is busy calling us). Each vCPU
     * thread checks the boot page when it starts running (check_boot). */
    return 0;
}

/* ---------- create / destroy ---------- */

static void proc_destroy(struct migr_hv *hv);

static const struct migr_hv_ops proc_ops = {
    .name = "proc",
    .pause = hv_vcpus_pause,
    .resume = hv_vcpus_resume,
    .quiesce = hv_vcpus_quiesce,
    .unquiesce = hv_vcpus_unquiesce,
    .save_state = proc_save_state,
    .load_state = proc_load_state,
    .set_dirty_log = NULL, /* no hypervisor log: the process trackers watch the mapping */
    .trackers = migr_dirty_process_trackers,
    .failed = hv_vcpus_failed,
    .destroy = proc_destroy,
};

/* RAM and parked vCPU threads (paused). memfd >= 0: map that memory (owned from here). */
static int proc_create_common(uint64_t mem_size, uint32_t nvcpus, int memfd, uint64_t memfd_off,
                              struct proc_vm **out)
{
    int err;
    if (mem_size < (8ull << 20) || mem_size % (2ull << 20) || mem_size > (WL_MAX_GIB << 30)) {
        if (memfd >= 0)
            close(memfd);
        return migr_errorf(EINVAL, "guest memory %llu bytes: must be a multiple of 2 MiB "
                           "between 8 MiB and %llu GiB", (unsigned long long)mem_size,
                           (unsigned long long)WL_MAX_GIB);
    }
    if (nvcpus < 1 || nvcpus > WL_MAX_VCPUS) {
        if (memfd >= 0)
            close(memfd);
        return migr_errorf(EINVAL, "%u vCPUs: must be 1..%u", nvcpus, WL_MAX_VCPUS);
    }
    struct proc_vm *vm = calloc(1, sizeof(*vm));
    if (!vm) {
        if (memfd >= 0)
            close(memfd);
        return migr_errorf(ENOMEM, "proc guest: out of memory");
    }
    vm->memfd = -1;
    vm->mem = MAP_FAILED;
    struct migr_hv *hv = &vm->hv;
    hv_vcpus_init(&vm->sm, hv, &proc_vcpus_ops, vm);
    hv->ops = &proc_ops;
    hv->kvm_vm_fd = -1;
    hv->nvcpus = nvcpus;

    vm->memfd_off = memfd_off;
    if ((err = migr_hv_map_ram(mem_size, memfd, memfd_off, &vm->memfd, &vm->mem)) < 0)
        goto fail;
    vm->mem_size = mem_size;
    hv->nregions = 1;
    hv->regions[0] = (struct migr_hv_region){
        .gpa = 0, .size = mem_size, .host = vm->mem, .memfd = vm->memfd, .memfd_off = memfd_off, .slot = 0};
    hv->ram_pages = mem_size / MIGR_PAGE_SIZE;
    hv->state_version = MIGR_PROC_STATE_VERSION;

    for (uint32_t i = 0; i < nvcpus; i++) {
        struct proc_vcpu *c = &vm->vcpus[i];
        c->vm = vm;
        c->id = i;
        if ((err = hv_vcpus_start(&vm->sm, i, vcpu_thread, c)) < 0)
            goto fail;
    }
    *out = vm;
    return 0;
fail:
    proc_destroy(hv);
    return err;
}

int migr_proc_create(const struct migr_vm_config *cfg, struct migr_hv **out)
{
    struct proc_vm *vm;
    int err = proc_create_common(cfg->mem_bytes, cfg->nvcpus, -1, 0, &vm);
    if (err < 0)
        return err;
    /* The threads are parked (paused): nothing reads the image yet. */
    if ((err = put_guest_image(vm, cfg)) < 0) {
        proc_destroy(&vm->hv);
        return err;
    }
    *out = &vm->hv;
    return 0;
}

int migr_proc_create_incoming(const struct migr_vm_layout *h, int memfd, uint64_t memfd_off,
                              struct migr_hv **out)
{
    /* hv.c's builder has checked the layout: one region at gpa 0 */
    struct proc_vm *vm;
    int err = proc_create_common(h->regions[0].size, h->nvcpus, memfd, memfd_off, &vm);
    if (err < 0)
        return err;
    *out = &vm->hv;
    return 0;
}

static void proc_destroy(struct migr_hv *hv)
{
    struct proc_vm *vm = (struct proc_vm *)hv;
    if (!vm)
        return;
    hv_vcpus_destroy(&vm->sm); /* every vCPU thread joined */
    if (vm->mem != MAP_FAILED)
        munmap(vm->mem, vm->mem_size);
    if (vm->memfd >= 0)
        close(vm->memfd);
    free(vm);
}
