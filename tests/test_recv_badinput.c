/* migr_recv() against crafted streams: every malformed or incomplete stream
 * is refused with a message naming the record and the field, no guest is
 * left behind (*out stays NULL, no fd or thread leaks), and the receiver
 * sends an ERROR record back unless the connection itself is gone.
 *
 * Each case builds its whole source stream in memory (with migr_preamble_send
 * / migr_rec_send over an in-memory transport, or raw bytes where the
 * encoders would refuse), then a writer thread plays it into one end of a
 * socketpair while migr_recv() reads the other end, and collects what the
 * receiver sends back. Cases that fail before a VM exists run without KVM;
 * the rest are skipped when /dev/kvm is unusable. All cases run; each
 * failure is printed, and the exit status is 1 if any failed. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migr/crc32c.h"
#include "migr/engine.h"
#include "migr/format.h"
#include "migr/hv.h"
#include "migr/record.h"
#include "migr/transport.h"
#include "migr/workload.h"
#include "testlib.h"

#define GUEST_MEM (16u << 20)
#define GUEST_PAGES (GUEST_MEM / MIGR_PAGE_SIZE)   /* 4096: pfn 0 .. 0xfff */

static int failures;

#define CHECK(cond, ...) do { if (!(cond)) { \
        fprintf(stderr, "%s:%d: FAIL [%s]: ", __FILE__, __LINE__, cur_case); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); failures++; } } while (0)

static const char *cur_case = "";

/* ---- an in-memory transport that collects what is sent ---- */

struct membuf {
    struct migr_transport t;   /* first: the record functions see this */
    uint8_t *p;
    size_t len, cap;
};

static int mem_sendv(struct migr_transport *t, const struct iovec *iov, int n)
{
    struct membuf *b = (struct membuf *)t;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len == 0)
            continue;   /* an empty meta part may have a NULL base */
        if (b->len + iov[i].iov_len > b->cap) {
            size_t cap = MIGR_MAX(b->cap * 2, b->len + iov[i].iov_len + 4096);
            uint8_t *p = realloc(b->p, cap);
            if (!p)
                return -ENOMEM;
            b->p = p;
            b->cap = cap;
        }
        memcpy(b->p + b->len, iov[i].iov_base, iov[i].iov_len);
        b->len += iov[i].iov_len;
        t->bytes_sent += iov[i].iov_len;
    }
    return 0;
}

static int mem_recvv(struct migr_transport *t, const struct iovec *iov, int n)
{
    return migr_errorf(ENOTSUP, "memory transport is write-only");
}
static void mem_noop(struct migr_transport *t) {}

static const struct migr_transport_ops mem_ops = {
    .name = "mem", .sendv = mem_sendv, .recvv = mem_recvv, .shutdown = mem_noop, .close = mem_noop,
};

static void sb_init(struct membuf *b)
{
    memset(b, 0, sizeof(*b));
    b->t.ops = &mem_ops;
    b->t.fd = -1;
    snprintf(b->t.peer, sizeof(b->t.peer), "mem:");
}

static void sb_free(struct membuf *b) { free(b->p); }

static void sb_raw(struct membuf *b, const void *p, size_t len)
{
    struct iovec iov = {(void *)p, len};
    T_OK(mem_sendv(&b->t, &iov, 1));
}

static void sb_preamble(struct membuf *b) { T_OK(migr_preamble_send(&b->t)); }

/* Append one record; returns the offset where it starts in the stream. */
static size_t sb_rec(struct membuf *b, uint16_t type, const void *meta, uint32_t meta_len,
                     const struct iovec *bulk, int nbulk)
{
    size_t at = b->len;
    T_OK(migr_rec_send(&b->t, type, meta, meta_len, bulk, nbulk));
    return at;
}

struct hello_spec {
    uint32_t page_size, nvcpus, nregions, state_version;
    const char *backend, *mode;
    struct migr_region_desc r[2];
};

/* HELLO meta written field by field: the encoder would refuse some of these. */
static size_t sb_hello(struct membuf *b, const struct hello_spec *h)
{
    uint8_t meta[MIGR_HELLO_FIXED + 2 * 16];
    uint32_t n = h->nregions ? h->nregions : 1;
    memset(meta, 0, sizeof(meta));
    migr_put_le32(meta, h->page_size);
    migr_put_le32(meta + 4, h->nvcpus);
    migr_put_le32(meta + 8, h->nregions);
    migr_put_le32(meta + 12, h->state_version);
    memcpy(meta + 16, h->backend, strlen(h->backend));
    memcpy(meta + 32, h->mode, strlen(h->mode));
    for (uint32_t i = 0; i < n && i < 2; i++) {
        migr_put_le64(meta + MIGR_HELLO_FIXED + 16 * i, h->r[i].gpa);
        migr_put_le64(meta + MIGR_HELLO_FIXED + 16 * i + 8, h->r[i].size);
    }
    return sb_rec(b, MIGR_REC_HELLO, meta, MIGR_HELLO_FIXED + 16 * MIGR_MIN(n, 2u), NULL, 0);
}

