/*
 * tsessions — long-lived echo sessions for the session-sync tests and the
 * takeover benchmark: N idle connections and K streaming ones to one
 * address (an echo service, in the lab the VIP in front of tbackend),
 * driven in phases by commands, so that a test can place a fault between
 * two phases and then ask which sessions survived it.
 *
 *   tsessions --target A:P --conns N [--stream K] [--control PATH|-]
 *             [--size B] [--deadline S] [--connect-deadline S]
 *             [--parallel P] [--stream-rate R] [--stream-window B]
 *             [--stream-time S] [--stream-stall S] [--max-time S]
 *             [--seed X] [--verbose]
 *
 * Start-up: every connection is opened, P connects at a time, then one JSON
 * line {"cmd":"open",...} is printed. From then on the streaming
 * connections send without pause (at most R bytes/s each, at most B bytes
 * not yet echoed, for S seconds of --stream-time, then they drain), and
 * commands are read, one per line, from the control channel: stdin ("-",
 * the default; EOF there is "quit") or a FIFO, which is opened read-write so
 * that writers may come and go without an EOF. Each command prints exactly
 * one JSON line on stdout:
 *
 *   check [B]     every live idle connection sends B new bytes (default
 *                 --size) and must get back everything it ever sent — these
 *                 and whatever an earlier inflight left on the way — within
 *                 --deadline; a connection still short of it then is "hung"
 *                 (and closed)
 *   inflight [B]  every live idle connection sends B bytes and does not wait
 *                 for them: data in flight across a fault. The echo is
 *                 checked as it arrives; the next check waits for the rest
 *   stats         the counts as they are; nothing is sent
 *   quit          the counts, then exit 0
 *
 * Every connection is its own deterministic pseudo-random byte stream
 * (tt_stream_fill with a per-connection seed), so every payload is unique
 * and every byte that comes back is compared at once with what was sent at
 * that offset, without keeping a copy. A wrong byte, or more bytes than were
 * sent, is a "mismatch"; ECONNRESET/EPIPE a "reset"; an orderly close an
 * "eof"; a connect or a check that misses its deadline, or a stream that
 * makes no progress for --stream-stall seconds while bytes are outstanding,
 * "hung". A failed connection stays failed (its socket closed): every report
 * sorts each connection into exactly one of ok + the failure kinds, so they
 * add up to --conns.
 *
 * Report fields (every line): cmd, t (seconds since start), ms (time the
 * command took), conns, ok, reset, eof, hung, mismatch, refused, unreachable,
 * other, new_failures (since the command began), outstanding_conns and
 * outstanding_bytes (sent, not yet echoed), verified_bytes (all idle
 * connections, since start), first_failure_at / last_failure_at (s, or
 * null), failures (the first 10 failed connections: conn, result, at, why),
 * streams (per streaming connection: conn, state, sent, verified,
 * outstanding, max_stall_ms, stall_ms, sending, at, why), stream_ok,
 * stream_failed. check adds size, inflight_conns / inflight_bytes (echo
 * still owed when it began) and max_ms (slowest connection); inflight adds
 * size and queued_bytes (not yet accepted by the kernel).
 *
 * Bounded: --max-time (default 600 s) ends the run with {"cmd":"max-time"}
 * and exit 3; SIGTERM/SIGINT with {"cmd":"term"} and exit 0. Exit 1: set-up
 * failed (no socket, fd limit too low), 2: usage.
 */
#include "tt.h"

#include <ev.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TS_MAX_CONNS 100000u
#define TS_MAX_STREAMS 64u
#define TS_MAX_SIZE (1u << 20)
#define TS_CHUNK (64 * 1024)
#define TS_LINE_MAX 256
#define TS_REPORT_FAILURES 10
#define TS_TICK_S 0.01           /* stream pacing and stall watch */
#define TS_READS_PER_WAKE 8      /* bounded work per connection and wake-up */

enum ts_res {
	TS_OK = 0,
	TS_RESET,        /* ECONNRESET, EPIPE */
	TS_EOF,          /* the peer closed */
	TS_HUNG,         /* a deadline passed, or a stream stalled */
	TS_MISMATCH,     /* wrong bytes, or more than were sent */
	TS_REFUSED,      /* ECONNREFUSED */
	TS_UNREACH,      /* EHOSTUNREACH, ENETUNREACH, ETIMEDOUT */
	TS_OTHER,
	TS_RES_COUNT
};

static const char *const ts_res_names[TS_RES_COUNT] = {
	[TS_OK] = "ok",
	[TS_RESET] = "reset",
	[TS_EOF] = "eof",
	[TS_HUNG] = "hung",
	[TS_MISMATCH] = "mismatch",
	[TS_REFUSED] = "refused",
	[TS_UNREACH] = "unreachable",
	[TS_OTHER] = "other",
};

enum ts_cstate {
	TS_C_IDLE = 0,     /* not started yet */
	TS_C_CONNECTING,
	TS_C_UP,
	TS_C_FAILED,
	TS_C_COUNT
};

