/* The destination reads RAW pages a chunk at a time (32 pages) and checks
 * each page's CRC right after its chunk landed (engine/recv.c): a torn page
 * on either side of a chunk boundary is found, the pages around it land,
 * a later copy of a page in the same round wins, and a torn page is cleared
 * or replaced by what the next round says.
 *
 * A crafted stream from a paused proc guest (16 MiB, 1 MiB working set):
 * round 1 sends its holes as ZERO runs first, then its data pages, then one
 * record of 63 RAW pages into its last 64 (holes on the source, unused by
 * the workload) with pages 31 and 32 torn (bad CRC: the last of the first
 * chunk, the first of the second), then a newer copy of page 0 of them;
 * round 2 says page 31 is zero now and resends page 32. Expected: the guest
 * verifies and runs on, every one of those pages holds what was last sent
 * for it, torn_pages = 2. Before STATE, a ROUND_END with the SYNC flag
 * (revision 1.7) is answered by READY counting every page sent so far. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migr/crc32c.h"
#include "migr/dirty.h"
#include "migr/engine.h"
#include "migr/format.h"
#include "migr/record.h"
#include "migratelib.h"

#define MEM (16ull << 20)
#define EXTRA 64u                 /* the last pages of RAM */
#define TORN_A 31u                /* the last page of the first chunk */
#define TORN_B 32u                /* the first of the second */

struct writer {
    struct migr_transport *t;
    struct migr_hv *src;
    uint8_t *blob;
    size_t blob_len;
    uint8_t pattern[EXTRA][MIGR_PAGE_SIZE];  /* what was last sent for each */
    uint8_t sent[EXTRA][MIGR_PAGE_SIZE];     /* the copy that went in round 1 */
    int rc;
    char why[300];
    unsigned sync_type;          /* what answered the SYNC ROUND_END */
    uint64_t sync_pages;         /* ... and the pages it had taken in */
};

static void fill(uint8_t *p, uint64_t idx, int gen)
{
    for (uint32_t i = 0; i < MIGR_PAGE_SIZE; i++)
        p[i] = (uint8_t)(idx * 31 + (uint64_t)i * 7 + (uint64_t)gen * 3 + 1);
}

static int pages(struct migr_transport *t, uint32_t round, const struct migr_page_entry *e, uint32_t n,
                 const struct iovec *iov, int niov)
{
    static uint8_t meta[MIGR_PAGES_FIXED + MIGR_BATCH_MAX * MIGR_PAGE_ENTRY_SIZE];
    int len = migr_pages_encode(round, e, n, meta, sizeof(meta));
    return len < 0 ? len : migr_rec_send(t, MIGR_REC_PAGES, meta, (uint32_t)len, iov, niov);
}

static int round_end(struct migr_transport *t, uint32_t round, uint64_t n, uint32_t flags)
{
    uint8_t meta[MIGR_ROUND_END_SIZE];
    struct migr_round_end re = {.round = round, .pages_sent = n, .flags = flags};
    int len = migr_round_end_encode(&re, meta, sizeof(meta));
    return len < 0 ? len : migr_rec_send(t, MIGR_REC_ROUND_END, meta, (uint32_t)len, NULL, 0);
}

/* The memfd behind RAM index idx holds no page there. */
static bool is_hole(const struct migr_hv *hv, uint64_t idx)
{
    off_t off = (off_t)(hv->regions[0].memfd_off + idx * MIGR_PAGE_SIZE);
    off_t d = lseek(hv->regions[0].memfd, off, SEEK_DATA);
    return (d < 0 && errno == ENXIO) || d > off;
}

