/*-------------------------------------------------------------------------
 * client_ip.c
 *		Caller IP resolution for athena-authd (pure C, no I/O).
 *
 * The TCP peer is the only address nobody can forge.  Headers that claim
 * another address (X-Real-IP, X-Forwarded-For) are read only when the
 * peer is one of the configured trusted proxies, and X-Forwarded-For is
 * walked from the right: each trusted proxy appends the address it saw,
 * so the right-most hop that is not itself a trusted proxy is the first
 * address no trusted party vouches for beyond.  Anything that does not
 * parse as a plain address yields no IP at all rather than a guess.
 *-------------------------------------------------------------------------
 */
#include "client_ip.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "text_util.h"

/* Longest input we accept for one address or CIDR (with some slack) */
#define ADDRESS_INPUT_MAX 64


/* Narrow [*start, *end) so that it excludes leading and trailing blanks */
static void
TrimBlanks(const char **start, const char **end)
{
	while (*start < *end && IsHttpBlank(**start))
		(*start)++;
	while (*end > *start && IsHttpBlank((*end)[-1]))
		(*end)--;
}

/* Turn an IPv4-mapped IPv6 address (::ffff:a.b.c.d) into plain IPv4 */
static void
UnmapIpv4(IpAddress *addr)
{
	static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (addr->family == 6 && memcmp(addr->bytes, mapped_prefix, 12) == 0)
	{
		memmove(addr->bytes, addr->bytes + 12, 4);
		memset(addr->bytes + 4, 0, 12);
		addr->family = 4;
	}
}

/* Number of significant bytes for an address family */
static int
AddressLength(int family)
{
	return family == 4 ? 4 : 16;
}

/*
 * Parse a plain IPv4 or IPv6 address (no port, no brackets, no zone id),
 * ignoring surrounding blanks.  IPv4-mapped IPv6 becomes IPv4.
 */
bool
ParseIpAddress(const char *text, size_t len, IpAddress *out)
{
	const char *start = text;
	const char *end = text + len;
	char		buffer[ADDRESS_INPUT_MAX];
	size_t		trimmed_len;

	if (text == NULL)
		return false;
	TrimBlanks(&start, &end);
	trimmed_len = (size_t) (end - start);
	if (trimmed_len == 0 || trimmed_len >= sizeof(buffer))
		return false;
	if (memchr(start, '\0', trimmed_len) != NULL)
		return false;
	memcpy(buffer, start, trimmed_len);
	buffer[trimmed_len] = '\0';

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buffer, out->bytes) == 1)
	{
		out->family = 4;
		return true;
	}
	if (inet_pton(AF_INET6, buffer, out->bytes) == 1)
	{
		out->family = 6;
		UnmapIpv4(out);
		return true;
	}
	return false;
}

/* Convert a socket address (AF_INET or AF_INET6) to an IpAddress */
bool
IpAddressFromSockaddr(const void *sockaddr, IpAddress *out)
{
	const struct sockaddr *sa = sockaddr;

	if (sa == NULL)
		return false;
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET)
	{
		const struct sockaddr_in *sin = sockaddr;

		out->family = 4;
		memcpy(out->bytes, &sin->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6)
	{
		const struct sockaddr_in6 *sin6 = sockaddr;

		out->family = 6;
		memcpy(out->bytes, &sin6->sin6_addr, 16);
		UnmapIpv4(out);
		return true;
	}
	return false;
}

/* Write the canonical text form of an address (as PostgreSQL's inet prints it) */
void
FormatIpAddress(const IpAddress *addr, char out[IP_TEXT_MAX])
{
	if (inet_ntop(addr->family == 4 ? AF_INET : AF_INET6, addr->bytes, out, IP_TEXT_MAX) == NULL)
		out[0] = '\0';
}

/* Parse a decimal prefix length of 1 to 3 digits; -1 when malformed */
static int
ParsePrefixLength(const char *start, const char *end)
{
	int			value = 0;

	if (start == end || end - start > 3)
		return -1;
	for (const char *p = start; p < end; p++)
	{
		if (*p < '0' || *p > '9')
			return -1;
		value = value * 10 + (*p - '0');
	}
	return value;
}

/*
 * Parse "address" or "address/prefix".  A bare address is a /32 or /128;
 * host bits set (10.0.0.5/24) are rejected, as PostgreSQL's cidr does:
 * ip_rules would clear them silently, and a typo in trusted_proxies must
 * not quietly trust a wider or other network than the one written.
 */
bool
ParseCidr(const char *text, size_t len, IpNet *out)
{
	const char *start = text;
	const char *end = text + len;
	const char *slash;
	IpAddress	base;
	int			max_prefix;
	int			prefix_len;
	bool		was_mapped;

	if (text == NULL)
		return false;
	TrimBlanks(&start, &end);
	slash = memchr(start, '/', (size_t) (end - start));
	if (!ParseIpAddress(start, (size_t) ((slash ? slash : end) - start), &base))
		return false;
	max_prefix = AddressLength(base.family) * 8;
	if (slash == NULL)
		prefix_len = max_prefix;
	else
	{
		prefix_len = ParsePrefixLength(slash + 1, end);
		/* ::ffff:a.b.c.d/n was unmapped to IPv4: its prefix counts 96 bits less */
		was_mapped = base.family == 4 && memchr(start, ':', (size_t) (slash - start)) != NULL;
		if (was_mapped && prefix_len >= 0)
		{
			if (prefix_len < 96)
				return false;
			prefix_len -= 96;
		}
	}
	if (!IpNetFromBytes(base.family, prefix_len, base.bytes, out))
		return false;
	return memcmp(out->addr, base.bytes, (size_t) AddressLength(base.family)) == 0;
}

