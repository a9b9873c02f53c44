# Extension upgrade 1.0 -> 1.4 (through 1.1, 1.2 and 1.3), and 1.2 -> 1.4.
# A database installed at 1.0 and filled (keys of every kind, learning and
# locked keys, rules, rights, client config, fail mode, admin and gateway
# roles) gives the same verdicts with the current library before and after
# ALTER EXTENSION athena_keys UPDATE, on the cached path too, its catalog is
# the same as a fresh install's, the 1.1 functions work, and a role made an
# admin under 1.0 can call them — also after a pg_dump / pg_restore of the
# upgraded database.  A database installed at 1.2 and updated keeps its
# verdicts and ends with a fresh install's catalog too (triggers compared
# with their ENABLE state, configuration tables and sequences included).
#
# The equality guard of the maintained install script: a fresh CREATE
# EXTENSION runs athena_keys--1.4.sql (built from sql/install/), not 1.0 and
# the deltas, so it is compared with databases made at 1.0, 1.1, 1.2 and 1.3
# and updated: pg_dump --schema-only (plain, and --binary-upgrade, which
# prints every member of the extension with its ACL and initial privileges),
# and catalog queries for what a difference would be hard to read in a dump
# (members, function definitions and settings, ACLs, comments, triggers and
# their ENABLE state, event triggers, sequences, configuration tables,
# column defaults and constraints, dependencies).  A difference fails with
# a unified diff.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::RealBin;
use AthenaSession;

# Whether two texts are equal, as a test; when they differ, a unified diff
# of them goes to the test's diagnostics so the failure says what differs.
sub is_same_text
{
	my ($got, $expected, $got_label, $expected_label, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return pass($name) if $got eq $expected;
	my $dir = PostgreSQL::Test::Utils::tempdir;
	PostgreSQL::Test::Utils::append_to_file("$dir/expected", "$expected\n");
	PostgreSQL::Test::Utils::append_to_file("$dir/got", "$got\n");
	my $diff = '';
	IPC::Run::run([ 'diff', '-u', '--label', $expected_label, '--label', $got_label,
		"$dir/expected", "$dir/got" ], '>', \$diff);
	fail($name);
	diag($diff);
	return 0;
}

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->start;

# Roles are cluster-wide: one admin role with a name that needs quoting, one
# plain admin role, one gateway role.
$node->safe_psql('postgres', q{
	CREATE ROLE "ak Admin" NOLOGIN;
	CREATE ROLE ak_ops NOLOGIN;
	CREATE ROLE ak_gateway NOLOGIN;
	CREATE DATABASE upgraded;
	CREATE DATABASE fresh;
	CREATE DATABASE from12;
});

########################################################################
# Install 1.0 and fill it.
########################################################################
$node->safe_psql('upgraded', q{CREATE EXTENSION athena_keys VERSION '1.0'});
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'athena_keys'}),
	'1.0', 'installed at 1.0');
is($node->safe_psql('upgraded', q{SELECT count(*) FROM pg_proc WHERE proname IN ('athena_set_key_rights', 'athena_rename_key')}),
	'0', '1.0 has neither 1.1 function');

$node->safe_psql('upgraded', q{
	SELECT athena_keys.athena_grant_admin_role('ak Admin');
	SELECT athena_keys.athena_grant_admin_role('ak_ops');
	SELECT athena_keys.athena_grant_gateway_role('ak_gateway');
	SELECT athena_keys.athena_create_right('users.read');
	SELECT athena_keys.athena_create_right('users.write', 'Write users');
	SELECT athena_keys.athena_create_right('users.*');
	CREATE TABLE plaintext (name text PRIMARY KEY, api_key text);
	INSERT INTO plaintext SELECT 'bound', api_key FROM athena_keys.athena_create_key('bound', client_name => 'web',
		rights => ARRAY['users.read'], ip_whitelist => ARRAY['10.0.0.0/8']::cidr[], description => 'bound to web');
	INSERT INTO plaintext SELECT 'wild', api_key FROM athena_keys.athena_create_key('wild', rights => ARRAY['users.*'],
		ip_blacklist => ARRAY['10.66.0.0/16']::cidr[], expires_at => now() + interval '1 year');
	INSERT INTO plaintext SELECT 'native', api_key FROM athena_keys.athena_create_key('native',
		rights => ARRAY['gateway.read', 'management.read']);
	INSERT INTO plaintext SELECT 'off', api_key FROM athena_keys.athena_create_key('off', rights => ARRAY['*']);
	SELECT athena_keys.athena_set_key_active(id, false) FROM athena_keys.api_key WHERE name = 'off';
	INSERT INTO plaintext SELECT 'expired', api_key FROM athena_keys.athena_create_key('expired', rights => ARRAY['*']);
	SELECT athena_keys.athena_set_key_expiry(id, now() - interval '1 day') FROM athena_keys.api_key WHERE name = 'expired';
	INSERT INTO plaintext SELECT 'rotated_old', api_key FROM athena_keys.athena_create_key('rotated', rights => ARRAY['users.read']);
	INSERT INTO plaintext SELECT 'rotated_new', athena_keys.athena_rotate_key(id, interval '1 day')
	  FROM athena_keys.api_key WHERE name = 'rotated';
	INSERT INTO plaintext SELECT 'locked', api_key FROM athena_keys.athena_create_key('locked',
		rights => ARRAY['users.read'], virgin_mode => true, virgin_until_n_requests => 2);
	INSERT INTO plaintext SELECT 'learning', api_key FROM athena_keys.athena_create_key('learning',
		rights => ARRAY['users.read'], virgin_mode => true, virgin_until_n_requests => 50);
	INSERT INTO plaintext SELECT 'capped', api_key FROM athena_keys.athena_create_key('capped',
		virgin_mode => true, max_whitelist_ips => 1);
	SELECT athena_keys.athena_authenticate(api_key, NULL, ('192.0.2.' || g)::inet, NULL)
	  FROM plaintext, generate_series(1, 2) g WHERE name IN ('locked', 'learning', 'capped');
	INSERT INTO plaintext SELECT 'imported', NULL;
	SELECT athena_keys.athena_import_key('athenaimport01', 'salty',
		encode(sha256(convert_to('salty:' || repeat('s', 40), 'UTF8')), 'hex'), 'imported',
		rights => ARRAY['users.write']);
	UPDATE plaintext SET api_key = 'ath_athenaimport01.' || repeat('s', 40) WHERE name = 'imported';
	INSERT INTO plaintext VALUES ('bogus', 'ath_0000000000000000.' || repeat('0', 64)), ('none', NULL);
	SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24', label => 'abuse');
	SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8', client_name => 'partner');
	SELECT athena_keys.athena_add_ip_rule('blacklist', '10.1.2.3/32', key_id => id) FROM athena_keys.api_key WHERE name = 'native';
	SELECT athena_keys.athena_set_client_enforcement('legacy', false);
	SELECT athena_keys.athena_set_fail_mode('fail_open');
});

