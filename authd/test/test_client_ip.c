/*-------------------------------------------------------------------------
 * test_client_ip.c
 *		Unit tests of athena-authd's client_ip: address and CIDR parsing, and
 *		the caller IP decision.
 *		No database, no network.
 *
 * Built and run by make test (see test/unit/unit_check.h at the top level
 * for the output).
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "client_ip.h"
#include "unit_check.h"

/* Text form of an address parsed from text, "" when it does not parse */
static const char *
Canonical(const char *text)
{
	static char out[IP_TEXT_MAX];
	IpAddress	addr;

	if (!ParseIpAddress(text, strlen(text), &addr))
		return "";
	FormatIpAddress(&addr, out);
	return out;
}

/* Address parsing: strict, canonical, IPv4-mapped becomes IPv4 */
static void
TestParseIpAddress(void)
{
	IpAddress	addr;

	CHECK(strcmp(Canonical("10.0.0.1"), "10.0.0.1") == 0);
	CHECK(strcmp(Canonical("  10.0.0.1\t"), "10.0.0.1") == 0);
	CHECK(strcmp(Canonical("2001:DB8::1"), "2001:db8::1") == 0);
	CHECK(strcmp(Canonical("::1"), "::1") == 0);
	CHECK(strcmp(Canonical("::ffff:10.1.2.3"), "10.1.2.3") == 0);
	CHECK(ParseIpAddress("::ffff:10.1.2.3", 15, &addr) && addr.family == 4);
	CHECK(strcmp(Canonical(""), "") == 0);
	CHECK(strcmp(Canonical("   "), "") == 0);
	CHECK(strcmp(Canonical("unknown"), "") == 0);
	CHECK(strcmp(Canonical("10.0.0.1:8080"), "") == 0);
	CHECK(strcmp(Canonical("[::1]"), "") == 0);
	CHECK(strcmp(Canonical("[::1]:80"), "") == 0);
	CHECK(strcmp(Canonical("fe80::1%eth0"), "") == 0);
	CHECK(strcmp(Canonical("10.0.0"), "") == 0);
	CHECK(strcmp(Canonical("10.0.0.256"), "") == 0);
	CHECK(strcmp(Canonical("10.0.0.1/32"), "") == 0);
	CHECK(strcmp(Canonical("1.2.3.4 5.6.7.8"), "") == 0);
	CHECK(strcmp(Canonical("0x0a.0.0.1"), "") == 0);
	CHECK(!ParseIpAddress("10.0.0.1\0junk", 13, &addr));
	CHECK(!ParseIpAddress(NULL, 0, &addr));
	{
		char		longer[200];

		memset(longer, '1', sizeof(longer) - 1);
		longer[sizeof(longer) - 1] = '\0';
		CHECK(!ParseIpAddress(longer, strlen(longer), &addr));
	}
}

/* Socket addresses: IPv4, IPv6 and IPv4-mapped IPv6 */
static void
TestSockaddr(void)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	IpAddress	addr;
	char		text[IP_TEXT_MAX];

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	CHECK(IpAddressFromSockaddr(&sin, &addr) && addr.family == 4);
	FormatIpAddress(&addr, text);
	CHECK(strcmp(text, "127.0.0.1") == 0);

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:192.168.1.9", &sin6.sin6_addr);
	CHECK(IpAddressFromSockaddr(&sin6, &addr) && addr.family == 4);
	FormatIpAddress(&addr, text);
	CHECK(strcmp(text, "192.168.1.9") == 0);

	inet_pton(AF_INET6, "2001:db8::7", &sin6.sin6_addr);
	CHECK(IpAddressFromSockaddr(&sin6, &addr) && addr.family == 6);
	FormatIpAddress(&addr, text);
	CHECK(strcmp(text, "2001:db8::7") == 0);
	CHECK(!IpAddressFromSockaddr(NULL, &addr));
}

/* True when text parses as a CIDR */
static int
CidrOk(const char *text)
{
	IpNet		cidr;

	return ParseCidr(text, strlen(text), &cidr);
}

/* True when the CIDR text contains the address text */
static int
Contains(const char *cidr_text, const char *addr_text)
{
	IpNet		cidr;
	IpAddress	addr;

	if (!ParseCidr(cidr_text, strlen(cidr_text), &cidr) ||
		!ParseIpAddress(addr_text, strlen(addr_text), &addr))
		return -1;
	return CidrContains(&cidr, &addr);
}

