/* engine: the page validator (validate.h). */
#include <errno.h>

#include "migr/common.h"
#include "migr/record.h"
#include "engine/validate.h"

int engine_pages_header(const uint8_t *meta, uint32_t meta_len, uint32_t bulk_len, uint64_t seq,
                        uint32_t *round, uint32_t *count)
{
    int err = migr_pages_decode_hdr(meta, meta_len, bulk_len, round, count);
    return err < 0 ? migr_error_prefix(-err, "record %llu", (unsigned long long)seq) : 0;
}

int engine_pages_walk(struct migr_hv *hv, const uint8_t *meta, uint32_t count, uint64_t seq,
                      const struct engine_placement *pl, void *arg)
{
    struct migr_page_entry e;
    int err;
    for (uint32_t i = 0; i < count; i++) {
        if ((err = migr_page_entry_decode(meta, i, &e)) < 0)
            return migr_error_prefix(-err, "record %llu", (unsigned long long)seq);
        if (!(pl->encs & ENGINE_ENC_BIT(e.enc)))
            return migr_errorf(EBADMSG, "record %llu (PAGES): entry %u: %s page in %s", (unsigned long long)seq, i,
                               migr_page_enc_name(e.enc), pl->phase);
        int64_t idx = migr_hv_pfn_index(hv, e.pfn);
        if (idx < 0)
            return migr_errorf(EBADMSG, "record %llu (PAGES): entry %u: page 0x%llx (gpa 0x%llx) is outside guest RAM",
                               (unsigned long long)seq, i, (unsigned long long)e.pfn,
                               (unsigned long long)e.pfn << MIGR_PAGE_SHIFT);
        if (e.enc == MIGR_ENC_ZERO) {
            int64_t last = migr_hv_pfn_index(hv, e.pfn + e.len - 1);
            if (e.pfn + e.len < e.pfn || last != idx + (int64_t)e.len - 1)
                return migr_errorf(EBADMSG, "record %llu (PAGES): entry %u: zero run of %u pages from 0x%llx "
                                   "leaves guest RAM", (unsigned long long)seq, i, e.len, (unsigned long long)e.pfn);
            err = pl->zero(arg, i, &e, (uint64_t)idx, e.len);
        } else {
            err = pl->data(arg, i, &e, (uint64_t)idx);
        }
        if (err < 0)
            return err;
    }
    return 0;
}