# Every key against a matrix of clients, addresses and required rights.  Run
# in a transaction that is rolled back, so that learning keys do not move on
# between two runs and the auth log does not grow.
my $verdicts = q{
	BEGIN;
	SELECT string_agg(concat(p.name, ',', r.client, ',', r.ip, ',', array_to_string(q.rights, '+'), ',',
	                         a.allowed, ',', a.status, ',', a.reason, ',', a.locked_in, ',', a.enforced, ',',
	                         array_to_string(a.missing_rights, '+')), E'\n'
	                  ORDER BY p.name, r.client, r.ip, q.rights)
	  FROM plaintext p,
	       (VALUES ('web', '10.1.2.3'::inet), ('mobile', '10.1.2.3'), ('web', '203.0.113.5'),
	               ('legacy', '10.66.1.1'), ('partner', '172.16.0.1'), ('web', '192.0.2.1'),
	               ('web', '192.0.2.9'), (NULL, '10.66.0.7')) AS r(client, ip),
	       (VALUES (ARRAY['users.read']), (ARRAY['users.write', 'gateway.read']), (NULL::text[])) AS q(rights),
	       LATERAL athena_keys.athena_authenticate(p.api_key, r.client, r.ip, q.rights) a;
	ROLLBACK;
};
my $state = q{
	SELECT concat_ws(E'\n',
	  (SELECT string_agg(concat_ws(',', enforce_api_keys, fail_mode), ';') FROM athena_keys.api_key_config),
	  (SELECT string_agg(concat_ws(',', client_name, enforce_api_keys), ';' ORDER BY client_name) FROM athena_keys.api_key_client_config),
	  (SELECT string_agg(concat_ws(',', name, description, native), ';' ORDER BY name) FROM athena_keys.api_key_right),
	  (SELECT string_agg(concat_ws(',', list, addr, client_name, label), ';' ORDER BY list, addr) FROM athena_keys.api_key_global_ip_rule),
	  (SELECT string_agg(concat_ws(',', scope, list, addr, public_id, client_name, label, from_lock_in), ';'
	                     ORDER BY scope, list, addr, public_id) FROM athena_keys.athena_ip_rules),
	  (SELECT string_agg(concat_ws(',', key_name, addr, hit_count, locked_in), ';' ORDER BY key_name, addr) FROM athena_keys.athena_ip_seen),
	  (SELECT string_agg(concat_ws(',', name, description, client_name, state, rights, virgin_request_count,
	                               seen_ips, whitelist_size, blacklist_size, virgin_resolved,
	                               rotation_grace_until IS NOT NULL, updated_at), ';' ORDER BY name)
	     FROM athena_keys.athena_key_status))
};

my $verdicts_before = $node->safe_psql('upgraded', $verdicts);
my $state_before = $node->safe_psql('upgraded', $state);
like($verdicts_before, qr/^bound,web,10\.1\.2\.3,users\.read,t,200,,f,t,$/m, 'the matrix includes successes');
like($verdicts_before, qr/^locked,web,192\.0\.2\.9,users\.read,f,403,IP not allowed,/m, 'locked keys reject new addresses');
like($verdicts_before, qr/^learning,web,192\.0\.2\.9,users\.read,t,200,,f,/m, 'learning keys admit new addresses');
like($verdicts_before, qr/^off,.*Inactive API key/m, 'inactive keys fail');
like($verdicts_before, qr/^expired,.*Expired API key/m, 'expired keys fail');
like($verdicts_before, qr/^rotated_old,web,10\.1\.2\.3,users\.read,t,200,/m, 'the rotated-out secret still works in grace');
like($verdicts_before, qr/^bogus,legacy,10\.66\.1\.1,users\.read,t,200,Invalid API key,f,f,$/m,
	'unenforced clients pass in shadow mode');

########################################################################
# Upgrade.
########################################################################
is($node->safe_psql('upgraded', q{SELECT string_agg(source || '>' || target || ':' || path, ' ' ORDER BY target)
	FROM pg_extension_update_paths('athena_keys') WHERE path IS NOT NULL AND source = '1.0'}),
	'1.0>1.1:1.0--1.1 1.0>1.2:1.0--1.1--1.2 1.0>1.3:1.0--1.1--1.2--1.3 1.0>1.4:1.0--1.1--1.2--1.3--1.4',
	'there are update paths from 1.0 to 1.1, 1.2, 1.3 and 1.4');
