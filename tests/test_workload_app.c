/* data=app: pages from a captured application image (docs/workload-data.md).
 * A raw guest image laid out as the PVH guest does it, with an application
 * image of zero, text-like and random pages; the guest's writes alternate
 * the changed pages between the two captures; verification finds a stale,
 * lost, torn or foreign page and a damaged image, and accepts a page in
 * flight. Also the loader's initrd= token and module placement. */
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "hv-glue/kvm/pvh.h"
#include "hv-glue/workload/workload.h"
#include "migr/workload.h"
#include "testlib.h"

#define RAM (16ull << 20)
#define PAGES 96ull
#define CHANGED 24ull

static uint64_t rnd(uint64_t *s)
{
    return wl_xorshift(s);
}

/* An image at ram + at: page kinds cycle zero / text-like / random; the
 * second capture changes every 4th page (a zero page becomes data, a data
 * page becomes zero, others change a few words, as an allocator would). */
static struct wl_app_hdr *make_image(uint8_t *ram, uint64_t at, uint64_t seed)
{
    struct wl_app_hdr *h = (struct wl_app_hdr *)(ram + at);
    uint8_t *a = ram + at + 4096, *bp = a + PAGES * 4096;
    uint64_t *idx = (uint64_t *)(bp + CHANGED * 4096);
    memset(h, 0, wl_app_bytes(PAGES, CHANGED));
    for (uint64_t i = 0; i < PAGES; i++) {
        uint64_t *w = (uint64_t *)(a + i * 4096);
        if (i % 3 == 1)
            for (int k = 0; k < 512; k++)
                w[k] = 0x2065687420666f20ull + (uint64_t)(k % 7);   /* "of the " */
        else if (i % 3 == 2)
            for (int k = 0; k < 512; k++)
                w[k] = rnd(&seed);
    }
    for (uint64_t j = 0; j < CHANGED; j++) {
        uint64_t i = j * 4;
        idx[j] = i;
        memcpy(bp + j * 4096, a + i * 4096, 4096);
        uint64_t *w = (uint64_t *)(bp + j * 4096);
        if (i % 3 == 0)
            for (int k = 100; k < 140; k++)
                w[k] = rnd(&seed);
        else if (j == 1)
            memset(w, 0, 4096);
        else
            for (int k = 0; k < 512; k += 64)
                w[k] ^= rnd(&seed) | 1;
    }
    h->magic = WL_APP_MAGIC;
    h->version = WL_APP_VERSION;
    h->pages = PAGES;
    h->changed = CHANGED;
    h->image_bytes = wl_app_bytes(PAGES, CHANGED);
    h->crc32 = (uint32_t)crc32(crc32(0L, Z_NULL, 0), ram + at + 4096, (uInt)(h->image_bytes - 4096));
    return h;
}

static struct wl_boot *make_guest(uint8_t *ram, struct wl_app_hdr *h, uint64_t seed)
{
    struct wl_boot *b = (struct wl_boot *)(ram + WL_BOOT_GPA);
    b->version = WL_VERSION;
    b->nvcpus = 1;
    b->tsc_khz = 1000000;
    b->gen_gpa = WL_GEN_GPA;
    b->ws_gpa = WL_GEN_GPA + wl_gen_bytes(RAM);
    b->ws_pages = h->pages;
    b->data = MIGR_WL_APP;
    b->seed = seed;
    b->app_gpa = (uint64_t)((uint8_t *)h - ram);
    b->app_changed = h->changed;
    for (uint64_t i = 0; i < b->ws_pages; i++)
        wl_app_fill_page(ram + b->ws_gpa + i * 4096, wl_app_source(h, i, 0), i, 0, b->seed);
    b->magic = WL_BOOT_MAGIC;
    return b;
}

static void expect_bad(uint8_t *ram, uint64_t page, const char *why)
{
    struct migr_verify_report rep;
    T_OK(migr_workload_verify_image(ram, RAM, &rep));
    if (rep.ok || rep.first_bad_page != page || !strstr(rep.first_bad_why, why))
        T_FAIL("expected page %llu bad (%s), got ok %d, page %llu: %s", (unsigned long long)page, why, rep.ok,
               (unsigned long long)rep.first_bad_page, rep.first_bad_why);
}

