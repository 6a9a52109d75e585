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
for v in 64 64M 1G 0; do expect_no_vmm send --ctl /nonexistent --to unix:$DIR/m.sock --xbzrle-cache $v; done
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

leftover=$(ls -A "$DIR" | grep -v '^out$\|^err$')
[ -z "$leftover" ] || bad "files left behind by refused commands: $leftover"
[ $failures -eq 0 ] || { echo "$failures check(s) failed"; exit 1; }
exit 0
