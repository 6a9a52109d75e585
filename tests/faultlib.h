/* Fault injection from outside the library: a record-aware relay.
 *
 * fl_relay_start() listens on a TCP port of 127.0.0.1 (r->url, where the
 * source connects) and, once the source has connected, connects to the
 * destination and copies both directions on a thread each, parsing the
 * record framing of docs/format.md (the source's preamble, then records:
 * 12-byte header, meta, CRC, bulk). A rule picks a record by direction,
 * type and number (the nth of that type in that direction) and does to it
 * what a network could: drop it, delay it, corrupt it, or cut the link just
 * before or just after it (both connections shut down both ways).
 *
 *   { FL_TO_SRC, MIGR_REC_COMPLETE, 1, FL_CUT_BEFORE }  the link breaks with COMPLETE in flight
 *   { FL_TO_DST, MIGR_REC_COMMIT,   2, FL_CUT_BEFORE }  ... with the source's release in flight
 *
 * TCP only (no descriptor passing). Further connections (the post-copy
 * fault channel, which the source opens the same way as the stream) are
 * relayed as plain bytes, without rules; a cut cuts them too.
 */
#ifndef MIGR_TEST_FAULTLIB_H
#define MIGR_TEST_FAULTLIB_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "migr/common.h"
#include "migr/format.h"
#include "testlib.h"

enum fl_dir { FL_TO_DST, FL_TO_SRC };
enum fl_action { FL_DROP = 1, FL_DELAY, FL_CORRUPT, FL_CUT_BEFORE, FL_CUT_AFTER };

struct fl_rule {
    enum fl_dir dir;
    uint16_t type;                /* MIGR_REC_* */
    uint32_t nth;                 /* 1 = the first record of that type in that direction */
    enum fl_action act;
    uint32_t delay_ms;            /* FL_DELAY */
};

#define FL_MAX_RULES 8

struct fl_relay {
    char url[64];                 /* connect the source here */
    int lfd, src, dst;
    uint16_t dst_port;
    struct fl_rule rules[FL_MAX_RULES];
    int nrules;
    uint32_t seen[2][32];         /* records per direction and type */
    int fired;                    /* rules applied; atomic */
    pthread_t acceptor, copier[2];
    bool copying;
    int side[4][2];               /* further connections: source end, destination end */
    pthread_t side_th[4][2];
    int nside;
};

static inline bool fl_io(int fd, void *buf, size_t n, bool wr)
{
    for (size_t done = 0; done < n;) {
        ssize_t k = wr ? send(fd, (char *)buf + done, n - done, MSG_NOSIGNAL) : recv(fd, (char *)buf + done, n - done, 0);
        if (k <= 0)
            return false;
        done += (size_t)k;
    }
    return true;
}

/* Copy (or, to < 0, swallow) n bytes from one socket to the other. */
static inline bool fl_copy(int from, int to, uint64_t n, bool corrupt)
{
    char buf[65536];
    while (n) {
        size_t k = n < sizeof(buf) ? (size_t)n : sizeof(buf);
        if (!fl_io(from, buf, k, false))
            return false;
        if (corrupt)
            buf[0] ^= 0x01;
        corrupt = false;
        if (to >= 0 && !fl_io(to, buf, k, true))
            return false;
        n -= k;
    }
    return true;
}

static inline void fl_cut(struct fl_relay *r)
{
    shutdown(r->src, SHUT_RDWR);
    shutdown(r->dst, SHUT_RDWR);
    for (int i = 0; i < __atomic_load_n(&r->nside, __ATOMIC_ACQUIRE); i++)
        for (int e = 0; e < 2; e++)
            shutdown(r->side[i][e], SHUT_RDWR);
}

/* A further connection, one direction: bytes as they come. */
static inline void *fl_side_pump(void *arg)
{
    int *fds = arg; /* from, to */
    char buf[65536];
    ssize_t k;
    while ((k = recv(fds[0], buf, sizeof(buf), 0)) > 0 && fl_io(fds[1], buf, (size_t)k, true))
        ;
    shutdown(fds[1], SHUT_WR);
    free(fds);
    return NULL;
}

static inline int fl_connect_dst(struct fl_relay *r)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(r->dst_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;
        close(fd);
        fd = -1;
        errno = e;
    }
    return fd;
}

struct fl_copier_arg {
    struct fl_relay *r;
    enum fl_dir dir;
};

