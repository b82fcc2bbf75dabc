/* test_config — the config grammar, every diagnostic, and the value parsers. */
#include <tandem/config.h>
#include <tandem/log.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/*
 * Allocation failure injection. tests/unit/meson.build links this test with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, so the allocations of the
 * module under test come here first. Without those flags the wrappers are
 * never called and test_alloc_failures says it skipped.
 */
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
extern void *__real_malloc(size_t n) __attribute__((weak));
extern void *__real_calloc(size_t n, size_t size) __attribute__((weak));
extern void *__real_realloc(void *p, size_t n) __attribute__((weak));

static long alloc_fail_at = -1;  /* index of the allocation to fail; -1 = none */
static long alloc_count;

static int
alloc_fails_now(void)
{
	return alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at;
}

void *
__wrap_malloc(size_t n)
{
	return alloc_fails_now() ? NULL : __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t size)
{
	return alloc_fails_now() ? NULL : __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t n)
{
	return alloc_fails_now() ? NULL : __real_realloc(p, n);
}

static void
alloc_fail(long at)
{
	alloc_count = 0;
	alloc_fail_at = at;
}

/* A valid node, backend and frontend: lines 1-3, 4-6 and 7-10. */
#define NODE "node {\n    name lb1\n}\n"
#define BACKEND "backend web {\n    server be1 198.18.0.21:80\n}\n"
#define FRONTEND "frontend www {\n    bind 198.18.0.100:80\n    backend web\n}\n"
/*
 * A vrrp-group after NODE BACKEND FRONTEND: VR_BASE is lines 11-14 (no
 * priority, auth-key or peer yet), VR_FRONT lines 11-17 (every required key),
 * VRRP lines 11-18 (closed). SYNC is a sync block without auth-key, 4 lines.
 */
#define VR_BASE "vrrp-group front {\n    id 51\n    interface eth0\n" \
    "    vip 198.18.0.100/24\n"
#define VR_FRONT VR_BASE "    priority 150\n    auth-key /etc/tandem/auth.key\n" \
    "    peer 198.18.0.3\n"
#define VRRP VR_FRONT "}\n"
#define SYNC "sync {\n    listen 198.18.1.1:7400\n    peer 198.18.1.2:7400\n}\n"
/* The hint after an unknown top-level word. */
#define TOP_BLOCKS " (node, backend, frontend, vrrp-group, sync-group, sync)"

struct parsed {
	int ret;
	struct cfg *cfg;
	char *errs;
};

static struct parsed
parse_len(const char *text, size_t len)
{
	struct parsed r;
	size_t n = 0;
	FILE *f;

	r.errs = NULL;
	f = open_memstream(&r.errs, &n);
	assert_non_null(f);
	r.ret = cfg_parse("t.conf", text, len, f, &r.cfg);
	fclose(f);
	return r;
}

static struct parsed
parse(const char *text)
{
	return parse_len(text, strlen(text));
}

/* text must fail with exactly these diagnostics, in this order. */
static void
expect_errors(const char *text, int nerr, const char *msgs)
{
	struct parsed r = parse(text);

	assert_string_equal(r.errs, msgs);
	assert_int_equal(r.ret, nerr);
	assert_null(r.cfg);
	free(r.errs);
}

static struct cfg *
expect_ok(const char *text)
{
	struct parsed r = parse(text);

	assert_string_equal(r.errs, "");
	assert_int_equal(r.ret, 0);
	assert_non_null(r.cfg);
	free(r.errs);
	return r.cfg;
}

static void
assert_v4(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
    unsigned port)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	char buf[INET_ADDRSTRLEN];

	assert_int_equal(ss->ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)));
	assert_string_equal(buf, ip);
	assert_int_equal(ntohs(sin->sin_port), port);
}

static void
assert_v6(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
    unsigned port)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	char buf[INET6_ADDRSTRLEN];

	assert_int_equal(ss->ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf)));
	assert_string_equal(buf, ip);
	assert_int_equal(ntohs(sin6->sin6_port), port);
}

/* ---- valid configurations ---- */

static void
test_valid_every_key(void **state)
{
	static const char text[] =
	    "# every key once\n"
	    "node {\n"
	    "\tname \"lb-1.a_b\"   # quoted works too\n"
	    "\tworkers 4\n"
	    "\tcontrol \"/run/tandem dir/x.sock\"\n"
	    "\tmetrics [2001:db8::2]:9100\n"
	    "\tlog-level debug\n"
	    "}\n"
	    "\n"
	    "backend web {\n"
	    "    algorithm p2c\n"
	    "    retries 0\n"
	    "    slow-start 1m\n"
	    "    passive-fails 0\n"
	    "    health-check {\n"
	    "        type http\n"
	    "        interval 1500ms\n"
	    "        timeout 1s\n"
	    "        rise 5\n"
	    "        fall 1\n"
	    "        jitter 0%\n"
	    "        method HEAD\n"
	    "        path \"/health?full=1\"\n"
	    "        host \"www.example\"\n"
	    "        expect-status 200-204\n"
	    "    }\n"
	    "    server be1 198.18.0.21:8080 weight 256 state drain\n"
	    "    server be2 [2001:db8::22]:8080 state maint weight 3\n"
	    "    server be3 198.18.0.23:65535\n"
	    "}\n"
	    "backend other {\r\n"
	    "    server x 198.18.0.30:1\r\n"
	    "}\r\n"
	    "frontend www {\n"
	    "    bind [2001:db8::100]:443\n"
	    "    mode tcp\n"
	    "    backend web\n"
	    "    source 2001:db8::1\n"
	    "    max-connections 1000000\n"
	    "    timeout-connect 250ms\n"
	    "    timeout-client 2h\n"
	    "    timeout-server 90s\n"
	    "    timeout-idle 168h\n"
	    "    buffer-size 1m\n"
	    "}\n"
	    "frontend other {\n"
	    "    bind 198.18.0.100:80\n"
	    "    backend other\n"
	    "    source none\n"
	    "    buffer-size 1024\n"
	    "}\n"
	    "frontend third {\n"
	    "    bind [2001:db8::100]:444\n"
	    "    backend web\n"
	    "    source [2001:db8::5]\n"
	    "    buffer-size 64K\n"
	    "}";  /* no final newline */
	struct cfg *c = expect_ok(text);
	const struct cfg_backend *be;
	const struct cfg_frontend *fe;

	assert_string_equal(c->file, "t.conf");
	assert_string_equal(c->node.name, "lb-1.a_b");
	assert_int_equal(c->node.workers, 4);
	assert_string_equal(c->node.control, "/run/tandem dir/x.sock");
	assert_v6(&c->node.metrics, c->node.metricslen, "2001:db8::2", 9100);
	assert_int_equal(c->node.log_level, LOG_LVL_DEBUG);

	assert_int_equal(c->nbackends, 2);
	be = &c->backends[0];
	assert_string_equal(be->name, "web");
	assert_int_equal(be->line, 10);
	assert_int_equal(be->algo, BAL_P2C);
	assert_int_equal(be->retries, 0);
	assert_int_equal(be->slowstart_ms, 60000);
	assert_int_equal(be->passive_fails, 0);
	assert_int_equal(be->hc.type, CFG_HC_HTTP);
	assert_int_equal(be->hc.interval_ms, 1500);
	assert_int_equal(be->hc.timeout_ms, 1000);
	assert_int_equal(be->hc.rise, 5);
	assert_int_equal(be->hc.fall, 1);
	assert_int_equal(be->hc.jitter_pct, 0);
	assert_string_equal(be->hc.method, "HEAD");
	assert_string_equal(be->hc.path, "/health?full=1");
	assert_string_equal(be->hc.host, "www.example");
	assert_int_equal(be->hc.status_min, 200);
	assert_int_equal(be->hc.status_max, 204);
	assert_int_equal(be->nservers, 3);
	assert_string_equal(be->servers[0].name, "be1");
	assert_v4(&be->servers[0].addr, be->servers[0].addrlen, "198.18.0.21", 8080);
	assert_int_equal(be->servers[0].weight, 256);
	assert_int_equal(be->servers[0].state, BAL_DRAIN);
	assert_int_equal(be->servers[0].line, 27);
	assert_v6(&be->servers[1].addr, be->servers[1].addrlen, "2001:db8::22", 8080);
	assert_int_equal(be->servers[1].weight, 3);
	assert_int_equal(be->servers[1].state, BAL_MAINT);
	assert_v4(&be->servers[2].addr, be->servers[2].addrlen, "198.18.0.23", 65535);
	assert_int_equal(be->servers[2].weight, 1);
	assert_int_equal(be->servers[2].state, BAL_UP);
	assert_string_equal(c->backends[1].name, "other");
	assert_int_equal(c->backends[1].hc.type, CFG_HC_NONE);

	assert_int_equal(c->nfrontends, 3);
	fe = &c->frontends[0];
	assert_string_equal(fe->name, "www");
	assert_v6(&fe->bind, fe->bindlen, "2001:db8::100", 443);
	assert_int_equal(fe->mode, CFG_MODE_TCP);
	assert_string_equal(fe->backend_name, "web");
	assert_int_equal(fe->backend, 0);
	assert_int_equal(fe->source, CFG_SOURCE_ADDR);
	assert_v6(&fe->source_addr, fe->source_addrlen, "2001:db8::1", 0);
	assert_int_equal(fe->max_conns, 1000000);
	assert_int_equal(fe->timeout_connect_ms, 250);
	assert_int_equal(fe->timeout_client_ms, 7200000);
	assert_int_equal(fe->timeout_server_ms, 90000);
	assert_int_equal(fe->timeout_idle_ms, 604800000);
	assert_int_equal(fe->bufsize, 1024 * 1024);
	fe = &c->frontends[1];
	assert_int_equal(fe->backend, 1);
	assert_int_equal(fe->source, CFG_SOURCE_NONE);
	assert_int_equal(fe->bufsize, 1024);
	fe = &c->frontends[2];
	assert_int_equal(fe->backend, 0);
	assert_int_equal(fe->source, CFG_SOURCE_ADDR);
	assert_v6(&fe->source_addr, fe->source_addrlen, "2001:db8::5", 0);
	assert_int_equal(fe->bufsize, 64 * 1024);
	assert_int_equal(fe->line, 52);
	cfg_free(c);
}

static void
test_valid_defaults(void **state)
{
	struct cfg *c = expect_ok(NODE BACKEND FRONTEND);
	const struct cfg_backend *be = &c->backends[0];
	const struct cfg_frontend *fe = &c->frontends[0];

	assert_int_equal(c->node.workers, 0);
	assert_string_equal(c->node.control, "/run/tandem/tandem.sock");
	assert_int_equal(c->node.metrics.ss_family, AF_UNSPEC);
	assert_int_equal(c->node.log_level, LOG_LVL_INFO);

	assert_int_equal(be->algo, BAL_ROUNDROBIN);
	assert_int_equal(be->retries, 2);
	assert_int_equal(be->slowstart_ms, 0);
	assert_int_equal(be->passive_fails, 3);
	assert_int_equal(be->hc.type, CFG_HC_NONE);
	assert_int_equal(be->servers[0].weight, 1);
	assert_int_equal(be->servers[0].state, BAL_UP);

	assert_int_equal(fe->mode, CFG_MODE_TCP);
	assert_int_equal(fe->source, CFG_SOURCE_VIP);
	assert_int_equal(fe->max_conns, 10000);
	assert_int_equal(fe->timeout_connect_ms, 2000);
	assert_int_equal(fe->timeout_client_ms, 60000);
	assert_int_equal(fe->timeout_server_ms, 60000);
	assert_int_equal(fe->timeout_idle_ms, 300000);
	assert_int_equal(fe->bufsize, 16384);
	assert_int_equal(fe->line, 7);
	cfg_free(c);
}

static void
test_valid_health_defaults(void **state)
{
	struct cfg *c = expect_ok(NODE
	    "backend web {\n"
	    "    health-check {\n"
	    "        type http\n"
	    "    }\n"
	    "    server be1 198.18.0.21:80\n"
	    "}\n" FRONTEND);
	const struct cfg_health *hc = &c->backends[0].hc;

	assert_int_equal(hc->type, CFG_HC_HTTP);
	assert_int_equal(hc->interval_ms, 2000);
	assert_int_equal(hc->timeout_ms, 1000);
	assert_int_equal(hc->rise, 2);
	assert_int_equal(hc->fall, 3);
	assert_int_equal(hc->jitter_pct, 10);
	assert_string_equal(hc->method, "GET");
	assert_string_equal(hc->path, "/");
	assert_string_equal(hc->host, "");
	assert_int_equal(hc->status_min, 200);
	assert_int_equal(hc->status_max, 399);
	cfg_free(c);
}

