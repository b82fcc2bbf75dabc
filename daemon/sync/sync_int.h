/*
 * sync_int — what daemon/sync/channel.c (links: sockets, handshake, reading,
 * writing, the loop turn) and daemon/sync/stream.c (our stream and the
 * peer's) share. Nothing outside daemon/sync/ includes it.
 */
#ifndef TANDEM_SYNC_INT_H
#define TANDEM_SYNC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include <tandem/auth.h>
#include <tandem/log.h>
#include <tandem/sync.h>

/* ---- objects ------------------------------------------------------------ */

/*
 * Link states and events. X(enum suffix, name).
 *
 *   outgoing:  CONNECTING --TCP_UP--> HELLO
 *   incoming:  (accepted)  --TCP_UP--> HELLO
 *   HELLO   --HELLO--> CONFIRM   our hello went out on entering HELLO; the
 *                                peer's is valid: echo its nonce
 *   CONFIRM --ECHO---> UP        the peer echoed our nonce: this is a live
 *                                session, not a recording being replayed
 *   any but CLOSED --LOST--> CLOSED
 */
#define SYNC_LINK_STATE_LIST(X) \
	X(CONNECTING, "CONNECTING") \
	X(HELLO, "HELLO")           \
	X(CONFIRM, "CONFIRM")       \
	X(UP, "UP")                 \
	X(CLOSED, "CLOSED")

#define SYNC_LINK_STATE_ENUM_(sym, name) SYNC_LINK_##sym,
enum sync_link_state {
	SYNC_LINK_STATE_LIST(SYNC_LINK_STATE_ENUM_)
	SYNC_LINK_STATE_COUNT
};
#undef SYNC_LINK_STATE_ENUM_

#define SYNC_LINK_EV_LIST(X)    \
	X(TCP_UP, "connected")  \
	X(HELLO, "hello")       \
	X(ECHO, "echo")         \
	X(LOST, "lost")

#define SYNC_LINK_EV_ENUM_(sym, name) SYNC_LEV_##sym,
enum sync_link_ev {
	SYNC_LINK_EV_LIST(SYNC_LINK_EV_ENUM_)
	SYNC_LINK_EV_COUNT
};
#undef SYNC_LINK_EV_ENUM_

_Static_assert(SYNC_LINK_CONNECTING == 0 && SYNC_LEV_TCP_UP == 0 &&
    SYNC_STATE_IDLE == 0, "X-macro enums index arrays from 0");

/* A frame of our stream, sealed, waiting for the peer's ack. */
struct sync_txframe {
	struct sync_txframe *next;
	uint64_t seq;
	double queued;              /* monotonic s when sealed: the lag */
	bool written;               /* went out on some link before */
	size_t len;
	uint8_t *data;              /* [be32 length][Envelope] */
};

struct sync_link {
	struct sync_link *next;
	struct sync *ch;
	enum sync_link_state state;
	bool outgoing;
	ev_io io;                   /* io.fd is the socket */
	ev_timer timer;             /* handshake deadline, silence, keepalive */
	char addr[WIRE_ADDRSTRLEN + 8];
	struct sync_buf in;         /* bytes read, from in_off on not yet parsed */
	size_t in_off;
	struct sync_buf ctrl;       /* hello, echo, pure acks */
	size_t ctrl_off;
	bool ctrl_is_ack;           /* ctrl is one pure ack, none of it written */
	uint64_t nonce;             /* in our hello; the peer must echo it */
	double started;
	double last_rx;
	double last_tx;
	struct sync_hello peer;     /* from CONFIRM on */
};

struct sync {
	struct ev_loop *loop;
	const struct auth_keyring *kr;
	const struct sync_ops *ops;
	void *arg;
	struct sync_cfg cfg;        /* node_name points at name */
	char name[SYNC_NAME_MAX];
	double keepalive;           /* s */
	double dead;
	double backoff_min;
	double backoff_max;
	size_t max_queue;

	bool started;
	ev_io accept_io;            /* accept_io.fd is the listener */
	ev_timer accept_backoff;
	ev_timer reconnect;
	ev_prepare prepare;         /* seal the turn's batch, ack, write, reap */
	ev_idle idle;               /* keeps the loop from blocking before that */
	double backoff;             /* next reconnect delay, s */
	uint64_t rng;

	struct sync_link *links;
	struct sync_link *up;

	/* our stream */
	uint64_t tx_epoch;
	uint64_t next_seq;
	uint64_t tx_acked;
	struct sync_txframe *head;
	struct sync_txframe *tail;
	size_t q_frames;
	size_t q_bytes;
	struct sync_txframe *cur;   /* next frame to write on ch->up; NULL: none */
	size_t cur_off;             /* bytes of cur already written */
	struct sync_buf batch;      /* events of the frame in the making */
	size_t batch_events;
	struct sync_buf scratch;    /* one encoded event */
	bool resync_pending;
	bool tx_bulk_active;
	uint64_t bulk_id;
	uint64_t bulk_events;
	uint64_t ack_sent_epoch;    /* the ack the peer last got from us */
	uint64_t ack_sent;

	/* the peer's stream */
	uint64_t rx_epoch;          /* newest stream seen: older ones are refused */
	uint64_t rx_seq;
	bool rx_valid;              /* rx_seq is a position we can resume from */
	bool rx_bulk_active;
	uint64_t rx_bulk_count;

	bool peer_known;
	struct sync_peer peer;
	double up_since;

	struct sync_stats stats;
	struct log_ratelimit rl_accept;
	struct log_ratelimit rl_connect;
};

/* ---- channel.c ---------------------------------------------------------- */

/* Monotonic seconds (not ev_now(), which follows the wall clock). */
double sync_clock(void);

/*
 * Count one dropped message of l's peer in the channel's stats and log it,
 * rate-limited per reason, saying whether the link is being closed (the
 * caller closes it).
 */
void sync_drop(struct sync_link *l, enum sync_drop why, bool closing,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Feed ev to l's state machine (the table in channel.c); LOST closes the
 * link, and when it is ch->up tells the caller (on_peer_down). The link's
 * memory stays until the next loop turn.
 */
void sync_link_event(struct sync_link *l, enum sync_link_ev ev,
    const char *why);

/* ---- stream.c ------------------------------------------------------------ */

/* Our position in the peer's stream for an ack or a hello: (0, 0) = none. */
void sync_rx_position(const struct sync *ch, uint64_t *epoch, uint64_t *seq);
void sync_ack_fields(const struct sync *ch, struct sync_frame_hdr *h);

/* Give up our position in the peer's stream: the next hello asks for a new one. */
void sync_rx_reset(struct sync *ch, const char *why);

void sync_txframe_free(struct sync_txframe *f);

/*
 * Seal the batch into the next frame of our stream and queue it for
 * ch->up. Returns 0, or -ENOMEM / -ENOKEY after losing the stream (the
 * link dropped, a new stream at the next handshake). An overflowing queue
 * is handled the same way but returns 0.
 */
int sync_batch_seal(struct sync *ch);

/* Start a new stream of ours on ch->up (BULK BEGIN, then on_resync_needed). */
void sync_tx_new_stream(struct sync *ch, const char *why);

/*
 * The peer's hello h on the link becoming ch->up: set the write position
 * to resume our stream. true when resumed, false when a new stream must
 * start. switching: the link replaces a live one to the same peer boot.
 */
bool sync_tx_resume(struct sync *ch, const struct sync_hello *h,
    bool switching);

/* A decoded message on a link that is UP: sequence checks, acks, delivery. */
void sync_link_frame(struct sync_link *l, const struct sync_msg *m);

#endif
