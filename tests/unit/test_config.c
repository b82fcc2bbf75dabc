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
	    1, "t.conf:1: \"name\" outside of a block (node, backend, frontend)\n");
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
	    1, "t.conf:4: unknown block \"vip-group\" (node, backend, frontend)\n");
	expect_errors(NODE BACKEND FRONTEND "vip-group g1 {\n    track {\n    }\n",
	    2,
	    "t.conf:11: unknown block \"vip-group\" (node, backend, frontend)\n"
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
	    "frontend f5 {\n    bind 198.18.0.100:5\n    backend web\n}\n";
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
			cfg_free(r.cfg);
			free(r.errs);
			break;
		}
		assert_int_equal(r.ret, -ENOMEM);
		assert_null(r.cfg);
		assert_string_equal(r.errs, "t.conf: out of memory\n");
		free(r.errs);
	}
	/* cfg, line buffer, and the growth of every array: it did inject. */
	assert_true(at >= 8);

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
	    "t.conf:11: unknown block \"vip\" (node, backend, frontend)\n"
	    "t.conf:13: stray \"}\" (no block is open)\n");
	/* A mid-line "{" that leaves a block open skips that block. */
	expect_errors(NODE BACKEND FRONTEND "x { y {\n    z\n}\n",
	    2,
	    "t.conf:11: \"{\" must end the line (one statement per line)\n"
	    "t.conf:11: unterminated block \"x\" (missing \"}\")\n");
	expect_errors(NODE BACKEND FRONTEND "name lb1 }\n",
	    3,
	    "t.conf:11: \"}\" must be on its own line\n"
	    "t.conf:11: \"name\" outside of a block (node, backend, frontend)\n"
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_every_key),
		cmocka_unit_test(test_valid_defaults),
		cmocka_unit_test(test_valid_health_defaults),
		cmocka_unit_test(test_valid_quotes_and_comments),
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
		cmocka_unit_test(test_err_many),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_err_limits),
		cmocka_unit_test(test_err_corners),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_addr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
