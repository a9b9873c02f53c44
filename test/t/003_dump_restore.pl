# pg_dump of a database with keys, grants, rules, learning state and config,
# restored into a fresh database: every key gives the same verdicts and the
# configuration rows are preserved, also where a native right was deleted
# and created again.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AthenaTest;

my $node = athena_node('dump', extension => 0);
$node->safe_psql('postgres', 'CREATE DATABASE source');
$node->safe_psql('source', q{
	CREATE EXTENSION athena_keys;
	SELECT athena_keys.athena_create_right('users.read');
	SELECT athena_keys.athena_create_right('users.*');
	-- A native right deleted and created again (the way to change its
	-- description): restored with the catalog, not colliding with the seed.
	SELECT athena_keys.athena_delete_right('gateway.query');
	SELECT athena_keys.athena_create_right('gateway.query', 'Raw SQL, reviewed first');
	CREATE TABLE plaintext (name text PRIMARY KEY, api_key text);
	INSERT INTO plaintext SELECT 'bound', api_key FROM athena_keys.athena_create_key('bound', client_name => 'web',
		rights => ARRAY['users.read'], ip_whitelist => ARRAY['10.0.0.0/8']::cidr[]);
	INSERT INTO plaintext SELECT 'wild', api_key FROM athena_keys.athena_create_key('wild', rights => ARRAY['users.*'],
		ip_blacklist => ARRAY['10.66.0.0/16']::cidr[], expires_at => now() + interval '1 year');
	INSERT INTO plaintext SELECT 'off', api_key FROM athena_keys.athena_create_key('off', rights => ARRAY['*']);
	SELECT athena_keys.athena_set_key_active(id, false) FROM athena_keys.api_key WHERE name = 'off';
	INSERT INTO plaintext SELECT 'locked', api_key FROM athena_keys.athena_create_key('locked',
		virgin_mode => true, virgin_until_n_requests => 2);
	INSERT INTO plaintext SELECT 'learning', api_key FROM athena_keys.athena_create_key('learning',
		virgin_mode => true, virgin_until_n_requests => 50);
	SELECT athena_keys.athena_authenticate(api_key, NULL, ('192.0.2.' || g)::inet, NULL)
	  FROM plaintext, generate_series(1, 2) g WHERE name IN ('locked', 'learning');
	INSERT INTO plaintext SELECT 'imported', NULL;
	SELECT athena_keys.athena_import_key('athenaimport01', 'salty',
		encode(sha256(convert_to('salty:' || repeat('s', 40), 'UTF8')), 'hex'), 'imported');
	UPDATE plaintext SET api_key = 'ath_athenaimport01.' || repeat('s', 40) WHERE name = 'imported';
	SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24');
	SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8', client_name => 'partner');
	SELECT athena_keys.athena_set_client_enforcement('legacy', false);
	SELECT athena_keys.athena_set_fail_mode('fail_open');
});

my $verdicts = q{
	SELECT string_agg(concat(p.name, ',', r.client, ',', r.ip, ',', a.allowed, ',', a.status, ',', a.reason, ',', a.locked_in), E'\n'
	                  ORDER BY p.name, r.client, r.ip)
	  FROM plaintext p,
	       (VALUES ('web', '10.1.2.3'::inet), ('mobile', '10.1.2.3'), ('web', '203.0.113.5'),
	               ('legacy', '10.66.1.1'), ('partner', '172.16.0.1'), ('web', '192.0.2.1'),
	               ('web', '192.0.2.9')) AS r(client, ip),
	       LATERAL athena_keys.athena_authenticate(p.api_key, r.client, r.ip, ARRAY['users.read']) a
};
my $config = q{
	SELECT concat_ws(' | ',
	  (SELECT string_agg(concat_ws(',', enforce_api_keys, fail_mode), ';') FROM athena_keys.api_key_config),
	  (SELECT string_agg(concat_ws(',', client_name, enforce_api_keys), ';' ORDER BY client_name) FROM athena_keys.api_key_client_config),
	  (SELECT string_agg(name, ',' ORDER BY name) FROM athena_keys.api_key_right),
	  (SELECT string_agg(concat_ws(',', list, addr, client_name), ';' ORDER BY list, addr) FROM athena_keys.api_key_global_ip_rule),
	  (SELECT string_agg(concat_ws(',', name, state, virgin_request_count, seen_ips, whitelist_size), ';' ORDER BY name)
	     FROM athena_keys.athena_key_status))
};

