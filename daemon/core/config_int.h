/*
 * config internals, shared by the three files of the parser. Private to
 * daemon/core/.
 *
 *   config.c        lines and words, blocks and keyword dispatch, the node,
 *                   backend and frontend sections, whole-file checks, and the
 *                   public cfg_parse/cfg_load/cfg_free.
 *   config_value.c  value parsers and formatters (numbers, durations, sizes,
 *                   addresses, prefixes), pure, and the checks built on them
 *                   that report through cfg_err.
 *   config_vrrp.c   the vrrp-group, sync-group and sync sections.
 *
 * Handlers follow one rule: report every problem with cfg_err (the parser
 * counts it) and return -1, or return 0; they never stop the parse, except
 * through p->oom.
 */
#ifndef TANDEM_CONFIG_INT_H
#define TANDEM_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <tandem/config.h>

#define CFG_MAX_ARGS 16       /* words on one line; the longest (track-script) has 12 */
#define CFG_KW_MAX 24         /* keywords in the largest block table (vrrp-group) */
#define CFG_DEPTH 3           /* top level, backend, health-check */

#define CFG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Keyword flags. */
#define CFG_KW_BLOCK 0x1      /* "kw [name] {" opens a block */
#define CFG_KW_REPEAT 0x2     /* may appear more than once in its block */

enum cfg_blk {
	CFG_BLK_TOP = 0,
	CFG_BLK_NODE,
	CFG_BLK_BACKEND,
	CFG_BLK_HEALTH,
	CFG_BLK_FRONTEND,
	CFG_BLK_VRRP,
	CFG_BLK_SYNC_GROUP,
	CFG_BLK_SYNC,
	CFG_BLK_COUNT
};

/* A block being parsed: which one, where it opened, which keys it has seen. */
struct cfg_open {
	enum cfg_blk blk;
	int line;
	size_t idx;               /* index of its backend, frontend, vrrp or sync-group */
	int seen[CFG_KW_MAX];     /* line of each keyword of the block's table, 0 = not yet */
};

/* Lines of frontend keys checked only after the whole file is read. */
struct cfg_fe_lines {
	int bind;
	int backend;
	int source;
};

struct cfg_parser {
	struct cfg *cfg;
	const char *file;
	FILE *err;
	int line;
	int nerr;
	int oom;
	struct cfg_open stack[CFG_DEPTH];
	size_t depth;             /* stack[0] is the top level, always open */
	int ignore;               /* nesting inside a block we skip (unknown or broken) */
	int want_brace;           /* a block opened without "{": a lone "{" may follow */
	int ignore_line;
	char ignore_what[CFG_NAME_MAX];
	size_t be_cap;
	size_t fe_cap;
	struct cfg_fe_lines *fe_lines;  /* parallel to cfg->frontends */
	size_t vr_cap;
	size_t sg_cap;
	int *vr_id_lines;         /* parallel to cfg->vrrp: line of a valid "id", 0 = none */
	int sync_key_line;        /* line of sync's auth-key, valid or not; 0 = not given */
};

struct cfg_kw {
	const char *name;
	int min_args;
	int max_args;
	unsigned flags;
	int (*fn)(struct cfg_parser *p, int argc, char **argv);
};

struct cfg_block {
	const char *what;
	const struct cfg_kw *kw;  /* sorted by name, for bsearch */
	size_t nkw;
	void (*close)(struct cfg_parser *p, struct cfg_open *o);
};

enum cfg_num {
	CFG_NUM_OK = 0,
	CFG_NUM_BAD,              /* not a number / unknown unit */
	CFG_NUM_NOUNIT,           /* duration without a unit */
	CFG_NUM_RANGE,            /* does not fit */
	CFG_NUM_COUNT
};

enum cfg_addr_err {
	CFG_ADDR_OK = 0,
	CFG_ADDR_BAD,
	CFG_ADDR_NEED_PORT,
	CFG_ADDR_BAD_PORT,
	CFG_ADDR_PORT_RANGE,
	CFG_ADDR_V6_BRACKETS,
	CFG_ADDR_COUNT
};

/* Room for "[v6]:port" and a unit-suffixed number. */
#define CFG_ADDR_TEXT (INET6_ADDRSTRLEN + 16)
#define CFG_WHERE_MAX (CFG_NAME_MAX + 40)

/* ---- config.c: diagnostics and structure ---- */

