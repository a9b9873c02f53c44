# Shared set-up of the TAP tests in test/t: a node with athena_keys,
# issued keys, pgbench scripts, the crash-restart loop and the auth log
# counts that most tests repeat.  A test loads it (and AthenaSession, the
# open psql session it hands out) with
#   use FindBin;
#   use lib $FindBin::RealBin;
#   use AthenaTest;
# rather than through prove's -I: PGXS's prove_installcheck passes only
# the source root (-I $(srcdir)) and PROVE_FLAGS given on the command line
# would replace one set in the Makefile, while FindBin works under every
# runner (make installcheck, a bare prove, the other majors' lanes).
package AthenaTest;
use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use AthenaSession;

our @EXPORT = qw(athena_node create_key open_session write_script
  restart_after_crash authenticate_calls logged_count wait_for_logged);

# athena_node($name, %options): a started node with CREATE EXTENSION
# athena_keys in its postgres database.  Options: init => { ... } (for
# init), preload => 1 (athena_keys in shared_preload_libraries), conf =>
# "more postgresql.conf lines", extension => 0 (no CREATE EXTENSION).
sub athena_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opt{init} // {} });
	my $conf = '';
	$conf .= "shared_preload_libraries = 'athena_keys'\n" if $opt{preload};
	$conf .= $opt{conf} if defined $opt{conf};
	$node->append_conf('postgresql.conf', $conf) if $conf ne '';
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION athena_keys')
	  if $opt{extension} // 1;
	return $node;
}

# create_key($node, $db, $arguments): issue a key with
# athena_create_key($arguments); returns (plaintext key, id).
sub create_key
{
	my ($node, $db, $arguments) = @_;
	return split /\|/, $node->safe_psql($db,
		"SELECT api_key || '|' || id FROM athena_keys.athena_create_key($arguments)");
}

# open_session($node, $db): an AthenaSession (one psql, one backend, kept
# across statements) on the node's database.
sub open_session
{
	my ($node, $db) = @_;
	return AthenaSession->new($node, $db);
}

# write_script($path, @lines): a pgbench script, one statement a line.
sub write_script
{
	my ($path, @lines) = @_;
	open(my $fh, '>', $path) or die "cannot write $path: $!";
	print $fh map { "$_\n" } @lines;
	close $fh;
	return $path;
}

# restart_after_crash($node): start the node again after kill -9, retrying
# for up to 60 s; true once it runs.  The old children exit once they
# notice the postmaster is gone; until then a new postmaster refuses to
# start.  A failed start may record the stale pid file's pid, so it is
# forgotten before each try.
sub restart_after_crash
{
	my ($node) = @_;
	for (1 .. 60)
	{
		$node->{_pid} = undef;
		return 1 if $node->start(fail_ok => 1);
		sleep 1;
	}
	return 0;
}

# authenticate_calls($node, $key, $n, $client): $n calls of athena_authenticate
# for a key from 10.0.0.1 in one statement of the postgres database.
sub authenticate_calls
{
	my ($node, $key, $n, $client) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(a) FROM (SELECT athena_keys.athena_authenticate('$key', '$client', '10.0.0.1', NULL) AS a"
		  . " FROM generate_series(1, $n)) AS calls");
}

# logged_count($node, $client[, $db]): rows of the auth log for a client.
sub logged_count
{
	my ($node, $client, $db) = @_;
	return $node->safe_psql($db // 'postgres',
		"SELECT count(*) FROM athena_keys.api_key_auth_log WHERE client_name = '$client'");
}

# wait_for_logged($node, $client, $n[, $db]): poll until the auth log holds
# exactly $n rows for a client; false when it never does.
sub wait_for_logged
{
	my ($node, $client, $n, $db) = @_;
	return $node->poll_query_until($db // 'postgres',
		"SELECT count(*) = $n FROM athena_keys.api_key_auth_log WHERE client_name = '$client'");
}

1;
