# lock_timeout, statement_timeout and a cancel during a learning call: the
# call fails cleanly and leaves nothing behind (no count, no seen row, no
# log row), while an ordinary key is never held up.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AthenaTest;

my $node = athena_node('cancel');
my ($learner, $learner_id) = create_key($node, 'postgres',
	q{'learner', virgin_mode => true, virgin_until_n_requests => 100});
my ($plain) = create_key($node, 'postgres', q{'plain'});

# Warm the learning key: one committed observation.
$node->safe_psql('postgres',
	"SELECT athena_keys.athena_authenticate('$learner', NULL, '10.1.1.1', NULL)");

# Another session holds the key's row lock, as a slow learning call would.
my $holder = $node->background_psql('postgres');
$holder->query_safe("BEGIN; SELECT 1 FROM athena_keys.api_key WHERE id = '$learner_id' FOR UPDATE;");

sub state_of_learner
{
	return $node->safe_psql('postgres', qq{
		SELECT concat_ws(' ', k.virgin_request_count,
		  (SELECT count(*) FROM athena_keys.api_key_ip_seen s WHERE s.api_key_id = k.id),
		  (SELECT count(*) FROM athena_keys.api_key_auth_log l WHERE l.api_key_id = k.id))
		FROM athena_keys.api_key k WHERE k.id = '$learner_id'});
}
my $before = state_of_learner();
is($before, '1 1 1', 'one committed observation before the interrupted calls');

my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET lock_timeout = '200ms'; SELECT athena_keys.athena_authenticate('$learner', NULL, '10.2.2.2', NULL)");
isnt($ret, 0, 'learning call under lock_timeout fails');
like($stderr, qr/lock timeout/, 'with the lock timeout error');

($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET statement_timeout = '200ms'; SELECT athena_keys.athena_authenticate('$learner', NULL, '10.3.3.3', NULL)");
isnt($ret, 0, 'learning call under statement_timeout fails');
like($stderr, qr/statement timeout/, 'with the statement timeout error');

# A cancel from another session while the call waits.
my $waiter = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $waiter->query_safe('SELECT pg_backend_pid()');
$waiter->query_until(qr/started/, "\\echo started\nSELECT athena_keys.athena_authenticate('$learner', NULL, '10.4.4.4', NULL);\n");
$node->poll_query_until('postgres',
	"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid") or die 'waiter never blocked';
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
my $cancelled = $node->poll_query_until('postgres',
	"SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $pid AND state = 'active')");
ok($cancelled, 'cancelled learning call returns');
$waiter->quit;

is( $node->safe_psql('postgres',
		"SELECT allowed FROM athena_keys.athena_authenticate('$plain', NULL, '10.5.5.5', NULL)"),
	't',
	'an ordinary key is decided while the learning key is locked');

$holder->query_safe('COMMIT');
$holder->quit;
is(state_of_learner(), $before, 'interrupted calls left no count, seen row or log row');

is( $node->safe_psql('postgres',
		"SELECT allowed FROM athena_keys.athena_authenticate('$learner', NULL, '10.6.6.6', NULL)"),
	't',
	'learning goes on afterwards');
is(state_of_learner(), '2 2 2', 'and counts from where it was');

$node->stop;
done_testing();