/* Report "file:line: message" and count it. */
void cfg_err_at(struct cfg_parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define cfg_err(p, ...) cfg_err_at((p), (p)->line, __VA_ARGS__)

/* "node", "backend \"web\"", "vrrp-group \"front\"": the block o for messages, in buf. */
const char *cfg_where(const struct cfg_parser *p, const struct cfg_open *o,
    char *buf, size_t len);

/* The innermost open block (the top level when none is). */
struct cfg_open *cfg_top(struct cfg_parser *p);

/* Line where key was given in the open block o, 0 if it was not. */
int cfg_seen(const struct cfg_open *o, const char *key);

/* Push block blk (of element idx) at the current line; 0, or -1 when too deep. */
int cfg_open_block(struct cfg_parser *p, enum cfg_blk blk, size_t idx);

/*
 * Make room for element n of *arr (capacity *cap, doubling from 4). Returns 0,
 * or -1 with p->oom set (the parse stops); *arr is unchanged then.
 */
int cfg_grow(struct cfg_parser *p, void **arr, size_t *cap, size_t n,
    size_t elsize);

/* ---- config_value.c: pure parsers and formatters ---- */

/*
 * Leading decimal digits of s into *v, *end after them. Refuses an empty
 * number, a sign and leading blanks (CFG_NUM_BAD) and reports overflow
 * (CFG_NUM_RANGE, *end still set) instead of clamping.
 */
enum cfg_num cfg_digits(const char *s, const char **end, uint64_t *v);

/* "250ms", "2s", "5m", "1h", or "0": *ms. A bare non-zero number is CFG_NUM_NOUNIT. */
enum cfg_num cfg_duration(const char *s, uint32_t *ms);

/* "4096", "16k", "1m" (K, M too): *bytes. */
enum cfg_num cfg_size(const char *s, size_t *bytes);

/*
 * The address forms of the config: a.b.c.d[:port], [v6][:port], and a bare
 * v6 where no port is required. *has_port tells whether a port was written,
 * *portp points at its text (for messages). *ss and *len are written on OK
 * and may be clobbered otherwise.
 */
enum cfg_addr_err cfg_addr(const char *s, int port_required,
    struct sockaddr_storage *ss, socklen_t *len, int *has_port, const char **portp);

/* Formatters into buf (returned): "1h", "1500ms"; "16k"; "198.18.0.1:80", "[::1]:80". */
const char *cfg_fmt_ms(uint32_t ms, char *buf, size_t len);
const char *cfg_fmt_size(size_t n, char *buf, size_t len);
const char *cfg_fmt_addr(const struct sockaddr_storage *ss, char *buf, size_t len);
/* The address alone, without port or brackets: "198.18.0.1", "2001:db8::1". */
const char *cfg_fmt_host(const struct sockaddr_storage *ss, char *buf, size_t len);

/* Same family, address and port. */
int cfg_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* Same family and address, ports ignored. */
int cfg_same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* 0.0.0.0 or :: */
int cfg_is_wildcard(const struct sockaddr_storage *ss);
/* 224.0.0.0/4 or ff00::/8 */
int cfg_is_multicast(const struct sockaddr_storage *ss);
/* Set the port of an AF_INET or AF_INET6 address (host order). */
void cfg_set_port(struct sockaddr_storage *ss, uint16_t port);

/* Printable ASCII without spaces: what may go into an HTTP request line or header. */
int cfg_http_token(const char *s);

/* ---- config_value.c: checks that report; each returns 0, or -1 after cfg_err ---- */

/*
 * An object name (letters, digits, ".", "_", "-"; 1..CFG_NAME_MAX-1). Copies
 * s into out even when it is bad, so later messages can name the object.
 */
int cfg_name(struct cfg_parser *p, const char *what, const char *s,
    char out[CFG_NAME_MAX]);
/* A decimal number in min..max. */
int cfg_uint(struct cfg_parser *p, const char *key, const char *s, unsigned min,
    unsigned max, unsigned *out);
/* A duration in min..max. */
int cfg_dur(struct cfg_parser *p, const char *key, const char *s, uint32_t min,
    uint32_t max, uint32_t *out);
/* A duration that is 0 (off) or in min..max. */
int cfg_dur_off(struct cfg_parser *p, const char *key, const char *s, uint32_t min,
    uint32_t max, uint32_t *out);
/* An address (see cfg_addr); *ss, *len and *has_port (may be NULL) are written on success. */
int cfg_addr_report(struct cfg_parser *p, const char *s, int port_required,
    struct sockaddr_storage *ss, socklen_t *len, int *has_port);
/* An address without a port, for key. */
int cfg_host_report(struct cfg_parser *p, const char *key, const char *s,
    struct sockaddr_storage *ss, socklen_t *len);
/* "ADDR/LEN" for key (vip). */
int cfg_prefix_report(struct cfg_parser *p, const char *key, const char *s,
    struct sockaddr_storage *ss, socklen_t *len, unsigned *prefix);
/* "on" or "off" for key. */
int cfg_onoff(struct cfg_parser *p, const char *key, const char *s, bool *out);
/* An absolute path that fits CFG_PATH_MAX, for key; out is written only on success. */
int cfg_abs_path(struct cfg_parser *p, const char *key, const char *s,
    char out[CFG_PATH_MAX]);
/* A network interface name as the kernel accepts it; out is written only on success. */
int cfg_ifname(struct cfg_parser *p, const char *s, char out[CFG_IFNAME_MAX]);

/* ---- config_vrrp.c ---- */

extern const struct cfg_block cfg_vrrp_block;
extern const struct cfg_block cfg_sync_group_block;
extern const struct cfg_block cfg_sync_block;

/* Top-level handlers that open "vrrp-group NAME {", "sync-group NAME {", "sync {". */
int cfg_top_vrrp_group(struct cfg_parser *p, int argc, char **argv);
int cfg_top_sync_group(struct cfg_parser *p, int argc, char **argv);
int cfg_top_sync(struct cfg_parser *p, int argc, char **argv);

/*
 * Once the file is read (blocks may come in any order): resolve track-backend
 * and sync-group names, give sync its default auth-key.
 */
void cfg_vrrp_check(struct cfg_parser *p);

#endif
