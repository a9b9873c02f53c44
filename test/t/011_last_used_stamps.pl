# last_used_at stamps through the log writer (athena_keys preloaded): a
# due stamp is queued in shared memory when the call's transaction
# commits and the writer applies it in its next batch, even with nothing
# logged; a rolled-back call stamps nothing; a key deleted before the
# writer applies is harmless, and so is an extension dropped and created
# again (a stale stamp never lands in the new table); the interval still
# throttles; a clean shutdown applies what is pending; and where the queue
# cannot take a stamp (the table full, no worker for a writer) the call
# stamps itself, at once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AthenaTest;

my $node = athena_node('stamps', preload => 1, conf => qq{
athena_keys.async_flush_interval = '100ms'
athena_keys.log_decisions = none
max_worker_processes = 16
});

my $writer_running = "SELECT count(*) = 1 FROM pg_stat_activity"
  . " WHERE backend_type = 'athena_keys log writer' AND datname = 'postgres'";

# last_used_at of a key, '' for NULL
my $last_used = sub {
	my ($id, $db) = @_;
	return $node->safe_psql($db // 'postgres',
		"SELECT last_used_at FROM athena_keys.api_key WHERE id = '$id'");
};
my $stamped = sub {
	my ($id, $db) = @_;
	return $node->poll_query_until($db // 'postgres',
		"SELECT last_used_at IS NOT NULL FROM athena_keys.api_key WHERE id = '$id'");
};
my $call = "SELECT allowed FROM athena_keys.athena_authenticate(%s, NULL, NULL, NULL);";

########################################################################
# A due stamp is not an UPDATE in the call: the writer applies it, with
# the call's time.
########################################################################
my ($key, $key_id) = create_key($node, 'postgres', q{'queued'});
my ($in_call, $call_time) = split /\n/, $node->safe_psql('postgres', qq{
	BEGIN;
	SET LOCAL athena_keys.last_used_interval = 0;
	SELECT allowed FROM athena_keys.athena_authenticate('$key', NULL, NULL, NULL) \\gset
	SELECT last_used_at IS NULL FROM athena_keys.api_key WHERE id = '$key_id';
	SELECT now();
	COMMIT;});
is($in_call, 't', 'the call does not update the key row');
ok($stamped->($key_id), 'the writer stamps last_used_at after the commit');
is($last_used->($key_id), $call_time, 'with the time of the call');
ok($node->safe_psql('postgres', $writer_running) eq 't',
	'a writer runs for stamps alone (nothing is logged)');

########################################################################
# A rolled-back call stamps nothing; a later committed one lands.
########################################################################
my ($rolled, $rolled_id) = create_key($node, 'postgres', q{'rolled-back'});
my ($marker, $marker_id) = create_key($node, 'postgres', q{'marker'});
$node->safe_psql('postgres', qq{
	BEGIN;
	SELECT allowed FROM athena_keys.athena_authenticate('$rolled', NULL, NULL, NULL);
	ROLLBACK;});
$node->safe_psql('postgres', sprintf($call, "'$marker'"));
ok($stamped->($marker_id), 'a committed call after it is stamped');
is($last_used->($rolled_id), '', 'the rolled-back call stamped nothing');

########################################################################
# A key deleted before the writer applies its stamp: no error, the
# writer goes on.
########################################################################
my ($deleted, $deleted_id) = create_key($node, 'postgres', q{'deleted'});
my ($after, $after_id) = create_key($node, 'postgres', q{'after-delete'});
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', qq{
	BEGIN;
	SELECT allowed FROM athena_keys.athena_authenticate('$deleted', NULL, NULL, NULL);
	SELECT athena_keys.athena_delete_key('$deleted_id');
	COMMIT;});
$node->safe_psql('postgres', sprintf($call, "'$after'"));
ok($stamped->($after_id), 'the next stamp lands after a deleted key\'s');
is($node->safe_psql('postgres', "SELECT count(*) FROM athena_keys.api_key WHERE id = '$deleted_id'"),
	'0', 'the deleted key stays deleted');
unlike(slurp_file($node->logfile, $log_offset), qr/ERROR|stamping queued last_used_at/,
	'and the writer raised nothing');

