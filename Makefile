# migr — build, test, demo.  `make` builds build/libmigr.a and build/migr.
#   make demo        live-migrate a running guest between two VMM processes and verify it
#   make test        all tests; last line "N passed, N failed, N skipped"
#   make test-asan   the same with ASan+UBSan (in build-asan/)
#   make bench       benchmarks (long; writes bench/results/)
#   make install     PREFIX=/usr/local DESTDIR= LIBDIR= BINDIR= INCLUDEDIR= MANDIR= DOCDIR=: migr, libmigr.so.MAJOR
#                    (+ .a), headers, migr.pc, man pages

BUILD   ?= build
CC      ?= gcc
SAN     ?= 0

# Install missing Debian -dev packages before anything needs their headers.
ifeq ($(filter clean,$(MAKECMDGOALS)),)
NEED_HDRS := zlib.h lz4.h zstd.h liburing.h openssl/evp.h
MISSING_HDRS := $(strip $(foreach h,$(NEED_HDRS),$(if $(wildcard /usr/include/$(h) /usr/include/x86_64-linux-gnu/$(h)),,$(h))))
ifneq ($(MISSING_HDRS),)
$(info migr: missing headers ($(MISSING_HDRS)): running scripts/install-deps.sh)
DEPS_RC := $(shell ./scripts/install-deps.sh >&2; echo $$?)
ifneq ($(DEPS_RC),0)
$(error scripts/install-deps.sh failed; install zlib1g-dev liblz4-dev libzstd-dev liburing-dev libssl-dev)
endif
endif
PKGS    := zlib liblz4 libzstd liburing libcrypto libssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
# CFLAGS/LDFLAGS are the user's (make CFLAGS="-O2 -g" keeps working): what
# migr needs comes on top, in MIGR_CFLAGS.
CFLAGS  ?= -O2 -g
MIGR_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -I. -pthread -fno-strict-aliasing $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -pthread -lm
ifeq ($(SAN),1)
MIGR_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
# The library's objects go into libmigr.so too.
LIB_CFLAGS := -fPIC

LIB_DIRS := common engine transfer compress dirty hv-glue hv-glue/kvm hv-glue/proc hv-glue/workload model
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_ASM  := hv-glue/kvm/guest_blob.S
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o) $(LIB_ASM:%.S=$(BUILD)/obj/%.o)
# Optional CUDA (compress/gpu/, docs/compress.md): make GPU=1 where nvcc exists.
ifeq ($(GPU),1)
MIGR_CFLAGS += -DMIGR_HAVE_GPU
LIB_OBJS += $(BUILD)/obj/compress/gpu/xbzrle.o
CUDA_HOME ?= /usr/local/cuda
LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lstdc++
$(BUILD)/obj/compress/gpu/%.o: compress/gpu/%.cu compress/gpu/xbzrle_model.h
	@mkdir -p $(dir $@)
	$(or $(NVCC),$(wildcard $(CUDA_HOME)/bin/nvcc),nvcc) -O2 -Iinclude -I. -c $< -o $@
