/*
 * Unit tests for health/: real sockets on loopback, in-test servers and a
 * real libev loop, every run bounded in time (run_until). Each test checks in
 * its teardown that no file descriptor was left open.
 */
#include <tandem/bal.h>
#include <tandem/config.h>
#include <tandem/health.h>
#include <tandem/log.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define NSRV 2
#define TS_MAXCONN 16

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* ---- a tiny in-test server on the same loop ---- */

enum ts_mode {
	TS_HOLD = 0,   /* accept, read, never answer (tcp target / silent http) */
	TS_200,
	TS_503,
	TS_GARBAGE,
	TS_CLOSE,      /* read the request, close without a word */
	TS_PARTIAL,    /* "HTTP/1.1 20" then close */
};

struct tsrv;

struct tconn {
	struct tsrv *srv;
	int fd;
	ev_io w;
	char buf[1024];
	size_t len;
};

struct tsrv {
	struct ev_loop *loop;
	int lfd;
	ev_io lw;
	enum ts_mode mode;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct tconn conns[TS_MAXCONN];
	char first_req[1024];
	size_t first_len;
	unsigned accepted;
};

static void
tconn_close(struct tconn *c)
{
	if (c->fd == -1)
		return;
	ev_io_stop(c->srv->loop, &c->w);
	close(c->fd);
	c->fd = -1;
}

static void
tconn_reply(struct tconn *c, const char *text)
{
	ssize_t n = send(c->fd, text, strlen(text), MSG_NOSIGNAL);

	(void)n;
	tconn_close(c);
}

static void
tconn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct tconn *c = w->data;
	struct tsrv *s = c->srv;
	ssize_t n;

	(void)loop;
	(void)revents;
	if (c->len >= sizeof(c->buf) - 1)
		c->len = 0;  /* only the first request is kept whole */
	n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		tconn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	if (strstr(c->buf, "\r\n\r\n") == NULL)
		return;
	if (s->first_len == 0) {
		memcpy(s->first_req, c->buf, c->len + 1);
		s->first_len = c->len;
	}
	switch (s->mode) {
	case TS_HOLD:
		c->len = 0;
		break;
	case TS_200:
		tconn_reply(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
		break;
	case TS_503:
		tconn_reply(c, "HTTP/1.0 503 Service Unavailable\r\n\r\n");
		break;
	case TS_GARBAGE:
		tconn_reply(c, "SSH-2.0-OpenSSH_9.2\r\n");
		break;
	case TS_CLOSE:
		tconn_close(c);
		break;
	case TS_PARTIAL:
		tconn_reply(c, "HTTP/1.1 20");
		break;
	}
}

static void
tsrv_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct tsrv *s = w->data;

	(void)revents;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct tconn *c = NULL;

		if (fd == -1)
			return;
		s->accepted++;
		for (size_t k = 0; k < TS_MAXCONN; k++)
			if (s->conns[k].fd == -1) {
				c = &s->conns[k];
				break;
			}
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->srv = s;
		c->fd = fd;
		c->len = 0;
		ev_io_init(&c->w, tconn_cb, fd, EV_READ);
		c->w.data = c;
		ev_io_start(loop, &c->w);
	}
}

/* Listen on loopback (v6: ::1) port 0. Returns 0, or -1 if the family is unavailable. */
static int
tsrv_open(struct tsrv *s, struct ev_loop *loop, int v6, enum ts_mode mode)
{
	int one = 1;

	memset(s, 0, sizeof(*s));
	s->loop = loop;
	s->mode = mode;
	s->lfd = -1;
	for (size_t k = 0; k < TS_MAXCONN; k++)
		s->conns[k].fd = -1;
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->addr;

		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		s->addrlen = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&s->addr;

		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		s->addrlen = sizeof(*a);
	}
	s->lfd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd == -1)
		return -1;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->lfd, (struct sockaddr *)&s->addr, s->addrlen) == -1 ||
	    listen(s->lfd, 64) == -1 ||
	    getsockname(s->lfd, (struct sockaddr *)&s->addr, &s->addrlen) == -1) {
		close(s->lfd);
		s->lfd = -1;
		return -1;
	}
	ev_io_init(&s->lw, tsrv_accept_cb, s->lfd, EV_READ);
	s->lw.data = s;
	ev_io_start(loop, &s->lw);
	return 0;
}

