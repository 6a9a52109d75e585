#!/bin/bash
# Command-line errors: a bad argument gives exit 2, a first stderr line
# "migr[ CMD]: <what is wrong>" naming the problem, then the usage, and
# nothing on stdout; `migr CMD --help` prints the usage on stdout and exits 0;
# a control socket nobody serves gives exit 1 and a clear message. No KVM
# needed: none of these may start a VM. Exit 0 pass, 1 fail.
set -u
MIGR=${MIGR:-build/migr}
[ -x "$MIGR" ] || { echo "FAIL: $MIGR is not an executable (run make all)"; exit 1; }

DIR=$(mktemp -d /tmp/migr-it-cli-args.XXXXXX) || exit 1
trap 'rm -rf "$DIR"' EXIT
trap 'exit 143' TERM INT HUP PIPE
CTL=$DIR/x.ctl
COMMANDS="demo run recv send verify status resume stop"
failures=0

bad() { echo "FAIL: $*"; failures=$((failures + 1)); }

# run_migr ARGS...: run with a time limit (a bad argument must never start a
# VM that runs forever); sets RC, OUT, ERR.
run_migr() {
    timeout -k 2 10 "$MIGR" "$@" >"$DIR/out" 2>"$DIR/err"
    RC=$?
    OUT=$(cat "$DIR/out")
    ERR=$(cat "$DIR/err")
}

# expect_usage_error CMD PATTERN ARGS...: exit 2, first stderr line
# "migr CMD: ..." matching PATTERN (grep -E), then CMD's usage, empty stdout.
expect_usage_error() {
    local cmd=$1 pat=$2 first second
    shift 2
    run_migr "$@"
    local what="migr $*"
    first=$(head -n1 <<<"$ERR")
    second=$(sed -n 2p <<<"$ERR")
    [ $RC -eq 2 ] || { bad "$what: exit $RC, expected 2 (stderr: $first)"; return; }
    if [ -n "$cmd" ]; then
        [[ "$first" == "migr $cmd: "* ]] || bad "$what: first stderr line is not 'migr $cmd: ...': $first"
        [[ "$second" == "usage: migr $cmd "* ]] || bad "$what: the usage of '$cmd' does not follow the error: $second"
    else
        [[ "$first" == "migr: "* ]] || bad "$what: first stderr line is not 'migr: ...': $first"
        [[ "$second" == "usage: migr "* ]] || bad "$what: the usage does not follow the error: $second"
    fi
    grep -Eq -- "$pat" <<<"$first" || bad "$what: the error does not name the problem (/$pat/): $first"
    [ -z "$OUT" ] || bad "$what: wrote to stdout: $(head -n1 <<<"$OUT")"
}

# No command at all, an unknown one.
run_migr
[ $RC -eq 2 ] && grep -q "^usage: migr <command>" <<<"$ERR" && [ -z "$OUT" ] ||
    bad "migr (no arguments): exit $RC, expected 2 and the usage on stderr"
expect_usage_error "" "unknown command 'frobnicate'" frobnicate
expect_usage_error "" "unknown command '--frobnicate'" --frobnicate

# An unknown option, for every command.
for c in $COMMANDS; do
    expect_usage_error "$c" "unknown option '--frobnicate'" "$c" --frobnicate --ctl "$CTL"
done

# migr run
expect_usage_error run "--ctl" run --mem 128M
expect_usage_error run "mem|3M|3145728" run --mem 3M --ctl "$CTL"
expect_usage_error run "mem|abc" run --mem abc --ctl "$CTL"
expect_usage_error run "mem" run --mem 12345G --ctl "$CTL"
expect_usage_error run "vcpus" run --vcpus 0 --ctl "$CTL"
expect_usage_error run "vcpus" run --vcpus 65 --ctl "$CTL"
expect_usage_error run "vcpus" run --vcpus two --ctl "$CTL"
expect_usage_error run "zigzag" run --workload pattern=zigzag --ctl "$CTL"
expect_usage_error run "colour" run --workload colour=red --ctl "$CTL"
expect_usage_error run "rate|fast" run --workload rate=fast --ctl "$CTL"
expect_usage_error run "unexpected argument 'extra'" run --ctl "$CTL" extra

# migr send
expect_usage_error send "foo" send --ctl "$CTL" --to foo:bar
expect_usage_error send "--to" send --ctl "$CTL"
expect_usage_error send "--ctl" send --to unix:$DIR/m.sock
expect_usage_error send "downtime" send --ctl "$CTL" --to unix:$DIR/m.sock --downtime-ms 0
expect_usage_error send "max-rounds" send --ctl "$CTL" --to unix:$DIR/m.sock --max-rounds x

