/* ctl — see include/tandem/ctl.h */
#include <tandem/ctl.h>

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include <tandem/agent.h>
#include <tandem/bal.h>
#include <tandem/config.h>
#include <tandem/health.h>
#include <tandem/log.h>
#include <tandem/proxy.h>
#include <tandem/session.h>
#include <tandem/sync.h>

/* ---- output buffer ---------------------------------------------------- */

static int
ctl_buf_reserve(struct ctl_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->err != 0)
		return b->err;
	if (b->cap - b->len > more)  /* keep room for the terminating NUL */
		return 0;
	cap = b->cap != 0 ? b->cap : 1024;
	while (cap - b->len <= more) {
		if (cap > SIZE_MAX / 2) {
			b->err = -ENOMEM;
			return b->err;
		}
		cap *= 2;
	}
	p = realloc(b->data, cap);
	if (p == NULL) {
		b->err = -ENOMEM;
		return b->err;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

void
ctl_buf_printf(struct ctl_buf *b, const char *fmt, ...)
{
	va_list ap;
	size_t room;
	int n;

	if (b->err != 0)
		return;
	room = b->data != NULL ? b->cap - b->len : 0;
	va_start(ap, fmt);
	n = vsnprintf(b->data != NULL ? b->data + b->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->err = -EINVAL;
		return;
	}
	if ((size_t)n >= room) {
		if (ctl_buf_reserve(b, (size_t)n) != 0)
			return;
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void
ctl_buf_append(struct ctl_buf *b, const char *s, size_t n)
{
	if (ctl_buf_reserve(b, n) != 0)
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
ctl_buf_free(struct ctl_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->err = 0;
}

const char *
ctl_fmt_addr(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN];

	if (size == 0)
		return buf;
	snprintf(buf, size, "?");
	if (sa == NULL)
		return buf;
	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

		if (len < sizeof(*sin) ||
		    inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)) == NULL)
			break;
		snprintf(buf, size, "%s:%u", host, ntohs(sin->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

		if (len < sizeof(*sin6) ||
		    inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)) == NULL)
			break;
		snprintf(buf, size, "[%s]:%u", host, ntohs(sin6->sin6_port));
		break;
	}
	case AF_UNIX: {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)(const void *)sa;
		size_t n;

		if (len <= offsetof(struct sockaddr_un, sun_path))
			break;
		n = strnlen(sun->sun_path, len - offsetof(struct sockaddr_un, sun_path));
		snprintf(buf, size, "%.*s", (int)n, sun->sun_path);
		break;
	}
	default:
		break;
	}
	return buf;
}

/* ---- the one-shot server ---------------------------------------------- */

/*
 * A client goes READ -> WRITE -> LINGER -> freed, or is freed early on an
 * error or its deadline. LINGER: after the answer we shut our side down and
 * read until the peer closes (at most CTL_LINGER s), because closing a socket
 * with unread input makes the kernel send a RST, and a RST can destroy an
 * answer the peer has not read yet.
 */
enum ctl_phase {
	CTL_PHASE_READ = 0,
	CTL_PHASE_WRITE,
	CTL_PHASE_LINGER,
	CTL_PHASE_COUNT
};

static const char *const ctl_phase_names[CTL_PHASE_COUNT] = {
	[CTL_PHASE_READ] = "read",
	[CTL_PHASE_WRITE] = "write",
	[CTL_PHASE_LINGER] = "linger",
};

#define CTL_ACCEPT_BATCH 16   /* accepts per wake-up, so one burst cannot hog the loop */
static const double CTL_LINGER = 1.0;
static const double CTL_ACCEPT_BACKOFF = 1.0;
static const double CTL_LOG_INTERVAL = 10.0;

struct ctl_client {
	struct ctl_srv *srv;
	struct ctl_client *prev;
	struct ctl_client *next;
	ev_io io;                 /* io.fd is the client socket */
	ev_timer timer;           /* request in and answer out by then; then the linger */
	enum ctl_phase phase;
	size_t reqlen;
	size_t sent;
	struct ctl_buf out;
	char req[];               /* ops->max_request bytes */
};

struct ctl_srv {
	struct ev_loop *loop;
	const struct ctl_srv_ops *ops;
	void *arg;
	ev_io accept_io;          /* accept_io.fd is the listener */
	ev_timer backoff;         /* accept paused after EMFILE & co. */
	struct ctl_client *clients;
	unsigned nclients;
	struct log_ratelimit rl_accept;
	struct log_ratelimit rl_busy;
};

/*
 * Stopping a watcher also clears its pending event (libev documents this),
 * so a client can be freed from any of its own callbacks: nothing queued for
 * this loop iteration can reach it afterwards.
 */
static void
ctl_client_free(struct ctl_client *c)
{
	struct ctl_srv *srv = c->srv;

	ev_io_stop(srv->loop, &c->io);
	ev_timer_stop(srv->loop, &c->timer);
	close(c->io.fd);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		srv->clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	srv->nclients--;
	ctl_buf_free(&c->out);
	free(c);
}

static void
ctl_client_watch(struct ctl_client *c, int events)
{
	ev_io_stop(c->srv->loop, &c->io);
	ev_io_set(&c->io, c->io.fd, events);
	ev_io_start(c->srv->loop, &c->io);
}

static void
ctl_client_linger(struct ctl_client *c)
{
	struct ev_loop *loop = c->srv->loop;

	ctl_buf_free(&c->out);
	if (shutdown(c->io.fd, SHUT_WR) == -1) {
		ctl_client_free(c);
		return;
	}
	c->phase = CTL_PHASE_LINGER;
	ctl_client_watch(c, EV_READ);
	ev_timer_stop(loop, &c->timer);
	ev_timer_set(&c->timer, CTL_LINGER, 0.);
	ev_timer_start(loop, &c->timer);
}

static void
ctl_client_write(struct ctl_client *c)
{
	while (c->sent < c->out.len) {
		ssize_t n = send(c->io.fd, c->out.data + c->sent,
		    c->out.len - c->sent, MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;  /* the EV_WRITE watcher brings us back */
			log_debug("%s: client: send: %s", c->srv->ops->name,
			    strerror(errno));
			ctl_client_free(c);
			return;
		}
		c->sent += (size_t)n;
	}
	ctl_client_linger(c);
}

static void
ctl_client_answer(struct ctl_client *c, enum ctl_req kind, size_t len)
{
	const struct ctl_srv_ops *ops = c->srv->ops;

	if (ops->answer(c->srv->arg, kind, c->req, len, &c->out) != 0 ||
	    c->out.err != 0) {
		log_warnx("%s: client: cannot build an answer, dropping it",
		    ops->name);
		ctl_client_free(c);
		return;
	}
	c->phase = CTL_PHASE_WRITE;
	ctl_client_watch(c, EV_WRITE);
	ctl_client_write(c);
}

