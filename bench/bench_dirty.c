/* bench_dirty: what each dirty-page tracker costs.
 *
 * Per tracker, per guest size (1, 4, 16 GiB; --quick: 256 MiB) and dirty
 * fraction (0.1%, 1%, 10% of the pages, spread over the whole region, one
 * isolated page per stride: the worst case for run-length reporting):
 *   harvest   time of one harvest that reports those pages (median);
 *   1st write cost of the first write to a page after a harvest re-protected
 *             it, minus the same write to a writable page (process trackers;
 *             a KVM guest's writes are not timed from the host);
 * and per tracker, on a 1 GiB guest: the workload's write rate while tracked
 * (a harvest every 5 ms, as a migration's rounds) against untracked.
 *
 * Process trackers (pagemap-scan, uffd-wp, mprotect, soft-dirty) run on a
 * sparse memfd region of this process (a fake proc guest): only the pages
 * that get dirtied are populated ("sparse"), plus a fully populated 1 GiB
 * region ("populated"; 4 GiB too without --quick), since page-table walks
 * cost differently over empty and populated ranges. KVM trackers
 * (kvm-bitmap with KVM_GET_DIRTY_LOG re-protecting, kvm-bitmap with manual
 * protect, kvm-ring) run on a KVM guest whose workload rewrites exactly a
 * working set of that many pages (sequential, rate=0): the guest runs one
 * full pass, is paused, and the harvest is timed.
 *
 * Machine limits measured in the same run: memcpy and memory-read bandwidth
 * (single thread, 256 MiB buffers). Ratio reported: harvest time / time to
 * memcpy the dirty pages (how much a round's tracking adds to its copying).
 *
 * Output: a table on stdout, JSON (default bench/results/dirty.json); plot
 * with bench/plot.py. Exit 0, or 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "hv-glue/kvm/kvm.h"
#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/hv.h"
#include "migr/workload.h"

#define BENCH_NAME "bench_dirty"
#include "benchlib.h"

#define GiB (1ull << 30)
#define PG 4096ull
#define MAXROWS 256

static const double fracs[] = {0.001, 0.01, 0.1};
#define NF 3

struct row {
    char tracker[32], mode[16];     /* mode: sparse, populated, kvm */
    uint64_t size;
    double frac;
    uint64_t dirty;                 /* pages written per repetition */
    double harvest_ms, harvest_min_ms, reported;
    double first_write_ns;          /* < 0: not measured */
    double pct_of_copy;             /* harvest / memcpy of the dirty pages */
    char note[160];
};

struct slow {
    char tracker[32];
    double base_wps, tracked_wps;
};

static struct row rows[MAXROWS];
static int nrows;
static struct slow slows[16];
static int nslows;
static double memcpy_mbps_, read_mbps;
static int reps = 5;

/* ---------- machine ---------- */

static double measure_read(uint64_t len, int runs)
{
    uint64_t *a = map_buf(len);
    double v[16];
    if (!a)
        return 0;
    for (int i = 0; i < runs; i++) {
        uint64_t t0 = migr_now_ns(), s = 0;
        for (uint64_t k = 0; k < len / 8; k += 4)
            s += a[k] ^ a[k + 1] ^ a[k + 2] ^ a[k + 3];
        __asm__ __volatile__("" ::"r"(s));
        v[i] = mbps(len, migr_now_ns() - t0);
    }
    munmap(a, len);
    return median(v, runs);
}

/* ---------- a fake proc guest on a memfd ---------- */

static int nop(struct migr_hv *h) { (void)h; return 0; }
static const struct migr_hv_ops fake_ops = {.name = "proc", .pause = nop, .resume = nop};

/* populate: anonymous memory with every page read once, so that every page
 * table entry is present (mapping the shared zero page: no memory used), as
 * in a guest that has touched all its RAM; else a sparse memfd (the proc
 * backend's RAM) where only the pages written are populated. */
static int fake_guest(struct migr_hv *hv, uint64_t size, bool populate)
{
    memset(hv, 0, sizeof(*hv));
    hv->ops = &fake_ops;
    hv->kvm_vm_fd = -1;
    hv->nregions = 1;
    hv->ram_pages = size / PG;
    int fd = -1;
    uint8_t *mem;
    if (populate) {
        mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED)
            return migr_errorf_errno(errno, "mmap %llu GiB", (unsigned long long)(size / GiB));
        madvise(mem, size, MADV_NOHUGEPAGE); /* 4 KiB ptes, as a memfd guest */
        volatile uint8_t sum = 0;
        for (uint64_t o = 0; o < size; o += PG)
            sum = (uint8_t)(sum + mem[o]);
        (void)sum;
    } else if (migr_hv_map_ram(size, -1, 0, &fd, &mem) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    hv->regions[0] = (struct migr_hv_region){.gpa = 0, .size = size, .host = mem, .memfd = fd};
    return 0;
}

