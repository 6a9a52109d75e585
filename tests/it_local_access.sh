#!/bin/bash
# Local access: another user of the host can neither reach nor impersonate
# root's VMMs (docs/transport.md, "Local access").
#   - control sockets are 0600 under umask 000; another user cannot stop,
#     verify or migrate the VM, not even when the socket is made 0666 (the
#     VMM checks the caller's uid, SO_PEERCRED);
#   - another user's guest sent to root's shm: receiver (abstract
#     @migr-shm-NAME, no file mode) is refused, and no guest runs there;
#   - root's source does not hand its guest to a shm: listener that another
#     user started under the name first;
#   - a group run directory that belongs to another user is refused; one of
#     ours open to others is closed to 0700.
# A second user is created for the test and removed at the end. Needs root.
set -u
. "$(dirname "$0")/itlib.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (creates a second user)"; exit 77; }
for c in useradd userdel setpriv; do
    command -v $c >/dev/null || { echo "SKIP: $c is missing"; exit 77; }
done
it_setup local
U=migrt$$
useradd -M -N -d /nonexistent -s /usr/sbin/nologin "$U" >/dev/null 2>&1 || { echo "SKIP: useradd $U failed"; exit 77; }
cleanup_user() { it_cleanup; pkill -9 -u "$U" 2>/dev/null; sleep 0.1; userdel "$U" 2>/dev/null; }
trap cleanup_user EXIT
UID2=$(id -u "$U") GID2=$(id -g "$U")
as_user() { setpriv --reuid "$UID2" --regid "$GID2" --clear-groups --inh-caps=-all -- "$@"; }
# The other user must be able to run migr and enter DIR (to try the sockets).
cp "$MIGR" "$DIR/migr"
chmod 755 "$DIR" "$DIR/migr"
MU=$DIR/migr
mkdir "$DIR/u" && chown "$U" "$DIR/u" && chmod 700 "$DIR/u"   # the other user's own files
umask 000

"$MIGR" run --backend proc --mem 32M --workload rate=16M,pattern=random,data=text --ctl "$DIR/vm.ctl" \
    2>"$DIR/vm.log" &
vm=$!
PIDS+=("$vm")
wait_vmm "$vm" "$DIR/vm.ctl" 15 || fail "root's VMM did not come up"
mode=$(stat -c %a "$DIR/vm.ctl")
[ "$mode" = 600 ] || fail "control socket has mode $mode under umask 000 (expected 600)"

for cmd in stop verify status; do
    as_user "$MU" $cmd --ctl "$DIR/vm.ctl" >"$DIR/u-$cmd.out" 2>&1 && fail "another user could '$cmd' root's VM"
done
grep -q "Permission denied" "$DIR/u-stop.out" || fail "stop by another user: $(cat "$DIR/u-stop.out")"
chmod 666 "$DIR/vm.ctl"
as_user "$MU" stop --ctl "$DIR/vm.ctl" >"$DIR/u-stop2.out" 2>&1 && fail "another user stopped root's VM through a 0666 socket"
grep -q "refused a process of uid $UID2" "$DIR/u-stop2.out" || fail "0666 socket, stop: $(cat "$DIR/u-stop2.out")"
as_user "$MU" send --ctl "$DIR/vm.ctl" --to unix:/tmp/nowhere-$$ >"$DIR/u-send.out" 2>&1 &&
    fail "another user migrated root's VM"
M status --ctl "$DIR/vm.ctl" >/dev/null || fail "root's VM is gone after the other user's attempts"
M verify --ctl "$DIR/vm.ctl" >/dev/null || fail "root's VM does not verify"

# Another user's guest into root's shm: receiver.
"$MIGR" recv --listen "shm:migrt-in-$$" --ctl "$DIR/in.ctl" --timeout 30 2>"$DIR/in.log" &
rin=$!
PIDS+=("$rin")
for _ in $(seq 100); do grep -q "listening on" "$DIR/in.log" && break; sleep 0.05; done
as_user "$MU" run --backend proc --mem 16M --ctl "$DIR/u/u.ctl" 2>"$DIR/u-run.log" &
uvm=$!
PIDS+=("$uvm")
for _ in $(seq 100); do as_user "$MU" status --ctl "$DIR/u/u.ctl" >/dev/null 2>&1 && break; sleep 0.05; done
as_user "$MU" send --ctl "$DIR/u/u.ctl" --to "shm:migrt-in-$$" >"$DIR/u-shm.out" 2>&1 &&
    fail "another user's guest was accepted by root's shm: receiver"
st=$(M status --ctl "$DIR/in.ctl" 2>/dev/null)
[ "$(json_get "$st" running)" = true ] && fail "a guest runs in root's receiver after another user's send"
grep -q "refused a process of uid $UID2" "$DIR/in.log" || fail "root's shm receiver did not say why: $(cat "$DIR/in.log")"

# Root's guest to a shm: name another user took first.
as_user "$MU" recv --listen "shm:migrt-squat-$$" --ctl "$DIR/u/usq.ctl" --timeout 30 2>"$DIR/usq.log" &
usq=$!
PIDS+=("$usq")
for _ in $(seq 100); do grep -q "listening on" "$DIR/usq.log" && break; sleep 0.05; done
M send --ctl "$DIR/vm.ctl" --to "shm:migrt-squat-$$" >"$DIR/sq.out" 2>&1 && fail "root's guest went to another user's listener"
grep -q "the listener runs as uid $UID2" "$DIR/sq.out" || fail "squatted name: $(cat "$DIR/sq.out")"
M verify --ctl "$DIR/vm.ctl" >/dev/null || fail "root's VM does not verify after the refused send"

# Group run directories.
mkdir "$DIR/run-theirs" && chown "$U" "$DIR/run-theirs"
MIGR_RUN_DIR=$DIR/run-theirs "$MIGR" run --backend proc --mem 16M --group g1 --ctl "$DIR/g1.ctl" 2>"$DIR/g1.log" &
g1=$!
PIDS+=("$g1")
wait_vmm "$g1" "$DIR/g1.ctl" 15 || fail "group VMM did not come up"
grep -q "belongs to uid $UID2" "$DIR/g1.log" || fail "another user's run directory was used: $(cat "$DIR/g1.log")"
[ -e "$DIR/run-theirs/groups" ] && fail "files were created in another user's run directory"
mkdir -m 777 "$DIR/run-ours"
MIGR_RUN_DIR=$DIR/run-ours "$MIGR" run --backend proc --mem 16M --group g2 --ctl "$DIR/g2.ctl" 2>"$DIR/g2.log" &
g2=$!
PIDS+=("$g2")
wait_vmm "$g2" "$DIR/g2.ctl" 15 || fail "group VMM 2 did not come up"
for _ in $(seq 40); do [ -d "$DIR/run-ours/groups/g2" ] && break; sleep 0.05; done
for d in "$DIR/run-ours" "$DIR/run-ours/groups" "$DIR/run-ours/groups/g2"; do
    m=$(stat -c %a "$d")
    [ "$m" = 700 ] || fail "$d has mode $m (expected 700)"
done
for f in "$DIR"/run-ours/groups/g2/*; do
    m=$(stat -c %a "$f")
    [ "$m" = 600 ] || fail "$f has mode $m (expected 600)"
done
M stop --ctl "$DIR/vm.ctl" >/dev/null || fail "root could not stop its own VM"
exit 0
