/*
 * tclient — the lab's scripted TCP client. One mode per run, every mode
 * bounded in count and time; the result is one JSON object on stdout.
 *
 *   tclient echo-check  --addr A:P [--conns N] [--msgs M] [--size B]
 *                       [--interval MS] [--parallel P] [--fin]
 *   tclient bulk        --addr A:P [--bytes S] [--conns N]
 *   tclient half-close  --addr A:P [--bytes S] [--conns N]
 *   tclient hold        --addr A:P [--conns N] [--hold S] [--no-probe]
 *   tclient http-spread --addr A:P [--requests K] [--concurrency C]
 *                       [--path /] [--close] [--host H]
 *   tclient probe       --addr A:P [--duration S] [--interval MS]
 *                       [--timeout MS] [--kind connect|echo|http] [--log F]
 *   tclient ping        --addr IP [--count N] [--timeout MS]
 * common: [--deadline S] (per connection / request) [--max-time S] (whole
 *         run) [--seed X] [--src IP] [--ready-file F] [--verbose]
 *
 * Content is a deterministic pseudo-random stream per connection (tt.h), so
 * echoes are checked byte for byte without keeping what was sent, both
 * directions run at once (a stuck reader shows up as back-pressure, not as
 * memory), and a /size/N body is checked against the shared pattern.
 * SIGTERM/SIGINT end the run early: a hold goes to its final check, other
 * modes count what is still running as "interrupted"; the report is printed
 * either way.
 *
 * This file: options, connection life cycle, the main loop and the report;
 * the modes live in tclient_stream.c, tclient_http.c and tclient_ping.c.
 */
#include "tclient.h"
#include "tt.h"

#include <errno.h>
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
#include <unistd.h>

const char *const tc_mode_names[TC_MODE_COUNT] = {
	[TC_ECHO_CHECK] = "echo-check",
	[TC_BULK] = "bulk",
	[TC_HALF_CLOSE] = "half-close",
	[TC_HOLD] = "hold",
	[TC_HTTP_SPREAD] = "http-spread",
	[TC_PROBE] = "probe",
	[TC_PING] = "ping",
};

const char *const tc_result_names[TC_R_COUNT] = {
	[TC_R_OK] = "ok",
	[TC_R_MISMATCH] = "mismatch",
	[TC_R_RESET] = "reset",
	[TC_R_EOF] = "eof",
	[TC_R_TIMEOUT] = "timeout",
	[TC_R_REFUSED] = "refused",
	[TC_R_UNREACH] = "unreachable",
	[TC_R_OTHER] = "other",
	[TC_R_INTERRUPTED] = "interrupted",
	[TC_R_STATUS] = "bad_status",
};

const char *const tc_pk_names[TC_PK_COUNT] = {
	[TC_PK_CONNECT] = "connect",
	[TC_PK_ECHO] = "echo",
	[TC_PK_HTTP] = "http",
};

static void tc_conn_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tc_launch(struct tc_ctx *ctx);

double
tc_now(const struct tc_ctx *ctx)
{
	return ev_now(ctx->loop) - ctx->t0;
}

enum tc_result
tc_errno_result(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return TC_R_REFUSED;
	case ECONNRESET:
	case EPIPE:
		return TC_R_RESET;
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
	case ETIMEDOUT:
		return TC_R_UNREACH;
	default:
		return TC_R_OTHER;
	}
}

static void
tc_note_failure(struct tc_ctx *ctx, const struct tc_conn *c, enum tc_result r,
    const char *why)
{
	if (ctx->first_failure[0] != '\0' || r == TC_R_OK)
		return;
	snprintf(ctx->first_failure, sizeof(ctx->first_failure),
	    "conn %llu: %s%s%s at %.3fs", (unsigned long long)c->id,
	    tc_result_names[r], why != NULL ? ": " : "", why != NULL ? why : "",
	    tc_now(ctx));
	if (ctx->o.verbose)
		fprintf(stderr, "tclient: %s\n", ctx->first_failure);
}

static void
tc_conn_close(struct tc_conn *c)
{
	struct tc_ctx *ctx = c->ctx;

	ev_io_stop(ctx->loop, &c->io);
	ev_timer_stop(ctx->loop, &c->deadline);
	ev_timer_stop(ctx->loop, &c->pause);
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	c->connected = false;
}

