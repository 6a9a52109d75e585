/* compress/: what the codec files share with codec.c. Not a public header. */
#ifndef MIGR_COMPRESS_INTERNAL_H
#define MIGR_COMPRESS_INTERNAL_H

#include <pthread.h>
#include <stdlib.h>

/* Levels (codec.h, migr_codec_set_level), read with relaxed atomics at each
 * encode. */
extern int migr__lz4_level;
extern int migr__zstd_level;
extern int migr__zlib_level;
void migr__zstd_level_range(int *min, int *max);

/* A per-thread context for a library codec: created on first use, freed by
 * free_fn at thread exit (not for the main thread, whose exit ends the
 * process). */
struct migr__tls {
    pthread_once_t once;
    pthread_key_t key;
    int key_err;               /* pthread_key_create's result */
    size_t size;               /* calloc'ed context size */
    void (*free_fn)(void *);   /* frees the context and what it holds */
};
#define MIGR__TLS_INIT(sz, fn) { PTHREAD_ONCE_INIT, 0, 0, (sz), (fn) }

/*! This thread's context (zeroed at creation), or NULL if out of memory. */
void *migr__tls_get(struct migr__tls *t);

#endif