# A 1.0 database (athena_authenticate itself SECURITY DEFINER, no twin)
# served by the current library decides alike on the cached path.
is($node->safe_psql('upgraded', "SET athena_keys.log_decisions = none; $verdicts"), $verdicts_before,
	'before the upgrade, the current library gives the same verdicts from its caches');
$node->safe_psql('upgraded', 'ALTER EXTENSION athena_keys UPDATE');
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'athena_keys'}),
	'1.4', 'upgraded to 1.4');
is($node->safe_psql('upgraded', $state), $state_before, 'configuration, catalog rows, rules and key state are unchanged');
is($node->safe_psql('upgraded', $verdicts), $verdicts_before, 'every key gives the same verdicts after the upgrade');
is($node->safe_psql('upgraded', "SET athena_keys.log_decisions = none; $verdicts"), $verdicts_before,
	'and the same from the caches');
is($node->safe_psql('upgraded', q{
	SELECT string_agg(concat_ws(':', proname, prosecdef, proconfig), ' ' ORDER BY proname)
	  FROM pg_proc WHERE pronamespace = 'athena_keys'::regnamespace AND proname LIKE '%authenticate%'}),
	'_authenticate_privileged:t:{"search_path=pg_catalog, pg_temp"} athena_authenticate:f athena_authenticate:f',
	'1.4: the entry point (with and without a cost) runs as the caller; the twin of 1.2 stays SECURITY DEFINER with a pinned search_path for backends of the old library');

# Roles: admins made under 1.0 may call the 1.1 functions, nobody else may.
is($node->safe_psql('upgraded', q{
	SELECT string_agg(concat_ws(':', r, f, has_function_privilege(r, f, 'EXECUTE')), ' ' ORDER BY r, f)
	  FROM unnest(ARRAY['ak Admin', 'ak_ops', 'ak_gateway', 'public']) r,
	       unnest(ARRAY['athena_keys.athena_set_key_rights(uuid, text[])',
	                    'athena_keys.athena_rename_key(uuid, text, text)']) f}),
	join(' ',
		'ak Admin:athena_keys.athena_rename_key(uuid, text, text):t',
		'ak Admin:athena_keys.athena_set_key_rights(uuid, text[]):t',
		'ak_gateway:athena_keys.athena_rename_key(uuid, text, text):f',
		'ak_gateway:athena_keys.athena_set_key_rights(uuid, text[]):f',
		'ak_ops:athena_keys.athena_rename_key(uuid, text, text):t',
		'ak_ops:athena_keys.athena_set_key_rights(uuid, text[]):t',
		'public:athena_keys.athena_rename_key(uuid, text, text):f',
		'public:athena_keys.athena_set_key_rights(uuid, text[]):f'),
	'admin roles granted under 1.0 can execute the 1.1 functions; the gateway role and PUBLIC cannot');
is($node->safe_psql('upgraded', q{
	SELECT string_agg(concat_ws(':', r, has_function_privilege(r, 'athena_keys.athena_authenticate(text, text, inet, text[], integer)', 'EXECUTE'),
	                            has_function_privilege(r, 'athena_keys.athena_gateway_verdict(text, text, inet, text[])', 'EXECUTE'),
	                            has_function_privilege(r, 'athena_keys.athena_set_key_rate_limit(uuid, integer, interval, integer)', 'EXECUTE'),
	                            has_table_privilege(r, 'athena_keys.athena_rate_limits', 'SELECT')), ' ' ORDER BY r)
	  FROM unnest(ARRAY['ak Admin', 'ak_ops', 'ak_gateway', 'public']) r}),
	'ak Admin:t:t:t:t ak_gateway:t:t:f:f ak_ops:t:t:t:t public:f:f:f:f',
	'1.4: roles granted under 1.0 get the form with a cost and the compact verdict (gateway and admin) and the rate limit functions and view (admin)');

# The 1.1 functions work, called by the admin role granted before the upgrade.
$node->safe_psql('upgraded', q{
	SET ROLE "ak Admin";
	SELECT athena_keys.athena_set_key_rights(id, ARRAY['users.write']) FROM athena_keys.athena_key_status WHERE name = 'bound';
	SELECT athena_keys.athena_rename_key(id, 'renamed', 'was wild') FROM athena_keys.athena_key_status WHERE name = 'wild';
	RESET ROLE;
	UPDATE plaintext SET name = 'renamed' WHERE name = 'wild';
});
is($node->safe_psql('upgraded', q{
	SELECT string_agg(concat_ws(',', name, description, rights), ';' ORDER BY name)
	  FROM athena_keys.athena_key_status WHERE name IN ('bound', 'renamed')}),
	'bound,bound to web,{users.write};renamed,was wild,{users.*}', 'athena_set_key_rights and athena_rename_key work');
my $verdicts_after = $node->safe_psql('upgraded', $verdicts);
like($verdicts_after, qr/^bound,web,10\.1\.2\.3,users\.read,f,403,Insufficient API key rights,f,t,users\.read$/m,
	'set rights take effect: users.read is gone');
like($verdicts_after, qr/^bound,web,10\.1\.2\.3,users\.write\+gateway\.read,f,403,Insufficient API key rights,f,t,gateway\.read$/m,
	'set rights take effect: users.write is there');
like($verdicts_after, qr/^renamed,web,10\.1\.2\.3,users\.read,t,200,/m, 'a renamed key keeps working');
my $gateway_try = $node->psql('upgraded', q{
	SET ROLE ak_gateway;
	SELECT athena_keys.athena_rename_key(id, 'nope') FROM athena_keys.api_key LIMIT 1});