my $config_before = $node->safe_psql('source', $config);
my $dump = $node->basedir . '/source.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('source') ], 'pg_dump succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a fresh database succeeds');

is($node->safe_psql('restored', $config), $config_before,
	'configuration, catalog, rules and key state are preserved');

# A data-only restore into a database that has the extension already, with
# --disable-triggers (which disables every trigger of each table it loads):
# the seeded configuration row is still updated to the dumped one (fail_open)
# instead of the COPY failing on its key and the configuration being lost.
my $data_dump = $node->basedir . '/source_data.dump';
$node->command_ok([ 'pg_dump', '-Fc', '--data-only', '-f', $data_dump, '-d', $node->connstr('source') ],
	'a data-only pg_dump succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored_data');
$node->safe_psql('restored_data', q{
	CREATE EXTENSION athena_keys;
	CREATE TABLE plaintext (name text PRIMARY KEY, api_key text);});
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '--data-only', '--disable-triggers',
	  '-d', $node->connstr('restored_data'), $data_dump ],
	'a data-only pg_restore --disable-triggers into a database with the extension succeeds');
is($node->safe_psql('restored_data', $config), $config_before,
	'and keeps the configuration (fail_open), catalog, rules and key state');
is($node->safe_psql('restored_data', q{
	SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger
	 WHERE tgrelid = 'athena_keys.api_key_config'::regclass AND NOT tgisinternal}),
	'api_key_config_insert_as_update=A,api_key_config_invalidate=A,api_key_config_truncate_invalidate=A',
	'the configuration table\'s triggers are enabled again, always');
my $source_verdicts = $node->safe_psql('source', $verdicts);
my $restored_verdicts = $node->safe_psql('restored', $verdicts);
is($restored_verdicts, $source_verdicts, 'every key gives the same verdicts after restore');
like($source_verdicts, qr/^bound,web,10\.1\.2\.3,t,200,,f$/m, 'the matrix includes successes');
like($source_verdicts, qr/IP not allowed/, 'and failures');

# The identity sequences behind the IP rule ids are dumped with their
# position (issue 12, item 4): without it the restored sequences start at 1
# again and every new rule collides with a restored one.
my ($dump_sql) = run_command([ 'pg_restore', '-f', '-', $dump ]);
like($dump_sql, qr/setval\('athena_keys\.api_key_ip_rule_id_seq', [1-9][0-9]*, true\)/,
	'the dump sets the per-key rule sequence');
like($dump_sql, qr/setval\('athena_keys\.api_key_global_ip_rule_id_seq', [1-9][0-9]*, true\)/,
	'the dump sets the global rule sequence');

# In the restored database: new rules, a key with IP lists, and a learning
# key driven to lock-in (which writes per-key whitelist rows).
is($node->psql('restored', q{
	SELECT athena_keys.athena_add_ip_rule('blacklist', '198.51.100.0/24');
	SELECT athena_keys.athena_add_ip_rule('whitelist', '10.9.0.0/16', client_name => 'partner');
	SELECT athena_keys.athena_add_ip_rule('blacklist', '10.77.0.0/16', key_id => id)
	  FROM athena_keys.api_key WHERE name = 'wild';
}), 0, 'athena_add_ip_rule adds global and per-key rules after restore');
is($node->psql('restored', q{
	INSERT INTO plaintext SELECT 'lists', api_key FROM athena_keys.athena_create_key('lists',
		ip_whitelist => ARRAY['10.20.0.0/16', '10.21.0.0/16']::cidr[],
		ip_blacklist => ARRAY['10.20.9.0/24']::cidr[]);
}), 0, 'athena_create_key with IP lists works after restore');
is($node->safe_psql('restored', q{
	SELECT string_agg(concat(r.ip, ',', a.status, ',', a.reason), ';' ORDER BY r.ip)
	  FROM plaintext p, (VALUES ('10.20.1.1'::inet), ('10.20.9.1'), ('10.22.0.1')) r(ip),
	       LATERAL athena_keys.athena_authenticate(p.api_key, NULL, r.ip, NULL) a
	 WHERE p.name = 'lists'}),
	'10.20.1.1,200,;10.20.9.1,403,IP blocked;10.22.0.1,403,IP not allowed',
	'the new key\'s lists are enforced');