/* CIDR parsing and containment */
static void
TestCidr(void)
{
	IpNet		cidr;

	CHECK(CidrOk("10.0.0.0/8"));
	CHECK(CidrOk("10.0.0.1"));
	CHECK(ParseCidr("10.0.0.1", 8, &cidr) && cidr.bits == 32);
	CHECK(ParseCidr("::1", 3, &cidr) && cidr.bits == 128);
	CHECK(CidrOk("0.0.0.0/0"));
	CHECK(CidrOk("::/0"));
	CHECK(CidrOk("2001:db8::/32"));
	CHECK(!CidrOk("10.0.0.5/24"));	/* host bits set */
	CHECK(!CidrOk("10.0.0.0/33"));
	CHECK(!CidrOk("::/129"));
	CHECK(!CidrOk("10.0.0.0/"));
	CHECK(!CidrOk("10.0.0.0/-1"));
	CHECK(!CidrOk("10.0.0.0/8x"));
	CHECK(!CidrOk("10.0.0.0/0008"));
	CHECK(!CidrOk("/8"));
	CHECK(!CidrOk("nonsense"));
	CHECK(ParseCidr("::ffff:10.0.0.0/104", 19, &cidr) && cidr.family == 4 && cidr.bits == 8);
	CHECK(!CidrOk("::ffff:10.0.0.0/64"));

	CHECK(Contains("10.0.0.0/8", "10.255.1.2") == 1);
	CHECK(Contains("10.0.0.0/8", "11.0.0.1") == 0);
	CHECK(Contains("10.9.9.0/24", "10.9.9.5") == 1);
	CHECK(Contains("10.9.9.0/24", "10.9.10.5") == 0);
	CHECK(Contains("172.16.0.0/12", "172.31.255.255") == 1);
	CHECK(Contains("172.16.0.0/12", "172.32.0.0") == 0);
	CHECK(Contains("0.0.0.0/0", "8.8.8.8") == 1);
	CHECK(Contains("0.0.0.0/0", "::1") == 0);		/* families never mix */
	CHECK(Contains("::/0", "10.0.0.1") == 0);
	CHECK(Contains("127.0.0.1/32", "::ffff:127.0.0.1") == 1);
	CHECK(Contains("2001:db8::/32", "2001:db8:ffff::1") == 1);
	CHECK(Contains("2001:db8::/33", "2001:db8:8000::1") == 0);
}

/* CIDR lists as configured for trusted proxies */
static void
TestCidrList(void)
{
	IpCidrList	list;
	IpAddress	addr;
	char		error[256];

	CHECK(ParseCidrList("127.0.0.1/32,::1/128", &list, error, sizeof(error)) && list.count == 2);
	CHECK(ParseIpAddress("::1", 3, &addr) && CidrListContains(&list, &addr));
	CHECK(ParseIpAddress("127.0.0.2", 9, &addr) && !CidrListContains(&list, &addr));
	FreeCidrList(&list);

	CHECK(ParseCidrList(" 10.0.0.0/8 , 192.168.0.0/16  172.16.0.0/12,", &list, error, sizeof(error)) &&
		  list.count == 3);
	FreeCidrList(&list);

	CHECK(ParseCidrList("", &list, error, sizeof(error)) && list.count == 0);
	CHECK(ParseIpAddress("127.0.0.1", 9, &addr) && !CidrListContains(&list, &addr));
	FreeCidrList(&list);
	CHECK(ParseCidrList(NULL, &list, error, sizeof(error)) && list.count == 0);
	FreeCidrList(&list);

	/* duplicates and several prefix lengths: one rule set, searched by group */
	CHECK(ParseCidrList("10.0.0.0/8, 10.0.0.0/8 192.168.1.0/24,::ffff:172.16.0.0/108,2001:db8::/32",
						&list, error, sizeof(error)) && list.count == 5);
	CHECK(ParseIpAddress("172.31.0.1", 10, &addr) && CidrListContains(&list, &addr));
	CHECK(ParseIpAddress("192.168.1.9", 11, &addr) && CidrListContains(&list, &addr));
	CHECK(ParseIpAddress("192.168.2.9", 11, &addr) && !CidrListContains(&list, &addr));
	CHECK(ParseIpAddress("10.200.0.1", 10, &addr) && CidrListContains(&list, &addr));
	CHECK(ParseIpAddress("2001:db8:1::1", 13, &addr) && CidrListContains(&list, &addr));
	CHECK(ParseIpAddress("2001:db9::1", 11, &addr) && !CidrListContains(&list, &addr));
	FreeCidrList(&list);

	CHECK(!ParseCidrList("10.0.0.0/8,10.0.0.5/24", &list, error, sizeof(error)));
	CHECK(strstr(error, "10.0.0.5/24") != NULL);
	CHECK(list.items == NULL && list.count == 0);
}

/* Whether Resolve() passes X-Real-IP on (the trust_real_ip setting) */
static bool resolve_real_ip = true;

