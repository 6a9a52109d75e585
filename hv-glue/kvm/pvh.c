/* hv-glue/kvm: the PVH boot path (pvh.h) — an ELF loader that trusts nothing
 * in the file, the start info migr hands the kernel, and vCPU 0's entry state.
 * All checks come first, so a refused ELF leaves guest RAM untouched. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv-glue/kvm/kvm.h"
#include "hv-glue/kvm/pvh.h"
#include "hv-glue/workload/spec.h"
#include "migr/common.h"

#define PVH_MAX_PHDRS 64
#define PVH_MAX_FILE  (64u << 20)

/* [off, off + n) inside [0, len)? (no overflow) */
static bool in_file(uint64_t off, uint64_t n, size_t len)
{
    return off <= len && n <= len - off;
}

static int check_header(const uint8_t *elf, size_t len, const Elf64_Ehdr **out)
{
    if (len < EI_NIDENT || memcmp(elf, ELFMAG, SELFMAG) != 0)
        return migr_errorf(ENOEXEC, "not an ELF file (%zu bytes, no \\x7fELF magic)", len);
    if (elf[EI_CLASS] == ELFCLASS32)
        return migr_errorf(ENOEXEC, "ELF class 1 (ELF32): migr boots ELF64 PVH kernels only");
    if (elf[EI_CLASS] != ELFCLASS64)
        return migr_errorf(ENOEXEC, "bad ELF class %u (expected 2, ELF64)", elf[EI_CLASS]);
    if (elf[EI_DATA] != ELFDATA2LSB)
        return migr_errorf(ENOEXEC, "ELF data encoding %u: not little-endian", elf[EI_DATA]);
    if (len < sizeof(Elf64_Ehdr))
        return migr_errorf(ENOEXEC, "ELF header truncated: %zu of %zu bytes", len, sizeof(Elf64_Ehdr));
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)elf;
    if (eh->e_machine != EM_X86_64)
        return migr_errorf(ENOEXEC, "ELF machine %u is not x86-64 (%u)", eh->e_machine, EM_X86_64);
    if (eh->e_type != ET_EXEC)
        return migr_errorf(ENOEXEC, "ELF type %u is not an executable (ET_EXEC)", eh->e_type);
    if (eh->e_phentsize != sizeof(Elf64_Phdr))
        return migr_errorf(ENOEXEC, "program header entry size %u (expected %zu)", eh->e_phentsize,
                           sizeof(Elf64_Phdr));
    if (eh->e_phnum == 0 || eh->e_phnum > PVH_MAX_PHDRS)
        return migr_errorf(ENOEXEC, "%u program headers (expected 1..%u)", eh->e_phnum, PVH_MAX_PHDRS);
    if (!in_file(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), len))
        return migr_errorf(ENOEXEC, "program headers at offset 0x%llx (%u entries) run past the end "
                           "of the %zu-byte file", (unsigned long long)eh->e_phoff, eh->e_phnum, len);
    *out = eh;
    return 0;
}

