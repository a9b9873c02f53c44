# The async log writer inserts its batches straight into the log's
# partitions (log_batch_insert.c), as a call inserts its durable row, and
# through the INSERT statement where the log needs it.  Rows routed to two partitions in one batch, one of
# another row layout, land where the statement would put them; a trigger
# on a partition or on the log, a rule on the log, a generated column, a
# domain column without a default or a partitioned partition sends the
# batch to the statement (the trigger fires);
# a CHECK constraint is enforced (a row refused alone among others that go
# in is dropped with a WARNING) and a row no partition takes is refused
# as the statement refuses it, and both are written once the log is fixed;
# rows queued while the log is renamed away are kept, not discarded.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use AthenaTest;
use AthenaSession;

my $node = athena_node('batch_insert', preload => 1, conf => qq{
athena_keys.log_durability = 'async'
athena_keys.async_flush_interval = '100ms'
log_min_messages = debug1
});
my ($key) = create_key($node, 'postgres', q{'batch'});
my $statement_path = qr/log writer inserts this batch through the INSERT statement: ([^\n]*)/;

my $calls = sub { authenticate_calls($node, $key, @_) };
# The flush interval changed, and held by the database's writer before
# the test goes on: a reload reaches a writer when it wakes, which a slow
# machine can delay past any fixed sleep.  A probe call each round (its
# row queued) starts a writer where none runs and keeps the running one
# from exiting idle, until the log says a writer works with the interval.
my $flush_probes = 0;
my $set_flush = sub {
	my ($interval, $ms) = @_;
	my $from = -s $node->logfile;
	$node->append_conf('postgresql.conf', "athena_keys.async_flush_interval = '$interval'\n");
	$node->reload;
	for (1 .. 600)
	{
		# Not safe_psql: while a failed writer backs off, a call inserts
		# its row itself, which a log without partitions refuses.
		$flush_probes++
		  if $node->psql('postgres',
			"SELECT count(*) FROM athena_keys.athena_authenticate(NULL, 'flush-probe', NULL, NULL)") == 0;
		return
		  if slurp_file($node->logfile, $from) =~
		  /log writer (?:started|applied its settings): async_flush_interval $ms ms/;
		usleep(100_000);
	}
	BAIL_OUT("no log writer took async_flush_interval = $interval");
};
# Every row set_flush's probes queued is in the log: none is still on its
# way while the test changes the log's partitions.
my $flush_probes_logged = sub {
	return $node->poll_query_until('postgres',
		"SELECT count(*) = $flush_probes FROM athena_keys.api_key_auth_log WHERE client_name = 'flush-probe'");
};
# A probe call (queued for a writer, which starts after a failed one's
# back-off) until the client's rows are there.
my $probe_until_logged = sub {
	my ($client, $n) = @_;
	return $node->poll_query_until('postgres', qq{
		SELECT (SELECT count(*) FROM athena_keys.athena_authenticate(NULL, 'probe', NULL, NULL)) > 0
		   AND (SELECT count(*) FROM athena_keys.api_key_auth_log WHERE client_name = '$client') = $n});
};

########################################################################
# The direct path: rows arrive with an id each and a default of an added
# column evaluated per row, and no batch goes through the statement.
########################################################################
$node->safe_psql('postgres',
	'ALTER TABLE athena_keys.api_key_auth_log ADD COLUMN writer_pid integer DEFAULT pg_backend_pid()');
my $offset = -s $node->logfile;
$calls->(50, 'direct');
ok(wait_for_logged($node, 'direct', 50), 'queued rows arrive through the direct path');
is( $node->safe_psql('postgres', q{
		SELECT count(DISTINCT id) = 50 AND bool_and(writer_pid IS NOT NULL AND writer_pid <> pg_backend_pid())
		   AND bool_and(status = 200 AND allowed AND remote_addr = '10.0.0.1')
		  FROM athena_keys.api_key_auth_log WHERE client_name = 'direct'}),
	't', 'each row has its own id and the writer evaluated the added column\'s default');
unlike(slurp_file($node->logfile, $offset), $statement_path, 'no batch went through the statement');

