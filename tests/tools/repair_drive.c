/*
 * repair_drive — one node of tests/integration/test_repair.py: a tiny echo
 * server / L4 relay whose connections are snapshotted, handed over and
 * rebuilt with the repair module (include/tandem/repair.h). Runs inside a
 * network namespace the test made; commands on stdin, one line each; output
 * lines on stdout. The test script is the sync channel: it forwards the
 * active node's "state" and "sync" lines to the standby as "stage" and "count".
 *
 * Commands (answer: "ok cmd=NAME ..." or "err cmd=NAME rc=-errno msg=...")
 *   listen ADDR:PORT
 *   accept n=N [mode=echo|hold]   accept N connections, snapshot each (live,
 *                                 "cheap") -> one "state id=.." line each
 *   connect src=IP dst=IP:PORT    bind(IP:0), connect, snapshot -> "state"
 *   relay a=ID b=ID               relay between two connections (a proxy)
 *   mode id=ID echo|hold          hold: stop reading
 *   read id=ID n=N                read N bytes and keep them (not echoed)
 *   flush id=ID [n=N]             write N (default all) kept bytes
 *   fresh id=ID                   live snapshot now, compared with the
 *                                 accept-time snapshot plus byte counts
 *   dump id=ID                    frozen snapshot with queues + silent close
 *   info id=ID                    tcp_info: state, snd_mss, options
 *   close id=ID
 *   stage STATE                   keep a state for a later takeover (shadow)
 *   count id=ID w=TOTAL r=TOTAL   byte totals since that state
 *   watch-open IF                 open the stale-state watch (ahead of time)
 *   garp-open IF                  open the packet socket for gratuitous ARP
 *   takeover [watch=0|1] [hole=MS] [silence=MS] [verbose=0|1] [garp=IP]
 *            [nowatch=ID]         rebuild every staged connection (timed),
 *                                 then announce IP (request + reply); ID is
 *                                 left out of the watch (a negative control)
 *   stats                         watch counters
 *   quit
 * Unsolicited: "state ...", "sync id= w= r=", "closed id= why=",
 *   "verdict id= v= reason= ...", "reset id= rc= step=".
 *
 * A state line: id= local= peer= wseq= rnxt= opts= sws= rws= mss= swnd=
 * maxwin= rwnd= ts= tsms= [rq=HEX] [sq=HEX unsent=N] [mode=] [relay=ID].
 */
#include <tandem/repair.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define DRIVE_MAX_CONNS 4096
#define DRIVE_IO 65536
#define DRIVE_OUT_MAX (1u << 20)    /* stop reading a side whose peer lags */
#define DRIVE_LINE_MAX (16u << 20)
#define DRIVE_WAIT_MS 10000         /* every blocking command is bounded */

enum drive_mode { DRIVE_ECHO = 0, DRIVE_HOLD, DRIVE_RELAY };

struct drive_buf {
	uint8_t *p;
	size_t len, cap;
};

struct drive_conn {
	int id;
	int fd;                 /* -1: slot unused */
	enum drive_mode mode;
	int partner;            /* relay: the other connection's id */
	struct repair_sock rs;  /* the state counts are relative to (no queues) */
	uint64_t written, read;
	struct drive_buf held;  /* read, not written back yet */
	struct drive_buf out;   /* to write */
	size_t out_uncounted;   /* leading bytes of out already in rs.write_seq */
};

struct drive_staged {
	int id;
	struct repair_sock rs;  /* owns its queues */
	uint64_t w, r;
	enum drive_mode mode;
	int partner;
};

struct drive {
	int lfd;
	struct drive_conn conns[DRIVE_MAX_CONNS];
	int next_id;
	struct drive_staged *staged;
	size_t nstaged, capstaged;
	struct repair_watch *watch;
	int garp_fd;            /* SOCK_RAW packet socket, opened ahead of time */
	int garp_ifindex;
	uint8_t garp_mac[6];
	struct drive_buf in;
	bool quit;
};

static uint64_t
drive_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
drive_mono_ms(void)
{
	return drive_mono_ns() / 1000000u;
}

static int
drive_buf_add(struct drive_buf *b, const void *p, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *n;

		while (cap < b->len + len)
			cap *= 2;
		if ((n = realloc(b->p, cap)) == NULL)
			return -ENOMEM;
		b->p = n;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, len);
	b->len += len;
	return 0;
}

static void
drive_buf_consume(struct drive_buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static void
drive_buf_free(struct drive_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- text <-> state ---------------------------------------------------- */

static const char *
drive_fmt_addr(const union repair_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (a->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->in4.sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(a->in4.sin_port));
	} else {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	}
	return buf;
}

/* "a.b.c.d:port" or "[v6]:port"; port 0 allowed. */
static int
drive_parse_addr(const char *s, union repair_addr *a)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	unsigned long port;
	size_t hlen;
	char *end;

	memset(a, 0, sizeof(*a));
	if (colon == NULL || (hlen = (size_t)(colon - s)) == 0 || hlen >= sizeof(host))
		return -EINVAL;
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port > 65535)
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (host[0] == '[' && host[hlen - 1] == ']') {
		host[hlen - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &a->in6.sin6_addr) != 1)
			return -EINVAL;
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_port = htons((uint16_t)port);
		return 0;
	}
	if (inet_pton(AF_INET, host, &a->in4.sin_addr) != 1)
		return -EINVAL;
	a->in4.sin_family = AF_INET;
	a->in4.sin_port = htons((uint16_t)port);
	return 0;
}

static socklen_t
drive_addr_len(const union repair_addr *a)
{
	return a->sa.sa_family == AF_INET ? sizeof(a->in4) : sizeof(a->in6);
}