static void
tsrv_close(struct tsrv *s)
{
	if (s->loop == NULL)
		return;
	for (size_t k = 0; k < TS_MAXCONN; k++)
		tconn_close(&s->conns[k]);
	if (s->lfd != -1) {
		ev_io_stop(s->loop, &s->lw);
		close(s->lfd);
		s->lfd = -1;
	}
}

static unsigned
tsrv_port(const struct tsrv *s)
{
	if (s->addr.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&s->addr)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&s->addr)->sin_port);
}

/* A loopback address nobody listens on: bind port 0, note it, close. */
static void
closed_port(struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_not_equal(fd, -1);
	memset(ss, 0, sizeof(*ss));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*len = sizeof(*a);
	assert_int_equal(bind(fd, (struct sockaddr *)ss, *len), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)ss, len), 0);
	close(fd);
}

/* ---- fixture ---- */

struct fx {
	struct ev_loop *loop;
	struct cfg_backend be;
	struct cfg_server srv[NSRV];
	struct bal_pool *pool;
	struct hc *hc;
	struct tsrv ts[NSRV];
	int fds_before;
	ev_timer tick;
};

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->fds_before = count_fds();
	f->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(f->loop);
	snprintf(f->be.name, sizeof(f->be.name), "web");
	f->be.algo = BAL_WRR;
	f->be.retries = 2;
	f->be.hc.type = CFG_HC_TCP;
	f->be.hc.interval_ms = 20;
	f->be.hc.timeout_ms = 200;
	f->be.hc.rise = 2;
	f->be.hc.fall = 2;
	f->be.hc.jitter_pct = 10;
	snprintf(f->be.hc.method, sizeof(f->be.hc.method), "GET");
	snprintf(f->be.hc.path, sizeof(f->be.hc.path), "/health");
	f->be.hc.status_min = 200;
	f->be.hc.status_max = 399;
	f->be.servers = f->srv;
	f->be.nservers = 0;
	/* A tick so EVRUN_ONCE returns often and run_until can look. */
	ev_timer_init(&f->tick, tick_cb, 0.005, 0.005);
	ev_timer_start(f->loop, &f->tick);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	hc_free(f->hc);
	bal_pool_free(f->pool);
	for (size_t i = 0; i < NSRV; i++)
		tsrv_close(&f->ts[i]);
	ev_timer_stop(f->loop, &f->tick);
	ev_loop_destroy(f->loop);
	/* Every socket the checks opened was closed. */
	assert_int_equal(count_fds(), f->fds_before);
	free(f);
	return 0;
}

static void
fx_add(struct fx *f, const char *name, const struct sockaddr_storage *ss,
    socklen_t len, unsigned weight)
{
	struct cfg_server *s = &f->srv[f->be.nservers++];

	snprintf(s->name, sizeof(s->name), "%s", name);
	memcpy(&s->addr, ss, len);
	s->addrlen = len;
	s->weight = weight;
	s->state = BAL_UP;
}

/* Build the pool from the config, as the daemon does, then start checking. */
static void
fx_start(struct fx *f)
{
	struct bal_server tpl[NSRV];

	memset(tpl, 0, sizeof(tpl));
	for (size_t i = 0; i < f->be.nservers; i++) {
		snprintf(tpl[i].name, sizeof(tpl[i].name), "%s", f->srv[i].name);
		tpl[i].addr = f->srv[i].addr;
		tpl[i].addrlen = f->srv[i].addrlen;
		tpl[i].weight = f->srv[i].weight;
		atomic_init(&tpl[i].state, (int)f->srv[i].state);
	}
	f->pool = bal_pool_new(f->be.name, f->be.algo, tpl, f->be.nservers);
	assert_non_null(f->pool);
	f->hc = hc_new(f->loop, f->pool, &f->be);
	assert_non_null(f->hc);
}

static struct hc_server_info
info(struct fx *f, size_t idx)
{
	struct hc_server_info in;

	assert_int_equal(hc_server_info(f->hc, idx, &in), 0);
	return in;
}

static int
state_of(struct fx *f, size_t idx)
{
	return atomic_load(&f->pool->servers[idx].state);
}

