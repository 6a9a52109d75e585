/* hv-glue/kvm: booting an ELF kernel by the PVH boot ABI (the one QEMU's
 * `-kernel FILE.elf` uses for an ELF with a Xen PHYS32_ENTRY note), so that
 * one guest binary runs under migr's VMM and under QEMU.
 *
 * The ABI (facts, as documented for Xen's HVM/PVH direct boot):
 *   - the kernel is an ELF with a note of name "Xen", type 18
 *     (XEN_ELFNOTE_PHYS32_ENTRY) whose descriptor is the 32-bit physical
 *     entry address;
 *   - the entry runs in 32-bit protected mode, paging off, flat 4 GiB CS
 *     (read/execute) and DS/ES/SS (read/write), TR a 32-bit TSS with base 0
 *     and limit 0x67, IF/TF/VM clear, other registers undefined except
 *   - %ebx = guest-physical address of a struct pvh_start_info.
 * The structure layouts below carry no code from any project.
 */
#ifndef MIGR_HV_KVM_PVH_H
#define MIGR_HV_KVM_PVH_H

#include <stddef.h>
#include <stdint.h>

#define PVH_NOTE_NAME         "Xen"
#define PVH_NOTE_PHYS32_ENTRY 18u
#define PVH_START_MAGIC       0x336ec578u
#define PVH_MEMMAP_RAM        1u      /* E820 type of usable RAM */

/* Start of day information (version 1: with a memory map). */
struct pvh_start_info {
    uint32_t magic;           /* PVH_START_MAGIC */
    uint32_t version;         /* 1 */
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;   /* NUL-terminated command line, 0 if none */
    uint64_t rsdp_paddr;      /* ACPI RSDP, 0 if none */
    uint64_t memmap_paddr;    /* struct pvh_memmap_entry[memmap_entries] */
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct pvh_memmap_entry {     /* one E820-style range */
    uint64_t addr;
    uint64_t size;
    uint32_t type;            /* PVH_MEMMAP_RAM = 1 */
    uint32_t reserved;
};

struct pvh_modlist_entry {    /* one module (QEMU: -initrd FILE) */
    uint64_t paddr;
    uint64_t size;            /* bytes */
    uint64_t cmdline_paddr;   /* 0: none */
    uint64_t reserved;
};

/* Where migr's VMM puts the start info, its memory map and the command line
 * (guest-physical; a kernel's segments must stay clear of them). */
#define PVH_INFO_GPA     0x9000ull
#define PVH_MEMMAP_GPA   (PVH_INFO_GPA + 0x100ull)
#define PVH_MODLIST_GPA  (PVH_INFO_GPA + 0x800ull)
#define PVH_CMDLINE_GPA  0xa000ull
#define PVH_CMDLINE_MAX  4096u       /* bytes, with the NUL */
#define PVH_BOOT_END     0xb000ull

struct migr_pvh_image {
    uint32_t entry;           /* from the note */
    uint64_t start_info_gpa;  /* value for %ebx */
    uint64_t lo, hi;          /* guest-physical range the segments occupy */
};

/*! Check an ELF64 x86-64 kernel with a PVH entry note (elf, len bytes) and,
 *  if it is sound, copy its PT_LOAD segments to their physical addresses in
 *  ram (ram_size bytes from guest-physical 0; p_memsz beyond p_filesz is
 *  zeroed) and write the start info, a one-entry memory map covering ram and
 *  cmdline (NULL or "" for none). Nothing is written unless every check
 *  passes. Returns 0 and fills *out, or -ENOEXEC / -EINVAL / -E2BIG with a
 *  message (migr_last_error()) naming the offending field or segment. */
int migr_pvh_load(uint8_t *ram, uint64_t ram_size, const uint8_t *elf, size_t len, const char *cmdline,
                  struct migr_pvh_image *out);

/*! As migr_pvh_load for the file at path (read whole; at most 64 MiB). */
int migr_pvh_load_file(uint8_t *ram, uint64_t ram_size, const char *path, const char *cmdline,
                       struct migr_pvh_image *out);

/*! Load the file at path as the kernel's first (only) module: page-aligned at
 *  the top of RAM below 4 GiB (where QEMU puts an -initrd), above the
 *  kernel's segments (img->hi); the start info written by migr_pvh_load then
 *  names it (nr_modules 1, a modlist entry at PVH_MODLIST_GPA). Returns 0, or
 *  -errno with a message naming the file (too large for RAM, unreadable). */
int migr_pvh_load_module(uint8_t *ram, uint64_t ram_size, const char *path, const struct migr_pvh_image *img);

/*! The value of the loader's own `initrd=PATH` token in cmdline (tokens
 *  separated by commas or blanks), copied to buf (cap bytes); 1 if found,
 *  0 if none, -E2BIG if the path does not fit. The token stays in the
 *  command line (the guest skips it). */
int migr_pvh_initrd_arg(const char *cmdline, char *buf, size_t cap);

struct kvm_vm;
/*! Load path into a fresh VM (paused, one vCPU) and set vCPU 0 to the PVH
 *  entry state (32-bit protected mode, %ebx = start info); an `initrd=PATH`
 *  token in cmdline also loads PATH as the first module (QEMU's -initrd).
 *  -EINVAL unless the VM has exactly one vCPU. */
int migr_kvm_pvh_boot(struct kvm_vm *vm, const char *path, const char *cmdline);

#endif