static void
test_valid_quotes_and_comments(void **state)
{
	struct cfg *c = expect_ok(
	    "# comment line\n"
	    "   # indented comment\n"
	    "node {   # trailing comment after the brace\n"
	    "    name lb1#comment right after a word\n"
	    "    control \"/run/a \\\"q\\\" \\\\ # not a comment\"# comment\n"
	    "}\n" BACKEND FRONTEND);

	assert_string_equal(c->node.name, "lb1");
	assert_string_equal(c->node.control, "/run/a \"q\" \\ # not a comment");
	cfg_free(c);
}

static void
test_valid_vrrp_every_key(void **state)
{
	static const char text[] =
	    "node {\n"                                                  /* 1 */
	    "    name lb1\n"
	    "    boot-epoch-file \"/var/lib/tandem x/epoch\"\n"
	    "}\n"
	    "backend web {\n"                                           /* 5 */
	    "    server be1 198.18.0.21:80\n"
	    "}\n"
	    "backend api {\n"
	    "    server a1 198.18.0.31:80\n"
	    "}\n"                                                       /* 10 */
	    "frontend www {\n"
	    "    bind 198.18.0.100:80\n"
	    "    backend web\n"
	    "}\n"
	    "sync-group both {   # before its groups: resolved at the end\n" /* 15 */
	    "    group front\n"
	    "    group back6\n"
	    "}\n"
	    "vrrp-group front {\n"
	    "    id 51\n"                                               /* 20 */
	    "    interface eth0\n"
	    "    vip 198.18.0.100/24\n"
	    "    vip 198.18.0.101/32\n"
	    "    vip [2001:db8::100]/64\n"
	    "    priority 150\n"                                        /* 25 */
	    "    advert-interval 250ms\n"
	    "    preempt off\n"
	    "    preempt-delay 30s\n"
	    "    peer 198.18.0.3\n"
	    "    peer 198.18.1.2\n"                                     /* 30 */
	    "    port 6000\n"
	    "    auth-key /etc/tandem/auth.key\n"
	    "    garp-count 5\n"
	    "    garp-interval 0\n"
	    "    garp-repeat 1m\n"                                      /* 35 */
	    "    garp-refresh 30s\n"
	    "    track-interface eth1\n"
	    "    track-interface eth2 weight 20\n"
	    "    track-backend api weight 50\n"
	    "    track-backend web weight 254\n"                        /* 40 */
	    "    track-script /usr/lib/tandem/check weight 10 rise 3 fall 4 "
	    "interval 5s timeout 2s\n"
	    "    track-script \"/opt/my checks/db\"\n"
	    "    notify /usr/lib/tandem/notify\n"
	    "    notify-timeout 3s\n"
	    "}\n"                                                       /* 45 */
	    "vrrp-group back6 {\n"
	    "    id 52\n"
	    "    interface \"ens3.100\"\n"
	    "    vip 2001:db8:1::10/128\n"
	    "    priority 1\n"                                          /* 50 */
	    "    preempt on\n"
	    "    multicast ff02::12\n"
	    "    auth-key /etc/tandem/back.key\n"
	    "}\n"
	    "vrrp-group solo {\n"                                       /* 55 */
	    "    id 255\n"
	    "    interface e\n"
	    "    vip 198.18.2.1/1\n"
	    "    priority 254\n"
	    "    peer [2001:db8::3]\n"                                  /* 60 */
	    "    auth-key /k\n"
	    "}\n"
	    "sync {\n"
	    "    listen [2001:db8:1::1]:7400\n"
	    "    peer [2001:db8:1::2]:7401\n"                           /* 65 */
	    "    auth-key /etc/tandem/sync.key\n"
	    "    max-entries 10000000\n"
	    "    shutdown-handover off\n"
	    "}\n";
	struct cfg *c = expect_ok(text);
	const struct cfg_vrrp *vr;
	const struct cfg_track_script *ts;

	assert_string_equal(c->node.boot_epoch_file, "/var/lib/tandem x/epoch");
	assert_int_equal(c->nvrrp, 3);

	vr = &c->vrrp[0];
	assert_string_equal(vr->name, "front");
	assert_int_equal(vr->line, 19);
	assert_int_equal(vr->id, 51);
	assert_string_equal(vr->interface, "eth0");
	assert_int_equal(vr->nvips, 3);
	assert_v4(&vr->vips[0].addr, vr->vips[0].addrlen, "198.18.0.100", 0);
	assert_int_equal(vr->vips[0].prefix, 24);
	assert_int_equal(vr->vips[0].line, 22);
	assert_v4(&vr->vips[1].addr, vr->vips[1].addrlen, "198.18.0.101", 0);
	assert_int_equal(vr->vips[1].prefix, 32);
	assert_v6(&vr->vips[2].addr, vr->vips[2].addrlen, "2001:db8::100", 0);
	assert_int_equal(vr->vips[2].prefix, 64);
	assert_int_equal(vr->vips[2].line, 24);
	assert_int_equal(vr->priority, 150);
	assert_int_equal(vr->advert_interval_ms, 250);
	assert_false(vr->preempt);
	assert_int_equal(vr->preempt_delay_ms, 30000);
	assert_int_equal(vr->npeers, 2);
	/* The advert port is already in the peer addresses. */
	assert_v4(&vr->peers[0].addr, vr->peers[0].addrlen, "198.18.0.3", 6000);
	assert_int_equal(vr->peers[0].line, 29);
	assert_v4(&vr->peers[1].addr, vr->peers[1].addrlen, "198.18.1.2", 6000);
	assert_int_equal(vr->peers[1].line, 30);
	assert_int_equal(vr->multicast.ss_family, AF_UNSPEC);
	assert_int_equal(vr->port, 6000);
	assert_string_equal(vr->auth_key, "/etc/tandem/auth.key");
	assert_int_equal(vr->garp_count, 5);
	assert_int_equal(vr->garp_interval_ms, 0);
	assert_int_equal(vr->garp_repeat_ms, 60000);
	assert_int_equal(vr->garp_refresh_ms, 30000);
	assert_int_equal(vr->ntrack_if, 2);
	assert_string_equal(vr->track_if[0].ifname, "eth1");
	assert_int_equal(vr->track_if[0].weight, 0);
	assert_int_equal(vr->track_if[0].line, 37);
	assert_string_equal(vr->track_if[1].ifname, "eth2");
	assert_int_equal(vr->track_if[1].weight, 20);
	assert_int_equal(vr->track_if[1].line, 38);
	assert_int_equal(vr->ntrack_backend, 2);
	assert_string_equal(vr->track_backend[0].name, "api");
	assert_int_equal(vr->track_backend[0].backend, 1);
	assert_int_equal(vr->track_backend[0].weight, 50);
	assert_int_equal(vr->track_backend[0].line, 39);
	assert_string_equal(vr->track_backend[1].name, "web");
	assert_int_equal(vr->track_backend[1].backend, 0);
	assert_int_equal(vr->track_backend[1].weight, 254);
	assert_int_equal(vr->track_backend[1].line, 40);
	assert_int_equal(vr->ntrack_script, 2);
	ts = &vr->track_script[0];
	assert_string_equal(ts->path, "/usr/lib/tandem/check");
	assert_int_equal(ts->interval_ms, 5000);
	assert_int_equal(ts->timeout_ms, 2000);
	assert_int_equal(ts->rise, 3);
	assert_int_equal(ts->fall, 4);
	assert_int_equal(ts->weight, 10);
	assert_int_equal(ts->line, 41);
	ts = &vr->track_script[1];
	assert_string_equal(ts->path, "/opt/my checks/db");
	assert_int_equal(ts->interval_ms, 2000);
	assert_int_equal(ts->timeout_ms, 1000);
	assert_int_equal(ts->rise, 2);
	assert_int_equal(ts->fall, 2);
	assert_int_equal(ts->weight, 0);
	assert_int_equal(ts->line, 42);
	assert_string_equal(vr->notify, "/usr/lib/tandem/notify");
	assert_int_equal(vr->notify_timeout_ms, 3000);
	assert_int_equal(vr->sync_group, 0);

	vr = &c->vrrp[1];
	assert_string_equal(vr->name, "back6");
	assert_int_equal(vr->id, 52);
	assert_string_equal(vr->interface, "ens3.100");
	assert_int_equal(vr->nvips, 1);
	assert_v6(&vr->vips[0].addr, vr->vips[0].addrlen, "2001:db8:1::10", 0);
	assert_int_equal(vr->vips[0].prefix, 128);
	assert_int_equal(vr->priority, 1);
	assert_true(vr->preempt);
	assert_int_equal(vr->npeers, 0);
	assert_v6(&vr->multicast, vr->multicastlen, "ff02::12", 5798);
	assert_int_equal(vr->port, 5798);
	assert_string_equal(vr->auth_key, "/etc/tandem/back.key");
	assert_int_equal(vr->sync_group, 0);

	vr = &c->vrrp[2];
	assert_int_equal(vr->id, 255);
	assert_string_equal(vr->interface, "e");
	assert_v4(&vr->vips[0].addr, vr->vips[0].addrlen, "198.18.2.1", 0);
	assert_int_equal(vr->vips[0].prefix, 1);
	assert_int_equal(vr->priority, 254);
	assert_int_equal(vr->npeers, 1);
	assert_v6(&vr->peers[0].addr, vr->peers[0].addrlen, "2001:db8::3", 5798);
	assert_int_equal(vr->sync_group, CFG_NO_SYNC_GROUP);

	assert_int_equal(c->nsync_groups, 1);
	assert_string_equal(c->sync_groups[0].name, "both");
	assert_int_equal(c->sync_groups[0].line, 15);
	assert_int_equal(c->sync_groups[0].nmembers, 2);
	assert_string_equal(c->sync_groups[0].members[0].name, "front");
	assert_int_equal(c->sync_groups[0].members[0].group, 0);
	assert_int_equal(c->sync_groups[0].members[0].line, 16);
	assert_string_equal(c->sync_groups[0].members[1].name, "back6");
	assert_int_equal(c->sync_groups[0].members[1].group, 1);
	assert_int_equal(c->sync_groups[0].members[1].line, 17);

	assert_true(c->sync.enabled);
	assert_int_equal(c->sync.line, 63);
	assert_v6(&c->sync.listen, c->sync.listenlen, "2001:db8:1::1", 7400);
	assert_v6(&c->sync.peer, c->sync.peerlen, "2001:db8:1::2", 7401);
	assert_string_equal(c->sync.auth_key, "/etc/tandem/sync.key");
	assert_int_equal(c->sync.max_entries, 10000000);
	assert_false(c->sync.shutdown_handover);
	cfg_free(c);
}

static void
test_valid_vrrp_defaults(void **state)
{
	struct cfg *c = expect_ok(NODE BACKEND FRONTEND);
	const struct cfg_vrrp *vr;

	/* No vrrp-group, no sync: a plain proxy. */
	assert_int_equal(c->nvrrp, 0);
	assert_null(c->vrrp);
	assert_int_equal(c->nsync_groups, 0);
	assert_false(c->sync.enabled);
	assert_string_equal(c->node.boot_epoch_file, "/var/lib/tandem/lb1.epoch");
	cfg_free(c);

	c = expect_ok(NODE BACKEND FRONTEND VRRP SYNC);
	vr = &c->vrrp[0];
	assert_int_equal(vr->advert_interval_ms, 1000);
	assert_true(vr->preempt);
	assert_int_equal(vr->preempt_delay_ms, 0);
	assert_int_equal(vr->port, 5798);
	assert_v4(&vr->peers[0].addr, vr->peers[0].addrlen, "198.18.0.3", 5798);
	assert_int_equal(vr->multicast.ss_family, AF_UNSPEC);
	assert_int_equal(vr->garp_count, 3);
	assert_int_equal(vr->garp_interval_ms, 100);
	assert_int_equal(vr->garp_repeat_ms, 2000);
	assert_int_equal(vr->garp_refresh_ms, 0);
	assert_int_equal(vr->ntrack_if, 0);
	assert_int_equal(vr->ntrack_backend, 0);
	assert_int_equal(vr->ntrack_script, 0);
	assert_string_equal(vr->notify, "");
	assert_int_equal(vr->notify_timeout_ms, 10000);
	assert_int_equal(vr->sync_group, CFG_NO_SYNC_GROUP);
	assert_int_equal(vr->line, 11);
	assert_true(c->sync.enabled);
	assert_v4(&c->sync.listen, c->sync.listenlen, "198.18.1.1", 7400);
	assert_v4(&c->sync.peer, c->sync.peerlen, "198.18.1.2", 7400);
	/* The first vrrp-group's key file, read once for both channels. */
	assert_string_equal(c->sync.auth_key, "/etc/tandem/auth.key");
	assert_int_equal(c->sync.max_entries, 100000);
	assert_true(c->sync.shutdown_handover);
	assert_int_equal(c->sync.line, 19);
	cfg_free(c);

	/* The sync block may come first, and a sync with its own key needs no group. */
	c = expect_ok(NODE "sync {\n    auth-key /s.key\n    listen 198.18.1.1:1\n"
	    "    peer 198.18.1.2:2\n}\n" BACKEND FRONTEND);
	assert_string_equal(c->sync.auth_key, "/s.key");
	assert_int_equal(c->nvrrp, 0);
	cfg_free(c);
}

