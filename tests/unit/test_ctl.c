/*
 * Unit tests for ctl/: a real libev loop serving a ctl and a metrics
 * listener on unix sockets in a temporary directory (no network), a
 * hand-built view (two balance pools, one frontend with stats), and test
 * clients on the same loop. Every wait is bounded (run_until). Each test
 * checks in its teardown that no file descriptor was left open.
 *
 * Session sync (struct sess) is replaced by test doubles of the four calls ctl
 * makes (sess_get_info, sess_sync_stats, sess_can_handover, sess_switchover):
 * the real ones need a sync channel and a packet socket. Defined here, they
 * are found before lib_session's, so session.o is never pulled into this
 * executable; a new sess_* call in ctl/ needs its double here too, or the
 * link fails with duplicate symbols.
 *
 * tandemctl itself is run when the TANDEMCTL environment variable names the
 * executable (meson sets it); the one test needing a network namespace for
 * failing health checks skips when unshare(CLONE_NEWNET) is not allowed.
 */
#include <tandem/bal.h>
#include <tandem/config.h>
#include <tandem/ctl.h>
#include <tandem/health.h>
#include <tandem/log.h>
#include <tandem/metrics.h>
#include <tandem/proxy.h>
#include <tandem/session.h>
#include <tandem/sync.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- injected failures (linked with -Wl,--wrap=listen) ---- */

int __wrap_listen(int fd, int backlog);
int __real_listen(int fd, int backlog);

static int fail_listen;   /* test-only switch: next listen() fails with EACCES */

int
__wrap_listen(int fd, int backlog)
{
	if (fail_listen) {
		fail_listen = 0;
		errno = EACCES;
		return -1;
	}
	return __real_listen(fd, backlog);
}

/* ---- session sync doubles ---- */

/* What the doubles report and record; reset by setup(). */
struct fake_sess {
	struct sess_info info;
	struct sync_stats stats;
	bool no_stats;            /* sess_sync_stats() answers NULL */
	bool can_handover;
	int switchover_ret;
	unsigned switchover_calls;
};

static struct fake_sess fake;

/* Stands for the daemon's struct sess: ctl only passes the pointer on. */
#define FAKE_SESS ((struct sess *)(void *)&fake)

void
sess_get_info(const struct sess *s, struct sess_info *out)
{
	assert_ptr_equal(s, FAKE_SESS);
	*out = fake.info;
}

const struct sync_stats *
sess_sync_stats(const struct sess *s)
{
	assert_ptr_equal(s, FAKE_SESS);
	return fake.no_stats ? NULL : &fake.stats;
}

bool
sess_can_handover(const struct sess *s)
{
	assert_ptr_equal(s, FAKE_SESS);
	return fake.can_handover;
}

int
sess_switchover(struct sess *s, int group, void (*done)(void *arg, int result),
    void *arg)
{
	(void)group;
	(void)done;
	(void)arg;
	assert_ptr_equal(s, FAKE_SESS);
	fake.switchover_calls++;
	return fake.switchover_ret;
}

/* ---- helpers ---- */

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

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

