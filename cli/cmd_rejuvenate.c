/* migr rejuvenate: the seed-000 round trip for the VM behind a control
 * socket, with this host's process hooks: VMM 2 is a fresh migr process, the
 * guest moves to it and back (hand-over by default), and VMM 1 is "rebooted"
 * as a fresh process in between. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "migr/common.h"
#include "migr/rejuv.h"

void usage_rejuvenate(FILE *f)
{
    fprintf(f,
            "usage: migr rejuvenate --ctl PATH [--handover | --copy | --warm] [--binary NEW_MIGR] [--json]\n"
            "\n"
            "Rejuvenate the VMM serving PATH without stopping its guest:\n"
            "(1) nesting on (a no-op hook for the KVM backend), (2) start VMM 2, (3) migrate\n"
            "the guest 1->2, (4) reboot VMM 1 (a fresh process), (5) migrate 2->1, (6) stop\n"
            "VMM 2, (7) nesting off. Prints the time of every phase and both downtimes.\n"
            "\n"
            "  --ctl PATH         control socket of the running VMM (kept by the rebooted VMM 1)\n"
            "  --handover         move the guest by passing its memory (default; no copy)\n"
            "  --copy             move it by live migration (pre-copy over a unix socket)\n"
            "  --warm             Warm-VM Reboot instead (Kourai): no second VMM; the guest is\n"
            "                     suspended in place while its VMM process restarts (exec) and\n"
            "                     resumes from the same memory\n"
            "  --binary NEW_MIGR  migr binary for the new VMM processes (default: this one)\n"
            "  --json             print the phases as JSON\n"
            "\nExit status: 0 = the guest runs in the rejuvenated VMM, 1 = a phase failed; the message says where the guest runs (the reason on stderr), 2 = bad arguments.\n");
}

struct proc_hooks {
    const char *ctl, *binary, *mode;
    char ctl2[300];
    char sock[400];
    pid_t pending;            /* the VMM spawned to receive the next migration */
    double downtime_ms[2];
    int moves;
    char move_json[2][16384]; /* the engine's summary of each move */
};

static int spawn(void *arg, int which)
{
    struct proc_hooks *h = arg;
    h->pending = cli_spawn_recv(h->binary, which == 2 ? h->ctl2 : h->ctl, NULL, h->sock, sizeof(h->sock));
    return h->pending < 0 ? (int)h->pending : 0;
}

static int migrate(void *arg, int from, int to)
{
    struct proc_hooks *h = arg;
    char res[16384];
    int err = cli_move_guest(from == 1 ? h->ctl : h->ctl2, h->sock, h->mode, to == 1 ? h->ctl : h->ctl2,
                             h->pending, res, sizeof(res));
    if (err == 0 && h->moves < 2) {
        json_get_num(res, "downtime_ms", &h->downtime_ms[h->moves]);
        snprintf(h->move_json[h->moves++], sizeof(h->move_json[0]), "%s", res);
    }
    return err;
}

/* VMM 1's process retired when its guest left; its reboot is a fresh process
 * that will receive the guest back. */
static int reboot(void *arg, int which)
{
    return spawn(arg, which);
}

/* VMM 2 retires by itself once its guest has left: check that it did. */
static int stop(void *arg, int which)
{
    struct proc_hooks *h = arg;
    char st[1024];
    for (int i = 0; i < 200; i++) {
        if (ctl_call(h->ctl2, "status", 0, NULL, NULL, st, sizeof(st)) < 0)
            return 0;
        usleep(10000);
    }
    return migr_errorf(EBUSY, "VMM 2 at %s did not retire", h->ctl2);
}

