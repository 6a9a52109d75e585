// Every public header compiles as C++ (extern "C" guards), against the installed tree.
#include <migr/codec.h>
#include <migr/common.h>
#include <migr/crc32c.h>
#include <migr/dirty.h>
#include <migr/engine.h>
#include <migr/ept.h>
#include <migr/format.h>
#include <migr/hv.h>
#include <migr/model.h>
#include <migr/pagecache.h>
#include <migr/record.h>
#include <migr/rejuv.h>
#include <migr/transport.h>
#include <migr/version.h>
#include <migr/workload.h>
#include <migr/xbzrle.h>

int main()
{
    return migr_version_number() == MIGR_VERSION_NUMBER ? 0 : 1;
}
