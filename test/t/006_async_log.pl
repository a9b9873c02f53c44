# log_durability = async with athena_keys preloaded: decisions are queued at
# commit and inserted in batches by a background worker.  Rows of committed
# calls all arrive, rolled-back calls log nothing, a clean shutdown loses
# nothing, a crash loses at most what was still queued, and learning calls
# are logged in their own transaction as before.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AthenaTest;

my $node = athena_node('async', preload => 1, conf => qq{
athena_keys.log_durability = 'async'
athena_keys.async_flush_interval = '100ms'
max_prepared_transactions = 2
});
my ($key) = create_key($node, 'postgres', q{'async'});

my $calls = sub { authenticate_calls($node, $key, @_) };
my $logged = sub { return logged_count($node, $_[0]); };

$calls->(200, 'first');
ok(wait_for_logged($node, 'first', 200), 'all 200 queued decisions are inserted by the writer');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'athena_keys log writer'"),
	'an idle log writer exits (so the database can be dropped)');
is( $node->safe_psql('postgres', q{
		SELECT bool_and(allowed AND authenticated AND status = 200 AND api_key_id IS NOT NULL
		                AND remote_addr = '10.0.0.1' AND failure_reason IS NULL)
		  FROM athena_keys.api_key_auth_log WHERE client_name = 'first'}),
	't', 'queued rows carry the decision');

# A queued row equals, column for column, the row the same decision writes
# durably, whatever the table's physical layout: the writer places columns
# by name, so a dropped column and an added one change nothing.
$node->safe_psql('postgres', q{
	ALTER TABLE athena_keys.api_key_auth_log ADD COLUMN pad text;
	ALTER TABLE athena_keys.api_key_auth_log DROP COLUMN pad;
	ALTER TABLE athena_keys.api_key_auth_log ADD COLUMN gateway text DEFAULT 'edge-1'});
my $rights_key = $node->safe_psql('postgres', q{
	SELECT athena_keys.athena_create_right('users.*');
	SELECT api_key FROM athena_keys.athena_create_key('layout', client_name => 'layout', rights => '{users.*}')});
my $requests = join(', ',
	"('$rights_key', 'layout', '10.0.0.7', '{users.read}')",
	"('$rights_key', 'layout', '10.0.0.7', '{users.read,admin.write}')",
	"('$rights_key', 'other', NULL, '{users.read}')",
	"('ath_unknownid1.0123456789abcdef0123', 'layout', '10.0.0.8', NULL)",
	"('not a key', NULL, '::1', '{}')");
for my $durability ('durable', 'async')
{
	$node->safe_psql('postgres', qq{
		SET athena_keys.log_durability = $durability;
		SELECT count(d) FROM (VALUES $requests) AS r(k, c, ip, rights),
		       athena_keys.athena_authenticate(r.k, r.c, r.ip::inet, r.rights::text[]) AS d});
}
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 10 FROM athena_keys.api_key_auth_log
	 WHERE client_name IN ('layout', 'other') OR remote_addr = '::1' OR api_key_public_id = 'unknownid1'}),
	'the writer inserts after the log table gained and lost columns');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM (
		  SELECT api_key_id, api_key_public_id, client_name, remote_addr, required_rights,
		         granted_rights, missing_rights, authenticated, authorized, enforced, allowed,
		         status, failure_reason, locked_in, gateway, count(*)
		    FROM athena_keys.api_key_auth_log
		   WHERE client_name IN ('layout', 'other') OR remote_addr = '::1'
		         OR api_key_public_id = 'unknownid1'
		   GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
		  HAVING count(*) = 2) AS pairs}),
	'5', 'every queued row matches its durable twin in every column');
$node->safe_psql('postgres', 'ALTER TABLE athena_keys.api_key_auth_log DROP COLUMN gateway');

$node->safe_psql('postgres', qq{
	BEGIN;
	SELECT athena_keys.athena_authenticate('$key', 'rolled-back', '10.0.0.1', NULL) FROM generate_series(1, 5);
	ROLLBACK;});
$calls->(1, 'marker');
wait_for_logged($node, 'marker', 1);
is($logged->('rolled-back'), '0', 'a rolled-back transaction queues nothing');

# A transaction that fails after its pre-commit work (here PREPARE refused
# for a transaction that used a temporary table; likewise a serialization
# failure found at COMMIT) rolls back: its decisions are not logged.
my ($refused_rc, $refused_out, $refused_err) = $node->psql('postgres', qq{
	BEGIN;
	CREATE TEMP TABLE athena_scratch (x int);
	SELECT athena_keys.athena_authenticate('$key', 'prepare-refused', '10.0.0.1', NULL) FROM generate_series(1, 4);
	PREPARE TRANSACTION 'athena_refused';});
like($refused_err, qr/temporary objects/, 'PREPARE is refused after the calls were made');
$calls->(1, 'marker-2');
wait_for_logged($node, 'marker-2', 1);
is($logged->('prepare-refused'), '0', 'a transaction that fails after pre-commit queues nothing');

# A prepared transaction's decisions were made: they are queued at PREPARE.
# The preparing session ends right after, so rows left pending in it would
# never be written.
$node->safe_psql('postgres', qq{
	BEGIN;
	SELECT athena_keys.athena_authenticate('$key', 'prepared', '10.0.0.1', NULL) FROM generate_series(1, 3);
	PREPARE TRANSACTION 'athena_prepared';});
