# Faults around last_used_at stamps applied by the log writer (athena_keys
# preloaded): one key row whose UPDATE fails (a CHECK added NOT VALID that
# the row violates) must not keep every other key's stamp from landing,
# and a prepared transaction must stamp nothing (it may still roll back),
# as the in-call UPDATE it replaces would not once rolled back.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AthenaTest;

my $node = athena_node('stampfaults', preload => 1, conf => qq{
athena_keys.async_flush_interval = '100ms'
athena_keys.log_decisions = none
max_prepared_transactions = 4
max_worker_processes = 16
});

my $call = "SELECT allowed FROM athena_keys.athena_authenticate('%s', NULL, NULL, NULL)";
my $stamped = sub {
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT last_used_at IS NOT NULL FROM athena_keys.api_key WHERE id = '$id'");
};

########################################################################
# A poison row: its stamp fails in the writer; another key's stamp must
# still land.
########################################################################
my ($poison, $poison_id) = create_key($node, 'postgres', q{'poison'});
my ($good, $good_id) = create_key($node, 'postgres', q{'good'});
$node->safe_psql('postgres', q{
	ALTER TABLE athena_keys.api_key ADD CONSTRAINT review_no_poison
		CHECK (name <> 'poison') NOT VALID});
$node->safe_psql('postgres', sprintf($call, $poison));
$node->safe_psql('postgres', sprintf($call, $good));
my $landed = 0;
for (1 .. 50)
{
	if ($stamped->($good_id) eq 't') { $landed = 1; last; }
	select(undef, undef, undef, 0.1);
}
ok($landed, 'a key stamped after a poison row still gets its stamp');
is($stamped->($poison_id), 'f', 'the poison row itself is not stamped');
$node->safe_psql('postgres',
	'ALTER TABLE athena_keys.api_key DROP CONSTRAINT review_no_poison');

########################################################################
# PREPARE TRANSACTION, then ROLLBACK PREPARED: no stamp.
########################################################################
my ($prepared, $prepared_id) = create_key($node, 'postgres', q{'prepared'});
my ($marker, $marker_id) = create_key($node, 'postgres', q{'marker'});
$node->safe_psql('postgres', sprintf(qq{
	BEGIN;
	$call;
	PREPARE TRANSACTION 'review_stamp';}, $prepared));
$node->safe_psql('postgres', q{ROLLBACK PREPARED 'review_stamp'});
$node->safe_psql('postgres', sprintf($call, $marker));
ok($node->poll_query_until('postgres',
		"SELECT last_used_at IS NOT NULL FROM athena_keys.api_key WHERE id = '$marker_id'"),
	'a committed call after the rolled-back prepared one is stamped');
is($stamped->($prepared_id), 'f',
	'a prepared transaction rolled back stamps nothing');

$node->stop;
done_testing();
