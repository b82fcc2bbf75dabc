/*
 * config_value — the value parsers and formatters of the config (numbers,
 * durations, sizes, addresses, prefixes) and the checks built on them that
 * report. See config_int.h; the public ones are in include/tandem/config.h.
 */
#include "config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- values ---- */

/*
 * Leading decimal digits of s. Unlike bare strtoull, refuses an empty number,
 * a sign and leading blanks, and reports overflow instead of clamping.
 */
enum cfg_num
cfg_digits(const char *s, const char **end, uint64_t *v)
{
	char *e;
	unsigned long long n;

	if (*s < '0' || *s > '9')
		return CFG_NUM_BAD;
	errno = 0;
	n = strtoull(s, &e, 10);
	*end = e;
	if (errno == ERANGE)
		return CFG_NUM_RANGE;
	*v = n;
	return CFG_NUM_OK;
}

enum cfg_num
cfg_duration(const char *s, uint32_t *ms)
{
	static const struct {
		const char *unit;
		uint64_t mult;
	} units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
	};
	const char *end;
	uint64_t v = 0;
	enum cfg_num r;

	r = cfg_digits(s, &end, &v);
	if (r == CFG_NUM_BAD)
		return r;
	if (r == CFG_NUM_OK && *end == '\0') {
		/* Zero is zero in every unit, so "0" is not ambiguous. */
		if (v == 0) {
			*ms = 0;
			return CFG_NUM_OK;
		}
		return CFG_NUM_NOUNIT;
	}
	for (size_t i = 0; i < CFG_ARRAY_SIZE(units); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (r == CFG_NUM_RANGE || v > UINT32_MAX / units[i].mult)
			return CFG_NUM_RANGE;
		*ms = (uint32_t)(v * units[i].mult);
		return CFG_NUM_OK;
	}
	return CFG_NUM_BAD;
}

enum cfg_num
cfg_size(const char *s, size_t *bytes)
{
	const char *end;
	uint64_t v = 0, mult;
	enum cfg_num r;

	r = cfg_digits(s, &end, &v);
	if (r == CFG_NUM_BAD)
		return r;
	if (strcmp(end, "") == 0)
		mult = 1;
	else if (strcmp(end, "k") == 0 || strcmp(end, "K") == 0)
		mult = 1024;
	else if (strcmp(end, "m") == 0 || strcmp(end, "M") == 0)
		mult = 1024 * 1024;
	else
		return CFG_NUM_BAD;
	if (r == CFG_NUM_RANGE || v > SIZE_MAX / mult)
		return CFG_NUM_RANGE;
	*bytes = (size_t)(v * mult);
	return CFG_NUM_OK;
}

/* Port text: digits only, 1..65535. */
static enum cfg_addr_err
cfg_port(const char *s, in_port_t *port)
{
	const char *end;
	uint64_t v = 0;
	enum cfg_num r;

	r = cfg_digits(s, &end, &v);
	if (r == CFG_NUM_BAD || *end != '\0')
		return CFG_ADDR_BAD_PORT;
	if (r == CFG_NUM_RANGE || v == 0 || v > 65535)
		return CFG_ADDR_PORT_RANGE;
	*port = htons((in_port_t)v);
	return CFG_ADDR_OK;
}

/*
 * The address forms of the config: a.b.c.d[:port], [v6][:port], and a bare
 * v6 (only where no port is required, since "::1:80" is ambiguous). Numeric
 * only: a config that resolves names at startup fails at the worst moment.
 * *has_port tells whether a port was written; *portp points at its text.
 */
