/*-------------------------------------------------------------------------
 * unit_tests.c
 *		Unit tests for athena-authd's pure logic: address and CIDR parsing,
 *		caller IP resolution, rights header parsing, JSON escaping and
 *		header/log sanitising.  No database, no network.
 *
 * Prints "not ok" lines for failures and ends with "N passed, N failed";
 * exits non-zero when anything failed.
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "client_ip.h"
#include "key_source.h"
#include "metrics.h"
#include "sql_error.h"
#include "text_util.h"

static int	passed;
static int	failed;

/* Record one check; print the failing expression and line */
#define CHECK(condition) RecordCheck((condition), #condition, __LINE__)

/* Count a check result and report failures */
static void
RecordCheck(int ok, const char *expression, int line)
{
	if (ok)
		passed++;
	else
	{
		failed++;
		printf("not ok - line %d: %s\n", line, expression);
	}
}

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
	IpCidr		cidr;

	return ParseCidr(text, strlen(text), &cidr);
}

/* True when the CIDR text contains the address text */
static int
Contains(const char *cidr_text, const char *addr_text)
{
	IpCidr		cidr;
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
	IpCidr		cidr;

	CHECK(CidrOk("10.0.0.0/8"));
	CHECK(CidrOk("10.0.0.1"));
	CHECK(ParseCidr("10.0.0.1", 8, &cidr) && cidr.prefix_len == 32);
	CHECK(ParseCidr("::1", 3, &cidr) && cidr.prefix_len == 128);
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
	CHECK(ParseCidr("::ffff:10.0.0.0/104", 19, &cidr) && cidr.base.family == 4 && cidr.prefix_len == 8);
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
	IpCidrList	none = {NULL, 0};
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

/* Normalize a rights header and compare, freeing the result */
static int
RightsAre(const char *header, const char *expected)
{
	char	   *normalized = NormalizeRightsHeader(header);
	int			same = normalized != NULL && strcmp(normalized, expected) == 0;

	if (!same)
		printf("# rights \"%s\" -> \"%s\", expected \"%s\"\n",
			   header ? header : "(null)", normalized ? normalized : "(null)", expected);
	free(normalized);
	return same;
}

/* The X-Athena-Rights header */
static void
TestRights(void)
{
	CHECK(RightsAre(NULL, ""));
	CHECK(RightsAre("", ""));
	CHECK(RightsAre("   ", ""));
	CHECK(RightsAre(",, ,", ""));
	CHECK(RightsAre("users.read", "users.read"));
	CHECK(RightsAre("users.read,gateway.query", "users.read,gateway.query"));
	CHECK(RightsAre(" users.read ,\tgateway.query\t", "users.read,gateway.query"));
	CHECK(RightsAre("users.read,,gateway.query,", "users.read,gateway.query"));
	CHECK(RightsAre("a b", "a b"));		/* inner blanks kept: the database judges */
	CHECK(RightsAre("Users.Read", "Users.Read"));
	CHECK(RightsAre("{x},\"y\"", "{x},\"y\""));	/* passed as data, never spliced */
}

/* Build an error body and compare, freeing the result */
static int
ErrorBodyIs(const char *message, const char *expected)
{
	char	   *body = BuildErrorBody(message);
	int			same = body != NULL && strcmp(body, expected) == 0;

	if (!same)
		printf("# body -> %s\n", body ? body : "(null)");
	free(body);
	return same;
}

/* JSON error bodies */
static void
TestJson(void)
{
	CHECK(ErrorBodyIs("Invalid API key", "{\"status\":\"error\",\"message\":\"Invalid API key\"}"));
	CHECK(ErrorBodyIs("", "{\"status\":\"error\",\"message\":\"\"}"));
	CHECK(ErrorBodyIs(NULL, "{\"status\":\"error\",\"message\":\"\"}"));
	CHECK(ErrorBodyIs("say \"hi\"\\", "{\"status\":\"error\",\"message\":\"say \\\"hi\\\"\\\\\"}"));
	CHECK(ErrorBodyIs("a\nb\tc\rd", "{\"status\":\"error\",\"message\":\"a\\nb\\tc\\rd\"}"));
	CHECK(ErrorBodyIs("\x01\x1f\x7f", "{\"status\":\"error\",\"message\":\"\\u0001\\u001f\\u007f\"}"));
	CHECK(ErrorBodyIs("caf\xc3\xa9", "{\"status\":\"error\",\"message\":\"caf\xc3\xa9\"}"));
	CHECK(ErrorBodyIs("</script>", "{\"status\":\"error\",\"message\":\"</script>\"}"));
}

/* Response header and log sanitising */
static void
TestSanitising(void)
{
	char		out[16];

	CHECK(IsSafeHeaderValue("web"));
	CHECK(IsSafeHeaderValue("{\"status\":\"error\"}"));
	CHECK(IsSafeHeaderValue("a\tb"));
	CHECK(!IsSafeHeaderValue(NULL));
	CHECK(!IsSafeHeaderValue("a\r\nSet-Cookie: x"));
	CHECK(!IsSafeHeaderValue("a\nb"));
	CHECK(!IsSafeHeaderValue("a\x7f"));

	SanitizeForLog("web client", out, sizeof(out));
	CHECK(strcmp(out, "web client") == 0);
	SanitizeForLog(NULL, out, sizeof(out));
	CHECK(strcmp(out, "-") == 0);
	SanitizeForLog("a\nb\"c\\d\xc3", out, sizeof(out));
	CHECK(strcmp(out, "a?b'c?d?") == 0);
	SanitizeForLog("0123456789abcdefXYZ", out, sizeof(out));
	CHECK(strlen(out) == 15 && strcmp(out + 12, "...") == 0);
	SanitizeForLog("0123456789abcde", out, sizeof(out));
	CHECK(strcmp(out, "0123456789abcde") == 0);
}

/* RepairUtf8 result compared with expected, freed */
static bool
RepairsTo(const char *input, const char *expected)
{
	bool		out_of_memory;
	char	   *repaired = RepairUtf8(input, &out_of_memory);
	bool		same = repaired != NULL && strcmp(repaired, expected) == 0;

	free(repaired);
	return same && !out_of_memory;
}

/* UTF-8: strict validation (as PostgreSQL's) and repair to U+FFFD */
static void
TestUtf8(void)
{
	bool		out_of_memory = true;

	CHECK(IsValidUtf8(""));
	CHECK(IsValidUtf8("ath_0123456789abcdef.secret"));
	CHECK(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
	CHECK(IsValidUtf8("\xf4\x8f\xbf\xbf"));	/* U+10FFFF */
	CHECK(!IsValidUtf8("\xff"));
	CHECK(!IsValidUtf8("ath_\xff"));
	CHECK(!IsValidUtf8("\xc3"));			/* truncated */
	CHECK(!IsValidUtf8("\xc3("));		/* bad continuation */
	CHECK(!IsValidUtf8("\xc0\xaf"));	/* overlong '/' */
	CHECK(!IsValidUtf8("\xe0\x80\xaf"));	/* overlong, 3 bytes */
	CHECK(!IsValidUtf8("\xf0\x80\x80\xaf"));	/* overlong, 4 bytes */
	CHECK(!IsValidUtf8("\xed\xa0\x80"));	/* surrogate U+D800 */
	CHECK(!IsValidUtf8("\xf4\x90\x80\x80"));	/* above U+10FFFF */
	CHECK(!IsValidUtf8("\xf8\x88\x80\x80\x80"));	/* 5-byte form */
	CHECK(!IsValidUtf8("\x80"));			/* lone continuation */

	CHECK(RepairsTo("plain", "plain"));
	CHECK(RepairsTo("caf\xc3\xa9", "caf\xc3\xa9"));
	CHECK(RepairsTo("\xff", "\xef\xbf\xbd"));
	CHECK(RepairsTo("a\xff" "b", "a\xef\xbf\xbd" "b"));
	CHECK(RepairsTo("\xc3(", "\xef\xbf\xbd("));
	CHECK(RepairsTo("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
	CHECK(RepairsTo("x\xf0\x9f\x98", "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
	CHECK(RepairUtf8(NULL, &out_of_memory) == NULL && !out_of_memory);
	{
		bool		oom;
		char	   *repaired = RepairUtf8("ath_0123456789abcdef.\xff\xfe", &oom);

		/* a repaired key is valid UTF-8 and still not a well-formed key */
		CHECK(repaired != NULL && IsValidUtf8(repaired) && strchr(repaired, '.') != NULL &&
			  strstr(repaired, "\xef\xbf\xbd") != NULL);
		free(repaired);
	}
}

/* Parse a key-source list, "" on error */
static KeySourceList
Sources(const char *text)
{
	KeySourceList list;
	char		error[200];

	if (!ParseKeySources(text, &list, error, sizeof(error)))
		list.count = -1;
	return list;
}

/* Key sources: configuration, precedence, hints for unaccepted ones */
static void
TestKeySources(void)
{
	KeySourceList athena_only = Sources("x-athena-key");
	KeySourceList all = Sources("bearer, X-API-Key,x-athena-key");
	KeySourceList list;
	KeyHeaders	headers;
	KeyChoice	choice;
	char		error[200];
	char		text[100];

	CHECK(athena_only.count == 1 && athena_only.items[0] == KEY_SOURCE_ATHENA_KEY);
	CHECK(all.count == 3 && all.items[0] == KEY_SOURCE_BEARER && all.items[1] == KEY_SOURCE_API_KEY &&
		  all.items[2] == KEY_SOURCE_ATHENA_KEY);
	FormatKeySources(&all, text, sizeof(text));
	CHECK(strcmp(text, "bearer,x-api-key,x-athena-key") == 0);
	CHECK(!ParseKeySources("", &list, error, sizeof(error)));
	CHECK(!ParseKeySources("x-athena-key,cookie", &list, error, sizeof(error)) && strstr(error, "cookie"));
	CHECK(!ParseKeySources("bearer bearer", &list, error, sizeof(error)) && strstr(error, "twice"));

	CHECK(BearerToken(NULL) == NULL);
	CHECK(BearerToken("Basic dXNlcjpwdw==") == NULL);
	CHECK(BearerToken("Bearertoken") == NULL);
	CHECK(strcmp(BearerToken("Bearer ath_x.y"), "ath_x.y") == 0);
	CHECK(strcmp(BearerToken("  bearer \t ath_x.y"), "ath_x.y") == 0);

	/* default: X-Athena-Key only; a key elsewhere is named, not used */
	memset(&headers, 0, sizeof(headers));
	headers.api_key = "ath_a.b";
	ChooseKey(&athena_only, &headers, &choice);
	CHECK(choice.key == NULL && strcmp(choice.source, "none") == 0 && strcmp(choice.ignored, "x-api-key") == 0);
	headers.api_key = NULL;
	headers.authorization = "Bearer ath_a.b";
	ChooseKey(&athena_only, &headers, &choice);
	CHECK(choice.key == NULL && strcmp(choice.ignored, "bearer") == 0);
	headers.authorization = "Basic dXNlcjpwdw==";
	ChooseKey(&athena_only, &headers, &choice);
	CHECK(choice.key == NULL && choice.ignored == NULL);
	headers.athena_key = "ath_k.s";
	ChooseKey(&athena_only, &headers, &choice);
	CHECK(strcmp(choice.key, "ath_k.s") == 0 && strcmp(choice.source, "x-athena-key") == 0 && choice.ignored == NULL);

	/* precedence: the configured order, blank values skipped */
	headers.athena_key = "ath_1.1";
	headers.api_key = "ath_2.2";
	headers.authorization = "Bearer ath_3.3";
	ChooseKey(&all, &headers, &choice);
	CHECK(strcmp(choice.key, "ath_3.3") == 0 && strcmp(choice.source, "bearer") == 0);
	headers.authorization = "Bearer   ";
	ChooseKey(&all, &headers, &choice);
	CHECK(strcmp(choice.key, "ath_2.2") == 0 && strcmp(choice.source, "x-api-key") == 0);
	headers.api_key = " ";
	headers.athena_key = "";
	ChooseKey(&all, &headers, &choice);
	/* only blanks: the first blank value goes on (the extension: absent) */
	CHECK(choice.key != NULL && strcmp(choice.source, "none") == 0 && choice.ignored == NULL);
}

/* SQLSTATE classes: only infrastructure failures are "unavailable" */
static void
TestClassifySqlState(void)
{
	CHECK(ClassifySqlState("22021") == DB_CONTENT_ERROR);	/* invalid byte sequence */
	CHECK(ClassifySqlState("22P02") == DB_CONTENT_ERROR);	/* invalid text representation */
	CHECK(ClassifySqlState("22001") == DB_CONTENT_ERROR);	/* string too long */
	CHECK(ClassifySqlState("57014") == DB_UNAVAILABLE);	/* statement timeout */
	CHECK(ClassifySqlState("57P01") == DB_UNAVAILABLE);	/* admin shutdown */
	CHECK(ClassifySqlState("08006") == DB_UNAVAILABLE);
	CHECK(ClassifySqlState("53300") == DB_UNAVAILABLE);	/* too many connections */
	CHECK(ClassifySqlState("40001") == DB_UNAVAILABLE);
	CHECK(ClassifySqlState(NULL) == DB_UNAVAILABLE);
	CHECK(ClassifySqlState("42883") == DB_SERVER_ERROR);	/* function missing */
	CHECK(ClassifySqlState("42501") == DB_SERVER_ERROR);	/* permission denied */
	CHECK(ClassifySqlState("XX000") == DB_SERVER_ERROR);
}

/* Metrics text: fixed label values, cumulative histogram */
static void
TestMetrics(void)
{
	char	   *text;

	ResetMetrics();
	MetricsCountRequest(200, NULL);
	MetricsCountRequest(200, NULL);
	MetricsCountRequest(401, "Invalid API key");
	MetricsCountRequest(403, "a client-chosen \"reason\"\n");
	MetricsCountRequest(418, "IP blocked");
	MetricsObserveDbCall(0.0004);
	MetricsObserveDbCall(0.003);
	MetricsObserveDbCall(9.0);
	MetricsCountPoolWait(0.5, true);
	MetricsCountConnect(true);
	MetricsCountConnect(false);
	MetricsCountFailOpen();
	text = RenderMetrics();
	CHECK(text != NULL);
	if (text == NULL)
		return;
	CHECK(strstr(text, "athena_authd_requests_total{status=\"200\",reason=\"\"} 2\n") != NULL);
	CHECK(strstr(text, "athena_authd_requests_total{status=\"401\",reason=\"Invalid API key\"} 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_requests_total{status=\"403\",reason=\"other\"} 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_requests_total{status=\"other\",reason=\"IP blocked\"} 1\n") != NULL);
	CHECK(strstr(text, "client-chosen") == NULL);
	CHECK(strstr(text, "athena_authd_db_call_seconds_bucket{le=\"0.0005\"} 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_call_seconds_bucket{le=\"0.005\"} 2\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_call_seconds_bucket{le=\"5\"} 2\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_call_seconds_bucket{le=\"+Inf\"} 3\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_call_seconds_count 3\n") != NULL);
	CHECK(strstr(text, "athena_authd_pool_exhausted_total 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_connects_total{result=\"failed\"} 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_fail_open_total 1\n") != NULL);
	free(text);
}

/* Run every test group and summarise */
int
main(void)
{
	TestParseIpAddress();
	TestSockaddr();
	TestCidr();
	TestCidrList();
	TestResolveClientIp();
	TestRights();
	TestJson();
	TestSanitising();
	TestUtf8();
	TestKeySources();
	TestClassifySqlState();
	TestMetrics();
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