enum ts_busy {
	TS_BUSY_NONE = 0,
	TS_BUSY_OPEN,      /* the start-up connects */
	TS_BUSY_CHECK,
	TS_BUSY_COUNT
};

struct ts_opts {
	const char *target;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	uint64_t conns;
	uint64_t streams;
	const char *control;
	uint64_t size;
	double deadline;
	double connect_deadline;
	uint64_t parallel;
	uint64_t stream_rate;     /* bytes per second per stream */
	uint64_t stream_window;   /* bytes sent and not yet echoed, at most */
	double stream_time;
	double stream_stall;
	double max_time;
	uint64_t seed;
	bool verbose;
};

struct ts_ctx;

struct ts_conn {
	struct ts_ctx *ctx;
	uint32_t id;
	bool stream;
	enum ts_cstate st;
	int fd;
	ev_io io;
	ev_timer connect_timer;
	uint64_t seed;
	uint64_t want;            /* bytes of its stream queued to be sent */
	uint64_t sent;            /* accepted by the kernel */
	uint64_t recvd;           /* echoed and verified */
	/* failure */
	enum ts_res res;
	double failed_at;
	const char *why;
	/* check */
	bool in_check;
	/* stream */
	double stream_t0;
	double tokens;
	double last_progress;
	double max_stall;
	bool sending;
};

struct ts_ctx {
	struct ev_loop *loop;
	struct ts_opts o;
	double t0;
	struct ts_conn *conns;    /* o.conns idle ones, then o.streams streams */
	size_t n;
	size_t next;              /* next to start connecting */
	size_t connecting;
	size_t failed;            /* connections in TS_C_FAILED */
	double first_fail, last_fail;
	uint64_t verified;        /* idle connections, all time */

	enum ts_busy busy;
	const char *cmd;
	double cmd_t0;
	uint64_t cmd_size;
	size_t cmd_failed0;       /* ctx->failed when the command began */
	size_t check_pending;
	uint64_t check_inflight_conns, check_inflight_bytes;
	double check_max;
	ev_timer check_timer;

	ev_timer tick;
	double last_tick;
	ev_timer max_timer;
	ev_signal sig_term, sig_int;

	int ctl_fd;
	bool ctl_owned;
	bool ctl_eof;
	ev_io ctl_io;
	char line[TS_LINE_MAX];
	size_t line_len;
	bool line_too_long;
	char pending[TS_LINE_MAX * 4];  /* bytes read, not yet run */
	size_t pending_len;

	int exit_code;
	bool stopping;
	unsigned char scratch[TS_CHUNK];
	unsigned char expect[TS_CHUNK];
};

static void ts_conn_cb(struct ev_loop *loop, ev_io *w, int revents);
static void ts_launch(struct ts_ctx *ctx);
static void ts_ctl_run(struct ts_ctx *ctx);
static void ts_check_finish(struct ts_ctx *ctx);

static double
ts_now(const struct ts_ctx *ctx)
{
	return ev_now(ctx->loop) - ctx->t0;
}

static enum ts_res
ts_errno_res(int e)
{
	switch (e) {
	case ECONNRESET:
	case EPIPE:
		return TS_RESET;
	case ECONNREFUSED:
		return TS_REFUSED;
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
	case ETIMEDOUT:
		return TS_UNREACH;
	default:
		return TS_OTHER;
	}
}

/* ---------------------------------------------------------------- conns */

static void
ts_set_events(struct ts_conn *c, int ev)
{
	struct ts_ctx *ctx = c->ctx;

	if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == ev)
		return;
	ev_io_stop(ctx->loop, &c->io);
	if (ev == 0)
		return;
	ev_io_set(&c->io, c->fd, ev);
	ev_io_start(ctx->loop, &c->io);
}

/*
 * c is over: count it under r, close its socket. It stays in the table (and
 * in every report) as failed. A second call is a no-op.
 */
static void
ts_conn_fail(struct ts_conn *c, enum ts_res r, const char *why)
{
	struct ts_ctx *ctx = c->ctx;
	double now = ts_now(ctx);

	if (c->st == TS_C_FAILED)
		return;
	if (c->st == TS_C_CONNECTING) {
		ctx->connecting--;
		ev_timer_stop(ctx->loop, &c->connect_timer);
	}
	c->st = TS_C_FAILED;
	c->res = r;
	c->why = why;
	c->failed_at = now;
	ev_io_stop(ctx->loop, &c->io);
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	ctx->failed++;
	if (ctx->failed == 1)
		ctx->first_fail = now;
	ctx->last_fail = now;
	if (ctx->o.verbose)
		fprintf(stderr, "tsessions: conn %u%s: %s (%s) at %.3fs\n", c->id,
		    c->stream ? " (stream)" : "", ts_res_names[r], why, now);
	if (c->in_check) {
		c->in_check = false;
		ctx->check_pending--;
		ts_check_finish(ctx);
	}
}

