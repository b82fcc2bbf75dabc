/*
 * config — lines, blocks, the node, backend and frontend sections, the
 * whole-file checks and the public API. See include/tandem/config.h for the
 * grammar and config_int.h for how the parser is split.
 */
#include "config_int.h"

#include <tandem/log.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define CFG_MAX_BACKENDS 1024
#define CFG_MAX_FRONTENDS 1024
#define CFG_WORKERS_MAX 64
#define CFG_FILE_MAX (16u << 20)  /* a config is a few KiB; anything this big is a mistake */
/* The top-level blocks, for messages. */
#define CFG_TOP_BLOCKS "node, backend, frontend, vrrp-group, sync-group, sync"

struct cfg_line {
	int argc;
	char *argv[CFG_MAX_ARGS];
	int quoted[CFG_MAX_ARGS];
};

struct cfg_sopt {
	const char *name;
	int (*fn)(struct cfg_parser *p, struct cfg_server *srv, const char *val);
};

static const struct cfg_block *const cfg_blocks[CFG_BLK_COUNT];

/* ---- diagnostics ---- */

void
cfg_err_at(struct cfg_parser *p, int line, const char *fmt, ...)
{
	va_list ap;

	p->nerr++;
	if (p->err == NULL)
		return;
	fprintf(p->err, "%s:%d: ", p->file, line);
	va_start(ap, fmt);
	vfprintf(p->err, fmt, ap);
	va_end(ap);
	fputc('\n', p->err);
}

const char *
cfg_where(const struct cfg_parser *p, const struct cfg_open *o, char *buf,
    size_t len)
{
	switch (o->blk) {
	case CFG_BLK_TOP:
		snprintf(buf, len, "top level");
		break;
	case CFG_BLK_NODE:
		snprintf(buf, len, "node");
		break;
	case CFG_BLK_BACKEND:
		snprintf(buf, len, "backend \"%s\"", p->cfg->backends[o->idx].name);
		break;
	case CFG_BLK_HEALTH:
		snprintf(buf, len, "health-check of backend \"%s\"",
		    p->cfg->backends[o->idx].name);
		break;
	case CFG_BLK_FRONTEND:
		snprintf(buf, len, "frontend \"%s\"", p->cfg->frontends[o->idx].name);
		break;
	case CFG_BLK_VRRP:
		snprintf(buf, len, "vrrp-group \"%s\"", p->cfg->vrrp[o->idx].name);
		break;
	case CFG_BLK_SYNC_GROUP:
		snprintf(buf, len, "sync-group \"%s\"", p->cfg->sync_groups[o->idx].name);
		break;
	case CFG_BLK_SYNC:
		snprintf(buf, len, "sync");
		break;
	case CFG_BLK_COUNT:
	default:
		snprintf(buf, len, "?");
		break;
	}
	return buf;
}

struct cfg_open *
cfg_top(struct cfg_parser *p)
{
	return &p->stack[p->depth - 1];
}

/* ---- growing arrays ---- */

int
cfg_grow(struct cfg_parser *p, void **arr, size_t *cap, size_t n, size_t elsize)
{
	size_t ncap;
	void *na;

	if (n < *cap)
		return 0;
	ncap = *cap != 0 ? *cap * 2 : 4;
	na = realloc(*arr, ncap * elsize);
	if (na == NULL) {
		p->oom = 1;
		return -1;
	}
	*arr = na;
	*cap = ncap;
	return 0;
}

/*
 * For arrays without a capacity field: the capacity is 4, then the next power
 * of two, so n alone says when the array is full.
 */
static int
cfg_grow_pow2(struct cfg_parser *p, void **arr, size_t n, size_t elsize)
{
	size_t cap = n;

	if (n != 0 && (n < 4 || (n & (n - 1)) != 0))
		return 0;
	return cfg_grow(p, arr, &cap, n, elsize);
}

/* ---- node ---- */

static int
node_boot_epoch_file(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_abs_path(p, "boot-epoch-file", argv[1], p->cfg->node.boot_epoch_file);
}

static int
node_control(struct cfg_parser *p, int argc, char **argv)
{
	const char *s = argv[1];
	size_t n = strlen(s);

	if (s[0] != '/') {
		cfg_err(p, "control socket path \"%s\" must be absolute", s);
		return -1;
	}
	if (n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		cfg_err(p, "control socket path \"%s\" too long (max %zu bytes)", s,
		    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return -1;
	}
	memcpy(p->cfg->node.control, s, n + 1);
	return 0;
}

static int
node_log_level(struct cfg_parser *p, int argc, char **argv)
{
	int lvl = log_level_parse(argv[1]);

	if (lvl < 0) {
		cfg_err(p, "unknown log-level \"%s\" (error, warning, info, debug)",
		    argv[1]);
		return -1;
	}
	p->cfg->node.log_level = lvl;
	return 0;
}

static int
node_metrics(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_node *n = &p->cfg->node;

	return cfg_addr_report(p, argv[1], 1, &n->metrics, &n->metricslen, NULL);
}

static int
node_name(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_name(p, "node", argv[1], p->cfg->node.name);
}

static int
node_workers(struct cfg_parser *p, int argc, char **argv)
{
	const char *end;
	uint64_t v = 0;
	enum cfg_num r;

	if (strcmp(argv[1], "auto") == 0) {
		p->cfg->node.workers = 0;
		return 0;
	}
	r = cfg_digits(argv[1], &end, &v);
	if (r == CFG_NUM_BAD || *end != '\0') {
		cfg_err(p, "bad number \"%s\" for workers (1..%d or auto)", argv[1],
		    CFG_WORKERS_MAX);
		return -1;
	}
	if (r == CFG_NUM_RANGE || v < 1 || v > CFG_WORKERS_MAX) {
		cfg_err(p, "workers %s out of range (1..%d or auto)", argv[1],
		    CFG_WORKERS_MAX);
		return -1;
	}
	p->cfg->node.workers = (unsigned)v;
	return 0;
}

/* ---- health-check ---- */

static struct cfg_health *
cfg_cur_hc(struct cfg_parser *p)
{
	return &p->cfg->backends[cfg_top(p)->idx].hc;
}

static int
hc_expect_status(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_health *hc = cfg_cur_hc(p);
	const char *s = argv[1], *end, *end2;
	uint64_t lo = 0, hi = 0;

	if (cfg_digits(s, &end, &lo) != CFG_NUM_OK)
		goto bad;
	hi = lo;
	if (*end == '-') {
		if (cfg_digits(end + 1, &end2, &hi) != CFG_NUM_OK || *end2 != '\0')
			goto bad;
	} else if (*end != '\0') {
		goto bad;
	}
	if (lo < 100 || lo > 599 || hi < 100 || hi > 599) {
		cfg_err(p, "expect-status %s out of range (100..599)", s);
		return -1;
	}
	if (lo > hi) {
		cfg_err(p, "expect-status range \"%s\" is reversed (write %u-%u)", s,
		    (unsigned)hi, (unsigned)lo);
		return -1;
	}
	hc->status_min = (int)lo;
	hc->status_max = (int)hi;
	return 0;
bad:
	cfg_err(p, "bad expect-status \"%s\" (a code like 200 or a range like 200-399)", s);
	return -1;
}

static int
hc_fall(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_uint(p, "fall", argv[1], 1, 100, &cfg_cur_hc(p)->fall);
}

static int
hc_host(struct cfg_parser *p, int argc, char **argv)
{
	size_t n = strlen(argv[1]);

	if (!cfg_http_token(argv[1])) {
		cfg_err(p, "host \"%s\" must not contain spaces or control characters",
		    argv[1]);
		return -1;
	}
	if (n >= CFG_PATH_MAX) {
		cfg_err(p, "host \"%s\" too long (max %d bytes)", argv[1], CFG_PATH_MAX - 1);
		return -1;
	}
	memcpy(cfg_cur_hc(p)->host, argv[1], n + 1);
	return 0;
}

static int
hc_interval(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "interval", argv[1], 100, 3600000, &cfg_cur_hc(p)->interval_ms);
}

