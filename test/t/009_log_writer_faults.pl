# The async log writer under faults.  A crash of any backend costs one
# recovery, never a crash-restart loop, and queued decisions resume through
# a fresh writer; forced database drops and terminated writers never leak a
# queue slot; a read-only transaction's decisions are queued like a
# standby's, and their writer stamps last use.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use AthenaTest;

my $node = athena_node('writer_faults', preload => 1, conf => qq{
athena_keys.log_durability = 'async'
athena_keys.async_flush_interval = '100ms'
max_worker_processes = 16
restart_after_crash = on
});
my ($key, $key_id) = create_key($node, 'postgres', q{'faults'});

my $writer_of = sub {
	my ($db) = @_;
	return "SELECT count(*) = 1 FROM pg_stat_activity"
	  . " WHERE backend_type = 'athena_keys log writer' AND datname = '$db'";
};

# SIGTERM to a database's writer (what pg_terminate_backend, and DROP
# DATABASE ... WITH (FORCE) for a busy writer, send), and wait until it left.
my $terminate_writer = sub {
	my ($db) = @_;
	$node->safe_psql('postgres', qq{
		SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		 WHERE backend_type = 'athena_keys log writer' AND datname = '$db'});
	$node->poll_query_until('postgres', "SELECT NOT (" . $writer_of->($db) . ")")
	  or diag("the writer of $db did not exit");
};

########################################################################
# A read-only transaction on the primary: the decision is queued (never
# dropped), the writer inserts it and stamps last_used_at.
########################################################################
is( $node->safe_psql('postgres', qq{
		BEGIN READ ONLY;
		SELECT allowed, status FROM athena_keys.athena_authenticate('$key', 'read-only', '10.0.0.1', NULL);
		COMMIT;}),
	't|200', 'a read-only transaction gets its verdict');
ok(wait_for_logged($node, 'read-only', 1), 'its decision reaches the log through the writer');
ok( $node->poll_query_until('postgres',
		"SELECT last_used_at IS NOT NULL FROM athena_keys.api_key WHERE id = '$key_id'"),
	'and the writer stamps last_used_at for it');
is( $node->safe_psql('postgres', qq{
		SET default_transaction_read_only = on;
		SELECT allowed FROM athena_keys.athena_authenticate('garbage', 'read-only-2', '10.0.0.1', NULL);}),
	'f', 'default_transaction_read_only: a bad key is still refused');
ok(wait_for_logged($node, 'read-only-2', 1), 'and logged');

# default_transaction_read_only = on for the whole database (a freeze for
# maintenance): the database's writer, started under that setting, still
# inserts what the read-only calls queued.
$node->safe_psql('postgres', 'ALTER DATABASE postgres SET default_transaction_read_only = on');
$terminate_writer->('postgres');
is( $node->safe_psql('postgres',
		"SELECT allowed FROM athena_keys.athena_authenticate('garbage', 'read-only-db', '10.0.0.1', NULL)"),
	'f', 'a database with default_transaction_read_only = on: a bad key is refused');
ok(wait_for_logged($node, 'read-only-db', 1),
	'and its writer, started under that setting, logs the decision');
$node->safe_psql('postgres', q{
	SET default_transaction_read_only = off;
	ALTER DATABASE postgres RESET default_transaction_read_only;});

# One transaction that stays open over many calls (a pooled session in one
# long transaction) reserves at most a quarter of its database's queue:
# another session's read-only call still has room for its row, and every
# row of the long transaction is logged once it commits (those past its
# share inserted by the call itself).
my $hog = open_session($node, 'postgres');
$hog->query('BEGIN;');
is( $hog->query(qq{
		SELECT count(*) FILTER (WHERE (r).allowed)
		  FROM (SELECT athena_keys.athena_authenticate('$key', 'long-transaction', '10.0.0.1', NULL) AS r
		          FROM generate_series(1, 10000)) s;}),
	'10000', 'a long transaction decides 10,000 requests');
is( $node->safe_psql('postgres', qq{
		BEGIN READ ONLY;
		SELECT allowed, status, reason FROM athena_keys.athena_authenticate('$key', 'beside-long', '10.0.0.1', NULL);
		COMMIT;}),
	't|200|', 'while it stays open, a read-only call of another session is still logged, not refused');
