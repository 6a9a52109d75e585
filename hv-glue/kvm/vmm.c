/* hv-glue/kvm: migr's minimal VMM on /dev/kvm.
 *
 * One memslot backed by a memfd, N vCPU threads, a CPL3 guest with no kernel
 * (see DESIGN.md: on the nested hypervisor here only CPL3 runs natively).
 * Read top to bottom: set-up of memory and the guest image, vCPU set-up,
 * the vCPU thread, pause/resume/quiesce, then the ops table.
 * State save/load lives in state.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv-glue/kvm/dirty_ring.h"
#include "hv-glue/kvm/kvm.h"
#include "hv-glue/kvm/pvh.h"
#include "hv-glue/workload/workload.h"
#include "migr/common.h"
#include "migr/dirty.h"

extern const uint8_t migr_guest_blob[], migr_guest_blob_end[];

/* ---------- /dev/kvm ---------- */

static int kvm_open_dev(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return migr_errorf_errno(errno == ENOENT ? ENODEV : errno, "open /dev/kvm");
    int v = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (v != KVM_API_VERSION) {
        close(fd);
        return migr_errorf(ENODEV, "/dev/kvm: API version %d (need %d)", v, KVM_API_VERSION);
    }
    return fd;
}

int migr_kvm_available(void)
{
    int fd = kvm_open_dev();
    if (fd < 0)
        return 0;
    int vm = ioctl(fd, KVM_CREATE_VM, 0);
    if (vm < 0) {
        migr_errorf_errno(errno, "KVM_CREATE_VM");
        close(fd);
        return 0;
    }
    close(vm);
    close(fd);
    return 1;
}

/* ---------- guest image ---------- */

static void put_pagetables(uint8_t *mem, uint64_t mem_size)
{
    uint64_t *pml4 = (uint64_t *)(mem + WL_PML4_GPA);
    uint64_t *pdpt = (uint64_t *)(mem + WL_PDPT_GPA);
    const uint64_t P_RW_U = 0x7, PS = 0x80;
    uint64_t gib = (mem_size + (1ull << 30) - 1) >> 30;
    pml4[0] = WL_PDPT_GPA | P_RW_U;
    /* The doorbell GiB: one 2 MiB page at WL_MMIO_GPA, no memslot behind it. */
    uint64_t *mmio_pd = (uint64_t *)(mem + WL_PD_GPA + WL_MAX_GIB * 4096);
    pdpt[WL_MAX_GIB] = (WL_PD_GPA + WL_MAX_GIB * 4096) | P_RW_U;
    mmio_pd[0] = WL_MMIO_GPA | P_RW_U | PS;
    for (uint64_t g = 0; g < gib; g++) {
        uint64_t *pd = (uint64_t *)(mem + WL_PD_GPA + g * 4096);
        pdpt[g] = (WL_PD_GPA + g * 4096) | P_RW_U;
        for (uint64_t i = 0; i < 512; i++) {
            uint64_t addr = (g << 30) + (i << 21);
            if (addr < mem_size)
                pd[i] = addr | P_RW_U | PS;
        }
    }
}

static void put_gdt(uint8_t *mem)
{
    uint64_t *gdt = (uint64_t *)(mem + WL_GDT_GPA);
    uint64_t tss = WL_GDT_GPA + 0x800, limit = 0x67;
    gdt[1] = 0x00af9a000000ffffull; /* 0x08 kernel code 64 */
    gdt[2] = 0x00cf92000000ffffull; /* 0x10 kernel data */
    gdt[3] = 0x00cff2000000ffffull; /* 0x18 user data, DPL3 */
    gdt[4] = 0x00affa000000ffffull; /* 0x20 user code 64, DPL3 */
    gdt[5] = limit | (tss & 0xffffff) << 16 | 0x89ull << 40 | ((tss >> 24) & 0xff) << 56;
    gdt[6] = tss >> 32;
    /* TSS: I/O map base past the limit = no bitmap (IOPL=3 allows OUT anyway). */
    *(uint16_t *)(mem + tss + 0x66) = 0x68;
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
        if (j->b->data != MIGR_WL_ZERO)
            wl_fill_page(j->ws + i * 4096, i, 0, j->b->data, j->b->seed);
    return NULL;
}