static void
test_examples_validate(void **state)
{
	static const char *const files[] = {
		"../../deploy/examples/lb1.conf",
		"../../deploy/examples/lb2.conf",
	};

	for (size_t i = 0; i < 2; i++) {
		struct cfg *c = NULL;
		char *errs = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&errs, &n);
		const struct cfg_backend *be;
		const struct cfg_frontend *fe;
		const struct cfg_vrrp *vr;
		int r;

		r = cfg_load(files[i], f, &c);
		fclose(f);
		assert_string_equal(errs, "");
		free(errs);
		assert_int_equal(r, 0);
		assert_non_null(c);

		assert_string_equal(c->node.name, i == 0 ? "lb1" : "lb2");
		assert_string_equal(c->node.control, i == 0 ? "/run/tandem/lb1.sock" :
		    "/run/tandem/lb2.sock");
		assert_v4(&c->node.metrics, c->node.metricslen,
		    i == 0 ? "198.18.0.2" : "198.18.0.3", 9100);

		assert_int_equal(c->nbackends, 2);
		assert_int_equal(c->nfrontends, 2);
		for (size_t b = 0; b < 2; b++) {
			be = &c->backends[b];
			assert_int_equal(be->nservers, 3);
			for (size_t s = 0; s < 3; s++) {
				char ip[32];

				snprintf(ip, sizeof(ip), "198.18.0.%zu", 21 + s);
				assert_v4(&be->servers[s].addr, be->servers[s].addrlen, ip,
				    b == 0 ? 7000 : 8080);
			}
		}
		assert_string_equal(c->backends[0].name, "echo");
		assert_int_equal(c->backends[0].hc.type, CFG_HC_TCP);
		assert_string_equal(c->backends[1].name, "web");
		assert_int_equal(c->backends[1].hc.type, CFG_HC_HTTP);
		assert_string_equal(c->backends[1].hc.method, "GET");
		assert_string_equal(c->backends[1].hc.path, "/health");
		assert_int_equal(c->backends[1].hc.status_min, 200);
		assert_int_equal(c->backends[1].hc.status_max, 200);

		fe = &c->frontends[0];
		assert_string_equal(fe->name, "echo");
		assert_v4(&fe->bind, fe->bindlen, "198.18.0.100", 7000);
		assert_int_equal(fe->backend, 0);
		assert_int_equal(fe->source, CFG_SOURCE_VIP);
		fe = &c->frontends[1];
		assert_string_equal(fe->name, "web");
		assert_v4(&fe->bind, fe->bindlen, "198.18.0.100", 80);
		assert_int_equal(fe->backend, 1);
		assert_int_equal(fe->source, CFG_SOURCE_VIP);

		assert_int_equal(c->nvrrp, 1);
		vr = &c->vrrp[0];
		assert_string_equal(vr->name, "front");
		assert_int_equal(vr->id, 51);
		assert_string_equal(vr->interface, "eth0");
		assert_int_equal(vr->nvips, 1);
		assert_v4(&vr->vips[0].addr, vr->vips[0].addrlen, "198.18.0.100", 0);
		assert_int_equal(vr->vips[0].prefix, 24);
		assert_int_equal(vr->priority, i == 0 ? 150 : 100);
		assert_int_equal(vr->npeers, 2);
		assert_v4(&vr->peers[0].addr, vr->peers[0].addrlen,
		    i == 0 ? "198.18.0.3" : "198.18.0.2", 5798);
		assert_v4(&vr->peers[1].addr, vr->peers[1].addrlen,
		    i == 0 ? "198.18.1.2" : "198.18.1.1", 5798);
		assert_string_equal(vr->auth_key, "/etc/tandem/auth.key");
		assert_int_equal(vr->ntrack_if, 1);
		assert_string_equal(vr->track_if[0].ifname, "eth0");
		assert_int_equal(vr->track_if[0].weight, 0);
		assert_true(c->sync.enabled);
		assert_v4(&c->sync.listen, c->sync.listenlen,
		    i == 0 ? "198.18.1.1" : "198.18.1.2", 7400);
		assert_v4(&c->sync.peer, c->sync.peerlen,
		    i == 0 ? "198.18.1.2" : "198.18.1.1", 7400);
		assert_string_equal(c->sync.auth_key, "/etc/tandem/auth.key");
		assert_string_equal(c->node.boot_epoch_file, i == 0 ?
		    "/var/lib/tandem/lb1.epoch" : "/var/lib/tandem/lb2.epoch");
		cfg_free(c);
	}
}

/* ---- one test per error class, each with its exact message ---- */

static void
test_err_unknown_keys(void **state)
{
	expect_errors(NODE
	    "backend web {\n"
	    "    server be1 198.18.0.21:80 wieght 2\n"
	    "    algoritm wrr\n"
	    "}\n" FRONTEND,
	    2,
	    "t.conf:5: unknown key \"wieght\" in server \"be1\" (weight, state)\n"
	    "t.conf:6: unknown key \"algoritm\" in backend \"web\"\n");
	expect_errors("node {\n    name lb1\n    naem lb2\n}\n" BACKEND
	    "frontend www {\n    bnd 198.18.0.100:80\n    bind 198.18.0.100:80\n"
	    "    backend web\n}\n",
	    2,
	    "t.conf:3: unknown key \"naem\" in node\n"
	    "t.conf:9: unknown key \"bnd\" in frontend \"www\"\n");
	expect_errors(NODE
	    "backend web {\n    health-check {\n        type tcp\n        intervall 1s\n"
	    "    }\n    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    1, "t.conf:7: unknown key \"intervall\" in health-check of backend \"web\"\n");
	expect_errors("name lb1\n" NODE BACKEND FRONTEND,
	    1, "t.conf:1: \"name\" outside of a block" TOP_BLOCKS "\n");
}

static void
test_err_addresses(void **state)
{
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.300:80\n    backend web\n}\n",
	    1, "t.conf:8: bad address \"198.18.0.300:80\"\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:70000\n    backend web\n}\n",
	    1, "t.conf:8: port 70000 out of range (1..65535)\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:0\n    backend web\n}\n",
	    1, "t.conf:8: port 0 out of range (1..65535)\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100\n    backend web\n}\n",
	    1, "t.conf:8: address \"198.18.0.100\" needs a port (ADDR:PORT, [IPv6]:PORT)\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:http\n    backend web\n}\n",
	    1, "t.conf:8: bad port \"http\" in address \"198.18.0.100:http\"\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind www.example:80\n    backend web\n}\n",
	    1, "t.conf:8: bad address \"www.example:80\"\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 2001:db8::1:80\n    backend web\n}\n",
	    1, "t.conf:8: address \"2001:db8::1:80\" needs a port (ADDR:PORT, [IPv6]:PORT)\n");
	expect_errors("node {\n    name lb1\n    metrics 198.18.0.2\n}\n" BACKEND
	    "frontend www {\n    bind 198.18.0.100:80\n    backend web\n}\n",
	    1, "t.conf:3: address \"198.18.0.2\" needs a port (ADDR:PORT, [IPv6]:PORT)\n");
}

static void
test_err_duplicates(void **state)
{
	expect_errors(NODE
	    "backend web {\n    server be1 198.18.0.21:80\n}\n"
	    "backend web {\n    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    1, "t.conf:7: duplicate backend \"web\" (first defined at line 4)\n");
	expect_errors(NODE BACKEND FRONTEND
	    "frontend www {\n    bind 198.18.0.100:81\n    backend web\n}\n",
	    1, "t.conf:11: duplicate frontend \"www\" (first defined at line 7)\n");
	expect_errors(NODE
	    "backend web {\n    server be1 198.18.0.21:80\n    server be1 198.18.0.22:80\n"
	    "}\n" FRONTEND,
	    1, "t.conf:6: duplicate server \"be1\" in backend \"web\" (first defined at "
	    "line 5)\n");
	expect_errors(NODE
	    "backend web {\n    server be1 198.18.0.21:80\n    server be2 198.18.0.21:80\n"
	    "}\n" FRONTEND,
	    1, "t.conf:6: server \"be2\" has the same address 198.18.0.21:80 as server "
	    "\"be1\" (line 5)\n");
	expect_errors(NODE NODE BACKEND FRONTEND,
	    1, "t.conf:4: duplicate node block (first defined at line 1)\n");
	expect_errors(NODE BACKEND FRONTEND
	    "frontend www2 {\n    bind 198.18.0.100:80\n    backend web\n}\n",
	    1, "t.conf:12: frontend \"www2\" binds 198.18.0.100:80, already bound by "
	    "frontend \"www\" (line 8)\n");
	/* A key given twice in one block. */
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:80\n    backend web\n"
	    "    bind 198.18.0.100:81\n}\n",
	    1, "t.conf:10: \"bind\" given twice in frontend \"www\" (first at line 8)\n");
	expect_errors("node {\n    name lb1\n    name lb2\n}\n" BACKEND FRONTEND,
	    1, "t.conf:3: \"name\" given twice in node (first at line 2)\n");
	expect_errors(NODE
	    "backend web {\n    health-check {\n        type tcp\n    }\n"
	    "    health-check {\n        type http\n    }\n"
	    "    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    1, "t.conf:8: duplicate health-check block (first defined at line 5)\n");
	expect_errors(NODE
	    "backend web {\n    server be1 198.18.0.21:80 weight 2 weight 3\n}\n"
	    FRONTEND,
	    1, "t.conf:5: \"weight\" given twice in server \"be1\"\n");
}

static void
test_err_unknown_backend(void **state)
{
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:80\n    backend wbe\n}\n",
	    1, "t.conf:9: frontend \"www\" uses unknown backend \"wbe\"\n");
}

static void
test_err_weights(void **state)
{
	expect_errors(NODE
	    "backend web {\n"
	    "    server be1 198.18.0.21:80 weight 300\n"
	    "    server be2 198.18.0.22:80 weight 0\n"
	    "    server be3 198.18.0.23:80 weight -1\n"
	    "    server be4 198.18.0.24:80 weight\n"
	    "}\n" FRONTEND,
	    4,
	    "t.conf:5: weight must be 1..256\n"
	    "t.conf:6: zero weight (use \"state drain\" or \"state maint\" to stop "
	    "sending traffic to a server)\n"
	    "t.conf:7: weight must be 1..256\n"
	    "t.conf:8: missing value for \"weight\" in server \"be4\"\n");
	expect_errors(NODE
	    "backend web {\n    server be1 198.18.0.21:80 state down\n}\n" FRONTEND,
	    1, "t.conf:5: unknown server state \"down\" (up, drain, maint)\n");
}

static void
test_err_missing_required(void **state)
{
	expect_errors(NODE BACKEND "frontend www {\n    backend web\n}\n",
	    1, "t.conf:7: missing required key \"bind\" in frontend \"www\"\n");
	expect_errors(NODE BACKEND "frontend www {\n    bind 198.18.0.100:80\n}\n",
	    1, "t.conf:7: missing required key \"backend\" in frontend \"www\"\n");
	expect_errors("node {\n    workers 2\n}\n" BACKEND FRONTEND,
	    1, "t.conf:1: missing required key \"name\" in node\n");
	expect_errors(NODE
	    "backend web {\n    health-check {\n        interval 1s\n    }\n"
	    "    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    1, "t.conf:5: missing required key \"type\" in health-check of backend "
	    "\"web\"\n");
	expect_errors(NODE "backend web {\n    retries 1\n}\n" FRONTEND,
	    1, "t.conf:4: backend \"web\" has no servers\n");
}

static void
test_err_durations(void **state)
{
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:80\n    backend web\n"
	    "    timeout-connect 10\n    timeout-client 10sec\n"
	    "    timeout-server 99999999999999999999999s\n    timeout-idle 0\n}\n",
	    4,
	    "t.conf:10: duration \"10\" needs a unit (ms, s, m, h)\n"
	    "t.conf:11: bad duration \"10sec\" (a number and ms, s, m or h: 500ms, 2s)\n"
	    "t.conf:12: timeout-server 99999999999999999999999s out of range (100ms..168h)\n"
	    "t.conf:13: timeout-idle 0 out of range (100ms..168h)\n");
}

