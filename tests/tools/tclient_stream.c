/* tclient_stream: echo-check, bulk, half-close and hold — see tclient.h */
#include "tclient.h"
#include "tt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

void
tc_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tc_conn *c = w->data;

	c->paused = false;
	tc_set_events(c, EV_READ | EV_WRITE);
}

/*
 * Move bytes both ways for a stream connection and check what comes back.
 * Returns true if the connection ended.
 */
bool
tc_stream_pump(struct tc_conn *c)
{
	struct tc_ctx *ctx = c->ctx;
	uint64_t limit;
	int ev = EV_READ;

	/* Write: one message at a time, or everything for bulk. */
	limit = (c->recvd / c->msg + 1) * c->msg;
	if (limit > c->total)
		limit = c->total;
	while (!c->paused && c->sent < limit) {
		size_t n = limit - c->sent < TC_CHUNK ? (size_t)(limit - c->sent) : TC_CHUNK;
		ssize_t w;

		tt_stream_fill(c->seed, c->sent, ctx->scratch, n);
		w = send(c->fd, ctx->scratch, n, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			tc_conn_end(c, tc_errno_result(errno), "send");
			return true;
		}
		c->sent += (uint64_t)w;
		ctx->bytes_sent += (uint64_t)w;
	}
	if (c->sent == c->total && ctx->o.fin && !c->fin_sent) {
		shutdown(c->fd, SHUT_WR);
		c->fin_sent = true;
	}

	/* Read and check, a bounded number of chunks per wake-up. */
	for (int i = 0; i < 8; i++) {
		ssize_t n = recv(c->fd, ctx->scratch, TC_CHUNK, 0);

		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			tc_conn_end(c, tc_errno_result(errno), "recv");
			return true;
		}
		if (n == 0) {
			char why[64];

			if (c->recvd == c->total && c->fin_sent) {
				tc_conn_end(c, TC_R_OK, NULL);
				return true;
			}
			snprintf(why, sizeof(why), "after %llu of %llu bytes",
			    (unsigned long long)c->recvd, (unsigned long long)c->total);
			tc_conn_end(c, TC_R_EOF, why);
			return true;
		}
		if (c->recvd + (uint64_t)n > c->sent) {
			tc_conn_end(c, TC_R_MISMATCH, "more bytes back than sent");
			return true;
		}
		tt_stream_fill(c->seed, c->recvd, ctx->expect, (size_t)n);
		if (memcmp(ctx->scratch, ctx->expect, (size_t)n) != 0) {
			char why[64];
			size_t at = 0;

			while (ctx->scratch[at] == ctx->expect[at])
				at++;
			snprintf(why, sizeof(why), "at byte %llu",
			    (unsigned long long)(c->recvd + at));
			tc_conn_end(c, TC_R_MISMATCH, why);
			return true;
		}
		c->recvd += (uint64_t)n;
		ctx->bytes_recvd += (uint64_t)n;
	}
	if (c->recvd == c->total && !ctx->o.fin) {
		tc_conn_end(c, TC_R_OK, NULL);
		return true;
	}
	/* Between messages: wait --interval before sending the next one. */
	if (ctx->o.interval_ms > 0 && c->recvd == c->sent && c->recvd < c->total &&
	    c->recvd % c->msg == 0 && c->recvd > 0 && !c->paused &&
	    c->sent == (c->recvd / c->msg) * c->msg) {
		c->paused = true;
		ev_timer_set(&c->pause, (double)ctx->o.interval_ms / 1000., 0.);
		ev_timer_start(ctx->loop, &c->pause);
	}
	limit = (c->recvd / c->msg + 1) * c->msg;
	if (!c->paused && c->sent < (limit < c->total ? limit : c->total))
		ev |= EV_WRITE;
	tc_set_events(c, ev);
	return false;
}

void
tc_stream_start(struct tc_ctx *ctx, struct tc_conn *c)
{
	const struct tc_opts *o = &ctx->o;

	c->seed = o->seed * 1000003u + c->id;
	if (o->mode == TC_ECHO_CHECK) {
		c->msg = o->size;
		c->total = o->size * o->msgs;
	} else {
		c->msg = o->bytes;
		c->total = o->bytes;
	}
}