static int
hc_jitter(struct cfg_parser *p, int argc, char **argv)
{
	const char *end;
	uint64_t v = 0;
	enum cfg_num r = cfg_digits(argv[1], &end, &v);

	if (r == CFG_NUM_BAD || (*end != '\0' && strcmp(end, "%") != 0)) {
		cfg_err(p, "bad jitter \"%s\" (a percentage like 10%%)", argv[1]);
		return -1;
	}
	if (r == CFG_NUM_RANGE || v > 50) {
		cfg_err(p, "jitter %s out of range (0..50%%)", argv[1]);
		return -1;
	}
	cfg_cur_hc(p)->jitter_pct = (unsigned)v;
	return 0;
}

static int
hc_method(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_health *hc = cfg_cur_hc(p);
	const char *s = argv[1];
	size_t n = strlen(s), i;

	for (i = 0; i < n; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			break;
	if (n == 0 || i != n || n >= sizeof(hc->method)) {
		cfg_err(p, "bad method \"%s\" (an upper-case HTTP method like GET or HEAD)", s);
		return -1;
	}
	memcpy(hc->method, s, n + 1);
	return 0;
}

static int
hc_path(struct cfg_parser *p, int argc, char **argv)
{
	size_t n = strlen(argv[1]);

	if (argv[1][0] != '/') {
		cfg_err(p, "path \"%s\" must start with \"/\"", argv[1]);
		return -1;
	}
	if (!cfg_http_token(argv[1])) {
		cfg_err(p, "path \"%s\" must not contain spaces or control characters "
		    "(percent-encode them)", argv[1]);
		return -1;
	}
	if (n >= CFG_PATH_MAX) {
		cfg_err(p, "path \"%s\" too long (max %d bytes)", argv[1], CFG_PATH_MAX - 1);
		return -1;
	}
	memcpy(cfg_cur_hc(p)->path, argv[1], n + 1);
	return 0;
}

static int
hc_rise(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_uint(p, "rise", argv[1], 1, 100, &cfg_cur_hc(p)->rise);
}

static int
hc_timeout(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "timeout", argv[1], 10, 3600000, &cfg_cur_hc(p)->timeout_ms);
}

static int
hc_type(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_health *hc = cfg_cur_hc(p);

	if (strcmp(argv[1], "tcp") == 0) {
		hc->type = CFG_HC_TCP;
	} else if (strcmp(argv[1], "http") == 0) {
		hc->type = CFG_HC_HTTP;
	} else {
		cfg_err(p, "unknown health-check type \"%s\" (tcp, http)", argv[1]);
		return -1;
	}
	return 0;
}

/* ---- backend ---- */

static struct cfg_backend *
cfg_cur_be(struct cfg_parser *p)
{
	return &p->cfg->backends[cfg_top(p)->idx];
}

static int
be_algorithm(struct cfg_parser *p, int argc, char **argv)
{
	char list[128];
	size_t off = 0;
	int a = bal_algo_parse(argv[1]);

	if (a >= 0) {
		cfg_cur_be(p)->algo = (enum bal_algo)a;
		return 0;
	}
	list[0] = '\0';
	for (int i = 0; i < BAL_ALGO_COUNT && off < sizeof(list); i++) {
		int n = snprintf(list + off, sizeof(list) - off, "%s%s",
		    i != 0 ? ", " : "", bal_algo_name((enum bal_algo)i));

		if (n < 0)
			break;
		off += (size_t)n;
	}
	cfg_err(p, "unknown algorithm \"%s\" (%s)", argv[1], list);
	return -1;
}

static int
be_health_check(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_open_block(p, CFG_BLK_HEALTH, cfg_top(p)->idx);
}

static int
be_passive_fails(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_uint(p, "passive-fails", argv[1], 0, 100,
	    &cfg_cur_be(p)->passive_fails);
}

static int
be_retries(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_uint(p, "retries", argv[1], 0, 10, &cfg_cur_be(p)->retries);
}

static int
be_slow_start(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "slow-start", argv[1], 0, 3600000, &cfg_cur_be(p)->slowstart_ms);
}

static int
srv_state(struct cfg_parser *p, struct cfg_server *srv, const char *val)
{
	int st = bal_state_parse(val);

	/* "down" belongs to the health checks, not to the operator. */
	if (st != BAL_UP && st != BAL_DRAIN && st != BAL_MAINT) {
		cfg_err(p, "unknown server state \"%s\" (up, drain, maint)", val);
		return -1;
	}
	srv->state = (enum bal_state)st;
	return 0;
}

