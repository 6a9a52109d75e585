/* tinyvmm — a small "VMM" that embeds libmigr and migrates itself.
 *
 * It shares no code with migr's own VMMs: its guest is two RAM regions with a
 * hole between them (gpa 0, 4 MiB and gpa 16 MiB, 8 MiB), each a memfd of its
 * own; two writer threads play the vCPUs; a device-state blob of its own
 * carries their counters and a device register; it logs its own writes for
 * libmigr (a dirty tracker it offers through its ops) and builds the incoming
 * guest itself (a builder registered for its VMM type, "tinyvmm").
 *
 *   tinyvmm recv URL              receive one guest, check it, let it run, check again
 *   tinyvmm send URL [postcopy]   start a guest, let it run, migrate it to URL
 *
 * The guest's memory: region 0's first 4 pages hold a generation table (one
 * u32 per data page); every other page is a data page. Writer k owns the data
 * pages d with d % 2 == k: it fills page d for generation g = gen[d] + 1,
 * then stores gen[d] = g, then counts the write in its counter (state blob),
 * then logs both pages dirty. So whenever the writers are paused:
 *   - every data page holds exactly fill(d, gen[d]) (none stale, none torn);
 *   - the sum of gen[] equals the sum of the writers' counters.
 * The receiver checks both right after the migration and again after the
 * guest has run on; the sender prints its device register, the receiver the
 * one it loaded, and the test compares them.
 *
 * Build: cc -std=c11 tinyvmm.c $(pkg-config --cflags --libs migr) */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <migr/common.h>
#include <migr/dirty.h>
#include <migr/engine.h>
#include <migr/hv.h>
#include <migr/transport.h>

#define PAGE 4096u
#define NWRITERS 2u
#define GEN_PAGES 4u
static const struct migr_layout_region LAYOUT[2] = {{0, 4u << 20}, {16u << 20, 8u << 20}};
#define R0_PAGES (LAYOUT[0].size / PAGE)
#define NDATA (R0_PAGES - GEN_PAGES + LAYOUT[1].size / PAGE)
#define STATE_MAGIC "TINYVMM1"

struct tiny;
struct writer_arg {
    struct tiny *vm;
    uint32_t k;
};

struct tiny {
    struct migr_hv hv;            /* first: a struct migr_hv * is a struct tiny * */
    struct writer_arg wargs[NWRITERS];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int run, stop, parked;        /* writers run while run; parked counts the waiting ones */
    pthread_t writers[NWRITERS];
    uint64_t counter[NWRITERS];   /* device state: writes per writer */
    uint64_t device_reg;          /* device state: a register */
    uint64_t *log;                /* dirty log, one bit per RAM index */
    uint64_t log_words;
};

/* ---------- memory ---------- */

static uint8_t *data_page(struct tiny *vm, uint64_t d)
{
    uint64_t i = GEN_PAGES + d;
    return i < R0_PAGES ? vm->hv.regions[0].host + i * PAGE : vm->hv.regions[1].host + (i - R0_PAGES) * PAGE;
}

static uint32_t *gen_table(struct tiny *vm) { return (uint32_t *)vm->hv.regions[0].host; }

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static void fill(uint8_t *page, uint64_t d, uint32_t gen)
{
    uint64_t *w = (uint64_t *)page;
    for (unsigned i = 0; i < PAGE / 8; i++)
        w[i] = mix(d * 1000003u + gen * 7919u + i);
}

static int page_ok(const uint8_t *page, uint64_t d, uint32_t gen)
{
    const uint64_t *w = (const uint64_t *)page;
    for (unsigned i = 0; i < PAGE / 8; i++)
        if (w[i] != (gen ? mix(d * 1000003u + gen * 7919u + i) : 0))
            return 0;
    return 1;
}

/* The RAM index (region 0's pages, then region 1's) of a host address. */
static void log_dirty(struct tiny *vm, const void *p)
{
    uint64_t base = 0;
    for (uint32_t r = 0; r < vm->hv.nregions; r++) {
        const uint8_t *h = vm->hv.regions[r].host;
        if ((const uint8_t *)p >= h && (const uint8_t *)p < h + vm->hv.regions[r].size) {
            uint64_t i = base + (uint64_t)((const uint8_t *)p - h) / PAGE;
            __atomic_fetch_or(&vm->log[i / 64], 1ull << (i % 64), __ATOMIC_RELEASE);
            return;
        }
        base += vm->hv.regions[r].size / PAGE;
    }
}