# A call's durable row takes the same direct path, in the call's own
# transaction, with the added column's default evaluated by the caller.
my $call_statement_path = qr/a call inserts its log row through the INSERT statement: ([^\n]*)/;
my $durable_call = sub {
	my ($client) = @_;
	$node->safe_psql('postgres',
		"SET athena_keys.log_durability = durable;"
		  . " SELECT count(*) FROM athena_keys.athena_authenticate('$key', '$client', '10.0.0.1', NULL)");
};
$offset = -s $node->logfile;
$durable_call->('durable-direct');
is( $node->safe_psql('postgres', q{
		SELECT count(*) = 1 AND bool_and(writer_pid IS NOT NULL AND status = 200 AND id IS NOT NULL)
		  FROM athena_keys.api_key_auth_log WHERE client_name = 'durable-direct'}),
	't', 'a durable call\'s row is there at its commit, the added column\'s default filled');
unlike(slurp_file($node->logfile, $offset), $call_statement_path,
	'the durable row did not go through the statement');
$node->safe_psql('postgres', 'ALTER TABLE athena_keys.api_key_auth_log DROP COLUMN writer_pid');

# A session keeps what the log's definition decides between calls; another
# session's change to the log reaches it through the invalidation, so its
# next row has the new column's default, then does without the column.
my $keeper = AthenaSession->new($node, 'postgres');
my $kept_call = sub {
	my $answer = $keeper->query(
		"SELECT count(*) FROM athena_keys.athena_authenticate('$key', '$_[0]', '10.0.0.1', NULL);");
	is($answer, '1', "the kept session's call for $_[0] answers") or diag($keeper->{err});
};
$keeper->query('SET athena_keys.log_durability = durable;');
$offset = -s $node->logfile;
$kept_call->('kept-before');
$node->safe_psql('postgres',
	"ALTER TABLE athena_keys.api_key_auth_log ADD COLUMN site text DEFAULT 'from-another-session'");
$kept_call->('kept-added');
is( $node->safe_psql('postgres',
		"SELECT site FROM athena_keys.api_key_auth_log WHERE client_name = 'kept-added'"),
	'from-another-session', 'a column another session added has its default in the next row');
$node->safe_psql('postgres', 'ALTER TABLE athena_keys.api_key_auth_log DROP COLUMN site');
$kept_call->('kept-dropped');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM athena_keys.api_key_auth_log WHERE client_name LIKE 'kept-%'"),
	'3', 'and once it is dropped again the rows keep coming');
# A column of a domain type takes the domain's default, which ALTER DOMAIN
# changes without touching the log: the kept session's next row has it.
$node->safe_psql('postgres', q{
	CREATE DOMAIN public.site_name AS text DEFAULT 'site-a';
	ALTER TABLE athena_keys.api_key_auth_log ADD COLUMN site public.site_name;});
$kept_call->('kept-domain-a');
$node->safe_psql('postgres', q{ALTER DOMAIN public.site_name SET DEFAULT 'site-b'});
$kept_call->('kept-domain-b');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(client_name || ':' || site, ',' ORDER BY id)
		  FROM athena_keys.api_key_auth_log WHERE client_name LIKE 'kept-domain-%'}),
	'kept-domain-a:site-a,kept-domain-b:site-b',
	'a domain default another session changed is in the next row');
unlike(slurp_file($node->logfile, $offset), $call_statement_path,
	'every row of the kept session took the direct path');
$node->safe_psql('postgres', q{
	ALTER TABLE athena_keys.api_key_auth_log DROP COLUMN site;
	DROP DOMAIN public.site_name;});
$keeper->quit;

########################################################################
# One batch, two partitions: today's partition split at a time between
# two queued calls, the later half a table whose columns sit elsewhere
# (a dropped column first), so its rows are converted.
########################################################################
my ($today, $today_bound) = split /\|/, $node->safe_psql('postgres', q{
	SELECT c.oid::regclass, pg_get_expr(c.relpartbound, c.oid)
	  FROM pg_class c
	 WHERE c.oid = (SELECT tableoid FROM athena_keys.api_key_auth_log WHERE client_name = 'direct' LIMIT 1)});