/*
 * Sort the parsed blocks into an ip_rules rule set (groups by prefix
 * length), the form IpRuleSetContains searches.
 */
static bool
PrepareCidrList(IpCidrList *list, char *error, size_t error_len)
{
	int			nrules = IpRulesPrepare(list->items, (int) list->count);
	int			ngroups = IpRulesCountGroups(list->items, nrules);

	if (ngroups > 0)
	{
		list->groups = calloc((size_t) ngroups, sizeof(IpPrefixGroup));
		if (list->groups == NULL)
		{
			snprintf(error, error_len, "out of memory");
			FreeCidrList(list);
			return false;
		}
	}
	IpRuleSetBuild(&list->set, list->items, nrules, list->groups);
	return true;
}

/*
 * Parse a comma- or blank-separated list of CIDR blocks; an empty list is
 * valid.  On failure writes a message naming the bad entry into error.
 */
bool
ParseCidrList(const char *text, IpCidrList *out, char *error, size_t error_len)
{
	const char *p = text ? text : "";
	size_t		capacity = 0;

	memset(out, 0, sizeof(*out));
	while (*p)
	{
		const char *item_start;
		const char *item_end;

		while (*p == ',' || IsHttpBlank(*p))
			p++;
		if (*p == '\0')
			break;
		item_start = p;
		while (*p && *p != ',' && !IsHttpBlank(*p))
			p++;
		item_end = p;

		if (out->count == capacity)
		{
			size_t		new_capacity = capacity ? capacity * 2 : 4;
			IpNet	   *grown = realloc(out->items, new_capacity * sizeof(IpNet));

			if (grown == NULL)
			{
				snprintf(error, error_len, "out of memory");
				FreeCidrList(out);
				return false;
			}
			out->items = grown;
			capacity = new_capacity;
		}
		if (!ParseCidr(item_start, (size_t) (item_end - item_start), &out->items[out->count]))
		{
			snprintf(error, error_len,
					 "invalid CIDR \"%.*s\" (expected an address or address/prefix with host bits zero)",
					 (int) (item_end - item_start > 80 ? 80 : item_end - item_start), item_start);
			FreeCidrList(out);
			return false;
		}
		out->count++;
	}
	return PrepareCidrList(out, error, error_len);
}

/* Release the storage of a CIDR list */
void
FreeCidrList(IpCidrList *list)
{
	free(list->items);
	free(list->groups);
	memset(list, 0, sizeof(*list));
}

/* The network of exactly one address, as ip_rules compares hosts */
static IpNet
HostNet(const IpAddress *addr)
{
	IpNet		host;

	if (!IpNetFromBytes(addr->family, AddressLength(addr->family) * 8, addr->bytes, &host))
		memset(&host, 0, sizeof(host));
	return host;
}

/* True when addr lies inside cidr (same family only) */
bool
CidrContains(const IpNet *cidr, const IpAddress *addr)
{
	IpNet		host = HostNet(addr);

	return IpNetContains(cidr, &host);
}

/* True when any block of the list contains addr */
bool
CidrListContains(const IpCidrList *list, const IpAddress *addr)
{
	IpNet		host = HostNet(addr);

	return IpRuleSetContains(&list->set, &host);
}


/*
 * Walk X-Forwarded-For from the right and pick the right-most hop that is
 * not a trusted proxy; when every hop is trusted, the left-most one (the
 * earliest address on record).  False when any hop examined is malformed.
 */
static bool
PickForwardedHop(const char *forwarded_for, const IpCidrList *trusted, IpAddress *out)
{
	const char *list_start = forwarded_for;
	const char *hop_end = forwarded_for + strlen(forwarded_for);

	for (;;)
	{
		const char *hop_start = hop_end;
		IpAddress	hop;

		while (hop_start > list_start && hop_start[-1] != ',')
			hop_start--;
		if (!ParseIpAddress(hop_start, (size_t) (hop_end - hop_start), &hop))
			return false;
		if (!CidrListContains(trusted, &hop) || hop_start == list_start)
		{
			*out = hop;
			return true;
		}
		hop_end = hop_start - 1;	/* skip the comma */
	}
}

/*
 * Decide the caller's address.  The TCP peer unless it is a trusted proxy;
 * then X-Real-IP when use_real_ip and present, else the right-most
 * untrusted X-Forwarded-For hop, else the peer itself.  Returns false (no
 * IP) when the header consulted does not parse.  X-Real-IP is opt-in:
 * some proxies (Caddy) pass a client's own copy through untouched, while
 * a trusted proxy always appends what it saw to X-Forwarded-For.
 */
bool
ResolveClientIp(const IpAddress *peer, const IpCidrList *trusted,
				bool use_real_ip, const char *real_ip, const char *forwarded_for,
				IpAddress *out)
{
	if (peer == NULL)
		return false;
	if (!CidrListContains(trusted, peer))
	{
		*out = *peer;
		return true;
	}
	if (use_real_ip && !IsBlankText(real_ip))
		return ParseIpAddress(real_ip, strlen(real_ip), out);
	if (!IsBlankText(forwarded_for))
		return PickForwardedHop(forwarded_for, trusted, out);
	*out = *peer;
	return true;
}