static void
drive_put_hex(FILE *f, const char *key, const uint8_t *p, size_t len)
{
	size_t i;

	fprintf(f, " %s=", key);
	for (i = 0; i < len; i++)
		fprintf(f, "%02x", p[i]);
}

static int
drive_hex(const char *s, uint8_t **out, uint32_t *len)
{
	size_t n = strlen(s), i;
	uint8_t *p;

	*out = NULL;
	*len = 0;
	if (n % 2 != 0)
		return -EINVAL;
	if (n == 0)
		return 0;
	if ((p = malloc(n / 2)) == NULL)
		return -ENOMEM;
	for (i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1) {
			free(p);
			return -EINVAL;
		}
		p[i] = (uint8_t)v;
	}
	*out = p;
	*len = (uint32_t)(n / 2);
	return 0;
}

static void
drive_print_state(const char *tag, int id, const struct repair_sock *rs, const char *extra)
{
	char l[80], p[80];

	printf("%s id=%d local=%s peer=%s wseq=%" PRIu32 " rnxt=%" PRIu32 " opts=%u sws=%u"
	    " rws=%u mss=%u swnd=%" PRIu32 " maxwin=%" PRIu32 " rwnd=%" PRIu32 " ts=%" PRIu32
	    " tsms=%" PRIu64, tag, id, drive_fmt_addr(&rs->local, l, sizeof(l)),
	    drive_fmt_addr(&rs->peer, p, sizeof(p)), rs->write_seq, rs->rcv_nxt, rs->opts,
	    rs->snd_wscale, rs->rcv_wscale, rs->mss_clamp, rs->snd_wnd, rs->max_window,
	    rs->rcv_wnd, rs->ts_val, rs->ts_wall_ms);
	if (rs->rcvq_len > 0)
		drive_put_hex(stdout, "rq", rs->rcvq, rs->rcvq_len);
	if (rs->sndq_len > 0) {
		drive_put_hex(stdout, "sq", rs->sndq, rs->sndq_len);
		printf(" unsent=%" PRIu32, rs->sndq_unsent);
	}
	printf("%s%s\n", extra != NULL ? " " : "", extra != NULL ? extra : "");
}

/* Next "key=value" token of *s (modified in place); NULL at the end. */
static char *
drive_token(char **s, char **val)
{
	char *t, *eq;

	while (**s == ' ')
		(*s)++;
	if (**s == '\0')
		return NULL;
	t = *s;
	while (**s != ' ' && **s != '\0')
		(*s)++;
	if (**s == ' ')
		*(*s)++ = '\0';
	eq = strchr(t, '=');
	if (eq != NULL) {
		*eq = '\0';
		*val = eq + 1;
	} else {
		*val = NULL;
	}
	return t;
}

static int
drive_u64(const char *v, uint64_t max, uint64_t *out)
{
	char *end;

	if (v == NULL || *v == '\0')
		return -EINVAL;
	errno = 0;
	*out = strtoull(v, &end, 10);
	return errno != 0 || *end != '\0' || *out > max ? -EINVAL : 0;
}

/* Parse a state line (and the staging extras) into *st. */
static int
drive_parse_state(char *args, struct drive_staged *st)
{
	char *key, *val;
	uint64_t v;
	int ret = 0;

	memset(st, 0, sizeof(*st));
	st->id = -1;
	st->partner = -1;
	while (ret == 0 && (key = drive_token(&args, &val)) != NULL) {
		if (val == NULL)
			ret = -EINVAL;
		else if (strcmp(key, "local") == 0)
			ret = drive_parse_addr(val, &st->rs.local);
		else if (strcmp(key, "peer") == 0)
			ret = drive_parse_addr(val, &st->rs.peer);
		else if (strcmp(key, "rq") == 0)
			ret = drive_hex(val, &st->rs.rcvq, &st->rs.rcvq_len);
		else if (strcmp(key, "sq") == 0)
			ret = drive_hex(val, &st->rs.sndq, &st->rs.sndq_len);
		else if (strcmp(key, "mode") == 0)
			st->mode = strcmp(val, "hold") == 0 ? DRIVE_HOLD : DRIVE_ECHO;
		else if ((ret = drive_u64(val, UINT64_MAX, &v)) < 0)
			break;
		else if (strcmp(key, "id") == 0)
			st->id = (int)v;
		else if (strcmp(key, "wseq") == 0)
			st->rs.write_seq = (uint32_t)v;
		else if (strcmp(key, "rnxt") == 0)
			st->rs.rcv_nxt = (uint32_t)v;
		else if (strcmp(key, "opts") == 0)
			st->rs.opts = (uint8_t)v;
		else if (strcmp(key, "sws") == 0)
			st->rs.snd_wscale = (uint8_t)v;
		else if (strcmp(key, "rws") == 0)
			st->rs.rcv_wscale = (uint8_t)v;
		else if (strcmp(key, "mss") == 0)
			st->rs.mss_clamp = (uint16_t)v;
		else if (strcmp(key, "swnd") == 0)
			st->rs.snd_wnd = (uint32_t)v;
		else if (strcmp(key, "maxwin") == 0)
			st->rs.max_window = (uint32_t)v;
		else if (strcmp(key, "rwnd") == 0)
			st->rs.rcv_wnd = (uint32_t)v;
		else if (strcmp(key, "ts") == 0)
			st->rs.ts_val = (uint32_t)v;
		else if (strcmp(key, "tsms") == 0)
			st->rs.ts_wall_ms = v;
		else if (strcmp(key, "unsent") == 0)
			st->rs.sndq_unsent = (uint32_t)v;
		else if (strcmp(key, "relay") == 0)
			st->partner = (int)v;
		else if (strcmp(key, "w") == 0)
			st->w = v;
		else if (strcmp(key, "r") == 0)
			st->r = v;
	}
	if (ret == 0 && st->id < 0)
		ret = -EINVAL;
	if (ret == 0)
		ret = repair_sock_check(&st->rs);
	if (ret < 0)
		repair_sock_clear(&st->rs);
	return ret;
}