static inline void *fl_copier(void *arg)
{
    struct fl_copier_arg *a = arg;
    struct fl_relay *r = a->r;
    enum fl_dir dir = a->dir;
    free(a);
    int from = dir == FL_TO_DST ? r->src : r->dst, to = dir == FL_TO_DST ? r->dst : r->src;
    if (dir == FL_TO_DST && !fl_copy(from, to, MIGR_PREAMBLE_SIZE, false))
        goto out;
    for (;;) {
        uint8_t h[MIGR_REC_HDR_SIZE];
        if (!fl_io(from, h, sizeof(h), false))
            break;
        uint16_t type = migr_get_le16(h);
        uint64_t rest = (uint64_t)migr_get_le32(h + 4) + 4 + migr_get_le32(h + 8);
        uint32_t nth = type < 32 ? ++r->seen[dir][type] : 0;
        enum fl_action act = 0;
        for (int i = 0; i < r->nrules; i++)
            if (r->rules[i].dir == dir && r->rules[i].type == type && r->rules[i].nth == nth) {
                act = r->rules[i].act;
                if (act == FL_DELAY)
                    usleep(r->rules[i].delay_ms * 1000u);
                __atomic_fetch_add(&r->fired, 1, __ATOMIC_RELAXED);
            }
        if (act == FL_CUT_BEFORE) {
            fl_cut(r);
            break;
        }
        bool drop = act == FL_DROP;
        if ((!drop && !fl_io(to, h, sizeof(h), true)) || !fl_copy(from, drop ? -1 : to, rest, act == FL_CORRUPT))
            break;
        if (act == FL_CUT_AFTER) {
            fl_cut(r);
            break;
        }
    }
out:
    shutdown(to, SHUT_WR); /* pass the end of the stream on */
    return NULL;
}

static inline void *fl_acceptor(void *arg)
{
    struct fl_relay *r = arg;
    if ((r->src = accept(r->lfd, NULL, NULL)) < 0)
        return NULL;
    if ((r->dst = fl_connect_dst(r)) < 0) {
        close(r->src);
        r->src = -1;
        return NULL;
    }
    for (int d = 0; d < 2; d++) {
        struct fl_copier_arg *ca = malloc(sizeof(*ca));
        T_ASSERT(ca != NULL);
        *ca = (struct fl_copier_arg){r, (enum fl_dir)d};
        T_ASSERT(pthread_create(&r->copier[d], NULL, fl_copier, ca) == 0);
    }
    r->copying = true;
    while (r->nside < 4) {
        int i = r->nside, c = accept(r->lfd, NULL, NULL), d = c < 0 ? -1 : fl_connect_dst(r);
        if (c < 0)
            break; /* fl_relay_join shut the listener down */
        if (d < 0) { /* said, so that a lost fault channel has a reason in the log */
            fprintf(stderr, "fl_relay: side connection %d dropped: connect to 127.0.0.1:%u: %s\n", i,
                    (unsigned)r->dst_port, strerror(errno));
            close(c);
            continue;
        }
        r->side[i][0] = c;
        r->side[i][1] = d;
        for (int e = 0; e < 2; e++) {
            int *fds = malloc(2 * sizeof(int));
            T_ASSERT(fds != NULL);
            fds[0] = r->side[i][e];
            fds[1] = r->side[i][!e];
            T_ASSERT(pthread_create(&r->side_th[i][e], NULL, fl_side_pump, fds) == 0);
        }
        __atomic_store_n(&r->nside, i + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* Relay to the destination listening on 127.0.0.1:dst_port, applying rules. */
static inline void fl_relay_start(struct fl_relay *r, uint16_t dst_port, const struct fl_rule *rules, int nrules)
{
    memset(r, 0, sizeof(*r));
    r->src = r->dst = -1;
    r->dst_port = dst_port;
    T_ASSERT(nrules <= FL_MAX_RULES);
    memcpy(r->rules, rules, sizeof(*rules) * (size_t)nrules);
    r->nrules = nrules;
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t al = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    T_ASSERT((r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
    T_ASSERT(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(r->lfd, 4) == 0);
    T_ASSERT(getsockname(r->lfd, (struct sockaddr *)&a, &al) == 0);
    snprintf(r->url, sizeof(r->url), "tcp:127.0.0.1:%u", ntohs(a.sin_port));
    T_ASSERT(pthread_create(&r->acceptor, NULL, fl_acceptor, r) == 0);
}

/* The port of a "tcp:HOST:PORT" URL (a listener's bound address). */
static inline uint16_t fl_port(const char *url)
{
    const char *c = strrchr(url, ':');
    return c ? (uint16_t)atoi(c + 1) : 0;
}

/* Wait for both directions to end; returns how many rules fired. */
static inline int fl_relay_join(struct fl_relay *r)
{
    if (r->copying)
        for (int d = 0; d < 2; d++)
            pthread_join(r->copier[d], NULL);
    shutdown(r->lfd, SHUT_RDWR); /* ends the acceptor's wait for more */
    pthread_join(r->acceptor, NULL);
    for (int i = 0; i < r->nside; i++) {
        for (int e = 0; e < 2; e++)
            shutdown(r->side[i][e], SHUT_RDWR);
        for (int e = 0; e < 2; e++)
            pthread_join(r->side_th[i][e], NULL);
        close(r->side[i][0]);
        close(r->side[i][1]);
    }
    close(r->lfd);
    if (r->src >= 0)
        close(r->src);
    if (r->dst >= 0)
        close(r->dst);
    return __atomic_load_n(&r->fired, __ATOMIC_RELAXED);
}

#endif