isnt($gateway_try, 0, 'the gateway role cannot call athena_rename_key');

########################################################################
# A fresh install has the same catalog.
########################################################################
$node->safe_psql('fresh', 'CREATE EXTENSION athena_keys');
is($node->safe_psql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'athena_keys'}),
	'1.4', 'a fresh install is at 1.4');
# PostgreSQL runs an install script of the target version when there is one
# rather than a path of updates: the fresh install is the built script's.
my $install_script = $node->config_data('--sharedir') . '/extension/athena_keys--1.4.sql';
ok(-f $install_script, 'the maintained install script athena_keys--1.4.sql is installed');
like(PostgreSQL::Test::Utils::slurp_file($install_script), qr/^\\echo Use "CREATE EXTENSION athena_keys"/m,
	'it is an install script, not an update');

# Daily auth log partitions (and their indexes) are named after the day they
# were created on; they are left out of the comparison.
my $not_daily = q{'^api_key_auth_log_p[0-9]{8}'};
my $not_daily_anywhere = q{'api_key_auth_log_p[0-9]{8}'};
my $members = qq{
	SELECT d.classid, d.objid, d.objsubid
	  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	 WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'athena_keys' AND d.deptype = 'e'
	   AND NOT (d.classid = 'pg_class'::regclass
	            AND (SELECT relname FROM pg_class WHERE oid = d.objid) ~ $not_daily)
};
my %catalog = (
	'extension members' => qq{
		SELECT string_agg(d, E'\n' ORDER BY d COLLATE "C")
		  FROM (SELECT pg_describe_object(classid, objid, objsubid) AS d FROM ($members) m) s},
	'extension configuration tables' => q{
		SELECT concat_ws(E'\n', e.extrelocatable, n.nspname,
		       (SELECT string_agg(c::regclass::text || ' ' || w, E'\n' ORDER BY c::regclass::text)
		          FROM unnest(e.extconfig, e.extcondition) AS x(c, w)))
		  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'athena_keys'},
	'daily partitions' => q{
		SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		 WHERE i.inhparent = 'athena_keys.api_key_auth_log'::regclass},
	'functions' => q{
		SELECT string_agg(concat_ws(E'\n', p.oid::regprocedure, p.prosecdef, p.proconfig, p.proowner::regrole,
		                            obj_description(p.oid, 'pg_proc'), pg_get_functiondef(p.oid)), E'\n'
		                  ORDER BY p.oid::regprocedure::text COLLATE "C")
		  FROM pg_proc p WHERE p.pronamespace = 'athena_keys'::regnamespace},
	'relations' => qq{
		SELECT string_agg(concat_ws(' ', c.relname, c.relkind, c.relpersistence, c.reloptions, c.relowner::regrole,
		                            c.relispartition, obj_description(c.oid, 'pg_class')), E'\n' ORDER BY c.relname COLLATE "C")
		  FROM pg_class c WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relname !~ $not_daily},
	'columns' => qq{
		SELECT string_agg(concat_ws(' ', c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
		                            a.attnotnull, a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid),
		                            a.attcollation, a.attacl), E'\n'
		                  ORDER BY c.relname COLLATE "C", a.attnum)
		  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		 WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relname !~ $not_daily
		   AND c.relkind IN ('r', 'p', 'v', 'c') AND a.attnum > 0 AND NOT a.attisdropped},
	'constraints' => qq{
		SELECT string_agg(concat_ws(' ', coalesce(c.relname, t.typname), k.conname, pg_get_constraintdef(k.oid)), E'\n'
		                  ORDER BY coalesce(c.relname, t.typname) COLLATE "C", k.conname COLLATE "C")
		  FROM pg_constraint k LEFT JOIN pg_class c ON c.oid = k.conrelid LEFT JOIN pg_type t ON t.oid = k.contypid
		 WHERE k.connamespace = 'athena_keys'::regnamespace AND coalesce(c.relname, '') !~ $not_daily},
	'indexes' => qq{
		SELECT string_agg(pg_get_indexdef(i.indexrelid), E'\n' ORDER BY ic.relname COLLATE "C")
		  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class tc ON tc.oid = i.indrelid
		 WHERE tc.relnamespace = 'athena_keys'::regnamespace AND tc.relname !~ $not_daily},
	'triggers' => q{
		SELECT string_agg(pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text, E'\n'
		                  ORDER BY c.relname COLLATE "C", t.tgname COLLATE "C")
		  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		 WHERE c.relnamespace = 'athena_keys'::regnamespace AND NOT t.tgisinternal},
	'views' => q{
		SELECT string_agg(c.relname || E'\n' || pg_get_viewdef(c.oid), E'\n' ORDER BY c.relname COLLATE "C")
		  FROM pg_class c WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind = 'v'},
	'types' => q{
		SELECT string_agg(concat_ws(' ', t.typname, t.typtype, t.typowner::regrole, obj_description(t.oid, 'pg_type')), E'\n'
		                  ORDER BY t.typname COLLATE "C")
		  FROM pg_type t WHERE t.typnamespace = 'athena_keys'::regnamespace AND t.typname !~ '^_?api_key_auth_log_p[0-9]{8}$'},
	'sequences' => q{
		SELECT string_agg(concat_ws(' ', s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart, s.seqincrement,
		                            s.seqmax, s.seqmin, s.seqcache, s.seqcycle), E'\n' ORDER BY s.seqrelid::regclass::text)
		  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'athena_keys'::regnamespace},
	# ACL entries of PUBLIC and of the owner (the admin and gateway roles of
	# the upgraded database are the operator's, not the extension's).
	'privileges of PUBLIC and the owner' => qq{
		WITH acls AS (
			SELECT m.classid, m.objid, c.relacl AS acl, c.relowner AS owner,
			       CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char" AS kind
			  FROM ($members) m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
			UNION ALL
			SELECT m.classid, m.objid, p.proacl, p.proowner, 'f'
			  FROM ($members) m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
			UNION ALL
			SELECT m.classid, m.objid, t.typacl, t.typowner, 'T'
			  FROM ($members) m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
			UNION ALL
			SELECT 'pg_namespace'::regclass, n.oid, n.nspacl, n.nspowner, 'n'
			  FROM pg_namespace n WHERE n.nspname = 'athena_keys'
		)
		SELECT string_agg(d || ': ' || coalesce(p, '(none)'), E'\n' ORDER BY d COLLATE "C")
		  FROM (SELECT pg_describe_object(a.classid, a.objid, 0) AS d,
		               (SELECT string_agg(e, ',' ORDER BY e COLLATE "C")
		                  FROM (SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE 'owner' END || '=' || x.privilege_type
		                               || CASE WHEN x.is_grantable THEN '*' ELSE '' END AS e
		                  FROM aclexplode(coalesce(a.acl, acldefault(a.kind, a.owner))) x
		                 WHERE x.grantee IN (0, a.owner)) y) AS p
		          FROM acls a) s},
	'initial privileges (pg_init_privs)' => qq{
		SELECT string_agg(e, E'\n' ORDER BY e COLLATE "C")
		  FROM (SELECT concat_ws(' ', pg_describe_object(i.classoid, i.objoid, i.objsubid), i.privtype, i.initprivs) AS e
		          FROM pg_init_privs i
		         WHERE (i.classoid, i.objoid) IN (SELECT classid, objid FROM ($members) m)) s},
	'native rights' => q{
		SELECT string_agg(concat_ws(',', name, description), E'\n' ORDER BY name) FROM athena_keys.api_key_right WHERE native},
	# pg_dump decides from the order of extconfig too; keep it.
	'extension configuration order' => q{
		SELECT string_agg(x.c::regclass::text || ' ' || x.w, E'\n' ORDER BY x.o)
		  FROM pg_extension e, unnest(e.extconfig, e.extcondition) WITH ORDINALITY AS x(c, w, o)
		 WHERE e.extname = 'athena_keys'},
	'event triggers' => q{
		SELECT string_agg(concat_ws(' ', t.evtname, t.evtevent, t.evtowner::regrole, t.evtfoid::regprocedure,
		                            t.evtenabled, t.evttags), E'\n' ORDER BY t.evtname COLLATE "C")
		  FROM pg_event_trigger t},
	# Comments on anything of the schema: members, columns, constraints,
	# triggers, and the extension itself.
	'comments' => qq{
		SELECT string_agg(e, E'\n' ORDER BY e COLLATE "C")
		  FROM (SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid) || ': ' || d.description AS e
		          FROM pg_description d) s
		 WHERE e ~ 'athena_keys' AND e !~ $not_daily_anywhere},
	'default privileges' => q{
		SELECT coalesce(string_agg(concat_ws(' ', a.defaclrole::regrole, a.defaclnamespace::regnamespace,
		                                     a.defaclobjtype, a.defaclacl), E'\n' ORDER BY 1), '(none)')
		  FROM pg_default_acl a},
	# What depends on what inside the extension (a function's SQL body on a
	# table, a view on its tables, an index on its columns...).
	'dependencies' => qq{
		SELECT string_agg(e, E'\n' ORDER BY e COLLATE "C")
		  FROM (SELECT DISTINCT concat_ws(' ', pg_describe_object(d.classid, d.objid, d.objsubid), d.deptype,
		                                  pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)) AS e
		          FROM pg_depend d
		         WHERE (d.refclassid = 'pg_namespace'::regclass AND d.refobjid = 'athena_keys'::regnamespace)
		            OR (d.refclassid = 'pg_extension'::regclass
		                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'athena_keys'))
		            OR (d.refclassid = 'pg_class'::regclass
		                AND d.refobjid IN (SELECT oid FROM pg_class WHERE relnamespace = 'athena_keys'::regnamespace))
		            OR (d.refclassid = 'pg_proc'::regclass
		                AND d.refobjid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'athena_keys'::regnamespace))
		            OR (d.refclassid = 'pg_type'::regclass
		                AND d.refobjid IN (SELECT oid FROM pg_type WHERE typnamespace = 'athena_keys'::regnamespace))) s
		 WHERE e !~ $not_daily_anywhere AND e !~ 'pg_toast'},
	# The daily partitions by shape: bounds relative to the first one,
	# privileges, owner, membership.
	'daily partitions by shape' => q{
		SELECT string_agg(concat_ws(' ', b.lower_bound - f.first, b.upper_bound - b.lower_bound, b.is_member,
		                            c.relowner::regrole, c.relacl, c.relpersistence), E'\n' ORDER BY b.lower_bound)
		  FROM athena_keys._auth_log_partition_bounds() b JOIN pg_class c ON c.oid = b.part,
		       (SELECT min(lower_bound) AS first FROM athena_keys._auth_log_partition_bounds()) f},
);
########################################################################
# 1.2 -> 1.4: a database installed at 1.2, with keys (IP lists, learning),
# rules and an admin role, updated in place.
########################################################################
$node->safe_psql('from12', q{CREATE EXTENSION athena_keys VERSION '1.2'});
$node->safe_psql('from12', q{
	SELECT athena_keys.athena_grant_admin_role('ak_ops');
	CREATE TABLE plaintext (name text PRIMARY KEY, api_key text);
	INSERT INTO plaintext SELECT 'lists', api_key FROM athena_keys.athena_create_key('lists',
		rights => ARRAY['gateway.read'], ip_whitelist => ARRAY['10.0.0.0/8']::cidr[],
		ip_blacklist => ARRAY['10.66.0.0/16']::cidr[]);
	INSERT INTO plaintext SELECT 'learning', api_key FROM athena_keys.athena_create_key('learning',
		virgin_mode => true, virgin_until_n_requests => 50);
	INSERT INTO plaintext SELECT 'off', api_key FROM athena_keys.athena_create_key('off', rights => ARRAY['*']);
	SELECT athena_keys.athena_set_key_active(id, false) FROM athena_keys.api_key WHERE name = 'off';
	SELECT athena_keys.athena_authenticate(api_key, NULL, '192.0.2.1', NULL) FROM plaintext WHERE name = 'learning';
	SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24');
});
my $verdicts12 = q{
	BEGIN;
	SELECT string_agg(concat(p.name, ',', r.ip, ',', a.allowed, ',', a.status, ',', a.reason), E'\n'
	                  ORDER BY p.name, r.ip)
	  FROM plaintext p, (VALUES ('10.1.2.3'::inet), ('10.66.0.1'), ('203.0.113.5'), ('192.0.2.9')) AS r(ip),
	       LATERAL athena_keys.athena_authenticate(p.api_key, NULL, r.ip, ARRAY['gateway.read']) a;
	ROLLBACK;
};
my $verdicts12_before = $node->safe_psql('from12', $verdicts12);
like($verdicts12_before, qr/^lists,10\.66\.0\.1,f,403,IP blocked$/m, '1.2 database: the matrix includes refusals');
$node->safe_psql('from12', q{ALTER EXTENSION athena_keys UPDATE});
is($node->safe_psql('from12', q{SELECT extversion FROM pg_extension WHERE extname = 'athena_keys'}),
	'1.4', 'the 1.2 database is updated to 1.4');
