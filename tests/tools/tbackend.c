/*
 * tbackend — the lab's test backend: a TCP echo port and a small HTTP/1.1
 * server that says which backend answered.
 *
 *   tbackend --name be1 [--echo ADDR:PORT] [--http ADDR:PORT]
 *            [--health-fail-file PATH] [--ready-file PATH]
 *
 * Echo: every byte comes back; after the client's FIN the rest is echoed and
 * then our side is shut down. Reads stop while echoed data waits to be sent,
 * so a slow reader pushes back on its writer instead of growing our memory.
 *
 * HTTP (keep-alive, pipelining, Connection: close, HTTP/1.0):
 *   GET /        200, body "<name>\n"
 *   GET /size/N  200, N bytes of TT_PATTERN (N <= 16 MiB)
 *   GET /health  200 "ok\n", or 503 "fail\n" while PATH of
 *                --health-fail-file exists
 *   GET /peer    200, "<client ip>:<port>\n" as this backend sees it
 *   anything else 404. Every response carries "X-Backend: <name>".
 * Request bodies (Content-Length) are read and discarded, any method is
 * answered like GET, HEAD without body. Chunked request bodies get 501.
 *
 * It has to stay out of wrk's way at tens of thousands of requests per second
 * on a shared core: fixed responses are built once at start, bodies come from
 * one static pattern buffer, writes are one writev, and a request allocates
 * nothing (a connection allocates its input buffer on first use).
 *
 * SIGTERM/SIGINT: close everything, exit 0.
 */
#include "tt.h"

#include <tandem/log.h>

#include <ev.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TB_NAME_MAX 64
#define TB_ECHO_BUF (64 * 1024)
#define TB_HTTP_IN (8 * 1024)          /* largest request head we accept */
#define TB_RESP_MAX 512
#define TB_SIZE_MAX (16u * 1024 * 1024)
#define TB_PATTERN_BUF (64 * 1024)     /* a multiple of TT_PATTERN_LEN */
#define TB_ACCEPT_BURST 64
#define TB_LINGER_S 5.0                /* after Connection: close, wait this for the FIN */

enum tb_kind {
	TB_ECHO = 0,
	TB_HTTP,
	TB_KIND_COUNT
};

/* Fixed responses, built once; [0] keep-alive, [1] Connection: close. */
enum tb_fixed {
	TB_R_ROOT = 0,
	TB_R_HEALTH_OK,
	TB_R_HEALTH_FAIL,
	TB_R_NOT_FOUND,
	TB_R_BAD_REQUEST,
	TB_R_TOO_LARGE,
	TB_R_NOT_IMPL,
	TB_R_COUNT
};

struct tb_resp {
	char buf[TB_RESP_MAX];
	size_t len;       /* head + body */
	size_t head_len;  /* what HEAD sends */
};

struct tb_ctx;

struct tb_listener {
	struct tb_ctx *ctx;
	enum tb_kind kind;
	int fd;
	ev_io io;
	ev_timer backoff;  /* accept paused after EMFILE */
};

struct tb_conn {
	struct tb_ctx *ctx;
	struct tb_conn *prev, *next;
	enum tb_kind kind;
	int fd;
	ev_io io;
	ev_timer linger;
	bool peer_eof;    /* the client's FIN has been read */
	bool wr_shut;     /* our FIN has been sent */
	bool close_after; /* the response being sent is the last */
	bool dead;        /* close at the end of this callback */

	/* echo: bytes read but not yet written back */
	char *pend;
	size_t pend_off, pend_len;

	/* http */
	char *in;         /* TB_HTTP_IN bytes, allocated on first read */
	size_t in_len;
	uint64_t skip;    /* request body bytes still to discard */
	const char *out_head;
	size_t out_head_len;
	const char *out_body; /* NULL: body comes from the pattern */
	uint64_t out_body_len;
	uint64_t out_off;     /* over head + body */
	char head[TB_RESP_MAX];
	char peer[TT_ADDR_STRLEN];
};

