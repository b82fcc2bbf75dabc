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
 *                                   └─ one ev_timer for connect/client/server/idle timeouts
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

/* A relay buffer; lives on the worker's free list when not holding bytes. */
struct proxy_buf {
	struct proxy_buf *next;   /* free-list link */
	size_t off;               /* first unsent byte */
	size_t len;               /* bytes held, from data[0] */
	char data[];              /* worker->bufsize bytes */
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
};

/* conn.c */
void proxy_conn_accepted(struct proxy_worker *w, struct proxy_frontend *fe,
    size_t fe_idx, int fd, const struct sockaddr_storage *ss, socklen_t len);
void proxy_conn_close(struct proxy_conn *c, bool reset, const char *why);

/* sock.c */
/*
 * IP_FREEBIND / IPV6_FREEBIND: bind an address this node does not hold (yet):
 * the VIP on a standby. Returns 0 or -1 with errno, like setsockopt().
 */
int proxy_sock_freebind(int fd, int family);
/* Close fd on an error path; returns -errno of the error that got us here. */
int proxy_sock_fail(int fd);

/* worker.c */
void proxy_listener_slot_freed(struct proxy_worker *w, struct proxy_frontend *fe);

#endif