void
tc_conn_free(struct tc_conn *c)
{
	if (c == NULL)
		return;
	tc_conn_close(c);
	free(c->buf);
	free(c);
}

/*
 * The connection is over with result r: count it and close the socket. The
 * struct stays (done) until its slot is reused or the run ends, so callers
 * may still read it.
 */
void
tc_conn_end(struct tc_conn *c, enum tc_result r, const char *why)
{
	struct tc_ctx *ctx = c->ctx;

	if (c->done)
		return;
	c->done = true;
	ctx->res[r]++;
	tc_note_failure(ctx, c, r, why);
	tc_conn_close(c);
	ctx->active--;
	ctx->finished++;
}

void
tc_set_events(struct tc_conn *c, int ev)
{
	struct tc_ctx *ctx = c->ctx;

	if (ev == 0) {
		ev_io_stop(ctx->loop, &c->io);
		return;
	}
	if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == ev)
		return;
	ev_io_stop(ctx->loop, &c->io);
	ev_io_set(&c->io, c->fd, ev);
	ev_io_start(ctx->loop, &c->io);
}

static void
tc_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tc_conn *c = w->data;
	struct tc_ctx *ctx = c->ctx;
	const char *why = c->connected ? "deadline" : "connect";

	if (ctx->o.mode == TC_PROBE)
		tc_probe_done(c, TC_R_TIMEOUT);
	else if (ctx->o.mode == TC_HTTP_SPREAD)
		tc_http_request_done(c, TC_R_TIMEOUT, why);
	else
		tc_conn_end(c, TC_R_TIMEOUT, why);
	tc_launch(ctx);
	tc_maybe_finish(ctx);
}

/* Open a non-blocking connection for c; EV_WRITE tells when it is done. */
int
tc_conn_connect(struct tc_conn *c, double deadline)
{
	struct tc_ctx *ctx = c->ctx;
	int fd, one = 1;

	fd = socket(ctx->o.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (ctx->o.src_str != NULL &&
	    bind(fd, (struct sockaddr *)&ctx->o.src, ctx->o.src_len) == -1) {
		int e = errno;

		close(fd);
		return -e;
	}
	c->fd = fd;
	c->connected = false;
	c->t_start = tc_now(ctx);
	ev_io_init(&c->io, tc_conn_cb, fd, EV_WRITE);
	c->io.data = c;
	if (connect(fd, (struct sockaddr *)&ctx->o.addr, ctx->o.addr_len) == -1 &&
	    errno != EINPROGRESS)
		return -errno;
	ev_io_start(ctx->loop, &c->io);
	ev_timer_stop(ctx->loop, &c->deadline);
	ev_timer_set(&c->deadline, deadline, 0.);
	ev_timer_start(ctx->loop, &c->deadline);
	return 0;
}

struct tc_conn *
tc_conn_new(struct tc_ctx *ctx, uint64_t id)
{
	struct tc_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->ctx = ctx;
	c->id = id;
	c->fd = -1;
	ev_init(&c->deadline, tc_deadline_cb);
	c->deadline.data = c;
	ev_init(&c->pause, tc_pause_cb);
	c->pause.data = c;
	return c;
}

/* Result of a finished non-blocking connect: 0 or -errno. */
static int
tc_connect_result(struct tc_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return -errno;
	return -err;
}

/* ---------------------------------------------------------------- common */

/* A non-blocking connect finished: count a failure, or start the mode. */
static void
tc_conn_connected(struct tc_conn *c)
{
	struct tc_ctx *ctx = c->ctx;
	int ret = tc_connect_result(c);

	if (ret < 0) {
		if (ctx->o.mode == TC_PROBE)
			tc_probe_done(c, tc_errno_result(-ret));
		else if (ctx->o.mode == TC_HTTP_SPREAD)
			tc_http_request_done(c, tc_errno_result(-ret), "connect");
		else
			tc_conn_end(c, tc_errno_result(-ret), "connect");
		return;
	}
	c->connected = true;
	switch (ctx->o.mode) {
	case TC_ECHO_CHECK:
	case TC_BULK:
	case TC_HALF_CLOSE:
		tc_stream_pump(c);
		break;
	case TC_HOLD:
		tc_hold_connected(c);
		break;
	case TC_HTTP_SPREAD:
		tc_set_events(c, EV_READ | EV_WRITE);
		break;
	case TC_PROBE:
		if (ctx->o.kind == TC_PK_CONNECT)
			tc_probe_done(c, TC_R_OK);
		else
			tc_set_events(c, EV_WRITE);
		break;
	case TC_PING:
	case TC_MODE_COUNT:
		break;
	}
}

/*
 * The io callback of every connection: hand the event to its mode, then
 * start what the limits now allow and stop the loop once all is done.
 */
static void
tc_conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct tc_conn *c = w->data;
	struct tc_ctx *ctx = c->ctx;

	if (!c->connected) {
		tc_conn_connected(c);
	} else {
		switch (ctx->o.mode) {
		case TC_ECHO_CHECK:
		case TC_BULK:
		case TC_HALF_CLOSE:
			tc_stream_pump(c);
			break;
		case TC_HOLD:
			tc_hold_event(c, revents);
			break;
		case TC_HTTP_SPREAD:
			tc_http_event(c, revents);
			break;
		case TC_PROBE:
			tc_probe_event(c, revents);
			break;
		case TC_PING:
		case TC_MODE_COUNT:
			break;
		}
	}
	tc_launch(ctx);
	tc_maybe_finish(ctx);
}