/* Resolve with a peer and headers; "" when no IP results */
static const char *
Resolve(const char *trusted_text, const char *peer_text, const char *real_ip, const char *forwarded_for)
{
	static char out[IP_TEXT_MAX];
	IpCidrList	trusted;
	IpAddress	peer;
	IpAddress	client;
	char		error[256];
	int			ok;

	if (!ParseCidrList(trusted_text, &trusted, error, sizeof(error)) ||
		!ParseIpAddress(peer_text, strlen(peer_text), &peer))
		return "setup failed";
	ok = ResolveClientIp(&peer, &trusted, resolve_real_ip, real_ip, forwarded_for, &client);
	FreeCidrList(&trusted);
	if (!ok)
		return "";
	FormatIpAddress(&client, out);
	return out;
}

/* The caller IP decision: who may speak for whom */
static void
TestResolveClientIp(void)
{
	const char *local = "127.0.0.1/32,::1/128";
	const char *chain = "127.0.0.1/32,10.0.0.0/8";
	IpCidrList	none = {0};
	IpAddress	client;

	/* untrusted peer: headers ignored entirely */
	CHECK(strcmp(Resolve(local, "203.0.113.7", "1.1.1.1", "2.2.2.2"), "203.0.113.7") == 0);
	CHECK(strcmp(Resolve(local, "203.0.113.7", "garbage", "garbage"), "203.0.113.7") == 0);
	CHECK(strcmp(Resolve("", "127.0.0.1", "1.1.1.1", "2.2.2.2"), "127.0.0.1") == 0);

	/* trusted peer, no headers: the peer */
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, NULL), "127.0.0.1") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", "", " "), "127.0.0.1") == 0);
	CHECK(strcmp(Resolve(local, "::ffff:127.0.0.1", NULL, NULL), "127.0.0.1") == 0);

	/* trusted peer: X-Real-IP wins over X-Forwarded-For */
	CHECK(strcmp(Resolve(local, "127.0.0.1", "198.51.100.4", "2.2.2.2"), "198.51.100.4") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", " 2001:db8::1 ", NULL), "2001:db8::1") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", "not-an-ip", "2.2.2.2"), "") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", "1.2.3.4:80", NULL), "") == 0);

	/* trusted peer: right-most untrusted X-Forwarded-For hop */
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, "10.9.9.5"), "10.9.9.5") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, "10.9.9.5, 127.0.0.1"), "10.9.9.5") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, "6.6.6.6, 10.9.9.5, 127.0.0.1"), "10.9.9.5") == 0);
	CHECK(strcmp(Resolve(chain, "127.0.0.1", NULL, "6.6.6.6, 8.8.8.8, 10.1.1.1, 10.2.2.2"), "8.8.8.8") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, "::ffff:10.9.9.5"), "10.9.9.5") == 0);
	CHECK(strcmp(Resolve(local, "::1", NULL, "2001:db8::5,::1"), "2001:db8::5") == 0);
	/* every hop trusted: the left-most one */
	CHECK(strcmp(Resolve(chain, "127.0.0.1", NULL, "10.1.1.1, 10.2.2.2"), "10.1.1.1") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, "127.0.0.1"), "127.0.0.1") == 0);
	/* malformed hops that must be examined: no IP */
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, "10.9.9.5, unknown"), "") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, "10.9.9.5,"), "") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, "10.9.9.5,,127.0.0.1"), "") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, "1.2.3.4:5678"), "") == 0);
	CHECK(strcmp(Resolve(chain, "127.0.0.1", NULL, "junk, 10.1.1.1"), "") == 0);
	/* a malformed hop left of the answer is never looked at */
	CHECK(strcmp(Resolve(local, "127.0.0.1", NULL, "junk, 10.9.9.5"), "10.9.9.5") == 0);

	CHECK(!ResolveClientIp(NULL, &none, true, NULL, NULL, &client));

	/* X-Real-IP is opt-in: by default a trusted peer's X-Real-IP is ignored */
	resolve_real_ip = false;
	CHECK(strcmp(Resolve(local, "127.0.0.1", "10.20.3.4", "198.51.100.7"), "198.51.100.7") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", "10.20.3.4", NULL), "127.0.0.1") == 0);
	CHECK(strcmp(Resolve(local, "127.0.0.1", "not-an-ip", "198.51.100.7"), "198.51.100.7") == 0);
	resolve_real_ip = true;
}

/* Run every client_ip check and summarise */
int
main(void)
{
	TestParseIpAddress();
	TestSockaddr();
	TestCidr();
	TestCidrList();
	TestResolveClientIp();
	return CheckSummary();
}
