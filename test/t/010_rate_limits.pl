# Rate limits with athena_keys preloaded (the installcheck server is not,
# so what needs the buckets runs here): the regress test and isolation
# specs of test/preloaded/ against a preloaded node, then what needs
# servers of its own: a restart starts every count again, a standby
# enforces counts of its own (and the primary's stay its own), and a full
# table answers "API key policy unavailable" under the fail mode with a
# WARNING, never allocates beyond the table, and reuses the entries of
# buckets that are full again.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AthenaTest;
use IPC::Run;

my $node = athena_node('limits', init => { allows_streaming => 1 }, preload => 1);

# The regress test and the isolation specs of test/preloaded, run by the
# same pg_regress drivers make installcheck uses, against this node; their
# results stay in tmp_check/preloaded for a look after a failure.
my $outdir = ($ENV{TESTDIR} // '.') . '/tmp_check/preloaded';
make_path("$outdir/regress", "$outdir/isolation");
my $bindir = $node->config_data('--bindir');
my $regress = $ENV{PG_REGRESS};
my $isolation_regress = dirname(dirname($regress)) . '/isolation/pg_isolation_regress';
my @connection = ('--host=' . $node->host, '--port=' . $node->port, "--bindir=$bindir");
my @specs = map { m{([^/]+)\.spec$} } glob('test/preloaded/specs/*.spec');
ok(@specs > 0, 'there are isolation specs to run');

my $rc = system($regress, @connection, '--inputdir=test/preloaded', "--outputdir=$outdir/regress",
	'--dbname=contrib_regression', 'rate_limits');
if ($rc != 0 && -f "$outdir/regress/regression.diffs")
{
	diag(slurp_file("$outdir/regress/regression.diffs"));
}
is($rc, 0, 'regress: test/preloaded/sql/rate_limits.sql');

$rc = system($isolation_regress, @connection, '--inputdir=test/preloaded',
	"--outputdir=$outdir/isolation", '--dbname=isolation_regression',
	'--load-extension=athena_keys', @specs);
if ($rc != 0 && -f "$outdir/isolation/regression.diffs")
{
	diag(slurp_file("$outdir/isolation/regression.diffs"));
}
is($rc, 0, 'isolation: ' . join(', ', @specs));

# verdict($node, $key): "allowed,status,reason"
sub verdict
{
	my ($n, $key) = @_;
	return $n->safe_psql('postgres',
		"SELECT concat_ws(',', allowed, status, reason) FROM athena_keys.athena_authenticate('$key', NULL, NULL, NULL)");
}

########################################################################
# A restart starts every count again; the limits themselves stay.
########################################################################
my ($key, $key_id) = create_key($node, 'postgres', q{'restarted'});
$node->safe_psql('postgres', "SELECT athena_keys.athena_set_key_rate_limit('$key_id', 1, '1 day')");
is(verdict($node, $key), 't,200', 'the day\'s one unit is taken');
is(verdict($node, $key), 'f,429,Rate limit exceeded', 'and the next request is refused');
$node->restart;
is(verdict($node, $key), 't,200', 'after a restart the count starts again');
is(verdict($node, $key), 'f,429,Rate limit exceeded', 'and is enforced again');

# A key read on every call (key_cache_size = 0: src/key_rows.c) brings
# all its limits: the hour's burst of 3 runs out first, and the units the
# day's limit lost meanwhile show once the hour's limit is lifted.
my ($two, $two_id) = create_key($node, 'postgres', q{'two-limits'});
$node->safe_psql('postgres', "SELECT athena_keys.athena_set_key_rate_limit('$two_id', 100, '1 day', 10);
	SELECT athena_keys.athena_set_key_rate_limit('$two_id', 5, '1 hour', 3)");
my $every_call = "SET athena_keys.key_cache_size = 0;
	SELECT string_agg(concat_ws(',', a.allowed, a.status, a.rate_limit, a.rate_remaining), ';' ORDER BY g)
	  FROM generate_series(1, %d) g,
	       LATERAL athena_keys.athena_authenticate('$two', CASE WHEN g < 0 THEN 'never' END, NULL, NULL) a";
is($node->safe_psql('postgres', sprintf($every_call, 4)), 't,200,5,2;t,200,5,1;t,200,5,0;f,429,5,0',
	'a key read on every call enforces its tightest limit');
$node->safe_psql('postgres', "SELECT athena_keys.athena_clear_key_rate_limit('$two_id', '1 hour')");
is($node->safe_psql('postgres', sprintf($every_call, 1)), 't,200,100,6',
	'and took its other limit\'s units too');

# So does a crash: shared memory is made again after any backend's crash
# (kill -9 of an unrelated one here).
my ($sleep_out, $sleep_err) = ('', '');
my $sleeper = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', 'SELECT pg_sleep(600)' ],
	'>', \$sleep_out, '2>', \$sleep_err);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)'")
  or die 'the sleeping backend did not start';
my $victim_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)'");
kill 'KILL', $victim_pid;
eval { $sleeper->finish; };
# The test cluster does not restart after a crash on its own (restart_after_crash is off).
ok(restart_after_crash($node), 'the server is back after the crash');
is(verdict($node, $key), 't,200', 'after a crash restart the count starts again too');
is(verdict($node, $key), 'f,429,Rate limit exceeded', 'and is enforced again');

