/* tclient_http: http-spread and probe — see tclient.h */
#include "tclient.h"
#include "tt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static void
tc_http_count(struct tc_ctx *ctx, const struct tc_conn *c)
{
	int i;

	for (i = 0; i < ctx->nstatus; i++)
		if (ctx->status_code[i] == c->status)
			break;
	if (i == ctx->nstatus && ctx->nstatus < TC_MAX_STATUS) {
		ctx->status_code[i] = c->status;
		ctx->nstatus++;
	}
	if (i < ctx->nstatus)
		ctx->status_n[i]++;
	if (c->backend[0] == '\0')
		return;
	for (i = 0; i < ctx->nbackends; i++)
		if (strcmp(ctx->backends[i].name, c->backend) == 0)
			break;
	if (i == ctx->nbackends && ctx->nbackends < TC_MAX_BACKENDS) {
		snprintf(ctx->backends[i].name, sizeof(ctx->backends[i].name), "%s",
		    c->backend);
		ctx->nbackends++;
	}
	if (i < ctx->nbackends)
		ctx->backends[i].n++;
}

/* Keep a backend name only if it is safe to print inside JSON. */
static void
tc_set_backend(struct tc_conn *c, const char *v, size_t n)
{
	size_t i;

	if (n >= sizeof(c->backend))
		n = sizeof(c->backend) - 1;
	for (i = 0; i < n; i++) {
		char ch = v[i];

		c->backend[i] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ?
		    ch : '?';
	}
	c->backend[i] = '\0';
}

/* No X-Backend header: take the first body line ("be1\n") as the name. */
static void
tc_body_name(struct tc_conn *c, const char *data, size_t n)
{
	const char *nl;

	if (c->backend[0] != '\0' || c->body_got != 0 || c->body_pattern)
		return;
	nl = memchr(data, '\n', n);
	if (nl != NULL)
		tc_set_backend(c, data, (size_t)(nl - data));
}

/*
 * Parse a complete response head in c->buf[0..hlen). Returns 0 or -EINVAL.
 */