static void
test_err_structure(void **state)
{
	/* Unterminated block at end of file. */
	expect_errors(NODE BACKEND "frontend www {\n    bind 198.18.0.100:80\n"
	    "    backend web\n",
	    1, "t.conf:7: unterminated block frontend \"www\" (missing \"}\")\n");
	/* Stray close. */
	expect_errors(NODE "}\n" BACKEND FRONTEND,
	    1, "t.conf:4: stray \"}\" (no block is open)\n");
	/* Missing node block. */
	expect_errors(BACKEND FRONTEND, 1, "t.conf:7: missing node block\n");
	/* Empty input: everything is missing. */
	expect_errors("", 3,
	    "t.conf:1: missing node block\n"
	    "t.conf:1: no backend defined\n"
	    "t.conf:1: no frontend defined\n");
	/* "{" on the next line, or forgotten: one error, the block is still read. */
	expect_errors("node\n{\n    name lb1\n}\n" BACKEND FRONTEND,
	    1, "t.conf:1: expected \"{\" at the end of \"node\" line\n");
	expect_errors("node\n    name lb1\n}\n" BACKEND FRONTEND,
	    1, "t.conf:1: expected \"{\" at the end of \"node\" line\n");
	expect_errors(NODE "{\n    name lb1\n}\n" BACKEND FRONTEND,
	    1, "t.conf:4: \"{\" without a block name (write \"NAME {\" on one line)\n");
	/* Statement and "}" on one line: reported, but both still understood. */
	expect_errors("node {\n    name lb1 }\n" BACKEND FRONTEND,
	    1, "t.conf:2: \"}\" must be on its own line\n");
	expect_errors("node { name lb1 }\n" BACKEND FRONTEND,
	    2,
	    "t.conf:1: \"{\" must end the line (one statement per line)\n"
	    "t.conf:8: missing node block\n");
	/* A forgotten "}" is one error, not a cascade. */
	expect_errors(NODE "backend web {\n    server be1 198.18.0.21:80\n" FRONTEND,
	    1, "t.conf:6: unterminated block backend \"web\" (missing \"}\" before this "
	    "line)\n");
	/* Unknown blocks are skipped whole, nested blocks included. */
	expect_errors(NODE "vip-group g1 {\n    vip 198.18.0.100\n    track {\n"
	    "        x y\n    }\n}\n" BACKEND FRONTEND,
	    1, "t.conf:4: unknown block \"vip-group\"" TOP_BLOCKS "\n");
	expect_errors(NODE BACKEND FRONTEND "vip-group g1 {\n    track {\n    }\n",
	    2,
	    "t.conf:11: unknown block \"vip-group\"" TOP_BLOCKS "\n"
	    "t.conf:11: unterminated block \"vip-group\" (missing \"}\")\n");
	expect_errors("node {\n    name lb1\n    tls {\n        x\n    }\n}\n"
	    BACKEND FRONTEND,
	    1, "t.conf:3: unknown block \"tls\" in node\n");
	expect_errors("node {\n    name {\n    }\n}\n" BACKEND FRONTEND,
	    2,
	    "t.conf:2: \"name\" is not a block\n"
	    "t.conf:1: missing required key \"name\" in node\n");
	/* Extra words after a block keyword: reported, the block is still read. */
	expect_errors("node lb1 {\n    name lb1\n}\n" BACKEND FRONTEND,
	    1, "t.conf:1: node takes no name (\"node {\")\n");
	expect_errors(NODE "backend web www {\n    server be1 198.18.0.21:80\n}\n"
	    FRONTEND,
	    1, "t.conf:4: backend needs one name (\"backend NAME {\")\n");
	/* No name at all: the block is skipped, what depends on it fails too. */
	expect_errors(NODE "backend {\n    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    3,
	    "t.conf:4: backend needs one name (\"backend NAME {\")\n"
	    "t.conf:10: no backend defined\n"
	    "t.conf:9: frontend \"www\" uses unknown backend \"web\"\n");
	/* A malformed key still counts as given: no "missing required key". */
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind\n    backend web www\n}\n",
	    2,
	    "t.conf:8: missing value for \"bind\"\n"
	    "t.conf:9: too many values for \"backend\"\n");
	/* "{" glued to the name. */
	expect_errors(NODE "backend web{\n    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    1, "t.conf:4: missing space before \"{\" in \"web{\"\n");
	expect_errors("node{\n    name lb1\n}\n" BACKEND FRONTEND,
	    1, "t.conf:1: missing space before \"{\" in \"node{\"\n");
}

static void
test_err_tokens(void **state)
{
	static const char nul[] = NODE BACKEND FRONTEND "a\0b\n";

	expect_errors("node {\n    name \"lb1\n}\n" BACKEND FRONTEND,
	    2,
	    "t.conf:2: unterminated quoted string\n"
	    "t.conf:1: missing required key \"name\" in node\n");
	expect_errors("node {\n    name lb\"1\"\n}\n" BACKEND FRONTEND,
	    2,
	    "t.conf:2: quote in the middle of a word\n"
	    "t.conf:1: missing required key \"name\" in node\n");
	expect_errors("node {\n    name \"lb1\"x\n}\n" BACKEND FRONTEND,
	    2,
	    "t.conf:2: missing space after quoted string\n"
	    "t.conf:1: missing required key \"name\" in node\n");
	expect_errors("node {\n    control \"/a\\nb\"\n    name lb1\n}\n" BACKEND
	    FRONTEND,
	    1, "t.conf:2: unknown escape in quoted string (only \\\" and \\\\)\n");
	expect_errors("node {\n    name lb1\x01\n}\n" BACKEND FRONTEND,
	    2,
	    "t.conf:2: control character 0x01 in line\n"
	    "t.conf:1: missing required key \"name\" in node\n");
	expect_errors("node {\n    name lb1\n    x 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
	    "}\n" BACKEND FRONTEND,
	    1, "t.conf:3: too many words on one line (max 16)\n");
	/* An unreadable block header still skips its block. */
	expect_errors(NODE "backend \"web {\n    server be1 198.18.0.21:80\n}\n"
	    BACKEND FRONTEND,
	    1, "t.conf:4: unterminated quoted string\n");
	{
		struct parsed r = parse_len(nul, sizeof(nul) - 1);

		assert_string_equal(r.errs, "t.conf:11: control character 0x00 in line\n");
		assert_int_equal(r.ret, 1);
		free(r.errs);
	}
}

static void
test_err_health(void **state)
{
	expect_errors(NODE
	    "backend web {\n    health-check {\n        type tcp\n        interval 1s\n"
	    "        timeout 2s\n    }\n    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    1, "t.conf:8: health-check timeout 2s is longer than interval 1s\n");
	expect_errors(NODE
	    "backend web {\n    health-check {\n        type tcp\n        interval 500ms\n"
	    "    }\n    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    1, "t.conf:7: health-check timeout 1s (the default) is longer than interval "
	    "500ms\n");
	expect_errors(NODE
	    "backend web {\n    health-check {\n        type http\n"
	    "        expect-status 399-200\n        expect-status 200-700\n"
	    "        expect-status ok\n        expect-status 200-\n"
	    "    }\n    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    4,
	    "t.conf:7: expect-status range \"399-200\" is reversed (write 200-399)\n"
	    "t.conf:8: \"expect-status\" given twice in health-check of backend \"web\" "
	    "(first at line 7)\n"
	    "t.conf:9: \"expect-status\" given twice in health-check of backend \"web\" "
	    "(first at line 7)\n"
	    "t.conf:10: \"expect-status\" given twice in health-check of backend \"web\" "
	    "(first at line 7)\n");
	expect_errors(NODE
	    "backend a {\n    health-check {\n        type http\n"
	    "        expect-status 200-700\n    }\n    server be1 198.18.0.21:80\n}\n"
	    "backend b {\n    health-check {\n        type http\n"
	    "        expect-status ok\n    }\n    server be1 198.18.0.21:80\n}\n"
	    "backend c {\n    health-check {\n        type http\n"
	    "        expect-status 200-\n    }\n    server be1 198.18.0.21:80\n}\n"
	    "frontend www {\n    bind 198.18.0.100:80\n    backend a\n}\n",
	    3,
	    "t.conf:7: expect-status 200-700 out of range (100..599)\n"
	    "t.conf:14: bad expect-status \"ok\" (a code like 200 or a range like "
	    "200-399)\n"
	    "t.conf:21: bad expect-status \"200-\" (a code like 200 or a range like "
	    "200-399)\n");
	expect_errors(NODE
	    "backend web {\n    health-check {\n        type tcp\n        path /x\n"
	    "        method HEAD\n    }\n    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    2,
	    "t.conf:7: \"path\" applies only to http health checks (type is tcp)\n"
	    "t.conf:8: \"method\" applies only to http health checks (type is tcp)\n");
	expect_errors(NODE
	    "backend web {\n    health-check {\n        type udp\n        method get\n"
	    "        path health\n        path \"/a b\"\n        host \"a b\"\n"
	    "        jitter 60%\n        rise 0\n        fall x\n"
	    "    }\n    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    8,
	    "t.conf:6: unknown health-check type \"udp\" (tcp, http)\n"
	    "t.conf:7: bad method \"get\" (an upper-case HTTP method like GET or HEAD)\n"
	    "t.conf:8: path \"health\" must start with \"/\"\n"
	    "t.conf:9: \"path\" given twice in health-check of backend \"web\" (first at "
	    "line 8)\n"
	    "t.conf:10: host \"a b\" must not contain spaces or control characters\n"
	    "t.conf:11: jitter 60% out of range (0..50%)\n"
	    "t.conf:12: rise 0 out of range (1..100)\n"
	    "t.conf:13: bad number \"x\" for fall\n");
	expect_errors(NODE
	    "backend web {\n    health-check {\n        type http\n"
	    "        path \"/a b\"\n    }\n    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    1, "t.conf:7: path \"/a b\" must not contain spaces or control characters "
	    "(percent-encode them)\n");
}

static void
test_err_values(void **state)
{
	expect_errors(NODE
	    "backend web {\n    algorithm fastest\n    server be1 198.18.0.21:80\n}\n"
	    FRONTEND,
	    1, "t.conf:5: unknown algorithm \"fastest\" (roundrobin, wrr, leastconn, "
	    "source, lrt, p2c)\n");
	expect_errors(NODE
	    "backend web {\n    retries 50\n    passive-fails 101\n    slow-start 2h\n"
	    "    server be1 198.18.0.21:80\n}\n" FRONTEND,
	    3,
	    "t.conf:5: retries 50 out of range (0..10)\n"
	    "t.conf:6: passive-fails 101 out of range (0..100)\n"
	    "t.conf:7: slow-start 2h out of range (0ms..1h)\n");
	expect_errors("node {\n    name lb1\n    workers 65\n}\n" BACKEND FRONTEND,
	    1, "t.conf:3: workers 65 out of range (1..64 or auto)\n");
	expect_errors("node {\n    name lb1\n    workers 0\n}\n" BACKEND FRONTEND,
	    1, "t.conf:3: workers 0 out of range (1..64 or auto)\n");
	expect_errors("node {\n    name lb1\n    workers two\n}\n" BACKEND FRONTEND,
	    1, "t.conf:3: bad number \"two\" for workers (1..64 or auto)\n");
	expect_errors("node {\n    name lb1\n    workers 99999999999999999999999\n}\n"
	    BACKEND FRONTEND,
	    1, "t.conf:3: workers 99999999999999999999999 out of range (1..64 or auto)\n");
	expect_errors("node {\n    name lb1\n    control run/x.sock\n}\n" BACKEND FRONTEND,
	    1, "t.conf:3: control socket path \"run/x.sock\" must be absolute\n");
	expect_errors("node {\n    name lb1\n    control /run/tandem/"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaa.sock\n}\n" BACKEND FRONTEND,
	    1, "t.conf:3: control socket path \"/run/tandem/"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaa.sock\" too long (max 107 bytes)\n");
	expect_errors("node {\n    name lb1\n    log-level verbose\n}\n" BACKEND FRONTEND,
	    1, "t.conf:3: unknown log-level \"verbose\" (error, warning, info, debug)\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:80\n    backend web\n"
	    "    mode http\n    max-connections 0\n    buffer-size 512\n"
	    "    buffer-size 2m\n}\n",
	    4,
	    "t.conf:10: mode http is not supported yet (only tcp)\n"
	    "t.conf:11: max-connections 0 out of range (1..1000000)\n"
	    "t.conf:12: buffer-size 512 out of range (1k..1m)\n"
	    "t.conf:13: \"buffer-size\" given twice in frontend \"www\" (first at line "
	    "12)\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:80\n    backend web\n"
	    "    mode udp\n    buffer-size 16kb\n}\n",
	    2,
	    "t.conf:10: unknown mode \"udp\" (tcp)\n"
	    "t.conf:11: bad size \"16kb\" (bytes, or a number and k or m: 16k)\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:80\n    backend web\n"
	    "    buffer-size 2m\n}\n",
	    1, "t.conf:10: buffer-size 2m out of range (1k..1m)\n");
}

