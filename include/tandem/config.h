/*
 * config — the per-node configuration file: grammar, validation, result.
 *
 * Grammar (one statement per line, '#' to end of line is a comment,
 * blocks are "keyword [name] {" ... "}"):
 *
 *   node {                          # exactly one
 *       name lb1                    # required
 *       workers 2                   # default: CPU count ("auto")
 *       control /run/tandem/tandem.sock
 *       metrics 198.18.0.2:9100     # optional Prometheus listener
 *       log-level info              # error|warning|info|debug
 *   }
 *   backend NAME {                  # one or more
 *       algorithm wrr               # roundrobin|wrr|leastconn|source|lrt|p2c
 *       retries 2                   # connect retries on other servers
 *       slow-start 10s              # 0 = off
 *       passive-fails 3             # consecutive connect failures -> down; 0 = off
 *       health-check {              # optional; no block = servers always up
 *           type http               # tcp|http
 *           interval 1s
 *           timeout 500ms
 *           rise 2
 *           fall 3
 *           jitter 10%
 *           method GET              # http only
 *           path /health
 *           host www.example
 *           expect-status 200-399   # or a single code
 *       }
 *       server NAME ADDR:PORT [weight N] [state up|drain|maint]
 *   }
 *   frontend NAME {                 # one or more
 *       bind ADDR:PORT              # required
 *       mode tcp                    # tcp (http later)
 *       backend NAME                # required, must exist
 *       source vip|none|ADDR        # backend-side source address
 *       max-connections 10000
 *       timeout-connect 2s
 *       timeout-client 60s          # client side silent that long -> close
 *       timeout-server 60s          # server side silent that long -> close
 *       timeout-idle 300s           # both sides silent that long -> close
 *       buffer-size 16k             # per direction
 *   }
 *
 * Durations take ms|s|m|h (bare numbers are refused), sizes take k|m (bare =
 * bytes). IPv6 addresses are written [addr]:port.
 */
#ifndef TANDEM_CONFIG_H
#define TANDEM_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <tandem/bal.h>

#define CFG_NAME_MAX BAL_NAME_MAX
#define CFG_PATH_MAX 256

enum cfg_hc_type {
	CFG_HC_NONE = 0,
	CFG_HC_TCP,
	CFG_HC_HTTP,
	CFG_HC_COUNT
};

enum cfg_mode {
	CFG_MODE_TCP = 0,
	CFG_MODE_HTTP,
	CFG_MODE_COUNT
};

enum cfg_source {
	CFG_SOURCE_NONE = 0,  /* kernel picks the source address */
	CFG_SOURCE_VIP,       /* the frontend's bind address, IP_FREEBIND */
	CFG_SOURCE_ADDR,      /* source_addr, IP_FREEBIND */
	CFG_SOURCE_COUNT
};

struct cfg_health {
	enum cfg_hc_type type;
	uint32_t interval_ms;     /* default 2000 */
	uint32_t timeout_ms;      /* default 1000, must be <= interval */
	unsigned rise;            /* default 2 */
	unsigned fall;            /* default 3 */
	unsigned jitter_pct;      /* default 10, 0..50 */
	char method[16];          /* default "GET" */
	char path[CFG_PATH_MAX];  /* default "/" */
	char host[CFG_PATH_MAX];  /* default "" = the server address */
	int status_min;           /* default 200 */
	int status_max;           /* default 399 */
};

struct cfg_server {
	char name[CFG_NAME_MAX];
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned weight;          /* default 1, 1..256 */
	enum bal_state state;     /* initial: BAL_UP, BAL_DRAIN or BAL_MAINT */
	int line;
};

struct cfg_backend {
	char name[CFG_NAME_MAX];
	enum bal_algo algo;       /* default roundrobin */
	unsigned retries;         /* default 2 */
	uint32_t slowstart_ms;    /* default 0 = off */
	unsigned passive_fails;   /* default 3, 0 = off */
	struct cfg_health hc;
	struct cfg_server *servers;
	size_t nservers;
	int line;
};

struct cfg_frontend {
	char name[CFG_NAME_MAX];
	struct sockaddr_storage bind;
	socklen_t bindlen;
	enum cfg_mode mode;
	char backend_name[CFG_NAME_MAX];
	size_t backend;           /* index into cfg->backends, resolved by the parser */
	enum cfg_source source;
	struct sockaddr_storage source_addr;  /* CFG_SOURCE_ADDR; port 0 */
	socklen_t source_addrlen;
	unsigned max_conns;       /* default 10000 */
	uint32_t timeout_connect_ms;  /* default 2000 */
	uint32_t timeout_client_ms;   /* default 60000 */
	uint32_t timeout_server_ms;   /* default 60000 */
	uint32_t timeout_idle_ms;     /* default 300000 */
	size_t bufsize;           /* default 16384, 1k..1m */
	int line;
};

struct cfg_node {
	char name[CFG_NAME_MAX];
	unsigned workers;         /* 0 = CPU count */
	char control[CFG_PATH_MAX];  /* default "/run/tandem/tandem.sock" */
	struct sockaddr_storage metrics;  /* ss_family AF_UNSPEC = off */
	socklen_t metricslen;
	int log_level;            /* enum log_level, default info */
};

struct cfg {
	char file[CFG_PATH_MAX];
	struct cfg_node node;
	struct cfg_backend *backends;
	size_t nbackends;
	struct cfg_frontend *frontends;
	size_t nfrontends;
};

/*
 * Parse and validate path. On success returns 0 and *out (owned by the
 * caller, free with cfg_free). On failure returns the number of errors (> 0)
 * after writing each one to err as "file:line: message\n" (every error, not
 * just the first), or -errno if the file cannot be read (also reported to err).
 */
int cfg_load(const char *path, FILE *err, struct cfg **out);

/* The same from a buffer; name is used in messages. */
int cfg_parse(const char *name, const char *text, size_t len, FILE *err,
    struct cfg **out);

void cfg_free(struct cfg *cfg);  /* NULL is a no-op */

/* Durations and sizes as the config writes them: "250ms", "2s", "16k". */
int cfg_parse_duration_ms(const char *s, uint32_t *ms);
int cfg_parse_size(const char *s, size_t *bytes);
/* "198.18.0.1:80", "[2001:db8::1]:80"; port_required=0 also accepts a bare address. */
int cfg_parse_addr(const char *s, int port_required, struct sockaddr_storage *ss,
    socklen_t *len);

#endif
