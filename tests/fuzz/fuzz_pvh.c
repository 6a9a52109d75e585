/* libFuzzer harness: the PVH/ELF loader (hv-glue/kvm/pvh.c). The input is
 * an ELF file; it is loaded into 4 MiB of guest RAM surrounded by guard
 * pages (an out-of-bounds copy faults), and the loader must either refuse
 * with a message or write nothing outside RAM and return an entry inside
 * the segments it loaded. Built and run by tests/fuzz/run.sh; seeds:
 * corpus_pvh/ (the PVH guest of bench/peers/pvh, trimmed). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "hv-glue/kvm/pvh.h"
#include "migr/common.h"

#define RAM (4u << 20)

static uint8_t *ram;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct migr_pvh_image img;

    if (!ram) {
        uint8_t *m = mmap(NULL, RAM + 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED || mprotect(m, 4096, PROT_NONE) || mprotect(m + 4096 + RAM, 4096, PROT_NONE))
            abort();
        ram = m + 4096;
    }
    uint8_t *copy = malloc(size ? size : 1); /* ASan sees reads past the input */
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    int r = migr_pvh_load(ram, RAM, copy, size, size && (data[0] & 1) ? "console=ttyS0" : NULL, &img);
    if (r < 0 && !migr_last_error()[0])
        abort();
    if (r == 0 && (img.hi > RAM || img.lo > img.hi || img.start_info_gpa >= RAM))
        abort();
    free(copy);
    return 0;
}
