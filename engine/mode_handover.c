/* engine: hand-over — same host, zero copy.
 *
 * The source sends HELLO and a MEMFD record with the guest's memfds
 * (SCM_RIGHTS) while the guest runs; the destination maps the same memory,
 * builds its VM around it without touching it, and says READY; then the
 * usual pause · STATE · SWITCHOVER · READY · COMMIT · DONE. No page is copied
 * and no dirty tracking is needed. Both processes map the same memory, so
 * the ownership rule is the same as ever: the destination never runs or
 * writes it before COMMIT, the source never resumes it after.
 */
#include <errno.h>

#include "migr/common.h"
#include "migr/record.h"
#include "engine/engine_impl.h"
#include "engine/mode.h"

/* Sent while the guest still runs: the destination only maps it. */
static int send_memfds(struct sender *s)
{
    struct migr_memfd_desc m = {.nregions = s->hv->nregions};
    int fds[MIGR_MAX_REGIONS];
    uint8_t meta[8 + MIGR_MAX_REGIONS * 24];
    for (uint32_t i = 0; i < m.nregions; i++) {
        const struct migr_hv_region *g = &s->hv->regions[i];
        if (g->memfd < 0)
            return migr_errorf(ENOTSUP, "handover: region %u has no memfd to pass", i);
        m.r[i].gpa = g->gpa;
        m.r[i].size = g->size;
        m.r[i].off = g->memfd_off;
        fds[i] = g->memfd;
    }
    int len = migr_memfd_encode(&m, meta, sizeof(meta));
    if (len < 0)
        return len;
    int err = migr_rec_send(s->t, MIGR_REC_MEMFD, meta, (uint32_t)len, NULL, 0);
    if (err < 0)
        return err;
    return migr_transport_send_fds(s->t, fds, (int)m.nregions);
}

/* Pause only once the destination has built its VM on our memory: that
 * set-up grows with guest size and must not fall into the pause. */
static int handover_setup(struct sender *s)
{
    struct migr_ack early;
    int err;
    if ((err = send_memfds(s)) < 0 || (err = engine_expect(s, MIGR_REC_READY, &early)) < 0)
        return err;
    s->st->precopy.converged = true; /* nothing to converge: no page is copied */
    return 0;
}

/* Destination: the next record names the source's RAM memfds, which follow
 * as descriptors; the guest is built on that memory without copying it. */
/* The incoming guest over the handed-over memfds (its VMM type's builder). */
static int build_shared(const struct migr_hello *hello, const int *fds, const uint64_t *offs, struct migr_hv **out)
{
    struct migr_vm_layout layout;
    migr_hello_layout(hello, &layout);
    return migr_hv_build(&layout, fds, offs, out);
}

static int handover_recv_setup(struct receiver *r, const struct migr_hello *hello)
{
    struct migr_rec_hdr h;
    struct migr_memfd_desc m;
    int fds[MIGR_MAX_REGIONS];
    uint64_t offs[MIGR_MAX_REGIONS];
    int err = migr_rec_recv(r->t, &r->seq, &h, r->meta, MIGR_META_MAX);
    if (err < 0)
        return err;
    if (h.type != MIGR_REC_MEMFD)
        return migr_errorf(EPROTO, "record %llu (%s): expected MEMFD after a handover HELLO",
                           (unsigned long long)r->seq, migr_rec_type_name(h.type));
    if ((err = migr_memfd_decode(r->meta, h.meta_len, &m)) < 0)
        return err;
    if (m.nregions != hello->nregions)
        return migr_errorf(EBADMSG, "record %llu (MEMFD): %u regions, HELLO announced %u",
                           (unsigned long long)r->seq, m.nregions, hello->nregions);
    for (uint32_t i = 0; i < m.nregions; i++) {
        if (m.r[i].gpa != hello->regions[i].gpa || m.r[i].size != hello->regions[i].size)
            return migr_errorf(EBADMSG, "record %llu (MEMFD): region %u differs from HELLO's layout",
                               (unsigned long long)r->seq, i);
        offs[i] = m.r[i].off;
    }
    if ((err = migr_transport_recv_fds(r->t, fds, (int)m.nregions)) < 0 ||
        (err = build_shared(hello, fds, offs, &r->hv)) < 0)
        return migr_error_prefix(-err, "record %llu (MEMFD)", (unsigned long long)r->seq);
    if ((err = engine_recv_check_state_version(r, hello)) < 0)
        return err;
    return engine_recv_ack(r, MIGR_REC_READY); /* VM built on the shared memory: the source may pause now */
}

const struct engine_mode engine_mode_handover = {
    .mode = MIGR_MODE_HANDOVER,
    .name = "handover",
    .group_ok = true,
    .recv_records = ENGINE_REC_BIT(MIGR_REC_STATE),
    .setup = handover_setup,
    .recv_setup = handover_recv_setup,
    .recv_run = engine_recv_done,
};