/* Write the working set's generation-0 contents from the host, two threads. */
static int put_working_set(uint8_t *mem, const struct wl_boot *b)
{
    struct fill_job jobs[2];
    pthread_t t;
    uint64_t half = b->ws_pages / 2;
    jobs[0] = (struct fill_job){mem + b->ws_gpa, 0, half, b};
    jobs[1] = (struct fill_job){mem + b->ws_gpa, half, b->ws_pages, b};
    int err = pthread_create(&t, NULL, fill_thread, &jobs[1]);
    fill_thread(&jobs[0]);
    if (err)
        fill_thread(&jobs[1]);
    else
        pthread_join(t, NULL);
    return 0;
}

static int put_guest_image(struct kvm_vm *vm, const struct migr_vm_config *cfg)
{
    uint8_t *mem = vm->mem;
    size_t code_len = (size_t)(migr_guest_blob_end - migr_guest_blob);
    if (code_len > WL_CODE_MAX)
        return migr_errorf(E2BIG, "guest binary is %zu bytes (max %llu)", code_len,
                           (unsigned long long)WL_CODE_MAX);
    memcpy(mem + WL_CODE_GPA, migr_guest_blob, code_len);
    put_gdt(mem);
    put_pagetables(mem, vm->mem_size);

    struct wl_boot *b = (struct wl_boot *)(mem + WL_BOOT_GPA);
    uint64_t ws_gpa = WL_GEN_GPA + wl_gen_bytes(vm->mem_size);
    uint64_t max_pages = (vm->mem_size - ws_gpa) / 4096;
    uint64_t ws_pages = cfg->wl.ws_bytes ? cfg->wl.ws_bytes / 4096 : max_pages;
    if (ws_pages > max_pages)
        return migr_errorf(EINVAL, "working set %llu MiB does not fit in %llu MiB of RAM "
                           "(at most %llu MiB after the guest's metadata)",
                           (unsigned long long)(cfg->wl.ws_bytes >> 20),
                           (unsigned long long)(vm->mem_size >> 20),
                           (unsigned long long)(max_pages >> 8));
    if (ws_pages < cfg->nvcpus)
        return migr_errorf(EINVAL, "working set of %llu pages is smaller than %u vCPUs",
                           (unsigned long long)ws_pages, cfg->nvcpus);
    b->magic = WL_BOOT_MAGIC;
    b->version = WL_VERSION;
    b->nvcpus = cfg->nvcpus;
    b->tsc_khz = vm->tsc_khz;
    b->rate_bytes = cfg->wl.rate_bytes;
    b->ws_gpa = ws_gpa;
    b->ws_pages = ws_pages;
    b->gen_gpa = WL_GEN_GPA;
    b->pattern = cfg->wl.pattern;
    b->data = cfg->wl.data;
    b->seed = cfg->wl.seed;
    return put_working_set(mem, b);
}

/* ---------- vCPUs ---------- */

static void sig_kick(int sig)
{
    (void)sig; /* only interrupts KVM_RUN */
}

static int vcpu_setup_cpu(struct kvm_vm *vm, struct kvm_vcpu_ctx *c)
{
    if (ioctl(c->fd, KVM_SET_CPUID2, vm->cpuid) < 0)
        return migr_errorf_errno(errno, "vCPU %d: KVM_SET_CPUID2", c->id);
    return 0;
}