/* Has c got back everything the current check waits for? */
static void
ts_check_progress(struct ts_conn *c)
{
	struct ts_ctx *ctx = c->ctx;
	double took;

	if (!c->in_check || c->recvd < c->want)
		return;
	c->in_check = false;
	took = ts_now(ctx) - ctx->cmd_t0;
	if (took > ctx->check_max)
		ctx->check_max = took;
	ctx->check_pending--;
	ts_check_finish(ctx);
}

/* Write what c may send now. Returns false if c failed. */
static bool
ts_conn_write(struct ts_conn *c, uint64_t upto)
{
	struct ts_ctx *ctx = c->ctx;

	while (c->sent < upto) {
		size_t n = upto - c->sent < TS_CHUNK ? (size_t)(upto - c->sent) : TS_CHUNK;
		ssize_t w;

		tt_stream_fill(c->seed, c->sent, ctx->scratch, n);
		w = send(c->fd, ctx->scratch, n, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return true;
			ts_conn_fail(c, ts_errno_res(errno), "send");
			return false;
		}
		c->sent += (uint64_t)w;
	}
	return true;
}

/* Read and verify what has come back. Returns false if c failed. */
static bool
ts_conn_read(struct ts_conn *c)
{
	struct ts_ctx *ctx = c->ctx;

	for (int i = 0; i < TS_READS_PER_WAKE; i++) {
		ssize_t n = recv(c->fd, ctx->scratch, TS_CHUNK, 0);

		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return true;
			ts_conn_fail(c, ts_errno_res(errno), "recv");
			return false;
		}
		if (n == 0) {
			ts_conn_fail(c, TS_EOF, "closed by the peer");
			return false;
		}
		if (c->recvd + (uint64_t)n > c->sent) {
			ts_conn_fail(c, TS_MISMATCH, "more bytes back than sent");
			return false;
		}
		tt_stream_fill(c->seed, c->recvd, ctx->expect, (size_t)n);
		if (memcmp(ctx->scratch, ctx->expect, (size_t)n) != 0) {
			ts_conn_fail(c, TS_MISMATCH, "wrong bytes back");
			return false;
		}
		c->recvd += (uint64_t)n;
		if (c->stream) {
			c->last_progress = ts_now(ctx);
		} else {
			ctx->verified += (uint64_t)n;
			ts_check_progress(c);
		}
		if ((size_t)n < TS_CHUNK)
			return true;
	}
	return true;
}

/* How far a stream may have sent by now: rate, window and its time. */
static uint64_t
ts_stream_limit(struct ts_conn *c)
{
	struct ts_ctx *ctx = c->ctx;
	uint64_t room, by_tokens;

	if (!c->sending)
		return c->sent;
	room = c->sent - c->recvd >= ctx->o.stream_window ? 0 :
	    ctx->o.stream_window - (c->sent - c->recvd);
	by_tokens = c->tokens < 1. ? 0 : (uint64_t)c->tokens;
	return c->sent + (room < by_tokens ? room : by_tokens);
}

/* Move bytes both ways on c and pick the events to wait for. */
static void
ts_conn_pump(struct ts_conn *c)
{
	uint64_t upto, before;
	int ev = EV_READ;

	if (c->st != TS_C_UP)
		return;
	if (!ts_conn_read(c))
		return;
	upto = c->stream ? ts_stream_limit(c) : c->want;
	before = c->sent;
	if (c->stream && c->sent == c->recvd && upto > c->sent)
		c->last_progress = ts_now(c->ctx);  /* nothing was owed until now */
	if (!ts_conn_write(c, upto))
		return;
	if (c->stream)
		c->tokens -= (double)(c->sent - before);
	if (c->sent < upto)
		ev |= EV_WRITE;
	ts_set_events(c, ev);
}

static int
ts_connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return -errno;
	return -err;
}

static void
ts_opened_one(struct ts_ctx *ctx)
{
	ts_launch(ctx);
	if (ctx->busy == TS_BUSY_OPEN && ctx->next == ctx->n && ctx->connecting == 0)
		ts_check_finish(ctx);
}

static void
ts_conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ts_conn *c = w->data;
	struct ts_ctx *ctx = c->ctx;
	int ret;

	if (c->st == TS_C_CONNECTING) {
		ret = ts_connect_result(c->fd);
		if (ret < 0) {
			ts_conn_fail(c, ts_errno_res(-ret), "connect");
		} else {
			ev_timer_stop(loop, &c->connect_timer);
			ctx->connecting--;
			c->st = TS_C_UP;
			if (c->stream) {
				c->stream_t0 = ts_now(ctx);
				c->last_progress = c->stream_t0;
				c->sending = true;
			}
			ts_conn_pump(c);
		}
		ts_opened_one(ctx);
		return;
	}
	ts_conn_pump(c);
}

static void
ts_connect_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ts_conn *c = w->data;

	ts_conn_fail(c, TS_HUNG, "connect deadline");
	ts_opened_one(c->ctx);
}