/* ---- connections ------------------------------------------------------- */

static struct drive_conn *
drive_conn(struct drive *d, int id)
{
	if (id < 0 || id >= DRIVE_MAX_CONNS || d->conns[id].fd < 0)
		return NULL;
	return &d->conns[id];
}

static struct drive_conn *
drive_conn_add(struct drive *d, int id, int fd, const struct repair_sock *rs)
{
	struct drive_conn *c;

	if (id < 0 || id >= DRIVE_MAX_CONNS || d->conns[id].fd >= 0)
		return NULL;
	c = &d->conns[id];
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->fd = fd;
	c->partner = -1;
	c->rs = *rs;
	c->rs.rcvq = c->rs.sndq = NULL;
	c->rs.rcvq_len = c->rs.sndq_len = c->rs.sndq_unsent = 0;
	if (id >= d->next_id)
		d->next_id = id + 1;
	return c;
}

static void
drive_conn_drop(struct drive_conn *c)
{
	c->fd = -1;
	drive_buf_free(&c->held);
	drive_buf_free(&c->out);
}

static void
drive_conn_close(struct drive_conn *c, const char *why)
{
	printf("closed id=%d why=%s\n", c->id, why);
	(void)close(c->fd);
	drive_conn_drop(c);
}

static void
drive_sync(const struct drive_conn *c)
{
	printf("sync id=%d w=%" PRIu64 " r=%" PRIu64 "\n", c->id, c->written, c->read);
}

/* Write what c->out holds; counts what the kernel took. */
static int
drive_flush(struct drive_conn *c)
{
	ssize_t n;
	size_t counted;

	while (c->out.len > 0) {
		n = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		counted = (size_t)n;
		if (c->out_uncounted > 0) {
			size_t skip = counted < c->out_uncounted ? counted : c->out_uncounted;

			c->out_uncounted -= skip;
			counted -= skip;
		}
		drive_buf_consume(&c->out, (size_t)n);
		if (counted > 0) {
			c->written += counted;
			drive_sync(c);
		}
	}
	return 0;
}

static struct drive_conn *
drive_dest(struct drive *d, struct drive_conn *c)
{
	return c->mode == DRIVE_RELAY ? drive_conn(d, c->partner) : c;
}

static void
drive_readable(struct drive *d, struct drive_conn *c)
{
	uint8_t buf[DRIVE_IO];
	struct drive_conn *dst = drive_dest(d, c);
	ssize_t n;
	int ret;

	if (dst == NULL) {
		drive_conn_close(c, "no-partner");
		return;
	}
	n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		drive_conn_close(c, strerror(errno));
		return;
	}
	if (n == 0) {
		drive_conn_close(c, "eof");
		return;
	}
	c->read += (uint64_t)n;
	drive_sync(c);
	if (drive_buf_add(&dst->out, buf, (size_t)n) < 0 || (ret = drive_flush(dst)) < 0)
		drive_conn_close(dst, "write");
}

/* ---- commands ---------------------------------------------------------- */

static void
drive_ok(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
drive_ok(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	printf("ok cmd=%s", cmd);
	if (fmt != NULL) {
		putchar(' ');
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
}

static void
drive_err(const char *cmd, int rc, const char *msg)
{
	printf("err cmd=%s rc=%d msg=%s\n", cmd, rc, msg);
}

static int
drive_wait(int fd, short ev, int ms)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int n = poll(&p, 1, ms);

	if (n == -1)
		return -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

static void
cmd_listen(struct drive *d, char *args)
{
	union repair_addr a;
	int one = 1, fd;

	if (drive_parse_addr(args, &a) < 0) {
		drive_err("listen", -EINVAL, "address");
		return;
	}
	fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, &a.sa, drive_addr_len(&a)) == -1 || listen(fd, 4096) == -1) {
		int err = -errno;

		if (fd != -1)
			close(fd);
		drive_err("listen", err, strerror(-err));
		return;
	}
	if (d->lfd >= 0)
		close(d->lfd);
	d->lfd = fd;
	drive_ok("listen", NULL);
}

/* Snapshot a new connection (timed) and announce it. */
static int
drive_adopt(struct drive *d, int fd, enum drive_mode mode, uint64_t *snap_ns)
{
	struct repair_sock rs;
	enum repair_step step;
	struct drive_conn *c;
	uint64_t t0;
	int ret;

	t0 = drive_mono_ns();
	ret = repair_snapshot(fd, &rs, false, &step);
	*snap_ns += drive_mono_ns() - t0;
	if (ret < 0) {
		printf("snapshot-failed step=%s rc=%d\n", repair_step_name(step), ret);
		close(fd);
		return ret;
	}
	if ((c = drive_conn_add(d, d->next_id, fd, &rs)) == NULL) {
		close(fd);
		return -ENOSPC;
	}
	c->mode = mode;
	drive_print_state("state", c->id, &rs, mode == DRIVE_HOLD ? "mode=hold" : NULL);
	return 0;
}

