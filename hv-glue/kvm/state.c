/* hv-glue/kvm: vCPU state save/load — everything the CPL3 guest needs to
 * continue bit-exactly on another VM: registers, segments and control
 * registers, XSAVE (FPU/SSE/AVX), XCRs, pending events, debug registers,
 * MSRs (TSC first of all) and the MP state.
 *
 * Blob (little-endian, host struct layouts of x86-64 KVM):
 *   header: char magic[8] "MIGRKVM1", u32 version, u32 nvcpus, u64 tsc_khz,
 *           u32 xsave_size, u32 reserved
 *   per vCPU, in this order, each {u32 tag, u32 len, data[len]}:
 *     1 regs, 2 sregs, 3 xsave, 4 xcrs, 5 vcpu events, 6 debugregs,
 *     7 msrs (u32 count, u32 pad, count x {u32 index, u32 pad, u64 value}), 8 mp state
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hv-glue/kvm/kvm.h"
#include "migr/common.h"

#define STATE_MAGIC "MIGRKVM1"
#define STATE_HDR 32u

enum { T_REGS = 1, T_SREGS, T_XSAVE, T_XCRS, T_EVENTS, T_DEBUGREGS, T_MSRS, T_MPSTATE, T_COUNT };
static const char *const tag_names[] = {"?", "regs", "sregs", "xsave", "xcrs", "events",
                                        "debugregs", "msrs", "mp_state"};

/* MSRs a CPL3 guest can observe or that KVM needs for the same behaviour. */
static const uint32_t msr_candidates[] = {
    0x10,       /* IA32_TSC: the guest's rdtsc continues where it was */
    0x3b,       /* IA32_TSC_ADJUST */
    0x174, 0x175, 0x176,                         /* SYSENTER_CS/ESP/EIP */
    0x277,      /* PAT */
    0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR LSTAR CSTAR SFMASK */
    0xc0000102, /* KERNEL_GS_BASE */
    0xc0000103, /* TSC_AUX */
};

static size_t xsave_size(struct kvm_vm *vm)
{
    int n = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    return n > (int)sizeof(struct kvm_xsave) ? (size_t)n : sizeof(struct kvm_xsave);
}

int migr_kvm_probe_msrs(struct kvm_vm *vm)
{
    struct {
        struct kvm_msrs h;
        struct kvm_msr_entry e[1];
    } m;
    vm->nmsrs = 0;
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(msr_candidates); i++) {
        memset(&m, 0, sizeof(m));
        m.h.nmsrs = 1;
        m.e[0].index = msr_candidates[i];
        if (ioctl(vm->vcpus[0].fd, KVM_GET_MSRS, &m) == 1)
            vm->msrs[vm->nmsrs++] = msr_candidates[i];
    }
    if (vm->nmsrs == 0 || vm->msrs[0] != 0x10)
        return migr_errorf(ENOTSUP, "KVM_GET_MSRS cannot read IA32_TSC");
    return 0;
}

/* ---- growable buffer ---- */
struct buf {
    uint8_t *p;
    size_t len, cap;
    int err;
};

static uint8_t *buf_reserve(struct buf *b, size_t n)
{
    if (b->err)
        return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->err = -ENOMEM;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    uint8_t *r = b->p + b->len;
    b->len += n;
    return r;
}

/* Append a section: the ioctl fills it in place. */
static void *sec_begin(struct buf *b, uint32_t tag, uint32_t len)
{
    uint8_t *h = buf_reserve(b, 8 + (size_t)len);
    if (!h)
        return NULL;
    memcpy(h, &tag, 4);
    memcpy(h + 4, &len, 4);
    memset(h + 8, 0, len);
    return h + 8;
}

