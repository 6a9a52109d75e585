/* Wire format v1: encode -> decode round trips, every decoder rejection
 * rule, record framing over a socketpair (preamble, header checks, CRC,
 * truncated streams), and random/mutated streams that must end in a clean
 * error, never a crash or a hang. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migr/crc32c.h"
#include "migr/format.h"
#include "migr/record.h"
#include "migr/transport.h"
#include "testlib.h"

static uint8_t meta[MIGR_META_MAX];

/* ---------------------------------------------------------------- HELLO */

static struct migr_hello sample_hello(uint32_t nregions)
{
    struct migr_hello h = { .page_size = 4096, .nvcpus = 4, .nregions = nregions,
                            .state_version = 3, .backend = "kvm", .mode = "precopy" };

    for (uint32_t i = 0; i < nregions; i++) {
        h.regions[i].gpa = (uint64_t)i << 32;
        h.regions[i].size = (uint64_t)(i + 1) << 20;
    }
    return h;
}

static int hello_len(uint32_t n)
{
    return (int)(MIGR_HELLO_FIXED + 16 * n);
}

static void test_hello(void)
{
    struct migr_hello h = sample_hello(3), d;
    uint8_t b[MIGR_HELLO_FIXED + 16 * MIGR_MAX_REGIONS + 16];
    int n;

    /* Round trips */
    for (uint32_t nr = 1; nr <= MIGR_MAX_REGIONS; nr += (nr < 4 ? 1 : 15)) {
        h = sample_hello(nr);
        n = migr_hello_encode(&h, b, sizeof(b));
        T_EQ(n, hello_len(nr));
        T_OK(migr_hello_decode(b, (size_t)n, &d));
        T_EQ(d.page_size, 4096);
        T_EQ(d.nvcpus, 4);
        T_EQ(d.nregions, nr);
        T_EQ(d.state_version, 3);
        T_ASSERT(!strcmp(d.backend, "kvm") && !strcmp(d.mode, "precopy"));
        T_ASSERT(!memcmp(d.regions, h.regions, nr * sizeof(h.regions[0])));
    }
    /* 15-character names, adjacent regions and a 1 GiB page size are fine. */
    h = sample_hello(2);
    strcpy(h.backend, "123456789012345");
    h.page_size = 1u << 30;
    h.regions[0] = (struct migr_region_desc){ 0, 1ull << 30 };
    h.regions[1] = (struct migr_region_desc){ 1ull << 30, 2ull << 30 };
    n = migr_hello_encode(&h, b, sizeof(b));
    T_EQ(n, hello_len(2));
    T_OK(migr_hello_decode(b, (size_t)n, &d));
    T_ASSERT(!strcmp(d.backend, "123456789012345"));

    /* Encoder refusals */
    h = sample_hello(3);
    T_ERR(migr_hello_encode(&h, b, (size_t)hello_len(3) - 1), -ENOSPC, "too small");
    h.nregions = 0;
    T_ERR(migr_hello_encode(&h, b, sizeof(b)), -EINVAL, "nregions 0 out of range 1..64");
    h.nregions = 65;
    T_ERR(migr_hello_encode(&h, b, sizeof(b)), -EINVAL, "nregions 65");
    h = sample_hello(3);
    memset(h.mode, 'x', sizeof(h.mode));
    T_ERR(migr_hello_encode(&h, b, sizeof(b)), -EINVAL, "mode");
    h = sample_hello(3);
    h.nvcpus = 0;
    T_ERR(migr_hello_encode(&h, b, sizeof(b)), -EINVAL, "HELLO: nvcpus 0 out of range 1..64");

    /* Decoder refusals, each starting from a valid encoding. */
    h = sample_hello(3);
#define HELLO_BAD(mutate, substr) do { \
        n = migr_hello_encode(&h, b, sizeof(b)); \
        T_EQ(n, hello_len(3)); \
        size_t len_ = (size_t)n; \
        (void)len_; \
        mutate; \
        T_ERR(migr_hello_decode(b, len_, &d), -EBADMSG, substr); \
    } while (0)
    HELLO_BAD(len_ = 47, "HELLO: meta length 47 too short (at least 48)");
    HELLO_BAD(len_ = 0, "too short");
    HELLO_BAD(len_ -= 1, "HELLO: meta length 95 (expected 96 for 3 regions)");
    HELLO_BAD(len_ += 1, "HELLO: meta length 97 (expected 96 for 3 regions)");
    HELLO_BAD(len_ += 16, "expected 96 for 3 regions");
    HELLO_BAD(migr_put_le32(b, 0), "HELLO: page_size 0 is not a power of two");
    HELLO_BAD(migr_put_le32(b, 2048), "page_size 2048");
    HELLO_BAD(migr_put_le32(b, 4097), "page_size 4097");
    HELLO_BAD(migr_put_le32(b, 12288), "page_size 12288");
    HELLO_BAD(migr_put_le32(b, 1u << 31), "page_size 2147483648");
    HELLO_BAD(migr_put_le32(b + 4, 0), "HELLO: nvcpus 0 out of range 1..64");
    HELLO_BAD(migr_put_le32(b + 4, 65), "HELLO: nvcpus 65 out of range 1..64");
    HELLO_BAD(migr_put_le32(b + 8, 0), "HELLO: nregions 0 out of range 1..64");
    HELLO_BAD(migr_put_le32(b + 8, 65), "HELLO: nregions 65 out of range 1..64");
    HELLO_BAD(migr_put_le32(b + 8, 2), "HELLO: meta length 96 (expected 80 for 2 regions)");
    HELLO_BAD(memset(b + 16, 'k', 16), "HELLO: backend not NUL-terminated");
    HELLO_BAD(memset(b + 32, 'm', 16), "HELLO: mode not NUL-terminated");
    HELLO_BAD(b[16 + 15] = 1, "HELLO: backend: nonzero byte at offset 15 after the terminating NUL");
    HELLO_BAD(b[32 + 9] = 'x', "HELLO: mode: nonzero byte at offset 9");
    HELLO_BAD(migr_put_le64(b + 48 + 8, 0), "HELLO: region 0: size 0");
    HELLO_BAD(migr_put_le64(b + 48 + 16, (1ull << 32) + 512), "HELLO: region 1: gpa 0x100000200 not aligned");
    HELLO_BAD(migr_put_le64(b + 48 + 24, 4095), "HELLO: region 1: size 0xfff not a multiple of page_size");
    HELLO_BAD(migr_put_le64(b + 48 + 32, UINT64_MAX - 4095), "HELLO: region 2: gpa 0xfffffffffffff000 + size 0x300000 overflows");
    HELLO_BAD(migr_put_le64(b + 48 + 16, 0), "HELLO: region 1: gpa 0x0 below the end of region 0");
    HELLO_BAD(migr_put_le64(b + 48 + 8, (1ull << 32) + 4096), "region 1: gpa 0x100000000 below the end of region 0 (0x100001000)");
    HELLO_BAD((migr_put_le64(b + 48, 3ull << 32), migr_put_le64(b + 48 + 32, 0)), "must be sorted");
    /* Alignment is to the stream's page size, not 4 KiB. */
    HELLO_BAD(migr_put_le32(b, 2u << 20), "HELLO: region 0: size 0x100000 not a multiple of page_size 2097152");
#undef HELLO_BAD
}

/* ---------------------------------------------------------------- PAGES */

