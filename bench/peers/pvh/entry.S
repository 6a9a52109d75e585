/* The PVH guest's kernel-mode part: from the PVH entry (32-bit protected
 * mode, paging off, %ebx = start info) to CPL3 in long mode, in a few hundred
 * instructions, because kernel-mode code is emulated slowly on this machine's
 * nested KVM (DESIGN.md). No IDT: nothing here may fault.
 *
 *   1. identity-map guest-physical 0..65 GiB, user-accessible: 1 GiB pages
 *      if CPUID says so, else 2 MiB pages for 0..4 GiB; either way the GiB at
 *      64 GiB holds migr's MMIO doorbells (WL_MMIO_GPA);
 *   2. PAE, EFER.LME, paging on; a GDT (kernel/user code and data, a TSS);
 *   3. read the TSC rate from kvmclock if the hypervisor offers it (the
 *      pvclock multiplier; turned off again at once);
 *   4. iretq to pvh_main (main.c) at CPL3 with IF clear.
 */
#define PTE_PRW_U   0x7
#define PTE_PS      0x80
#define MSR_EFER    0xc0000080
#define MSR_KVMCLOCK 0x4b564d01      /* MSR_KVM_SYSTEM_TIME_NEW */

    .section .note.Xen, "a", @note
    .balign 4
    .long 4                          /* namesz: "Xen\0" */
    .long 8                          /* descsz: a 64-bit entry address (QEMU reads 8 in ELF64) */
    .long 18                         /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32

    .section .text.start, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cld
    movl %ebx, pvh_start_info
    movl $kstack_top, %esp

    /* 1 GiB pages? CPUID 0x80000001 EDX bit 26 */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb 2f
    movl $0x80000001, %eax
    cpuid
    btl $26, %edx
    jnc 2f
    movl $pdpt, %edi
    movl $(PTE_PRW_U | PTE_PS), %eax
    xorl %edx, %edx
    movl $65, %ecx
1:  movl %eax, (%edi)
    movl %edx, 4(%edi)
    addl $0x40000000, %eax
    adcl $0, %edx
    addl $8, %edi
    decl %ecx
    jnz 1b
    movl $1, pvh_gib_pages
    jmp 3f

    /* 2 MiB pages: four PDs for 0..4 GiB, one for the doorbell GiB */
2:  movl $pd, %edi
    movl $(PTE_PRW_U | PTE_PS), %eax
    xorl %edx, %edx
    movl $2048, %ecx
1:  movl %eax, (%edi)
    movl %edx, 4(%edi)
    addl $0x200000, %eax
    adcl $0, %edx
    addl $8, %edi
    decl %ecx
    jnz 1b
    movl $(pd + PTE_PRW_U), pdpt
    movl $(pd + 0x1000 + PTE_PRW_U), pdpt + 8
    movl $(pd + 0x2000 + PTE_PRW_U), pdpt + 16
    movl $(pd + 0x3000 + PTE_PRW_U), pdpt + 24
    movl $(pd_mmio + PTE_PRW_U), pdpt + 64 * 8
    movl $(PTE_PRW_U | PTE_PS), pd_mmio
    movl $0x10, pd_mmio + 4          /* 64 GiB = 0x10_0000_0000 */

3:  movl $(pdpt + PTE_PRW_U), pml4
    /* TSS base into its descriptor */
    movl $tss, %eax
    movw %ax, gdt + 0x28 + 2
    shrl $16, %eax
    movb %al, gdt + 0x28 + 4
    movb %ah, gdt + 0x28 + 7
    movl $kstack_top, tss + 4        /* rsp0: never used (no interrupts) */

    movl %cr4, %eax
    orl $0x20, %eax                  /* PAE */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $0x100, %eax                 /* LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax            /* PG WP PE */
    movl %eax, %cr0
    lgdt gdt_desc
    ljmp $0x08, $start64

    .code64
start64:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movw $0x28, %ax
    ltr %ax

    /* kvmclock: "KVMKVMKVM" at 0x40000000 and KVM_FEATURE_CLOCKSOURCE2 (bit 3) */
    movl $0x40000000, %eax
    cpuid
    cmpl $0x4b4d564b, %ebx
    jne 5f
    cmpl $0x564b4d56, %ecx
    jne 5f
    cmpl $0x4d, %edx
    jne 5f
    cmpl $0x40000001, %eax
    jb 5f
    movl $0x40000001, %eax
    cpuid
    btl $3, %eax
    jnc 5f
    movl $MSR_KVMCLOCK, %ecx
    movl $(pvh_pvclock + 1), %eax
    xorl %edx, %edx
    wrmsr
    movl $1000, %esi
4:  movl pvh_pvclock, %eax           /* version: odd while being updated */
    testl %eax, %eax
    jz 6f
    testl $1, %eax
    jz 7f
6:  decl %esi
    jnz 4b
7:  movl $MSR_KVMCLOCK, %ecx
    xorl %eax, %eax
    xorl %edx, %edx
    wrmsr

5:  pushq $0x1b                      /* SS: user data */
    pushq $(ustack_top - 8)          /* as if called: rsp + 8 is 16-byte aligned */
    pushq $0x2                       /* RFLAGS: IF clear */
    pushq $0x23                      /* CS: user code 64 */
    pushq $pvh_main
    iretq

    .section .data
    .balign 16
gdt:
    .quad 0
    .quad 0x00af9a000000ffff         /* 0x08 kernel code 64 */
    .quad 0x00cf92000000ffff         /* 0x10 kernel data */
    .quad 0x00cff2000000ffff         /* 0x18 user data, DPL3 */
    .quad 0x00affa000000ffff         /* 0x20 user code 64, DPL3 */
    .quad 0x0000890000000067         /* 0x28 TSS (base filled in), limit 0x67 */
    .quad 0
gdt_end:
    .balign 4
    .word 0
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
    .balign 16
tss:
    .fill 0x66, 1, 0
    .word 0x68                       /* I/O map base past the limit: no bitmap */

    .global pvh_start_info, pvh_gib_pages, pvh_pvclock
    .balign 8
pvh_start_info:
    .quad 0
pvh_gib_pages:
    .long 0
    .balign 32
pvh_pvclock:                         /* struct pvclock_vcpu_time_info, 32 bytes */
    .fill 32, 1, 0

    .section .bss
    .balign 4096
pml4:
    .fill 4096, 1, 0
pdpt:
    .fill 4096, 1, 0
pd:
    .fill 4 * 4096, 1, 0
pd_mmio:
    .fill 4096, 1, 0
kstack:
    .fill 4096, 1, 0
kstack_top:
    .balign 16
ustack:
    .fill 16384, 1, 0
ustack_top:

    .section .note.GNU-stack, "", @progbits
