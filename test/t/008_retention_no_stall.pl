# Retention never stalls decisions (1.3, issue 12 item 5).  While a session
# holds a read on the auth log (an open triage query, a report, pg_dump),
# athena_prune_auth_log cannot drop a partition; it must neither make the
# decisions that arrive meanwhile wait (each runs with a 1 s statement
# timeout, like a sidecar's) nor hang: it gives up after its budget with a
# WARNING that the next run retries.  Once the reader is gone, the same
# call drops the partition.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use AthenaTest;

my $node = athena_node('retention');
$node->safe_psql('postgres', q{
	SELECT athena_keys._create_auth_log_partition(((now() AT TIME ZONE 'UTC') - interval '40 days')::date);
	INSERT INTO athena_keys.api_key_auth_log (created_at, authenticated, authorized, enforced, allowed, status)
	VALUES (now() - interval '40 days', false, false, true, false, 401);
});
my $old_partition = $node->safe_psql('postgres', q{
	SELECT athena_keys._auth_log_partition_name(((now() AT TIME ZONE 'UTC') - interval '40 days')::date)});

# The reader: a transaction that has read the log and stays open.
my $reader = open_session($node, 'postgres');
$reader->query('BEGIN;');
is($reader->query('SELECT count(*) FROM athena_keys.api_key_auth_log;'), '1', 'the reader has read the log');

# Prune starts in its own session and keeps trying while decisions arrive.
my $pruner = open_session($node, 'postgres');
my $prune_started = time;
$pruner->send(q{SELECT athena_keys.athena_prune_auth_log('30 days');});

my $calls = 60;
my $script = "SET statement_timeout = '1s';\n"
  . join('', map {
	"SELECT status FROM athena_keys.athena_authenticate(NULL, 'no-stall', NULL, NULL); SELECT pg_sleep(0.05);\n"
  } 1 .. $calls);
my ($ret, $stdout, $stderr) = $node->psql('postgres', $script, on_error_stop => 0);
is($stderr, '', 'no decision failed or timed out while prune ran');
is(scalar(grep { $_ eq '401' } split /\n/, $stdout), $calls, "all $calls decisions were answered");
is($node->safe_psql('postgres', q{SET statement_timeout = '5s'; SELECT count(*) FROM athena_keys.api_key_auth_log WHERE client_name = 'no-stall'}),
	$calls, 'and logged');

my $pruned = $pruner->result;
my $prune_seconds = time - $prune_started;
is($pruned, '0', 'prune dropped nothing while the reader held the log');
like($pruner->{err}, qr/WARNING:  auth log partitions not dropped: the log is in use/,
	'prune reports that it could not drop');
like($pruner->{err}, qr/HINT:  Nothing to do: the next athena_prune_auth_log run retries/, 'and that it will retry');
cmp_ok($prune_seconds, '<', 30, 'prune gave up within its budget instead of waiting for the reader');

$reader->query('COMMIT;');
is($pruner->query(q{SELECT athena_keys.athena_prune_auth_log('30 days');}), '1',
	'once the reader committed, prune drops the partition');
is($node->safe_psql('postgres', "SELECT to_regclass('athena_keys.$old_partition') IS NULL"), 't',
	'the expired partition is gone');

$reader->quit;
$pruner->quit;
$node->stop;
done_testing();