static void test_pages(void)
{
    static struct migr_page_entry e[MIGR_BATCH_MAX + 1];
    static uint8_t b[MIGR_PAGES_FIXED + MIGR_PAGE_ENTRY_SIZE * (MIGR_BATCH_MAX + 1)];
    struct migr_page_entry d;
    uint32_t round, count, bulk = 0;
    int n;

    for (uint32_t i = 0; i < MIGR_BATCH_MAX; i++) {
        if (i % 3 == 2)
            e[i] = (struct migr_page_entry){ .pfn = 1000 + 7ull * i, .enc = MIGR_ENC_ZERO,
                                             .len = 1 + i % 5, .crc = 0 };
        else
            e[i] = (struct migr_page_entry){ .pfn = 0x123456789ull + i, .enc = MIGR_ENC_RAW,
                                             .len = MIGR_PAGE_SIZE, .crc = 0x9E3779B9u * i };
        bulk += e[i].enc == MIGR_ENC_RAW ? MIGR_PAGE_SIZE : 0;
    }
    n = migr_pages_encode(77, e, MIGR_BATCH_MAX, b, sizeof(b));
    T_EQ(n, MIGR_PAGES_FIXED + MIGR_PAGE_ENTRY_SIZE * MIGR_BATCH_MAX);
    T_OK(migr_pages_decode_hdr(b, (size_t)n, bulk, &round, &count));
    T_EQ(round, 77);
    T_EQ(count, MIGR_BATCH_MAX);
    for (uint32_t i = 0; i < count; i++) {
        T_OK(migr_page_entry_decode(b, i, &d));
        T_ASSERT(d.pfn == e[i].pfn && d.enc == e[i].enc && d.len == e[i].len && d.crc == e[i].crc);
    }
    /* A batch of only zero runs has no bulk. */
    e[0] = (struct migr_page_entry){ .pfn = 0, .enc = MIGR_ENC_ZERO, .len = 1u << 20 };
    n = migr_pages_encode(1, e, 1, b, sizeof(b));
    T_EQ(n, 32);
    T_OK(migr_pages_decode_hdr(b, 32, 0, &round, &count));
    T_EQ(count, 1);

    /* Encoder refusals */
    e[0] = (struct migr_page_entry){ .pfn = 5, .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE };
    T_ERR(migr_pages_encode(1, e, 0, b, sizeof(b)), -EINVAL, "PAGES: count 0 out of range");
    T_ERR(migr_pages_encode(1, e, MIGR_BATCH_MAX + 1, b, sizeof(b)), -EINVAL, "count 4097");
    T_ERR(migr_pages_encode(1, e, 1, b, 31), -ENOSPC, "too small");
    e[0].len = 100;
    T_ERR(migr_pages_encode(1, e, 1, b, sizeof(b)), -EINVAL, "PAGES: entry 0: RAW length 100 (expected 4096)");
    e[0] = (struct migr_page_entry){ .pfn = 5, .enc = 9, .len = MIGR_PAGE_SIZE };
    T_ERR(migr_pages_encode(1, e, 1, b, sizeof(b)), -EINVAL, "unknown encoding 9");

    /* Decoder refusals: a 20-entry RAW batch, entry 17 mutated. */
    for (uint32_t i = 0; i < 20; i++)
        e[i] = (struct migr_page_entry){ .pfn = i, .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE,
                                         .crc = i };
    bulk = 20 * MIGR_PAGE_SIZE;
#define ENT(i) (b + MIGR_PAGES_FIXED + MIGR_PAGE_ENTRY_SIZE * (i))
#define PAGES_BAD(mutate, substr) do { \
        n = migr_pages_encode(3, e, 20, b, sizeof(b)); \
        T_EQ(n, 8 + 24 * 20); \
        size_t len_ = (size_t)n; \
        uint32_t bulk_ = bulk; \
        (void)len_; (void)bulk_; \
        mutate; \
        T_ERR(migr_pages_decode_hdr(b, len_, bulk_, &round, &count), -EBADMSG, substr); \
    } while (0)
    PAGES_BAD(len_ = 7, "PAGES: meta length 7 too short (at least 8)");
    PAGES_BAD(len_ -= 1, "PAGES: meta length 487 (expected 488 for 20 entries)");
    PAGES_BAD(len_ += 24, "PAGES: meta length 512 (expected 488 for 20 entries)");
    PAGES_BAD(migr_put_le32(b + 4, 0), "PAGES: count 0 out of range 1..4096");
    PAGES_BAD(migr_put_le32(b + 4, MIGR_BATCH_MAX + 1), "PAGES: count 4097 out of range 1..4096");
    PAGES_BAD(migr_put_le32(b + 4, 21), "expected 512 for 21 entries");
    PAGES_BAD(ENT(17)[8] = 8, "PAGES: entry 17: unknown encoding 8");
    /* Stream encodings (revision 1.8): byte 9 is their lane; a stream starts before it continues. */
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_LZ4S, migr_put_le32(ENT(17) + 12, 100), bulk_ -= 3996),
              "PAGES: entry 17: LZ4S lane 0 continues a stream this record did not start");
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_ZSTDS, ENT(17)[9] = 0x45, migr_put_le32(ENT(17) + 12, 100), bulk_ -= 3996),
              "PAGES: entry 17: ZSTDS with lane byte 0x45 (bits 4-6 must be 0)");
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_ZSTDS, migr_put_le32(ENT(17) + 12, 4096)),
              "PAGES: entry 17: ZSTDS payload of 4096 bytes (expected 1..4095)");
    /* a ZSTDS stream started on lane 3 does not open the LZ4S stream of lane 3 */
    PAGES_BAD((ENT(16)[8] = MIGR_ENC_ZSTDS, ENT(16)[9] = MIGR_LANE_START | 3, migr_put_le32(ENT(16) + 12, 100),
               ENT(17)[8] = MIGR_ENC_LZ4S, ENT(17)[9] = 3, migr_put_le32(ENT(17) + 12, 100), bulk_ -= 2 * 3996),
              "PAGES: entry 17: LZ4S lane 3 continues a stream this record did not start");
    {   /* started, continued, restarted: fine */
        n = migr_pages_encode(3, e, 20, b, sizeof(b));
        for (int i = 15; i < 19; i++) {
            ENT(i)[8] = MIGR_ENC_LZ4S;
            ENT(i)[9] = (uint8_t)((i == 15 || i == 18 ? MIGR_LANE_START : 0) | 2);
            migr_put_le32(ENT(i) + 12, 100);
        }
        T_OK(migr_pages_decode_hdr(b, (size_t)n, bulk - 4 * 3996, &round, &count));
        T_OK(migr_page_entry_decode(b, 18, &d));
        T_ASSERT(d.enc == MIGR_ENC_LZ4S && d.lane == (MIGR_LANE_START | 2) && d.len == 100);
    }
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_XBZRLE, migr_put_le32(ENT(17) + 12, 4096)),
              "PAGES: entry 17: XBZRLE delta of 4096 bytes (at most 4095)");
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_LZ4, migr_put_le32(ENT(17) + 12, 0), bulk_ -= 4096),
              "PAGES: entry 17: LZ4 payload of 0 bytes (expected 1..4095)");
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_ZSTD, migr_put_le32(ENT(17) + 12, 4096)),
              "PAGES: entry 17: ZSTD payload of 4096 bytes");
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_ZLIB, migr_put_le32(ENT(17) + 12, 100)),
              "PAGES: bulk length 81920 does not match the entries' data (77924 bytes)");
    PAGES_BAD(migr_put_le32(ENT(17) + 12, 100), "PAGES: entry 17: RAW length 100 (expected 4096)");
    PAGES_BAD(migr_put_le32(ENT(17) + 12, 0), "PAGES: entry 17: RAW length 0");
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_ZERO, migr_put_le32(ENT(17) + 12, 0),
               migr_put_le32(ENT(17) + 16, 0), bulk_ -= 4096), "PAGES: entry 17: ZERO run of 0 pages");
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_ZERO, migr_put_le32(ENT(17) + 12, 1), bulk_ -= 4096),
              "PAGES: entry 17: ZERO crc 0x00000011 (must be 0)");
    PAGES_BAD(ENT(3)[9] = 1, "PAGES: entry 3: RAW with lane byte 0x01 (reserved: must be 0)");
    PAGES_BAD(ENT(3)[10] = 1, "PAGES: entry 3: reserved bytes not zero");
    PAGES_BAD(ENT(3)[11] = 0x80, "PAGES: entry 3: reserved bytes not zero");
    PAGES_BAD(ENT(19)[23] = 1, "PAGES: entry 19: reserved bytes not zero");
    PAGES_BAD(migr_put_le64(ENT(0), 1ull << 52), "PAGES: entry 0: pfn 0x10000000000000 beyond");
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_ZERO, migr_put_le32(ENT(17) + 16, 0),
               migr_put_le64(ENT(17), (1ull << 52) - 2), migr_put_le32(ENT(17) + 12, 3),
               bulk_ -= 4096), "PAGES: entry 17: ZERO run of 3 pages from pfn 0xffffffffffffe overflows");
    PAGES_BAD(bulk_ -= 1, "PAGES: bulk length 81919 does not match the entries' data (81920 bytes)");
    PAGES_BAD(bulk_ = 0, "bulk length 0 does not match");
    PAGES_BAD((ENT(17)[8] = MIGR_ENC_ZERO, migr_put_le32(ENT(17) + 12, 1),
               migr_put_le32(ENT(17) + 16, 0)), "bulk length 81920 does not match the entries' data (77824 bytes)");
#undef PAGES_BAD
    /* The largest legal ZERO run ends exactly at the top of the address space. */
    e[0] = (struct migr_page_entry){ .pfn = (1ull << 52) - 3, .enc = MIGR_ENC_ZERO, .len = 3 };
    n = migr_pages_encode(1, e, 1, b, sizeof(b));
    T_OK(migr_pages_decode_hdr(b, (size_t)n, 0, &round, &count));
    T_OK(migr_page_entry_decode(b, 0, &d));
#undef ENT
}

/* -------------------------------------------------- fixed-size records, ERROR */