static int
srv_weight(struct cfg_parser *p, struct cfg_server *srv, const char *val)
{
	const char *end;
	uint64_t v = 0;
	enum cfg_num r = cfg_digits(val, &end, &v);

	if (r == CFG_NUM_OK && *end == '\0' && v == 0) {
		cfg_err(p, "zero weight (use \"state drain\" or \"state maint\" to stop "
		    "sending traffic to a server)");
		return -1;
	}
	if (r != CFG_NUM_OK || *end != '\0' || v > 256) {
		cfg_err(p, "weight must be 1..256");
		return -1;
	}
	srv->weight = (unsigned)v;
	return 0;
}

/* Sorted for bsearch. */
static const struct cfg_sopt cfg_server_opts[] = {
	{ "state", srv_state },
	{ "weight", srv_weight },
};

static int
cfg_sopt_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct cfg_sopt *)elem)->name);
}

static int
be_server(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_backend *be = cfg_cur_be(p);
	struct cfg_server srv, *s;
	int seen[CFG_ARRAY_SIZE(cfg_server_opts)] = { 0 };
	int bad = 0;
	size_t i;

	memset(&srv, 0, sizeof(srv));
	srv.weight = 1;
	srv.state = BAL_UP;
	srv.line = p->line;
	bad |= cfg_name(p, "server", argv[1], srv.name);
	bad |= cfg_addr_report(p, argv[2], 1, &srv.addr, &srv.addrlen, NULL);
	for (int a = 3; a < argc; a += 2) {
		const struct cfg_sopt *o = bsearch(argv[a], cfg_server_opts,
		    CFG_ARRAY_SIZE(cfg_server_opts), sizeof(cfg_server_opts[0]),
		    cfg_sopt_cmp);

		if (o == NULL) {
			cfg_err(p, "unknown key \"%s\" in server \"%s\" (weight, state)",
			    argv[a], srv.name);
			bad = -1;
			continue;
		}
		if (a + 1 >= argc) {
			cfg_err(p, "missing value for \"%s\" in server \"%s\"", argv[a],
			    srv.name);
			bad = -1;
			break;
		}
		if (seen[o - cfg_server_opts]) {
			cfg_err(p, "\"%s\" given twice in server \"%s\"", argv[a], srv.name);
			bad = -1;
			continue;
		}
		seen[o - cfg_server_opts] = 1;
		bad |= o->fn(p, &srv, argv[a + 1]);
	}

	for (i = 0; i < be->nservers; i++) {
		s = &be->servers[i];
		if (strcmp(s->name, srv.name) == 0) {
			cfg_err(p, "duplicate server \"%s\" in backend \"%s\" (first defined "
			    "at line %d)", srv.name, be->name, s->line);
			bad = -1;
			break;
		}
	}
	if (srv.addrlen != 0) {
		for (i = 0; i < be->nservers; i++) {
			char a[INET6_ADDRSTRLEN + 16];

			s = &be->servers[i];
			if (s->addrlen != 0 && cfg_same_addr(&s->addr, &srv.addr)) {
				cfg_err(p, "server \"%s\" has the same address %s as server "
				    "\"%s\" (line %d)", srv.name,
				    cfg_fmt_addr(&srv.addr, a, sizeof(a)), s->name, s->line);
				bad = -1;
				break;
			}
		}
	}
	if (be->nservers >= BAL_MAX_SERVERS) {
		cfg_err(p, "too many servers in backend \"%s\" (max %d)", be->name,
		    BAL_MAX_SERVERS);
		return -1;
	}
	/* Keep even a bad server: later lines are checked against its name. */
	if (cfg_grow_pow2(p, (void **)&be->servers, be->nservers, sizeof(srv)) != 0)
		return -1;
	be->servers[be->nservers++] = srv;
	return bad;
}

/* ---- frontend ---- */

static struct cfg_frontend *
cfg_cur_fe(struct cfg_parser *p)
{
	return &p->cfg->frontends[cfg_top(p)->idx];
}

static int
fe_backend(struct cfg_parser *p, int argc, char **argv)
{
	p->fe_lines[cfg_top(p)->idx].backend = p->line;
	return cfg_name(p, "backend", argv[1], cfg_cur_fe(p)->backend_name);
}

static int
fe_bind(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_frontend *fe = cfg_cur_fe(p);

	p->fe_lines[cfg_top(p)->idx].bind = p->line;
	return cfg_addr_report(p, argv[1], 1, &fe->bind, &fe->bindlen, NULL);
}

static int
fe_buffer_size(struct cfg_parser *p, int argc, char **argv)
{
	const size_t min = 1024, max = 1024 * 1024;
	char a[32], b[32];
	size_t v = 0;

	switch (cfg_size(argv[1], &v)) {
	case CFG_NUM_OK:
		break;
	case CFG_NUM_RANGE:
		v = SIZE_MAX;
		break;
	case CFG_NUM_BAD:
	case CFG_NUM_NOUNIT:
	case CFG_NUM_COUNT:
	default:
		cfg_err(p, "bad size \"%s\" (bytes, or a number and k or m: 16k)", argv[1]);
		return -1;
	}
	if (v < min || v > max) {
		cfg_err(p, "buffer-size %s out of range (%s..%s)", argv[1],
		    cfg_fmt_size(min, a, sizeof(a)), cfg_fmt_size(max, b, sizeof(b)));
		return -1;
	}
	cfg_cur_fe(p)->bufsize = v;
	return 0;
}

static int
fe_max_connections(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_uint(p, "max-connections", argv[1], 1, 1000000,
	    &cfg_cur_fe(p)->max_conns);
}

static int
fe_mode(struct cfg_parser *p, int argc, char **argv)
{
	if (strcmp(argv[1], "tcp") == 0) {
		cfg_cur_fe(p)->mode = CFG_MODE_TCP;
		return 0;
	}
	if (strcmp(argv[1], "http") == 0)
		cfg_err(p, "mode http is not supported yet (only tcp)");
	else
		cfg_err(p, "unknown mode \"%s\" (tcp)", argv[1]);
	return -1;
}

static int
fe_source(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg_frontend *fe = cfg_cur_fe(p);
	int has_port = 0;

	p->fe_lines[cfg_top(p)->idx].source = p->line;
	if (strcmp(argv[1], "vip") == 0) {
		fe->source = CFG_SOURCE_VIP;
		return 0;
	}
	if (strcmp(argv[1], "none") == 0) {
		fe->source = CFG_SOURCE_NONE;
		return 0;
	}
	if (cfg_addr_report(p, argv[1], 0, &fe->source_addr, &fe->source_addrlen,
	    &has_port) != 0)
		return -1;
	if (has_port) {
		cfg_err(p, "source address \"%s\" must not have a port", argv[1]);
		return -1;
	}
	fe->source = CFG_SOURCE_ADDR;
	return 0;
}

