/* engine: settling doubt after COMMIT (include/migr/settle.h;
 * docs/reliability.md, "Settling doubt").
 *
 * The one rule that makes it safe: a destination answers only with a fate
 * it has already decided and can no longer change. ABORTED is said by a
 * destination that destroyed the guest it built before resuming it (its
 * migr_recv failed), COMMITTED by one that resumed it; a destination still
 * inside the migration does not listen for queries yet, so the source
 * retries until the window ends. The source resumes its copy only on
 * ABORTED for its own id; UNKNOWN (a receiver that never saw the id: another
 * process, a restart) or no answer leaves it in doubt.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/record.h"
#include "migr/settle.h"
#include "engine/abi.h"
#include "engine/engine_impl.h"

#define QUERY_WAIT_MS 3000u   /* one attempt's wait for SETTLED */
#define PEER_WAIT_MS 2000     /* a connection to the server that sends nothing */

const char *migr_fate_name(unsigned fate)
{
    static const char *const names[] = {"NONE", "COMMITTED", "ABORTED", "UNKNOWN"};
    return fate < MIGR_ARRAY_SIZE(names) ? names[fate] : "?";
}

/* SETTLE and SETTLED share a layout: id, a u32 (kind or fate), a reserved u32. */
static void put_settle(uint8_t *b, const uint8_t *id, uint32_t v)
{
    memcpy(b, id, MIGR_MIGRATION_ID_SIZE);
    migr_put_le32(b + 16, v);
    migr_put_le32(b + 20, 0);
}

static int get_settle(const char *what, const uint8_t *meta, uint32_t len, uint8_t *id, uint32_t *v, uint32_t max)
{
    if (len != MIGR_SETTLE_SIZE)
        return migr_errorf(EBADMSG, "%s: meta length %u (expected %u)", what, len, MIGR_SETTLE_SIZE);
    memcpy(id, meta, MIGR_MIGRATION_ID_SIZE);
    *v = migr_get_le32(meta + 16);
    if (migr_get_le32(meta + 20))
        return migr_errorf(EBADMSG, "%s: reserved field not zero", what);
    if (*v > max)
        return migr_errorf(EBADMSG, "%s: value %u out of range 0..%u", what, *v, max);
    return 0;
}

static int wait_readable(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int n;
    do
        n = poll(&pfd, 1, ms);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

/* ---- source ---- */

bool engine_settles(const struct sender *s)
{
    return s->settle && !s->postcopy && !s->t_done && s->settle->url;
}

/* One question on a new connection: the fate, or -errno (try again). */
static int ask(struct sender *s, uint32_t wait_ms)
{
    const struct migr_settle_params *sp = s->settle;
    struct migr_transport *t;
    int err = migr_transport_connect_opts(sp->url, sp->link, &t);
    if (err < 0)
        return err;
    uint8_t meta[MIGR_ERROR_MSG_MAX + 64], id[MIGR_MIGRATION_ID_SIZE];
    struct migr_rec_hdr h;
    uint64_t seq = 0;
    uint32_t fate = 0;
    put_settle(meta, s->id, MIGR_SETTLE_QUERY);
    if ((err = migr_preamble_send(t)) < 0 ||
        (err = migr_rec_send(t, MIGR_REC_SETTLE, meta, MIGR_SETTLE_SIZE, NULL, 0)) < 0)
        goto out;
    if ((err = wait_readable(t->fd, (int)wait_ms)) <= 0) {
        err = err < 0 ? err : migr_errorf(ETIMEDOUT, "settle: no answer from %s within %u ms", sp->url, wait_ms);
        goto out;
    }
    if ((err = migr_rec_recv(t, &seq, &h, meta, sizeof(meta))) < 0)
        goto out;
    if (h.type != MIGR_REC_SETTLED || h.bulk_len) {
        err = migr_errorf(EPROTO, "settle: %s answered %s, not SETTLED", sp->url, migr_rec_type_name(h.type));
        goto out;
    }
    if ((err = get_settle("SETTLED", meta, h.meta_len, id, &fate, MIGR_FATE_UNKNOWN)) < 0)
        goto out;
    if (fate == MIGR_FATE_NONE || (fate != MIGR_FATE_UNKNOWN && memcmp(id, s->id, sizeof(id)))) {
        err = migr_errorf(EPROTO, "settle: %s answered %s for another migration", sp->url, migr_fate_name(fate));
        goto out;
    }
    err = (int)fate;
out:
    migr_transport_close(t);
    return err;
}

#define APPEND(st, ...) snprintf((st)->error + strlen((st)->error), sizeof((st)->error) - strlen((st)->error), \
                                 __VA_ARGS__)