static void test_small(void)
{
    uint8_t b[MIGR_ERROR_MSG_MAX + 64];
    struct migr_round_end r = { 9, 123456789012ull, 42, 0 }, r2;
    struct migr_switchover s = { 17, 0xfedcba9876543210ull }, s2;
    struct migr_ack a = { 1ull << 40, 0x1122334455667788ull }, a2;
    char msg[MIGR_ERROR_MSG_MAX + 1], big[2000];
    int code, n;

    T_EQ(migr_round_end_encode(&r, b, sizeof(b)), MIGR_ROUND_END_SIZE);
    T_OK(migr_round_end_decode(b, MIGR_ROUND_END_SIZE, &r2));
    T_ASSERT(r2.round == 9 && r2.pages_sent == r.pages_sent && r2.dirty_pages == 42);
    T_ERR(migr_round_end_decode(b, 23, &r2), -EBADMSG, "ROUND_END: meta length 23 (expected 24)");
    T_ERR(migr_round_end_decode(b, 25, &r2), -EBADMSG, "ROUND_END: meta length 25 (expected 24)");
    T_ASSERT(r2.flags == 0);
    b[6] = 1;
    T_ERR(migr_round_end_decode(b, 24, &r2), -EBADMSG, "ROUND_END: unknown flags 0x00010000");
    b[6] = 0;
    r.flags = MIGR_ROUND_END_SYNC; /* revision 1.7: the sync before the pause */
    T_EQ(migr_round_end_encode(&r, b, sizeof(b)), MIGR_ROUND_END_SIZE);
    T_EQ(b[4], 1);
    T_OK(migr_round_end_decode(b, MIGR_ROUND_END_SIZE, &r2));
    T_ASSERT(r2.flags == MIGR_ROUND_END_SYNC && r2.round == 9);
    b[4] = 3;
    T_ERR(migr_round_end_decode(b, 24, &r2), -EBADMSG, "ROUND_END: unknown flags 0x00000002");
    r.flags = 0;
    T_ERR(migr_round_end_encode(&r, b, 23), -ENOSPC, "ROUND_END");

    T_EQ(migr_switchover_encode(&s, b, sizeof(b)), MIGR_SWITCHOVER_SIZE);
    T_OK(migr_switchover_decode(b, MIGR_SWITCHOVER_SIZE, &s2));
    T_ASSERT(s2.rounds == 17 && s2.total_pages_sent == s.total_pages_sent);
    T_ERR(migr_switchover_decode(b, 15, &s2), -EBADMSG, "SWITCHOVER: meta length 15 (expected 16)");
    b[4] = 1;
    T_ERR(migr_switchover_decode(b, 16, &s2), -EBADMSG, "SWITCHOVER: reserved field 0x00000001 not zero");
    T_ERR(migr_switchover_encode(&s, b, 0), -ENOSPC, "SWITCHOVER");

    T_EQ(migr_ack_encode(&a, b, sizeof(b)), MIGR_ACK_SIZE);
    T_OK(migr_ack_decode(b, MIGR_ACK_SIZE, &a2));
    T_ASSERT(a2.pages == a.pages && a2.t_ns == a.t_ns);
    T_ERR(migr_ack_decode(b, 0, &a2), -EBADMSG, "meta length 0 (expected 16)");
    T_ERR(migr_ack_decode(b, 32, &a2), -EBADMSG, "meta length 32 (expected 16)");
    T_ERR(migr_ack_encode(&a, b, 8), -ENOSPC, "too small");

    n = migr_error_encode(EIO, "disk on fire", b, sizeof(b));
    T_EQ(n, 8 + 12);
    T_OK(migr_error_decode(b, (size_t)n, &code, msg, sizeof(msg)));
    T_EQ(code, EIO);
    T_ASSERT(!strcmp(msg, "disk on fire"));
    /* Truncated to the caller's buffer, NUL-terminated. */
    T_OK(migr_error_decode(b, (size_t)n, &code, msg, 5));
    T_ASSERT(!strcmp(msg, "disk"));
    /* Empty message, NULL message. */
    n = migr_error_encode(EPROTO, NULL, b, sizeof(b));
    T_EQ(n, 8);
    T_OK(migr_error_decode(b, 8, &code, msg, sizeof(msg)));
    T_ASSERT(msg[0] == 0 && code == EPROTO);
    /* Long messages are cut at 1024 bytes. */
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    n = migr_error_encode(EIO, big, b, sizeof(b));
    T_EQ(n, 8 + MIGR_ERROR_MSG_MAX);
    T_OK(migr_error_decode(b, (size_t)n, &code, msg, sizeof(msg)));
    T_EQ(strlen(msg), MIGR_ERROR_MSG_MAX);
    /* Control characters from the peer do not reach the terminal. */
    n = migr_error_encode(EIO, "a\033[2Jb\nc", b, sizeof(b));
    T_OK(migr_error_decode(b, (size_t)n, &code, msg, sizeof(msg)));
    T_ASSERT(!strcmp(msg, "a?[2Jb?c"));
    T_ERR(migr_error_encode(0, "x", b, sizeof(b)), -EINVAL, "ERROR: code 0 out of range");
    T_ERR(migr_error_encode(-5, "x", b, sizeof(b)), -EINVAL, "ERROR: code -5 out of range");
    T_ERR(migr_error_encode(EIO, "hello", b, 12), -ENOSPC, "too small");

    n = migr_error_encode(EIO, "hello", b, sizeof(b));
    T_ERR(migr_error_decode(b, 7, &code, msg, sizeof(msg)), -EBADMSG, "ERROR: meta length 7 too short");
    T_ERR(migr_error_decode(b, (size_t)n - 1, &code, msg, sizeof(msg)), -EBADMSG,
          "ERROR: meta length 12 (expected 13 for a 5-byte message)");
    T_ERR(migr_error_decode(b, (size_t)n + 1, &code, msg, sizeof(msg)), -EBADMSG, "expected 13");
    migr_put_le32(b, 0);
    T_ERR(migr_error_decode(b, (size_t)n, &code, msg, sizeof(msg)), -EBADMSG, "ERROR: code 0 out of range 1..4095");
    migr_put_le32(b, (uint32_t)-5);
    T_ERR(migr_error_decode(b, (size_t)n, &code, msg, sizeof(msg)), -EBADMSG, "ERROR: code -5");
    migr_put_le32(b, EIO);
    migr_put_le32(b + 4, MIGR_ERROR_MSG_MAX + 1);
    T_ERR(migr_error_decode(b, 8 + MIGR_ERROR_MSG_MAX + 1, &code, msg, sizeof(msg)), -EBADMSG,
          "ERROR: message length 1025 exceeds 1024");

    T_ASSERT(!strcmp(migr_rec_type_name(MIGR_REC_PAGES), "PAGES"));
    T_ASSERT(!strcmp(migr_rec_type_name(MIGR_REC_ERROR), "ERROR"));
    T_ASSERT(!strcmp(migr_rec_type_name(0), "UNKNOWN"));
    T_ASSERT(!strcmp(migr_rec_type_name(MIGR_REC_MEMFD), "MEMFD"));
    T_ASSERT(!strcmp(migr_rec_type_name(MIGR_REC_COMPLETE), "COMPLETE"));
    T_ASSERT(!strcmp(migr_rec_type_name(MIGR_REC_CANCEL), "CANCEL"));
    T_ASSERT(!strcmp(migr_rec_type_name(20), "UNKNOWN"));
    T_ASSERT(!strcmp(migr_rec_type_name(~0u), "UNKNOWN"));
}

/* ------------------------------------------------------- PAGE_REQ, DISCARD */

static void test_ranges(void)
{
    static struct migr_range r[MIGR_RANGES_MAX + 1], d[MIGR_RANGES_MAX];
    static uint8_t b[8 + 16 * (MIGR_RANGES_MAX + 1)];
    uint32_t count;
    int n;

    /* Round trips, up to a full record */
    for (uint32_t i = 0; i < MIGR_RANGES_MAX; i++)
        r[i] = (struct migr_range){ .pfn = 0x123456789ull + 1000ull * i, .npages = 1 + i % 17 };
    for (uint32_t nr = 1; nr <= MIGR_RANGES_MAX; nr = nr < 4 ? nr + 1 : nr * 4) {
        if (nr > MIGR_RANGES_MAX)
            nr = MIGR_RANGES_MAX;
        n = migr_ranges_encode("PAGE_REQ", r, nr, b, sizeof(b));
        T_EQ(n, 8 + 16 * nr);
        T_EQ(migr_get_le32(b), nr);
        T_EQ(migr_get_le32(b + 4), 0);
        count = 0;
        memset(d, 0xa5, sizeof(d[0]) * nr);
        T_OK(migr_ranges_decode("PAGE_REQ", b, (size_t)n, d, &count));
        T_EQ(count, nr);
        for (uint32_t i = 0; i < nr; i++)
            T_ASSERT(d[i].pfn == r[i].pfn && d[i].npages == r[i].npages);
        if (nr == MIGR_RANGES_MAX)
            break;
    }
    /* The documented layout: u32 count, u32 reserved, count x {u64 pfn, u64 npages}. */
    r[0] = (struct migr_range){ .pfn = 0x100, .npages = 1 };
    r[1] = (struct migr_range){ .pfn = 0x0123456789abcull, .npages = 0x20000 };
    T_EQ(migr_ranges_encode("DISCARD", r, 2, b, sizeof(b)), 40);
    {
        static const uint8_t want[40] = {
            2, 0, 0, 0, 0, 0, 0, 0,
            0, 1, 0, 0, 0, 0, 0, 0,
            1, 0, 0, 0, 0, 0, 0, 0,
            0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0, 0,
            0, 0, 2, 0, 0, 0, 0, 0,
        };

        T_ASSERT(!memcmp(b, want, sizeof(want)));
    }
    T_OK(migr_ranges_decode("DISCARD", b, 40, d, &count));
    T_EQ(count, 2);
    T_ASSERT(d[1].pfn == 0x0123456789abcull && d[1].npages == 0x20000);
    /* The largest legal ranges end one page below pfn 2^52 - 1. */
    r[0] = (struct migr_range){ .pfn = (1ull << 52) - 2, .npages = 1 };
    r[1] = (struct migr_range){ .pfn = 0, .npages = (1ull << 52) - 1 };
    n = migr_ranges_encode("PAGE_REQ", r, 2, b, sizeof(b));
    T_OK(migr_ranges_decode("PAGE_REQ", b, (size_t)n, d, &count));
    T_ASSERT(d[0].pfn == (1ull << 52) - 2 && d[1].npages == (1ull << 52) - 1);

    /* Encoder refusals: only the count and the buffer are checked. */
    r[0] = (struct migr_range){ .pfn = 5, .npages = 1 };
    T_ERR(migr_ranges_encode("PAGE_REQ", r, 0, b, sizeof(b)), -EINVAL, "PAGE_REQ: 0 ranges (1..4096)");
    T_ERR(migr_ranges_encode("DISCARD", r, MIGR_RANGES_MAX + 1, b, sizeof(b)), -EINVAL,
          "DISCARD: 4097 ranges (1..4096)");
    T_ERR(migr_ranges_encode("DISCARD", r, 2, b, 39), -ENOSPC, "DISCARD: buffer of 39 bytes too small (need 40)");

    /* Decoder refusals, each starting from a valid 3-range encoding; the
     * messages name the record given by the caller. */
    for (uint32_t i = 0; i < 3; i++)
        r[i] = (struct migr_range){ .pfn = 0x1000ull * (i + 1), .npages = 4 * (i + 1) };
#define RNG(i) (b + 8 + 16 * (i))
#define RANGES_BAD(what, mutate, substr) do { \
        n = migr_ranges_encode(what, r, 3, b, sizeof(b)); \
        T_EQ(n, 8 + 16 * 3); \
        size_t len_ = (size_t)n; \
        (void)len_; \
        mutate; \
        T_ERR(migr_ranges_decode(what, b, len_, d, &count), -EBADMSG, substr); \
    } while (0)
    RANGES_BAD("PAGE_REQ", len_ = 0, "PAGE_REQ: meta length 0 shorter than 8");
    RANGES_BAD("PAGE_REQ", len_ = 7, "PAGE_REQ: meta length 7 shorter than 8");
    RANGES_BAD("DISCARD", len_ = 7, "DISCARD: meta length 7 shorter than 8");
    /* count 1..4096 */
    RANGES_BAD("PAGE_REQ", migr_put_le32(b, 0), "PAGE_REQ: count 0 out of range 1..4096");
    RANGES_BAD("DISCARD", migr_put_le32(b, 0), "DISCARD: count 0 out of range 1..4096");
    RANGES_BAD("PAGE_REQ", migr_put_le32(b, MIGR_RANGES_MAX + 1), "PAGE_REQ: count 4097 out of range 1..4096");
    RANGES_BAD("PAGE_REQ", migr_put_le32(b, UINT32_MAX), "PAGE_REQ: count 4294967295 out of range 1..4096");
    /* reserved 0 */
    RANGES_BAD("PAGE_REQ", b[4] = 1, "PAGE_REQ: reserved field not zero");
    RANGES_BAD("DISCARD", b[7] = 0x80, "DISCARD: reserved field not zero");
    /* exact length */
    RANGES_BAD("PAGE_REQ", len_ -= 1, "PAGE_REQ: meta length 55 (expected 56 for 3 ranges)");
    RANGES_BAD("PAGE_REQ", len_ += 1, "PAGE_REQ: meta length 57 (expected 56 for 3 ranges)");
    RANGES_BAD("PAGE_REQ", len_ += 16, "PAGE_REQ: meta length 72 (expected 56 for 3 ranges)");
    RANGES_BAD("DISCARD", len_ = 8, "DISCARD: meta length 8 (expected 56 for 3 ranges)");
    RANGES_BAD("PAGE_REQ", migr_put_le32(b, 2), "PAGE_REQ: meta length 56 (expected 40 for 2 ranges)");
    RANGES_BAD("PAGE_REQ", migr_put_le32(b, 4), "PAGE_REQ: meta length 56 (expected 72 for 4 ranges)");
    RANGES_BAD("PAGE_REQ", migr_put_le32(b, 1), "expected 24 for 1 ranges");
    /* npages >= 1 */
    RANGES_BAD("PAGE_REQ", migr_put_le64(RNG(0) + 8, 0),
               "PAGE_REQ: range 0 (pfn 0x1000, 0 pages) empty or past the address space");
    RANGES_BAD("DISCARD", migr_put_le64(RNG(2) + 8, 0),
               "DISCARD: range 2 (pfn 0x3000, 0 pages) empty or past the address space");
    /* not past the 2^52 pfn limit */
    RANGES_BAD("PAGE_REQ", migr_put_le64(RNG(1), 1ull << 52),
               "PAGE_REQ: range 1 (pfn 0x10000000000000, 8 pages) empty or past the address space");
    RANGES_BAD("PAGE_REQ", migr_put_le64(RNG(1), UINT64_MAX), "PAGE_REQ: range 1 (pfn 0xffffffffffffffff, 8 pages)");
    RANGES_BAD("PAGE_REQ", (migr_put_le64(RNG(1), (1ull << 52) - 1), migr_put_le64(RNG(1) + 8, 1)),
               "PAGE_REQ: range 1 (pfn 0xfffffffffffff, 1 pages) empty or past the address space");
    RANGES_BAD("DISCARD", migr_put_le64(RNG(2), (1ull << 52) - 8),
               "DISCARD: range 2 (pfn 0xffffffffffff8, 12 pages) empty or past the address space");
    RANGES_BAD("PAGE_REQ", (migr_put_le64(RNG(0), 0), migr_put_le64(RNG(0) + 8, 1ull << 52)),
               "PAGE_REQ: range 0 (pfn 0x0, 4503599627370496 pages) empty or past");
    RANGES_BAD("PAGE_REQ", migr_put_le64(RNG(0) + 8, UINT64_MAX),
               "PAGE_REQ: range 0 (pfn 0x1000, 18446744073709551615 pages) empty or past");
    /* a bad range after good ones is found too */
    RANGES_BAD("DISCARD", migr_put_le64(RNG(2) + 8, (1ull << 52) - 0x3000),
               "DISCARD: range 2 (pfn 0x3000, 4503599627358208 pages)");
