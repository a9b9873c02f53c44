# athena_keys: PGXS build.  `make install`, then `make installcheck` against
# a running server (see README; test/run_tests.sh does both).

EXTENSION = athena_keys
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" athena_keys.control)
MODULE_big = athena_keys

include src/pure_sources.mk
BACKEND_SRCS = src/athena_keys.c src/settings.c src/authenticate.c src/request_effects.c \
	src/result_row.c src/cache_invalidation.c src/config_cache.c src/key_cache.c src/shared_key_cache.c src/key_rows.c \
	src/key_last_used.c src/last_used_queue.c src/learning.c src/spi_plans.c src/ip_datums.c \
	src/log_row.c src/log_record.c src/log_insert.c src/log_batch_insert.c src/index_predicates.c src/log_queue.c src/log_shipping.c \
	src/log_writer.c src/log_routing.c src/key_material.c src/listings.c \
	src/rate_limit.c src/rate_limit_rows.c \
	src/gateway_verdict.c src/gateway_batch.c src/subtransaction.c
OBJS = $(addprefix src/,$(PURE_SRCS:.c=.o)) $(BACKEND_SRCS:.c=.o)

# The install script of the current version is built from the pieces in
# sql/install/ (the rule below); the 1.0 script and the upgrade scripts are
# kept as they are, so databases at any earlier version can update.
INSTALL_SQL = sql/athena_keys--$(EXTVERSION).sql
INSTALL_SQL_PIECES = $(sort $(wildcard sql/install/*.sql))
DATA = $(filter-out $(INSTALL_SQL),$(wildcard sql/athena_keys--*.sql))
DATA_built = $(INSTALL_SQL)

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

# The pieces joined in the order of their names, each introduced by its
# path so that an error in the built script leads back to its piece.
$(INSTALL_SQL): $(INSTALL_SQL_PIECES)
	awk 'FNR == 1 && NR > 1 { print ""; print "-- " FILENAME } { print }' $(INSTALL_SQL_PIECES) > $@.tmp
	mv $@.tmp $@