void
tc_hold_ready(struct tc_ctx *ctx)
{
	FILE *f;
	char tmp[4096];

	if (ctx->ready_written || ctx->started < ctx->o.conns)
		return;
	/* Every connection has either failed or been established (and served). */
	for (uint64_t i = 0; i < ctx->nconns; i++) {
		struct tc_conn *c = ctx->conns[i];

		if (c != NULL && !c->done && (!c->connected || (ctx->o.probe && !c->served)))
			return;
	}
	ctx->ready_written = true;
	fprintf(stderr, "{\"event\":\"ready\",\"established\":%llu,\"served\":%llu}\n",
	    (unsigned long long)ctx->established, (unsigned long long)ctx->served);
	if (ctx->o.ready_file == NULL)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", ctx->o.ready_file);
	f = fopen(tmp, "w");
	if (f == NULL)
		return;
	fprintf(f, "{\"established\":%llu,\"served\":%llu}\n",
	    (unsigned long long)ctx->established, (unsigned long long)ctx->served);
	fclose(f);
	rename(tmp, ctx->o.ready_file);
}

bool
tc_hold_event(struct tc_conn *c, int revents)
{
	struct tc_ctx *ctx = c->ctx;
	char b[16];
	ssize_t n;

	if (c->final_probe && (revents & EV_WRITE)) {
		n = send(c->fd, "e", 1, MSG_NOSIGNAL);
		if (n == 1) {
			tc_set_events(c, EV_READ);
			return false;
		}
		tc_conn_end(c, n == -1 ? tc_errno_result(errno) : TC_R_OTHER, "final send");
		return true;
	}
	if (!(revents & EV_READ))
		return false;
	n = recv(c->fd, b, sizeof(b), 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return false;
	if (n <= 0) {
		enum tc_result r = n == 0 ? TC_R_EOF : tc_errno_result(errno);

		if (c->served || !ctx->o.probe) {
			c->lost = true;
			ctx->lost++;
		}
		tc_conn_end(c, r, ctx->hold_final ? "final check" : "during hold");
		tc_hold_ready(ctx);
		return true;
	}
	if (c->final_probe) {
		ctx->alive_end++;
		tc_conn_end(c, n == 1 && b[0] == 'e' ? TC_R_OK : TC_R_MISMATCH, "final echo");
		return true;
	}
	if (ctx->o.probe && !c->served && n == 1 && b[0] == 'h') {
		c->served = true;
		ctx->served++;
		/* Held idle from now on: only a close or reset can wake us. */
		ev_timer_stop(ctx->loop, &c->deadline);
		tc_hold_ready(ctx);
		return false;
	}
	tc_conn_end(c, TC_R_MISMATCH, "unexpected bytes while holding");
	return true;
}

void
tc_hold_connected(struct tc_conn *c)
{
	struct tc_ctx *ctx = c->ctx;

	ctx->established++;
	if (ctx->o.probe) {
		if (send(c->fd, "h", 1, MSG_NOSIGNAL) != 1) {
			tc_conn_end(c, tc_errno_result(errno), "probe send");
			return;
		}
	} else {
		ev_timer_stop(ctx->loop, &c->deadline);
	}
	tc_set_events(c, EV_READ);
	tc_hold_ready(ctx);
}

/* End of the hold: every live connection must still echo one byte. */
void
tc_hold_final(struct tc_ctx *ctx)
{
	ctx->hold_final = true;
	for (uint64_t i = 0; i < ctx->nconns; i++) {
		struct tc_conn *c = ctx->conns[i];

		if (c == NULL || c->done)
			continue;
		if (!c->connected || (ctx->o.probe && !c->served)) {
			tc_conn_end(c, TC_R_TIMEOUT, "not established by end of hold");
			continue;
		}
		if (!ctx->o.probe) {
			ctx->alive_end++;
			tc_conn_end(c, TC_R_OK, NULL);
			continue;
		}
		c->final_probe = true;
		tc_set_events(c, EV_WRITE);
		ev_timer_set(&c->deadline, TC_FINAL_CHECK_S, 0.);
		ev_timer_start(ctx->loop, &c->deadline);
	}
	tc_maybe_finish(ctx);
}

void
tc_hold_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tc_ctx *ctx = w->data;

	if (!ctx->hold_final)
		tc_hold_final(ctx);
}