#undef RANGES_BAD
#undef RNG

    T_ASSERT(!strcmp(migr_rec_type_name(MIGR_REC_PAGE_REQ), "PAGE_REQ"));
    T_ASSERT(!strcmp(migr_rec_type_name(MIGR_REC_DISCARD), "DISCARD"));
    T_ASSERT(!strcmp(migr_rec_type_name(MIGR_REC_EPOCH_END), "EPOCH_END"));
    T_ASSERT(!strcmp(migr_rec_type_name(11), "PAGE_REQ"));
    T_ASSERT(!strcmp(migr_rec_type_name(12), "DISCARD"));
    T_ASSERT(!strcmp(migr_rec_type_name(13), "COMPLETE"));
    T_ASSERT(!strcmp(migr_rec_type_name(14), "EPOCH_END"));
    T_ASSERT(!strcmp(migr_rec_type_name(15), "CANCEL"));
    T_ASSERT(!strcmp(migr_rec_type_name(16), "FAULT_CHANNEL"));
    T_ASSERT(!strcmp(migr_rec_type_name(17), "EPOCH_ACK"));
    T_EQ(MIGR_REC_TYPE_MAX_V1, 19);
}

/* ------------------------------------------------------- records over a socket */

struct chan {
    int wfd;                    /* raw writing end */
    struct migr_transport *r;   /* reading end */
    struct migr_transport *w;   /* the writing end as a transport (shares wfd) */
};

static void chan_open(struct chan *c)
{
    int sv[2];

    T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    c->wfd = sv[0];
    T_OK(migr_transport_from_fd(sv[1], "unix", "socketpair", &c->r));
    T_OK(migr_transport_from_fd(dup(sv[0]), "unix", "socketpair-w", &c->w));
}

/* Write raw bytes and, with eof, end the stream. */
static void chan_feed(struct chan *c, const void *buf, size_t len, int eof)
{
    T_OK(migr_write_full(c->wfd, buf, len));
    if (eof) {
        T_EQ(shutdown(c->wfd, SHUT_WR), 0);
    }
}

static void chan_close(struct chan *c)
{
    close(c->wfd);
    migr_transport_close(c->w);
    migr_transport_close(c->r);
}

/* A raw record with full control over every field. */
static size_t raw_record(uint8_t *out, uint16_t type, uint16_t flags, const void *m, uint32_t mlen,
                         uint32_t bulk_len)
{
    migr_put_le16(out, type);
    migr_put_le16(out + 2, flags);
    migr_put_le32(out + 4, mlen);
    migr_put_le32(out + 8, bulk_len);
    memcpy(out + 12, m, mlen);
    migr_put_le32(out + 12 + mlen, migr_crc32c(0, out, 12 + mlen));
    return 16 + mlen;
}

static const uint8_t good_preamble[16] = { 0x89, 'M', 'I', 'G', 'R', '\r', '\n', 0x1a, 1, 0, 0, 0, 0, 0, 0, 0 };

static void test_preamble(void)
{
    struct chan c;
    uint8_t p[16];

    chan_open(&c);
    T_OK(migr_preamble_send(c.w));
    T_OK(migr_transport_recv(c.r, p, 16));
    T_ASSERT(!memcmp(p, good_preamble, 16));   /* the documented bytes */
    chan_feed(&c, good_preamble, 16, 0);
    T_OK(migr_preamble_recv(c.r));
    chan_close(&c);

#define PRE_BAD(mutate, err, substr) do { \
        chan_open(&c); \
        memcpy(p, good_preamble, 16); \
        mutate; \
        chan_feed(&c, p, 16, 1); \
        T_ERR(migr_preamble_recv(c.r), err, substr); \
        chan_close(&c); \
    } while (0)
    PRE_BAD(p[0] = 0x88, -EPROTO, "not a migr stream (bad magic)");
    PRE_BAD(p[7] = 0, -EPROTO, "not a migr stream (bad magic)");
    PRE_BAD(p[8] = 7, -EPROTO, "stream version 7 not supported (this build reads 1)");
    PRE_BAD(p[9] = 1, -EPROTO, "stream version 257 not supported");
    PRE_BAD(p[8] = 0, -EPROTO, "stream version 0 not supported");
    PRE_BAD(p[10] = 1, -EPROTO, "preamble flags 0x0001 not zero");
    PRE_BAD(p[15] = 1, -EPROTO, "preamble reserved field 0x01000000 not zero");
#undef PRE_BAD
    chan_open(&c);
    chan_feed(&c, good_preamble, 10, 1);
    T_ERR(migr_preamble_recv(c.r), -EPIPE, "stream ended inside the preamble (10 of 16 bytes)");
    chan_close(&c);
    chan_open(&c);
    chan_feed(&c, good_preamble, 0, 1);
    T_ERR(migr_preamble_recv(c.r), -EPIPE, "stream ended before the preamble");
    chan_close(&c);
}