$set_flush->('60s', 60000);
$calls->(1, 'split-a');
my $split_at = $node->safe_psql('postgres', 'SELECT now()');
$calls->(1, 'split-b');
$node->safe_psql('postgres', qq{
	ALTER TABLE athena_keys.api_key_auth_log DETACH PARTITION $today;
	CREATE TABLE athena_keys.split_early PARTITION OF athena_keys.api_key_auth_log
	  FOR VALUES FROM (date_trunc('day', '$split_at'::timestamptz, 'UTC')) TO ('$split_at');
	CREATE TABLE athena_keys.split_late (junk integer, LIKE athena_keys.api_key_auth_log INCLUDING DEFAULTS);
	ALTER TABLE athena_keys.split_late DROP COLUMN junk;
	ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION athena_keys.split_late
	  FOR VALUES FROM ('$split_at') TO (date_trunc('day', '$split_at'::timestamptz, 'UTC') + interval '1 day');});
$offset = -s $node->logfile;
$set_flush->('100ms', 100);
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM athena_keys.api_key_auth_log WHERE client_name IN ('split-a', 'split-b')"),
	'both rows of the batch arrive');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(client_name || ':' || tableoid::regclass::text, ',' ORDER BY id)
		  FROM athena_keys.api_key_auth_log WHERE client_name IN ('split-a', 'split-b')}),
	'split-a:athena_keys.split_early,split-b:athena_keys.split_late',
	'each row is in the partition its time belongs to, in queue order');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM athena_keys.split_late
		 WHERE client_name = 'split-b' AND status = 200 AND allowed AND authenticated
		   AND remote_addr = '10.0.0.1' AND api_key_public_id IS NOT NULL AND id IS NOT NULL
		   AND NOT locked_in AND failure_reason IS NULL}),
	'1', 'the row converted to the other layout keeps every column');
unlike(slurp_file($node->logfile, $offset), $statement_path, 'the two-partition batch took the direct path');
ok($flush_probes_logged->(), 'the probes\' rows are in before the partitions change back');
$node->safe_psql('postgres', qq{
	DROP TABLE athena_keys.split_early, athena_keys.split_late;
	ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION $today $today_bound;});

########################################################################
# Triggers: on a partition, and a statement trigger on the log.  The
# batch goes through the statement, so both fire.
########################################################################
$node->safe_psql('postgres', qq{
	CREATE TABLE public.fired (what text, client text);
	CREATE FUNCTION public.note_row() RETURNS trigger LANGUAGE plpgsql AS
	  \$\$BEGIN INSERT INTO public.fired VALUES ('row', NEW.client_name); RETURN NULL; END\$\$;
	CREATE FUNCTION public.note_statement() RETURNS trigger LANGUAGE plpgsql AS
	  \$\$BEGIN INSERT INTO public.fired VALUES ('statement', NULL); RETURN NULL; END\$\$;
	CREATE TRIGGER note_row AFTER INSERT ON $today FOR EACH ROW EXECUTE FUNCTION public.note_row();});
$offset = -s $node->logfile;
$calls->(5, 'partition-trigger');
ok(wait_for_logged($node, 'partition-trigger', 5), 'with a trigger on a partition every row is logged');
is($node->safe_psql('postgres', "SELECT count(*) FROM public.fired WHERE client = 'partition-trigger'"),
	'5', 'and the partition\'s row trigger fired for each');
like(slurp_file($node->logfile, $offset), qr/through the INSERT statement: a partition has triggers/,
	'the batch went through the statement, saying why');
$node->safe_psql('postgres', qq{
	DROP TRIGGER note_row ON $today;
	CREATE TRIGGER note_statement AFTER INSERT ON athena_keys.api_key_auth_log
	  FOR EACH STATEMENT EXECUTE FUNCTION public.note_statement();});
$offset = -s $node->logfile;
$calls->(3, 'log-trigger');
ok(wait_for_logged($node, 'log-trigger', 3), 'with a statement trigger on the log every row is logged');
cmp_ok($node->safe_psql('postgres', "SELECT count(*) FROM public.fired WHERE what = 'statement'"),
	'>=', 1, 'and the statement trigger fired');
