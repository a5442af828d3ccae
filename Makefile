# RBCS - balance/transfer service as an nginx dynamic module.
#
#   make run     install missing packages, build the module, start the local
#                stack (MariaDB, Redis, nginx) under var/run
#   make stop    stop the local stack
#   make test    build module + unit tests, start a disposable test stack
#                under var/test, run prove, tear the stack down
#   make build   build build/ngx_rbcs_module.so only
#   make coverage  the whole suite against a gcov-instrumented module and unit
#                tests (build/coverage/), then the gcovr report in
#                build/coverage/html/; fails under 80% line coverage.  Wipes
#                and restarts var/test like make test: not alongside it
#
# All the work is done by conf/stack.sh; see the top of that file for the
# environment variables (ports, TESTS=, PROVE_JOBS=, PROVE_ARGS=).

STACK := conf/stack.sh

.PHONY: all build unit deps run stop status test test-up test-down clean
.PHONY: coverage

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
#   eval "$(conf/stack.sh test-up)"; prove -v -I t/lib t/002-harness.t
test-up:
	@$(STACK) test-up

test-down:
	@$(STACK) test-down

clean:
	@$(STACK) clean

coverage:
	@$(STACK) coverage
