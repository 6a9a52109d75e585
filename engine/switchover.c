/* engine: the switchover, the same for every mode (source side).
 *
 *   HELLO · [the mode's setup and live phases] · pause · [paused phase] ·
 *   STATE · SWITCHOVER · READY · COMMIT · DONE · [owned phase]
 *
 * The guest has exactly one owner, and this file alone decides which side
 * that is (enum engine_owner, engine_impl.h):
 *
 *   SOURCE ──pause──▶ SOURCE_PAUSED ──READY, commit──▶ COMMITTING ──DONE──▶ DEST
 *
 * Until COMMIT the source owns the guest: any failure resumes it here. After
 * COMMIT the destination may run it: the source never runs a second copy —
 * it keeps the guest paused (IN_DOUBT), unless the mode can take it back
 * (cancellable post-copy: TAKEN_BACK, the destination's last checkpoint is
 * loaded here) or the destination answered COMMIT with ERROR (it drops the
 * guest it built: TAKEN_BACK too). engine_switch_fail() is that decision, as one switch.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <time.h>

#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/record.h"
#include "engine/engine_impl.h"
#include "engine/mode.h"
#include "engine/stage.h"

int engine_switch_hello(struct sender *s)
{
    struct migr_hello hello;
    migr_hv_describe(s->hv, &hello);
    snprintf(hello.mode, sizeof(hello.mode), "%s", s->st->mode);
    /* revision 1.6: what we can do, what this stream needs, and its name */
    hello.has_ext = true;
    hello.features = migr_features_supported();
    hello.requires = s->requires = engine_stream_requires(s, hello.nregions);
    if (getrandom(s->id, sizeof(s->id), 0) != (ssize_t)sizeof(s->id)) /* 16 bytes: never short */
        return migr_errorf_errno(errno, "HELLO: a random migration id");
    memcpy(hello.id, s->id, sizeof(s->id));
    uint8_t meta[MIGR_HELLO_META_MAX];
    int len = migr_hello_encode(&hello, meta, sizeof(meta)), err;
    if (len < 0)
        return len;
    if ((err = migr_preamble_send(s->t)) < 0)
        return err;
    return migr_rec_send(s->t, MIGR_REC_HELLO, meta, (uint32_t)len, NULL, 0);
}

void engine_spin_readable(const struct migr_transport *t)
{
    if (!(t->ops->caps & MIGR_TCAP_POLL_DATA))
        return;
    uint64_t until = migr_now_ns() + ENGINE_SWITCH_SPIN_NS;
    struct pollfd pfd = {.fd = t->fd, .events = POLLIN};
    /* poll with no timeout, then give way to any thread that may run: the
     * peer (on a 2-CPU host, maybe this one's CPU) has work to do */
    while (poll(&pfd, 1, 0) == 0 && migr_now_ns() < until)
        sched_yield();
}

int engine_expect(struct sender *s, uint16_t type, struct migr_ack *ack)
{
    uint8_t meta[MIGR_ERROR_MSG_MAX + 64];
    struct migr_rec_hdr h;
    int err = migr_rec_recv(s->t, &s->rx_seq, &h, meta, sizeof(meta));
    if (err < 0)
        return migr_error_prefix(-err, "waiting for %s from %s", migr_rec_type_name(type), s->t->peer);
    if (h.type == MIGR_REC_ERROR) {
        int code;
        char msg[MIGR_ERROR_MSG_MAX + 1];
        if (migr_error_decode(meta, h.meta_len, &code, msg, sizeof(msg)) < 0)
            return migr_errorf(EPROTO, "destination sent a malformed ERROR record");
        s->origin = ORIGIN_PEER_REFUSED;
        return migr_errorf(code > 0 ? code : EPROTO, "destination refused: %s", msg);
    }
    if (h.type != type || h.bulk_len != 0)
        return migr_errorf(EPROTO, "expected %s from the destination, got %s",
                           migr_rec_type_name(type), migr_rec_type_name(h.type));
    return migr_ack_decode(meta, h.meta_len, ack);
}