# Caught before anything starts (issue 17): codecs, backends, URLs, missing
# values, options the mode cannot use.
S="send --ctl $CTL --to unix:$DIR/m.sock"
expect_usage_error send "lzo" $S --compress lzo
expect_usage_error send "//" send --ctl "$CTL" --to tcp://127.0.0.1:7000
expect_usage_error send "needs a value" send --to unix:$DIR/m.sock --ctl
expect_usage_error send "hand-over" $S --mode handover --compress lz4
expect_usage_error send "hand-over" $S --handover --max-bandwidth 100M
expect_usage_error send "hybrid" $S --postcopy-after 2
expect_usage_error send "post-copy" $S --prepage 4
expect_usage_error send "adaptive" $S --min-bandwidth 10M
expect_usage_error send "max-bandwidth" $S --max-bandwidth 100Q
expect_usage_error send "max-bandwidth" $S --max-bandwidth 0
expect_usage_error send "xbzrle-cache" $S --xbzrle-cache 1.5M
expect_usage_error send "dirty" $S --dirty shadow
expect_usage_error send "compress-threads" $S --compress-threads 17
expect_usage_error send "stall-timeout" $S --stall-timeout forever
expect_usage_error send "downtime" $S --downtime-ms 2h
expect_usage_error run "xen" run --backend xen --ctl "$CTL"
expect_usage_error run "needs a value" run --ctl
expect_usage_error recv "//" recv --listen tcp://127.0.0.1:0 --ctl "$CTL"
expect_usage_error recv "foo" recv --listen foo:bar --ctl "$CTL"
expect_usage_error recv "needs a value" recv --listen unix:$DIR/m.sock --ctl
expect_usage_error recv "timeout" recv --listen unix:$DIR/m.sock --ctl "$CTL" --timeout 1y
expect_usage_error status "watch" status --ctl "$CTL" --watch 1y
expect_usage_error stop "watch" stop --ctl "$CTL" --watch

# Good spellings pass the parser: the command gets as far as the missing VMM
# (exit 1, "no VMM"), or, for migr run, to the next bad option (--backend xen).
expect_no_vmm() {
    run_migr "$@"
    [ $RC -eq 1 ] && grep -q "no VMM" <<<"$ERR" || bad "migr $*: exit $RC, expected 1 and 'no VMM': $(head -n1 <<<"$ERR")"
}
for v in 100M 1.5G 100MB 100MB/s 100MiB/s 4096; do expect_no_vmm send --ctl /nonexistent --to unix:$DIR/m.sock --max-bandwidth $v; done
for v in 64 64M 1G 0 auto; do expect_no_vmm send --ctl /nonexistent --to unix:$DIR/m.sock --xbzrle-cache $v; done
for v in 300 0.5s 300ms; do expect_no_vmm send --ctl /nonexistent --to unix:$DIR/m.sock --downtime-ms $v; done
for v in 10000 10s 1m 0; do expect_no_vmm send --ctl /nonexistent --to unix:$DIR/m.sock --stall-timeout $v; done
expect_no_vmm send --ctl /nonexistent --to 'tcp:127.0.0.1:7000?channels=4&encrypt=1' --compress lz4
expect_no_vmm send --ctl /nonexistent --to unix:$DIR/m.sock --mode hybrid --postcopy-after 2 --prepage 4
expect_no_vmm send --ctl /nonexistent --to unix:$DIR/m.sock --adaptive --min-bandwidth 10M
for v in 1 0.5 500ms 1s; do expect_no_vmm status --ctl /nonexistent --wait $v; done
for v in 512MiB 1.5G 512M 536870912; do expect_usage_error run "xen" run --mem $v --backend xen --ctl "$CTL"; done
expect_usage_error run "mem" run --mem 1.5GB --ctl "$CTL"   # 1.5e9 bytes: not a multiple of 2 MiB
run_migr recv --listen unix:$DIR/t.sock --ctl $DIR/t.ctl --timeout 200ms
[ $RC -eq 1 ] || bad "migr recv --timeout 200ms: exit $RC, expected 1 (nobody came)"

# migr help CMD; every help: exit codes, no internal names; URL forms for send/recv.
for c in $COMMANDS upgrade rejuvenate cancel model bench; do
    run_migr help $c
    [ $RC -eq 0 ] && [[ "$(head -n1 <<<"$OUT")" == "usage: migr $c "* ]] || bad "migr help $c: exit $RC: $(head -n1 <<<"$OUT")"
    grep -qi "exit status" <<<"$OUT" || bad "migr $c --help does not document its exit status"
    if grep -Eqi "seed[ -]?0|paper 00|cpostcopy|chybrid" <<<"$OUT"; then bad "migr $c --help uses internal names"; fi