static void test_record_checks(void)
{
    uint8_t rec[64 + MIGR_ERROR_MSG_MAX], m[32];
    struct migr_rec_hdr h;
    struct chan c;
    uint64_t seq;
    size_t n;

    /* A good record, then each header/CRC corruption. */
    memset(m, 0, sizeof(m));
    migr_put_le32(m, 5);
#define REC_BAD(build, mutate, seq0, err, substr) do { \
        chan_open(&c); \
        n = build; \
        mutate; \
        chan_feed(&c, rec, n, 1); \
        seq = (seq0); \
        T_ERR(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX), err, substr); \
        T_EQ(seq, (seq0) + 1); \
        chan_close(&c); \
    } while (0)
    REC_BAD(raw_record(rec, 77, 0, m, 24, 0), (void)0, 4, -EBADMSG, "record 5: unknown type 77");
    REC_BAD(raw_record(rec, 0, 0, m, 24, 0), (void)0, 0, -EBADMSG, "record 1: unknown type 0");
    REC_BAD(raw_record(rec, 20, 0, m, 24, 0), (void)0, 0, -EBADMSG, "record 1: unknown type 20");
    REC_BAD(raw_record(rec, MIGR_REC_ROUND_END, 1, m, 24, 0), (void)0, 0, -EBADMSG,
            "record 1 (ROUND_END): flags 0x0001 not zero");
    REC_BAD(raw_record(rec, MIGR_REC_PAGES, 0, m, 24, 0), migr_put_le32(rec + 4, 2000000), 1841,
            -EBADMSG, "record 1842 (PAGES): meta length 2000000 exceeds 1048576");
    REC_BAD(raw_record(rec, MIGR_REC_PAGES, 0, m, 24, MIGR_BULK_MAX + 1), (void)0, 0, -EBADMSG,
            "record 1 (PAGES): bulk length 67108865 exceeds 67108864");
    REC_BAD(raw_record(rec, MIGR_REC_HELLO, 0, m, 24, 0), rec[12 + 3] ^= 0x10, 2, -EBADMSG,
            "record 3 (HELLO): CRC mismatch (got 0x");
    REC_BAD(raw_record(rec, MIGR_REC_HELLO, 0, m, 24, 0), rec[12 + 24] ^= 1, 0, -EBADMSG,
            "record 1 (HELLO): CRC mismatch");
    REC_BAD(raw_record(rec, MIGR_REC_STATE, 0, m, 24, 4096), (void)0, 0, -EBADMSG,
            "record 1 (STATE): bulk length 4096 (only PAGES records carry bulk)");
    REC_BAD(raw_record(rec, MIGR_REC_ROUND_END, 0, m, 24, 1), (void)0, 0, -EBADMSG,
            "record 1 (ROUND_END): bulk length 1 (only PAGES");
    REC_BAD(raw_record(rec, MIGR_REC_COMMIT, 0, m, 1, 0), (void)0, 0, -EBADMSG,
            "record 1 (COMMIT): meta length 1 (must be 0)");
    /* A corrupted length is caught by the CRC too (the stream has extra bytes). */
    REC_BAD(raw_record(rec, MIGR_REC_PAGES, 0, m, 24, 0), rec[8] = 1, 0, -EBADMSG,
            "record 1 (PAGES): CRC mismatch");

    /* meta larger than the caller's buffer */
    chan_open(&c);
    n = raw_record(rec, MIGR_REC_STATE, 0, m, 24, 0);
    chan_feed(&c, rec, n, 1);
    seq = 0;
    T_ERR(migr_rec_recv(c.r, &seq, &h, meta, 16), -EMSGSIZE,
          "record 1 (STATE): meta length 24 exceeds the buffer (16 bytes)");
    chan_close(&c);

    /* The CRC message carries both values. */
    chan_open(&c);
    n = raw_record(rec, MIGR_REC_HELLO, 0, m, 24, 0);
    {
        char want[128];
        uint32_t good = migr_get_le32(rec + 36);

        migr_put_le32(rec + 36, good ^ 0xdeadbeef);
        snprintf(want, sizeof(want), "CRC mismatch (got 0x%08x, computed 0x%08x)",
                 good ^ 0xdeadbeef, good);
        chan_feed(&c, rec, n, 1);
        seq = 0;
        T_ERR(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX), -EBADMSG, want);
    }
    chan_close(&c);

    /* Truncation at every byte of a record. */
    n = raw_record(rec, MIGR_REC_PAGES, 0, m, 24, 0);
    for (size_t cut = 0; cut < n; cut++) {
        char want[128];

        if (cut == 0)
            snprintf(want, sizeof(want), "stream ended before record 7");
        else if (cut < 2)
            snprintf(want, sizeof(want), "stream ended inside record 7 header (%zu of 12 bytes)", cut);
        else if (cut < 12)
            snprintf(want, sizeof(want), "stream ended inside record 7 (PAGES) header (%zu of 12 bytes)", cut);
        else if (cut < 36)
            snprintf(want, sizeof(want), "stream ended inside record 7 (PAGES) meta (%zu of 24 bytes)", cut - 12);
        else
            snprintf(want, sizeof(want), "stream ended inside record 7 (PAGES) CRC (%zu of 4 bytes)", cut - 36);
        chan_open(&c);
        chan_feed(&c, rec, cut, 1);
        seq = 6;
        T_ERR(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX), -EPIPE, want);
        chan_close(&c);
    }

    /* Sender-side refusals */
    chan_open(&c);
    T_ERR(migr_rec_send(c.w, 0, NULL, 0, NULL, 0), -EINVAL, "type 0 not defined");
    T_ERR(migr_rec_send(c.w, 20, NULL, 0, NULL, 0), -EINVAL, "type 20 not defined");
    T_ERR(migr_rec_send(c.w, MIGR_REC_STATE, meta, MIGR_META_MAX + 1, NULL, 0), -EINVAL,
          "meta length 1048577 exceeds 1048576");
    {
        struct iovec big[2] = { { meta, MIGR_BULK_MAX }, { meta, 1 } };

        T_ERR(migr_rec_send(c.w, MIGR_REC_PAGES, meta, 8, big, 2), -EINVAL,
              "bulk length 67108865 exceeds 67108864");
    }
    {
        struct iovec one = { meta, 1 };

        T_ERR(migr_rec_send(c.w, MIGR_REC_STATE, meta, 8, &one, 1), -EINVAL,
              "send record (STATE): only PAGES records carry bulk data");
        T_ERR(migr_rec_send(c.w, MIGR_REC_COMMIT, meta, 8, NULL, 0), -EINVAL,
              "send record (COMMIT): meta must be empty");
    }
    /* migr_rec_send_error keeps the caller's message. */
    migr_errorf(EIO, "the real problem");
    migr_rec_send_error(c.w, -ENOSPC, "no space left \x01 here");
    T_ASSERT(!strcmp(migr_last_error(), "the real problem"));
    seq = 0;
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_EQ(h.type, MIGR_REC_ERROR);
    {
        char msg[64];
        int code;

        T_OK(migr_error_decode(meta, h.meta_len, &code, msg, sizeof(msg)));
        T_EQ(code, ENOSPC);
        T_ASSERT(!strcmp(msg, "no space left ? here"));
    }
    chan_close(&c);

    /* A peer that does not read: the ERROR is dropped after a second
     * instead of blocking forever. */
    chan_open(&c);
    {
        static uint8_t fill[65536];
        uint64_t t0;

        while (send(c.wfd, fill, sizeof(fill), MSG_DONTWAIT) > 0)
            ;
        T_ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
        t0 = migr_now_ns();
        migr_rec_send_error(c.w, EIO, "nobody listens");
        T_ASSERT(migr_now_ns() - t0 < 5000000000ull);
    }
    chan_close(&c);
#undef REC_BAD
}

/* The sample records of docs/format.md, byte for byte: a format change that
 * alters them must update the document (and the version). */
static void test_golden(void)
{
    static const uint8_t commit[] = {
        0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xCD, 0x99, 0x35, 0xBD,
    };
    static const uint8_t round_end[] = {
        0x04, 0, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0,
        0x01, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0,
        0xCE, 0x17, 0x12, 0x0F,
    };
    struct migr_round_end re = { 1, 256, 3, 0 };
    uint8_t got[64], m[24];
    struct chan c;

    chan_open(&c);
    T_OK(migr_rec_send(c.w, MIGR_REC_COMMIT, NULL, 0, NULL, 0));
    T_OK(migr_transport_recv(c.r, got, sizeof(commit)));
    T_ASSERT(!memcmp(got, commit, sizeof(commit)));
    T_EQ(migr_round_end_encode(&re, m, sizeof(m)), 24);
    T_OK(migr_rec_send(c.w, MIGR_REC_ROUND_END, m, 24, NULL, 0));
    T_OK(migr_transport_recv(c.r, got, sizeof(round_end)));
    T_ASSERT(!memcmp(got, round_end, sizeof(round_end)));
    chan_close(&c);
}

/* ---------------------------------------- a whole session from a second thread */

#define BIG_PAGES 1024     /* bulk iovecs in one record: more than IOV_MAX with the header */
#define MIX_ENTRIES 4096

static uint8_t *pages_buf;  /* BIG_PAGES + MIX_ENTRIES pages of pattern */

static void fill_page(uint8_t *p, uint64_t pfn)
{
    for (size_t i = 0; i < MIGR_PAGE_SIZE; i += 8) {
        uint64_t v = pfn * 0x9E3779B97F4A7C15ull + i;

        memcpy(p + i, &v, 8);
    }
}