struct tb_ctx {
	struct ev_loop *loop;
	char name[TB_NAME_MAX];
	const char *health_fail_file;
	struct tb_listener lst[TB_KIND_COUNT];
	ev_signal sig_term, sig_int;
	struct tb_conn *conns;
	unsigned long nconns;
	struct tb_resp fixed[TB_R_COUNT][2];
	char scratch[TB_ECHO_BUF];
	char pattern[TB_PATTERN_BUF];
};

static const char *const tb_kind_names[TB_KIND_COUNT] = {
	[TB_ECHO] = "echo",
	[TB_HTTP] = "http",
};

static void tb_conn_cb(struct ev_loop *loop, ev_io *w, int revents);

static void
tb_build_fixed(struct tb_ctx *ctx, enum tb_fixed which, const char *status,
    const char *body)
{
	for (int close = 0; close < 2; close++) {
		struct tb_resp *r = &ctx->fixed[which][close];
		int n;

		n = snprintf(r->buf, sizeof(r->buf),
		    "HTTP/1.1 %s\r\n"
		    "Content-Type: text/plain\r\n"
		    "Content-Length: %zu\r\n"
		    "X-Backend: %s\r\n"
		    "Connection: %s\r\n"
		    "\r\n",
		    status, strlen(body), ctx->name, close ? "close" : "keep-alive");
		if (n < 0 || (size_t)n + strlen(body) >= sizeof(r->buf))
			fatalx("tbackend %s: fixed response too long", ctx->name);
		r->head_len = (size_t)n;
		memcpy(r->buf + n, body, strlen(body));
		r->len = (size_t)n + strlen(body);
	}
}

static void
tb_conn_free(struct tb_conn *c)
{
	struct tb_ctx *ctx = c->ctx;

	ev_io_stop(ctx->loop, &c->io);
	ev_timer_stop(ctx->loop, &c->linger);
	close(c->fd);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		ctx->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	ctx->nconns--;
	free(c->pend);
	free(c->in);
	free(c);
}

static bool
tb_out_pending(const struct tb_conn *c)
{
	if (c->kind == TB_ECHO)
		return c->pend_len > 0;
	return c->out_off < c->out_head_len + c->out_body_len;
}

/*
 * The one place that decides what we wait for, from the buffer state after
 * a callback: write while output is pending; read while there is room and
 * the peer has not finished. Frees the connection once it is dead.
 */
static void
tb_conn_update(struct tb_conn *c)
{
	int ev = 0;

	if (c->dead) {
		tb_conn_free(c);
		return;
	}
	if (tb_out_pending(c))
		ev |= EV_WRITE;
	if (!c->peer_eof) {
		if (c->kind == TB_ECHO && c->pend_len == 0)
			ev |= EV_READ;
		if (c->kind == TB_HTTP && (c->in_len < TB_HTTP_IN || c->wr_shut))
			ev |= EV_READ;
	}
	if (ev == 0) {
		/* Nothing to wait for and nothing to say: the exchange is over. */
		tb_conn_free(c);
		return;
	}
	if ((c->io.events & (EV_READ | EV_WRITE)) != ev) {
		ev_io_stop(c->ctx->loop, &c->io);
		ev_io_set(&c->io, c->fd, ev);
		ev_io_start(c->ctx->loop, &c->io);
	}
}

