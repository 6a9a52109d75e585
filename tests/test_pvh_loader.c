/* The PVH ELF loader (hv-glue/kvm/pvh.c) as a spec: a small valid PVH ELF
 * built in memory loads, with the start info, memory map and command line
 * where pvh.h says; each malformed variant in the table is refused with the
 * words its message must contain and leaves guest RAM untouched; random byte
 * flips of the valid file never crash the loader (seeded, replayable). Then
 * the real guest (build/bench/peers/pvh.elf) loads, and
 * migr_workload_verify_image accepts an in-flight page only as old/new/torn
 * between them. No KVM needed. */
#include <elf.h>
#include <stdint.h>
#include <sys/mman.h>

#include "hv-glue/kvm/pvh.h"
#include "hv-glue/workload/workload.h"
#include "migr/workload.h"
#include "testlib.h"

#define RAM (16ull << 20)
#define LOAD_PADDR 0x100000ull

/* ehdr | phdr[2] (LOAD, NOTE) | code (64 bytes) | note (Xen, 18, 8-byte entry) */
struct img {
    Elf64_Ehdr eh;
    Elf64_Phdr ph[2];
    uint8_t code[64];
    struct {
        Elf64_Nhdr nh;
        char name[4];
        uint64_t entry;
    } __attribute__((packed)) note;
};

static void make_valid(struct img *m)
{
    memset(m, 0, sizeof(*m));
    memcpy(m->eh.e_ident, ELFMAG, SELFMAG);
    m->eh.e_ident[EI_CLASS] = ELFCLASS64;
    m->eh.e_ident[EI_DATA] = ELFDATA2LSB;
    m->eh.e_ident[EI_VERSION] = EV_CURRENT;
    m->eh.e_type = ET_EXEC;
    m->eh.e_machine = EM_X86_64;
    m->eh.e_version = EV_CURRENT;
    m->eh.e_entry = LOAD_PADDR;
    m->eh.e_phoff = offsetof(struct img, ph);
    m->eh.e_ehsize = sizeof(Elf64_Ehdr);
    m->eh.e_phentsize = sizeof(Elf64_Phdr);
    m->eh.e_phnum = 2;
    m->ph[0] = (Elf64_Phdr){.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = offsetof(struct img, code),
                            .p_vaddr = LOAD_PADDR, .p_paddr = LOAD_PADDR, .p_filesz = 64, .p_memsz = 8192,
                            .p_align = 4096};
    m->ph[1] = (Elf64_Phdr){.p_type = PT_NOTE, .p_flags = PF_R, .p_offset = offsetof(struct img, note),
                            .p_filesz = sizeof(m->note), .p_align = 4};
    memset(m->code, 0x90, sizeof(m->code));
    m->note.nh = (Elf64_Nhdr){.n_namesz = 4, .n_descsz = 8, .n_type = PVH_NOTE_PHYS32_ENTRY};
    memcpy(m->note.name, "Xen", 4);
    m->note.entry = LOAD_PADDR + 16;
}

struct bad {
    const char *name;
    void (*mutate)(struct img *m, size_t *len);
    const char *words;      /* the refusal must contain these */
};

