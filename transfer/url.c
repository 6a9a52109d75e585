/* migr — transport URL parsing: unix:PATH, unix:@ABSTRACT, tcp:HOST:PORT, tcp:[V6]:PORT. */
#include <errno.h>
#include <string.h>

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

int migr_url_parse(const char *url, struct migr_url *out)
{
    const char *colon;

    memset(out, 0, sizeof(*out));
    if (!url || !*url)
        return migr_errorf(EINVAL, "empty URL (expected unix:PATH or tcp:HOST:PORT)");
    if (!strncmp(url, "unix:", 5))
        return parse_unix(url, url + 5, out);
    if (!strncmp(url, "tcp:", 4))
        return parse_tcp(url, url + 4, out);
    colon = strchr(url, ':');
    if (!colon)
        return migr_errorf(EINVAL, "bad URL '%s': no scheme (expected unix:PATH or tcp:HOST:PORT)",
                           url);
    return migr_errorf(EINVAL, "unknown scheme '%.*s' in '%s' (expected unix: or tcp:)",
                       (int)MIGR_MIN(colon - url, 32), url, url);
}