static bool
tb_errno_is_transient(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

/* ---------------------------------------------------------------- echo */

static void
tb_echo_write(struct tb_conn *c)
{
	while (c->pend_len > 0) {
		ssize_t n = send(c->fd, c->pend + c->pend_off, c->pend_len, MSG_NOSIGNAL);

		if (n == -1) {
			if (!tb_errno_is_transient(errno))
				c->dead = true;
			return;
		}
		c->pend_off += (size_t)n;
		c->pend_len -= (size_t)n;
	}
	c->pend_off = 0;
}

static void
tb_echo_read(struct tb_conn *c)
{
	struct tb_ctx *ctx = c->ctx;
	ssize_t n, w;

	n = recv(c->fd, ctx->scratch, sizeof(ctx->scratch), 0);
	if (n == 0) {
		c->peer_eof = true;
		return;
	}
	if (n == -1) {
		if (!tb_errno_is_transient(errno))
			c->dead = true;
		return;
	}
	/* Echo straight from the shared scratch; keep only what did not fit. */
	w = send(c->fd, ctx->scratch, (size_t)n, MSG_NOSIGNAL);
	if (w == -1) {
		if (!tb_errno_is_transient(errno)) {
			c->dead = true;
			return;
		}
		w = 0;
	}
	if (w == n)
		return;
	if (c->pend == NULL) {
		c->pend = malloc(TB_ECHO_BUF);
		if (c->pend == NULL) {
			log_warnx("tbackend %s: conn fd %d: out of memory, closing",
			    ctx->name, c->fd);
			c->dead = true;
			return;
		}
	}
	memcpy(c->pend, ctx->scratch + w, (size_t)(n - w));
	c->pend_off = 0;
	c->pend_len = (size_t)(n - w);
}

static void
tb_echo_event(struct tb_conn *c, int revents)
{
	if (revents & EV_WRITE)
		tb_echo_write(c);
	if (!c->dead && (revents & EV_READ) && c->pend_len == 0)
		tb_echo_read(c);
	/* Half-close: once everything before the FIN is back, send ours. */
	if (!c->dead && c->peer_eof && c->pend_len == 0 && !c->wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = true;
		c->dead = true;
	}
}

/* ---------------------------------------------------------------- http */

static void
tb_http_set_fixed(struct tb_conn *c, enum tb_fixed which, bool head_only)
{
	const struct tb_resp *r = &c->ctx->fixed[which][c->close_after ? 1 : 0];

	c->out_head = r->buf;
	c->out_head_len = head_only ? r->head_len : r->len;
	c->out_body = NULL;
	c->out_body_len = 0;
	c->out_off = 0;
}

static void
tb_http_set_dynamic(struct tb_conn *c, const char *body, uint64_t body_len,
    bool head_only)
{
	int n;

	n = snprintf(c->head, sizeof(c->head),
	    "HTTP/1.1 200 OK\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %llu\r\n"
	    "X-Backend: %s\r\n"
	    "Connection: %s\r\n"
	    "\r\n",
	    body != NULL ? "text/plain" : "application/octet-stream",
	    (unsigned long long)body_len, c->ctx->name,
	    c->close_after ? "close" : "keep-alive");
	c->out_head = c->head;
	c->out_head_len = (size_t)n;
	c->out_body = body;
	c->out_body_len = head_only ? 0 : body_len;
	c->out_off = 0;
}

/* Does the comma-separated header value v (length n) list token tok? */
static bool
tb_has_token(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok);

	for (size_t i = 0; i < n;) {
		size_t j;

		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		j = i;
		while (j < n && v[j] != ',' && v[j] != ' ' && v[j] != '\t')
			j++;
		if (j - i == tl && strncasecmp(v + i, tok, tl) == 0)
			return true;
		i = j;
	}
	return false;
}

/*
 * Parse one request head of hlen bytes (the final CRLFCRLF included) and set
 * up its response; c->close_after says whether the connection ends with it.
 */