static int
fe_timeout_client(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "timeout-client", argv[1], 100, 604800000,
	    &cfg_cur_fe(p)->timeout_client_ms);
}

static int
fe_timeout_connect(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "timeout-connect", argv[1], 1, 3600000,
	    &cfg_cur_fe(p)->timeout_connect_ms);
}

static int
fe_timeout_idle(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "timeout-idle", argv[1], 100, 604800000,
	    &cfg_cur_fe(p)->timeout_idle_ms);
}

static int
fe_timeout_server(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_dur(p, "timeout-server", argv[1], 100, 604800000,
	    &cfg_cur_fe(p)->timeout_server_ms);
}

/* ---- top level ---- */

static int
top_backend(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg *cfg = p->cfg;
	struct cfg_backend *be;
	size_t i;

	if (cfg->nbackends >= CFG_MAX_BACKENDS) {
		cfg_err(p, "too many backends (max %d)", CFG_MAX_BACKENDS);
		return -1;
	}
	if (cfg_grow(p, (void **)&cfg->backends, &p->be_cap, cfg->nbackends,
	    sizeof(*be)) != 0)
		return -1;
	be = &cfg->backends[cfg->nbackends];
	memset(be, 0, sizeof(*be));
	be->algo = BAL_ROUNDROBIN;
	be->retries = 2;
	be->passive_fails = 3;
	be->hc.type = CFG_HC_NONE;
	be->hc.interval_ms = 2000;
	be->hc.timeout_ms = 1000;
	be->hc.rise = 2;
	be->hc.fall = 3;
	be->hc.jitter_pct = 10;
	memcpy(be->hc.method, "GET", 4);
	memcpy(be->hc.path, "/", 2);
	be->hc.status_min = 200;
	be->hc.status_max = 399;
	be->line = p->line;
	cfg_name(p, "backend", argv[1], be->name);
	for (i = 0; i < cfg->nbackends; i++) {
		if (strcmp(cfg->backends[i].name, be->name) == 0) {
			cfg_err(p, "duplicate backend \"%s\" (first defined at line %d)",
			    be->name, cfg->backends[i].line);
			break;
		}
	}
	cfg->nbackends++;
	return cfg_open_block(p, CFG_BLK_BACKEND, cfg->nbackends - 1);
}

static int
top_frontend(struct cfg_parser *p, int argc, char **argv)
{
	struct cfg *cfg = p->cfg;
	struct cfg_frontend *fe;
	size_t i, cap = p->fe_cap;

	if (cfg->nfrontends >= CFG_MAX_FRONTENDS) {
		cfg_err(p, "too many frontends (max %d)", CFG_MAX_FRONTENDS);
		return -1;
	}
	if (cfg_grow(p, (void **)&cfg->frontends, &p->fe_cap, cfg->nfrontends,
	    sizeof(*fe)) != 0)
		return -1;
	if (cfg_grow(p, (void **)&p->fe_lines, &cap, cfg->nfrontends,
	    sizeof(*p->fe_lines)) != 0)
		return -1;
	fe = &cfg->frontends[cfg->nfrontends];
	memset(fe, 0, sizeof(*fe));
	memset(&p->fe_lines[cfg->nfrontends], 0, sizeof(*p->fe_lines));
	fe->mode = CFG_MODE_TCP;
	/* DESIGN "Data path": backend connections leave from the VIP by default. */
	fe->source = CFG_SOURCE_VIP;
	fe->max_conns = 10000;
	fe->timeout_connect_ms = 2000;
	fe->timeout_client_ms = 60000;
	fe->timeout_server_ms = 60000;
	fe->timeout_idle_ms = 300000;
	fe->bufsize = 16384;
	fe->line = p->line;
	cfg_name(p, "frontend", argv[1], fe->name);
	for (i = 0; i < cfg->nfrontends; i++) {
		if (strcmp(cfg->frontends[i].name, fe->name) == 0) {
			cfg_err(p, "duplicate frontend \"%s\" (first defined at line %d)",
			    fe->name, cfg->frontends[i].line);
			break;
		}
	}
	cfg->nfrontends++;
	return cfg_open_block(p, CFG_BLK_FRONTEND, cfg->nfrontends - 1);
}

static int
top_node(struct cfg_parser *p, int argc, char **argv)
{
	return cfg_open_block(p, CFG_BLK_NODE, 0);
}

/* ---- keyword tables, each sorted for bsearch ---- */

static const struct cfg_kw cfg_top_kw[] = {
	{ "backend", 1, 1, CFG_KW_BLOCK | CFG_KW_REPEAT, top_backend },
	{ "frontend", 1, 1, CFG_KW_BLOCK | CFG_KW_REPEAT, top_frontend },
	{ "node", 0, 0, CFG_KW_BLOCK, top_node },
	{ "sync", 0, 0, CFG_KW_BLOCK, cfg_top_sync },
	{ "sync-group", 1, 1, CFG_KW_BLOCK | CFG_KW_REPEAT, cfg_top_sync_group },
	{ "vrrp-group", 1, 1, CFG_KW_BLOCK | CFG_KW_REPEAT, cfg_top_vrrp_group },
};

static const struct cfg_kw cfg_node_kw[] = {
	{ "boot-epoch-file", 1, 1, 0, node_boot_epoch_file },
	{ "control", 1, 1, 0, node_control },
	{ "log-level", 1, 1, 0, node_log_level },
	{ "metrics", 1, 1, 0, node_metrics },
	{ "name", 1, 1, 0, node_name },
	{ "workers", 1, 1, 0, node_workers },
};

static const struct cfg_kw cfg_backend_kw[] = {
	{ "algorithm", 1, 1, 0, be_algorithm },
	{ "health-check", 0, 0, CFG_KW_BLOCK, be_health_check },
	{ "passive-fails", 1, 1, 0, be_passive_fails },
	{ "retries", 1, 1, 0, be_retries },
	{ "server", 2, CFG_MAX_ARGS - 1, CFG_KW_REPEAT, be_server },
	{ "slow-start", 1, 1, 0, be_slow_start },
};