$node->safe_psql('postgres', "COMMIT PREPARED 'athena_prepared'");
ok(wait_for_logged($node, 'prepared', 3), 'decisions of a prepared transaction are logged');

# A long flush interval keeps rows queued; a clean shutdown must drain them.
$node->append_conf('postgresql.conf', "athena_keys.async_flush_interval = '60s'\n");
$node->reload;
sleep 1;
$calls->(300, 'before-stop');
$node->stop('fast');
$node->start;
is($logged->('before-stop'), '300', 'a clean shutdown loses no queued row');

# A crash may lose what was still queued, but no more, and logging goes on.
$node->safe_psql('postgres', q{SELECT 1});
$calls->(1, 'wake');
sleep 1;
$calls->(100, 'before-crash');
$node->kill9;
ok(restart_after_crash($node), 'restarts after a crash');
my $survived = $logged->('before-crash');
ok($survived >= 0 && $survived <= 100, "a crash loses at most the queued rows ($survived of 100 kept)");
is($logged->('before-stop'), '300', 'rows inserted before the crash are kept');

$node->append_conf('postgresql.conf', "athena_keys.async_flush_interval = '100ms'\n");
$node->reload;
$calls->(10, 'after-crash');
ok(wait_for_logged($node, 'after-crash', 10), 'the writer comes back after the crash');

# A database whose writer was used can be dropped once it is idle.
$node->safe_psql('postgres', 'CREATE DATABASE scratch');
$node->safe_psql('scratch', 'CREATE EXTENSION athena_keys');
my ($scratch_key) = create_key($node, 'scratch', q{'s'});
$node->safe_psql('scratch', "SELECT athena_keys.athena_authenticate('$scratch_key', 'x', NULL, NULL)");
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'athena_keys log writer' AND datname = 'scratch'");
$node->safe_psql('postgres', 'DROP DATABASE scratch');
pass('a database used by the async writer can be dropped');

# Learning calls stay durable: logged in their own transaction at once.
$node->append_conf('postgresql.conf', "athena_keys.async_flush_interval = '60s'\n");
$node->reload;
sleep 1;
my ($learner) = create_key($node, 'postgres', q{'learner', virgin_mode => true, virgin_until_n_requests => 5});
$node->safe_psql('postgres',
	"SELECT athena_keys.athena_authenticate('$learner', 'learning', '10.1.1.1', NULL)");
is($logged->('learning'), '1', 'a learning call is logged with its learning writes, not queued');

# A log column of another type stops the writer with an error that names
# it, rather than a crash: the batch forms rows from the library's values
# without casts.  One queued row is a batch of one, which the one-row
# statement would have cast: refused all the same.
$node->append_conf('postgresql.conf', "athena_keys.async_flush_interval = '100ms'\n");
$node->reload;
$node->safe_psql('postgres', 'ALTER TABLE athena_keys.api_key_auth_log ALTER COLUMN locked_in TYPE text');
my $log_offset = -s $node->logfile;
$calls->(1, 'retyped');
ok($node->wait_for_log(qr/athena_keys\.api_key_auth_log column "locked_in" has type text, not boolean/,
		$log_offset), 'a log column of another type is reported by name and type');
is($logged->('retyped'), '0', 'no row is written while the column has another type');
unlike(slurp_file($node->logfile, $log_offset), qr/terminated by signal/,
	'no backend or writer crashed');
$node->safe_psql('postgres',
	'ALTER TABLE athena_keys.api_key_auth_log ALTER COLUMN locked_in TYPE boolean USING locked_in::boolean');
# Each probe's row is queued for a writer, which starts after its back-off.
# The probes are counted (a sequence is not rolled back), so that the test
# can wait for every one of their rows before it changes the log again.
$node->safe_psql('postgres', 'CREATE SEQUENCE retyped_back_probes');
ok($node->poll_query_until('postgres', q{
		SELECT (SELECT count(*) FROM athena_keys.athena_authenticate(NULL, 'retyped-back', NULL, NULL),
		                            nextval('retyped_back_probes')) > 0
		   AND EXISTS (SELECT FROM pg_stat_activity
		                WHERE backend_type = 'athena_keys log writer' AND datname = current_database())}),
	'with the type restored, a writer runs again');
ok($node->poll_query_until('postgres', q{
		SELECT count(*) = (SELECT last_value FROM retyped_back_probes)
		  FROM athena_keys.api_key_auth_log WHERE client_name = 'retyped-back'}),
	'and logs again: every probe is logged, none is left in the queue');

# A log table that lost a logged column stops the writer with an error
# that names the column, rather than rows written into the wrong columns.
$node->safe_psql('postgres', 'ALTER TABLE athena_keys.api_key_auth_log DROP COLUMN locked_in');
$log_offset = -s $node->logfile;
$calls->(2, 'no-column');
ok($node->wait_for_log(qr/athena_keys\.api_key_auth_log has no column "locked_in"/, $log_offset),
	'a missing log column is reported by name');
is($logged->('no-column'), '0', 'no row is written without the column');

$node->stop;
done_testing();
