/* tt — see tt.h */
#include "tt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int
tt_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int
tt_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[TT_ADDR_STRLEN];
	const char *colon, *h = s;
	size_t hlen;
	uint64_t port;

	memset(ss, 0, sizeof(*ss));
	colon = strrchr(s, ':');
	if (colon == NULL)
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hlen < 2 || s[hlen - 1] != ']')
			return -EINVAL;
		h = s + 1;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (tt_parse_u64(colon + 1, 65535, &port) < 0 || port == 0)
		return -EINVAL;

	if (s[0] != '[') {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
	}
	return 0;
}

char *
tt_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
	return buf;
}

void
tt_pattern_fill(char *buf, size_t len, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = TT_PATTERN[(off + i) % TT_PATTERN_LEN];
}

/* splitmix64: one well-mixed 64-bit word per (seed, block) pair. */
static uint64_t
tt_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

void
tt_stream_fill(uint64_t seed, uint64_t off, unsigned char *buf, size_t len)
{
	uint64_t key = tt_mix(seed);
	size_t i = 0;

	/* Head up to the next 8-byte boundary of the stream, then whole words. */
	while (i < len && ((off + i) & 7) != 0) {
		uint64_t pos = off + i;

		buf[i++] = (unsigned char)(tt_mix(key ^ (pos >> 3)) >> ((pos & 7) * 8));
	}
	for (; i + 8 <= len; i += 8) {
		uint64_t word = tt_mix(key ^ ((off + i) >> 3));
		unsigned char b[8];

		for (unsigned k = 0; k < 8; k++)
			b[k] = (unsigned char)(word >> (k * 8));
		memcpy(buf + i, b, 8);
	}
	for (; i < len; i++) {
		uint64_t pos = off + i;

		buf[i] = (unsigned char)(tt_mix(key ^ (pos >> 3)) >> ((pos & 7) * 8));
	}
}

int
tt_write_ready_file(const char *path)
{
	char tmp[4096], line[32];
	int fd, n, ret = -EIO;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		return -errno;
	n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	if (write(fd, line, (size_t)n) != n) {
		ret = -errno;
		goto unlink_tmp;
	}
	if (close(fd) == -1) {
		fd = -1;
		ret = -errno;
		goto unlink_tmp;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		ret = -errno;
		goto unlink_tmp;
	}
	return 0;

unlink_tmp:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	return ret;
}

long
tt_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return -errno;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			return -errno;
	}
	return (long)rl.rlim_cur;
}