/* Registers of a fresh vCPU: long mode, CPL3, at the guest's entry point. */
static int vcpu_setup_fresh(struct kvm_vm *vm, struct kvm_vcpu_ctx *c)
{
    struct kvm_sregs s;
    if (ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
        return migr_errorf_errno(errno, "vCPU %d: KVM_GET_SREGS", c->id);
    struct kvm_segment code = {
        .base = 0, .limit = 0xffffffff, .selector = 0x23, .type = 0xb, .present = 1,
        .dpl = 3, .db = 0, .s = 1, .l = 1, .g = 1,
    };
    struct kvm_segment data = {
        .base = 0, .limit = 0xffffffff, .selector = 0x1b, .type = 0x3, .present = 1,
        .dpl = 3, .db = 1, .s = 1, .l = 0, .g = 1,
    };
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.tr = (struct kvm_segment){.base = WL_GDT_GPA + 0x800, .limit = 0x67, .selector = 0x28,
                                .type = 0xb, .present = 1, .s = 0};
    s.ldt = (struct kvm_segment){.selector = 0, .type = 0x2, .present = 1, .unusable = 1};
    s.gdt.base = WL_GDT_GPA;
    s.gdt.limit = 7 * 8 - 1;
    s.idt.base = 0;
    s.idt.limit = 0;
    s.cr0 = 0x80050033; /* PG AM WP NE ET MP PE */
    s.cr3 = WL_PML4_GPA;
    s.cr4 = 0x20 | 0x200 | 0x400; /* PAE OSFXSR OSXMMEXCPT */
    s.efer = 0x500;               /* LME LMA */
    if (ioctl(c->fd, KVM_SET_SREGS, &s) < 0)
        return migr_errorf_errno(errno, "vCPU %d: KVM_SET_SREGS (long mode, CPL3)", c->id);
    struct kvm_regs r = {0};
    r.rip = WL_CODE_GPA;
    r.rsp = WL_STACK_GPA + (uint64_t)(c->id + 1) * WL_STACK_SIZE;
    r.rdi = (uint64_t)c->id;
    r.rflags = 0x2; /* IF=0: no IDT, no interrupts */
    if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
        return migr_errorf_errno(errno, "vCPU %d: KVM_SET_REGS", c->id);
    return 0;
}

/* Re-enter KVM_RUN with immediate_exit so that a pending I/O exit completes
 * without running further guest code (KVM's rule before saving state):
 * hv_vcpus_ops.before_park, on the vCPU's thread. */
static void vcpu_complete_io(struct hv_vcpus *v, uint32_t i)
{
    struct kvm_vcpu_ctx *c = &((struct kvm_vm *)v->arg)->vcpus[i];
    if (!c->io_pending)
        return;
    c->run->immediate_exit = 1;
    if (ioctl(c->fd, KVM_RUN, 0) < 0 && errno != EINTR)
        migr_logf(MIGR_LOG_WARN, "vCPU %d: completing I/O before pause: %s", c->id, strerror(errno));
    c->io_pending = false;
}

/* KVM_EXIT_DIRTY_RING_FULL: this vCPU's ring reached its soft limit and KVM
 * will not run the vCPU until entries are handed back. Collect them into
 * vm->ring_pending (the tracker's next harvest reports them: nothing is
 * lost) and reset. Entries that a concurrent harvest already took are gone
 * from the ring, so each entry is reported exactly once. */
static bool vcpu_ring_full(struct kvm_vm *vm, struct kvm_vcpu_ctx *c)
{
    uint64_t added = 0;
    c->ring_full_exits++;
    pthread_mutex_lock(&c->ring_lock);
    long n = migr_dirty_ring_collect(c->ring, vm->ring_entries, &c->ring_fetch, &vm->hv, vm->ring_pending,
                                     true, &added);
    pthread_mutex_unlock(&c->ring_lock);
    if (n < 0) {
        hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "dirty ring full: %s", migr_last_error());
        return false;
    }
    __atomic_add_fetch(&vm->ring_pending_bits, added, __ATOMIC_RELEASE);
    if (ioctl(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0) {
        hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "KVM_RESET_DIRTY_RINGS: %s", strerror(errno));
        return false;
    }
    return true;
}

/* A byte from the guest's CONSOLE doorbell: a line at a time to the log
 * (libmigr writes nothing to stderr itself). */
