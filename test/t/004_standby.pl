# A primary and a streaming standby: keys issued on the primary authenticate
# on the standby; a revocation and a lock-in replayed from the primary take
# effect in a standby session that already cached the key; a learning key
# on the standby follows the fail mode and never raises; decisions made on
# the standby reach the primary's log (shipped by the standby's log writer);
# after promotion everything, learning included, works.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AthenaTest;

my $primary = athena_node('primary', init => { allows_streaming => 1 }, preload => 1,
	conf => "athena_keys.async_flush_interval = '100ms'\n");
my ($key, $key_id) = create_key($primary, 'postgres', q{'replicated', rights => ARRAY['gateway.query']});
my ($learner, $learner_id) = create_key($primary, 'postgres',
	q{'learner', virgin_mode => true, virgin_until_n_requests => 2});

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
(my $primary_conninfo = $primary->connstr('postgres')) =~ s/'/''/g;
$standby->append_conf('postgresql.conf', "athena_keys.primary_conninfo = '$primary_conninfo'\n");
$standby->start;
$primary->wait_for_catchup($standby);

# One long-lived standby session, so that its caches are warm.
my $session = $standby->background_psql('postgres');
my $auth = sub {
	my ($k, $ip) = @_;
	my $rights = $k eq $key ? "ARRAY['gateway.query']" : 'NULL';
	return $session->query_safe(
		"SELECT concat(allowed, ',', status, ',', reason) FROM athena_keys.athena_authenticate('$k', NULL, '$ip', $rights)");
};

is($auth->($key, '10.0.0.1'), 't,200,', 'a key issued on the primary authenticates on the standby');
is($auth->($key, '10.0.0.1'), 't,200,', 'and again from the warm cache');
is($standby->safe_psql('postgres', 'SELECT athena_keys.athena_maintain_auth_log(7)'), '0',
	'scheduled maintenance on the standby has nothing to do and does not fail');

# Decisions made on the standby reach the primary's log, and stamp last use.
$session->query_safe(
	"SELECT athena_keys.athena_authenticate('$key', 'from-standby', '10.0.0.7', ARRAY['gateway.query']) FROM generate_series(1, 3)");
$session->query_safe(
	"SELECT athena_keys.athena_authenticate('ath_0000000000000000.' || repeat('0', 64), 'from-standby', '10.0.0.8', NULL)");
ok(wait_for_logged($primary, 'from-standby', 4), 'decisions made on the standby arrive in the primary log');
is( $primary->safe_psql('postgres', qq{
		SELECT string_agg(concat(allowed, ',', status, ',', failure_reason, ',', api_key_id = '$key_id',
		                         ',', remote_addr, ',', required_rights::text), ' ' ORDER BY remote_addr, allowed)
		  FROM athena_keys.api_key_auth_log WHERE client_name = 'from-standby'}),
	"t,200,,t,10.0.0.7,{gateway.query} t,200,,t,10.0.0.7,{gateway.query} t,200,,t,10.0.0.7,{gateway.query} f,401,Invalid API key,,10.0.0.8,",
	'with every column of the decision');
is( $primary->safe_psql('postgres',
		"SELECT last_used_at IS NOT NULL FROM athena_keys.api_key WHERE id = '$key_id'"),
	't', 'last_used_at is stamped on the primary for keys used on the standby');

# While the primary is down the standby still decides, and keeps the rows
# queued; they arrive once the primary is back, also when the primary's
# database makes transactions read-only by default (the shipping
# connection's own are not).
$primary->safe_psql('postgres', 'ALTER DATABASE postgres SET default_transaction_read_only = on');
$primary->stop('fast');
$session->query_safe(
	"SELECT athena_keys.athena_authenticate('$key', 'while-primary-down', '10.0.0.9', ARRAY['gateway.query']) FROM generate_series(1, 2)");
sleep 1;
$primary->start;
ok(wait_for_logged($primary, 'while-primary-down', 2),
	'decisions made while the primary was down arrive after it is back');
$primary->safe_psql('postgres', q{
	SET default_transaction_read_only = off;
	ALTER DATABASE postgres RESET default_transaction_read_only;});
$primary->wait_for_catchup($standby);

# A shipped row that a constraint of the primary's log refuses (an
# operator's CHECK on the client name's length) is skipped: it does not
# fail its batch, which the standby would send again for good, so that
# nothing it decides reached the log any more.
$primary->safe_psql('postgres', q{
	ALTER TABLE athena_keys.api_key_auth_log ADD CONSTRAINT short_client CHECK (octet_length(client_name) <= 30)});
$primary->wait_for_catchup($standby);
$session->query_safe(
	"SELECT athena_keys.athena_authenticate('$key', repeat('c', 40), '10.0.0.9', ARRAY['gateway.query'])");
$session->query_safe(
	"SELECT athena_keys.athena_authenticate('$key', 'after-refused-row', '10.0.0.9', ARRAY['gateway.query'])");
ok(wait_for_logged($primary, 'after-refused-row', 1),
	'a shipped row the primary log refuses does not hold up the standby decisions behind it');