static void m_magic(struct img *m, size_t *l) { (void)l; m->eh.e_ident[1] = 'X'; }
static void m_elf32(struct img *m, size_t *l) { (void)l; m->eh.e_ident[EI_CLASS] = ELFCLASS32; }
static void m_class(struct img *m, size_t *l) { (void)l; m->eh.e_ident[EI_CLASS] = 7; }
static void m_bigend(struct img *m, size_t *l) { (void)l; m->eh.e_ident[EI_DATA] = ELFDATA2MSB; }
static void m_machine(struct img *m, size_t *l) { (void)l; m->eh.e_machine = EM_AARCH64; }
static void m_type(struct img *m, size_t *l) { (void)l; m->eh.e_type = ET_DYN; }
static void m_phentsize(struct img *m, size_t *l) { (void)l; m->eh.e_phentsize = 32; }
static void m_phnum0(struct img *m, size_t *l) { (void)l; m->eh.e_phnum = 0; }
static void m_phoff(struct img *m, size_t *l) { (void)l; m->eh.e_phoff = 0xfffffffffffffff0ull; }
static void m_trunc_hdr(struct img *m, size_t *l) { (void)m; *l = 40; }
static void m_trunc_ph(struct img *m, size_t *l) { (void)m; *l = offsetof(struct img, ph) + 60; }
static void m_nonote(struct img *m, size_t *l) { (void)l; m->ph[1].p_type = PT_NULL; }
static void m_notetype(struct img *m, size_t *l) { (void)l; m->note.nh.n_type = 17; }
static void m_notename(struct img *m, size_t *l) { (void)l; memcpy(m->note.name, "Xem", 4); }
static void m_notedesc(struct img *m, size_t *l) { (void)l; m->note.nh.n_descsz = 3; }
static void m_notelong(struct img *m, size_t *l) { (void)l; m->note.nh.n_descsz = 4096; }
static void m_notepast(struct img *m, size_t *l) { (void)l; m->ph[1].p_filesz = 1u << 20; }
static void m_entry64(struct img *m, size_t *l) { (void)l; m->note.entry = 1ull << 32; }
static void m_entry0(struct img *m, size_t *l) { (void)l; m->note.entry = 0; }
static void m_entryout(struct img *m, size_t *l) { (void)l; m->note.entry = LOAD_PADDR + 100; }
static void m_entrynx(struct img *m, size_t *l) { (void)l; m->ph[0].p_flags = PF_R | PF_W; }
static void m_outside(struct img *m, size_t *l) { (void)l; m->ph[0].p_paddr = RAM - 4096; }
static void m_wrap(struct img *m, size_t *l) { (void)l; m->ph[0].p_paddr = 0xfffffffffffff000ull; }
static void m_bootarea(struct img *m, size_t *l) { (void)l; m->ph[0].p_paddr = 0x8000; m->note.entry = 0x8010; }
static void m_filesz(struct img *m, size_t *l) { (void)l; m->ph[0].p_memsz = 32; }
static void m_filepast(struct img *m, size_t *l) { (void)l; m->ph[0].p_offset = 1u << 30; }
static void m_noload(struct img *m, size_t *l) { (void)l; m->ph[0].p_type = PT_NULL; }

static const struct bad bad[] = {
    {"not ELF", m_magic, "not an ELF file"},
    {"ELF32", m_elf32, "ELF32"},
    {"bad class", m_class, "bad ELF class 7"},
    {"big-endian", m_bigend, "not little-endian"},
    {"aarch64", m_machine, "not x86-64"},
    {"ET_DYN", m_type, "not an executable"},
    {"phentsize", m_phentsize, "program header entry size 32"},
    {"no phdrs", m_phnum0, "0 program headers"},
    {"phoff", m_phoff, "run past the end"},
    {"truncated header", m_trunc_hdr, "truncated"},
    {"truncated phdrs", m_trunc_ph, "run past the end"},
    {"no note segment", m_nonote, "no PVH entry note"},
    {"other note type", m_notetype, "no PVH entry note"},
    {"other note name", m_notename, "no PVH entry note"},
    {"note desc size", m_notedesc, "descriptor of 3 bytes"},
    {"note past segment", m_notelong, "runs past the segment"},
    {"note segment past file", m_notepast, "PT_NOTE segment 1"},
    {"entry above 4G", m_entry64, "not a 32-bit physical address"},
    {"entry 0", m_entry0, "not a 32-bit physical address"},
    {"entry past file bytes", m_entryout, "not inside the file bytes"},
    {"entry not executable", m_entrynx, "executable PT_LOAD"},
    {"segment outside RAM", m_outside, "outside the guest's RAM"},
    {"segment wraps", m_wrap, "outside the guest's RAM"},
    {"segment over start info", m_bootarea, "overlaps the start info"},
    {"filesz > memsz", m_filesz, "exceeds memory size"},
    {"segment past file", m_filepast, "run past the end"},
    {"no PT_LOAD", m_noload, "no PT_LOAD"},
};