static void
ctl_client_read(struct ctl_client *c)
{
	const struct ctl_srv_ops *ops = c->srv->ops;
	ssize_t n;
	size_t end;

	n = recv(c->io.fd, c->req + c->reqlen, ops->max_request - c->reqlen, 0);
	if (n == -1) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		log_debug("%s: client: recv: %s", ops->name, strerror(errno));
		ctl_client_free(c);
		return;
	}
	if (n == 0) {
		if (c->reqlen == 0)
			ctl_client_free(c);  /* connected, asked nothing */
		else
			ctl_client_answer(c, CTL_REQ_EOF, c->reqlen);
		return;
	}
	c->reqlen += (size_t)n;
	end = ops->complete(c->req, c->reqlen);
	if (end > 0)
		ctl_client_answer(c, CTL_REQ_COMPLETE, end);
	else if (c->reqlen == ops->max_request)
		ctl_client_answer(c, CTL_REQ_TOO_LONG, c->reqlen);
}

static void
ctl_client_drain(struct ctl_client *c)
{
	char scratch[512];
	ssize_t n = recv(c->io.fd, scratch, sizeof(scratch), 0);

	if (n > 0)
		return;
	if (n == -1 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	ctl_client_free(c);
}

static void
ctl_client_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_client *c = w->data;

	switch (c->phase) {
	case CTL_PHASE_READ:
		ctl_client_read(c);
		break;
	case CTL_PHASE_WRITE:
		ctl_client_write(c);
		break;
	case CTL_PHASE_LINGER:
		ctl_client_drain(c);
		break;
	case CTL_PHASE_COUNT:
	default:
		assert(!"bad ctl client phase");
		ctl_client_free(c);
		break;
	}
}

static void
ctl_client_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ctl_client *c = w->data;

	if (c->phase != CTL_PHASE_LINGER)
		log_debug("%s: client timed out in %s after %zu request bytes, "
		    "%zu answer bytes sent, dropping it", c->srv->ops->name,
		    ctl_phase_names[c->phase], c->reqlen, c->sent);
	ctl_client_free(c);
}

static int
ctl_client_new(struct ctl_srv *srv, int fd)
{
	struct ctl_client *c;

	c = calloc(1, sizeof(*c) + srv->ops->max_request);
	if (c == NULL)
		return -ENOMEM;
	c->srv = srv;
	c->phase = CTL_PHASE_READ;
	ev_io_init(&c->io, ctl_client_io_cb, fd, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->timer, ctl_client_timer_cb, srv->ops->timeout, 0.);
	c->timer.data = c;
	c->next = srv->clients;
	if (c->next != NULL)
		c->next->prev = c;
	srv->clients = c;
	srv->nclients++;
	ev_io_start(srv->loop, &c->io);
	ev_timer_start(srv->loop, &c->timer);
	return 0;
}

/*
 * Over the client limit: tell the newcomer so in one non-blocking send (an
 * empty socket buffer always takes a short line) and close. Not answering at
 * all would leave tandemctl guessing.
 */
static void
ctl_srv_refuse(struct ctl_srv *srv, int fd)
{
	struct ctl_buf out = { 0 };
	unsigned suppressed;

	if (srv->ops->answer(srv->arg, CTL_REQ_BUSY, "", 0, &out) == 0 &&
	    out.err == 0 && out.len > 0)
		(void)send(fd, out.data, out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	ctl_buf_free(&out);
	close(fd);
	if (log_ratelimit_ok(&srv->rl_busy, ev_now(srv->loop), CTL_LOG_INTERVAL,
	    &suppressed))
		log_warnx("%s: %u clients already, refusing one (%u refusals "
		    "not logged since the last line)", srv->ops->name,
		    srv->nclients, suppressed);
}

static void
ctl_srv_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_srv *srv = w->data;
	unsigned suppressed;

	for (int i = 0; i < CTL_ACCEPT_BATCH; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1) {
			int e = errno;

			if (e == EAGAIN || e == EWOULDBLOCK)
				return;
			switch (e) {
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				/* Level-triggered accept would spin: pause instead. */
				ev_io_stop(loop, &srv->accept_io);
				ev_timer_set(&srv->backoff, CTL_ACCEPT_BACKOFF, 0.);
				ev_timer_start(loop, &srv->backoff);
				break;
			default:
				break;
			}
			if (log_ratelimit_ok(&srv->rl_accept, ev_now(loop),
			    CTL_LOG_INTERVAL, &suppressed)) {
				errno = e;
				log_warn("%s: accept%s (%u similar lines suppressed)",
				    srv->ops->name, ev_is_active(&srv->backoff) ?
				    ", pausing 1 s" : "", suppressed);
			}
			return;
		}
		if (srv->nclients >= srv->ops->max_clients) {
			ctl_srv_refuse(srv, fd);
			continue;
		}
		if (ctl_client_new(srv, fd) != 0) {
			log_warnx("%s: out of memory for a client, closing it",
			    srv->ops->name);
			close(fd);
		}
	}
}

static void
ctl_srv_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ctl_srv *srv = w->data;

	ev_io_start(loop, &srv->accept_io);
}

struct ctl_srv *
ctl_srv_new(struct ev_loop *loop, int fd, const struct ctl_srv_ops *ops,
    void *arg)
{
	struct ctl_srv *srv;

	assert(ops->max_request > 0 && ops->max_clients > 0);
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	srv->loop = loop;
	srv->ops = ops;
	srv->arg = arg;
	ev_io_init(&srv->accept_io, ctl_srv_accept_cb, fd, EV_READ);
	srv->accept_io.data = srv;
	ev_timer_init(&srv->backoff, ctl_srv_backoff_cb, CTL_ACCEPT_BACKOFF, 0.);
	srv->backoff.data = srv;
	ev_io_start(loop, &srv->accept_io);
	return srv;
}

void
ctl_srv_free(struct ctl_srv *srv)
{
	if (srv == NULL)
		return;
	while (srv->clients != NULL)
		ctl_client_free(srv->clients);
	ev_io_stop(srv->loop, &srv->accept_io);
	ev_timer_stop(srv->loop, &srv->backoff);
	close(srv->accept_io.fd);
	free(srv);
}

unsigned
ctl_srv_clients(const struct ctl_srv *srv)
{
	return srv->nclients;
}

/* ---- rendering helpers ------------------------------------------------ */

#define CTL_COLS_MAX 10
#define CTL_CELL_MAX 112

/*
 * A table printed in two passes over its rows: one to measure every column,
 * one to print, so no row is kept in memory (a pool has up to 1024 servers).
 */
struct ctl_table {
	size_t ncols;
	const char *const *heads;
	const char *align;        /* per column: 'l' or 'r' */
	size_t nrows;
	const void *ctx;
	void (*row)(const void *ctx, size_t i, char cells[][CTL_CELL_MAX]);
};

