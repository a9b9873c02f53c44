# The async log writer survives its own errors and leaves on SIGTERM in
# bounded time.  A batch the log refuses for a while (a CHECK constraint)
# is retried by the same writer, with no further call to start another,
# and arrives once the fault is cleared; a fast shutdown in the writer's
# back-off still applies the queued rows; a fault that persists through
# the shutdown ends the drain with a warning instead of holding it up, and
# does not keep DROP DATABASE ... WITH (FORCE) from ending the writer; a
# cancelled writer goes on; under steady traffic a terminated writer
# leaves within its drain's deadline, the next call starts another, and
# no row is lost.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use Time::HiRes qw(usleep time);
use AthenaTest;

my $node = athena_node('writer_recovery', preload => 1, conf => qq{
athena_keys.log_durability = 'async'
athena_keys.async_flush_interval = '100ms'
max_worker_processes = 16
log_statement = none
});
my ($key) = create_key($node, 'postgres', q{'recovery'});

my $calls = sub { authenticate_calls($node, $key, @_) };
my $writer_pid = sub {
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity"
		  . " WHERE backend_type = 'athena_keys log writer' AND datname = 'postgres'");
};
# Poll for at most $seconds (not poll_query_until's three minutes): the
# point is that the rows come by themselves, soon.
my $logged_within = sub {
	my ($client, $n, $seconds) = @_;
	my $until = time + $seconds;
	while (time < $until)
	{
		return 1 if logged_count($node, $client) == $n;
		usleep(100_000);
	}
	return 0;
};
my $refuse = sub {
	my ($client) = @_;
	$node->safe_psql('postgres', qq{
		ALTER TABLE athena_keys.api_key_auth_log
		  ADD CONSTRAINT refuse_fault CHECK (client_name IS DISTINCT FROM '$client')});
};
my $accept = sub {
	$node->safe_psql('postgres',
		'ALTER TABLE athena_keys.api_key_auth_log DROP CONSTRAINT refuse_fault');
};
my $refused = qr/violates check constraint "refuse_fault"/;

########################################################################
# A transient error with no further traffic: the writer that failed
# retries by itself, and the queued rows arrive once the fault is gone.
########################################################################
$refuse->('transient');
my $offset = -s $node->logfile;
$calls->(5, 'transient');
ok($node->wait_for_log($refused, $offset), 'the writer fails to insert the refused batch');
ok( $node->wait_for_log(
		qr/athena_keys log writer failed \(1 time in a row\), retrying in \d+ ms; \d+ bytes of queued decisions are kept/,
		$offset),
	'it says it keeps the rows and will retry');
my $failed_pid = $writer_pid->();
isnt($failed_pid, '', 'the failed writer is still running');
is(logged_count($node, 'transient'), '0', 'nothing was written while the log refused the rows');
# No call from here on: nothing but the failed writer can insert the rows.
$accept->();
ok($logged_within->('transient', 5, 15),
	'once the fault is cleared the queued rows arrive by themselves, each once');
ok($node->wait_for_log(qr/athena_keys log writer works again after \d+ failed attempts?/, $offset),
	'the writer says it works again');
unlike(slurp_file($node->logfile, $offset), qr/terminated by signal|exited with exit code 1/,
	'no process crashed or exited on the error');

########################################################################
# A fast shutdown while the writer backs off after errors, the fault
# cleared and no call since: the drain at SIGTERM applies the rows.
########################################################################
$refuse->('shutdown');
$offset = -s $node->logfile;
$calls->(7, 'shutdown');
# Three failures: the writer now waits four seconds before its next try.
ok( $node->wait_for_log(qr/athena_keys log writer failed \(3 times in a row\), retrying in/, $offset),
	'the writer failed three times in a row');
$accept->();
my $stop_start = time;
$node->stop('fast');
my $stop_seconds = time - $stop_start;
cmp_ok($stop_seconds, '<', 4, 'the shutdown does not wait for the back-off');
$node->start;
is(logged_count($node, 'shutdown'), '7', 'a clean shutdown applied the rows queued behind the errors');