is($node->safe_psql('from12', $verdicts12), $verdicts12_before, 'and gives the same verdicts');
$node->safe_psql('from12', q{
	SELECT athena_keys.athena_add_ip_rule('whitelist', '10.1.0.0/16', key_id => id) FROM athena_keys.api_key WHERE name = 'lists'});
is($node->safe_psql('from12', q{SELECT count(*) FROM athena_keys.api_key_ip_rule}), '3', 'rules can be added after the update');
is($node->safe_psql('from12', q{
	SELECT has_function_privilege('ak_ops', 'athena_keys.athena_record_decisions(jsonb)', 'EXECUTE')}),
	't', 'an admin role granted before 1.3 keeps what it was granted (1.3 only stops new grants)');

# Deletes made under session_replication_role = replica before 1.4 left
# rows behind (1.3's functions left them to the foreign keys' cascades,
# which do not fire there): a grant of a deleted right, which still
# authorized its key, and a deleted key's grant, rule and seen address.
# The update removes them; a later dump restores.
$node->safe_psql('postgres', 'CREATE DATABASE orphans');
$node->safe_psql('orphans', q{
	CREATE EXTENSION athena_keys VERSION '1.3';
	SELECT athena_keys.athena_create_right('orders.read');
	CREATE TABLE plaintext AS SELECT 'kept' AS name, api_key FROM athena_keys.athena_create_key('kept',
		rights => ARRAY['orders.read', 'gateway.write']);
	SELECT athena_keys.athena_create_key('gone', rights => ARRAY['gateway.read'],
		ip_whitelist => ARRAY['10.0.0.0/8']::cidr[]);
	SELECT athena_keys.athena_authenticate(k.api_key, NULL, '10.0.0.1', NULL) FROM plaintext k;
	INSERT INTO athena_keys.api_key_ip_seen (api_key_id, addr) SELECT id, '10.0.0.1' FROM athena_keys.api_key WHERE name = 'gone';
	SET session_replication_role = replica;
	SELECT athena_keys.athena_delete_right('orders.read');
	SELECT athena_keys.athena_delete_key(id) FROM athena_keys.api_key WHERE name = 'gone';
	RESET session_replication_role;
});
my $orphans = q{SELECT concat_ws(',',
	(SELECT count(*) FROM athena_keys.api_key_right_grant g
	  WHERE NOT EXISTS (SELECT 1 FROM athena_keys.api_key_right r WHERE r.name = g.right_name)),
	(SELECT count(*) FROM athena_keys.api_key_right_grant g
	  WHERE NOT EXISTS (SELECT 1 FROM athena_keys.api_key k WHERE k.id = g.api_key_id)),
	(SELECT count(*) FROM athena_keys.api_key_ip_rule x
	  WHERE NOT EXISTS (SELECT 1 FROM athena_keys.api_key k WHERE k.id = x.api_key_id)),
	(SELECT count(*) FROM athena_keys.api_key_ip_seen x
	  WHERE NOT EXISTS (SELECT 1 FROM athena_keys.api_key k WHERE k.id = x.api_key_id)))};
