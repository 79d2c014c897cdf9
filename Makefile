# mq - a durable message queue for the shell.
#
#   make                 build everything into build/
#   make run             install what is missing, build, run mq-brokerd on ./mq-data
#   make test            install missing Debian packages, build, run all tests
#   make test SANITIZE=1 the same under ASan + UBSan (built in build-san/)
#   make bench           benchmarks (figures as ratios to raw disk I/O)
#   make check           lint the man pages
#   make install PREFIX=/usr/local DESTDIR=   / make uninstall

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions

CC ?= cc
CFLAGS ?= -O2 -g
ifeq ($(SANITIZE),1)
BUILD ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=undefined
else
BUILD ?= build
endif
ALL_CFLAGS = -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -Ilib \
	     -MMD -MP $(SANFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)
LDLIBS = -lev -lcjson -lpthread

# Debian packages the build and the tests need (installed by `make deps`).
DEB_DEPS = gcc make libc6-dev libev-dev libcjson-dev bats jq mandoc socat zsh

LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIBMQ := $(BUILD)/lib/libmq.a

# Code shared by the programs (options, output, exit codes): cmd/cli/.
CLI_SRC := $(wildcard cmd/cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
# The daemon's own files: cmd/brokerd/.
BROKERD_SRC := $(wildcard cmd/brokerd/*.c)
BROKERD_OBJ := $(BROKERD_SRC:%.c=$(BUILD)/%.o)

PROGS := $(patsubst cmd/%.c,%,$(wildcard cmd/mq-*.c))
BINS := $(PROGS:%=$(BUILD)/bin/%)

UNIT_SRC := $(wildcard tests/unit/t_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# A shim the broker tests preload to stall fdatasync (never sanitized:
# it is loaded into the broker before the sanitizer runtime).
SHIM := $(BUILD)/tests/slow_fdatasync.so
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_BINS := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

MANPAGES := $(wildcard man/*.[1-8])

.PHONY: all run test deps bench check install uninstall clean
all: $(LIBMQ) $(BINS) $(UNIT_BINS) $(SHIM) $(BENCH_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBMQ): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/mq-brokerd: $(BUILD)/cmd/mq-brokerd.o $(BROKERD_OBJ) $(CLI_OBJ) $(LIBMQ)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/%: $(BUILD)/cmd/%.o $(CLI_OBJ) $(LIBMQ)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIBMQ)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(SHIM): tests/unit/slow_fdatasync.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -O2 -fPIC -shared -o $@ $< -ldl

$(BUILD)/bench/%: $(BUILD)/tests/bench/%.o $(LIBMQ)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# Install what is missing, build, and run the broker on ./mq-data.
run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/bin/mq-brokerd -d ./mq-data

# Install what is missing (Debian), then build and run every test. The
# last line is "N passed, M failed"; the exit status is non-zero on any
# failure.
test: deps
	@$(MAKE) --no-print-directory all
	@tests/run $(BUILD)

deps:
	@missing=; for p in $(DEB_DEPS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	    grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make deps: missing Debian packages:$$missing (run as root)" >&2; \
	    exit 1; \
	  fi; \
	  echo "make deps: installing$$missing" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >&2; \
	fi

bench: deps
	@$(MAKE) --no-print-directory all
	@tests/bench/run $(BUILD)

check:
	@for m in $(MANPAGES); do mandoc -Tlint -Wwarning $$m || exit 1; done

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR)
	for p in $(PROGS); do \
	  case $$p in mq-brokerd) d=$(SBINDIR);; *) d=$(BINDIR);; esac; \
	  install -m 755 $(BUILD)/bin/$$p $(DESTDIR)$$d/$$p; done
	for m in $(MANPAGES); do s=$${m##*.}; \
	  install -d $(DESTDIR)$(MANDIR)/man$$s; \
	  install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	for c in completions/bash/*; do [ -f "$$c" ] && \
	  install -m 644 $$c $(DESTDIR)$(BASHCOMPDIR)/; done; true
	for c in completions/zsh/*; do [ -f "$$c" ] && \
	  install -m 644 $$c $(DESTDIR)$(ZSHCOMPDIR)/; done; true

uninstall:
	for p in $(PROGS); do \
	  rm -f $(DESTDIR)$(BINDIR)/$$p $(DESTDIR)$(SBINDIR)/$$p; done
	for m in $(MANPAGES); do s=$${m##*.}; \
	  rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; done
	for c in completions/bash/*; do rm -f $(DESTDIR)$(BASHCOMPDIR)/$${c##*/}; done
	for c in completions/zsh/*; do rm -f $(DESTDIR)$(ZSHCOMPDIR)/$${c##*/}; done

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(BROKERD_OBJ:.o=.d)
-include $(patsubst %,$(BUILD)/cmd/%.d,$(PROGS))
-include $(UNIT_SRC:%.c=$(BUILD)/%.d) $(BENCH_SRC:%.c=$(BUILD)/%.d)
