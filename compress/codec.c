/* compress: the codecs of this build, by wire encoding (format.h MIGR_ENC_*,
 * which codec.h also names MIGR_CODEC_ENC_*), by name, and their levels. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "compress/internal.h"
#include "migr/codec.h"
#include "migr/common.h"

static const struct migr_codec_ops *const codecs[] = {
    &migr_codec_raw,
    &migr_codec_zero,
    &migr_codec_xbzrle,
    &migr_codec_lz4,
    &migr_codec_zstd,
    &migr_codec_zlib,
};

const struct migr_codec_ops *migr_codec_for_enc(uint8_t enc)
{
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(codecs); i++)
        if (codecs[i]->enc == enc)
            return codecs[i];
    return NULL;
}

const struct migr_codec_ops *migr_codec_by_name(const char *name)
{
    for (size_t i = 0; name && i < MIGR_ARRAY_SIZE(codecs); i++)
        if (!strcmp(codecs[i]->name, name))
            return codecs[i];
    return NULL;
}

const struct migr_codec_ops *migr_codec_at(size_t i)
{
    return i < MIGR_ARRAY_SIZE(codecs) ? codecs[i] : NULL;
}

/* ---- levels ---- */

int migr__lz4_level = 1;
int migr__zstd_level = 1;
int migr__zlib_level = 1;

static int *level_of(const char *name, int *min, int *max)
{
    if (!name)
        return NULL;
    if (!strcmp(name, "lz4")) {
        *min = -65537, *max = 12;
        return &migr__lz4_level;
    }
    if (!strcmp(name, "zstd")) {
        migr__zstd_level_range(min, max);
        return &migr__zstd_level;
    }
    if (!strcmp(name, "zlib")) {
        *min = 1, *max = 9;
        return &migr__zlib_level;
    }
    return NULL;
}

int migr_codec_check_level(const char *name, int level)
{
    int min, max, *p = level_of(name, &min, &max);
    if (!p)
        return migr_errorf(ENOENT, "codec %s has no compression level (lz4, zstd, zlib do)",
                           name ? name : "(null)");
    if (level < min || level > max)
        return migr_errorf(ERANGE, "%s level %d out of range %d ... %d", name, level, min, max);
    return 0;
}

int migr_codec_set_level(const char *name, int level)
{
    int min, max, *p = level_of(name, &min, &max), err = migr_codec_check_level(name, level);
    if (err < 0)
        return err;
    __atomic_store_n(p, level, __ATOMIC_RELAXED);
    return 0;
}

int migr_codec_get_level(const char *name, int *level)
{
    int min, max, *p = level_of(name, &min, &max);
    if (!p)
        return migr_errorf(ENOENT, "codec %s has no compression level (lz4, zstd, zlib do)",
                           name ? name : "(null)");
    *level = __atomic_load_n(p, __ATOMIC_RELAXED);
    return 0;
}

/* ---- per-thread contexts ---- */

static __thread struct migr__tls *tls_once_arg;

static void tls_once(void)
{
    struct migr__tls *t = tls_once_arg;
    t->key_err = pthread_key_create(&t->key, t->free_fn);
}

void *migr__tls_get(struct migr__tls *t)
{
    tls_once_arg = t;
    pthread_once(&t->once, tls_once);
    if (t->key_err)
        return NULL;
    void *c = pthread_getspecific(t->key);
    if (c)
        return c;
    c = calloc(1, t->size);
    if (c && pthread_setspecific(t->key, c)) {
        free(c);
        c = NULL;
    }
    return c;
}
