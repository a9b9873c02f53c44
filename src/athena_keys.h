/*-------------------------------------------------------------------------
 * athena_keys.h
 *		What every backend part of athena_keys shares: the longest client
 *		name, the settings, SPI for our statements, and whether the
 *		transaction may write.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_KEYS_H
#define ATHENA_KEYS_H

#include "postgres.h"

#include "mb/pg_wchar.h"

#include "settings.h"
#include "spi_plans.h"
#include "write_access.h"

/*
 * Client names are limited to 256 characters where they are stored (the
 * tables' CHECKs and the admin functions count characters); the caches
 * and the log take their longest byte form, so that every name an admin
 * function accepts is enforced and logged whole.
 */
#define CLIENT_NAME_MAX_CHARS 256
#define CLIENT_NAME_MAX_LEN (CLIENT_NAME_MAX_CHARS * MAX_MULTIBYTE_CHAR_LEN)

#endif
