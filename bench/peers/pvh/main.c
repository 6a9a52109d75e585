/* The PVH guest's CPL3 part: read the start info and the command line, lay
 * out and fill the workload exactly as migr's VMM does for its built-in guest
 * (so `migr verify` and `migr verify --image` check it), then run the same
 * workload loop (hv-glue/kvm/guest/run.c). Runs natively at CPL3; entry.S
 * got here.
 *
 * Command line: the workload keys of `migr run --workload` (rate, ws,
 * pattern, data, seed; separated by commas or blanks), plus tsc_khz=N;
 * initrd=PATH is migr's loader's (its first module) and skipped here. With
 * data=app the first module is an application image (workload.h, struct
 * wl_app_hdr): the working set starts as its first capture and the writes
 * alternate its changed pages between the two captures. The
 * TSC rate comes from tsc_khz= if given, else kvmclock (both migr's VMM and
 * QEMU offer it: KVM itself serves the MSR), else CPUID 0x15 / 0x40000010;
 * without any the guest panics rather than run at a wrong rate.
 *
 * On any error it prints a line through the console doorbell and rings the
 * panic doorbell (migr's VMM stops the guest and says so; under QEMU both are
 * ignored MMIO writes and the guest spins with no workload boot page, which
 * the bench reports as "guest did not start"). */
#include <stddef.h>
#include <stdint.h>

#include "hv-glue/kvm/guest/run.h"
#include "hv-glue/kvm/pvh.h"
#include "hv-glue/workload/spec.h"

extern uint64_t pvh_start_info;
extern uint32_t pvh_gib_pages;
extern volatile uint8_t pvh_pvclock[32];
extern uint8_t __pvh_end[];

void pvh_main(void) __attribute__((noreturn));

static char cmdline[PVH_CMDLINE_MAX];

static void puts_db(const char *s)
{
    while (*s)
        guest_doorbell(WL_DB_CONSOLE, (uint8_t)*s++);
}

static void putu_db(uint64_t v)
{
    char b[24];
    int n = 0;
    do
        b[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < 23);
    while (n)
        guest_doorbell(WL_DB_CONSOLE, (uint8_t)b[--n]);
}

static void __attribute__((noreturn)) die(const char *why, uint32_t code)
{
    puts_db("migr-pvh: ");
    puts_db(why);
    puts_db("\n");
    for (;;)
        guest_doorbell(WL_DB_PANIC, code);
}

static void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ __volatile__("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "0"(leaf), "2"(0));
}

/* kHz from kvmclock's multiplier (struct pvclock_vcpu_time_info: u32 version
 * at 0, u32 tsc_to_system_mul at 24, s8 tsc_shift at 28):
 * ns = ((ticks << shift) * mul) >> 32. */
static uint64_t tsc_khz_kvmclock(void)
{
    uint32_t version = *(volatile uint32_t *)&pvh_pvclock[0];
    uint32_t mul = *(volatile uint32_t *)&pvh_pvclock[24];
    int8_t shift = (int8_t)pvh_pvclock[28];
    if (version == 0 || (version & 1) || mul == 0)
        return 0;
    uint64_t khz = (1000000ull << 32) / mul;
    return shift >= 0 ? khz >> shift : khz << -shift;
}

static uint64_t tsc_khz_cpuid(void)
{
    uint32_t a, b, c, d;
    cpuid(0, &a, &b, &c, &d);
    if (a >= 0x15) {
        uint32_t den, num, hz, x;
        cpuid(0x15, &den, &num, &hz, &x);
        if (den && num && hz)
            return (uint64_t)hz * num / den / 1000;
    }
    cpuid(0x40000000, &a, &b, &c, &d);
    if (a >= 0x40000010 && a < 0x40010000) {
        cpuid(0x40000010, &a, &b, &c, &d);
        return a;
    }
    return 0;
}

/* End of the RAM range holding the guest itself (guest-physical 1 MiB). */
static uint64_t ram_top(const struct pvh_start_info *si)
{
    if (si->version < 1 || si->memmap_entries == 0 || si->memmap_paddr == 0)
        die("start info has no memory map (version < 1)", 2);
    const struct pvh_memmap_entry *m = (const struct pvh_memmap_entry *)si->memmap_paddr;
    for (uint32_t i = 0; i < si->memmap_entries && i < 128; i++)
        if (m[i].type == PVH_MEMMAP_RAM && m[i].addr <= 0x100000 && m[i].addr + m[i].size > 0x100000)
            return (m[i].addr + m[i].size) & ~0x1fffffull;
    die("memory map has no RAM at 1 MiB", 3);
}

static void parse_cmdline(struct migr_workload_cfg *c, uint64_t *tsc_khz)
{
    size_t len = 0, pos = 0, n;
    const char *tok;
    while (len < sizeof(cmdline) && cmdline[len])
        len++;
    while ((n = wl_spec_next(cmdline, len, &pos, &tok)) != 0) {
        size_t k = 0;
        while (k < n && tok[k] != '=')
            k++;
        if (k == 0 || k + 1 >= n) {
            puts_db("migr-pvh: bad argument (not key=value): ");
            die(tok, 4);
        }
        if (k == 6 && tok[0] == 'i' && tok[1] == 'n' && tok[2] == 'i' && tok[3] == 't' && tok[4] == 'r' &&
            tok[5] == 'd')
            continue;   /* migr's loader's own token (pvh.c) */
        if (k == 7 && tok[0] == 't' && tok[1] == 's' && tok[2] == 'c' && tok[3] == '_' && tok[4] == 'k' &&
            tok[5] == 'h' && tok[6] == 'z') {
            if (wl_spec_number(tok + 8, n - 8, tsc_khz) < 0 || *tsc_khz == 0)
                die("tsc_khz=: not a number", 4);
            continue;
        }
        int err = wl_spec_set(c, tok, k, tok + k + 1, n - k - 1);
        if (err) {
            puts_db("migr-pvh: bad workload argument (keys: rate ws pattern data seed tsc_khz): ");
            die(tok, 4);
        }
    }
}