static unsigned
eff_weight_of(struct fx *f, size_t idx)
{
	return atomic_load(&f->pool->servers[idx].eff_weight);
}

static uint64_t
changes_of(struct fx *f, size_t idx)
{
	return atomic_load(&f->pool->servers[idx].stats.state_changes);
}

typedef int (*pred_fn)(struct fx *f, size_t idx, uint64_t arg);

/* Run the loop until pred holds or max_s passes; returns pred's last value. */
static int
run_until(struct fx *f, pred_fn pred, size_t idx, uint64_t arg, double max_s)
{
	double end = now_s() + max_s;
	int ok;

	while (!(ok = pred(f, idx, arg)) && now_s() < end)
		ev_run(f->loop, EVRUN_ONCE);
	return ok;
}

static int
p_ok(struct fx *f, size_t idx, uint64_t n)
{
	return info(f, idx).checks_ok >= n;
}

static int
p_failed(struct fx *f, size_t idx, uint64_t n)
{
	return info(f, idx).checks_failed >= n;
}

static int
p_state(struct fx *f, size_t idx, uint64_t st)
{
	return state_of(f, idx) == (int)st;
}

static int
p_never(struct fx *f, size_t idx, uint64_t n)
{
	(void)f;
	(void)idx;
	(void)n;
	return 0;
}

static void
run_for(struct fx *f, double s)
{
	run_until(f, p_never, 0, 0, s);
}

static void
add_tsrv(struct fx *f, size_t i, const char *name, enum ts_mode mode, unsigned weight)
{
	assert_int_equal(tsrv_open(&f->ts[i], f->loop, 0, mode), 0);
	fx_add(f, name, &f->ts[i].addr, f->ts[i].addrlen, weight);
}

/* ---- tests ---- */

static void
test_tcp_pass(void **state)
{
	struct fx *f = *state;
	struct hc_server_info in;

	add_tsrv(f, 0, "be1", TS_HOLD, 1);
	fx_start(f);
	assert_true(run_until(f, p_ok, 0, 3, 2.0));
	in = info(f, 0);
	assert_int_equal(in.checks_failed, 0);
	assert_true(in.checked);
	assert_true(in.last_ok);
	assert_true(in.healthy);
	assert_string_equal(in.last_reason, "tcp connect ok");
	assert_true(in.last_latency_us > 0 && in.last_latency_us < 200000);
	assert_int_equal(in.consec_fail, 0);
	assert_true(in.consec_ok >= 3);
	assert_int_equal(state_of(f, 0), BAL_UP);
	assert_int_equal(changes_of(f, 0), 0);
	assert_true(f->ts[0].accepted >= 3);
}

static void
test_tcp_refused(void **state)
{
	struct fx *f = *state;
	struct sockaddr_storage ss;
	socklen_t len;
	struct hc_server_info in;

	closed_port(&ss, &len);
	fx_add(f, "be1", &ss, len, 1);
	f->be.hc.fall = 3;
	fx_start(f);
	/* At startup the server is taken as up until `fall` failures. */
	assert_int_equal(state_of(f, 0), BAL_UP);
	assert_true(info(f, 0).healthy);
	for (unsigned n = 1; n < 3; n++) {
		assert_true(run_until(f, p_failed, 0, n, 2.0));
		in = info(f, 0);
		assert_int_equal(in.checks_failed, n);
		assert_int_equal(in.consec_fail, n);
		assert_int_equal(state_of(f, 0), BAL_UP);
	}
	assert_true(run_until(f, p_failed, 0, 3, 2.0));
	in = info(f, 0);
	assert_int_equal(state_of(f, 0), BAL_DOWN);
	assert_false(in.healthy);
	assert_false(in.last_ok);
	assert_non_null(strstr(in.last_reason, "connect"));
	assert_non_null(strstr(in.last_reason, "refused"));
	assert_int_equal(changes_of(f, 0), 1);
}

