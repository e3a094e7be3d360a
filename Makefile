# kpipe - build, test, demo, bench, install.
#   make            build ./kpipe (objects in build/)
#   make test       install missing Debian packages, build, run every test (T=group for one group)
#   make demo       install missing Debian packages, build, run configs/demo.yaml
#   make asan       build and run the tests under ASan+UBSan (objects in build-asan/)
#   make bench      the executor benchmark in bench/ (not part of test)
#   make bench-zoo  kpipe's models against XGBoost / scikit-learn (bench/zoo/, ~10 min)
#   make install    PREFIX=/usr/local DESTDIR=
PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
BUILD ?= build
OPT ?= -O2 -g
SAN ?=
PKGS = yaml-0.1 libpng libcurl openblas jansson libxxhash zlib libarchive libcrypto
# The tests also run an HTTP server (tests/http_server.c) on libmicrohttpd.
TEST_PKGS = libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# The kpipe binary loads OpenBLAS on first use (lib/blas.h): it links everything but it.
PKG_LIBS_NO_BLAS := $(shell pkg-config --libs $(filter-out openblas,$(PKGS)) 2>/dev/null)
KP_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(OPT) $(SAN) -MMD -MP $(PKG_CFLAGS) $(CFLAGS)
KP_LIBS = $(SAN) $(LDFLAGS) $(PKG_LIBS) -lcsv -lm -lpthread
KPIPE_LIBS = $(SAN) $(LDFLAGS) $(PKG_LIBS_NO_BLAS) -lcsv -lm -lpthread -ldl

MAIN_SRC = pipeline/main.c pipeline/blas_lazy.c
LIB_SRC = $(filter-out $(MAIN_SRC),$(sort $(wildcard lib/*.c pipeline/*.c stages/*.c models/*.c models/metrics/*.c models/nn/*.c)))
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC = $(sort $(wildcard tests/test_*.c))
TEST_OBJ = $(TEST_SRC:%.c=$(BUILD)/%.o) $(BUILD)/tests/harness.o $(BUILD)/tests/http_server.o \
    $(BUILD)/tests/http_server_kaggle.o $(BUILD)/tests/registry.o
VERSION = $(shell cat VERSION)

.PHONY: all test demo asan bench bench-zoo fuzz install clean deps
all: kpipe

deps:
	@sh scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(KP_CFLAGS) -DKP_VERSION='"$(VERSION)"' -c $< -o $@

$(BUILD)/libkpipe.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/kpipe: $(MAIN_SRC:%.c=$(BUILD)/%.o) $(BUILD)/libkpipe.a
	$(CC) -o $@ $^ $(KPIPE_LIBS)

kpipe: $(BUILD)/kpipe
	cp $< $@

# The test registry is generated from the KP_TEST_GROUP(name) lines of tests/test_*.c.
$(BUILD)/tests/registry.c: $(TEST_SRC) scripts/gen_test_registry.sh
	@mkdir -p $(dir $@)
	sh scripts/gen_test_registry.sh $(TEST_SRC) > $@

$(BUILD)/tests/registry.o: $(BUILD)/tests/registry.c
	$(CC) $(KP_CFLAGS) -Itests -c $< -o $@

$(BUILD)/kpipe_tests: $(TEST_OBJ) $(BUILD)/libkpipe.a
	$(CC) -o $@ $^ $(KP_LIBS) $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null) -lcmocka

# Tests run with the binary they test: KPIPE_BIN points end-to-end tests at it.
test: deps
	@$(MAKE) --no-print-directory $(BUILD)/kpipe $(BUILD)/kpipe_tests
	KPIPE_BIN=$(CURDIR)/$(BUILD)/kpipe KPIPE_ROOT=$(CURDIR) ./$(BUILD)/kpipe_tests $(T)

asan:
	@$(MAKE) --no-print-directory test BUILD=build-asan OPT='-O2 -g -fno-omit-frame-pointer' \
	    SAN='-fsanitize=address,undefined -fno-sanitize-recover=undefined'

demo: deps
	@$(MAKE) --no-print-directory kpipe
	./kpipe run configs/demo.yaml
	./kpipe status configs/demo.yaml
	@echo "submission: submissions/demo.csv"

# Coverage-guided fuzzing of the hostile-input readers (clang + libFuzzer;
# not part of test): FUZZ_SECONDS per harness, corpora seeded from the repo.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = safetensors csv config ledger unpack
fuzz:
	@mkdir -p build-fuzz
	@for f in $(FUZZ_TARGETS); do \
	    clang -std=c11 -D_GNU_SOURCE -DKP_LIBFUZZER -DKP_VERSION='"fuzz"' -g -O1 \
	        -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) tests/fuzz/fuzz_$$f.c $(LIB_SRC) \
	        -o build-fuzz/fuzz_$$f $(PKG_LIBS) -lcsv -lm -lpthread || exit 1; \
	    mkdir -p build-fuzz/corpus_$$f; done
	@mkdir -p build-fuzz/corpus_csv build-fuzz/corpus_config build-fuzz/corpus_safetensors \
	    build-fuzz/corpus_ledger build-fuzz/corpus_unpack
	@cp data/*/*.csv build-fuzz/corpus_csv/ 2>/dev/null; cp configs/*.yaml build-fuzz/corpus_config/
	@cp tests/fuzz/seeds/*.safetensors build-fuzz/corpus_safetensors/ 2>/dev/null; true
	@cp tests/fuzz/seeds/ledger.csv build-fuzz/corpus_ledger/
	@cp tests/fuzz/seeds/*.zip tests/fuzz/seeds/*.tar tests/fuzz/seeds/*.tar.gz build-fuzz/corpus_unpack/
	@for f in $(FUZZ_TARGETS); do \
	    ./build-fuzz/fuzz_$$f -max_len=8192 -max_total_time=$(FUZZ_SECONDS) \
	        -artifact_prefix=build-fuzz/ build-fuzz/corpus_$$f > build-fuzz/fuzz_$$f.log 2>&1; \
	    rc=$$?; tail -3 build-fuzz/fuzz_$$f.log; [ $$rc = 0 ] || exit 1; done

bench: kpipe
	sh bench/run.sh

bench-zoo: kpipe
	sh bench/zoo/run.sh

install: kpipe
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 kpipe $(DESTDIR)$(PREFIX)/bin/kpipe
	install -d $(DESTDIR)$(PREFIX)/share/doc/kpipe
	install -m 644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/kpipe/

clean:
	rm -rf build build-asan build-fuzz kpipe

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