/* data=app: the first module, checked before anything is read from it. */
static const struct wl_app_hdr *app_image(const struct pvh_start_info *si, uint64_t ws_bytes)
{
    if (ws_bytes)
        die("data=app: the image sets the working set; drop ws=", 9);
    if (si->nr_modules < 1 || si->modlist_paddr == 0)
        die("data=app: no module (QEMU: -initrd FILE; migr: initrd=FILE on the command line)", 10);
    const struct pvh_modlist_entry *m = (const struct pvh_modlist_entry *)si->modlist_paddr;
    const struct wl_app_hdr *h = (const struct wl_app_hdr *)m->paddr;
    if ((m->paddr & 4095) || wl_app_check_image(h, m->size) != 0)
        die("data=app: the module is not a sound application image (docs/workload-data.md)", 11);
    return h;
}

void pvh_main(void)
{
    const struct pvh_start_info *si = (const struct pvh_start_info *)pvh_start_info;
    if (si->magic != PVH_START_MAGIC)
        die("no PVH start info at %ebx", 1);
    /* Take everything from the start info before writing low memory. */
    uint64_t top = ram_top(si);
    if (si->cmdline_paddr) {
        const char *s = (const char *)si->cmdline_paddr;
        for (size_t i = 0; i + 1 < sizeof(cmdline) && s[i]; i++)
            cmdline[i] = s[i];
    }
    struct migr_workload_cfg c = {.rate_bytes = 64ull << 20, .pattern = MIGR_WL_RANDOM,
                                  .data = MIGR_WL_TEXT, .seed = 1};
    uint64_t khz = 0;
    const char *src = "tsc_khz=";
    parse_cmdline(&c, &khz);
    if (!khz && (khz = tsc_khz_kvmclock()) != 0)
        src = "kvmclock";
    if (!khz && (khz = tsc_khz_cpuid()) != 0)
        src = "cpuid";
    if (!khz)
        die("no TSC frequency (no kvmclock, CPUID 0x15 or 0x40000010): pass tsc_khz=N", 5);

    /* The layout of migr's built-in guest (vmm.c, put_guest_image). */
    if ((uint64_t)__pvh_end > WL_GEN_GPA)
        die("guest image reaches the generation table", 6);
    uint64_t ws_gpa = WL_GEN_GPA + wl_gen_bytes(top);
    if (top <= ws_gpa)
        die("RAM too small", 7);
    uint64_t max_pages = (top - ws_gpa) / 4096;
    uint64_t ws_pages = c.ws_bytes ? c.ws_bytes / 4096 : max_pages;
    const struct wl_app_hdr *app = c.data == MIGR_WL_APP ? app_image(si, c.ws_bytes) : NULL;
    if (app) {
        ws_pages = app->pages;
        if (ws_gpa + ws_pages * 4096 > (uint64_t)app)
            die("data=app: the image's working set does not fit below the image (more RAM?)", 12);
    }
    if (ws_pages == 0 || ws_pages > max_pages)
        die("working set does not fit in RAM after the generation table", 8);

    struct wl_boot *b = (struct wl_boot *)WL_BOOT_GPA;
    uint64_t *low = (uint64_t *)WL_BOOT_GPA;
    for (int i = 0; i < 2 * 512; i++)   /* boot page and the vCPU pages: firmware may have left data */
        low[i] = 0;
    if (app)
        for (uint64_t i = 0; i < ws_pages; i++)
            wl_app_fill_page((uint8_t *)(ws_gpa + i * 4096), wl_app_source(app, i, 0), i, 0, c.seed);
    else if (c.data != MIGR_WL_ZERO)
        for (uint64_t i = 0; i < ws_pages; i++)
            wl_fill_page((uint8_t *)(ws_gpa + i * 4096), i, 0, c.data, c.seed);
    b->version = WL_VERSION;
    b->nvcpus = 1;
    b->tsc_khz = khz;
    b->rate_bytes = c.rate_bytes;
    b->ws_gpa = ws_gpa;
    b->ws_pages = ws_pages;
    b->gen_gpa = WL_GEN_GPA;
    b->pattern = c.pattern;
    b->data = c.data;
    b->seed = c.seed;
    b->app_gpa = (uint64_t)app;
    b->app_changed = app ? app->changed : 0;
    __asm__ __volatile__("" ::: "memory");
    b->magic = WL_BOOT_MAGIC;   /* last: verify and status look for it */

    puts_db("migr-pvh: ");
    putu_db(top >> 20);
    puts_db(" MiB, ");
    putu_db(ws_pages);
    puts_db(" pages, tsc ");
    putu_db(khz);
    puts_db(" kHz (");
    puts_db(src);
    puts_db(pvh_gib_pages ? "), 1 GiB pages\n" : "), 2 MiB pages\n");
    guest_run(b, 0);
}