static int save_vcpu(struct kvm_vm *vm, struct kvm_vcpu_ctx *c, struct buf *b, size_t xs)
{
    struct {
        unsigned long req;
        uint32_t tag, len;
    } simple[] = {
        {KVM_GET_REGS, T_REGS, sizeof(struct kvm_regs)},
        {KVM_GET_SREGS, T_SREGS, sizeof(struct kvm_sregs)},
        {xs > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, T_XSAVE, (uint32_t)xs},
        {KVM_GET_XCRS, T_XCRS, sizeof(struct kvm_xcrs)},
        {KVM_GET_VCPU_EVENTS, T_EVENTS, sizeof(struct kvm_vcpu_events)},
        {KVM_GET_DEBUGREGS, T_DEBUGREGS, sizeof(struct kvm_debugregs)},
    };
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(simple); i++) {
        void *p = sec_begin(b, simple[i].tag, simple[i].len);
        if (!p)
            return b->err;
        /* b->p may move in later appends; p is only used before that. */
        if (ioctl(c->fd, simple[i].req, p) < 0)
            return migr_errorf_errno(errno, "vCPU %d: save %s", c->id, tag_names[simple[i].tag]);
    }
    uint32_t mlen = 8 + vm->nmsrs * 16;
    uint8_t *sec = sec_begin(b, T_MSRS, mlen);
    if (!sec)
        return b->err;
    struct kvm_msrs *m = calloc(1, sizeof(*m) + vm->nmsrs * sizeof(struct kvm_msr_entry));
    if (!m)
        return -ENOMEM;
    m->nmsrs = vm->nmsrs;
    for (uint32_t i = 0; i < vm->nmsrs; i++)
        m->entries[i].index = vm->msrs[i];
    int n = ioctl(c->fd, KVM_GET_MSRS, m);
    if (n != (int)vm->nmsrs) {
        free(m);
        return migr_errorf_errno(n < 0 ? errno : EIO, "vCPU %d: KVM_GET_MSRS read %d of %u",
                                 c->id, n, vm->nmsrs);
    }
    memcpy(sec, &vm->nmsrs, 4);
    for (uint32_t i = 0; i < vm->nmsrs; i++) {
        memcpy(sec + 8 + i * 16, &m->entries[i].index, 4);
        memcpy(sec + 8 + i * 16 + 8, &m->entries[i].data, 8);
    }
    free(m);
    void *mp = sec_begin(b, T_MPSTATE, sizeof(struct kvm_mp_state));
    if (!mp)
        return b->err;
    if (ioctl(c->fd, KVM_GET_MP_STATE, mp) < 0)
        return migr_errorf_errno(errno, "vCPU %d: save mp_state", c->id);
    return 0;
}

int kvm_save_state(struct migr_hv *hv, uint8_t **blob, size_t *len)
{
    struct kvm_vm *vm = (struct kvm_vm *)hv;
    if (!hv->paused)
        return migr_errorf(EBUSY, "save state: the guest is running (pause it first)");
    struct buf b = {0};
    size_t xs = xsave_size(vm);
    uint8_t *h = buf_reserve(&b, STATE_HDR);
    if (!h)
        return -ENOMEM;
    memset(h, 0, STATE_HDR);
    memcpy(h, STATE_MAGIC, 8);
    uint32_t v = MIGR_KVM_STATE_VERSION, n = hv->nvcpus, x = (uint32_t)xs;
    memcpy(h + 8, &v, 4);
    memcpy(h + 12, &n, 4);
    memcpy(h + 16, &vm->tsc_khz, 8);
    memcpy(h + 24, &x, 4);
    for (uint32_t i = 0; i < hv->nvcpus; i++) {
        int err = save_vcpu(vm, &vm->vcpus[i], &b, xs);
        if (err < 0) {
            free(b.p);
            return err;
        }
    }
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *blob = b.p;
    *len = b.len;
    return 0;
}

/* ---- load ---- */

struct rd {
    const uint8_t *p;
    size_t len, off;
};

static int take_section(struct rd *r, int vcpu, uint32_t tag, uint32_t want, const uint8_t **data)
{
    uint32_t t, l;
    if (r->len - r->off < 8)
        return migr_errorf(EBADMSG, "state: vCPU %d: blob ends before section %s", vcpu,
                           tag_names[tag]);
    memcpy(&t, r->p + r->off, 4);
    memcpy(&l, r->p + r->off + 4, 4);
    if (t != tag)
        return migr_errorf(EBADMSG, "state: vCPU %d: section tag %u where %s (%u) was expected",
                           vcpu, t, tag_names[tag], tag);
    if (want != 0 && l != want)
        return migr_errorf(EBADMSG, "state: vCPU %d: section %s is %u bytes (this host uses %u)",
                           vcpu, tag_names[tag], l, want);
    if (r->len - r->off - 8 < l)
        return migr_errorf(EBADMSG, "state: vCPU %d: section %s (%u bytes) runs past the blob end",
                           vcpu, tag_names[tag], l);
    *data = r->p + r->off + 8;
    r->off += 8 + (size_t)l;
    return (int)l;
}