static const struct cfg_kw cfg_health_kw[] = {
	{ "expect-status", 1, 1, 0, hc_expect_status },
	{ "fall", 1, 1, 0, hc_fall },
	{ "host", 1, 1, 0, hc_host },
	{ "interval", 1, 1, 0, hc_interval },
	{ "jitter", 1, 1, 0, hc_jitter },
	{ "method", 1, 1, 0, hc_method },
	{ "path", 1, 1, 0, hc_path },
	{ "rise", 1, 1, 0, hc_rise },
	{ "timeout", 1, 1, 0, hc_timeout },
	{ "type", 1, 1, 0, hc_type },
};

static const struct cfg_kw cfg_frontend_kw[] = {
	{ "backend", 1, 1, 0, fe_backend },
	{ "bind", 1, 1, 0, fe_bind },
	{ "buffer-size", 1, 1, 0, fe_buffer_size },
	{ "max-connections", 1, 1, 0, fe_max_connections },
	{ "mode", 1, 1, 0, fe_mode },
	{ "source", 1, 1, 0, fe_source },
	{ "timeout-client", 1, 1, 0, fe_timeout_client },
	{ "timeout-connect", 1, 1, 0, fe_timeout_connect },
	{ "timeout-idle", 1, 1, 0, fe_timeout_idle },
	{ "timeout-server", 1, 1, 0, fe_timeout_server },
};

_Static_assert(CFG_ARRAY_SIZE(cfg_node_kw) <= CFG_KW_MAX, "seen[] too small");
_Static_assert(CFG_ARRAY_SIZE(cfg_backend_kw) <= CFG_KW_MAX, "seen[] too small");
_Static_assert(CFG_ARRAY_SIZE(cfg_health_kw) <= CFG_KW_MAX, "seen[] too small");
_Static_assert(CFG_ARRAY_SIZE(cfg_frontend_kw) <= CFG_KW_MAX, "seen[] too small");

static int
cfg_kw_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct cfg_kw *)elem)->name);
}

static const struct cfg_kw *
cfg_kw_find(enum cfg_blk blk, const char *name)
{
	const struct cfg_block *b = cfg_blocks[blk];

	return bsearch(name, b->kw, b->nkw, sizeof(b->kw[0]), cfg_kw_cmp);
}

int
cfg_seen(const struct cfg_open *o, const char *key)
{
	const struct cfg_kw *kw = cfg_kw_find(o->blk, key);

	return kw != NULL ? o->seen[kw - cfg_blocks[o->blk]->kw] : 0;
}

/* ---- block checks, run when a block closes ---- */

static void
node_close(struct cfg_parser *p, struct cfg_open *o)
{
	struct cfg_node *n = &p->cfg->node;

	if (!cfg_seen(o, "name"))
		cfg_err_at(p, o->line, "missing required key \"name\" in node");
	/* Per node, so two nodes sharing /var/lib/tandem (a test host) do not collide. */
	if (!cfg_seen(o, "boot-epoch-file"))
		snprintf(n->boot_epoch_file, sizeof(n->boot_epoch_file),
		    "/var/lib/tandem/%s.epoch", n->name);
}

static void
backend_close(struct cfg_parser *p, struct cfg_open *o)
{
	const struct cfg_backend *be = &p->cfg->backends[o->idx];

	if (be->nservers == 0)
		cfg_err_at(p, o->line, "backend \"%s\" has no servers", be->name);
}

static void
health_close(struct cfg_parser *p, struct cfg_open *o)
{
	static const char *const http_only[] = { "expect-status", "host", "method", "path" };
	const struct cfg_backend *be = &p->cfg->backends[o->idx];
	const struct cfg_health *hc = &be->hc;
	char a[32], b[32];
	int tline;

	if (!cfg_seen(o, "type"))
		cfg_err_at(p, o->line, "missing required key \"type\" in health-check "
		    "of backend \"%s\"", be->name);
	if (hc->timeout_ms > hc->interval_ms) {
		tline = cfg_seen(o, "timeout");
		if (tline == 0)
			tline = cfg_seen(o, "interval");
		cfg_err_at(p, tline, "health-check timeout %s%s is longer than "
		    "interval %s", cfg_fmt_ms(hc->timeout_ms, a, sizeof(a)),
		    cfg_seen(o, "timeout") ? "" : " (the default)",
		    cfg_fmt_ms(hc->interval_ms, b, sizeof(b)));
	}
	if (hc->type != CFG_HC_TCP)
		return;
	/* In line order, like every other message. */
	for (int last = 0;;) {
		const char *key = NULL;
		int line = 0;

		for (size_t i = 0; i < CFG_ARRAY_SIZE(http_only); i++) {
			int l = cfg_seen(o, http_only[i]);

			if (l > last && (line == 0 || l < line)) {
				line = l;
				key = http_only[i];
			}
		}
		if (key == NULL)
			break;
		cfg_err_at(p, line, "\"%s\" applies only to http health checks "
		    "(type is tcp)", key);
		last = line;
	}
}

static void
frontend_close(struct cfg_parser *p, struct cfg_open *o)
{
	const struct cfg_frontend *fe = &p->cfg->frontends[o->idx];
	const struct cfg_fe_lines *fl = &p->fe_lines[o->idx];
	char a[INET6_ADDRSTRLEN + 16];

	if (!cfg_seen(o, "bind"))
		cfg_err_at(p, o->line, "missing required key \"bind\" in frontend \"%s\"",
		    fe->name);
	if (!cfg_seen(o, "backend"))
		cfg_err_at(p, o->line, "missing required key \"backend\" in frontend "
		    "\"%s\"", fe->name);
	if (fe->bindlen == 0)
		return;
	if (fe->source == CFG_SOURCE_ADDR &&
	    fe->source_addr.ss_family != fe->bind.ss_family)
		cfg_err_at(p, fl->source, "source address family (%s) differs from "
		    "bind address %s", fe->source_addr.ss_family == AF_INET6 ? "IPv6" :
		    "IPv4", cfg_fmt_addr(&fe->bind, a, sizeof(a)));
	if (fe->source == CFG_SOURCE_VIP && cfg_is_wildcard(&fe->bind))
		cfg_err_at(p, fl->source != 0 ? fl->source : fl->bind,
		    "source vip%s needs a specific bind address, not %s (or write "
		    "\"source none\")", fl->source != 0 ? "" : " (the default)",
		    cfg_fmt_addr(&fe->bind, a, sizeof(a)));
}

static const struct cfg_block cfg_top_block = {
	"top level", cfg_top_kw, CFG_ARRAY_SIZE(cfg_top_kw), NULL };