static int
tc_http_head(struct tc_conn *c, size_t hlen)
{
	const char *p = c->buf, *end = c->buf + hlen, *eol;
	bool have_len = false;

	if (hlen < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
		return -EINVAL;
	c->status = atoi(p + 9);
	if (c->status < 100 || c->status > 599)
		return -EINVAL;
	c->resp_close = p[7] == '0';
	c->backend[0] = '\0';
	eol = memchr(p, '\n', hlen);
	for (p = eol + 1; p < end; p = eol + 1) {
		const char *colon, *v;
		size_t vn;

		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			break;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (colon == NULL)
			continue;
		v = colon + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		vn = (size_t)(eol - v);
		if (vn > 0 && v[vn - 1] == '\r')
			vn--;
		if (colon - p == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
			char num[24];
			uint64_t len;

			if (vn == 0 || vn >= sizeof(num))
				return -EINVAL;
			memcpy(num, v, vn);
			num[vn] = '\0';
			if (tt_parse_u64(num, UINT64_MAX / 2, &len) < 0)
				return -EINVAL;
			c->body_len = len;
			have_len = true;
		} else if (colon - p == 9 && strncasecmp(p, "X-Backend", 9) == 0) {
			tc_set_backend(c, v, vn);
		} else if (colon - p == 10 && strncasecmp(p, "Connection", 10) == 0) {
			if (vn >= 5 && strncasecmp(v, "close", 5) == 0)
				c->resp_close = true;
			else if (vn >= 10 && strncasecmp(v, "keep-alive", 10) == 0)
				c->resp_close = false;
		} else if (colon - p == 17 &&
		    strncasecmp(p, "Transfer-Encoding", 17) == 0) {
			return -EINVAL;  /* nobody in the lab sends chunked to us */
		}
	}
	/* Only a 2xx body of /size/N is the pattern; errors carry text. */
	c->body_pattern = c->status >= 200 && c->status <= 299 &&
	    strncmp(c->ctx->o.path, "/size/", 6) == 0;
	if (!have_len) {
		/* 1xx/204/304 have no body; anything else must say how long. */
		if (c->status != 204 && c->status != 304)
			return -EINVAL;
		c->body_len = 0;
	}
	return 0;
}

void
tc_http_send_request(struct tc_conn *c)
{
	c->req_open = true;
	c->req_off = 0;
	c->req_len = c->ctx->request_len;
	c->head_done = false;
	c->len = 0;
	c->body_len = 0;
	c->body_got = 0;
	c->status = 0;
	c->backend[0] = '\0';
	ev_timer_stop(c->ctx->loop, &c->deadline);
	ev_timer_set(&c->deadline, c->ctx->o.deadline, 0.);
	ev_timer_start(c->ctx->loop, &c->deadline);
	tc_set_events(c, EV_READ | EV_WRITE);
}

/* The request on c ended with r: count it, then next request or next conn. */
bool
tc_http_request_done(struct tc_conn *c, enum tc_result r, const char *why)
{
	struct tc_ctx *ctx = c->ctx;
	bool reuse;
	char st[32];

	if (r == TC_R_OK && (c->status < 200 || c->status > 299)) {
		r = TC_R_STATUS;
		snprintf(st, sizeof(st), "status %d", c->status);
		why = st;
	}
	if (c->status != 0)
		tc_http_count(ctx, c);
	reuse = r == TC_R_OK && !c->resp_close && !ctx->o.close &&
	    ctx->issued < ctx->o.requests && !ctx->stopping;
	c->req_open = false;
	if (!reuse) {
		tc_conn_end(c, r, why);
		return true;
	}
	ctx->res[r]++;
	ctx->finished++;
	ctx->issued++;
	tc_http_send_request(c);
	return false;
}

bool
tc_http_event(struct tc_conn *c, int revents)
{
	struct tc_ctx *ctx = c->ctx;

	if ((revents & EV_WRITE) && c->req_off < c->req_len) {
		ssize_t n = send(c->fd, ctx->request + c->req_off,
		    c->req_len - c->req_off, MSG_NOSIGNAL);

		if (n == -1 && errno != EAGAIN && errno != EINTR)
			return tc_http_request_done(c, tc_errno_result(errno), "send");
		if (n > 0)
			c->req_off += (size_t)n;
		if (c->req_off == c->req_len)
			tc_set_events(c, EV_READ);
	}
	if (!(revents & EV_READ))
		return false;
	for (int i = 0; i < 8; i++) {
		ssize_t n;

		if (c->head_done) {
			/* Body: checked against the pattern, not kept. */
			uint64_t want = c->body_len - c->body_got;

			if (want == 0)
				break;
			n = recv(c->fd, ctx->scratch, want < TC_CHUNK ? (size_t)want : TC_CHUNK, 0);
			if (n > 0) {
				if (c->body_pattern) {
					tt_pattern_fill((char *)ctx->expect, (size_t)n, c->body_got);
					if (memcmp(ctx->scratch, ctx->expect, (size_t)n) != 0)
						return tc_http_request_done(c, TC_R_MISMATCH,
						    "body differs from pattern");
				}
				tc_body_name(c, (char *)ctx->scratch, (size_t)n);
				c->body_got += (uint64_t)n;
			}
		} else {
			n = recv(c->fd, c->buf + c->len, TC_HTTP_BUF - c->len, 0);
			if (n > 0) {
				const char *eoh;
				size_t hlen, rest;

				c->len += (size_t)n;
				eoh = memmem(c->buf, c->len, "\r\n\r\n", 4);
				if (eoh == NULL) {
					if (c->len == TC_HTTP_BUF)
						return tc_http_request_done(c, TC_R_MISMATCH,
						    "response head too long");
					continue;
				}
				hlen = (size_t)(eoh - c->buf) + 4;
				if (tc_http_head(c, hlen) < 0)
					return tc_http_request_done(c, TC_R_MISMATCH,
					    "bad response head");
				c->head_done = true;
				rest = c->len - hlen;
				if (rest > c->body_len)
					return tc_http_request_done(c, TC_R_MISMATCH,
					    "more bytes than Content-Length");
				if (rest > 0) {
					if (c->body_pattern) {
						tt_pattern_fill((char *)ctx->expect, rest, 0);
						if (memcmp(c->buf + hlen, ctx->expect, rest) != 0)
							return tc_http_request_done(c,
							    TC_R_MISMATCH, "body differs from pattern");
					}
					c->body_got = 0;
					tc_body_name(c, c->buf + hlen, rest);
				}
				c->body_got = rest;
			}
		}
		if (n == 0) {
			char why[64];

			snprintf(why, sizeof(why), "%s",
			    c->head_done ? "in body" : "before response");
			return tc_http_request_done(c, TC_R_EOF, why);
		}
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			return tc_http_request_done(c, tc_errno_result(errno), "recv");
		}
		if (c->head_done && c->body_got == c->body_len)
			break;
	}
	if (c->head_done && c->body_got == c->body_len)
		return tc_http_request_done(c, TC_R_OK, NULL);
	return false;
}