/* Start a non-blocking connect for c; a failure is counted on c. */
static void
ts_conn_start(struct ts_conn *c)
{
	struct ts_ctx *ctx = c->ctx;
	int fd, one = 1;

	c->st = TS_C_CONNECTING;
	ctx->connecting++;
	fd = socket(ctx->o.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		ts_conn_fail(c, ts_errno_res(errno), "socket");
		return;
	}
	c->fd = fd;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev_io_init(&c->io, ts_conn_cb, fd, EV_WRITE);
	c->io.data = c;
	if (connect(fd, (struct sockaddr *)&ctx->o.addr, ctx->o.addr_len) == -1 &&
	    errno != EINPROGRESS) {
		ts_conn_fail(c, ts_errno_res(errno), "connect");
		return;
	}
	ev_io_start(ctx->loop, &c->io);
	ev_timer_set(&c->connect_timer, ctx->o.connect_deadline, 0.);
	ev_timer_start(ctx->loop, &c->connect_timer);
}

/* Start connects while fewer than --parallel are under way. */
static void
ts_launch(struct ts_ctx *ctx)
{
	while (!ctx->stopping && ctx->next < ctx->n &&
	    ctx->connecting < ctx->o.parallel)
		ts_conn_start(&ctx->conns[ctx->next++]);
}

/* ---------------------------------------------------------------- streams */

static void
ts_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ts_ctx *ctx = w->data;
	double now = ts_now(ctx), dt = now - ctx->last_tick;
	double cap = (double)ctx->o.stream_rate * 0.1;

	ctx->last_tick = now;
	for (size_t i = (size_t)ctx->o.conns; i < ctx->n; i++) {
		struct ts_conn *c = &ctx->conns[i];
		double stall;

		if (c->st != TS_C_UP)
			continue;
		if (c->sending && now - c->stream_t0 >= ctx->o.stream_time)
			c->sending = false;
		if (c->sent > c->recvd) {
			stall = now - c->last_progress;
			if (stall > c->max_stall)
				c->max_stall = stall;
			if (stall >= ctx->o.stream_stall) {
				ts_conn_fail(c, TS_HUNG, "stream stalled");
				continue;
			}
		}
		/* A burst of at most 100 ms worth after a pause, never more. */
		c->tokens += (double)ctx->o.stream_rate * dt;
		if (c->tokens > cap && cap >= 1.)
			c->tokens = cap;
		ts_conn_pump(c);
	}
}

/* ---------------------------------------------------------------- report */

static void
ts_json_time(double t, bool known)
{
	if (known)
		printf("%.3f", t);
	else
		printf("null");
}

static void
ts_report_streams(struct ts_ctx *ctx)
{
	double now = ts_now(ctx);
	size_t ok = 0, bad = 0;

	printf(",\"streams\":[");
	for (size_t i = (size_t)ctx->o.conns; i < ctx->n; i++) {
		const struct ts_conn *c = &ctx->conns[i];
		bool failed = c->st == TS_C_FAILED;
		double stall = c->st == TS_C_UP && c->sent > c->recvd ?
		    now - c->last_progress : 0.;

		if (failed)
			bad++;
		else
			ok++;
		printf("%s{\"conn\":%u,\"state\":\"%s\",\"sent\":%llu,\"verified\":%llu,"
		    "\"outstanding\":%llu,\"max_stall_ms\":%.1f,\"stall_ms\":%.1f,"
		    "\"sending\":%s,\"at\":", i > ctx->o.conns ? "," : "", c->id,
		    failed ? ts_res_names[c->res] : "ok",
		    (unsigned long long)c->sent, (unsigned long long)c->recvd,
		    (unsigned long long)(c->sent - c->recvd),
		    1000. * (stall > c->max_stall ? stall : c->max_stall), 1000. * stall,
		    c->sending ? "true" : "false");
		ts_json_time(c->failed_at, failed);
		printf(",\"why\":\"%s\"}", failed ? c->why : "");
	}
	printf("],\"stream_ok\":%zu,\"stream_failed\":%zu", ok, bad);
}