static void fake_free(struct migr_hv *hv)
{
    munmap(hv->regions[0].host, hv->regions[0].size);
    if (hv->regions[0].memfd >= 0)
        close(hv->regions[0].memfd);
}

/* The dirty set: one page per stride, at a pseudo-random place in it. */
static uint64_t dirty_page(uint64_t j, uint64_t stride)
{
    uint64_t h = (j + 1) * 0x9E3779B97F4A7C15ull;
    return j * stride + (h >> 33) % stride;
}

/* ns per write of one byte to each dirty page (median of reps). */
static double time_writes(uint8_t *mem, uint64_t n, uint64_t stride, uint8_t v)
{
    uint64_t t0 = migr_now_ns();
    for (uint64_t j = 0; j < n; j++)
        mem[dirty_page(j, stride) * PG + 64] = v;
    return (double)(migr_now_ns() - t0) / (double)n;
}

static void add_row(const char *tracker, const char *mode, uint64_t size, double frac, uint64_t n, double *h,
                    double rep_pages, double fw, const char *note)
{
    if (nrows >= MAXROWS)
        return;
    struct row *r = &rows[nrows++];
    snprintf(r->tracker, sizeof(r->tracker), "%s", tracker);
    snprintf(r->mode, sizeof(r->mode), "%s", mode);
    snprintf(r->note, sizeof(r->note), "%s", note ? note : "");
    r->size = size;
    r->frac = frac;
    r->dirty = n;
    r->harvest_ms = median(h, reps);
    r->harvest_min_ms = h[0];
    for (int i = 1; i < reps; i++)
        if (h[i] < r->harvest_min_ms)
            r->harvest_min_ms = h[i];
    r->reported = rep_pages;
    r->first_write_ns = fw;
    double copy_ms = (double)n * PG / (memcpy_mbps_ * 1e6) * 1e3;
    r->pct_of_copy = copy_ms > 0 ? 100.0 * r->harvest_ms / copy_ms : 0;
    printf("%-22s %-9s %5llu MiB %5.1f%% %8llu pages  harvest %8.3f ms (min %8.3f)  reported %9.0f  "
           "1st write %7.0f ns  harvest = %5.0f%% of copying them%s%s\n",
           tracker, mode, (unsigned long long)(size >> 20), frac * 100, (unsigned long long)n, r->harvest_ms,
           r->harvest_min_ms, rep_pages, fw, r->pct_of_copy, note && *note ? "  " : "", note ? note : "");
    fflush(stdout);
}

static void bench_process(const char *name, uint64_t size, bool populate, double base_ns)
{
    struct migr_hv hv;
    if (fake_guest(&hv, size, populate) < 0) {
        printf("%-22s %5llu MiB: cannot map: %s\n", name, (unsigned long long)(size >> 20), migr_last_error());
        return;
    }
    uint8_t *mem = hv.regions[0].host;
    uint64_t *bm = calloc(migr_bitmap_words(hv.ram_pages), 8);
    struct migr_dirty *d = NULL;
    if (!bm || migr_dirty_open(name, &hv, &d) < 0 || migr_dirty_start(d) < 0) {
        printf("%-22s %5llu MiB: %s\n", name, (unsigned long long)(size >> 20), migr_last_error());
        goto out;
    }
    for (int f = 0; f < NF; f++) {
        uint64_t stride = (uint64_t)(1.0 / fracs[f] + 0.5), n = hv.ram_pages / stride;
        double h[16], fw[16], rep = 0;
        time_writes(mem, n, stride, 1); /* populate (sparse) / dirty once */
        migr_dirty_harvest(d, bm);      /* and forget */
        for (int r = 0; r < reps; r++) {
            memset(bm, 0, migr_bitmap_words(hv.ram_pages) * 8);
            fw[r] = time_writes(mem, n, stride, (uint8_t)(r + 2)) - base_ns;
            uint64_t t0 = migr_now_ns();
            long got = migr_dirty_harvest(d, bm);
            h[r] = (double)(migr_now_ns() - t0) / 1e6;
            if (got < 0) {
                printf("%-22s harvest: %s\n", name, migr_last_error());
                goto out;
            }
            rep = (double)got;
        }
        add_row(name, populate ? "populated" : "sparse", size, fracs[f], n, h, rep, median(fw, reps), NULL);
    }
out:
    migr_dirty_close(d);
    free(bm);
    fake_free(&hv);
}

