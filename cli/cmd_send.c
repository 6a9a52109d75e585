/* migr send: live-migrate the VM behind a control socket. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "migr/common.h"
#include "migr/transport.h"

void usage_send(FILE *f)
{
    fprintf(f,
            "usage: migr send --ctl PATH | --group NAME --to URL [--mode MODE] [--postcopy-after N] [--prepage N]\n"
            "                 [--max-bandwidth R] [--adaptive [--min-bandwidth R]]\n"
            "                 [--handover] [--downtime-ms TIME] [--max-rounds N] [--dirty NAME] [--json]\n"
            "                 [--compress CODEC] [--compress-level N] [--xbzrle-cache SIZE] [--compress-threads N]\n"
            "                 [--stall-timeout TIME] [--postcopy-lease TIME] [--settle-window TIME] [--key-file PATH]\n"
            "\n"
            "Live-migrate the VM served at the control socket PATH to a `migr recv`\n"
            "listening on URL (the forms below). Round 1 sends all RAM; later\n"
            "rounds send what the guest dirtied while they halve it; then the guest is\n"
            "paused, the few pages left and the vCPU state are sent, and it resumes on the\n"
            "destination (a guest dirtying faster than that: its last pages follow in a\n"
            "cancellable post-copy tail; --mode tail, the default). Any failure before the\n"
            "destination confirms resumes the guest on the source. Exit status 0 =\n"
            "migrated, 1 = failed (the message says where the guest runs), 2 = bad arguments.\n"
            "Ctrl-C or SIGTERM cancels the migration: before the switchover the guest keeps\n"
            "running on the source, in post-copy it is taken back from the destination's\n"
            "checkpoint; the command waits for that and says where the guest is (a second\n"
            "Ctrl-C stops waiting; the VMM then finishes or cancels on its own). Watch a\n"
            "running migration with `migr status --ctl PATH --watch`.\n"
            "\n"
            "URL:  unix:PATH           a unix socket on this host\n"
            "      tcp:HOST:PORT       TCP (HOST: a name, an IPv4 address or [IPv6])\n"
            "      shm:NAME            a shared-memory ring on this host (fastest copy)\n"
            "      handover:PATH       = unix:PATH with --handover\n"
            "      ?channels=N         tcp: N parallel connections (1..16; default 1: pays on fast\n"
            "                          links with a long round trip, docs/transport.md)\n"
            "      ?uring=1            unix:, tcp: send through io_uring\n"
            "      ?encrypt=1          unix:, tcp: AES-256-GCM frames (needs --key-file on both sides)\n"
            "      options join with &: tcp:10.0.0.2:7000?channels=4&encrypt=1\n"
            "SIZE: 4096, 64M (MiB), 512MiB, 1.5G, 100MB (10^6 bytes); R: a SIZE per second, /s\n"
            "      optional (100M = 100MiB/s; 100MB/s = 10^8 bytes/s); TIME: 500ms, 2s, 1m\n"
            "\n"
            "  --ctl PATH         control socket of the source VMM (migr run / migr recv)\n"
            "  --to URL           destination; handover:PATH = unix:PATH with --handover\n"
            "  --group NAME       migrate every member of VM group NAME (migr run --group) with one\n"
            "                     joint switchover (all paused, all state moved, all resumed); {vm}\n"
            "                     in URL is replaced by each member's control socket name without\n"
            "                     .ctl. If one member fails before the joint commit, every guest\n"
            "                     resumes on its source; one whose COMMIT fails after it (refused,\n"
            "                     or lost and settled) is migrated again on its own, so the group\n"
            "                     ends whole. precopy and handover modes only\n"
            "  --mode MODE        tail (default; --group: precopy): pre-copy rounds while they halve\n"
            "                     the dirty pages, then the last ones inside the pause, or, if the\n"
            "                     rounds cannot converge, after it (a short cancellable post-copy\n"
            "                     tail); precopy (rounds until the rest fits --downtime-ms, then\n"
            "                     stop-and-copy), postcopy (switch over at once; missing pages are\n"
            "                     fetched when the guest faults and pushed in the background),\n"
            "                     hybrid (N pre-copy rounds, then post-copy for the rest)\n"
            "  --postcopy-after N hybrid: at most N pre-copy rounds before switching (default 1)\n"
            "                     Post-copy is cancellable: until every page has arrived the\n"
            "                     destination sends back what the guest dirties, so `migr cancel`,\n"
            "                     a broken link or the destination's death resumes the guest here.\n"
            "                     Only the source's own death loses it (docs/design.md)\n"
            "  --prepage N        post-copy: pages sent after each faulted one (default 8)\n"
            "  --max-bandwidth R  at most R on the wire (100M = 100 MiB/s; default unlimited)\n"
            "  --adaptive         rate control like Xen's (for links shared with other guests):\n"
            "                     round 1 at --min-bandwidth, each later round at the dirty rate\n"
            "                     of the previous one + --min-bandwidth, capped by --max-bandwidth;\n"
            "                     the stop-and-copy at --max-bandwidth\n"
            "  --min-bandwidth R  adaptive: first rate and step (default 64M = 64 MiB/s)\n"
            "  --handover         same host only: pass the guest's memory (memfd, SCM_RIGHTS) over\n"
            "                     the unix socket; only vCPU state is copied (downtime ~1 ms)\n"
            "  --downtime-ms TIME precopy, tail, hybrid: downtime target (default 300 = 300ms; 0.5s)\n"
            "  --max-rounds N     pre-copy rounds at most (default 30)\n"
            "  --dirty NAME       dirty tracker (default auto: kvm-bitmap for kvm, pagemap-scan for proc;\n"
            "                     also uffd-wp, soft-dirty, mprotect)\n"
            "  --compress CODEC   page codec of the pre-copy rounds: none (every page raw), zero (zero\n"
            "                     pages as runs, the rest raw), xbzrle (deltas against the pages the\n"
            "                     destination has, from round 2), lz4, zlib, zstd, or auto (default:\n"
            "                     per page zero / delta / lz4 / zstd / raw, whichever costs least at\n"
            "                     the measured link rate; docs/compress.md)\n"
            "  --compress-level N lz4 (-65537..12), zlib (1..9) or zstd level (auto: zstd's); 0 = default\n"
            "  --xbzrle-cache SIZE sender's cache of pages for deltas (a bare number is MiB; 0 = no\n"
            "                     deltas; default auto: 1/256 of the guest's RAM, at most 64M, so that\n"
            "                     the source's memory grows by under 1%% of the guest's)\n"
            "  --compress-threads N  encoding threads (default 2 with 2+ CPUs, else 1; the destination's\n"
            "                     decoders: migr recv --decode-threads)\n"
            "  --stall-timeout TIME before the switchover: if nothing moves on the link for TIME\n"
            "                     (a stalled or partitioned destination), give up and resume the\n"
            "                     guest here (default 10s; a bare number is ms; 0 = wait forever). `migr cancel`\n"
            "                     works at any moment, also during a stall\n"
            "  --postcopy-lease TIME  post-copy: the destination runs the guest only while\n"
            "                     its last checkpoint acknowledged here is younger than TIME; after\n"
            "                     2 x TIME without a word from it (a partition), the guest is taken\n"
            "                     back here (default 10s; a bare number is ms)\n"
            "  --settle-window TIME  after COMMIT, if the destination's DONE does not come within\n"
            "                     --stall-timeout (or the link breaks): connect to URL again and ask\n"
            "                     whether the guest runs there (then it has moved) or never will (then\n"
            "                     it resumes here), for up to TIME (default 20s; a bare number is ms).\n"
            "                     Only if no answer comes is the guest kept paused here, and `migr\n"
            "                     status` says since when the destination is unreachable\n"
            "  --key-file PATH    prove to the destination (migr recv --key-file) that we know the key\n"
            "                     in PATH (owner-only file), and check that it knows it too, before\n"
            "                     the stream starts; the post-copy fault channel is authenticated\n"
            "                     with it as well. The VMM reads PATH itself: the key never travels\n"
            "                     on a command line. tcp:...?encrypt=1 also encrypts the stream\n"
            "  --json             print the summary as one JSON object on the last line of stdout\n");
}

static int append_setting(char *buf, size_t cap, const char *key, const char *val)
{
    size_t n = strlen(buf);
    if (strchr(val, ' ') || !*val)
        return -1;
    int w = snprintf(buf + n, cap - n, " %s=%s", key, val);
    return w < 0 || (size_t)w >= cap - n ? -1 : 0;
}

/* Copy s into out replacing every "{vm}" with vm. */
static void expand_vm(const char *s, const char *vm, char *out, size_t cap)
{
    size_t j = 0;
    while (*s && j + 1 < cap) {
        if (strncmp(s, "{vm}", 4) == 0) {
            j += (size_t)snprintf(out + j, cap - j, "%s", vm);
            if (j >= cap)
                j = cap - 1;
            s += 4;
        } else {
            out[j++] = *s++;
        }
    }
    out[j] = 0;
}

