/* `migr run --dirty NAME` end to end through the CLI binary ($MIGR, set by
 * tests/run.sh): an unknown name and a tracker that cannot work for the
 * backend are exit 2 at `migr run` time, naming the trackers that would work;
 * a good one is the VM's tracker: `migr status` says "dirty":NAME and
 * `migr verify` "tracker":NAME (proc with every process tracker this machine
 * supports; kvm with kvm-ring when KVM offers rings), and a guest of a
 * kvm-ring VM migrates live (`migr send` picks the VM's tracker, its JSON says
 * "tracker":"kvm-ring", and the guest verifies on the destination). Every
 * VMM started is stopped and reaped. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hv-glue/kvm/kvm.h"
#include "migr/dirty.h"
#include "migr/hv.h"
#include "testlib.h"

static const char *migr;
static char dir[64];

/* Run migr with args (NULL-terminated), wait up to timeout_s; output
 * (stdout + stderr) into out. Returns the exit status, or -1 (killed). */
static int run(char *out, size_t cap, int timeout_s, char *const args[])
{
    char path[128];
    snprintf(path, sizeof(path), "%s/out", dir);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execv(migr, args);
        _exit(127);
    }
    int st = 0;
    for (int ms = 0;; ms += 10) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (ms > timeout_s * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            st = -1;
            break;
        }
        usleep(10000);
    }
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(out, 1, cap - 1, f) : 0;
    out[n] = 0;
    if (f)
        fclose(f);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void expect_refused(const char *backend, const char *tracker, const char *want)
{
    char out[8192], ctl[128];
    snprintf(ctl, sizeof(ctl), "%s/refused.ctl", dir);
    char *args[] = {"migr", "run", "--mem", "16M", "--backend", (char *)backend, "--dirty", (char *)tracker,
                    "--ctl", ctl, NULL};
    int rc = run(out, sizeof(out), 30, args);
    if (rc != 2 || !strstr(out, want) || !strstr(out, "this machine supports: auto (= "))
        T_FAIL("migr run --backend %s --dirty %s: exit %d (want 2), output:\n%s", backend, tracker, rc, out);
    printf("refused: --backend %s --dirty %s: %.*s\n", backend, tracker, (int)strcspn(out, "\n"), out);
}

static pid_t spawn(char *const args[])
{
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 2);
        execv(migr, args);
        _exit(127);
    }
    return pid;
}