static void
tb_http_request(struct tb_conn *c, const char *req, size_t hlen)
{
	const char *end = req + hlen, *p, *sp1, *sp2, *eol;
	bool head_only, http10, ka = false, close_tok = false, cl_seen = false;
	uint64_t clen = 0;

	eol = memchr(req, '\r', hlen);
	sp1 = memchr(req, ' ', (size_t)(eol - req));
	sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (sp1 == NULL || sp2 == NULL || eol - sp2 != 9 ||
	    strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		c->close_after = true;
		tb_http_set_fixed(c, TB_R_BAD_REQUEST, false);
		return;
	}
	head_only = sp1 - req == 4 && strncmp(req, "HEAD", 4) == 0;
	http10 = sp2[8] == '0';

	for (p = eol + 2; p < end - 2; p = eol + 2) {
		const char *colon, *v;
		size_t vn;

		eol = memchr(p, '\r', (size_t)(end - p));
		colon = memchr(p, ':', (size_t)(eol - p));
		if (colon == NULL) {
			c->close_after = true;
			tb_http_set_fixed(c, TB_R_BAD_REQUEST, false);
			return;
		}
		v = colon + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		vn = (size_t)(eol - v);
		if (colon - p == 10 && strncasecmp(p, "Connection", 10) == 0) {
			if (tb_has_token(v, vn, "close"))
				close_tok = true;
			if (tb_has_token(v, vn, "keep-alive"))
				ka = true;
		} else if (colon - p == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
			char num[24];

			if (vn == 0 || vn >= sizeof(num) || cl_seen) {
				c->close_after = true;
				tb_http_set_fixed(c, TB_R_BAD_REQUEST, false);
				return;
			}
			memcpy(num, v, vn);
			num[vn] = '\0';
			while (vn > 0 && (num[vn - 1] == ' ' || num[vn - 1] == '\t'))
				num[--vn] = '\0';
			if (tt_parse_u64(num, UINT64_MAX / 2, &clen) < 0) {
				c->close_after = true;
				tb_http_set_fixed(c, TB_R_BAD_REQUEST, false);
				return;
			}
			cl_seen = true;
		} else if (colon - p == 17 &&
		    strncasecmp(p, "Transfer-Encoding", 17) == 0) {
			/* We cannot find the end of a chunked body: refuse it. */
			c->close_after = true;
			tb_http_set_fixed(c, TB_R_NOT_IMPL, false);
			return;
		}
	}
	/* HTTP/1.0 closes unless asked to keep alive; 1.1 the other way round. */
	c->close_after = close_tok || (http10 && !ka);
	c->skip = clen;

	{
		const char *target = sp1 + 1;
		size_t tlen = (size_t)(sp2 - target);
		uint64_t n;

		if (tlen == 1 && target[0] == '/') {
			tb_http_set_fixed(c, TB_R_ROOT, head_only);
		} else if (tlen == 7 && strncmp(target, "/health", 7) == 0) {
			bool fail = c->ctx->health_fail_file != NULL &&
			    access(c->ctx->health_fail_file, F_OK) == 0;

			tb_http_set_fixed(c, fail ? TB_R_HEALTH_FAIL : TB_R_HEALTH_OK,
			    head_only);
		} else if (tlen == 5 && strncmp(target, "/peer", 5) == 0) {
			size_t pl = strlen(c->peer);

			/* c->peer holds "ip:port\n" (set at accept). */
			tb_http_set_dynamic(c, c->peer, pl, head_only);
		} else if (tlen > 6 && tlen < 6 + 20 && strncmp(target, "/size/", 6) == 0) {
			char num[24];

			memcpy(num, target + 6, tlen - 6);
			num[tlen - 6] = '\0';
			if (tt_parse_u64(num, TB_SIZE_MAX, &n) < 0)
				tb_http_set_fixed(c, TB_R_TOO_LARGE, head_only);
			else
				tb_http_set_dynamic(c, NULL, n, head_only);
		} else {
			tb_http_set_fixed(c, TB_R_NOT_FOUND, head_only);
		}
	}
}

