/* migr — keys and the authentication handshake (docs/transport.md,
 * "Authentication"; byte layout in docs/format.md, "Authentication").
 *
 * Mutual challenge-response with HMAC-SHA256 (OpenSSL's libcrypto) over a
 * fresh 32-byte nonce from each side:
 *
 *   client -> server  HELLO_C  "MIGRAUC1" version flags  nonce_c
 *   server -> client  HELLO_S  "MIGRAUS1" version flags  nonce_s  mac_s
 *   client -> server  FINISH   "MIGRAUF1" mac_c           (or "MIGRAUX1": your proof is wrong)
 *   server -> client  RESULT   "MIGRAUOK"                 (or "MIGRAUNO", then close)
 *
 *   mac_s = HMAC(K, "migr-auth-v1 server" || HELLO_C || HELLO_S[0..48))
 *   mac_c = HMAC(K, "migr-auth-v1 client" || HELLO_C || HELLO_S)
 *
 * Each MAC covers both nonces, so a recorded handshake replayed to either
 * side fails (the other side's nonce is new); the role label differs, so a
 * server's proof sent back to it as a client's (reflection) fails; the flags
 * (encryption) are inside both MACs, so nobody on the path can strip them.
 * The server proves itself first, but only over a transcript holding its own
 * fresh nonce: that answers nothing a stranger could reuse. Nothing of the
 * stream is read before RESULT, and a side that sends more than its message
 * before the other has answered is refused ("spoke out of turn").
 *
 * The server side is driven by the listener's state machine (accept.c), one
 * message at a time; the client side is a blocking exchange here.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "migr/common.h"
#include "migr/format.h"
#include "migr/transport.h"
#include "transfer/transport_impl.h"

#define KEY_MIN 16u
#define KEY_MAX 4096u

struct migr_key {
    size_t len;
    uint8_t b[];
};

static const char LABEL_S[] = "migr-auth-v1 server";
static const char LABEL_C[] = "migr-auth-v1 client";
static const char LABEL_C2S[] = "migr-aead-v1 c2s";
static const char LABEL_S2C[] = "migr-aead-v1 s2c";

int migr_key_new(const void *p, size_t len, struct migr_key **out)
{
    struct migr_key *k;

    if (len < KEY_MIN || len > KEY_MAX)
        return migr_errorf(EINVAL, "key of %zu bytes (expected %u..%u)", len, KEY_MIN, KEY_MAX);
    k = malloc(sizeof(*k) + len);
    if (!k)
        return migr_errorf(ENOMEM, "key: out of memory");
    k->len = len;
    memcpy(k->b, p, len);
    *out = k;
    return 0;
}

int migr_key_dup(const struct migr_key *k, struct migr_key **out)
{
    return migr_key_new(k->b, k->len, out);
}

void migr_key_free(struct migr_key *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k->b, k->len);
    free(k);
}

int migr_key_load(const char *path, struct migr_key **out)
{
    uint8_t buf[KEY_MAX + 2];
    struct stat st;
    size_t n = 0;
    int fd, err;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return migr_errorf_errno(errno, "key file %s", path);
    if (fstat(fd, &st) < 0) {
        err = migr_errorf_errno(errno, "key file %s: fstat", path);
        close(fd);
        return err;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return migr_errorf(EINVAL, "key file %s: not a regular file", path);
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        close(fd);
        return migr_errorf(EACCES, "key file %s: owned by uid %u, not by us (uid %u) or root: whoever owns it "
                           "can change the key", path, (unsigned)st.st_uid, (unsigned)geteuid());
    }
    if (st.st_mode & 077) {
        close(fd);
        return migr_errorf(EACCES, "key file %s: mode %04o lets other users read or change it (chmod 600 %s)", path,
                           (unsigned)(st.st_mode & 07777), path);
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = migr_errorf_errno(errno, "key file %s: read", path);
            OPENSSL_cleanse(buf, sizeof(buf));
            close(fd);
            return err;
        }
        if (r == 0 || (n += (size_t)r) == sizeof(buf))
            break;
    }
    close(fd);
    if (n && buf[n - 1] == '\n')
        n--;
    if (n < KEY_MIN || n > KEY_MAX) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return migr_errorf(EINVAL, "key file %s: %s%zu bytes (a key is %u..%u bytes, e.g. `openssl rand -hex 32 > %s`)",
                           path, n > KEY_MAX ? "more than " : "", n > KEY_MAX ? (size_t)KEY_MAX : n, KEY_MIN, KEY_MAX,
                           path);
    }
    err = migr_key_new(buf, n, out);
    OPENSSL_cleanse(buf, sizeof(buf));
    return err < 0 ? migr_error_prefix(-err, "key file %s", path) : 0;
}

/* HMAC-SHA256(K, label || a || b) into mac. 0 or -EIO. */
static int hmac3(const struct migr_key *k, const char *label, const uint8_t *a, size_t alen, const uint8_t *b,
                 size_t blen, uint8_t mac[MIGR_AUTH_MAC])
{
    uint8_t msg[32 + MIGR_AUTH_HELLO_C + MIGR_AUTH_HELLO_S];
    size_t ll = strlen(label), n = 0;
    unsigned int mlen = 0;

    if (ll + alen + blen > sizeof(msg))
        return -EINVAL;
    memcpy(msg, label, ll);
    n += ll;
    memcpy(msg + n, a, alen);
    n += alen;
    memcpy(msg + n, b, blen);
    n += blen;
    if (!HMAC(EVP_sha256(), k->b, (int)k->len, msg, n, mac, &mlen) || mlen != MIGR_AUTH_MAC)
        return migr_errorf(EIO, "authentication: HMAC-SHA256 failed in libcrypto");
    return 0;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static int nonce(uint8_t *p)
{
    if (RAND_bytes(p, MIGR_AUTH_NONCE) != 1)
        return migr_errorf(EIO, "authentication: no random bytes from libcrypto (RAND_bytes)");
    return 0;
}

static int derive(const struct migr_key *k, struct migr_auth *a)
{
    const uint8_t *nc = a->hello_c + 16, *ns = a->hello_s + 16;
    int err;

    if (!a->encrypt)
        return 0;
    if ((err = hmac3(k, LABEL_C2S, nc, MIGR_AUTH_NONCE, ns, MIGR_AUTH_NONCE, a->k_c2s)) < 0 ||
        (err = hmac3(k, LABEL_S2C, nc, MIGR_AUTH_NONCE, ns, MIGR_AUTH_NONCE, a->k_s2c)) < 0)
        return err;
    return 0;
}

void migr_auth_wipe(struct migr_auth *a)
{
    OPENSSL_cleanse(a, sizeof(*a));
}

/* What the first 8 bytes of a connection that should have said HELLO_C were. */
static const char *what_instead(const uint8_t *b)
{
    if (!memcmp(b, MIGR_STREAM_MAGIC, 8))
        return "it sent a migr stream without authenticating (a source without a key, or a downgrade attempt)";
    if (!memcmp(b, "MIGRMCH1", 8))
        return "it sent a multi-channel hello without authenticating (a source without a key?)";
    if (!memcmp(b, "MIGRSHM1", 8))
        return "it sent a shm: hello without authenticating (a client without a key?)";
    if (!memcmp(b, "MIGRAUS1", 8))
        return "it sent a server's answer (a listener connected to a listener, or a reflected handshake)";
    return "not a migr client (bad authentication hello)";
}

int migr_auth_server_hello(const struct migr_key *k, int want_encrypt, const uint8_t *hello_c,
                           struct migr_auth *a, uint8_t *hello_s)
{
    uint16_t ver = get16(hello_c + 8), flags = get16(hello_c + 10);
    int err;

    memset(a, 0, sizeof(*a));
    if (memcmp(hello_c, MIGR_AUTH_MAGIC_C, 8))
        return migr_errorf(EPROTO, "authentication refused: %s", what_instead(hello_c));
    if (ver != MIGR_AUTH_VERSION)
        return migr_errorf(EPROTO, "authentication refused: handshake version %u (this build speaks %u)", ver,
                           MIGR_AUTH_VERSION);
    if (flags & ~MIGR_AUTH_F_ENCRYPT || hello_c[12] | hello_c[13] | hello_c[14] | hello_c[15])
        return migr_errorf(EPROTO, "authentication refused: unknown flags 0x%x or reserved bytes set in the hello",
                           flags);
    memcpy(a->hello_c, hello_c, MIGR_AUTH_HELLO_C);
    a->encrypt = want_encrypt || (flags & MIGR_AUTH_F_ENCRYPT);
    memcpy(hello_s, MIGR_AUTH_MAGIC_S, 8);
    put16(hello_s + 8, MIGR_AUTH_VERSION);
    put16(hello_s + 10, a->encrypt ? MIGR_AUTH_F_ENCRYPT : 0);
    memset(hello_s + 12, 0, 4);
    if ((err = nonce(hello_s + 16)) < 0 || (err = hmac3(k, LABEL_S, hello_c, MIGR_AUTH_HELLO_C, hello_s, 48, hello_s + 48)) < 0)
        return err;
    memcpy(a->hello_s, hello_s, MIGR_AUTH_HELLO_S);
    return 0;
}

int migr_auth_server_finish(const struct migr_key *k, struct migr_auth *a, const uint8_t *fin)
{
    uint8_t mac[MIGR_AUTH_MAC];
    int err, ok;

    if (!memcmp(fin, MIGR_AUTH_MAGIC_X, 8))
        return migr_errorf(EACCES, "authentication failed: the peer could not verify our proof: its key differs "
                           "from ours (wrong --key-file?)");
    if (memcmp(fin, MIGR_AUTH_MAGIC_F, 8))
        return migr_errorf(EPROTO, "authentication refused: the peer's proof is not a migr FINISH message");
    if ((err = hmac3(k, LABEL_C, a->hello_c, MIGR_AUTH_HELLO_C, a->hello_s, MIGR_AUTH_HELLO_S, mac)) < 0)
        return err;
    ok = CRYPTO_memcmp(mac, fin + 8, MIGR_AUTH_MAC) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    if (!ok)
        return migr_errorf(EACCES, "authentication failed: the peer's proof does not match our key (wrong key, or a "
                           "replayed or reflected handshake)");
    a->done = 1;
    return derive(k, a);
}

/* Fail if bytes are waiting on fd that the peer should not have sent yet. */
int migr_auth_check_turn(int fd, const char *who)
{
    uint8_t b[64];
    ssize_t r = recv(fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);

    if (r > 0)
        return migr_errorf(EPROTO, "authentication refused: %s spoke out of turn (%zd%s bytes before our answer)", who,
                           r, r == (ssize_t)sizeof(b) ? "+" : "");
    return 0;
}

static int send_all(int fd, const void *p, size_t n)
{
    int err = migr_write_full(fd, p, n);

    return err < 0 ? err : 0;
}

int migr_auth_client(int fd, const char *url, const struct migr_key *k, int want_encrypt, uint64_t deadline_ns,
                     struct migr_auth *a)
{
    uint8_t hs[MIGR_AUTH_HELLO_S], mac[MIGR_AUTH_MAC], fin[MIGR_AUTH_FINISH], res[MIGR_AUTH_RESULT];
    int err, ok;

    memset(a, 0, sizeof(*a));
    if ((err = migr_auth_check_turn(fd, "the listener")) < 0)
        return migr_error_prefix(-err, "connect %s", url);
    memcpy(a->hello_c, MIGR_AUTH_MAGIC_C, 8);
    put16(a->hello_c + 8, MIGR_AUTH_VERSION);
    put16(a->hello_c + 10, want_encrypt ? MIGR_AUTH_F_ENCRYPT : 0);
    if ((err = nonce(a->hello_c + 16)) < 0)
        return err;
    if ((err = send_all(fd, a->hello_c, MIGR_AUTH_HELLO_C)) < 0)
        return migr_errorf_errno(-err, "connect %s: authentication hello", url);
    err = migr_read_deadline(fd, hs, sizeof(hs), deadline_ns);
    if (err == -ETIMEDOUT)
        return migr_errorf(ETIMEDOUT, "connect %s: no authentication answer in time (is it a migr listener with a "
                           "key?)", url);
    if (err == -EPIPE)
        return migr_errorf(EPROTO, "connect %s: the listener closed the connection during authentication (does it "
                           "have a key? a listener without one reads our hello as a bad stream)", url);
    if (err < 0)
        return migr_errorf_errno(-err, "connect %s: authentication answer", url);
    if (memcmp(hs, MIGR_AUTH_MAGIC_S, 8) || get16(hs + 8) != MIGR_AUTH_VERSION ||
        (get16(hs + 10) & ~MIGR_AUTH_F_ENCRYPT) || hs[12] | hs[13] | hs[14] | hs[15])
        return migr_errorf(EPROTO, "connect %s: the listener's answer is not a migr authentication answer", url);
    if ((err = hmac3(k, LABEL_S, a->hello_c, MIGR_AUTH_HELLO_C, hs, 48, mac)) < 0)
        return err;
    ok = CRYPTO_memcmp(mac, hs + 48, MIGR_AUTH_MAC) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    if (!ok) {
        memcpy(fin, MIGR_AUTH_MAGIC_X, 8);
        memset(fin + 8, 0, MIGR_AUTH_MAC);
        (void)send_all(fd, fin, sizeof(fin));   /* a courtesy: it can say why */
        return migr_errorf(EACCES, "connect %s: wrong key: the listener's proof does not match our key (a different "
                           "--key-file, or not the listener we meant)", url);
    }
    if (want_encrypt && !(get16(hs + 10) & MIGR_AUTH_F_ENCRYPT))
        return migr_errorf(EPROTO, "connect %s: the listener declined encryption", url);
    if ((err = migr_auth_check_turn(fd, "the listener")) < 0)
        return migr_error_prefix(-err, "connect %s", url);
    memcpy(a->hello_s, hs, sizeof(hs));
    a->encrypt = (get16(hs + 10) & MIGR_AUTH_F_ENCRYPT) != 0;
    memcpy(fin, MIGR_AUTH_MAGIC_F, 8);
    if ((err = hmac3(k, LABEL_C, a->hello_c, MIGR_AUTH_HELLO_C, hs, MIGR_AUTH_HELLO_S, fin + 8)) < 0)
        return err;
    if ((err = send_all(fd, fin, sizeof(fin))) < 0)
        return migr_errorf_errno(-err, "connect %s: authentication proof", url);
    err = migr_read_deadline(fd, res, sizeof(res), deadline_ns);
    if (err == -EPIPE || (err == 0 && !memcmp(res, MIGR_AUTH_NO, 8)))
        return migr_errorf(EACCES, "connect %s: the listener refused our proof (its key differs?)", url);
    if (err == -ETIMEDOUT)
        return migr_errorf(ETIMEDOUT, "connect %s: no authentication result in time", url);
    if (err < 0)
        return migr_errorf_errno(-err, "connect %s: authentication result", url);
    if (memcmp(res, MIGR_AUTH_OK, 8))
        return migr_errorf(EPROTO, "connect %s: bad authentication result", url);
    a->done = 1;
    return derive(k, a);
}