done
expect_usage_error "" "unknown command 'nope'" help nope
for c in send recv; do
    run_migr $c --help
    for f in unix: tcp: shm: "channels=N" "uring=1" "encrypt=1"; do
        grep -q -- "$f" <<<"$OUT" || bad "migr $c --help does not list the URL form $f"
    done
done
run_migr bench copy --help
[ $RC -eq 0 ] && grep -q "bench_copy" <<<"$OUT" || bad "migr bench copy --help does not show the benchmark's help (exit $RC): $(head -n2 <<<"$OUT$ERR")"

# migr recv
expect_usage_error recv "--listen" recv --ctl "$CTL"
expect_usage_error recv "--ctl" recv --listen unix:$DIR/m.sock
expect_usage_error recv "timeout" recv --listen unix:$DIR/m.sock --ctl "$CTL" --timeout 0

# The control-socket commands.
for c in verify status resume stop; do
    expect_usage_error "$c" "--ctl" "$c"
    expect_usage_error "$c" "wait" "$c" --ctl "$CTL" --wait forever
done
expect_usage_error demo "--to|sctp" demo --to sctp
expect_usage_error demo "mem|lots" demo --mem lots

# --help: usage on stdout, exit 0, nothing on stderr.
for c in $COMMANDS; do
    for h in --help -h; do
        run_migr "$c" $h
        [ $RC -eq 0 ] || bad "migr $c $h: exit $RC, expected 0"
        [[ "$(head -n1 <<<"$OUT")" == "usage: migr $c "* ]] || bad "migr $c $h: no usage on stdout: $(head -n1 <<<"$OUT")"
        [ -z "$ERR" ] || bad "migr $c $h: wrote to stderr: $(head -n1 <<<"$ERR")"
    done
done
run_migr --help
[ $RC -eq 0 ] && grep -q "^usage: migr <command>" <<<"$OUT" && [ -z "$ERR" ] || bad "migr --help: exit $RC or no usage on stdout"
for c in $COMMANDS; do
    grep -q "^  $c " <<<"$OUT" || bad "migr --help does not list '$c'"
done

# Nobody at the control socket: exit 1, one clear line, no usage.
for c in verify status send; do
    if [ $c = send ]; then run_migr send --ctl /nonexistent --to unix:$DIR/m.sock; else run_migr $c --ctl /nonexistent; fi
    [ $RC -eq 1 ] || bad "migr $c --ctl /nonexistent: exit $RC, expected 1"
    [ "$(wc -l <<<"$ERR")" -eq 1 ] || bad "migr $c --ctl /nonexistent: expected one line on stderr, got: $ERR"
    grep -q "^migr $c: .*/nonexistent" <<<"$ERR" || bad "migr $c --ctl /nonexistent: message does not name the socket: $ERR"
    grep -qi "no such file\|no VMM" <<<"$ERR" || bad "migr $c --ctl /nonexistent: message does not say why: $ERR"
done

