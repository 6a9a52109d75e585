/* The guest ABI shared by the freestanding guest (hv-glue/kvm/guest/) and the
 * host (VMM set-up, verification): memory layout, boot page, page format and
 * the deterministic fill. Everything here compiles without libc. */
#ifndef MIGR_WL_ABI_H
#define MIGR_WL_ABI_H

#include <stdint.h>

/* Guest-physical layout (identity-mapped in the guest). */
#define WL_BOOT_GPA     0x1000ull     /* struct wl_boot */
#define WL_VCPU_GPA     0x2000ull     /* struct wl_vcpu[64], 64 bytes each */
#define WL_GDT_GPA      0x3000ull     /* GDT at +0, TSS at +0x800 */
#define WL_PML4_GPA     0x4000ull
#define WL_PDPT_GPA     0x5000ull
#define WL_PD_GPA       0x6000ull     /* one PD per GiB, up to 64, then the MMIO PD */
#define WL_MAX_GIB      64ull
#define WL_MMIO_GPA     (WL_MAX_GIB << 30)  /* doorbell page: no memslot, so writes exit */
#define WL_CODE_GPA     0x100000ull   /* guest binary, up to 512 KiB */
#define WL_CODE_MAX     0x80000ull
#define WL_STACK_GPA    0x180000ull   /* 8 KiB stack per vCPU, up to 64 */
#define WL_STACK_SIZE   0x2000ull
#define WL_GEN_GPA      0x200000ull   /* u32 generation per working-set page */
#define WL_MAX_VCPUS    64u

#define WL_BOOT_MAGIC   0x544f4f4252474d4dull   /* "MMGRBOOT" */
#define WL_PAGE_MAGIC   0x45474150524749d4ull
#define WL_VERSION      1u
#define WL_HDR_SIZE     32u

/* Doorbells: 32-bit writes at WL_MMIO_GPA + offset reach the VMM as
 * KVM_EXIT_MMIO. (Not port I/O: the nested hypervisor here drops RFLAGS.IOPL
 * for CPL3 code, so OUT raises #GP; an MMIO write is emulated at any CPL.) */
#define WL_DB_QUIESCED  0x10   /* value = vcpu id: stopped at a consistent point */
#define WL_DB_PANIC     0x14   /* value = code: the guest found something impossible */
#define WL_DB_CONSOLE   0x18   /* value = one character (debug) */
#define WL_DB_SLEEP     0x1c   /* value = microseconds: nothing to do until then (a CPL3 guest
                                  cannot HLT; this frees the host core while throttled) */

struct wl_boot {
    uint64_t magic;
    uint32_t version;
    uint32_t nvcpus;
    uint64_t tsc_khz;
    uint64_t rate_bytes;     /* per guest, all vCPUs together; 0 = unthrottled */
    uint64_t ws_gpa;         /* first working-set page */
    uint64_t ws_pages;
    uint64_t gen_gpa;        /* generation table */
    uint32_t pattern;
    uint32_t data;
    uint64_t seed;
    volatile uint32_t quiesce_req;   /* set by the VMM: stop at the next page boundary */
    uint32_t reserved;
    /* data=app (MIGR_WL_APP) only, else 0: the application image (struct
     * wl_app_hdr) the guest was given as its first PVH module, and how many
     * pages the image's second capture changed (the pages the guest writes). */
    uint64_t app_gpa;
    uint64_t app_changed;
};

struct wl_vcpu {
    volatile uint64_t writes;        /* pages written by this vCPU */
    volatile uint64_t inflight;      /* ws index + 1 of the page being written, 0 if none */
    uint64_t rng;
    uint64_t cursor;                 /* sequential pattern position */
    uint64_t spins;                  /* throttle loop iterations (idle measure) */
    uint64_t pad[3];
};

struct wl_page_hdr {
    uint64_t magic;
    uint64_t index;      /* working-set page index */
    uint32_t gen;
    uint32_t data;
    uint64_t check;      /* hash of (index, gen, seed) */
};

