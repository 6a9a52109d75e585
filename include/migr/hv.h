/* migr — hv-glue: the hypervisor interface the engine migrates through.
 *
 * A guest is a list of RAM regions plus ops to pause/resume it and to save
 * and load its vCPU and device state. Backends: "kvm" (migr's minimal VMM on
 * /dev/kvm) and "proc" (RAM in a memfd written by workload threads of this
 * process; hv-glue/proc). Threads: ops are called from one control thread at
 * a time.
 *
 * Threads, blocking, signals: migr_hv_create starts one thread per vCPU
 * (created paused; joined by destroy) and, while it fills RAM, one helper
 * thread it joins before returning. The kvm backend installs a
 * process-wide SIGUSR1 handler (no SA_RESTART, so KVM_RUN returns EINTR
 * when a vCPU is kicked) at its first guest and keeps it. Who calls the ops
 * during a migration: engine.h, top. The lookups and address helpers below
 * never block; migr_hv_build blocks as long as the builder's create does.
 */
#ifndef MIGR_HV_H
#define MIGR_HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "migr/layout.h"
#include "migr/workload.h"

#ifdef __cplusplus
extern "C" {
#endif

struct migr_hv_region {
    uint64_t gpa;        /* guest-physical base (page aligned) */
    uint64_t size;       /* bytes (page aligned) */
    uint8_t *host;       /* host mapping (MAP_SHARED of memfd) */
    int memfd;           /* backing memfd */
    uint64_t memfd_off;  /* offset of the region in memfd */
    uint32_t slot;       /* backend's slot id (KVM memslot) */
};

struct migr_hv;
struct migr_dirty_ops;
struct migr_hello;

struct migr_hv_ops {
    const char *name;
    /*! Stop every vCPU (kicked out of KVM_RUN; completes pending I/O exits).
     *  Idempotent. Blocks until each vCPU thread has stopped (microseconds;
     *  a proc vCPU blocked on a post-copy fault first waits for its page). */
    int (*pause)(struct migr_hv *hv);
    /*! Let the vCPUs run (first call starts them). Does not wait for them. */
    int (*resume)(struct migr_hv *hv);
    /*! Stop the workload at a consistent point (between page writes) for
     *  verification; the guest must be running. Undo with unquiesce. Blocks
     *  up to timeout_ms (-ETIMEDOUT after). */
    int (*quiesce)(struct migr_hv *hv, int timeout_ms);
    int (*unquiesce)(struct migr_hv *hv);
    /*! Serialise vCPU + device state (guest paused). *blob is malloc'd; the
     *  caller frees it. */
    int (*save_state)(struct migr_hv *hv, uint8_t **blob, size_t *len);
    /*! Load a blob from save_state() of the same backend and state_version
     *  into a paused guest. Strict: -EBADMSG for a malformed blob. */
    int (*load_state)(struct migr_hv *hv, const uint8_t *blob, size_t len);
    /*! Turn the backend's dirty logging on/off (KVM: KVM_MEM_LOG_DIRTY_PAGES). */
    int (*set_dirty_log)(struct migr_hv *hv, bool on, bool manual_protect);
    /*! Non-zero if the guest stopped by itself (triple fault, guest panic);
     *  then migr_hv_failure() says why. */
    int (*failed)(struct migr_hv *hv);
    /*! Stop and free everything (vCPU threads joined, memory unmapped).
     *  Blocks until the vCPU threads have exited. */
    void (*destroy)(struct migr_hv *hv);
    /*! The dirty trackers this backend offers its guests, best first,
     *  NULL-terminated (NULL: none of its own). "auto" tries them before the
     *  registered and the generic ones (include/migr/dirty.h). A backend
     *  whose guest RAM is written through this process's mapping offers
     *  migr_dirty_process_trackers. */
    const struct migr_dirty_ops *const *trackers;
};

struct migr_hv {
    const struct migr_hv_ops *ops;
    uint32_t nregions;
    struct migr_hv_region regions[MIGR_MAX_REGIONS];
    uint32_t nvcpus;
    uint64_t ram_pages;          /* total pages over all regions */
    uint32_t state_version;
    int kvm_vm_fd;               /* -1 for non-KVM backends */
    bool paused;
    char failure[256];           /* why the guest stopped, if it did */
    void *priv;
};

/* Configuration of a new VM (migr run). */
struct migr_vm_config {
    uint64_t mem_bytes;              /* multiple of 2 MiB, >= 8 MiB */
    uint32_t nvcpus;                 /* 1..MIGR_MAX_VCPUS */
    struct migr_workload_cfg wl;     /* guest workload */
    /* kvm only: boot this ELF by the PVH ABI (hv-glue/kvm/pvh.h) instead of
     * migr's built-in guest; the kernel sets up its own workload from
     * cmdline, and wl is unused. NULL: the built-in guest. */
    const char *kernel;
    const char *cmdline;
};

/*! Create a guest running the migr workload (paused; call resume to start).
 *  backend: "kvm" or "proc". -ENODEV with the reason if /dev/kvm is unusable.
 *  Blocks while it allocates and fills RAM (a helper thread, joined); starts
 *  the vCPU threads; kvm: installs the SIGUSR1 kick handler once per process. */
int migr_hv_create(const char *backend, const struct migr_vm_config *cfg, struct migr_hv **out);

/* ---- The destination: the caller builds the incoming guest ----
 *
 * A destination does not need migr's VMMs: whoever receives a guest of VMM
 * type T registers a builder for T, and migr_recv() calls it with the layout
 * the source announced (RAM regions with their guest-physical bases — holes
 * between them are fine —, page size, vCPUs, state version). The builder
 * returns a paused, empty struct migr_hv over the caller's own memory; the
 * engine then writes the pages into regions[].host (or, in post-copy,
 * registers regions[].host with a userfaultfd of its own for missing pages
 * and places them with UFFDIO_COPY: the memory must be a shared memfd
 * mapping or anonymous memory, not yet registered with another userfaultfd,
 * and not yet touched), passes the source's state blob to ops->load_state,
 * and finally calls ops->resume. The built-in "kvm" and "proc" backends are
 * builders of this kind too. */

struct migr_hv_builder {
    const char *vmm;   /*!< the VMM type it builds (HELLO's backend), 1..15 characters */
    /*! Build an empty, paused guest with exactly layout's regions (same count,
     *  order, gpa and size), layout->nvcpus vCPUs and a state_version the
     *  builder chooses (the engine refuses the guest if it differs from the
     *  source's). memfds == NULL: a copy migration — the caller provides the
     *  memory (each region's host mapping, and a memfd + offset if it has one,
     *  else memfd = -1). memfds != NULL: a zero-copy hand-over — region i's
     *  memory is memfds[i] at offs[i] (the guest owns the fds from here: the
     *  builder closes them on failure too). 0 and *out, or -errno with
     *  migr_errorf. Called on the thread that runs migr_recv (or
     *  migr_hv_build), while the source waits: keep it short. */
    int (*create)(void *arg, const struct migr_vm_layout *layout, const int *memfds, const uint64_t *offs,
                  struct migr_hv **out);
    /*! Optional: 1 if this builder can take memfds (hand-over), else 0. NULL: copy only.
     *  Called on migr_recv's thread; must not block. */
    int (*can_share)(void *arg);
    void *arg;         /*!< passed to the ops */
};

/*! Let migr_recv() build incoming guests of type b->vmm with b (b must stay
 *  valid until unregistered; a registered builder is preferred over a
 *  built-in one of the same type). Thread-safe. 0, -EINVAL, -EEXIST,
 *  -ENOSPC (16 registered). Does not block (a short lock). */
int migr_hv_register_builder(const struct migr_hv_builder *b);
/*! Undo migr_hv_register_builder. 0 or -ENOENT. Thread-safe; not while a
 *  migr_recv may be calling b. */
int migr_hv_unregister_builder(const struct migr_hv_builder *b);

/*! Build an incoming guest of layout->vmm through its builder (registered,
 *  else built-in): checks the layout (page size, vCPUs, regions ascending
 *  and disjoint), calls the builder, then checks that the guest it returned
 *  has that layout and a host mapping for every region. memfds/offs as for
 *  the builder's create (NULL: a copy migration); the fds are the guest's
 *  (closed on failure). -ENOTSUP naming the type if no builder takes it.
 *  Calls the builder on this thread and blocks as long as it does. */
int migr_hv_build(const struct migr_vm_layout *layout, const int *memfds, const uint64_t *offs,
                  struct migr_hv **out);

/*! The layout of hv as a source announces it (page size, regions, vCPUs,
 *  vmm = hv->ops->name, state version). */
void migr_hv_layout(const struct migr_hv *hv, struct migr_vm_layout *out);

/*! migr_hv_build from a HELLO record's layout (memory zeroed, state unset);
 *  blocks as migr_hv_build. */
int migr_hv_create_incoming(const struct migr_hello *hello, struct migr_hv **out);

/*! migr_hv_build from a HELLO record's layout whose RAM is the given memory
 *  (one memfd per region, at offs[i]) handed over by another VMM: no copy.
 *  Takes ownership of the fds (closed on failure too). */
int migr_hv_create_shared(const struct migr_hello *hello, const int *memfds, const uint64_t *offs,
                          struct migr_hv **out);

/*! The trackers the built-in backend ("kvm", "proc") offers, or NULL. */
const struct migr_dirty_ops *const *migr_hv_backend_trackers(const char *backend);

/*! 1 if backend can run on this machine, else 0 with migr_last_error() saying why.
 *  kvm: opens /dev/kvm and creates a throw-away VM (milliseconds). */
int migr_hv_available(const char *backend);

/*! For backends: map guest RAM of size bytes — the given memfd at off (a
 *  hand-over; checked to be large enough, off page aligned) or, with memfd < 0,
 *  a new memfd. Sets *fd (the memfd, to close on destroy, also after a
 *  failure) and *mem (MAP_FAILED on failure). 0 or -errno. Does not touch the
 *  pages (no blocking beyond the mmap). */
int migr_hv_map_ram(uint64_t size, int memfd, uint64_t off, int *fd, uint8_t **mem);

/*! Host pointer for RAM index i (see dirty.h), or NULL if out of range. */
uint8_t *migr_hv_page(struct migr_hv *hv, uint64_t ram_index);
/*! RAM index of guest page frame pfn, or -1 if pfn is not in guest RAM. */
int64_t migr_hv_pfn_index(const struct migr_hv *hv, uint64_t pfn);
/*! Guest page frame of RAM index i. */
uint64_t migr_hv_index_pfn(const struct migr_hv *hv, uint64_t ram_index);
/*! Host pointer for a guest-physical range entirely inside one region, or NULL. */
uint8_t *migr_hv_gpa(struct migr_hv *hv, uint64_t gpa, uint64_t len);

/*! Fill hello's layout fields (page size, vCPUs, regions, backend, state
 *  version): migr_hv_layout, then migr_hello_set_layout (format.h). */
void migr_hv_describe(const struct migr_hv *hv, struct migr_hello *hello);

static inline void migr_hv_destroy(struct migr_hv *hv) { if (hv) hv->ops->destroy(hv); }

#ifdef __cplusplus
}
#endif

#endif
