# Shared helpers of the CLI integration tests (tests/it_*.sh): source it after
# setting MIGR (optional). Defines DIR (a fresh temporary directory, removed at
# exit), PIDS (background processes to reap), and:
#   it_setup NAME        create DIR=/tmp/migr-it-NAME.XXXXXX and the exit trap
#   need_kvm             exit 77 with SKIP when /dev/kvm is not usable
#   fail MSG             print FAIL and the tails of DIR's logs, exit 1
#   json_get JSON KEY    a top-level scalar field (strings unquoted)
#   num_ok EXPR          awk-evaluated numeric condition, e.g. num_ok "$a >= 2"
#   M ARGS...            run migr with a 40 s limit (a hang is a failure)
#   wait_vmm PID CTL S   until the VMM answers status (1 if it died or timed out)
#   reap PID             wait for it and forget it
#   wait_exit PID S      wait for PID to exit; its exit status (124 on timeout)
#   pid_of CTL, writes_of CTL   fields of `migr status`
#   start_source CTL RUN-ARGS...  migr run in the background (SRC=pid, log
#                        DIR/src.log); SKIP (77) if it cannot create a VM here
MIGR=${MIGR:-build/migr}
[ -x "$MIGR" ] || { echo "FAIL: $MIGR is not an executable (run make all)"; exit 1; }
PIDS=()
DIR=

# Kill and reap every background process, and the VMMs started for us by
# migr upgrade/rejuvenate (not our children: found by their --ctl path in DIR),
# whatever happened; remove DIR.
it_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
    [ -n "$DIR" ] && pkill -f -- "--ctl $DIR/" 2>/dev/null
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [ -n "$DIR" ]; then
        sleep 0.2
        pkill -9 -f -- "--ctl $DIR/" 2>/dev/null
        rm -rf "$DIR"
    fi
}

it_setup() {
    DIR=$(mktemp -d "/tmp/migr-it-$1.XXXXXX") || exit 1
    trap it_cleanup EXIT
    trap 'exit 143' TERM INT HUP PIPE
}

need_kvm() {
    if [ ! -e /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        echo "SKIP: /dev/kvm is missing or not readable and writable"
        exit 77
    fi
}

fail() {
    echo "FAIL: $*"
    local f
    for f in "$DIR"/*.log "$DIR"/*.out "$DIR"/*.err; do
        [ -s "$f" ] && { echo "--- $(basename "$f")"; tail -n 20 "$f"; }
    done
    exit 1
}

json_get() {
    local v
    v=$(grep -o "\"$2\":\(\"[^\"]*\"\|[^,}]*\)" <<<"$1" | head -n1) || return 1
    v=${v#*:}
    v=${v#\"}
    printf '%s\n' "${v%\"}"
}

num_ok() { awk "BEGIN { exit !($1) }"; }

M() { timeout --foreground -k 5 40 "$MIGR" "$@"; }

wait_vmm() {
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        M status --ctl "$2" >/dev/null 2>&1 && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

reap() {
    local rc p keep=()
    wait "$1"
    rc=$?
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    return $rc
}

wait_exit() {
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        if ! kill -0 "$1" 2>/dev/null; then
            reap "$1"
            return $?
        fi
        sleep 0.05
    done
    return 124
}

pid_of() { json_get "$(M status --ctl "$1")" pid; }
writes_of() { json_get "$(M status --ctl "$1")" writes; }

start_source() {
    local ctl=$1
    shift
    "$MIGR" run "$@" --ctl "$ctl" 2>"$DIR/src.log" &
    SRC=$!
    PIDS+=("$SRC")
    wait_vmm "$SRC" "$ctl" 15 && return 0
    if ! kill -0 "$SRC" 2>/dev/null && grep -q "not usable here\|KVM_CREATE_VM\|/dev/kvm" "$DIR/src.log"; then
        echo "SKIP: migr run cannot create a VM: $(head -n1 "$DIR/src.log")"
        exit 77
    fi
    fail "the source VMM did not come up"
}
