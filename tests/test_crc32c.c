/* CRC-32C: known vectors, hardware path == table path, chaining. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migr/crc32c.h"
#include "common/crc32c_impl.h"
#include "testlib.h"

static void check_vectors(uint32_t (*f)(uint32_t, const void *, size_t), const char *name)
{
    uint8_t buf[64];

    if (f(0, "123456789", 9) != 0xE3069283u)
        T_FAIL("%s(\"123456789\") = 0x%08x", name, f(0, "123456789", 9));
    T_EQ(f(0, "", 0), 0);
    T_EQ(f(0x12345678, "", 0), 0x12345678);   /* empty input leaves the CRC alone */
    T_EQ(f(0, "a", 1), 0xC1D04330u);
    /* RFC 3720 (iSCSI) B.4 test vectors */
    memset(buf, 0, 32);
    T_EQ(f(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, 32);
    T_EQ(f(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    T_EQ(f(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    T_EQ(f(0, buf, 32), 0x113FDB5Cu);
}

/* Bit-at-a-time reference, independent of both implementations' tables. */
static uint32_t ref_crc(uint32_t crc, const uint8_t *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

int main(void)
{
    unsigned long long seed = t_seed();
    const size_t max = 3 * 4096 * 4 + 64;
    uint8_t *buf = malloc(max + 16);
    int hw = migr_crc32c_hw_available();

    T_ASSERT(buf);
    check_vectors(migr_crc32c, "migr_crc32c");
    check_vectors(migr_crc32c_sw, "migr_crc32c_sw");
    if (hw)
        check_vectors(migr_crc32c_hw, "migr_crc32c_hw");

    for (size_t i = 0; i < max + 16; i++)
        buf[i] = (uint8_t)t_rand(&seed);

    /* Every length around the 3-stream threshold (3 * 1360) and page sizes. */
    static const size_t edges[] = { 4079, 4080, 4081, 4087, 4088, 4095, 4096, 4097, 8159, 8160,
                                    8161, 12240, 12241, 16384 };
    for (size_t e = 0; e < MIGR_ARRAY_SIZE(edges); e++) {
        for (size_t al = 0; al < 8; al++) {
            uint32_t want = ref_crc(0, buf + al, edges[e]);

            T_EQ(migr_crc32c_sw(0, buf + al, edges[e]), want);
            T_EQ(migr_crc32c(0, buf + al, edges[e]), want);
            if (hw)
                T_EQ(migr_crc32c_hw(0, buf + al, edges[e]), want);
        }
    }
    for (size_t len = 0; len < 300; len++)
        T_EQ(migr_crc32c_sw(0, buf + (len & 7), len), ref_crc(0, buf + (len & 7), len));

    /* Random lengths, alignments and initial values: hw == table. */
    for (int iter = 0; iter < 20000; iter++) {
        size_t off = t_rand(&seed) % 16;
        size_t len = t_rand(&seed) % (iter & 1 ? max : 256);
        uint32_t init = (iter & 3) ? (uint32_t)t_rand(&seed) : 0;
        uint32_t sw = migr_crc32c_sw(init, buf + off, len);

        if (hw && migr_crc32c_hw(init, buf + off, len) != sw)
            T_FAIL("hw != sw: len %zu off %zu init 0x%08x", len, off, init);
        T_EQ(migr_crc32c(init, buf + off, len), sw);
        if (iter < 500)
            T_EQ(ref_crc(init, buf + off, len), sw);
    }

    /* Chaining: crc(crc(0, a), b) == crc(0, a || b) for any split. */
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = t_rand(&seed) % max;
        size_t cut = len ? t_rand(&seed) % (len + 1) : 0;
        uint32_t whole = migr_crc32c(0, buf, len);

        T_EQ(migr_crc32c(migr_crc32c(0, buf, cut), buf + cut, len - cut), whole);
        T_EQ(migr_crc32c_sw(migr_crc32c_sw(0, buf, cut), buf + cut, len - cut), whole);
    }
    free(buf);
    return 0;
}
