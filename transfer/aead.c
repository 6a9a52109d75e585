/* migr — the encrypted stream: AES-256-GCM frames (libcrypto EVP) around
 * any stream transport, after the authentication handshake (auth.c) chose
 * encryption (docs/format.md, "Encryption").
 *
 * Each direction has its own key, derived by the handshake from the shared
 * key and both nonces, and its own frame counter, which is the GCM nonce:
 * a nonce is never used twice with a key, and a frame replayed, dropped,
 * reordered or moved to the other direction fails its tag.
 *
 *   frame = len (u32, 1..256 KiB, also the AAD) || ciphertext || tag (16)
 *
 * sendv encrypts the caller's iovecs straight into a staging buffer (the
 * one copy, which the cipher makes anyway) and hands up to 4 MiB of frames
 * to the inner transport in one call, so ?channels still spreads a page
 * batch over its connections. recvv reads one whole frame, decrypts it in
 * place and checks its tag before a byte of it is handed out: nothing
 * unauthenticated ever reaches guest memory.
 *
 * t->fd is the inner transport's descriptor; the ops keep its name (the
 * engine tells unix from tcp by it), descriptors pass on unix only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "migr/common.h"
#include "migr/format.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

#define FRAME_MAX (256u << 10)
#define FRAME_HDR 4u
#define FRAME_TAG 16u
#define SEND_BATCH (4u << 20)   /* plaintext per inner sendv */

struct aead_transport {
    struct migr_transport pub;   /* first member */
    struct migr_transport *in;
    EVP_CIPHER_CTX *tx, *rx;
    uint64_t tx_ctr, rx_ctr;
    uint8_t *tbuf;               /* frames being sent */
    uint8_t *rbuf;               /* one frame received, decrypted in place */
    size_t rlen, rpos;           /* its plaintext not yet handed out: [rpos, rlen) */
};

static void nonce(uint8_t iv[12], uint64_t ctr)
{
    memset(iv, 0, 4);
    migr_put_le64(iv + 4, ctr);
}

static int crypto_fail(struct migr_transport *t, const char *what)
{
    return migr_errorf(EIO, "%s %s: AES-256-GCM failed in libcrypto", what, t->peer);
}

/* Encrypt len bytes from iov at (*i, *off) as frame a->tx_ctr into out
 * (FRAME_HDR + len + FRAME_TAG bytes). */
static int seal(struct aead_transport *a, const struct iovec *iov, int cnt, int *i, size_t *off, size_t len,
                uint8_t *out)
{
    uint8_t iv[12], *ct = out + FRAME_HDR;
    int n;

    migr_put_le32(out, (uint32_t)len);
    nonce(iv, a->tx_ctr++);
    if (EVP_EncryptInit_ex(a->tx, NULL, NULL, NULL, iv) != 1 || EVP_EncryptUpdate(a->tx, NULL, &n, out, FRAME_HDR) != 1)
        return crypto_fail(&a->pub, "send");
    while (len) {
        size_t avail = iov[*i].iov_len - *off, take = MIGR_MIN(avail, len);

        if (take && EVP_EncryptUpdate(a->tx, ct, &n, (const uint8_t *)iov[*i].iov_base + *off, (int)take) != 1)
            return crypto_fail(&a->pub, "send");
        ct += take;
        len -= take;
        *off += take;
        if (*off == iov[*i].iov_len) {
            (*i)++;
            *off = 0;
        }
    }
    if (EVP_EncryptFinal_ex(a->tx, ct, &n) != 1 || EVP_CIPHER_CTX_ctrl(a->tx, EVP_CTRL_GCM_GET_TAG, FRAME_TAG, ct) != 1)
        return crypto_fail(&a->pub, "send");
    return 0;
}