static int load_vcpu(struct kvm_vm *vm, struct kvm_vcpu_ctx *c, struct rd *r, size_t xs)
{
    struct {
        unsigned long req;
        uint32_t tag, len;
    } simple[] = {
        {KVM_SET_REGS, T_REGS, sizeof(struct kvm_regs)},
        {KVM_SET_SREGS, T_SREGS, sizeof(struct kvm_sregs)},
        {KVM_SET_XSAVE, T_XSAVE, (uint32_t)xs},
        {KVM_SET_XCRS, T_XCRS, sizeof(struct kvm_xcrs)},
        {KVM_SET_VCPU_EVENTS, T_EVENTS, sizeof(struct kvm_vcpu_events)},
        {KVM_SET_DEBUGREGS, T_DEBUGREGS, sizeof(struct kvm_debugregs)},
    };
    const uint8_t *d;
    int err;
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(simple); i++) {
        if ((err = take_section(r, c->id, simple[i].tag, simple[i].len, &d)) < 0)
            return err;
        /* The ioctls want aligned structs: copy out of the blob first. */
        void *tmp = aligned_alloc(64, MIGR_ALIGN_UP(simple[i].len, 64));
        if (!tmp)
            return -ENOMEM;
        memcpy(tmp, d, simple[i].len);
        int rc = ioctl(c->fd, simple[i].req, tmp);
        int e = errno;
        free(tmp);
        if (rc < 0)
            return migr_errorf_errno(e, "vCPU %d: load %s", c->id, tag_names[simple[i].tag]);
    }
    int l = take_section(r, c->id, T_MSRS, 0, &d);
    if (l < 0)
        return l;
    uint32_t n;
    if (l < 8 || (memcpy(&n, d, 4), n > KVM_MAX_SAVED_MSRS) || (uint32_t)l != 8 + n * 16)
        return migr_errorf(EBADMSG, "state: vCPU %d: msrs section of %d bytes is malformed", c->id, l);
    struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(struct kvm_msr_entry));
    if (!m)
        return -ENOMEM;
    m->nmsrs = n;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(&m->entries[i].index, d + 8 + i * 16, 4);
        memcpy(&m->entries[i].data, d + 8 + i * 16 + 8, 8);
    }
    int set = ioctl(c->fd, KVM_SET_MSRS, m);
    uint32_t bad = set >= 0 && (uint32_t)set < n ? m->entries[set].index : 0;
    free(m);
    if (set != (int)n)
        return migr_errorf(set < 0 ? errno : EINVAL, "vCPU %d: KVM_SET_MSRS set %d of %u (MSR 0x%x refused)",
                           c->id, set, n, bad);
    if ((err = take_section(r, c->id, T_MPSTATE, sizeof(struct kvm_mp_state), &d)) < 0)
        return err;
    struct kvm_mp_state mp;
    memcpy(&mp, d, sizeof(mp));
    if (ioctl(c->fd, KVM_SET_MP_STATE, &mp) < 0)
        return migr_errorf_errno(errno, "vCPU %d: load mp_state", c->id);
    return 0;
}

int kvm_load_state(struct migr_hv *hv, const uint8_t *blob, size_t len)
{
    struct kvm_vm *vm = (struct kvm_vm *)hv;
    if (!hv->paused)
        return migr_errorf(EBUSY, "load state: the guest is running");
    if (len < STATE_HDR || memcmp(blob, STATE_MAGIC, 8) != 0)
        return migr_errorf(EBADMSG, "state: not a kvm state blob (%zu bytes, bad magic)", len);
    uint32_t v, n, x;
    uint64_t khz;
    memcpy(&v, blob + 8, 4);
    memcpy(&n, blob + 12, 4);
    memcpy(&khz, blob + 16, 8);
    memcpy(&x, blob + 24, 4);
    if (v != MIGR_KVM_STATE_VERSION)
        return migr_errorf(EPROTO, "state: kvm state version %u (this build reads %u)", v,
                           MIGR_KVM_STATE_VERSION);
    if (n != hv->nvcpus)
        return migr_errorf(EBADMSG, "state: %u vCPUs in the blob, the VM has %u", n, hv->nvcpus);
    size_t xs = xsave_size(vm);
    if (x != xs)
        return migr_errorf(EBADMSG, "state: XSAVE area of %u bytes, this host uses %zu", x, xs);
    if (khz != vm->tsc_khz) {
        for (uint32_t i = 0; i < n; i++)
            if (ioctl(vm->vcpus[i].fd, KVM_SET_TSC_KHZ, (unsigned long)khz) < 0)
                migr_logf(MIGR_LOG_WARN, "vCPU %u: TSC %llu kHz on the source, %llu here, "
                          "KVM_SET_TSC_KHZ: %s", i, (unsigned long long)khz,
                        (unsigned long long)vm->tsc_khz, strerror(errno));
    }
    struct rd r = {blob, len, STATE_HDR};
    for (uint32_t i = 0; i < n; i++) {
        int err = load_vcpu(vm, &vm->vcpus[i], &r, xs);
        if (err < 0)
            return err;
    }
    if (r.off != len)
        return migr_errorf(EBADMSG, "state: %zu trailing bytes after the last vCPU", len - r.off);
    return 0;
}