static int untouched(const uint8_t *ram)
{
    for (uint64_t i = 0; i < RAM; i += 8)
        if (*(const uint64_t *)(ram + i))
            return 0;
    return 1;
}

static void test_valid(uint8_t *ram)
{
    struct img m;
    struct migr_pvh_image out;
    make_valid(&m);
    memset(ram + LOAD_PADDR + 64, 0xee, 100); /* must be zeroed (p_memsz > p_filesz) */
    T_OK(migr_pvh_load(ram, RAM, (const uint8_t *)&m, sizeof(m), "rate=96M ws=8M", &out));
    T_EQ(out.entry, LOAD_PADDR + 16);
    T_EQ(out.start_info_gpa, PVH_INFO_GPA);
    T_EQ(out.lo, LOAD_PADDR);
    T_EQ(out.hi, LOAD_PADDR + 8192);
    T_ASSERT(memcmp(ram + LOAD_PADDR, m.code, 64) == 0);
    T_EQ(ram[LOAD_PADDR + 64], 0);
    const struct pvh_start_info *si = (const struct pvh_start_info *)(ram + PVH_INFO_GPA);
    T_EQ(si->magic, PVH_START_MAGIC);
    T_EQ(si->version, 1);
    T_EQ(si->cmdline_paddr, PVH_CMDLINE_GPA);
    T_ASSERT(strcmp((const char *)ram + PVH_CMDLINE_GPA, "rate=96M ws=8M") == 0);
    T_EQ(si->memmap_entries, 1);
    const struct pvh_memmap_entry *e = (const struct pvh_memmap_entry *)(ram + si->memmap_paddr);
    T_EQ(e->addr, 0);
    T_EQ(e->size, RAM);
    T_EQ(e->type, PVH_MEMMAP_RAM);
    /* a 4-byte entry descriptor is accepted too */
    memset(ram, 0, RAM);
    m.note.nh.n_descsz = 4;
    T_OK(migr_pvh_load(ram, RAM, (const uint8_t *)&m, sizeof(m), NULL, &out));
    T_EQ(si->cmdline_paddr, 0);
    /* command line too long */
    char *cl = malloc(PVH_CMDLINE_MAX + 1);
    memset(cl, 'a', PVH_CMDLINE_MAX);
    cl[PVH_CMDLINE_MAX] = 0;
    memset(ram, 0, RAM);
    T_ASSERT(migr_pvh_load(ram, RAM, (const uint8_t *)&m, sizeof(m), cl, &out) == -E2BIG);
    T_ASSERT(strstr(migr_last_error(), "command line"));
    T_ASSERT(untouched(ram));
    free(cl);
}

static void test_bad(uint8_t *ram)
{
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(bad); i++) {
        struct img m;
        struct migr_pvh_image out;
        size_t len = sizeof(m);
        make_valid(&m);
        bad[i].mutate(&m, &len);
        memset(ram, 0, RAM);
        int rc = migr_pvh_load(ram, RAM, (const uint8_t *)&m, len, "x", &out);
        if (rc >= 0)
            T_FAIL("%s: accepted", bad[i].name);
        if (!strstr(migr_last_error(), bad[i].words))
            T_FAIL("%s: message '%s' lacks '%s'", bad[i].name, migr_last_error(), bad[i].words);
        if (!untouched(ram))
            T_FAIL("%s: refused but wrote guest RAM", bad[i].name);
    }
}

/* Random byte flips: refused or loaded, never a crash or a write outside ram. */
static void test_flips(uint8_t *ram)
{
    unsigned long long seed = t_seed(), s = seed;
    for (int round = 0; round < 3000; round++) {
        struct img m;
        struct migr_pvh_image out;
        make_valid(&m);
        int n = 1 + (int)(t_rand(&s) % 4);
        for (int k = 0; k < n; k++)
            ((uint8_t *)&m)[t_rand(&s) % sizeof(m)] ^= (uint8_t)(1u << (t_rand(&s) % 8));
        if (migr_pvh_load(ram, RAM, (const uint8_t *)&m, sizeof(m), "", &out) == 0 && out.hi > RAM)
            T_FAIL("seed %llu round %d: loaded past RAM (0x%llx)", seed, round, (unsigned long long)out.hi);
    }
}