static int play(struct writer *w)
{
    struct migr_hv *src = w->src;
    uint64_t np = src->ram_pages, x0 = np - EXTRA;
    struct migr_hello hello;
    uint8_t meta[512];
    migr_hv_describe(src, &hello);
    snprintf(hello.mode, sizeof(hello.mode), "precopy");
    int len = migr_hello_encode(&hello, meta, sizeof(meta)), err;
    if (len < 0 || (err = migr_preamble_send(w->t)) < 0 ||
        (err = migr_rec_send(w->t, MIGR_REC_HELLO, meta, (uint32_t)len, NULL, 0)) < 0)
        return len < 0 ? len : err;
    /* round 1: the holes first (as the engine sends them), then data */
    uint64_t *data = calloc(migr_bitmap_words(np), 8);
    static struct migr_page_entry e[MIGR_BATCH_MAX];
    static struct iovec iov[MIGR_BATCH_MAX];
    if (!data)
        return -ENOMEM;
    for (uint64_t i = 0; i < np; i++)
        if (!is_hole(src, i))
            migr_bit_set(data, i);
    uint32_t n = 0;
    for (uint64_t i = 0; i < x0; i++) {
        if (migr_bit_test(data, i))
            continue;
        uint64_t j = i;
        while (j + 1 < x0 && !migr_bit_test(data, j + 1))
            j++;
        e[n++] = (struct migr_page_entry){.pfn = migr_hv_index_pfn(src, i), .enc = MIGR_ENC_ZERO,
                                          .len = (uint32_t)(j - i + 1)};
        i = j;
    }
    e[n++] = (struct migr_page_entry){.pfn = migr_hv_index_pfn(src, x0 + EXTRA - 1), .enc = MIGR_ENC_ZERO, .len = 1};
    if ((err = pages(w->t, 1, e, n, NULL, 0)) < 0)
        return err;
    n = 0;
    int niov = 0;
    for (uint64_t i = 0; i < x0; i++) {
        if (!migr_bit_test(data, i))
            continue;
        uint8_t *p = migr_hv_page(src, i);
        e[n++] = (struct migr_page_entry){.pfn = migr_hv_index_pfn(src, i), .enc = MIGR_ENC_RAW,
                                          .len = MIGR_PAGE_SIZE, .crc = migr_crc32c(0, p, MIGR_PAGE_SIZE)};
        iov[niov++] = (struct iovec){p, MIGR_PAGE_SIZE};
        if (n == 256) {
            if ((err = pages(w->t, 1, e, n, iov, niov)) < 0)
                return err;
            n = 0;
            niov = 0;
        }
    }
    if (n && (err = pages(w->t, 1, e, n, iov, niov)) < 0)
        return err;
    /* x0 .. x0+62 in one record, two of them torn */
    n = 0;
    niov = 0;
    for (uint32_t k = 0; k < EXTRA - 1; k++) {
        fill(w->pattern[k], x0 + k, 1);
        memcpy(w->sent[k], w->pattern[k], MIGR_PAGE_SIZE);
        uint32_t crc = migr_crc32c(0, w->pattern[k], MIGR_PAGE_SIZE) ^ (k == TORN_A || k == TORN_B ? 1u : 0u);
        e[n++] = (struct migr_page_entry){.pfn = migr_hv_index_pfn(src, x0 + k), .enc = MIGR_ENC_RAW,
                                          .len = MIGR_PAGE_SIZE, .crc = crc};
        iov[niov++] = (struct iovec){w->sent[k], MIGR_PAGE_SIZE};
    }
    if ((err = pages(w->t, 1, e, n, iov, niov)) < 0)
        return err;
    /* a newer copy of x0 in the same round */
    fill(w->pattern[0], x0, 2);
    e[0] = (struct migr_page_entry){.pfn = migr_hv_index_pfn(src, x0), .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE,
                                    .crc = migr_crc32c(0, w->pattern[0], MIGR_PAGE_SIZE)};
    if ((err = pages(w->t, 1, e, 1, &(struct iovec){w->pattern[0], MIGR_PAGE_SIZE}, 1)) < 0 ||
        (err = round_end(w->t, 1, np, 0)) < 0)
        return err;
    /* round 2: TORN_A is zero now, TORN_B comes again */
    memset(w->pattern[TORN_A], 0, MIGR_PAGE_SIZE);
    fill(w->pattern[TORN_B], x0 + TORN_B, 3);
    e[0] = (struct migr_page_entry){.pfn = migr_hv_index_pfn(src, x0 + TORN_A), .enc = MIGR_ENC_ZERO, .len = 1};
    e[1] = (struct migr_page_entry){.pfn = migr_hv_index_pfn(src, x0 + TORN_B), .enc = MIGR_ENC_RAW,
                                    .len = MIGR_PAGE_SIZE, .crc = migr_crc32c(0, w->pattern[TORN_B], MIGR_PAGE_SIZE)};
    if ((err = pages(w->t, 2, e, 2, &(struct iovec){w->pattern[TORN_B], MIGR_PAGE_SIZE}, 1)) < 0 ||
        (err = round_end(w->t, 2, 2, 0)) < 0)
        return err;
    free(data);
    /* the sync before the pause (revision 1.7): READY once all of it is in */
    struct migr_rec_hdr h;
    uint64_t seq = 0;
    uint8_t *m = malloc(MIGR_META_MAX);
    struct migr_ack ack;
    if (!m)
        return -ENOMEM;
    if ((err = round_end(w->t, 2, 0, MIGR_ROUND_END_SYNC)) < 0 ||
        (err = migr_rec_recv(w->t, &seq, &h, m, MIGR_META_MAX)) < 0 || (err = migr_ack_decode(m, h.meta_len, &ack)) < 0) {
        free(m);
        return err;
    }
    w->sync_type = h.type;
    w->sync_pages = ack.pages;
    uint8_t so[MIGR_SWITCHOVER_SIZE];
    struct migr_switchover s = {.rounds = 2, .total_pages_sent = np + 3};
    if ((err = migr_rec_send(w->t, MIGR_REC_STATE, w->blob, (uint32_t)w->blob_len, NULL, 0)) < 0 ||
        (err = migr_switchover_encode(&s, so, sizeof(so))) < 0 ||
        (err = migr_rec_send(w->t, MIGR_REC_SWITCHOVER, so, sizeof(so), NULL, 0)) < 0)
        return err;
    /* READY -> COMMIT -> DONE */
    if ((err = migr_rec_recv(w->t, &seq, &h, m, MIGR_META_MAX)) < 0 || h.type != MIGR_REC_READY ||
        (err = migr_rec_send(w->t, MIGR_REC_COMMIT, NULL, 0, NULL, 0)) < 0 ||
        (err = migr_rec_recv(w->t, &seq, &h, m, MIGR_META_MAX)) < 0 || h.type != MIGR_REC_DONE)
        err = err < 0 ? err : -EPROTO;
    free(m);
    return err;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    w->rc = play(w);
    snprintf(w->why, sizeof(w->why), "%s", migr_last_error());
    return NULL;
}