like(slurp_file($node->logfile, $offset), qr/through the INSERT statement: the log has triggers/,
	'the batch went through the statement, saying why');
my $fired = $node->safe_psql('postgres', "SELECT count(*) FROM public.fired WHERE what = 'statement'");
$offset = -s $node->logfile;
$durable_call->('durable-trigger');
is($node->safe_psql('postgres', "SELECT count(*) FROM public.fired WHERE what = 'statement'"),
	$fired + 1, 'a durable call\'s row fires the log\'s statement trigger');
like(slurp_file($node->logfile, $offset),
	qr/a call inserts its log row through the INSERT statement: the log has triggers/,
	'the durable row went through the statement, saying why');
$node->safe_psql('postgres',
	'DROP TRIGGER note_statement ON athena_keys.api_key_auth_log');

########################################################################
# A rule on the log (an operator's audit copy): the statement's rewrite
# applies it, so the batch goes through the statement and the rule runs.
########################################################################
$node->safe_psql('postgres', q{
	CREATE RULE note_rule AS ON INSERT TO athena_keys.api_key_auth_log
	  DO ALSO INSERT INTO public.fired VALUES ('rule', NEW.client_name);});
$offset = -s $node->logfile;
$calls->(3, 'log-rule');
ok(wait_for_logged($node, 'log-rule', 3), 'with a rule on the log every row is logged');
is($node->safe_psql('postgres', "SELECT count(*) FROM public.fired WHERE what = 'rule' AND client = 'log-rule'"),
	'3', 'and the rule ran for each row');
like(slurp_file($node->logfile, $offset), qr/through the INSERT statement: the log has rules/,
	'the batch went through the statement, saying why');
$node->safe_psql('postgres', 'DROP RULE note_rule ON athena_keys.api_key_auth_log');

########################################################################
# Columns the direct path leaves to the statement: a generated column
# (computed by it) and a domain column without a default (the statement
# checks its NULL against the domain).
########################################################################
$node->safe_psql('postgres', q{
	ALTER TABLE athena_keys.api_key_auth_log
	  ADD COLUMN shouted text GENERATED ALWAYS AS (upper(client_name)) STORED});
$offset = -s $node->logfile;
$calls->(2, 'generated');
ok(wait_for_logged($node, 'generated', 2), 'with a generated column every row is logged');
is( $node->safe_psql('postgres',
		"SELECT string_agg(shouted, ',') FROM athena_keys.api_key_auth_log WHERE client_name = 'generated'"),
	'GENERATED,GENERATED', 'with the column computed');
like(slurp_file($node->logfile, $offset), qr/through the INSERT statement: the log has generated columns/,
	'the batch went through the statement, saying why');
$node->safe_psql('postgres', q{
	ALTER TABLE athena_keys.api_key_auth_log DROP COLUMN shouted;
	CREATE DOMAIN public.label AS text CHECK (VALUE <> '');
	ALTER TABLE athena_keys.api_key_auth_log ADD COLUMN label public.label});
$offset = -s $node->logfile;
$calls->(2, 'domain');
ok(wait_for_logged($node, 'domain', 2), 'with a domain column without a default every row is logged');
like(slurp_file($node->logfile, $offset),
	qr/through the INSERT statement: a column of a domain type has no default/,
	'the batch went through the statement, saying why');
$node->safe_psql('postgres', 'ALTER TABLE athena_keys.api_key_auth_log DROP COLUMN label');

########################################################################
# Today's partition replaced by one partitioned by client, with no default
# sub-partition: the executor routes a row down every level, and the
# direct path's routing slot holds the log's key alone (its NULL client
# found no sub-partition, and every batch failed).  The batch goes through
# the statement, which routes the whole row, into the client's
# sub-partition.
########################################################################
$node->safe_psql('postgres', qq{
	ALTER TABLE athena_keys.api_key_auth_log DETACH PARTITION $today;
	CREATE TABLE public.log_by_client (LIKE athena_keys.api_key_auth_log) PARTITION BY LIST (client_name);
	CREATE TABLE public.log_by_client_sub PARTITION OF public.log_by_client FOR VALUES IN ('sub-partitioned');
	ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION public.log_by_client $today_bound;});