static void
cmd_accept(struct drive *d, char *args)
{
	enum drive_mode mode = DRIVE_ECHO;
	uint64_t n = 1, got = 0, snap_ns = 0, deadline;
	char *key, *val;
	int fd;

	while ((key = drive_token(&args, &val)) != NULL) {
		if (strcmp(key, "n") == 0 && drive_u64(val, DRIVE_MAX_CONNS, &n) == 0)
			continue;
		if (strcmp(key, "mode") == 0 && val != NULL && strcmp(val, "hold") == 0)
			mode = DRIVE_HOLD;
	}
	if (d->lfd < 0) {
		drive_err("accept", -EINVAL, "not listening");
		return;
	}
	deadline = drive_mono_ms() + DRIVE_WAIT_MS;
	while (got < n && drive_mono_ms() < deadline) {
		fd = accept4(d->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				break;
			(void)drive_wait(d->lfd, POLLIN, 100);
			continue;
		}
		if (drive_adopt(d, fd, mode, &snap_ns) == 0)
			got++;
	}
	if (got < n) {
		drive_err("accept", -ETIMEDOUT, "too few connections");
		return;
	}
	drive_ok("accept", "n=%" PRIu64 " snapshot_us_per=%.1f", got,
	    (double)snap_ns / 1000.0 / (double)got);
}

static void
cmd_connect(struct drive *d, char *args)
{
	union repair_addr src, dst;
	char *key, *val;
	uint64_t snap_ns = 0;
	int fd, ret, err;
	socklen_t len = sizeof(err);
	bool have_src = false, have_dst = false;

	while ((key = drive_token(&args, &val)) != NULL) {
		if (val == NULL)
			continue;
		if (strcmp(key, "src") == 0)
			have_src = drive_parse_addr(val, &src) == 0;
		else if (strcmp(key, "dst") == 0)
			have_dst = drive_parse_addr(val, &dst) == 0;
	}
	if (!have_src || !have_dst) {
		drive_err("connect", -EINVAL, "src=IP:0 dst=IP:PORT");
		return;
	}
	fd = socket(dst.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 || bind(fd, &src.sa, drive_addr_len(&src)) == -1 ||
	    (connect(fd, &dst.sa, drive_addr_len(&dst)) == -1 && errno != EINPROGRESS)) {
		ret = -errno;
		goto fail;
	}
	if ((ret = drive_wait(fd, POLLOUT, DRIVE_WAIT_MS)) < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err != 0) {
		ret = -(err != 0 ? err : errno);
		goto fail;
	}
	if ((ret = drive_adopt(d, fd, DRIVE_ECHO, &snap_ns)) < 0) {
		drive_err("connect", ret, "snapshot");
		return;
	}
	drive_ok("connect", "id=%d", d->next_id - 1);
	return;
fail:
	if (fd != -1)
		close(fd);
	drive_err("connect", ret, strerror(-ret));
}

/* "id=N" plus the rest, for the one-connection commands. */
static struct drive_conn *
drive_arg_conn(struct drive *d, char **args, const char *cmd)
{
	char *key, *val;
	uint64_t id;
	struct drive_conn *c;

	key = drive_token(args, &val);
	if (key == NULL || strcmp(key, "id") != 0 || drive_u64(val, DRIVE_MAX_CONNS, &id) < 0) {
		drive_err(cmd, -EINVAL, "id=N first");
		return NULL;
	}
	if ((c = drive_conn(d, (int)id)) == NULL)
		drive_err(cmd, -ENOENT, "no such connection");
	return c;
}

static void
cmd_relay(struct drive *d, char *args)
{
	uint64_t a = 0, b = 0;
	struct drive_conn *ca, *cb;
	char *key, *val;

	while ((key = drive_token(&args, &val)) != NULL) {
		if (strcmp(key, "a") == 0)
			(void)drive_u64(val, DRIVE_MAX_CONNS, &a);
		else if (strcmp(key, "b") == 0)
			(void)drive_u64(val, DRIVE_MAX_CONNS, &b);
	}
	ca = drive_conn(d, (int)a);
	cb = drive_conn(d, (int)b);
	if (ca == NULL || cb == NULL || ca == cb) {
		drive_err("relay", -ENOENT, "two connections");
		return;
	}
	ca->mode = cb->mode = DRIVE_RELAY;
	ca->partner = cb->id;
	cb->partner = ca->id;
	drive_ok("relay", NULL);
}

static void
cmd_mode(struct drive *d, char *args)
{
	struct drive_conn *c = drive_arg_conn(d, &args, "mode");
	char *key, *val;

	if (c == NULL)
		return;
	key = drive_token(&args, &val);
	if (key != NULL && strcmp(key, "hold") == 0)
		c->mode = DRIVE_HOLD;
	else if (key != NULL && strcmp(key, "echo") == 0)
		c->mode = DRIVE_ECHO;
	else {
		drive_err("mode", -EINVAL, "echo|hold");
		return;
	}
	drive_ok("mode", "id=%d", c->id);
}

static void
cmd_read(struct drive *d, char *args)
{
	struct drive_conn *c = drive_arg_conn(d, &args, "read");
	uint8_t buf[DRIVE_IO];
	uint64_t want = 0, got = 0, deadline;
	char *key, *val;
	ssize_t n;

	if (c == NULL)
		return;
	key = drive_token(&args, &val);
	if (key == NULL || strcmp(key, "n") != 0 || drive_u64(val, sizeof(buf), &want) < 0) {
		drive_err("read", -EINVAL, "n=N");
		return;
	}
	deadline = drive_mono_ms() + DRIVE_WAIT_MS;
	while (got < want && drive_mono_ms() < deadline) {
		n = recv(c->fd, buf, want - got, MSG_DONTWAIT);
		if (n > 0) {
			(void)drive_buf_add(&c->held, buf, (size_t)n);
			got += (uint64_t)n;
		} else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
			break;
		} else {
			(void)drive_wait(c->fd, POLLIN, 100);
		}
	}
	c->read += got;
	drive_sync(c);
	if (got < want)
		drive_err("read", -ETIMEDOUT, "short");
	else
		drive_ok("read", "id=%d n=%" PRIu64, c->id, got);
}