static void
test_err_source(void **state)
{
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:80\n    backend web\n"
	    "    source 198.18.0.5:1234\n}\n",
	    1, "t.conf:10: source address \"198.18.0.5:1234\" must not have a port\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 198.18.0.100:80\n    backend web\n"
	    "    source 2001:db8::5\n}\n",
	    1, "t.conf:10: source address family (IPv6) differs from bind address "
	    "198.18.0.100:80\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind 0.0.0.0:80\n    backend web\n}\n",
	    1, "t.conf:8: source vip (the default) needs a specific bind address, not "
	    "0.0.0.0:80 (or write \"source none\")\n");
	expect_errors(NODE BACKEND
	    "frontend www {\n    bind [::]:80\n    source vip\n    backend web\n}\n",
	    1, "t.conf:9: source vip needs a specific bind address, not [::]:80 (or "
	    "write \"source none\")\n");
	/* ...and the wildcard is fine without a source. */
	cfg_free(expect_ok(NODE BACKEND
	    "frontend www {\n    bind 0.0.0.0:80\n    source none\n    backend web\n}\n"));
	{
		struct cfg *c = expect_ok(NODE BACKEND "frontend www {\n"
		    "    bind 198.18.0.100:80\n    source 198.18.0.5\n    backend web\n}\n");

		assert_int_equal(c->frontends[0].source, CFG_SOURCE_ADDR);
		assert_v4(&c->frontends[0].source_addr, c->frontends[0].source_addrlen,
		    "198.18.0.5", 0);
		cfg_free(c);
	}
}

static void
test_err_names(void **state)
{
	expect_errors(NODE "backend w/b {\n    server be1 198.18.0.21:80\n}\n"
	    "frontend www {\n    bind 198.18.0.100:80\n    backend w/b\n}\n",
	    2,
	    "t.conf:4: bad backend name \"w/b\" (letters, digits, \".\", \"_\" and \"-\" "
	    "only)\n"
	    "t.conf:9: bad backend name \"w/b\" (letters, digits, \".\", \"_\" and \"-\" "
	    "only)\n");
	expect_errors("node {\n    name "
	    "a123456789012345678901234567890123456789012345678901234567890123\n}\n"
	    BACKEND FRONTEND,
	    1, "t.conf:2: node name "
	    "\"a123456789012345678901234567890123456789012345678901234567890123\" must "
	    "be 1..63 characters\n");
	expect_errors("node {\n    name \"\"\n}\n" BACKEND FRONTEND,
	    1, "t.conf:2: node name \"\" must be 1..63 characters\n");
}

/* ---- vrrp-group, sync-group, sync: one expectation per error class ---- */

static void
test_err_vrrp_keys(void **state)
{
	expect_errors(NODE BACKEND FRONTEND VR_FRONT "    prio 100\n}\n",
	    1, "t.conf:18: unknown key \"prio\" in vrrp-group \"front\"\n");
	/* Every required key missing, each named; and neither peer nor multicast. */
	expect_errors(NODE BACKEND FRONTEND "vrrp-group front {\n    preempt on\n}\n",
	    6,
	    "t.conf:11: missing required key \"id\" in vrrp-group \"front\"\n"
	    "t.conf:11: missing required key \"interface\" in vrrp-group \"front\"\n"
	    "t.conf:11: missing required key \"vip\" in vrrp-group \"front\"\n"
	    "t.conf:11: missing required key \"priority\" in vrrp-group \"front\"\n"
	    "t.conf:11: missing required key \"auth-key\" in vrrp-group \"front\"\n"
	    "t.conf:11: vrrp-group \"front\" needs \"peer ADDR\" (one per heartbeat "
	    "path) or \"multicast GROUP\"\n");
	expect_errors(NODE BACKEND FRONTEND VR_BASE "    priority 150\n"
	    "    auth-key /etc/tandem/auth.key\n}\n",
	    1, "t.conf:11: vrrp-group \"front\" needs \"peer ADDR\" (one per heartbeat "
	    "path) or \"multicast GROUP\"\n");
	expect_errors(NODE BACKEND FRONTEND VR_FRONT "    multicast 224.0.0.18\n}\n",
	    1, "t.conf:18: peer and multicast both given in vrrp-group \"front\" (peer at "
	    "line 17, multicast at line 18): use one or the other\n");
	expect_errors(NODE BACKEND FRONTEND VR_BASE "    multicast 224.0.0.18\n"
	    "    priority 150\n    auth-key /k\n    peer 198.18.0.3\n}\n",
	    1, "t.conf:18: peer and multicast both given in vrrp-group \"front\" (peer at "
	    "line 18, multicast at line 15): use one or the other\n");
	expect_errors(NODE BACKEND FRONTEND VR_FRONT "    interface eth1\n}\n",
	    1, "t.conf:18: \"interface\" given twice in vrrp-group \"front\" (first at "
	    "line 13)\n");
	/* Blocks: a name is required, "vrrp-group" is repeatable, "sync" is not. */
	expect_errors(NODE BACKEND FRONTEND VRRP VR_FRONT "}\n",
	    3,
	    "t.conf:19: duplicate vrrp-group \"front\" (first defined at line 11)\n"
	    "t.conf:20: id 51 already used by vrrp-group \"front\" (line 12)\n"
	    "t.conf:22: vip 198.18.0.100 already belongs to vrrp-group \"front\" (line "
	    "14)\n");
	expect_errors(NODE BACKEND FRONTEND "vrrp-group {\n    id 1\n}\n",
	    1, "t.conf:11: vrrp-group needs one name (\"vrrp-group NAME {\")\n");
	expect_errors(NODE BACKEND FRONTEND VRRP SYNC SYNC,
	    1, "t.conf:23: duplicate sync block (first defined at line 19)\n");
	expect_errors(NODE BACKEND FRONTEND "sync x {\n    auth-key /k\n"
	    "    listen 198.18.1.1:7400\n    peer 198.18.1.2:7400\n}\n",
	    1, "t.conf:11: sync takes no name (\"sync {\")\n");
}

static void
test_err_vrrp_values(void **state)
{
	expect_errors(NODE BACKEND FRONTEND VRRP
	    "vrrp-group back {\n    id 51\n    interface eth1\n    vip 198.18.0.200/24\n"
	    "    priority 100\n    auth-key /etc/tandem/auth.key\n    peer 198.18.0.3\n}\n",
	    1, "t.conf:20: id 51 already used by vrrp-group \"front\" (line 12)\n");
	expect_errors(NODE BACKEND FRONTEND VR_BASE "    auth-key /k\n"
	    "    peer 198.18.0.3\n    priority 0\n}\n",
	    1, "t.conf:17: priority 0 out of range (1..254)\n");
	expect_errors(NODE BACKEND FRONTEND VR_BASE "    auth-key /k\n"
	    "    peer 198.18.0.3\n    priority 255\n}\n",
	    1, "t.conf:17: priority 255 out of range (1..254)\n");
	expect_errors(NODE BACKEND FRONTEND VR_BASE "    priority 150\n"
	    "    peer 198.18.0.3\n    auth-key etc/tandem/auth.key\n}\n",
	    1, "t.conf:17: auth-key path \"etc/tandem/auth.key\" must be absolute\n");
	expect_errors(NODE BACKEND FRONTEND VR_FRONT "    preempt yes\n}\n",
	    1, "t.conf:18: bad value \"yes\" for preempt (on, off)\n");
	expect_errors(NODE BACKEND FRONTEND VR_FRONT
	    "    id 0\n"                                   /* 18 */
	    "    advert-interval 5ms\n"
	    "    preempt-delay 2h\n"                       /* 20 */
	    "    port 0\n"
	    "    garp-count 101\n"
	    "    garp-interval 11s\n"
	    "    garp-repeat 2h\n"
	    "    garp-refresh 500ms\n"                     /* 25 */
	    "    notify-timeout 50ms\n"
	    "    notify notify.sh\n"
	    "}\n",
	    10,
	    "t.conf:18: \"id\" given twice in vrrp-group \"front\" (first at line 12)\n"
	    "t.conf:19: advert-interval 5ms out of range (10ms..40s)\n"
	    "t.conf:20: preempt-delay 2h out of range (0ms..1h)\n"
	    "t.conf:21: port 0 out of range (1..65535)\n"
	    "t.conf:22: garp-count 101 out of range (1..100)\n"
	    "t.conf:23: garp-interval 11s out of range (0ms..10s)\n"
	    "t.conf:24: garp-repeat 2h out of range (0ms..1h)\n"
	    "t.conf:25: garp-refresh 500ms out of range (0 or 1s..24h)\n"
	    "t.conf:26: notify-timeout 50ms out of range (100ms..1h)\n"
	    "t.conf:27: notify path \"notify.sh\" must be absolute\n");
	expect_errors(NODE BACKEND FRONTEND "vrrp-group front {\n    id 256\n"
	    "    interface eth0123456789abc\n    vip 198.18.0.100/24\n    priority 1\n"
	    "    auth-key /k\n    peer 198.18.0.3\n}\n",
	    2,
	    "t.conf:12: id 256 out of range (1..255)\n"
	    "t.conf:13: interface name \"eth0123456789abc\" must be 1..15 characters\n");
	expect_errors(NODE BACKEND FRONTEND "vrrp-group front {\n    id 1\n"
	    "    interface eth0:1\n    vip 198.18.0.100/24\n    priority 1\n"
	    "    auth-key /k\n    peer 198.18.0.3\n    track-interface ..\n}\n",
	    2,
	    "t.conf:13: bad interface name \"eth0:1\" (no \"/\", \":\" or spaces, not "
	    "\".\" or \"..\")\n"
	    "t.conf:18: bad interface name \"..\" (no \"/\", \":\" or spaces, not \".\" "
	    "or \"..\")\n");
	/* A second GARP burst that would overlap the first, given or by default. */
	expect_errors(NODE BACKEND FRONTEND VR_FRONT "    garp-interval 1s\n"
	    "    garp-repeat 1500ms\n}\n",
	    1, "t.conf:19: garp-repeat 1500ms starts before the first burst ends (3 "
	    "announcements 1s apart)\n");
	expect_errors(NODE BACKEND FRONTEND VR_FRONT "    garp-count 30\n"
	    "    garp-interval 100ms\n}\n",
	    1, "t.conf:19: garp-repeat 2s (the default) starts before the first burst "
	    "ends (30 announcements 100ms apart)\n");
	cfg_free(expect_ok(NODE BACKEND FRONTEND VR_FRONT "    garp-count 30\n"
	    "    garp-interval 100ms\n    garp-repeat 0\n}\n"));
	expect_errors("node {\n    name lb1\n    boot-epoch-file epoch\n}\n" BACKEND
	    FRONTEND,
	    1, "t.conf:3: boot-epoch-file path \"epoch\" must be absolute\n");
}

static void
test_err_vrrp_addresses(void **state)
{
	expect_errors(NODE BACKEND FRONTEND VR_FRONT
	    "    vip 198.18.0.101\n"                       /* 18 */
	    "    vip 198.18.0.101/33\n"
	    "    vip 198.18.0.101/0\n"                     /* 20 */
	    "    vip 2001:db8::1/129\n"
	    "    vip 198.18.0.101/x\n"
	    "    vip 198.18.0.101:80/24\n"
	    "    vip 198.18.0.300/24\n"
	    "    vip 224.0.0.5/24\n"                       /* 25 */
	    "    vip 0.0.0.0/8\n"
	    "    vip 198.18.0.100/32\n"
	    "    vip [2001:db8::1]/64\n"
	    "    vip 2001:db8:0::1/128\n"
	    "}\n",
	    11,
	    "t.conf:18: vip \"198.18.0.101\" needs a prefix length (ADDR/LEN: "
	    "198.18.0.100/24, 2001:db8::100/64)\n"
	    "t.conf:19: vip prefix length 33 out of range (1..32)\n"
	    "t.conf:20: vip prefix length 0 out of range (1..32)\n"
	    "t.conf:21: vip prefix length 129 out of range (1..128)\n"
	    "t.conf:22: bad prefix length \"x\" in vip \"198.18.0.101/x\"\n"
	    "t.conf:23: vip \"198.18.0.101:80/24\" must not have a port\n"
	    "t.conf:24: bad address \"198.18.0.300/24\"\n"
	    "t.conf:25: vip 224.0.0.5 is not a unicast address\n"
	    "t.conf:26: vip 0.0.0.0 is not a unicast address\n"
	    "t.conf:27: vip 198.18.0.100 given twice in vrrp-group \"front\" (first at "
	    "line 14)\n"
	    "t.conf:29: vip 2001:db8::1 given twice in vrrp-group \"front\" (first at "
	    "line 28)\n");
	expect_errors(NODE BACKEND FRONTEND VRRP
	    "vrrp-group back {\n    id 52\n    interface eth1\n"
	    "    vip 198.18.0.100/32\n"                    /* 22 */
	    "    priority 100\n    auth-key /etc/tandem/auth.key\n    peer 198.18.0.3\n"
	    "}\n",
	    1, "t.conf:22: vip 198.18.0.100 already belongs to vrrp-group \"front\" (line "
	    "14)\n");
	expect_errors(NODE BACKEND FRONTEND VR_FRONT
	    "    peer 198.18.0.3\n"                        /* 18 */
	    "    peer 198.18.0.4:5798\n"
	    "    peer 224.0.0.18\n"                        /* 20 */
	    "    peer ::\n"
	    "    peer 198.18.0.999\n"
	    "}\n",
	    5,
	    "t.conf:18: peer 198.18.0.3 given twice in vrrp-group \"front\" (first at "
	    "line 17)\n"
	    "t.conf:19: peer address \"198.18.0.4:5798\" must not have a port\n"
	    "t.conf:20: peer 224.0.0.18 is a multicast group (write \"multicast "
	    "224.0.0.18\" instead)\n"
	    "t.conf:21: peer :: is not a unicast address\n"
	    "t.conf:22: bad address \"198.18.0.999\"\n");
	expect_errors(NODE BACKEND FRONTEND VR_BASE "    priority 1\n    auth-key /k\n"
	    "    multicast 198.18.0.3\n}\n",
	    1, "t.conf:17: multicast address 198.18.0.3 is not a multicast group "
	    "(224.0.0.0/4, ff00::/8)\n");
}