/* Start connections while the mode wants more and the limits allow. */
static void
tc_launch(struct tc_ctx *ctx)
{
	const struct tc_opts *o = &ctx->o;
	uint64_t want, par;

	if (ctx->stopping || o->mode == TC_PROBE)
		return;
	if (o->mode == TC_HTTP_SPREAD) {
		want = o->requests;
		par = o->concurrency;
	} else {
		want = o->conns;
		par = o->mode == TC_HOLD ? o->conns : o->parallel;
	}
	while (ctx->active < par &&
	    (o->mode == TC_HTTP_SPREAD ? ctx->issued : ctx->started) < want) {
		struct tc_conn *c;
		uint64_t slot = ctx->started;
		int ret;

		if (o->mode == TC_HTTP_SPREAD) {
			/* Slots are reused: find a finished one. */
			for (slot = 0; slot < ctx->nconns; slot++)
				if (ctx->conns[slot] == NULL || ctx->conns[slot]->done)
					break;
		}
		tc_conn_free(ctx->conns[slot]);
		c = ctx->conns[slot] = tc_conn_new(ctx, ctx->started);
		if (c == NULL) {
			fprintf(stderr, "tclient: out of memory\n");
			exit(1);
		}
		ctx->started++;
		ctx->active++;
		if (o->mode == TC_HTTP_SPREAD) {
			c->buf = malloc(TC_HTTP_BUF);
			if (c->buf == NULL) {
				fprintf(stderr, "tclient: out of memory\n");
				exit(1);
			}
			ctx->issued++;
		} else if (o->mode != TC_HOLD) {
			tc_stream_start(ctx, c);
		}
		ret = tc_conn_connect(c, o->mode == TC_HOLD ?
		    (double)o->timeout_ms / 1000. : o->deadline);
		if (ret < 0)
			tc_conn_end(c, tc_errno_result(-ret), "connect");
		else if (o->mode == TC_HTTP_SPREAD)
			tc_http_send_request(c);
	}
	if (o->mode == TC_HOLD)
		tc_hold_ready(ctx);
}

/* Count what is still running as interrupted (or timed out) and stop. */
static void
tc_abort_all(struct tc_ctx *ctx, enum tc_result r)
{
	for (uint64_t i = 0; i < ctx->nconns; i++) {
		struct tc_conn *c = ctx->conns[i];

		if (c == NULL || c->done)
			continue;
		if (ctx->o.mode == TC_PROBE)
			tc_probe_done(c, r);
		else
			tc_conn_end(c, r, "run stopped");
	}
	ctx->stopping = true;
	ev_break(ctx->loop, EVBREAK_ALL);
}

void
tc_maybe_finish(struct tc_ctx *ctx)
{
	const struct tc_opts *o = &ctx->o;
	bool all = false;

	switch (o->mode) {
	case TC_PROBE:
		all = ctx->started >= ctx->nprobes;
		break;
	case TC_HTTP_SPREAD:
		all = ctx->issued >= o->requests || ctx->stopping;
		break;
	case TC_HOLD:
		all = ctx->hold_final;
		break;
	case TC_ECHO_CHECK:
	case TC_BULK:
	case TC_HALF_CLOSE:
	case TC_PING:
	case TC_MODE_COUNT:
		all = ctx->started >= o->conns || ctx->stopping;
		break;
	}
	if (all && ctx->active == 0)
		ev_break(ctx->loop, EVBREAK_ALL);
}