static void
ctl_table_line(const struct ctl_table *t, const size_t *width,
    const char *const *cells, struct ctl_buf *out)
{
	for (size_t c = 0; c < t->ncols; c++) {
		int w = (int)width[c];
		const char *sep = c + 1 < t->ncols ? "  " : "\n";

		if (t->align[c] == 'r')
			ctl_buf_printf(out, "%*s%s", w, cells[c], sep);
		else if (c + 1 < t->ncols)
			ctl_buf_printf(out, "%-*s%s", w, cells[c], sep);
		else  /* no trailing blanks on the last column */
			ctl_buf_printf(out, "%s%s", cells[c], sep);
	}
}

static void
ctl_table_print(const struct ctl_table *t, struct ctl_buf *out)
{
	char cells[CTL_COLS_MAX][CTL_CELL_MAX];
	const char *ptrs[CTL_COLS_MAX];
	size_t width[CTL_COLS_MAX];

	assert(t->ncols <= CTL_COLS_MAX);
	for (size_t c = 0; c < t->ncols; c++)
		width[c] = strlen(t->heads[c]);
	for (size_t i = 0; i < t->nrows; i++) {
		t->row(t->ctx, i, cells);
		for (size_t c = 0; c < t->ncols; c++) {
			size_t n = strlen(cells[c]);

			if (n > width[c])
				width[c] = n;
		}
	}
	ctl_table_line(t, width, t->heads, out);
	for (size_t i = 0; i < t->nrows; i++) {
		t->row(t->ctx, i, cells);
		for (size_t c = 0; c < t->ncols; c++)
			ptrs[c] = cells[c];
		ctl_table_line(t, width, ptrs, out);
	}
}

static void
ctl_fmt_us(uint64_t us, char *buf, size_t size)
{
	if (us < 1000)
		snprintf(buf, size, "%" PRIu64 "us", us);
	else if (us < 1000000)
		snprintf(buf, size, "%.1fms", (double)us / 1e3);
	else
		snprintf(buf, size, "%.2fs", (double)us / 1e6);
}

static void
ctl_fmt_uptime(double secs, char *buf, size_t size)
{
	uint64_t s = secs > 0 ? (uint64_t)secs : 0;
	uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;

	if (d > 0)
		snprintf(buf, size, "%" PRIu64 "d %" PRIu64 "h %" PRIu64 "m %" PRIu64 "s",
		    d, h, m, s % 60);
	else if (h > 0)
		snprintf(buf, size, "%" PRIu64 "h %" PRIu64 "m %" PRIu64 "s", h, m, s % 60);
	else if (m > 0)
		snprintf(buf, size, "%" PRIu64 "m %" PRIu64 "s", m, s % 60);
	else
		snprintf(buf, size, "%" PRIu64 "s", s);
}

static const char *const ctl_mode_names[CFG_MODE_COUNT] = {
	[CFG_MODE_TCP] = "tcp",
	[CFG_MODE_HTTP] = "http",
};

static enum bal_state
ctl_server_state(const struct bal_server *s)
{
	return (enum bal_state)atomic_load_explicit(&s->state, memory_order_relaxed);
}

static struct hc *
ctl_view_hc(const struct ctl_view *v, size_t p)
{
	return v->hcs != NULL ? v->hcs[p] : NULL;
}

/* The config block the pool was built from, matched by name; NULL if none. */
static const struct cfg_backend *
ctl_view_becfg(const struct ctl_view *v, const struct bal_pool *pool)
{
	if (v->cfg == NULL)
		return NULL;
	for (size_t b = 0; b < v->cfg->nbackends; b++)
		if (strcmp(v->cfg->backends[b].name, pool->name) == 0)
			return &v->cfg->backends[b];
	return NULL;
}

/* ---- status ----------------------------------------------------------- */

static const char *const ctl_fe_heads[] = {
	"FRONTEND", "BIND", "MODE", "BACKEND", "ACTIVE", "TOTAL",
};

static void
ctl_fe_row(const void *ctx, size_t i, char cells[][CTL_CELL_MAX])
{
	const struct ctl_view *v = ctx;
	const struct proxy_frontend *fe = &v->fes[i];
	const struct cfg_frontend *fc = fe->cfg;

	snprintf(cells[0], CTL_CELL_MAX, "%s", fc != NULL ? fc->name : "?");
	if (fc != NULL)
		ctl_fmt_addr((const struct sockaddr *)&fc->bind, fc->bindlen,
		    cells[1], CTL_CELL_MAX);
	else
		snprintf(cells[1], CTL_CELL_MAX, "?");
	snprintf(cells[2], CTL_CELL_MAX, "%s",
	    fc != NULL && (unsigned)fc->mode < CFG_MODE_COUNT ?
	    ctl_mode_names[fc->mode] : "?");
	snprintf(cells[3], CTL_CELL_MAX, "%s", fe->pool != NULL ? fe->pool->name :
	    fc != NULL ? fc->backend_name : "?");
	snprintf(cells[4], CTL_CELL_MAX, "%u",
	    atomic_load_explicit(&fe->active, memory_order_relaxed));
	snprintf(cells[5], CTL_CELL_MAX, "%" PRIuFAST64,
	    atomic_load_explicit(&fe->stats.conns_total, memory_order_relaxed));
}

static const char *const ctl_be_heads[] = {
	"BACKEND", "ALGORITHM", "SERVERS", "UP", "DOWN", "DRAIN", "MAINT", "ACTIVE",
};

static void
ctl_be_row(const void *ctx, size_t i, char cells[][CTL_CELL_MAX])
{
	const struct ctl_view *v = ctx;
	const struct bal_pool *pool = v->pools[i];
	size_t count[BAL_STATE_COUNT] = { 0 };
	unsigned long active = 0;

	for (size_t s = 0; s < pool->nservers; s++) {
		unsigned st = (unsigned)ctl_server_state(&pool->servers[s]);

		if (st < BAL_STATE_COUNT)
			count[st]++;
		active += atomic_load_explicit(&pool->servers[s].active,
		    memory_order_relaxed);
	}
	snprintf(cells[0], CTL_CELL_MAX, "%s", pool->name);
	snprintf(cells[1], CTL_CELL_MAX, "%s", bal_algo_name(pool->algo));
	snprintf(cells[2], CTL_CELL_MAX, "%zu", pool->nservers);
	snprintf(cells[3], CTL_CELL_MAX, "%zu", count[BAL_UP]);
	snprintf(cells[4], CTL_CELL_MAX, "%zu", count[BAL_DOWN]);
	snprintf(cells[5], CTL_CELL_MAX, "%zu", count[BAL_DRAIN]);
	snprintf(cells[6], CTL_CELL_MAX, "%zu", count[BAL_MAINT]);
	snprintf(cells[7], CTL_CELL_MAX, "%lu", active);
}

/* ---- vrrp groups ------------------------------------------------------ */