/* Send the pending response; returns once done or the socket is full. */
static void
tb_http_write(struct tb_conn *c)
{
	while (tb_out_pending(c)) {
		struct iovec iov[2];
		int cnt = 0;
		ssize_t n;

		if (c->out_off < c->out_head_len) {
			iov[cnt].iov_base = (void *)(uintptr_t)(c->out_head + c->out_off);
			iov[cnt].iov_len = c->out_head_len - c->out_off;
			cnt++;
		}
		if (c->out_body_len > 0) {
			uint64_t boff = c->out_off > c->out_head_len ?
			    c->out_off - c->out_head_len : 0;
			uint64_t left = c->out_body_len - boff;

			if (c->out_body != NULL) {
				iov[cnt].iov_base = (void *)(uintptr_t)(c->out_body + boff);
				iov[cnt].iov_len = (size_t)left;
			} else {
				size_t at = (size_t)(boff % TB_PATTERN_BUF);
				size_t chunk = TB_PATTERN_BUF - at;

				iov[cnt].iov_base = c->ctx->pattern + at;
				iov[cnt].iov_len = left < chunk ? (size_t)left : chunk;
			}
			cnt++;
		}
		n = writev(c->fd, iov, cnt);
		if (n == -1) {
			if (!tb_errno_is_transient(errno))
				c->dead = true;
			return;
		}
		c->out_off += (uint64_t)n;
	}
}

/* Drop request-body bytes and, after our FIN, everything the client sends. */
static void
tb_http_discard(struct tb_conn *c)
{
	size_t n;

	if (c->wr_shut) {
		c->in_len = 0;
		return;
	}
	n = c->skip < c->in_len ? (size_t)c->skip : c->in_len;
	if (n == 0)
		return;
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
	c->skip -= n;
}

/* Answer buffered requests one at a time, in order, until output blocks. */
static void
tb_http_run(struct tb_conn *c)
{
	for (;;) {
		const char *eoh;
		size_t hlen;

		tb_http_write(c);
		if (c->dead || tb_out_pending(c))
			return;
		if (c->close_after) {
			if (!c->wr_shut) {
				/*
				 * Shut down, then read until the FIN: closing with
				 * unread input would send a RST that can destroy the
				 * response in flight.
				 */
				shutdown(c->fd, SHUT_WR);
				c->wr_shut = true;
				ev_timer_start(c->ctx->loop, &c->linger);
			}
			tb_http_discard(c);
			return;
		}
		tb_http_discard(c);
		if (c->skip > 0 || c->in_len == 0)
			return;
		eoh = memmem(c->in, c->in_len, "\r\n\r\n", 4);
		if (eoh == NULL) {
			if (c->in_len == TB_HTTP_IN) {
				c->close_after = true;
				tb_http_set_fixed(c, TB_R_BAD_REQUEST, false);
				c->in_len = 0;
				continue;
			}
			return;
		}
		hlen = (size_t)(eoh - c->in) + 4;
		tb_http_request(c, c->in, hlen);
		memmove(c->in, c->in + hlen, c->in_len - hlen);
		c->in_len -= hlen;
	}
}

static void
tb_http_read(struct tb_conn *c)
{
	ssize_t n;

	if (c->in == NULL) {
		c->in = malloc(TB_HTTP_IN);
		if (c->in == NULL) {
			log_warnx("tbackend %s: conn fd %d: out of memory, closing",
			    c->ctx->name, c->fd);
			c->dead = true;
			return;
		}
	}
	if (c->in_len == TB_HTTP_IN)
		return;
	n = recv(c->fd, c->in + c->in_len, TB_HTTP_IN - c->in_len, 0);
	if (n == 0) {
		c->peer_eof = true;
		return;
	}
	if (n == -1) {
		if (!tb_errno_is_transient(errno))
			c->dead = true;
		return;
	}
	c->in_len += (size_t)n;
}

static void
tb_http_event(struct tb_conn *c, int revents)
{
	if (revents & EV_READ)
		tb_http_read(c);
	if (!c->dead)
		tb_http_run(c);
	/* A client that finished sending and has nothing left to receive. */
	if (!c->dead && c->peer_eof && !tb_out_pending(c))
		c->dead = true;
}

