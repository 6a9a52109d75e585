#!/bin/bash
# README.md's example session, pasted into a shell: the block under
# "## An example session" is extracted, its "$ " commands run in order by
# bash -e (with /tmp/ replaced by this test's directory, build/migr by
# $MIGR). Every command must succeed. Exit 0 pass, 1 fail, 77 skip (no KVM).
set -u
. "$(dirname "$0")/itlib.sh"
need_kvm
it_setup cli-readme
README=$(dirname "$0")/../README.md
awk '/^## An example session/ {on = 1} on && /^```$/ {n++; if (n == 2) exit; next} on && n == 1' "$README" |
    sed -n 's/^\$ //p' >$DIR/session.raw
[ "$(wc -l <$DIR/session.raw)" -ge 5 ] || fail "no example session found in README.md"
{
    echo "set -ex"
    sed -e "s#/tmp/#$DIR/#g" -e "s#build/migr#$MIGR#g" $DIR/session.raw
} >$DIR/session.sh
timeout -k 5 180 bash $DIR/session.sh >$DIR/session.out 2>$DIR/session.err || {
    cat $DIR/session.sh
    fail "the README's session failed at: $(grep '^+' $DIR/session.err | tail -n1)"
}
grep -q "migrated: the guest runs on the destination" $DIR/session.out || fail "no migration summary"
[ "$(grep -c '^verified:' $DIR/session.out)" -eq 2 ] || fail "expected two 'verified' lines"
grep -q "^upgraded" $DIR/session.out || fail "no upgrade line"
sleep 0.5
left=$(ls -A $DIR | grep -v '^session')
[ -z "$left" ] || fail "files left behind after the session: $left"
exit 0
