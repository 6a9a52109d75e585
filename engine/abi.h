/* engine: sized public structs in and out (include/migr/engine.h, "ABI"). */
#ifndef ENGINE_ABI_H
#define ENGINE_ABI_H

#include <stddef.h>

/* Copy the caller's struct at theirs (its first field: uint32_t size) over
 * ours (our_size bytes, already holding the defaults). what names it in
 * errors ("send params"), init the initializer to name. 0 or -EINVAL /
 * -E2BIG with migr_errorf's message set. */
int engine_abi_in(void *ours, size_t our_size, const void *theirs, const char *what, const char *init);

/* Check a caller's output struct's size before anything is written. */
int engine_abi_check_out(const void *theirs, const char *what, const char *init);

/* The struct the engine fills: the caller's own when its size is ours (so
 * it can be watched while the migration runs), else local (our_size
 * bytes, set up with its initializer), copied out by engine_abi_out. */
void *engine_abi_out_begin(void *theirs, void *local, size_t our_size);

/* Write ours (our_size bytes, filled) into the caller's struct at theirs:
 * at most its size, zeros up to its size past ours, size = bytes filled.
 * theirs was checked with engine_abi_check_out; nothing to do if ours is theirs. */
void engine_abi_out(void *theirs, const void *ours, size_t our_size);

#endif