static const char *const ctl_vrrp_heads[] = {
	"GROUP", "VRID", "STATE", "PRIO/BASE", "MASTER", "ADVERT-AGE",
	"TRANSITIONS", "SINCE", "VIPS", "FLAGS",
};

static void
ctl_fmt_secs(double s, char *buf, size_t size)
{
	if (s < 0)
		snprintf(buf, size, "-");
	else if (s < 10.)
		snprintf(buf, size, "%.3fs", s);
	else
		snprintf(buf, size, "%.0fs", s);
}

static void
ctl_vrrp_row(const void *ctx, size_t i, char cells[][CTL_CELL_MAX])
{
	const struct ctl_view *v = ctx;
	struct agent_status st;
	char addr[WIRE_ADDRSTRLEN];
	size_t n = 0;

	if (agent_status(v->agent, i, &st) < 0)
		return;
	snprintf(cells[0], CTL_CELL_MAX, "%s", st.name);
	snprintf(cells[1], CTL_CELL_MAX, "%u", st.info.vrid);
	snprintf(cells[2], CTL_CELL_MAX, "%s", agent_state_name(st.info.state));
	snprintf(cells[3], CTL_CELL_MAX, "%u/%u", st.info.priority,
	    st.info.base_priority);
	if (st.info.master_known)
		snprintf(cells[4], CTL_CELL_MAX, "%s(%u)",
		    wire_ip_ntop(&st.info.master, 0, addr, sizeof(addr)),
		    st.info.master_priority);
	else
		snprintf(cells[4], CTL_CELL_MAX, "-");
	ctl_fmt_secs(st.advert_age, cells[5], CTL_CELL_MAX);
	snprintf(cells[6], CTL_CELL_MAX, "%" PRIu64, st.info.transitions);
	ctl_fmt_secs(st.since_transition, cells[7], CTL_CELL_MAX);
	snprintf(cells[8], CTL_CELL_MAX, "%s", st.vips_up ? "up" :
	    st.vips_held ? "adding" : "-");
	cells[9][0] = '\0';
#define CTL_FLAG(cond, text) \
	if ((cond) && n < CTL_CELL_MAX) \
		n += (size_t)snprintf(cells[9] + n, CTL_CELL_MAX - n, "%s%s", \
		    n > 0 ? "," : "", (text))
	CTL_FLAG(st.info.fault_active, "fault");
	CTL_FLAG(st.info.demoted, "demoted");
	CTL_FLAG(st.info.handover, "handover");
	CTL_FLAG(st.info.handed_over, "handed-over");
	CTL_FLAG(st.info.preempt_pending, "preempt-pending");
	CTL_FLAG(!st.info.sync_ready, "sync-wait");
	CTL_FLAG(st.peer_config_mismatch, "PEER-CONFIG-DIFFERS");
#undef CTL_FLAG
	if (n == 0)
		snprintf(cells[9], CTL_CELL_MAX, "-");
}

static void
ctl_agent_status(const struct ctl_view *v, struct ctl_buf *out)
{
	const struct ctl_table t = {
		.ncols = 10, .heads = ctl_vrrp_heads, .align = "lrllllrrll",
		.nrows = agent_count(v->agent), .ctx = v, .row = ctl_vrrp_row,
	};
	const struct auth_stats *as;

	if (v->agent == NULL)
		return;
	ctl_buf_printf(out, "\n");
	ctl_table_print(&t, out);
	as = agent_auth_stats(v->agent);
	ctl_buf_printf(out, "\nadverts  accepted %" PRIu64, as->accepted);
	for (int r = 0; r < AUTH_DROP_COUNT; r++)
		ctl_buf_printf(out, " %s %" PRIu64, auth_drop_name((enum auth_drop)r),
		    as->drops[r]);
	ctl_buf_printf(out, "\n");
}

/*
 * Why a planned handover cannot take the sessions along now, for the line
 * "sessions: not handed over: WHY". The checks mirror sess_can_handover().
 */
static const char *
ctl_no_handover_why(const struct sess *s)
{
	struct sess_info si;

	sess_get_info(s, &si);
	if (si.handover_active)
		return "a handover is already under way";
	if (si.sync.state != SYNC_STATE_UP)
		return "sync channel down";
	if (!si.sync.peer.digest_match)
		return "the peer's frontends/backends differ";
	return "session sync cannot hand over now";
}

/*
 * Append name to names, space-separated (the groups an answer lists); a name
 * that does not fit is left out, the answer is only informative.
 */
static void
ctl_add_name(char *names, size_t size, size_t *len, const char *name)
{
	if (*len < size)
		*len += (size_t)snprintf(names + *len, size - *len, "%s%s",
		    *len > 0 ? " " : "", name);
}

/*
 * switchover [GROUP]: every MASTER group, or the one named. With session
 * sync able to hand over, sess_switchover() does the whole dance (it runs
 * the agent's switchover itself once the peer is ready); otherwise only the
 * VIPs move, as without sync, and the answer says why the sessions stay.
 */
static void
ctl_cmd_switchover(const struct ctl_view *v, double now, const char *arg,
    struct ctl_buf *out)
{
	size_t masters = 0, done = 0, n = agent_count(v->agent);
	char names[CTL_CELL_MAX] = "";
	const char *why = NULL;
	size_t len = 0;
	int only = -1, r;

	if (v->agent == NULL) {
		ctl_buf_printf(out, "error: no vrrp-group configured\n");
		return;
	}
	if (arg != NULL && (only = agent_find(v->agent, arg)) < 0) {
		ctl_buf_printf(out, "error: no vrrp-group \"%s\"\n", arg);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct agent_status st;

		if (only >= 0 && i != (size_t)only)
			continue;
		if (agent_status(v->agent, i, &st) < 0 ||
		    st.info.state != AGENT_MASTER)
			continue;
		masters++;
		ctl_add_name(names, sizeof(names), &len, st.name);
	}
	if (masters == 0) {
		ctl_buf_printf(out, "error: %s is not MASTER: nothing to hand over\n",
		    arg != NULL ? arg : "no vrrp-group");
		return;
	}
	if (v->sess != NULL) {
		if (!sess_can_handover(v->sess))
			why = ctl_no_handover_why(v->sess);
		else if ((r = sess_switchover(v->sess, only, NULL, NULL)) == 0) {
			log_info("ctl: switchover of vrrp-group %s with its sessions "
			    "requested", names);
			ctl_buf_printf(out, "ok\nhandover of sessions started (%s%s)\n"
			    "handing over to the peer: %s\n",
			    arg != NULL ? "group " : "every MASTER group",
			    arg != NULL ? arg : "", names);
			return;
		} else
			why = r == -EBUSY ? "a handover is already under way" :
			    strerror(-r);
	}
	names[0] = '\0';
	len = 0;
	for (size_t i = 0; i < n; i++) {
		struct agent_status st;

		if (only >= 0 && i != (size_t)only)
			continue;
		if (agent_status(v->agent, i, &st) < 0 ||
		    st.info.state != AGENT_MASTER)
			continue;
		if (agent_handover(v->agent, i) == 0) {
			done++;
			ctl_add_name(names, sizeof(names), &len, st.name);
			log_info("ctl: switchover of vrrp-group %s requested", st.name);
		}
	}
	if (done == 0) {
		ctl_buf_printf(out, "error: %s is not MASTER: nothing to hand over\n",
		    arg != NULL ? arg : "no vrrp-group");
		return;
	}
	ctl_buf_printf(out, "ok\nhanding over to the peer: %s\n", names);
	if (why != NULL) {
		ctl_buf_printf(out, "sessions: not handed over: %s\n", why);
		log_warnx("ctl: switchover of vrrp-group %s without its sessions: %s",
		    names, why);
	}
}

