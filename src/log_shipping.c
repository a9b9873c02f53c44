/*-------------------------------------------------------------------------
 * log_shipping.c
 *		A hot standby's log writer sending its batches to the primary.
 *
 * Nothing can be inserted on a hot standby, so there the writer sends
 * each batch to the primary with one call of athena_record_decisions over
 * libpq (athena_keys.primary_conninfo, else primary_conninfo), as a JSON
 * array of objects keyed by log_columns[]' names; the rows stay queued
 * while the primary cannot be reached.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"
#include "log_row.h"
#include "log_record.h"
#include "log_shipping.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "libpq-fe.h"

static PGconn *primary_conn = NULL;
static TimestampTz last_ship_warning = 0;

/* Output functions of the logged columns (of their elements for arrays) */
static FmgrInfo column_output[LOG_COLUMNS];
static bool column_output_known = false;

/* Look up the output functions once: the columns' types are built in */
static void
LearnColumnOutput(void)
{
	int			col;

	if (column_output_known)
		return;
	for (col = 0; col < LOG_COLUMNS; col++)
	{
		Oid			type = log_columns[col].type;
		Oid			element = get_element_type(type);
		Oid			output;
		bool		varlena;

		getTypeOutputInfo(OidIsValid(element) ? element : type, &output, &varlena);
		fmgr_info_cxt(output, &column_output[col], TopMemoryContext);
	}
	column_output_known = true;
}

/* Append a column's value as JSON: booleans, numbers, arrays, else strings */
static void
AppendColumnJson(StringInfo buf, int col, Datum value)
{
	Oid			type = log_columns[col].type;
	Oid			element = get_element_type(type);

	if (type == BOOLOID)
		appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
	else if (type == INT2OID)
		appendStringInfo(buf, "%d", (int) DatumGetInt16(value));
	else if (OidIsValid(element))
	{
		ArrayType  *arr = DatumGetArrayTypeP(value);
		int16		elmlen;
		bool		elmbyval;
		char		elmalign;
		Datum	   *elems;
		bool	   *elem_nulls;
		int			n;
		int			i;

		get_typlenbyvalalign(element, &elmlen, &elmbyval, &elmalign);
		deconstruct_array(arr, element, elmlen, elmbyval, elmalign, &elems, &elem_nulls, &n);
		appendStringInfoChar(buf, '[');
		for (i = 0; i < n; i++)
		{
			if (i > 0)
				appendStringInfoChar(buf, ',');
			if (elem_nulls[i])
				appendStringInfoString(buf, "null");
			else
				escape_json(buf, OutputFunctionCall(&column_output[col], elems[i]));
		}
		appendStringInfoChar(buf, ']');
	}
	else
		escape_json(buf, OutputFunctionCall(&column_output[col], value));
}

/* Append one queued record as a JSON object in api_key_auth_log's shape */
static void
AppendRecordJson(StringInfo buf, const char *record)
{
	Datum		values[LOG_COLUMNS];
	bool		nulls[LOG_COLUMNS];
	int			col;

	(void) DecodeLogRecord(record, values, nulls);
	appendStringInfoChar(buf, '{');
	for (col = 0; col < LOG_COLUMNS; col++)
	{
		if (col > 0)
			appendStringInfoChar(buf, ',');
		escape_json(buf, log_columns[col].name);
		appendStringInfoChar(buf, ':');
		if (nulls[col])
			appendStringInfoString(buf, "null");
		else
			AppendColumnJson(buf, col, values[col]);
	}
	appendStringInfoChar(buf, '}');
}

/* Warn at most once a minute that shipping fails (the rows stay queued) */
static void
WarnShippingFailed(const char *why)
{
	TimestampTz now = GetCurrentTimestamp();

	if (TimestampDifferenceExceeds(last_ship_warning, now, 60000))
	{
		ereport(WARNING,
				(errmsg("athena_keys log writer cannot send standby decisions to the primary"),
				 errdetail("%s", why),
				 errhint("Set athena_keys.primary_conninfo to a connection string of the primary for a role that may execute athena_keys.athena_record_decisions.")));
		last_ship_warning = now;
	}
}

/*
 * Connect to the primary: athena_keys.primary_conninfo, else the standby's
 * primary_conninfo with this database's name.  Timeouts and keepalives come
 * first so that a hung or unreachable primary never stalls the writer (or a
 * clean shutdown) for long, and transactions that may write (a primary
 * database with default_transaction_read_only = on would refuse every
 * batch); settings in the connection string override them.
 * Returns NULL, with a warning, when there is nothing to connect to or the
 * connection fails.
 */
static PGconn *
ConnectToPrimary(const char *database_name)
{
	const char *keywords[9];
	const char *values[9];
	int			n = 0;
	const char *conninfo = athena_primary_conninfo;
	PGconn	   *conn;

	keywords[n] = "connect_timeout", values[n++] = "5";
	keywords[n] = "keepalives_idle", values[n++] = "10";
	keywords[n] = "keepalives_interval", values[n++] = "5";
	keywords[n] = "keepalives_count", values[n++] = "3";
	/* The rows go into the primary's log whatever its databases' defaults say */
	keywords[n] = "options", values[n++] = "-c statement_timeout=30000 -c default_transaction_read_only=off";
	keywords[n] = "application_name", values[n++] = "athena_keys log writer";
	if (conninfo == NULL || conninfo[0] == '\0')
	{
		conninfo = GetConfigOption("primary_conninfo", true, false);
		if (conninfo == NULL || conninfo[0] == '\0')
		{
			WarnShippingFailed("Neither athena_keys.primary_conninfo nor primary_conninfo is set.");
			return NULL;
		}
		/* The first dbname is expanded as a connection string, a second is a name */
		keywords[n] = "dbname", values[n++] = conninfo;
		keywords[n] = "dbname", values[n++] = database_name;
	}
	else
		keywords[n] = "dbname", values[n++] = conninfo;
	keywords[n] = NULL, values[n] = NULL;

	conn = PQconnectdbParams(keywords, values, 1);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		WarnShippingFailed(PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/*
 * Send the queued records of buffer[0, len) to the primary in one call,
 * in a transaction (the records are decoded with the catalogs' output
 * functions).  Returns whether the primary took them; on failure they stay
 * queued.
 */
bool
ShipToPrimary(const char *buffer, uint64 len, const char *database_name)
{
	StringInfoData json;
	uint64		pos;
	PGresult   *res;
	const char *params[1];
	bool		ok;

	if (primary_conn != NULL && PQstatus(primary_conn) != CONNECTION_OK)
	{
		PQfinish(primary_conn);
		primary_conn = NULL;
	}
	if (primary_conn == NULL)
	{
		primary_conn = ConnectToPrimary(database_name);
		if (primary_conn == NULL)
			return false;
	}

	LearnColumnOutput();
	initStringInfo(&json);
	appendStringInfoChar(&json, '[');
	for (pos = 0; pos < len; pos += LogRecordLength(buffer + pos))
	{
		if (pos > 0)
			appendStringInfoChar(&json, ',');
		AppendRecordJson(&json, buffer + pos);
	}
	appendStringInfoChar(&json, ']');

	params[0] = json.data;
	res = PQexecParams(primary_conn,
					   "SELECT athena_keys.athena_record_decisions($1::pg_catalog.jsonb)",
					   1, NULL, params, NULL, NULL, 0);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok)
		WarnShippingFailed(PQerrorMessage(primary_conn));
	PQclear(res);
	pfree(json.data);
	return ok;
}
