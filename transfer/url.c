/* migr — transport URL parsing: unix:PATH, unix:@ABSTRACT, tcp:HOST:PORT, tcp:[V6]:PORT,
 * tcp:HOST:PORT?channels=N, shm:NAME[?ring=SIZE], ?uring=0|1 and ?encrypt=0|1 on unix: and tcp:;
 * and the sender's rule for the number of TCP channels when the URL does not say. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "migr/common.h"
#include "migr/transport.h"

static int parse_unix(const char *url, const char *path, struct migr_url *out)
{
    size_t n = strlen(path);

    if (n == 0)
        return migr_errorf(EINVAL, "bad URL '%s': no socket path after 'unix:'", url);
    if (path[0] == '@' && n == 1)
        return migr_errorf(EINVAL, "bad URL '%s': empty abstract socket name after '@'", url);
    if (n >= sizeof(out->path))
        return migr_errorf(EINVAL, "bad URL '%s': socket path is %zu bytes (at most %zu)",
                           url, n, sizeof(out->path) - 1);
    out->kind = MIGR_URL_UNIX;
    memcpy(out->path, path, n + 1);
    return 0;
}

static int parse_port(const char *url, const char *p, uint16_t *port)
{
    unsigned long v = 0;
    const char *q;

    if (!*p)
        return migr_errorf(EINVAL, "bad URL '%s': missing port", url);
    for (q = p; *q; q++) {
        if (*q < '0' || *q > '9')
            return migr_errorf(EINVAL, "bad URL '%s': port '%s' is not a number", url, p);
        v = v * 10 + (unsigned long)(*q - '0');
        if (v > 65535)
            return migr_errorf(EINVAL, "bad URL '%s': port '%s' out of range 0..65535", url, p);
    }
    *port = (uint16_t)v;
    return 0;
}

static int parse_tcp(const char *url, const char *rest, struct migr_url *out)
{
    const char *host = rest, *host_end, *port;
    size_t n;
    int ret;

    if (rest[0] == '[') {
        host = rest + 1;
        host_end = strchr(host, ']');
        if (!host_end)
            return migr_errorf(EINVAL, "bad URL '%s': '[' without closing ']'", url);
        if (host_end[1] != ':')
            return migr_errorf(EINVAL, "bad URL '%s': expected ':PORT' after ']'", url);
        port = host_end + 2;
    } else {
        host_end = strrchr(rest, ':');
        if (!host_end)
            return migr_errorf(EINVAL, "bad URL '%s': expected tcp:HOST:PORT", url);
        if (memchr(rest, ':', (size_t)(host_end - rest)))
            return migr_errorf(EINVAL, "bad URL '%s': put an IPv6 address in brackets "
                               "(tcp:[::1]:PORT)", url);
        port = host_end + 1;
    }
    n = (size_t)(host_end - host);
    if (n == 0)
        return migr_errorf(EINVAL, "bad URL '%s': missing host", url);
    if (n >= sizeof(out->host))
        return migr_errorf(EINVAL, "bad URL '%s': host is %zu bytes (at most %zu)",
                           url, n, sizeof(out->host) - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)host[i] <= ' ' || host[i] == 0x7f || host[i] == '[' || host[i] == ']')
            return migr_errorf(EINVAL, "bad URL '%s': invalid character in host", url);
    ret = parse_port(url, port, &out->port);
    if (ret < 0)
        return ret;
    out->kind = MIGR_URL_TCP;
    memcpy(out->host, host, n);
    out->host[n] = '\0';
    return 0;
}

/* Options after '?': key=value pairs separated by '&' or ','. */
static int parse_options(const char *url, const char *opts, struct migr_url *out)
{
    const char *p = opts;

    if (!*p)
        return migr_errorf(EINVAL, "bad URL '%s': empty option list after '?'", url);
    while (*p) {
        size_t n = strcspn(p, "&,");
        const char *eq = memchr(p, '=', n);
        char key[32], val[64];

        if (!eq || eq == p || (size_t)(eq - p) >= sizeof(key) || n - (size_t)(eq - p) - 1 >= sizeof(val) ||
            n == (size_t)(eq - p) + 1)
            return migr_errorf(EINVAL, "bad URL '%s': option '%.*s' is not key=value", url, (int)MIGR_MIN(n, 40), p);
        memcpy(key, p, (size_t)(eq - p));
        key[eq - p] = '\0';
        memcpy(val, eq + 1, n - (size_t)(eq - p) - 1);
        val[n - (size_t)(eq - p) - 1] = '\0';
        if (out->kind == MIGR_URL_TCP && !strcmp(key, "channels")) {
            char *end;
            unsigned long v = strtoul(val, &end, 10);

            if (*end || val[0] < '0' || val[0] > '9' || v < 1 || v > MIGR_MC_MAX_CHANNELS)
                return migr_errorf(EINVAL, "bad URL '%s': channels=%s (expected 1..%d)", url, val,
                                   MIGR_MC_MAX_CHANNELS);
            out->channels = (unsigned)v;
        } else if (out->kind == MIGR_URL_SHM && !strcmp(key, "ring")) {
            uint64_t v;

            if (migr_parse_size(val, &v) < 0)
                return migr_errorf(EINVAL, "bad URL '%s': ring=%s is not a size", url, val);
            if (v < (64u << 10) || v > (1u << 30) || (v & (v - 1)))
                return migr_errorf(EINVAL, "bad URL '%s': ring=%s must be a power of two from 64K to 1G",
                                   url, val);
            out->ring_bytes = v;
        } else if ((out->kind == MIGR_URL_TCP || out->kind == MIGR_URL_UNIX) && !strcmp(key, "encrypt")) {
            if (strcmp(val, "0") && strcmp(val, "1"))
                return migr_errorf(EINVAL, "bad URL '%s': encrypt=%s (expected encrypt=1 to carry the stream in "
                                   "AES-256-GCM frames, with a key, or encrypt=0)", url, val);
            out->encrypt = val[0] == '1';
        } else if ((out->kind == MIGR_URL_TCP || out->kind == MIGR_URL_UNIX) && !strcmp(key, "uring")) {
            if (strcmp(val, "0") && strcmp(val, "1"))
                return migr_errorf(EINVAL, "bad URL '%s': uring=%s (expected uring=1 to send and receive "
                                   "through io_uring, or uring=0)", url, val);
            out->uring = val[0] == '1';
        } else {
            return migr_errorf(EINVAL, "bad URL '%s': unknown option '%s' (%s)", url, key,
                               out->kind == MIGR_URL_TCP    ? "tcp: takes channels=N, uring=0|1 and encrypt=0|1"
                               : out->kind == MIGR_URL_UNIX ? "unix: takes uring=0|1 and encrypt=0|1"
                                                            : "shm: takes ring=SIZE");
        }
        p += n;
        if (*p)
            p++;
    }
    if (out->uring && out->channels > 1)
        return migr_errorf(EINVAL, "bad URL '%s': uring=1 is for one stream, not with channels=%u", url,
                           out->channels);
    return 0;
}