/* ---- sync ------------------------------------------------------------- */

static const char *const ctl_role_names[SYNC_ROLE_COUNT] = {
	[SYNC_ROLE_STANDBY] = "standby",
	[SYNC_ROLE_ACTIVE] = "active",
};

/*
 * sync: one "key: value" line each, keys and word order fixed (scripts and
 * the integration tests grep them). Names are safe to print as one word: the
 * peer's comes from a hello that frame.c only accepts without blanks,
 * quotes or control bytes.
 */
static void
ctl_cmd_sync(const struct ctl_view *v, double now, const char *arg,
    struct ctl_buf *out)
{
	const struct sync_stats *ss;
	const struct sync_info *sy;
	const struct sess_stats *st;
	struct sess_info si;

	ctl_buf_printf(out, "ok\n");
	if (v->sess != NULL)
		sess_get_info(v->sess, &si);
	if (v->sess == NULL || !si.enabled) {
		ctl_buf_printf(out, "sync: off\n");
		return;
	}
	sy = &si.sync;
	st = &si.stats;
	ctl_buf_printf(out, "sync: %s\n", sync_state_name(sy->state));
	if (sy->peer_known)
		ctl_buf_printf(out, "peer: %s %s %s role %s boot %" PRIu64 "\n",
		    sy->peer.name, sy->peer.addr,
		    sy->peer.outgoing ? "outgoing" : "incoming",
		    (unsigned)sy->peer.role < SYNC_ROLE_COUNT ?
		    ctl_role_names[sy->peer.role] : "?", sy->peer.boot_epoch);
	else
		ctl_buf_printf(out, "peer: none\n");
	if (!sy->peer_known)
		ctl_buf_printf(out, "config-digest: unknown\n");
	else if (sy->digest_match)
		ctl_buf_printf(out, "config-digest: match\n");
	else
		ctl_buf_printf(out, "config-digest: MISMATCH\nwarning: the peer's "
		    "frontends/backends differ: its sessions will not be restored\n");
	ctl_buf_printf(out, "our-stream: epoch %" PRIu64 " sealed %" PRIu64
	    " acked %" PRIu64 " behind %zu frames %zu bytes lag %" PRIu64 " ms\n",
	    sy->tx_epoch, sy->tx_seq, sy->tx_acked, sy->unacked_frames,
	    sy->queued_bytes, sy->lag_ms);
	ctl_buf_printf(out, "peer-stream: epoch %" PRIu64 " applied %" PRIu64
	    " bulk %s\n", sy->rx_epoch, sy->rx_seq,
	    sy->bulk_receiving ? "receiving" : "complete");
	ctl_buf_printf(out, "bulk-resyncs: %" PRIu64 "\n", sy->bulk_resyncs);
	ctl_buf_printf(out, "shadow: %zu entries max %zu evicted %" PRIu64 "\n",
	    si.shadow.entries, si.shadow.max_entries, si.shadow.evicted);
	ctl_buf_printf(out, "local: %zu connections\n", si.local_entries);
	ctl_buf_printf(out, "sync-ready: %s\n", si.sync_ready ? "yes" : "no");
	ctl_buf_printf(out, "handover-in-progress: %s\n",
	    si.handover_active ? "yes" : "no");
	ctl_buf_printf(out, "takeovers: %" PRIu64 " restored %" PRIu64 " failed %"
	    PRIu64 " stale-reset %" PRIu64 " stale-gone %" PRIu64 " stale-silent %"
	    PRIu64 "\n", st->takeovers, st->restored, st->restore_failed,
	    st->stale_reset, st->stale_gone, st->stale_silent);
	if (st->last_takeover_wall > 0)
		ctl_buf_printf(out, "last-takeover: restored %" PRIu64 " failed %"
		    PRIu64 " duration %.3f ms ago %.0f s\n", st->last_restored,
		    st->last_failed, (double)st->last_duration_us / 1e3,
		    now > st->last_takeover_wall ? now - st->last_takeover_wall : 0.);
	else
		ctl_buf_printf(out, "last-takeover: none\n");
	ctl_buf_printf(out, "handovers: sent %" PRIu64 " received %" PRIu64
	    " frozen %" PRIu64 " freeze-failed %" PRIu64 "\n", st->handovers_sent,
	    st->handovers_received, st->frozen, st->freeze_failed);
	ss = sess_sync_stats(v->sess);
	if (ss == NULL) {
		ctl_buf_printf(out, "drops: unknown\n");
		return;
	}
	ctl_buf_printf(out, "drops:");
	for (int d = 0; d < SYNC_DROP_COUNT; d++)
		ctl_buf_printf(out, " %s=%" PRIu64, sync_drop_name((enum sync_drop)d),
		    ss->drops[d]);
	ctl_buf_printf(out, "\n");
}

static void
ctl_cmd_status(const struct ctl_view *v, double now, const char *arg,
    struct ctl_buf *out)
{
	char uptime[64];
	const struct ctl_table fes = {
		.ncols = 6, .heads = ctl_fe_heads, .align = "llllrr",
		.nrows = v->nfes, .ctx = v, .row = ctl_fe_row,
	};
	const struct ctl_table bes = {
		.ncols = 8, .heads = ctl_be_heads, .align = "llrrrrrr",
		.nrows = v->npools, .ctx = v, .row = ctl_be_row,
	};

	ctl_fmt_uptime(now - v->started, uptime, sizeof(uptime));
	ctl_buf_printf(out, "ok\n");
	ctl_buf_printf(out, "node     %s\n", v->cfg != NULL ? v->cfg->node.name : "?");
	ctl_buf_printf(out, "version  %s\n", TANDEM_VERSION);
	ctl_buf_printf(out, "uptime   %s\n", uptime);
	ctl_buf_printf(out, "workers  %u\n", v->workers);
	ctl_buf_printf(out, "\n");
	ctl_table_print(&fes, out);
	ctl_buf_printf(out, "\n");
	ctl_table_print(&bes, out);
	ctl_agent_status(v, out);
}

/* ---- servers ---------------------------------------------------------- */