# ---- Every option of every command, one row each (issue 17): a good
# spelling passes the parser, a bad one is exit 2 naming the option, then the
# usage. CMD|OPTION|GOOD VALUE (empty: a flag)|BAD SPELLING|PATTERN|GOOD ENDS
# A good spelling ends (GOOD ENDS, "RC:regex", else by command) at:
# send/verify/status/resume/cancel/stop/upgrade/rejuvenate: exit 1 "no VMM"
# (nobody at /nonexistent); run/recv/demo: exit 2 at a bad value given after
# it (run --vcpus 0 or --backend xen, recv --decode-threads 0, demo --mem
# lots or --to sctp), so nothing
# starts; model: exit 0 (it only computes). A flag's bad spelling is
# --flag=1 (it takes no value); @MISSING@: the option ends the line without
# its value. @NOCTL@: without the command's usual --ctl.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/k.key"
chmod 600 "$DIR/k.key"
cat >"$DIR/b.json" <<'EOF2'
{"mode":"precopy","transport":"unix","tracker":"kvm-bitmap","ok":true,"error":"","total_ms":1500.0,"downtime_ms":20.0,"ram_bytes":1073741824,"round_stats":[]}
{"mode":"handover","transport":"unix","tracker":"","ok":true,"error":"","total_ms":3.0,"downtime_ms":2.5,"ram_bytes":1073741824,"round_stats":[]}
EOF2
ROWS=$(cat <<'TABLE'
demo|--mem|64M|lots|lots|2:sctp
demo|--rate|16M|fast|fast
demo|--to|unix|sctp|sctp
demo|--json||--json=1|json
run|--daemon||--daemon=1|daemon
run|--mem|128M|3M|mem
run|--vcpus|2|65|vcpus|2:xen
run|--workload|rate=64M,pattern=random|pattern=zigzag|zigzag
run|--ctl|@CTL@|@MISSING@|needs a value
run|--backend|proc|xen|xen
run|--dirty|kvm-bitmap|shadow|shadow
run|--group|g1|a/b|group
recv|--listen|unix:@DIR@/r.sock --timeout 200ms|tcp://127.0.0.1:0|//|1:.
recv|--daemon||--daemon=1|daemon
recv|--ctl|@CTL@|@MISSING@|needs a value
recv|--take-over-ctl||--take-over-ctl=1|take-over-ctl
recv|--timeout|1.5|1y|timeout
recv|--key-file|@DIR@/k.key|@MISSING@|needs a value
recv|--handshake-timeout|500ms|soon|handshake-timeout
recv|--json||--json=1|json
recv|--group|g1|a/b|group
recv|--decode-threads|4|17|decode-threads|2:--listen
recv|--postcopy-timeout|5s|later|postcopy-timeout
recv|--stall-timeout|10s|forever|stall-timeout
recv|--settle-window|30s|2h|settle-window
recv|--log-file|@DIR@/r.log|@MISSING@|needs a value
recv|--warm|@MISSING@|@MISSING@|needs a value
send|--ctl|/nonexistent|@MISSING@|needs a value
send|--to|unix:@DIR@/m.sock|foo:bar|foo
send|--group|@NOCTL@g1 --to unix:@DIR@/{vm}.sock|a/b|group|1:.
send|--mode|precopy|warp|warp
send|--postcopy-after|2 --mode hybrid|x --mode hybrid|postcopy-after
send|--prepage|4 --mode postcopy|513 --mode postcopy|prepage
send|--max-bandwidth|100MB/s|100Q|max-bandwidth
send|--adaptive||--adaptive=1|adaptive
send|--min-bandwidth|10M --adaptive|fast --adaptive|min-bandwidth
send|--handover||--handover=1|handover
send|--downtime-ms|300ms|2h|downtime
send|--max-rounds|30|x|max-rounds
send|--dirty|kvm-bitmap|shadow|dirty
send|--compress|lz4|lzo|lzo
send|--compress-level|3 --compress zstd|99 --compress zstd|compress-level
send|--xbzrle-cache|64M|1.5M|xbzrle-cache
send|--compress-threads|2|17|compress-threads
send|--stall-timeout|10s|forever|stall-timeout
send|--settle-window|20s|soon|settle-window
send|--postcopy-lease|2s --mode postcopy|soon --mode postcopy|postcopy-lease
send|--key-file|@DIR@/k.key|@MISSING@|needs a value
send|--json||--json=1|json
rejuvenate|--ctl|/nonexistent|@MISSING@|needs a value
rejuvenate|--handover||--handover=1|handover
rejuvenate|--copy||--copy=1|copy
rejuvenate|--warm||--warm=1|warm
rejuvenate|--binary|@MIGR@|@MISSING@|needs a value
rejuvenate|--json||--json=1|json
upgrade|--ctl|/nonexistent|@MISSING@|needs a value
upgrade|--group|@NOCTL@g1|a/b|group|1:.
upgrade|--binary|@MIGR@|@MISSING@|needs a value
upgrade|--json||--json=1|json
model|--hosts|1,100,10000|many|hosts
model|--vms|10|-1|vms
model|--t-vmm|28d|x|t-vmm
model|--t-os|7d|x|t-os
model|--d-os|1m|x|d-os
model|--delta|0.35|x|delta
model|--r-os|1m|x|r-os
model|--d-warm|30s|x|d-warm
model|--omega|0.5|x|omega
model|--r-warm|30s|x|r-warm
model|--d-cold|1m|x|d-cold
model|--omega-cold|0.5|x|omega-cold
model|--r-cold|1m|x|r-cold
model|--d-mig|30s|x|d-mig
model|--gamma|0.5|x|gamma
model|--m-live|10s|x|m-live
model|--gamma-live|0.9|x|gamma-live
model|--m-live-rc|10s|x|m-live-rc
model|--gamma-live-rc|0.9|x|gamma-live-rc
model|--from-bench|@DIR@/b.json|@MISSING@|needs a value
model|--vm-ram|1G --from-bench @DIR@/b.json|lots --from-bench @DIR@/b.json|vm-ram
model|--migr-gamma|0.9 --from-bench @DIR@/b.json|x --from-bench @DIR@/b.json|migr-gamma
model|--handover-omega|0.9 --from-bench @DIR@/b.json|x --from-bench @DIR@/b.json|handover-omega
model|--json||--json=1|json
model|--plot|@DIR@/m.png|@MISSING@|needs a value
TABLE
)
for c in verify status resume cancel stop; do
    ROWS+=$'\n'"$c|--ctl|/nonexistent|@MISSING@|needs a value"
    ROWS+=$'\n'"$c|--wait|0.5|forever|wait"
    ROWS+=$'\n'"$c|--json||--json=1|json"
