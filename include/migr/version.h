/* migr — library version.
 *
 * MIGR_VERSION_* describe the headers you compile against; migr_version()
 * the library you run with. The major number is the soname's
 * (libmigr.so.MAJOR): it changes when the ABI does. Both functions are
 * constant, never block, any thread.
 */
#ifndef MIGR_VERSION_H
#define MIGR_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define MIGR_VERSION_MAJOR 0
#define MIGR_VERSION_MINOR 8
#define MIGR_VERSION_PATCH 2
#define MIGR_VERSION_STRING "0.8.2"
/* One number to compare against: (major << 16) | (minor << 8) | patch. */
#define MIGR_VERSION_NUMBER ((MIGR_VERSION_MAJOR << 16) | (MIGR_VERSION_MINOR << 8) | MIGR_VERSION_PATCH)

/*! The running library's version, "MAJOR.MINOR.PATCH" (static storage). */
const char *migr_version(void);
/*! The running library's MIGR_VERSION_NUMBER. */
unsigned migr_version_number(void);

#ifdef __cplusplus
}
#endif

#endif
