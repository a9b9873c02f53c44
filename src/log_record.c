/*-------------------------------------------------------------------------
 * log_record.c
 *		Encoding a log row into the bytes of one queue record, and back.
 *
 * A record is a header (its padded length, flags, which columns are NULL)
 * followed by the non-NULL columns of log_columns[] in order, each stored
 * as its type is: a by-value type as its typlen bytes (read with memcpy,
 * unaligned), a fixed-length by-reference type as its bytes, a varlena as
 * a uint32 length (unaligned) and the whole (detoasted) varlena.  A
 * by-reference value starts where its type's alignment wants it, counted
 * from the record's start, and records start LOG_RECORD_ALIGN-aligned in
 * the ring and in the buffers it is read into: decoding points at the
 * values where they are instead of copying them, which the log writer
 * would otherwise pay for once more per row.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"
#include "log_row.h"
#include "log_record.h"

#include "access/tupmacs.h"
#include "fmgr.h"
#include "utils/lsyscache.h"

typedef struct LogRecordHeader
{
	uint32		total_len;		/* header + columns, padded to LOG_RECORD_ALIGN */
	uint16		flags;
	uint16		unused;
	uint32		null_columns;	/* bit i set: column i is NULL */
} LogRecordHeader;

StaticAssertDecl(LOG_COLUMNS <= 32, "a record's NULL bitmap has 32 bits");

/* How each column is stored, looked up once (the types are built in) */
static int16 column_typlen[LOG_COLUMNS];
static bool column_byval[LOG_COLUMNS];
static char column_align[LOG_COLUMNS];
static bool column_storage_known = false;

/* Look up the storage of log_columns[]' types; runs in a transaction */
static void
LearnColumnStorage(void)
{
	int			col;

	if (column_storage_known)
		return;
	for (col = 0; col < LOG_COLUMNS; col++)
	{
		get_typlenbyvalalign(log_columns[col].type, &column_typlen[col], &column_byval[col],
							 &column_align[col]);
		if (column_typlen[col] < 0 && column_typlen[col] != -1)
			elog(ERROR, "athena_keys: log column \"%s\" has an unsupported type",
				 log_columns[col].name);
		if (column_byval[col] && column_typlen[col] != 1 && column_typlen[col] != 2 &&
			column_typlen[col] != 4 && column_typlen[col] != 8)
			elog(ERROR, "athena_keys: log column \"%s\" has an unsupported type",
				 log_columns[col].name);
		/* Records are aligned to LOG_RECORD_ALIGN, so no type may want more */
		if (!column_byval[col] && att_align_nominal(1, column_align[col]) > LOG_RECORD_ALIGN + 1)
			elog(ERROR, "athena_keys: log column \"%s\" has an unsupported type",
				 log_columns[col].name);
	}
	column_storage_known = true;
}

/*
 * Where a non-NULL column's value starts in a record when the previous
 * column ended at offset (counted from the record's start), and, for a
 * varlena, where its length goes (*length_at)
 */
static pg_attribute_always_inline Size
ColumnStart(int col, Size offset, Size *length_at)
{
	*length_at = offset;
	if (column_byval[col])
		return offset;
	if (column_typlen[col] == -1)
		offset += sizeof(uint32);
	return att_align_nominal(offset, column_align[col]);
}

/* The bytes a non-NULL column's value itself takes in a record */
static pg_attribute_always_inline Size
ColumnSize(int col, Datum value)
{
	if (column_typlen[col] > 0)
		return column_typlen[col];
	return VARSIZE_ANY(DatumGetPointer(value));
}

/*
 * The padded size of the record of a row.  Replaces compressed or
 * out-of-line varlena values by their detoasted form, so that encoding
 * copies exactly what was measured.
 */
Size
LogRecordSize(Datum *values, const bool *nulls)
{
	Size		total = sizeof(LogRecordHeader);
	Size		length_at;
	int			col;

	if (!column_storage_known)
		LearnColumnStorage();
	for (col = 0; col < LOG_COLUMNS; col++)
	{
		if (nulls[col])
			continue;
		if (column_typlen[col] == -1)
			values[col] = PointerGetDatum(PG_DETOAST_DATUM_PACKED(values[col]));
		total = ColumnStart(col, total, &length_at) + ColumnSize(col, values[col]);
	}
	return TYPEALIGN(LOG_RECORD_ALIGN, total);
}