########################################################################
# A fault that persists through a fast shutdown: the drain gives up
# after its tries, says what it leaves, and the shutdown completes.
########################################################################
$refuse->('persistent');
$offset = -s $node->logfile;
$calls->(3, 'persistent');
ok($node->wait_for_log($refused, $offset), 'the writer fails on the persistent fault');
$stop_start = time;
$node->stop('fast');
$stop_seconds = time - $stop_start;
cmp_ok($stop_seconds, '<', 10, 'a persistent error does not hold up the shutdown');
like( slurp_file($node->logfile, $offset),
	qr/athena_keys log writer exits with \d+ bytes of queued decisions not inserted/,
	'the writer says how much it leaves queued');
$node->start;
$accept->();

# Nor does it keep its database from being dropped WITH (FORCE), which
# waits five seconds for the database's processes to leave.
$node->safe_psql('postgres', 'CREATE DATABASE doomed');
$node->safe_psql('doomed', 'CREATE EXTENSION athena_keys');
my ($doomed_key) = create_key($node, 'doomed', q{'doomed'});
$node->safe_psql('doomed', q{
	ALTER TABLE athena_keys.api_key_auth_log
	  ADD CONSTRAINT refuse_fault CHECK (client_name IS DISTINCT FROM 'doomed')});
$offset = -s $node->logfile;
$node->safe_psql('doomed',
	"SELECT athena_keys.athena_authenticate('$doomed_key', 'doomed', '10.0.0.1', NULL)");
ok($node->wait_for_log(qr/athena_keys log writer failed \(1 time in a row\)/, $offset),
	'the writer of a database to be dropped fails and retries');
my ($drop_rc, $drop_out, $drop_err) = $node->psql('postgres', 'DROP DATABASE doomed WITH (FORCE)');
is($drop_rc, 0, 'DROP DATABASE ... WITH (FORCE) ends the retrying writer') or diag($drop_err);

########################################################################
# pg_terminate_backend of the writer under steady async traffic (1,000
# calls a second, so rows arrive at every round of its drain): it leaves
# within its drain's deadline although rows keep arriving, a call starts
# the next writer, and every call's row is in the log.
########################################################################
my $dir = PostgreSQL::Test::Utils::tempdir;
write_script("$dir/auth.sql",
	"SELECT allowed FROM athena_keys.athena_authenticate('$key', 'steady', '10.0.0.1', NULL);");
my ($out, $err) = ('', '');
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-R', '1000', '-T', '20', '-f', "$dir/auth.sql", $node->connstr('postgres') ],
	'>', \$out, '2>', \$err);
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'athena_keys log writer'"),
	'a writer runs under steady traffic');
sleep 2;
my $old_pid = $writer_pid->();

# pg_cancel_backend of the writer is an error like any other: the same
# writer reports it and goes on after its back-off.
$offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_cancel_backend($old_pid)");
ok($node->wait_for_log(qr/athena_keys log writer failed \(1 time in a row\)/, $offset),
	'a cancelled writer reports the cancel as a failure');
ok($node->wait_for_log(qr/athena_keys log writer works again after 1 failed attempt/, $offset),
	'and goes on after its back-off');
is($writer_pid->(), $old_pid, 'the same writer, not a new one');

$offset = -s $node->logfile;
my $terminated_at = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old_pid)");
my $replaced = 0;
while (time < $terminated_at + 12)
{
	my $pid = $writer_pid->();
	if ($pid ne '' && $pid ne $old_pid) { $replaced = 1; last; }
	usleep(100_000);
}
my $replaced_after = time - $terminated_at;
ok($replaced, 'the terminated writer is replaced while the traffic goes on');
cmp_ok($replaced_after, '<', 10, 'within ten seconds of pg_terminate_backend');
ok($pgbench->pumpable, 'the traffic was still running then');
$pgbench->finish;
my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
ok(defined $processed && $processed > 0, 'pgbench made calls')
  or diag("pgbench: $out $err");
ok(wait_for_logged($node, 'steady', $processed // -1), "every one of the $processed calls is logged, once");
unlike(slurp_file($node->logfile, $offset), qr/terminated by signal/, 'no process crashed');

$node->stop;
done_testing();