# A re-created extension's limits start with full buckets, even where a
# limit of the same id and period was spent before: the bucket is named by
# the limit table's OID too, not by its row id alone.
$node->safe_psql('postgres', 'CREATE DATABASE recreated');
for my $round (1, 2)
{
	$node->safe_psql('recreated',
		'DROP EXTENSION IF EXISTS athena_keys CASCADE; CREATE EXTENSION athena_keys');
	my ($again, $again_id) = create_key($node, 'recreated', q{'again'});
	$node->safe_psql('recreated', "SELECT athena_keys.athena_set_key_rate_limit('$again_id', 1, '1 day')");
	is($node->safe_psql('recreated', 'SELECT id FROM athena_keys.api_key_rate_limit'), '1',
		"round $round: the limit's id is 1");
	my $call = "SELECT concat_ws(',', allowed, status, reason) "
	  . "FROM athena_keys.athena_authenticate('$again', NULL, NULL, NULL)";
	is($node->safe_psql('recreated', $call), 't,200', "round $round: the new key's first call passes");
	is($node->safe_psql('recreated', $call), 'f,429,Rate limit exceeded', "round $round: its second is refused");
}

########################################################################
# A standby enforces counts of its own.
########################################################################
my ($shared, $shared_id) = create_key($node, 'postgres', q{'replicated'});
$node->safe_psql('postgres', "SELECT athena_keys.athena_set_key_rate_limit('$shared_id', 2, '1 day')");
$node->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('limits_standby');
$standby->init_from_backup($node, 'base', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);

is(verdict($node, $shared), 't,200', 'primary: first unit');
is(verdict($node, $shared), 't,200', 'primary: second unit');
is(verdict($node, $shared), 'f,429,Rate limit exceeded', 'primary: exhausted');
is(verdict($standby, $shared), 't,200', 'standby: its own first unit, whatever the primary counted');
is(verdict($standby, $shared), 't,200', 'standby: its own second unit');
is(verdict($standby, $shared), 'f,429,Rate limit exceeded', 'standby: exhausted on its own count');
$node->safe_psql('postgres', "SELECT athena_keys.athena_set_key_rate_limit('$shared_id', 3, '1 day')");
$node->wait_for_catchup($standby);
is(verdict($standby, $shared), 't,200', 'standby: a changed limit replayed from the primary starts a new bucket');
is(verdict($node, $shared), 't,200', 'primary: and so does the primary\'s');
$standby->stop;

########################################################################
# A full table: 64 entries, all holding buckets that are not full again.
########################################################################
my $small = athena_node('limits_small', preload => 1, conf => "athena_keys.rate_limit_entries = 64\n");
$small->safe_psql('postgres', q{
	CREATE TABLE keys AS SELECT n, k.* FROM generate_series(1, 65) n,
		LATERAL athena_keys.athena_create_key('k' || n) k;
	SELECT athena_keys.athena_set_key_rate_limit(id, 1, '2 seconds') FROM keys WHERE n <= 64;
	SELECT athena_keys.athena_set_key_rate_limit(id, 1, '1 day') FROM keys WHERE n = 65;
});
is($small->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE a.allowed AND a.status = 200 AND a.reason IS NULL)
	  FROM keys k, athena_keys.athena_authenticate(k.api_key, NULL, NULL, NULL) a WHERE k.n <= 64}),
	'64', 'the first 64 limits each get an entry');
my ($stdout, $stderr);
$small->psql('postgres', q{
	SELECT concat_ws(',', a.allowed, a.status, a.reason, a.rate_limit)
	  FROM keys k, athena_keys.athena_authenticate(k.api_key, NULL, NULL, NULL) a WHERE k.n = 65},
	stdout => \$stdout, stderr => \$stderr);
is($stdout, 'f,503,API key policy unavailable', 'the 65th finds the table full: policy unavailable, fail closed');
like($stderr, qr/WARNING:  athena_keys rate limit table is full/, 'with a WARNING that says so');
$small->psql('postgres', q{
	SELECT athena_keys.athena_authenticate(k.api_key, NULL, NULL, NULL) FROM keys k WHERE k.n = 65},
	stderr => \$stderr);
unlike($stderr, qr/WARNING/, 'the WARNING is not repeated at once');
$small->safe_psql('postgres', q{SELECT athena_keys.athena_set_fail_mode('fail_open')});
is($small->safe_psql('postgres', q{
	SELECT concat_ws(',', a.allowed, a.status, a.reason)
	  FROM keys k, athena_keys.athena_authenticate(k.api_key, NULL, NULL, NULL) a WHERE k.n = 65}),
	't,200,API key policy unavailable', 'under fail_open it passes, with the finding');
$small->safe_psql('postgres', q{SELECT athena_keys.athena_set_fail_mode('fail_closed')});
is($small->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT a.reason, ',')
	  FROM keys k, athena_keys.athena_authenticate(k.api_key, NULL, NULL, NULL) a WHERE k.n <= 64}),
	'Rate limit exceeded', 'the buckets already placed keep counting');
sleep(3);
is($small->safe_psql('postgres', q{
	SELECT concat_ws(',', a.allowed, a.status, a.reason)
	  FROM keys k, athena_keys.athena_authenticate(k.api_key, NULL, NULL, NULL) a WHERE k.n = 65}),
	't,200', 'once buckets are full again their entries are reused');
is($small->safe_psql('postgres', q{
	SELECT concat_ws(',', a.allowed, a.status, a.reason)
	  FROM keys k, athena_keys.athena_authenticate(k.api_key, NULL, NULL, NULL) a WHERE k.n = 65}),
	'f,429,Rate limit exceeded', 'and the reused entry counts for its new limit');
ok($small->log_contains('athena_keys rate limit table is full'), 'the server log has the WARNING too');
$small->stop;

$node->stop;
done_testing();
