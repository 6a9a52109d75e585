/* engine: sized public structs in and out (include/migr/engine.h, "ABI").
 *
 * A caller states the sizeof it compiled with in the struct's first field.
 * Parameters: its first min(size, ours) bytes replace our defaults, and a
 * larger struct is fine only while what we do not know is all zero (the
 * rule of Linux's copy_struct_from_user). Statistics: we never write past
 * its size.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "migr/common.h"
#include "migr/version.h"
#include "engine/abi.h"

#define ABI_SIZE_MAX 65536u

static uint32_t size_of(const void *s)
{
    uint32_t n;
    memcpy(&n, s, sizeof(n));
    return n;
}

static int check(uint32_t n, const char *what, const char *init)
{
    if (n == 0)
        return migr_errorf(EINVAL, "%s: size 0 (use %s)", what, init);
    if (n < 2 * sizeof(uint32_t) || n > ABI_SIZE_MAX || n % sizeof(uint32_t))
        return migr_errorf(EINVAL, "%s: size %u is no struct's size (uninitialised? use %s)", what, n, init);
    return 0;
}

int engine_abi_check_out(const void *theirs, const char *what, const char *init)
{
    return check(size_of(theirs), what, init);
}

int engine_abi_in(void *ours, size_t our_size, const void *theirs, const char *what, const char *init)
{
    uint32_t n = size_of(theirs);
    int err = check(n, what, init);
    if (err < 0)
        return err;
    const unsigned char *b = theirs;
    for (size_t i = our_size; i < n; i++)
        if (b[i])
            return migr_errorf(E2BIG, "%s: size %u, this library (%s) knows %zu bytes and byte %zu is set: "
                               "the caller asks for something it lacks", what, n, migr_version(), our_size, i);
    memcpy((unsigned char *)ours + sizeof(uint32_t), b + sizeof(uint32_t),
           (n < our_size ? n : our_size) - sizeof(uint32_t));
    return 0;
}

void *engine_abi_out_begin(void *theirs, void *local, size_t our_size)
{
    if (size_of(theirs) != our_size)
        return local;
    memset(theirs, 0, our_size);
    memcpy(theirs, &(uint32_t){(uint32_t)our_size}, sizeof(uint32_t));
    return theirs;
}

void engine_abi_out(void *theirs, const void *ours, size_t our_size)
{
    if (theirs == ours)
        return;
    uint32_t n = size_of(theirs);
    uint32_t fill = n < our_size ? n : (uint32_t)our_size;
    memcpy(theirs, ours, fill);
    memset((unsigned char *)theirs + fill, 0, n - fill);
    memcpy(theirs, &fill, sizeof(fill));
}