/* One JSON line for the command just finished (ctx->cmd), on stdout. */
static void
ts_report(struct ts_ctx *ctx)
{
	size_t res[TS_RES_COUNT] = { 0 }, shown = 0, out_conns = 0;
	uint64_t out_bytes = 0, queued = 0;

	for (size_t i = 0; i < (size_t)ctx->o.conns; i++) {
		const struct ts_conn *c = &ctx->conns[i];

		if (c->st == TS_C_FAILED) {
			res[c->res]++;
			continue;
		}
		res[TS_OK]++;
		if (c->sent > c->recvd || c->want > c->sent) {
			out_conns++;
			out_bytes += c->want - c->recvd;
		}
		queued += c->want - c->sent;
	}
	printf("{\"cmd\":\"%s\",\"t\":%.3f,\"ms\":%.1f,\"conns\":%llu", ctx->cmd,
	    ts_now(ctx), 1000. * (ts_now(ctx) - ctx->cmd_t0),
	    (unsigned long long)ctx->o.conns);
	for (int r = 0; r < TS_RES_COUNT; r++)
		printf(",\"%s\":%zu", ts_res_names[r], res[r]);
	printf(",\"new_failures\":%zu,\"outstanding_conns\":%zu,\"outstanding_bytes\":%llu,"
	    "\"verified_bytes\":%llu,\"first_failure_at\":", ctx->failed - ctx->cmd_failed0,
	    out_conns, (unsigned long long)out_bytes, (unsigned long long)ctx->verified);
	ts_json_time(ctx->first_fail, ctx->failed > 0);
	printf(",\"last_failure_at\":");
	ts_json_time(ctx->last_fail, ctx->failed > 0);
	if (strcmp(ctx->cmd, "check") == 0)
		printf(",\"size\":%llu,\"inflight_conns\":%llu,\"inflight_bytes\":%llu,"
		    "\"max_ms\":%.1f", (unsigned long long)ctx->cmd_size,
		    (unsigned long long)ctx->check_inflight_conns,
		    (unsigned long long)ctx->check_inflight_bytes, 1000. * ctx->check_max);
	if (strcmp(ctx->cmd, "inflight") == 0)
		printf(",\"size\":%llu,\"queued_bytes\":%llu",
		    (unsigned long long)ctx->cmd_size, (unsigned long long)queued);
	printf(",\"failures\":[");
	for (size_t i = 0; i < (size_t)ctx->o.conns && shown < TS_REPORT_FAILURES; i++) {
		const struct ts_conn *c = &ctx->conns[i];

		if (c->st != TS_C_FAILED)
			continue;
		printf("%s{\"conn\":%u,\"result\":\"%s\",\"at\":%.3f,\"why\":\"%s\"}",
		    shown > 0 ? "," : "", c->id, ts_res_names[c->res], c->failed_at, c->why);
		shown++;
	}
	printf("]");
	ts_report_streams(ctx);
	printf("}\n");
	if (fflush(stdout) == EOF) {
		/* Nobody reads our reports any more: nothing left to do. */
		ctx->stopping = true;
		ev_break(ctx->loop, EVBREAK_ALL);
	}
}

static void
ts_cmd_begin(struct ts_ctx *ctx, const char *cmd, uint64_t size)
{
	ctx->cmd = cmd;
	ctx->cmd_t0 = ts_now(ctx);
	ctx->cmd_size = size;
	ctx->cmd_failed0 = ctx->failed;
}

/* ---------------------------------------------------------------- commands */

/* The open phase or a check is over once nothing is pending: report. */
static void
ts_check_finish(struct ts_ctx *ctx)
{
	if (ctx->busy == TS_BUSY_OPEN) {
		if (ctx->next < ctx->n || ctx->connecting > 0)
			return;
	} else if (ctx->busy == TS_BUSY_CHECK) {
		if (ctx->check_pending > 0)
			return;
		ev_timer_stop(ctx->loop, &ctx->check_timer);
	} else {
		return;
	}
	ctx->busy = TS_BUSY_NONE;
	ts_report(ctx);
	/* Lines that came in meanwhile; from the loop, not from deep in a callback. */
	ev_feed_event(ctx->loop, &ctx->ctl_io, EV_CUSTOM);
}

static void
ts_check_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ts_ctx *ctx = w->data;

	for (size_t i = 0; i < (size_t)ctx->o.conns && ctx->busy == TS_BUSY_CHECK; i++) {
		struct ts_conn *c = &ctx->conns[i];

		if (c->in_check)
			ts_conn_fail(c, TS_HUNG, "check deadline");
	}
}

/* Queue size more bytes on every live idle connection and start writing. */
static void
ts_send_all(struct ts_ctx *ctx, uint64_t size, bool check)
{
	for (size_t i = 0; i < (size_t)ctx->o.conns; i++) {
		struct ts_conn *c = &ctx->conns[i];

		if (c->st != TS_C_UP)
			continue;
		if (check && c->want > c->recvd) {
			ctx->check_inflight_conns++;
			ctx->check_inflight_bytes += c->want - c->recvd;
		}
		c->want += size;
		if (check) {
			c->in_check = true;
			ctx->check_pending++;
		}
	}
	for (size_t i = 0; i < (size_t)ctx->o.conns; i++)
		ts_conn_pump(&ctx->conns[i]);
}

static void
ts_cmd_check(struct ts_ctx *ctx, uint64_t size)
{
	ts_cmd_begin(ctx, "check", size);
	ctx->busy = TS_BUSY_CHECK;
	ctx->check_pending = 0;
	ctx->check_inflight_conns = 0;
	ctx->check_inflight_bytes = 0;
	ctx->check_max = 0.;
	ev_timer_set(&ctx->check_timer, ctx->o.deadline, 0.);
	ev_timer_start(ctx->loop, &ctx->check_timer);
	ts_send_all(ctx, size, true);
	ts_check_finish(ctx);
}

static void
ts_stop(struct ts_ctx *ctx, int code)
{
	ctx->exit_code = code;
	ctx->stopping = true;
	ev_break(ctx->loop, EVBREAK_ALL);
}

