/* migr — wire format v1 (specified in docs/format.md; keep the two in step).
 *
 * A stream is a 16-byte preamble followed by records. All integers are
 * little-endian. Each record:
 *
 *   header  12 bytes  u16 type, u16 flags (must be 0 in v1), u32 meta_len, u32 bulk_len
 *   meta    meta_len  bytes, layout per type (limits: MIGR_META_MAX)
 *   crc     4 bytes   CRC-32C of header || meta
 *   bulk    bulk_len  bytes, integrity carried by per-item CRCs inside meta (MIGR_BULK_MAX)
 *
 * The bulk part lets a receiver place page data straight into guest RAM.
 *
 * Blocking and threads: every function here encodes or decodes bytes in
 * memory on the caller's thread (no I/O: record.h sends and receives); none
 * blocks, starts a thread or installs a signal handler; thread-safe on
 * distinct buffers.
 */
#ifndef MIGR_FORMAT_H
#define MIGR_FORMAT_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include "migr/layout.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MIGR_STREAM_MAGIC "\x89MIGR\r\n\x1a"   /* 8 bytes, PNG-style */
#define MIGR_STREAM_VERSION 1u
#define MIGR_PREAMBLE_SIZE 16u
#define MIGR_REC_HDR_SIZE 12u
#define MIGR_META_MAX (1u << 20)     /* 1 MiB */
#define MIGR_BULK_MAX (64u << 20)    /* 64 MiB */
#define MIGR_BATCH_MAX 4096u         /* page entries per PAGES record */

enum migr_rec_type {
    MIGR_REC_HELLO = 1,       /* src->dst: page size, RAM layout, vCPUs, backend */
    MIGR_REC_PAGES = 2,       /* src->dst: a batch of pages */
    MIGR_REC_STATE = 3,       /* src->dst: vCPU + device state blob (backend format) */
    MIGR_REC_ROUND_END = 4,   /* src->dst: end of a pre-copy round */
    MIGR_REC_SWITCHOVER = 5,  /* src->dst: guest paused, everything sent */
    MIGR_REC_READY = 6,       /* dst->src: everything received and checked */
    MIGR_REC_COMMIT = 7,      /* src->dst: source gives up the guest; run it */
    MIGR_REC_DONE = 8,        /* dst->src: guest running on the destination */
    MIGR_REC_ERROR = 9,       /* either way: the sender aborts, with a reason */
    MIGR_REC_MEMFD = 10,      /* src->dst, mode "handover" over unix only: RAM memfds follow (SCM_RIGHTS) */
    MIGR_REC_PAGE_REQ = 11,   /* dst->src, post-copy: pages the running guest faulted on */
    MIGR_REC_DISCARD = 12,    /* src->dst, hybrid: pages whose received copies are stale */
    MIGR_REC_COMPLETE = 13,   /* dst->src, post-copy: every page is resident; the source may go */
    MIGR_REC_EPOCH_END = 14,  /* dst->src, cancellable post-copy: a checkpoint (PAGES + STATE) is complete */
    MIGR_REC_CANCEL = 15,     /* src->dst, cancellable post-copy: give the guest back */
    MIGR_REC_FAULT_CHANNEL = 16, /* src->dst, post-copy modes: a second connection for faults (format 1.3) */
    MIGR_REC_EPOCH_ACK = 17,  /* src->dst, cancellable post-copy: a checkpoint is applied; renews the
                                 destination's lease (format 1.4) */
    MIGR_REC_SETTLE = 18,     /* src->dst, on a new connection: what became of migration `id`? (format 1.6) */
    MIGR_REC_SETTLED = 19,    /* dst->src: the answer, the destination's fate of that migration (format 1.6) */
    MIGR_REC_TYPE_MAX_V1 = 19,
};

/*! Name of a record type ("PAGES"), "UNKNOWN" for others. Never NULL. */
const char *migr_rec_type_name(unsigned type);

/* Page encodings in a PAGES entry. */
enum migr_page_enc {
    MIGR_ENC_RAW = 0,     /* len = page size, crc = CRC-32C of the data */
    MIGR_ENC_ZERO = 1,    /* len = number of consecutive zero pages (run >= 1), no data, crc = 0 */
    MIGR_ENC_XBZRLE = 2,  /* len = 0..4095 delta bytes against the receiver's intact copy (0 = unchanged);
                             crc = CRC-32C of the page after decoding (revision 1.3) */
    MIGR_ENC_LZ4 = 3,     /* len = 1..4095, one LZ4 block; crc = CRC-32C of the decoded page */
    MIGR_ENC_ZSTD = 4,    /* len = 1..4095, one zstd frame; crc = CRC-32C of the decoded page */
    MIGR_ENC_ZLIB = 5,    /* len = 1..4095, one zlib stream; crc = CRC-32C of the decoded page */
    MIGR_ENC_LZ4S = 6,    /* len = 1..4095, an LZ4 block with its lane's earlier pages as prefix (revision 1.8) */
    MIGR_ENC_ZSTDS = 7,   /* len = 1..4095, the next part of its lane's zstd frame, one page (revision 1.8) */
    MIGR_ENC_MAX_V1 = 7,
};