/* Find the PHYS32_ENTRY note in one PT_NOTE segment; *entry stays 0 if none. */
static int scan_notes(const uint8_t *elf, size_t len, const Elf64_Phdr *ph, int i, uint64_t *entry)
{
    if (!in_file(ph->p_offset, ph->p_filesz, len))
        return migr_errorf(ENOEXEC, "PT_NOTE segment %d (offset 0x%llx, %llu bytes) runs past the end "
                           "of the file", i, (unsigned long long)ph->p_offset, (unsigned long long)ph->p_filesz);
    const uint8_t *p = elf + ph->p_offset;
    uint64_t left = ph->p_filesz;
    while (left >= sizeof(Elf64_Nhdr)) {
        Elf64_Nhdr n;
        memcpy(&n, p, sizeof(n));
        uint64_t name_len = ((uint64_t)n.n_namesz + 3) & ~3ull, desc_len = ((uint64_t)n.n_descsz + 3) & ~3ull;
        if (name_len + desc_len > left - sizeof(n))
            return migr_errorf(ENOEXEC, "note in PT_NOTE segment %d (name %u bytes, descriptor %u bytes) "
                               "runs past the segment", i, n.n_namesz, n.n_descsz);
        const uint8_t *name = p + sizeof(n), *desc = name + name_len;
        if (n.n_namesz == sizeof(PVH_NOTE_NAME) && memcmp(name, PVH_NOTE_NAME, sizeof(PVH_NOTE_NAME)) == 0 &&
            n.n_type == PVH_NOTE_PHYS32_ENTRY) {
            uint64_t e = 0;
            if (n.n_descsz != 4 && n.n_descsz != 8)
                return migr_errorf(ENOEXEC, "PVH entry note: descriptor of %u bytes (expected 4 or 8)",
                                   n.n_descsz);
            memcpy(&e, desc, n.n_descsz);
            if (e == 0 || e >= (1ull << 32))
                return migr_errorf(ENOEXEC, "PVH entry note: entry 0x%llx is not a 32-bit physical address",
                                   (unsigned long long)e);
            if (*entry && *entry != e)
                return migr_errorf(ENOEXEC, "two PVH entry notes disagree (0x%llx, 0x%llx)",
                                   (unsigned long long)*entry, (unsigned long long)e);
            *entry = e;
        }
        p += sizeof(n) + name_len + desc_len;
        left -= sizeof(n) + name_len + desc_len;
    }
    return 0;
}

static int check_load(const Elf64_Phdr *ph, int i, size_t len, uint64_t ram_size)
{
    if (!in_file(ph->p_offset, ph->p_filesz, len))
        return migr_errorf(ENOEXEC, "PT_LOAD segment %d: file bytes 0x%llx+%llu run past the end of the "
                           "%zu-byte file", i, (unsigned long long)ph->p_offset,
                           (unsigned long long)ph->p_filesz, len);
    if (ph->p_filesz > ph->p_memsz)
        return migr_errorf(ENOEXEC, "PT_LOAD segment %d: file size %llu exceeds memory size %llu", i,
                           (unsigned long long)ph->p_filesz, (unsigned long long)ph->p_memsz);
    if (ph->p_paddr > ram_size || ph->p_memsz > ram_size - ph->p_paddr)
        return migr_errorf(EINVAL, "PT_LOAD segment %d at 0x%llx+0x%llx lies outside the guest's RAM "
                           "(0..0x%llx)", i, (unsigned long long)ph->p_paddr,
                           (unsigned long long)ph->p_memsz, (unsigned long long)ram_size);
    if (ph->p_paddr < PVH_BOOT_END && ph->p_paddr + ph->p_memsz > PVH_INFO_GPA)
        return migr_errorf(EINVAL, "PT_LOAD segment %d at 0x%llx+0x%llx overlaps the start info "
                           "migr writes at 0x%llx..0x%llx", i, (unsigned long long)ph->p_paddr,
                           (unsigned long long)ph->p_memsz, (unsigned long long)PVH_INFO_GPA,
                           (unsigned long long)PVH_BOOT_END);
    return 0;
}

static void put_start_info(uint8_t *ram, uint64_t ram_size, const char *cmdline, size_t cl)
{
    struct pvh_start_info *si = (struct pvh_start_info *)(ram + PVH_INFO_GPA);
    struct pvh_memmap_entry *mm = (struct pvh_memmap_entry *)(ram + PVH_MEMMAP_GPA);
    memset(si, 0, PVH_BOOT_END - PVH_INFO_GPA);
    mm[0] = (struct pvh_memmap_entry){.addr = 0, .size = ram_size, .type = PVH_MEMMAP_RAM};
    memcpy(ram + PVH_CMDLINE_GPA, cmdline, cl);
    si->magic = PVH_START_MAGIC;
    si->version = 1;
    si->cmdline_paddr = cl ? PVH_CMDLINE_GPA : 0;
    si->memmap_paddr = PVH_MEMMAP_GPA;
    si->memmap_entries = 1;
}

