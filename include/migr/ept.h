/* migr — EPT dirty-bit harvester, for hypervisors that own their EPT
 * (TinyVisor, BitVisor: ../shared/seeds/), where KVM's dirty log does not
 * exist.
 *
 * Intel EPT with accessed/dirty flags (SDM vol. 3C, "EPT Translation
 * Mechanism" and "Accessed and Dirty Flags for EPT"): with EPTP bit 6 set the
 * processor sets bit 8 (A) of every EPT entry it uses and bit 9 (D) of the
 * leaf that maps a page it writes: a 4 KiB PTE, a 2 MiB PDE (bit 7) or a
 * 1 GiB PDPTE (bit 7). A harvest walks the 4-level tables from the EPTP,
 * reports every leaf whose D bit is set (a large leaf: all its 4 KiB pages),
 * clears those D bits with an atomic AND (a CPU setting D meanwhile is never
 * lost), and then calls the flush hook — INVEPT single-context — so that no
 * TLB entry still holds a translation whose D bit it believes set: the next
 * write to such a page walks the tables again and sets D again.
 *
 * Table memory is reached through a caller-supplied "host physical to
 * pointer" callback (the hypervisor's own direct map, or a test's arena).
 * The walk refuses, with a message naming the entry, tables it cannot trust:
 * reserved bits set, a write-without-read entry (EPT misconfiguration), a
 * page-size bit in a PML4E, a table that is not 4 KiB aligned or that the
 * callback cannot reach, and a table referenced twice (a loop back to an
 * ancestor, or a table shared by two entries: then one D bit would stand for
 * two guest-physical pages and clearing it while walking the first would hide
 * a write to the second). Nothing is cleared when the tables are refused.
 */
#ifndef MIGR_EPT_H
#define MIGR_EPT_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MIGR_EPT_R        (1ull << 0)
#define MIGR_EPT_W        (1ull << 1)
#define MIGR_EPT_X        (1ull << 2)
#define MIGR_EPT_MT_WB    (6ull << 3)    /* leaf memory type (bits 5:3) */
#define MIGR_EPT_LARGE    (1ull << 7)    /* PDE: 2 MiB leaf; PDPTE: 1 GiB leaf */
#define MIGR_EPT_A        (1ull << 8)
#define MIGR_EPT_D        (1ull << 9)
#define MIGR_EPTP_WB      6ull           /* EPTP bits 2:0: paging-structure memory type */
#define MIGR_EPTP_WALK4   (3ull << 3)    /* EPTP bits 5:3: walk length - 1 */
#define MIGR_EPTP_AD      (1ull << 6)    /* EPTP bit 6: accessed/dirty flags enabled */

struct migr_ept_stats {
    uint64_t tables;          /* tables walked (PML4 included) */
    uint64_t leaves_4k, leaves_2m, leaves_1g;
    uint64_t dirty_leaves;    /* leaves whose D bit this harvest cleared */
    uint64_t flushes;
};

struct migr_ept {
    uint64_t eptp;                  /* the VM's EPT pointer (bit 6 must be set) */
    uint8_t maxphyaddr;             /* physical-address width (CPUID 0x80000008); 0: 46 */
    /*! The 4 KiB table at host-physical hpa, or NULL if hpa is not table memory. */
    void *(*hpa_to_ptr)(void *arg, uint64_t hpa);
    /*! Called after D bits were cleared, before the harvest returns: INVEPT
     *  (single-context, this eptp). 0 or -errno. NULL only where no TLB caches
     *  EPT translations (tests). */
    int (*flush)(void *arg, uint64_t eptp);
    void *arg;
    /* Pages reported by migr_ept_harvest: bit i is gpa_base + i * 4096. */
    uint64_t gpa_base, npages;
    struct migr_ept_stats stats;    /* of the last walk (out) */
    bool resync;                    /* internal: a flush failed, next harvest reports every mapped page */
};

/*! Called for each dirty range found: [gpa, gpa + bytes). */
typedef void (*migr_ept_dirty_fn)(void *arg, uint64_t gpa, uint64_t bytes);

/*! Walk e's tables without changing them: 0, or -EINVAL (-EFAULT for an
 *  unreachable table) with a message naming the first bad entry.
 *
 *  Threads and blocking (every function here): none starts a thread or
 *  installs a signal handler; a walk runs on the caller's thread for time
 *  linear in the tables' size, calling fn and e->flush from it. One thread
 *  at a time per e; the guest's CPUs may keep setting D bits meanwhile. */
int migr_ept_check(struct migr_ept *e);

/*! Harvest: check the tables (as migr_ept_check), then report every leaf
 *  with D set to fn and clear its D bit, then flush. Returns the number of
 *  dirty leaves, or -errno (nothing cleared if the tables are refused; if
 *  the flush fails the leaves reported stay reported and the next harvest
 *  reports every mapped page, as the TLB may hide writes until a flush). */
long migr_ept_walk(struct migr_ept *e, migr_ept_dirty_fn fn, void *arg);

/*! migr_ept_walk into a bitmap of e->npages bits from e->gpa_base (pages
 *  outside it are reported nowhere, and their D bits are still cleared).
 *  Returns the number of bits newly set, or -errno. */
long migr_ept_harvest(struct migr_ept *e, uint64_t *bm);

struct migr_hv;
/*! Make e the dirty source of hv: the "ept" tracker (migr_dirty_open) then
 *  harvests e and maps its guest-physical pages to hv's RAM indices. e must
 *  outlive the attachment. -EBUSY if hv has one already, -ENOSPC if too many
 *  guests have one. */
int migr_ept_attach(struct migr_hv *hv, struct migr_ept *e);
/*! Undo migr_ept_attach (not while an "ept" tracker of hv is open). Does not block. */
void migr_ept_detach(struct migr_hv *hv);

#ifdef __cplusplus
}
#endif

#endif
