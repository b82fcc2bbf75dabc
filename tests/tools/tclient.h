/*
 * tclient — internal interface between the parts of the lab's scripted TCP
 * client: tclient.c (options, connections, main loop, report),
 * tclient_stream.c (echo-check, bulk, half-close, hold), tclient_http.c
 * (http-spread, probe) and tclient_ping.c. Not a project header: only these
 * files include it.
 */
#ifndef TANDEM_TCLIENT_H
#define TANDEM_TCLIENT_H

#include <ev.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define TC_CHUNK (64 * 1024)
#define TC_HTTP_BUF (16 * 1024)
#define TC_MAX_CONNS 100000
#define TC_MAX_BACKENDS 64
#define TC_MAX_STATUS 16
#define TC_MAX_OUTAGES 10
#define TC_FINAL_CHECK_S 2.0   /* hold: time for the end-of-hold echo */

enum tc_mode {
	TC_ECHO_CHECK = 0,
	TC_BULK,
	TC_HALF_CLOSE,
	TC_HOLD,
	TC_HTTP_SPREAD,
	TC_PROBE,
	TC_PING,
	TC_MODE_COUNT
};

/* How one connection (or request, or probe) ended. */
enum tc_result {
	TC_R_OK = 0,
	TC_R_MISMATCH,     /* wrong bytes, too many bytes, bad HTTP */
	TC_R_RESET,        /* ECONNRESET / EPIPE */
	TC_R_EOF,          /* the peer closed before everything came back */
	TC_R_TIMEOUT,      /* deadline passed: hung */
	TC_R_REFUSED,      /* ECONNREFUSED */
	TC_R_UNREACH,      /* EHOSTUNREACH, ENETUNREACH, ETIMEDOUT */
	TC_R_OTHER,
	TC_R_INTERRUPTED,  /* still running when SIGTERM/SIGINT came */
	TC_R_STATUS,       /* http: a complete response, but not 2xx */
	TC_R_COUNT
};

enum tc_probe_kind {
	TC_PK_CONNECT = 0,
	TC_PK_ECHO,
	TC_PK_HTTP,
	TC_PK_COUNT
};

struct tc_opts {
	enum tc_mode mode;
	const char *addr_str;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	const char *src_str;
	struct sockaddr_storage src;
	socklen_t src_len;
	uint64_t conns;
	uint64_t msgs;
	uint64_t size;
	uint64_t bytes;
	uint64_t interval_ms;
	uint64_t parallel;
	bool fin;
	double deadline;
	double max_time;
	uint64_t seed;
	double hold;
	bool probe;
	uint64_t requests;
	uint64_t concurrency;
	const char *path;
	const char *host;
	bool close;
	double duration;
	uint64_t timeout_ms;
	enum tc_probe_kind kind;
	const char *log_path;
	const char *ready_file;
	uint64_t count;
	bool verbose;
};

struct tc_ctx;

struct tc_conn {
	struct tc_ctx *ctx;
	uint64_t id;
	int fd;
	ev_io io;
	ev_timer deadline;
	ev_timer pause;
	bool connected;
	bool done;
	double t_start;

	/* stream modes */
	uint64_t seed;
	uint64_t total;   /* bytes to send and get back */
	uint64_t msg;     /* message size: wait for its echo before the next */
	uint64_t sent;
	uint64_t recvd;
	bool paused;
	bool fin_sent;

	/* hold */
	bool served;
	bool lost;
	bool final_probe;

	/* http */
	char *buf;
	size_t len;
	bool req_open;      /* a request is in flight on this connection */
	size_t req_off;
	size_t req_len;
	bool head_done;
	int status;
	bool resp_close;
	uint64_t body_len;
	uint64_t body_got;
	bool body_pattern;  /* check the body against TT_PATTERN */
	char backend[64];

	/* probe */
	uint64_t probe_idx;
	char pbuf[16];     /* http probe: enough for "HTTP/1.x NNN" */
	size_t plen;
};

struct tc_probe_rec {
	double start;      /* seconds since the run began */
	float latency_ms;
	unsigned char result;
};

struct tc_backend_count {
	char name[64];
	uint64_t n;
};