static void
cmd_flush(struct drive *d, char *args)
{
	struct drive_conn *c = drive_arg_conn(d, &args, "flush");
	uint64_t n;
	char *key, *val;

	if (c == NULL)
		return;
	n = c->held.len;
	key = drive_token(&args, &val);
	if (key != NULL && strcmp(key, "n") == 0 && drive_u64(val, c->held.len, &n) < 0) {
		drive_err("flush", -EINVAL, "n > held");
		return;
	}
	if (drive_buf_add(&c->out, c->held.p, n) < 0 || drive_flush(c) < 0) {
		drive_err("flush", -EIO, "write");
		return;
	}
	drive_buf_consume(&c->held, n);
	drive_ok("flush", "id=%d n=%" PRIu64 " pending=%zu", c->id, n, c->out.len);
}

static void
cmd_fresh(struct drive *d, char *args)
{
	struct drive_conn *c = drive_arg_conn(d, &args, "fresh");
	struct repair_sock now, cheap;
	enum repair_step step;
	uint64_t t0, ns;
	int ret;

	if (c == NULL)
		return;
	t0 = drive_mono_ns();
	ret = repair_snapshot(c->fd, &now, false, &step);
	ns = drive_mono_ns() - t0;
	if (ret < 0) {
		drive_err("fresh", ret, repair_step_name(step));
		return;
	}
	cheap = c->rs;
	cheap.write_seq = repair_seq_add(c->rs.write_seq, c->written);
	cheap.rcv_nxt = repair_seq_add(c->rs.rcv_nxt, c->read);
	drive_print_state("fresh", c->id, &now, NULL);
	drive_ok("fresh", "id=%d match=%d cheap_wseq=%" PRIu32 " cheap_rnxt=%" PRIu32
	    " mss_match=%d opts_match=%d us=%.1f", c->id,
	    cheap.write_seq == now.write_seq && cheap.rcv_nxt == now.rcv_nxt,
	    cheap.write_seq, cheap.rcv_nxt, cheap.mss_clamp == now.mss_clamp,
	    cheap.opts == now.opts && cheap.snd_wscale == now.snd_wscale &&
	    cheap.rcv_wscale == now.rcv_wscale, (double)ns / 1000.0);
}

static void
cmd_dump(struct drive *d, char *args)
{
	struct drive_conn *c = drive_arg_conn(d, &args, "dump");
	struct repair_sock rs;
	enum repair_step step;
	int ret;

	if (c == NULL)
		return;
	if ((ret = repair_snapshot(c->fd, &rs, true, &step)) < 0) {
		drive_err("dump", ret, repair_step_name(step));
		return;
	}
	if ((ret = repair_close_silently(c->fd)) < 0) {
		repair_sock_clear(&rs);
		drive_err("dump", ret, "close-silently");
		return;
	}
	drive_conn_drop(c);
	drive_print_state("state", c->id, &rs, NULL);
	drive_ok("dump", "id=%d rcvq=%" PRIu32 " sndq=%" PRIu32 " unsent=%" PRIu32, c->id,
	    rs.rcvq_len, rs.sndq_len, rs.sndq_unsent);
	repair_sock_clear(&rs);
}

static void
cmd_info(struct drive *d, char *args)
{
	struct drive_conn *c = drive_arg_conn(d, &args, "info");
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (c == NULL)
		return;
	if (getsockopt(c->fd, SOL_TCP, TCP_INFO, &ti, &len) == -1) {
		drive_err("info", -errno, strerror(errno));
		return;
	}
	drive_ok("info", "id=%d state=%u snd_mss=%u rcv_mss=%u options=%u snd_wscale=%u"
	    " rcv_wscale=%u unacked=%u", c->id, ti.tcpi_state, ti.tcpi_snd_mss,
	    ti.tcpi_rcv_mss, ti.tcpi_options, ti.tcpi_snd_wscale, ti.tcpi_rcv_wscale,
	    ti.tcpi_unacked);
}

static void
cmd_close(struct drive *d, char *args)
{
	struct drive_conn *c = drive_arg_conn(d, &args, "close");

	if (c == NULL)
		return;
	drive_conn_close(c, "command");
	drive_ok("close", NULL);
}

static struct drive_staged *
drive_staged_find(struct drive *d, int id)
{
	size_t i;

	for (i = 0; i < d->nstaged; i++)
		if (d->staged[i].id == id)
			return &d->staged[i];
	return NULL;
}

static void
cmd_stage(struct drive *d, char *args)
{
	struct drive_staged st, *old;
	int ret;

	if ((ret = drive_parse_state(args, &st)) < 0) {
		drive_err("stage", ret, "bad state");
		return;
	}
	if ((old = drive_staged_find(d, st.id)) != NULL) {
		/* A newer full state (a handover dump) replaces the accept-time one. */
		repair_sock_clear(&old->rs);
		*old = st;
	} else {
		if (d->nstaged == d->capstaged) {
			size_t cap = d->capstaged ? d->capstaged * 2 : 64;
			struct drive_staged *n = realloc(d->staged, cap * sizeof(*n));

			if (n == NULL) {
				repair_sock_clear(&st.rs);
				drive_err("stage", -ENOMEM, "staging");
				return;
			}
			d->staged = n;
			d->capstaged = cap;
		}
		d->staged[d->nstaged++] = st;
	}
	/* No answer: staging is a stream, like the sync channel it stands for. */
}