static void
test_http_200(void **state)
{
	struct fx *f = *state;
	struct hc_server_info in;
	char want[256];

	add_tsrv(f, 0, "be1", TS_200, 1);
	f->be.hc.type = CFG_HC_HTTP;
	fx_start(f);
	assert_true(run_until(f, p_ok, 0, 3, 2.0));
	in = info(f, 0);
	assert_int_equal(in.checks_failed, 0);
	assert_string_equal(in.last_reason, "http status 200");
	assert_int_equal(state_of(f, 0), BAL_UP);
	snprintf(want, sizeof(want), "GET /health HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
	    "Connection: close\r\nUser-Agent: tandem-health\r\n\r\n",
	    tsrv_port(&f->ts[0]));
	assert_string_equal(f->ts[0].first_req, want);
}

static void
test_http_host_method(void **state)
{
	struct fx *f = *state;

	add_tsrv(f, 0, "be1", TS_200, 1);
	f->be.hc.type = CFG_HC_HTTP;
	snprintf(f->be.hc.method, sizeof(f->be.hc.method), "HEAD");
	snprintf(f->be.hc.path, sizeof(f->be.hc.path), "/ping?x=1");
	snprintf(f->be.hc.host, sizeof(f->be.hc.host), "www.example");
	fx_start(f);
	assert_true(run_until(f, p_ok, 0, 1, 2.0));
	assert_string_equal(f->ts[0].first_req, "HEAD /ping?x=1 HTTP/1.1\r\n"
	    "Host: www.example\r\nConnection: close\r\n"
	    "User-Agent: tandem-health\r\n\r\n");
}

static void
test_http_status_range(void **state)
{
	struct fx *f = *state;

	/* 503 passes when the operator expects exactly it. */
	add_tsrv(f, 0, "be1", TS_503, 1);
	f->be.hc.type = CFG_HC_HTTP;
	f->be.hc.status_min = 503;
	f->be.hc.status_max = 503;
	fx_start(f);
	assert_true(run_until(f, p_ok, 0, 2, 2.0));
	assert_int_equal(info(f, 0).checks_failed, 0);
	assert_string_equal(info(f, 0).last_reason, "http status 503");
}

/* One failing http behaviour: down after `fall`, with the expected reason. */
static void
http_fails(struct fx *f, enum ts_mode mode, const char *reason)
{
	struct hc_server_info in;

	add_tsrv(f, 0, "be1", mode, 1);
	f->be.hc.type = CFG_HC_HTTP;
	f->be.hc.interval_ms = 30;
	f->be.hc.timeout_ms = 60;
	fx_start(f);
	assert_true(run_until(f, p_failed, 0, 1, 2.0));
	assert_int_equal(state_of(f, 0), BAL_UP);
	assert_true(run_until(f, p_failed, 0, 2, 2.0));
	in = info(f, 0);
	assert_int_equal(in.checks_ok, 0);
	assert_int_equal(state_of(f, 0), BAL_DOWN);
	assert_false(in.healthy);
	assert_string_equal(in.last_reason, reason);
	assert_true(f->ts[0].accepted >= 2);
}

static void
test_http_503(void **state)
{
	http_fails(*state, TS_503, "http status 503");
}

static void
test_http_garbage(void **state)
{
	http_fails(*state, TS_GARBAGE, "bad status line");
}

static void
test_http_partial(void **state)
{
	http_fails(*state, TS_PARTIAL, "bad status line");
}

static void
test_http_closed(void **state)
{
	http_fails(*state, TS_CLOSE, "closed before status line");
}

static void
test_http_silent(void **state)
{
	struct fx *f = *state;

	http_fails(f, TS_HOLD, "timeout (status line)");
	/* The timeout, not an early close, ended the check. */
	assert_true(info(f, 0).last_latency_us >= 60000);
	assert_true(info(f, 0).last_latency_us < 1000000);
}

