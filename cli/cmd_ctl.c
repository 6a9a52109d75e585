/* The small control-socket commands: verify, status, resume, stop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "migr/common.h"
#include "migr/workload.h"

static void usage_common(FILE *f, const char *name, const char *what)
{
    fprintf(f, "usage: migr %s --ctl PATH [--wait SECONDS] [--json]\n\n%s\n\n"
               "  --ctl PATH        control socket of the VMM (migr run / migr recv)\n"
               "  --wait SECONDS    retry connecting for this long (default 0)\n"
               "  --json            print the answer as JSON\n", name, what);
}

void usage_verify(FILE *f)
{
    usage_common(f, "verify", "Stop the guest workload at a consistent point, check every page of its\n"
                              "working set against its generation (lost, stale or torn pages are found),\n"
                              "and let it run again. Exit 0 if intact, 1 if not.");
    fprintf(f, "\nusage: migr verify --image FILE [--json]\n\n"
               "Check a raw image of guest RAM instead (byte offset = guest-physical address),\n"
               "e.g. QEMU's `pmemsave 0 SIZE FILE` of the stopped PVH guest\n"
               "(build/bench/peers/pvh.elf). A page a vCPU was writing when it stopped is\n"
               "accepted if every byte holds its old or its new generation.\n");
}
void usage_status(FILE *f) { usage_common(f, "status", "Print the VM's state (running, failed, pages written)."); }
void usage_resume(FILE *f)
{
    usage_common(f, "resume", "Resume a guest that a failed migration left paused because ownership was\n"
                              "in doubt. Only do this when the destination is not running it.");
}
void usage_cancel(FILE *f)
{
    usage_common(f, "cancel", "Cancel the migration the VMM is running. Before the switchover the guest\n"
                              "simply keeps running here; in (cancellable) post-copy the destination stops it\n"
                              "and sends back its last checkpoint, and the guest resumes here.");
}
void usage_stop(FILE *f) { usage_common(f, "stop", "Stop the VM; its VMM process exits."); }

static int ctl_simple(int argc, char **argv, const char *name, const char *command)
{
    const struct cli_cmd *self = cli_find(name);
    static const struct option opts[] = {
        {"ctl", required_argument, 0, 'C'}, {"wait", required_argument, 0, 'w'},
        {"json", no_argument, 0, 'j'}, {0, 0, 0, 0},
    };
    const char *ctl = NULL;
    long wait_s = 0;
    bool json = false;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        switch (o) {
        case 'C': ctl = optarg; break;
        case 'j': json = true; break;
        case 'w':
            wait_s = strtol(optarg, &end, 10);
            if (*end || wait_s < 0 || wait_s > 3600)
                return cli_bad_args(self, "--wait %s: expected 0..3600 seconds", optarg);
            break;
        default:
            return cli_bad_args(self, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_bad_args(self, "unexpected argument '%s'", argv[optind]);
    if (!ctl)
        return cli_bad_args(self, "--ctl PATH is required");
    char res[16384];
    int rc = ctl_call(ctl, command, (int)wait_s * 1000, NULL, NULL, res, sizeof(res));
    if (rc < 0) {
        fprintf(stderr, "migr %s: %s\n", name, migr_last_error());
        return 1;
    }
    if (json) {
        printf("%s\n", res);
    } else if (strcmp(name, "verify") == 0) {
        double pages = 0, bad = 0, ms = 0;
        char why[400] = "";
        json_get_num(res, "pages_checked", &pages);
        json_get_num(res, "bad_pages", &bad);
        json_get_num(res, "pause_ms", &ms);
        json_get_str(res, "first_bad", why, sizeof(why));
        if (rc == 0)
            printf("verified: %.0f pages intact (workload paused %.1f ms)\n", pages, ms);
        else if (!json_get_str(res, "error", why, sizeof(why)) || bad > 0 || why[0])
            printf("NOT verified: %.0f of %.0f pages bad; %s\n", bad, pages, why);
    } else {
        printf("%s\n", res);
    }
    return rc == 0 ? 0 : 1;
}

/* migr verify --image FILE: the workload's image check on a file, offline. */
static int verify_image(const char *path, bool json)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "migr verify: open %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0) {
        fprintf(stderr, "migr verify: %s: %s\n", path, st.st_size <= 0 ? "empty image" : strerror(errno));
        close(fd);
        return 1;
    }
    size_t len = (size_t)st.st_size;
    void *ram = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (ram == MAP_FAILED) {
        fprintf(stderr, "migr verify: mmap %s (%zu bytes): %s\n", path, len, strerror(e));
        return 1;
    }
    struct migr_verify_report rep;
    int err = migr_workload_verify_image(ram, len, &rep);
    munmap(ram, len);
    if (err < 0) {
        if (json)
            printf("{\"ok\":false,\"image\":\"%s\",\"error\":\"%s\"}\n", path, migr_last_error());
        fprintf(stderr, "migr verify: %s: %s\n", path, migr_last_error());
        return 1;
    }
    if (json)
        printf("{\"ok\":%s,\"image\":\"%s\",\"pages_checked\":%llu,\"bad_pages\":%llu,\"inflight_pages\":%llu,"
               "\"writes\":%llu,\"first_bad\":\"%s\"}\n", rep.ok ? "true" : "false", path,
               (unsigned long long)rep.pages_checked, (unsigned long long)rep.bad_pages,
               (unsigned long long)rep.inflight_pages, (unsigned long long)rep.total_writes, rep.first_bad_why);
    else if (rep.ok)
        printf("verified: %llu pages intact (image %s, %llu writes, %llu page%s in flight accepted)\n",
               (unsigned long long)rep.pages_checked, path, (unsigned long long)rep.total_writes,
               (unsigned long long)rep.inflight_pages, rep.inflight_pages == 1 ? "" : "s");
    else
        printf("NOT verified: %llu of %llu pages bad; %s\n", (unsigned long long)rep.bad_pages,
               (unsigned long long)rep.pages_checked, rep.first_bad_why);
    return rep.ok ? 0 : 1;
}

int cmd_verify(int argc, char **argv)
{
    bool by_image = false, json = false;
    const char *image = NULL;
    for (int i = 1; i < argc; i++)
        by_image |= strncmp(argv[i], "--image", 7) == 0;
    if (!by_image)
        return ctl_simple(argc, argv, "verify", "verify");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--image") == 0 && i + 1 < argc)
            image = argv[++i];
        else if (strncmp(argv[i], "--image=", 8) == 0)
            image = argv[i] + 8;
        else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else
            return cli_bad_args(cli_find("verify"), "--image FILE takes only --json (got '%s')", argv[i]);
    }
    if (!image || !*image)
        return cli_bad_args(cli_find("verify"), "--image needs a FILE");
    return verify_image(image, json);
}
int cmd_status(int argc, char **argv) { return ctl_simple(argc, argv, "status", "status"); }
int cmd_resume(int argc, char **argv) { return ctl_simple(argc, argv, "resume", "resume"); }
int cmd_stop(int argc, char **argv) { return ctl_simple(argc, argv, "stop", "stop"); }
int cmd_cancel(int argc, char **argv) { return ctl_simple(argc, argv, "cancel", "cancel"); }