enum cfg_addr_err
cfg_addr(const char *s, int port_required, struct sockaddr_storage *ss,
    socklen_t *len, int *has_port, const char **portp)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *colon;
	size_t hlen;
	int v6;
	in_port_t nport = 0;
	enum cfg_addr_err r;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL)
			return CFG_ADDR_BAD;
		hlen = (size_t)(rb - (s + 1));
		if (rb[1] == ':')
			port = rb + 2;
		else if (rb[1] != '\0')
			return CFG_ADDR_BAD;
		s++;
		v6 = 1;
	} else {
		colon = strchr(s, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL) {
			/* Two colons or more: a bare IPv6 address. */
			hlen = strlen(s);
			v6 = 1;
			if (port_required) {
				struct in6_addr tmp;

				if (hlen < sizeof(host)) {
					memcpy(host, s, hlen + 1);
					if (inet_pton(AF_INET6, host, &tmp) == 1)
						return CFG_ADDR_NEED_PORT;
				}
				return CFG_ADDR_V6_BRACKETS;
			}
		} else {
			hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
			if (colon != NULL)
				port = colon + 1;
			v6 = 0;
		}
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return CFG_ADDR_BAD;
	memcpy(host, s, hlen);
	host[hlen] = '\0';

	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return CFG_ADDR_BAD;
		sin6->sin6_family = AF_INET6;
		*len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return CFG_ADDR_BAD;
		sin->sin_family = AF_INET;
		*len = sizeof(*sin);
	}
	*has_port = port != NULL;
	*portp = port;
	if (port == NULL)
		return port_required ? CFG_ADDR_NEED_PORT : CFG_ADDR_OK;
	r = cfg_port(port, &nport);
	if (r != CFG_ADDR_OK)
		return r;
	if (v6)
		((struct sockaddr_in6 *)ss)->sin6_port = nport;
	else
		((struct sockaddr_in *)ss)->sin_port = nport;
	return CFG_ADDR_OK;
}

int
cfg_parse_duration_ms(const char *s, uint32_t *ms)
{
	switch (cfg_duration(s, ms)) {
	case CFG_NUM_OK:
		return 0;
	case CFG_NUM_RANGE:
		return -ERANGE;
	case CFG_NUM_BAD:
	case CFG_NUM_NOUNIT:
	case CFG_NUM_COUNT:
	default:
		return -EINVAL;
	}
}

int
cfg_parse_size(const char *s, size_t *bytes)
{
	switch (cfg_size(s, bytes)) {
	case CFG_NUM_OK:
		return 0;
	case CFG_NUM_RANGE:
		return -ERANGE;
	case CFG_NUM_BAD:
	case CFG_NUM_NOUNIT:
	case CFG_NUM_COUNT:
	default:
		return -EINVAL;
	}
}

int
cfg_parse_addr(const char *s, int port_required, struct sockaddr_storage *ss,
    socklen_t *len)
{
	struct sockaddr_storage tmp;
	socklen_t tmplen = 0;
	const char *port;
	int has_port;

	switch (cfg_addr(s, port_required, &tmp, &tmplen, &has_port, &port)) {
	case CFG_ADDR_OK:
		*ss = tmp;
		*len = tmplen;
		return 0;
	case CFG_ADDR_PORT_RANGE:
		return -ERANGE;
	case CFG_ADDR_BAD:
	case CFG_ADDR_NEED_PORT:
	case CFG_ADDR_BAD_PORT:
	case CFG_ADDR_V6_BRACKETS:
	case CFG_ADDR_COUNT:
	default:
		return -EINVAL;
	}
}

enum cfg_pfx_err {
	CFG_PFX_OK = 0,
	CFG_PFX_BAD_ADDR,
	CFG_PFX_PORT,             /* "ADDR:PORT/LEN" */
	CFG_PFX_NONE,             /* no "/LEN" */
	CFG_PFX_BAD,              /* "/x" */
	CFG_PFX_RANGE,            /* "/0", "/33" */
	CFG_PFX_COUNT
};

/*
 * "198.18.0.100/24", "2001:db8::100/64" (brackets allowed). A zero length is
 * refused: a VIP with it would claim every address of its family on-link.
 * *pfxp points at the length's text.
 */
