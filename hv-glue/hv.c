/* hv-glue: backend dispatch and RAM address helpers shared by all backends. */
#include <errno.h>
#include <string.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hv-glue/kvm/kvm.h"
#include "hv-glue/proc/proc.h"
#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/hv.h"

int migr_hv_available(const char *backend)
{
    if (strcmp(backend, "kvm") == 0)
        return migr_kvm_available();
    if (strcmp(backend, "proc") == 0)
        return 1; /* memfd + threads: works wherever libmigr runs */
    migr_errorf(EINVAL, "unknown backend '%s' (known: kvm, proc)", backend);
    return 0;
}

const struct migr_dirty_ops *const *migr_hv_backend_trackers(const char *backend)
{
    if (strcmp(backend, "kvm") == 0)
        return migr_kvm_trackers;
    if (strcmp(backend, "proc") == 0)
        return migr_dirty_process_trackers;
    return NULL;
}

int migr_hv_create(const char *backend, const struct migr_vm_config *cfg, struct migr_hv **out)
{
    if (strcmp(backend, "kvm") == 0)
        return migr_kvm_create(cfg, out);
    if (strcmp(backend, "proc") == 0) {
        if (cfg->kernel)
            return migr_errorf(EINVAL, "backend proc cannot boot a kernel (%s): use kvm", cfg->kernel);
        return migr_proc_create(cfg, out);
    }
    return migr_errorf(EINVAL, "unknown backend '%s' (known: kvm, proc)", backend);
}

int migr_hv_map_ram(uint64_t size, int memfd, uint64_t off, int *fd, uint8_t **mem)
{
    *mem = MAP_FAILED;
    *fd = memfd;
    if (memfd >= 0) {
        struct stat sb;
        if (fstat(memfd, &sb) < 0 || off % MIGR_PAGE_SIZE || (uint64_t)sb.st_size < off + size)
            return migr_errorf(EINVAL, "guest memory fd holds %lld bytes, the RAM layout needs %llu at offset %llu",
                               (long long)sb.st_size, (unsigned long long)size, (unsigned long long)off);
    } else {
        if ((*fd = memfd_create("migr-guest-ram", MFD_CLOEXEC)) < 0)
            return migr_errorf_errno(errno, "memfd_create");
        if (ftruncate(*fd, (off_t)size) < 0)
            return migr_errorf_errno(errno, "ftruncate guest memfd to %llu", (unsigned long long)size);
    }
    *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, (off_t)off);
    if (*mem == MAP_FAILED)
        return migr_errorf_errno(errno, "mmap guest RAM (%llu MiB)", (unsigned long long)(size >> 20));
    return 0;
}

/* Both backends take one RAM region at guest-physical 0. */
static int one_region_at_zero(const struct migr_hello *h)
{
    if (h->nregions == 1 && h->regions[0].gpa == 0)
        return 0;
    return migr_errorf(EINVAL, "HELLO: the %.16s backend takes one RAM region at gpa 0 "
                       "(got %u regions, first at 0x%llx)", h->backend, h->nregions,
                       (unsigned long long)h->regions[0].gpa);
}

int migr_hv_create_incoming(const struct migr_hello *hello, struct migr_hv **out)
{
    int err = one_region_at_zero(hello);
    if (err < 0)
        return err;
    if (strcmp(hello->backend, "kvm") == 0)
        return migr_kvm_create_incoming(hello, -1, 0, out);
    if (strcmp(hello->backend, "proc") == 0)
        return migr_proc_create_incoming(hello, -1, 0, out);
    return migr_errorf(ENOTSUP, "HELLO: backend '%.16s' is not available in this build", hello->backend);
}

int migr_hv_create_shared(const struct migr_hello *hello, const int *memfds, const uint64_t *offs,
                          struct migr_hv **out)
{
    bool kvm = strcmp(hello->backend, "kvm") == 0, proc = strcmp(hello->backend, "proc") == 0;
    int err = one_region_at_zero(hello);
    if (err < 0 || !(kvm || proc)) {
        for (uint32_t i = 0; i < hello->nregions; i++)
            close(memfds[i]);
        return err < 0 ? err
                       : migr_errorf(ENOTSUP, "HELLO: backend '%.16s' is not available in this build", hello->backend);
    }
    return kvm ? migr_kvm_create_incoming(hello, memfds[0], offs[0], out)
               : migr_proc_create_incoming(hello, memfds[0], offs[0], out);
}

uint8_t *migr_hv_page(struct migr_hv *hv, uint64_t idx)
{
    for (uint32_t r = 0; r < hv->nregions; r++) {
        uint64_t n = hv->regions[r].size / MIGR_PAGE_SIZE;
        if (idx < n)
            return hv->regions[r].host + idx * MIGR_PAGE_SIZE;
        idx -= n;
    }
    return NULL;
}

int64_t migr_hv_pfn_index(const struct migr_hv *hv, uint64_t pfn)
{
    uint64_t base = 0;
    for (uint32_t r = 0; r < hv->nregions; r++) {
        uint64_t first = hv->regions[r].gpa / MIGR_PAGE_SIZE, n = hv->regions[r].size / MIGR_PAGE_SIZE;
        if (pfn >= first && pfn - first < n)
            return (int64_t)(base + pfn - first);
        base += n;
    }
    return -1;
}

uint64_t migr_hv_index_pfn(const struct migr_hv *hv, uint64_t idx)
{
    for (uint32_t r = 0; r < hv->nregions; r++) {
        uint64_t n = hv->regions[r].size / MIGR_PAGE_SIZE;
        if (idx < n)
            return hv->regions[r].gpa / MIGR_PAGE_SIZE + idx;
        idx -= n;
    }
    return ~0ull;
}

uint8_t *migr_hv_gpa(struct migr_hv *hv, uint64_t gpa, uint64_t len)
{
    for (uint32_t r = 0; r < hv->nregions; r++) {
        const struct migr_hv_region *g = &hv->regions[r];
        if (gpa >= g->gpa && gpa - g->gpa <= g->size && len <= g->size - (gpa - g->gpa))
            return g->host + (gpa - g->gpa);
    }
    return NULL;
}

void migr_hv_describe(const struct migr_hv *hv, struct migr_hello *h)
{
    memset(h, 0, sizeof(*h));
    h->page_size = MIGR_PAGE_SIZE;
    h->nvcpus = hv->nvcpus;
    h->nregions = hv->nregions;
    h->state_version = hv->state_version;
    strncpy(h->backend, hv->ops->name, sizeof(h->backend) - 1);
    for (uint32_t r = 0; r < hv->nregions; r++) {
        h->regions[r].gpa = hv->regions[r].gpa;
        h->regions[r].size = hv->regions[r].size;
    }
}
