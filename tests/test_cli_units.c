/* The CLI's one grammar for sizes, rates and times (cli/units.c): a table of
 * good and bad spellings with the value each must give. */
#include "cli/units.c"
#include "testlib.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "FAIL: "); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); failures++; } } while (0)

static const struct {
    const char *text;
    int ok;
    uint64_t bytes;
} sizes[] = {
    {"0", 1, 0}, {"4096", 1, 4096}, {"4096B", 1, 4096}, {"64M", 1, 64ull << 20}, {"64m", 1, 64ull << 20},
    {"512MiB", 1, 512ull << 20}, {"512mib", 1, 512ull << 20}, {"1.5G", 1, 3ull << 29}, {"1.5GiB", 1, 3ull << 29},
    {"2T", 1, 2ull << 40}, {"1K", 1, 1024}, {"1KiB", 1, 1024}, {"1KB", 1, 1000}, {"100MB", 1, 100000000},
    {"1GB", 1, 1000000000}, {"0.5K", 1, 512}, {"16T", 1, 16ull << 40},
    {"", 0, 0}, {"M", 0, 0}, {"-1", 0, 0}, {"+1", 0, 0}, {"0x10", 0, 0}, {"1e3", 0, 0}, {"1.", 1, 1},
    {".5K", 1, 512}, {"1.5", 0, 0}, {"1.0001K", 0, 0}, {"12Q", 0, 0}, {"1 M", 0, 0}, {" 1M", 0, 0},
    {"1MiBs", 0, 0}, {"99999999999T", 0, 0}, {"18446744073709551616", 0, 0}, {"abc", 0, 0},
};

static const struct {
    const char *text;
    double bare;
    int ok;
    double s;
} times[] = {
    {"1s", 1, 1, 1}, {"0.5", 1, 1, 0.5}, {"500ms", 1, 1, 0.5}, {"500", 1e-3, 1, 0.5}, {"28d", 1, 1, 28 * 86400.0},
    {"2h", 1, 1, 7200}, {"1.5m", 1, 1, 90}, {"10min", 1, 1, 600}, {"41", 1, 1, 41}, {"1S", 1, 1, 1},
    {"", 1, 0, 0}, {"s", 1, 0, 0}, {"-1s", 1, 0, 0}, {"1y", 1, 0, 0}, {"forever", 1, 0, 0}, {"1 s", 1, 0, 0},
    {"nan", 1, 0, 0}, {"inf", 1, 0, 0},
};

int main(void)
{
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(sizes); i++) {
        uint64_t v = 12345;
        int r = cli_parse_size(sizes[i].text, &v);
        if (sizes[i].ok) {
            CHECK(r == 0, "size '%s' refused: %s", sizes[i].text, migr_last_error());
            CHECK(v == sizes[i].bytes, "size '%s' = %llu, expected %llu", sizes[i].text, (unsigned long long)v,
                  (unsigned long long)sizes[i].bytes);
        } else {
            CHECK(r < 0, "size '%s' accepted as %llu", sizes[i].text, (unsigned long long)v);
            CHECK(strstr(migr_last_error(), sizes[i].text) != NULL, "size '%s': the message does not quote it: %s",
                  sizes[i].text, migr_last_error());
        }
    }
    uint64_t r;
    CHECK(cli_parse_rate("100M", &r) == 0 && r == 100ull << 20, "rate 100M");
    CHECK(cli_parse_rate("100MiB/s", &r) == 0 && r == 100ull << 20, "rate 100MiB/s");
    CHECK(cli_parse_rate("100MB/s", &r) == 0 && r == 100000000, "rate 100MB/s");
    CHECK(cli_parse_rate("/s", &r) < 0, "rate /s accepted");
    CHECK(cli_parse_rate("100M/h", &r) < 0, "rate 100M/h accepted");
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(times); i++) {
        double s = -7;
        int rc = cli_parse_time(times[i].text, times[i].bare, &s);
        if (times[i].ok)
            CHECK(rc == 0 && s > times[i].s - 1e-9 && s < times[i].s + 1e-9, "time '%s' = %g (rc %d), expected %g",
                  times[i].text, s, rc, times[i].s);
        else
            CHECK(rc < 0, "time '%s' accepted as %g", times[i].text, s);
    }
    uint64_t ms;
    CHECK(cli_parse_ms("10s", 1e-3, 0, 3600000, &ms) == 0 && ms == 10000, "10s in ms");
    CHECK(cli_parse_ms("250", 1e-3, 100, 3600000, &ms) == 0 && ms == 250, "bare ms");
    CHECK(cli_parse_ms("50ms", 1e-3, 100, 3600000, &ms) < 0, "below the range accepted");
    CHECK(strstr(migr_last_error(), "range"), "range message: %s", migr_last_error());
    char buf[32];
    cli_fmt_size(512.0 * 1048576, buf, sizeof(buf));
    CHECK(strcmp(buf, "512.0 MiB") == 0, "fmt 512 MiB: %s", buf);
    CHECK(cli_parse_size("512.0MiB", &r) == 0 && r == 512ull << 20, "what migr prints (512.0MiB) parses back");
    /* Random strings never crash and never yield a value for trailing garbage. */
    unsigned seed = (unsigned)t_seed(), seed0 = seed;
    const char alpha[] = "0123456789.KMGTkmgtiBbs/ -+xe";
    for (int i = 0; i < 20000; i++) {
        char t[12];
        int n = (int)(rand_r(&seed) % (sizeof(t) - 1));
        for (int j = 0; j < n; j++)
            t[j] = alpha[rand_r(&seed) % (sizeof(alpha) - 1)];
        t[n] = 0;
        uint64_t v;
        double d;
        if (cli_parse_size(t, &v) == 0)
            CHECK(strchr(t, ' ') == NULL && strchr(t, '-') == NULL && strchr(t, '+') == NULL, "size '%s' accepted", t);
        if (cli_parse_time(t, 1, &d) == 0)
            CHECK(d >= 0 && strchr(t, ' ') == NULL, "time '%s' accepted as %g", t, d);
    }
    if (failures)
        fprintf(stderr, "%d check(s) failed (seed %u)\n", failures, seed0);
    return failures ? 1 : 0;
}