static void vcpu_console(struct kvm_vcpu_ctx *c, char ch)
{
    if (ch != '\n')
        c->console[c->console_len++] = ch;
    if (ch == '\n' || c->console_len == sizeof(c->console) - 1) {
        c->console[c->console_len] = 0;
        migr_logf(MIGR_LOG_INFO, "guest vCPU %d: %s", c->id, c->console);
        c->console_len = 0;
    }
}

/* Handle one exit. Called with vm->sm.lock held; returns false if the vCPU stops. */
static bool vcpu_handle_exit(struct kvm_vm *vm, struct kvm_vcpu_ctx *c)
{
    struct kvm_run *run = c->run;
    switch (run->exit_reason) {
    case KVM_EXIT_MMIO: {
        uint32_t val = 0;
        uint64_t off = run->mmio.phys_addr - WL_MMIO_GPA;
        memcpy(&val, run->mmio.data, run->mmio.len <= 4 ? run->mmio.len : 4);
        c->io_pending = true;
        if (!run->mmio.is_write || run->mmio.phys_addr < WL_MMIO_GPA || off >= 4096) {
            hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "unexpected MMIO %s at gpa 0x%llx", run->mmio.is_write ? "write" : "read",
                      (unsigned long long)run->mmio.phys_addr);
            return false;
        }
        if (off == WL_DB_QUIESCED) {
            hv_vcpus_quiesced(&vm->sm, (uint32_t)c->id);
            return true;
        }
        if (off == WL_DB_SLEEP) {
            /* The guest has nothing to do for val us: wait here instead of
             * spinning in the guest; a pause, quiesce or stop request ends the wait. */
            hv_vcpus_sleep_until(&vm->sm, migr_now_ns() + (uint64_t)(val > 100000 ? 100000 : val) * 1000ull);
            return true;
        }
        if (off == WL_DB_CONSOLE) {
            vcpu_console(c, (char)(val & 0xff));
            return true;
        }
        if (off == WL_DB_PANIC) {
            if (c->console_len)
                vcpu_console(c, '\n'); /* the last words, if they had no newline */
            hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "guest panic, code 0x%x", val);
            return false;
        }
        hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "write of 0x%x to unknown doorbell +0x%llx", val, (unsigned long long)off);
        return false;
    }
    case KVM_EXIT_SHUTDOWN: {
        struct kvm_regs r;
        unsigned long long rip = ioctl(c->fd, KVM_GET_REGS, &r) == 0 ? r.rip : 0;
        hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "triple fault (KVM_EXIT_SHUTDOWN) near rip 0x%llx; "
                  "dmesg shows the vector and CR2", rip);
        return false;
    }
    case KVM_EXIT_FAIL_ENTRY:
        hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "VM entry failed, hardware reason 0x%llx",
                  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "KVM internal error, suberror %u", run->internal.suberror);
        return false;
    case KVM_EXIT_HLT:
        hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "guest executed HLT");
        return false;
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_DIRTY_RING_FULL:
        if (!vm->ring_entries) {
            hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "KVM_EXIT_DIRTY_RING_FULL but this VM has no dirty ring");
            return false;
        }
        return vcpu_ring_full(vm, c);
    default:
        hv_vcpus_fail(&vm->sm, (uint32_t)c->id, "unexpected exit reason %u", run->exit_reason);
        return false;
    }
}

static void *vcpu_thread(void *arg)
{
    struct kvm_vcpu_ctx *c = arg;
    struct kvm_vm *vm = c->vm;
    uint32_t id = (uint32_t)c->id;
    char name[16];
    snprintf(name, sizeof(name), "migr-vcpu%d", c->id);
    pthread_setname_np(pthread_self(), name);

    pthread_mutex_lock(&vm->sm.lock);
    while (hv_vcpus_park(&vm->sm, id)) {
        c->run->immediate_exit = 0;
        pthread_mutex_unlock(&vm->sm.lock);
        int r = ioctl(c->fd, KVM_RUN, 0);
        int err = errno;
        pthread_mutex_lock(&vm->sm.lock);
        c->io_pending = false;
        if (r < 0) {
            if (err != EINTR && err != EAGAIN)
                hv_vcpus_fail(&vm->sm, id, "KVM_RUN: %s", strerror(err));
            continue;
        }
        c->exits++;
        if (!vcpu_handle_exit(vm, c))
            pthread_cond_broadcast(&vm->sm.cond);
    }
    hv_vcpus_exit(&vm->sm, id);
    pthread_mutex_unlock(&vm->sm.lock);
    return NULL;
}