/* PAGES entry byte 9 (revision 1.8), stream encodings only (LZ4S, ZSTDS;
 * 0 for the others): bits 0-3 the lane, bit 7 START (the entry begins its
 * (encoding, lane) stream), bits 4-6 zero. */
#define MIGR_LANES 16u
#define MIGR_LANE_MASK 0x0fu
#define MIGR_LANE_START 0x80u
static inline int migr_enc_is_stream(unsigned enc)
{
    return enc == MIGR_ENC_LZ4S || enc == MIGR_ENC_ZSTDS;
}

/*! Name of a page encoding ("RAW", "XBZRLE", ...), "UNKNOWN" for others. Never NULL. */
const char *migr_page_enc_name(unsigned enc);

/* ---- HELLO meta ---- */
struct migr_region_desc {
    uint64_t gpa;    /* guest-physical base, page aligned */
    uint64_t size;   /* bytes, page aligned, > 0 */
};

/* Features (format revision 1.6): what a stream may need beyond RAW and ZERO
 * pages, one bit each. HELLO carries the source's `features` (what its build
 * implements) and `requires` (what this stream will use); a receiver refuses
 * a HELLO that requires a bit it lacks, naming it (migr_feature_name). */
enum migr_feature {
    MIGR_FEAT_XBZRLE = 1u << 0,        /* page encoding XBZRLE */
    MIGR_FEAT_LZ4 = 1u << 1,           /* page encoding LZ4 */
    MIGR_FEAT_ZSTD = 1u << 2,          /* page encoding ZSTD */
    MIGR_FEAT_ZLIB = 1u << 3,          /* page encoding ZLIB */
    MIGR_FEAT_POSTCOPY = 1u << 4,      /* modes postcopy, hybrid (and the tail): PAGE_REQ, DISCARD, COMPLETE */
    MIGR_FEAT_CANCELLABLE = 1u << 5,   /* modes cpostcopy, chybrid: EPOCH_END, CANCEL, checkpoints back */
    MIGR_FEAT_FAULT_CHANNEL = 1u << 6, /* FAULT_CHANNEL: faults on a connection of their own */
    MIGR_FEAT_LEASE = 1u << 7,         /* EPOCH_ACK: the destination runs on a lease */
    MIGR_FEAT_HANDOVER = 1u << 8,      /* mode handover: MEMFD and its descriptors */
    MIGR_FEAT_REGIONS = 1u << 9,       /* more than one RAM region */
    MIGR_FEAT_SETTLE = 1u << 10,       /* SETTLE / SETTLED: doubt after COMMIT settled by the two sides */
    MIGR_FEAT_ROUND_SYNC = 1u << 11,   /* ROUND_END flag SYNC, answered by READY (revision 1.7) */
    MIGR_FEAT_LZ4S = 1u << 12,         /* page encoding LZ4S, entry lanes (revision 1.8) */
    MIGR_FEAT_ZSTDS = 1u << 13,        /* page encoding ZSTDS, entry lanes (revision 1.8) */
    MIGR_FEAT_KNOWN = (1u << 14) - 1,
};

/*! Name of one feature bit ("zstd", "post-copy"), or NULL for a bit this
 *  build does not know. */
const char *migr_feature_name(uint64_t bit);

/*! The features this build implements (engine/features.c): every codec
 *  compiled in, every mode. A receiver checks a HELLO's `requires` against
 *  it. (Tests wrap it to stand in for an older or smaller build.) */
uint64_t migr_features_supported(void);

#define MIGR_MIGRATION_ID_SIZE 16u

struct migr_hello {
    uint32_t page_size;        /* must equal the receiver's (4096 in v1) */
    uint32_t nvcpus;           /* 1..MIGR_MAX_VCPUS */
    uint32_t nregions;         /* 1..MIGR_MAX_REGIONS */
    uint32_t state_version;    /* version of the backend's STATE blob */
    char backend[16];          /* "kvm", "proc"; NUL padded */
    char mode[16];             /* "precopy" ... ; NUL padded */
    struct migr_region_desc regions[MIGR_MAX_REGIONS];
    /* revision 1.6; decoded as 0 (has_ext false) from an older HELLO */
    bool has_ext;              /* encode: send the extension (migr's sender always does) */
    uint64_t features;         /* the source's build (MIGR_FEAT_*) */
    uint64_t requires;         /* this stream's needs; a subset of features */
    uint8_t id[MIGR_MIGRATION_ID_SIZE]; /* random, names this migration in SETTLE */
};
/* wire: u32 page_size, u32 nvcpus, u32 nregions, u32 state_version,
 *       char backend[16], char mode[16], nregions x {u64 gpa, u64 size},
 *       [1.6: u64 features, u64 requires, u8 id[16]] */
