/* bench_holes: how cheaply can a sender learn which pages of a memfd were
 * never written (holes), without touching them? Reading a hole of a memfd
 * allocates and zeroes it (the source's RSS grows to all of guest RAM), so
 * the sender must know before it reads.
 *
 * Methods, each over the whole memfd, producing a bitmap of data pages:
 *   seek      lseek(SEEK_DATA) / lseek(SEEK_HOLE): two calls per extent
 *   mincore   mincore() over a shared mapping of the memfd, 1 byte per page
 *   pagemap   /proc/self/pagemap of that mapping, 8 bytes per page (only
 *             pages *mapped in this process* show; a page written through
 *             another mapping — a previous VMM's after a hand-over — reads as
 *             absent, so it is not safe on its own: shown for the cost)
 * Layouts: empty, a 64 MiB data extent, the first half written, every 64th
 * page written (fragmented), for 1, 4 and 16 GiB memfds (16 GiB: the dense
 * layouts are skipped, they would need 8 GiB of RAM). Each result is checked
 * against the layout (a fast-but-wrong scan cannot win).
 *
 * Output: one line per (size, layout, method): ms per scan, best of --reps;
 * JSON (default bench/results/holes.json): {"reps":N,"results":[{"size_gib",
 * "layout","seek_ms","mincore_ms","pagemap_ms"}]} (-1: the scan failed).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migr/common.h"

#define BENCH_NAME "bench_holes"
#include "benchlib.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define GiB (1ull << 30)
#define MiB (1ull << 20)
#define PAGE 4096ull

enum { L_EMPTY, L_64M, L_HALF, L_EVERY64, NL };
static const char *const lname[NL] = {"empty", "64M-extent", "half", "every-64th"};

static bool is_data(int layout, uint64_t i, uint64_t npages)
{
    switch (layout) {
    case L_64M:
        return i < 64 * MiB / PAGE;
    case L_HALF:
        return i < npages / 2;
    case L_EVERY64:
        return i % 64 == 0;
    default:
        return false;
    }
}

static int scan_seek(int fd, uint64_t size, uint64_t *bm)
{
    off_t off = 0;
    for (;;) {
        off_t d = lseek(fd, off, SEEK_DATA);
        if (d < 0 && errno == ENXIO)
            return 0;
        if (d < 0)
            return -errno;
        off_t h = lseek(fd, d, SEEK_HOLE);
        if (h < 0)
            return -errno;
        for (uint64_t p = (uint64_t)d / PAGE; p < (uint64_t)h / PAGE; p++)
            bm[p >> 6] |= 1ull << (p & 63);
        if ((uint64_t)h >= size)
            return 0;
        off = h;
    }
}

static int scan_mincore(uint8_t *map, uint64_t size, uint8_t *vec, uint64_t *bm)
{
    if (mincore(map, size, vec) < 0)
        return -errno;
    for (uint64_t p = 0; p < size / PAGE; p++)
        if (vec[p] & 1)
            bm[p >> 6] |= 1ull << (p & 63);
    return 0;
}

static int scan_pagemap(int pm, uint8_t *map, uint64_t size, uint64_t *buf, uint64_t *bm)
{
    uint64_t np = size / PAGE, chunk = 1u << 16;
    for (uint64_t p = 0; p < np; p += chunk) {
        uint64_t n = np - p < chunk ? np - p : chunk;
        off_t off = (off_t)(((uintptr_t)map / PAGE + p) * 8);
        if (pread(pm, buf, n * 8, off) != (ssize_t)(n * 8))
            return -EIO;
        for (uint64_t k = 0; k < n; k++)
            if (buf[k] & (1ull << 63))
                bm[(p + k) >> 6] |= 1ull << ((p + k) & 63);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int reps = 3;
    bool quick = false;
    const char *json = "bench/results/holes.json";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            if (bench_opt_reps(argv[++i], &reps) < 0)
                return 2;
        } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_holes [--quick] [--reps N] [--json PATH]\n"
                            "  --quick      1 GiB only\n  --reps N     best of N scans (default 3)\n"
                            "  --json PATH  results file (default bench/results/holes.json)\n");
            return strcmp(argv[i], "-h") && strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    static const uint64_t sizes[] = {1 * GiB, 4 * GiB, 16 * GiB};
    int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    int bad = 0;
    FILE *jf = NULL;
    if (mkdir_p(json) < 0 || !(jf = fopen(json, "w"))) {
        fprintf(stderr, "bench_holes: %s: %s\n", json, strerror(errno));
        return 1;
    }
    fprintf(jf, "{\"bench\":\"holes\",\"reps\":%d,\"results\":[", reps);
    bool first = true;
    printf("%-6s %-11s %10s %10s %10s   (ms per scan, best of %d)\n", "size", "layout", "seek", "mincore",
           "pagemap", reps);
    for (size_t si = 0; si < (quick ? 1 : MIGR_ARRAY_SIZE(sizes)); si++) {
        uint64_t size = sizes[si], np = size / PAGE;
        for (int l = 0; l < NL; l++) {
            if (size > 4 * GiB && l == L_HALF)
                continue;
            int fd = memfd_create("bench-holes", MFD_CLOEXEC);
            if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
                perror("memfd");
                return 1;
            }
            uint8_t *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            uint64_t words = (np + 63) / 64;
            uint64_t *bm = calloc(words, 8), *ref = calloc(words, 8), *buf = malloc((1u << 16) * 8);
            uint8_t *vec = malloc(np);
            if (map == MAP_FAILED || !bm || !ref || !buf || !vec) {
                perror("alloc");
                return 1;
            }
            for (uint64_t p = 0; p < np; p++)
                if (is_data(l, p, np)) {
                    ref[p >> 6] |= 1ull << (p & 63);
                    map[p * PAGE] = 1;
                }
            double best[3] = {1e30, 1e30, 1e30};
            for (int m = 0; m < 3; m++) {
                for (int r = 0; r < reps; r++) {
                    memset(bm, 0, words * 8);
                    uint64_t t0 = migr_now_ns();
                    int err = m == 0 ? scan_seek(fd, size, bm)
                            : m == 1 ? scan_mincore(map, size, vec, bm)
                                     : pm >= 0 ? scan_pagemap(pm, map, size, buf, bm) : -ENOENT;
                    double ms = (double)(migr_now_ns() - t0) / 1e6;
                    if (err < 0) {
                        best[m] = -1;
                        break;
                    }
                    if (memcmp(bm, ref, words * 8) != 0) {
                        fprintf(stderr, "bench_holes: %s scan of %s/%llu GiB is wrong\n",
                                m == 0 ? "seek" : m == 1 ? "mincore" : "pagemap", lname[l],
                                (unsigned long long)(size / GiB));
                        bad = 1;
                    }
                    if (ms < best[m])
                        best[m] = ms;
                }
            }
            printf("%-6s %-11s %10.3f %10.3f %10.3f\n", size == GiB ? "1G" : size == 4 * GiB ? "4G" : "16G",
                   lname[l], best[0], best[1], best[2]);
            fflush(stdout);
            fprintf(jf, "%s\n{\"size_gib\":%llu,\"layout\":\"%s\",\"seek_ms\":%.3f,\"mincore_ms\":%.3f,"
                        "\"pagemap_ms\":%.3f}", first ? "" : ",", (unsigned long long)(size / GiB), lname[l],
                    best[0], best[1], best[2]);
            first = false;
            munmap(map, size);
            close(fd);
            free(bm);
            free(ref);
            free(buf);
            free(vec);
        }
    }
    if (pm >= 0)
        close(pm);
    fprintf(jf, "\n]}\n");
    if (fclose(jf) != 0) {
        fprintf(stderr, "bench_holes: write %s: %s\n", json, strerror(errno));
        return 1;
    }
    printf("results: %s\n", json);
    return bad;
}
