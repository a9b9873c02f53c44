/*-------------------------------------------------------------------------
 * client_ip.h
 *		Caller IP resolution for athena-authd: parse addresses and CIDR
 *		lists, and pick the client address from the TCP peer, X-Real-IP
 *		and X-Forwarded-For without trusting what a client can forge.
 *
 * Pure C, no I/O: unit tested in test/unit_tests.c.
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_CLIENT_IP_H
#define AUTHD_CLIENT_IP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest text form of an address we produce (INET6_ADDRSTRLEN) */
#define IP_TEXT_MAX 46

/* One IPv4 or IPv6 address; IPv4-mapped IPv6 is stored as IPv4 */
typedef struct IpAddress
{
	int			family;			/* 4 or 6 */
	uint8_t		bytes[16];		/* 4 or 16 significant bytes */
} IpAddress;

/* One CIDR block, host bits zero */
typedef struct IpCidr
{
	IpAddress	base;
	int			prefix_len;
} IpCidr;

/* A list of CIDR blocks (the trusted proxies) */
typedef struct IpCidrList
{
	IpCidr	   *items;
	size_t		count;
} IpCidrList;

extern bool ParseIpAddress(const char *text, size_t len, IpAddress *out);
extern bool IpAddressFromSockaddr(const void *sockaddr, IpAddress *out);
extern void FormatIpAddress(const IpAddress *addr, char out[IP_TEXT_MAX]);
extern bool ParseCidr(const char *text, size_t len, IpCidr *out);
extern bool ParseCidrList(const char *text, IpCidrList *out, char *error, size_t error_len);
extern void FreeCidrList(IpCidrList *list);
extern bool CidrContains(const IpCidr *cidr, const IpAddress *addr);
extern bool CidrListContains(const IpCidrList *list, const IpAddress *addr);
extern bool ResolveClientIp(const IpAddress *peer, const IpCidrList *trusted,
							bool use_real_ip, const char *real_ip, const char *forwarded_for,
							IpAddress *out);

#endif							/* AUTHD_CLIENT_IP_H */
