#!/bin/bash
# `make install` into a temporary DESTDIR gives a usable package: a program
# built only from the installed headers and pkg-config's flags links against
# the shared library (soname libmigr.so.MAJOR, exporting migr_* only) and the
# static one (no other global symbols), and runs; every public header
# compiles as C++; the installed migr prints its version; the man pages are
# there. Exit 0 pass, 1 fail, 77 skip (no pkg-config or g++).
set -u
. "$(dirname "$0")/itlib.sh"
it_setup install
command -v pkg-config >/dev/null || { echo "SKIP: pkg-config not found"; exit 77; }
command -v g++ >/dev/null || { echo "SKIP: g++ not found (the C++ header check)"; exit 77; }
BUILD=${BUILD:-build}
san=()
[ "$BUILD" = build-asan ] && san=(-fsanitize=address,undefined)
make -s BUILD="$BUILD" $([ "$BUILD" = build-asan ] && echo SAN=1) install DESTDIR="$DIR/root" PREFIX=/usr \
    >"$DIR/install.log" 2>&1 || fail "make install: $(tail -n5 "$DIR/install.log")"
R=$DIR/root
for f in usr/bin/migr usr/lib/libmigr.a usr/lib/libmigr.so usr/include/migr/engine.h usr/include/migr/version.h usr/include/migr/migr.h usr/share/doc/migr/LICENSE \
    usr/lib/pkgconfig/migr.pc usr/share/man/man1/migr.1 usr/share/man/man3/libmigr.3; do
    [ -e "$R/$f" ] || fail "not installed: /$f"
done
so=$(readlink "$R/usr/lib/libmigr.so")
soname=$(readelf -d "$R/usr/lib/$so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "$so" ] || fail "libmigr.so -> $so, but its soname is '$soname'"
case $soname in libmigr.so.[0-9]*) ;; *) fail "soname '$soname' is not libmigr.so.MAJOR";; esac
bad=$(nm -D --defined-only "$R/usr/lib/$so" | awk 'NF == 3 && $3 !~ /^migr_/ && $3 !~ /^MIGR_/ {print $3}' | head -n5)
[ -z "$bad" ] || fail "the shared library exports more than migr_*: $bad"
bad=$(nm -g --defined-only "$R/usr/lib/libmigr.a" | awk 'NF == 3 && $3 !~ /^migr_/ {print $3}' | head -n5)
[ -z "$bad" ] || fail "the static library has global symbols other than migr_*: $bad"
export PKG_CONFIG_PATH=$R/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$R
cflags=$(pkg-config --cflags migr) || fail "pkg-config --cflags migr"
libs=$(pkg-config --libs migr) || fail "pkg-config --libs migr"
slibs=$(pkg-config --static --libs migr) || fail "pkg-config --static --libs migr"
src=$(dirname "$0")/install
for h in "$R"/usr/include/migr/*.h; do
    b=$(basename "$h")
    [ "$b" = migr.h ] || grep -q "^#include \"migr/$b\"" "$R/usr/include/migr/migr.h" ||
        fail "the umbrella <migr/migr.h> does not include migr/$b"
done
gcc -std=c11 -Wall -Wextra -Werror "${san[@]}" $cflags -o "$DIR/embed-shared" "$src/embed.c" $libs ||
    fail "build against the shared library ($cflags $libs)"
gcc -std=c11 -Wall -Wextra -Werror "${san[@]}" $cflags -o "$DIR/embed-static" "$src/embed.c" \
    -Wl,-Bstatic -lmigr -Wl,-Bdynamic ${slibs/-lmigr/} || fail "build against the static library ($slibs)"
g++ -std=c++17 -Wall -Wextra -Werror "${san[@]}" $cflags -o "$DIR/cxx" "$src/cxx.cpp" $libs ||
    fail "the public headers do not compile as C++"
LD_LIBRARY_PATH=$R/usr/lib "$DIR/embed-shared" "$DIR/s1.sock" || fail "the program linked to libmigr.so failed"
ldd "$DIR/embed-static" | grep -q libmigr && fail "the static build still needs libmigr.so"
"$DIR/embed-static" "$DIR/s2.sock" || fail "the program linked to libmigr.a failed"
LD_LIBRARY_PATH=$R/usr/lib "$DIR/cxx" || fail "the C++ program failed"
v=$("$R/usr/bin/migr" --version) || fail "migr --version"
grep -q "migr $(pkg-config --modversion migr)" <<<"$v" || fail "migr --version says '$v', pkg-config $(pkg-config --modversion migr)"
echo "ok  installed: $so, $v; built and ran against the shared and the static library, C++ headers ok"
