# migr — build, test, demo.  `make` builds build/libmigr.a and build/migr.
#   make demo        live-migrate a running guest between two VMM processes and verify it
#   make test        all tests; last line "N passed, N failed, N skipped"
#   make test-asan   the same with ASan+UBSan (in build-asan/)
#   make bench       benchmarks (long; writes bench/results/)

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
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -I. -pthread -fno-strict-aliasing $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -pthread -lm
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

LIB_DIRS := common engine transfer compress dirty hv-glue hv-glue/kvm hv-glue/proc hv-glue/workload model
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_ASM  := hv-glue/kvm/guest_blob.S
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o) $(LIB_ASM:%.S=$(BUILD)/obj/%.o)
# Optional CUDA (compress/gpu/, docs/compress.md): make GPU=1 where nvcc exists.
ifeq ($(GPU),1)
CFLAGS   += -DMIGR_HAVE_GPU
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

TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
BENCH_SRCS := $(wildcard bench/bench_*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

.PHONY: all demo test test-asan bench clean fuzz
all: $(BUILD)/libmigr.a $(BUILD)/migr

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/guest/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -c $< -o $@

$(BUILD)/guest/guest.elf: $(GUEST_SRCS:%.c=$(BUILD)/guest/obj/%.o) hv-glue/kvm/guest/guest.ld
	$(CC) $(GUEST_CFLAGS) -static -Wl,--build-id=none -T hv-glue/kvm/guest/guest.ld -o $@ $(filter %.o,$^)

$(BUILD)/guest/guest.bin: $(BUILD)/guest/guest.elf
	objcopy -O binary $< $@

$(BUILD)/obj/hv-glue/kvm/guest_blob.o: hv-glue/kvm/guest_blob.S $(BUILD)/guest/guest.bin
	@mkdir -p $(dir $@)
	$(CC) -c -I$(BUILD)/guest $< -o $@

$(BUILD)/libmigr.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/migr: $(CLI_OBJS) $(BUILD)/libmigr.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(BUILD)/libmigr.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libmigr.a tests/testlib.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmigr.a $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libmigr.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmigr.a $(LDLIBS)

demo: all
	$(BUILD)/migr demo

test: all $(TEST_BINS)
	@BUILD=$(BUILD) ./tests/run.sh

test-asan:
	$(MAKE) BUILD=build-asan SAN=1 test

bench: all $(BENCH_BINS)
	./bench/run.sh

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