/* The layout of the test guest: one region at gpa 0, 16 MiB, 1 vCPU. */
static struct hello_spec good_hello(void)
{
    return (struct hello_spec){
        .page_size = MIGR_PAGE_SIZE, .nvcpus = 1, .nregions = 1, .state_version = 1,
        .backend = "kvm", .mode = "precopy", .r = {{0, GUEST_MEM}},
    };
}

static size_t sb_pages(struct membuf *b, uint32_t round, const struct migr_page_entry *e, uint32_t n,
                       const struct iovec *bulk, int nbulk)
{
    static uint8_t meta[MIGR_PAGES_FIXED + MIGR_BATCH_MAX * MIGR_PAGE_ENTRY_SIZE];
    int len = migr_pages_encode(round, e, n, meta, sizeof(meta));
    T_OK(len);
    return sb_rec(b, MIGR_REC_PAGES, meta, (uint32_t)len, bulk, nbulk);
}

/* A PAGES record with one ZERO run. */
static size_t sb_zero(struct membuf *b, uint64_t pfn, uint32_t n)
{
    struct migr_page_entry e = {.pfn = pfn, .enc = MIGR_ENC_ZERO, .len = n};
    return sb_pages(b, 1, &e, 1, NULL, 0);
}

static size_t sb_round_end(struct membuf *b, uint32_t round, uint64_t pages)
{
    uint8_t meta[MIGR_ROUND_END_SIZE];
    struct migr_round_end re = {.round = round, .pages_sent = pages};
    T_OK(migr_round_end_encode(&re, meta, sizeof(meta)));
    return sb_rec(b, MIGR_REC_ROUND_END, meta, sizeof(meta), NULL, 0);
}

static size_t sb_state(struct membuf *b, const uint8_t *blob, size_t len)
{
    return sb_rec(b, MIGR_REC_STATE, blob, (uint32_t)len, NULL, 0);
}

static size_t sb_switchover(struct membuf *b, uint32_t rounds, uint64_t pages)
{
    uint8_t meta[MIGR_SWITCHOVER_SIZE];
    struct migr_switchover so = {.rounds = rounds, .total_pages_sent = pages};
    T_OK(migr_switchover_encode(&so, meta, sizeof(meta)));
    return sb_rec(b, MIGR_REC_SWITCHOVER, meta, sizeof(meta), NULL, 0);
}

static size_t sb_error(struct membuf *b, int code, const char *msg)
{
    uint8_t meta[8 + MIGR_ERROR_MSG_MAX];
    int len = migr_error_encode(code, msg, meta, sizeof(meta));
    T_OK(len);
    return sb_rec(b, MIGR_REC_ERROR, meta, (uint32_t)len, NULL, 0);
}

/* ---- the writer side of the socketpair ---- */

