/* hv-glue: backend dispatch and RAM address helpers shared by all backends. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hv-glue/kvm/kvm.h"
#include "hv-glue/proc/proc.h"
#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/format.h"
#include "migr/hv.h"

static int always(void)
{
    return 1; /* proc: memfd + threads work wherever libmigr runs */
}

static int proc_create(const struct migr_vm_config *cfg, struct migr_hv **out)
{
    if (cfg->kernel)
        return migr_errorf(EINVAL, "backend proc cannot boot a kernel (%s): use kvm", cfg->kernel);
    return migr_proc_create(cfg, out);
}

/* migr's own backends: a row each. */
struct backend {
    const char *name;
    int (*available)(void);
    int (*create)(const struct migr_vm_config *cfg, struct migr_hv **out);
    /* An incoming guest of one region at gpa 0 (memfd >= 0: on that memory). */
    int (*create_incoming)(const struct migr_vm_layout *l, int memfd, uint64_t memfd_off, struct migr_hv **out);
    const struct migr_dirty_ops *const *trackers;
};

static const struct backend backends[] = {
    {"kvm", migr_kvm_available, migr_kvm_create, migr_kvm_create_incoming, migr_kvm_trackers},
    {"proc", always, proc_create, migr_proc_create_incoming, migr_dirty_process_trackers},
};

/* The backend called name, or NULL with the reason. */
static const struct backend *backend_named(const char *name)
{
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(backends); i++)
        if (strcmp(backends[i].name, name) == 0)
            return &backends[i];
    migr_errorf(EINVAL, "unknown backend '%s' (known: kvm, proc)", name);
    return NULL;
}

int migr_hv_available(const char *backend)
{
    const struct backend *b = backend_named(backend);
    return b ? b->available() : 0;
}

const struct migr_dirty_ops *const *migr_hv_backend_trackers(const char *backend)
{
    const struct backend *b = backend_named(backend);
    return b ? b->trackers : NULL;
}

int migr_hv_create(const char *backend, const struct migr_vm_config *cfg, struct migr_hv **out)
{
    const struct backend *b = backend_named(backend);
    return b ? b->create(cfg, out) : -EINVAL;
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

/* Both built-in backends take one RAM region at guest-physical 0. */
static int one_region_at_zero(const struct migr_vm_layout *l)
{
    if (l->nregions == 1 && l->regions[0].gpa == 0)
        return 0;
    return migr_errorf(EINVAL, "the %s backend takes one RAM region at gpa 0 (got %u regions, first at 0x%llx)",
                       l->vmm, l->nregions, (unsigned long long)l->regions[0].gpa);
}

static void close_fds(const int *memfds, uint32_t n)
{
    for (uint32_t i = 0; memfds && i < n; i++)
        close(memfds[i]);
}

/* A built-in backend's builder (arg: its struct backend). */
static int build_builtin(void *arg, const struct migr_vm_layout *l, const int *memfds, const uint64_t *offs,
                         struct migr_hv **out)
{
    const struct backend *be = arg;
    int err = one_region_at_zero(l);
    if (err < 0) {
        close_fds(memfds, l->nregions);
        return err;
    }
    return be->create_incoming(l, memfds ? memfds[0] : -1, memfds ? offs[0] : 0, out);
}

static int yes(void *arg) { return 1; }

/* The built-in backends, through the same builder API an embedder uses. */
static const struct migr_hv_builder builtin[] = {
    {.vmm = "kvm", .create = build_builtin, .can_share = yes, .arg = (void *)&backends[0]},
    {.vmm = "proc", .create = build_builtin, .can_share = yes, .arg = (void *)&backends[1]},
};

#define MAX_BUILDERS 16
static pthread_mutex_t builders_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct migr_hv_builder *builders[MAX_BUILDERS];

int migr_hv_register_builder(const struct migr_hv_builder *b)
{
    if (!b || !b->vmm || !b->vmm[0] || strlen(b->vmm) > 15 || !b->create)
        return migr_errorf(EINVAL, "guest builder: a VMM type of 1..15 characters and create are needed");
    int err = -ENOSPC;
    pthread_mutex_lock(&builders_lock);
    for (int i = 0; i < MAX_BUILDERS; i++)
        if (builders[i] && strcmp(builders[i]->vmm, b->vmm) == 0)
            err = -EEXIST;
    for (int i = 0; i < MAX_BUILDERS && err == -ENOSPC; i++)
        if (!builders[i]) {
            builders[i] = b;
            err = 0;
        }
    pthread_mutex_unlock(&builders_lock);
    if (err == -EEXIST)
        return migr_errorf(EEXIST, "guest builder for VMM type '%s' is registered already", b->vmm);
    if (err == -ENOSPC)
        return migr_errorf(ENOSPC, "guest builder '%s': %d registered already", b->vmm, MAX_BUILDERS);
    return 0;
}

int migr_hv_unregister_builder(const struct migr_hv_builder *b)
{
    int found = 0;
    pthread_mutex_lock(&builders_lock);
    for (int i = 0; i < MAX_BUILDERS; i++)
        if (builders[i] == b) {
            builders[i] = NULL;
            found = 1;
        }
    pthread_mutex_unlock(&builders_lock);
    return found ? 0 : migr_errorf(ENOENT, "guest builder is not registered");
}

/* The builder for type vmm: a registered one, else a built-in one; NULL. */
static const struct migr_hv_builder *find_builder(const char *vmm)
{
    const struct migr_hv_builder *b = NULL;
    pthread_mutex_lock(&builders_lock);
    for (int i = 0; i < MAX_BUILDERS && !b; i++)
        if (builders[i] && strcmp(builders[i]->vmm, vmm) == 0)
            b = builders[i];
    pthread_mutex_unlock(&builders_lock);
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(builtin) && !b; i++)
        if (strcmp(builtin[i].vmm, vmm) == 0)
            b = &builtin[i];
    return b;
}