static void test_writes_verify(uint8_t *ram)
{
    struct migr_verify_report rep;
    uint64_t at = RAM - wl_app_bytes(PAGES, CHANGED);
    memset(ram, 0, RAM);
    struct wl_app_hdr *h = make_image(ram, at, 11);
    T_EQ(wl_app_check_image(h, h->image_bytes), 0);
    struct wl_boot *b = make_guest(ram, h, 3);
    struct wl_vcpu *v = (struct wl_vcpu *)(ram + WL_VCPU_GPA);
    uint32_t *gen = (uint32_t *)(ram + b->gen_gpa);
    uint8_t *ws = ram + b->ws_gpa;
    /* generation 0 is the first capture: zero pages stay zero, others carry a header */
    T_ASSERT(*(uint64_t *)(ws + 0 * 4096) == 0 && !memcmp(ws, ws + 3 * 4096, 4096));
    T_ASSERT(((struct wl_page_hdr *)(ws + 1 * 4096))->magic == WL_PAGE_MAGIC);
    T_ASSERT(!memcmp(ws + 2 * 4096 + WL_HDR_SIZE, ram + at + 4096 + 2 * 4096 + WL_HDR_SIZE, 4096 - WL_HDR_SIZE));
    T_OK(migr_workload_verify_image(ram, RAM, &rep));
    T_ASSERT(rep.ok && rep.pages_checked == PAGES);
    /* the writes go to changed pages only, alternating B and A */
    v->rng = 99;
    for (int i = 0; i < 500; i++) {
        uint64_t slot = wl_next_page(b, v, 0);
        T_ASSERT(slot < CHANGED);
        wl_write_page(ram, b, v, slot);
    }
    uint64_t written = 0;
    for (uint64_t i = 0; i < PAGES; i++) {
        T_ASSERT(i % 4 == 0 || gen[i] == 0);
        written += gen[i] != 0;
    }
    T_ASSERT(written > CHANGED / 2);
    T_OK(migr_workload_verify_image(ram, RAM, &rep));
    T_ASSERT(rep.ok && rep.total_writes == 500 && rep.gen_sum == 500);
    /* a page with data in both captures, now at an odd generation (B) */
    uint64_t odd = PAGES;
    for (uint64_t i = 0; i < PAGES && odd == PAGES; i += 4)
        if ((gen[i] & 1) && i % 3 != 0 && i != 4)
            odd = i;
    T_ASSERT(odd < PAGES);
    T_ASSERT(!memcmp(ws + odd * 4096 + WL_HDR_SIZE, wl_app_source(h, odd, 1) + WL_HDR_SIZE, 4096 - WL_HDR_SIZE));

    /* page 0 is zero in A and holds data in B; page 4 the other way round */
    T_ASSERT(*(uint64_t *)(ws + 0) == (gen[0] & 1 ? WL_PAGE_MAGIC : 0));
    T_ASSERT(*(uint64_t *)(ws + 4 * 4096) == (gen[4] & 1 ? 0 : WL_PAGE_MAGIC));
    /* stale: the page's previous generation */
    uint8_t save[4096];
    memcpy(save, ws + odd * 4096, 4096);
    wl_app_fill_page(ws + odd * 4096, wl_app_source(h, odd, gen[odd] - 1), odd, gen[odd] - 1, b->seed);
    expect_bad(ram, odd, "stale");
    /* in flight: half new, half old, accepted only while a vCPU writes it */
    uint8_t next[4096];
    memcpy(ws + odd * 4096, save, 4096);
    wl_app_fill_page(next, wl_app_source(h, odd, gen[odd] + 1), odd, gen[odd] + 1, b->seed);
    memcpy(ws + odd * 4096, next, 2051);
    T_OK(migr_workload_verify_image(ram, RAM, &rep));
    T_ASSERT(!rep.ok);
    v->inflight = odd + 1;
    T_OK(migr_workload_verify_image(ram, RAM, &rep));
    T_ASSERT(rep.ok && rep.inflight_pages == 1);
    v->inflight = 0;
    memcpy(ws + odd * 4096, save, 4096);
    /* lost: a data page that reads zero */
    memcpy(save, ws + 5 * 4096, 4096);
    memset(ws + 5 * 4096, 0, 4096);
    expect_bad(ram, 5, "no page header");
    memcpy(ws + 5 * 4096, save, 4096);
    /* a zero page that holds data, a torn body */
    ws[3 * 4096 + 100] = 1;
    expect_bad(ram, 3, "zero page holds data");
    ws[3 * 4096 + 100] = 0;
    ws[7 * 4096 + 4000] ^= 1;
    expect_bad(ram, 7, "torn");
    ws[7 * 4096 + 4000] ^= 1;
    T_OK(migr_workload_verify_image(ram, RAM, &rep));
    T_ASSERT(rep.ok);

    /* the image itself: a flipped byte (its CRC), a bad index, a lost header */
    ram[at + 4096 + 50 * 4096 + 9] ^= 4;
    T_ASSERT(migr_workload_verify_image(ram, RAM, &rep) == -EBADMSG);
    T_ASSERT(strstr(migr_last_error(), "CRC-32"));
    ram[at + 4096 + 50 * 4096 + 9] ^= 4;
    uint64_t *idx = (uint64_t *)(ram + at + 4096 * (1 + PAGES + CHANGED));
    idx[3] = idx[2];
    T_EQ(wl_app_check_image(h, h->image_bytes), 4);
    T_ASSERT(migr_workload_verify_image(ram, RAM, &rep) == -EBADMSG);
    idx[3] = 12;
    T_EQ(wl_app_check_image(h, h->image_bytes - 4096), 3);
    h->magic = 0;
    T_ASSERT(migr_workload_verify_image(ram, RAM, &rep) == -EBADMSG);
    T_ASSERT(strstr(migr_last_error(), "no application image"));
    h->magic = WL_APP_MAGIC;
    /* an image the working set overlaps */
    b->ws_gpa = at - 4096;
    T_ASSERT(migr_workload_verify_image(ram, RAM, &rep) == -EBADMSG);
    T_ASSERT(strstr(migr_last_error(), "overlaps"));
}