static int aead_sendv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    struct aead_transport *a = (struct aead_transport *)t;
    size_t total, off = 0;
    int i = 0, err;

    if (iovcnt < 0)
        return migr_errorf(EINVAL, "send %s: negative iovec count %d", t->peer, iovcnt);
    total = migr_iov_total(iov, iovcnt);
    while (i < iovcnt && iov[i].iov_len == 0)
        i++;
    while (total) {
        size_t batch = MIGR_MIN(total, (size_t)SEND_BATCH), pos = 0, done = 0;

        while (done < batch) {
            size_t len = MIGR_MIN(batch - done, (size_t)FRAME_MAX);

            while (iov[i].iov_len == off) {   /* skip empty pieces */
                i++;
                off = 0;
            }
            if ((err = seal(a, iov, iovcnt, &i, &off, len, a->tbuf + pos)) < 0)
                return err;
            pos += FRAME_HDR + len + FRAME_TAG;
            done += len;
        }
        struct iovec v = { .iov_base = a->tbuf, .iov_len = pos };
        if ((err = a->in->ops->sendv(a->in, &v, 1)) < 0)
            return err;
        t->bytes_sent += batch;
        total -= batch;
    }
    return 0;
}

/* Read, decrypt and check the next frame into rbuf. */
static int next_frame(struct aead_transport *a)
{
    uint8_t hdr[FRAME_HDR], iv[12];
    struct iovec v = { .iov_base = hdr, .iov_len = FRAME_HDR };
    uint32_t len;
    int err, n;

    if ((err = a->in->ops->recvv(a->in, &v, 1)) < 0)
        return err;
    len = migr_get_le32(hdr);
    if (len == 0 || len > FRAME_MAX)
        return migr_errorf(EBADMSG, "recv %s: encrypted frame %llu has length %u (expected 1..%u)", a->pub.peer,
                           (unsigned long long)a->rx_ctr, len, FRAME_MAX);
    v = (struct iovec){ .iov_base = a->rbuf, .iov_len = len + FRAME_TAG };
    if ((err = a->in->ops->recvv(a->in, &v, 1)) < 0)
        return err;
    nonce(iv, a->rx_ctr);
    if (EVP_DecryptInit_ex(a->rx, NULL, NULL, NULL, iv) != 1 || EVP_DecryptUpdate(a->rx, NULL, &n, hdr, FRAME_HDR) != 1 ||
        EVP_DecryptUpdate(a->rx, a->rbuf, &n, a->rbuf, (int)len) != 1 ||
        EVP_CIPHER_CTX_ctrl(a->rx, EVP_CTRL_GCM_SET_TAG, FRAME_TAG, a->rbuf + len) != 1)
        return crypto_fail(&a->pub, "recv");
    if (EVP_DecryptFinal_ex(a->rx, a->rbuf + len, &n) != 1) {
        OPENSSL_cleanse(a->rbuf, len);
        return migr_errorf(EBADMSG, "recv %s: encrypted frame %llu failed its authentication tag (altered, "
                           "replayed or reordered on the way)", a->pub.peer, (unsigned long long)a->rx_ctr);
    }
    a->rx_ctr++;
    a->rlen = len;
    a->rpos = 0;
    return 0;
}

static int aead_recvv(struct migr_transport *t, const struct iovec *iov, int iovcnt)
{
    struct aead_transport *a = (struct aead_transport *)t;
    int err;

    if (iovcnt < 0)
        return migr_errorf(EINVAL, "recv %s: negative iovec count %d", t->peer, iovcnt);
    for (int i = 0; i < iovcnt; i++) {
        uint8_t *dst = iov[i].iov_base;
        size_t left = iov[i].iov_len;

        while (left) {
            if (a->rpos == a->rlen && (err = next_frame(a)) < 0)
                return err;
            size_t n = MIGR_MIN(left, a->rlen - a->rpos);

            memcpy(dst, a->rbuf + a->rpos, n);
            a->rpos += n;
            dst += n;
            left -= n;
            t->bytes_recv += n;
        }
    }
    return 0;
}

static void aead_shutdown(struct migr_transport *t)
{
    struct aead_transport *a = (struct aead_transport *)t;

    a->in->ops->shutdown(a->in);
}

