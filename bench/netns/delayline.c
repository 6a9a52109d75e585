/* bench/netns/delayline: a user-space delay line between two interfaces, for
 * kernels without netem (this one: sch_netem is not built). Runs in a middle
 * network namespace holding one end of each veth pair and forwards every
 * Ethernet frame from one interface to the other after DELAY microseconds,
 * in order, each direction on its own thread; optionally drops one frame in
 * LOSS_PPM per million at random.
 *
 *     delayline IFACE_A IFACE_B DELAY_US [LOSS_PPM]
 *
 * Frames are read and written with PACKET_VNET_HDR, so a TSO/GSO frame of up
 * to 64 KiB and a frame whose checksum the sender left to the hardware
 * (CHECKSUM_PARTIAL on veth) pass through as they came: the kernel segments
 * and checksums them on the way out. Queued bytes live in a ring per
 * direction (RING_BYTES); a frame that finds the ring full is dropped, as a
 * full router queue would. Exits on SIGTERM/SIGINT; prints per-direction
 * frame, byte and drop counts on stderr at exit. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING_BYTES (64u << 20)
#define MAX_FRAME  (65536u + sizeof(struct virtio_net_hdr) + 64u)

struct rec {
    uint32_t len;
    uint32_t pad;
    uint64_t due_ns;
};

#define NO_WRAP ((size_t)-1)

struct dir {
    const char *from, *to;
    int rx, tx;
    uint64_t delay_ns;
    uint32_t loss_ppm;
    uint64_t rng;
    uint8_t *ring, *scratch;
    size_t head, tail, used;   /* records in [tail, head), or [tail, wrap) + [0, head) once wrapped */
    size_t wrap;               /* where the writer went back to 0, NO_WRAP if it has not */
    uint64_t frames, bytes, dropped_full, dropped_loss, errors;
};

static volatile sig_atomic_t stop;

static void on_signal(int s)
{
    (void)s;
    stop = 1;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int open_sock(const char *ifname, int proto)
{
    unsigned idx = if_nametoindex(ifname);
    if (!idx) {
        fprintf(stderr, "delayline: interface %s: %s\n", ifname, strerror(errno));
        return -1;
    }
    int fd = socket(AF_PACKET, SOCK_RAW, htons(proto));
    if (fd < 0) {
        fprintf(stderr, "delayline: AF_PACKET socket: %s (needs CAP_NET_RAW)\n", strerror(errno));
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0) {
        fprintf(stderr, "delayline: PACKET_VNET_HDR on %s: %s\n", ifname, strerror(errno));
        close(fd);
        return -1;
    }
    int buf = 32 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf));   /* best effort: more headroom */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf));
    struct sockaddr_ll sa = {.sll_family = AF_PACKET, .sll_protocol = htons(proto), .sll_ifindex = (int)idx};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "delayline: bind to %s: %s\n", ifname, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Room for one more record of MAX_FRAME bytes, or NULL (the ring is full). */
static struct rec *reserve(struct dir *d)
{
    size_t need = sizeof(struct rec) + MAX_FRAME;
    if (!d->used) {
        d->head = d->tail = 0;
        d->wrap = NO_WRAP;
    }
    if (d->wrap == NO_WRAP) {          /* records in [tail, head) */
        if (RING_BYTES - d->head >= need)
            return (struct rec *)(d->ring + d->head);
        if (d->tail <= need)
            return NULL;
        d->wrap = d->head;
        d->head = 0;
    }
    return d->tail - d->head > need ? (struct rec *)(d->ring + d->head) : NULL;
}

static void send_due(struct dir *d, uint64_t now)
{
    while (d->used) {
        if (d->tail == d->wrap) {
            d->tail = 0;
            d->wrap = NO_WRAP;
        }
        struct rec *r = (struct rec *)(d->ring + d->tail);
        if (r->due_ns > now)
            return;
        if (send(d->tx, r + 1, r->len, 0) < 0)
            d->errors++;
        size_t sz = (sizeof(*r) + r->len + 7) & ~(size_t)7;
        d->tail += sz;
        d->used -= sz;
    }
}