/* ---------- the vCPUs ---------- */

static void *writer(void *arg)
{
    struct writer_arg *a = arg;
    struct tiny *vm = a->vm;
    uint32_t k = a->k;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (k + 1) ^ (uint64_t)time(NULL);
    pthread_mutex_lock(&vm->lock);
    for (;;) {
        while (!vm->run && !vm->stop) {
            vm->parked++;
            pthread_cond_broadcast(&vm->cond);
            pthread_cond_wait(&vm->cond, &vm->lock);
            vm->parked--;
        }
        if (vm->stop)
            break;
        pthread_mutex_unlock(&vm->lock);
        for (int n = 0; n < 16; n++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            uint64_t d = (rng % (NDATA / NWRITERS)) * NWRITERS + k;
            uint32_t *gen = gen_table(vm), g = gen[d] + 1;
            fill(data_page(vm, d), d, g);
            __atomic_store_n(&gen[d], g, __ATOMIC_RELEASE);
            vm->counter[k]++;
            log_dirty(vm, data_page(vm, d)); /* after the write: a harvest that takes the bit saw it */
            log_dirty(vm, &gen[d]);
        }
        usleep(200);
        pthread_mutex_lock(&vm->lock);
    }
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

static int tiny_pause(struct migr_hv *hv)
{
    struct tiny *vm = (struct tiny *)hv;
    pthread_mutex_lock(&vm->lock);
    vm->run = 0;
    while (vm->parked < (int)NWRITERS)
        pthread_cond_wait(&vm->cond, &vm->lock);
    pthread_mutex_unlock(&vm->lock);
    hv->paused = true;
    return 0;
}

static int tiny_resume(struct migr_hv *hv)
{
    struct tiny *vm = (struct tiny *)hv;
    pthread_mutex_lock(&vm->lock);
    vm->run = 1;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    hv->paused = false;
    return 0;
}

/* ---------- device state ---------- */

struct blob {
    char magic[8];
    uint64_t counter[NWRITERS];
    uint64_t device_reg;
};

static int tiny_save(struct migr_hv *hv, uint8_t **out, size_t *len)
{
    struct tiny *vm = (struct tiny *)hv;
    struct blob *b = malloc(sizeof(*b));
    if (!b)
        return -ENOMEM;
    memcpy(b->magic, STATE_MAGIC, 8);
    memcpy(b->counter, vm->counter, sizeof(b->counter));
    b->device_reg = vm->device_reg;
    *out = (uint8_t *)b;
    *len = sizeof(*b);
    return 0;
}

static int tiny_load(struct migr_hv *hv, const uint8_t *blob, size_t len)
{
    struct tiny *vm = (struct tiny *)hv;
    struct blob b;
    if (len != sizeof(b))
        return -EBADMSG;
    memcpy(&b, blob, sizeof(b));
    if (memcmp(b.magic, STATE_MAGIC, 8) != 0)
        return -EBADMSG;
    memcpy(vm->counter, b.counter, sizeof(b.counter));
    vm->device_reg = b.device_reg;
    return 0;
}

static void tiny_destroy(struct migr_hv *hv)
{
    struct tiny *vm = (struct tiny *)hv;
    pthread_mutex_lock(&vm->lock);
    vm->stop = 1;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    for (uint32_t k = 0; k < NWRITERS; k++)
        if (vm->writers[k])
            pthread_join(vm->writers[k], NULL);
    for (uint32_t r = 0; r < hv->nregions; r++) {
        if (hv->regions[r].host)
            munmap(hv->regions[r].host, hv->regions[r].size);
        if (hv->regions[r].memfd >= 0)
            close(hv->regions[r].memfd);
    }
    free(vm->log);
    free(vm);
}

/* ---------- its own dirty tracker ---------- */

static int log_supported(struct migr_hv *hv) { return hv->ops->save_state == tiny_save; }
static int log_start(struct migr_dirty *d) { (void)d; return 0; } /* the log runs from creation on */
static void log_stop(struct migr_dirty *d) { (void)d; }

static long log_harvest(struct migr_dirty *d, uint64_t *bm)
{
    struct tiny *vm = (struct tiny *)d->hv;
    long added = 0;
    for (uint64_t w = 0; w < vm->log_words; w++) {
        uint64_t bits = __atomic_exchange_n(&vm->log[w], 0, __ATOMIC_ACQ_REL);
        added += __builtin_popcountll(bits & ~bm[w]);
        bm[w] |= bits;
    }
    return added;
}

static const struct migr_dirty_ops tiny_log = {
    .name = "tinyvmm-log", .supported = log_supported, .start = log_start, .harvest = log_harvest, .stop = log_stop,
};
static const struct migr_dirty_ops *const tiny_trackers[] = {&tiny_log, NULL};

static const struct migr_hv_ops tiny_ops = {
    .name = "tinyvmm",
    .pause = tiny_pause,
    .resume = tiny_resume,
    .save_state = tiny_save,
    .load_state = tiny_load,
    .destroy = tiny_destroy,
    .trackers = tiny_trackers,
};

/* A paused guest of LAYOUT on fresh memfds. */
static int tiny_create(struct tiny **out)
{
    struct tiny *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return -ENOMEM;
    pthread_mutex_init(&vm->lock, NULL);
    pthread_cond_init(&vm->cond, NULL);
    vm->hv.ops = &tiny_ops;
    vm->hv.nvcpus = NWRITERS;
    vm->hv.state_version = 1;
    vm->hv.kvm_vm_fd = -1;
    vm->hv.paused = true;
    vm->hv.nregions = 2;
    for (uint32_t r = 0; r < 2; r++) {
        struct migr_hv_region *g = &vm->hv.regions[r];
        *g = (struct migr_hv_region){.gpa = LAYOUT[r].gpa, .size = LAYOUT[r].size, .memfd = -1, .slot = r};
        vm->hv.ram_pages += g->size / PAGE;
        if ((g->memfd = memfd_create("tinyvmm-ram", MFD_CLOEXEC)) < 0 || ftruncate(g->memfd, (off_t)g->size) < 0 ||
            (g->host = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0)) == MAP_FAILED) {
            int err = -errno;
            g->host = NULL;
            tiny_destroy(&vm->hv);
            return err;
        }
    }
    vm->log_words = (vm->hv.ram_pages + 63) / 64;
    if (!(vm->log = calloc(vm->log_words, 8))) {
        tiny_destroy(&vm->hv);
        return -ENOMEM;
    }
    for (uint32_t k = 0; k < NWRITERS; k++)
        if ((vm->wargs[k] = (struct writer_arg){vm, k}, pthread_create(&vm->writers[k], NULL, writer, &vm->wargs[k])) != 0) {
            tiny_destroy(&vm->hv);
            return -EAGAIN;
        }
    tiny_pause(&vm->hv);
    *out = vm;
    return 0;
}

