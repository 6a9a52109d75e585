/* migr — the umbrella header: every public header of libmigr.
 *   #include <migr/migr.h>      and link with `pkg-config --libs migr`
 * Each header also stands alone; tests/it_install.sh checks that this file
 * names every header installed beside it. */
#ifndef MIGR_MIGR_H
#define MIGR_MIGR_H

#include "migr/codec.h"
#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/dirty.h"
#include "migr/engine.h"
#include "migr/ept.h"
#include "migr/format.h"
#include "migr/hv.h"
#include "migr/layout.h"
#include "migr/model.h"
#include "migr/pagecache.h"
#include "migr/record.h"
#include "migr/rejuv.h"
#include "migr/settle.h"
#include "migr/transport.h"
#include "migr/version.h"
#include "migr/workload.h"
#include "migr/xbzrle.h"

#endif
