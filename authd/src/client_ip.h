/*-------------------------------------------------------------------------
 * client_ip.h
 *		Caller IP resolution for athena-authd: parse addresses and CIDR
 *		lists, and pick the client address from the TCP peer, X-Real-IP
 *		and X-Forwarded-For without trusting what a client can forge.
 *		Containment is the extension's (src/ip_rules.c), shared on purpose:
 *		one copy of that security rule.
 *
 * Pure C, no I/O: unit tested in test/test_client_ip.c.
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_CLIENT_IP_H
#define AUTHD_CLIENT_IP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ip_rules.h"

/* Longest text form of an address we produce (INET6_ADDRSTRLEN) */
#define IP_TEXT_MAX 46

/* One IPv4 or IPv6 address; IPv4-mapped IPv6 is stored as IPv4 */
typedef struct IpAddress
{
	int			family;			/* 4 or 6 */
	uint8_t		bytes[16];		/* 4 or 16 significant bytes */
} IpAddress;

/*
 * A list of CIDR blocks (the trusted proxies): the blocks as parsed, then
 * prepared into an ip_rules rule set, so athena-authd decides "is this a
 * trusted proxy" with the extension's own CIDR matching (src/ip_rules.c).
 */
typedef struct IpCidrList
{
	IpNet	   *items;			/* sorted, de-duplicated after parsing */
	size_t		count;			/* entries in the configured text */
	IpPrefixGroup *groups;
	IpRuleSet	set;
} IpCidrList;

extern bool ParseIpAddress(const char *text, size_t len, IpAddress *out);
extern bool IpAddressFromSockaddr(const void *sockaddr, IpAddress *out);
extern void FormatIpAddress(const IpAddress *addr, char out[IP_TEXT_MAX]);
extern bool ParseCidr(const char *text, size_t len, IpNet *out);
extern bool ParseCidrList(const char *text, IpCidrList *out, char *error, size_t error_len);
extern void FreeCidrList(IpCidrList *list);
extern bool CidrContains(const IpNet *cidr, const IpAddress *addr);
extern bool CidrListContains(const IpCidrList *list, const IpAddress *addr);
extern bool ResolveClientIp(const IpAddress *peer, const IpCidrList *trusted,
							bool use_real_ip, const char *real_ip, const char *forwarded_for,
							IpAddress *out);

#endif							/* AUTHD_CLIENT_IP_H */