/* Wait up to ms for pid to exit; kill it after that. Returns its status. */
static int reap_within(pid_t pid, int ms)
{
    int st = 0;
    for (int t = 0; waitpid(pid, &st, WNOHANG) == 0; t += 10) {
        if (t > ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(10000);
    }
    return st;
}

/* A kvm-ring VM migrated live to a `migr recv` and verified there. */
static void migrate_ring(void)
{
    char sctl[128], dctl[128], url[160], out[16384];
    snprintf(sctl, sizeof(sctl), "%s/ring-src.ctl", dir);
    snprintf(dctl, sizeof(dctl), "%s/ring-dst.ctl", dir);
    snprintf(url, sizeof(url), "unix:%s/ring-m.sock", dir);
    char *src_args[] = {"migr", "run", "--mem", "128M", "--vcpus", "2", "--workload", "rate=64M",
                        "--dirty", "kvm-ring", "--ctl", sctl, NULL};
    char *dst_args[] = {"migr", "recv", "--listen", url, "--ctl", dctl, "--timeout", "60", NULL};
    pid_t src = spawn(src_args), dst = spawn(dst_args);
    char *status[] = {"migr", "status", "--ctl", sctl, "--wait", "20", "--json", NULL};
    int rc = run(out, sizeof(out), 30, status);
    for (int t = 0; rc == 0 && access(url + 5, F_OK) != 0 && t < 10000; t += 10)
        usleep(10000); /* the receiver's migration socket */
    usleep(300000);    /* let the guest dirty memory */
    char *send[] = {"migr", "send", "--ctl", sctl, "--to", url, "--json", NULL};
    int src_rc = rc == 0 ? run(out, sizeof(out), 60, send) : -2;
    bool sent = src_rc == 0 && strstr(out, "\"tracker\":\"kvm-ring\"") && strstr(out, "\"verified\":true");
    char sent_out[16384];
    snprintf(sent_out, sizeof(sent_out), "%s", out);
    char *verify[] = {"migr", "verify", "--ctl", dctl, "--wait", "10", "--json", NULL};
    int vrc = sent ? run(out, sizeof(out), 30, verify) : -2;
    bool verified = vrc == 0 && strstr(out, "\"verified\":true");
    char *stop_dst[] = {"migr", "stop", "--ctl", dctl, NULL}, *stop_src[] = {"migr", "stop", "--ctl", sctl, NULL};
    char scratch[1024];
    run(scratch, sizeof(scratch), 20, stop_dst);
    if (!sent)
        run(scratch, sizeof(scratch), 20, stop_src);
    int sst = reap_within(src, 10000), dst_st = reap_within(dst, 10000);
    if (!sent || !verified || sst != 0 || dst_st != 0)
        T_FAIL("kvm-ring migration: send exit %d, verify exit %d, source VMM status %d, destination %d;\n"
               "send: %s\nverify: %s", src_rc, vrc, sst, dst_st, sent_out, out);
    printf("kvm-ring VM migrated live and verified: %.*s\n", 200, sent_out);
}

/* Start a VMM with tracker, check status and verify name it, stop it. */
static void vm_with(const char *backend, const char *tracker)
{
    char ctl[128], out[8192], want[64];
    snprintf(ctl, sizeof(ctl), "%s/%s.ctl", dir, tracker);
    pid_t vmm = fork();
    T_ASSERT(vmm >= 0);
    if (vmm == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 2);
        execl(migr, "migr", "run", "--mem", "32M", "--backend", backend, "--workload", "rate=16M",
              "--dirty", tracker, "--ctl", ctl, (char *)NULL);
        _exit(127);
    }
    char *status[] = {"migr", "status", "--ctl", ctl, "--wait", "20", "--json", NULL};
    int rc = run(out, sizeof(out), 30, status);
    snprintf(want, sizeof(want), "\"dirty\":\"%s\"", tracker);
    bool ok = rc == 0 && strstr(out, want);
    char *verify[] = {"migr", "verify", "--ctl", ctl, "--json", NULL};
    int vrc = ok ? run(out + strlen(out), sizeof(out) - strlen(out), 30, verify) : -2;
    snprintf(want, sizeof(want), "\"tracker\":\"%s\"", tracker);
    bool vok = vrc == 0 && strstr(out, want);
    char *stop[] = {"migr", "stop", "--ctl", ctl, NULL};
    char scratch[1024];
    run(scratch, sizeof(scratch), 30, stop);
    int st = 0;
    for (int ms = 0; waitpid(vmm, &st, WNOHANG) == 0; ms += 10) {
        if (ms > 10000) {
            kill(vmm, SIGKILL);
            waitpid(vmm, &st, 0);
            break;
        }
        usleep(10000);
    }
    if (!ok || !vok)
        T_FAIL("%s VM with --dirty %s: status exit %d, verify exit %d, output:\n%s", backend, tracker, rc, vrc, out);
    printf("%s VM with --dirty %s: status and verify name it\n", backend, tracker);
}

int main(void)
{
    migr = getenv("MIGR");
    if (!migr || access(migr, X_OK) != 0)
        T_SKIP("no migr binary ($MIGR, set by tests/run.sh)");
    snprintf(dir, sizeof(dir), "/tmp/migr-test-dirty-cli.%d", (int)getpid());
    T_ASSERT(mkdir(dir, 0700) == 0 || errno == EEXIST);
    expect_refused("proc", "bogus", "unknown dirty tracker 'bogus'");
    expect_refused("proc", "kvm-bitmap", "not supported for backend 'proc'");
    expect_refused("proc", "kvm-ring", "not supported for backend 'proc'");
    /* every process tracker that works for a proc guest here */
    struct migr_vm_config cfg = {.mem_bytes = 8ull << 20, .nvcpus = 1};
    migr_workload_defaults(&cfg.wl);
    struct migr_hv *hv;
    T_OK(migr_hv_create("proc", &cfg, &hv));
    for (size_t i = 0; migr_dirty_backends[i]; i++) {
        const char *name = migr_dirty_backends[i]->name;
        migr_clear_error();
        if (strncmp(name, "kvm-", 4) == 0 || strcmp(name, "ept") == 0 || migr_dirty_backends[i]->supported(hv) <= 0)
            continue;
        migr_hv_destroy(hv);
        hv = NULL;
        vm_with("proc", name);
        T_OK(migr_hv_create("proc", &cfg, &hv));
    }
    migr_hv_destroy(hv);
    if (migr_hv_available("kvm")) {
        expect_refused("kvm", "mprotect", "not supported for backend 'kvm'");
        if (migr_kvm_ring_offered())
            vm_with("kvm", "kvm-ring");
        vm_with("kvm", "kvm-bitmap");
        if (migr_kvm_ring_offered())
            migrate_ring();
        else
            printf("kvm-ring migration: SKIP: this KVM offers no dirty rings\n");
    } else {
        printf("kvm part: SKIP: %s\n", migr_last_error());
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "%s/out", dir);
    unlink(cmd);
    rmdir(dir);
    return 0;
}
