# The key cache all backends share (src/shared_key_cache.c), on a preloaded
# primary and its streaming standby.  Sessions keep no key cache of their
# own (key_cache_size = 0) and report the first table access of each call
# (report_handovers), so a call served by the shared cache reports none:
# a key read once serves every later call of any session; a key too big
# for a slot, a session with shared_key_cache = off and a standby in
# recovery read the tables on every call, and still decide right; after
# kill -9 the cache starts empty and works again; a dropped and re-created
# extension never meets its predecessor's entries; after promotion the
# former standby shares keys too; a database made again with a dropped
# one's OID decides by its own rows; with max_prepared_transactions > 0
# or shared_key_cache_size = 0 there is no shared cache (a prepared
# revocation is in force from its COMMIT PREPARED on, after a restart too).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AthenaTest;
use IPC::Run;

my $primary = athena_node('shared', init => { allows_streaming => 1 }, preload => 1);
my ($key, $key_id) = create_key($primary, 'postgres', q{'shared'});
my ($big, $big_id) = create_key($primary, 'postgres', q{'three hundred rules'});
$primary->safe_psql('postgres', qq{
	SELECT athena_keys.athena_add_ip_rule('whitelist', ('172.' || 16 + g / 250 || '.' || g % 250 || '.0/24')::cidr, '$big_id')
	  FROM generate_series(0, 299) g});

my $session_setup = "SET athena_keys.key_cache_size = 0; SET athena_keys.log_decisions = none;
	SET athena_keys.last_used_interval = 86400; SET athena_keys.report_handovers = on;";