/* Let the destination take in what is still queued before the guest stops:
 * otherwise it drains those megabytes inside the downtime. The send queue
 * (SIOCOUTQ) is not enough: over TCP it empties once the peer's kernel has
 * the bytes, which may then wait in its receive buffers — 4 channels' worth
 * of them on loopback were 7-15 ms of a 1 GiB guest's downtime. So where the
 * destination knows it (revision 1.7), a ROUND_END with the SYNC flag asks
 * it to answer READY once it has taken in every record before it. */
int engine_sync(struct sender *s)
{
    struct migr_ack ack;
    if (!(s->requires & MIGR_FEAT_ROUND_SYNC) || s->synced_bytes == s->t->bytes_sent)
        return 0; /* unknown to the destination, or nothing sent since the last sync */
    int err = engine_send_round_end(s, 0, 0, MIGR_ROUND_END_SYNC);
    if (err < 0 || (err = engine_expect(s, MIGR_REC_READY, &ack)) < 0)
        return err;
    s->synced_bytes = s->t->bytes_sent;
    return 0;
}

static int drain(struct sender *s)
{
    if (s->requires & MIGR_FEAT_ROUND_SYNC)
        return engine_sync(s);
    uint64_t until = migr_now_ns() + 200000000ull;
    while (migr_transport_outq(s->t) > (64 << 10) && migr_now_ns() < until)
        usleep(200);
    return 0;
}

int engine_switch_pause(struct sender *s)
{
    const struct migr_send_params *p = s->p;
    int err;
    if (p->switchover_hook && (err = p->switchover_hook(p->switchover_arg, "pause")) < 0)
        return err;
    /* The guest is about to stop: the rest goes as fast as allowed. */
    engine_set_rate(s, p->max_bandwidth);
    if (s->mode->pre_pause && (err = s->mode->pre_pause(s)) < 0)
        return err;
    s->st->postcopy.fault_channel = s->fch != NULL;
    if ((err = drain(s)) < 0)
        return err;
    s->t_pause = migr_now_ns(); /* downtime_ns, migr's own measure, counts the pause's kick too */
    if ((err = s->hv->ops->pause(s->hv)) < 0)
        return err;
    /* the guest's stop as QEMU's STOP event stamps it: emitted once its
     * vCPUs have stopped (do_vm_stop: pause_all_vcpus, then the event) */
    s->st->paused_wall_ns = migr_wall_ns();
    engine_switch_step(s->st, 0, s->t_pause);
    s->owner = OWNER_SOURCE_PAUSED;
    return 0;
}

static int send_state(struct sender *s)
{
    uint8_t *blob = NULL;
    size_t blen;
    int err = s->hv->ops->save_state(s->hv, &blob, &blen);
    if (err < 0)
        return err;
    if (blen > MIGR_META_MAX)
        err = migr_errorf(E2BIG, "vCPU state of %zu bytes exceeds the record limit", blen);
    else
        err = migr_rec_send(s->t, MIGR_REC_STATE, blob, (uint32_t)blen, NULL, 0);
    s->st->state_bytes = blen;
    free(blob);
    if (err < 0)
        return err;
    uint8_t meta[64];
    struct migr_switchover so = {.rounds = s->b.round, .total_pages_sent = s->st->pages};
    int mlen = migr_switchover_encode(&so, meta, sizeof(meta));
    return mlen < 0 ? mlen : migr_rec_send(s->t, MIGR_REC_SWITCHOVER, meta, (uint32_t)mlen, NULL, 0);
}

/* A source that settles doubt does not wait for DONE forever: past the
 * bound it is in doubt, and asks (engine/settle.c). */
static int await_done(struct sender *s)
{
    if (!engine_settles(s)) /* post-copy: its own rules (take-back, the lease) */
        return 0;
    uint32_t ms = s->settle->done_timeout_ms ? s->settle->done_timeout_ms
                  : s->p->stall_timeout_ms   ? s->p->stall_timeout_ms
                                             : 10000;
    struct pollfd pfd = {.fd = s->t->fd, .events = POLLIN};
    int n;
    do
        n = poll(&pfd, 1, (int)ms);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return migr_errorf_errno(errno, "waiting for DONE from %s", s->t->peer);
    if (n == 0)
        return migr_errorf(ETIMEDOUT, "no DONE from %s within %u ms of COMMIT", s->t->peer, ms);
    return 0;
}