static void *session_sender(void *arg)
{
    static struct migr_page_entry e[MIX_ENTRIES];
    static struct iovec iov[MIX_ENTRIES];
    static uint8_t m[MIGR_PAGES_FIXED + MIGR_PAGE_ENTRY_SIZE * MIX_ENTRIES];
    struct migr_transport *t = arg;
    struct migr_hello h = sample_hello(2);
    struct migr_round_end re = { 1, BIG_PAGES, 10, 0 };
    struct migr_switchover so = { 2, 12345 };
    uint8_t state[3000];
    int n, niov = 0;

#define S(expr) do { if ((expr) < 0) { fprintf(stderr, "sender: %s: %s\n", #expr, migr_last_error()); return (void *)1; } } while (0)
    S(migr_preamble_send(t));
    S(n = migr_hello_encode(&h, m, sizeof(m)));
    S(migr_rec_send(t, MIGR_REC_HELLO, m, (uint32_t)n, NULL, 0));

    /* 1024 RAW pages, one iovec each */
    for (int i = 0; i < BIG_PAGES; i++) {
        uint8_t *p = pages_buf + (size_t)i * MIGR_PAGE_SIZE;

        e[i] = (struct migr_page_entry){ .pfn = (uint64_t)i, .enc = MIGR_ENC_RAW,
                                         .len = MIGR_PAGE_SIZE,
                                         .crc = migr_crc32c(0, p, MIGR_PAGE_SIZE) };
        iov[i] = (struct iovec){ p, MIGR_PAGE_SIZE };
    }
    S(n = migr_pages_encode(1, e, BIG_PAGES, m, sizeof(m)));
    S(migr_rec_send(t, MIGR_REC_PAGES, m, (uint32_t)n, iov, BIG_PAGES));
    S(n = migr_round_end_encode(&re, m, sizeof(m)));
    S(migr_rec_send(t, MIGR_REC_ROUND_END, m, (uint32_t)n, NULL, 0));

    /* A full batch: RAW pages mixed with zero runs */
    for (int i = 0; i < MIX_ENTRIES; i++) {
        uint8_t *p = pages_buf + (size_t)(BIG_PAGES + i) * MIGR_PAGE_SIZE;

        if (i % 4 == 1) {
            e[i] = (struct migr_page_entry){ .pfn = 5000 + 10ull * i, .enc = MIGR_ENC_ZERO, .len = 3 };
            continue;
        }
        e[i] = (struct migr_page_entry){ .pfn = 5000 + 10ull * i, .enc = MIGR_ENC_RAW,
                                         .len = MIGR_PAGE_SIZE,
                                         .crc = migr_crc32c(0, p, MIGR_PAGE_SIZE) };
        iov[niov++] = (struct iovec){ p, MIGR_PAGE_SIZE };
    }
    S(n = migr_pages_encode(2, e, MIX_ENTRIES, m, sizeof(m)));
    S(migr_rec_send(t, MIGR_REC_PAGES, m, (uint32_t)n, iov, niov));

    for (size_t i = 0; i < sizeof(state); i++)
        state[i] = (uint8_t)(i * 7);
    S(migr_rec_send(t, MIGR_REC_STATE, state, sizeof(state), NULL, 0));
    S(n = migr_switchover_encode(&so, m, sizeof(m)));
    S(migr_rec_send(t, MIGR_REC_SWITCHOVER, m, (uint32_t)n, NULL, 0));
    S(migr_rec_send(t, MIGR_REC_COMMIT, NULL, 0, NULL, 0));
    migr_rec_send_error(t, EIO, "bye");
#undef S
    return NULL;
}

static void check_pages(struct migr_transport *t, const struct migr_rec_hdr *h, uint32_t want_round,
                        uint32_t want_count, uint8_t *bulk)
{
    struct migr_page_entry e;
    uint32_t round, count;
    size_t off = 0;

    T_EQ(h->type, MIGR_REC_PAGES);
    T_OK(migr_pages_decode_hdr(meta, h->meta_len, h->bulk_len, &round, &count));
    T_EQ(round, want_round);
    T_EQ(count, want_count);
    T_OK(migr_transport_recv(t, bulk, h->bulk_len));
    for (uint32_t i = 0; i < count; i++) {
        uint8_t want[MIGR_PAGE_SIZE];

        T_OK(migr_page_entry_decode(meta, i, &e));
        if (e.enc == MIGR_ENC_ZERO) {
            T_EQ(e.len, 3);
            continue;
        }
        T_EQ(migr_crc32c(0, bulk + off, e.len), e.crc);
        fill_page(want, want_round == 1 ? e.pfn : BIG_PAGES + (e.pfn - 5000) / 10);
        T_ASSERT(!memcmp(want, bulk + off, MIGR_PAGE_SIZE));
        off += e.len;
    }
    T_EQ(off, h->bulk_len);
}

static void test_session(void)
{
    uint8_t *bulk = malloc((size_t)MIX_ENTRIES * MIGR_PAGE_SIZE);
    struct migr_rec_hdr h;
    struct migr_hello hello;
    struct migr_round_end re;
    struct migr_switchover so;
    struct chan c;
    pthread_t th;
    void *tret;
    uint64_t seq = 0;
    char msg[64];
    int code;

    T_ASSERT(bulk);
    pages_buf = malloc((size_t)(BIG_PAGES + MIX_ENTRIES) * MIGR_PAGE_SIZE);
    T_ASSERT(pages_buf);
    for (uint64_t i = 0; i < BIG_PAGES + MIX_ENTRIES; i++)
        fill_page(pages_buf + i * MIGR_PAGE_SIZE, i);

    chan_open(&c);
    T_EQ(pthread_create(&th, NULL, session_sender, c.w), 0);
    T_OK(migr_preamble_recv(c.r));
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_EQ(h.type, MIGR_REC_HELLO);
    T_OK(migr_hello_decode(meta, h.meta_len, &hello));
    T_EQ(hello.nregions, 2);
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_EQ(h.bulk_len, BIG_PAGES * MIGR_PAGE_SIZE);
    check_pages(c.r, &h, 1, BIG_PAGES, bulk);
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_EQ(h.type, MIGR_REC_ROUND_END);
    T_OK(migr_round_end_decode(meta, h.meta_len, &re));
    T_ASSERT(re.round == 1 && re.pages_sent == BIG_PAGES && re.dirty_pages == 10);
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    check_pages(c.r, &h, 2, MIX_ENTRIES, bulk);
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_EQ(h.type, MIGR_REC_STATE);
    T_EQ(h.meta_len, 3000);
    for (uint32_t i = 0; i < h.meta_len; i++)
        T_EQ(meta[i], (uint8_t)(i * 7));
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_OK(migr_switchover_decode(meta, h.meta_len, &so));
    T_ASSERT(so.rounds == 2 && so.total_pages_sent == 12345);
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_EQ(h.type, MIGR_REC_COMMIT);
    T_EQ(h.meta_len, 0);
    T_EQ(h.bulk_len, 0);
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_EQ(h.type, MIGR_REC_ERROR);
    T_OK(migr_error_decode(meta, h.meta_len, &code, msg, sizeof(msg)));
    T_ASSERT(code == EIO && !strcmp(msg, "bye"));
    T_EQ(seq, 8);
    T_EQ(pthread_join(th, &tret), 0);
    T_ASSERT(tret == NULL);
    T_EQ(c.w->bytes_sent, c.r->bytes_recv);
    chan_close(&c);
    /* Nothing more: a clean end between records. */
    free(bulk);
    free(pages_buf);
}

/* ------------------------------------------- garbage and mutated streams */

/* Read a whole stream the way a receiver would; it must end in a clean
 * error (writer closed, so never a hang). Returns the error. */
static int consume(struct migr_transport *t)
{
    static uint8_t bulk[1 << 16];
    struct migr_rec_hdr h;
    uint64_t seq = 0;
    int ret = migr_preamble_recv(t);

    while (ret == 0) {
        union {
            struct migr_hello hello;
            struct migr_round_end re;
            struct migr_switchover so;
            struct migr_ack ack;
        } u;
        struct migr_page_entry pe;
        uint32_t round, count;
        char msg[128];
        int code;

        ret = migr_rec_recv(t, &seq, &h, meta, MIGR_META_MAX);
        if (ret < 0)
            break;
        switch (h.type) {
        case MIGR_REC_HELLO: ret = migr_hello_decode(meta, h.meta_len, &u.hello); break;
        case MIGR_REC_ROUND_END: ret = migr_round_end_decode(meta, h.meta_len, &u.re); break;
        case MIGR_REC_SWITCHOVER: ret = migr_switchover_decode(meta, h.meta_len, &u.so); break;
        case MIGR_REC_READY: case MIGR_REC_DONE: ret = migr_ack_decode(meta, h.meta_len, &u.ack); break;
        case MIGR_REC_ERROR: ret = migr_error_decode(meta, h.meta_len, &code, msg, sizeof(msg)); break;
        case MIGR_REC_PAGES:
            ret = migr_pages_decode_hdr(meta, h.meta_len, h.bulk_len, &round, &count);
            for (uint32_t i = 0; ret == 0 && i < count; i++)
                ret = migr_page_entry_decode(meta, i, &pe);
            break;
        }
        /* Skip the bulk in pieces. */
        for (uint32_t left = h.bulk_len; ret == 0 && left; ) {
            uint32_t k = MIGR_MIN(left, (uint32_t)sizeof(bulk));

            ret = migr_transport_recv(t, bulk, k);
            left -= k;
        }
    }
    return ret;
}

static void check_clean_error(int ret, unsigned long long iter)
{
    if (ret != -EPIPE && ret != -EBADMSG && ret != -EPROTO && ret != -EMSGSIZE)
        T_FAIL("iteration %llu: unexpected result %d", iter, ret);
    if (!migr_last_error()[0])
        T_FAIL("iteration %llu: error %d without a message", iter, ret);
}