struct writer {
    struct migr_transport *t;
    const uint8_t *p;
    size_t len;
    bool handshake;           /* answer READY with COMMIT */
    /* results */
    int nrecs;
    uint16_t types[8];
    char error_msg[MIGR_ERROR_MSG_MAX + 1];
    char why_stopped[300];
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    /* The receiver may refuse early and close: a failed send is expected. */
    (void)migr_transport_send(w->t, w->p, w->len);
    if (!w->handshake)
        shutdown(w->t->fd, SHUT_WR);
    uint8_t *meta = malloc(MIGR_META_MAX);
    uint64_t seq = 0;
    for (;;) {
        struct migr_rec_hdr h;
        if (!meta || migr_rec_recv(w->t, &seq, &h, meta, MIGR_META_MAX) < 0) {
            snprintf(w->why_stopped, sizeof(w->why_stopped), "%s", migr_last_error());
            break;
        }
        if (w->nrecs < 8)
            w->types[w->nrecs] = h.type;
        w->nrecs++;
        if (h.type == MIGR_REC_ERROR) {
            int code;
            if (migr_error_decode(meta, h.meta_len, &code, w->error_msg, sizeof(w->error_msg)) < 0)
                snprintf(w->error_msg, sizeof(w->error_msg), "(malformed ERROR: %s)", migr_last_error());
        } else if (h.type == MIGR_REC_READY && w->handshake) {
            if (migr_rec_send(w->t, MIGR_REC_COMMIT, NULL, 0, NULL, 0) < 0)
                break;
            shutdown(w->t->fd, SHUT_WR);
        }
    }
    free(meta);
    return NULL;
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

enum { BACK_NONE, BACK_ERROR };

struct expect {
    const char *name;
    const char *must[4];      /* substrings the receiver's message must contain */
    int record;               /* if the message says "record N (", N must be this; 0: no rule */
    int back;                 /* BACK_ERROR: an ERROR record must come back; BACK_NONE: nothing */
};

/* Case-insensitive substring test (messages say "state:" or "STATE"). */
static bool has(const char *hay, const char *needle)
{
    return strcasestr(hay, needle) != NULL;
}

/* The record number named in msg ("record 7 (PAGES)"), or -1. */
static long named_record(const char *msg)
{
    const char *p = strstr(msg, "record ");
    while (p) {
        char *end;
        long n = strtol(p + 7, &end, 10);
        if (end != p + 7 && (*end == ' ' || *end == ':'))
            return n;
        p = strstr(p + 7, "record ");
    }
    return -1;
}

static struct migr_stats last_stats;   /* of the last successful migr_recv() */

/* Play stream into migr_recv() and check the outcome. Returns the guest when
 * want_success (the caller checks, destroys it, and counts fds and threads). */
static struct migr_hv *play(const struct expect *x, const struct membuf *stream, bool want_success)
{
    cur_case = x->name;
    int fds0 = count_dir("/proc/self/fd"), thr0 = count_dir("/proc/self/task");
    int sv[2];
    T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    struct migr_transport *rt, *wt;
    T_OK(migr_transport_from_fd(sv[0], "unix", "socketpair:src", &rt));
    T_OK(migr_transport_from_fd(sv[1], "unix", "socketpair:dst", &wt));
    struct writer w = {.t = wt, .p = stream->p, .len = stream->len, .handshake = want_success};
    pthread_t th;
    T_ASSERT(pthread_create(&th, NULL, writer_main, &w) == 0);

    struct migr_hv *out = NULL;
    struct migr_stats st = MIGR_STATS_INIT;
    migr_clear_error();
    int rc = migr_recv(rt, &out, &st);
    char last[sizeof(st.error)];
    snprintf(last, sizeof(last), "%s", migr_last_error());
    migr_transport_close(rt);
    T_ASSERT(pthread_join(th, NULL) == 0);
    migr_transport_close(wt);

    if (want_success) {
        CHECK(rc == 0, "migr_recv returned %d: %s", rc, st.error);
        CHECK(rc != 0 || out != NULL, "success but no guest");
        CHECK(w.nrecs == 2 && w.types[0] == MIGR_REC_READY && w.types[1] == MIGR_REC_DONE,
              "expected READY then DONE back, got %d records (first %s)", w.nrecs,
              w.nrecs ? migr_rec_type_name(w.types[0]) : "-");
        last_stats = st;
        if (rc == 0 && out)
            return out;
        migr_hv_destroy(out);
        return NULL;
    }

