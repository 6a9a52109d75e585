/* migr — the guest workload: what a test guest does while it is migrated,
 * and how its memory image is verified afterwards.
 *
 * The workload rewrites pages of a working set at a given rate. Every write
 * bumps the page's generation in a generation table and refills the page
 * deterministically from (page, generation); verification recomputes every
 * page, so a lost, stale or torn page anywhere is found.
 *
 * Threads and blocking: none of these starts a thread or installs a signal
 * handler. The parse/format/defaults helpers are pure; the verifiers read
 * the whole image on the caller's thread (time linear in RAM size); the
 * workload itself runs on the guest's vCPU threads (hv.h).
 */
#ifndef MIGR_WORKLOAD_H
#define MIGR_WORKLOAD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum migr_wl_pattern { MIGR_WL_SEQUENTIAL = 0, MIGR_WL_RANDOM = 1, MIGR_WL_HOTCOLD = 2 };
/* MIGR_WL_APP: pages from a captured application image given to a PVH guest
 * as its first module (docs/workload-data.md); only with `migr run --kernel`. */
enum migr_wl_data { MIGR_WL_ZERO = 0, MIGR_WL_TEXT = 1, MIGR_WL_RANDOM_DATA = 2, MIGR_WL_APP = 3 };

struct migr_workload_cfg {
    uint64_t rate_bytes;   /* bytes/s to dirty, all vCPUs together; 0 = as fast as possible */
    uint64_t ws_bytes;     /* working set; 0 = all RAM after the guest's own metadata */
    uint32_t pattern;      /* enum migr_wl_pattern */
    uint32_t data;         /* enum migr_wl_data */
    uint64_t seed;
};

/*! Defaults: rate=64M, ws=0 (all), pattern=random, data=text, seed=1. */
void migr_workload_defaults(struct migr_workload_cfg *cfg);

/*! Parse "rate=64M,ws=128M,pattern=random,data=text,seed=7" over cfg (keys
 *  optional, any order). -EINVAL with a message naming the bad key/value. */
int migr_workload_parse(const char *spec, struct migr_workload_cfg *cfg);

/*! Format cfg as a spec string (inverse of parse). */
void migr_workload_format(const struct migr_workload_cfg *cfg, char *buf, uint64_t cap);

struct migr_verify_report {
    uint64_t pages_checked;
    uint64_t bad_pages;         /* pages whose content is wrong */
    uint64_t first_bad_page;    /* working-set index of the first bad page */
    char first_bad_why[160];
    uint64_t total_writes;      /* sum of the vCPUs' write counters */
    uint64_t gen_sum;           /* sum of the generation table */
    int ok;                     /* 1 if everything matched */
    uint64_t inflight_pages;    /* (images) pages a vCPU was writing, accepted as old, new or between */
};

struct migr_hv;
/*! Verify the whole guest image of hv. The guest must be quiesced or paused
 *  at a consistent point (hv->ops->quiesce). Returns 0 and fills *rep (rep->ok
 *  says whether the image is intact), or -errno if the image cannot be read
 *  at all (e.g. no workload boot page). */
int migr_workload_verify(struct migr_hv *hv, struct migr_verify_report *rep);

/*! Verify a raw image of guest RAM (ram[0] = guest-physical 0, size bytes;
 *  e.g. QEMU's pmemsave of a stopped guest). The vCPUs may have stopped
 *  anywhere, so a page a vCPU was writing is accepted when each byte holds
 *  its old or its new generation (counted in rep->inflight_pages). Returns 0
 *  and fills *rep, or -EBADMSG if the image holds no workload. Reads only. */
int migr_workload_verify_image(const uint8_t *ram, uint64_t size, struct migr_verify_report *rep);

/*! Guest progress: total page writes so far (sum of the vCPU counters). */
uint64_t migr_workload_progress(struct migr_hv *hv);

#ifdef __cplusplus
}
#endif

#endif
