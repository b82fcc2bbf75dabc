/*
 * hc probe — the socket work of one active check: non-blocking connect,
 * the http request, the status line. See include/tandem/health.h for what a
 * pass is and health-int.h for the phases.
 */
#include "health-int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const hc_phase_names[HC_PH_COUNT] = {
#define HC_PHASE_NAME(id, name) [HC_PH_##id] = name,
	HC_PHASES(HC_PHASE_NAME)
#undef HC_PHASE_NAME
};

void
hc_probe_close(struct hc_check *chk)
{
	if (chk->fd == -1)
		return;
	ev_io_stop(chk->hc->loop, &chk->io);
	close(chk->fd);
	chk->fd = -1;
}

static void hc_probe_done(struct hc_check *chk, enum hc_result res,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
hc_probe_done(struct hc_check *chk, enum hc_result res, const char *fmt, ...)
{
	va_list ap;

	hc_probe_close(chk);
	chk->phase = HC_PH_IDLE;
	va_start(ap, fmt);
	vsnprintf(chk->reason, sizeof(chk->reason), fmt, ap);
	va_end(ap);
	chk->latency_us = (hc_now_ns() - chk->started_ns) / 1000u;
	hc_check_done(chk, res);
}

static void
hc_watch(struct hc_check *chk, int events)
{
	struct ev_loop *loop = chk->hc->loop;

	ev_io_stop(loop, &chk->io);
	ev_io_set(&chk->io, chk->fd, events);
	ev_io_start(loop, &chk->io);
}

/*
 * "HTTP/d.d ddd" followed by SP, CR or LF: returns the status code;
 * -EAGAIN while buf is a valid but incomplete prefix and more may come;
 * -EPROTO for anything else, or when final and still incomplete.
 */
static int
hc_http_status(const char *buf, size_t len, int final)
{
	static const char pat[] = "HTTP/#.# ###";  /* # = a digit */
	const size_t plen = sizeof(pat) - 1;

	for (size_t i = 0; i < len && i < plen; i++) {
		int digit = buf[i] >= '0' && buf[i] <= '9';

		if (pat[i] == '#' ? !digit : buf[i] != pat[i])
			return -EPROTO;
	}
	if (len < plen)
		return final ? -EPROTO : -EAGAIN;
	if (len == plen) {
		if (!final)
			return -EAGAIN;
	} else if (buf[plen] != ' ' && buf[plen] != '\r' && buf[plen] != '\n') {
		return -EPROTO;
	}
	return (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
}

static void
hc_step_recv(struct hc_check *chk)
{
	const struct cfg_health *cfg = &chk->hc->cfg;
	ssize_t n;
	int status;

	n = recv(chk->fd, chk->rbuf + chk->rlen, sizeof(chk->rbuf) - chk->rlen, 0);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		hc_probe_done(chk, HC_RES_FAIL, "recv: %s", strerror(errno));
		return;
	}
	chk->rlen += (size_t)n;
	status = hc_http_status(chk->rbuf, chk->rlen,
	    n == 0 || chk->rlen == sizeof(chk->rbuf));
	if (status == -EAGAIN)
		return;
	if (status < 0)
		hc_probe_done(chk, HC_RES_FAIL, "%s", chk->rlen == 0 ?
		    "closed before status line" : "bad status line");
	else if (status >= cfg->status_min && status <= cfg->status_max)
		hc_probe_done(chk, HC_RES_PASS, "http status %d", status);
	else
		hc_probe_done(chk, HC_RES_FAIL, "http status %d", status);
}

static void
hc_step_send(struct hc_check *chk)
{
	/* Bounded: every turn either sends something or returns. */
	while (chk->sent < chk->reqlen) {
		ssize_t n = send(chk->fd, chk->req + chk->sent,
		    chk->reqlen - chk->sent, MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
				hc_watch(chk, EV_WRITE);
				return;
			}
			hc_probe_done(chk, HC_RES_FAIL, "send: %s", strerror(errno));
			return;
		}
		chk->sent += (size_t)n;
	}
	chk->phase = HC_PH_RECV;
	hc_watch(chk, EV_READ);
}

static void
hc_connected(struct hc_check *chk)
{
	if (chk->hc->cfg.type == CFG_HC_TCP) {
		hc_probe_done(chk, HC_RES_PASS, "tcp connect ok");
		return;
	}
	chk->phase = HC_PH_SEND;
	hc_step_send(chk);
}

