/*
 * tt — small helpers shared by the lab's test tools (tbackend, tclient, tnetem).
 *
 * Not part of the daemon: these tools only ever run inside the lab's network
 * namespaces (scripts/lab). The body pattern is shared so that tclient can
 * verify, byte for byte, a /size/N body that tbackend sent through a proxy.
 */
#ifndef TANDEM_TT_H
#define TANDEM_TT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* 64 bytes; body byte i of GET /size/N is TT_PATTERN[i % 64]. */
#define TT_PATTERN \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-\n"
#define TT_PATTERN_LEN 64u

#define TT_ADDR_STRLEN 64   /* "[v6]:port" fits */

/*
 * Parse "a.b.c.d:port" or "[v6]:port" into *ss / *len.
 * Returns 0, or -EINVAL if s is not such an address.
 */
int tt_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Format sa as "ip:port" into buf (TT_ADDR_STRLEN bytes). Returns buf. */
char *tt_format_addr(const struct sockaddr *sa, char *buf, size_t len);

/* Fill buf[0..len) with the pattern as it continues at stream offset off. */
void tt_pattern_fill(char *buf, size_t len, uint64_t off);

/*
 * The deterministic pseudo-random stream used by tclient: byte off of the
 * stream selected by seed. Both the sender and the checker compute it, so
 * neither has to keep a copy of what was sent.
 */
void tt_stream_fill(uint64_t seed, uint64_t off, unsigned char *buf, size_t len);

/*
 * Write our pid to path, atomically (temp file + rename), so a waiting script
 * sees either no file or a whole one. Returns 0 or -errno.
 */
int tt_write_ready_file(const char *path);

/* Raise RLIMIT_NOFILE to its hard limit; returns the soft limit now in force. */
long tt_raise_nofile(void);

/* Parse a non-negative decimal that fits max; returns 0 or -EINVAL. */
int tt_parse_u64(const char *s, uint64_t max, uint64_t *out);

#endif