# calls($node, $key, $n[, $more_setup[, $db]]): in one new session, a first call
# (which reports the config read, a call reports only its first), then $n
# calls; returns "verdicts|reads": the verdicts of the $n calls and how
# many of them read the key from the tables.
sub calls
{
	my ($node, $k, $n, $more, $db) = @_;
	my $sql = $session_setup . ($more // '') .
	  "SELECT status FROM athena_keys.athena_authenticate('$k', NULL, '10.0.0.9', NULL);\n";
	$sql .= "SELECT status || ' ' || coalesce(reason, '-') FROM athena_keys.athena_authenticate('$k', NULL, '10.0.0.9', NULL);\n"
	  for 1 .. $n;
	my ($stdout, $stderr);
	$node->psql($db // 'postgres', $sql, stdout => \$stdout, stderr => \$stderr, on_error_die => 1);
	my @lines = split /\n/, $stdout;
	shift @lines;
	my $reads = () = $stderr =~ /the key is not cached/g;
	return join(',', @lines) . "|$reads";
}

# calls() in a first session reads the key once: warm it, then count.
calls($primary, $key, 1);
is(calls($primary, $key, 3), '200 -,200 -,200 -|0',
	'a key read by one session is served to later sessions from shared memory');
is(calls($primary, $key, 3, 'SET athena_keys.shared_key_cache = off;'), '200 -,200 -,200 -|3',
	'with shared_key_cache = off every call reads the key');
calls($primary, $big, 1);
is(calls($primary, $big, 3), '403 IP not allowed,403 IP not allowed,403 IP not allowed|3',
	'a key with 300 rules does not fit a slot: read on every call, decided the same');
$primary->safe_psql('postgres',
	"SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/24', '$big_id')");
is(calls($primary, $big, 2), '200 -,200 -|2', 'and sees its new rule at once');

# A change committed by one session is seen by the next call of another.
$primary->safe_psql('postgres', "SELECT athena_keys.athena_set_key_active('$key_id', false)");
is(calls($primary, $key, 2), '401 Inactive API key,401 Inactive API key|0',
	'a revocation is seen by the next call of a new session (the first call shared it again)');
$primary->safe_psql('postgres', "SELECT athena_keys.athena_set_key_active('$key_id', true)");
is(calls($primary, $key, 1), '200 -|0', 'and so is its return');

# kill -9: the server starts with its shared memory made again, empty.
$primary->kill9;
ok(restart_after_crash($primary), 'the server starts again after kill -9');
is(calls($primary, $key, 2), '200 -,200 -|0', 'and the shared cache serves keys again');

# A database dropped and created again with the same OID, from a template
# whose copy of the key is inactive: its calls never meet the entries of
# the database that had the OID before (the template copies keep every
# table's OID).
$primary->safe_psql('postgres', 'CREATE DATABASE shared_tmpl');
$primary->safe_psql('shared_tmpl', 'CREATE EXTENSION athena_keys');
my ($tkey, $tkey_id) = create_key($primary, 'shared_tmpl', q{'template key'});
$primary->safe_psql('postgres', 'CREATE DATABASE shared_tmpl_off TEMPLATE shared_tmpl');
$primary->safe_psql('shared_tmpl_off', "SELECT athena_keys.athena_set_key_active('$tkey_id', false)");
$primary->safe_psql('postgres', 'CREATE DATABASE shared_reused TEMPLATE shared_tmpl OID 70000');
is(calls($primary, $tkey, 2, '', 'shared_reused'), '200 -,200 -|0', 'a key shared in a database');
$primary->safe_psql('postgres', 'DROP DATABASE shared_reused');
$primary->safe_psql('postgres', 'CREATE DATABASE shared_reused TEMPLATE shared_tmpl_off OID 70000');
is(calls($primary, $tkey, 2, '', 'shared_reused'), '401 Inactive API key,401 Inactive API key|0',
	'a database made again with its OID decides with its own rows');

# DROP EXTENSION and CREATE EXTENSION, the same key imported again with a
# blacklist: never decided from the old extension's entry.
my ($salt, $hash, $public_id) = split /\|/, $primary->safe_psql('postgres',
	"SELECT key_salt || '|' || key_hash || '|' || public_id FROM athena_keys.api_key WHERE id = '$key_id'");
calls($primary, $key, 1);
$primary->safe_psql('postgres', qq{
	DROP EXTENSION athena_keys CASCADE;
	CREATE EXTENSION athena_keys;
	SELECT athena_keys.athena_add_ip_rule('blacklist', '10.0.0.0/8',
	       athena_keys.athena_import_key('$public_id', '$salt', '$hash', 'imported again'))});
is(calls($primary, $key, 2), '403 IP blocked,403 IP blocked|0',
	'a re-created extension decides with its own rows');

# The standby never uses the shared cache in recovery: its changes arrive
# through the WAL, without the epoch.
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('shared_standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);
is(calls($standby, $key, 3), '403 IP blocked,403 IP blocked,403 IP blocked|3',
	'a standby reads the key on every call');
$primary->safe_psql('postgres', "SELECT athena_keys.athena_remove_ip_rule('blacklist', '10.0.0.0/8',
	(SELECT id FROM athena_keys.api_key WHERE public_id = '$public_id'))");
$primary->wait_for_catchup($standby);
is(calls($standby, $key, 1), '200 -|1', 'and sees a change replayed from the primary');
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
calls($standby, $key, 1);
is(calls($standby, $key, 2), '200 -,200 -|0', 'once promoted it shares keys');
$standby->stop;

# A rule or rate limit committed while another backend reads the key it
# binds.  The writer's commit is visible, and advances the epoch, before it
# sends the invalidations; a reader that had found no key's rows in that
# table must not skip the table in the gap (its snapshot sees the row), nor
# publish the key without it in the new epoch.  gdb holds the writer at
# AtEOXact_Inval, right in the gap.
my $release = $PostgreSQL::Test::Utils::tmp_check . '/release_writer';
# Whatever ends the test, a writer held by gdb is let go.
END { if (defined $release && open(my $fh, ">", $release)) { close $fh; } }

# verdict_in_commit_gap($writer_sql, $key): a new session reads a fresh key
# (learning what the per-key tables hold in this epoch), a writer runs
# $writer_sql and is stopped by gdb between its commit and its
# invalidations, and the reader's call for $key is returned ("status
# reason"); undef when gdb cannot stop a backend here.
sub verdict_in_commit_gap
{
	my ($writer_sql, $k) = @_;
	my ($warm) = create_key($primary, 'postgres', q{'warms the reader'});
	# No last_used_at stamp is due: its invalidations would hide the gap.
	$primary->safe_psql('postgres', 'UPDATE athena_keys.api_key SET last_used_at = now()');
	my $reader = open_session($primary, 'postgres');
	$reader->query($session_setup);
	$reader->query("SELECT status FROM athena_keys.athena_authenticate('$warm', NULL, '10.0.0.9', NULL);");
	my $writer = open_session($primary, 'postgres');
	my $writer_pid = $writer->query('SELECT pg_backend_pid();');
	unlink $release;
	my ($gdb_out, $gdb_err) = ('', '');
	my $timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
	my $gdb = IPC::Run::start(
		[ 'gdb', '-nx', '-batch', '-p', $writer_pid,
		  '-ex', 'handle SIGUSR1 SIGUSR2 SIGINT SIGTERM SIGQUIT SIGPIPE SIGALRM nostop noprint pass',
		  '-ex', 'break AtEOXact_Inval', '-ex', 'echo __attached__\n', '-ex', 'continue',
		  '-ex', "shell timeout $PostgreSQL::Test::Utils::timeout_default sh -c "
		    . "'while [ ! -e \"$release\" ]; do sleep 0.1; done'",
		  '-ex', 'detach' ],
		'<', \undef, '>', \$gdb_out, '2>', \$gdb_err, $timer);
	if (!pump_until($gdb, $timer, \$gdb_out, qr/__attached__/) || $gdb_out !~ /Breakpoint 1 at/)
	{
		diag("gdb cannot stop a backend here (ptrace refused?): $gdb_err");
		$gdb->kill_kill;
		$writer->quit;
		$reader->quit;
		return undef;
	}
	$writer->send($writer_sql);
	pump_until($gdb, $timer, \$gdb_out, qr/Breakpoint 1, /)
	  or die "the writer did not stop at AtEOXact_Inval: $gdb_out $gdb_err";
	my $during = $reader->query("SELECT status || ' ' || coalesce(reason, '-') FROM athena_keys.athena_authenticate('$k', NULL, '10.0.0.9', NULL);");
	open(my $fh, '>', $release) or die "cannot create $release: $!";
	close $fh;
	$gdb->finish;
	$writer->result;
	$writer->quit;
	$reader->quit;
	return $during;
}

SKIP:
{
	skip 'gdb is not installed', 3 if system('command -v gdb >/dev/null 2>&1') != 0;
	is($primary->safe_psql('postgres', 'SELECT (SELECT count(*) FROM athena_keys.api_key_ip_rule) || \'/\' ||
		(SELECT count(*) FROM athena_keys.api_key_rate_limit WHERE api_key_id IS NOT NULL)'),
		'0/0', 'no key has rules or rate limits of its own');
	my ($ruled, $ruled_id) = create_key($primary, 'postgres', q{'gets a rule'});
	my $during = verdict_in_commit_gap(
		"SELECT athena_keys.athena_add_ip_rule('blacklist', '10.0.0.0/8', '$ruled_id');", $ruled);
	skip 'gdb cannot stop a backend here', 2 unless defined $during;
	is($during . '|' . calls($primary, $ruled, 2), '403 IP blocked|403 IP blocked,403 IP blocked|0',
		'a read between a rule\'s commit and its invalidations sees the rule, and shares the key with it');
	my ($limited, $limited_id) = create_key($primary, 'postgres', q{'gets a rate limit'});
	$during = verdict_in_commit_gap(
		"SELECT athena_keys.athena_set_key_rate_limit('$limited_id', 1, '1 hour', 1);", $limited);
	is($during . '|' . calls($primary, $limited, 2),
		'200 -|429 Rate limit exceeded,429 Rate limit exceeded|0',
		'and so does a read in the gap of a rate limit\'s commit');
}

# Where prepared transactions are allowed there is no shared cache: a
# COMMIT PREPARED, here after a restart, runs without the callback of the
# transaction that made the change.
$primary->append_conf('postgresql.conf', "max_prepared_transactions = 2\n");
$primary->restart;
ok($primary->log_contains('the shared key cache is off because max_prepared_transactions is 2'),
	'a server that allows prepared transactions says the shared cache is off');
is(calls($primary, $key, 2), '200 -,200 -|2', 'and every call reads the key');
$primary->safe_psql('postgres', "BEGIN; SELECT athena_keys.athena_set_key_active(id, false) FROM athena_keys.api_key
	WHERE public_id = '$public_id'; PREPARE TRANSACTION 'revoke'");
$primary->restart;
is(calls($primary, $key, 1), '200 -|1', 'a prepared revocation is not in force');
$primary->safe_psql('postgres', "COMMIT PREPARED 'revoke'");
is(calls($primary, $key, 1), '401 Inactive API key|1', 'and is from its COMMIT PREPARED on, after a restart too');

# shared_key_cache_size = 0: no shared cache; calls read, decide the same.
$primary->append_conf('postgresql.conf', "max_prepared_transactions = 0\nathena_keys.shared_key_cache_size = 0\n");
$primary->restart;
is(calls($primary, $key, 2), '401 Inactive API key,401 Inactive API key|2',
	'shared_key_cache_size = 0: every call reads the key');

done_testing();