int migr_pvh_load(uint8_t *ram, uint64_t ram_size, const uint8_t *elf, size_t len, const char *cmdline,
                  struct migr_pvh_image *out)
{
    const Elf64_Ehdr *eh = NULL;
    int err = check_header(elf, len, &eh);
    if (err < 0)
        return err;
    size_t cl = cmdline ? strlen(cmdline) : 0;
    if (cl >= PVH_CMDLINE_MAX)
        return migr_errorf(E2BIG, "kernel command line of %zu bytes (at most %u)", cl, PVH_CMDLINE_MAX - 1);
    Elf64_Phdr ph[PVH_MAX_PHDRS];
    memcpy(ph, elf + eh->e_phoff, eh->e_phnum * sizeof(Elf64_Phdr));
    uint64_t entry = 0, lo = UINT64_MAX, hi = 0;
    int nload = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_NOTE && (err = scan_notes(elf, len, &ph[i], i, &entry)) < 0)
            return err;
        if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
            continue;
        if ((err = check_load(&ph[i], i, len, ram_size)) < 0)
            return err;
        nload++;
        lo = ph[i].p_paddr < lo ? ph[i].p_paddr : lo;
        hi = ph[i].p_paddr + ph[i].p_memsz > hi ? ph[i].p_paddr + ph[i].p_memsz : hi;
    }
    if (!entry)
        return migr_errorf(ENOEXEC, "no PVH entry note (ELF note \"Xen\", type 18 = XEN_ELFNOTE_PHYS32_ENTRY, "
                           "in a PT_NOTE segment): not a PVH kernel");
    if (!nload)
        return migr_errorf(ENOEXEC, "no PT_LOAD segment: nothing to load");
    bool entry_ok = false;
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X) && entry >= ph[i].p_paddr &&
            entry < ph[i].p_paddr + ph[i].p_filesz)
            entry_ok = true;
    if (!entry_ok)
        return migr_errorf(ENOEXEC, "PVH entry 0x%llx is not inside the file bytes of an executable "
                           "PT_LOAD segment", (unsigned long long)entry);

    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
            continue;
        memcpy(ram + ph[i].p_paddr, elf + ph[i].p_offset, ph[i].p_filesz);
        memset(ram + ph[i].p_paddr + ph[i].p_filesz, 0, ph[i].p_memsz - ph[i].p_filesz);
    }
    put_start_info(ram, ram_size, cmdline ? cmdline : "", cl);
    *out = (struct migr_pvh_image){.entry = (uint32_t)entry, .start_info_gpa = PVH_INFO_GPA, .lo = lo, .hi = hi};
    return 0;
}

int migr_pvh_load_file(uint8_t *ram, uint64_t ram_size, const char *path, const char *cmdline,
                       struct migr_pvh_image *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return migr_errorf_errno(errno, "kernel %s: open", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return migr_errorf_errno(e, "kernel %s: fstat", path);
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > PVH_MAX_FILE) {
        close(fd);
        return migr_errorf(EINVAL, "kernel %s: %s", path, !S_ISREG(st.st_mode) ? "not a regular file"
                           : st.st_size <= 0 ? "empty file" : "larger than 64 MiB");
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len);
    if (!buf) {
        close(fd);
        return migr_errorf(ENOMEM, "kernel %s: no memory for %zu bytes", path, len);
    }
    int err = migr_read_full(fd, buf, len);
    if (err < 0)
        err = migr_error_prefix(err, "kernel %s: reading %zu bytes", path, len);
    close(fd);
    if (err == 0) {
        err = migr_pvh_load(ram, ram_size, buf, len, cmdline, out);
        if (err < 0)
            err = migr_error_prefix(err, "kernel %s", path);
    }
    free(buf);
    return err;
}

int migr_pvh_initrd_arg(const char *cmdline, char *buf, size_t cap)
{
    size_t len = cmdline ? strlen(cmdline) : 0, pos = 0, n;
    const char *tok;
    while ((n = wl_spec_next(cmdline, len, &pos, &tok)) != 0) {
        if (n <= 7 || memcmp(tok, "initrd=", 7) != 0)
            continue;
        if (n - 7 >= cap)
            return migr_errorf(E2BIG, "initrd=: path longer than %zu bytes", cap - 1);
        memcpy(buf, tok + 7, n - 7);
        buf[n - 7] = 0;
        return 1;
    }
    return 0;
}