/* ---------- pause / resume / quiesce (hv-glue/vcpu.c) ---------- */

/* A vCPU in KVM_RUN sees no request: immediate_exit makes a KVM_RUN about
 * to start return at once, the signal interrupts one that runs. */
static void vcpu_kick(struct hv_vcpus *v, uint32_t i)
{
    struct kvm_vcpu_ctx *c = &((struct kvm_vm *)v->arg)->vcpus[i];
    if (!c->run)
        return;
    c->run->immediate_exit = 1;
    pthread_kill(v->thread[i], SIGUSR1);
}

/* The guest polls quiesce_req between two pages and rings the QUIESCED
 * doorbell (hv_vcpus_quiesced); a vCPU stopped anywhere else would leave a
 * page half written. */
static void vcpu_quiesce_req(struct hv_vcpus *v, bool on)
{
    struct kvm_vm *vm = v->arg;
    struct wl_boot *b = (struct wl_boot *)(vm->mem + WL_BOOT_GPA);
    __atomic_store_n(&b->quiesce_req, on ? 1u : 0u, __ATOMIC_SEQ_CST);
}

static const struct hv_vcpus_ops kvm_vcpus_ops = {
    .quiesce_late = "the guest did not reach a consistent point",
    .park_on_quiesce = false,
    .kick = vcpu_kick,
    .quiesce_req = vcpu_quiesce_req,
    .before_park = vcpu_complete_io,
};

HV_VCPUS_VM_CHECK(struct kvm_vm);

/* ---------- dirty logging ---------- */