is($node->safe_psql('restored', q{
	SELECT count(*) FILTER (WHERE a.locked_in), count(*) FILTER (WHERE a.allowed)
	  FROM plaintext p, generate_series(1, 60) g,
	       LATERAL athena_keys.athena_authenticate(p.api_key, NULL, ('192.0.2.' || (g % 3 + 1))::inet, NULL) a
	 WHERE p.name = 'learning'}),
	'1|60', 'a learning key restored mid-learning locks in once, and every call is allowed');
is($node->safe_psql('restored', q{
	SELECT concat_ws(',', state, whitelist_size) FROM athena_keys.athena_key_status WHERE name = 'learning'}),
	'locked,3', 'the restored learning key is locked to the addresses it saw');


# A database still at 1.3 (the 1.4 library installed but ALTER EXTENSION
# UPDATE not run yet, or a dump taken before the upgrade) dumps a seeded
# right deleted and created again as a non-native row.  Restored into 1.4,
# fully or data-only with --disable-triggers, that row takes the seeded
# row's place: the catalog and every grant come back instead of the COPY
# failing on the name.
$node->safe_psql('postgres', 'CREATE DATABASE source13');
$node->safe_psql('source13', q{
	CREATE EXTENSION athena_keys VERSION '1.3';
	SELECT athena_keys.athena_delete_right('gateway.query');
	SELECT athena_keys.athena_create_right('gateway.query', 'Raw SQL, reviewed first');
	SELECT athena_keys.athena_create_right('users.read');
	SELECT athena_keys.athena_create_key('k13', rights => ARRAY['users.read', 'gateway.query']);
});
my $catalog13 = q{
	SELECT concat_ws(' | ',
	  (SELECT string_agg(right_name, ',' ORDER BY right_name) FROM athena_keys.api_key_right_grant),
	  (SELECT concat_ws(',', description, native) FROM athena_keys.api_key_right WHERE name = 'gateway.query'),
	  (SELECT string_agg(name, ',' ORDER BY name) FROM athena_keys.api_key_right WHERE NOT native))
};
my $expected13 = 'gateway.query,users.read | Raw SQL, reviewed first,t | users.read';
my $dump13 = $node->basedir . '/source13.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump13, '-d', $node->connstr('source13') ],
	'pg_dump of a 1.3 database succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored13');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored13'), $dump13 ],
	'the 1.3 dump restores into 1.4 although it holds a seeded right');
is($node->safe_psql('restored13', $catalog13), $expected13,
	'the re-created seeded right keeps its description and stays native, and every grant is back');
my $data_dump13 = $node->basedir . '/source13_data.dump';
$node->command_ok([ 'pg_dump', '-Fc', '--data-only', '-f', $data_dump13, '-d', $node->connstr('source13') ],
	'a data-only pg_dump of the 1.3 database succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored13_data');
$node->safe_psql('restored13_data', 'CREATE EXTENSION athena_keys');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '--data-only', '--disable-triggers',
	  '-d', $node->connstr('restored13_data'), $data_dump13 ],
	'and its data-only restore --disable-triggers into 1.4');
is($node->safe_psql('restored13_data', $catalog13), $expected13,
	'with the same catalog and grants');

$node->stop;
done_testing();