void engine_settle(struct sender *s)
{
    const struct migr_settle_params *sp = s->settle;
    struct migr_stats *st = s->st;
    uint32_t window = sp->window_ms ? sp->window_ms : 20000, retry = sp->retry_ms ? sp->retry_ms : 250;
    uint64_t t0 = migr_now_ns(), end = t0 + (uint64_t)window * 1000000ull;
    char last[300] = "";
    unsigned tries = 0;
    int fate = 0;
    migr_logf(MIGR_LOG_WARN, "send: after COMMIT: %s; asking %s what became of the guest (for up to %u ms)",
              st->error, sp->url, window);
    for (;;) {
        uint64_t now = migr_now_ns();
        if (now >= end)
            break;
        uint64_t left_ms = (end - now) / 1000000ull;
        tries++;
        fate = ask(s, (uint32_t)(left_ms < QUERY_WAIT_MS ? left_ms + 1 : QUERY_WAIT_MS));
        if (fate > 0)
            break;
        snprintf(last, sizeof(last), "%s", migr_last_error());
        if (migr_now_ns() + (uint64_t)retry * 1000000ull >= end)
            break;
        usleep(retry * 1000u);
    }
    double secs = (double)(migr_now_ns() - t0) / 1e9;
    switch (fate) {
    case MIGR_FATE_COMMITTED:
        /* the guest runs there: the migration succeeded after all */
        migr_logf(MIGR_LOG_WARN, "send: settled with %s after %.1f s: COMMITTED, the guest runs there", sp->url,
                  secs);
        s->owner = OWNER_DEST;
        s->t_done = migr_now_ns();
        st->downtime_ns = s->t_done - s->t_pause; /* with the settling: the guest's real pause */
        st->error[0] = 0;
        return;
    case MIGR_FATE_ABORTED:
        s->owner = OWNER_SOURCE_PAUSED; /* the caller resumes it */
        APPEND(st, "; settled with the destination after %.1f s: ABORTED, it never ran the guest and never will",
               secs);
        return;
    case MIGR_FATE_UNKNOWN:
        st->ownership_in_doubt = true;
        APPEND(st, "; ownership in doubt: the receiver at %s does not know this migration (restarted, or "
                   "another one): the guest stays paused on the source; `migr resume` only if it does not run "
                   "at the destination", sp->url);
        return;
    }
    char since[40] = "?";
    struct tm tm;
    time_t lost = (time_t)(s->t_lost / 1000000000ull);
    if (gmtime_r(&lost, &tm))
        strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
    st->ownership_in_doubt = true;
    APPEND(st, "; ownership in doubt: destination unreachable since %s (%u settle attempts in %.1f s, the last: "
               "%s): the guest stays paused on the source; `migr resume` only if it does not run at the "
               "destination", since, tries, secs, last[0] ? last : "none");
}

void engine_settle_refused(struct sender *s)
{
    /* The destination refused COMMIT: it dropped the guest, and waits for
     * our question (it cannot know whether its ERROR arrived). Ask, briefly,
     * so that it need not wait out its window; the answer changes nothing. */
    uint64_t end = migr_now_ns() + 2000000000ull;
    int fate;
    do {
        if ((fate = ask(s, 1000)) > 0)
            break;
        usleep(100000);
    } while (migr_now_ns() < end);
    if (fate > 0)
        migr_logf(MIGR_LOG_INFO, "send: the destination that refused COMMIT confirms: %s", migr_fate_name(fate));
}