static void
tb_linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tb_conn *c = w->data;

	c->dead = true;
	tb_conn_update(c);
}

static void
tb_conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct tb_conn *c = w->data;

	if (c->kind == TB_ECHO)
		tb_echo_event(c, revents);
	else
		tb_http_event(c, revents);
	tb_conn_update(c);
}

/* ---------------------------------------------------------------- accept */

static void
tb_conn_new(struct tb_ctx *ctx, enum tb_kind kind, int fd,
    const struct sockaddr *peer)
{
	struct tb_conn *c;
	int one = 1;

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		log_warnx("tbackend %s: out of memory, dropping connection", ctx->name);
		close(fd);
		return;
	}
	c->ctx = ctx;
	c->kind = kind;
	c->fd = fd;
	if (kind == TB_HTTP) {
		/* Responses go out in one writev; do not let Nagle hold the tail. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		tt_format_addr(peer, c->peer, sizeof(c->peer) - 1);
		strcat(c->peer, "\n");
	}
	ev_io_init(&c->io, tb_conn_cb, fd, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->linger, tb_linger_cb, TB_LINGER_S, 0.);
	c->linger.data = c;
	c->next = ctx->conns;
	if (ctx->conns != NULL)
		ctx->conns->prev = c;
	ctx->conns = c;
	ctx->nconns++;
	ev_io_start(ctx->loop, &c->io);
}

static void
tb_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tb_listener *l = w->data;

	ev_io_start(loop, &l->io);
}

static void
tb_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct tb_listener *l = w->data;

	for (int i = 0; i < TB_ACCEPT_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd;

		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				/* Out of fds: pause instead of spinning on a ready socket. */
				log_warn("tbackend %s: %s accept, pausing 100 ms",
				    l->ctx->name, tb_kind_names[l->kind]);
				ev_io_stop(loop, &l->io);
				ev_timer_set(&l->backoff, 0.1, 0.);
				ev_timer_start(loop, &l->backoff);
				return;
			}
			log_warn("tbackend %s: %s accept", l->ctx->name,
			    tb_kind_names[l->kind]);
			return;
		}
		tb_conn_new(l->ctx, l->kind, fd, (struct sockaddr *)&ss);
	}
}

static int
tb_listen(struct tb_ctx *ctx, enum tb_kind kind, const char *spec)
{
	struct tb_listener *l = &ctx->lst[kind];
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1, ret;

	ret = tt_parse_addr(spec, &ss, &sl);
	if (ret < 0) {
		log_warnx("tbackend %s: bad %s address '%s'", ctx->name,
		    tb_kind_names[kind], spec);
		return ret;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (struct sockaddr *)&ss, sl) == -1 ||
	    listen(fd, 4096) == -1) {
		ret = -errno;
		log_warn("tbackend %s: %s listen on %s", ctx->name,
		    tb_kind_names[kind], spec);
		close(fd);
		return ret;
	}
	l->ctx = ctx;
	l->kind = kind;
	l->fd = fd;
	ev_io_init(&l->io, tb_accept_cb, fd, EV_READ);
	l->io.data = l;
	ev_timer_init(&l->backoff, tb_backoff_cb, 0.1, 0.);
	l->backoff.data = l;
	ev_io_start(ctx->loop, &l->io);
	return 0;
}

static void
tb_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void
tb_usage(void)
{
	fprintf(stderr,
	    "usage: tbackend --name NAME [--echo ADDR:PORT] [--http ADDR:PORT]\n"
	    "                [--health-fail-file PATH] [--ready-file PATH]\n");
	exit(2);
}