/* Parse "check 64" etc.; returns false on a bad size (reported). */
static bool
ts_line_size(struct ts_ctx *ctx, const char *arg, uint64_t *size)
{
	uint64_t v;

	*size = ctx->o.size;
	if (arg == NULL)
		return true;
	if (tt_parse_u64(arg, TS_MAX_SIZE, &v) < 0 || v == 0) {
		printf("{\"cmd\":\"error\",\"error\":\"bad size (1..%u)\"}\n", TS_MAX_SIZE);
		fflush(stdout);
		return false;
	}
	*size = v;
	return true;
}

static void
ts_run_line(struct ts_ctx *ctx, char *line)
{
	char *save = NULL, *cmd, *arg, *extra;
	uint64_t size;

	cmd = strtok_r(line, " \t\r", &save);
	if (cmd == NULL)
		return;
	arg = strtok_r(NULL, " \t\r", &save);
	extra = strtok_r(NULL, " \t\r", &save);
	if (extra != NULL) {
		printf("{\"cmd\":\"error\",\"error\":\"too many arguments\"}\n");
		fflush(stdout);
		return;
	}
	if (strcmp(cmd, "check") == 0) {
		if (ts_line_size(ctx, arg, &size))
			ts_cmd_check(ctx, size);
	} else if (strcmp(cmd, "inflight") == 0) {
		if (!ts_line_size(ctx, arg, &size))
			return;
		ts_cmd_begin(ctx, "inflight", size);
		ts_send_all(ctx, size, false);
		ts_report(ctx);
	} else if (strcmp(cmd, "stats") == 0 && arg == NULL) {
		ts_cmd_begin(ctx, "stats", 0);
		ts_report(ctx);
	} else if (strcmp(cmd, "quit") == 0 && arg == NULL) {
		ts_cmd_begin(ctx, "quit", 0);
		ts_report(ctx);
		ts_stop(ctx, 0);
	} else {
		printf("{\"cmd\":\"error\",\"error\":\"unknown command\"}\n");
		fflush(stdout);
	}
}

/* Run the complete lines read so far, one at a time, while not busy. */
static void
ts_ctl_run(struct ts_ctx *ctx)
{
	size_t i = 0;

	while (i < ctx->pending_len && ctx->busy == TS_BUSY_NONE && !ctx->stopping) {
		char ch = ctx->pending[i++];

		if (ch != '\n') {
			if (ctx->line_len + 1 < sizeof(ctx->line))
				ctx->line[ctx->line_len++] = ch;
			else
				ctx->line_too_long = true;
			continue;
		}
		ctx->line[ctx->line_len] = '\0';
		if (ctx->line_too_long) {
			printf("{\"cmd\":\"error\",\"error\":\"line too long\"}\n");
			fflush(stdout);
		} else {
			ts_run_line(ctx, ctx->line);
		}
		ctx->line_len = 0;
		ctx->line_too_long = false;
	}
	memmove(ctx->pending, ctx->pending + i, ctx->pending_len - i);
	ctx->pending_len -= i;
	if (ctx->stopping)
		return;
	if (ctx->busy == TS_BUSY_NONE && ctx->ctl_eof && ctx->pending_len == 0) {
		ts_cmd_begin(ctx, "quit", 0);
		ts_report(ctx);
		ts_stop(ctx, 0);
		return;
	}
	/* Read more only when there is room; a busy run leaves lines waiting. */
	if (ctx->pending_len < sizeof(ctx->pending) && !ctx->ctl_eof)
		ev_io_start(ctx->loop, &ctx->ctl_io);
	else
		ev_io_stop(ctx->loop, &ctx->ctl_io);
}

static void
ts_ctl_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ts_ctx *ctx = w->data;

	if ((revents & EV_READ) && !ctx->ctl_eof &&
	    ctx->pending_len < sizeof(ctx->pending)) {
		ssize_t n = read(ctx->ctl_fd, ctx->pending + ctx->pending_len,
		    sizeof(ctx->pending) - ctx->pending_len);

		if (n == 0)
			ctx->ctl_eof = true;
		else if (n > 0)
			ctx->pending_len += (size_t)n;
		else if (errno != EAGAIN && errno != EINTR)
			ctx->ctl_eof = true;
	}
	if (ctx->busy == TS_BUSY_NONE)
		ts_ctl_run(ctx);
	else if (ctx->pending_len == sizeof(ctx->pending) || ctx->ctl_eof)
		ev_io_stop(loop, w);
}

static void
ts_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct ts_ctx *ctx = w->data;

	ts_cmd_begin(ctx, "term", 0);
	ts_report(ctx);
	ts_stop(ctx, 0);
}

static void
ts_max_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ts_ctx *ctx = w->data;

	fprintf(stderr, "tsessions: --max-time reached\n");
	ts_cmd_begin(ctx, "max-time", 0);
	ts_report(ctx);
	ts_stop(ctx, 3);
}

/* ---------------------------------------------------------------- options */

