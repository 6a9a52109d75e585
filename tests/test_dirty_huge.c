/* The process dirty trackers on huge-page-backed guest RAM: a region of
 * anonymous memory with madvise(MADV_HUGEPAGE) (transparent huge pages; the
 * test prints how much of it the kernel really backed with 2 MiB pages) and,
 * if hugetlbfs pages can be had here (vm.nr_hugepages > 0), a MAP_HUGETLB
 * memfd region — else that part prints SKIP. For every tracker that supports
 * such a guest (others print SKIP with the reason):
 *   known  single 4 KiB pages inside huge pages, a whole 2 MiB page, one page
 *          in each huge page, a range across two huge pages: reported ⊇
 *          written; false positives counted and printed (a tracker that
 *          splits or re-protects at 2 MiB granularity reports up to 511
 *          pages per written one);
 *   race   a writer thread writing random pages while harvests run; the
 *          oracle is a migration in miniature (a copy of RAM taken at start,
 *          reported pages copied after each harvest; after the writer stops
 *          and a last harvest, copy and RAM must be equal byte for byte).
 * test_dirty_proc.c covers the same on ordinary (4 KiB) proc guest RAM. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migr/dirty.h"
#include "migr/hv.h"
#include "testlib.h"

/* Under ASan the mprotect tracker needs SIGSEGV (ASan keeps it otherwise). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "handle_segv=0"; }

#define HUGE (2ull << 20)
#define THP_BYTES (32ull << 20)
#define TLB_BYTES (8ull << 20)
#define RACE_MS 400
#define MADV_COLLAPSE_ 25 /* Linux 6.1; not in every libc's headers */

static unsigned long long seed;
static struct migr_hv hv;
static int nop(struct migr_hv *h) { (void)h; return 0; }
static const struct migr_hv_ops ops = {.name = "huge-test", .pause = nop, .resume = nop};

/* AnonHugePages (kB) of the mapping that starts at addr, from /proc/self/smaps. */
static long thp_kb(void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    long kb = -1;
    bool in = false;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = lo == (uintptr_t)addr;
            continue;
        }
        if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb;
}

