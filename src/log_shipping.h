/*-------------------------------------------------------------------------
 * log_shipping.h
 *		A hot standby's queued log records, sent to the primary.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_LOG_SHIPPING_H
#define ATHENA_LOG_SHIPPING_H

#include "postgres.h"

extern bool ShipToPrimary(const char *buffer, uint64 len, const char *database_name);

#endif