static void test_real_guest(uint8_t *ram)
{
    const char *build = getenv("BUILD");
    char path[512];
    struct migr_pvh_image out;
    snprintf(path, sizeof(path), "%s/bench/peers/pvh.elf", build && *build ? build : "build");
    memset(ram, 0, RAM);
    T_OK(migr_pvh_load_file(ram, RAM, path, "rate=4M", &out));
    T_ASSERT(out.lo >= 0x100000 && out.hi <= WL_GEN_GPA);
    T_ASSERT(migr_pvh_load_file(ram, RAM, "/nonexistent/pvh.elf", "", &out) == -ENOENT);
    T_ASSERT(strstr(migr_last_error(), "/nonexistent/pvh.elf: open"));
}

/* A raw image with a workload as the PVH guest lays it out, one page in flight. */
static void test_image(uint8_t *ram)
{
    struct migr_verify_report rep;
    memset(ram, 0, RAM);
    struct wl_boot *b = (struct wl_boot *)(ram + WL_BOOT_GPA);
    struct wl_vcpu *v = (struct wl_vcpu *)(ram + WL_VCPU_GPA);
    b->version = WL_VERSION;
    b->nvcpus = 1;
    b->tsc_khz = 1000000;
    b->gen_gpa = WL_GEN_GPA;
    b->ws_gpa = WL_GEN_GPA + wl_gen_bytes(RAM);
    b->ws_pages = 64;
    b->data = MIGR_WL_TEXT;
    b->seed = 5;
    T_ASSERT(migr_workload_verify_image(ram, RAM, &rep) == -EBADMSG);
    b->magic = WL_BOOT_MAGIC;
    for (uint64_t i = 0; i < b->ws_pages; i++)
        wl_fill_page(ram + b->ws_gpa + i * 4096, i, 0, b->data, b->seed);
    for (int i = 0; i < 10; i++)
        wl_write_page(ram, b, v, (uint64_t)i * 3 % 64);
    T_OK(migr_workload_verify_image(ram, RAM, &rep));
    T_ASSERT(rep.ok && rep.inflight_pages == 0 && rep.total_writes == 10);
    /* page 7 torn mid-write, inside an 8-byte word (text is written a byte at
     * a time): bytes 0..2050 generation 1, the rest generation 0 */
    uint8_t next[4096];
    uint32_t *gen = (uint32_t *)(ram + b->gen_gpa);
    wl_fill_page(next, 7, gen[7] + 1, b->data, b->seed);
    memcpy(ram + b->ws_gpa + 7 * 4096, next, 2051);
    T_OK(migr_workload_verify_image(ram, RAM, &rep));
    T_ASSERT(!rep.ok);
    v->inflight = 7 + 1;
    T_OK(migr_workload_verify_image(ram, RAM, &rep));
    T_ASSERT(rep.ok && rep.inflight_pages == 1);
    /* ... but not a byte that belongs to neither generation */
    ram[b->ws_gpa + 7 * 4096 + 3000] ^= 0x80; /* text is ASCII: in neither */
    T_OK(migr_workload_verify_image(ram, RAM, &rep));
    T_ASSERT(!rep.ok && rep.bad_pages == 1 && rep.first_bad_page == 7);
    /* a working set past the end of the image */
    b->ws_pages = RAM / 4096;
    T_ASSERT(migr_workload_verify_image(ram, RAM, &rep) == -EBADMSG);
    T_ASSERT(strstr(migr_last_error(), "outside guest RAM"));
}

int main(void)
{
    uint8_t *ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    T_ASSERT(ram != MAP_FAILED);
    test_valid(ram);
    test_bad(ram);
    test_flips(ram);
    test_real_guest(ram);
    test_image(ram);
    munmap(ram, RAM);
    return 0;
}