static void test_spec(void)
{
    struct migr_workload_cfg c;
    char buf[200];
    migr_workload_defaults(&c);
    T_OK(migr_workload_parse("data=app,rate=8M", &c));
    T_EQ(c.data, MIGR_WL_APP);
    migr_workload_format(&c, buf, sizeof(buf));
    T_ASSERT(strstr(buf, "data=app"));
    T_ASSERT(migr_workload_parse("data=apps", &c) == -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "app"));
}

static void test_loader(uint8_t *ram)
{
    char path[] = "/tmp/migr-test-app-XXXXXX", arg[64];
    T_EQ(migr_pvh_initrd_arg("rate=4M,data=app initrd=/x/y.img seed=2", arg, sizeof(arg)), 1);
    T_ASSERT(strcmp(arg, "/x/y.img") == 0);
    T_EQ(migr_pvh_initrd_arg("rate=4M,initrdx=1", arg, sizeof(arg)), 0);
    T_EQ(migr_pvh_initrd_arg(NULL, arg, sizeof(arg)), 0);
    T_ASSERT(migr_pvh_initrd_arg("initrd=/a/very/long/path/that/does/not/fit/in/a/tiny/buffer", arg, 8) == -E2BIG);

    int fd = mkstemp(path);
    T_ASSERT(fd >= 0);
    uint8_t blob[10000];
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)(i * 7 + 1);
    T_ASSERT(write(fd, blob, sizeof(blob)) == (ssize_t)sizeof(blob));
    close(fd);
    memset(ram, 0, RAM);
    struct migr_pvh_image img = {.start_info_gpa = PVH_INFO_GPA, .lo = 0x100000, .hi = 0x180000};
    T_OK(migr_pvh_load_module(ram, RAM, path, &img));
    const struct pvh_start_info *si = (const struct pvh_start_info *)(ram + PVH_INFO_GPA);
    T_EQ(si->nr_modules, 1);
    const struct pvh_modlist_entry *m = (const struct pvh_modlist_entry *)(ram + si->modlist_paddr);
    T_EQ(m->size, sizeof(blob));
    T_ASSERT(m->paddr % 4096 == 0 && m->paddr + m->size <= RAM && m->paddr + m->size > RAM - 4096);
    T_ASSERT(!memcmp(ram + m->paddr, blob, sizeof(blob)));
    img.hi = RAM - 4096;   /* no room above the kernel */
    T_ASSERT(migr_pvh_load_module(ram, RAM, path, &img) == -E2BIG);
    T_ASSERT(strstr(migr_last_error(), path));
    unlink(path);
    T_ASSERT(migr_pvh_load_module(ram, RAM, path, &img) == -ENOENT);
}

int main(void)
{
    uint8_t *ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    T_ASSERT(ram != MAP_FAILED);
    test_writes_verify(ram);
    test_spec();
    test_loader(ram);
    munmap(ram, RAM);
    return 0;
}
