/* migr run: start a VM running the test workload and serve its control socket. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "hv-glue/kvm/kvm.h"
#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/workload.h"

void usage_run(FILE *f)
{
    fprintf(f,
            "usage: migr run --ctl PATH [--mem SIZE] [--vcpus N] [--workload SPEC] [--backend kvm|proc]\n"
            "                [--dirty NAME] [--group NAME] [--kernel FILE.elf [--append CMDLINE]] [--daemon]\n"
            "\n"
            "Start a VM whose guest rewrites memory pages at a chosen rate, keeping the\n"
            "integrity metadata that `migr verify` checks. Runs in the foreground until\n"
            "`migr stop`, SIGTERM, or a completed `migr send` moves the guest away.\n"
            "Exit status: 0 = the VM was stopped (or moved away), 1 = it could not start\n"
            "(the reason on stderr), 2 = bad arguments.\n"
            "\n"
            "  --daemon          return once the guest runs and the control socket answers (the\n"
            "                    VMM goes on in the background; its pid is printed on stdout)\n"
            "  --mem SIZE        guest RAM, multiple of 2 MiB, 8M..64G (default 256M; 512M = 512MiB,\n"
            "                    1.5G; K/M/G/T are powers of 1024, KB/MB/GB powers of 1000)\n"
            "  --vcpus N         vCPUs, 1..64 (default 1)\n"
            "  --workload SPEC   comma-separated key=value (default rate=64M,pattern=random,data=text):\n"
            "                      rate=SIZE     bytes dirtied per second, all vCPUs (0 = as fast as possible)\n"
            "                      ws=SIZE       working set (default: all RAM after the guest's metadata)\n"
            "                      pattern=sequential|random|hotcold   (hotcold: 90%% of writes to 10%% of pages)\n"
            "                      data=zero|text|random               (what the pages hold)\n"
            "                      seed=N\n"
            "  --ctl PATH        control socket to serve (unix socket path)\n"
            "  --backend NAME    kvm (default: migr's VMM on /dev/kvm) or proc (guest RAM written by\n"
            "                    host threads: runs anywhere, migrates the same way)\n"
            "  --dirty NAME      the VM's dirty tracker, used by `migr send` unless it names one\n"
            "                    (default auto: kvm-bitmap for kvm, pagemap-scan for proc). kvm:\n"
            "                    kvm-bitmap, kvm-ring (the VM is created with per-vCPU dirty rings);\n"
            "                    proc: pagemap-scan, soft-dirty, uffd-wp, mprotect. Checked now:\n"
            "                    one that cannot work here is an error listing those that can\n"
            "  --group NAME      member of VM group NAME: `migr upgrade --group NAME` and\n"
            "                    `migr send --group NAME` move all members with one joint\n"
            "                    switchover (all paused, all state moved, all resumed)\n");
}

int cmd_run(int argc, char **argv)
{
    const struct cli_cmd *self = cli_find("run");
    static const struct option opts[] = {
        {"mem", required_argument, 0, 'm'}, {"vcpus", required_argument, 0, 'c'},
        {"workload", required_argument, 0, 'w'}, {"ctl", required_argument, 0, 'C'},
        {"backend", required_argument, 0, 'b'}, {"dirty", required_argument, 0, 'D'},
        {"group", required_argument, 0, 'g'}, {"kernel", required_argument, 0, 'k'},
        {"append", required_argument, 0, 'a'}, {"daemon", no_argument, 0, 'd'}, {0, 0, 0, 0},
    };
    struct migr_vm_config cfg = {.mem_bytes = 256ull << 20, .nvcpus = 1};
    const char *ctl = NULL, *backend = "kvm", *dirty = "auto", *group = NULL, *append = NULL, *spec = NULL;
    migr_workload_defaults(&cfg.wl);
    bool daemon = false;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (o) {
        case 'd': daemon = true; break;
        case 'm':
            if (cli_parse_size(optarg, &cfg.mem_bytes) < 0)
                return cli_bad_args(self, "--mem: %s", migr_last_error());
            if (cfg.mem_bytes < (8ull << 20) || cfg.mem_bytes % (2ull << 20) || cfg.mem_bytes > (64ull << 30))
                return cli_bad_args(self, "--mem %s: must be a multiple of 2M between 8M and 64G", optarg);
            break;
        case 'c': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 64)
                return cli_bad_args(self, "--vcpus %s: expected 1..64", optarg);
            cfg.nvcpus = (uint32_t)n;
            break;
        }
        case 'w':
            if (migr_workload_parse(optarg, &cfg.wl) < 0)
                return cli_bad_args(self, "--workload: %s", migr_last_error());
            spec = optarg;
            break;
        case 'k': cfg.kernel = optarg; break;
        case 'a': append = optarg; break;
        case 'C': ctl = optarg; break;
        case 'b':
            if (strcmp(optarg, "kvm") && strcmp(optarg, "proc"))
                return cli_bad_args(self, "--backend %s: expected kvm or proc", optarg);
            backend = optarg;
            break;
        case 'D': dirty = optarg; break;
        case 'g':
            if (cli_group_check_name(optarg) < 0)
                return cli_bad_args(self, "--group: %s", migr_last_error());
            group = optarg;
            break;
        case ':':
            return cli_bad_args(self, "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_bad_args(self, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_bad_args(self, "unexpected argument '%s'", argv[optind]);
    if (!ctl)
        return cli_bad_args(self, "--ctl PATH is required");
    char cmdline[4096];
    if (append && !cfg.kernel)
        return cli_bad_args(self, "--append needs --kernel");
    if (cfg.kernel) {
        if (cfg.nvcpus != 1)
            return cli_bad_args(self, "--kernel boots one vCPU (the PVH guest has no SMP start-up): "
                                "drop --vcpus %u", cfg.nvcpus);
        if (strcmp(backend, "kvm") != 0)
            return cli_bad_args(self, "--kernel needs --backend kvm");
        int n = snprintf(cmdline, sizeof(cmdline), "%s%s%s", spec ? spec : "", spec && append ? " " : "",
                         append ? append : "");
        if (n < 0 || (size_t)n >= sizeof(cmdline))
            return cli_bad_args(self, "--append: command line longer than %zu bytes", sizeof(cmdline) - 1);
        cfg.cmdline = cmdline;
    }
    if (strchr(dirty, ' ') || strlen(dirty) > 30)
        return cli_bad_args(self, "--dirty '%s': not a tracker name", dirty);
    int ready_fd = -1;
    if (daemon) {
        int rc = cli_daemonize("run", &ready_fd);
        if (rc >= 0)
            return rc;
    }
    if (!migr_hv_available(backend)) {
        fprintf(stderr, "migr run: backend %s is not usable here: %s\n", backend, migr_last_error());
        return 1;
    }
    struct migr_hv *hv;
    /* KVM enables dirty rings only before the vCPUs exist. */
    bool ring = strcmp(dirty, "kvm-ring") == 0 && strcmp(backend, "kvm") == 0;
    int err = ring ? migr_kvm_create_ring(&cfg, MIGR_KVM_RING_DEFAULT, &hv) : migr_hv_create(backend, &cfg, &hv);
    if (err == -ENOTSUP && ring) {
        /* No rings on this KVM: say which trackers would work for a plain VM. */
        char why[400];
        snprintf(why, sizeof(why), "%s", migr_last_error());
        struct migr_dirty *d;
        if (migr_hv_create(backend, &cfg, &hv) == 0) {
            migr_dirty_open("no-such-tracker", hv, &d);
            const char *ok = strstr(migr_last_error(), "this machine supports: ");
            migr_hv_destroy(hv);
            return cli_bad_args(self, "--dirty kvm-ring: %s (%s", why, ok ? ok : "");
        }
        return cli_bad_args(self, "--dirty kvm-ring: %s", why);
    }
    if (err < 0) {
        fprintf(stderr, "migr run: %s\n", migr_last_error());
        return 1;
    }
    /* The tracker must exist and work for this guest: check now, not at
     * `migr send`; the message lists the trackers that work here. */
    struct migr_dirty *d;
    if (migr_dirty_open(dirty, hv, &d) < 0) {
        char why[600];
        snprintf(why, sizeof(why), "%s", migr_last_error());
        bool rings = strcmp(backend, "kvm") == 0 && migr_kvm_ring_offered();
        migr_hv_destroy(hv);
        return cli_bad_args(self, "--dirty %s: %s%s", dirty, why,
                            rings ? "; and kvm-ring (this KVM offers dirty rings: --dirty kvm-ring creates "
                                    "the VM with them)" : "");
    }
    char tracker[32];
    snprintf(tracker, sizeof(tracker), "%s", d->ops->name);
    migr_dirty_close(d); /* opened only to check; migr send starts its own */
    if (hv->ops->resume(hv) < 0) {
        fprintf(stderr, "migr run: %s\n", migr_last_error());
        migr_hv_destroy(hv);
        return 1;
    }
    char wl[200], info[600];
    migr_workload_format(&cfg.wl, wl, sizeof(wl));
    if (cfg.kernel) /* the kernel parses its own command line */
        snprintf(wl, sizeof(wl), "kernel %.80s, cmdline '%.80s'", cfg.kernel, cfg.cmdline);
    int il = snprintf(info, sizeof(info), "\"backend\":\"%s\",\"ram_bytes\":%llu,\"vcpus\":%u,\"workload\":\"%s\","
                      "\"dirty\":\"%s\"", backend, (unsigned long long)cfg.mem_bytes, cfg.nvcpus, wl, tracker);
    if (group)
        snprintf(info + il, sizeof(info) - (size_t)il, ",\"group\":\"%s\"", group);
    fprintf(stderr, "migr run: guest running (%llu MiB, %u vCPU%s, %s, dirty tracker %s), control socket %s\n",
            (unsigned long long)(cfg.mem_bytes >> 20), cfg.nvcpus, cfg.nvcpus > 1 ? "s" : "", wl, tracker, ctl);
    struct ctl_server *srv;
    if (ctl_open(ctl, false, &srv) < 0) {
        fprintf(stderr, "migr run: %s\n", migr_last_error());
        migr_hv_destroy(hv);
        return 1;
    }
    if (ready_fd < 0)
        return ctl_run(srv, hv, info, -1, NULL);
    return ctl_run(srv, hv, info, ready_fd, "ready\n");
}
