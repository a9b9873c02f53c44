/*-------------------------------------------------------------------------
 * text_util.h
 *		Text handling for athena-authd: the rights header, JSON error
 *		bodies, and values made safe for response headers and logs.
 *
 * Pure C, no I/O: unit tested in test/test_text_util.c.
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_TEXT_UTIL_H
#define AUTHD_TEXT_UTIL_H

#include <stdbool.h>
#include <stddef.h>

extern bool IsHttpBlank(char c);
extern bool IsBlankText(const char *text);
extern char *NormalizeRightsHeader(const char *header);
extern char *JsonEscape(const char *text);
extern char *BuildErrorBody(const char *message);
extern bool IsSafeHeaderValue(const char *value);
extern void SanitizeForLog(const char *text, char *out, size_t out_len);
extern bool IsValidUtf8(const char *text);
extern char *RepairUtf8(const char *text, bool *out_of_memory);

#endif							/* AUTHD_TEXT_UTIL_H */