    CHECK(rc < 0, "migr_recv accepted a bad stream (rc %d)", rc);
    CHECK(out == NULL, "a guest was returned for a refused stream");
    migr_hv_destroy(out);
    CHECK(st.error[0] != 0, "st->error is empty");
    CHECK(strcmp(last, st.error) == 0, "migr_last_error() '%s' differs from st->error '%s'", last, st.error);
    for (int i = 0; i < 4 && x->must[i]; i++)
        CHECK(has(st.error, x->must[i]), "message does not name '%s': %s", x->must[i], st.error);
    long rec = named_record(st.error);
    if (x->record && rec >= 0)
        CHECK(rec == x->record, "message names record %ld, the offending record is %d "
              "(records are numbered from 1, docs/format.md): %s", rec, x->record, st.error);
    if (x->back == BACK_ERROR) {
        CHECK(w.nrecs == 1 && w.types[0] == MIGR_REC_ERROR,
              "expected one ERROR record back, got %d (%s); writer stopped: %s", w.nrecs,
              w.nrecs ? migr_rec_type_name(w.types[0]) : "-", w.why_stopped);
        CHECK(w.nrecs == 0 || has(w.error_msg, x->must[0]),
              "the ERROR record sent back does not say '%s': %s", x->must[0], w.error_msg);
    } else {
        CHECK(w.nrecs == 0, "expected nothing back, got %d records (first %s: %s)", w.nrecs,
              w.nrecs ? migr_rec_type_name(w.types[0]) : "-", w.error_msg);
    }
    int fds1 = count_dir("/proc/self/fd"), thr1 = count_dir("/proc/self/task");
    /* a joined thread may still be listed for a moment (pthread_join returns
     * at its futex wake, before the kernel has removed the task): a thread
     * that was not joined stays, so wait a little before calling it a leak */
    for (int k = 0; k < 50 && thr1 != thr0; k++) {
        usleep(2000);
        thr1 = count_dir("/proc/self/task");
    }
    CHECK(fds1 == fds0, "open fds %d before, %d after (leak)", fds0, fds1);
    CHECK(thr1 == thr0, "threads %d before, %d after (a vCPU or the writer thread was not joined)", thr0, thr1);
    if (getenv("MIGR_TEST_VERBOSE"))
        fprintf(stderr, "%-34s %s\n", x->name, st.error);
    return NULL;
}

static void refuse(const struct expect *x, const struct membuf *stream)
{
    play(x, stream, false);
}

/* ---- cases that fail before a VM exists (no KVM needed) ---- */

static void cases_without_vm(void)
{
    struct membuf b;
    uint8_t pre[MIGR_PREAMBLE_SIZE];
    {
        struct membuf p;
        sb_init(&p);
        sb_preamble(&p);
        memcpy(pre, p.p, sizeof(pre));
        sb_free(&p);
    }

    sb_init(&b);
    unsigned long long rng = 42;
    for (int i = 0; i < 64; i++) {
        uint8_t c = (uint8_t)t_rand(&rng);
        sb_raw(&b, &c, 1);
    }
    b.p[0] = 'G';   /* never the magic by accident */
    refuse(&(struct expect){"garbage bytes", {"not a migr stream", "magic"}, 0, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    refuse(&(struct expect){"empty stream", {"preamble", "0 of 16"}, 0, BACK_NONE}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_raw(&b, pre, 10);
    refuse(&(struct expect){"truncated preamble", {"preamble", "10 of 16"}, 0, BACK_NONE}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_raw(&b, pre, sizeof(pre));
    b.p[1] = 'X';
    refuse(&(struct expect){"wrong magic", {"bad magic"}, 0, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_raw(&b, pre, sizeof(pre));
    b.p[8] = 2;
    refuse(&(struct expect){"wrong version", {"version 2", "reads 1"}, 0, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_raw(&b, pre, sizeof(pre));
    b.p[10] = 1;
    refuse(&(struct expect){"preamble flags", {"preamble flags"}, 0, BACK_ERROR}, &b);
    sb_free(&b);

    struct hello_spec h;

    sb_init(&b);
    sb_preamble(&b);
    h = good_hello();
    h.page_size = 8192;
    sb_hello(&b, &h);
    refuse(&(struct expect){"HELLO page size 8192", {"HELLO", "page size 8192"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_preamble(&b);
    h = good_hello();
    h.nvcpus = 0;
    sb_hello(&b, &h);
    refuse(&(struct expect){"HELLO nvcpus 0", {"HELLO", "nvcpus 0"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_preamble(&b);
    h = good_hello();
    h.nregions = 2;
    h.r[0] = (struct migr_region_desc){0, 8u << 20};
    h.r[1] = (struct migr_region_desc){16u << 20, 8u << 20};
    sb_hello(&b, &h);
    refuse(&(struct expect){"HELLO 2 regions (kvm refuses)", {"HELLO", "2 regions"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_preamble(&b);
    h = good_hello();
    h.r[0].gpa = 1u << 20;
    sb_hello(&b, &h);
    refuse(&(struct expect){"HELLO region not at gpa 0", {"HELLO", "gpa 0", "0x100000"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_preamble(&b);
    h = good_hello();
    h.r[0].size = 9u << 20;
    sb_hello(&b, &h);
    refuse(&(struct expect){"HELLO 9 MiB RAM (kvm refuses)", {"HELLO", "memory", "2 MiB"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_preamble(&b);
    h = good_hello();
    h.backend = "xen";
    sb_hello(&b, &h);
    refuse(&(struct expect){"HELLO backend xen", {"HELLO", "backend", "xen"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_preamble(&b);
    h = good_hello();
    h.mode = "teleport";
    sb_hello(&b, &h);
    refuse(&(struct expect){"HELLO mode teleport", {"HELLO", "mode", "teleport"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_preamble(&b);
    sb_zero(&b, 0, GUEST_PAGES);
    refuse(&(struct expect){"first record not HELLO", {"PAGES", "HELLO"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_preamble(&b);
    {
        uint8_t hdr[MIGR_REC_HDR_SIZE + 4] = {0};
        migr_put_le16(hdr, 77);
        migr_put_le32(hdr + MIGR_REC_HDR_SIZE, migr_crc32c(0, hdr, MIGR_REC_HDR_SIZE));
        sb_raw(&b, hdr, sizeof(hdr));
    }
    refuse(&(struct expect){"unknown record type 77", {"record 1", "type 77"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_preamble(&b);
    h = good_hello();
    size_t at = sb_hello(&b, &h);
    b.p[at + MIGR_REC_HDR_SIZE + 4] ^= 0x01;   /* nvcpus 1 -> 0 on the wire, CRC now wrong */
    refuse(&(struct expect){"HELLO CRC corrupted", {"record 1 (HELLO)", "CRC"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_init(&b);
    sb_preamble(&b);
    sb_error(&b, ECANCELED, "operator said no");
    refuse(&(struct expect){"ERROR before HELLO", {"the source aborted", "operator said no"}, 0, BACK_NONE}, &b);
    sb_free(&b);
}

/* ---- cases that need a VM on the receiving side ---- */

static uint8_t *blob;      /* a real kvm STATE blob of a paused 1-vCPU 16 MiB guest */
static size_t blob_len;

/* preamble + good HELLO */
static void sb_start(struct membuf *b)
{
    sb_init(b);
    sb_preamble(b);
    struct hello_spec h = good_hello();
    sb_hello(b, &h);
}

static void cases_with_vm(struct migr_hv *src)
{
    struct membuf b;
    struct hello_spec h;
    static uint8_t page[MIGR_PAGE_SIZE];
    memset(page, 0xa5, sizeof(page));
    struct iovec one = {page, sizeof(page)};

    sb_init(&b);
    sb_preamble(&b);
    h = good_hello();
    h.state_version = 2;
    sb_hello(&b, &h);
    refuse(&(struct expect){"HELLO state_version 2", {"HELLO", "state version 2"}, 1, BACK_ERROR}, &b);
    sb_free(&b);

    sb_start(&b);
    h = good_hello();
    sb_hello(&b, &h);
    refuse(&(struct expect){"second HELLO", {"HELLO"}, 2, BACK_ERROR}, &b);
    sb_free(&b);

    sb_start(&b);
    {
        struct migr_page_entry e[2] = {
            {.pfn = 0, .enc = MIGR_ENC_ZERO, .len = 4},
            {.pfn = GUEST_PAGES, .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE,
             .crc = migr_crc32c(0, page, sizeof(page))},
        };
        sb_pages(&b, 1, e, 2, &one, 1);
    }
    refuse(&(struct expect){"PAGES pfn outside RAM", {"PAGES", "entry 1", "0x1000", "outside"}, 2, BACK_ERROR}, &b);
    sb_free(&b);

    sb_start(&b);
    sb_zero(&b, GUEST_PAGES - 16, 32);
    refuse(&(struct expect){"ZERO run past the end of RAM", {"PAGES", "entry 0", "run of 32"}, 2, BACK_ERROR}, &b);
    sb_free(&b);

    sb_start(&b);
    {
        uint8_t meta[MIGR_PAGES_FIXED + MIGR_PAGE_ENTRY_SIZE];
        struct migr_page_entry e = {.pfn = 0, .enc = MIGR_ENC_ZERO, .len = 1};
        T_OK(migr_pages_encode(1, &e, 1, meta, sizeof(meta)));
        meta[MIGR_PAGES_FIXED + 8] = 8;   /* enc 8 */
        sb_rec(&b, MIGR_REC_PAGES, meta, sizeof(meta), NULL, 0);
    }
    refuse(&(struct expect){"PAGES unknown encoding", {"PAGES", "entry 0", "encoding 8"}, 2, BACK_ERROR}, &b);
    sb_free(&b);

    /* page 8 arrives torn and is never resent, then STATE + SWITCHOVER */
    sb_start(&b);
    {
        struct migr_page_entry e[3] = {
            {.pfn = 0, .enc = MIGR_ENC_ZERO, .len = 8},
            {.pfn = 8, .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE, .crc = migr_crc32c(0, page, sizeof(page)) ^ 1},
            {.pfn = 9, .enc = MIGR_ENC_ZERO, .len = GUEST_PAGES - 9},
        };
        sb_pages(&b, 1, e, 3, &one, 1);
    }
    sb_round_end(&b, 1, GUEST_PAGES);
    sb_state(&b, blob, blob_len);
    sb_switchover(&b, 1, GUEST_PAGES);
    refuse(&(struct expect){"bad CRC never resent", {"SWITCHOVER", "page 0x8 ", "CRC", "not resent"}, 5, BACK_ERROR}, &b);
    sb_free(&b);

    sb_start(&b);
    sb_zero(&b, 0, 0x123);
    sb_zero(&b, 0x124, GUEST_PAGES - 0x124);
    sb_round_end(&b, 1, GUEST_PAGES - 1);
    sb_state(&b, blob, blob_len);
    sb_switchover(&b, 1, GUEST_PAGES - 1);
    refuse(&(struct expect){"a page never sent", {"SWITCHOVER", "page 0x123 ", "was never received"}, 6, BACK_ERROR}, &b);
    sb_free(&b);

    sb_start(&b);
    sb_zero(&b, 0, GUEST_PAGES);
    sb_round_end(&b, 1, GUEST_PAGES);
    sb_switchover(&b, 1, GUEST_PAGES);
    refuse(&(struct expect){"SWITCHOVER without STATE", {"SWITCHOVER", "STATE"}, 4, BACK_ERROR}, &b);
    sb_free(&b);

    uint8_t *bad = malloc(blob_len);
    T_ASSERT(bad);
    memcpy(bad, blob, blob_len);
    bad[0] ^= 0xff;
    sb_start(&b);
    sb_zero(&b, 0, GUEST_PAGES);
    sb_state(&b, bad, blob_len);
    sb_switchover(&b, 1, GUEST_PAGES);
    refuse(&(struct expect){"STATE blob bad magic", {"state", "magic"}, 4, BACK_ERROR}, &b);
    sb_free(&b);

    sb_start(&b);
    sb_zero(&b, 0, GUEST_PAGES);
    sb_state(&b, blob, blob_len - 64);
    sb_switchover(&b, 1, GUEST_PAGES);
    refuse(&(struct expect){"STATE blob truncated", {"state", "vCPU 0"}, 4, BACK_ERROR}, &b);
    sb_free(&b);

    memcpy(bad, blob, blob_len);
    migr_put_le32(bad + 12, 2);   /* the blob's vCPU count */
    sb_start(&b);
    sb_zero(&b, 0, GUEST_PAGES);
    sb_state(&b, bad, blob_len);
    sb_switchover(&b, 1, GUEST_PAGES);
    refuse(&(struct expect){"STATE blob for 2 vCPUs", {"state", "2 vCPUs"}, 4, BACK_ERROR}, &b);
    sb_free(&b);
    free(bad);

    /* record 3 (the second PAGES) damaged in its meta part */
    sb_start(&b);
    sb_zero(&b, 0, 0x800);
    size_t at = sb_zero(&b, 0x800, 0x800);
    sb_round_end(&b, 1, GUEST_PAGES);
    b.p[at + MIGR_REC_HDR_SIZE + MIGR_PAGES_FIXED + 1] ^= 0x10;
    refuse(&(struct expect){"record CRC corrupted mid-stream", {"record 3 (PAGES)", "CRC mismatch"}, 3, BACK_ERROR}, &b);
    sb_free(&b);

    /* 8 RAW pages announced, the stream ends after 2.5 of them */
    sb_start(&b);
    {
        struct migr_page_entry e[8];
        struct iovec iov[8];
        for (int i = 0; i < 8; i++) {
            e[i] = (struct migr_page_entry){.pfn = (uint64_t)i, .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE,
                                            .crc = migr_crc32c(0, page, sizeof(page))};
            iov[i] = one;
        }
        sb_pages(&b, 1, e, 8, iov, 8);
        b.len -= 5 * MIGR_PAGE_SIZE + MIGR_PAGE_SIZE / 2;
    }
    refuse(&(struct expect){"truncated inside PAGES bulk", {"PAGES", "10240 of 32768"}, 2, BACK_NONE}, &b);
    sb_free(&b);

    sb_start(&b);
    sb_zero(&b, 0, 0x800);
    refuse(&(struct expect){"stream ends between records", {"ended", "record 3"}, 3, BACK_NONE}, &b);
    sb_free(&b);

    sb_start(&b);
    sb_zero(&b, 0, 0x800);
    sb_error(&b, EIO, "disk on fire");
    refuse(&(struct expect){"ERROR from the source", {"the source aborted: ", "disk on fire"}, 0, BACK_NONE}, &b);
    sb_free(&b);

    sb_start(&b);
    sb_zero(&b, 0, GUEST_PAGES);
    sb_state(&b, blob, blob_len);
    sb_rec(&b, MIGR_REC_COMMIT, NULL, 0, NULL, 0);
    refuse(&(struct expect){"COMMIT before SWITCHOVER", {"COMMIT", "SWITCHOVER"}, 4, BACK_ERROR}, &b);
    sb_free(&b);

    /* Positive control: the source guest's real pages (zero runs and RAW),
     * one page first sent torn and resent in round 2, its real state. */
    sb_start(&b);
    {
        static struct migr_page_entry e[256];
        static struct iovec iov[256];
        uint32_t n = 0;
        int niov = 0;
        int64_t torn = -1;
        for (uint64_t i = 0; i < src->ram_pages; i++) {
            uint8_t *p = migr_hv_page(src, i);
            bool zero = true;
            for (size_t k = 0; k < MIGR_PAGE_SIZE && zero; k++)
                zero = p[k] == 0;
            if (zero && n && e[n - 1].enc == MIGR_ENC_ZERO && e[n - 1].pfn + e[n - 1].len == i) {
                e[n - 1].len++;
            } else if (zero) {
                e[n++] = (struct migr_page_entry){.pfn = i, .enc = MIGR_ENC_ZERO, .len = 1};
            } else {
                uint32_t crc = migr_crc32c(0, p, MIGR_PAGE_SIZE);
                if (torn < 0) {
                    torn = (int64_t)i;
                    crc ^= 0x80;
                }
                e[n++] = (struct migr_page_entry){.pfn = i, .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE, .crc = crc};
                iov[niov++] = (struct iovec){p, MIGR_PAGE_SIZE};
            }
            if (n == 256) {
                sb_pages(&b, 1, e, n, iov, niov);
                n = 0;
                niov = 0;
            }
        }
        if (n)
            sb_pages(&b, 1, e, n, iov, niov);
        sb_round_end(&b, 1, src->ram_pages);
        T_ASSERT(torn >= 0);
        uint8_t *p = migr_hv_page(src, (uint64_t)torn);
        struct migr_page_entry r = {.pfn = (uint64_t)torn, .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE,
                                    .crc = migr_crc32c(0, p, MIGR_PAGE_SIZE)};
        sb_pages(&b, 2, &r, 1, &(struct iovec){p, MIGR_PAGE_SIZE}, 1);
        sb_round_end(&b, 2, 1);
    }
    sb_state(&b, blob, blob_len);
    sb_switchover(&b, 2, src->ram_pages + 1);
    {
        int fds0 = count_dir("/proc/self/fd"), thr0 = count_dir("/proc/self/task");
        struct migr_hv *dst = play(&(struct expect){"positive control", {0}, 0, 0}, &b, true);
        if (dst) {
            CHECK(last_stats.verified && last_stats.torn_pages == 1 &&
                  last_stats.pages == src->ram_pages + 1 && last_stats.ram_bytes == GUEST_MEM,
                  "stats: verified %d, torn_pages %llu (expected 1), pages %llu (expected %llu)",
                  last_stats.verified, (unsigned long long)last_stats.torn_pages,
                  (unsigned long long)last_stats.pages, (unsigned long long)src->ram_pages + 1);
            CHECK(!dst->paused, "the received guest is not running");
            uint64_t w0 = migr_workload_progress(dst);
            usleep(200000);
            uint64_t w1 = migr_workload_progress(dst);
            CHECK(w1 > w0, "the received guest makes no progress (%llu -> %llu writes)",
                  (unsigned long long)w0, (unsigned long long)w1);
            struct migr_verify_report rep;
            memset(&rep, 0, sizeof(rep));
            int q = dst->ops->quiesce(dst, 5000);
            CHECK(q == 0, "quiesce: %s", migr_last_error());
            if (q == 0) {
                CHECK(migr_workload_verify(dst, &rep) == 0, "verify: %s", migr_last_error());
                dst->ops->unquiesce(dst);
                CHECK(rep.ok, "the received guest does not verify: %s", rep.first_bad_why);
            }
            CHECK(!dst->ops->failed(dst), "the received guest failed: %s", dst->failure);
            migr_hv_destroy(dst);
        }
        int fds1 = count_dir("/proc/self/fd"), thr1 = count_dir("/proc/self/task");
        CHECK(fds1 == fds0, "open fds %d before, %d after (leak)", fds0, fds1);
        CHECK(thr1 == thr0, "threads %d before, %d after", thr0, thr1);
    }
    sb_free(&b);
}


/* ---- memory: whatever the stream says, the receiver stays within the
 * declared RAM plus a fixed budget ---- */

#define FLOOD_RECORDS 128                 /* x 1024 pages: 512 MiB of page data */
#define MEM_BUDGET_KIB (48u << 10)        /* beyond guest RAM: buffers, threads, codecs */

struct flood { struct migr_transport *t; const struct membuf *prefix; };

/* The source side of the flood: a valid start, then the same 1024 pages
 * over and over (their CRC wrong: torn, so nothing ever completes), every
 * PAGES record as large as the format allows for RAW, then the end. */
static void *flood_main(void *arg)
{
    struct flood *f = arg;
    static uint8_t page[MIGR_PAGE_SIZE];
    static struct migr_page_entry e[1024];
    static struct iovec iov[1024];
    static uint8_t meta[MIGR_PAGES_FIXED + 1024 * MIGR_PAGE_ENTRY_SIZE];
    memset(page, 0x5a, sizeof(page));
    if (migr_transport_send(f->t, f->prefix->p, f->prefix->len) < 0)
        return NULL;
    for (int r = 0; r < FLOOD_RECORDS; r++) {
        for (int i = 0; i < 1024; i++) {
            e[i] = (struct migr_page_entry){.pfn = (uint64_t)((r % 4) * 1024 + i), .enc = MIGR_ENC_RAW,
                                            .len = MIGR_PAGE_SIZE, .crc = 1};
            iov[i] = (struct iovec){page, sizeof(page)};
        }
        int len = migr_pages_encode(1, e, 1024, meta, sizeof(meta));
        if (len < 0 || migr_rec_send(f->t, MIGR_REC_PAGES, meta, (uint32_t)len, iov, 1024) < 0)
            return NULL;
    }
    shutdown(f->t->fd, SHUT_WR);
    return NULL;
}

static long status_kib(const char *field)
{
    char line[256];
    long v = -1;
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp)
        return -1;
    while (fgets(line, sizeof(line), fp))
        if (strncmp(line, field, strlen(field)) == 0)
            v = strtol(line + strlen(field), NULL, 10);
    fclose(fp);
    return v;
}

/* In a child (its own peak RSS): receive the flood; report how far the
 * peak rose above where it started, and the refusal. */
static void case_memory_bound(void)
{
#if defined(__SANITIZE_ADDRESS__)
    fprintf(stderr, "memory bound: not measured under ASan (its shadow and quarantine)\n");
    return;
#endif
    cur_case = "memory bound (512 MiB of torn pages into 16 MiB)";
    struct membuf b;
    sb_start(&b);
    int pfd[2];
    T_ASSERT(pipe(pfd) == 0);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        long rss0 = status_kib("VmRSS:");
        int sv[2];
        struct migr_transport *rt, *wt;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
            migr_transport_from_fd(sv[0], "unix", "socketpair:src", &rt) < 0 ||
            migr_transport_from_fd(sv[1], "unix", "socketpair:dst", &wt) < 0)
            _exit(3);
        struct flood f = {wt, &b};
        pthread_t th;
        if (pthread_create(&th, NULL, flood_main, &f))
            _exit(3);
        struct migr_hv *out = NULL;
        struct migr_stats st = MIGR_STATS_INIT;
        int rc = migr_recv(rt, &out, &st);
        shutdown(rt->fd, SHUT_RDWR); /* the writer may be blocked in a send */
        pthread_join(th, NULL);
        char msg[400];
        int n = snprintf(msg, sizeof(msg), "%d %ld %ld %s", rc, rss0, status_kib("VmHWM:"), st.error);
        (void)!write(pfd[1], msg, (size_t)n);
        _exit(0);
    }
    close(pfd[1]);
    char msg[400] = "";
    ssize_t n = read(pfd[0], msg, sizeof(msg) - 1);
    close(pfd[0]);
    int wst;
    T_ASSERT(waitpid(pid, &wst, 0) == pid);
    CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0 && n > 0, "the receiving child failed (status 0x%x)", wst);
    int rc = 0;
    long rss0 = 0, hwm = 0, off = 0;
    if (n > 0 && sscanf(msg, "%d %ld %ld %ln", &rc, &rss0, &hwm, &off) >= 3) {
        long grew = hwm - rss0;
        CHECK(rc < 0, "a stream of torn pages that ends without SWITCHOVER was accepted");
        CHECK(has(msg + off, "stream ended"), "refusal does not say the stream ended: %s", msg + off);
        CHECK(grew <= (long)(GUEST_MEM >> 10) + (long)MEM_BUDGET_KIB,
              "the receiver's peak RSS rose by %ld KiB for a %u KiB guest (budget %u KiB)", grew, GUEST_MEM >> 10,
              MEM_BUDGET_KIB);
        if (getenv("MIGR_TEST_VERBOSE") || grew > (long)(GUEST_MEM >> 10) + (long)MEM_BUDGET_KIB)
            fprintf(stderr, "memory bound: peak RSS +%ld KiB for %u KiB of guest RAM and 512 MiB of pages (%s)\n",
                    grew, GUEST_MEM >> 10, msg + off);
    }
    sb_free(&b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(120);   /* a hang is a failure, not a stuck test run */
    cases_without_vm();
    if (!migr_hv_available("kvm")) {
        if (failures)
            return 1;
        T_SKIP("no usable /dev/kvm (%s); the cases that need no VM passed", migr_last_error());
    }

    struct migr_vm_config cfg = {.mem_bytes = GUEST_MEM, .nvcpus = 1};
    migr_workload_defaults(&cfg.wl);
    T_OK(migr_workload_parse("ws=1M", &cfg.wl));
    struct migr_hv *src;
    T_OK(migr_hv_create("kvm", &cfg, &src));
    T_OK(src->ops->pause(src));
    T_EQ(src->state_version, 1);
    T_OK(src->ops->save_state(src, &blob, &blob_len));
    T_ASSERT(blob_len > 64);

    cases_with_vm(src);
    case_memory_bound();

    free(blob);
    migr_hv_destroy(src);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
