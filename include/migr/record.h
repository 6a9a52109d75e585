/* migr — record framing over a transport (format in format.h / docs/format.md).
 *
 * Blocking: each function blocks on the caller's thread in the transport's
 * send or receive, as long as that does (transport.h has no timeout of its
 * own: a silent peer on an open link is waited for until the link is shut
 * down, e.g. by the engine's stall watchdog or a cancel). Nothing here
 * starts a thread or installs a signal handler; one sender and one receiver
 * thread at a time per transport. */
#ifndef MIGR_RECORD_H
#define MIGR_RECORD_H

#include <stdint.h>
#include <sys/uio.h>
#include "migr/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

struct migr_rec_hdr {
    uint16_t type;
    uint16_t flags;
    uint32_t meta_len;
    uint32_t bulk_len;
};

/*! Send the 16-byte stream preamble (magic, version). */
int migr_preamble_send(struct migr_transport *t);
/*! Receive and check the preamble: -EPROTO "not a migr stream (bad magic)" or
 *  "stream version 7 not supported (this build reads 1)". */
int migr_preamble_recv(struct migr_transport *t);

/*! Send one record: header, meta, CRC-32C(header||meta), then the bulk iovecs
 *  (bulk_len = their total). Uses one sendv. 0 or -errno. */
int migr_rec_send(struct migr_transport *t, uint16_t type, const void *meta, uint32_t meta_len,
                  const struct iovec *bulk, int nbulk);

/*! Receive one record's header, meta and CRC into meta_buf (capacity cap,
 *  at least MIGR_META_MAX is always enough). Checks: type known in v1, flags 0,
 *  meta_len <= min(cap, MIGR_META_MAX), bulk_len <= MIGR_BULK_MAX, CRC.
 *  Errors name the record index (counted by the caller-owned *seq, incremented
 *  here) and type: "record 1842 (PAGES): meta length 2000000 exceeds 1048576".
 *  The caller then reads exactly hdr->bulk_len bulk bytes with migr_transport_recv*. */
int migr_rec_recv(struct migr_transport *t, uint64_t *seq, struct migr_rec_hdr *hdr,
                  uint8_t *meta_buf, uint32_t cap);

/*! Best-effort: send an ERROR record (code, message). Errors are ignored. */
void migr_rec_send_error(struct migr_transport *t, int code, const char *msg);

#ifdef __cplusplus
}
#endif

#endif