static void
tc_max_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tc_ctx *ctx = w->data;

	fprintf(stderr, "tclient: --max-time reached\n");
	tc_abort_all(ctx, TC_R_TIMEOUT);
}

static void
tc_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct tc_ctx *ctx = w->data;

	if (ctx->o.mode == TC_HOLD && !ctx->hold_final) {
		ev_timer_stop(loop, &ctx->tick);
		tc_hold_final(ctx);
		return;
	}
	tc_abort_all(ctx, TC_R_INTERRUPTED);
}

/* ---------------------------------------------------------------- report */

static void
tc_report(struct tc_ctx *ctx)
{
	const struct tc_opts *o = &ctx->o;
	double elapsed = tc_now(ctx);

	printf("{\"mode\":\"%s\",\"addr\":\"%s\",\"elapsed_ms\":%.1f", tc_mode_names[o->mode],
	    o->addr_str, elapsed * 1000.);
	if (o->mode != TC_PROBE) {
		uint64_t fail = 0;

		for (int r = 0; r < TC_R_COUNT; r++) {
			printf(",\"%s\":%llu", tc_result_names[r], (unsigned long long)ctx->res[r]);
			if (r != TC_R_OK)
				fail += ctx->res[r];
		}
		printf(",\"fail\":%llu", (unsigned long long)fail);
	}
	switch (o->mode) {
	case TC_ECHO_CHECK:
	case TC_BULK:
	case TC_HALF_CLOSE:
		printf(",\"conns\":%llu,\"started\":%llu,\"bytes_sent\":%llu,"
		    "\"bytes_received\":%llu,\"mbit_s\":%.1f",
		    (unsigned long long)o->conns, (unsigned long long)ctx->started,
		    (unsigned long long)ctx->bytes_sent,
		    (unsigned long long)ctx->bytes_recvd,
		    elapsed > 0 ? (double)ctx->bytes_recvd * 8. / elapsed / 1e6 : 0.);
		break;
	case TC_HOLD:
		printf(",\"conns\":%llu,\"established\":%llu,\"served\":%llu,"
		    "\"lost_during_hold\":%llu,\"alive_at_end\":%llu",
		    (unsigned long long)o->conns, (unsigned long long)ctx->established,
		    (unsigned long long)ctx->served, (unsigned long long)ctx->lost,
		    (unsigned long long)ctx->alive_end);
		break;
	case TC_HTTP_SPREAD:
		printf(",\"requests\":%llu,\"issued\":%llu,\"by_backend\":{",
		    (unsigned long long)o->requests, (unsigned long long)ctx->issued);
		for (int i = 0; i < ctx->nbackends; i++)
			printf("%s\"%s\":%llu", i ? "," : "", ctx->backends[i].name,
			    (unsigned long long)ctx->backends[i].n);
		printf("},\"status\":{");
		for (int i = 0; i < ctx->nstatus; i++)
			printf("%s\"%d\":%llu", i ? "," : "", ctx->status_code[i],
			    (unsigned long long)ctx->status_n[i]);
		printf("},\"req_per_s\":%.1f",
		    elapsed > 0 ? (double)ctx->finished / elapsed : 0.);
		break;
	case TC_PROBE:
		tc_report_probe(ctx);
		break;
	case TC_PING:
	case TC_MODE_COUNT:
		break;
	}
	printf(",\"first_failure\":");
	if (ctx->first_failure[0] == '\0') {
		printf("null");
	} else {
		putchar('"');
		for (const char *p = ctx->first_failure; *p; p++)
			putchar(*p == '"' || *p == '\\' ? '\'' : *p);
		putchar('"');
	}
	printf("}\n");
	fflush(stdout);
}

/* ---------------------------------------------------------------- main */