my $orders_read = q{SELECT status || ' ' || coalesce(reason, '-')
	FROM plaintext k, athena_keys.athena_authenticate(k.api_key, NULL, '10.0.0.1', ARRAY['orders.read'])};
is($node->safe_psql('orphans', $orphans), '1,1,1,1', '1.3 under the replica role leaves rows behind');
is($node->safe_psql('orphans', $orders_read), '200 -', 'and a deleted right still authorizes its key');
$node->safe_psql('orphans', 'ALTER EXTENSION athena_keys UPDATE');
is($node->safe_psql('orphans', $orphans), '0,0,0,0', 'the update to 1.4 removes them');
is($node->safe_psql('orphans', $orders_read), '403 Insufficient API key rights',
	'and the deleted right no longer authorizes');
is($node->safe_psql('orphans', q{SELECT string_agg(right_name, ',' ORDER BY right_name)
	FROM athena_keys.api_key_right_grant}), 'gateway.write', 'the kept key keeps its other grant');

########################################################################
# A database still at 1.3 under the 1.4 library has no table of rate
# limits, by design: its backends' key caches are not thrown away by every
# other session's unrelated DDL (a missing watched table would make each
# relation invalidation count as a key table's), and the update to 1.4,
# whose new table the caches then read, reaches a backend's next call.
########################################################################
$node->safe_psql('postgres', 'CREATE DATABASE at13');
$node->safe_psql('at13', q{
	CREATE EXTENSION athena_keys VERSION '1.3';
	CREATE TABLE plaintext AS SELECT api_key, id FROM athena_keys.athena_create_key('at 1.3');
	CREATE TABLE unrelated AS SELECT g AS n FROM generate_series(1, 10) g;});