struct tc_ctx {
	struct ev_loop *loop;
	struct tc_opts o;
	double t0;
	ev_timer max_timer;
	ev_timer tick;      /* probe launcher / hold end */
	ev_signal sig_term, sig_int;
	bool stopping;
	bool hold_final;    /* hold: in the end-of-hold check */

	struct tc_conn **conns;
	uint64_t nconns;    /* allocated slots */
	uint64_t started;
	uint64_t active;
	uint64_t finished;

	uint64_t res[TC_R_COUNT];
	char first_failure[192];

	/* stream */
	uint64_t bytes_sent, bytes_recvd;

	/* hold */
	uint64_t established, served, lost, alive_end;
	bool ready_written;

	/* http */
	uint64_t issued;
	struct tc_backend_count backends[TC_MAX_BACKENDS];
	int nbackends;
	int status_code[TC_MAX_STATUS];
	uint64_t status_n[TC_MAX_STATUS];
	int nstatus;
	char request[1024];
	size_t request_len;

	/* probe */
	struct tc_probe_rec *probes;
	uint64_t nprobes;
	FILE *log;

	unsigned char scratch[TC_CHUNK];
	unsigned char expect[TC_CHUNK];
};

extern const char *const tc_mode_names[TC_MODE_COUNT];
extern const char *const tc_result_names[TC_R_COUNT];
extern const char *const tc_pk_names[TC_PK_COUNT];

/* tclient.c: connections and the run */

/* Seconds since the run began (loop time). */
double tc_now(const struct tc_ctx *ctx);
/* Result category of a socket errno. */
enum tc_result tc_errno_result(int e);
/*
 * The connection is over with result r: count it and close the socket. The
 * struct stays (done) until its slot is reused or the run ends, so callers
 * may still read it. A second call is a no-op.
 */
void tc_conn_end(struct tc_conn *c, enum tc_result r, const char *why);
/* Wait for exactly the events ev (EV_READ|EV_WRITE, 0 for none) on c. */
void tc_set_events(struct tc_conn *c, int ev);
/* A new idle connection object for slot id; NULL if out of memory. */
struct tc_conn *tc_conn_new(struct tc_ctx *ctx, uint64_t id);
/* Start a non-blocking connect with a deadline; 0 or -errno. */
int tc_conn_connect(struct tc_conn *c, double deadline);
/* Close and free c; NULL is a no-op. */
void tc_conn_free(struct tc_conn *c);
/* Stop the loop if the mode has nothing left to start or wait for. */
void tc_maybe_finish(struct tc_ctx *ctx);

/* tclient_stream.c */

/* Per-connection stream parameters for echo-check, bulk, half-close. */
void tc_stream_start(struct tc_ctx *ctx, struct tc_conn *c);
/* Move and check bytes both ways; true if c ended. */
bool tc_stream_pump(struct tc_conn *c);
/* Timer callback: the pause between two messages is over. */
void tc_pause_cb(struct ev_loop *loop, ev_timer *w, int revents);
/* hold: c just connected / has events / the hold time is over. */
void tc_hold_connected(struct tc_conn *c);
bool tc_hold_event(struct tc_conn *c, int revents);
void tc_hold_final(struct tc_ctx *ctx);
/* hold: print (and write --ready-file) once every connection is settled. */
void tc_hold_ready(struct tc_ctx *ctx);
void tc_hold_tick(struct ev_loop *loop, ev_timer *w, int revents);

/* tclient_http.c */

/* Start the request on a connected or connecting c. */
void tc_http_send_request(struct tc_conn *c);
/* Count the request on c as r; next request on it, or end it. True if ended. */
bool tc_http_request_done(struct tc_conn *c, enum tc_result r, const char *why);
bool tc_http_event(struct tc_conn *c, int revents);
/* probe: record the probe on c as r and end it. */
void tc_probe_done(struct tc_conn *c, enum tc_result r);
bool tc_probe_event(struct tc_conn *c, int revents);
/* probe: timer callback launching one probe per --interval. */
void tc_probe_tick(struct ev_loop *loop, ev_timer *w, int revents);
/* probe: the JSON fields after the common ones (outages). */
void tc_report_probe(struct tc_ctx *ctx);

/* tclient_ping.c */

/* ICMP echo run: prints its own JSON, returns the exit code. */
int tc_ping(const struct tc_opts *o);

#endif