/* ---------- workload slowdown (process trackers) ---------- */

struct wr {
    uint8_t *mem;
    uint64_t pages, writes;
    unsigned long long rng;
    int stop;
};

static void *writer(void *arg)
{
    struct wr *w = arg;
    while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
        for (int k = 0; k < 64; k++) {
            uint64_t x = w->rng = w->rng * 6364136223846793005ull + 1442695040888963407ull;
            w->mem[((x >> 20) % w->pages) * PG + (x & 4032)] = (uint8_t)x;
        }
        w->writes += 64;
    }
    return NULL;
}

static double run_writer(struct migr_hv *hv, struct migr_dirty *d, int ms)
{
    struct wr w = {.mem = hv->regions[0].host, .pages = hv->ram_pages, .rng = 12345};
    uint64_t *bm = calloc(migr_bitmap_words(hv->ram_pages), 8);
    pthread_t t;
    if (!bm || pthread_create(&t, NULL, writer, &w) != 0) {
        free(bm);
        return 0;
    }
    uint64_t t0 = migr_now_ns();
    while (migr_now_ns() - t0 < (uint64_t)ms * 1000000ull) {
        sleep_ms(5);
        if (d)
            migr_dirty_harvest(d, bm);
    }
    __atomic_store_n(&w.stop, 1, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    double s = (double)(migr_now_ns() - t0) / 1e9;
    free(bm);
    return (double)w.writes / s;
}

static void slowdown_process(const char *name)
{
    struct migr_hv hv;
    if (fake_guest(&hv, GiB, false) < 0)
        return;
    memset(hv.regions[0].host, 1, GiB); /* a memfd guest whose RAM is all allocated */
    struct migr_dirty *d = NULL;
    double base = run_writer(&hv, NULL, 400);
    if (migr_dirty_open(name, &hv, &d) == 0 && migr_dirty_start(d) == 0 && nslows < 16) {
        double tr = run_writer(&hv, d, 400);
        struct slow *s = &slows[nslows++];
        snprintf(s->tracker, sizeof(s->tracker), "%s", name);
        s->base_wps = base;
        s->tracked_wps = tr;
        printf("%-22s workload (random 1-byte page writes, 1 GiB, harvest every 5 ms): %.2f M writes/s "
               "tracked, %.2f M untracked: %.0f%%\n", name, tr / 1e6, base / 1e6, base > 0 ? 100 * tr / base : 0);
    }
    migr_dirty_close(d);
    fake_free(&hv);
}

/* ---------- KVM trackers ---------- */

static int wait_writes(struct migr_hv *hv, uint64_t target, int timeout_ms)
{
    uint64_t t0 = migr_now_ns();
    while (migr_workload_progress(hv) < target) {
        if (migr_now_ns() - t0 > (uint64_t)timeout_ms * 1000000ull || hv->ops->failed(hv))
            return -1;
        usleep(200);
    }
    return 0;
}

static const struct {
    const char *label, *tracker, *manual;
    uint32_t ring;
} kvm_modes[] = {
    {"kvm-bitmap(get)", "kvm-bitmap?manual=0", "0", 0},
    {"kvm-bitmap(manual)", "kvm-bitmap?manual=1", "1", 0},
    {"kvm-ring", "kvm-ring", NULL, MIGR_KVM_RING_DEFAULT},
};

static void bench_kvm(int m, uint64_t size)
{
    for (int f = 0; f < NF; f++) {
        uint64_t ws_pages = (uint64_t)((double)(size / PG) * fracs[f]);
        struct migr_vm_config cfg = {.mem_bytes = size, .nvcpus = 1};
        char spec[160], note[160] = "";
        migr_workload_defaults(&cfg.wl);
        snprintf(spec, sizeof(spec), "rate=0,ws=%lluK,pattern=sequential,data=zero",
                 (unsigned long long)(ws_pages * 4));
        if (migr_workload_parse(spec, &cfg.wl) < 0)
            return;
        struct migr_hv *hv;
        if (migr_kvm_create_ring(&cfg, kvm_modes[m].ring, &hv) < 0) {
            printf("%-22s %5llu MiB: %s\n", kvm_modes[m].label, (unsigned long long)(size >> 20), migr_last_error());
            return;
        }
        struct migr_dirty *d = NULL;
        uint64_t *bm = calloc(migr_bitmap_words(hv->ram_pages), 8);
        double h[16], rep = 0;
        int r = 0;
        hv->ops->resume(hv);
        if (!bm || wait_writes(hv, ws_pages, 60000) < 0 || migr_dirty_open(kvm_modes[m].tracker, hv, &d) < 0 ||
            migr_dirty_start(d) < 0) {
            printf("%-22s %5llu MiB: %s\n", kvm_modes[m].label, (unsigned long long)(size >> 20), migr_last_error());
            goto out;
        }
        migr_dirty_harvest(d, bm);
        for (r = 0; r < reps; r++) {
            /* one full pass over the working set, then pause and harvest */
            if (wait_writes(hv, migr_workload_progress(hv) + ws_pages, 60000) < 0 || hv->ops->pause(hv) < 0)
                break;
            memset(bm, 0, migr_bitmap_words(hv->ram_pages) * 8);
            uint64_t t0 = migr_now_ns();
            long got = migr_dirty_harvest(d, bm);
            h[r] = (double)(migr_now_ns() - t0) / 1e6;
            if (got < 0) {
                printf("%-22s harvest: %s\n", kvm_modes[m].label, migr_last_error());
                break;
            }
            rep = (double)got;
            hv->ops->resume(hv);
        }
        if (r == reps) {
            if (kvm_modes[m].ring) {
                uint64_t full = ((struct kvm_vm *)hv)->vcpus[0].ring_full_exits;
                snprintf(note, sizeof(note), "%llu ring-full exits", (unsigned long long)full);
            }
            add_row(kvm_modes[m].label, "kvm", size, fracs[f], ws_pages, h, rep, -1, note);
        } else {
            printf("%-22s %5llu MiB %.1f%%: the guest did not make its pass (%s)\n", kvm_modes[m].label,
                   (unsigned long long)(size >> 20), fracs[f] * 100, hv->failure);
        }
    out:
        migr_dirty_close(d);
        free(bm);
        migr_hv_destroy(hv);
    }
}

static void slowdown_kvm(int m)
{
    struct migr_vm_config cfg = {.mem_bytes = GiB, .nvcpus = 1};
    migr_workload_defaults(&cfg.wl);
    if (migr_workload_parse("rate=0,ws=256M,pattern=random,data=zero", &cfg.wl) < 0)
        return;
    double wps[2] = {0, 0};
    for (int tracked = 0; tracked < 2; tracked++) {
        struct migr_hv *hv;
        if (migr_kvm_create_ring(&cfg, kvm_modes[m].ring, &hv) < 0)
            return;
        struct migr_dirty *d = NULL;
        uint64_t *bm = calloc(migr_bitmap_words(hv->ram_pages), 8);
        hv->ops->resume(hv);
        sleep_ms(200);
        if (tracked && (migr_dirty_open(kvm_modes[m].tracker, hv, &d) < 0 || migr_dirty_start(d) < 0)) {
            migr_dirty_close(d);
            d = NULL;
        }
        uint64_t w0 = migr_workload_progress(hv), t0 = migr_now_ns();
        while (migr_now_ns() - t0 < 500000000ull) {
            sleep_ms(5);
            if (d && bm)
                migr_dirty_harvest(d, bm);
        }
        wps[tracked] = (double)(migr_workload_progress(hv) - w0) / ((double)(migr_now_ns() - t0) / 1e9);
        migr_dirty_close(d);
        free(bm);
        migr_hv_destroy(hv);
    }
    if (nslows < 16) {
        struct slow *s = &slows[nslows++];
        snprintf(s->tracker, sizeof(s->tracker), "%s", kvm_modes[m].label);
        s->base_wps = wps[0];
        s->tracked_wps = wps[1];
    }
    printf("%-22s workload (guest page writes, random in 256 MiB, harvest every 5 ms): %.0f writes/s tracked, "
           "%.0f untracked: %.0f%%\n", kvm_modes[m].label, wps[1], wps[0], wps[0] > 0 ? 100 * wps[1] / wps[0] : 0);
}

/* ---------- JSON ---------- */

static int write_json(const char *path, bool quick)
{
    if (mkdir_p(path) < 0)
        return -1;
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    struct utsname u;
    uname(&u);
    fprintf(f, "{\"bench\":\"dirty\",\"quick\":%s,\"reps\":%d,\"kernel\":", quick ? "true" : "false", reps);
    json_str(f, u.release);
    fprintf(f, ",\"machine\":{\"memcpy_mbps\":%.0f,\"read_mbps\":%.0f},\"rows\":[", memcpy_mbps_, read_mbps);
    for (int i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        fprintf(f, "%s{\"tracker\":", i ? "," : "");
        json_str(f, r->tracker);
        fprintf(f, ",\"mode\":\"%s\",\"size_bytes\":%llu,\"dirty_frac\":%g,\"dirty_pages\":%llu,"
                "\"harvest_ms\":%.4f,\"harvest_min_ms\":%.4f,\"reported\":%.0f,\"first_write_ns\":%.1f,"
                "\"harvest_pct_of_copy\":%.1f,\"note\":",
                r->mode, (unsigned long long)r->size, r->frac, (unsigned long long)r->dirty, r->harvest_ms,
                r->harvest_min_ms, r->reported, r->first_write_ns, r->pct_of_copy);
        json_str(f, r->note);
        fputc('}', f);
    }
    fprintf(f, "],\"slowdown\":[");
    for (int i = 0; i < nslows; i++) {
        fprintf(f, "%s{\"tracker\":", i ? "," : "");
        json_str(f, slows[i].tracker);
        fprintf(f, ",\"untracked_wps\":%.0f,\"tracked_wps\":%.0f}", slows[i].base_wps, slows[i].tracked_wps);
    }
    fprintf(f, "]}\n");
    return fclose(f) == 0 ? 0 : -1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_dirty [--quick] [--reps N] [--only NAME] [--json PATH]\n"
               "  --quick       256 MiB only, 1 repetition (a smoke run of seconds)\n"
               "  --only NAME   only trackers whose name starts with NAME (e.g. pagemap, kvm)\n"
               "  --json PATH   results file (default bench/results/dirty.json)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"quick", no_argument, NULL, 'q'}, {"reps", required_argument, NULL, 'r'},
        {"only", required_argument, NULL, 'o'}, {"json", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0},
    };
    bool quick = false;
    const char *only = "", *json = "bench/results/dirty.json";
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'q': quick = true; break;
        case 'r': reps = atoi(optarg); break;
        case 'o': only = optarg; break;
        case 'j': json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (quick && reps == 5)
        reps = 1;
    if (reps < 1 || reps > 16) {
        usage(stderr);
        return 2;
    }
    /* --quick: a smoke run of seconds (its figures are not the 1 GiB ones) */
    static const uint64_t full_sizes[] = {1 * GiB, 4 * GiB, 16 * GiB}, quick_sizes[] = {GiB / 4};
    const uint64_t *all_sizes = quick ? quick_sizes : full_sizes;
    int nsizes = quick ? 1 : 3;
    memcpy_mbps_ = measure_memcpy(256ull << 20, 5);
    read_mbps = measure_read(256ull << 20, 5);
    printf("machine: memcpy %.0f MB/s, memory read %.0f MB/s (single thread, 256 MiB)\n", memcpy_mbps_, read_mbps);

    /* the cost of the same writes to writable, populated pages */
    struct migr_hv base;
    double base_ns = 0;
    if (fake_guest(&base, GiB, true) == 0) {
        double v[16];
        for (int r = 0; r < reps; r++)
            v[r] = time_writes(base.regions[0].host, base.ram_pages / 100, 100, (uint8_t)r);
        base_ns = median(v, reps);
        fake_free(&base);
    }
    printf("a write to a writable page (the baseline subtracted from first-write costs): %.0f ns\n", base_ns);

    for (size_t i = 0; migr_dirty_backends[i]; i++) {
        const char *name = migr_dirty_backends[i]->name;
        if (strncmp(name, "kvm-", 4) == 0 || strcmp(name, "ept") == 0 || strncmp(name, only, strlen(only)))
            continue;
        struct migr_hv probe;
        if (fake_guest(&probe, 16ull << 20, false) < 0)
            continue;
        migr_clear_error();
        int ok = migr_dirty_backends[i]->supported(&probe);
        fake_free(&probe);
        if (ok <= 0) {
            printf("%-22s SKIP: %s\n", name, migr_last_error());
            continue;
        }
        for (int s = 0; s < nsizes; s++)
            bench_process(name, all_sizes[s], true, base_ns);
        for (int s = 0; s < nsizes; s++)
            bench_process(name, all_sizes[s], false, base_ns);
        slowdown_process(name);
    }
    if (migr_hv_available("kvm")) {
        for (int m = 0; m < (int)MIGR_ARRAY_SIZE(kvm_modes); m++) {
            if (strncmp(kvm_modes[m].label, only, strlen(only)))
                continue;
            for (int s = 0; s < nsizes; s++)
                bench_kvm(m, all_sizes[s]);
            slowdown_kvm(m);
        }
    } else {
        printf("kvm trackers: SKIP: %s\n", migr_last_error());
    }
    if (write_json(json, quick) < 0) {
        fprintf(stderr, "bench_dirty: cannot write %s: %s\n", json, strerror(errno));
        return 1;
    }
    printf("results: %s\n", json);
    return 0;
}