my $at13 = AthenaSession->new($node, 'at13');
$at13->query(q{SET athena_keys.log_decisions = none;});
$at13->query(q{CREATE FUNCTION pg_temp.key_reads() RETURNS bigint LANGUAGE plpgsql AS $f$
	DECLARE
		scans text := 'SELECT sum(pg_stat_get_xact_numscans(indexrelid))::bigint FROM pg_index
		                WHERE indrelid = ''athena_keys.api_key''::regclass';
		before bigint;
		after bigint;
	BEGIN
		EXECUTE scans INTO before;
		PERFORM athena_keys.athena_authenticate(k.api_key, NULL, '10.0.0.1', NULL) FROM plaintext k;
		EXECUTE scans INTO after;
		RETURN after - before;
	END $f$;});
cmp_ok($at13->query('SELECT pg_temp.key_reads();'), '>', 0,
	'at 1.3: the first call reads the key (and stamps its last use)');
is($at13->query('SELECT pg_temp.key_reads();'), '0', 'the next is served from the backend\'s cache');
$node->safe_psql('at13', 'CREATE TEMP TABLE scratch (n int); ANALYZE unrelated; CREATE TABLE more (n int)');
is($at13->query('SELECT pg_temp.key_reads();'), '0',
	'other sessions\' unrelated DDL leaves the cache alone (not thrown away for a missing table)');
$node->safe_psql('at13', q{ALTER EXTENSION athena_keys UPDATE;
	SELECT athena_keys.athena_set_key_rate_limit(id, 1, '1 hour', 1) FROM plaintext;});
is($at13->query(q{SELECT string_agg(a.status::text, ',') FROM plaintext k, generate_series(1, 2) g,
	LATERAL athena_keys.athena_authenticate(k.api_key, NULL, '10.0.0.1', NULL) a;}),
	'503,503', 'after the update the same backend reads the new table: the key\'s limit applies '
	  . '(this node does not preload athena_keys, so a limit makes the policy unavailable)');
$at13->quit;

########################################################################
# Databases made at 1.0, 1.1, 1.2 and 1.3 and updated with nothing done in
# them: what pg_dump prints of them equals what it prints of a fresh
# install, including, with --binary-upgrade, every member object of the
# extension with its privileges and initial privileges.
########################################################################
my %made_at;
for my $from ('1.0', '1.1', '1.2', '1.3') {
	(my $db = "pristine$from") =~ s/\.//;
	$made_at{$db} = $from;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION athena_keys VERSION '$from'");
	$node->safe_psql($db, 'ALTER EXTENSION athena_keys UPDATE');
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'athena_keys'}),
		'1.4', "a database made at $from is updated to 1.4");
}
my @pristine = sort keys %made_at;

# The update builds the log's time index again, as a BRIN, which summarizes
# each partition's still-filling last range too; on the default partition
# and on the partitions of today and the days ahead it leaves that range
# unsummarized, as a partition made later does (brin_summarize_range
# returns how many ranges it summarized: 1, range 0, in each; the rows and
# the summaries are rolled back, so the dumps compared below stay a fresh
# install's).
for my $db (@pristine) {
	is($node->safe_psql($db, q{
		BEGIN;
		INSERT INTO athena_keys.api_key_auth_log (id, created_at, authenticated, authorized, enforced, allowed, status)
		VALUES (1, now(), true, true, true, true, 200), (2, '2200-01-01', true, true, true, true, 200);
		SELECT string_agg(brin_summarize_range(i.indexrelid::regclass, 0)::text, ',' ORDER BY i.indrelid::regclass::text)
		  FROM pg_index i
		  JOIN pg_class c ON c.oid = i.indexrelid
		  JOIN pg_am a ON a.oid = c.relam AND a.amname = 'brin'
		 WHERE i.indrelid IN ('athena_keys.api_key_auth_log_default'::regclass,
		                      ('athena_keys.' || athena_keys._auth_log_partition_name(
		                          (now() AT TIME ZONE 'UTC')::date))::regclass);
		ROLLBACK}),
		'1,1', "$db: the update leaves range 0 of today's and the default partition's BRIN unsummarized");
}

