/* migr_version(): the version this library was built as. */
#include "migr/version.h"

const char *migr_version(void)
{
    return MIGR_VERSION_STRING;
}

unsigned migr_version_number(void)
{
    return MIGR_VERSION_NUMBER;
}
