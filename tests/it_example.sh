#!/bin/bash
# examples/tinyvmm.c, built only from an installed tree (make install into a
# temporary DESTDIR, then pkg-config): an independent "VMM" with two RAM
# regions and a hole, its own state blob, writer threads, its own dirty
# tracker and its own guest builder migrates itself to a second instance of
# itself over unix and TCP, pre-copy and post-copy. The receiver checks every
# page against the generation table and the table against the device state,
# right after the migration and after running on; the device register the
# sender had must be the one the receiver loaded. Exit 0 pass, 1 fail, 77 skip.
set -u
. "$(dirname "$0")/itlib.sh"
it_setup example
command -v pkg-config >/dev/null || { echo "SKIP: pkg-config not found"; exit 77; }
BUILD=${BUILD:-build}
san=()
[ "$BUILD" = build-asan ] && san=(-fsanitize=address,undefined)
make -s BUILD="$BUILD" $([ "$BUILD" = build-asan ] && echo SAN=1) install DESTDIR="$DIR/root" PREFIX=/usr \
    >"$DIR/install.log" 2>&1 || fail "make install: $(tail -n5 "$DIR/install.log")"
R=$DIR/root
export PKG_CONFIG_PATH=$R/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$R
gcc -std=c11 -Wall -Wextra -Werror "${san[@]}" $(pkg-config --cflags migr) -o "$DIR/tinyvmm" \
    "$(dirname "$0")/../examples/tinyvmm.c" $(pkg-config --libs migr) || fail "build examples/tinyvmm.c against the installed tree"
export LD_LIBRARY_PATH=$R/usr/lib

# $1: listen URL, $2: precopy|postcopy
migrate() {
    local url=$1 mode=$2 rx bound=
    rm -f "$DIR/rx.out"
    timeout 60 "$DIR/tinyvmm" recv "$url" >"$DIR/rx.out" 2>&1 &
    rx=$!; PIDS+=($rx)
    for _ in $(seq 100); do bound=$(sed -n 's/^listening //p' "$DIR/rx.out"); [ -n "$bound" ] && break; sleep 0.05; done
    [ -n "$bound" ] || fail "$url: the receiver does not listen: $(cat "$DIR/rx.out")"
    timeout 60 "$DIR/tinyvmm" send "$bound" $([ "$mode" = postcopy ] && echo postcopy) >"$DIR/tx.out" 2>&1 ||
        fail "$url $mode: send failed: $(cat "$DIR/tx.out")"
    wait "$rx" || fail "$url $mode: the receiver failed: $(cat "$DIR/rx.out")"
    local sreg rreg
    sreg=$(sed -n 's/.*device_reg \([0-9a-f]*\)$/\1/p' "$DIR/tx.out")
    rreg=$(sed -n 's/.*device_reg \([0-9a-f]*\)$/\1/p' "$DIR/rx.out")
    [ -n "$sreg" ] && [ "$sreg" = "$rreg" ] || fail "$url $mode: device state sent $sreg, loaded $rreg"
    grep -q "after running on: .* 0 bad pages" "$DIR/rx.out" || fail "$url $mode: $(cat "$DIR/rx.out")"
    echo "$url $mode: $(head -n1 "$DIR/tx.out")"
    sed 's/^/    /' "$DIR/rx.out"
}

migrate "unix:$DIR/a.sock" precopy
migrate "unix:$DIR/b.sock" postcopy
migrate "tcp:127.0.0.1:0" precopy
migrate "tcp:127.0.0.1:0" postcopy
echo "ok  examples/tinyvmm (installed tree): unix and TCP, pre-copy and post-copy, memory and state checked"
