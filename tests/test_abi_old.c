/* The ABI rule of include/migr/engine.h: a caller built against a header one
 * field shorter (a snapshot of each struct minus its last field, passing its
 * own sizeof) still migrates a proc guest, gets the fields it knows, and not
 * a byte of its memory past its short structs is touched (guard bytes); a
 * caller with a struct larger than the library knows is accepted while the
 * unknown bytes are 0 (stats past the library's end come back 0) and refused
 * with -E2BIG otherwise; size 0 is refused with a message naming the
 * initializer. Needs no /dev/kvm. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "migr/engine.h"
#include "migr/workload.h"
#include "migratelib.h"

/* Under ASan the mprotect tracker needs SIGSEGV (ASan keeps it otherwise). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "handle_segv=0"; }

/* struct migr_send_params as a header without its last field declared it. */
struct old_send_params {
    uint32_t size;
    uint32_t downtime_ms, max_rounds;
    enum migr_mode mode;
    const char *tracker;
    bool cancellable;
    uint32_t hybrid_rounds, prepage;
    struct migr_cancel *cancel;
    uint32_t stall_timeout_ms, postcopy_lease_ms;
    migr_progress_fn progress;
    void *progress_arg;
    int (*switchover_hook)(void *arg, const char *point);
    void *switchover_arg;
    uint64_t max_bandwidth;
    uint32_t link_mbps;
    bool adaptive_bw;
    uint64_t min_bandwidth;
    const char *compress;
    int compress_level;
    uint32_t xbzrle_cache_mib;
    /* compress_threads: not in this header */
};
/* The field left out starts at the short struct's end (engine.h: a new
 * field never lands in the previous version's tail padding). */
_Static_assert(sizeof(struct old_send_params) == offsetof(struct migr_send_params, compress_threads),
               "old_send_params is not migr_send_params minus its last field");

struct old_recv_params {
    uint32_t size;
    uint32_t decode_threads, postcopy_timeout_ms;
    /* stall_timeout_ms: not in this header */
};
_Static_assert(sizeof(struct old_recv_params) == offsetof(struct migr_recv_params, stall_timeout_ms),
               "old_recv_params is not migr_recv_params minus its last field");

/* Statistics as an older caller holds them: the current struct minus its
 * last field (the post-copy part). Its fields are a prefix of ours, so they
 * are read from a copy into a zeroed struct migr_stats (view()). */
#define OLD_STATS offsetof(struct migr_stats, postcopy)
#define GUARD 64
#define GUARD_BYTE 0xa5

struct old_caller {
    struct old_send_params p;
    unsigned char guard_p[GUARD];
    _Alignas(8) unsigned char st[OLD_STATS];
    unsigned char guard_st[GUARD];
};

static void guards_intact(const unsigned char *g, const char *what)
{
    for (int i = 0; i < GUARD; i++)
        if (g[i] != GUARD_BYTE)
            T_FAIL("%s: guard byte %d past the caller's struct was written (0x%02x)", what, i, g[i]);
}

static struct migr_stats view(const unsigned char *old)
{
    struct migr_stats v;
    memset(&v, 0, sizeof(v));
    memcpy(&v, old, OLD_STATS);
    return v;
}

static struct migr_hv *make(void)
{
    return t_guest("proc", 64ull << 20, 1, "rate=32M,pattern=random,data=text", 100);
}

/* A receiver built against the short header. */
struct old_rx {
    struct migr_listener *l;
    struct old_recv_params p;
    unsigned char guard_p[GUARD];
    _Alignas(8) unsigned char st[OLD_STATS];
    unsigned char guard_st[GUARD];
    struct migr_hv *hv;
    int rc;
};

static void *old_rx_main(void *arg)
{
    struct old_rx *x = arg;
    struct migr_transport *t;
    if ((x->rc = migr_listener_accept(x->l, 10000, &t)) < 0)
        return NULL;
    x->rc = migr_recv_ex(t, (const struct migr_recv_params *)&x->p, &x->hv, (struct migr_stats *)x->st);
    migr_transport_close(t);
    return NULL;
}