static bool
tb_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= TB_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' ||
		    s[i] == '.'))
			return false;
	return true;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "echo", required_argument, NULL, 'e' },
		{ "http", required_argument, NULL, 'h' },
		{ "health-fail-file", required_argument, NULL, 'f' },
		{ "ready-file", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *echo = NULL, *http = NULL, *ready = NULL;
	struct tb_ctx *ctx;
	char body[TB_NAME_MAX + 2];
	int o, ret;

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return 1;
	ctx->lst[TB_ECHO].fd = -1;
	ctx->lst[TB_HTTP].fd = -1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'n': name = optarg; break;
		case 'e': echo = optarg; break;
		case 'h': http = optarg; break;
		case 'f': ctx->health_fail_file = optarg; break;
		case 'r': ready = optarg; break;
		default: tb_usage();
		}
	}
	if (optind != argc || name == NULL || (echo == NULL && http == NULL))
		tb_usage();
	if (!tb_name_ok(name)) {
		fprintf(stderr, "tbackend: --name must be 1-63 of [A-Za-z0-9._-]\n");
		return 2;
	}
	log_init(LOG_LVL_INFO, 0, "tbackend");
	snprintf(ctx->name, sizeof(ctx->name), "%s", name);
	signal(SIGPIPE, SIG_IGN);
	tt_raise_nofile();

	for (size_t i = 0; i < TB_PATTERN_BUF; i += TT_PATTERN_LEN)
		memcpy(ctx->pattern + i, TT_PATTERN, TT_PATTERN_LEN);
	snprintf(body, sizeof(body), "%s\n", name);
	tb_build_fixed(ctx, TB_R_ROOT, "200 OK", body);
	tb_build_fixed(ctx, TB_R_HEALTH_OK, "200 OK", "ok\n");
	tb_build_fixed(ctx, TB_R_HEALTH_FAIL, "503 Service Unavailable", "fail\n");
	tb_build_fixed(ctx, TB_R_NOT_FOUND, "404 Not Found", "not found\n");
	tb_build_fixed(ctx, TB_R_BAD_REQUEST, "400 Bad Request", "bad request\n");
	tb_build_fixed(ctx, TB_R_TOO_LARGE, "400 Bad Request", "size out of range\n");
	tb_build_fixed(ctx, TB_R_NOT_IMPL, "501 Not Implemented", "chunked\n");

	ctx->loop = ev_default_loop(EVFLAG_AUTO);
	if (echo != NULL && tb_listen(ctx, TB_ECHO, echo) < 0)
		return 1;
	if (http != NULL && tb_listen(ctx, TB_HTTP, http) < 0)
		return 1;
	ev_signal_init(&ctx->sig_term, tb_signal_cb, SIGTERM);
	ev_signal_init(&ctx->sig_int, tb_signal_cb, SIGINT);
	ev_signal_start(ctx->loop, &ctx->sig_term);
	ev_signal_start(ctx->loop, &ctx->sig_int);
	if (ready != NULL && (ret = tt_write_ready_file(ready)) < 0) {
		errno = -ret;
		fatal("tbackend %s: ready file %s", name, ready);
	}
	log_info("tbackend %s: ready, echo %s, http %s", name,
	    echo != NULL ? echo : "off", http != NULL ? http : "off");

	ev_run(ctx->loop, 0);

	log_info("tbackend %s: stopping, %lu connections open", name, ctx->nconns);
	while (ctx->conns != NULL)
		tb_conn_free(ctx->conns);
	for (int k = 0; k < TB_KIND_COUNT; k++) {
		if (ctx->lst[k].fd == -1)
			continue;
		ev_io_stop(ctx->loop, &ctx->lst[k].io);
		ev_timer_stop(ctx->loop, &ctx->lst[k].backoff);
		close(ctx->lst[k].fd);
	}
	ev_signal_stop(ctx->loop, &ctx->sig_term);
	ev_signal_stop(ctx->loop, &ctx->sig_int);
	ev_loop_destroy(ctx->loop);
	free(ctx);
	return 0;
}