static _Noreturn void
tc_usage(void)
{
	fprintf(stderr,
	    "usage: tclient MODE --addr ADDR:PORT [options]   (see tclient.c)\n"
	    "modes: echo-check bulk half-close hold http-spread probe ping\n"
	    "  --conns N --msgs M --size B --interval MS --parallel P --fin\n"
	    "  --bytes S --hold S --no-probe --requests K --concurrency C\n"
	    "  --path P --host H --close --duration S --timeout MS\n"
	    "  --kind connect|echo|http --log FILE --count N\n"
	    "  --deadline S --max-time S --seed X --src IP --ready-file F --verbose\n");
	exit(2);
}

static uint64_t
tc_arg_u64(const char *name, const char *v, uint64_t min, uint64_t max)
{
	uint64_t x;

	if (tt_parse_u64(v, max, &x) < 0 || x < min) {
		fprintf(stderr, "tclient: --%s wants an integer in [%llu, %llu]\n", name,
		    (unsigned long long)min, (unsigned long long)max);
		exit(2);
	}
	return x;
}

static double
tc_arg_secs(const char *name, const char *v, double max)
{
	char *end;
	double x = strtod(v, &end);

	if (*v == '\0' || *end != '\0' || !(x > 0.) || x > max) {
		fprintf(stderr, "tclient: --%s wants seconds in (0, %g]\n", name, max);
		exit(2);
	}
	return x;
}