static void
test_err_vrrp_track(void **state)
{
	expect_errors(NODE BACKEND FRONTEND VR_FRONT
	    "    track-backend wbe weight 10\n}\n",
	    1, "t.conf:18: vrrp-group \"front\" tracks unknown backend \"wbe\"\n");
	expect_errors(NODE BACKEND FRONTEND VR_FRONT
	    "    track-backend web\n"                      /* 18 */
	    "    track-backend web weight 0\n"
	    "    track-backend web wieght 2\n"             /* 20 */
	    "    track-backend web weight\n"
	    "    track-backend w/b weight 2\n"
	    "    track-backend web weight 5\n"
	    "    track-backend web weight 6\n"
	    "    track-backend web weight 7 x\n"           /* 25 */
	    "}\n",
	    7,
	    "t.conf:18: track-backend \"web\" needs \"weight N\" (1..254)\n"
	    "t.conf:19: weight 0 out of range (1..254)\n"
	    "t.conf:20: unknown key \"wieght\" in track-backend \"web\" (weight)\n"
	    "t.conf:21: missing value for \"weight\" in track-backend \"web\"\n"
	    "t.conf:22: bad backend name \"w/b\" (letters, digits, \".\", \"_\" and \"-\" "
	    "only)\n"
	    "t.conf:24: track-backend web given twice in vrrp-group \"front\" (first at "
	    "line 23)\n"
	    "t.conf:25: too many values for \"track-backend\"\n");
	expect_errors(NODE BACKEND FRONTEND VR_FRONT
	    "    track-interface eth1 weight 255\n"        /* 18 */
	    "    track-interface eth1 weight 0\n"
	    "    track-interface eth1 prio 3\n"            /* 20 */
	    "    track-interface eth2\n"
	    "    track-interface eth2 weight 3\n"
	    "}\n",
	    4,
	    "t.conf:18: weight 255 out of range (1..254)\n"
	    "t.conf:19: weight 0 out of range (1..254)\n"
	    "t.conf:20: unknown key \"prio\" in track-interface \"eth1\" (weight)\n"
	    "t.conf:22: track-interface eth2 given twice in vrrp-group \"front\" (first "
	    "at line 21)\n");
	expect_errors(NODE BACKEND FRONTEND VR_FRONT
	    "    track-script check.sh\n"                  /* 18 */
	    "    track-script /c interval 1s timeout 2s\n"
	    "    track-script /c interval 500ms\n"         /* 20 */
	    "    track-script /c rise 0 fall 101 weight 255\n"
	    "    track-script /c every 2s\n"
	    "    track-script /c rise 2 rise 3\n"
	    "    track-script /c timeout\n"
	    "    track-script /c interval 10\n"            /* 25 */
	    "    track-script /c timeout 5ms\n"
	    "}\n",
	    11,
	    "t.conf:18: track-script path \"check.sh\" must be absolute\n"
	    "t.conf:19: track-script timeout 2s is longer than interval 1s\n"
	    "t.conf:20: track-script timeout 1s (the default) is longer than interval "
	    "500ms\n"
	    "t.conf:21: rise 0 out of range (1..100)\n"
	    "t.conf:21: fall 101 out of range (1..100)\n"
	    "t.conf:21: weight 255 out of range (1..254)\n"
	    "t.conf:22: unknown key \"every\" in track-script \"/c\" (interval, timeout, "
	    "rise, fall, weight)\n"
	    "t.conf:23: \"rise\" given twice in track-script \"/c\"\n"
	    "t.conf:24: missing value for \"timeout\" in track-script \"/c\"\n"
	    "t.conf:25: duration \"10\" needs a unit (ms, s, m, h)\n"
	    "t.conf:26: timeout 5ms out of range (10ms..1h)\n");
	/* Same script twice with other options is allowed (e.g. two thresholds). */
	cfg_free(expect_ok(NODE BACKEND FRONTEND VR_FRONT
	    "    track-script /c\n    track-script /c fall 10 weight 50\n}\n"));
}

static void
test_err_sync_group(void **state)
{
	/* lines 19-26 after VRRP */
	static const char back[] = "vrrp-group back {\n    id 52\n    interface eth1\n"
	    "    vip 198.18.0.200/24\n    priority 100\n    auth-key /k\n"
	    "    peer 198.18.0.3\n}\n";
	char text[2048];

	expect_errors(NODE BACKEND FRONTEND VRRP
	    "sync-group sg {\n    group front\n    group bak\n}\n",
	    1, "t.conf:21: sync-group \"sg\" names unknown vrrp-group \"bak\"\n");
	snprintf(text, sizeof(text), "%s%s%s", NODE BACKEND FRONTEND VRRP, back,
	    "sync-group s1 {\n    group front\n    group back\n}\n"      /* 27-30 */
	    "sync-group s2 {\n    group back\n    group front\n}\n");    /* 31-34 */
	expect_errors(text, 2,
	    "t.conf:32: vrrp-group \"back\" is already in sync-group \"s1\" (line 29)\n"
	    "t.conf:33: vrrp-group \"front\" is already in sync-group \"s1\" (line 28)\n");
	expect_errors(NODE BACKEND FRONTEND VRRP "sync-group sg {\n    group front\n}\n",
	    1, "t.conf:19: sync-group \"sg\" needs two or more groups (has 1)\n");
	expect_errors(NODE BACKEND FRONTEND VRRP "sync-group sg {\n}\n",
	    1, "t.conf:19: sync-group \"sg\" needs two or more groups (has 0)\n");
	/* One mistake, one message: the repeated line still counts as a group. */
	expect_errors(NODE BACKEND FRONTEND VRRP
	    "sync-group sg {\n    group front\n    group front\n}\n",
	    1, "t.conf:21: group \"front\" given twice in sync-group \"sg\" (first at "
	    "line 20)\n");
	/* A bad name is reported once, not again as unknown. */
	snprintf(text, sizeof(text), "%s%s%s", NODE BACKEND FRONTEND VRRP, back,
	    "sync-group sg {\n    group front\n    group b/k\n    grp back\n}\n"
	    "sync-group sg {\n    group front\n    group back\n}\n");
	expect_errors(text, 4,
	    "t.conf:29: bad vrrp-group name \"b/k\" (letters, digits, \".\", \"_\" and "
	    "\"-\" only)\n"
	    "t.conf:30: unknown key \"grp\" in sync-group \"sg\"\n"
	    "t.conf:32: duplicate sync-group \"sg\" (first defined at line 27)\n"
	    "t.conf:33: vrrp-group \"front\" is already in sync-group \"sg\" (line 28)\n");
}

static void
test_err_sync(void **state)
{
	expect_errors(NODE BACKEND FRONTEND SYNC,
	    1, "t.conf:11: sync has no auth-key and there is no vrrp-group to take it "
	    "from (add \"auth-key PATH\" to sync)\n");
	/* Given but bad: that error only. */
	expect_errors(NODE BACKEND FRONTEND "sync {\n    auth-key sync.key\n"
	    "    listen 198.18.1.1:7400\n    peer 198.18.1.2:7400\n}\n",
	    1, "t.conf:12: auth-key path \"sync.key\" must be absolute\n");
	expect_errors(NODE BACKEND FRONTEND VRRP "sync {\n    max-entries 100\n}\n",
	    2,
	    "t.conf:19: missing required key \"listen\" in sync\n"
	    "t.conf:19: missing required key \"peer\" in sync\n");
	expect_errors(NODE BACKEND FRONTEND VRRP
	    "sync {\n"                                      /* 19 */
	    "    listen 198.18.1.1\n"
	    "    peer 0.0.0.0:7400\n"
	    "    max-entries 0\n"
	    "    shutdown-handover maybe\n"
	    "    peer 198.18.1.2:7400\n"
	    "    mode tcp\n"                                /* 25 */
	    "}\n",
	    6,
	    "t.conf:20: address \"198.18.1.1\" needs a port (ADDR:PORT, [IPv6]:PORT)\n"
	    "t.conf:21: sync peer 0.0.0.0:7400 is not a unicast address\n"
	    "t.conf:22: max-entries 0 out of range (1..10000000)\n"
	    "t.conf:23: bad value \"maybe\" for shutdown-handover (on, off)\n"
	    "t.conf:24: \"peer\" given twice in sync (first at line 21)\n"
	    "t.conf:25: unknown key \"mode\" in sync\n");
	expect_errors(NODE BACKEND FRONTEND VRRP "sync {\n    listen 198.18.1.1:7400\n"
	    "    peer [2001:db8::2]:7400\n    max-entries 10000001\n}\n",
	    2,
	    "t.conf:22: max-entries 10000001 out of range (1..10000000)\n"
	    "t.conf:21: sync peer [2001:db8::2]:7400 and listen 198.18.1.1:7400 are of "
	    "different address families\n");
}

/* The per-group array limits, and the number of groups. */
static void
test_err_vrrp_limits(void **state)
{
	size_t cap = 1 << 17, off;
	char *text = malloc(cap);
	int i;

	assert_non_null(text);
	off = (size_t)snprintf(text, cap, NODE BACKEND FRONTEND VR_FRONT);
	for (i = 1; i <= 16; i++)  /* 18..33, with the one of VR_BASE: 17 vips */
		off += (size_t)snprintf(text + off, cap - off, "    vip 198.18.3.%d/24\n", i);
	for (i = 1; i <= 8; i++)   /* 34..41, with VR_FRONT's: 9 peers */
		off += (size_t)snprintf(text + off, cap - off, "    peer 198.18.4.%d\n", i);
	for (i = 0; i <= 16; i++)  /* 42..58 */
		off += (size_t)snprintf(text + off, cap - off,
		    "    track-interface eth%d\n", i);
	for (i = 0; i <= 16; i++)  /* 59..75 */
		off += (size_t)snprintf(text + off, cap - off, "    track-script /s%d\n", i);
	for (i = 0; i <= 16; i++)  /* 76..92 */
		off += (size_t)snprintf(text + off, cap - off,
		    "    track-backend web%d weight 1\n", i);
	off += (size_t)snprintf(text + off, cap - off, "}\n");
	for (i = 0; i < 16; i++)
		off += (size_t)snprintf(text + off, cap - off,
		    "backend web%d {\n    server s 198.18.0.21:80\n}\n", i);
	/* Only the refused 17th track-backend names a backend that does not exist. */
	expect_errors(text, 5,
	    "t.conf:33: too many vips in vrrp-group \"front\" (max 16)\n"
	    "t.conf:41: too many peers in vrrp-group \"front\" (max 8)\n"
	    "t.conf:58: too many track-interface lines in vrrp-group \"front\" (max 16)\n"
	    "t.conf:75: too many track-script lines in vrrp-group \"front\" (max 16)\n"
	    "t.conf:92: too many track-backend lines in vrrp-group \"front\" (max 16)\n");

	/* 256 groups (ids 1..255, then one too many), 128 sync-groups of two. */
	off = (size_t)snprintf(text, cap, NODE BACKEND FRONTEND);
	for (i = 0; i < 256; i++)
		off += (size_t)snprintf(text + off, cap - off, "vrrp-group g%d {\n"
		    "    id %d\n    interface eth0\n    vip 198.19.%d.1/32\n"
		    "    priority 100\n    auth-key /k\n    peer 198.18.0.3\n}\n",
		    i, i < 255 ? i + 1 : 1, i);
	for (i = 0; i < 128; i++)
		off += (size_t)snprintf(text + off, cap - off, "sync-group s%d {\n"
		    "    group g%d\n    group g%d\n}\n", i, 2 * i, 2 * i + 1);
	expect_errors(text, 2,
	    "t.conf:2051: too many vrrp-groups (max 255)\n"
	    "t.conf:2567: too many sync-groups (max 127)\n");
	free(text);
}