int migr_send_settled(struct migr_hv *hv, struct migr_transport *t, const struct migr_send_params *p,
                      const struct migr_settle_params *sp, struct migr_stats *st)
{
    struct migr_settle_params spl = MIGR_SETTLE_PARAMS_INIT;
    if (sp && engine_abi_in(&spl, sizeof(spl), sp, "settle params", "MIGR_SETTLE_PARAMS_INIT") < 0) {
        /* nothing was touched: the guest runs on the source */
        return migr_error_prefix(EINVAL, "send");
    }
    return engine_send(hv, t, p, sp ? &spl : NULL, st);
}

/* ---- destination ---- */

bool migr_settle_needed(const struct migr_recv_fate *f)
{
    return f->known && f->source_settles && f->ready_sent && f->fate != MIGR_FATE_NONE;
}

int migr_settle_await_release(struct migr_transport *t, const struct migr_recv_fate *f, uint32_t timeout_ms)
{
    uint8_t meta[MIGR_SETTLE_SIZE + 8], id[MIGR_MIGRATION_ID_SIZE];
    struct migr_rec_hdr h;
    uint64_t seq = 0;
    uint32_t kind;
    if (wait_readable(t->fd, (int)timeout_ms) <= 0)
        return 0;
    /* EOF or a broken link: the source may be in doubt */
    if (migr_rec_recv(t, &seq, &h, meta, sizeof(meta)) < 0)
        return 0;
    if (h.type != MIGR_REC_SETTLE || h.bulk_len)
        return migr_errorf(EPROTO, "after DONE: %s from the source, expected SETTLE", migr_rec_type_name(h.type));
    int err = get_settle("SETTLE", meta, h.meta_len, id, &kind, MIGR_SETTLE_RELEASED);
    if (err < 0)
        return err;
    return kind == MIGR_SETTLE_RELEASED && memcmp(id, f->id, sizeof(id)) == 0;
}

/* One connection: the preamble, a SETTLE query, our answer. 1 if it asked for f's migration. */
static int answer(struct migr_transport *t, const struct migr_recv_fate *f)
{
    uint8_t meta[MIGR_ERROR_MSG_MAX + 64], id[MIGR_MIGRATION_ID_SIZE];
    struct migr_rec_hdr h;
    uint64_t seq = 0;
    uint32_t kind;
    int err;
    if (wait_readable(t->fd, PEER_WAIT_MS) <= 0 || (err = migr_preamble_recv(t)) < 0 ||
        wait_readable(t->fd, PEER_WAIT_MS) <= 0 || (err = migr_rec_recv(t, &seq, &h, meta, sizeof(meta))) < 0)
        return 0;
    if (h.type != MIGR_REC_SETTLE || h.bulk_len ||
        get_settle("SETTLE", meta, h.meta_len, id, &kind, MIGR_SETTLE_RELEASED) < 0 || kind != MIGR_SETTLE_QUERY) {
        migr_rec_send_error(t, EPROTO, "this receiver only answers settle queries now (SETTLE)");
        return 0;
    }
    bool ours = memcmp(id, f->id, sizeof(id)) == 0;
    put_settle(meta, id, ours ? f->fate : MIGR_FATE_UNKNOWN);
    if (migr_rec_send(t, MIGR_REC_SETTLED, meta, MIGR_SETTLE_SIZE, NULL, 0) < 0)
        return 0;
    migr_logf(MIGR_LOG_INFO, "recv: settle query from %s answered %s", t->peer,
              migr_fate_name(ours ? f->fate : MIGR_FATE_UNKNOWN));
    return ours;
}

int migr_settle_serve(struct migr_listener *l, const struct migr_recv_fate *f, uint32_t window_ms,
                      const volatile bool *stop)
{
    uint64_t end = migr_now_ns() + (uint64_t)window_ms * 1000000ull;
    for (;;) {
        uint64_t now = migr_now_ns();
        if (now >= end || (stop && *stop))
            return 0;
        uint64_t left = (end - now) / 1000000ull;
        struct migr_transport *t;
        int err = migr_listener_accept(l, left < 200 ? (int)left + 1 : 200, &t);
        if (err == -ETIMEDOUT)
            continue;
        if (err < 0)
            return err; /* the listener is gone (shut down: migr stop) */
        int ours = answer(t, f);
        migr_transport_close(t);
        if (ours)
            return 1;
    }
}