#define MAX_MEMBERS 64

/* Every member of the group migrates to its own destination ({vm} = the
 * member's control socket file name without ".ctl"), with one joint switchover. */
static int send_group(const char *group, const char *cmd_fmt, bool json)
{
    static char ctl[MAX_MEMBERS][256];
    static struct cli_group_job jobs[MAX_MEMBERS];
    int n = cli_group_members(group, ctl, MAX_MEMBERS);
    if (n < 0) {
        fprintf(stderr, "migr send: %s\n", migr_last_error());
        return 1;
    }
    for (int i = 0; i < n; i++) {
        char vm[256];
        const char *base = strrchr(ctl[i], '/');
        snprintf(vm, sizeof(vm), "%.255s", base ? base + 1 : ctl[i]);
        size_t l = strlen(vm);
        if (l > 4 && strcmp(vm + l - 4, ".ctl") == 0)
            vm[l - 4] = 0;
        snprintf(jobs[i].ctl, sizeof(jobs[i].ctl), "%.255s", ctl[i]);
        expand_vm(cmd_fmt, vm, jobs[i].cmd, sizeof(jobs[i].cmd));
    }
    double gdown = 0;
    int err = cli_group_switch(jobs, n, &gdown);
    if (err < 0)
        fprintf(stderr, "migr send: group %s: %s\n", group, migr_last_error());
    cli_group_report(stdout, group, jobs, n, gdown, err == 0, json);
    return err == 0 ? 0 : 1;
}

