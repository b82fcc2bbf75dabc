/*
 * Private to daemon/proxy: the worker and connection objects.
 *
 * Object diagram (one worker thread):
 *
 *   proxy_worker ──owns──> listener[nfes]  (SO_REUSEPORT fd + ev_io + pause timer)
 *        │
 *        └──owns──> conn list ──> proxy_conn
 *                                   ├─ client side: fd + ev_io
 *                                   ├─ server side: fd + ev_io (connecting, then relaying)
 *                                   ├─ dir[C2S], dir[S2C]: pending bytes (buffer from the
 *                                   │   worker's free list, held only while a write is short)
 *                                   ├─ one ev_timer for connect/client/server/idle timeouts
 *                                   └─ sync: session-sync state (psync.c), NULL when not synced
 *
 * With session sync (psync.c) the worker also owns a struct psync: the command
 * channel from the main thread, the dirty list of synced connections and the
 * events that wait for room in the channel to main.
 */
#ifndef TANDEM_PROXY_INT_H
#define TANDEM_PROXY_INT_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>

#include <tandem/proxy.h>

enum proxy_dir {
	PROXY_C2S = 0,  /* client -> server */
	PROXY_S2C,      /* server -> client */
	PROXY_DIR_COUNT
};

/*
 * A relay buffer; lives on the worker's free list when not holding bytes.
 * Only buffers of worker->bufsize bytes are recycled: an adopted connection's
 * leftover bytes come in a buffer sized for them, freed once written.
 */
struct proxy_buf {
	struct proxy_buf *next;   /* free-list link */
	size_t off;               /* first unsent byte */
	size_t len;               /* bytes held, from data[0] */
	size_t cap;               /* bytes data[] has room for */
	char data[];
};

struct proxy_dir_state {
	struct proxy_buf *buf;    /* non-NULL only while bytes wait for the writer */
	bool eof;                 /* reader side sent FIN */
	bool shut;                /* FIN forwarded to the writer side */
	uint64_t bytes;           /* total relayed in this direction */
};

enum proxy_conn_phase {
	PROXY_CONNECTING = 0,     /* waiting for the backend connect */
	PROXY_RELAYING,
	PROXY_PHASE_COUNT
};

struct proxy_conn {
	struct proxy_conn *prev, *next;   /* worker's list */
	struct proxy_worker *w;
	struct proxy_frontend *fe;
	uint64_t id;
	enum proxy_conn_phase phase;

	int cfd;                          /* client side */
	ev_io cio;
	struct sockaddr_storage caddr;
	socklen_t caddrlen;

	int sfd;                          /* server side, -1 before connect */
	ev_io sio;
	int server;                       /* index in fe->pool, -1 none */
	size_t tried[8];                  /* servers already tried for this client */
	size_t ntried;
	ev_tstamp connect_start;

	struct proxy_dir_state dir[PROXY_DIR_COUNT];

	ev_timer timer;
	ev_tstamp armed_for;              /* deadline the timer is set to, 0 = none */
	ev_tstamp last_activity;          /* any bytes either way */
	ev_tstamp client_stall;           /* since when bytes wait for the client, 0 = none */
	ev_tstamp server_stall;           /* since when bytes wait for the server, 0 = none */

	struct psync_conn *sync;          /* owned; non-NULL while synced (psync.c) */
	bool adopted;                     /* rebuilt by a takeover: restore_id is set */
	bool held;                        /* adopted, reads wait for the stale check (GO) */
	uint64_t restore_id;              /* the main thread's id, for KILL */
};

enum proxy_pause {
	PROXY_LISTENING = 0,
	PROXY_PAUSED_LIMIT,       /* frontend at max-connections */
	PROXY_PAUSED_EMFILE,      /* out of file descriptors or memory */
	PROXY_PAUSE_COUNT
};

struct proxy_listener {
	struct proxy_worker *w;
	struct proxy_frontend *fe;
	int fd;
	ev_io io;
	ev_timer resume;                  /* retry after max-connections or EMFILE */
	enum proxy_pause paused;
};

struct proxy_worker {
	unsigned id;
	struct ev_loop *loop;
	pthread_t thread;
	bool started;
	ev_async stop;

	struct proxy_frontend *fes;
	size_t nfes;
	struct proxy_listener *listeners;   /* nfes entries */
	struct bal_cursor **cursors;        /* one per frontend's pool */

	struct proxy_conn *conns;           /* list head */
	atomic_uint nconns;
	uint64_t next_id;