static int kvm_set_slot(struct kvm_vm *vm, uint32_t flags)
{
    struct kvm_userspace_memory_region r = {
        .slot = 0, .flags = flags, .guest_phys_addr = 0,
        .memory_size = vm->mem_size, .userspace_addr = (uint64_t)(uintptr_t)vm->mem,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return migr_errorf_errno(errno, "KVM_SET_USER_MEMORY_REGION slot 0 flags 0x%x", flags);
    return 0;
}

static int kvm_set_dirty_log(struct migr_hv *hv, bool on, bool manual)
{
    struct kvm_vm *vm = (struct kvm_vm *)hv;
    if (on && manual && vm->ring_entries)
        return migr_errorf(ENOTSUP, "this VM logs dirty pages to rings (KVM_CAP_DIRTY_LOG_RING): "
                           "no manual-protect bitmap");
    if (on && manual && !vm->manual_protect) {
        int caps = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
        if (caps <= 0 || !(caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
            return migr_errorf(ENOTSUP, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 not offered");
        struct kvm_enable_cap cap = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
                                     .args = {KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE}};
        if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
            return migr_errorf_errno(errno, "KVM_ENABLE_CAP MANUAL_DIRTY_LOG_PROTECT2");
        vm->manual_protect = true;
    }
    if (on && !manual && vm->manual_protect)
        return migr_errorf(EBUSY, "manual dirty-log protect is on for this VM and cannot be turned off");
    return kvm_set_slot(vm, on ? KVM_MEM_LOG_DIRTY_PAGES : 0);
}

/* ---------- create / destroy ---------- */

static void kvm_destroy(struct migr_hv *hv);
extern int kvm_save_state(struct migr_hv *hv, uint8_t **blob, size_t *len);
extern int kvm_load_state(struct migr_hv *hv, const uint8_t *blob, size_t len);

static const struct migr_hv_ops kvm_ops = {
    .name = "kvm",
    .pause = hv_vcpus_pause,
    .resume = hv_vcpus_resume,
    .quiesce = hv_vcpus_quiesce,
    .unquiesce = hv_vcpus_unquiesce,
    .save_state = kvm_save_state,
    .load_state = kvm_load_state,
    .set_dirty_log = kvm_set_dirty_log,
    .failed = hv_vcpus_failed,
    .destroy = kvm_destroy,
    .trackers = migr_kvm_trackers,
};

/* A VM gets one or the other (kvm_enable_ring): kvm-ring says no to a VM
 * without rings, kvm-bitmap to one with them. */
const struct migr_dirty_ops *const migr_kvm_trackers[] = {
    &migr_kvm_dirty_bitmap,
    &migr_kvm_dirty_ring,
    NULL,
};

int migr_kvm_is_vm(const struct migr_hv *hv)
{
    return hv && hv->ops == &kvm_ops;
}

static int get_cpuid(struct kvm_vm *vm)
{
    for (int n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)n * sizeof(c->entries[0]));
        if (!c)
            return -ENOMEM;
        c->nent = (uint32_t)n;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            vm->cpuid = c;
            return 0;
        }
        int err = errno;
        free(c);
        if (err != E2BIG)
            return migr_errorf_errno(err, "KVM_GET_SUPPORTED_CPUID");
    }
    return migr_errorf(E2BIG, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

/* Enable the dirty ring of entries entries per vCPU on a VM with no vCPU
 * yet: KVM_CAP_DIRTY_LOG_RING_ACQ_REL if offered (the protocol that is
 * correct on weakly ordered hosts too), else KVM_CAP_DIRTY_LOG_RING. */
static int kvm_enable_ring(struct kvm_vm *vm, uint32_t entries)
{
    uint64_t bytes = (uint64_t)entries * sizeof(struct kvm_dirty_gfn);
    int acq = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
    int max = acq > 0 ? acq : ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING);
    if (max <= 0)
        return migr_errorf(ENOTSUP, "this KVM offers no dirty ring (KVM_CAP_DIRTY_LOG_RING%s: %d)",
                           acq < 0 ? "" : "/_ACQ_REL", max);
    if (entries & (entries - 1) || bytes < (uint64_t)sysconf(_SC_PAGESIZE) || bytes > (uint64_t)max)
        return migr_errorf(ENOTSUP, "dirty ring of %u entries (%llu bytes): KVM takes a power of two "
                           "from one page to %d bytes", entries, (unsigned long long)bytes, max);
    struct kvm_enable_cap cap = {.cap = acq > 0 ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING,
                                 .args = {bytes}};
    if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
        return migr_errorf_errno(errno == EINVAL ? ENOTSUP : errno, "KVM_ENABLE_CAP DIRTY_LOG_RING%s (%llu bytes)",
                                 acq > 0 ? "_ACQ_REL" : "", (unsigned long long)bytes);
    vm->ring_pending = calloc(migr_bitmap_words(vm->mem_size / MIGR_PAGE_SIZE), sizeof(uint64_t));
    if (!vm->ring_pending)
        return migr_errorf(ENOMEM, "dirty ring: out of memory for the pending bitmap");
    vm->ring_entries = entries;
    vm->ring_acq_rel = acq > 0;
    return 0;
}

int migr_kvm_ring_offered(void)
{
    int fd = kvm_open_dev();
    if (fd < 0)
        return 0;
    int vm = ioctl(fd, KVM_CREATE_VM, 0), r = 0;
    if (vm >= 0) {
        r = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING) > 0;
        close(vm);
    }
    close(fd);
    return r;
}

int migr_kvm_has_ring(struct migr_hv *hv)
{
    if (hv->ops != &kvm_ops || hv->kvm_vm_fd < 0) {
        migr_errorf(ENOTSUP, "guest backend '%s' is not KVM", hv->ops->name);
        return 0;
    }
    if (!((struct kvm_vm *)hv)->ring_entries) {
        migr_errorf(ENOTSUP, "the VM was created without a dirty ring (KVM enables rings only "
                    "before vCPUs exist: start it with migr run --dirty=kvm-ring)");
        return 0;
    }
    return 1;
}