static void test_garbage(unsigned long long *rng)
{
    static uint8_t stream[16384];
    uint8_t valid[4096];
    size_t vlen = 0;
    struct chan c;

    /* A valid small stream to mutate. */
    {
        struct migr_hello h = sample_hello(2);
        struct migr_page_entry e[3] = {
            { .pfn = 1, .enc = MIGR_ENC_ZERO, .len = 5 },
            { .pfn = 9, .enc = MIGR_ENC_RAW, .len = MIGR_PAGE_SIZE },
            { .pfn = 10, .enc = MIGR_ENC_ZERO, .len = 1 },
        };
        uint8_t m[512], page[MIGR_PAGE_SIZE];
        int n;

        memcpy(valid, good_preamble, 16);
        vlen = 16;
        n = migr_hello_encode(&h, m, sizeof(m));
        vlen += raw_record(valid + vlen, MIGR_REC_HELLO, 0, m, (uint32_t)n, 0);
        memset(page, 0x5a, sizeof(page));
        e[1].crc = migr_crc32c(0, page, sizeof(page));
        n = migr_pages_encode(1, e, 3, m, sizeof(m));
        vlen += raw_record(valid + vlen, MIGR_REC_PAGES, 0, m, (uint32_t)n, MIGR_PAGE_SIZE);
        /* the page itself would not fit in valid[]; use a short fake bulk: the
         * stream ends inside it, which is one more clean error */
        memset(valid + vlen, 0x5a, 64);
        vlen += 64;
    }
    /* The unmutated stream ends inside the bulk. */
    chan_open(&c);
    chan_feed(&c, valid, vlen, 1);
    T_EQ(consume(c.r), -EPIPE);
    chan_close(&c);

    for (unsigned long long iter = 0; iter < 3000; iter++) {
        size_t len;
        int mode = (int)(iter % 3);

        if (mode == 0) {
            /* pure garbage, half the time behind a valid preamble */
            len = t_rand(rng) % sizeof(stream);
            for (size_t i = 0; i < len; i++)
                stream[i] = (uint8_t)t_rand(rng);
            if (len >= 16 && (iter & 4))
                memcpy(stream, good_preamble, 16);
        } else if (mode == 1) {
            /* valid stream with a few flipped bytes */
            len = vlen;
            memcpy(stream, valid, vlen);
            for (int k = 1 + (int)(t_rand(rng) % 4); k > 0; k--)
                stream[t_rand(rng) % len] ^= (uint8_t)(1 + t_rand(rng) % 255);
        } else {
            /* valid stream cut short at a random point */
            len = t_rand(rng) % vlen;
            memcpy(stream, valid, len);
        }
        chan_open(&c);
        chan_feed(&c, stream, len, 1);
        check_clean_error(consume(c.r), iter);
        chan_close(&c);
    }
}

/* ---------------------------------------------------------------- MEMFD */

static struct migr_memfd_desc sample_memfd(uint32_t nregions)
{
    struct migr_memfd_desc m = { .nregions = nregions };

    for (uint32_t i = 0; i < nregions; i++) {
        m.r[i].gpa = (uint64_t)i << 32;
        m.r[i].size = (uint64_t)(i + 1) << 20;
        m.r[i].off = (uint64_t)i << 24;
    }
    return m;
}

static void test_memfd(void)
{
    struct migr_memfd_desc m, d;
    uint8_t b[8 + 24 * MIGR_MAX_REGIONS + 24];
    int n;

    /* Round trips */
    for (uint32_t nr = 1; nr <= MIGR_MAX_REGIONS; nr += (nr < 4 ? 1 : 15)) {
        m = sample_memfd(nr);
        n = migr_memfd_encode(&m, b, sizeof(b));
        T_EQ(n, 8 + 24 * nr);
        T_EQ(migr_get_le32(b), nr);
        T_EQ(migr_get_le32(b + 4), 0);
        memset(&d, 0xa5, sizeof(d));
        T_OK(migr_memfd_decode(b, (size_t)n, &d));
        T_EQ(d.nregions, nr);
        for (uint32_t i = 0; i < nr; i++)
            T_ASSERT(d.r[i].gpa == m.r[i].gpa && d.r[i].size == m.r[i].size && d.r[i].off == m.r[i].off);
    }
    /* The documented layout: u32 nregions, u32 reserved, {u64 gpa, u64 size, u64 memfd_off}. */
    m = (struct migr_memfd_desc){ .nregions = 1 };
    m.r[0].gpa = 0x100000000ull;
    m.r[0].size = 0x40000000ull;
    m.r[0].off = 0x7ffffffff000ull;
    T_EQ(migr_memfd_encode(&m, b, sizeof(b)), 32);
    {
        static const uint8_t want[32] = {
            1, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 1, 0, 0, 0,
            0, 0, 0, 0x40, 0, 0, 0, 0,
            0, 0xf0, 0xff, 0xff, 0xff, 0x7f, 0, 0,
        };

        T_ASSERT(!memcmp(b, want, sizeof(want)));
    }
    T_OK(migr_memfd_decode(b, 32, &d));
    T_ASSERT(d.r[0].gpa == m.r[0].gpa && d.r[0].size == m.r[0].size && d.r[0].off == m.r[0].off);

    /* Encoder refusals */
    m = sample_memfd(3);
    T_ERR(migr_memfd_encode(&m, b, 8 + 24 * 3 - 1), -ENOSPC, "MEMFD: buffer of 79 bytes too small (need 80)");
    m.nregions = 0;
    T_ERR(migr_memfd_encode(&m, b, sizeof(b)), -EINVAL, "MEMFD: nregions 0 out of range 1..64");
    m.nregions = 65;
    T_ERR(migr_memfd_encode(&m, b, sizeof(b)), -EINVAL, "MEMFD: nregions 65 out of range 1..64");

    /* Decoder refusals, each starting from a valid 3-region encoding. */
    m = sample_memfd(3);
#define REG(i) (b + 8 + 24 * (i))
#define MEMFD_BAD(mutate, substr) do { \
        n = migr_memfd_encode(&m, b, sizeof(b)); \
        T_EQ(n, 8 + 24 * 3); \
        size_t len_ = (size_t)n; \
        (void)len_; \
        mutate; \
        T_ERR(migr_memfd_decode(b, len_, &d), -EBADMSG, substr); \
    } while (0)
    MEMFD_BAD(len_ = 0, "MEMFD: meta length 0 shorter than 8");
    MEMFD_BAD(len_ = 7, "MEMFD: meta length 7 shorter than 8");
    MEMFD_BAD(migr_put_le32(b, 0), "MEMFD: nregions 0 out of range 1..64");
    MEMFD_BAD(migr_put_le32(b, 65), "MEMFD: nregions 65 out of range 1..64");
    MEMFD_BAD(migr_put_le32(b, UINT32_MAX), "MEMFD: nregions 4294967295 out of range 1..64");
    MEMFD_BAD(b[4] = 1, "MEMFD: reserved field not zero");
    MEMFD_BAD(b[7] = 0x80, "MEMFD: reserved field not zero");
    MEMFD_BAD(len_ -= 1, "MEMFD: meta length 79 (expected 80 for 3 regions)");
    MEMFD_BAD(len_ += 1, "MEMFD: meta length 81 (expected 80 for 3 regions)");
    MEMFD_BAD(len_ = 8, "MEMFD: meta length 8 (expected 80 for 3 regions)");
    MEMFD_BAD(migr_put_le32(b, 2), "MEMFD: meta length 80 (expected 56 for 2 regions)");
    MEMFD_BAD(migr_put_le32(b, 4), "MEMFD: meta length 80 (expected 104 for 4 regions)");
    MEMFD_BAD(migr_put_le64(REG(1), (1ull << 32) + 512),
              "MEMFD: region 1 (gpa 0x100000200 size 0x200000 offset 0x1000000) not page aligned or empty");
    MEMFD_BAD(migr_put_le64(REG(0), 1), "MEMFD: region 0 (gpa 0x1 ");
    MEMFD_BAD(migr_put_le64(REG(2) + 8, 4095),
              "MEMFD: region 2 (gpa 0x200000000 size 0xfff offset 0x2000000) not page aligned or empty");
    MEMFD_BAD(migr_put_le64(REG(2) + 8, (3ull << 20) + 2048), "MEMFD: region 2 (gpa 0x200000000 size 0x300800 ");
    MEMFD_BAD(migr_put_le64(REG(0) + 16, 4096 + 8),
              "MEMFD: region 0 (gpa 0x0 size 0x100000 offset 0x1008) not page aligned or empty");
    MEMFD_BAD(migr_put_le64(REG(1) + 16, UINT64_MAX), "MEMFD: region 1 (gpa 0x100000000 size 0x200000 offset 0xffffffffffffffff)");
    MEMFD_BAD(migr_put_le64(REG(1) + 8, 0),
              "MEMFD: region 1 (gpa 0x100000000 size 0x0 offset 0x1000000) not page aligned or empty");
    MEMFD_BAD(migr_put_le64(REG(2) + 8, 0), "MEMFD: region 2 (gpa 0x200000000 size 0x0 ");
#undef MEMFD_BAD
#undef REG
    /* Page-aligned extremes are fine: the decoder leaves range checks to the
     * receiver's comparison with HELLO. */
    m = sample_memfd(1);
    m.r[0].gpa = 0;
    m.r[0].size = 4096;
    m.r[0].off = UINT64_MAX & ~4095ull;
    n = migr_memfd_encode(&m, b, sizeof(b));
    T_OK(migr_memfd_decode(b, (size_t)n, &d));
    T_EQ(d.r[0].off, UINT64_MAX & ~4095ull);
    T_ASSERT(!strcmp(migr_rec_type_name(MIGR_REC_MEMFD), "MEMFD"));
}

/* The descriptor message after MEMFD: one byte 'F' with exactly n
 * descriptors as SCM_RIGHTS; anything else is refused. */