/* When the oldest queued frame is due (0 if none is queued). */
static uint64_t next_due(struct dir *d)
{
    if (!d->used)
        return 0;
    size_t t = d->tail == d->wrap ? 0 : d->tail;
    return ((struct rec *)(d->ring + t))->due_ns;
}

static void *run(void *arg)
{
    struct dir *d = arg;
    struct pollfd p = {.fd = d->rx, .events = POLLIN};
    while (!stop) {
        uint64_t now = now_ns();
        send_due(d, now);
        struct timespec ts = {0, 100000000};   /* wake up for stop */
        uint64_t due = next_due(d);
        if (due) {
            uint64_t w = due > now ? due - now : 0;
            ts = (struct timespec){(time_t)(w / 1000000000ull), (long)(w % 1000000000ull)};
        }
        int n = ppoll(&p, 1, &ts, NULL);
        if (n <= 0)
            continue;
        for (int burst = 0; burst < 64; burst++) {
            struct sockaddr_ll from;
            socklen_t fl = sizeof(from);
            struct rec *r = reserve(d);
            uint8_t *buf = r ? (uint8_t *)(r + 1) : d->scratch;
            ssize_t len = recvfrom(d->rx, buf, MAX_FRAME, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
            if (len < 0)
                break;
            if (from.sll_pkttype == PACKET_OUTGOING)
                continue;   /* our own transmissions on this interface */
            if (!r) {
                d->dropped_full++;
                continue;
            }
            if (d->loss_ppm) {
                d->rng ^= d->rng << 13; d->rng ^= d->rng >> 7; d->rng ^= d->rng << 17;
                if (d->rng % 1000000 < d->loss_ppm) {
                    d->dropped_loss++;
                    continue;
                }
            }
            r->len = (uint32_t)len;
            r->due_ns = now_ns() + d->delay_ns;
            size_t sz = (sizeof(*r) + (size_t)len + 7) & ~(size_t)7;
            d->head += sz;
            d->used += sz;
            d->frames++;
            d->bytes += (uint64_t)len;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: delayline IFACE_A IFACE_B DELAY_US [LOSS_PPM]\n");
        return 2;
    }
    char *end;
    unsigned long us = strtoul(argv[3], &end, 10), ppm = 0;
    if (*end || us > 10000000) {
        fprintf(stderr, "delayline: DELAY_US %s: 0..10000000\n", argv[3]);
        return 2;
    }
    if (argc == 5 && ((ppm = strtoul(argv[4], &end, 10)) > 1000000 || *end)) {
        fprintf(stderr, "delayline: LOSS_PPM %s: 0..1000000\n", argv[4]);
        return 2;
    }
    struct dir d[2] = {{.from = argv[1], .to = argv[2]}, {.from = argv[2], .to = argv[1]}};
    for (int i = 0; i < 2; i++) {
        d[i].rx = open_sock(d[i].from, ETH_P_ALL);
        d[i].tx = open_sock(d[i].to, 0);   /* protocol 0: sends only, receives nothing */
        d[i].ring = malloc(RING_BYTES);
        d[i].scratch = malloc(MAX_FRAME);
        d[i].wrap = NO_WRAP;
        if (d[i].rx < 0 || d[i].tx < 0 || !d[i].ring || !d[i].scratch)
            return 1;
        d[i].delay_ns = (uint64_t)us * 1000;
        d[i].loss_ppm = (uint32_t)ppm;
        d[i].rng = 0x9e3779b97f4a7c15ull + (uint64_t)i + (uint64_t)getpid();
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, run, &d[1]) != 0) {
        fprintf(stderr, "delayline: pthread_create failed\n");
        return 1;
    }
    fprintf(stderr, "delayline: %s <-> %s, %lu us each way, loss %lu ppm\n", argv[1], argv[2], us, ppm);
    run(&d[0]);
    pthread_join(t, NULL);
    for (int i = 0; i < 2; i++)
        fprintf(stderr, "delayline: %s -> %s: %llu frames, %llu bytes, dropped %llu (queue full) + %llu (loss), "
                "%llu send errors\n", d[i].from, d[i].to, (unsigned long long)d[i].frames,
                (unsigned long long)d[i].bytes, (unsigned long long)d[i].dropped_full,
                (unsigned long long)d[i].dropped_loss, (unsigned long long)d[i].errors);
    return 0;
}