$offset = -s $node->logfile;
$calls->(2, 'sub-partitioned');
ok(wait_for_logged($node, 'sub-partitioned', 2), 'with a partitioned partition every row is logged');
is( $node->safe_psql('postgres',
		"SELECT string_agg(DISTINCT tableoid::regclass::text, ',') FROM athena_keys.api_key_auth_log"
		  . " WHERE client_name = 'sub-partitioned'"),
	'log_by_client_sub', 'into the client\'s sub-partition');
like(slurp_file($node->logfile, $offset),
	qr/through the INSERT statement: a partition of the log is partitioned/,
	'the batch went through the statement, saying why');
unlike(slurp_file($node->logfile, $offset), qr/no partition of relation "log_by_client" found/,
	'and no batch failed on the way');
$node->safe_psql('postgres', qq{
	ALTER TABLE athena_keys.api_key_auth_log DETACH PARTITION public.log_by_client;
	DROP TABLE public.log_by_client;
	ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION $today $today_bound;});

########################################################################
# A CHECK constraint the row breaks: the writer stops with the
# statement's error and retries; once it is dropped the row is written.
########################################################################
$node->safe_psql('postgres', q{
	ALTER TABLE athena_keys.api_key_auth_log
	  ADD CONSTRAINT no_forbidden CHECK (client_name IS DISTINCT FROM 'forbidden')});
$offset = -s $node->logfile;
$calls->(1, 'forbidden');
ok( $node->wait_for_log(
		qr/new row for relation "api_key_auth_log[^"]*" violates check constraint "no_forbidden"/, $offset),
	'a row breaking a CHECK constraint is refused with the statement\'s error');
is(logged_count($node, 'forbidden'), '0', 'and not written');
$node->safe_psql('postgres',
	'ALTER TABLE athena_keys.api_key_auth_log DROP CONSTRAINT no_forbidden');
ok($probe_until_logged->('forbidden', 1), 'with the constraint dropped, the queued row is written');

########################################################################
# A row the log refuses among rows it takes (a client's name longer than
# an operator's CHECK allows): dropped alone with a WARNING that says why,
# so that the rows queued with it and behind it are written.
########################################################################
my $long_client = 'c' x 40;
$node->safe_psql('postgres', q{
	ALTER TABLE athena_keys.api_key_auth_log
	  ADD CONSTRAINT short_client CHECK (char_length(client_name) <= 30)});
$set_flush->('60s', 60000);
$calls->(3, 'mixed-before');
$calls->(1, $long_client);
$calls->(2, 'mixed-after');
$offset = -s $node->logfile;
$set_flush->('100ms', 100);
ok( $node->wait_for_log(
		qr/WARNING: .*athena_keys log writer dropped a queued decision the log refuses: new row for relation "api_key_auth_log[^"]*" violates check constraint "short_client"/,
		$offset),
	'a row refused alone among others is dropped with a WARNING naming the constraint');
ok($probe_until_logged->('mixed-after', 2), 'the rows queued behind it are written');
is(logged_count($node, 'mixed-before'), '3', 'and the rows queued before it');
is(logged_count($node, $long_client), '0', 'the refused row is not');
$node->safe_psql('postgres',
	'ALTER TABLE athena_keys.api_key_auth_log DROP CONSTRAINT short_client');

# A row that carries its key's last_used_at stamp (a read-only caller's)
# where the key table refuses the stamp (an operator's constraint on
# api_key, not on the log): the row goes in without its stamp, with a
# WARNING, and is not dropped.
my ($unstampable_key, $unstampable_id) = create_key($node, 'postgres', q{'unstampable'});
my ($stampable_key) = create_key($node, 'postgres', q{'stampable'});
$node->safe_psql('postgres', q{
	ALTER TABLE athena_keys.api_key ADD CONSTRAINT no_stamp_for_unstampable
	  CHECK (last_used_at IS NULL OR name <> 'unstampable') NOT VALID});