/* Run loop until cond(arg) or timeout seconds pass; returns cond's last value. */
static int
run_until(struct ev_loop *loop, int (*cond)(void *), void *arg, double timeout)
{
	ev_timer tick;
	double end;
	int ok;

	ev_now_update(loop);
	end = ev_now(loop) + timeout;
	ev_timer_init(&tick, tick_cb, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	while (!(ok = cond(arg)) && ev_now(loop) < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return ok;
}

static void
sockaddr_unix(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	assert_true(strlen(path) < sizeof(sun->sun_path));
	strcpy(sun->sun_path, path);
}

static int
unix_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	sockaddr_unix(&sun, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

/* A client on the test's loop: sends a request, collects the answer to EOF. */
struct asker {
	struct ev_loop *loop;
	ev_io w;
	int fd;
	int done;
	char buf[256 * 1024];
	size_t len;
};

static void
asker_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct asker *a = w->data;
	ssize_t n;

	(void)revents;
	n = recv(a->fd, a->buf + a->len, sizeof(a->buf) - 1 - a->len, 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		a->len += (size_t)n;
		a->buf[a->len] = '\0';
		if (a->len < sizeof(a->buf) - 1)
			return;
	}
	a->done = 1;
	ev_io_stop(loop, w);
}

static int
asker_done(void *arg)
{
	return ((struct asker *)arg)->done;
}

/* fd: a connected socket, owned by the asker from now on. */
static struct asker *
asker_new_fd(struct ev_loop *loop, int fd, const char *req, size_t len)
{
	struct asker *a = calloc(1, sizeof(*a));

	assert_non_null(a);
	a->loop = loop;
	a->fd = fd;
	if (len > 0)
		assert_int_equal(send(a->fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
	ev_io_init(&a->w, asker_cb, a->fd, EV_READ);
	a->w.data = a;
	ev_io_start(loop, &a->w);
	return a;
}

static struct asker *
asker_new(struct ev_loop *loop, const char *path, const char *req, size_t len)
{
	return asker_new_fd(loop, unix_connect(path), req, len);
}

static void
asker_free(struct asker *a)
{
	ev_io_stop(a->loop, &a->w);
	close(a->fd);
	free(a);
}

/* Ask on fd req and return the whole answer (static, overwritten each call). */
static const char *
ask_fd(struct ev_loop *loop, int fd, const char *req)
{
	static char answer[256 * 1024];
	struct asker *a = asker_new_fd(loop, fd, req, strlen(req));

	assert_true(run_until(loop, asker_done, a, 3.0));
	memcpy(answer, a->buf, a->len + 1);
	asker_free(a);
	/* Let the server see our close and free its client. */
	ev_run(loop, EVRUN_NOWAIT);
	return answer;
}

static const char *
ask(struct ev_loop *loop, const char *path, const char *req)
{
	return ask_fd(loop, unix_connect(path), req);
}

/* The line of text starting with prefix, copied into line; 0 if none. */
static int
find_line(const char *text, const char *prefix, char *line, size_t size)
{
	const char *p = text;

	while (p != NULL && *p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);

		if (strncmp(p, prefix, strlen(prefix)) == 0) {
			assert_true(n < size);
			memcpy(line, p, n);
			line[n] = '\0';
			return 1;
		}
		p = eol != NULL ? eol + 1 : NULL;
	}
	return 0;
}

/* Split line at runs of blanks into at most max words; returns the count. */
static size_t
split(char *line, char **words, size_t max)
{
	size_t n = 0;

	for (char *tok = strtok(line, " "); tok != NULL && n < max;
	    tok = strtok(NULL, " "))
		words[n++] = tok;
	return n;
}

/* ---- fixture: a view with two pools and one frontend ---- */

#define NWEB 3
#define NAPI 2

struct fx {
	struct ev_loop *loop;
	char dir[64];
	char path[128];           /* the control socket */
	char mpath[128];          /* the metrics socket */
	struct cfg cfg;
	struct cfg_backend becfg[2];
	struct cfg_server websrv[NWEB];
	struct cfg_server apisrv[NAPI];
	struct cfg_frontend fecfg;
	struct bal_pool *pools[2];
	struct hc *hcs[2];
	struct proxy_frontend fe;
	struct ctl_view view;
	struct ctl *ctl;
	int fds_before;
};

static void
set_addr(struct sockaddr_storage *ss, socklen_t *len, const char *ip,
    unsigned port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	*len = sizeof(*sin);
}

static void
cfg_srv(struct cfg_server *cs, const char *name, const char *ip, unsigned port,
    unsigned weight, enum bal_state state)
{
	memset(cs, 0, sizeof(*cs));
	snprintf(cs->name, sizeof(cs->name), "%s", name);
	set_addr(&cs->addr, &cs->addrlen, ip, port);
	cs->weight = weight;
	cs->state = state;
}

static struct bal_pool *
pool_from(const struct cfg_backend *bc)
{
	struct bal_server t[NWEB];
	struct bal_pool *pool;

	assert_true(bc->nservers <= NWEB);
	memset(t, 0, sizeof(t));
	for (size_t i = 0; i < bc->nservers; i++) {
		snprintf(t[i].name, sizeof(t[i].name), "%s", bc->servers[i].name);
		t[i].addr = bc->servers[i].addr;
		t[i].addrlen = bc->servers[i].addrlen;
		t[i].weight = bc->servers[i].weight;
		atomic_init(&t[i].state, (int)bc->servers[i].state);
	}
	pool = bal_pool_new(bc->name, bc->algo, t, bc->nservers);
	assert_non_null(pool);
	return pool;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct bal_server *be1;

	assert_non_null(f);
	memset(&fake, 0, sizeof(fake));
	/* First, so the loop's own descriptors are not counted as leaks. */
	f->loop = ev_default_loop(0);
	assert_non_null(f->loop);
	f->fds_before = count_fds();
	ev_now_update(f->loop);
	snprintf(f->dir, sizeof(f->dir), "/tmp/tandem-ctl-test.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
	snprintf(f->mpath, sizeof(f->mpath), "%s/metrics.sock", f->dir);

	snprintf(f->cfg.node.name, sizeof(f->cfg.node.name), "lb1");
	f->cfg.node.workers = 2;

	cfg_srv(&f->websrv[0], "be1", "198.18.0.21", 80, 3, BAL_UP);
	cfg_srv(&f->websrv[1], "be2", "198.18.0.22", 80, 1, BAL_UP);
	cfg_srv(&f->websrv[2], "be3", "198.18.0.23", 8080, 2, BAL_MAINT);
	snprintf(f->becfg[0].name, sizeof(f->becfg[0].name), "web");
	f->becfg[0].algo = BAL_WRR;
	f->becfg[0].servers = f->websrv;
	f->becfg[0].nservers = NWEB;
	f->becfg[0].hc.type = CFG_HC_NONE;
	f->becfg[0].passive_fails = 0;

	cfg_srv(&f->apisrv[0], "be1", "198.18.0.31", 443, 1, BAL_UP);
	cfg_srv(&f->apisrv[1], "api1", "198.18.0.32", 443, 1, BAL_UP);
	snprintf(f->becfg[1].name, sizeof(f->becfg[1].name), "api");
	f->becfg[1].algo = BAL_LEASTCONN;
	f->becfg[1].servers = f->apisrv;
	f->becfg[1].nservers = NAPI;
	f->becfg[1].hc.type = CFG_HC_NONE;

	f->cfg.backends = f->becfg;
	f->cfg.nbackends = 2;

	snprintf(f->fecfg.name, sizeof(f->fecfg.name), "www");
	set_addr(&f->fecfg.bind, &f->fecfg.bindlen, "198.18.0.100", 80);
	f->fecfg.mode = CFG_MODE_TCP;
	snprintf(f->fecfg.backend_name, sizeof(f->fecfg.backend_name), "web");
	f->cfg.frontends = &f->fecfg;
	f->cfg.nfrontends = 1;

	f->pools[0] = pool_from(&f->becfg[0]);
	f->pools[1] = pool_from(&f->becfg[1]);

	f->fe.cfg = &f->fecfg;
	f->fe.becfg = &f->becfg[0];
	f->fe.pool = f->pools[0];
	atomic_store(&f->fe.active, 3);
	atomic_store(&f->fe.stats.conns_total, 42);
	atomic_store(&f->fe.stats.bytes_in, 1000);
	atomic_store(&f->fe.stats.bytes_out, 2000);
	atomic_store(&f->fe.stats.connect_errors, 4);
	atomic_store(&f->fe.stats.retries, 2);
	atomic_store(&f->fe.stats.no_server, 1);
	atomic_store(&f->fe.stats.timeouts, 5);
	atomic_store(&f->fe.stats.resets, 6);

	be1 = &f->pools[0]->servers[0];
	atomic_store(&be1->active, 2);
	atomic_store(&be1->stats.conns_total, 17);
	atomic_store(&be1->stats.bytes_in, 500);
	atomic_store(&be1->stats.bytes_out, 250);
	atomic_store(&be1->stats.connect_errors, 1);
	atomic_store(&be1->ewma_us, 1500);

	f->view.cfg = &f->cfg;
	f->view.fes = &f->fe;
	f->view.nfes = 1;
	f->view.pools = f->pools;
	f->view.hcs = NULL;         /* no health module: ctl sets state itself */
	f->view.npools = 2;
	f->view.started = ev_now(f->loop) - 3725;  /* 1h 2m 5s */
	f->view.workers = 2;

	f->ctl = ctl_new(f->loop, f->path, &f->view);
	assert_non_null(f->ctl);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char path[192];

	ctl_free(f->ctl);
	for (size_t p = 0; p < 2; p++) {
		hc_free(f->hcs[p]);
		bal_pool_free(f->pools[p]);
	}
	unlink(f->mpath);
	/* The directory must be empty now: ctl_free removed its socket. */
	snprintf(path, sizeof(path), "%s", f->dir);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(count_fds(), f->fds_before);
	free(f);
	return 0;
}

/* ---- status / servers ---- */

static void
test_status(void **state)
{
	struct fx *f = *state;
	const char *a = ask(f->loop, f->path, "status\n");
	char line[512];
	char *w[10];

	assert_true(strncmp(a, "ok\n", 3) == 0);
	assert_true(find_line(a, "node ", line, sizeof(line)));
	assert_string_equal(line, "node     lb1");
	assert_true(find_line(a, "version ", line, sizeof(line)));
	assert_string_equal(line, "version  " TANDEM_TEST_VERSION);
	assert_true(find_line(a, "uptime ", line, sizeof(line)));
	assert_string_equal(line, "uptime   1h 2m 5s");
	assert_true(find_line(a, "workers ", line, sizeof(line)));
	assert_string_equal(line, "workers  2");

	assert_true(find_line(a, "www ", line, sizeof(line)));
	assert_int_equal(split(line, w, 10), 6);
	assert_string_equal(w[1], "198.18.0.100:80");
	assert_string_equal(w[2], "tcp");
	assert_string_equal(w[3], "web");
	assert_string_equal(w[4], "3");
	assert_string_equal(w[5], "42");

	/* Backends: web has be1 and be2 up, be3 in maint; 2 active on be1. */
	assert_true(find_line(a, "web ", line, sizeof(line)));
	assert_int_equal(split(line, w, 10), 8);
	assert_string_equal(w[1], "wrr");
	assert_string_equal(w[2], "3");
	assert_string_equal(w[3], "2");
	assert_string_equal(w[4], "0");
	assert_string_equal(w[5], "0");
	assert_string_equal(w[6], "1");
	assert_string_equal(w[7], "2");
	assert_true(find_line(a, "api ", line, sizeof(line)));
	assert_int_equal(split(line, w, 10), 8);
	assert_string_equal(w[1], "leastconn");
}

/* Every row's cell for column col starts where the header's does. */
static void
assert_aligned(const char *table, const char *head, const char *col)
{
	char line[512];
	const char *p;
	size_t at;

	assert_true(find_line(table, head, line, sizeof(line)));
	p = strstr(line, col);
	assert_non_null(p);
	at = (size_t)(p - line);
	for (p = strstr(table, line); p != NULL && *p != '\0' && *p != '\n';) {
		const char *eol = strchr(p, '\n');
		size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);

		assert_true(n > at);
		assert_true(at == 0 || p[at - 1] == ' ');
		assert_true(p[at] != ' ' || col[0] == ' ');
		p = eol != NULL ? eol + 1 : NULL;
	}
}

static void
test_servers(void **state)
{
	struct fx *f = *state;
	const char *a = ask(f->loop, f->path, "servers\n");
	const char *api;
	char line[512];
	char *w[12];

	assert_true(strncmp(a, "ok\n", 3) == 0);
	assert_non_null(strstr(a, "backend web (wrr): 3 servers, 2 up, no health checks\n"));
	assert_true(find_line(a, "be1 ", line, sizeof(line)));
	assert_int_equal(split(line, w, 12), 9);
	assert_string_equal(w[1], "198.18.0.21:80");
	assert_string_equal(w[2], "up");
	assert_string_equal(w[3], "3/3");
	assert_string_equal(w[4], "2");
	assert_string_equal(w[5], "17");
	assert_string_equal(w[6], "-");
	assert_string_equal(w[7], "-");
	assert_string_equal(w[8], "1.5ms");
	assert_true(find_line(a, "be3 ", line, sizeof(line)));
	assert_int_equal(split(line, w, 12), 9);
	assert_string_equal(w[1], "198.18.0.23:8080");
	assert_string_equal(w[2], "maint");
	assert_string_equal(w[3], "2/2");
	assert_string_equal(w[8], "-");

	/* Columns line up under their headers, in both tables. */
	assert_aligned(a, "SERVER ", "ADDRESS");
	assert_aligned(a, "SERVER ", "STATE");
	assert_aligned(a, "SERVER ", "HEALTH");
	api = strstr(a, "backend api");
	assert_non_null(api);
	assert_non_null(strstr(api, "\napi1 "));
	assert_aligned(api, "SERVER ", "ADDRESS");
}

/* ---- drain / ready / maint ---- */

static int
srv_state(struct fx *f, size_t p, size_t i)
{
	return atomic_load(&f->pools[p]->servers[i].state);
}

static void
test_drain_ready_maint(void **state)
{
	struct fx *f = *state;
	const char *a;

	a = ask(f->loop, f->path, "drain web/be2\n");
	assert_string_equal(a, "ok\nweb/be2: up -> drain\n");
	assert_int_equal(srv_state(f, 0, 1), BAL_DRAIN);
	assert_int_equal(atomic_load(&f->pools[0]->servers[1].stats.state_changes), 1);

	/* Unqualified, unique name; and the answer for a no-op. */
	a = ask(f->loop, f->path, "drain be2\n");
	assert_string_equal(a, "ok\nweb/be2: already drain\n");
	assert_int_equal(atomic_load(&f->pools[0]->servers[1].stats.state_changes), 1);

	a = ask(f->loop, f->path, "ready be2\n");
	assert_string_equal(a, "ok\nweb/be2: drain -> up\n");
	assert_int_equal(srv_state(f, 0, 1), BAL_UP);

	a = ask(f->loop, f->path, "maint api1\n");
	assert_string_equal(a, "ok\napi/api1: up -> maint\n");
	assert_int_equal(srv_state(f, 1, 1), BAL_MAINT);

	/* "be1" exists in both backends: qualified works. */
	a = ask(f->loop, f->path, "maint api/be1\n");
	assert_string_equal(a, "ok\napi/be1: up -> maint\n");
	assert_int_equal(srv_state(f, 1, 0), BAL_MAINT);
	assert_int_equal(srv_state(f, 0, 0), BAL_UP);

	/* Without a trailing newline (peer shut its side down instead). */
	{
		struct asker *k = asker_new(f->loop, f->path, "ready api/be1", 13);

		assert_int_equal(shutdown(k->fd, SHUT_WR), 0);
		assert_true(run_until(f->loop, asker_done, k, 3.0));
		assert_string_equal(k->buf, "ok\napi/be1: maint -> up\n");
		asker_free(k);
	}
	assert_int_equal(srv_state(f, 1, 0), BAL_UP);
}

static void
test_errors(void **state)
{
	struct fx *f = *state;
	const char *a;
	char big[700];

	a = ask(f->loop, f->path, "drain be9\n");
	assert_string_equal(a, "error: no server named \"be9\"; servers: web/be1, "
	    "web/be2, web/be3, api/be1, api/api1\n");
	a = ask(f->loop, f->path, "drain web/nope\n");
	assert_string_equal(a, "error: no server named \"web/nope\"; servers: "
	    "web/be1, web/be2, web/be3\n");
	a = ask(f->loop, f->path, "drain db/be1\n");
	assert_string_equal(a, "error: no backend named \"db\"; backends: web, api\n");
	a = ask(f->loop, f->path, "drain be1\n");
	assert_string_equal(a, "error: more than one server is named \"be1\" "
	    "(web/be1, api/be1); say which: BACKEND/SERVER\n");
	a = ask(f->loop, f->path, "frob\n");
	assert_string_equal(a, "error: unknown command \"frob\"; commands: drain, "
	    "help, maint, ready, servers, status, switchover, sync\n");
	a = ask(f->loop, f->path, "drain\n");
	assert_string_equal(a, "error: usage: drain NAME\n");
	a = ask(f->loop, f->path, "status now\n");
	assert_string_equal(a, "error: usage: status\n");
	a = ask(f->loop, f->path, "\n");
	assert_string_equal(a, "error: empty request; try \"help\"\n");
	a = ask(f->loop, f->path, "drain be\x01 1\n");
	assert_string_equal(a, "error: control character in request\n");

	memset(big, 'x', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	a = ask(f->loop, f->path, big);
	assert_string_equal(a, "error: request longer than 512 bytes\n");

	/* Nothing changed state. */
	for (size_t i = 0; i < NWEB; i++)
		assert_int_equal(atomic_load(&f->pools[0]->servers[i].stats.state_changes), 0);

	a = ask(f->loop, f->path, "help\n");
	assert_true(strncmp(a, "ok\n", 3) == 0);
	assert_non_null(strstr(a, "drain   NAME  "));
}

static void
test_exec_direct(void **state)
{
	struct fx *f = *state;
	struct ctl_buf out = { 0 };

	/* CR LF and tabs are fine; the answer goes to the caller's buffer. */
	assert_int_equal(ctl_exec(&f->view, ev_now(f->loop), "drain\tweb/be3\r\n",
	    15, &out), 0);
	assert_string_equal(out.data, "ok\nweb/be3: maint -> drain\n");
	ctl_buf_free(&out);
	assert_int_equal(ctl_exec(&f->view, ev_now(f->loop), "status\0x", 8, &out), 0);
	assert_string_equal(out.data, "error: control character in request\n");
	ctl_buf_free(&out);
	assert_null(out.data);
}

/* ---- state changes through the health module ---- */

static void
test_with_health(void **state)
{
	struct fx *f = *state;
	const char *a;
	char line[512];
	char *w[12];

	f->hcs[0] = hc_new(f->loop, f->pools[0], &f->becfg[0]);
	assert_non_null(f->hcs[0]);
	f->view.hcs = f->hcs;     /* hcs[1] stays NULL: api is set directly */
	ctl_set_view(f->ctl, &f->view);

	a = ask(f->loop, f->path, "drain web/be1\n");
	assert_string_equal(a, "ok\nweb/be1: up -> drain\n");
	assert_int_equal(srv_state(f, 0, 0), BAL_DRAIN);
	a = ask(f->loop, f->path, "ready web/be1\n");
	assert_string_equal(a, "ok\nweb/be1: drain -> up\n");
	assert_int_equal(srv_state(f, 0, 0), BAL_UP);
	a = ask(f->loop, f->path, "maint web/be2\n");
	assert_string_equal(a, "ok\nweb/be2: up -> maint\n");
	assert_int_equal(atomic_load(&f->pools[0]->servers[1].stats.state_changes), 1);
	a = ask(f->loop, f->path, "drain api/api1\n");
	assert_string_equal(a, "ok\napi/api1: up -> drain\n");

	a = ask(f->loop, f->path, "servers\n");
	assert_non_null(strstr(a, "backend web (wrr): 3 servers, 1 up\n"));
	assert_non_null(strstr(a, "backend api (leastconn): 2 servers, 1 up, "
	    "no health checks\n"));
	assert_true(find_line(a, "be2 ", line, sizeof(line)));
	assert_int_equal(split(line, w, 12), 9);
	assert_string_equal(w[2], "maint");
	assert_string_equal(w[6], "passive");   /* no active check configured */
}

/* ---- the socket itself ---- */

static void
test_socket_mode(void **state)
{
	struct fx *f = *state;
	struct stat st;

	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0660);
}

static void
test_second_refused(void **state)
{
	struct fx *f = *state;
	struct ctl *second;

	errno = 0;
	second = ctl_new(f->loop, f->path, &f->view);
	assert_null(second);
	assert_int_equal(errno, EADDRINUSE);
	/* The first one still owns and serves the path. */
	assert_true(strncmp(ask(f->loop, f->path, "status\n"), "ok\n", 3) == 0);
}

static void
test_stale_and_foreign_paths(void **state)
{
	struct fx *f = *state;
	struct sockaddr_un sun;
	char path[160];
	struct ctl *c;
	struct stat st;
	int fd;

	/* A socket file nobody listens on (a crashed daemon's) is replaced. */
	snprintf(path, sizeof(path), "%s/stale.sock", f->dir);
	sockaddr_unix(&sun, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	c = ctl_new(f->loop, path, &f->view);
	assert_non_null(c);
	assert_true(strncmp(ask(f->loop, path, "status\n"), "ok\n", 3) == 0);
	ctl_free(c);
	assert_int_equal(lstat(path, &st), -1);   /* ctl_free removed it */
	assert_int_equal(errno, ENOENT);

	/* A regular file is never deleted. */
	snprintf(path, sizeof(path), "%s/file", f->dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	errno = 0;
	assert_null(ctl_new(f->loop, path, &f->view));
	assert_int_equal(errno, EEXIST);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(path);

	/* Error paths of ctl_new: name too long, bind, listen. */
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	errno = 0;
	assert_null(ctl_new(f->loop, path, &f->view));
	assert_int_equal(errno, ENAMETOOLONG);
	snprintf(path, sizeof(path), "%s/no/such/dir.sock", f->dir);
	assert_null(ctl_new(f->loop, path, &f->view));
	assert_int_equal(errno, ENOENT);
	snprintf(path, sizeof(path), "%s/listen-fails.sock", f->dir);
	fail_listen = 1;
	assert_null(ctl_new(f->loop, path, &f->view));
	assert_int_equal(errno, EACCES);
	assert_int_equal(lstat(path, &st), -1);   /* err_unlink cleaned up */
}

/* ---- many and slow clients ---- */

#define NMANY 40   /* more than CTL_MAX_CLIENTS, all sent before any answer */

struct many {
	struct asker *a[NMANY];
};

static int
many_done(void *arg)
{
	struct many *m = arg;

	for (size_t i = 0; i < NMANY; i++)
		if (!m->a[i]->done)
			return 0;
	return 1;
}

static void
test_many_and_slow_clients(void **state)
{
	struct fx *f = *state;
	struct many m;
	struct asker *idle, *half;
	size_t ok = 0, busy = 0;

	/* Two clients that never finish a request hold no one up. */
	idle = asker_new(f->loop, f->path, NULL, 0);
	half = asker_new(f->loop, f->path, "sta", 3);
	assert_true(strncmp(ask(f->loop, f->path, "servers\n"), "ok\n", 3) == 0);

	for (size_t i = 0; i < NMANY; i++)
		m.a[i] = asker_new(f->loop, f->path, "status\n", 7);
	assert_true(run_until(f->loop, many_done, &m, 5.0));
	for (size_t i = 0; i < NMANY; i++) {
		if (strncmp(m.a[i]->buf, "ok\nnode     lb1\n", 16) == 0)
			ok++;
		else if (strncmp(m.a[i]->buf, "error: busy", 11) == 0)
			busy++;
		asker_free(m.a[i]);
	}
	/* Every client got an answer; over the limit, an explicit "busy". */
	assert_int_equal(ok + busy, NMANY);
	assert_true(ok >= CTL_MAX_CLIENTS - 2);
	assert_false(idle->done);
	assert_false(half->done);
	asker_free(idle);
	asker_free(half);
}

/* ctl_srv on its own, with a short deadline and a limit of two clients. */

static size_t
echo_complete(const char *buf, size_t len)
{
	const char *nl = memchr(buf, '\n', len);

	return nl != NULL ? (size_t)(nl - buf) + 1 : 0;
}

static int
echo_answer(void *arg, enum ctl_req kind, const char *req, size_t len,
    struct ctl_buf *out)
{
	unsigned *calls = arg;

	(*calls)++;
	switch (kind) {
	case CTL_REQ_COMPLETE:
		ctl_buf_printf(out, "echo ");
		ctl_buf_append(out, req, len);
		break;
	case CTL_REQ_EOF:
		ctl_buf_printf(out, "eof\n");
		break;
	case CTL_REQ_TOO_LONG:
		ctl_buf_printf(out, "long %zu\n", len);
		break;
	case CTL_REQ_BUSY:
		ctl_buf_printf(out, "busy\n");
		break;
	case CTL_REQ_COUNT:
	default:
		return -EINVAL;
	}
	return out->err;
}

static const struct ctl_srv_ops echo_ops = {
	.name = "echo",
	.max_request = 16,
	.max_clients = 2,
	.timeout = 0.3,
	.complete = echo_complete,
	.answer = echo_answer,
};

struct srv_wait {
	struct ctl_srv *srv;
	unsigned n;
};

static int
srv_clients_are(void *arg)
{
	struct srv_wait *w = arg;

	return ctl_srv_clients(w->srv) == w->n;
}

static void
test_srv_limits(void **state)
{
	struct fx *f = *state;
	struct sockaddr_un sun;
	char path[160];
	unsigned calls = 0;
	struct srv_wait sw;
	struct asker *a, *b, *c;
	int fd;

	snprintf(path, sizeof(path), "%s/echo.sock", f->dir);
	sockaddr_unix(&sun, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 8), 0);
	sw.srv = ctl_srv_new(f->loop, fd, &echo_ops, &calls);
	assert_non_null(sw.srv);

	assert_string_equal(ask(f->loop, path, "hi\n"), "echo hi\n");
	assert_string_equal(ask(f->loop, path, "0123456789abcdefXYZ"), "long 16\n");

	/* Two silent clients fill the server; a third is told it is busy. */
	a = asker_new(f->loop, path, NULL, 0);
	b = asker_new(f->loop, path, "x", 1);
	sw.n = 2;
	assert_true(run_until(f->loop, srv_clients_are, &sw, 2.0));
	c = asker_new(f->loop, path, NULL, 0);
	assert_true(run_until(f->loop, asker_done, c, 2.0));
	assert_string_equal(c->buf, "busy\n");
	asker_free(c);

	/* Past the deadline the silent ones are dropped without an answer. */
	assert_true(run_until(f->loop, asker_done, a, 2.0));
	assert_true(run_until(f->loop, asker_done, b, 2.0));
	assert_int_equal(a->len, 0);
	assert_int_equal(b->len, 0);
	sw.n = 0;
	assert_true(run_until(f->loop, srv_clients_are, &sw, 2.0));
	asker_free(a);
	asker_free(b);

	/* A client that never closes after its answer is let go after the linger. */
	a = asker_new(f->loop, path, "bye\n", 4);
	assert_true(run_until(f->loop, asker_done, a, 2.0));
	assert_string_equal(a->buf, "echo bye\n");
	sw.n = 0;
	assert_true(run_until(f->loop, srv_clients_are, &sw, 3.0));
	asker_free(a);

	ctl_srv_free(sw.srv);
	unlink(path);
}

/* Out of descriptors, accept pauses (no busy loop) and resumes by itself. */
static void
test_accept_emfile(void **state)
{
	struct fx *f = *state;
	struct rlimit old, low;
	struct dirent *e;
	struct asker *a;
	int dups[64];
	int ndups = 0, maxfd = 0;
	DIR *d;

	a = asker_new(f->loop, f->path, "status\n", 7);
	d = opendir("/proc/self/fd");
	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && atoi(e->d_name) > maxfd)
			maxfd = atoi(e->d_name);
	closedir(d);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)maxfd + 1;
	if (setrlimit(RLIMIT_NOFILE, &low) == -1) {
		/* valgrind keeps its own descriptors up there and refuses. */
		print_message("skipped: setrlimit(RLIMIT_NOFILE): %s\n", strerror(errno));
		asker_free(a);
		skip();
	}
	/* Fill any hole below the limit, so accept4() surely gets EMFILE. */
	while (ndups < 64 && (dups[ndups] = dup(0)) != -1)
		ndups++;
	assert_int_equal(errno, EMFILE);

	assert_false(run_until(f->loop, asker_done, a, 0.3));
	for (int i = 0; i < ndups; i++)
		close(dups[i]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	/* The backoff timer (1 s) restarts accepting. */
	assert_true(run_until(f->loop, asker_done, a, 3.0));
	assert_true(strncmp(a->buf, "ok\n", 3) == 0);
	asker_free(a);
}

/* ---- metrics ---- */

/* Label and metric names per the exposition format. */
static const char *
prom_name(const char *p, int metric)
{
	if (!(isalpha((unsigned char)*p) || *p == '_' || (metric && *p == ':')))
		return NULL;
	for (p++; isalnum((unsigned char)*p) || *p == '_' || (metric && *p == ':'); p++)
		;
	return p;
}

/*
 * Check text against the 0.0.4 text format as Prometheus reads it: HELP and
 * TYPE lines, each family TYPE'd once and before its samples, all samples of
 * a family together, sample lines `name{label="value",...} value`. A
 * histogram's samples are NAME_bucket (with le=, cumulative, ending with
 * le="+Inf"), NAME_count (equal to the +Inf bucket) and NAME_sum. Returns
 * the number of samples.
 */
static size_t
prom_check(const char *text)
{
	static char typed[128][96];
	size_t ntyped = 0, nsamples = 0;
	char family[96] = "";
	const char *line = text;
	int hist = 0;             /* family is a histogram */
	double bucket = -1;       /* its last bucket's value */
	int inf = 0;              /* its +Inf bucket was seen */

	assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
	while (*line != '\0') {
		const char *eol = strchr(line, '\n');
		char name[96];
		const char *p, *e;
		char *end;

		assert_non_null(eol);
		assert_true(eol > line);   /* no blank lines */
		if (strncmp(line, "# HELP ", 7) == 0) {
			e = prom_name(line + 7, 1);
			assert_non_null(e);
			assert_true(*e == ' ');
		} else if (strncmp(line, "# TYPE ", 7) == 0) {
			e = prom_name(line + 7, 1);
			assert_non_null(e);
			assert_true((size_t)(e - (line + 7)) < sizeof(family));
			memcpy(family, line + 7, (size_t)(e - (line + 7)));
			family[e - (line + 7)] = '\0';
			assert_true(strncmp(e, " counter\n", 9) == 0 ||
			    strncmp(e, " gauge\n", 7) == 0 ||
			    strncmp(e, " histogram\n", 11) == 0);
			hist = strncmp(e, " histogram\n", 11) == 0;
			bucket = -1;
			inf = 0;
			if (strncmp(e, " counter\n", 9) == 0)
				assert_non_null(strstr(family, "_total"));
			assert_true(strncmp(family, "tandem_", 7) == 0);
			for (size_t i = 0; i < ntyped; i++)
				assert_string_not_equal(typed[i], family);
			assert_true(ntyped < 128);
			strcpy(typed[ntyped++], family);
		} else {
			const char *suffix = "";
			double x;

			assert_true(line[0] != '#');
			e = prom_name(line, 1);
			assert_non_null(e);
			memcpy(name, line, (size_t)(e - line));
			name[e - line] = '\0';
			if (hist) {
				size_t fl = strlen(family);

				assert_true(strncmp(name, family, fl) == 0);
				suffix = name + fl;
				assert_true(strcmp(suffix, "_bucket") == 0 ||
				    strcmp(suffix, "_count") == 0 ||
				    strcmp(suffix, "_sum") == 0);
				name[fl] = '\0';
				if (strcmp(suffix, "_bucket") == 0) {
					assert_true(strncmp(e, "{le=\"", 5) == 0);
					assert_false(inf);   /* +Inf comes last */
					inf = strncmp(e, "{le=\"+Inf\"}", 11) == 0;
				}
			}
			/* TYPE came first, and no other family came in between. */
			assert_string_equal(name, family);
			p = e;
			if (*p == '{') {
				p++;
				while (*p != '}') {
					p = prom_name(p, 0);
					assert_non_null(p);
					assert_true(p[0] == '=' && p[1] == '"');
					for (p += 2; *p != '"'; p++) {
						assert_true(*p != '\n' && *p != '\0');
						if (*p == '\\') {
							p++;
							assert_true(*p == '\\' || *p == '"' || *p == 'n');
						}
					}
					p++;
					assert_true(*p == ',' || *p == '}');
					if (*p == ',')
						p++;
				}
				p++;
			}
			assert_true(*p == ' ');
			p++;
			errno = 0;
			x = strtod(p, &end);
			assert_int_equal(errno, 0);
			assert_true(end > p && end == eol);
			if (strcmp(suffix, "_bucket") == 0) {
				assert_true(x >= bucket);   /* cumulative */
				bucket = x;
			} else if (strcmp(suffix, "_count") == 0) {
				assert_true(inf);
				assert_true(x == bucket);
			}
			nsamples++;
		}
		line = eol + 1;
	}
	return nsamples;
}

/* The value of the sample whose name and labels are exactly series. */
static double
prom_value(const char *text, const char *series)
{
	const char *p = text;
	size_t n = strlen(series);

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	fail_msg("no sample %s", series);
	return -1;
}

static int
has_series(const char *text, const char *series)
{
	const char *p = text;
	size_t n = strlen(series);

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return 1;
		p += n;
	}
	return 0;
}

static struct metrics *
metrics_on_unix(struct fx *f)
{
	struct sockaddr_un sun;
	struct metrics *m;

	sockaddr_unix(&sun, f->mpath);
	m = metrics_new(f->loop, (struct sockaddr *)&sun, sizeof(sun), &f->view);
	assert_non_null(m);
	return m;
}

#define WEB_BE1 "{backend=\"web\",server=\"be1\"}"
#define WEB_BE2 "{backend=\"web\",server=\"be2\"}"
#define FE_WWW "{frontend=\"www\",backend=\"web\"}"

static void
test_metrics(void **state)
{
	struct fx *f = *state;
	struct metrics *m = metrics_on_unix(f);
	const char *a, *body;
	size_t nsamples;

	atomic_store(&f->pools[0]->servers[1].state, BAL_DRAIN);
	a = ask(f->loop, f->mpath, "GET /metrics HTTP/1.1\r\nHost: lb1\r\n"
	    "Accept: text/plain\r\n\r\n");
	assert_true(strncmp(a, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_non_null(strstr(a, "\r\nContent-Type: text/plain; version=0.0.4; "
	    "charset=utf-8\r\n"));
	body = strstr(a, "\r\n\r\n");
	assert_non_null(body);
	body += 4;
	{
		const char *cl = strstr(a, "Content-Length: ");

		assert_non_null(cl);
		assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body));
	}
	nsamples = prom_check(body);
	assert_true(nsamples > 50);

	assert_true(prom_value(body, "tandem_build_info{version=\"" TANDEM_TEST_VERSION
	    "\",node=\"lb1\"}") == 1);
	assert_true(prom_value(body, "tandem_uptime_seconds") >= 3725);
	assert_true(prom_value(body, "tandem_workers") == 2);
	assert_true(prom_value(body, "tandem_frontend_connections_active" FE_WWW) == 3);
	assert_true(prom_value(body, "tandem_frontend_connections_total" FE_WWW) == 42);
	assert_true(prom_value(body, "tandem_frontend_bytes_received_total" FE_WWW) == 1000);
	assert_true(prom_value(body, "tandem_frontend_bytes_sent_total" FE_WWW) == 2000);
	assert_true(prom_value(body, "tandem_frontend_connect_errors_total" FE_WWW) == 4);
	assert_true(prom_value(body, "tandem_frontend_retries_total" FE_WWW) == 2);
	assert_true(prom_value(body, "tandem_frontend_no_server_total" FE_WWW) == 1);
	assert_true(prom_value(body, "tandem_frontend_timeouts_total" FE_WWW) == 5);
	assert_true(prom_value(body, "tandem_frontend_resets_total" FE_WWW) == 6);

	assert_true(prom_value(body, "tandem_server_connections_active" WEB_BE1) == 2);
	assert_true(prom_value(body, "tandem_server_connections_total" WEB_BE1) == 17);
	assert_true(prom_value(body, "tandem_server_bytes_received_total" WEB_BE1) == 500);
	assert_true(prom_value(body, "tandem_server_bytes_sent_total" WEB_BE1) == 250);
	assert_true(prom_value(body, "tandem_server_connect_errors_total" WEB_BE1) == 1);
	assert_true(prom_value(body, "tandem_server_weight" WEB_BE1) == 3);
	assert_true(prom_value(body, "tandem_server_effective_weight" WEB_BE1) == 3);
	assert_true(prom_value(body, "tandem_server_connect_time_ewma_seconds" WEB_BE1) == 0.0015);
	/* No sample yet: no series, rather than a misleading 0. */
	assert_false(has_series(body, "tandem_server_connect_time_ewma_seconds" WEB_BE2));
	assert_true(prom_value(body, "tandem_server_state{backend=\"web\",server=\"be2\","
	    "state=\"drain\"}") == 1);
	assert_true(prom_value(body, "tandem_server_state{backend=\"web\",server=\"be2\","
	    "state=\"up\"}") == 0);
	assert_true(prom_value(body, "tandem_server_state{backend=\"web\",server=\"be3\","
	    "state=\"maint\"}") == 1);
	assert_true(prom_value(body, "tandem_server_state{backend=\"api\",server=\"be1\","
	    "state=\"up\"}") == 1);
	/* No health module in this view: no health series. */
	assert_false(has_series(body, "tandem_server_healthy" WEB_BE1));

	/* With one: verdict and check counters appear for its backend only. */
	f->hcs[0] = hc_new(f->loop, f->pools[0], &f->becfg[0]);
	assert_non_null(f->hcs[0]);
	f->view.hcs = f->hcs;
	metrics_set_view(m, &f->view);
	a = ask(f->loop, f->mpath, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
	body = strstr(a, "\r\n\r\n") + 4;
	prom_check(body);
	assert_true(prom_value(body, "tandem_server_healthy" WEB_BE1) == 1);
	assert_true(prom_value(body, "tandem_server_slow_start" WEB_BE1) == 0);
	assert_true(prom_value(body, "tandem_server_checks_total{backend=\"web\","
	    "server=\"be1\",result=\"ok\"}") == 0);
	assert_true(prom_value(body, "tandem_server_checks_total{backend=\"web\","
	    "server=\"be1\",result=\"failed\"}") == 0);
	assert_false(has_series(body, "tandem_server_check_success" WEB_BE1));
	assert_false(has_series(body, "tandem_server_healthy{backend=\"api\",server=\"be1\"}"));

	/* HTTP edges. */
	a = ask(f->loop, f->mpath, "HEAD /metrics HTTP/1.1\r\n\r\n");
	assert_true(strncmp(a, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_string_equal(strstr(a, "\r\n\r\n"), "\r\n\r\n");
	a = ask(f->loop, f->mpath, "GET / HTTP/1.1\r\n\r\n");
	assert_true(strncmp(a, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
	a = ask(f->loop, f->mpath, "GET /metricsx HTTP/1.1\n\n");
	assert_true(strncmp(a, "HTTP/1.1 404 ", 13) == 0);
	a = ask(f->loop, f->mpath, "POST /metrics HTTP/1.1\r\n\r\n");
	assert_true(strncmp(a, "HTTP/1.1 405 ", 13) == 0);
	assert_non_null(strstr(a, "\r\nAllow: GET, HEAD\r\n"));
	a = ask(f->loop, f->mpath, "GET /metrics HTTP/2.0\r\n\r\n");
	assert_true(strncmp(a, "HTTP/1.1 505 ", 13) == 0);
	a = ask(f->loop, f->mpath, "garbage\r\n\r\n");
	assert_true(strncmp(a, "HTTP/1.1 400 ", 13) == 0);
	{
		/* Headers that never end: answered at the size bound. */
		static char big[METRICS_MAX_REQUEST + 100];

		memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
		memset(big + 26, 'a', sizeof(big) - 27);
		big[sizeof(big) - 1] = '\0';
		a = ask(f->loop, f->mpath, big);
		assert_true(strncmp(a, "HTTP/1.1 431 ", 13) == 0);
	}
	metrics_free(m);
}

static void
test_metrics_escaping_and_errors(void **state)
{
	struct fx *f = *state;
	struct bal_server t[1];
	struct bal_pool *odd;
	struct bal_pool *pools[1];
	struct ctl_view v = f->view;
	struct ctl_buf out = { 0 };
	struct sockaddr_un sun;
	struct sockaddr sa = { .sa_family = AF_APPLETALK };

	memset(t, 0, sizeof(t));
	snprintf(t[0].name, sizeof(t[0].name), "a\"b\\c\nd");
	set_addr(&t[0].addr, &t[0].addrlen, "198.18.0.40", 80);
	t[0].weight = 1;
	odd = bal_pool_new("we\"b", BAL_ROUNDROBIN, t, 1);
	assert_non_null(odd);
	pools[0] = odd;
	v.pools = pools;
	v.npools = 1;
	v.nfes = 0;
	v.hcs = NULL;
	assert_int_equal(metrics_render(&v, ev_now(f->loop), &out), 0);
	prom_check(out.data);
	assert_true(prom_value(out.data, "tandem_server_weight{backend=\"we\\\"b\","
	    "server=\"a\\\"b\\\\c\\nd\"}") == 1);
	ctl_buf_free(&out);
	bal_pool_free(odd);

	/* metrics_new failures: bind (no such directory), socket (family). */
	sockaddr_unix(&sun, "/nonexistent-tandem-dir/metrics.sock");
	errno = 0;
	assert_null(metrics_new(f->loop, (struct sockaddr *)&sun, sizeof(sun), &f->view));
	assert_int_equal(errno, ENOENT);
	errno = 0;
	assert_null(metrics_new(f->loop, &sa, sizeof(sa), &f->view));
	assert_true(errno == EAFNOSUPPORT || errno == EINVAL);
}

/* ---- session sync: tandemctl sync, switchover, metrics ---- */

#define NOW 1700000000.0   /* a fixed ev_now(), so "ago" is exact */

/* A pair in sync with two takeovers behind it: every field differs. */
static void
fake_sess_up(void)
{
	struct sess_info *si = &fake.info;
	struct sync_info *sy = &si->sync;
	struct sess_stats *st = &si->stats;

	si->enabled = true;
	sy->state = SYNC_STATE_UP;
	sy->peer_known = true;
	snprintf(sy->peer.name, sizeof(sy->peer.name), "lb2");
	snprintf(sy->peer.addr, sizeof(sy->peer.addr), "198.18.1.2:7400");
	sy->peer.outgoing = true;
	sy->peer.role = SYNC_ROLE_ACTIVE;
	sy->peer.boot_epoch = 7;
	sy->peer.digest_match = true;
	sy->digest_match = true;
	sy->up_for = 12.5;
	sy->tx_epoch = 117440513;
	sy->tx_seq = 40;
	sy->tx_acked = 38;
	sy->unacked_frames = 2;
	sy->queued_bytes = 1536;
	sy->lag_ms = 12;
	sy->rx_epoch = 134217729;
	sy->rx_seq = 55;
	sy->bulk_resyncs = 3;
	si->local_entries = 4;
	si->shadow.entries = 9;
	si->shadow.max_entries = 100000;
	si->shadow.evicted = 6;
	si->sync_ready = true;
	st->takeovers = 2;
	st->restored = 15;
	st->restore_failed = 1;
	st->stale_reset = 8;
	st->stale_gone = 11;
	st->stale_silent = 13;
	st->ring_overflows = 5;
	st->handovers_sent = 14;
	st->handovers_received = 16;
	st->frozen = 17;
	st->freeze_failed = 18;
	st->mismatch_refused = 19;
	st->last_restored = 9;
	st->last_failed = 10;
	st->last_duration_us = 23456;
	st->duration_sum_us = 23456 + 7000;
	st->last_takeover_wall = NOW - 30;
	/* per bucket, not cumulative: one in (5, 10] ms, one over 500 ms */
	st->duration_le[2] = 1;
	st->duration_le[7] = 1;
	fake.stats.frames_in = 55;
	fake.stats.frames_out = 40;
	fake.stats.events_in = 300;
	fake.stats.events_out = 200;
	fake.stats.drops[SYNC_DROP_BAD_MAC] = 3;
	fake.stats.drops[SYNC_DROP_REPLAY] = 21;
}

/* ctl_exec(req) at NOW into a static copy. */
static const char *
exec_at(const struct ctl_view *v, const char *req)
{
	static char answer[8192];
	struct ctl_buf out = { 0 };

	assert_int_equal(ctl_exec(v, NOW, req, strlen(req), &out), 0);
	assert_true(out.len < sizeof(answer));
	memcpy(answer, out.data, out.len + 1);
	ctl_buf_free(&out);
	return answer;
}

static void
test_sync_off(void **state)
{
	struct fx *f = *state;
	struct ctl_buf out = { 0 };
	const char *a;

	/* No sync block: one line, and switchover answers as it always did. */
	assert_string_equal(ask(f->loop, f->path, "sync\n"), "ok\nsync: off\n");
	assert_string_equal(ask(f->loop, f->path, "sync now\n"),
	    "error: usage: sync\n");
	assert_string_equal(ask(f->loop, f->path, "switchover\n"),
	    "error: no vrrp-group configured\n");
	assert_string_equal(ask(f->loop, f->path, "switchover front\n"),
	    "error: no vrrp-group configured\n");
	a = ask(f->loop, f->path, "help\n");
	assert_non_null(strstr(a, "\nsync "));
	assert_int_equal(metrics_render(&f->view, NOW, &out), 0);
	assert_null(strstr(out.data, "tandem_sync_"));
	assert_null(strstr(out.data, "tandem_takeover"));
	ctl_buf_free(&out);

	/* A session object that says sync is not enabled: the same. */
	fake.info.enabled = false;
	f->view.sess = FAKE_SESS;
	assert_string_equal(exec_at(&f->view, "sync"), "ok\nsync: off\n");
	assert_int_equal(metrics_render(&f->view, NOW, &out), 0);
	assert_null(strstr(out.data, "tandem_sync_"));
	ctl_buf_free(&out);

	/* The usual checks come before session sync is asked anything. */
	fake_sess_up();
	fake.can_handover = true;
	assert_string_equal(exec_at(&f->view, "switchover"),
	    "error: no vrrp-group configured\n");
	assert_int_equal(fake.switchover_calls, 0);
}

/* The "drops:" line holds every reason once, as name=count, in list order. */
static void
assert_drops_line(const char *answer, const struct sync_stats *ss)
{
	char line[1024], want[64];
	char *w[SYNC_DROP_COUNT + 2];

	assert_true(find_line(answer, "drops:", line, sizeof(line)));
	assert_int_equal(split(line, w, SYNC_DROP_COUNT + 2), SYNC_DROP_COUNT + 1);
	for (int d = 0; d < SYNC_DROP_COUNT; d++) {
		snprintf(want, sizeof(want), "%s=%" PRIu64,
		    sync_drop_name((enum sync_drop)d), ss->drops[d]);
		assert_string_equal(w[d + 1], want);
	}
}

static void
test_sync_show(void **state)
{
	struct fx *f = *state;
	struct sync_info *sy = &fake.info.sync;
	char line[256];
	const char *a, *drops;

	fake_sess_up();
	f->view.sess = FAKE_SESS;
	a = exec_at(&f->view, "sync");
	drops = strstr(a, "drops:");
	assert_non_null(drops);
	assert_int_equal(strncmp(a, "ok\n"
	    "sync: up\n"
	    "peer: lb2 198.18.1.2:7400 outgoing role active boot 7\n"
	    "config-digest: match\n"
	    "our-stream: epoch 117440513 sealed 40 acked 38 behind 2 frames "
	    "1536 bytes lag 12 ms\n"
	    "peer-stream: epoch 134217729 applied 55 bulk complete\n"
	    "bulk-resyncs: 3\n"
	    "shadow: 9 entries max 100000 evicted 6\n"
	    "local: 4 connections\n"
	    "sync-ready: yes\n"
	    "handover-in-progress: no\n"
	    "takeovers: 2 restored 15 failed 1 stale-reset 8 stale-gone 11 "
	    "stale-silent 13\n"
	    "last-takeover: restored 9 failed 10 duration 23.456 ms ago 30 s\n"
	    "handovers: sent 14 received 16 frozen 17 freeze-failed 18\n",
	    (size_t)(drops - a)), 0);
	assert_drops_line(a, &fake.stats);
	assert_non_null(strstr(drops, " bad_mac=3 "));
	/* ... and is the last line. */
	assert_ptr_equal(strchr(drops, '\n') + 1, drops + strlen(drops));

	/* The same over the socket. */
	ctl_set_view(f->ctl, &f->view);
	a = ask(f->loop, f->path, "sync\n");
	assert_true(strncmp(a, "ok\nsync: up\npeer: lb2 ", 22) == 0);

	/* Digests differ: said loudly, with what it means. */
	sy->digest_match = false;
	sy->peer.digest_match = false;
	a = exec_at(&f->view, "sync");
	assert_non_null(strstr(a, "\nconfig-digest: MISMATCH\nwarning: the peer's "
	    "frontends/backends differ: its sessions will not be restored\n"
	    "our-stream: "));

	/* Never met the peer; no takeover yet; the peer's snapshot arriving. */
	memset(&sy->peer, 0, sizeof(sy->peer));
	sy->peer_known = false;
	sy->state = SYNC_STATE_CONNECTING;
	sy->bulk_receiving = true;
	fake.info.sync_ready = false;
	fake.info.handover_active = true;
	fake.info.stats.last_takeover_wall = 0;
	fake.no_stats = true;
	a = exec_at(&f->view, "sync");
	assert_true(find_line(a, "sync:", line, sizeof(line)));
	assert_string_equal(line, "sync: connecting");
	assert_true(find_line(a, "peer:", line, sizeof(line)));
	assert_string_equal(line, "peer: none");
	assert_true(find_line(a, "config-digest:", line, sizeof(line)));
	assert_string_equal(line, "config-digest: unknown");
	assert_null(strstr(a, "warning:"));
	assert_true(find_line(a, "peer-stream:", line, sizeof(line)));
	assert_string_equal(line, "peer-stream: epoch 134217729 applied 55 bulk receiving");
	assert_true(find_line(a, "sync-ready:", line, sizeof(line)));
	assert_string_equal(line, "sync-ready: no");
	assert_true(find_line(a, "handover-in-progress:", line, sizeof(line)));
	assert_string_equal(line, "handover-in-progress: yes");
	assert_true(find_line(a, "last-takeover:", line, sizeof(line)));
	assert_string_equal(line, "last-takeover: none");
	assert_true(find_line(a, "drops:", line, sizeof(line)));
	assert_string_equal(line, "drops: unknown");

	/* An incoming connection from a standby; the wall clock stepped back. */
	fake_sess_up();
	fake.no_stats = false;
	sy->state = SYNC_STATE_DOWN;
	sy->peer.outgoing = false;
	sy->peer.role = SYNC_ROLE_STANDBY;
	fake.info.stats.last_takeover_wall = NOW + 5;
	fake.stats.drops[SYNC_DROP_GARBAGE] = 1;
	fake.stats.drops[SYNC_DROP_OUT_OF_ORDER] = 2;
	a = exec_at(&f->view, "sync");
	assert_true(find_line(a, "sync:", line, sizeof(line)));
	assert_string_equal(line, "sync: down");
	assert_true(find_line(a, "peer:", line, sizeof(line)));
	assert_string_equal(line, "peer: lb2 198.18.1.2:7400 incoming role standby boot 7");
	assert_true(find_line(a, "last-takeover:", line, sizeof(line)));
	assert_string_equal(line, "last-takeover: restored 9 failed 10 duration "
	    "23.456 ms ago 0 s");
	assert_drops_line(a, &fake.stats);
}

static void
test_metrics_sync(void **state)
{
	struct fx *f = *state;
	static const char *const le[] = {
		"1", "5", "10", "50", "100", "200", "500", "+Inf",
	};
	static const double cum[] = { 0, 0, 1, 1, 1, 1, 1, 2 };
	struct ctl_buf out = { 0 };
	char series[128];
	const char *body;

	fake_sess_up();
	f->view.sess = FAKE_SESS;
	assert_int_equal(metrics_render(&f->view, NOW, &out), 0);
	body = out.data;
	prom_check(body);
	assert_true(prom_value(body, "tandem_sync_up") == 1);
	assert_true(prom_value(body, "tandem_sync_config_match") == 1);
	assert_true(prom_value(body, "tandem_sync_lag_frames") == 2);
	assert_true(prom_value(body, "tandem_sync_lag_ms") == 12);
	assert_true(prom_value(body, "tandem_sync_queued_bytes") == 1536);
	assert_true(prom_value(body, "tandem_sync_shadow_entries") == 9);
	assert_true(prom_value(body, "tandem_sync_shadow_max_entries") == 100000);
	assert_true(prom_value(body, "tandem_sync_shadow_evicted_total") == 6);
	assert_true(prom_value(body, "tandem_sync_local_entries") == 4);
	assert_true(prom_value(body, "tandem_sync_ready") == 1);
	assert_true(prom_value(body, "tandem_sync_handover_active") == 0);
	assert_true(prom_value(body, "tandem_sync_bulk_resyncs_total") == 3);
	assert_true(prom_value(body, "tandem_sync_frames_total{dir=\"in\"}") == 55);
	assert_true(prom_value(body, "tandem_sync_frames_total{dir=\"out\"}") == 40);
	assert_true(prom_value(body, "tandem_sync_events_total{dir=\"in\"}") == 300);
	assert_true(prom_value(body, "tandem_sync_events_total{dir=\"out\"}") == 200);
	for (int d = 0; d < SYNC_DROP_COUNT; d++) {
		snprintf(series, sizeof(series), "tandem_sync_drops_total{reason=\"%s\"}",
		    sync_drop_name((enum sync_drop)d));
		assert_true(prom_value(body, series) == (double)fake.stats.drops[d]);
	}
	assert_true(prom_value(body, "tandem_sync_drops_total{reason=\"bad_mac\"}") == 3);
	assert_true(prom_value(body, "tandem_takeovers_total") == 2);
	assert_true(prom_value(body, "tandem_takeover_connections_total"
	    "{result=\"restored\"}") == 15);
	assert_true(prom_value(body, "tandem_takeover_connections_total"
	    "{result=\"failed\"}") == 1);
	assert_true(prom_value(body, "tandem_takeover_connections_total"
	    "{result=\"stale_reset\"}") == 8);
	assert_true(prom_value(body, "tandem_takeover_connections_total"
	    "{result=\"stale_gone\"}") == 11);
	assert_true(prom_value(body, "tandem_takeover_connections_total"
	    "{result=\"stale_silent\"}") == 13);
	assert_true(prom_value(body, "tandem_takeover_mismatch_refused_total") == 19);
	assert_true(prom_value(body, "tandem_takeover_last_restored") == 9);
	assert_true(prom_value(body, "tandem_takeover_last_failed") == 10);
	assert_true(prom_value(body, "tandem_takeover_last_timestamp_seconds") == NOW - 30);
	for (size_t b = 0; b < sizeof(le) / sizeof(le[0]); b++) {
		snprintf(series, sizeof(series),
		    "tandem_takeover_duration_ms_bucket{le=\"%s\"}", le[b]);
		assert_true(prom_value(body, series) == cum[b]);
	}
	assert_true(prom_value(body, "tandem_takeover_duration_ms_count") == 2);
	assert_true(prom_value(body, "tandem_takeover_duration_ms_sum") == 30.456);
	assert_true(prom_value(body, "tandem_sync_handovers_total{dir=\"sent\"}") == 14);
	assert_true(prom_value(body, "tandem_sync_handovers_total{dir=\"received\"}") == 16);
	assert_true(prom_value(body, "tandem_sync_frozen_total") == 17);
	assert_true(prom_value(body, "tandem_sync_freeze_failed_total") == 18);
	assert_true(prom_value(body, "tandem_sync_ring_overflows_total") == 5);
	ctl_buf_free(&out);

	/*
	 * Down, never met the peer, no takeover, no channel counters: the
	 * series without a value are absent, not 0.
	 */
	memset(&fake, 0, sizeof(fake));
	fake.info.enabled = true;
	fake.info.sync.state = SYNC_STATE_DOWN;
	fake.no_stats = true;
	assert_int_equal(metrics_render(&f->view, NOW, &out), 0);
	body = out.data;
	prom_check(body);
	assert_true(prom_value(body, "tandem_sync_up") == 0);
	assert_false(has_series(body, "tandem_sync_config_match"));
	assert_false(has_series(body, "tandem_takeover_last_restored"));
	assert_false(has_series(body, "tandem_takeover_last_failed"));
	assert_false(has_series(body, "tandem_takeover_last_timestamp_seconds"));
	assert_false(has_series(body, "tandem_sync_frames_total{dir=\"in\"}"));
	assert_true(prom_value(body, "tandem_takeover_duration_ms_bucket{le=\"+Inf\"}") == 0);
	assert_true(prom_value(body, "tandem_takeover_duration_ms_count") == 0);
	assert_true(prom_value(body, "tandem_takeovers_total") == 0);
	ctl_buf_free(&out);

	/* Met once, digests differ. */
	fake.info.sync.peer_known = true;
	assert_int_equal(metrics_render(&f->view, NOW, &out), 0);
	prom_check(out.data);
	assert_true(prom_value(out.data, "tandem_sync_config_match") == 0);
	ctl_buf_free(&out);
}

/*
 * ---- in our own network namespace: health checks that really run (and
 * fail), metrics over TCP ----
 */

struct hc_wait {
	struct hc *hc;
	size_t n;
};

static int
hc_all_checked(void *arg)
{
	struct hc_wait *w = arg;
	struct hc_server_info hi;

	for (size_t i = 0; i < w->n; i++)
		if (hc_server_info(w->hc, i, &hi) != 0 || hi.checks_failed < 1)
			return 0;
	return 1;
}

/*
 * In our own namespace: loopback up, plus 198.18.0.2/32 on it for the
 * metrics listener (a /32, so the servers' 198.18.0.x stay unreachable).
 */
static void
netns_lo_setup(void)
{
	struct ifreq ifr;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	assert_int_equal(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(fd, SIOCSIFFLAGS, &ifr), 0);
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo:1");
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, "198.18.0.2", &sin->sin_addr), 1);
	assert_int_equal(ioctl(fd, SIOCSIFADDR, &ifr), 0);
	assert_int_equal(inet_pton(AF_INET, "255.255.255.255", &sin->sin_addr), 1);
	assert_int_equal(ioctl(fd, SIOCSIFNETMASK, &ifr), 0);
	close(fd);
}

static int
tcp_connect(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	/* Blocking: the kernel completes a local handshake without our accept. */
	assert_int_equal(connect(fd, (const struct sockaddr *)ss, len), 0);
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	return fd;
}

static void
test_in_netns(void **state)
{
	struct fx *f = *state;
	struct metrics *m;
	struct hc_wait hw;
	const char *a, *body;
	char line[512];
	char *w[16];
	size_t nw;
	struct sockaddr_storage tcp;
	socklen_t tcplen;

	/*
	 * A fresh network namespace has only a down loopback: connects to the
	 * 198.18.0.0/15 servers fail at once with ENETUNREACH, and nothing is
	 * ever sent anywhere. Only this test process enters it.
	 */
	if (unshare(CLONE_NEWNET) == -1) {
		print_message("skipped: unshare(CLONE_NEWNET): %s\n", strerror(errno));
		skip();
	}
	f->becfg[0].hc.type = CFG_HC_TCP;
	f->becfg[0].hc.interval_ms = 200;
	f->becfg[0].hc.timeout_ms = 100;
	f->becfg[0].hc.rise = 2;
	f->becfg[0].hc.fall = 3;
	f->becfg[0].hc.jitter_pct = 10;
	f->hcs[0] = hc_new(f->loop, f->pools[0], &f->becfg[0]);
	assert_non_null(f->hcs[0]);
	f->view.hcs = f->hcs;
	ctl_set_view(f->ctl, &f->view);
	hw.hc = f->hcs[0];
	hw.n = NWEB;
	assert_true(run_until(f->loop, hc_all_checked, &hw, 3.0));

	a = ask(f->loop, f->path, "servers\n");
	assert_true(find_line(a, "be1 ", line, sizeof(line)));
	nw = split(line, w, 16);
	assert_true(nw >= 10);
	assert_string_equal(w[6], "failed:");
	/* Still healthy after one failure: the line says how far to "down". */
	assert_non_null(strstr(a, "(fall 1/3)"));

	m = metrics_on_unix(f);
	a = ask(f->loop, f->mpath, "GET /metrics HTTP/1.1\r\n\r\n");
	body = strstr(a, "\r\n\r\n") + 4;
	prom_check(body);
	assert_true(prom_value(body, "tandem_server_check_success" WEB_BE1) == 0);
	assert_true(prom_value(body, "tandem_server_check_duration_seconds" WEB_BE1) >= 0);
	assert_true(prom_value(body, "tandem_server_checks_total{backend=\"web\","
	    "server=\"be1\",result=\"failed\"}") >= 1);
	metrics_free(m);

	/* The metrics listener over TCP, as Prometheus reaches it. */
	netns_lo_setup();
	set_addr(&tcp, &tcplen, "198.18.0.2", 9100);
	m = metrics_new(f->loop, (struct sockaddr *)&tcp, tcplen, &f->view);
	assert_non_null(m);
	a = ask_fd(f->loop, tcp_connect(&tcp, tcplen),
	    "GET /metrics HTTP/1.1\r\nHost: 198.18.0.2:9100\r\n\r\n");
	assert_true(strncmp(a, "HTTP/1.1 200 OK\r\n", 17) == 0);
	body = strstr(a, "\r\n\r\n") + 4;
	prom_check(body);
	assert_true(prom_value(body, "tandem_frontend_connections_total" FE_WWW) == 42);
	/* Restarting on the same port must work at once (SO_REUSEADDR). */
	metrics_free(m);
	m = metrics_new(f->loop, (struct sockaddr *)&tcp, tcplen, &f->view);
	assert_non_null(m);
	metrics_free(m);
}

/* ---- tandemctl, the real executable ---- */

struct child {
	pid_t pid;
	int status;
	int exited;
	ev_child cw;
	struct {
		int fd;
		ev_io w;
		char buf[16384];
		size_t len;
		int eof;
	} out[2];
};

static void
child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct child *c = w->data;

	(void)revents;
	c->status = w->rstatus;
	c->exited = 1;
	ev_child_stop(loop, w);
}

static void
child_pipe_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct child *c = w->data;
	int k = w == &c->out[0].w ? 0 : 1;
	ssize_t n;

	(void)revents;
	n = read(w->fd, c->out[k].buf + c->out[k].len,
	    sizeof(c->out[k].buf) - 1 - c->out[k].len);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		c->out[k].len += (size_t)n;
		c->out[k].buf[c->out[k].len] = '\0';
		return;
	}
	c->out[k].eof = 1;
	ev_io_stop(loop, w);
}

static int
child_done(void *arg)
{
	struct child *c = arg;

	return c->exited && c->out[0].eof && c->out[1].eof;
}

/*
 * Run tandemctl with args (NULL-terminated) and TANDEM_CTL=env_path (unset
 * if NULL) while the loop serves; returns its exit code.
 */
static int
tandemctl(struct fx *f, struct child *c, const char *env_path, ...)
{
	const char *exe = getenv("TANDEMCTL");
	char *argv[8];
	int pipes[2][2];
	size_t argc = 0;
	va_list ap;

	memset(c, 0, sizeof(*c));
	argv[argc++] = (char *)"tandemctl";
	va_start(ap, env_path);
	for (char *s; (s = va_arg(ap, char *)) != NULL && argc < 7;)
		argv[argc++] = s;
	va_end(ap);
	argv[argc] = NULL;
	for (int k = 0; k < 2; k++)
		assert_int_equal(pipe2(pipes[k], O_CLOEXEC), 0);
	c->pid = fork();
	assert_true(c->pid >= 0);
	if (c->pid == 0) {
		dup2(pipes[0][1], STDOUT_FILENO);
		dup2(pipes[1][1], STDERR_FILENO);
		if (env_path != NULL)
			setenv("TANDEM_CTL", env_path, 1);
		else
			unsetenv("TANDEM_CTL");
		execv(exe, argv);
		_exit(127);
	}
	for (int k = 0; k < 2; k++) {
		close(pipes[k][1]);
		c->out[k].fd = pipes[k][0];
		fcntl(c->out[k].fd, F_SETFL, O_NONBLOCK);
		ev_io_init(&c->out[k].w, child_pipe_cb, c->out[k].fd, EV_READ);
		c->out[k].w.data = c;
		ev_io_start(f->loop, &c->out[k].w);
	}
	ev_child_init(&c->cw, child_cb, c->pid, 0);
	c->cw.data = c;
	ev_child_start(f->loop, &c->cw);
	assert_true(run_until(f->loop, child_done, c, 15.0));
	for (int k = 0; k < 2; k++)
		close(c->out[k].fd);
	/* Its connection's linger ends when it exits; let the server reap it. */
	ev_run(f->loop, EVRUN_NOWAIT);
	assert_true(WIFEXITED(c->status));
	return WEXITSTATUS(c->status);
}

static void
test_tandemctl(void **state)
{
	struct fx *f = *state;
	static struct child c;
	char missing[192];

	if (getenv("TANDEMCTL") == NULL) {
		print_message("skipped: set TANDEMCTL to the tandemctl executable\n");
		skip();
	}
	assert_int_equal(tandemctl(f, &c, NULL, "-s", f->path, "status", NULL), 0);
	assert_true(strncmp(c.out[0].buf, "node     lb1\n", 13) == 0);
	assert_string_equal(c.out[1].buf, "");

	/* $TANDEM_CTL names the socket when -s does not. */
	assert_int_equal(tandemctl(f, &c, f->path, "drain", "web/be2", NULL), 0);
	assert_string_equal(c.out[0].buf, "web/be2: up -> drain\n");
	assert_int_equal(srv_state(f, 0, 1), BAL_DRAIN);

	assert_int_equal(tandemctl(f, &c, f->path, "ready", "be9", NULL), 1);
	assert_string_equal(c.out[0].buf, "");
	assert_string_equal(c.out[1].buf, "error: no server named \"be9\"; servers: "
	    "web/be1, web/be2, web/be3, api/be1, api/api1\n");

	snprintf(missing, sizeof(missing), "%s/missing.sock", f->dir);
	assert_int_equal(tandemctl(f, &c, NULL, "-s", missing, "servers", NULL), 2);
	{
		char expect[320];

		snprintf(expect, sizeof(expect), "tandemctl: cannot reach tandemd at %s: "
		    "No such file or directory — is it running?\n", missing);
		assert_string_equal(c.out[1].buf, expect);
	}

	/* Usage errors never reach the daemon. */
	assert_int_equal(tandemctl(f, &c, f->path, "drain", NULL), 2);
	assert_non_null(strstr(c.out[1].buf, "drain takes one argument"));
	assert_int_equal(tandemctl(f, &c, f->path, "frob", NULL), 2);
	assert_non_null(strstr(c.out[1].buf, "usage: tandemctl"));
	assert_int_equal(tandemctl(f, &c, f->path, NULL), 2);
	assert_int_equal(tandemctl(f, &c, f->path, "-h", NULL), 0);
	assert_non_null(strstr(c.out[0].buf, "usage: tandemctl"));
	assert_int_equal(tandemctl(f, &c, f->path, "sync", NULL), 0);
	assert_string_equal(c.out[0].buf, "sync: off\n");
	assert_int_equal(tandemctl(f, &c, f->path, "sync", "x", NULL), 2);
	assert_non_null(strstr(c.out[1].buf, "sync takes no argument"));
	assert_int_equal(tandemctl(f, &c, f->path, "-V", NULL), 0);
	assert_string_equal(c.out[0].buf, "tandemctl " TANDEM_TEST_VERSION "\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_servers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_ready_maint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_direct, setup, teardown),
		cmocka_unit_test_setup_teardown(test_with_health, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_and_foreign_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_and_slow_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_srv_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_emfile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics_escaping_and_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_show, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tandemctl, setup, teardown),
		/* Last: it moves the whole process into a new network namespace. */
		cmocka_unit_test_setup_teardown(test_in_netns, setup, teardown),
	};

	log_init(LOG_LVL_ERR, 0, "test_ctl");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