static const char *const ctl_srv_heads[] = {
	"SERVER", "ADDRESS", "STATE", "WEIGHT", "ACTIVE", "TOTAL", "HEALTH",
	"CHECK", "EWMA",
};

struct ctl_pool_ctx {
	const struct ctl_view *v;
	size_t p;
	const struct cfg_backend *becfg;
};

/*
 * "ok", "failed: http status 503", plus the rise/fall progress when the last
 * result disagrees with the verdict ("failed: timeout (fall 1/3)"), so an
 * operator sees a server about to change state.
 */
static void
ctl_fmt_health(const struct hc_server_info *hi, const struct cfg_backend *bc,
    char *buf, size_t size)
{
	char progress[48] = "";

	if (!hi->checked) {
		snprintf(buf, size, "%s", bc != NULL && bc->hc.type == CFG_HC_NONE ?
		    (hi->healthy ? "passive" : "passive: failing") : "pending");
		return;
	}
	if (bc != NULL && hi->last_ok && !hi->healthy)
		snprintf(progress, sizeof(progress), " (rise %u/%u)", hi->consec_ok,
		    bc->hc.rise);
	else if (bc != NULL && !hi->last_ok && hi->healthy)
		snprintf(progress, sizeof(progress), " (fall %u/%u)", hi->consec_fail,
		    bc->hc.fall);
	if (hi->last_ok)
		snprintf(buf, size, "ok%s", progress);
	else
		snprintf(buf, size, "failed: %s%s",
		    hi->last_reason[0] != '\0' ? hi->last_reason : "?", progress);
}

static void
ctl_server_row(const void *ctx, size_t i, char cells[][CTL_CELL_MAX])
{
	const struct ctl_pool_ctx *pc = ctx;
	const struct bal_pool *pool = pc->v->pools[pc->p];
	const struct bal_server *s = &pool->servers[i];
	struct hc *hc = ctl_view_hc(pc->v, pc->p);
	struct hc_server_info hi;
	uint64_t ewma;

	snprintf(cells[0], CTL_CELL_MAX, "%s", s->name);
	ctl_fmt_addr((const struct sockaddr *)&s->addr, s->addrlen, cells[1],
	    CTL_CELL_MAX);
	snprintf(cells[2], CTL_CELL_MAX, "%s", bal_state_name(ctl_server_state(s)));
	snprintf(cells[3], CTL_CELL_MAX, "%u/%u", s->weight,
	    atomic_load_explicit(&s->eff_weight, memory_order_relaxed));
	snprintf(cells[4], CTL_CELL_MAX, "%u",
	    atomic_load_explicit(&s->active, memory_order_relaxed));
	snprintf(cells[5], CTL_CELL_MAX, "%" PRIuFAST64,
	    atomic_load_explicit(&s->stats.conns_total, memory_order_relaxed));
	if (hc == NULL) {
		snprintf(cells[6], CTL_CELL_MAX, "-");
		snprintf(cells[7], CTL_CELL_MAX, "-");
	} else if (hc_server_info(hc, i, &hi) != 0) {
		snprintf(cells[6], CTL_CELL_MAX, "?");
		snprintf(cells[7], CTL_CELL_MAX, "?");
	} else {
		ctl_fmt_health(&hi, pc->becfg, cells[6], CTL_CELL_MAX);
		if (hi.checked)
			ctl_fmt_us(hi.last_latency_us, cells[7], CTL_CELL_MAX);
		else
			snprintf(cells[7], CTL_CELL_MAX, "-");
	}
	ewma = atomic_load_explicit(&s->ewma_us, memory_order_relaxed);
	if (ewma > 0)
		ctl_fmt_us(ewma, cells[8], CTL_CELL_MAX);
	else
		snprintf(cells[8], CTL_CELL_MAX, "-");
}

static void
ctl_cmd_servers(const struct ctl_view *v, double now, const char *arg,
    struct ctl_buf *out)
{
	ctl_buf_printf(out, "ok\n");
	for (size_t p = 0; p < v->npools; p++) {
		const struct bal_pool *pool = v->pools[p];
		const struct ctl_pool_ctx pc = {
			.v = v, .p = p, .becfg = ctl_view_becfg(v, pool),
		};
		const struct ctl_table t = {
			.ncols = 9, .heads = ctl_srv_heads, .align = "lllrrrlrr",
			.nrows = pool->nservers, .ctx = &pc, .row = ctl_server_row,
		};
		size_t up = 0;

		for (size_t i = 0; i < pool->nservers; i++)
			if (ctl_server_state(&pool->servers[i]) == BAL_UP)
				up++;
		ctl_buf_printf(out, "%sbackend %s (%s): %zu server%s, %zu up%s\n",
		    p > 0 ? "\n" : "", pool->name, bal_algo_name(pool->algo),
		    pool->nservers, pool->nservers == 1 ? "" : "s", up,
		    ctl_view_hc(v, p) == NULL ? ", no health checks" : "");
		ctl_table_print(&t, out);
	}
}

/* ---- drain / ready / maint -------------------------------------------- */

#define CTL_LIST_MAX 20   /* names listed in an error before "... (N more)" */

/*
 * Append "web/be1, web/be2, ..." for every server of pool only (SIZE_MAX:
 * all pools) whose name equals match (NULL: any).
 */
static void
ctl_list_servers(const struct ctl_view *v, size_t only, const char *match,
    struct ctl_buf *out)
{
	size_t n = 0;

	for (size_t p = 0; p < v->npools; p++) {
		const struct bal_pool *pool = v->pools[p];

		if (only != SIZE_MAX && p != only)
			continue;
		for (size_t i = 0; i < pool->nservers; i++) {
			const char *name = pool->servers[i].name;

			if (match != NULL && strcmp(name, match) != 0)
				continue;
			if (n < CTL_LIST_MAX)
				ctl_buf_printf(out, "%s%s/%s", n > 0 ? ", " : "",
				    pool->name, name);
			n++;
		}
	}
	if (n == 0)
		ctl_buf_printf(out, "(none)");
	else if (n > CTL_LIST_MAX)
		ctl_buf_printf(out, ", ... (%zu more)", n - CTL_LIST_MAX);
}

/*
 * Resolve BACKEND/SERVER, or SERVER when exactly one backend has it. On
 * failure writes the whole "error: ..." answer and returns -ENOENT.
 */