static void
ts_usage(void)
{
	fprintf(stderr,
	    "usage: tsessions --target A:P --conns N [--stream K] [--control PATH|-]\n"
	    "                 [--size B] [--deadline S] [--connect-deadline S] [--parallel P]\n"
	    "                 [--stream-rate R] [--stream-window B] [--stream-time S]\n"
	    "                 [--stream-stall S] [--max-time S] [--seed X] [--verbose]\n"
	    "commands on the control channel: check [B] | inflight [B] | stats | quit\n"
	    "sizes take k or m; see the head of tests/tools/tsessions.c\n");
	exit(2);
}

static uint64_t
ts_arg_size(const char *name, const char *s, uint64_t min, uint64_t max)
{
	char num[32];
	size_t len = strlen(s);
	uint64_t mul = 1, v;

	if (len > 0 && (s[len - 1] == 'k' || s[len - 1] == 'K'))
		mul = 1024;
	else if (len > 0 && (s[len - 1] == 'm' || s[len - 1] == 'M'))
		mul = 1024 * 1024;
	if (mul > 1)
		len--;
	if (len == 0 || len >= sizeof(num))
		goto bad;
	memcpy(num, s, len);
	num[len] = '\0';
	if (tt_parse_u64(num, max / mul, &v) < 0 || v * mul < min)
		goto bad;
	return v * mul;
bad:
	fprintf(stderr, "tsessions: --%s: '%s' is not a size in [%llu, %llu]\n", name, s,
	    (unsigned long long)min, (unsigned long long)max);
	exit(2);
}

static double
ts_arg_secs(const char *name, const char *s, double min, double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min || v > max) {
		fprintf(stderr, "tsessions: --%s: '%s' is not a number of seconds in "
		    "[%g, %g]\n", name, s, min, max);
		exit(2);
	}
	return v;
}

static void
ts_parse_opts(int argc, char **argv, struct ts_opts *o)
{
	static const struct option opts[] = {
		{ "target", required_argument, NULL, 'a' },
		{ "conns", required_argument, NULL, 'n' },
		{ "stream", required_argument, NULL, 'k' },
		{ "control", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 'z' },
		{ "deadline", required_argument, NULL, 'd' },
		{ "connect-deadline", required_argument, NULL, 'D' },
		{ "parallel", required_argument, NULL, 'P' },
		{ "stream-rate", required_argument, NULL, 'r' },
		{ "stream-window", required_argument, NULL, 'w' },
		{ "stream-time", required_argument, NULL, 'T' },
		{ "stream-stall", required_argument, NULL, 'S' },
		{ "max-time", required_argument, NULL, 'M' },
		{ "seed", required_argument, NULL, 's' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	memset(o, 0, sizeof(*o));
	o->conns = 200;
	o->streams = 0;
	o->control = "-";
	o->size = 64;
	o->deadline = 5.;
	o->connect_deadline = 10.;
	o->parallel = 256;
	o->stream_rate = 2u << 20;
	o->stream_window = 256u << 10;
	o->stream_time = 120.;
	o->stream_stall = 10.;
	o->max_time = 600.;
	o->seed = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'a': o->target = optarg; break;
		case 'n': o->conns = ts_arg_size("conns", optarg, 0, TS_MAX_CONNS); break;
		case 'k': o->streams = ts_arg_size("stream", optarg, 0, TS_MAX_STREAMS); break;
		case 'c': o->control = optarg; break;
		case 'z': o->size = ts_arg_size("size", optarg, 1, TS_MAX_SIZE); break;
		case 'd': o->deadline = ts_arg_secs("deadline", optarg, 0.01, 3600.); break;
		case 'D':
			o->connect_deadline = ts_arg_secs("connect-deadline", optarg, 0.01, 3600.);
			break;
		case 'P': o->parallel = ts_arg_size("parallel", optarg, 1, TS_MAX_CONNS); break;
		case 'r':
			o->stream_rate = ts_arg_size("stream-rate", optarg, 1024, 1ull << 30);
			break;
		case 'w':
			o->stream_window = ts_arg_size("stream-window", optarg, 1024, 64u << 20);
			break;
		case 'T': o->stream_time = ts_arg_secs("stream-time", optarg, 0., 86400.); break;
		case 'S': o->stream_stall = ts_arg_secs("stream-stall", optarg, 0.1, 3600.); break;
		case 'M': o->max_time = ts_arg_secs("max-time", optarg, 1., 86400.); break;
		case 's': o->seed = ts_arg_size("seed", optarg, 0, UINT64_MAX); break;
		case 'v': o->verbose = true; break;
		default: ts_usage();
		}
	}
	if (optind != argc || o->target == NULL || o->conns + o->streams == 0)
		ts_usage();
	if (tt_parse_addr(o->target, &o->addr, &o->addr_len) < 0) {
		fprintf(stderr, "tsessions: --target: '%s' is not ADDR:PORT\n", o->target);
		exit(2);
	}
}

/* ---------------------------------------------------------------- main */