/* VM, memory and vCPUs (threads parked, paused). */
/* memfd >= 0: map that memory (ownership passes to the VM) instead of a new memfd. */
static int kvm_create_common(uint64_t mem_size, uint32_t nvcpus, int memfd, uint64_t memfd_off,
                             uint32_t ring_entries, struct kvm_vm **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    int err;
    if (mem_size < (8ull << 20) || mem_size % (2ull << 20) || mem_size > (WL_MAX_GIB << 30)) {
        if (memfd >= 0)
            close(memfd);
        return migr_errorf(EINVAL, "guest memory %llu bytes: must be a multiple of 2 MiB "
                           "between 8 MiB and %llu GiB", (unsigned long long)mem_size,
                           (unsigned long long)WL_MAX_GIB);
    }
    struct kvm_vm *vm = nvcpus >= 1 && nvcpus <= WL_MAX_VCPUS ? calloc(1, sizeof(*vm)) : NULL;
    if (!vm) {
        if (memfd >= 0)
            close(memfd);
        return nvcpus < 1 || nvcpus > WL_MAX_VCPUS ? migr_errorf(EINVAL, "%u vCPUs: must be 1..%u", nvcpus, WL_MAX_VCPUS)
                                                   : -ENOMEM;
    }
    vm->kvm_fd = vm->vm_fd = vm->memfd = -1;
    vm->hv.kvm_vm_fd = -1;
    vm->mem = MAP_FAILED;
    hv_vcpus_init(&vm->sm, &vm->hv, &kvm_vcpus_ops, vm);
    for (uint32_t i = 0; i < WL_MAX_VCPUS; i++) {
        vm->vcpus[i].fd = -1;
        pthread_mutex_init(&vm->vcpus[i].ring_lock, NULL);
    }

    if ((err = kvm_open_dev()) < 0)
        goto fail;
    vm->kvm_fd = err;
    if ((vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0)) < 0) {
        err = migr_errorf_errno(errno, "KVM_CREATE_VM");
        goto fail;
    }
    vm->memfd_off = memfd_off;
    if ((err = migr_hv_map_ram(mem_size, memfd, memfd_off, &vm->memfd, &vm->mem)) < 0)
        goto fail;
    vm->mem_size = mem_size;
    if (ring_entries && (err = kvm_enable_ring(vm, ring_entries)) < 0)
        goto fail;
    if ((err = kvm_set_slot(vm, 0)) < 0)
        goto fail;
    int khz = ioctl(vm->vm_fd, KVM_GET_TSC_KHZ, 0);
    vm->tsc_khz = khz > 0 ? (uint64_t)khz : 1000000;
    if ((err = get_cpuid(vm)) < 0)
        goto fail;

    struct migr_hv *hv = &vm->hv;
    hv->ops = &kvm_ops;
    hv->nregions = 1;
    hv->regions[0] = (struct migr_hv_region){
        .gpa = 0, .size = mem_size, .host = vm->mem, .memfd = vm->memfd, .memfd_off = memfd_off, .slot = 0};
    hv->nvcpus = nvcpus;
    hv->ram_pages = mem_size / MIGR_PAGE_SIZE;
    hv->state_version = MIGR_KVM_STATE_VERSION;
    hv->kvm_vm_fd = vm->vm_fd;

    int mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size <= 0) {
        err = migr_errorf_errno(errno, "KVM_GET_VCPU_MMAP_SIZE");
        goto fail;
    }
    vm->run_size = (size_t)mmap_size;
    pthread_once(&once, migr_kvm_install_kick);
    for (uint32_t i = 0; i < nvcpus; i++) {
        struct kvm_vcpu_ctx *c = &vm->vcpus[i];
        c->vm = vm;
        c->id = (int)i;
        c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
        if (c->fd < 0) {
            err = migr_errorf_errno(errno, "KVM_CREATE_VCPU %u", i);
            goto fail;
        }
        c->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
        if (c->run == MAP_FAILED) {
            c->run = NULL;
            err = migr_errorf_errno(errno, "mmap kvm_run of vCPU %u", i);
            goto fail;
        }
        if (vm->ring_entries) {
            long pg = sysconf(_SC_PAGESIZE);
            void *r = mmap(NULL, (size_t)vm->ring_entries * sizeof(struct kvm_dirty_gfn), PROT_READ | PROT_WRITE,
                           MAP_SHARED, c->fd, (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * pg);
            if (r == MAP_FAILED) {
                err = migr_errorf_errno(errno, "mmap the dirty ring of vCPU %u", i);
                goto fail;
            }
            c->ring = r;
        }
        if ((err = vcpu_setup_cpu(vm, c)) < 0)
            goto fail;
    }
    if ((err = migr_kvm_probe_msrs(vm)) < 0)
        goto fail;
    for (uint32_t i = 0; i < nvcpus; i++)
        if ((err = hv_vcpus_start(&vm->sm, i, vcpu_thread, &vm->vcpus[i])) < 0)
            goto fail;
    *out = vm;
    return 0;
fail:
    kvm_destroy(&vm->hv);
    return err;
}