void
tc_probe_done(struct tc_conn *c, enum tc_result r)
{
	struct tc_ctx *ctx = c->ctx;
	struct tc_probe_rec *rec = &ctx->probes[c->probe_idx];

	rec->result = (unsigned char)r;
	rec->latency_ms = (float)((tc_now(ctx) - rec->start) * 1000.);
	if (ctx->log != NULL)
		fprintf(ctx->log, "%.3f %s %.2f\n", rec->start * 1000., tc_result_names[r],
		    (double)rec->latency_ms);
	tc_conn_end(c, r, NULL);
}

bool
tc_probe_event(struct tc_conn *c, int revents)
{
	struct tc_ctx *ctx = c->ctx;
	ssize_t n;

	if (revents & EV_WRITE) {
		const char *req = ctx->o.kind == TC_PK_ECHO ? "p" : ctx->request;
		size_t len = ctx->o.kind == TC_PK_ECHO ? 1 : ctx->request_len;

		/* Both requests are tiny: they go out whole or not at all. */
		n = send(c->fd, req, len, MSG_NOSIGNAL);
		if (n != (ssize_t)len) {
			tc_probe_done(c, n == -1 ? tc_errno_result(errno) : TC_R_OTHER);
			return true;
		}
		tc_set_events(c, EV_READ);
		return false;
	}
	n = recv(c->fd, c->pbuf + c->plen, 12 - c->plen, 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return false;
	if (n <= 0) {
		tc_probe_done(c, n == 0 ? TC_R_EOF : tc_errno_result(errno));
		return true;
	}
	c->plen += (size_t)n;
	if (ctx->o.kind == TC_PK_ECHO) {
		tc_probe_done(c, c->pbuf[0] == 'p' ? TC_R_OK : TC_R_MISMATCH);
		return true;
	}
	/* http: the status line decides; 12 bytes hold "HTTP/1.x NNN". */
	if (c->plen < 12)
		return false;
	tc_probe_done(c, strncmp(c->pbuf, "HTTP/1.", 7) == 0 && c->pbuf[9] == '2' ?
	    TC_R_OK : TC_R_MISMATCH);
	return true;
}

void
tc_probe_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tc_ctx *ctx = w->data;
	struct tc_conn *c;
	uint64_t i = ctx->started;
	int ret;

	if (ctx->stopping || i >= ctx->nprobes) {
		ev_timer_stop(loop, w);
		tc_maybe_finish(ctx);
		return;
	}
	c = tc_conn_new(ctx, i);
	if (c == NULL) {
		fprintf(stderr, "tclient: out of memory\n");
		exit(1);
	}
	ctx->conns[i] = c;
	c->probe_idx = i;
	ctx->probes[i].start = tc_now(ctx);
	ctx->started++;
	ctx->active++;
	ret = tc_conn_connect(c, (double)ctx->o.timeout_ms / 1000.);
	if (ret < 0) {
		tc_probe_done(c, tc_errno_result(-ret));
		tc_conn_free(c);
		ctx->conns[i] = NULL;
	}
	/* Free the probes that are over, so at most timeout/interval stay open. */
	for (uint64_t j = i >= 4096 ? i - 4096 : 0; j < i; j++) {
		if (ctx->conns[j] != NULL && ctx->conns[j]->done) {
			tc_conn_free(ctx->conns[j]);
			ctx->conns[j] = NULL;
		}
	}
	if (ctx->started >= ctx->nprobes) {
		ev_timer_stop(loop, w);
		tc_maybe_finish(ctx);
	}
}

