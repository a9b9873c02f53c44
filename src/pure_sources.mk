# The pure modules of athena_keys: plain C that needs no PostgreSQL, so the
# unit tests and the fuzzers link exactly the files the extension is built
# from.  Included by the top Makefile, test/unit/Makefile and
# test/fuzz/Makefile; each names the files from its own directory with
# $(addprefix <dir>/,$(PURE_SRCS)).  A new pure module is one more name here.
PURE_SRCS = key_format.c key_digest.c rights_match.c ip_rules.c ip_policy.c \
	failure_reasons.c decision.c rate_limit_math.c
