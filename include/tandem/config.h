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
 *       boot-epoch-file /var/lib/tandem/epoch   # default /var/lib/tandem/<name>.epoch
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
 *   vrrp-group NAME {               # zero or more; none = a plain proxy
 *       id 51                       # 1..255, required, unique per node
 *       interface eth0              # required, 1..15 characters
 *       vip 198.18.0.100/24         # one or more, ADDR/PREFIX (IPv4 or IPv6),
 *                                   # unique across groups
 *       priority 150                # 1..254, required
 *       advert-interval 1s          # 10ms..40s
 *       preempt on                  # on|off
 *       preempt-delay 0             # 0..1h
 *       peer 198.18.0.3             # unicast peer, one per heartbeat path, 1..8
 *       multicast 224.0.0.18        # instead of peers (never both; one is required)
 *       port 5798                   # UDP port of the adverts
 *       auth-key /etc/tandem/auth.key   # required, absolute (read at load time)
 *       garp-count 3                # 1..100 announcements per burst
 *       garp-interval 100ms         # 0..10s between them
 *       garp-repeat 2s              # second burst after this; 0 = none
 *       garp-refresh 0              # periodic refresh; 0 = off
 *       track-interface eth1 [weight N]       # no weight: link down -> FAULT;
 *                                             # weight 1..254: priority - N
 *       track-backend NAME weight N           # every server of NAME down -> - N
 *       track-script PATH [interval 2s] [timeout 1s] [rise 2] [fall 2] [weight N]
 *                                   # no weight: failing -> FAULT
 *       notify PATH                 # run as: PATH GROUP OLD-STATE NEW-STATE
 *       notify-timeout 10s          # then it is killed
 *   }
 *   sync-group NAME {               # groups that always fail over together
 *       group NAME                  # two or more vrrp-groups, each in at most
 *   }                               # one sync-group
 *   sync {                          # at most one: state sync with the peer
 *       listen 198.18.1.1:7400      # required
 *       peer 198.18.1.2:7400        # required, same address family
 *       auth-key /etc/tandem/sync.key   # default: the first vrrp-group's;
 *                                   # required when there is no vrrp-group
 *       max-entries 100000          # shadow table bound, 1..10000000
 *       shutdown-handover on        # on|off: SIGTERM hands the sessions over
 *   }
 *
 * Durations take ms|s|m|h (bare numbers are refused), sizes take k|m (bare =
 * bytes). IPv6 addresses are written [addr]:port. Blocks may come in any
 * order: names (backends, vrrp-groups) are resolved once the file is read.
 */
#ifndef TANDEM_CONFIG_H
#define TANDEM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <tandem/bal.h>

#define CFG_NAME_MAX BAL_NAME_MAX
#define CFG_PATH_MAX 256
#define CFG_IFNAME_MAX 16     /* IFNAMSIZ: 15 characters and the NUL */

#define CFG_MAX_VIPS 16       /* per vrrp-group */
#define CFG_MAX_PEERS 8       /* per vrrp-group: one per heartbeat path */
#define CFG_MAX_TRACK 16      /* per vrrp-group and kind of track-* */
#define CFG_MAX_GROUPS 255    /* vrrp-groups per node: one per id */
#define CFG_NO_SYNC_GROUP ((size_t)-1)

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
	char boot_epoch_file[CFG_PATH_MAX];  /* default "/var/lib/tandem/<name>.epoch" */
};

/* Addresses below carry no port unless said otherwise. */
struct cfg_vip {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned prefix;          /* 1..32 (IPv4), 1..128 (IPv6) */
	int line;
};

struct cfg_peer {
	struct sockaddr_storage addr;  /* port = the group's advert port */
	socklen_t addrlen;
	int line;
};

struct cfg_track_if {
	char ifname[CFG_IFNAME_MAX];
	unsigned weight;          /* 0: link down -> FAULT; 1..254: priority decrement */
	int line;
};

struct cfg_track_backend {
	char name[CFG_NAME_MAX];
	size_t backend;           /* index into cfg->backends, resolved by the parser */
	unsigned weight;          /* 1..254: decrement while every server is down */
	int line;
};

struct cfg_track_script {
	char path[CFG_PATH_MAX];  /* absolute */
	uint32_t interval_ms;     /* default 2000 */
	uint32_t timeout_ms;      /* default 1000, <= interval */
	unsigned rise;            /* default 2: passes in a row to count as up */
	unsigned fall;            /* default 2: failures in a row to count as down */
	unsigned weight;          /* 0: failing -> FAULT; 1..254: priority decrement */
	int line;
};