$set_flush->('60s', 60000);
$node->safe_psql('postgres', qq{
	BEGIN READ ONLY;
	SELECT count(*) FROM (VALUES ('$unstampable_key'), ('$stampable_key')) AS k(key),
	       athena_keys.athena_authenticate(k.key, 'read-only-stamps', NULL, NULL);
	COMMIT;});
$offset = -s $node->logfile;
$set_flush->('100ms', 100);
ok($probe_until_logged->('read-only-stamps', 2), 'both rows are written, the one whose stamp was refused too');
like(slurp_file($node->logfile, $offset),
	qr/WARNING: .*athena_keys log writer could not stamp last_used_at: new row for relation "api_key" violates check constraint "no_stamp_for_unstampable"/,
	'the refused stamp is a WARNING');
unlike(slurp_file($node->logfile, $offset), qr/dropped a queued decision/, 'and no row was dropped');
is($node->safe_psql('postgres',
		"SELECT last_used_at IS NULL FROM athena_keys.api_key WHERE id = '$unstampable_id'"),
	't', 'the refused stamp is not applied');
$node->safe_psql('postgres',
	'ALTER TABLE athena_keys.api_key DROP CONSTRAINT no_stamp_for_unstampable');

########################################################################
# A row no partition takes (today's and the default partition detached):
# refused as the statement refuses it, written once today's is back.
########################################################################
# The row is queued first (a failed writer's back-off would have the call
# insert it itself), then the partitions go.
$set_flush->('60s', 60000);
$calls->(1, 'homeless');
$node->safe_psql('postgres', qq{
	ALTER TABLE athena_keys.api_key_auth_log DETACH PARTITION $today;
	ALTER TABLE athena_keys.api_key_auth_log DETACH PARTITION athena_keys.api_key_auth_log_default;});
my ($rc, $out, $statement_error) = $node->psql('postgres', q{
	INSERT INTO athena_keys.api_key_auth_log (authenticated, authorized, enforced, allowed, status)
	VALUES (false, false, true, false, 401)});
like($statement_error, qr/no partition of relation "api_key_auth_log" found for row/,
	'the statement refuses a row for a day without a partition');
$offset = -s $node->logfile;
$set_flush->('100ms', 100);
ok($node->wait_for_log(qr/no partition of relation "api_key_auth_log" found for row/, $offset),
	'the writer refuses it with the same error');
unlike(slurp_file($node->logfile, $offset), qr/terminated by signal/, 'no process crashed');
$node->safe_psql('postgres', qq{
	ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION $today $today_bound;
	ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION athena_keys.api_key_auth_log_default DEFAULT;});
ok($probe_until_logged->('homeless', 1), 'with the partitions back, the queued row is written');
is( $node->safe_psql('postgres',
		"SELECT tableoid::regclass::text FROM athena_keys.api_key_auth_log WHERE client_name = 'homeless'"),
	$today, 'into today\'s partition');

# The log renamed while rows are queued: the writer stops with an error and
# keeps them (it discards rows only when the extension itself is gone), and
# writes them once the log has its name back.
########################################################################
$set_flush->('60s', 60000);
$calls->(2, 'renamed-away');
$node->safe_psql('postgres',
	'ALTER TABLE athena_keys.api_key_auth_log RENAME TO api_key_auth_log_renamed');
$offset = -s $node->logfile;
$set_flush->('100ms', 100);
ok( $node->wait_for_log(
		qr/athena_keys log writer cannot find table athena_keys\.api_key_auth_log/, $offset),
	'the writer refuses to drain into a log that was renamed away');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM athena_keys.api_key_auth_log_renamed WHERE client_name = 'renamed-away'"),
	'0', 'nothing was written while the log was renamed');
$node->safe_psql('postgres',
	'ALTER TABLE athena_keys.api_key_auth_log_renamed RENAME TO api_key_auth_log');
ok($probe_until_logged->('renamed-away', 2),
	'with its name back, the log gets both queued rows: none was discarded');
unlike(slurp_file($node->logfile, $offset), qr/terminated by signal/, 'no process crashed');

$node->stop;
done_testing();