/* rise/fall exactly: down on the fall-th failure, up on the rise-th pass. */
static void
test_rise_fall_exact(void **state)
{
	struct fx *f = *state;
	struct hc_server_info in;

	add_tsrv(f, 0, "be1", TS_200, 1);
	f->be.hc.type = CFG_HC_HTTP;
	f->be.hc.rise = 2;
	f->be.hc.fall = 3;
	fx_start(f);
	assert_true(run_until(f, p_ok, 0, 2, 2.0));
	assert_int_equal(state_of(f, 0), BAL_UP);

	f->ts[0].mode = TS_503;
	for (unsigned n = 1; n <= 3; n++) {
		assert_true(run_until(f, p_failed, 0, n, 2.0));
		in = info(f, 0);
		assert_int_equal(in.consec_fail, n);
		assert_int_equal(state_of(f, 0), n < 3 ? BAL_UP : BAL_DOWN);
		assert_int_equal(in.healthy, n < 3);
	}
	assert_int_equal(changes_of(f, 0), 1);

	f->ts[0].mode = TS_200;
	in = info(f, 0);
	for (unsigned n = 1; n <= 2; n++) {
		assert_true(run_until(f, p_ok, 0, in.checks_ok + n, 2.0));
		assert_int_equal(info(f, 0).consec_ok, n);
		assert_int_equal(state_of(f, 0), n < 2 ? BAL_DOWN : BAL_UP);
	}
	assert_true(info(f, 0).healthy);
	assert_int_equal(changes_of(f, 0), 2);
	/* Slow start is off: full weight at once. */
	assert_int_equal(eff_weight_of(f, 0), 1);
}

static void
test_passive(void **state)
{
	struct fx *f = *state;
	struct bal_server *s;
	uint64_t ok_at_down;

	add_tsrv(f, 0, "be1", TS_HOLD, 1);
	add_tsrv(f, 1, "be2", TS_HOLD, 1);
	f->be.passive_fails = 3;
	f->be.hc.rise = 2;
	fx_start(f);
	s = &f->pool->servers[0];
	assert_true(run_until(f, p_ok, 0, 2, 2.0));

	/* Below the threshold nothing happens. */
	atomic_store(&s->consec_fails, 2);
	run_for(f, 0.25);
	assert_int_equal(state_of(f, 0), BAL_UP);

	/* At the threshold: down within a sweep, verdict unhealthy. */
	atomic_store(&s->consec_fails, 3);
	assert_true(run_until(f, p_state, 0, BAL_DOWN, 0.5));
	ok_at_down = info(f, 0).checks_ok;
	assert_false(info(f, 0).healthy);
	assert_int_equal(info(f, 0).consec_ok, 0);
	assert_int_equal(changes_of(f, 0), 1);

	/* The checks pass, so it is back after exactly `rise` passes ... */
	assert_true(run_until(f, p_state, 0, BAL_UP, 2.0));
	assert_int_equal(info(f, 0).checks_ok - ok_at_down, 2);
	assert_true(info(f, 0).healthy);
	/* ... with the stale count cleared, so it stays up. */
	assert_int_equal(atomic_load(&s->consec_fails), 0);
	run_for(f, 0.25);
	assert_int_equal(state_of(f, 0), BAL_UP);
	assert_int_equal(changes_of(f, 0), 2);

	/* Only UP servers are marked: a drained one stays drained. */
	assert_int_equal(hc_drain(f->hc, 1), 0);
	atomic_store(&f->pool->servers[1].consec_fails, 10);
	run_for(f, 0.25);
	assert_int_equal(state_of(f, 1), BAL_DRAIN);
	assert_true(info(f, 1).healthy);
}

/* No active check: a passively failed server is retried after the hold. */
static void
test_passive_only(void **state)
{
	struct fx *f = *state;
	double t0;

	add_tsrv(f, 0, "be1", TS_HOLD, 1);
	f->be.hc.type = CFG_HC_NONE;
	f->be.hc.interval_ms = 300;  /* the hold */
	f->be.passive_fails = 2;
	fx_start(f);
	atomic_store(&f->pool->servers[0].consec_fails, 2);
	assert_true(run_until(f, p_state, 0, BAL_DOWN, 0.5));
	t0 = now_s();
	assert_true(run_until(f, p_state, 0, BAL_UP, 2.0));
	assert_true(now_s() - t0 >= 0.25);
	assert_int_equal(atomic_load(&f->pool->servers[0].consec_fails), 0);
	assert_false(info(f, 0).checked);
	assert_int_equal(f->ts[0].accepted, 0);
	assert_int_equal(changes_of(f, 0), 2);
}