struct cfg_vrrp {
	char name[CFG_NAME_MAX];
	unsigned id;              /* 1..255, unique per node */
	char interface[CFG_IFNAME_MAX];
	struct cfg_vip vips[CFG_MAX_VIPS];  /* 1..CFG_MAX_VIPS, unique across groups */
	size_t nvips;
	unsigned priority;        /* 1..254 */
	uint32_t advert_interval_ms;  /* default 1000, 10..40000 */
	bool preempt;             /* default true */
	uint32_t preempt_delay_ms;    /* default 0 */
	struct cfg_peer peers[CFG_MAX_PEERS];  /* unicast; npeers == 0 with multicast */
	size_t npeers;
	struct sockaddr_storage multicast;  /* AF_UNSPEC = unicast; else port set */
	socklen_t multicastlen;
	uint16_t port;            /* UDP, host order; default 5798 */
	char auth_key[CFG_PATH_MAX];  /* absolute path, not read by the parser */
	unsigned garp_count;      /* default 3, 1..100 */
	uint32_t garp_interval_ms;    /* default 100 */
	uint32_t garp_repeat_ms;      /* second burst; default 2000, 0 = none */
	uint32_t garp_refresh_ms;     /* default 0 = off */
	struct cfg_track_if track_if[CFG_MAX_TRACK];
	size_t ntrack_if;
	struct cfg_track_backend track_backend[CFG_MAX_TRACK];
	size_t ntrack_backend;
	struct cfg_track_script track_script[CFG_MAX_TRACK];
	size_t ntrack_script;
	char notify[CFG_PATH_MAX];    /* "" = none */
	uint32_t notify_timeout_ms;   /* default 10000 */
	size_t sync_group;        /* index into cfg->sync_groups, or CFG_NO_SYNC_GROUP */
	int line;
};

struct cfg_sync_member {
	char name[CFG_NAME_MAX];
	size_t group;             /* index into cfg->vrrp, resolved by the parser */
	int line;
};

struct cfg_sync_group {
	char name[CFG_NAME_MAX];
	struct cfg_sync_member members[CFG_MAX_GROUPS];  /* 2 or more */
	size_t nmembers;
	int line;
};

struct cfg_sync {
	bool enabled;             /* a sync block was given; nothing else is set if not */
	struct sockaddr_storage listen;  /* with port */
	socklen_t listenlen;
	struct sockaddr_storage peer;    /* with port, same family as listen */
	socklen_t peerlen;
	char auth_key[CFG_PATH_MAX];  /* default: the first vrrp-group's auth-key */
	unsigned max_entries;     /* default 100000, 1..10000000 */
	bool shutdown_handover;   /* default true */
	int line;
};

struct cfg {
	char file[CFG_PATH_MAX];
	struct cfg_node node;
	struct cfg_backend *backends;
	size_t nbackends;
	struct cfg_frontend *frontends;
	size_t nfrontends;
	struct cfg_vrrp *vrrp;    /* none: the node runs as a plain proxy */
	size_t nvrrp;
	struct cfg_sync_group *sync_groups;
	size_t nsync_groups;
	struct cfg_sync sync;
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

#define CFG_DIGEST_LEN 32

/*
 * SHA-256 of the proxy configuration (frontends and backends, canonical
 * form: comments, key order and unit spelling do not matter; node, vrrp-group
 * and sync sections are left out because they differ per node). Both nodes of
 * a pair must have the same. Returns 0 or -ENOMEM.
 */
int cfg_digest(const struct cfg *cfg, uint8_t out[CFG_DIGEST_LEN]);

/* Durations and sizes as the config writes them: "250ms", "2s", "16k". */
int cfg_parse_duration_ms(const char *s, uint32_t *ms);
int cfg_parse_size(const char *s, size_t *bytes);
/* "198.18.0.1:80", "[2001:db8::1]:80"; port_required=0 also accepts a bare address. */
int cfg_parse_addr(const char *s, int port_required, struct sockaddr_storage *ss,
    socklen_t *len);
/*
 * "198.18.0.100/24", "2001:db8::100/64": the address (port 0) and its prefix
 * length, 1..32 or 1..128. Returns 0, -ERANGE (prefix length) or -EINVAL;
 * the outputs are written only on success.
 */
int cfg_parse_prefix(const char *s, struct sockaddr_storage *ss, socklen_t *len,
    unsigned *prefix);

#endif
