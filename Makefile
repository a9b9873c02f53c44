# athena_keys: PGXS build.  `make install`, then `make installcheck` against
# a running server (see README; test/run_tests.sh does both).

EXTENSION = athena_keys
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" athena_keys.control)
MODULE_big = athena_keys

include src/pure_sources.mk
BACKEND_SRCS = src/athena_keys.c src/enforcement_cache.c src/authenticate.c \
	src/learning.c src/auth_log.c src/async_log.c src/admin.c
OBJS = $(addprefix src/,$(PURE_SRCS:.c=.o)) $(BACKEND_SRCS:.c=.o)

DATA = $(wildcard sql/athena_keys--*.sql)

REGRESS := $(patsubst sql/%.sql,%,$(filter-out sql/athena_keys--%,$(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --outputdir=test/results

ISOLATION := $(patsubst test/isolation/specs/%.spec,%,$(wildcard test/isolation/specs/*.spec))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation/results --load-extension=athena_keys

TAP_TESTS := $(if $(wildcard test/t/*.pl),1,)

PG_CPPFLAGS = -Isrc -I$(shell $(PG_CONFIG) --includedir) -std=gnu11
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK = -lcrypto -lpq

EXTRA_CLEAN = test/results test/isolation/results test/tmp_check test/fuzz/build

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# prove_installcheck looks in t/; our TAP tests live in test/t.
PROVE_TESTS = test/t/*.pl