void
tc_report_probe(struct tc_ctx *ctx)
{
	struct { double start, dur; bool recovered; } top[TC_MAX_OUTAGES];
	int ntop = 0;
	uint64_t ok = 0, i = 0, n = ctx->started, outages = 0;
	double longest = 0., first_fail = -1., last_fail = -1.;
	bool recovered_all = true;

	for (uint64_t k = 0; k < n; k++)
		if (ctx->probes[k].result == TC_R_OK)
			ok++;
	/*
	 * An outage runs from the start of its first failed probe to the start
	 * of the first probe that succeeds after it (or to the end of the run,
	 * "recovered": false). Probes overlap, so a hung connect does not hide
	 * the ones launched after it.
	 */
	while (i < n) {
		uint64_t j;
		double start, dur;
		bool rec;

		if (ctx->probes[i].result == TC_R_OK) {
			i++;
			continue;
		}
		for (j = i; j < n && ctx->probes[j].result != TC_R_OK; j++)
			;
		start = ctx->probes[i].start;
		rec = j < n;
		dur = (rec ? ctx->probes[j].start : tc_now(ctx)) - start;
		if (first_fail < 0.)
			first_fail = start;
		last_fail = ctx->probes[j - 1].start;
		outages++;
		if (!rec)
			recovered_all = false;
		if (dur > longest)
			longest = dur;
		if (ntop < TC_MAX_OUTAGES) {
			top[ntop].start = start;
			top[ntop].dur = dur;
			top[ntop].recovered = rec;
			ntop++;
		} else {
			int m = 0;

			for (int k = 1; k < ntop; k++)
				if (top[k].dur < top[m].dur)
					m = k;
			if (dur > top[m].dur) {
				top[m].start = start;
				top[m].dur = dur;
				top[m].recovered = rec;
			}
		}
		i = j;
	}
	printf(",\"kind\":\"%s\",\"probes\":%llu,\"ok\":%llu,\"fail\":%llu,"
	    "\"outages\":%llu,\"longest_outage_ms\":%.1f,\"recovered\":%s,",
	    tc_pk_names[ctx->o.kind], (unsigned long long)n, (unsigned long long)ok,
	    (unsigned long long)(n - ok), (unsigned long long)outages, longest * 1000.,
	    recovered_all ? "true" : "false");
	if (outages > 0)
		printf("\"first_fail_ms\":%.1f,\"last_fail_ms\":%.1f,", first_fail * 1000.,
		    last_fail * 1000.);
	else
		printf("\"first_fail_ms\":null,\"last_fail_ms\":null,");
	printf("\"outage_list\":[");
	for (int k = 0; k < ntop; k++)
		printf("%s{\"start_ms\":%.1f,\"ms\":%.1f,\"recovered\":%s}", k ? "," : "",
		    top[k].start * 1000., top[k].dur * 1000.,
		    top[k].recovered ? "true" : "false");
	printf("]");
}
