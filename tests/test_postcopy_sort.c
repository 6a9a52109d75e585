/* The post-copy switch's sort of pages (engine_pc_sort, 64 pages a word)
 * against the page-by-page loop it replaced, on random bitmaps: the same
 * resident and zero pages, the same count of valid pages, the same runs
 * punched (coalesced across words), for sizes that end inside a word and
 * with bits set past the end of RAM (ignored); a punch failure is passed on. */
#include <stdint.h>
#include "migr/dirty.h"
#include "engine/postcopy_sort.h"
#include "testlib.h"

#define MAXP 2000
#define MAXRUNS MAXP

struct runs {
    uint64_t first[MAXRUNS], n[MAXRUNS];
    uint32_t count;
    int fail_at;                  /* >0: the fail_at-th punch fails */
};

static int punch_rec(void *arg, uint64_t first, uint64_t n)
{
    struct runs *r = arg;
    if (r->fail_at && r->count + 1 == (uint32_t)r->fail_at)
        return -EIO;
    T_ASSERT(r->count < MAXRUNS && n > 0);
    r->first[r->count] = first;
    r->n[r->count++] = n;
    return 0;
}

/* The loop engine_postcopy_prepare had before (page by page). */
static int64_t sort_ref(const struct engine_pc_pages *p, uint64_t *resident, uint64_t *zero, struct runs *out)
{
    uint64_t run = 0, run_len = 0, resolved = 0;
    for (uint64_t i = 0; i < p->npages; i++) {
        bool valid = migr_bit_test(p->received, i) && !migr_bit_test(p->torn, i);
        bool alloc = migr_bit_test(p->alloc, i);
        if (valid && (alloc || migr_bit_test(p->nonzero, i))) {
            migr_bit_set(resident, i);
            resolved++;
        } else if (valid) {
            migr_bit_set(zero, i);
            resolved++;
        }
        bool drop = alloc && !valid;
        if (drop && run_len && run + run_len == i) {
            run_len++;
            continue;
        }
        if (run_len)
            punch_rec(out, run, run_len);
        run_len = drop ? 1 : 0;
        run = i;
    }
    if (run_len)
        punch_rec(out, run, run_len);
    return (int64_t)resolved;
}

/* A word of a random density: empty, full, sparse or dense. */
static uint64_t rand_word(unsigned long long *seed)
{
    switch (t_rand(seed) % 5) {
    case 0: return 0;
    case 1: return ~0ull;
    case 2: return t_rand(seed) & t_rand(seed) & t_rand(seed);
    case 3: return t_rand(seed) | t_rand(seed);
    default: return t_rand(seed);
    }
}

int main(void)
{
    unsigned long long seed = t_seed();
    static uint64_t bm[4][MAXP / 64 + 1], res[2][MAXP / 64 + 1], zero[2][MAXP / 64 + 1];
    static struct runs got, want;
    for (int iter = 0; iter < 20000; iter++) {
        uint64_t npages = 1 + t_rand(&seed) % MAXP, words = migr_bitmap_words(npages);
        for (int b = 0; b < 4; b++)
            for (uint64_t w = 0; w < words; w++)
                bm[b][w] = rand_word(&seed);
        memset(res, 0, sizeof(res));
        memset(zero, 0, sizeof(zero));
        memset(&got, 0, sizeof(got));
        memset(&want, 0, sizeof(want));
        struct engine_pc_pages p = {.received = bm[0], .torn = bm[1], .alloc = bm[2], .nonzero = bm[3],
                                    .npages = npages};
        int64_t nw = engine_pc_sort(&p, res[0], zero[0], punch_rec, &got);
        int64_t nr = sort_ref(&p, res[1], zero[1], &want);
        T_EQ(nw, nr);
        T_ASSERT(memcmp(res[0], res[1], words * 8) == 0);
        T_ASSERT(memcmp(zero[0], zero[1], words * 8) == 0);
        T_EQ(got.count, want.count);
        for (uint32_t i = 0; i < got.count; i++) {
            T_EQ(got.first[i], want.first[i]);
            T_EQ(got.n[i], want.n[i]);
        }
        if (want.count) { /* a failing punch stops the sort with its error */
            memset(&got, 0, sizeof(got));
            got.fail_at = 1 + (int)(t_rand(&seed) % want.count);
            T_EQ(engine_pc_sort(&p, res[0], zero[0], punch_rec, &got), -EIO);
        }
    }
    return 0;
}