$primary->safe_psql('postgres', 'ALTER TABLE athena_keys.api_key_auth_log DROP CONSTRAINT short_client');
$primary->wait_for_catchup($standby);

$primary->safe_psql('postgres', "SELECT athena_keys.athena_set_key_active('$key_id', false)");
$primary->wait_for_catchup($standby);
is($auth->($key, '10.0.0.1'), 'f,401,Inactive API key', 'a revocation is honoured on the standby right after replay');

$primary->safe_psql('postgres', "SELECT athena_keys.athena_set_key_active('$key_id', true)");
$primary->safe_psql('postgres', "SELECT athena_keys.athena_add_ip_rule('blacklist', '10.0.0.0/24')");
$primary->wait_for_catchup($standby);
is($auth->($key, '10.0.0.1'), 'f,403,IP blocked', 'a rule added on the primary applies on the standby after replay');

is($auth->($learner, '10.1.0.1'), 'f,503,API key policy unavailable',
	'a learning key on the standby is refused with policy unavailable under fail_closed');
$primary->safe_psql('postgres', "SELECT athena_keys.athena_set_fail_mode('fail_open')");
$primary->wait_for_catchup($standby);
is($auth->($learner, '10.1.0.1'), 't,200,API key policy unavailable',
	'and allowed without learning under fail_open');
is($standby->safe_psql('postgres', "SELECT virgin_request_count FROM athena_keys.api_key WHERE id = '$learner_id'"),
	'0', 'nothing was learned on the standby');

is($standby->safe_psql('postgres', "SELECT state FROM athena_keys.athena_key_status WHERE id = '$learner_id'"),
	'learning', 'athena_key_status reads on the standby');
like($standby->safe_psql('postgres', 'SELECT count(*) FROM athena_keys.athena_recent_failures'),
	qr/^\d+$/, 'athena_recent_failures reads on the standby');

# A standby session that reads keys on every call (key_cache_size = 0)
# leaves alone the per-key rule and rate limit tables while they hold no
# key's rows (src/key_rows.c, known per key cache generation): the first
# per-key rule and the first per-key limit made on the primary apply there
# right after replay.
my $cold = $standby->background_psql('postgres');
$cold->query_safe('SET athena_keys.key_cache_size = 0');
my $cold_auth = sub {
	my ($ip) = @_;
	return $cold->query_safe(
		"SELECT concat(allowed, ',', status, ',', reason) FROM athena_keys.athena_authenticate('$key', NULL, '$ip', ARRAY['gateway.query'])");
};
is($cold_auth->('10.5.0.1'), 't,200,', 'a standby session reading keys on every call: no per-key rule or limit yet');
$primary->safe_psql('postgres', "SELECT athena_keys.athena_add_ip_rule('blacklist', '10.5.0.0/24', '$key_id')");
$primary->wait_for_catchup($standby);
is($cold_auth->('10.5.0.1'), 'f,403,IP blocked', 'the first per-key rule made on the primary applies there after replay');
is($cold_auth->('10.6.0.1'), 't,200,', 'other addresses pass');
$primary->safe_psql('postgres', "SELECT athena_keys.athena_set_key_rate_limit('$key_id', 1, '1 day')");
$primary->wait_for_catchup($standby);
is($cold_auth->('10.6.0.1'), 't,200,', 'the first per-key limit made on the primary: one unit');
is($cold_auth->('10.6.0.1'), 'f,429,Rate limit exceeded', 'and no more, right after replay');

# The primary locks the learner in; the standby session sees it after replay.
$primary->safe_psql('postgres', "SELECT athena_keys.athena_authenticate('$learner', NULL, ('10.2.0.' || g)::inet, NULL) FROM generate_series(1, 2) g");
$primary->wait_for_catchup($standby);
is($auth->($learner, '10.2.0.1'), 't,200,', 'a lock-in made on the primary: learned address allowed on the standby');
is($auth->($learner, '10.2.0.99'), 'f,403,IP not allowed', 'other addresses refused on the standby');
is( $cold->query_safe(
		"SELECT concat(allowed, ',', status, ',', reason) FROM athena_keys.athena_authenticate('$learner', NULL, '10.2.0.99', NULL)"),
	'f,403,IP not allowed', 'and by the session that reads keys on every call');
$cold->quit;
$session->quit;

# Failover.
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'promotion failed';
my ($second) = create_key($standby, 'postgres',
	q{'after-failover', virgin_mode => true, virgin_until_n_requests => 2});
is( $standby->safe_psql('postgres',
		"SELECT string_agg(concat_ws(',', allowed, locked_in), ' ' ORDER BY g) FROM generate_series(1, 3) g,"
		  . " LATERAL athena_keys.athena_authenticate('$second', NULL, ('10.3.0.' || g)::inet, NULL)"),
	't,f t,t f,f', 'after promotion a new key learns and locks in');
is( $standby->safe_psql('postgres',
		"SELECT count(*) > 0 FROM athena_keys.api_key_auth_log"),
	't', 'and decisions are logged on the new primary');

$standby->stop;
$primary->stop;
done_testing();