# pg_dump --schema-only of one database, without what differs between any
# two databases: OIDs, relfilenodes and frozen xids (--binary-upgrade), the
# \restrict key, and the daily partitions (named after the day they were
# made; compared by shape in %catalog).
sub schema_dump
{
	my ($db, @options) = @_;
	my ($dump, $stderr) = ('', '');
	IPC::Run::run([ 'pg_dump', '--schema-only', @options, '-d', $node->connstr($db) ],
		'>', \$dump, '2>', \$stderr)
	  or die "pg_dump @options of $db failed: $stderr";
	$dump =~ s/^\\(?:un)?restrict \S+\n//mg;
	$dump =~ s/(binary_upgrade_set_next_\w+)\('[^']*'/$1('N'/g;
	$dump =~ s/(binary_upgrade_create_empty_extension\('athena_keys', 'athena_keys', false, '[^']*', )'\{[0-9,]*\}'/$1'{N}'/;
	$dump =~ s/^SET relfrozenxid = '\d+', relminmxid = '\d+'$/SET relfrozenxid = 'N', relminmxid = 'N'/mg;
	$dump =~ s/^WHERE oid = '\d+';$/WHERE oid = 'N';/mg;
	my @entries = split /(?=^--\n-- (?:Data for )?Name: )/m, $dump;
	return join '', grep { !/\A--\n-- (?:Data for )?Name: [^\n]*api_key_auth_log_p[0-9]{8}/ } @entries;
}

# From 18 on pg_dump can dump planner statistics, which differ between
# databases for reasons other than their objects; they are left out.
my @no_statistics = $node->pg_version >= 18 ? ('--no-statistics') : ();
my %dump_options = ('pg_dump --schema-only' => [@no_statistics],
	'pg_dump --schema-only --binary-upgrade' => [ '--binary-upgrade', @no_statistics ]);
for my $how (sort keys %dump_options) {
	my $fresh = schema_dump('fresh', @{ $dump_options{$how} });
	like($fresh, qr/athena_keys/, "$how of a fresh install names the extension");
	for my $db (@pristine) {
		is_same_text(schema_dump($db, @{ $dump_options{$how} }), $fresh, $db, 'fresh',
			"$how of a database made at $made_at{$db} and updated equals a fresh install's");
	}
}
like(schema_dump('fresh', '--binary-upgrade', @no_statistics), qr/^ALTER EXTENSION athena_keys ADD FUNCTION athena_keys\.athena_authenticate\(/m,
	'the --binary-upgrade dump lists the members of the extension');

########################################################################
# The catalog of every updated database, filled or not, equals a fresh
# install's.
########################################################################
my %compared = (upgraded => 'the filled database made at 1.0', from12 => 'the filled database made at 1.2',
	map { $_ => "the database made at $made_at{$_}" } @pristine);
# Partitions made after the update get the log's indexes as a fresh
# install's do, names included (a new partition copies them in the order
# they were made).
for my $db ('fresh', sort keys %compared) {
	$node->safe_psql($db, 'SELECT athena_keys.athena_maintain_auth_log(10)');
}
$catalog{'daily partition indexes'} = q{
	SELECT string_agg(concat_ws(' ', b.lower_bound - f.first,
	                            regexp_replace(pg_get_indexdef(i.indexrelid), 'api_key_auth_log_p[0-9]{8}', 'P', 'g')),
	                  E'\n' ORDER BY b.lower_bound, pg_get_indexdef(i.indexrelid) COLLATE "C")
	  FROM athena_keys._auth_log_partition_bounds() b JOIN pg_index i ON i.indrelid = b.part,
	       (SELECT min(lower_bound) AS first FROM athena_keys._auth_log_partition_bounds()) f};
for my $what (sort keys %catalog) {
	my $fresh = $node->safe_psql('fresh', $catalog{$what});
	isnt($fresh, '', "catalog: $what is not empty");
	for my $db (sort keys %compared) {
		is_same_text($node->safe_psql($db, $catalog{$what}), $fresh, $db, 'fresh',
			"catalog: $what of $compared{$db}, updated, equals a fresh install's");
	}
}
like($node->safe_psql('fresh', $catalog{'extension members'}), qr/^function athena_keys\.athena_set_key_rights\(uuid,text\[\]\)$/m,
	'the member list includes the 1.1 functions');

########################################################################
# pg_dump of the upgraded database restores with the admin roles' grants
# on the 1.1 functions (they must not be recorded as the extension's own
# initial privileges, which pg_dump leaves out).
########################################################################
my $dump = $node->basedir . '/upgraded.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('upgraded') ], 'pg_dump of the upgraded database succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a fresh database succeeds');
is($node->safe_psql('restored', q{SELECT extversion FROM pg_extension WHERE extname = 'athena_keys'}),
	'1.4', 'the restored database is at 1.4');
is($node->safe_psql('restored', $verdicts), $verdicts_after, 'every key gives the same verdicts after restore');
is($node->safe_psql('restored', q{
	SELECT string_agg(concat_ws(':', r, has_function_privilege(r, 'athena_keys.athena_set_key_rights(uuid, text[])', 'EXECUTE'),
	                            has_function_privilege(r, 'athena_keys.athena_rename_key(uuid, text, text)', 'EXECUTE')), ' ' ORDER BY r COLLATE "C")
	  FROM unnest(ARRAY['ak Admin', 'ak_ops', 'ak_gateway', 'public']) r}),
	'ak Admin:t:t ak_gateway:f:f ak_ops:t:t public:f:f',
	'after restore the admin roles still execute the 1.1 functions, nobody else does');
$node->safe_psql('restored', q{
	SET ROLE ak_ops;
	SELECT athena_keys.athena_set_key_rights(id, '{}') FROM athena_keys.athena_key_status WHERE name = 'renamed';
});
is($node->safe_psql('restored', q{SELECT rights FROM athena_keys.athena_key_status WHERE name = 'renamed'}),
	'{}', 'an admin role calls athena_set_key_rights in the restored database');

$node->stop;
done_testing();