ok(wait_for_logged($node, 'beside-long', 1), 'and its row reaches the log');
$hog->query('COMMIT;');
ok(wait_for_logged($node, 'long-transaction', 10000), 'the long transaction\'s 10,000 rows are logged');
$hog->quit;

########################################################################
# kill -9 of an unrelated backend while the writer runs: one crash cycle,
# then connections are accepted and async decisions are logged again.
########################################################################
my $dir = PostgreSQL::Test::Utils::tempdir;
write_script("$dir/auth.sql", "SELECT allowed FROM athena_keys.athena_authenticate('$key', 'traffic', '10.0.0.1', NULL);");
my ($out, $err) = ('', '');
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-T', '20', '-f', "$dir/auth.sql", $node->connstr('postgres') ],
	'>', \$out, '2>', \$err);
ok($node->poll_query_until('postgres', $writer_of->('postgres')), 'the writer runs under async traffic');

my $log_offset = -s $node->logfile;
my $victim = $node->background_psql('postgres');
my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
kill 'KILL', $victim_pid;

my $back = 0;
for (1 .. 300)
{
	my ($rc) = $node->psql('postgres', 'SELECT 1', on_error_stop => 0);
	if (defined $rc && $rc == 0) { $back = 1; last; }
	select(undef, undef, undef, 0.1);
}
ok($back, 'the server accepts connections again within 30 s of the crash');
$pgbench->kill_kill;
eval { $victim->quit; };

# Long enough for a restarted writer to crash again, several times over.
sleep 5;
my $log = slurp_file($node->logfile, $log_offset);
my $cycles = () = $log =~ /all server processes terminated; reinitializing/g;
is($cycles, 1, 'exactly one crash cycle');
unlike($log, qr/terminated by signal 11/, 'no segmentation fault');
is( $node->safe_psql('postgres',
		"SELECT allowed FROM athena_keys.athena_authenticate('$key', 'after-crash', '10.0.0.1', NULL)"),
	't', 'authentication works after recovery');
ok(wait_for_logged($node, 'after-crash', 1), 'queued decisions resume through a fresh writer');

########################################################################
# Nine databases whose writer is stopped by SIGTERM (pg_terminate_backend,
# as DROP DATABASE ... WITH (FORCE) does to a busy writer) and which are
# then dropped: the queue has 8 slots, and every one is given back, so the
# next database still gets a writer.
########################################################################
for my $i (1 .. 9)
{
	$node->safe_psql('postgres', "CREATE DATABASE drop$i");
	$node->safe_psql("drop$i", 'CREATE EXTENSION athena_keys');
	my ($k) = create_key($node, "drop$i", q{'d'});
	$node->safe_psql("drop$i", "SELECT athena_keys.athena_authenticate('$k', 'd', '10.0.0.1', NULL)");
	$node->poll_query_until('postgres', $writer_of->("drop$i"))
	  or diag("no writer appeared for drop$i");
	$terminate_writer->("drop$i");
	$node->safe_psql('postgres', "DROP DATABASE drop$i WITH (FORCE)");
}
$node->safe_psql('postgres', 'CREATE DATABASE survivor');
$node->safe_psql('survivor', 'CREATE EXTENSION athena_keys');
my ($k) = create_key($node, 'survivor', q{'s'});
$node->safe_psql('survivor', "SELECT athena_keys.athena_authenticate('$k', 'survivor', '10.0.0.1', NULL)");
ok($node->poll_query_until('postgres', $writer_of->('survivor')),
	'after nine terminated writers and dropped databases a new database still gets a log writer');
ok(wait_for_logged($node, 'survivor', 1, 'survivor'), 'and its decisions are logged by it');

# A terminated writer gives its slot back too; the next call starts another.
$terminate_writer->('survivor');
$node->safe_psql('survivor', "SELECT athena_keys.athena_authenticate('$k', 'survivor-2', '10.0.0.1', NULL)");
ok(wait_for_logged($node, 'survivor-2', 1, 'survivor'), 'a terminated writer is replaced by the next call');

$node->stop;
done_testing();