/* Errors everywhere in one file: every one is reported, in file order. */
static void
test_err_many(void **state)
{
	expect_errors(
	    "node {\n"                                   /* 1 */
	    "    name lb1\n"                             /* 2 */
	    "    workers 100\n"                          /* 3 */
	    "    metrics 198.18.0.2:99999\n"             /* 4 */
	    "}\n"                                        /* 5 */
	    "backend web {\n"                            /* 6 */
	    "    algorithm random\n"                     /* 7 */
	    "    health-check {\n"                       /* 8 */
	    "        type http\n"                        /* 9 */
	    "        interval 10\n"                      /* 10 */
	    "    }\n"                                    /* 11 */
	    "    server be1 198.18.0.21:8080 wieght 2\n" /* 12 */
	    "    server be1 198.18.0.22:8080\n"          /* 13 */
	    "}\n"                                        /* 14 */
	    "backend web {\n"                            /* 15 */
	    "    server be1 198.18.0.21:80\n"            /* 16 */
	    "}\n"                                        /* 17 */
	    "frontend www {\n"                           /* 18 */
	    "    bind 198.18.0.300:80\n"                 /* 19 */
	    "    backend wbe\n"                          /* 20 */
	    "    mode http\n"                            /* 21 */
	    "}\n"                                        /* 22 */
	    "}\n",                                       /* 23 */
	    11,
	    "t.conf:3: workers 100 out of range (1..64 or auto)\n"
	    "t.conf:4: port 99999 out of range (1..65535)\n"
	    "t.conf:7: unknown algorithm \"random\" (roundrobin, wrr, leastconn, source, "
	    "lrt, p2c)\n"
	    "t.conf:10: duration \"10\" needs a unit (ms, s, m, h)\n"
	    "t.conf:12: unknown key \"wieght\" in server \"be1\" (weight, state)\n"
	    "t.conf:13: duplicate server \"be1\" in backend \"web\" (first defined at "
	    "line 12)\n"
	    "t.conf:15: duplicate backend \"web\" (first defined at line 6)\n"
	    "t.conf:19: bad address \"198.18.0.300:80\"\n"
	    "t.conf:21: mode http is not supported yet (only tcp)\n"
	    "t.conf:23: stray \"}\" (no block is open)\n"
	    "t.conf:20: frontend \"www\" uses unknown backend \"wbe\"\n");
}

static void
test_load_errors(void **state)
{
	struct cfg *c = (struct cfg *)1;
	char *errs = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&errs, &n);
	int r;

	r = cfg_load("config/does-not-exist.conf", f, &c);
	fclose(f);
	assert_int_equal(r, -ENOENT);
	assert_null(c);
	assert_string_equal(errs, "config/does-not-exist.conf: No such file or directory\n");
	free(errs);

	f = open_memstream(&errs, &n);
	r = cfg_load(".", f, &c);
	fclose(f);
	assert_int_equal(r, -EISDIR);
	assert_null(c);
	assert_string_equal(errs, ".: Is a directory\n");
	free(errs);

	/* A file with errors reports them under the path as given. */
	f = open_memstream(&errs, &n);
	r = cfg_load("config/bad.conf", f, &c);
	fclose(f);
	assert_int_equal(r, 2);
	assert_null(c);
	assert_string_equal(errs,
	    "config/bad.conf:12: unknown key \"wieght\" in server \"be3\" (weight, state)\n"
	    "config/bad.conf:17: frontend \"www\" uses unknown backend \"wbe\"\n");
	free(errs);

	/* No error stream: errors are only counted. */
	r = cfg_parse("t.conf", "x\n", 2, NULL, &c);
	assert_int_equal(r, 4);
	assert_null(c);
	cfg_free(NULL);
}

/* One vrrp-group "gN" with id N, for test_alloc_failures. */
#define VRG(n) "vrrp-group g" n " {\n    id " n "\n    interface eth0\n" \
    "    vip 198.19.0." n "/32\n    priority 100\n    auth-key /k\n" \
    "    peer 198.18.0.3\n    track-backend web weight 1\n}\n"

/* Every allocation of a parse fails in turn: -ENOMEM, no leak (ASan), no crash. */
static void
test_alloc_failures(void **state)
{
	static const char text[] = NODE
	    "backend web {\n"
	    "    server be1 198.18.0.21:80\n    server be2 198.18.0.22:80\n"
	    "    server be3 198.18.0.23:80\n    server be4 198.18.0.24:80\n"
	    "    server be5 198.18.0.25:80\n}\n"
	    "backend b2 {\n    server x 198.18.0.1:1\n}\n"
	    "backend b3 {\n    server x 198.18.0.1:1\n}\n"
	    "backend b4 {\n    server x 198.18.0.1:1\n}\n"
	    "backend b5 {\n    server x 198.18.0.1:1\n}\n"
	    FRONTEND
	    "frontend f2 {\n    bind 198.18.0.100:2\n    backend web\n}\n"
	    "frontend f3 {\n    bind 198.18.0.100:3\n    backend web\n}\n"
	    "frontend f4 {\n    bind 198.18.0.100:4\n    backend web\n}\n"
	    "frontend f5 {\n    bind 198.18.0.100:5\n    backend web\n}\n"
	    /* more than 4 of each array: every growth step fails once too */
	    VRG("1") VRG("2") VRG("3") VRG("4") VRG("5")
	    VRG("6") VRG("7") VRG("8") VRG("9") VRG("10")
	    "sync-group s1 {\n    group g1\n    group g2\n}\n"
	    "sync-group s2 {\n    group g3\n    group g4\n}\n"
	    "sync-group s3 {\n    group g5\n    group g6\n}\n"
	    "sync-group s4 {\n    group g7\n    group g8\n}\n"
	    "sync-group s5 {\n    group g9\n    group g10\n}\n"
	    SYNC;
	/*
	 * Called through a pointer: as a builtin, malloc is assumed not to read
	 * alloc_fail_at, and the compiler would drop the arming store around it.
	 */
	void *(*volatile alloc)(size_t) = malloc;
	void *probe;
	long at;

	alloc_fail(0);
	probe = alloc(16);
	alloc_fail(-1);
	free(probe);
	if (probe != NULL)
		skip();  /* not linked with --wrap: see the top of this file */

	for (at = 0;; at++) {
		struct parsed r;

		alloc_fail(at);
		r = parse(text);
		alloc_fail(-1);
		if (r.ret == 0) {
			assert_string_equal(r.errs, "");
			assert_int_equal(r.cfg->nvrrp, 10);
			assert_int_equal(r.cfg->nsync_groups, 5);
			assert_int_equal(r.cfg->vrrp[9].sync_group, 4);
			cfg_free(r.cfg);
			free(r.errs);
			break;
		}
		assert_int_equal(r.ret, -ENOMEM);
		assert_null(r.cfg);
		assert_string_equal(r.errs, "t.conf: out of memory\n");
		free(r.errs);
	}
	/*
	 * cfg, line buffer, and the growth of every array (backends, servers,
	 * frontends and their lines, vrrp-groups and their id lines, sync-groups,
	 * each twice): it did inject.
	 */
	assert_true(at >= 16);

	for (at = 0;; at++) {
		struct cfg *c = NULL;
		char *errs = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&errs, &n);
		int r;

		alloc_fail(at);
		r = cfg_load("../../deploy/examples/lb1.conf", f, &c);
		alloc_fail(-1);
		fclose(f);
		free(errs);
		if (r == 0) {
			cfg_free(c);
			break;
		}
		assert_int_equal(r, -ENOMEM);
		assert_null(c);
	}
	assert_true(at >= 3);
}

/* The limits on counts are reported once; the rest of the file is still read. */
static void
test_err_limits(void **state)
{
	size_t cap = 1 << 17, off = 0;
	char *text = malloc(cap);
	char want[256];
	int i;

	assert_non_null(text);
	off += (size_t)snprintf(text + off, cap - off, NODE "backend web {\n");
	for (i = 1; i <= 1025; i++)
		off += (size_t)snprintf(text + off, cap - off,
		    "    server s%d 198.18.0.21:%d\n", i, i);
	off += (size_t)snprintf(text + off, cap - off, "}\n" FRONTEND);
	snprintf(want, sizeof(want), "t.conf:%d: too many servers in backend \"web\" "
	    "(max 1024)\n", 4 + 1025);
	expect_errors(text, 1, want);

	off = (size_t)snprintf(text, cap, NODE FRONTEND);
	for (i = 0; i < 1025; i++) {
		char name[16];

		if (i == 0)
			snprintf(name, sizeof(name), "web");
		else
			snprintf(name, sizeof(name), "b%d", i);
		off += (size_t)snprintf(text + off, cap - off,
		    "backend %s {\n    server s 198.18.0.21:80\n}\n", name);
	}
	snprintf(want, sizeof(want), "t.conf:%d: too many backends (max 1024)\n",
	    8 + 1024 * 3);
	expect_errors(text, 1, want);

	off = (size_t)snprintf(text, cap, NODE BACKEND);
	for (i = 0; i < 1025; i++)
		off += (size_t)snprintf(text + off, cap - off,
		    "frontend f%d {\n    bind 198.18.0.100:%d\n    backend web\n}\n",
		    i, i + 1);
	snprintf(want, sizeof(want), "t.conf:%d: too many frontends (max 1024)\n",
	    7 + 1024 * 4);
	expect_errors(text, 1, want);
	free(text);
}

/* Less common shapes of the same mistakes. */
static void
test_err_corners(void **state)
{
	char text[1024], longv[300];

	/* "backend x {" inside a frontend: the frontend's "}" was forgotten. */
	expect_errors(NODE "frontend www {\n    bind 198.18.0.100:80\n    backend web\n"
	    "backend web {\n    server be1 198.18.0.21:80\n}\n",
	    1, "t.conf:7: unterminated block frontend \"www\" (missing \"}\" before this "
	    "line)\n");
	/* "}" then more on the line: both understood. */
	expect_errors(NODE BACKEND "frontend www {\n    bind 198.18.0.100:80\n"
	    "    backend web\n} frontend f2 {\n    bind 198.18.0.100:81\n"
	    "    backend web\n}\n",
	    1, "t.conf:10: \"}\" must be on its own line\n");
	/* A "}" ending a line inside a skipped block, and one too many. */
	expect_errors(NODE BACKEND FRONTEND "vip x {\n    a b }\n}\n",
	    2,
	    "t.conf:11: unknown block \"vip\"" TOP_BLOCKS "\n"
	    "t.conf:13: stray \"}\" (no block is open)\n");
	/* A mid-line "{" that leaves a block open skips that block. */
	expect_errors(NODE BACKEND FRONTEND "x { y {\n    z\n}\n",
	    2,
	    "t.conf:11: \"{\" must end the line (one statement per line)\n"
	    "t.conf:11: unterminated block \"x\" (missing \"}\")\n");
	expect_errors(NODE BACKEND FRONTEND "name lb1 }\n",
	    3,
	    "t.conf:11: \"}\" must be on its own line\n"
	    "t.conf:11: \"name\" outside of a block" TOP_BLOCKS "\n"
	    "t.conf:11: stray \"}\" (no block is open)\n");
	/* Control character inside quotes. */
	expect_errors("node {\n    name lb1\n    control \"/a\x1b[0m\"\n}\n"
	    BACKEND FRONTEND,
	    1, "t.conf:3: control character 0x1b in line\n");
	/* IPv6 duplicates and a bare IPv6 that is not an address. */
	expect_errors(NODE "backend web {\n    server a [2001:db8::1]:80\n"
	    "    server b [2001:db8:0::1]:80\n    server c 2001:db8::g:80\n}\n"
	    FRONTEND,
	    2,
	    "t.conf:6: server \"b\" has the same address [2001:db8::1]:80 as server "
	    "\"a\" (line 5)\n"
	    "t.conf:7: bad address \"2001:db8::g:80\"\n");
	/* Over-long path and host, and a few bad values. */
	memset(longv, 'a', sizeof(longv) - 1);
	longv[0] = '/';
	longv[sizeof(longv) - 1] = '\0';
	snprintf(text, sizeof(text), NODE "backend web {\n    health-check {\n"
	    "        type http\n        path %s\n        host %s\n"
	    "        jitter 10percent\n    }\n    server be1 198.18.0.21:80\n}\n"
	    FRONTEND, longv, longv + 1);
	{
		char want[2048];

		snprintf(want, sizeof(want),
		    "t.conf:7: path \"%s\" too long (max 255 bytes)\n"
		    "t.conf:8: host \"%s\" too long (max 255 bytes)\n"
		    "t.conf:9: bad jitter \"10percent\" (a percentage like 10%%)\n",
		    longv, longv + 1);
		expect_errors(text, 3, want);
	}
	expect_errors(NODE BACKEND "frontend www {\n    bind 198.18.0.100:80\n"
	    "    backend web\n    buffer-size 99999999999999999999999k\n}\n",
	    1, "t.conf:10: buffer-size 99999999999999999999999k out of range "
	    "(1k..1m)\n");
	/* jitter without "%" is a percentage too. */
	{
		struct cfg *c = expect_ok(NODE "backend web {\n    health-check {\n"
		    "        type tcp\n        jitter 25\n    }\n"
		    "    server be1 198.18.0.21:80\n}\n" FRONTEND);

		assert_int_equal(c->backends[0].hc.jitter_pct, 25);
		cfg_free(c);
	}
}