/* The destination: libmigr hands us the announced layout. */
static int build(void *arg, const struct migr_vm_layout *l, const int *memfds, const uint64_t *offs,
                 struct migr_hv **out)
{
    (void)arg, (void)offs;
    if (memfds || l->nregions != 2 || l->nvcpus != NWRITERS)
        return -EINVAL;
    for (uint32_t r = 0; r < 2; r++)
        if (l->regions[r].gpa != LAYOUT[r].gpa || l->regions[r].size != LAYOUT[r].size) {
            fprintf(stderr, "tinyvmm: region %u at 0x%llx+%llu is not mine\n", r,
                    (unsigned long long)l->regions[r].gpa, (unsigned long long)l->regions[r].size);
            return -EINVAL;
        }
    struct tiny *vm;
    int err = tiny_create(&vm);
    if (err == 0)
        *out = &vm->hv;
    return err;
}

static const struct migr_hv_builder builder = {.vmm = "tinyvmm", .create = build};

/* ---------- checks and the two roles ---------- */

static int check(struct tiny *vm, const char *when)
{
    uint64_t sum = 0, written = 0, bad = 0;
    for (uint64_t d = 0; d < NDATA; d++) {
        uint32_t g = gen_table(vm)[d];
        sum += g;
        written += g > 0;
        if (!page_ok(data_page(vm, d), d, g) && bad++ == 0)
            fprintf(stderr, "tinyvmm: %s: data page %llu does not hold generation %u\n", when,
                    (unsigned long long)d, g);
    }
    uint64_t writes = 0;
    for (uint32_t k = 0; k < NWRITERS; k++)
        writes += vm->counter[k];
    printf("tinyvmm: %s: %llu pages written, %llu writes, generations sum %llu, %llu bad pages\n", when,
           (unsigned long long)written, (unsigned long long)writes, (unsigned long long)sum, (unsigned long long)bad);
    if (sum != writes)
        fprintf(stderr, "tinyvmm: %s: memory and device state disagree (%llu vs %llu)\n", when,
                (unsigned long long)sum, (unsigned long long)writes);
    return bad == 0 && sum == writes && written > 0 ? 0 : -1;
}