static int parse_shm(const char *url, const char *name, struct migr_url *out)
{
    size_t n = strlen(name);

    if (n == 0)
        return migr_errorf(EINVAL, "bad URL '%s': no name after 'shm:'", url);
    if (n >= sizeof(out->name))
        return migr_errorf(EINVAL, "bad URL '%s': name is %zu bytes (at most %zu)", url, n,
                           sizeof(out->name) - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] <= ' ' || name[i] == 0x7f)
            return migr_errorf(EINVAL, "bad URL '%s': invalid character in name", url);
    out->kind = MIGR_URL_SHM;
    memcpy(out->name, name, n + 1);
    if (name[0] == '/')
        snprintf(out->path, sizeof(out->path), "%s", name);
    else
        snprintf(out->path, sizeof(out->path), "@migr-shm-%s", name);
    return 0;
}

int migr_url_parse(const char *url, struct migr_url *out)
{
    const char *q;
    memset(out, 0, sizeof(*out));
    if (!url || !*url)
        return migr_errorf(EINVAL, "empty URL (expected unix:PATH, tcp:HOST:PORT or shm:NAME)");
    q = strchr(url, '?');
    if (!strncmp(url, "unix:", 5) && !q)
        return parse_unix(url, url + 5, out);
    if (!strncmp(url, "unix:", 5) || !strncmp(url, "tcp:", 4) || !strncmp(url, "shm:", 4)) {
        char base[512];
        size_t n = q ? (size_t)(q - url) : strlen(url);
        int ret;

        if (n >= sizeof(base))
            return migr_errorf(EINVAL, "bad URL '%.64s...': %zu bytes is too long", url, n);
        memcpy(base, url, n);
        base[n] = '\0';
        ret = url[0] == 'u'   ? parse_unix(url, base + 5, out)
              : url[0] == 't' ? parse_tcp(url, base + 4, out)
                              : parse_shm(url, base + 4, out);
        if (ret == 0 && q)
            ret = parse_options(url, q + 1, out);
        if (ret < 0)
            memset(out, 0, sizeof(*out));
        return ret;
    }
    const char *colon = strchr(url, ':');
    if (!colon)
        return migr_errorf(EINVAL, "bad URL '%s': no scheme (expected unix:PATH, tcp:HOST:PORT or shm:NAME)",
                           url);
    return migr_errorf(EINVAL, "unknown scheme '%.*s' in '%s' (expected unix:, tcp: or shm:)",
                       (int)MIGR_MIN(colon - url, 32), url, url);
}

/* A host that is this machine by its spelling: 127.0.0.0/8, ::1,
 * ::ffff:127.x.y.z, "localhost" (any case, a trailing dot too). */
static int host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (!strcasecmp(host, "localhost") || !strcasecmp(host, "localhost."))
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
}

/* The one place that decides a sender's channel count (include/migr/transport.h). */
unsigned migr_url_channels_for_peer(const struct migr_url *u)
{
    if (u->kind != MIGR_URL_TCP)
        return 1;
    if (u->channels)
        return u->channels;
    if (u->uring || host_is_loopback(u->host))
        return 1;
    return MIGR_MC_DEFAULT_CHANNELS;
}