static int
ts_open_control(struct ts_ctx *ctx)
{
	int fl;

	if (strcmp(ctx->o.control, "-") == 0) {
		ctx->ctl_fd = STDIN_FILENO;
	} else {
		/* Read-write: the FIFO always has a writer (us), so no EOF between
		 * the test's writes. */
		ctx->ctl_fd = open(ctx->o.control, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (ctx->ctl_fd == -1)
			return -errno;
		ctx->ctl_owned = true;
	}
	fl = fcntl(ctx->ctl_fd, F_GETFL);
	if (fl == -1 || fcntl(ctx->ctl_fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -errno;
	return 0;
}

int
main(int argc, char **argv)
{
	struct ts_ctx *ctx;
	long nofile;
	int ret, code = 1;

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL) {
		fprintf(stderr, "tsessions: out of memory\n");
		return 1;
	}
	ts_parse_opts(argc, argv, &ctx->o);
	signal(SIGPIPE, SIG_IGN);
	nofile = tt_raise_nofile();
	if (nofile < 0 || (uint64_t)nofile < ctx->o.conns + ctx->o.streams + 16) {
		fprintf(stderr, "tsessions: the fd limit (%ld) is too low for %llu "
		    "connections\n", nofile,
		    (unsigned long long)(ctx->o.conns + ctx->o.streams));
		goto free_ctx;
	}
	ctx->n = (size_t)(ctx->o.conns + ctx->o.streams);
	ctx->conns = calloc(ctx->n, sizeof(*ctx->conns));
	if (ctx->conns == NULL) {
		fprintf(stderr, "tsessions: out of memory\n");
		goto free_ctx;
	}
	if ((ret = ts_open_control(ctx)) < 0) {
		fprintf(stderr, "tsessions: --control %s: %s\n", ctx->o.control, strerror(-ret));
		goto free_conns;
	}
	ctx->loop = ev_loop_new(EVFLAG_AUTO);
	if (ctx->loop == NULL) {
		fprintf(stderr, "tsessions: no event loop\n");
		goto close_control;
	}
	ev_now_update(ctx->loop);
	ctx->t0 = ev_now(ctx->loop);
	for (size_t i = 0; i < ctx->n; i++) {
		struct ts_conn *c = &ctx->conns[i];

		c->ctx = ctx;
		c->id = (uint32_t)i;
		c->stream = i >= ctx->o.conns;
		c->fd = -1;
		c->seed = ctx->o.seed * 1000003u + i;
		ev_init(&c->io, ts_conn_cb);
		c->io.data = c;
		ev_init(&c->connect_timer, ts_connect_timeout_cb);
		c->connect_timer.data = c;
	}

	ev_init(&ctx->check_timer, ts_check_timeout_cb);
	ctx->check_timer.data = ctx;
	ev_timer_init(&ctx->tick, ts_tick_cb, TS_TICK_S, TS_TICK_S);
	ctx->tick.data = ctx;
	ev_timer_start(ctx->loop, &ctx->tick);
	ev_timer_init(&ctx->max_timer, ts_max_cb, ctx->o.max_time, 0.);
	ctx->max_timer.data = ctx;
	ev_timer_start(ctx->loop, &ctx->max_timer);
	ev_signal_init(&ctx->sig_term, ts_signal_cb, SIGTERM);
	ctx->sig_term.data = ctx;
	ev_signal_start(ctx->loop, &ctx->sig_term);
	ev_signal_init(&ctx->sig_int, ts_signal_cb, SIGINT);
	ctx->sig_int.data = ctx;
	ev_signal_start(ctx->loop, &ctx->sig_int);
	/* Not started before the open phase is over: commands wait for it. */
	ev_io_init(&ctx->ctl_io, ts_ctl_cb, ctx->ctl_fd, EV_READ);
	ctx->ctl_io.data = ctx;

	ts_cmd_begin(ctx, "open", 0);
	ctx->busy = TS_BUSY_OPEN;
	ts_launch(ctx);
	ts_check_finish(ctx);
	if (!ctx->stopping)
		ev_run(ctx->loop, 0);
	code = ctx->exit_code;

	for (size_t i = 0; i < ctx->n; i++) {
		struct ts_conn *c = &ctx->conns[i];

		ev_io_stop(ctx->loop, &c->io);
		ev_timer_stop(ctx->loop, &c->connect_timer);
		if (c->fd != -1)
			close(c->fd);
	}
	ev_io_stop(ctx->loop, &ctx->ctl_io);
	ev_timer_stop(ctx->loop, &ctx->check_timer);
	ev_timer_stop(ctx->loop, &ctx->tick);
	ev_timer_stop(ctx->loop, &ctx->max_timer);
	ev_signal_stop(ctx->loop, &ctx->sig_term);
	ev_signal_stop(ctx->loop, &ctx->sig_int);
	ev_loop_destroy(ctx->loop);
close_control:
	if (ctx->ctl_owned)
		close(ctx->ctl_fd);
free_conns:
	free(ctx->conns);
free_ctx:
	free(ctx);
	return code;
}