static void
test_drain_maint(void **state)
{
	struct fx *f = *state;
	struct sockaddr_storage ss;
	socklen_t len;

	closed_port(&ss, &len);
	fx_add(f, "dead", &ss, len, 1);
	add_tsrv(f, 1, "alive", TS_HOLD, 1);
	f->be.hc.fall = 1;
	f->be.hc.rise = 1;
	fx_start(f);

	/* A drained server that fails its checks stays drained ... */
	assert_int_equal(hc_drain(f->hc, 0), 0);
	assert_int_equal(state_of(f, 0), BAL_DRAIN);
	assert_true(run_until(f, p_failed, 0, 3, 2.0));
	assert_int_equal(state_of(f, 0), BAL_DRAIN);
	assert_false(info(f, 0).healthy);
	/* ... and "ready" sends it where its health says: down. */
	assert_int_equal(hc_ready(f->hc, 0), 0);
	assert_int_equal(state_of(f, 0), BAL_DOWN);
	/* maint holds too, and ready again leaves it down. */
	assert_int_equal(hc_maint(f->hc, 0), 0);
	assert_true(run_until(f, p_failed, 0, 5, 2.0));
	assert_int_equal(state_of(f, 0), BAL_MAINT);
	assert_int_equal(hc_ready(f->hc, 0), 0);
	assert_int_equal(state_of(f, 0), BAL_DOWN);
	assert_int_equal(changes_of(f, 0), 4);

	/* A healthy server in maint stays there; ready brings it up. */
	assert_int_equal(hc_maint(f->hc, 1), 0);
	assert_true(run_until(f, p_ok, 1, 3, 2.0));
	assert_int_equal(state_of(f, 1), BAL_MAINT);
	assert_int_equal(hc_drain(f->hc, 1), 0);
	assert_int_equal(state_of(f, 1), BAL_DRAIN);
	assert_int_equal(hc_ready(f->hc, 1), 0);
	assert_int_equal(state_of(f, 1), BAL_UP);
	/* ready on an up server changes nothing. */
	assert_int_equal(hc_ready(f->hc, 1), 0);
	assert_int_equal(state_of(f, 1), BAL_UP);
	assert_int_equal(changes_of(f, 1), 3);

	assert_int_equal(hc_ready(f->hc, 2), -ENOENT);
	assert_int_equal(hc_drain(f->hc, 2), -ENOENT);
	assert_int_equal(hc_maint(f->hc, 99), -ENOENT);
}

/* A server configured in maint is checked but not brought up by checks. */
static void
test_config_maint(void **state)
{
	struct fx *f = *state;

	add_tsrv(f, 0, "be1", TS_HOLD, 1);
	f->srv[0].state = BAL_MAINT;
	fx_start(f);
	assert_true(run_until(f, p_ok, 0, 3, 2.0));
	assert_int_equal(state_of(f, 0), BAL_MAINT);
	assert_int_equal(hc_ready(f->hc, 0), 0);
	assert_int_equal(state_of(f, 0), BAL_UP);
}

/* Sample eff_weight while it ramps; returns how long it took to reach weight. */
static double
watch_ramp(struct fx *f, size_t idx, unsigned weight, unsigned *distinct)
{
	double t0 = now_s(), end = t0 + 2.0;
	unsigned last = eff_weight_of(f, idx);

	*distinct = 1;
	while (now_s() < end) {
		unsigned w;

		ev_run(f->loop, EVRUN_ONCE);
		w = eff_weight_of(f, idx);
		assert_true(w >= last);
		assert_true(w <= weight);
		if (w != last)
			(*distinct)++;
		last = w;
		if (w == weight && !info(f, idx).slowstart)
			return now_s() - t0;
	}
	fail_msg("eff_weight stuck at %u of %u", last, weight);
	return 0;
}