/* The application image of data=app (docs/workload-data.md): memory captured
 * twice from a real program. Page-aligned parts, all little-endian:
 *   page 0                 this header;
 *   pages 1 .. pages       A: the first capture, one page per working-set page;
 *   next `changed` pages   B: the second capture of each page it changed,
 *                          in the order of the index;
 *   then changed x u64     the index: the working-set page of each B page,
 *                          strictly ascending (binary search);
 *   zero padding to a page.
 * crc32 (zlib's CRC-32) covers every byte after page 0, so verification
 * knows the image it computes expected pages from is the one the guest got.
 * A page of generation g holds A (g even) or, for a changed page, B (g odd),
 * under the usual 32-byte header; a source page that is all zero stays all
 * zero (no header), as in data=zero. */
#define WL_APP_MAGIC    0x3150504152474d4dull   /* "MMGRAPP1" */
#define WL_APP_VERSION  1u
#define WL_APP_MAX_PAGES (1ull << 26)           /* 256 GiB: bounds before arithmetic */

struct wl_app_hdr {
    uint64_t magic;
    uint32_t version;
    uint32_t crc32;        /* of the image from byte 4096 to the end */
    uint64_t pages;        /* A pages = working-set pages */
    uint64_t changed;      /* B pages = index entries */
    uint64_t image_bytes;  /* whole image with the header, a multiple of 4096 */
};

/* Bytes of an image with these counts. */
static inline uint64_t wl_app_bytes(uint64_t pages, uint64_t changed)
{
    return (1 + pages + changed) * 4096 + ((changed * 8 + 4095) & ~4095ull);
}

static inline uint64_t wl_mix(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static inline uint64_t wl_xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x;
}

/* Size of the generation table region rounded to 2 MiB. */
static inline uint64_t wl_gen_bytes(uint64_t ram_bytes)
{
    uint64_t b = (ram_bytes / 4096) * 4;
    return (b + 0x1fffff) & ~0x1fffffull;
}

/* Fill one page deterministically from (index, gen, data kind, seed). */
void wl_fill_page(uint8_t *page, uint64_t index, uint32_t gen, uint32_t data, uint64_t seed);
/* Check one page against ref, its expected contents as (index, gen) (a ref
 * without a page header is a zero page); returns 0 if they are the same,
 * else a code: 1 bad magic, 2 wrong index, 3 wrong generation, 4 body
 * differs, 5 zero page not zero. *off gets the first differing byte. */
int wl_compare_page(const uint8_t *page, const uint8_t *ref, uint64_t index, uint32_t gen, uint32_t *off);
/* Choose the next working-set page for vCPU id. */
uint64_t wl_next_page(const struct wl_boot *b, struct wl_vcpu *v, uint32_t id);
/* One page write with integrity metadata (ram = host or guest view of gpa 0). */
void wl_write_page(uint8_t *ram, const struct wl_boot *b, struct wl_vcpu *v, uint64_t index);
/* data=app: wl_next_page returns a slot of the image's index (0 ..
 * app_changed - 1), which wl_write_page turns into the working-set page;
 * wl_next_page picks slots with the pattern, as it picks pages otherwise. */

/* data=app: the image's structure is sound (magic, version, counts, size
 * within avail bytes, index ascending and inside the working set); 0 or a
 * code: 1 magic/version, 2 counts, 3 size, 4 index. Does not check crc32. */
int wl_app_check_image(const struct wl_app_hdr *h, uint64_t avail);
/* data=app: the source page of working-set page index at generation gen
 * (ram = view of gpa 0, h = the image in that view). */
const uint8_t *wl_app_source(const struct wl_app_hdr *h, uint64_t index, uint32_t gen);
/* data=app: fill one page from its source page (header unless src is zero). */
void wl_app_fill_page(uint8_t *page, const uint8_t *src, uint64_t index, uint32_t gen, uint64_t seed);

#endif