static int progress_calls;
static void on_progress(void *arg, const struct migr_progress *pr)
{
    T_ASSERT(pr->size == sizeof(struct migr_progress) && MIGR_HAS_FIELD(pr, codec_bytes));
    progress_calls++;
}

static void old_caller_migrates(void)
{
    struct migr_hv *src = make();
    static struct old_caller c;
    struct old_rx x = {0};
    memset(&c, GUARD_BYTE, sizeof(c));
    memset(&x, GUARD_BYTE, sizeof(x));
    x.l = NULL;
    x.hv = NULL;
    /* what migr_send_params_init of the short header would have set */
    c.p = (struct old_send_params){.size = sizeof(c.p), .downtime_ms = 300, .max_rounds = 30,
                                   .mode = MIGR_MODE_PRECOPY, .tracker = "auto", .cancellable = true,
                                   .hybrid_rounds = 1, .prepage = 8, .stall_timeout_ms = 10000,
                                   .postcopy_lease_ms = 10000, .min_bandwidth = 64ull << 20,
                                   .compress = "none", /* not the default: must reach the engine */
                                   .xbzrle_cache_mib = 64, .progress = on_progress};
    memset(c.st, 0, sizeof(c.st));
    uint32_t n = OLD_STATS;
    memcpy(c.st, &n, sizeof(n));
    x.p = (struct old_recv_params){.size = sizeof(x.p), .decode_threads = 1};
    memset(x.st, 0, sizeof(x.st));
    memcpy(x.st, &n, sizeof(n));

    T_OK(migr_listener_open("tcp:127.0.0.1:0", &x.l));
    pthread_t th;
    T_ASSERT(pthread_create(&th, NULL, old_rx_main, &x) == 0);
    struct migr_transport *t;
    T_OK(migr_transport_connect(x.l->bound, &t));
    int rc = migr_send(src, t, (const struct migr_send_params *)&c.p, (struct migr_stats *)c.st);
    migr_transport_close(t);
    pthread_join(th, NULL);
    migr_listener_close(x.l);
    struct migr_stats v = view(c.st), rv = view(x.st);
    const struct migr_stats *st = &v, *rst = &rv;
    if (rc < 0)
        T_FAIL("send with the short structs: %s", st->error);
    T_OK(x.rc);
    guards_intact(c.guard_p, "send params");
    guards_intact(c.guard_st, "send stats");
    guards_intact(x.guard_p, "recv params");
    guards_intact(x.guard_st, "recv stats");
    T_EQ(st->size, OLD_STATS); /* filled up to the caller's size */
    T_ASSERT(st->verified && st->precopy.rounds >= 2 && st->pages >= src->ram_pages);
    T_ASSERT(strcmp(st->compress, "none") == 0); /* a field near the short struct's end arrived */
    T_ASSERT(progress_calls > 0);
    T_EQ(rst->size, OLD_STATS);
    T_ASSERT(rst->pages > 0 && rst->error[0] == 0);

    /* migr_stats_json reads no more than the caller's size (ASan: heap bounds) */
    unsigned char *exact = malloc(OLD_STATS);
    T_ASSERT(exact);
    memcpy(exact, c.st, OLD_STATS);
    char js[8192];
    T_ASSERT(migr_stats_json((const struct migr_stats *)exact, js, sizeof(js)) > 0);
    T_ASSERT(strstr(js, "\"verified\":true") && strstr(js, "\"prefaulted_pages\":0"));
    free(exact);

    migr_hv_destroy(src);
    t_verify(x.hv, "the destination of a short-header caller");
    migr_hv_destroy(x.hv);
    printf("short structs (%zu/%zu params, %zu stats bytes): migrated, verified, guards intact\n",
           sizeof(struct old_send_params), sizeof(struct migr_send_params), (size_t)OLD_STATS);
}

/* A header newer than the library: one more field in each struct. */
struct new_send_params {
    struct migr_send_params p;
    uint64_t future;
};
struct new_stats {
    struct migr_stats s;
    uint64_t future[4];
};