static int
ctl_find_server(const struct ctl_view *v, const char *name, size_t *pp,
    size_t *pi, struct ctl_buf *out)
{
	const char *slash = strchr(name, '/');
	const char *sname = name;
	size_t only = SIZE_MAX, found = 0;

	if (slash != NULL) {
		size_t blen = (size_t)(slash - name);

		for (size_t p = 0; p < v->npools; p++)
			if (strlen(v->pools[p]->name) == blen &&
			    memcmp(v->pools[p]->name, name, blen) == 0)
				only = p;
		if (only == SIZE_MAX) {
			ctl_buf_printf(out, "error: no backend named \"%.*s\"; backends: ",
			    (int)blen, name);
			for (size_t p = 0; p < v->npools; p++)
				ctl_buf_printf(out, "%s%s", p > 0 ? ", " : "",
				    v->pools[p]->name);
			ctl_buf_printf(out, "%s\n", v->npools == 0 ? "(none)" : "");
			return -ENOENT;
		}
		sname = slash + 1;
	}
	for (size_t p = 0; p < v->npools; p++) {
		const struct bal_pool *pool = v->pools[p];

		if (only != SIZE_MAX && p != only)
			continue;
		for (size_t i = 0; i < pool->nservers; i++) {
			if (strcmp(pool->servers[i].name, sname) != 0)
				continue;
			if (found++ == 0) {
				*pp = p;
				*pi = i;
			}
		}
	}
	if (found == 1)
		return 0;
	if (found == 0) {
		ctl_buf_printf(out, "error: no server named \"%s\"; servers: ", name);
		ctl_list_servers(v, only, NULL, out);
	} else {
		ctl_buf_printf(out, "error: more than one server is named \"%s\" (",
		    name);
		ctl_list_servers(v, only, sname, out);
		ctl_buf_printf(out, "); say which: BACKEND/SERVER");
	}
	ctl_buf_printf(out, "\n");
	return -ENOENT;
}

static void
ctl_set_state(const struct ctl_view *v, const char *name, enum bal_state want,
    struct ctl_buf *out)
{
	struct bal_pool *pool;
	struct bal_server *s;
	struct hc *hc;
	enum bal_state old, now;
	size_t p = 0, i = 0;
	int r;

	if (ctl_find_server(v, name, &p, &i, out) != 0)
		return;
	pool = v->pools[p];
	s = &pool->servers[i];
	hc = ctl_view_hc(v, p);
	old = ctl_server_state(s);
	if (hc != NULL) {
		/* The health module owns state: it logs and counts the change. */
		switch (want) {
		case BAL_UP:
			r = hc_ready(hc, i);
			break;
		case BAL_DRAIN:
			r = hc_drain(hc, i);
			break;
		case BAL_MAINT:
			r = hc_maint(hc, i);
			break;
		case BAL_DOWN:
		case BAL_STATE_COUNT:
		default:
			r = -EINVAL;
			break;
		}
	} else {
		r = bal_set_state(pool, i, want);
		if (old != want && ctl_server_state(s) == want)
			log_info("backend %s: server %s %s→%s (operator)", pool->name,
			    s->name, bal_state_name(old), bal_state_name(want));
	}
	now = ctl_server_state(s);
	if (r == -ENOMEM && now == want) {
		/* bal_set_state: state set, source-hash table not rebuilt yet. */
		ctl_buf_printf(out, "error: %s/%s is %s, but the source-hash table "
		    "could not be rebuilt (out of memory)\n", pool->name, s->name,
		    bal_state_name(now));
		return;
	}
	if (r < 0) {
		ctl_buf_printf(out, "error: %s/%s: cannot set %s: %s\n", pool->name,
		    s->name, bal_state_name(want), strerror(-r));
		return;
	}
	ctl_buf_printf(out, "ok\n");
	if (old == now)
		ctl_buf_printf(out, "%s/%s: already %s", pool->name, s->name,
		    bal_state_name(now));
	else
		ctl_buf_printf(out, "%s/%s: %s -> %s", pool->name, s->name,
		    bal_state_name(old), bal_state_name(now));
	if (want == BAL_UP && now == BAL_DOWN)
		ctl_buf_printf(out, " (failing its health checks; it comes up "
		    "when they pass)");
	ctl_buf_printf(out, "\n");
}

static void
ctl_cmd_drain(const struct ctl_view *v, double now, const char *arg,
    struct ctl_buf *out)
{
	ctl_set_state(v, arg, BAL_DRAIN, out);
}

static void
ctl_cmd_ready(const struct ctl_view *v, double now, const char *arg,
    struct ctl_buf *out)
{
	ctl_set_state(v, arg, BAL_UP, out);
}

static void
ctl_cmd_maint(const struct ctl_view *v, double now, const char *arg,
    struct ctl_buf *out)
{
	ctl_set_state(v, arg, BAL_MAINT, out);
}

static void ctl_cmd_help(const struct ctl_view *v, double now, const char *arg,
    struct ctl_buf *out);

/* ---- request dispatch ------------------------------------------------- */

struct ctl_cmd {
	const char *name;
	const char *arg;          /* NULL: takes no argument */
	const char *help;
	void (*run)(const struct ctl_view *v, double now, const char *arg,
	    struct ctl_buf *out);
};

/* Sorted by name for bsearch. */
static const struct ctl_cmd ctl_cmds[] = {
	{ "drain", "NAME", "no new connections, existing ones stay", ctl_cmd_drain },
	{ "help", NULL, "this list", ctl_cmd_help },
	{ "maint", "NAME", "out of service", ctl_cmd_maint },
	{ "ready", "NAME", "back in service (up, or down while health checks fail)",
	  ctl_cmd_ready },
	{ "servers", NULL, "servers of every backend", ctl_cmd_servers },
	{ "status", NULL, "node, uptime, frontends, backends, vrrp groups",
	  ctl_cmd_status },
	{ "switchover", "[GROUP]", "hand the MASTER group(s) over to the peer, "
	  "with their sessions when sync can", ctl_cmd_switchover },
	{ "sync", NULL, "session sync: channel, streams, shadow table, takeovers",
	  ctl_cmd_sync },
};

#define CTL_NCMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

static void
ctl_cmd_help(const struct ctl_view *v, double now, const char *arg,
    struct ctl_buf *out)
{
	ctl_buf_printf(out, "ok\n");
	for (size_t i = 0; i < CTL_NCMDS; i++)
		ctl_buf_printf(out, "%-7s %-4s  %s\n", ctl_cmds[i].name,
		    ctl_cmds[i].arg != NULL ? ctl_cmds[i].arg : "", ctl_cmds[i].help);
	ctl_buf_printf(out, "NAME is BACKEND/SERVER, or SERVER when only one "
	    "backend has a server of that name.\n");
}

static int
ctl_cmd_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct ctl_cmd *)elem)->name);
}

int
ctl_exec(const struct ctl_view *view, double now, const char *req, size_t len,
    struct ctl_buf *out)
{
	char line[CTL_MAX_REQUEST + 1];
	char *words[3] = { NULL, NULL, NULL };
	size_t nwords = 0;
	const struct ctl_cmd *cmd;
	char *p;

	while (len > 0 && (req[len - 1] == '\n' || req[len - 1] == '\r'))
		len--;
	if (len > CTL_MAX_REQUEST) {
		ctl_buf_printf(out, "error: request longer than %d bytes\n",
		    CTL_MAX_REQUEST);
		return out->err;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)req[i];

