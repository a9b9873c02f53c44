# Revocation reaches the caches of a logical-replication subscriber (1.3,
# issue 12 item 10).  Apply runs under session_replication_role = replica,
# where only ENABLE ALWAYS row triggers (and TRUNCATE statement triggers)
# fire; the invalidation triggers are such triggers now.  A subscriber
# backend that has a key cached refuses it once the publisher's
# deactivation (or rights revocation) has been applied, and so does one
# deciding from the cache all backends share (the subscriber preloads
# athena_keys; the apply worker's commits advance its epoch).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AthenaTest;

my $publisher = athena_node('publisher', init => { allows_streaming => 'logical' });
my $subscriber = athena_node('subscriber', preload => 1);
my ($key, $key_id) = create_key($publisher, 'postgres', q{'replicated', rights => ARRAY['gateway.read']});
$publisher->safe_psql('postgres',
	'CREATE PUBLICATION athena_pub FOR TABLE athena_keys.api_key, athena_keys.api_key_right_grant');
(my $publisher_connstr = $publisher->connstr('postgres')) =~ s/'/''/g;
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION athena_sub CONNECTION '$publisher_connstr' PUBLICATION athena_pub");
$subscriber->wait_for_subscription_sync($publisher, 'athena_sub');

my $auth = qq{SELECT concat_ws(',', allowed, status, reason)
	FROM athena_keys.athena_authenticate('$key', NULL, '10.0.0.1', ARRAY['gateway.read']);};

# One subscriber backend that keeps its caches for the whole test.
my $session = open_session($subscriber, 'postgres');
my $pid = $session->query('SELECT pg_backend_pid();');
is($session->query($auth), 't,200', 'the replicated key authenticates on the subscriber');
is($session->query($auth), 't,200', 'and again, from the backend\'s cache');

# One that keeps no key cache of its own: it decides from the cache all
# backends share (the subscriber preloads athena_keys), which the apply
# worker's commits must make stale too.
my $shared = open_session($subscriber, 'postgres');
$shared->query('SET athena_keys.key_cache_size = 0;');
is($shared->query($auth), 't,200', 'a session without a key cache of its own authenticates too');

$publisher->safe_psql('postgres', "SELECT athena_keys.athena_set_key_active('$key_id', false)");
$publisher->wait_for_catchup('athena_sub');
is($subscriber->safe_psql('postgres', "SELECT is_active FROM athena_keys.api_key WHERE id = '$key_id'"),
	'f', 'the deactivation was applied on the subscriber');
is($session->query($auth), 'f,401,Inactive API key',
	'the subscriber backend that had the key cached refuses it after the deactivation is applied');
is($shared->query($auth), 'f,401,Inactive API key', 'and so does the shared cache');

$publisher->safe_psql('postgres', "SELECT athena_keys.athena_set_key_active('$key_id', true)");
$publisher->wait_for_catchup('athena_sub');
is($session->query($auth), 't,200', 'reactivation is applied too');
is($shared->query($auth), 't,200', 'to the shared cache too');
$publisher->safe_psql('postgres', "SELECT athena_keys.athena_revoke_rights('$key_id', ARRAY['gateway.read'])");
$publisher->wait_for_catchup('athena_sub');
is($session->query($auth), 'f,403,Insufficient API key rights',
	'a rights revocation applied from the publisher reaches the cached key');
is($shared->query($auth), 'f,403,Insufficient API key rights', 'and the shared one');
is($session->query('SELECT pg_backend_pid();'), $pid, 'all in one subscriber backend');

$session->quit;
$shared->quit;
$subscriber->stop;
$publisher->stop;
done_testing();