static const struct cfg_block cfg_node_block = {
	"node", cfg_node_kw, CFG_ARRAY_SIZE(cfg_node_kw), node_close };
static const struct cfg_block cfg_backend_block = {
	"backend", cfg_backend_kw, CFG_ARRAY_SIZE(cfg_backend_kw), backend_close };
static const struct cfg_block cfg_health_block = {
	"health-check", cfg_health_kw, CFG_ARRAY_SIZE(cfg_health_kw), health_close };
static const struct cfg_block cfg_frontend_block = {
	"frontend", cfg_frontend_kw, CFG_ARRAY_SIZE(cfg_frontend_kw), frontend_close };

static const struct cfg_block *const cfg_blocks[CFG_BLK_COUNT] = {
	[CFG_BLK_TOP] = &cfg_top_block,
	[CFG_BLK_NODE] = &cfg_node_block,
	[CFG_BLK_BACKEND] = &cfg_backend_block,
	[CFG_BLK_HEALTH] = &cfg_health_block,
	[CFG_BLK_FRONTEND] = &cfg_frontend_block,
	[CFG_BLK_VRRP] = &cfg_vrrp_block,
	[CFG_BLK_SYNC_GROUP] = &cfg_sync_group_block,
	[CFG_BLK_SYNC] = &cfg_sync_block,
};

/* ---- structure ---- */

int
cfg_open_block(struct cfg_parser *p, enum cfg_blk blk, size_t idx)
{
	struct cfg_open *o;

	/* The tables nest no deeper than top -> backend -> health-check. */
	if (p->depth >= CFG_DEPTH)
		return -1;
	o = &p->stack[p->depth++];
	memset(o, 0, sizeof(*o));
	o->blk = blk;
	o->line = p->line;
	o->idx = idx;
	return 0;
}

static void
cfg_close_block(struct cfg_parser *p)
{
	struct cfg_open *o = cfg_top(p);

	if (cfg_blocks[o->blk]->close != NULL)
		cfg_blocks[o->blk]->close(p, o);
	p->depth--;
}

static void
cfg_ignore(struct cfg_parser *p, const char *what, int levels)
{
	if (p->ignore == 0) {
		size_t n = strlen(what);

		if (n >= sizeof(p->ignore_what))
			n = sizeof(p->ignore_what) - 1;
		memcpy(p->ignore_what, what, n);
		p->ignore_what[n] = '\0';
		p->ignore_line = p->line;
	}
	p->ignore += levels;
}

static int
cfg_is(const struct cfg_line *ln, int i, const char *s)
{
	return !ln->quoted[i] && strcmp(ln->argv[i], s) == 0;
}

/*
 * Split buf (one line, NUL-terminated, modified in place) into words.
 * Returns 0, or -1 after reporting why the line cannot be read.
 */
static int
cfg_tokenize(struct cfg_parser *p, char *buf, size_t len, struct cfg_line *ln)
{
	char *r = buf, *w, *end = buf + len;

	ln->argc = 0;
	while (r < end) {
		unsigned char c = (unsigned char)*r;

		if (c == ' ' || c == '\t' || c == '\r') {
			r++;
			continue;
		}
		if (c == '#')
			break;
		if (ln->argc == CFG_MAX_ARGS) {
			cfg_err(p, "too many words on one line (max %d)", CFG_MAX_ARGS);
			return -1;
		}
		w = r;
		ln->argv[ln->argc] = w;
		ln->quoted[ln->argc] = c == '"';
		if (c == '"') {
			r++;
			for (;;) {
				if (r == end) {
					cfg_err(p, "unterminated quoted string");
					return -1;
				}
				c = (unsigned char)*r;
				if (c == '"')
					break;
				if (c == '\\') {
					if (r + 1 < end && (r[1] == '"' || r[1] == '\\')) {
						*w++ = r[1];
						r += 2;
						continue;
					}
					cfg_err(p, "unknown escape in quoted string (only \\\" "
					    "and \\\\)");
					return -1;
				}
				if ((c < ' ' && c != '\t') || c == 0x7f) {
					cfg_err(p, "control character 0x%02x in line", c);
					return -1;
				}
				*w++ = (char)c;
				r++;
			}
			r++;
			if (r < end && *r != ' ' && *r != '\t' && *r != '\r' && *r != '#') {
				cfg_err(p, "missing space after quoted string");
				return -1;
			}
		} else {
			while (r < end && *r != ' ' && *r != '\t' && *r != '\r' &&
			    *r != '#') {
				c = (unsigned char)*r;
				if (c == '"') {
					cfg_err(p, "quote in the middle of a word");
					return -1;
				}
				if (c < ' ' || c == 0x7f) {
					cfg_err(p, "control character 0x%02x in line", c);
					return -1;
				}
				w++;
				r++;
			}
		}
		/* w <= r always, and r points at a separator we may overwrite. */
		if (r < end && *r == '#') {
			*w = '\0';
			ln->argc++;
			break;
		}
		*w = '\0';
		if (r < end)
			r++;
		ln->argc++;
	}
	return 0;
}

static int
cfg_is_top_block(const char *s)
{
	const struct cfg_kw *kw = cfg_kw_find(CFG_BLK_TOP, s);

	return kw != NULL && (kw->flags & CFG_KW_BLOCK);
}

