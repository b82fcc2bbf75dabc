/*
 * ctl — tandemd's control socket, and the one-shot request server it shares
 * with the metrics listener.
 *
 * Protocol (unix stream socket, mode 0660): the client sends one request
 * line, the daemon answers and closes. The first line of every answer is
 * "ok" or "error: MESSAGE"; what follows is human-readable text.
 *
 *   status                 node, version, uptime, workers, frontends, backends;
 *                          with vrrp-groups also a table per group (state,
 *                          priority effective/base, master and its priority,
 *                          last advert age, transitions, time since the last
 *                          one, VIPs, flags) and the advert drop counters
 *   servers                a table per backend: state, weights, connections,
 *                          last health check, connect-time EWMA
 *   drain NAME             no new connections, existing ones stay
 *   ready NAME             back in service (UP, or DOWN while checks fail)
 *   maint NAME             out of service
 *   switchover [GROUP]     hand every MASTER group (or GROUP) over to the peer;
 *                          with session sync up, its connections go along
 *                          ("handover of sessions started (...)"), else a
 *                          line "sessions: not handed over: WHY" says why not
 *   sync                   session sync, one "key: value" per line (stable,
 *                          for scripts): sync (off without a sync block, then
 *                          alone), peer, config-digest, our-stream,
 *                          peer-stream, bulk-resyncs, shadow, local,
 *                          sync-ready, handover-in-progress, takeovers,
 *                          last-takeover, handovers, drops
 *   help                   the commands
 *
 * NAME is BACKEND/SERVER, or SERVER alone when exactly one backend has a
 * server of that name.
 *
 * Everything runs on the main thread's libev loop and never blocks it:
 * requests are bounded (CTL_MAX_REQUEST bytes), each client must have sent
 * its request and taken its answer within CTL_CLIENT_TIMEOUT seconds, and at
 * most CTL_MAX_CLIENTS are served at once (the next get "error: busy").
 */
#ifndef TANDEM_CTL_H
#define TANDEM_CTL_H

#include <stddef.h>
#include <sys/socket.h>

struct ev_loop;
struct cfg;
struct proxy_frontend;
struct bal_pool;
struct hc;
struct agent;
struct sess;

#define CTL_DEFAULT_PATH "/run/tandem/tandem.sock"
#define CTL_ENV_PATH "TANDEM_CTL"   /* tandemctl: overrides the default path */
#define CTL_MAX_REQUEST 512
#define CTL_MAX_CLIENTS 32
#define CTL_CLIENT_TIMEOUT 5.0

/*
 * What the daemon shows ctl and metrics. Every pointer is borrowed and must
 * outlive the ctl / metrics object using it (or be replaced first with
 * ctl_set_view / metrics_set_view, e.g. on reload).
 *
 * State changes (drain/ready/maint) on pools[i] go through hcs[i] when it is
 * set, so the health module keeps owning server state (and logs and counts
 * the change). hcs may be NULL, or hold NULL entries, for backends without a
 * health module: ctl then calls bal_set_state() itself (which counts the
 * change in stats.state_changes) and logs it; "ready" then means UP.
 */
struct ctl_view {
	const struct cfg *cfg;          /* node name; backends matched to pools by
	                                   name for the health column (rise/fall) */
	struct proxy_frontend *fes;     /* nfes frontends, shown in this order */
	size_t nfes;
	struct bal_pool **pools;        /* npools backends, shown in this order */
	struct hc **hcs;                /* NULL, or npools entries (each may be NULL) */
	size_t npools;
	struct agent *agent;            /* NULL: no vrrp-group (status, switchover) */
	struct sess *sess;              /* NULL: no sync block configured (sync,
	                                   switchover, metrics) */
	double started;                 /* ev_now() of the main loop at start-up */
	unsigned workers;               /* worker threads actually running */
};

/*
 * Growable output buffer for answers. An allocation failure is remembered in
 * err (-ENOMEM) and makes later appends no-ops, so renderers check once.
 */
struct ctl_buf {
	char *data;
	size_t len;
	size_t cap;
	int err;
};

void ctl_buf_printf(struct ctl_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ctl_buf_append(struct ctl_buf *b, const char *s, size_t n);
void ctl_buf_free(struct ctl_buf *b);    /* releases data; b itself is the caller's */

/*
 * "198.18.0.21:80", "[2001:db8::1]:80", a unix path, or "?" into buf
 * (always NUL-terminated). Returns buf.
 */
const char *ctl_fmt_addr(const struct sockaddr *sa, socklen_t len, char *buf,
    size_t size);

struct ctl;

/*
 * Listen on the unix socket path (mode 0660) and serve it on loop, which
 * must be the main thread's loop (ctl changes server state). A socket file
 * left behind by a dead daemon is removed; a path on which something still
 * listens is refused (EADDRINUSE), and a path that is not a socket is never
 * removed (EEXIST). view is copied; see struct ctl_view for lifetimes.
 * Returns the ctl, or NULL with errno set, after logging why.
 */
struct ctl *ctl_new(struct ev_loop *loop, const char *path,
    const struct ctl_view *view);

/*
 * Close the listener and every client, remove the socket file if it is still
 * the one this ctl created, free. NULL is a no-op. Not from ctl's own callbacks.
 */
void ctl_free(struct ctl *ctl);

/* Show a new view from now on (reload). view is copied. */
void ctl_set_view(struct ctl *ctl, const struct ctl_view *view);

/*
 * Run one request line (req[0..len), with or without its newline) against
 * view at time now (ev_now of the main loop) and append the whole answer to
 * out. This is what the socket server calls; exposed for tests and fuzzing.
 * Returns 0 when an answer was written ("ok" or "error: ..."), -ENOMEM if
 * out could not grow.
 */
int ctl_exec(const struct ctl_view *view, double now, const char *req,
    size_t len, struct ctl_buf *out);

/*
 * ctl_srv — accept, read one bounded request, answer, close. Under both the
 * control socket and the metrics listener.
 */
enum ctl_req {
	CTL_REQ_COMPLETE = 0,  /* ops->complete found the end of the request */
	CTL_REQ_EOF,           /* the peer closed its side before that */
	CTL_REQ_TOO_LONG,      /* max_request bytes and still incomplete */
	CTL_REQ_BUSY,          /* max_clients already being served */
	CTL_REQ_COUNT
};

struct ctl_srv_ops {
	const char *name;          /* log prefix: "ctl", "metrics" */
	size_t max_request;        /* bytes, > 0 */
	unsigned max_clients;      /* > 0 */
	double timeout;            /* seconds from accept to the last byte sent */
	/* Length of the complete request at the start of buf[0..len), or 0. */
	size_t (*complete)(const char *buf, size_t len);
	/*
	 * Append the whole answer for req[0..len) to out (for CTL_REQ_BUSY req
	 * is empty). Returning -errno drops the client without an answer.
	 */
	int (*answer)(void *arg, enum ctl_req kind, const char *req, size_t len,
	    struct ctl_buf *out);
};

struct ctl_srv;

/*
 * Serve the listening socket fd (non-blocking, owned from now on: closed by
 * ctl_srv_free, or here on failure) on loop with ops (borrowed, usually a
 * static const) and arg (passed to ops->answer). Returns NULL with errno set.
 */
struct ctl_srv *ctl_srv_new(struct ev_loop *loop, int fd,
    const struct ctl_srv_ops *ops, void *arg);

/* Close the listener and every client, free. NULL is a no-op. */
void ctl_srv_free(struct ctl_srv *srv);

/* Clients being served now (tests, status). */
unsigned ctl_srv_clients(const struct ctl_srv *srv);

#endif