int engine_switch_commit(struct sender *s)
{
    const struct migr_send_params *p = s->p;
    struct migr_ack ack;
    int err;
    engine_switch_step(s->st, 1, s->t_pause);
    if ((err = send_state(s)) < 0)
        return err;
    engine_switch_step(s->st, 2, s->t_pause);
    engine_spin_readable(s->t);
    if ((err = engine_expect(s, MIGR_REC_READY, &ack)) < 0)
        return err;
    engine_switch_step(s->st, 3, s->t_pause);
    s->st->verified = true;
    if (p->switchover_hook && (err = p->switchover_hook(p->switchover_arg, "commit")) < 0)
        return err;
    /* From here the source gives the guest away (unless a cancel or the
     * stall watchdog came first). */
    if (!engine_cancel_commit(s->cancel))
        return -ECANCELED;
    s->owner = OWNER_COMMITTING;
    if ((err = migr_rec_send(s->t, MIGR_REC_COMMIT, NULL, 0, NULL, 0)) < 0 || (err = await_done(s)) < 0 ||
        (err = engine_expect(s, MIGR_REC_DONE, &ack)) < 0)
        return err;
    s->owner = OWNER_DEST;
    engine_switch_step(s->st, 4, s->t_pause);
    engine_progress(s, "switchover", 0, 0, true); /* after the blackout, not inside it */
    if (engine_settles(s)) { /* the destination need not stay reachable for our question */
        uint8_t rel[MIGR_SETTLE_SIZE] = {0};
        memcpy(rel, s->id, sizeof(s->id));
        migr_put_le32(rel + 16, MIGR_SETTLE_RELEASED);
        if (migr_rec_send(s->t, MIGR_REC_SETTLE, rel, sizeof(rel), NULL, 0) < 0)
            migr_logf(MIGR_LOG_WARN, "send: RELEASED not delivered (%s): the destination keeps answering "
                      "settle queries for a while", migr_last_error());
    }
    if (p->switchover_hook) /* informational: the guest runs on the destination now */
        p->switchover_hook(p->switchover_arg, "done");
    s->t_done = migr_now_ns();
    s->st->downtime_ns = s->t_done - s->t_pause;
    return 0;
}

/* After a send failure: the destination may have said why before closing. */
static void peer_reason(struct sender *s)
{
    struct pollfd pfd = {.fd = s->t->fd, .events = POLLIN};
    char saved[512];
    snprintf(saved, sizeof(saved), "%s", migr_last_error());
    if (poll(&pfd, 1, 300) == 1) {
        struct migr_ack a;
        s->origin = ORIGIN_LINK;
        int err = engine_expect(s, MIGR_REC_READY, &a);
        if (err < 0 && s->origin == ORIGIN_PEER_REFUSED) {
            char why[512];
            snprintf(why, sizeof(why), "%s", migr_last_error());
            migr_errorf(EPROTO, "%s (%s)", why, saved);
            return;
        }
    }
    migr_errorf(EIO, "%s", saved);
}

#define APPEND(st, ...) snprintf((st)->error + strlen((st)->error), sizeof((st)->error) - strlen((st)->error), \
                                 __VA_ARGS__)