static void
cmd_count(struct drive *d, char *args)
{
	struct drive_staged *st;
	char *key, *val;
	uint64_t id = 0, w = 0, r = 0;

	while ((key = drive_token(&args, &val)) != NULL) {
		if (strcmp(key, "id") == 0)
			(void)drive_u64(val, DRIVE_MAX_CONNS, &id);
		else if (strcmp(key, "w") == 0)
			(void)drive_u64(val, UINT64_MAX, &w);
		else if (strcmp(key, "r") == 0)
			(void)drive_u64(val, UINT64_MAX, &r);
	}
	if ((st = drive_staged_find(d, (int)id)) == NULL) {
		drive_err("count", -ENOENT, "not staged");
		return;
	}
	st->w = w;
	st->r = r;
}

static void
cmd_relay_staged(struct drive *d, char *args)
{
	struct drive_staged *a, *b;
	char *key, *val;
	uint64_t ia = 0, ib = 0;

	while ((key = drive_token(&args, &val)) != NULL) {
		if (strcmp(key, "a") == 0)
			(void)drive_u64(val, DRIVE_MAX_CONNS, &ia);
		else if (strcmp(key, "b") == 0)
			(void)drive_u64(val, DRIVE_MAX_CONNS, &ib);
	}
	a = drive_staged_find(d, (int)ia);
	b = drive_staged_find(d, (int)ib);
	if (a == NULL || b == NULL || a == b) {
		drive_err("relay-staged", -ENOENT, "two staged connections");
		return;
	}
	a->partner = b->id;
	b->partner = a->id;
	drive_ok("relay-staged", NULL);
}

static void
cmd_watch_open(struct drive *d, char *args)
{
	unsigned idx = if_nametoindex(args);
	uint64_t t0 = drive_mono_ns();
	int ret;

	if (idx == 0) {
		drive_err("watch-open", -ENODEV, args);
		return;
	}
	repair_watch_free(d->watch);
	d->watch = NULL;
	if ((ret = repair_watch_new(idx, &d->watch)) < 0) {
		drive_err("watch-open", ret, strerror(-ret));
		return;
	}
	drive_ok("watch-open", "us=%.1f", (double)(drive_mono_ns() - t0) / 1000.0);
}

static void
cmd_garp_open(struct drive *d, char *args)
{
	struct sockaddr_ll sll;
	struct ifreq ifr;
	int fd;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", args);
	/* Protocol 0: send only, no receive hook to tear down on close. */
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd == -1 || ioctl(fd, SIOCGIFHWADDR, &ifr) == -1 ||
	    (d->garp_ifindex = (int)if_nametoindex(args)) == 0) {
		int err = -errno;

		if (fd != -1)
			close(fd);
		drive_err("garp-open", err, strerror(-err));
		return;
	}
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = d->garp_ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) == -1) {
		drive_err("garp-open", -errno, strerror(errno));
		close(fd);
		return;
	}
	memcpy(d->garp_mac, ifr.ifr_hwaddr.sa_data, 6);
	if (d->garp_fd >= 0)
		close(d->garp_fd);
	d->garp_fd = fd;
	drive_ok("garp-open", NULL);
}

/* One broadcast ARP frame announcing ip: request (op 1) or unsolicited reply (op 2). */
static int
drive_garp_send(const struct drive *d, const struct in_addr *ip, int op)
{
	uint8_t f[60];
	struct sockaddr_ll to;

	memset(f, 0, sizeof(f));
	memset(f, 0xff, 6);                          /* Ethernet: broadcast */
	memcpy(f + 6, d->garp_mac, 6);
	f[12] = 0x08, f[13] = 0x06;                  /* ARP */
	f[14] = 0, f[15] = 1;                        /* Ethernet */
	f[16] = 0x08, f[17] = 0x00;                  /* IPv4 */
	f[18] = 6, f[19] = 4;
	f[20] = 0, f[21] = (uint8_t)op;
	memcpy(f + 22, d->garp_mac, 6);              /* sender: us, the VIP */
	memcpy(f + 28, ip, 4);
	if (op == 2)
		memset(f + 32, 0xff, 6);
	memcpy(f + 38, ip, 4);                       /* target IP = sender IP */
	memset(&to, 0, sizeof(to));
	to.sll_family = AF_PACKET;
	to.sll_ifindex = d->garp_ifindex;
	to.sll_halen = 6;
	memset(to.sll_addr, 0xff, 6);
	if (sendto(d->garp_fd, f, sizeof(f), 0, (struct sockaddr *)&to, sizeof(to)) == -1)
		return -errno;
	return 0;
}

