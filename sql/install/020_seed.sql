--------------------------------------------------------------------------
-- Seed data: the configuration row and the native rights.
--------------------------------------------------------------------------

INSERT INTO athena_keys.api_key_config DEFAULT VALUES;

-- athena_create_right (081_admin_rights.sql) lists these names too: one of
-- them created again after a delete is native again.
INSERT INTO athena_keys.api_key_right (name, description, native) VALUES
	('*', 'Every right', true),
	('gateway.*', 'Every gateway right', true),
	('gateway.read', 'Read any resource through the gateway', true),
	('gateway.write', 'Insert or update any resource through the gateway', true),
	('gateway.delete', 'Delete from any resource through the gateway', true),
	('gateway.query', 'Run raw SQL through /gateway/query and /gateway/sql', true),
	('gateway.rpc.execute', 'Call functions through /gateway/rpc', true),
	('gateway.storage_proxy', 'Use the storage proxy routes', true),
	('gateway.typesense_proxy', 'Use the Typesense proxy routes', true),
	('management.read', 'Read management metadata', true),
	('management.tables.write', 'Create or alter tables', true),
	('management.tables.drop', 'Drop tables', true),
	('management.columns.drop', 'Drop columns', true),
	('management.indexes.write', 'Create indexes', true),
	('management.indexes.drop', 'Drop indexes', true),
	('management.extensions.write', 'Install extensions', true),
	('management.functions.read', 'Read function definitions', true),
	('management.functions.write', 'Create or replace functions', true),
	('management.functions.drop', 'Drop functions', true),
	('management.provision.write', 'Provision databases', true),
	('*.read', 'Read on any resource', true),
	('*.write', 'Write on any resource', true),
	('*.delete', 'Delete on any resource', true);
