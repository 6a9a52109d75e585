/* Helpers for the transport tests: a connected pair of transports. */
#ifndef MIGR_TEST_TRANSPORTLIB_H
#define MIGR_TEST_TRANSPORTLIB_H

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "migr/common.h"
#include "migr/transport.h"
#include "testlib.h"

/* A listener's on_reject: its reasons, one line per dropped connection. */
static char t_rejects[4096] __attribute__((unused));

static inline void t_on_reject(void *arg, const char *peer, const char *why)
{
    size_t n = strlen(t_rejects);

    (void)arg;
    snprintf(t_rejects + n, sizeof(t_rejects) - n, "%s: %s\n", peer, why);
}

struct t_acc_arg {
    struct migr_listener *l;
    struct migr_transport *t;
    int ret;
};

static inline void *t_accept_thread(void *p)
{
    struct t_acc_arg *a = p;

    a->ret = migr_listener_accept(a->l, 5000, &a->t);
    if (a->ret < 0)
        fprintf(stderr, "accept: %s\n", migr_last_error());
    return NULL;
}

/* Listen on url and connect to it: *srv is the accepted end, *cli the
 * connecting one. Accept runs in a thread: shm: and tcp ?channels=N
 * connects wait for the listener's half of their handshake. bound, if not
 * NULL, gets the URL the listener bound (cap bytes). */
static inline void t_connect_pair(const char *url, struct migr_transport **srv, struct migr_transport **cli,
                                  char *bound, size_t cap)
{
    struct t_acc_arg a = { 0 };
    pthread_t th;

    T_OK(migr_listener_open(url, &a.l));
    if (bound)
        snprintf(bound, cap, "%s", a.l->bound);
    T_EQ(pthread_create(&th, NULL, t_accept_thread, &a), 0);
    T_OK(migr_transport_connect(a.l->bound, cli));
    T_EQ(pthread_join(th, NULL), 0);
    T_OK(a.ret);
    *srv = a.t;
    migr_listener_close(a.l);
}

static inline void *t_shutdown_thread(void *p)
{
    usleep(50000);
    ((struct migr_transport *)p)->ops->shutdown(p);
    return NULL;
}

/* shutdown() from another thread ends a receive that waits on url's transport with -EPIPE. */
static inline void t_check_shutdown(const char *url)
{
    struct migr_transport *srv, *cli;
    pthread_t th;
    uint8_t b[8];

    t_connect_pair(url, &srv, &cli, NULL, 0);
    T_EQ(pthread_create(&th, NULL, t_shutdown_thread, cli), 0);
    T_EQ(migr_transport_recv(cli, b, sizeof(b)), -EPIPE);
    T_EQ(pthread_join(th, NULL), 0);
    migr_transport_close(cli);
    migr_transport_close(srv);
}

#endif