#define MIGR_HELLO_FIXED 48u
#define MIGR_HELLO_EXT 32u
#define MIGR_HELLO_META_MAX (MIGR_HELLO_FIXED + 16u * MIGR_MAX_REGIONS + MIGR_HELLO_EXT)

/*! The first feature of need that have lacks (lowest bit), 0 if none. */
static inline uint64_t migr_features_missing(uint64_t need, uint64_t have)
{
    uint64_t m = need & ~have;
    return m & (~m + 1);
}

/* ---- PAGES meta ---- */
/* wire: u32 round, u32 count, count x entry{u64 pfn, u8 enc, u8 rsvd[3], u32 len, u32 crc, u32 rsvd}
 * pfn = guest-physical address >> 12. Entry = 24 bytes. */
#define MIGR_PAGES_FIXED 8u
#define MIGR_PAGE_ENTRY_SIZE 24u

struct migr_page_entry {
    uint64_t pfn;
    uint8_t enc;
    uint32_t len;
    uint32_t crc;
    uint8_t lane;    /* byte 9: stream encodings' lane and MIGR_LANE_START (revision 1.8), else 0 */
};

/* ---- ROUND_END meta ---- wire: u32 round, u32 flags, u64 pages_sent, u64 dirty_pages */
#define MIGR_ROUND_END_SYNC 1u  /* revision 1.7: answer READY once every record before this one is taken in */
struct migr_round_end {
    uint32_t round;
    uint64_t pages_sent;    /* pages (entries, zero runs counted per page) in this round */
    uint64_t dirty_pages;   /* pages dirtied during this round (to send next) */
    uint32_t flags;         /* MIGR_ROUND_END_*; 0 before revision 1.7 (on the wire after round) */
};
#define MIGR_ROUND_END_SIZE 24u

/* ---- SWITCHOVER meta ---- wire: u32 rounds, u32 rsvd, u64 total_pages_sent */
struct migr_switchover {
    uint32_t rounds;
    uint64_t total_pages_sent;
};
#define MIGR_SWITCHOVER_SIZE 16u

/* ---- READY / DONE meta ---- wire: u64 pages_received, u64 t_ns (receiver's CLOCK_MONOTONIC) */
struct migr_ack {
    uint64_t pages;
    uint64_t t_ns;
};
#define MIGR_ACK_SIZE 16u

/* COMMIT meta: empty. */

/* ---- MEMFD meta ---- wire: u32 nregions, u32 rsvd, nregions x {u64 gpa, u64 size, u64 memfd_off}.
 * Right after the record the sender passes nregions file descriptors (one per
 * region, in order) with SCM_RIGHTS on a one-byte message 'F'. */
struct migr_memfd_desc {
    uint32_t nregions;
    struct {
        uint64_t gpa, size, off;
    } r[MIGR_MAX_REGIONS];
};
int migr_memfd_encode(const struct migr_memfd_desc *m, uint8_t *buf, size_t cap);
int migr_memfd_decode(const uint8_t *meta, size_t len, struct migr_memfd_desc *out);

/* ---- ERROR meta ---- wire: i32 code (errno), u32 len, char msg[len] (no NUL, len <= 1024) */
#define MIGR_ERROR_MSG_MAX 1024u

/* ---- PAGE_REQ / DISCARD meta ---- wire: u32 count, u32 rsvd, count x {u64 pfn, u64 npages}
 * (ranges of guest page frames; npages >= 1; count 1..MIGR_RANGES_MAX). */
#define MIGR_RANGES_MAX 4096u
struct migr_range {
    uint64_t pfn, npages;
};
int migr_ranges_encode(const char *what, const struct migr_range *r, uint32_t count, uint8_t *buf, size_t cap);
/*! Decodes into out (capacity MIGR_RANGES_MAX). what names the record in messages. */
int migr_ranges_decode(const char *what, const uint8_t *meta, size_t len, struct migr_range *out, uint32_t *count);

/* COMPLETE meta: as READY/DONE (struct migr_ack).
 * EPOCH_END meta: same 16-byte layout, fields {u64 epoch, u64 flags}; flags bit 0
 * = final (the checkpoint answering CANCEL; the destination has stopped the guest).
 * CANCEL meta: empty. */
#define MIGR_EPOCH_FINAL 1ull
/* EPOCH_ACK meta: the same 16-byte layout, fields {u64 epoch, u64 lease_ms}:
 * checkpoint `epoch` is applied at the source, which takes the guest back
 * after 2 x lease_ms without a record from the destination. */