void migr_kvm_install_kick(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = sig_kick; /* no SA_RESTART: KVM_RUN must return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
}

int migr_kvm_create(const struct migr_vm_config *cfg, struct migr_hv **out)
{
    return migr_kvm_create_ring(cfg, 0, out);
}

int migr_kvm_create_ring(const struct migr_vm_config *cfg, uint32_t ring_entries, struct migr_hv **out)
{
    struct kvm_vm *vm;
    int err = kvm_create_common(cfg->mem_bytes, cfg->nvcpus, -1, 0, ring_entries, &vm);
    if (err < 0)
        return err;
    if (cfg->kernel) {
        if ((err = migr_kvm_pvh_boot(vm, cfg->kernel, cfg->cmdline)) < 0)
            goto fail;
        *out = &vm->hv;
        return 0;
    }
    if ((err = put_guest_image(vm, cfg)) < 0)
        goto fail;
    for (uint32_t i = 0; i < cfg->nvcpus; i++)
        if ((err = vcpu_setup_fresh(vm, &vm->vcpus[i])) < 0)
            goto fail;
    *out = &vm->hv;
    return 0;
fail:
    kvm_destroy(&vm->hv);
    return err;
}

int migr_kvm_create_incoming(const struct migr_vm_layout *h, int memfd, uint64_t memfd_off, struct migr_hv **out)
{
    /* hv.c's builder has checked the layout: one region at gpa 0 */
    struct kvm_vm *vm;
    int err = kvm_create_common(h->regions[0].size, h->nvcpus, memfd, memfd_off, 0, &vm);
    if (err < 0)
        return err;
    *out = &vm->hv;
    return 0;
}

static void kvm_destroy(struct migr_hv *hv)
{
    struct kvm_vm *vm = (struct kvm_vm *)hv;
    if (!vm)
        return;
    hv_vcpus_destroy(&vm->sm); /* every vCPU thread joined */
    for (uint32_t i = 0; i < WL_MAX_VCPUS; i++) {
        struct kvm_vcpu_ctx *c = &vm->vcpus[i];
        if (c->run)
            munmap(c->run, vm->run_size);
        if (c->ring)
            munmap(c->ring, (size_t)vm->ring_entries * sizeof(struct kvm_dirty_gfn));
        pthread_mutex_destroy(&c->ring_lock);
        if (c->fd >= 0)
            close(c->fd);
    }
    if (vm->mem != MAP_FAILED)
        munmap(vm->mem, vm->mem_size);
    if (vm->memfd >= 0)
        close(vm->memfd);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    free(vm->cpuid);
    free(vm->ring_pending);
    free(vm);
}