static void
cmd_takeover(struct drive *d, char *args)
{
	struct repair_watch_cfg wcfg = REPAIR_WATCH_CFG_DEFAULT;
	struct repair_restore_opts opts = REPAIR_RESTORE_OPTS_DEFAULT;
	struct repair_restored *res = NULL;
	uint64_t v, t0, t1, now;
	size_t i, fails = 0;
	bool use_watch = true, verbose = true, garp = false;
	uint64_t nowatch = UINT64_MAX;   /* one connection left out of the watch */
	struct in_addr garp_ip;
	uint64_t t2 = 0;
	char *key, *val;
	int ret;

	while ((key = drive_token(&args, &val)) != NULL) {
		if (strcmp(key, "garp") == 0 && val != NULL) {
			garp = inet_pton(AF_INET, val, &garp_ip) == 1;
			continue;
		}
		if (drive_u64(val, UINT32_MAX, &v) < 0)
			continue;
		if (strcmp(key, "watch") == 0)
			use_watch = v != 0;
		else if (strcmp(key, "hole") == 0)
			wcfg.hole_timeout_ms = (uint32_t)v;
		else if (strcmp(key, "silence") == 0)
			wcfg.silence_timeout_ms = (uint32_t)v;
		else if (strcmp(key, "verbose") == 0)
			verbose = v != 0;
		else if (strcmp(key, "nowatch") == 0)
			nowatch = v;
	}
	if (use_watch && d->watch == NULL) {
		drive_err("takeover", -EINVAL, "watch-open first");
		return;
	}
	if (garp && d->garp_fd < 0) {
		drive_err("takeover", -EINVAL, "garp-open first");
		return;
	}
	if (d->nstaged > 0 && (res = calloc(d->nstaged, sizeof(*res))) == NULL) {
		drive_err("takeover", -ENOMEM, "results");
		return;
	}
	now = drive_mono_ms();
	if (use_watch && (ret = repair_watch_arm(d->watch, &wcfg, now)) < 0) {
		free(res);
		drive_err("takeover", ret, "watch-arm");
		return;
	}
	/* The shadow state plus the synced byte counts: where the sockets are now. */
	for (i = 0; i < d->nstaged; i++) {
		struct drive_staged *st = &d->staged[i];

		st->rs.write_seq = repair_seq_add(st->rs.write_seq, st->w);
		st->rs.rcv_nxt = repair_seq_add(st->rs.rcv_nxt, st->r);
		if (use_watch && (uint64_t)st->id != nowatch &&
		    (ret = repair_watch_add(d->watch, &st->rs, (uint64_t)st->id, now)) < 0)
			printf("watch-add-failed id=%d rc=%d\n", st->id, ret);
	}
	t0 = drive_mono_ns();
	for (i = 0; i < d->nstaged; i++)
		(void)repair_restore(&d->staged[i].rs, &opts, &res[i]);
	t1 = drive_mono_ns();
	/* Only now: until the sockets exist, peers must keep sending to the old MAC. */
	if (garp) {
		if ((ret = drive_garp_send(d, &garp_ip, 1)) < 0 ||
		    (ret = drive_garp_send(d, &garp_ip, 2)) < 0)
			printf("garp-failed rc=%d\n", ret);
		t2 = drive_mono_ns();
	}

	for (i = 0; i < d->nstaged; i++) {
		struct drive_staged *st = &d->staged[i];
		struct drive_conn *c;

		if (res[i].fd < 0) {
			fails++;
			printf("restore-failed id=%d step=%s\n", st->id, repair_step_name(res[i].failed));
			continue;
		}
		if ((c = drive_conn_add(d, st->id, res[i].fd, &st->rs)) == NULL) {
			fails++;
			(void)repair_close_silently(res[i].fd);
			printf("restore-failed id=%d step=table\n", st->id);
			continue;
		}
		c->mode = st->partner >= 0 ? DRIVE_RELAY : st->mode;
		c->partner = st->partner;
		if (res[i].sndq_sent < st->rs.sndq_len) {
			(void)drive_buf_add(&c->out, st->rs.sndq + res[i].sndq_sent,
			    st->rs.sndq_len - res[i].sndq_sent);
			c->out_uncounted = c->out.len;
		}
		if (verbose)
			printf("restored id=%d sndq=%" PRIu32 " sndq_sent=%" PRIu32 " rcvq=%" PRIu32 "\n",
			    st->id, st->rs.sndq_len, res[i].sndq_sent, st->rs.rcvq_len);
	}
	drive_ok("takeover", "n=%zu fails=%zu restore_us=%.1f per_us=%.2f garp_us=%.1f",
	    d->nstaged, fails, (double)(t1 - t0) / 1000.0,
	    d->nstaged ? (double)(t1 - t0) / 1000.0 / (double)d->nstaged : 0.0,
	    garp ? (double)(t2 - t1) / 1000.0 : 0.0);
	free(res);
	/* Keep the restored state in the connections; the queues are done with. */
	for (i = 0; i < d->nstaged; i++)
		repair_sock_clear(&d->staged[i].rs);
	d->nstaged = 0;
}

static void
cmd_stats(struct drive *d)
{
	struct repair_watch_stats st;

	if (d->watch == NULL) {
		drive_err("stats", -EINVAL, "no watch");
		return;
	}
	repair_watch_get_stats(d->watch, &st);
	drive_ok("stats", "packets=%" PRIu64 " matched=%" PRIu64 " malformed=%" PRIu64
	    " kernel_drops=%" PRIu64 " pending=%zu", st.packets, st.matched, st.malformed,
	    st.kernel_drops, repair_watch_pending(d->watch));
}

static void
drive_command(struct drive *d, char *line)
{
	char *args = strchr(line, ' ');

	if (args != NULL)
		*args++ = '\0';
	else
		args = line + strlen(line);
	if (strcmp(line, "listen") == 0)
		cmd_listen(d, args);
	else if (strcmp(line, "accept") == 0)
		cmd_accept(d, args);
	else if (strcmp(line, "connect") == 0)
		cmd_connect(d, args);
	else if (strcmp(line, "relay") == 0)
		cmd_relay(d, args);
	else if (strcmp(line, "mode") == 0)
		cmd_mode(d, args);
	else if (strcmp(line, "read") == 0)
		cmd_read(d, args);
	else if (strcmp(line, "flush") == 0)
		cmd_flush(d, args);
	else if (strcmp(line, "fresh") == 0)
		cmd_fresh(d, args);
	else if (strcmp(line, "dump") == 0)
		cmd_dump(d, args);
	else if (strcmp(line, "info") == 0)
		cmd_info(d, args);
	else if (strcmp(line, "close") == 0)
		cmd_close(d, args);
	else if (strcmp(line, "stage") == 0)
		cmd_stage(d, args);
	else if (strcmp(line, "count") == 0)
		cmd_count(d, args);
	else if (strcmp(line, "relay-staged") == 0)
		cmd_relay_staged(d, args);
	else if (strcmp(line, "watch-open") == 0)
		cmd_watch_open(d, args);
	else if (strcmp(line, "garp-open") == 0)
		cmd_garp_open(d, args);
	else if (strcmp(line, "takeover") == 0)
		cmd_takeover(d, args);
	else if (strcmp(line, "stats") == 0)
		cmd_stats(d);
	else if (strcmp(line, "quit") == 0)
		d->quit = true;
	else if (line[0] != '\0')
		drive_err(line, -EINVAL, "unknown command");
}