static int check_layout(const struct migr_vm_layout *l)
{
    if (l->page_size != MIGR_PAGE_SIZE)
        return migr_errorf(EINVAL, "layout: page size %u (this build: %u)", l->page_size, MIGR_PAGE_SIZE);
    if (l->nvcpus < 1 || l->nvcpus > MIGR_MAX_VCPUS)
        return migr_errorf(EINVAL, "layout: %u vCPUs (1..%u)", l->nvcpus, MIGR_MAX_VCPUS);
    if (l->nregions < 1 || l->nregions > MIGR_MAX_REGIONS)
        return migr_errorf(EINVAL, "layout: %u RAM regions (1..%u)", l->nregions, MIGR_MAX_REGIONS);
    if (memchr(l->vmm, 0, sizeof(l->vmm)) == NULL || !l->vmm[0])
        return migr_errorf(EINVAL, "layout: no VMM type");
    for (uint32_t i = 0; i < l->nregions; i++) {
        const struct migr_layout_region *g = &l->regions[i];
        if (!g->size || g->size % MIGR_PAGE_SIZE || g->gpa % MIGR_PAGE_SIZE || g->gpa + g->size < g->gpa)
            return migr_errorf(EINVAL, "layout: region %u (gpa 0x%llx, %llu bytes) not page aligned or empty", i,
                               (unsigned long long)g->gpa, (unsigned long long)g->size);
        if (i && g->gpa < l->regions[i - 1].gpa + l->regions[i - 1].size)
            return migr_errorf(EINVAL, "layout: region %u at 0x%llx overlaps or precedes region %u", i,
                               (unsigned long long)g->gpa, i - 1);
    }
    return 0;
}