static void
test_slowstart(void **state)
{
	struct fx *f = *state;
	unsigned distinct;
	double took;

	add_tsrv(f, 0, "be1", TS_HOLD, 20);
	f->be.slowstart_ms = 400;
	f->be.passive_fails = 3;
	fx_start(f);
	/* Startup does not ramp. */
	assert_int_equal(eff_weight_of(f, 0), 20);
	assert_false(info(f, 0).slowstart);

	/* MAINT→UP ramps from weight/10 to weight over slowstart. */
	assert_int_equal(hc_maint(f->hc, 0), 0);
	assert_int_equal(hc_ready(f->hc, 0), 0);
	assert_int_equal(state_of(f, 0), BAL_UP);
	assert_int_equal(eff_weight_of(f, 0), 2);
	assert_true(info(f, 0).slowstart);
	took = watch_ramp(f, 0, 20, &distinct);
	assert_true(took >= 0.3);
	assert_true(took < 1.5);
	assert_true(distinct >= 3);

	/* DOWN→UP (passive down, checks bring it back) ramps again. */
	atomic_store(&f->pool->servers[0].consec_fails, 3);
	assert_true(run_until(f, p_state, 0, BAL_DOWN, 0.5));
	assert_true(run_until(f, p_state, 0, BAL_UP, 2.0));
	assert_true(eff_weight_of(f, 0) < 20);
	assert_true(info(f, 0).slowstart);
	(void)watch_ramp(f, 0, 20, &distinct);

	/* A server that goes down mid-ramp stops ramping; DRAIN→UP does not ramp. */
	assert_int_equal(hc_maint(f->hc, 0), 0);
	assert_int_equal(hc_ready(f->hc, 0), 0);
	assert_true(info(f, 0).slowstart);
	assert_int_equal(hc_drain(f->hc, 0), 0);
	assert_false(info(f, 0).slowstart);
	assert_int_equal(hc_ready(f->hc, 0), 0);
	assert_int_equal(state_of(f, 0), BAL_UP);
	assert_int_equal(eff_weight_of(f, 0), 20);
	assert_false(info(f, 0).slowstart);
}

static void
test_ipv6(void **state)
{
	struct fx *f = *state;
	char want[256];

	if (tsrv_open(&f->ts[0], f->loop, 1, TS_200) != 0)
		skip();
	fx_add(f, "be6", &f->ts[0].addr, f->ts[0].addrlen, 1);
	f->be.hc.type = CFG_HC_HTTP;
	fx_start(f);
	assert_true(run_until(f, p_ok, 0, 2, 2.0));
	assert_int_equal(info(f, 0).checks_failed, 0);
	snprintf(want, sizeof(want), "GET /health HTTP/1.1\r\nHost: [::1]:%u\r\n"
	    "Connection: close\r\nUser-Agent: tandem-health\r\n\r\n",
	    tsrv_port(&f->ts[0]));
	assert_string_equal(f->ts[0].first_req, want);
}

/* Two servers, checked independently: one up, one down. */
static void
test_mixed_pool(void **state)
{
	struct fx *f = *state;
	struct sockaddr_storage ss;
	socklen_t len;

	add_tsrv(f, 0, "good", TS_200, 1);
	closed_port(&ss, &len);
	fx_add(f, "bad", &ss, len, 1);
	f->be.hc.type = CFG_HC_HTTP;
	fx_start(f);
	assert_true(run_until(f, p_state, 1, BAL_DOWN, 2.0));
	assert_true(run_until(f, p_ok, 0, 3, 2.0));
	assert_int_equal(state_of(f, 0), BAL_UP);
	assert_int_equal(info(f, 0).checks_failed, 0);
	assert_int_equal(info(f, 1).checks_ok, 0);
	assert_int_equal(hc_server_info(f->hc, 2, &(struct hc_server_info){0}),
	    -ENOENT);
}

/* hc_free with checks in flight closes their sockets (teardown counts fds). */
static void
test_free_in_flight(void **state)
{
	struct fx *f = *state;
	double end;

	add_tsrv(f, 0, "be1", TS_HOLD, 1);
	add_tsrv(f, 1, "be2", TS_HOLD, 1);
	f->be.hc.type = CFG_HC_HTTP;
	f->be.hc.timeout_ms = 1000;
	f->be.hc.interval_ms = 1000;
	fx_start(f);
	/* Both requests have arrived: both checks wait for a status line. */
	end = now_s() + 2.0;
	while (f->ts[0].first_len == 0 || f->ts[1].first_len == 0) {
		assert_true(now_s() < end);
		ev_run(f->loop, EVRUN_ONCE);
	}
	assert_false(info(f, 0).checked);
	hc_free(f->hc);
	f->hc = NULL;
	run_for(f, 0.05);
	hc_free(NULL);
}