/* One statement: argv[0] is the keyword; opens says it ended with "{". */
static void
cfg_statement(struct cfg_parser *p, int argc, char **argv, int opens)
{
	struct cfg_open *o = cfg_top(p);
	const struct cfg_kw *kw;
	char where[CFG_WHERE_MAX];
	int nargs = argc - 1;
	int *seen;

	kw = cfg_kw_find(o->blk, argv[0]);
	if (opens && o->blk != CFG_BLK_TOP && cfg_is_top_block(argv[0]) &&
	    (kw == NULL || !(kw->flags & CFG_KW_BLOCK))) {
		/* A forgotten "}" is the likely story: close what is open and go on. */
		cfg_err(p, "unterminated block %s (missing \"}\" before this line)",
		    cfg_where(p, &p->stack[1], where, sizeof(where)));
		while (p->depth > 1)
			cfg_close_block(p);
		o = cfg_top(p);
		kw = cfg_kw_find(o->blk, argv[0]);
	}
	if (kw == NULL) {
		if (o->blk == CFG_BLK_TOP && opens)
			cfg_err(p, "unknown block \"%s\" (" CFG_TOP_BLOCKS ")", argv[0]);
		else if (o->blk == CFG_BLK_TOP)
			cfg_err(p, "\"%s\" outside of a block (" CFG_TOP_BLOCKS ")",
			    argv[0]);
		else if (opens)
			cfg_err(p, "unknown block \"%s\" in %s", argv[0],
			    cfg_where(p, o, where, sizeof(where)));
		else
			cfg_err(p, "unknown key \"%s\" in %s", argv[0],
			    cfg_where(p, o, where, sizeof(where)));
		if (opens)
			cfg_ignore(p, argv[0], 1);
		return;
	}
	if ((kw->flags & CFG_KW_BLOCK) && !opens) {
		/* Open it anyway: the "{" is forgotten or on the next line. */
		cfg_err(p, "expected \"{\" at the end of \"%s\" line", kw->name);
		opens = 1;
		p->want_brace = 1;
	}
	if (!(kw->flags & CFG_KW_BLOCK) && opens) {
		cfg_err(p, "\"%s\" is not a block", kw->name);
		cfg_ignore(p, kw->name, 1);
		return;
	}
	seen = &o->seen[kw - cfg_blocks[o->blk]->kw];
	if (*seen != 0 && !(kw->flags & CFG_KW_REPEAT)) {
		if (kw->flags & CFG_KW_BLOCK)
			cfg_err(p, "duplicate %s block (first defined at line %d)",
			    kw->name, *seen);
		else
			cfg_err(p, "\"%s\" given twice in %s (first at line %d)", kw->name,
			    cfg_where(p, o, where, sizeof(where)), *seen);
		if (opens)
			cfg_ignore(p, kw->name, 1);
		return;
	}
	/* Seen even when malformed: one mistake, one message (no "missing key"). */
	*seen = p->line;
	if (nargs < kw->min_args || nargs > kw->max_args) {
		if ((kw->flags & CFG_KW_BLOCK) && kw->max_args == 0)
			cfg_err(p, "%s takes no name (\"%s {\")", kw->name, kw->name);
		else if (kw->flags & CFG_KW_BLOCK)
			cfg_err(p, "%s needs one name (\"%s NAME {\")", kw->name, kw->name);
		else if (nargs < kw->min_args)
			cfg_err(p, "missing value for \"%s\"", kw->name);
		else
			cfg_err(p, "too many values for \"%s\"", kw->name);
		if (!(kw->flags & CFG_KW_BLOCK))
			return;
		if (nargs < kw->min_args) {
			cfg_ignore(p, kw->name, 1);
			return;
		}
		/* Extra words after a block keyword: drop them, still read the block. */
		argc = kw->max_args + 1;
	}
	if (kw->fn(p, argc, argv) != 0 && opens && cfg_top(p) == o)
		cfg_ignore(p, kw->name, 1);  /* the block could not be opened */
}

static void
cfg_process_line(struct cfg_parser *p, struct cfg_line *ln)
{
	int argc = ln->argc, first = 0, closes = 0, opens = 0;
	int i, delta = 0;

	if (argc == 0)
		return;
	if (p->want_brace) {
		p->want_brace = 0;
		if (argc == 1 && cfg_is(ln, 0, "{"))
			return;  /* already reported with the block's line */
	}
	if (p->ignore > 0) {
		for (i = 0; i < argc; i++)
			delta += cfg_is(ln, i, "{") - cfg_is(ln, i, "}");
		p->ignore += delta;
		if (p->ignore < 0)
			p->ignore = 0;
		return;
	}
	for (i = 0; i < argc; i++)
		delta += cfg_is(ln, i, "{") - cfg_is(ln, i, "}");
	for (i = 0; i < argc; i++) {
		int open = cfg_is(ln, i, "{"), close = cfg_is(ln, i, "}");

		if ((open && i != argc - 1) || (close && i != 0 && i != argc - 1)) {
			cfg_err(p, "%s", open ? "\"{\" must end the line (one statement per "
			    "line)" : "\"}\" must be on its own line");
			if (delta > 0)
				cfg_ignore(p, ln->argv[0], delta);
			return;
		}
	}
	if (cfg_is(ln, 0, "}")) {
		if (argc > 1)
			cfg_err(p, "\"}\" must be on its own line");
		if (p->depth == 1)
			cfg_err(p, "stray \"}\" (no block is open)");
		else
			cfg_close_block(p);
		first = 1;
		if (argc == 1)
			return;
	}
	if (argc - first >= 1 && cfg_is(ln, argc - 1, "}")) {
		if (!first)
			cfg_err(p, "\"}\" must be on its own line");
		closes = 1;
		argc--;
	} else if (cfg_is(ln, argc - 1, "{")) {
		opens = 1;
		argc--;
	} else if (!ln->quoted[argc - 1] && argc - first >= 1) {
		char *last = ln->argv[argc - 1];
		size_t n = strlen(last);

		if (n > 1 && last[n - 1] == '{') {
			cfg_err(p, "missing space before \"{\" in \"%s\"", last);
			last[n - 1] = '\0';
			opens = 1;
		}
	}
	if (argc - first == 0) {
		if (opens) {
			cfg_err(p, "\"{\" without a block name (write \"NAME {\" on one line)");
			cfg_ignore(p, "{", 1);
		}
	} else {
		cfg_statement(p, argc - first, ln->argv + first, opens);
	}
	if (closes) {
		if (p->ignore > 0)
			p->ignore--;
		else if (p->depth == 1)
			cfg_err(p, "stray \"}\" (no block is open)");
		else
			cfg_close_block(p);
	}
}

/*
 * A line the tokenizer refused (already reported) may still open a block:
 * skip that block, or its contents would each be reported out of place.
 */
static void
cfg_unreadable(struct cfg_parser *p, const char *raw, size_t n)
{
	char what[CFG_NAME_MAX];
	size_t i = 0, w = 0;

	while (n > 0 && (raw[n - 1] == ' ' || raw[n - 1] == '\t' || raw[n - 1] == '\r'))
		n--;
	if (n == 0 || raw[n - 1] != '{' ||
	    (n > 1 && raw[n - 2] != ' ' && raw[n - 2] != '\t'))
		return;
	while (i < n && (raw[i] == ' ' || raw[i] == '\t'))
		i++;
	while (i < n && w < sizeof(what) - 1 && raw[i] > ' ' && raw[i] != '"' &&
	    raw[i] != '#' && raw[i] != 0x7f)
		what[w++] = raw[i++];
	what[w] = '\0';
	cfg_ignore(p, what, 1);
}