static void
tc_parse(int argc, char **argv, struct tc_opts *o)
{
	static const struct option opts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "conns", required_argument, NULL, 'n' },
		{ "msgs", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 'z' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "interval", required_argument, NULL, 'i' },
		{ "parallel", required_argument, NULL, 'P' },
		{ "fin", no_argument, NULL, 'F' },
		{ "deadline", required_argument, NULL, 'd' },
		{ "max-time", required_argument, NULL, 'M' },
		{ "seed", required_argument, NULL, 's' },
		{ "src", required_argument, NULL, 'S' },
		{ "hold", required_argument, NULL, 'H' },
		{ "no-probe", no_argument, NULL, 'N' },
		{ "requests", required_argument, NULL, 'k' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "path", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'h' },
		{ "close", no_argument, NULL, 'C' },
		{ "duration", required_argument, NULL, 'D' },
		{ "timeout", required_argument, NULL, 't' },
		{ "kind", required_argument, NULL, 'K' },
		{ "log", required_argument, NULL, 'l' },
		{ "ready-file", required_argument, NULL, 'r' },
		{ "count", required_argument, NULL, 'x' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_parallel = false, have_timeout = false, have_deadline = false;
	bool have_max = false, have_conns = false;
	int m, opt;

	if (argc < 2)
		tc_usage();
	for (m = 0; m < TC_MODE_COUNT; m++)
		if (strcmp(argv[1], tc_mode_names[m]) == 0)
			break;
	if (m == TC_MODE_COUNT)
		tc_usage();
	o->mode = (enum tc_mode)m;
	o->conns = 10;
	o->msgs = 10;
	o->size = 1024;
	o->bytes = 10u << 20;
	o->deadline = 10.;
	o->max_time = 300.;
	o->seed = 1;
	o->hold = 5.;
	o->probe = true;
	o->requests = 100;
	o->concurrency = 1;
	o->path = "/";
	o->host = "lab";
	o->duration = 5.;
	o->interval_ms = 0;
	o->timeout_ms = 500;
	o->kind = TC_PK_CONNECT;
	o->count = 3;
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'a': o->addr_str = optarg; break;
		case 'n':
			o->conns = tc_arg_u64("conns", optarg, 1, TC_MAX_CONNS);
			have_conns = true;
			break;
		case 'm': o->msgs = tc_arg_u64("msgs", optarg, 1, 1000000); break;
		case 'z': o->size = tc_arg_u64("size", optarg, 1, 1u << 24); break;
		case 'b': o->bytes = tc_arg_u64("bytes", optarg, 1, 1ull << 34); break;
		case 'i': o->interval_ms = tc_arg_u64("interval", optarg, 0, 60000); break;
		case 'P':
			o->parallel = tc_arg_u64("parallel", optarg, 1, TC_MAX_CONNS);
			have_parallel = true;
			break;
		case 'F': o->fin = true; break;
		case 'd':
			o->deadline = tc_arg_secs("deadline", optarg, 3600.);
			have_deadline = true;
			break;
		case 'M':
			o->max_time = tc_arg_secs("max-time", optarg, 86400.);
			have_max = true;
			break;
		case 's': o->seed = tc_arg_u64("seed", optarg, 0, UINT64_MAX); break;
		case 'S': o->src_str = optarg; break;
		case 'H': o->hold = tc_arg_secs("hold", optarg, 86400.); break;
		case 'N': o->probe = false; break;
		case 'k': o->requests = tc_arg_u64("requests", optarg, 1, 100000000); break;
		case 'c': o->concurrency = tc_arg_u64("concurrency", optarg, 1, 10000); break;
		case 'p': o->path = optarg; break;
		case 'h': o->host = optarg; break;
		case 'C': o->close = true; break;
		case 'D': o->duration = tc_arg_secs("duration", optarg, 3600.); break;
		case 't':
			o->timeout_ms = tc_arg_u64("timeout", optarg, 1, 600000);
			have_timeout = true;
			break;
		case 'K':
			for (m = 0; m < TC_PK_COUNT; m++)
				if (strcmp(optarg, tc_pk_names[m]) == 0)
					break;
			if (m == TC_PK_COUNT)
				tc_usage();
			o->kind = (enum tc_probe_kind)m;
			break;
		case 'l': o->log_path = optarg; break;
		case 'r': o->ready_file = optarg; break;
		case 'x': o->count = tc_arg_u64("count", optarg, 1, 10000); break;
		case 'v': o->verbose = true; break;
		default: tc_usage();
		}
	}
	if (optind != argc || o->addr_str == NULL)
		tc_usage();
	if ((o->mode == TC_BULK || o->mode == TC_HALF_CLOSE) && !have_conns)
		o->conns = 1;
	if (!have_parallel)
		o->parallel = o->conns;
	/* A connection that pauses between messages needs that time, too. */
	if (o->mode == TC_ECHO_CHECK && !have_deadline)
		o->deadline += (double)(o->msgs * o->interval_ms) / 1000.;
	if (!have_max) {
		if (o->mode == TC_HOLD)
			o->max_time = o->hold + o->deadline + 60.;
		else if (o->mode == TC_PROBE)
			o->max_time = o->duration + 60.;
		else
			o->max_time = 300. + o->deadline;
	}
	if (o->mode == TC_PROBE && o->interval_ms == 0)
		o->interval_ms = 10;
	if (o->mode == TC_HOLD && !have_timeout)
		o->timeout_ms = (uint64_t)(o->deadline * 1000.);
	if (o->mode == TC_PING) {
		char tmp[TT_ADDR_STRLEN + 8];

		/* ping takes a bare IP; reuse the parser with a dummy port. */
		snprintf(tmp, sizeof(tmp), "%s:1", o->addr_str);
		if (tt_parse_addr(tmp, &o->addr, &o->addr_len) < 0) {
			fprintf(stderr, "tclient: bad address '%s'\n", o->addr_str);
			exit(2);
		}
		return;
	}
	if (tt_parse_addr(o->addr_str, &o->addr, &o->addr_len) < 0) {
		fprintf(stderr, "tclient: bad address '%s' (want IP:PORT)\n", o->addr_str);
		exit(2);
	}
	if (o->src_str != NULL) {
		char tmp[TT_ADDR_STRLEN + 8];

		snprintf(tmp, sizeof(tmp), o->addr.ss_family == AF_INET6 ? "[%s]:1" : "%s:1",
		    o->src_str);
		if (tt_parse_addr(tmp, &o->src, &o->src_len) < 0) {
			fprintf(stderr, "tclient: bad --src '%s'\n", o->src_str);
			exit(2);
		}
		((struct sockaddr_in *)&o->src)->sin_port = 0;  /* same offset in v6 */
	}
	if (o->path[0] != '/' || strpbrk(o->path, " \r\n") != NULL ||
	    strpbrk(o->host, " \r\n") != NULL) {
		fprintf(stderr, "tclient: bad --path or --host\n");
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	struct tc_ctx *ctx;
	long nofile;
	int ret;

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return 1;
	tc_parse(argc, argv, &ctx->o);
	if (ctx->o.mode == TC_PING) {
		ret = tc_ping(&ctx->o);
		free(ctx);
		return ret;
	}
	signal(SIGPIPE, SIG_IGN);
	nofile = tt_raise_nofile();
	if (ctx->o.mode == TC_HOLD && nofile > 0 && ctx->o.conns + 16 > (uint64_t)nofile)
		fprintf(stderr, "tclient: --conns %llu is above the fd limit %ld\n",
		    (unsigned long long)ctx->o.conns, nofile);

	ctx->loop = ev_default_loop(EVFLAG_AUTO);
	ev_now_update(ctx->loop);
	ctx->t0 = ev_now(ctx->loop);

	switch (ctx->o.mode) {
	case TC_HTTP_SPREAD:
		ctx->nconns = ctx->o.concurrency;
		break;
	case TC_PROBE:
		ctx->nprobes = (uint64_t)(ctx->o.duration * 1000. / (double)ctx->o.interval_ms);
		if (ctx->nprobes == 0)
			ctx->nprobes = 1;
		ctx->nconns = ctx->nprobes;
		ctx->probes = calloc(ctx->nprobes, sizeof(*ctx->probes));
		if (ctx->probes == NULL)
			return 1;
		break;
	case TC_ECHO_CHECK:
	case TC_BULK:
	case TC_HALF_CLOSE:
	case TC_HOLD:
	case TC_PING:
	case TC_MODE_COUNT:
		ctx->nconns = ctx->o.conns;
		break;
	}
	ctx->conns = calloc(ctx->nconns, sizeof(*ctx->conns));
	if (ctx->conns == NULL)
		return 1;
	if (ctx->o.mode == TC_HTTP_SPREAD ||
	    (ctx->o.mode == TC_PROBE && ctx->o.kind == TC_PK_HTTP)) {
		int n = snprintf(ctx->request, sizeof(ctx->request),
		    "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tclient\r\n%s\r\n",
		    ctx->o.mode == TC_PROBE ? "/health" : ctx->o.path, ctx->o.host,
		    ctx->o.close || ctx->o.mode == TC_PROBE ? "Connection: close\r\n" : "");

		if (n < 0 || (size_t)n >= sizeof(ctx->request)) {
			fprintf(stderr, "tclient: request too long\n");
			return 2;
		}
		ctx->request_len = (size_t)n;
	}
	if (ctx->o.log_path != NULL) {
		ctx->log = fopen(ctx->o.log_path, "w");
		if (ctx->log == NULL) {
			perror(ctx->o.log_path);
			return 1;
		}
		fprintf(ctx->log, "# start_ms result latency_ms\n");
	}

	ev_timer_init(&ctx->max_timer, tc_max_cb, ctx->o.max_time, 0.);
	ctx->max_timer.data = ctx;
	ev_timer_start(ctx->loop, &ctx->max_timer);
	ev_signal_init(&ctx->sig_term, tc_signal_cb, SIGTERM);
	ctx->sig_term.data = ctx;
	ev_signal_start(ctx->loop, &ctx->sig_term);
	ev_signal_init(&ctx->sig_int, tc_signal_cb, SIGINT);
	ctx->sig_int.data = ctx;
	ev_signal_start(ctx->loop, &ctx->sig_int);

	if (ctx->o.mode == TC_PROBE) {
		double iv = (double)ctx->o.interval_ms / 1000.;

		ev_timer_init(&ctx->tick, tc_probe_tick, 0., iv);
		ctx->tick.data = ctx;
		ev_timer_start(ctx->loop, &ctx->tick);
	} else {
		if (ctx->o.mode == TC_HOLD) {
			ev_timer_init(&ctx->tick, tc_hold_tick, ctx->o.hold, 0.);
			ctx->tick.data = ctx;
			ev_timer_start(ctx->loop, &ctx->tick);
		}
		tc_launch(ctx);
		tc_maybe_finish(ctx);
	}
	if (!ctx->stopping)
		ev_run(ctx->loop, 0);

	tc_report(ctx);
	for (uint64_t i = 0; i < ctx->nconns; i++)
		tc_conn_free(ctx->conns[i]);
	if (ctx->log != NULL)
		fclose(ctx->log);
	ev_timer_stop(ctx->loop, &ctx->max_timer);
	ev_timer_stop(ctx->loop, &ctx->tick);
	ev_signal_stop(ctx->loop, &ctx->sig_term);
	ev_signal_stop(ctx->loop, &ctx->sig_int);
	ev_loop_destroy(ctx->loop);
	free(ctx->conns);
	free(ctx->probes);
	free(ctx);
	return 0;
}