/* A check we could not even try (EMFILE) counts neither way. */
static void
test_local_error(void **state)
{
	struct fx *f = *state;
	struct sockaddr_storage ss;
	socklen_t len;
	struct rlimit old, tight;
	int lowest;

	closed_port(&ss, &len);
	fx_add(f, "be1", &ss, len, 1);
	f->be.hc.fall = 1;
	fx_start(f);
	/* The lowest free descriptor becomes the limit: socket() gets EMFILE. */
	lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_int_not_equal(lowest, -1);
	close(lowest);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	tight = old;
	tight.rlim_cur = (rlim_t)lowest;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
	run_for(f, 0.2);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_false(info(f, 0).checked);
	assert_int_equal(info(f, 0).checks_failed, 0);
	assert_non_null(strstr(info(f, 0).last_reason, "socket"));
	assert_int_equal(state_of(f, 0), BAL_UP);
	/* With descriptors back, the real failure takes it down. */
	assert_true(run_until(f, p_state, 0, BAL_DOWN, 2.0));
	assert_int_equal(info(f, 0).checks_failed, 1);
}

static void
test_new_errors(void **state)
{
	struct fx *f = *state;
	struct sockaddr_storage ss;
	struct sockaddr_un *un = (struct sockaddr_un *)&ss;
	struct bal_server tpl[NSRV];
	struct hc *hc;

	add_tsrv(f, 0, "be1", TS_HOLD, 1);
	memset(&ss, 0, sizeof(ss));
	un->sun_family = AF_UNIX;
	fx_add(f, "unix", &ss, sizeof(*un), 1);
	memset(tpl, 0, sizeof(tpl));
	for (size_t i = 0; i < NSRV; i++) {
		snprintf(tpl[i].name, sizeof(tpl[i].name), "%s", f->srv[i].name);
		tpl[i].addr = f->srv[i].addr;
		tpl[i].addrlen = f->srv[i].addrlen;
		tpl[i].weight = 1;
	}
	f->pool = bal_pool_new("web", BAL_WRR, tpl, NSRV);
	assert_non_null(f->pool);
	f->be.hc.type = CFG_HC_HTTP;

	/* The first request is built, the second server fails: nothing leaks. */
	errno = 0;
	hc = hc_new(f->loop, f->pool, &f->be);
	assert_null(hc);
	assert_int_equal(errno, EAFNOSUPPORT);

	/* The config does not match the pool. */
	f->be.nservers = 1;
	hc = hc_new(f->loop, f->pool, &f->be);
	assert_null(hc);
	assert_int_equal(errno, EINVAL);
	f->be.nservers = 2;

	/* A request field that would split the request line. */
	f->pool->servers[1].addr = f->pool->servers[0].addr;
	f->pool->servers[1].addrlen = f->pool->servers[0].addrlen;
	snprintf(f->be.hc.path, sizeof(f->be.hc.path), "/a b");
	hc = hc_new(f->loop, f->pool, &f->be);
	assert_null(hc);
	assert_int_equal(errno, EINVAL);
	snprintf(f->be.hc.path, sizeof(f->be.hc.path), "/");
	snprintf(f->be.hc.host, sizeof(f->be.hc.host), "evil\r\nX: y");
	hc = hc_new(f->loop, f->pool, &f->be);
	assert_null(hc);
	assert_int_equal(errno, EINVAL);

	/* An active check with no interval. */
	f->be.hc.host[0] = '\0';
	f->be.hc.interval_ms = 0;
	hc = hc_new(f->loop, f->pool, &f->be);
	assert_null(hc);
	assert_int_equal(errno, EINVAL);

	/* And once all is right it works. */
	f->be.hc.interval_ms = 20;
	f->hc = hc_new(f->loop, f->pool, &f->be);
	assert_non_null(f->hc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_tcp_pass),
		T(test_tcp_refused),
		T(test_http_200),
		T(test_http_host_method),
		T(test_http_status_range),
		T(test_http_503),
		T(test_http_garbage),
		T(test_http_partial),
		T(test_http_closed),
		T(test_http_silent),
		T(test_rise_fall_exact),
		T(test_passive),
		T(test_passive_only),
		T(test_drain_maint),
		T(test_config_maint),
		T(test_slowstart),
		T(test_ipv6),
		T(test_mixed_pool),
		T(test_free_in_flight),
		T(test_local_error),
		T(test_new_errors),
#undef T
	};

	log_init(LOG_LVL_INFO, 0, "test_health");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