/* ---- whole-file checks ---- */

static void
cfg_check(struct cfg_parser *p, int eof_line)
{
	struct cfg *cfg = p->cfg;
	char a[INET6_ADDRSTRLEN + 16];
	size_t i, j;

	if (p->stack[0].seen[cfg_kw_find(CFG_BLK_TOP, "node") - cfg_top_kw] == 0)
		cfg_err_at(p, eof_line, "missing node block");
	if (cfg->nbackends == 0)
		cfg_err_at(p, eof_line, "no backend defined");
	if (cfg->nfrontends == 0)
		cfg_err_at(p, eof_line, "no frontend defined");

	for (i = 0; i < cfg->nfrontends; i++) {
		struct cfg_frontend *fe = &cfg->frontends[i];

		if (fe->backend_name[0] == '\0')
			continue;
		for (j = 0; j < cfg->nbackends; j++)
			if (strcmp(cfg->backends[j].name, fe->backend_name) == 0)
				break;
		if (j == cfg->nbackends)
			cfg_err_at(p, p->fe_lines[i].backend, "frontend \"%s\" uses unknown "
			    "backend \"%s\"", fe->name, fe->backend_name);
		else
			fe->backend = j;
	}

	for (i = 0; i < cfg->nfrontends; i++) {
		const struct cfg_frontend *fe = &cfg->frontends[i];

		if (fe->bindlen == 0)
			continue;
		for (j = 0; j < i; j++) {
			const struct cfg_frontend *prev = &cfg->frontends[j];

			if (prev->bindlen != 0 && cfg_same_addr(&prev->bind, &fe->bind)) {
				cfg_err_at(p, p->fe_lines[i].bind, "frontend \"%s\" binds %s, "
				    "already bound by frontend \"%s\" (line %d)", fe->name,
				    cfg_fmt_addr(&fe->bind, a, sizeof(a)), prev->name,
				    p->fe_lines[j].bind);
				break;
			}
		}
	}
	cfg_vrrp_check(p);
}

static void
cfg_set_name(char dst[CFG_PATH_MAX], const char *name)
{
	size_t n = strlen(name);

	if (n >= CFG_PATH_MAX)
		n = CFG_PATH_MAX - 1;
	memcpy(dst, name, n);
	dst[n] = '\0';
}

int
cfg_parse(const char *name, const char *text, size_t len, FILE *err,
    struct cfg **out)
{
	struct cfg_parser p;
	struct cfg_line ln;
	char *buf = NULL;
	size_t off = 0;
	int ret = -ENOMEM;

	*out = NULL;
	memset(&p, 0, sizeof(p));
	p.file = name != NULL ? name : "<config>";
	p.err = err;
	p.depth = 1;
	p.stack[0].blk = CFG_BLK_TOP;

	p.cfg = calloc(1, sizeof(*p.cfg));
	if (p.cfg == NULL)
		goto fail_cfg;
	cfg_set_name(p.cfg->file, p.file);
	p.cfg->node.workers = 0;
	memcpy(p.cfg->node.control, "/run/tandem/tandem.sock",
	    sizeof("/run/tandem/tandem.sock"));
	p.cfg->node.metrics.ss_family = AF_UNSPEC;
	p.cfg->node.log_level = LOG_LVL_INFO;

	/* One scratch copy of the longest possible line, reused for every line. */
	buf = malloc(len + 1);
	if (buf == NULL)
		goto fail_buf;

	while (off < len && !p.oom) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t n = nl != NULL ? (size_t)(nl - (text + off)) : len - off;

		p.line++;
		memcpy(buf, text + off, n);
		buf[n] = '\0';
		off += n + (nl != NULL);
		if (cfg_tokenize(&p, buf, n, &ln) != 0)
			cfg_unreadable(&p, text + off - n - (nl != NULL), n);
		else
			cfg_process_line(&p, &ln);
	}
	if (p.oom)
		goto fail_parse;

	if (p.ignore > 0)
		cfg_err_at(&p, p.ignore_line, "unterminated block \"%s\" (missing \"}\")",
		    p.ignore_what);
	while (p.depth > 1) {
		char where[CFG_WHERE_MAX];
		struct cfg_open *o = cfg_top(&p);

		cfg_err_at(&p, o->line, "unterminated block %s (missing \"}\")",
		    cfg_where(&p, o, where, sizeof(where)));
		cfg_close_block(&p);
	}
	cfg_check(&p, p.line > 0 ? p.line : 1);

	free(buf);
	free(p.fe_lines);
	free(p.vr_id_lines);
	if (p.nerr > 0) {
		cfg_free(p.cfg);
		return p.nerr;
	}
	*out = p.cfg;
	return 0;

fail_parse:
	free(buf);
fail_buf:
	cfg_free(p.cfg);
	free(p.fe_lines);
	free(p.vr_id_lines);
fail_cfg:
	if (err != NULL)
		fprintf(err, "%s: out of memory\n", p.file);
	return ret;
}

int
cfg_load(const char *path, FILE *err, struct cfg **out)
{
	char *text = NULL, *nt;
	size_t len = 0, cap = 0, n;
	FILE *f;
	int ret;

	*out = NULL;
	f = fopen(path, "r");
	if (f == NULL) {
		ret = -errno;
		goto fail_open;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CFG_FILE_MAX) {
				ret = -EFBIG;
				goto fail_read;
			}
			cap = cap != 0 ? cap * 2 : 8192;
			nt = realloc(text, cap);
			if (nt == NULL) {
				ret = -ENOMEM;
				goto fail_read;
			}
			text = nt;
		}
		errno = 0;
		n = fread(text + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				ret = errno != 0 ? -errno : -EIO;
				goto fail_read;
			}
			break;
		}
	}
	fclose(f);
	ret = cfg_parse(path, text, len, err, out);
	free(text);
	return ret;

fail_read:
	free(text);
	fclose(f);
fail_open:
	if (err != NULL)
		fprintf(err, "%s: %s\n", path, ret == -EFBIG ?
		    "file too large for a configuration (max 16 MiB)" : strerror(-ret));
	return ret;
}

void
cfg_free(struct cfg *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nbackends; i++)
		free(cfg->backends[i].servers);
	free(cfg->backends);
	free(cfg->frontends);
	free(cfg->vrrp);
	free(cfg->sync_groups);
	free(cfg);
}
