/*-------------------------------------------------------------------------
 * rights_match.h
 *		Whether a granted right satisfies a required right (pure C).
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_RIGHTS_MATCH_H
#define ATHENA_RIGHTS_MATCH_H

#include <stdbool.h>
#include <stddef.h>

extern bool RightSatisfies(const char *granted, size_t granted_len,
						   const char *required, size_t required_len);

#endif