static void setup(void)
{
    hv.ops = &ops;
    hv.kvm_vm_fd = -1;
    hv.paused = true;
    /* THP: 2 MiB aligned anonymous memory, advised, then populated. */
    uint8_t *raw = mmap(NULL, THP_BYTES + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    T_ASSERT(raw != MAP_FAILED);
    uint8_t *thp = (uint8_t *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
    if (thp > raw)
        T_ASSERT(munmap(raw, (size_t)(thp - raw)) == 0);
    T_ASSERT(munmap(thp + THP_BYTES, (size_t)(raw + THP_BYTES + HUGE - (thp + THP_BYTES))) == 0);
    if (madvise(thp, THP_BYTES, MADV_HUGEPAGE) != 0)
        printf("THP: madvise(MADV_HUGEPAGE): %s (the region stays 4 KiB pages)\n", strerror(errno));
    for (uint64_t o = 0; o < THP_BYTES; o += MIGR_PAGE_SIZE)
        thp[o] = (uint8_t)(o >> 12);
    long kb = thp_kb(thp);
    printf("THP region: %llu MiB, %ld kB of it in transparent huge pages (AnonHugePages)\n",
           (unsigned long long)(THP_BYTES >> 20), kb);
    hv.regions[0] = (struct migr_hv_region){.gpa = 0, .size = THP_BYTES, .host = thp, .memfd = -1};
    hv.nregions = 1;
    /* hugetlbfs: a MFD_HUGETLB memfd, if pages can be reserved. */
    int fd = memfd_create("migr-test-hugetlb", MFD_CLOEXEC | MFD_HUGETLB);
    uint8_t *h = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, (off_t)TLB_BYTES) == 0)
        h = mmap(NULL, TLB_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (h == MAP_FAILED) {
        FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
        long n = -1;
        if (f) {
            if (fscanf(f, "%ld", &n) != 1)
                n = -1;
            fclose(f);
        }
        printf("hugetlb region: SKIP: no %llu MiB of hugetlbfs pages (%s; vm.nr_hugepages=%ld)\n",
               (unsigned long long)(TLB_BYTES >> 20), strerror(errno), n);
        if (fd >= 0)
            close(fd);
    } else {
        printf("hugetlb region: %llu MiB of 2 MiB hugetlbfs pages\n", (unsigned long long)(TLB_BYTES >> 20));
        hv.regions[1] = (struct migr_hv_region){.gpa = 1ull << 32, .size = TLB_BYTES, .host = h, .memfd = fd};
        hv.nregions = 2;
    }
    for (uint32_t r = 0; r < hv.nregions; r++)
        hv.ram_pages += hv.regions[r].size / MIGR_PAGE_SIZE;
}

static uint64_t *bitmap(void)
{
    uint64_t *bm = calloc(migr_bitmap_words(hv.ram_pages), 8);
    T_ASSERT(bm);
    return bm;
}

static void touch(uint64_t *written, uint64_t i, unsigned off)
{
    uint8_t *p = migr_hv_page(&hv, i);
    T_ASSERT(p);
    __atomic_store_n(&p[off % MIGR_PAGE_SIZE], (uint8_t)(p[off % MIGR_PAGE_SIZE] + 1), __ATOMIC_RELAXED);
    migr_bit_set(written, i);
}

static void test_known(const char *name, struct migr_dirty *d)
{
    uint64_t n = hv.ram_pages, words = migr_bitmap_words(n), per = HUGE / MIGR_PAGE_SIZE;
    uint64_t thp_pages = THP_BYTES / MIGR_PAGE_SIZE;
    uint64_t *written = bitmap(), *rep = bitmap();
    static const char *const what[] = {"nothing", "single pages inside huge pages", "a whole 2 MiB page",
                                       "one page in each huge page", "range across two huge pages",
                                       "hugetlb: pages and a whole huge page", "nothing again"};
    for (int round = 0; round < 7; round++) {
        memset(written, 0, words * 8);
        memset(rep, 0, words * 8);
        switch (round) {
        case 1: touch(written, 3, 0); touch(written, per + 300, 4095); touch(written, thp_pages - 1, 9); break;
        case 2: for (uint64_t i = 4 * per; i < 5 * per; i++) touch(written, i, (unsigned)i); break;
        case 3: for (uint64_t i = 7; i < thp_pages; i += per) touch(written, i, 1); break;
        case 4: for (uint64_t i = 6 * per - 10; i < 6 * per + 10; i++) touch(written, i, 2); break;
        case 5:
            if (hv.nregions < 2)
                continue;
            touch(written, thp_pages + 1, 0);
            for (uint64_t i = thp_pages + per; i < thp_pages + 2 * per; i++)
                touch(written, i, 5);
            break;
        default: break;
        }
        long got = migr_dirty_harvest(d, rep);
        T_OK(got);
        T_EQ((uint64_t)got, migr_bitmap_count(rep, n));
        uint64_t fp = 0;
        for (uint64_t i = 0; i < n; i++) {
            if (migr_bit_test(written, i) && !migr_bit_test(rep, i))
                T_FAIL("%s: round '%s': page %llu was written but not reported", name, what[round],
                       (unsigned long long)i);
            fp += !migr_bit_test(written, i) && migr_bit_test(rep, i);
        }
        printf("%-12s huge known: %-38s written %5llu reported %5llu false positives %llu\n", name, what[round],
               (unsigned long long)migr_bitmap_count(written, n), (unsigned long long)got,
               (unsigned long long)fp);
    }
    free(written);
    free(rep);
}

struct writer {
    unsigned long long rng;
    uint64_t writes;
    int quit;
};

static void *writer(void *arg)
{
    struct writer *w = arg;
    while (!__atomic_load_n(&w->quit, __ATOMIC_ACQUIRE)) {
        uint64_t r = t_rand(&w->rng);
        uint64_t *p = (uint64_t *)migr_hv_page(&hv, r % hv.ram_pages);
        __atomic_store_n(&p[(r >> 40) % 512], ++w->writes, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void copy_pages(uint8_t *shadow, const uint64_t *bm, uint64_t *copies)
{
    for (uint64_t i = 0; i < hv.ram_pages; i++)
        if (migr_bit_test(bm, i)) {
            memcpy(shadow + i * MIGR_PAGE_SIZE, migr_hv_page(&hv, i), MIGR_PAGE_SIZE);
            (*copies)++;
        }
}

static void test_race(const char *name, struct migr_dirty *d)
{
    uint64_t words = migr_bitmap_words(hv.ram_pages), copies = 0, harvests = 0;
    uint8_t *shadow = malloc(hv.ram_pages * MIGR_PAGE_SIZE);
    uint64_t *bm = bitmap();
    T_ASSERT(shadow);
    /* start of "migration": harvest away what came before, copy everything */
    T_OK(migr_dirty_harvest(d, bm));
    for (uint64_t i = 0; i < hv.ram_pages; i++)
        memcpy(shadow + i * MIGR_PAGE_SIZE, migr_hv_page(&hv, i), MIGR_PAGE_SIZE);
    struct writer w = {.rng = seed | 1};
    pthread_t t;
    T_ASSERT(pthread_create(&t, NULL, writer, &w) == 0);
    uint64_t t0 = migr_now_ns();
    while (migr_now_ns() - t0 < RACE_MS * 1000000ull) {
        memset(bm, 0, words * 8);
        T_OK(migr_dirty_harvest(d, bm));
        harvests++;
        copy_pages(shadow, bm, &copies);
        if (t_rand(&seed) % 2)
            usleep(500);
    }
    __atomic_store_n(&w.quit, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    memset(bm, 0, words * 8);
    T_OK(migr_dirty_harvest(d, bm));
    copy_pages(shadow, bm, &copies);
    for (uint64_t i = 0; i < hv.ram_pages; i++)
        if (memcmp(shadow + i * MIGR_PAGE_SIZE, migr_hv_page(&hv, i), MIGR_PAGE_SIZE) != 0)
            T_FAIL("%s huge race: page %llu changed after its last report (a missed write; replay "
                   "with MIGR_TEST_SEED)", name, (unsigned long long)i);
    T_ASSERT(w.writes > 100);
    printf("%-12s huge race: %llu writes over %llu pages, %llu harvests, %llu pages copied; none missed\n", name,
           (unsigned long long)w.writes, (unsigned long long)hv.ram_pages, (unsigned long long)harvests,
           (unsigned long long)copies);
    free(shadow);
    free(bm);
}

int main(void)
{
    seed = t_seed();
    setup();
    int ran = 0;
    for (size_t i = 0; migr_dirty_backends[i]; i++) {
        const char *name = migr_dirty_backends[i]->name;
        if (strncmp(name, "kvm-", 4) == 0 || strcmp(name, "ept") == 0)
            continue; /* not process trackers */
        struct migr_dirty *d;
        int err = migr_dirty_open(name, &hv, &d);
        if (err == -ENOTSUP) {
            printf("%-12s SKIP: %s\n", name, migr_last_error());
            continue;
        }
        T_OK(err);
        /* Each tracker starts on huge pages again: collapse what an earlier one split. */
        if (madvise(hv.regions[0].host, THP_BYTES, MADV_COLLAPSE_) != 0)
            printf("%-12s huge: madvise(MADV_COLLAPSE): %s\n", name, strerror(errno));
        printf("%-12s huge: THP region %ld kB in huge pages at start\n", name, thp_kb(hv.regions[0].host));
        T_OK(migr_dirty_start(d));
        test_known(name, d);
        test_race(name, d);
        migr_dirty_close(d);
        printf("%-12s huge: THP region now %ld kB in huge pages after tracking (the rest was split)\n", name,
               thp_kb(hv.regions[0].host));
        ran++;
        fflush(stdout);
    }
    if (!ran)
        T_SKIP("no process dirty tracker supports huge-page-backed memory here");
    return 0;
}
