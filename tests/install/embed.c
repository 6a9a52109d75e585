/* Built against an installed libmigr (tests/it_install.sh): only the public
 * headers (the umbrella <migr/migr.h>) and pkg-config's flags. Checks the version, then moves a few
 * records over a unix socket through the library. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <migr/migr.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    if (strcmp(migr_version(), MIGR_VERSION_STRING) != 0 || migr_version_number() != MIGR_VERSION_NUMBER) {
        fprintf(stderr, "version: library %s, headers %s\n", migr_version(), MIGR_VERSION_STRING);
        return 1;
    }
    char url[200];
    snprintf(url, sizeof(url), "unix:%s", argv[1]);
    struct migr_listener *l;
    struct migr_transport *a, *b;
    if (migr_listener_open(url, &l) < 0 || migr_transport_connect(url, &a) < 0 ||
        migr_listener_accept(l, 2000, &b) < 0) {
        fprintf(stderr, "transport: %s\n", migr_last_error());
        return 1;
    }
    char out[64] = "hello from an embedder", in[64] = "";
    if (migr_transport_send(a, out, sizeof(out)) < 0 || migr_transport_recv(b, in, sizeof(in)) < 0 ||
        strcmp(in, out) != 0) {
        fprintf(stderr, "send/recv: %s\n", migr_last_error());
        return 1;
    }
    migr_transport_close(a);
    migr_transport_close(b);
    migr_listener_close(l);
    printf("embed ok: libmigr %s\n", migr_version());
    return 0;
}