static void
hc_step_connect(struct hc_check *chk)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(chk->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		hc_probe_done(chk, HC_RES_FAIL, "connect: %s", strerror(err));
		return;
	}
	hc_connected(chk);
}

/* What readiness means in each phase; IDLE has no socket. */
static void (*const hc_steps[HC_PH_COUNT])(struct hc_check *) = {
	[HC_PH_CONNECT] = hc_step_connect,
	[HC_PH_SEND] = hc_step_send,
	[HC_PH_RECV] = hc_step_recv,
};

static void
hc_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hc_check *chk = w->data;

	if (hc_steps[chk->phase] != NULL)
		hc_steps[chk->phase](chk);
}

void
hc_probe_start(struct hc_check *chk)
{
	struct hc *hc = chk->hc;
	const struct bal_server *srv = hc_server(chk);
	/*
	 * Close with RST: a check socket closed normally sits in TIME_WAIT on
	 * the balancer for a minute, one per check, and eats the ports the
	 * proxy needs. HAProxy closes its checks the same way.
	 */
	const struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	int fd;

	chk->started_ns = hc_now_ns();
	chk->sent = 0;
	chk->rlen = 0;
	hc_schedule(chk, hc->timeout_s);
	fd = socket(srv->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    IPPROTO_TCP);
	if (fd == -1) {
		hc_probe_done(chk, HC_RES_LOCAL, "socket: %s", strerror(errno));
		return;
	}
	chk->fd = fd;
	ev_io_init(&chk->io, hc_io_cb, fd, EV_WRITE);
	chk->io.data = chk;
	chk->phase = HC_PH_CONNECT;
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (connect(fd, (const struct sockaddr *)&srv->addr, srv->addrlen) == 0) {
		hc_connected(chk);
		return;
	}
	if (errno != EINPROGRESS) {
		hc_probe_done(chk, HC_RES_FAIL, "connect: %s", strerror(errno));
		return;
	}
	ev_io_start(hc->loop, &chk->io);
}

void
hc_probe_timeout(struct hc_check *chk)
{
	hc_probe_done(chk, HC_RES_FAIL, "timeout (%s)", hc_phase_names[chk->phase]);
}

/* Request bytes must not be able to end the line or the header early. */
static int
hc_token_ok(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return 0;
	return 1;
}

/* The server address as a Host header value: "a.b.c.d:port", "[v6]:port". */
static int
hc_addr_host(const struct bal_server *srv, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN];
	const void *a;
	unsigned port;
	int v6 = srv->addr.ss_family == AF_INET6;
	int n;

	if (srv->addr.ss_family != AF_INET && !v6)
		return -EAFNOSUPPORT;
	if (v6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&srv->addr;

		a = &sin6->sin6_addr;
		port = ntohs(sin6->sin6_port);
	} else {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&srv->addr;

		a = &sin->sin_addr;
		port = ntohs(sin->sin_port);
	}
	if (inet_ntop(srv->addr.ss_family, a, ip, sizeof(ip)) == NULL)
		return -errno;
	/* RFC 9110 7.2: the port may be left out when it is the default. */
	if (port == 80)
		n = snprintf(buf, size, v6 ? "[%s]" : "%s", ip);
	else
		n = snprintf(buf, size, v6 ? "[%s]:%u" : "%s:%u", ip, port);
	return n < 0 || (size_t)n >= size ? -EINVAL : 0;
}

int
hc_build_request(struct hc_check *chk, const struct cfg_health *cfg,
    const struct bal_server *srv)
{
	static const char fmt[] = "%s %s HTTP/1.1\r\nHost: %s\r\n"
	    "Connection: close\r\nUser-Agent: tandem-health\r\n\r\n";
	char addr_host[INET6_ADDRSTRLEN + 8];
	const char *host = cfg->host;
	int n, r;

	if (host[0] == '\0') {
		r = hc_addr_host(srv, addr_host, sizeof(addr_host));
		if (r < 0)
			return r;
		host = addr_host;
	}
	if (!hc_token_ok(cfg->method) || !hc_token_ok(cfg->path) ||
	    !hc_token_ok(host))
		return -EINVAL;
	n = snprintf(NULL, 0, fmt, cfg->method, cfg->path, host);
	if (n < 0)
		return -EINVAL;
	chk->req = malloc((size_t)n + 1);
	if (chk->req == NULL)
		return -ENOMEM;
	snprintf(chk->req, (size_t)n + 1, fmt, cfg->method, cfg->path, host);
	chk->reqlen = (size_t)n;
	return 0;
}