static void aead_close(struct migr_transport *t)
{
    struct aead_transport *a = (struct aead_transport *)t;

    EVP_CIPHER_CTX_free(a->tx);   /* frees and wipes the key schedule */
    EVP_CIPHER_CTX_free(a->rx);
    if (a->rbuf)
        OPENSSL_cleanse(a->rbuf, FRAME_MAX + FRAME_TAG);
    free(a->rbuf);
    free(a->tbuf);
    migr_transport_close(a->in);
    free(a);
}

static long long aead_outq(struct migr_transport *t)
{
    return migr_transport_outq(((struct aead_transport *)t)->in);
}

static struct migr_side_origin **aead_origin(struct migr_transport *t)
{
    struct migr_transport *in = ((struct aead_transport *)t)->in;

    return in->ops->origin ? in->ops->origin(in) : NULL;
}

static int aead_send_fds(struct migr_transport *t, const int *fds, int n)
{
    return migr_transport_send_fds(((struct aead_transport *)t)->in, fds, n);
}

static int aead_recv_fds(struct migr_transport *t, int *fds, int n)
{
    struct aead_transport *a = (struct aead_transport *)t;

    /* The descriptor message travels beside the frames: every frame sent
     * before it must have been read, and no more. */
    if (a->rpos != a->rlen)
        return migr_errorf(EPROTO, "recv %s: descriptors expected, but %zu bytes of stream are still unread",
                           t->peer, a->rlen - a->rpos);
    return migr_transport_recv_fds(a->in, fds, n);
}

static const struct migr_transport_ops aead_unix_ops = {
    .name = "unix",
    .sendv = aead_sendv,
    .recvv = aead_recvv,
    .shutdown = aead_shutdown,
    .close = aead_close,
    .send_fds = aead_send_fds,
    .recv_fds = aead_recv_fds,
    .outq = aead_outq,
    .caps = MIGR_TCAP_PASS_FDS | MIGR_TCAP_SIDE,
};

static const struct migr_transport_ops aead_tcp_ops = {
    .name = "tcp",
    .sendv = aead_sendv,
    .recvv = aead_recvv,
    .shutdown = aead_shutdown,
    .close = aead_close,
    .outq = aead_outq,
    .caps = MIGR_TCAP_SIDE,
    .origin = aead_origin,
};

static EVP_CIPHER_CTX *cipher(const uint8_t *key, int enc)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

    if (c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, NULL, enc) == 1)
        return c;
    EVP_CIPHER_CTX_free(c);
    return NULL;
}

int migr_link_finish(struct migr_transport **t, const struct migr_auth *au, int client)
{
    struct migr_transport *in = *t;
    struct aead_transport *a;

    in->link |= MIGR_LINK_AUTH;
    if (!au->encrypt)
        return 0;
    *t = NULL;
    a = calloc(1, sizeof(*a));
    if (!a) {
        migr_transport_close(in);
        return migr_errorf(ENOMEM, "%s: out of memory for the encrypted stream", in->peer);
    }
    a->in = in;
    a->tx = cipher(client ? au->k_c2s : au->k_s2c, 1);
    a->rx = cipher(client ? au->k_s2c : au->k_c2s, 0);
    a->tbuf = malloc((size_t)SEND_BATCH + (SEND_BATCH / FRAME_MAX + 1) * (FRAME_HDR + FRAME_TAG));
    a->rbuf = malloc((size_t)FRAME_MAX + FRAME_TAG);
    if (!a->tx || !a->rx || !a->tbuf || !a->rbuf) {
        int err = migr_errorf(ENOMEM, "%s: setting up AES-256-GCM failed", in->peer);

        aead_close(&a->pub);
        return err;
    }
    migr_transport_init(&a->pub, in->fd, strcmp(in->ops->name, "unix") ? &aead_tcp_ops : &aead_unix_ops, in->peer);
    a->pub.link = MIGR_LINK_AUTH | MIGR_LINK_ENCRYPT;
    a->pub.uring = in->uring;
    snprintf(a->pub.uring_note, sizeof(a->pub.uring_note), "%s", in->uring_note);
    *t = &a->pub;
    return 0;
}