/* Where the guest is after the failure err: the one decision, on s->owner. */
static void decide_owner(struct sender *s, int err)
{
    struct migr_stats *st = s->st;
    switch (s->owner) {
    case OWNER_SOURCE:
        st->resumed_on_source = true;
        break;
    case OWNER_SOURCE_PAUSED:
        if (s->hv->ops->resume(s->hv) == 0)
            st->resumed_on_source = true;
        break;
    case OWNER_COMMITTING:
        /* Cancellable post-copy broke between COMMIT and DONE: nothing came
         * back yet, so the state we paused with is the last consistent one.
         * A destination that answered COMMIT with ERROR has dropped its copy
         * (its failure path destroys the guest it built), so ours is the one. */
        s->owner = (s->postcopy && s->cancellable) || s->origin == ORIGIN_PEER_REFUSED ? OWNER_TAKEN_BACK
                                                                                     : OWNER_IN_DOUBT;
        break;
    case OWNER_DEST:
        s->owner = s->took_back ? OWNER_TAKEN_BACK : OWNER_IN_DOUBT;
        break;
    case OWNER_TAKEN_BACK:
    case OWNER_IN_DOUBT:
        break;
    }
    if (s->owner == OWNER_TAKEN_BACK) {
        /* Our RAM and state are the destination's last checkpoint (or the
         * switchover itself); the destination has stopped or stops as soon
         * as it sees the link close. */
        st->cancelled = err == -ECANCELED;
        if (s->hv->ops->resume(s->hv) == 0)
            st->resumed_on_source = true;
        if (s->origin == ORIGIN_PEER_REFUSED && !s->took_back && engine_settles(s))
            engine_settle_refused(s);
        if (s->origin == ORIGIN_PEER_REFUSED && !s->took_back && st->postcopy.epochs == 0)
            APPEND(st, "; the destination refused COMMIT and dropped its copy");
        else
            APPEND(st, "; the guest was taken back from the destination's checkpoint %llu",
                   (unsigned long long)st->postcopy.epochs);
    } else if (s->owner == OWNER_IN_DOUBT && engine_settles(s)) {
        /* Ask the destination what became of it (a new connection). */
        engine_settle(s);
        if (s->owner == OWNER_SOURCE_PAUSED && s->hv->ops->resume(s->hv) == 0)
            st->resumed_on_source = true;
    } else if (s->owner == OWNER_IN_DOUBT) {
        /* The destination may be running the guest: never run a second copy. */
        st->ownership_in_doubt = true;
        if (s->t_done)
            APPEND(st, "; post-copy broke after the switchover: the guest on the destination cannot get its "
                       "missing pages, and the paused copy here is stale since the switchover");
        else
            APPEND(st, "; after COMMIT: the guest stays paused on the source (check the destination; "
                       "`migr resume` only if it is not running there)");
    }
    if (st->resumed_on_source)
        APPEND(st, "; the guest keeps running on the source");
}

int engine_switch_fail(struct sender *s, int err)
{
    struct migr_stats *st = s->st;
    struct migr_transport *t = s->t;
    bool committed = s->owner >= OWNER_COMMITTING;
    /* A cancel or the watchdog broke the link: say that, not what broke. */
    int stopped = s->cancel && !committed ? engine_cancel_reason(s->cancel) : 0;
    if (stopped < 0) {
        err = stopped;
        s->origin = stopped == -ECANCELED ? ORIGIN_CANCELLED : ORIGIN_STALLED;
    } else if (err == -EPIPE || err == -ECONNRESET) {
        s->origin = ORIGIN_LINK;
        if (!committed && migr_last_error()[0])
            peer_reason(s);
    } else if (s->origin == ORIGIN_NONE) {
        s->origin = ORIGIN_LOCAL;
    }
    snprintf(st->error, sizeof(st->error), "%s", migr_last_error()[0] ? migr_last_error() : strerror(-err));
    /* The peer hears why, unless the link is gone or a cancel/the watchdog cut it. */
    if (!committed && (s->origin == ORIGIN_LOCAL || s->origin == ORIGIN_PEER_REFUSED)) {
        char why[sizeof(st->error) + 32];
        snprintf(why, sizeof(why), "source aborts: %s", st->error);
        migr_rec_send_error(t, -err, why);
    }
    migr_dirty_close(s->d);
    s->d = NULL;
    if (committed) {
        t->ops->shutdown(t); /* the destination must not wait for us any longer */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        s->t_lost = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    }
    decide_owner(s, err);
    return s->owner == OWNER_DEST ? 0 : err; /* settled: the destination runs it */
}