int main(void)
{
    struct migr_hv *src = t_guest("proc", MEM, 1, "rate=4K,ws=1M,pattern=random,data=text", 50);
    T_ASSERT(src->nregions == 1);
    uint64_t x0 = src->ram_pages - EXTRA;
    for (uint64_t k = 0; k < EXTRA; k++)
        if (!is_hole(src, x0 + k))
            T_SKIP("the workload wrote page %llu of the last %u: no unused pages to play with",
                   (unsigned long long)(x0 + k), EXTRA);
    T_OK(src->ops->pause(src));
    static struct writer w;
    w.src = src;
    T_OK(src->ops->save_state(src, &w.blob, &w.blob_len));

    int sv[2];
    T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    struct migr_transport *rt, *wt;
    T_OK(migr_transport_from_fd(sv[0], "unix", "socketpair:dst", &rt));
    T_OK(migr_transport_from_fd(sv[1], "unix", "socketpair:src", &wt));
    w.t = wt;
    pthread_t th;
    T_ASSERT(pthread_create(&th, NULL, writer_main, &w) == 0);
    struct migr_hv *dst = NULL;
    struct migr_stats st = MIGR_STATS_INIT;
    int rc = migr_recv(rt, &dst, &st);
    T_ASSERT(pthread_join(th, NULL) == 0);
    migr_transport_close(rt);
    migr_transport_close(wt);
    if (rc < 0)
        T_FAIL("migr_recv: %s", st.error);
    if (w.rc < 0)
        T_FAIL("the crafted source: %s", w.why);
    printf("received: %llu pages, %llu torn, %llu allocated ahead (prefault)\n", (unsigned long long)st.pages,
           (unsigned long long)st.torn_pages, (unsigned long long)st.prefaulted_pages);
    T_EQ(st.torn_pages, 2);
    T_EQ(w.sync_type, MIGR_REC_READY);
    T_EQ(w.sync_pages, src->ram_pages + 3); /* round 1: every page and x0 twice; round 2: two */
    for (uint32_t k = 0; k < EXTRA - 1; k++)
        if (memcmp(migr_hv_page(dst, x0 + k), w.pattern[k], MIGR_PAGE_SIZE) != 0)
            T_FAIL("page %llu (%u of the last %u) does not hold what was last sent for it", (unsigned long long)(x0 + k),
                   k, EXTRA);
    t_verify(dst, "destination");
    T_ASSERT(!dst->ops->failed(dst));
    migr_hv_destroy(dst);
    free(w.blob);
    migr_hv_destroy(src);
    return 0;
}