	size_t bufsize;                     /* largest frontend buffer-size */
	struct proxy_buf *free_bufs;
	unsigned nfree_bufs;

	struct psync *sync;                 /* owned; NULL: no session sync */
};

/* conn.c */
void proxy_conn_accepted(struct proxy_worker *w, struct proxy_frontend *fe,
    size_t fe_idx, int fd, const struct sockaddr_storage *ss, socklen_t len);
/*
 * A connection object for client socket fd (owned by it from now on), linked
 * into the worker's list and counted in nconns, no server yet, no watcher
 * started. The caller has counted it in fe->active. Returns NULL (fd not
 * taken) when out of memory.
 */
struct proxy_conn *proxy_conn_new(struct proxy_worker *w, struct proxy_frontend *fe,
    int fd, const struct sockaddr_storage *ss, socklen_t len);
/*
 * Pick a server and start connecting to it, trying others on failure.
 * Returns 0 when a connect is under way, or -EHOSTUNREACH when no server was
 * left: c has then been closed (with a RST) and freed.
 */
int proxy_conn_connect_next(struct proxy_conn *c);
/* Recompute what both sockets wait for and re-arm the timer (after any change). */
void proxy_conn_update(struct proxy_conn *c);
/* Direction d's reader sent FIN and nothing waits for the writer: shut the writer down. */
void proxy_dir_forward_fin(struct proxy_conn *c, enum proxy_dir d);
/*
 * Release everything the connection owns, closing its fds (a RST with
 * reset). An fd already set to -1 is left alone: KILL and FREEZE dispose of
 * their sockets themselves, then release the rest here.
 */
void proxy_conn_close(struct proxy_conn *c, bool reset, const char *why);
/* A buffer of cap bytes outside the free list (freed, not recycled, when put). NULL: ENOMEM. */
struct proxy_buf *proxy_buf_sized(size_t cap);
/* Give b back: recycled when it has the worker's size, else freed. NULL is a no-op. */
void proxy_buf_put(struct proxy_worker *w, struct proxy_buf *b);

/* sock.c */
/*
 * IP_FREEBIND / IPV6_FREEBIND: bind an address this node does not hold (yet):
 * the VIP on a standby. Returns 0 or -1 with errno, like setsockopt().
 */
int proxy_sock_freebind(int fd, int family);
/* Close fd on an error path; returns -errno of the error that got us here. */
int proxy_sock_fail(int fd);
/* Close fd (-1: nothing); reset: SO_LINGER 0 first, so the peer gets a RST. */
void proxy_sock_close(int fd, bool reset);

/* worker.c */
void proxy_listener_slot_freed(struct proxy_worker *w, struct proxy_frontend *fe);

/*
 * psync.c — the worker's side of session sync (include/tandem/session.h).
 * Every hook below is called only when sync is on for the worker (w->sync)
 * or the connection (c->sync), so a worker without it runs the plain relay.
 */
struct psync;
struct psync_conn;
struct sess_worker_link;

/*
 * Take part in session sync through link (borrowed: link->events must
 * outlive the worker): create the command channel on w->loop, store it in
 * *link->cmds. Call before the worker's thread starts. Returns 0 with
 * w->sync set, or -ENOMEM / -EINVAL (ring_chan_new).
 */
int psync_new(struct proxy_worker *w, const struct sess_worker_link *link);
/*
 * Worker shutdown, before its connections are closed: from now on nothing
 * is sent to main (the events channel may be going away with it), and
 * commands still queued are dropped (ADOPT sockets closed with a RST, their
 * leftover bytes freed). NULL is a no-op.
 */
void psync_shutdown(struct psync *ps);
/* After every connection is gone: free the channel and the rest. NULL is a no-op. */
void psync_free(struct psync *ps);

/*
 * The backend connect of c completed (or c was adopted with both sockets):
 * take a live snapshot of both sockets and send OPEN. The byte counts of c
 * at this moment become the base of its UPDATEs. A snapshot that fails
 * leaves c unsynced (counted), never fails c.
 */
void psync_conn_start(struct proxy_conn *c);
/* Bytes moved on a synced c: one UPDATE before the loop sleeps. */
void psync_conn_dirty(struct proxy_conn *c);
/* A FIN on a synced c: a half-closed socket cannot be repaired, CLOSE it now. */
void psync_conn_eof(struct proxy_conn *c);
/* c is being closed: clear its fd flags while the fds are open, CLOSE. */
void psync_conn_closed(struct proxy_conn *c);

#endif