/* The first Ctrl-C / SIGTERM: cancel the migration in the VMM (which owns
 * it), then wait for its final answer, which says where the guest is. */
static void send_interrupted(void *arg)
{
    const char *ctl = arg;
    char res[2048], why[600];
    cli_progress_done();
    fprintf(stderr, "migr send: interrupted: cancelling the migration (again: stop waiting; it then goes on "
                    "in the VMM)\n");
    int rc = ctl_call(ctl, "cancel", 0, NULL, NULL, res, sizeof(res));
    if (rc < 0)
        fprintf(stderr, "migr send: cannot cancel: %s\n", migr_last_error());
    else if (rc)
        fprintf(stderr, "migr send: cancel refused: %s\n", json_get_str(res, "error", why, sizeof(why)) ? why : res);
}

static bool name_in(const char *v, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(v, *names) == 0)
            return true;
    return false;
}

static const char *const codecs[] = {"none", "zero", "xbzrle", "lz4", "zlib", "zstd", "auto", NULL};
static const char *const trackers[] = {"auto", "kvm-bitmap", "kvm-ring", "pagemap-scan", "uffd-wp", "soft-dirty",
                                       "mprotect", NULL};

int cmd_send(int argc, char **argv)
{
    char extra[512] = "";
    const struct cli_cmd *self = cli_find("send");
    static const struct option opts[] = {
        {"ctl", required_argument, 0, 'C'}, {"to", required_argument, 0, 't'},
        {"downtime-ms", required_argument, 0, 'd'}, {"downtime", required_argument, 0, 'd'},
        {"max-rounds", required_argument, 0, 'r'},
        {"dirty", required_argument, 0, 'D'}, {"json", no_argument, 0, 'j'},
        {"handover", no_argument, 0, 'H'}, {"mode", required_argument, 0, 'M'},
        {"postcopy-after", required_argument, 0, 'P'},
        {"prepage", required_argument, 0, 'p'}, {"max-bandwidth", required_argument, 0, 'B'},
        {"adaptive", no_argument, 0, 'A'}, {"min-bandwidth", required_argument, 0, 'm'},
        {"group", required_argument, 0, 'g'},
        {"compress", required_argument, 0, 1000}, {"compress-level", required_argument, 0, 1001},
        {"xbzrle-cache", required_argument, 0, 1002}, {"compress-threads", required_argument, 0, 1003},
        {"stall-timeout", required_argument, 0, 1004}, {"postcopy-lease", required_argument, 0, 1005},
        {"key-file", required_argument, 0, 'K'}, {"settle-window", required_argument, 0, 1006}, {0, 0, 0, 0},
    };
    const char *ctl = NULL, *to = NULL, *tracker = "auto", *group = NULL;
    uint64_t downtime = 300;
    long rounds = 30;
    bool json = false, handover = false;
    const char *mode = NULL;
    long after = 1;
    /* options given that only some modes use (checked against the mode below) */
    const char *codec_opt = NULL, *rate_opt = NULL, *postcopy_opt = NULL, *after_opt = NULL, *min_bw_opt = NULL;
    bool adaptive = false;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        char *end, num[32];
        uint64_t v;
        switch (o) {
        case 'C': ctl = optarg; break;
        case 'g': group = optarg; break;
        case 't': to = optarg; break;
        case 'D':
            if (!name_in(optarg, trackers))
                return cli_bad_args(self, "--dirty %s: expected auto, kvm-bitmap, kvm-ring, pagemap-scan, uffd-wp, "
                                    "soft-dirty or mprotect", optarg);
            tracker = optarg;
            break;
        case 'j': json = true; break;
        case 'H': handover = true; break;
        case 'M':
            if (strcmp(optarg, "tail") && strcmp(optarg, "precopy") && strcmp(optarg, "postcopy") &&
                strcmp(optarg, "hybrid") && strcmp(optarg, "handover"))
                return cli_bad_args(self, "--mode %s: expected tail, precopy, postcopy, hybrid or handover", optarg);
            mode = optarg;
            handover = handover || strcmp(optarg, "handover") == 0;
            break;
        case 'P':
            after = strtol(optarg, &end, 10);
            if (!*optarg || *end || after < 1 || after > 1000)
                return cli_bad_args(self, "--postcopy-after %s: expected 1..1000 rounds", optarg);
            after_opt = "--postcopy-after";
            break;
        case 'p': { /* engine settings travel as key=value (cli/migrate_opts.c checks them again) */
            long n = strtol(optarg, &end, 10);
            if (!*optarg || *end || n < 0 || n > 512)
                return cli_bad_args(self, "--prepage %s: expected 0..512 pages", optarg);
            if (append_setting(extra, sizeof(extra), "prepage", optarg) < 0)
                return cli_bad_args(self, "--prepage: value too long");
            postcopy_opt = "--prepage";
            break;
        }
        case 'B':
        case 'm':
            if (cli_parse_rate(optarg, &v) < 0 || v == 0)
                return cli_bad_args(self, "--%s %s: expected a rate above 0 in bytes/s (100M = 100 MiB/s, "
                                    "100MB = 100 MB/s, 1.5G)", o == 'B' ? "max-bandwidth" : "min-bandwidth", optarg);
            snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
            if (append_setting(extra, sizeof(extra), o == 'B' ? "max-bandwidth" : "min-bandwidth", num) < 0)
                return cli_bad_args(self, "too many settings");
            if (o == 'B')
                rate_opt = "--max-bandwidth";
            else
                min_bw_opt = "--min-bandwidth";
            break;
        case 'K': {
            /* Checked here for a quick answer; the VMM loads it again (it
             * runs the connection). Only the path travels, made absolute
             * since the VMM's working directory is not ours. */
            struct migr_key *k;
            char abs[4096];
            if (migr_key_load(optarg, &k) < 0)
                return cli_bad_args(self, "--key-file: %s", migr_last_error());
            migr_key_free(k);
            if (!realpath(optarg, abs))
                return cli_bad_args(self, "--key-file %s: %s", optarg, strerror(errno));
            if (append_setting(extra, sizeof(extra), "key-file", abs) < 0)
                return cli_bad_args(self, "--key-file %s: the path may not contain spaces (or is too long)", abs);
            break;
        }
        case 'A':
            if (append_setting(extra, sizeof(extra), "adaptive", "1") < 0)
                return cli_bad_args(self, "too many settings");
            adaptive = true;
            rate_opt = "--adaptive";
            break;
        case 1000:
            if (!name_in(optarg, codecs))
                return cli_bad_args(self, "--compress %s: expected none, zero, xbzrle, lz4, zlib, zstd or auto", optarg);
            codec_opt = "--compress";
            if (append_setting(extra, sizeof(extra), "compress", optarg) < 0)
                return cli_bad_args(self, "too many settings");
            break;
        case 1001: {
            long n = strtol(optarg, &end, 10);
            if (!*optarg || *end || n < -65537 || n > 22)
                return cli_bad_args(self, "--compress-level %s: expected a level (lz4 -65537..12, zlib 1..9, "
                                    "zstd up to 22; 0 = the codec's default)", optarg);
            codec_opt = "--compress-level";
            if (append_setting(extra, sizeof(extra), "compress-level", optarg) < 0)
                return cli_bad_args(self, "too many settings");
            break;
        }
        case 1002: {
            /* a bare number is MiB (as before); with a unit, any size in whole MiB; or auto */
            if (strcmp(optarg, "auto") == 0) {
                snprintf(num, sizeof(num), "auto");
            } else {
                long n = strtol(optarg, &end, 10);
                if (*optarg && !*end)
                    v = (uint64_t)n << 20;
                if ((!*optarg || *end) && cli_parse_size(optarg, &v) < 0)
                    return cli_bad_args(self, "--xbzrle-cache %s: expected a size (64M, 1G; a bare number is MiB)",
                                        optarg);
                if (n < 0 || v % (1u << 20) || (v >> 20) > 65536)
                    return cli_bad_args(self, "--xbzrle-cache %s: expected whole MiB, 0..64G", optarg);
                snprintf(num, sizeof(num), "%llu", (unsigned long long)(v >> 20));
            }
            codec_opt = "--xbzrle-cache";
            if (append_setting(extra, sizeof(extra), "xbzrle-cache", num) < 0)
                return cli_bad_args(self, "too many settings");
            break;
        }
        case 1003: {
            long n = strtol(optarg, &end, 10);
            if (!*optarg || *end || n < 1 || n > 16)
                return cli_bad_args(self, "--compress-threads %s: expected 1..16", optarg);
            codec_opt = "--compress-threads";
            if (append_setting(extra, sizeof(extra), "compress-threads", optarg) < 0)
                return cli_bad_args(self, "too many settings");
            break;
        }
        case 1006:
            if (cli_parse_ms(optarg, 1e-3, 100, 3600e3, &v) < 0)
                return cli_bad_args(self, "--settle-window %s: %s (a bare number is ms: 20000, 20s)", optarg,
                                    migr_last_error());
            snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
            if (append_setting(extra, sizeof(extra), "settle-window", num) < 0)
                return cli_bad_args(self, "too many settings");
            break;
        case 1004:
        case 1005: {
            const char *key = o == 1004 ? "stall-timeout" : "postcopy-lease";
            if (cli_parse_ms(optarg, 1e-3, o == 1004 ? 0 : 100, 3600e3, &v) < 0)
                return cli_bad_args(self, "--%s %s: %s (a bare number is ms: 10000, 10s, 1m)", key, optarg,
                                    migr_last_error());
            snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
            if (o == 1005)
                postcopy_opt = "--postcopy-lease";
            if (append_setting(extra, sizeof(extra), key, num) < 0)
                return cli_bad_args(self, "too many settings");
            break;
        }
        case 'd':
            if (cli_parse_ms(optarg, 1e-3, 1, 600e3, &downtime) < 0)
                return cli_bad_args(self, "--downtime-ms %s: expected 1ms..600s (a bare number is ms: 300, "
                                    "0.5s)", optarg);
            break;
        case 'r':
            rounds = strtol(optarg, &end, 10);
            if (!*optarg || *end || rounds < 1 || rounds > 1000)
                return cli_bad_args(self, "--max-rounds %s: expected 1..1000", optarg);
            break;
        case ':':
            return cli_bad_args(self, "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_bad_args(self, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_bad_args(self, "unexpected argument '%s'", argv[optind]);
    bool mode_given = mode != NULL; /* --handover alone implies the hand-over mode */
    if (!mode)
        mode = group ? "precopy" : "tail";
    if (!ctl == !group || !to)
        return cli_bad_args(self, "--to URL and one of --ctl PATH or --group NAME are required");
    if (group && cli_group_check_name(group) < 0)
        return cli_bad_args(self, "--group: %s", migr_last_error());
    if (group && !strstr(to, "{vm}"))
        return cli_bad_args(self, "--group: --to needs {vm} in it (one destination per member), e.g. "
                                  "unix:/run/in-{vm}.sock");
    if (group && strcmp(mode, "precopy") && strcmp(mode, "handover"))
        return cli_bad_args(self, "--group: a joint switchover works with --mode precopy or handover, not %s", mode);
    char unix_url[400];
    if (strncmp(to, "handover:", 9) == 0) {
        snprintf(unix_url, sizeof(unix_url), "unix:%s", to + 9);
        to = unix_url;
        handover = true;
    }
    /* Options that mean nothing in the chosen mode are refused, not ignored. */
    if (handover && mode_given && strcmp(mode, "precopy") && strcmp(mode, "handover"))
        return cli_bad_args(self, "--handover moves the memory itself: it cannot be combined with --mode %s", mode);
    if (handover && (codec_opt || rate_opt || postcopy_opt || after_opt || min_bw_opt))
        return cli_bad_args(self, "%s: a hand-over copies no page (the memory itself is passed), so it has no "
                            "codecs, rate, or post-copy settings",
                            codec_opt ? codec_opt : rate_opt ? rate_opt : postcopy_opt ? postcopy_opt
                                                  : after_opt ? after_opt : min_bw_opt);
    if (after_opt && strcmp(mode, "hybrid"))
        return cli_bad_args(self, "--postcopy-after: only --mode hybrid switches to post-copy after pre-copy rounds");
    if (postcopy_opt && !handover && strcmp(mode, "postcopy") && strcmp(mode, "hybrid"))
        return cli_bad_args(self, "%s is a post-copy setting: add --mode postcopy or --mode hybrid", postcopy_opt);
    if (min_bw_opt && !adaptive)
        return cli_bad_args(self, "--min-bandwidth is the step of --adaptive rate control: add --adaptive");
    if (strstr(to, "://"))
        return cli_bad_args(self, "--to %s: migr URLs have no '//': write unix:PATH, tcp:HOST:PORT or shm:NAME", to);
    struct migr_url u;
    char probe[400];
    expand_vm(to, "vm", probe, sizeof(probe));
    if (migr_url_parse(group ? probe : to, &u) < 0)
        return cli_bad_args(self, "--to: %s", migr_last_error());
    if (strchr(to, ' '))
        return cli_bad_args(self, "URL and tracker names cannot contain spaces");
    char cmd[1300], res[16384];
    if (handover && u.kind != MIGR_URL_UNIX && u.kind != MIGR_URL_SHM)
        return cli_bad_args(self, "--handover needs a unix: or shm: destination on this host");
    char modearg[32];
    if (handover)
        snprintf(modearg, sizeof(modearg), "handover");
    else if (strcmp(mode, "hybrid") == 0)
        snprintf(modearg, sizeof(modearg), "hybrid:%ld", after);
    else
        snprintf(modearg, sizeof(modearg), "%s", mode);
    if (group) {
        char fmt[1300];
        snprintf(fmt, sizeof(fmt), "migrate %s %llu %ld %s %s%s barrier=1", to, (unsigned long long)downtime, rounds,
                 tracker, modearg, extra);
        return send_group(group, fmt, json);
    }
    snprintf(cmd, sizeof(cmd), "migrate %s %llu %ld %s %s%s", to, (unsigned long long)downtime, rounds, tracker,
             modearg, extra);
    cli_catch_signals(send_interrupted, (void *)ctl);
    int rc = ctl_call(ctl, cmd, 0, cli_progress_line, NULL, res, sizeof(res));
    cli_progress_done();
    if (rc < 0) {
        fprintf(stderr, "migr send: %s\n", migr_last_error());
        if (rc == -EPIPE) /* the VMM itself went away mid-migration, not the destination */
            fprintf(stderr, "migr send: the source VMM is gone: if it died, its guest is lost unless the "
                            "destination already runs it (ask there: migr status)\n");
        return 1;
    }
    char why[800];
    bool b;
    if (rc != 0) {
        bool back = json_get_bool(res, "resumed_on_source", &b) && b;
        bool doubt = json_get_bool(res, "ownership_in_doubt", &b) && b;
        if (cli_signals && back)
            fprintf(stderr, "migr send: cancelled: the guest runs on the source\n");
        else
            fprintf(stderr, "migr send: failed: %s\n", json_get_str(res, "error", why, sizeof(why)) ? why : res);
        if (doubt)
            fprintf(stderr, "migr send: the guest is kept PAUSED on the source: the destination could not be "
                            "asked whether it runs it; check there before `migr resume --ctl %s`\n", ctl);
    } else if (cli_signals) {
        fprintf(stderr, "migr send: the cancel came too late: the guest runs on the destination\n");
    }
    if (json) {
        char out[17000];
        printf("%s\n", cli_json_edit(res, "\"schema\":1,\"side\":\"source\"", NULL, out, sizeof(out)) > 0 ? out : res);
    } else {
        cli_print_summary(stdout, res);
    }
    return rc == 0 ? 0 : 1;
}