/* Little-endian helpers. */
static inline void migr_put_le16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static inline void migr_put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (8 * i); }
static inline void migr_put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = v >> (8 * i); }
static inline uint16_t migr_get_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t migr_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t migr_get_le64(const uint8_t *p)
{
    return (uint64_t)migr_get_le32(p) | (uint64_t)migr_get_le32(p + 4) << 32;
}

/* Encoders: write meta into buf (cap bytes), return its length or -ENOSPC. */
int migr_hello_encode(const struct migr_hello *h, uint8_t *buf, size_t cap);
int migr_round_end_encode(const struct migr_round_end *r, uint8_t *buf, size_t cap);
int migr_switchover_encode(const struct migr_switchover *s, uint8_t *buf, size_t cap);
int migr_ack_encode(const struct migr_ack *a, uint8_t *buf, size_t cap);
int migr_error_encode(int code, const char *msg, uint8_t *buf, size_t cap);
/*! PAGES: header then entries. Returns MIGR_PAGES_FIXED + count * MIGR_PAGE_ENTRY_SIZE or -ENOSPC. */
int migr_pages_encode(uint32_t round, const struct migr_page_entry *e, uint32_t count,
                      uint8_t *buf, size_t cap);

/* Decoders: strict. They check every length, count, reserved field and range
 * that can be checked without the receiver's state, and on failure return
 * -EBADMSG with a message naming the record and field. */
int migr_hello_decode(const uint8_t *meta, size_t len, struct migr_hello *out);

/*! The guest layout HELLO announces (backend -> vmm), for the caller that
 *  builds the incoming guest (migr_hv_build, include/migr/hv.h). */
void migr_hello_layout(const struct migr_hello *h, struct migr_vm_layout *out);
/*! Fill hello's layout fields from a layout (mode is left alone). */
void migr_hello_set_layout(struct migr_hello *h, const struct migr_vm_layout *l);
int migr_round_end_decode(const uint8_t *meta, size_t len, struct migr_round_end *out);
int migr_switchover_decode(const uint8_t *meta, size_t len, struct migr_switchover *out);
int migr_ack_decode(const uint8_t *meta, size_t len, struct migr_ack *out);
/*! msg gets a NUL-terminated copy (truncated to cap-1). */
int migr_error_decode(const uint8_t *meta, size_t len, int *code, char *msg, size_t cap);
/*! Decode the PAGES header; *count entries follow (check len first). Also checks
 *  that bulk_len equals the sum of the entries' data lengths; entries are
 *  decoded with migr_page_entry_decode. */
int migr_pages_decode_hdr(const uint8_t *meta, size_t len, uint32_t bulk_len,
                          uint32_t *round, uint32_t *count);
/*! Decode entry i (no range check against guest RAM: that is the receiver's job). */
int migr_page_entry_decode(const uint8_t *meta, uint32_t i, struct migr_page_entry *out);

/* ---- FAULT_CHANNEL (docs/format.md, "FAULT_CHANNEL") ----
 * The record's 16 bytes are the transport's (migr_transport_side_offer /
 * migr_transport_side_open): the engine sends and hands them on unread. */
#define MIGR_FAULT_CHANNEL_SIZE 16u
enum migr_fch_kind {
    MIGR_FCH_FD = 1,        /* unix: a descriptor message follows (the destination's end) */
    MIGR_FCH_TCP_BACK = 2,  /* revision 1.3: the destination connected back to the source; refused now */
    MIGR_FCH_TCP = 3,       /* tcp: the side that connected the main stream connects again */
};
#define MIGR_FCH_F_SOURCE_CONNECTS 1u   /* MIGR_FCH_TCP: the source is that side */
struct migr_fault_channel {
    uint32_t kind;          /* enum migr_fch_kind */
    uint32_t arg;           /* MIGR_FCH_TCP: flags (MIGR_FCH_F_*); MIGR_FCH_TCP_BACK: port; MIGR_FCH_FD: 0 */
    uint64_t cookie;        /* MIGR_FCH_TCP(_BACK): what the connecting side sends first; MIGR_FCH_FD: 0 */
};
/*! Encode f into buf (cap >= MIGR_FAULT_CHANNEL_SIZE). Returns 16 or -ENOSPC. */
int migr_fault_channel_encode(const struct migr_fault_channel *f, uint8_t *buf, size_t cap);
/*! Strict: the length, a known kind, arg/cookie zero for MIGR_FCH_FD, only
 *  known flags and a nonzero cookie for MIGR_FCH_TCP, a port 1..65535 for
 *  MIGR_FCH_TCP_BACK. 0 or -EBADMSG ("FAULT_CHANNEL: ..."). */
int migr_fault_channel_decode(const uint8_t *meta, size_t len, struct migr_fault_channel *out);

#ifdef __cplusplus
}
#endif

#endif