static void newer_caller(void)
{
    struct migr_hv *src = make();
    struct t_rx x;
    struct new_send_params np;
    struct new_stats ns;
    migr_send_params_init(&np.p);
    np.p.size = sizeof(np);
    np.future = 0;
    memset(&ns, GUARD_BYTE, sizeof(ns));
    ns.s.size = sizeof(ns);

    /* an option this library lacks is set: refused, nothing happens */
    np.future = 1;
    struct migr_transport *t;
    t_rx_start(&x, "tcp:127.0.0.1:0");
    T_OK(migr_transport_connect(x.l->bound, &t));
    int rc = migr_send(src, t, &np.p, &ns.s);
    T_EQ(rc, -E2BIG);
    T_ASSERT(strstr(ns.s.error, "send params: size") && strstr(ns.s.error, "the guest keeps running"));
    char want[64];
    snprintf(want, sizeof(want), "knows %zu bytes and byte %zu is set", sizeof(np.p), sizeof(np.p));
    T_ASSERT(strstr(migr_last_error(), want));
    T_ASSERT(ns.s.resumed_on_source && !src->paused);
    T_EQ(ns.s.size, sizeof(struct migr_stats));
    for (int i = 0; i < 4; i++)
        T_EQ(ns.future[i], 0); /* past what the library knows: zeroed, not left as garbage */
    migr_transport_close(t); /* the receiver sees the link end before HELLO */
    t_rx_join(&x);
    T_ASSERT(x.rc < 0 && x.hv == NULL);

    /* the same caller with the new option unset: migrates */
    np.future = 0;
    memset(&ns, GUARD_BYTE, sizeof(ns));
    ns.s.size = sizeof(ns);
    if (t_send(src, "tcp:127.0.0.1:0", &np.p, &ns.s, &x) < 0)
        T_FAIL("send with a larger params struct: %s", ns.s.error);
    T_OK(x.rc);
    T_ASSERT(ns.s.verified && ns.s.size == sizeof(struct migr_stats));
    for (int i = 0; i < 4; i++)
        T_EQ(ns.future[i], 0);
    migr_hv_destroy(src);
    migr_hv_destroy(x.hv);
    printf("larger structs: unknown option set -> -E2BIG, unset -> migrated; stats past the library's end zeroed\n");
}

static void unset_size(void)
{
    struct migr_hv *src = make();
    struct migr_send_params p;
    struct migr_stats st = MIGR_STATS_INIT;
    struct migr_transport *a, *b;
    int sv[2];
    T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    T_OK(migr_transport_from_fd(sv[0], "unix", NULL, &a));
    T_OK(migr_transport_from_fd(sv[1], "unix", NULL, &b));

    migr_send_params_init(&p);
    p.size = 0; /* a struct filled by hand, without migr_send_params_init */
    T_EQ(migr_send(src, a, &p, &st), -EINVAL);
    T_ASSERT(strstr(st.error, "send params: size 0 (use migr_send_params_init)"));
    T_ASSERT(st.resumed_on_source && !src->paused);
    T_EQ(a->bytes_sent, 0); /* refused before HELLO */

    migr_send_params_init(&p);
    struct migr_stats bad;
    memset(&bad, 0, sizeof(bad));
    T_EQ(migr_send(src, a, &p, &bad), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "send stats: size 0 (use MIGR_STATS_INIT)"));
    bad.size = 3;
    T_EQ(migr_send(src, a, &p, &bad), -EINVAL);
    T_ASSERT(strstr(migr_last_error(), "size 3 is no struct's size"));
    T_EQ(a->bytes_sent, 0);

    struct migr_recv_params rp = {0};
    struct migr_hv *hv = NULL;
    st = (struct migr_stats)MIGR_STATS_INIT;
    T_EQ(migr_recv_ex(b, &rp, &hv, &st), -EINVAL);
    T_ASSERT(strstr(st.error, "recv params: size 0 (use MIGR_RECV_PARAMS_INIT)") && hv == NULL);
    char js[64];
    T_EQ(migr_stats_json(&bad, js, sizeof(js)), -EINVAL);
    T_ASSERT(js[0] == 0);
    migr_transport_close(a);
    migr_transport_close(b);
    migr_hv_destroy(src);
    printf("size 0 / impossible sizes refused with the initializer named\n");
}

int main(void)
{
    unset_size();
    old_caller_migrates();
    newer_caller();
    return 0;
}