int cmd_rejuvenate(int argc, char **argv)
{
    const struct cli_cmd *self = cli_find("rejuvenate");
    static const struct option opts[] = {
        {"ctl", required_argument, 0, 'C'}, {"handover", no_argument, 0, 'H'}, {"copy", no_argument, 0, 'c'}, {"warm", no_argument, 0, 'w'},
        {"binary", required_argument, 0, 'b'}, {"json", no_argument, 0, 'j'}, {0, 0, 0, 0},
    };
    static struct proc_hooks h;
    h = (struct proc_hooks){.binary = "/proc/self/exe", .mode = "handover"};
    bool json = false;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (o) {
        case 'C': h.ctl = optarg; break;
        case 'H': h.mode = "handover"; break;
        case 'c': h.mode = "precopy"; break;
        case 'w': h.mode = "warm"; break;
        case 'b': h.binary = optarg; break;
        case 'j': json = true; break;
        case ':': return cli_bad_args(self, "option '%s' needs a value", argv[optind - 1]);
        default: return cli_bad_args(self, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_bad_args(self, "unexpected argument '%s'", argv[optind]);
    if (!h.ctl)
        return cli_bad_args(self, "--ctl PATH is required");
    char st[1024];
    if (ctl_call(h.ctl, "status", 0, NULL, NULL, st, sizeof(st)) != 0) {
        fprintf(stderr, "migr rejuvenate: %s\n", migr_last_error());
        return 1;
    }
    if (strcmp(h.mode, "warm") == 0) {
        char res[2048];
        uint64_t t0 = migr_now_ns();
        int rc = ctl_call(h.ctl, "warm", 0, NULL, NULL, res, sizeof(res));
        double total = (double)(migr_now_ns() - t0) / 1e6, down = 0;
        json_get_num(res, "downtime_ms", &down);
        if (rc != 0) {
            fprintf(stderr, "migr rejuvenate: warm reboot failed: %s\n", rc < 0 ? migr_last_error() : res);
            return 1;
        }
        double ram = 0;
        json_get_num(st, "ram_bytes", &ram);
        /* Starts with "mode" like the engine's summaries: migr model --from-bench reads it. */
        if (json)
            printf("{\"mode\":\"warm\",\"ok\":true,\"total_ms\":%.3f,\"downtime_ms\":%.3f,\"ram_bytes\":%.0f}\n",
                   total, down, ram);
        else
            printf("  warm reboot: VMM process restarted, guest paused %.2f ms, memory kept in place (%.1f ms)\n",
                   down, total);
        return 0;
    }
    snprintf(h.ctl2, sizeof(h.ctl2), "%s.vmm2", h.ctl);
    struct migr_rejuv_hooks hooks = {
        .spawn_vmm = spawn, .migrate = migrate, .reboot_vmm = reboot, .stop_vmm = stop,
    };
    struct migr_rejuv_report rep;
    int err = migr_rejuvenate(&hooks, &h, &rep);
    if (err < 0)
        fprintf(stderr, "migr rejuvenate: %s\n", migr_last_error());
    double total = 0;
    for (int i = 0; i < MIGR_REJUV_PHASES; i++)
        total += (double)rep.ns[i] / 1e6;
    if (json) {
        printf("{\"ok\":%s,\"how\":\"%s\",\"total_ms\":%.3f,\"downtime_ms\":[%.3f,%.3f],\"phases\":[",
               err ? "false" : "true", h.mode, total, h.downtime_ms[0], h.downtime_ms[1]);
        for (int i = 0; i < MIGR_REJUV_PHASES; i++)
            printf("%s{\"phase\":\"%s\",\"ms\":%.3f}", i ? "," : "", rep.phase[i], (double)rep.ns[i] / 1e6);
        printf("],\"moves\":[");
        for (int i = 0; i < h.moves; i++)
            printf("%s%s", i ? "," : "", h.move_json[i]);
        printf("]}\n");
    } else {
        for (int i = 0; i < MIGR_REJUV_PHASES; i++)
            printf("  (%d) %-14s %9.2f ms%s\n", i + 1, rep.phase[i], (double)rep.ns[i] / 1e6,
                   rep.failed_phase == i ? "  FAILED" : "");
        printf("  round trip %.1f ms; guest paused %.2f ms + %.2f ms (%s)\n", total, h.downtime_ms[0],
               h.downtime_ms[1], h.mode);
    }
    return err ? 1 : 0;
}