done
ROWS+=$'\n'"status|--watch|=0.5|=1y|watch"

# row_args CMD OPTION VALUE GOOD: the argv, one per line (GOOD: 1 for a good
# spelling, which gets the command's trailing bad value, if any)
row_args() {
    local cmd=$1 opt=$2 val=$3 good=$4 v noctl=
    [[ $val == @NOCTL@* ]] && { noctl=1; val=${val#@NOCTL@}; }
    echo "$cmd"
    if [ -z "$noctl" ] && [ "$opt" != --ctl ]; then
        case $cmd in
        send|verify|status|resume|cancel|stop|upgrade|rejuvenate) printf '%s\n' --ctl /nonexistent ;;
        run|recv) printf '%s\n' --ctl "$CTL" ;;
        esac
    fi
    [ "$cmd" = send ] && [ "$opt" != --to ] && printf '%s\n' --to "unix:$DIR/m.sock"
    case $val in
    @MISSING@) echo "$opt"; return ;;  # the value left out: the option ends the line
    =*) echo "$opt$val" ;;
    --*=*) echo "$val" ;;
    "") echo "$opt" ;;
    *) echo "$opt"; for v in $val; do echo "$v"; done ;;
    esac
    [ "$good" = 1 ] || return
    case $cmd in
    run) if [ "$opt" = --vcpus ]; then printf '%s\n' --backend xen; else printf '%s\n' --vcpus 0; fi ;;
    recv) [ "$opt" = --listen ] || [ "$opt" = --decode-threads ] || printf '%s\n' --listen unix:$DIR/r.sock --decode-threads 0 ;;
    demo) if [ "$opt" = --mem ]; then printf '%s\n' --to sctp; else printf '%s\n' --mem lots; fi ;;
    esac
}
sub() { local v=${1//@DIR@/$DIR}; v=${v//@CTL@/$CTL}; printf '%s' "${v//@MIGR@/$MIGR}"; }
nrows=0
while IFS='|' read -r cmd opt good badv pat ends; do
    [ -n "$cmd" ] || continue
    nrows=$((nrows + 1))
    good=$(sub "$good"); badv=$(sub "$badv")
    if [ "$good" != @MISSING@ ]; then
        mapfile -t a < <(row_args "$cmd" "$opt" "$good" 1)
        run_migr "${a[@]}"
        case $cmd in
        run) want="2:vcpus" ;; recv) want="2:decode-threads" ;; demo) want="2:lots" ;; model) want="0:" ;;
        *) want="1:no VMM" ;;
        esac
        [ -n "$ends" ] && want=$ends
        if [ "$RC" != "${want%%:*}" ] || ! grep -Eq -- "${want#*:}" <<<"$ERR"; then
            bad "good spelling: migr ${a[*]}: exit $RC, expected ${want%%:*} ('${want#*:}'): $(head -n1 <<<"$ERR")"
        fi
    fi
    mapfile -t a < <(row_args "$cmd" "$opt" "$badv" 0)
    expect_usage_error "$cmd" "$pat" "${a[@]}"
done <<<"$ROWS"
rm -f "$DIR/m.png" "$DIR/k.key" "$DIR/b.json" "$DIR/r.log"

# Every option each --help lists has its row.
for c in demo run recv send rejuvenate upgrade verify status resume cancel stop model; do
    for o in $("$MIGR" $c --help 2>&1 | grep -oE '^ +--[a-z][a-z-]*' | sort -u); do
        grep -q "^$c|$o|" <<<"$ROWS" || bad "migr $c $o (in its --help) has no row in the option table"
    done
done
echo "ok  option table: $nrows options, good and bad spellings"

leftover=$(ls -A "$DIR" | grep -v '^out$\|^err$')
[ -z "$leftover" ] || bad "files left behind by refused commands: $leftover"
[ $failures -eq 0 ] || { echo "$failures check(s) failed"; exit 1; }
exit 0
