/* `migr run --dirty NAME` end to end through the CLI binary ($MIGR, set by
 * tests/run.sh): an unknown name and a tracker that cannot work for the
 * backend are exit 2 at `migr run` time, naming the trackers that would work;
 * a good one is the VM's tracker: `migr status` says "dirty":NAME and
 * `migr verify` "tracker":NAME (proc with every process tracker this machine
 * supports; kvm with kvm-ring when KVM offers rings). Every VMM started is
 * stopped and reaped. */
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
        vm_with("kvm", "kvm-ring");
        vm_with("kvm", "kvm-bitmap");
    } else {
        printf("kvm part: SKIP: %s\n", migr_last_error());
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "%s/out", dir);
    unlink(cmd);
    rmdir(dir);
    return 0;
}