int migr_pvh_load_module(uint8_t *ram, uint64_t ram_size, const char *path, const struct migr_pvh_image *img)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return migr_errorf_errno(errno, "initrd %s: open", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return migr_errorf_errno(e, "initrd %s: fstat", path);
    }
    uint64_t top = ram_size < (4ull << 30) ? ram_size : (4ull << 30);
    uint64_t size = (uint64_t)st.st_size, floor = img->hi > PVH_BOOT_END ? img->hi : PVH_BOOT_END;
    if (!S_ISREG(st.st_mode) || size == 0 || size > top || ((top - size) & ~4095ull) < floor) {
        close(fd);
        return migr_errorf(E2BIG, "initrd %s: %s", path, !S_ISREG(st.st_mode) ? "not a regular file"
                           : size == 0 ? "empty file" : "does not fit in RAM below 4 GiB above the kernel");
    }
    uint64_t at = (top - size) & ~4095ull;
    int err = migr_read_full(fd, ram + at, size);
    close(fd);
    if (err < 0)
        return migr_error_prefix(err, "initrd %s: reading %llu bytes", path, (unsigned long long)size);
    struct pvh_start_info *si = (struct pvh_start_info *)(ram + img->start_info_gpa);
    *(struct pvh_modlist_entry *)(ram + PVH_MODLIST_GPA) = (struct pvh_modlist_entry){.paddr = at, .size = size};
    si->nr_modules = 1;
    si->modlist_paddr = PVH_MODLIST_GPA;
    return 0;
}

/* vCPU 0 at the PVH entry: flat 32-bit protected mode, paging off. */
static int pvh_set_regs(struct kvm_vcpu_ctx *c, const struct migr_pvh_image *img)
{
    struct kvm_sregs s;
    if (ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
        return migr_errorf_errno(errno, "vCPU %d: KVM_GET_SREGS", c->id);
    struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 0xb, .present = 1,
                               .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
    struct kvm_segment data = {.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0x3, .present = 1,
                               .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.tr = (struct kvm_segment){.base = 0, .limit = 0x67, .selector = 0x18, .type = 0xb, .present = 1};
    s.ldt = (struct kvm_segment){.selector = 0, .type = 0x2, .present = 1, .unusable = 1};
    s.gdt.base = s.gdt.limit = 0;
    s.idt.base = s.idt.limit = 0;
    s.cr0 = 0x11; /* PE ET */
    s.cr3 = s.cr4 = s.efer = 0;
    if (ioctl(c->fd, KVM_SET_SREGS, &s) < 0)
        return migr_errorf_errno(errno, "vCPU %d: KVM_SET_SREGS (32-bit protected mode)", c->id);
    struct kvm_regs r = {0};
    r.rip = img->entry;
    r.rbx = img->start_info_gpa;
    r.rflags = 0x2;
    if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
        return migr_errorf_errno(errno, "vCPU %d: KVM_SET_REGS (PVH entry 0x%x)", c->id, img->entry);
    return 0;
}

int migr_kvm_pvh_boot(struct kvm_vm *vm, const char *path, const char *cmdline)
{
    struct migr_pvh_image img;
    if (vm->hv.nvcpus != 1)
        return migr_errorf(EINVAL, "--kernel boots one vCPU (asked for %u): the PVH guest has no SMP "
                           "start-up", vm->hv.nvcpus);
    char initrd[1024];
    int has = migr_pvh_initrd_arg(cmdline, initrd, sizeof(initrd));
    if (has < 0)
        return has;
    int err = migr_pvh_load_file(vm->mem, vm->mem_size, path, cmdline, &img);
    if (err < 0)
        return err;
    if (has && (err = migr_pvh_load_module(vm->mem, vm->mem_size, initrd, &img)) < 0)
        return err;
    return pvh_set_regs(&vm->vcpus[0], &img);
}
