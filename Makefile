# RBCS - balance/transfer service as an nginx dynamic module.
#
#   make run     install missing packages, build the module, start the local
#                stack (MariaDB, Redis, nginx) under var/run
#   make stop    stop the local stack
#   make test    build module + unit tests, start a disposable test stack
#                under var/test, run prove, tear the stack down
#   make build   build build/ngx_rbcs_module.so only
#   make test-sanitize  the whole suite against nginx with the module compiled
#                in, both under AddressSanitizer and UBSan (build/sanitize/);
#                any sanitizer report fails the test that caused it.  Wipes
#                and restarts var/test like make test: not alongside it
#   make fuzz    the libFuzzer harnesses of the parsers (t/fuzz/), FUZZ_SECONDS
#                (60) each, FUZZ_JOBS (1) at once; make test runs them for a
#                few seconds each (t/250-fuzz.t)
#   make coverage  the whole suite against a gcov-instrumented module and unit
#                tests (build/coverage/), then the gcovr report in
#                build/coverage/html/; fails under 80% line coverage.  Wipes
#                and restarts var/test like make test: not alongside it
#
# All the work is done by conf/stack.sh; see the top of that file for the
# environment variables (ports, TESTS=, PROVE_JOBS=, PROVE_ARGS=).

STACK := conf/stack.sh

.PHONY: all build unit deps run stop status test test-up test-down clean
.PHONY: coverage test-sanitize fuzz

FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1

all: build

build:
	@$(STACK) build

unit:
	@$(STACK) unit

deps:
	@$(STACK) deps

run:
	@$(STACK) run

stop:
	@$(STACK) stop

status:
	@$(STACK) status

test:
	@$(STACK) test

# start/stop the test stack by hand, e.g. to run one test verbosely:
#   eval "$(conf/stack.sh test-up)"; prove -v -I t/lib t/010-accounts.t
test-up:
	@$(STACK) test-up

test-down:
	@$(STACK) test-down

clean:
	@$(STACK) clean

coverage:
	@$(STACK) coverage

test-sanitize:
	@$(STACK) test-sanitize

fuzz:
	@$(STACK) fuzz -t $(FUZZ_SECONDS) -j $(FUZZ_JOBS)