endif
CLI_SRCS := $(wildcard cli/*.c)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)

# The guest workload: freestanding, CPL3, loaded as a flat binary at 1 MiB.
GUEST_SRCS := $(wildcard hv-glue/kvm/guest/*.c) hv-glue/workload/workload.c
GUEST_CFLAGS := -std=c11 -O2 -g -ffreestanding -nostdlib -fno-pic -fno-pie -mgeneral-regs-only \
	-mno-red-zone -fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none \
	-fno-builtin -fno-tree-loop-distribute-patterns -fno-delete-null-pointer-checks -mcmodel=small -Iinclude -I. -Wall -Wextra -Werror -DMIGR_FREESTANDING

# The PVH guest (bench/peers/pvh/): one ELF that migr (`migr run --kernel`)
# and QEMU (`-M microvm -kernel`) both boot; the same workload code as above.
PVH_ELF  := $(BUILD)/bench/peers/pvh.elf
PVH_SRCS := $(wildcard bench/peers/pvh/*.c) hv-glue/kvm/guest/run.c hv-glue/workload/workload.c hv-glue/workload/spec.c
PVH_OBJS := $(PVH_SRCS:%.c=$(BUILD)/guest/obj/%.o) $(BUILD)/guest/obj/bench/peers/pvh/entry.o

TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
BENCH_SRCS := $(wildcard bench/bench_*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

VERSION := $(shell sed -n 's/^\#define MIGR_VERSION_STRING "\(.*\)"/\1/p' include/migr/version.h)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
SONAME  := libmigr.so.$(MAJOR)

.PHONY: all demo test test-asan test-faults bench bench-build bench-peers bench-net clean fuzz install
all: $(BUILD)/libmigr.a $(BUILD)/migr $(BUILD)/$(SONAME) $(PVH_ELF) $(BENCH_BINS)
# every benchmark binary, without running them (migr bench NAME runs one)
bench-build: all $(BENCH_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(MIGR_CFLAGS) $(LIB_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/guest/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -c $< -o $@

$(BUILD)/guest/obj/%.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -c $< -o $@

$(PVH_ELF): $(PVH_OBJS) bench/peers/pvh/pvh.ld
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -static -Wl,--build-id=none -Wl,-z,max-page-size=4096 -T bench/peers/pvh/pvh.ld -o $@ $(filter %.o,$^)

$(BUILD)/guest/guest.elf: $(GUEST_SRCS:%.c=$(BUILD)/guest/obj/%.o) hv-glue/kvm/guest/guest.ld
	$(CC) $(GUEST_CFLAGS) -static -Wl,--build-id=none -T hv-glue/kvm/guest/guest.ld -o $@ $(filter %.o,$^)

$(BUILD)/guest/guest.bin: $(BUILD)/guest/guest.elf
	objcopy -O binary $< $@

$(BUILD)/obj/hv-glue/kvm/guest_blob.o: hv-glue/kvm/guest_blob.S $(BUILD)/guest/guest.bin
	@mkdir -p $(dir $@)
	$(CC) -c -I$(BUILD)/guest $< -o $@

# build/libmigr.a: every object, internal symbols included (the CLI, tests
# and benchmarks link it). What is installed exports migr_* only: the shared
# library through a version script, the static one as a single relocatable
# object whose other globals are made local.
$(BUILD)/libmigr.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libmigr.so.$(VERSION): $(LIB_OBJS) pkg/libmigr.map
	$(CC) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=pkg/libmigr.map -Wl,-z,defs \
		-o $@ $(LIB_OBJS) $(LDLIBS)

$(BUILD)/$(SONAME): $(BUILD)/libmigr.so.$(VERSION)
	ln -sf libmigr.so.$(VERSION) $@

$(BUILD)/pkg/libmigr.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(LD) -r -o $(BUILD)/pkg/libmigr.o $(LIB_OBJS)
	objcopy -w --keep-global-symbol='migr_*' $(BUILD)/pkg/libmigr.o
	@rm -f $@
	ar rcs $@ $(BUILD)/pkg/libmigr.o

$(BUILD)/migr: $(CLI_OBJS) $(BUILD)/libmigr.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(BUILD)/libmigr.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libmigr.a tests/testlib.h
	@mkdir -p $(dir $@)
	$(CC) $(MIGR_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmigr.a $(LDLIBS)

# The CLI as a newer binary with another guest state format (tests/newer_state.c).
$(BUILD)/tests/migr-newer-state: tests/newer_state.c $(CLI_OBJS) $(BUILD)/libmigr.a
	@mkdir -p $(@D)
	$(CC) $(MIGR_CFLAGS) $(CFLAGS) $(LDFLAGS) -Wl,--wrap=migr_hv_build -o $@ $< $(CLI_OBJS) $(BUILD)/libmigr.a $(LDLIBS)

# The CLI as a build without zstd (tests/no_zstd.c: its receiver lacks the feature).
$(BUILD)/tests/migr-no-zstd: tests/no_zstd.c $(CLI_OBJS) $(BUILD)/libmigr.a
	$(CC) $(MIGR_CFLAGS) $(CFLAGS) $(LDFLAGS) -Wl,--wrap=migr_features_supported -o $@ $< $(CLI_OBJS) $(BUILD)/libmigr.a $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libmigr.a
	@mkdir -p $(dir $@)
	$(CC) $(MIGR_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmigr.a $(LDLIBS)

# ---- install (GNU conventions) ----
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/migr
PCDIR      ?= $(LIBDIR)/pkgconfig

$(BUILD)/pkg/migr.pc: pkg/migr.pc.in include/migr/version.h Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@REQUIRES@|$(PKGS)|' $< > $@

install: all $(BUILD)/pkg/libmigr.a $(BUILD)/pkg/migr.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(INCLUDEDIR)/migr \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(DOCDIR)
	install -m 755 $(BUILD)/migr $(DESTDIR)$(BINDIR)/migr
	install -m 755 $(BUILD)/libmigr.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libmigr.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmigr.so
	install -m 644 $(BUILD)/pkg/libmigr.a $(DESTDIR)$(LIBDIR)/libmigr.a
	install -m 644 include/migr/*.h $(DESTDIR)$(INCLUDEDIR)/migr/
	install -m 644 $(BUILD)/pkg/migr.pc $(DESTDIR)$(PCDIR)/migr.pc
	install -m 644 docs/man/migr.1 $(DESTDIR)$(MANDIR)/man1/migr.1
	install -m 644 docs/man/libmigr.3 $(DESTDIR)$(MANDIR)/man3/libmigr.3
	install -m 644 LICENSE $(DESTDIR)$(DOCDIR)/LICENSE

demo: all
	$(BUILD)/migr demo

test: all $(TEST_BINS) $(BUILD)/tests/migr-newer-state $(BUILD)/tests/migr-no-zstd
	@BUILD=$(BUILD) ./tests/run.sh

test-asan:
	$(MAKE) BUILD=build-asan SAN=1 test

# The whole fault matrix (tests/faults/cases.txt) and the leak run; the table
# in docs/reliability.md is regenerated from the results.
test-faults: all
	python3 tests/faults/matrix.py --results $(BUILD)/faults.jsonl; rc=$$?; \
	python3 tests/faults/table.py $(BUILD)/faults.jsonl docs/reliability.md; \
	LEAK_RUNS=50 tests/it_faults_leaks.sh && exit $$rc

# Every libFuzzer harness of tests/fuzz/ for FUZZ_SECONDS each (default 60).
fuzz: all
	FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) BUILD=$(BUILD) tests/fuzz/run.sh

bench: all $(BENCH_BINS)
	./bench/run.sh

# QEMU and migr on the same PVH guest (bench/README.md, "bench/peers/qemu");
# installs qemu-system-x86 first. BENCH_QUICK=1: one pair, fewer scenarios.
bench-peers: all $(BUILD)/bench/peers/limits
	./scripts/install-deps.sh --qemu || echo "bench-peers: could not install qemu-system-x86"
	python3 bench/peers/qemu.py --build $(BUILD) $(if $(filter 1,$(BENCH_QUICK)),--quick)

# QEMU and migr across shaped links between network namespaces, redis-server's
# memory in the guest (bench/README.md, "bench/netns"); root (CAP_NET_ADMIN).
# BENCH_QUICK=1: one repetition, two links, fewer variants.
bench-net: all $(BUILD)/bench/netns/delayline
	./scripts/install-deps.sh --qemu --net || echo "bench-net: could not install qemu-system-x86 / redis-server"
	python3 bench/netns/bench.py --build $(BUILD) $(if $(filter 1,$(BENCH_QUICK)),--quick)

$(BUILD)/bench/netns/delayline: bench/netns/delayline.c
	@mkdir -p $(dir $@)
	$(CC) $(MIGR_CFLAGS) $(CFLAGS) -o $@ $< -pthread

$(BUILD)/bench/peers/limits: bench/peers/limits.c bench/benchlib.h $(BUILD)/libmigr.a
	@mkdir -p $(dir $@)
	$(CC) $(MIGR_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmigr.a $(LDLIBS)

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