static int do_recv(const char *url)
{
    struct migr_listener *l;
    struct migr_transport *t;
    struct migr_hv *hv;
    struct migr_stats st = MIGR_STATS_INIT;
    if (migr_hv_register_builder(&builder) < 0 || migr_listener_open(url, &l) < 0) {
        fprintf(stderr, "tinyvmm recv: %s\n", migr_last_error());
        return 1;
    }
    printf("listening %s\n", l->bound);
    fflush(stdout);
    if (migr_listener_accept(l, 20000, &t) < 0 || migr_recv(t, &hv, &st) < 0) {
        fprintf(stderr, "tinyvmm recv: %s\n", st.error[0] ? st.error : migr_last_error());
        return 1;
    }
    migr_transport_close(t);
    migr_listener_close(l);
    struct tiny *vm = (struct tiny *)hv;
    printf("received: mode %s, %llu pages, tracker '%s', device_reg %llx\n", st.mode,
           (unsigned long long)st.pages, st.tracker, (unsigned long long)vm->device_reg);
    int rc = 0;
    tiny_pause(hv);
    rc |= check(vm, "after the migration");
    uint64_t before = vm->counter[0] + vm->counter[1];
    tiny_resume(hv);
    usleep(200000);
    tiny_pause(hv);
    if (vm->counter[0] + vm->counter[1] <= before) {
        fprintf(stderr, "tinyvmm: the guest does not run after the migration\n");
        rc = -1;
    }
    rc |= check(vm, "after running on");
    tiny_destroy(hv);
    return rc ? 1 : 0;
}

static int do_send(const char *url, int postcopy)
{
    struct tiny *vm;
    struct migr_transport *t;
    struct migr_send_params p;
    struct migr_stats st = MIGR_STATS_INIT;
    if (tiny_create(&vm) < 0)
        return 1;
    vm->device_reg = mix((uint64_t)time(NULL) ^ (uint64_t)getpid());
    tiny_resume(&vm->hv);
    usleep(300000);
    migr_send_params_init(&p);
    p.mode = postcopy ? MIGR_MODE_POSTCOPY : MIGR_MODE_PRECOPY;
    if (migr_transport_connect(url, &t) < 0) {
        fprintf(stderr, "tinyvmm send: %s\n", migr_last_error());
        return 1;
    }
    int rc = migr_send(&vm->hv, t, &p, &st);
    migr_transport_close(t);
    if (rc < 0) {
        fprintf(stderr, "tinyvmm send: %s\n", st.error);
        return 1;
    }
    printf("sent: mode %s, tracker %s, %u rounds, downtime %.2f ms, device_reg %llx\n", st.mode, st.tracker,
           st.precopy.rounds, (double)st.downtime_ns / 1e6, (unsigned long long)vm->device_reg);
    tiny_destroy(&vm->hv);
    /* pre-copy harvests our log on this side (post-copy tracks on the destination) */
    return postcopy || strcmp(st.tracker, "tinyvmm-log") == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "recv") == 0)
        return do_recv(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "send") == 0)
        return do_send(argv[2], argc >= 4 && strcmp(argv[3], "postcopy") == 0);
    fprintf(stderr, "usage: tinyvmm recv URL | tinyvmm send URL [postcopy]\n");
    return 2;
}