static enum cfg_pfx_err
cfg_prefix(const char *s, struct sockaddr_storage *ss, socklen_t *len,
    unsigned *prefix, const char **pfxp)
{
	char host[INET6_ADDRSTRLEN + 3];
	const char *slash = strrchr(s, '/'), *end, *port = NULL;
	size_t hlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	uint64_t v = 0;
	int has_port = 0;
	unsigned max;
	enum cfg_num r;

	if (hlen >= sizeof(host))
		return CFG_PFX_BAD_ADDR;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	switch (cfg_addr(host, 0, ss, len, &has_port, &port)) {
	case CFG_ADDR_OK:
		break;
	case CFG_ADDR_BAD_PORT:
	case CFG_ADDR_PORT_RANGE:
		return CFG_PFX_PORT;
	case CFG_ADDR_BAD:
	case CFG_ADDR_NEED_PORT:
	case CFG_ADDR_V6_BRACKETS:
	case CFG_ADDR_COUNT:
	default:
		return CFG_PFX_BAD_ADDR;
	}
	if (has_port)
		return CFG_PFX_PORT;
	if (slash == NULL)
		return CFG_PFX_NONE;
	*pfxp = slash + 1;
	r = cfg_digits(slash + 1, &end, &v);
	if (r == CFG_NUM_BAD || *end != '\0')
		return CFG_PFX_BAD;
	max = ss->ss_family == AF_INET6 ? 128 : 32;
	if (r == CFG_NUM_RANGE || v < 1 || v > max)
		return CFG_PFX_RANGE;
	*prefix = (unsigned)v;
	return CFG_PFX_OK;
}

int
cfg_parse_prefix(const char *s, struct sockaddr_storage *ss, socklen_t *len,
    unsigned *prefix)
{
	struct sockaddr_storage tmp;
	socklen_t tmplen = 0;
	const char *pfx = NULL;
	unsigned n = 0;

	switch (cfg_prefix(s, &tmp, &tmplen, &n, &pfx)) {
	case CFG_PFX_OK:
		*ss = tmp;
		*len = tmplen;
		*prefix = n;
		return 0;
	case CFG_PFX_RANGE:
		return -ERANGE;
	case CFG_PFX_BAD_ADDR:
	case CFG_PFX_PORT:
	case CFG_PFX_NONE:
	case CFG_PFX_BAD:
	case CFG_PFX_COUNT:
	default:
		return -EINVAL;
	}
}

/* "1h", "1500ms": the largest unit that shows ms exactly. */
const char *
cfg_fmt_ms(uint32_t ms, char *buf, size_t len)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, len, "%uh", (unsigned)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, len, "%um", (unsigned)(ms / 60000));
	else if (ms != 0 && ms % 1000 == 0)
		snprintf(buf, len, "%us", (unsigned)(ms / 1000));
	else
		snprintf(buf, len, "%ums", (unsigned)ms);
	return buf;
}

const char *
cfg_fmt_size(size_t n, char *buf, size_t len)
{
	if (n != 0 && n % (1024 * 1024) == 0)
		snprintf(buf, len, "%zum", n / (1024 * 1024));
	else if (n != 0 && n % 1024 == 0)
		snprintf(buf, len, "%zuk", n / 1024);
	else
		snprintf(buf, len, "%zu", n);
	return buf;
}

const char *
cfg_fmt_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
	}
	return buf;
}

const char *
cfg_fmt_host(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const void *a = ss->ss_family == AF_INET6 ?
	    (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr :
	    (const void *)&((const struct sockaddr_in *)ss)->sin_addr;

	if (len == 0)
		return buf;
	if (inet_ntop(ss->ss_family == AF_INET6 ? AF_INET6 : AF_INET, a, buf,
	    (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
	return buf;
}

int
cfg_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
		const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;

		return x->sin6_port == y->sin6_port &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)a;
		const struct sockaddr_in *y = (const struct sockaddr_in *)b;

		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	return 0;
}

int
cfg_same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	struct sockaddr_storage x = *a, y = *b;

	cfg_set_port(&x, 0);
	cfg_set_port(&y, 0);
	return cfg_same_addr(&x, &y);
}

int
cfg_is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(
		    &((const struct sockaddr_in6 *)ss)->sin6_addr);
	return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
}

int
cfg_is_multicast(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_MULTICAST(
		    &((const struct sockaddr_in6 *)ss)->sin6_addr);
	return IN_MULTICAST(ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr));
}

void
cfg_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/* ---- value checks that report; each returns 0 or -1 (error reported) ---- */