		/* Names are echoed back in answers and logs: no control bytes. */
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			ctl_buf_printf(out, "error: control character in request\n");
			return out->err;
		}
	}
	memcpy(line, req, len);
	line[len] = '\0';
	p = line;
	while (nwords < 3) {
		p += strspn(p, " \t");
		if (*p == '\0')
			break;
		words[nwords++] = p;
		p += strcspn(p, " \t");
		if (*p != '\0')
			*p++ = '\0';
	}
	if (nwords == 0) {
		ctl_buf_printf(out, "error: empty request; try \"help\"\n");
		return out->err;
	}
	cmd = bsearch(words[0], ctl_cmds, CTL_NCMDS, sizeof(ctl_cmds[0]),
	    ctl_cmd_cmp);
	if (cmd == NULL) {
		ctl_buf_printf(out, "error: unknown command \"%s\"; commands:", words[0]);
		for (size_t i = 0; i < CTL_NCMDS; i++)
			ctl_buf_printf(out, "%s %s", i > 0 ? "," : "", ctl_cmds[i].name);
		ctl_buf_printf(out, "\n");
		return out->err;
	}
	/* An argument written "[ARG]" may be left out. */
	if (nwords - 1 > (cmd->arg != NULL ? 1u : 0u) ||
	    (nwords == 1 && cmd->arg != NULL && cmd->arg[0] != '[')) {
		ctl_buf_printf(out, "error: usage: %s%s%s\n", cmd->name,
		    cmd->arg != NULL ? " " : "", cmd->arg != NULL ? cmd->arg : "");
		return out->err;
	}
	cmd->run(view, now, words[1], out);
	return out->err;
}

/* ---- the control socket ----------------------------------------------- */

struct ctl {
	struct ev_loop *loop;
	struct ctl_view view;
	struct ctl_srv *srv;
	struct sockaddr_un sun;
	dev_t dev;                /* of the socket file we created, to unlink */
	ino_t ino;                /* only that one */
};

static size_t
ctl_complete(const char *buf, size_t len)
{
	const char *nl = memchr(buf, '\n', len);

	return nl != NULL ? (size_t)(nl - buf) + 1 : 0;
}

static int
ctl_answer(void *arg, enum ctl_req kind, const char *req, size_t len,
    struct ctl_buf *out)
{
	struct ctl *ctl = arg;

	switch (kind) {
	case CTL_REQ_COMPLETE:
	case CTL_REQ_EOF:  /* "echo -n status | socat": take it as the line */
		return ctl_exec(&ctl->view, ev_now(ctl->loop), req, len, out);
	case CTL_REQ_TOO_LONG:
		ctl_buf_printf(out, "error: request longer than %d bytes\n",
		    CTL_MAX_REQUEST);
		break;
	case CTL_REQ_BUSY:
		ctl_buf_printf(out, "error: busy (%d clients already); try again\n",
		    CTL_MAX_CLIENTS);
		break;
	case CTL_REQ_COUNT:
	default:
		return -EINVAL;
	}
	return out->err;
}

static const struct ctl_srv_ops ctl_ops = {
	.name = "ctl",
	.max_request = CTL_MAX_REQUEST,
	.max_clients = CTL_MAX_CLIENTS,
	.timeout = CTL_CLIENT_TIMEOUT,
	.complete = ctl_complete,
	.answer = ctl_answer,
};

/*
 * Make path free for our bind: nothing there, or a socket nobody listens on
 * (a daemon that died without cleaning up), which is removed. A listening
 * socket means another tandemd: refuse, never steal its path. Anything that
 * is not a socket is refused too; it is not ours to delete.
 * Returns 0 or -errno.
 */
static int
ctl_claim_path(const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, r;

	if (lstat(sun->sun_path, &st) == -1)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_warnx("ctl: %s exists and is not a socket, refusing to remove it",
		    sun->sun_path);
		return -EEXIST;
	}
	/* Non-blocking, so a listener with a full backlog answers EAGAIN, not a wait. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	if (r == -1)
		r = -errno;
	close(fd);
	if (r == 0 || r == -EAGAIN || r == -EINPROGRESS) {
		log_warnx("ctl: another daemon is listening on %s, not starting a "
		    "second one", sun->sun_path);
		return -EADDRINUSE;
	}
	if (r != -ECONNREFUSED)
		return r;
	if (unlink(sun->sun_path) == -1 && errno != ENOENT)
		return -errno;
	log_info("ctl: removed stale socket %s", sun->sun_path);
	return 0;
}

struct ctl *
ctl_new(struct ev_loop *loop, const char *path, const struct ctl_view *view)
{
	struct ctl *ctl;
	struct stat st;
	int fd, ret;

	ctl = calloc(1, sizeof(*ctl));
	if (ctl == NULL) {
		ret = -ENOMEM;
		goto err;
	}
	ctl->loop = loop;
	ctl->view = *view;
	ctl->sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(ctl->sun.sun_path)) {
		ret = -ENAMETOOLONG;
		goto err_free;
	}
	memcpy(ctl->sun.sun_path, path, strlen(path) + 1);
	ret = ctl_claim_path(&ctl->sun);
	if (ret < 0)
		goto err_free;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		ret = -errno;
		goto err_free;
	}
	if (bind(fd, (const struct sockaddr *)&ctl->sun, sizeof(ctl->sun)) == -1) {
		ret = -errno;
		goto err_close;
	}
	/*
	 * chmod before listen: until listen() nobody can connect, so there is
	 * no moment in which the umask's mode lets a stranger in. The file
	 * identity is kept so ctl_free never unlinks someone else's socket.
	 */
	if (chmod(path, 0660) == -1 || lstat(path, &st) == -1) {
		ret = -errno;
		goto err_unlink;
	}
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	if (listen(fd, 64) == -1) {
		ret = -errno;
		goto err_unlink;
	}
	ctl->srv = ctl_srv_new(loop, fd, &ctl_ops, ctl);
	if (ctl->srv == NULL) {
		ret = -errno;
		unlink(path);  /* fd is already closed by ctl_srv_new */
		goto err_free;
	}
	log_info("ctl: listening on %s", path);
	return ctl;

err_unlink:
	unlink(path);
err_close:
	close(fd);
err_free:
	free(ctl);
err:
	if (ret != -EADDRINUSE && ret != -EEXIST)  /* those were logged already */
		log_warnx("ctl: cannot listen on %s: %s", path, strerror(-ret));
	errno = -ret;
	return NULL;
}

void
ctl_free(struct ctl *ctl)
{
	struct stat st;

	if (ctl == NULL)
		return;
	ctl_srv_free(ctl->srv);
	if (lstat(ctl->sun.sun_path, &st) == 0 && st.st_dev == ctl->dev &&
	    st.st_ino == ctl->ino)
		unlink(ctl->sun.sun_path);
	free(ctl);
}

void
ctl_set_view(struct ctl *ctl, const struct ctl_view *view)
{
	ctl->view = *view;
}
