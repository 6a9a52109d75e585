/* HELLO's features (docs/format.md, HELLO, revision 1.6): the extension
 * round-trips, an older HELLO without it still decodes, a HELLO that
 * requires what its own features lack is refused, and a receiver refuses a
 * stream that requires a feature it lacks at HELLO, naming it, and tells the
 * source so in an ERROR record (the end-to-end case with a real build
 * lacking zstd: tests/it_hello_features.sh). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migr/common.h"
#include "migr/engine.h"
#include "migr/format.h"
#include "migr/record.h"
#include "migr/transport.h"
#include "testlib.h"

static struct migr_hello hello(uint32_t nregions)
{
    struct migr_hello h = {.page_size = 4096, .nvcpus = 1, .nregions = nregions, .state_version = 1,
                           .backend = "proc", .mode = "precopy"};
    for (uint32_t i = 0; i < nregions; i++)
        h.regions[i] = (struct migr_region_desc){(uint64_t)i << 30, 1 << 20};
    return h;
}

static void test_codec(void)
{
    uint8_t b[MIGR_HELLO_META_MAX];
    struct migr_hello h = hello(2), d;
    h.has_ext = true;
    h.features = MIGR_FEAT_KNOWN;
    h.requires = MIGR_FEAT_ZSTD | MIGR_FEAT_REGIONS;
    for (int i = 0; i < 16; i++)
        h.id[i] = (uint8_t)(0xa0 + i);
    int n = migr_hello_encode(&h, b, sizeof(b));
    T_EQ(n, MIGR_HELLO_FIXED + 2 * 16 + MIGR_HELLO_EXT);
    T_OK(migr_hello_decode(b, (size_t)n, &d));
    T_ASSERT(d.has_ext && d.features == MIGR_FEAT_KNOWN && d.requires == (MIGR_FEAT_ZSTD | MIGR_FEAT_REGIONS));
    T_ASSERT(memcmp(d.id, h.id, 16) == 0 && d.nregions == 2 && d.regions[1].gpa == 1ull << 30);
    /* the largest HELLO fits MIGR_HELLO_META_MAX (what a listener peeks) */
    h = hello(MIGR_MAX_REGIONS);
    h.has_ext = true;
    T_EQ(migr_hello_encode(&h, b, sizeof(b)), MIGR_HELLO_META_MAX);
    /* an older HELLO: no extension, features unknown (0) */
    h = hello(1);
    n = migr_hello_encode(&h, b, sizeof(b));
    T_EQ(n, MIGR_HELLO_FIXED + 16);
    T_OK(migr_hello_decode(b, (size_t)n, &d));
    T_ASSERT(!d.has_ext && d.features == 0 && d.requires == 0);
    /* requires beyond features: malformed, refused by both ends */
    h.has_ext = true;
    h.features = MIGR_FEAT_LZ4;
    h.requires = MIGR_FEAT_LZ4 | MIGR_FEAT_ZSTD;
    T_ERR(migr_hello_encode(&h, b, sizeof(b)), -EINVAL, "cannot encode");
    h.features |= MIGR_FEAT_ZSTD;
    n = migr_hello_encode(&h, b, sizeof(b));
    migr_put_le64(b + MIGR_HELLO_FIXED + 16, MIGR_FEAT_LZ4);
    T_ERR(migr_hello_decode(b, (size_t)n, &d), -EBADMSG, "requires 0x6 names feature 0x4 that features 0x2 lacks");
    T_ERR(migr_hello_decode(b, (size_t)n - 1, &d), -EBADMSG, "(expected 64 for 1 regions), or 96 with features");
    /* names, and the first missing bit */
    T_ASSERT(strcmp(migr_feature_name(MIGR_FEAT_ZSTD), "zstd") == 0);
    T_ASSERT(strcmp(migr_feature_name(MIGR_FEAT_HANDOVER), "memfd hand-over") == 0);
    T_ASSERT(migr_feature_name(1ull << 40) == NULL && migr_feature_name(3) == NULL);
    T_EQ(migr_features_missing(MIGR_FEAT_ZSTD | MIGR_FEAT_ZLIB, MIGR_FEAT_ZLIB), MIGR_FEAT_ZSTD);
    T_EQ(migr_features_missing(MIGR_FEAT_LZ4 | MIGR_FEAT_ZSTD, 0), MIGR_FEAT_LZ4);
    T_EQ(migr_features_missing(MIGR_FEAT_LZ4, MIGR_FEAT_KNOWN), 0);
    for (uint64_t bit = 1; bit & MIGR_FEAT_KNOWN; bit <<= 1)
        T_ASSERT(migr_feature_name(bit) != NULL);
    T_EQ(migr_features_supported() & ~(uint64_t)MIGR_FEAT_KNOWN, 0);
}

/* A receiver meets a HELLO that requires feature `need`: it must refuse with
 * `want` and send it back in an ERROR record. */
static void refused(uint64_t need, const char *want)
{
    int sv[2];
    T_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    struct migr_transport *src, *dst, *out_t;
    T_OK(migr_transport_from_fd(sv[0], "unix", "test-source", &src));
    T_OK(migr_transport_from_fd(sv[1], "unix", "test-destination", &dst));
    uint8_t b[MIGR_HELLO_META_MAX];
    struct migr_hello h = hello(1);
    h.has_ext = true;
    h.features = need | MIGR_FEAT_SETTLE;
    h.requires = need;
    int n = migr_hello_encode(&h, b, sizeof(b));
    T_ASSERT(n > 0);
    T_OK(migr_preamble_send(src));
    T_OK(migr_rec_send(src, MIGR_REC_HELLO, b, (uint32_t)n, NULL, 0));
    struct migr_hv *hv = NULL;
    struct migr_stats st = MIGR_STATS_INIT;
    T_ERR(migr_recv(dst, &hv, &st), -ENOTSUP, want);
    T_ASSERT(hv == NULL && strstr(st.error, want));
    /* what the source hears */
    uint8_t meta[MIGR_ERROR_MSG_MAX + 64];
    char msg[MIGR_ERROR_MSG_MAX + 1];
    struct migr_rec_hdr rh;
    uint64_t seq = 0;
    int code;
    T_OK(migr_rec_recv(src, &seq, &rh, meta, sizeof(meta)));
    T_EQ(rh.type, MIGR_REC_ERROR);
    T_OK(migr_error_decode(meta, rh.meta_len, &code, msg, sizeof(msg)));
    T_EQ(code, ENOTSUP);
    if (!strstr(msg, want))
        T_FAIL("ERROR '%s' lacks '%s'", msg, want);
    (void)out_t;
    migr_transport_close(src);
    migr_transport_close(dst);
}

int main(void)
{
    test_codec();
    refused(1ull << 40, "record 1 (HELLO): the source needs feature 'bit 0x10000000000' that this destination lacks");
    return 0;
}