static void
drive_stdin(struct drive *d)
{
	char buf[DRIVE_IO], *nl;
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
	size_t used;

	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			d->quit = true;
		return;
	}
	if (d->in.len + (size_t)n > DRIVE_LINE_MAX || drive_buf_add(&d->in, buf, (size_t)n) < 0) {
		d->quit = true;
		return;
	}
	while ((nl = memchr(d->in.p, '\n', d->in.len)) != NULL) {
		*nl = '\0';
		used = (size_t)(nl - (char *)d->in.p) + 1;
		drive_command(d, (char *)d->in.p);
		drive_buf_consume(&d->in, used);
	}
}

/* Verdicts of the stale-state watch: reset the stale, drop the gone. */
static void
drive_verdicts(struct drive *d)
{
	struct repair_verdict v;
	struct drive_conn *c;
	enum repair_step step;
	int ret;

	while (repair_watch_verdict(d->watch, &v)) {
		printf("verdict id=%" PRIu64 " v=%s reason=%s seen=%d seq=%" PRIu32 " ack=%" PRIu32
		    " after_ms=%" PRIu64 "\n", v.cookie, repair_verdict_name(v.verdict),
		    repair_reason_name(v.reason), v.seen, v.peer_seq, v.peer_ack, v.after_ms);
		if ((c = drive_conn(d, (int)v.cookie)) == NULL)
			continue;
		if (v.verdict == REPAIR_VERDICT_STALE) {
			struct repair_sock now = c->rs;

			now.write_seq = repair_seq_add(c->rs.write_seq, c->written);
			now.rcv_nxt = repair_seq_add(c->rs.rcv_nxt, c->read);
			ret = repair_reset(c->fd, &now, v.peer_seq, v.peer_ack, NULL, &step);
			printf("reset id=%d rc=%d step=%s\n", c->id, ret, repair_step_name(step));
			if (ret == 0 || step != REPAIR_STEP_CLOSE)
				drive_conn_drop(c);
		} else if (v.verdict == REPAIR_VERDICT_GONE) {
			drive_conn_close(c, "peer-reset");
		}
	}
}

static void
drive_loop(struct drive *d)
{
	static struct pollfd pfd[DRIVE_MAX_CONNS + 2];
	static int ids[DRIVE_MAX_CONNS + 2];
	uint64_t deadline;
	int n, i, timeout;

	while (!d->quit) {
		n = 0;
		pfd[n] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
		ids[n++] = -1;
		if (d->watch != NULL) {
			pfd[n] = (struct pollfd){ .fd = repair_watch_fd(d->watch), .events = POLLIN };
			ids[n++] = -1;
		}
		for (i = 0; i < d->next_id; i++) {
			struct drive_conn *c = &d->conns[i];
			struct drive_conn *dst;
			short ev = 0;

			if (c->fd < 0)
				continue;
			dst = drive_dest(d, c);
			if (c->mode != DRIVE_HOLD && dst != NULL && dst->out.len < DRIVE_OUT_MAX)
				ev |= POLLIN;
			if (c->out.len > 0)
				ev |= POLLOUT;
			pfd[n] = (struct pollfd){ .fd = c->fd, .events = ev };
			ids[n++] = i;
		}
		timeout = 100;
		if (d->watch != NULL && repair_watch_next_deadline(d->watch, &deadline) == 0) {
			uint64_t now = drive_mono_ms();

			timeout = deadline <= now ? 0 : (int)(deadline - now < 100 ? deadline - now : 100);
		}
		fflush(stdout);
		if (poll(pfd, (nfds_t)n, timeout) == -1 && errno != EINTR)
			break;
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))
			drive_stdin(d);
		if (d->watch != NULL) {
			int k;

			/* Readable or not: process() drains first, then applies deadlines. */
			for (k = 0; k < 1000 && repair_watch_process(d->watch, drive_mono_ms()) > 0; k++)
				;
			drive_verdicts(d);
		}
		for (i = 0; i < n; i++) {
			struct drive_conn *c;

			if (ids[i] < 0 || pfd[i].revents == 0)
				continue;
			if ((c = drive_conn(d, ids[i])) == NULL || c->fd != pfd[i].fd)
				continue;
			if ((pfd[i].revents & POLLOUT) && drive_flush(c) < 0) {
				drive_conn_close(c, "write");
				continue;
			}
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				drive_readable(d, c);
		}
	}
}

int
main(void)
{
	static struct drive d;
	size_t i;

	setvbuf(stdout, NULL, _IOFBF, 1u << 16);
	d.lfd = -1;
	d.garp_fd = -1;
	for (i = 0; i < DRIVE_MAX_CONNS; i++)
		d.conns[i].fd = -1;
	d.next_id = 1;
	(void)fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
	printf("ready\n");
	drive_loop(&d);
	fflush(stdout);
	for (i = 0; i < DRIVE_MAX_CONNS; i++)
		if (d.conns[i].fd >= 0) {
			close(d.conns[i].fd);
			drive_conn_drop(&d.conns[i]);
		}
	for (i = 0; i < d.nstaged; i++)
		repair_sock_clear(&d.staged[i].rs);
	free(d.staged);
	drive_buf_free(&d.in);
	repair_watch_free(d.watch);
	if (d.lfd >= 0)
		close(d.lfd);
	if (d.garp_fd >= 0)
		close(d.garp_fd);
	return 0;
}
