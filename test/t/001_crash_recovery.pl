# kill -9 of the postmaster while pgbench drives authentication (ordinary
# keys and learning keys near their thresholds) and admin changes: after
# restart every acknowledged key, grant, rule and durable log row is there,
# no learning key is half locked in, and learning counts match what
# committed.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use AthenaTest;

my $node = athena_node('crash', conf => "max_connections = 40\n");

my ($plain) = create_key($node, 'postgres', q{'plain', rights => ARRAY['gateway.query']});
my @learners;
for my $i (1 .. 4)
{
	push @learners, (create_key($node, 'postgres',
		"'learner$i', virgin_mode => true,"
		  . " virgin_until_n_requests => " . (40 + 30 * $i) . ", max_whitelist_ips => 25"))[0];
}

my $dir = PostgreSQL::Test::Utils::tempdir;
my @scripts;
push @scripts, '-f', write_script("$dir/auth.sql",
	"SELECT allowed FROM athena_keys.athena_authenticate('$plain', NULL, '10.0.0.1', ARRAY['gateway.query']);")
  . '@4';
for my $i (0 .. $#learners)
{
	push @scripts, '-f', write_script("$dir/learn$i.sql", '\set n random(1, 40)',
		"SELECT allowed FROM athena_keys.athena_authenticate('$learners[$i]', NULL, ('10.9.$i.' || :n)::inet, NULL);")
	  . '@2';
}
push @scripts, '-f', write_script("$dir/admin.sql", '\set n random(1, 250)',
	"SELECT athena_keys.athena_add_ip_rule('blacklist', ('172.16.' || :n || '.0/24')::cidr, label => 'churn');")
  . '@1';

my ($out, $err) = ('', '');
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '6', '-j', '2', '-T', '120', @scripts, $node->connstr('postgres') ],
	'>', \$out, '2>', \$err);

# Meanwhile, admin changes and authentications whose commit we see
# acknowledged, one at a time.
my (@acked_keys, $acked_calls);
$acked_calls = 0;
for my $i (1 .. 25)
{
	my $id = $node->safe_psql('postgres',
		"SELECT id FROM athena_keys.athena_create_key('acked$i', rights => ARRAY['gateway.read'],"
		  . " ip_blacklist => ARRAY['192.0.2.$i/32']::cidr[])");
	push @acked_keys, $id;
	$node->safe_psql('postgres',
		"SELECT athena_keys.athena_authenticate('$plain', 'ack-$i', '10.0.0.2', ARRAY['gateway.query'])");
	$acked_calls++;
}

$node->kill9;
$pgbench->kill_kill;

ok(restart_after_crash($node), 'server restarts after kill -9 of the postmaster');

my $ids = join(',', map { "'$_'" } @acked_keys);
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM athena_keys.api_key WHERE id IN ($ids)"),
	scalar(@acked_keys),
	'every acknowledged key survived');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM athena_keys.api_key_right_grant WHERE api_key_id IN ($ids)"),
	scalar(@acked_keys),
	'every acknowledged grant survived');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM athena_keys.api_key_ip_rule WHERE api_key_id IN ($ids) AND list = 'blacklist'"),
	scalar(@acked_keys),
	'every acknowledged per-key rule survived');
is( $node->safe_psql('postgres',
		"SELECT count(DISTINCT client_name) FROM athena_keys.api_key_auth_log WHERE client_name LIKE 'ack-%'"),
	$acked_calls,
	'every acknowledged decision has its durable log row');

for my $i (1 .. 4)
{
	my $state = $node->safe_psql('postgres', qq{
		WITH k AS (SELECT * FROM athena_keys.api_key WHERE name = 'learner$i'),
		     lock_row AS (SELECT min(l.id) AS id FROM athena_keys.api_key_auth_log l, k
		                   WHERE l.api_key_id = k.id AND l.locked_in)
		SELECT concat_ws(' ',
		  k.virgin_request_count = coalesce((SELECT sum(hit_count) FROM athena_keys.api_key_ip_seen s WHERE s.api_key_id = k.id), 0),
		  k.virgin_resolved = EXISTS (SELECT 1 FROM athena_keys.api_key_ip_rule r WHERE r.api_key_id = k.id AND r.from_lock_in),
		  (SELECT count(*) FROM athena_keys.api_key_ip_rule r WHERE r.api_key_id = k.id AND r.list = 'whitelist') <= k.max_whitelist_ips,
		  (SELECT count(*) FROM athena_keys.api_key_ip_seen s WHERE s.api_key_id = k.id AND s.locked_in)
		    = (SELECT count(*) FROM athena_keys.api_key_ip_rule r WHERE r.api_key_id = k.id AND r.from_lock_in),
		  k.virgin_request_count = (SELECT count(*) FROM athena_keys.api_key_auth_log l
		                             WHERE l.api_key_id = k.id AND l.allowed
		                               AND (NOT k.virgin_resolved OR l.id <= (SELECT id FROM lock_row))),
		  k.virgin_request_count > 0)
		FROM k});
	is($state, 't t t t t t',
		"learner$i: exact count, whole lock-in or none, cap kept, log rows match the count");
}

is( $node->safe_psql('postgres',
		"SELECT allowed FROM athena_keys.athena_authenticate('$plain', NULL, '10.0.0.1', ARRAY['gateway.query'])"),
	't',
	'authentication works after recovery');

$node->stop;
done_testing();