static void test_memfd_message(void)
{
    int pfd[2], fds[MIGR_MAX_REGIONS], got[MIGR_MAX_REGIONS];
    struct chan c;
    char x;

    T_EQ(pipe(pfd), 0);
    for (int i = 0; i < 3; i++)
        fds[i] = i % 2 ? pfd[1] : pfd[0];

    /* Good: three descriptors arrive and name the same files. */
    chan_open(&c);
    T_OK(migr_transport_send_fds(c.w, fds, 3));
    T_EQ(c.w->bytes_sent, 1);
    T_OK(migr_transport_recv_fds(c.r, got, 3));
    T_EQ(c.r->bytes_recv, 1);
    T_EQ(write(got[1], "z", 1), 1);
    T_EQ(read(got[0], &x, 1), 1);
    T_EQ(x, 'z');
    for (int i = 0; i < 3; i++)
        close(got[i]);
    chan_close(&c);

    /* The byte on the wire is 0x46. */
    chan_open(&c);
    T_OK(migr_transport_send_fds(c.w, fds, 1));
    T_OK(migr_transport_recv(c.r, &x, 1));
    T_EQ(x, 0x46);
    chan_close(&c);

    /* Sender-side refusals */
    chan_open(&c);
    T_ERR(migr_transport_send_fds(c.w, fds, 0), -EINVAL, "send_fds: 0 descriptors (1..64)");
    T_ERR(migr_transport_send_fds(c.w, fds, 65), -EINVAL, "send_fds: 65 descriptors (1..64)");
    T_ERR(migr_transport_recv_fds(c.r, got, 0), -EINVAL, "recv_fds: 0 descriptors (1..64)");
    chan_close(&c);
    {
        int sv[2];
        struct migr_transport *t;

        T_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        T_OK(migr_transport_from_fd(sv[0], "tcp", "not-unix", &t));
        T_ERR(migr_transport_send_fds(t, fds, 1), -ENOTSUP, "passing memory to not-unix needs a unix socket");
        migr_transport_close(t);
        close(sv[1]);
    }

    /* Receiver refusals: no byte at all (stream ends) */
    chan_open(&c);
    chan_feed(&c, "", 0, 1);
    T_ERR(migr_transport_recv_fds(c.r, got, 1), -EPIPE, "closed the stream before passing memory");
    chan_close(&c);
    /* ... another byte, without descriptors (e.g. the next record) */
    chan_open(&c);
    chan_feed(&c, "\x03", 1, 1);
    T_ERR(migr_transport_recv_fds(c.r, got, 1), -EBADMSG,
          "expected 1 memory descriptors from socketpair, got 0 (no descriptor message)");
    chan_close(&c);
    /* ... the byte 'F' without descriptors */
    chan_open(&c);
    chan_feed(&c, "F", 1, 1);
    T_ERR(migr_transport_recv_fds(c.r, got, 2), -EBADMSG, "expected 2 memory descriptors from socketpair, got 0");
    chan_close(&c);
    /* ... fewer descriptors than the MEMFD record announced */
    chan_open(&c);
    T_OK(migr_transport_send_fds(c.w, fds, 2));
    T_ERR(migr_transport_recv_fds(c.r, got, 3), -EBADMSG, "expected 3 memory descriptors from socketpair, got 2");
    chan_close(&c);
    /* ... more descriptors than fit the receiver's control buffer (truncated) */
    chan_open(&c);
    {
        int many[MIGR_MAX_REGIONS + 6];
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(many))];
        } cb;
        char byte = 'F';
        struct iovec iov = { &byte, 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.buf,
                             .msg_controllen = sizeof(cb.buf) };
        struct cmsghdr *ch;

        memset(&cb, 0, sizeof(cb));
        ch = CMSG_FIRSTHDR(&mh);
        for (size_t i = 0; i < MIGR_ARRAY_SIZE(many); i++)
            many[i] = pfd[0];
        ch->cmsg_level = SOL_SOCKET;
        ch->cmsg_type = SCM_RIGHTS;
        ch->cmsg_len = CMSG_LEN(sizeof(many));
        memcpy(CMSG_DATA(ch), many, sizeof(many));
        T_EQ(sendmsg(c.wfd, &mh, 0), 1);
        T_ERR(migr_transport_recv_fds(c.r, got, MIGR_MAX_REGIONS), -EBADMSG, "expected 64 memory descriptors");
    }
    chan_close(&c);
    close(pfd[0]);
    close(pfd[1]);
}

/* -------------------------------------------- post-copy records on the wire */

/* The post-copy samples of docs/format.md byte for byte, and the framing
 * rules of the new types (CANCEL has empty meta, like COMMIT). */
static void test_postcopy_records(void)
{
    static const uint8_t page_req[] = {
        0x0B, 0, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0,
        0x01, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
        0xA5, 0x64, 0x84, 0x9D,
    };
    static const uint8_t epoch_end[] = {
        0x0E, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0,
        0x03, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
        0xF8, 0x8B, 0x1E, 0xE8,
    };
    static const uint8_t cancel[] = {
        0x0F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBC, 0x4E, 0x57, 0x33,
    };
    struct migr_range rg = { .pfn = 0x100, .npages = 1 }, d;
    struct migr_ack ep = { .pages = 3, .t_ns = MIGR_EPOCH_FINAL }, a;
    struct migr_rec_hdr h;
    uint8_t got[64], m[32], rec[64];
    uint32_t count;
    uint64_t seq;
    struct chan c;
    size_t n;
    int len;

    T_EQ(MIGR_EPOCH_FINAL, 1);
    chan_open(&c);
    len = migr_ranges_encode("PAGE_REQ", &rg, 1, m, sizeof(m));
    T_EQ(len, 24);
    T_OK(migr_rec_send(c.w, MIGR_REC_PAGE_REQ, m, (uint32_t)len, NULL, 0));
    T_OK(migr_transport_recv(c.r, got, sizeof(page_req)));
    T_ASSERT(!memcmp(got, page_req, sizeof(page_req)));
    T_EQ(migr_ack_encode(&ep, m, sizeof(m)), 16);
    T_OK(migr_rec_send(c.w, MIGR_REC_EPOCH_END, m, 16, NULL, 0));
    T_OK(migr_transport_recv(c.r, got, sizeof(epoch_end)));
    T_ASSERT(!memcmp(got, epoch_end, sizeof(epoch_end)));
    T_OK(migr_rec_send(c.w, MIGR_REC_CANCEL, NULL, 0, NULL, 0));
    T_OK(migr_transport_recv(c.r, got, sizeof(cancel)));
    T_ASSERT(!memcmp(got, cancel, sizeof(cancel)));
    /* A CANCEL with meta is never sent. */
    T_ERR(migr_rec_send(c.w, MIGR_REC_CANCEL, m, 8, NULL, 0), -EINVAL, "meta must be empty");
    chan_close(&c);

    /* The sample bytes read back as what they say. */
    chan_open(&c);
    chan_feed(&c, page_req, sizeof(page_req), 0);
    chan_feed(&c, epoch_end, sizeof(epoch_end), 0);
    chan_feed(&c, cancel, sizeof(cancel), 1);
    seq = 0;
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_EQ(h.type, MIGR_REC_PAGE_REQ);
    T_OK(migr_ranges_decode("PAGE_REQ", meta, h.meta_len, &d, &count));
    T_ASSERT(count == 1 && d.pfn == 0x100 && d.npages == 1);
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_EQ(h.type, MIGR_REC_EPOCH_END);
    T_OK(migr_ack_decode(meta, h.meta_len, &a));
    T_ASSERT(a.pages == 3 && (a.t_ns & MIGR_EPOCH_FINAL));
    T_OK(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX));
    T_EQ(h.type, MIGR_REC_CANCEL);
    T_EQ(h.meta_len, 0);
    T_EQ(seq, 3);
    T_ERR(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX), -EPIPE, "stream ended before record 4");
    chan_close(&c);

    /* Header checks: CANCEL must have empty meta; no new type carries bulk. */
    memset(m, 0, sizeof(m));
#define PC_BAD(build, seq0, err, substr) do { \
        chan_open(&c); \
        n = build; \
        chan_feed(&c, rec, n, 1); \
        seq = (seq0); \
        T_ERR(migr_rec_recv(c.r, &seq, &h, meta, MIGR_META_MAX), err, substr); \
        chan_close(&c); \
    } while (0)
    PC_BAD(raw_record(rec, MIGR_REC_CANCEL, 0, m, 1, 0), 56, -EBADMSG,
           "record 57 (CANCEL): meta length 1 (must be 0)");
    PC_BAD(raw_record(rec, MIGR_REC_CANCEL, 0, m, 16, 0), 0, -EBADMSG,
           "record 1 (CANCEL): meta length 16 (must be 0)");
    PC_BAD(raw_record(rec, MIGR_REC_PAGE_REQ, 0, m, 24, 4096), 0, -EBADMSG,
           "record 1 (PAGE_REQ): bulk length 4096 (only PAGES records carry bulk)");
    PC_BAD(raw_record(rec, MIGR_REC_DISCARD, 0, m, 24, 1), 0, -EBADMSG, "record 1 (DISCARD): bulk length 1");
    PC_BAD(raw_record(rec, MIGR_REC_COMPLETE, 0, m, 16, 16), 0, -EBADMSG, "record 1 (COMPLETE): bulk length 16");
    PC_BAD(raw_record(rec, MIGR_REC_EPOCH_END, 0, m, 16, 8), 0, -EBADMSG, "record 1 (EPOCH_END): bulk length 8");
    PC_BAD(raw_record(rec, MIGR_REC_CANCEL, 0, m, 0, 4096), 0, -EBADMSG, "record 1 (CANCEL): bulk length 4096");
    PC_BAD(raw_record(rec, MIGR_REC_EPOCH_END, 1, m, 16, 0), 0, -EBADMSG, "record 1 (EPOCH_END): flags 0x0001 not zero");
    PC_BAD(raw_record(rec, 20, 0, m, 0, 0), 0, -EBADMSG, "record 1: unknown type 20");
#undef PC_BAD
    /* EPOCH_END and COMPLETE have the 16-byte READY/DONE layout. */
    T_ERR(migr_ack_decode(m, 8, &a), -EBADMSG, "meta length 8 (expected 16)");
}

int main(void)
{
    unsigned long long seed = t_seed(), rng = seed;

    test_hello();
    test_pages();
    test_small();
    test_ranges();
    test_memfd();
    test_preamble();
    test_record_checks();
    test_golden();
    test_session();
    test_garbage(&rng);
    test_memfd_message();
    test_postcopy_records();
    return 0;
}