/* ---- value parsers ---- */

static void
test_parse_duration(void **state)
{
	static const struct {
		const char *s;
		int ret;
		uint32_t ms;
	} cases[] = {
		{ "0", 0, 0 },
		{ "000", 0, 0 },
		{ "0ms", 0, 0 },
		{ "1ms", 0, 1 },
		{ "250ms", 0, 250 },
		{ "2s", 0, 2000 },
		{ "5m", 0, 300000 },
		{ "1h", 0, 3600000 },
		{ "1193h", 0, 4294800000u },
		{ "4294967295ms", 0, 4294967295u },
		{ "4294967296ms", -ERANGE, 0 },
		{ "1194h", -ERANGE, 0 },
		{ "4294968s", -ERANGE, 0 },
		{ "99999999999999999999999999h", -ERANGE, 0 },
		{ "10", -EINVAL, 0 },
		{ "99999999999999999999999999", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "s", -EINVAL, 0 },
		{ "-1s", -EINVAL, 0 },
		{ "+1s", -EINVAL, 0 },
		{ " 1s", -EINVAL, 0 },
		{ "1s ", -EINVAL, 0 },
		{ "1.5s", -EINVAL, 0 },
		{ "1S", -EINVAL, 0 },
		{ "1sec", -EINVAL, 0 },
		{ "1d", -EINVAL, 0 },
		{ "1us", -EINVAL, 0 },
		{ "0x10s", -EINVAL, 0 },
		{ "1m1s", -EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t ms = 12345;
		int r = cfg_parse_duration_ms(cases[i].s, &ms);

		if (r != cases[i].ret)
			fail_msg("\"%s\": got %d, want %d", cases[i].s, r, cases[i].ret);
		assert_int_equal(ms, r == 0 ? cases[i].ms : 12345);
	}
}

static void
test_parse_size(void **state)
{
	static const struct {
		const char *s;
		int ret;
		size_t n;
	} cases[] = {
		{ "0", 0, 0 },
		{ "4096", 0, 4096 },
		{ "16k", 0, 16384 },
		{ "16K", 0, 16384 },
		{ "1m", 0, 1048576 },
		{ "2M", 0, 2097152 },
		{ "18446744073709551615", 0, SIZE_MAX },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "18014398509481983k", 0, SIZE_MAX - 1023 },
		{ "18014398509481984k", -ERANGE, 0 },
		{ "17592186044416m", -ERANGE, 0 },
		{ "", -EINVAL, 0 },
		{ "k", -EINVAL, 0 },
		{ "16kb", -EINVAL, 0 },
		{ "16g", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "1.5k", -EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = 777;
		int r = cfg_parse_size(cases[i].s, &n);

		if (r != cases[i].ret)
			fail_msg("\"%s\": got %d, want %d", cases[i].s, r, cases[i].ret);
		assert_int_equal(n, r == 0 ? cases[i].n : 777);
	}
}

static void
test_parse_addr(void **state)
{
	static const struct {
		const char *s;
		int port_required;
		int ret;
		int family;
		const char *ip;
		unsigned port;
	} cases[] = {
		{ "198.18.0.1:80", 1, 0, AF_INET, "198.18.0.1", 80 },
		{ "0.0.0.0:1", 1, 0, AF_INET, "0.0.0.0", 1 },
		{ "255.255.255.255:65535", 1, 0, AF_INET, "255.255.255.255", 65535 },
		{ "[2001:db8::1]:80", 1, 0, AF_INET6, "2001:db8::1", 80 },
		{ "[::]:443", 1, 0, AF_INET6, "::", 443 },
		{ "[::ffff:198.18.0.1]:80", 1, 0, AF_INET6, "::ffff:198.18.0.1", 80 },
		{ "198.18.0.1", 0, 0, AF_INET, "198.18.0.1", 0 },
		{ "198.18.0.1:80", 0, 0, AF_INET, "198.18.0.1", 80 },
		{ "2001:db8::1", 0, 0, AF_INET6, "2001:db8::1", 0 },
		{ "[2001:db8::1]", 0, 0, AF_INET6, "2001:db8::1", 0 },
		{ "::", 0, 0, AF_INET6, "::", 0 },
		{ "198.18.0.1:080", 1, 0, AF_INET, "198.18.0.1", 80 },
		/* port problems */
		{ "198.18.0.1:65536", 1, -ERANGE, 0, NULL, 0 },
		{ "198.18.0.1:0", 1, -ERANGE, 0, NULL, 0 },
		{ "198.18.0.1:0", 0, -ERANGE, 0, NULL, 0 },
		{ "198.18.0.1:99999999999999999999999", 1, -ERANGE, 0, NULL, 0 },
		{ "198.18.0.1:", 1, -EINVAL, 0, NULL, 0 },
		{ "198.18.0.1:-1", 1, -EINVAL, 0, NULL, 0 },
		{ "198.18.0.1:+80", 1, -EINVAL, 0, NULL, 0 },
		{ "198.18.0.1:80x", 1, -EINVAL, 0, NULL, 0 },
		{ "198.18.0.1: 80", 1, -EINVAL, 0, NULL, 0 },
		{ "198.18.0.1", 1, -EINVAL, 0, NULL, 0 },
		{ "[2001:db8::1]", 1, -EINVAL, 0, NULL, 0 },
		{ "2001:db8::1", 1, -EINVAL, 0, NULL, 0 },
		{ "2001:db8::1:80", 1, -EINVAL, 0, NULL, 0 },
		/* address problems */
		{ "198.18.0.300:80", 1, -EINVAL, 0, NULL, 0 },
		{ "198.18.0:80", 1, -EINVAL, 0, NULL, 0 },
		{ "198.18.0.1.2:80", 1, -EINVAL, 0, NULL, 0 },
		{ "198.018.0.1:80", 1, -EINVAL, 0, NULL, 0 },
		{ "localhost:80", 1, -EINVAL, 0, NULL, 0 },
		{ ":80", 1, -EINVAL, 0, NULL, 0 },
		{ "", 0, -EINVAL, 0, NULL, 0 },
		{ "[]:80", 1, -EINVAL, 0, NULL, 0 },
		{ "[198.18.0.1]:80", 1, -EINVAL, 0, NULL, 0 },  /* brackets mean IPv6 */
		{ "[2001:db8::1:80", 1, -EINVAL, 0, NULL, 0 },
		{ "[2001:db8::1]80", 1, -EINVAL, 0, NULL, 0 },
		{ "[2001:db8::g]:80", 1, -EINVAL, 0, NULL, 0 },
		{ "[fe80::1%eth0]:80", 1, -EINVAL, 0, NULL, 0 },
		{ "[2001:db8:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:1]:80", 1, -EINVAL, 0,
		  NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = 99;
		int r;

		memset(&ss, 0xa5, sizeof(ss));
		r = cfg_parse_addr(cases[i].s, cases[i].port_required, &ss, &len);
		if (r != cases[i].ret)
			fail_msg("\"%s\": got %d, want %d", cases[i].s, r, cases[i].ret);
		if (r != 0) {
			assert_int_equal(len, 99);
			continue;
		}
		if (cases[i].family == AF_INET)
			assert_v4(&ss, len, cases[i].ip, cases[i].port);
		else
			assert_v6(&ss, len, cases[i].ip, cases[i].port);
	}
}

static void
test_parse_prefix(void **state)
{
	static const struct {
		const char *s;
		int ret;
		int family;
		const char *ip;
		unsigned prefix;
	} cases[] = {
		{ "198.18.0.100/24", 0, AF_INET, "198.18.0.100", 24 },
		{ "198.18.0.100/32", 0, AF_INET, "198.18.0.100", 32 },
		{ "198.18.0.100/1", 0, AF_INET, "198.18.0.100", 1 },
		{ "198.18.0.100/024", 0, AF_INET, "198.18.0.100", 24 },
		{ "2001:db8::100/64", 0, AF_INET6, "2001:db8::100", 64 },
		{ "[2001:db8::100]/128", 0, AF_INET6, "2001:db8::100", 128 },
		{ "::ffff:198.18.0.1/96", 0, AF_INET6, "::ffff:198.18.0.1", 96 },
		{ "198.18.0.100/0", -ERANGE, 0, NULL, 0 },
		{ "198.18.0.100/33", -ERANGE, 0, NULL, 0 },
		{ "2001:db8::1/129", -ERANGE, 0, NULL, 0 },
		{ "198.18.0.100/99999999999999999999999", -ERANGE, 0, NULL, 0 },
		{ "198.18.0.100", -EINVAL, 0, NULL, 0 },
		{ "198.18.0.100/", -EINVAL, 0, NULL, 0 },
		{ "198.18.0.100/x", -EINVAL, 0, NULL, 0 },
		{ "198.18.0.100/-1", -EINVAL, 0, NULL, 0 },
		{ "198.18.0.100/24/24", -EINVAL, 0, NULL, 0 },
		{ "198.18.0.100:80/24", -EINVAL, 0, NULL, 0 },
		{ "[2001:db8::1]:80/64", -EINVAL, 0, NULL, 0 },
		{ "198.18.0.300/24", -EINVAL, 0, NULL, 0 },
		{ "/24", -EINVAL, 0, NULL, 0 },
		{ "", -EINVAL, 0, NULL, 0 },
		{ "host/24", -EINVAL, 0, NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = 99;
		unsigned prefix = 77;
		int r;

		memset(&ss, 0xa5, sizeof(ss));
		r = cfg_parse_prefix(cases[i].s, &ss, &len, &prefix);
		if (r != cases[i].ret)
			fail_msg("\"%s\": got %d, want %d", cases[i].s, r, cases[i].ret);
		if (r != 0) {
			assert_int_equal(len, 99);
			assert_int_equal(prefix, 77);
			continue;
		}
		assert_int_equal(prefix, cases[i].prefix);
		if (cases[i].family == AF_INET)
			assert_v4(&ss, len, cases[i].ip, 0);
		else
			assert_v6(&ss, len, cases[i].ip, 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_every_key),
		cmocka_unit_test(test_valid_defaults),
		cmocka_unit_test(test_valid_health_defaults),
		cmocka_unit_test(test_valid_quotes_and_comments),
		cmocka_unit_test(test_valid_vrrp_every_key),
		cmocka_unit_test(test_valid_vrrp_defaults),
		cmocka_unit_test(test_examples_validate),
		cmocka_unit_test(test_err_unknown_keys),
		cmocka_unit_test(test_err_addresses),
		cmocka_unit_test(test_err_duplicates),
		cmocka_unit_test(test_err_unknown_backend),
		cmocka_unit_test(test_err_weights),
		cmocka_unit_test(test_err_missing_required),
		cmocka_unit_test(test_err_durations),
		cmocka_unit_test(test_err_structure),
		cmocka_unit_test(test_err_tokens),
		cmocka_unit_test(test_err_health),
		cmocka_unit_test(test_err_values),
		cmocka_unit_test(test_err_source),
		cmocka_unit_test(test_err_names),
		cmocka_unit_test(test_err_vrrp_keys),
		cmocka_unit_test(test_err_vrrp_values),
		cmocka_unit_test(test_err_vrrp_addresses),
		cmocka_unit_test(test_err_vrrp_track),
		cmocka_unit_test(test_err_sync_group),
		cmocka_unit_test(test_err_sync),
		cmocka_unit_test(test_err_vrrp_limits),
		cmocka_unit_test(test_err_many),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_err_limits),
		cmocka_unit_test(test_err_corners),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_parse_prefix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