/* Copies s into out even when it is bad, so later messages can name the object. */
int
cfg_name(struct cfg_parser *p, const char *what, const char *s,
    char out[CFG_NAME_MAX])
{
	size_t n = strlen(s), i;

	memcpy(out, s, n < CFG_NAME_MAX ? n + 1 : CFG_NAME_MAX - 1);
	out[CFG_NAME_MAX - 1] = '\0';
	if (n == 0 || n >= CFG_NAME_MAX) {
		cfg_err(p, "%s name \"%s\" must be 1..%d characters", what, s,
		    CFG_NAME_MAX - 1);
		return -1;
	}
	for (i = 0; i < n; i++) {
		char c = s[i];

		/* Names end up in metrics labels and tandemctl arguments. */
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
			cfg_err(p, "bad %s name \"%s\" (letters, digits, \".\", \"_\" "
			    "and \"-\" only)", what, s);
			return -1;
		}
	}
	return 0;
}

int
cfg_uint(struct cfg_parser *p, const char *key, const char *s, unsigned min,
    unsigned max, unsigned *out)
{
	const char *end;
	uint64_t v = 0;
	enum cfg_num r = cfg_digits(s, &end, &v);

	if (r == CFG_NUM_BAD || *end != '\0') {
		cfg_err(p, "bad number \"%s\" for %s", s, key);
		return -1;
	}
	if (r == CFG_NUM_RANGE || v < min || v > max) {
		cfg_err(p, "%s %s out of range (%u..%u)", key, s, min, max);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

/* off: 0 is accepted outside min..max, and the message says so. */
static int
cfg_dur_range(struct cfg_parser *p, const char *key, const char *s, uint32_t min,
    uint32_t max, int off, uint32_t *out)
{
	char a[32], b[32];
	uint32_t v = 0;
	enum cfg_num r = cfg_duration(s, &v);

	switch (r) {
	case CFG_NUM_OK:
		if (v == 0 && off) {
			*out = 0;
			return 0;
		}
		if (v >= min && v <= max) {
			*out = v;
			return 0;
		}
		break;
	case CFG_NUM_RANGE:
		break;
	case CFG_NUM_NOUNIT:
		cfg_err(p, "duration \"%s\" needs a unit (ms, s, m, h)", s);
		return -1;
	case CFG_NUM_BAD:
	case CFG_NUM_COUNT:
	default:
		cfg_err(p, "bad duration \"%s\" (a number and ms, s, m or h: 500ms, 2s)", s);
		return -1;
	}
	cfg_err(p, "%s %s out of range (%s%s..%s)", key, s, off ? "0 or " : "",
	    cfg_fmt_ms(min, a, sizeof(a)), cfg_fmt_ms(max, b, sizeof(b)));
	return -1;
}

int
cfg_dur(struct cfg_parser *p, const char *key, const char *s, uint32_t min,
    uint32_t max, uint32_t *out)
{
	return cfg_dur_range(p, key, s, min, max, 0, out);
}

int
cfg_dur_off(struct cfg_parser *p, const char *key, const char *s, uint32_t min,
    uint32_t max, uint32_t *out)
{
	return cfg_dur_range(p, key, s, min, max, 1, out);
}

int
cfg_addr_report(struct cfg_parser *p, const char *s, int port_required,
    struct sockaddr_storage *ss, socklen_t *len, int *has_port)
{
	struct sockaddr_storage tmp;
	socklen_t tmplen = 0;
	const char *port = NULL;
	int hp = 0;

	switch (cfg_addr(s, port_required, &tmp, &tmplen, &hp, &port)) {
	case CFG_ADDR_OK:
		*ss = tmp;
		*len = tmplen;
		if (has_port != NULL)
			*has_port = hp;
		return 0;
	case CFG_ADDR_NEED_PORT:
		cfg_err(p, "address \"%s\" needs a port (ADDR:PORT, [IPv6]:PORT)", s);
		return -1;
	case CFG_ADDR_BAD_PORT:
		cfg_err(p, "bad port \"%s\" in address \"%s\"", port, s);
		return -1;
	case CFG_ADDR_PORT_RANGE:
		cfg_err(p, "port %s out of range (1..65535)", port);
		return -1;
	case CFG_ADDR_V6_BRACKETS:
	case CFG_ADDR_BAD:
	case CFG_ADDR_COUNT:
	default:
		cfg_err(p, "bad address \"%s\"", s);
		return -1;
	}
}

/* Printable ASCII without spaces: what may go into an HTTP request line or header. */
int
cfg_http_token(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

int
cfg_host_report(struct cfg_parser *p, const char *key, const char *s,
    struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_storage tmp;
	socklen_t tmplen = 0;
	int has_port = 0;

	if (cfg_addr_report(p, s, 0, &tmp, &tmplen, &has_port) != 0)
		return -1;
	if (has_port) {
		cfg_err(p, "%s address \"%s\" must not have a port", key, s);
		return -1;
	}
	*ss = tmp;
	*len = tmplen;
	return 0;
}

int
cfg_prefix_report(struct cfg_parser *p, const char *key, const char *s,
    struct sockaddr_storage *ss, socklen_t *len, unsigned *prefix)
{
	struct sockaddr_storage tmp;
	socklen_t tmplen = 0;
	const char *pfx = "";
	unsigned n = 0;

	switch (cfg_prefix(s, &tmp, &tmplen, &n, &pfx)) {
	case CFG_PFX_OK:
		*ss = tmp;
		*len = tmplen;
		*prefix = n;
		return 0;
	case CFG_PFX_PORT:
		cfg_err(p, "%s \"%s\" must not have a port", key, s);
		return -1;
	case CFG_PFX_NONE:
		cfg_err(p, "%s \"%s\" needs a prefix length (ADDR/LEN: 198.18.0.100/24, "
		    "2001:db8::100/64)", key, s);
		return -1;
	case CFG_PFX_BAD:
		cfg_err(p, "bad prefix length \"%s\" in %s \"%s\"", pfx, key, s);
		return -1;
	case CFG_PFX_RANGE:
		cfg_err(p, "%s prefix length %s out of range (1..%u)", key, pfx,
		    tmp.ss_family == AF_INET6 ? 128u : 32u);
		return -1;
	case CFG_PFX_BAD_ADDR:
	case CFG_PFX_COUNT:
	default:
		cfg_err(p, "bad address \"%s\"", s);
		return -1;
	}
}

int
cfg_onoff(struct cfg_parser *p, const char *key, const char *s, bool *out)
{
	if (strcmp(s, "on") == 0) {
		*out = true;
		return 0;
	}
	if (strcmp(s, "off") == 0) {
		*out = false;
		return 0;
	}
	cfg_err(p, "bad value \"%s\" for %s (on, off)", s, key);
	return -1;
}

int
cfg_abs_path(struct cfg_parser *p, const char *key, const char *s,
    char out[CFG_PATH_MAX])
{
	size_t n = strlen(s);

	/* Relative would mean: relative to wherever the daemon happened to start. */
	if (s[0] != '/') {
		cfg_err(p, "%s path \"%s\" must be absolute", key, s);
		return -1;
	}
	if (n >= CFG_PATH_MAX) {
		cfg_err(p, "%s path \"%s\" too long (max %d bytes)", key, s,
		    CFG_PATH_MAX - 1);
		return -1;
	}
	memcpy(out, s, n + 1);
	return 0;
}

int
cfg_ifname(struct cfg_parser *p, const char *s, char out[CFG_IFNAME_MAX])
{
	size_t n = strlen(s);

	if (n == 0 || n >= CFG_IFNAME_MAX) {
		cfg_err(p, "interface name \"%s\" must be 1..%d characters", s,
		    CFG_IFNAME_MAX - 1);
		return -1;
	}
	/* What the kernel's dev_valid_name() refuses. */
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strpbrk(s, "/: \t") != NULL) {
		cfg_err(p, "bad interface name \"%s\" (no \"/\", \":\" or spaces, not "
		    "\".\" or \"..\")", s);
		return -1;
	}
	memcpy(out, s, n + 1);
	return 0;
}