/* The guest a builder returned has the layout it was asked for. */
static int check_built(const struct migr_vm_layout *l, const struct migr_hv *hv)
{
    uint64_t pages = 0;
    if (!hv->ops || !hv->ops->pause || !hv->ops->resume || !hv->ops->load_state || !hv->ops->destroy)
        return migr_errorf(EINVAL, "guest builder '%s': the guest lacks pause, resume, load_state or destroy", l->vmm);
    if (hv->nregions != l->nregions || hv->nvcpus != l->nvcpus)
        return migr_errorf(EINVAL, "guest builder '%s': built %u regions and %u vCPUs, the layout has %u and %u",
                           l->vmm, hv->nregions, hv->nvcpus, l->nregions, l->nvcpus);
    for (uint32_t i = 0; i < l->nregions; i++) {
        const struct migr_hv_region *g = &hv->regions[i];
        if (g->gpa != l->regions[i].gpa || g->size != l->regions[i].size || !g->host)
            return migr_errorf(EINVAL, "guest builder '%s': region %u is 0x%llx+%llu%s, the layout says 0x%llx+%llu",
                               l->vmm, i, (unsigned long long)g->gpa, (unsigned long long)g->size,
                               g->host ? "" : " without a host mapping", (unsigned long long)l->regions[i].gpa,
                               (unsigned long long)l->regions[i].size);
        pages += g->size / MIGR_PAGE_SIZE;
    }
    if (hv->ram_pages != pages)
        return migr_errorf(EINVAL, "guest builder '%s': ram_pages %llu, the regions hold %llu", l->vmm,
                           (unsigned long long)hv->ram_pages, (unsigned long long)pages);
    return 0;
}

int migr_hv_build(const struct migr_vm_layout *layout, const int *memfds, const uint64_t *offs,
                  struct migr_hv **out)
{
    *out = NULL;
    int err = check_layout(layout);
    const struct migr_hv_builder *b = err < 0 ? NULL : find_builder(layout->vmm);
    if (err == 0 && !b)
        err = migr_errorf(ENOTSUP, "no guest builder for backend (VMM type) '%.16s' (built in: kvm, proc; an embedder "
                          "registers its own with migr_hv_register_builder)", layout->vmm);
    if (err == 0 && memfds && !(b->can_share && b->can_share(b->arg) > 0))
        err = migr_errorf(ENOTSUP, "guest builder '%s' cannot take handed-over memory", layout->vmm);
    if (err < 0) {
        close_fds(memfds, layout->nregions <= MIGR_MAX_REGIONS ? layout->nregions : 0);
        return err;
    }
    struct migr_hv *hv = NULL;
    if ((err = b->create(b->arg, layout, memfds, offs, &hv)) < 0)
        return err;
    if ((err = check_built(layout, hv)) < 0) {
        hv->ops->destroy(hv);
        return err;
    }
    *out = hv;
    return 0;
}

int migr_hv_create_incoming(const struct migr_hello *hello, struct migr_hv **out)
{
    struct migr_vm_layout l;
    migr_hello_layout(hello, &l);
    return migr_hv_build(&l, NULL, NULL, out);
}

int migr_hv_create_shared(const struct migr_hello *hello, const int *memfds, const uint64_t *offs,
                          struct migr_hv **out)
{
    struct migr_vm_layout l;
    migr_hello_layout(hello, &l);
    return migr_hv_build(&l, memfds, offs, out);
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

void migr_hv_layout(const struct migr_hv *hv, struct migr_vm_layout *l)
{
    memset(l, 0, sizeof(*l));
    l->page_size = MIGR_PAGE_SIZE;
    l->nvcpus = hv->nvcpus;
    l->nregions = hv->nregions;
    l->state_version = hv->state_version;
    strncpy(l->vmm, hv->ops->name, sizeof(l->vmm) - 1);
    for (uint32_t r = 0; r < hv->nregions && r < MIGR_MAX_REGIONS; r++)
        l->regions[r] = (struct migr_layout_region){.gpa = hv->regions[r].gpa, .size = hv->regions[r].size};
}

void migr_hv_describe(const struct migr_hv *hv, struct migr_hello *h)
{
    struct migr_vm_layout l;
    memset(h, 0, sizeof(*h));
    migr_hv_layout(hv, &l);
    migr_hello_set_layout(h, &l);
}