/*
 * Write the record of a row into record[0, size), size being what
 * LogRecordSize returned for the same values
 */
void
EncodeLogRecord(const Datum *values, const bool *nulls, uint16 flags,
				char *record, Size size)
{
	LogRecordHeader header;
	Size		offset = sizeof(header);
	int			col;

	memset(record, 0, size);
	memset(&header, 0, sizeof(header));
	header.total_len = (uint32) size;
	header.flags = flags;
	for (col = 0; col < LOG_COLUMNS; col++)
	{
		int16		typlen = column_typlen[col];
		Size		length_at;
		Size		start;

		if (nulls[col])
		{
			header.null_columns |= (uint32) 1 << col;
			continue;
		}
		start = ColumnStart(col, offset, &length_at);
		if (column_byval[col])
		{
			union
			{
				char		c;
				int16		i16;
				int32		i32;
				int64		i64;
			}			v;

			/* Fixed-size copies, which the compiler turns into plain stores */
			switch (typlen)
			{
				case 1:
					v.c = DatumGetChar(values[col]);
					memcpy(record + start, &v.c, 1);
					break;
				case 2:
					v.i16 = DatumGetInt16(values[col]);
					memcpy(record + start, &v.i16, 2);
					break;
				case 4:
					v.i32 = DatumGetInt32(values[col]);
					memcpy(record + start, &v.i32, 4);
					break;
				default:
					v.i64 = DatumGetInt64(values[col]);
					memcpy(record + start, &v.i64, 8);
					break;
			}
			offset = start + typlen;
		}
		else
		{
			uint32		len = (uint32) ColumnSize(col, values[col]);

			if (typlen == -1)
				memcpy(record + length_at, &len, sizeof(uint32));
			memcpy(record + start, DatumGetPointer(values[col]), len);
			offset = start + len;
		}
	}
	Assert(offset <= size);
	memcpy(record, &header, sizeof(header));
}

/* The padded length of a record, where the next one starts */
uint32
LogRecordLength(const char *record)
{
	uint32		len;

	StaticAssertStmt(offsetof(LogRecordHeader, total_len) == 0,
					 "a record starts with its length");
	memcpy(&len, record, sizeof(uint32));
	return len;
}

/*
 * Decode a record into a row's LOG_COLUMNS values and nulls; values by
 * reference point into the record, which must start LOG_RECORD_ALIGN-
 * aligned and outlive them.  Returns the record's flags.
 */
uint16
DecodeLogRecord(const char *record, Datum *values, bool *nulls)
{
	LogRecordHeader header;
	Size		offset = sizeof(header);
	int			col;

	if (!column_storage_known)
		LearnColumnStorage();
	Assert(((uintptr_t) record) % LOG_RECORD_ALIGN == 0);
	memcpy(&header, record, sizeof(header));
	for (col = 0; col < LOG_COLUMNS; col++)
	{
		int16		typlen = column_typlen[col];
		Size		length_at;
		Size		start;

		nulls[col] = (header.null_columns & ((uint32) 1 << col)) != 0;
		values[col] = (Datum) 0;
		if (nulls[col])
			continue;
		start = ColumnStart(col, offset, &length_at);
		if (column_byval[col])
		{
			union
			{
				char		c;
				int16		i16;
				int32		i32;
				int64		i64;
			}			v;

			/* Fixed-size copies, which the compiler turns into plain loads */
			switch (typlen)
			{
				case 1:
					memcpy(&v.c, record + start, 1);
					values[col] = CharGetDatum(v.c);
					break;
				case 2:
					memcpy(&v.i16, record + start, 2);
					values[col] = Int16GetDatum(v.i16);
					break;
				case 4:
					memcpy(&v.i32, record + start, 4);
					values[col] = Int32GetDatum(v.i32);
					break;
				default:
					memcpy(&v.i64, record + start, 8);
					values[col] = Int64GetDatum(v.i64);
					break;
			}
			offset = start + typlen;
		}
		else
		{
			uint32		len = typlen;

			if (typlen == -1)
				memcpy(&len, record + length_at, sizeof(uint32));
			values[col] = PointerGetDatum(record + start);
			offset = start + len;
		}
	}
	return header.flags;
}