########################################################################
# The interval still throttles: a second use within it stamps nothing.
########################################################################
my ($throttled, $throttled_id) = create_key($node, 'postgres', q{'throttled'});
my ($witness, $witness_id) = create_key($node, 'postgres', q{'witness'});
my $session = open_session($node, 'postgres');
is($session->query(sprintf($call, "'$throttled'")), 't', 'a first use');
ok($stamped->($throttled_id), 'is stamped');
my $first = $last_used->($throttled_id);
$session->query('SELECT pg_sleep(0.05);');
is($session->query(sprintf($call, "'$throttled'")), 't', 'a second use within the interval');
is($session->query(sprintf($call, "'$witness'")), 't', 'then a first use of another key');
ok($stamped->($witness_id), 'whose stamp lands');
is($last_used->($throttled_id), $first, 'the use within the interval was not stamped again');
$session->query('SET athena_keys.last_used_interval = 0;');
is($session->query(sprintf($call, "'$throttled'")), 't', 'a use with the interval at 0');
ok( $node->poll_query_until('postgres',
		"SELECT last_used_at > '$first' FROM athena_keys.api_key WHERE id = '$throttled_id'"),
	'once the interval has passed it is stamped again');
$session->quit;

########################################################################
# Another database, whose extension is dropped and created again while a
# stamp is pending: the stamp names the old table, so it never lands on
# the new table's row with the same id; the database's own writer stamps
# its new keys.
########################################################################
$node->safe_psql('postgres', 'CREATE DATABASE recreated');
$node->safe_psql('recreated', 'CREATE EXTENSION athena_keys');
my ($old, $old_id) = create_key($node, 'recreated', q{'old-table'});
$node->safe_psql('recreated', qq{
	BEGIN;
	SELECT allowed FROM athena_keys.athena_authenticate('$old', NULL, NULL, NULL);
	CREATE TEMP TABLE saved AS SELECT * FROM athena_keys.api_key WHERE id = '$old_id';
	DROP EXTENSION athena_keys CASCADE;
	CREATE EXTENSION athena_keys;
	INSERT INTO athena_keys.api_key SELECT * FROM saved;
	COMMIT;});
my ($new, $new_id) = create_key($node, 'recreated', q{'new-table'});
$node->safe_psql('recreated', sprintf($call, "'$new'"));
ok($stamped->($new_id, 'recreated'), 'a key of the new table is stamped by its database\'s writer');
is($last_used->($old_id, 'recreated'), '', 'the stamp queued for the old table did not land');

########################################################################
# The table full: with 8,300 distinct keys due in one transaction, those
# beyond its 8,192 entries are stamped by their calls at once; every
# stamp lands.
########################################################################
$node->safe_psql('postgres', q{
	CREATE TABLE bulk AS SELECT k.api_key, k.id
	  FROM generate_series(1, 8300) i, athena_keys.athena_create_key('bulk-' || i) k});
my $before_commit = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT count(*) FROM bulk b, athena_keys.athena_authenticate(b.api_key, NULL, NULL, NULL) a
	 WHERE a.allowed \gset
	SELECT count(*) FROM athena_keys.api_key k JOIN bulk USING (id) WHERE k.last_used_at IS NOT NULL;
	COMMIT;});
is($before_commit, 8300 - 8192, 'the calls beyond the table\'s size stamped in the call');
ok( $node->poll_query_until('postgres', q{
		SELECT count(*) = 8300 FROM athena_keys.api_key k JOIN bulk USING (id)
		 WHERE k.last_used_at IS NOT NULL}),
	'and the writer stamps the rest');

########################################################################
# A clean shutdown applies what is pending: with the writer waking once a
# minute, only its drain on SIGTERM can have stamped the key.
########################################################################
$node->append_conf('postgresql.conf', "athena_keys.async_flush_interval = '60s'");
$node->reload;
sleep 2;
my ($shut, $shut_id) = create_key($node, 'postgres', q{'clean-shutdown'});
$node->safe_psql('postgres', sprintf($call, "'$shut'"));
is($last_used->($shut_id), '', 'the stamp is pending');
$node->stop('fast');
$node->start;
isnt($last_used->($shut_id), '', 'a clean shutdown applied it');

########################################################################
# No worker for a writer (max_worker_processes taken by the logical
# replication launcher): the call stamps itself.
########################################################################
$node->append_conf('postgresql.conf', 'max_worker_processes = 1');
$node->restart;
ok($node->poll_query_until('postgres', "SELECT NOT ($writer_running)"), 'no writer after the restart');
my ($lone, $lone_id) = create_key($node, 'postgres', q{'no-writer'});
is( $node->safe_psql('postgres', qq{
		BEGIN;
		SELECT allowed FROM athena_keys.athena_authenticate('$lone', NULL, NULL, NULL) \\gset
		SELECT last_used_at IS NOT NULL FROM athena_keys.api_key WHERE id = '$lone_id';
		COMMIT;}),
	't', 'without a writer the call stamps last_used_at itself');
is($node->safe_psql('postgres', $writer_running), 'f', 'and no writer was started');

done_testing();
