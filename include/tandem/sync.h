/*
 * sync — the state-sync channel between the two nodes of a pair
 * (daemon/sync/channel.c: connections and handshake; stream.c: the two
 * streams) and its wire conversion (daemon/sync/frame.c, the one file of
 * the component that sees the protobuf-c generated code).
 *
 * Model (conntrackd's FTFW mode, HAProxy's peers). Each direction of the
 * channel is a *stream* of numbered frames. A stream is named by its epoch,
 * (boot epoch << SYNC_EPOCH_GEN_BITS) + a counter, so every stream a node
 * ever sends has a higher epoch than the ones before, across restarts too.
 * Frames are numbered 1, 2, ... within a stream; every stream starts with a
 * full snapshot: its first event is a BulkMark BEGIN (queued by the channel
 * itself), then the caller's state, then a BulkMark END the caller asks for
 * with sync_bulk_end(). Incremental events follow (and may interleave with
 * the snapshot: they are applied in order).
 * The channel is symmetric: both nodes send a stream and receive the peer's,
 * so an active/active pair needs nothing more; a standby's stream is usually
 * just the empty snapshot.
 *
 * Reliability. The receiver acknowledges cumulatively (ack_epoch, ack) in
 * every frame it sends, or in a pure ack (seq 0, no events, not numbered)
 * at the end of a loop turn that applied frames. The sender keeps
 * unacknowledged frames in a retransmit queue bounded by
 * sync_cfg.max_queue_bytes. Each handshake tells the peer where we are in
 * its stream (resume_epoch, resume_after); the sender resumes right after
 * that frame when it still holds every frame from there, and otherwise
 * starts a new stream: on_resync_needed() asks the caller for a snapshot.
 * A queue over its bound (the peer or the link cannot keep up) drops the
 * connection, forgets the queue and starts a new stream at the next
 * handshake; events queued meanwhile are discarded (counted), since the
 * snapshot will carry the state they describe.
 *
 * Connection. Both nodes listen on sync_cfg.listen and connect to
 * sync_cfg.peer, with exponential backoff and jitter. When both connections
 * come up (they crossed), both ends keep the same one: the connection the
 * node with the lower name (strcmp of node names, which must differ) opened.
 * A handshake from a newer boot of the peer always replaces the current
 * connection (the old one is dead, we just have not noticed yet). A
 * connection that hears nothing for dead_ms is closed; an idle one sends a
 * pure ack every keepalive_ms so the peer does not.
 *
 * Framing. Each direction is a byte stream of [u32 big-endian length][sealed
 * Envelope] (wire.h, HMAC-SHA256 with the keyring's send key). Before the
 * peer's hello is accepted a length over SYNC_HELLO_MAX is refused, so an
 * unauthenticated client cannot make us buffer megabytes. Receive checks,
 * in order (the first failing one is counted, logged rate-limited):
 *   length > limit                                    oversized
 *   envelope cut short / not an envelope              truncated / garbage
 *   Envelope.version != WIRE_VERSION                  bad_version
 *   key id not in the keyring / MAC mismatch          unknown_key / bad_mac
 *   type not SYNC_HELLO or SYNC_FRAME                 unknown_type
 *   payload fields missing or out of range            garbage (oversized for
 *                                                     too many events or bytes)
 *   a frame before the hello, a second hello, a
 *   missing or wrong echo, the peer using our own
 *   name, an ack for a frame never sent, a new
 *   stream not opened by BULK BEGIN                   protocol
 *   hello boot epoch or frame epoch older than seen   old_epoch
 *   seq <= last accepted in the stream                replay
 *   seq skips ahead (frames lost)                     out_of_order
 * A replay (an authentic frame we already have, e.g. resent after the
 * connections crossed) and an authentic message of an unknown type (a newer
 * peer) are skipped and the connection kept. Anything else closes it: a
 * length-framed stream that failed once cannot be trusted to be in step.
 * When an *authenticated* frame fails (its content or its place in the
 * protocol is wrong), the receiver also forgets its position in the peer's
 * stream, so the next handshake asks for a fresh snapshot instead of the
 * same frame again.
 *
 * Handshake. Each side sends a SyncHello first: node name, protocol version,
 * boot epoch, config digest (SHA-256 of the proxy config, from the caller),
 * role, the epoch of the stream it sends, its position in the peer's
 * stream, and a fresh random nonce. Then each side answers the other's
 * hello with a pure ack echoing that nonce; only then do frames flow. A
 * recorded session replayed into a new connection cannot echo the new
 * nonce, so it never gets past the handshake.
 * A digest that differs from ours is reported loudly (on_mismatch, the
 * mismatches counter, a warning, sync_info.digest_match = false): the
 * caller must then refuse to restore sessions from this peer. The
 * connection stays up so the operator sees both sides in tandemctl sync.
 *
 * Batching. Events queued during a loop turn are sealed into one frame per
 * turn (ev_prepare; an ev_idle keeps the loop from blocking before that), or
 * earlier when a frame reaches SYNC_FRAME_TARGET bytes or
 * SYNC_FRAME_EVENTS_MAX events. Nothing ever blocks: what the socket does
 * not take waits in the retransmit queue.
 *
 * Callbacks run from the loop, and from inside these calls: on_resync_needed
 * from sync_resync(); on_peer_down from sync_reconnect() and
 * sync_set_digest(), and from sync_queue_event(), sync_bulk_end(),
 * sync_flush() and sync_resync() when the queue overflows or a frame cannot
 * be sealed. They may call any sync_* function except sync_free().
 *
 * One thread: everything here runs on the loop passed to sync_new().
 */
#ifndef TANDEM_SYNC_H
#define TANDEM_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <tandem/auth.h>
#include <tandem/log.h>
#include <tandem/wire.h>

struct ev_loop;
struct sync;

#define SYNC_PROTO_VERSION 1
#define SYNC_DIGEST_LEN 32          /* SHA-256 of the proxy config */
#define SYNC_NAME_MAX 64            /* node, frontend, backend, server names incl. NUL */
#define SYNC_STICKY_KEY_MAX 256     /* bytes of a persistence key */
#define SYNC_QUEUE_MAX (4u << 20)   /* bytes of one socket queue (switchover) */
/* Largest Envelope: one connection with all four queues full, and room. */
#define SYNC_FRAME_MAX (4u * SYNC_QUEUE_MAX + (1u << 20))
#define SYNC_HELLO_MAX 1024         /* largest Envelope before the peer's hello */
#define SYNC_FRAME_EVENTS_MAX 1024  /* events per frame, both ways */
#define SYNC_FRAME_TARGET (64u << 10)   /* a frame is sealed once this big */
#define SYNC_EPOCH_GEN_BITS 24
#define SYNC_BOOT_EPOCH_MAX ((UINT64_C(1) << (64 - SYNC_EPOCH_GEN_BITS)) - 1)

/* Defaults for the zero values of struct sync_cfg. */
#define SYNC_KEEPALIVE_MS 1000
#define SYNC_DEAD_MS 4000
#define SYNC_BACKOFF_MIN_MS 100
#define SYNC_BACKOFF_MAX_MS 5000
#define SYNC_QUEUE_BYTES_DEFAULT (64u << 20)

/* ---- events (what travels) -------------------------------------------- */

/* X(enum suffix, name, description) */
#define SYNC_EV_LIST(X)                                                        \
	X(CONN, "conn", "connection opened, or its full state in a snapshot") \
	X(UPDATE, "update", "byte counts and half-close flags")               \
	X(CLOSE, "close", "connection closed")                                 \
	X(STICKY, "sticky", "persistence entry")                               \
	X(SERVER, "server", "server balancing and health state")               \
	X(BULK, "bulk", "snapshot boundary")                                   \
	X(SWITCH, "switch", "planned handover marker")

#define SYNC_EV_ENUM_(sym, name, desc) SYNC_EV_##sym,
enum sync_ev_type {
	SYNC_EV_LIST(SYNC_EV_ENUM_)
	SYNC_EV_COUNT
};
#undef SYNC_EV_ENUM_

enum sync_role {
	SYNC_ROLE_STANDBY = 0,      /* keeps a shadow table */
	SYNC_ROLE_ACTIVE,           /* streams its connections */
	SYNC_ROLE_COUNT
};

/* Mirrors tandem.ServerHealth. */
enum sync_health {
	SYNC_HEALTH_UP = 0,
	SYNC_HEALTH_DOWN,
	SYNC_HEALTH_DRAIN,
	SYNC_HEALTH_MAINT,
	SYNC_HEALTH_COUNT
};

enum sync_bulk_phase {
	SYNC_BULK_BEGIN = 0,
	SYNC_BULK_END,
	SYNC_BULK_COUNT
};

/* Mirrors tandem.Switchover.Phase. */
enum sync_switch_phase {
	SYNC_SWITCH_REQUEST = 0,
	SYNC_SWITCH_FROZEN,
	SYNC_SWITCH_DONE,
	SYNC_SWITCH_ABORT,
	SYNC_SWITCH_COUNT
};

/* One end of a TCP connection. */
struct sync_endpoint {
	sa_family_t family;         /* AF_INET or AF_INET6 */
	uint16_t port;              /* host order, 1..65535 */
	uint8_t addr[16];           /* network order; AF_INET uses the first 4 */
};

/*
 * What TCP_REPAIR needs to rebuild one socket (research/TCP_REPAIR.md
 * "What must be synced per connection"). Sequence numbers and ts_val are
 * the kernel's u32 values; see sync_sock_write_seq() for the arithmetic.
 */
struct sync_sock {
	struct sync_endpoint local;
	struct sync_endpoint peer;  /* same family as local */
	uint32_t snd_isn;           /* write_seq at the snapshot */
	uint32_t rcv_isn;           /* rcv_nxt at the snapshot */
	bool opt_sack;
	bool opt_timestamps;
	bool opt_wscale;
	uint8_t snd_wscale;         /* 0..14 */
	uint8_t rcv_wscale;         /* 0..14 */
	uint16_t mss_clamp;         /* 1..65535 */
	uint32_t ts_val;
	uint64_t ts_wall_ms;        /* sender's CLOCK_REALTIME when ts_val was read */
	uint32_t snd_wnd;
	uint32_t max_window;
	uint32_t rcv_wnd;
	uint64_t bytes_written;     /* since the snapshot */
	uint64_t bytes_read;
	/*
	 * Planned switchover only: the queues dumped in repair mode, at most
	 * SYNC_QUEUE_MAX bytes each. Sending: borrowed for the call. Received:
	 * valid during the callback. send_unsent <= send_queue_len.
	 */
	const uint8_t *recv_queue;
	size_t recv_queue_len;
	const uint8_t *send_queue;
	size_t send_queue_len;
	uint32_t send_unsent;
};

/* write_seq / rcv_nxt now: the snapshot's value plus the bytes since, mod 2^32. */
static inline uint32_t
sync_sock_write_seq(const struct sync_sock *s)
{
	return s->snd_isn + (uint32_t)s->bytes_written;
}

static inline uint32_t
sync_sock_rcv_nxt(const struct sync_sock *s)
{
	return s->rcv_isn + (uint32_t)s->bytes_read;
}

/* A proxied connection: ConnState. */
struct sync_conn_state {
	uint64_t id;                /* unique within the sender's stream */
	char frontend[SYNC_NAME_MAX];   /* non-empty */
	char backend[SYNC_NAME_MAX];    /* non-empty */
	char server[SYNC_NAME_MAX];     /* may be empty */
	struct sync_sock client;
	bool has_server_sock;       /* false: L7, reconnect per request after takeover */
	struct sync_sock server_sock;
	uint64_t created_wall_ms;
	bool client_eof;            /* that side sent FIN */
	bool server_eof;
};

/* ConnUpdate: the cheap, frequent one. */
struct sync_conn_update {
	uint64_t id;
	uint64_t client_written;
	uint64_t client_read;
	uint64_t server_written;
	uint64_t server_read;
	bool client_eof;
	bool server_eof;
};

struct sync_sticky {
	char backend[SYNC_NAME_MAX];    /* non-empty */
	uint8_t key[SYNC_STICKY_KEY_MAX];
	size_t keylen;                  /* 1..SYNC_STICKY_KEY_MAX */
	char server[SYNC_NAME_MAX];     /* non-empty */
	uint32_t ttl_ms;
};

struct sync_server {
	char backend[SYNC_NAME_MAX];    /* non-empty */
	char server[SYNC_NAME_MAX];     /* non-empty */
	enum sync_health health;
	uint32_t rise_count;
	uint32_t fall_count;
	uint32_t eff_weight;
	uint32_t slowstart_left_ms;
	uint32_t active_conns;
	uint64_t ewma_us;
	uint32_t consec_fails;
};

struct sync_bulk {
	enum sync_bulk_phase phase;
	uint64_t count;             /* END: events since BEGIN */
};

#define SYNC_SWITCH_GROUPS_MAX 16

/*
 * A planned handover (Switchover), in order with the connection events: one
 * transaction id != 0 from REQUEST to DONE or ABORT.
 */
struct sync_switch {
	enum sync_switch_phase phase;
	uint64_t id;
	uint64_t last_frame;        /* FROZEN: the frame that completes the final state */
	size_t ngroups;             /* 0..SYNC_SWITCH_GROUPS_MAX */
	uint32_t groups[SYNC_SWITCH_GROUPS_MAX];    /* the VIP groups moving */
	char reason[SYNC_NAME_MAX]; /* printable ASCII, may be empty */
	uint32_t restored;          /* DONE: connections rebuilt */
	uint32_t reset;             /* DONE: connections that had to be reset */
};

struct sync_event {
	enum sync_ev_type type;
	union {
		struct sync_conn_state conn;
		struct sync_conn_update update;
		struct { uint64_t id; } close;
		struct sync_sticky sticky;
		struct sync_server server;
		struct sync_bulk bulk;
		struct sync_switch sw;
	} u;
};

/* "conn", ... ; "?" out of range. */
const char *sync_ev_name(enum sync_ev_type t);

/* "request", "frozen", "done", "abort"; "?" out of range. */
const char *sync_switch_phase_name(enum sync_switch_phase p);

/* ---- drop reasons and counters ------------------------------------------ */

/* X(enum suffix, metric/log name, description), in the order checked. */
#define SYNC_DROP_LIST(X)                                                        \
	X(GARBAGE, "garbage", "not a tandem sync message")                       \
	X(TRUNCATED, "truncated", "message cut short")                           \
	X(OVERSIZED, "oversized", "larger than the protocol allows")             \
	X(BAD_VERSION, "bad_version", "unsupported protocol version")            \
	X(UNKNOWN_KEY, "unknown_key", "key id not configured here")              \
	X(BAD_MAC, "bad_mac", "MAC mismatch: wrong key or altered in transit")   \
	X(UNKNOWN_TYPE, "unknown_type", "message type not handled on the sync channel") \
	X(PROTOCOL, "protocol", "message out of place in the sync protocol")     \
	X(OLD_EPOCH, "old_epoch", "epoch older than the peer's latest")          \
	X(REPLAY, "replay", "frame not newer than the last accepted")            \
	X(OUT_OF_ORDER, "out_of_order", "frame sequence skips ahead: frames lost")

#define SYNC_DROP_ENUM_(sym, name, desc) SYNC_DROP_##sym,
enum sync_drop {
	SYNC_DROP_LIST(SYNC_DROP_ENUM_)
	SYNC_DROP_COUNT
};
#undef SYNC_DROP_ENUM_

const char *sync_drop_name(enum sync_drop why);   /* "?" out of range */
const char *sync_drop_desc(enum sync_drop why);

/* X(field, description): plain event counters of one channel. */
#define SYNC_COUNTER_LIST(X)                                                    \
	X(frames_in, "numbered frames received and applied")                    \
	X(frames_out, "numbered frames sealed")                                 \
	X(events_in, "events received")                                         \
	X(events_out, "events queued for the peer")                             \
	X(acks_out, "pure acknowledgements sent")                               \
	X(bytes_in, "bytes read from the peer")                                 \
	X(bytes_out, "bytes written to the peer")                               \
	X(retransmits, "frames written again after a reconnect")                \
	X(connects, "outgoing connection attempts")                             \
	X(connect_fails, "outgoing connections that failed before the handshake") \
	X(accepts, "incoming connections accepted")                             \
	X(accept_refused, "incoming connections refused: wrong source or too many") \
	X(handshakes, "handshakes completed")                                   \
	X(disconnects, "connections to the peer lost after the handshake")     \
	X(timeouts, "connections closed because the peer was silent")          \
	X(duplicates, "crossed connections closed in favour of the other")     \
	X(resumes, "handshakes that resumed our stream without a snapshot")    \
	X(resyncs, "new streams started, each with a full snapshot")           \
	X(overflows, "send queue over its bound: connection dropped, resync")  \
	X(discarded, "events dropped while a full resync was pending")         \
	X(mismatches, "handshakes with a peer whose config digest differs")    \
	X(bulks_in, "snapshots received complete")                             \
	X(bulks_bad, "snapshots received whose count did not match")

#define SYNC_COUNTER_ONE_(field, desc) +1
#define SYNC_COUNTER_COUNT (0 SYNC_COUNTER_LIST(SYNC_COUNTER_ONE_))

#define SYNC_COUNTER_FIELD_(field, desc) uint64_t field;
/* Counters of one channel; owned by it, read with sync_stats(). */
struct sync_stats {
	SYNC_COUNTER_LIST(SYNC_COUNTER_FIELD_)
	uint64_t drops[SYNC_DROP_COUNT];
	struct log_ratelimit rl[SYNC_DROP_COUNT];
};
#undef SYNC_COUNTER_FIELD_

/* Counter i (0..SYNC_COUNTER_COUNT-1) by name, for metrics: NULL / 0 out of range. */
const char *sync_counter_name(size_t i);
const char *sync_counter_desc(size_t i);
uint64_t sync_counter_value(const struct sync_stats *st, size_t i);

/* ---- frame codec (daemon/sync/frame.c) --------------------------------- */

/* A growable byte buffer; zero-initialise. */
struct sync_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

/* Make room for more bytes after len. 0, -ENOMEM or -EMSGSIZE (over 1 GiB). */
int syncf_buf_reserve(struct sync_buf *b, size_t more);
/* Free the storage and zero *b. */
void syncf_buf_free(struct sync_buf *b);

/* SyncHello, as the channel sees it. */
struct sync_hello {
	char node_name[SYNC_NAME_MAX];  /* non-empty */
	struct sync_endpoint node;      /* family 0: absent; port unused */
	uint32_t proto_version;         /* >= 1 */
	uint64_t boot_epoch;
	uint8_t config_digest[SYNC_DIGEST_LEN];
	enum sync_role role;
	uint64_t sync_epoch;            /* the stream the sender sends */
	uint64_t resume_epoch;          /* the sender's position in ours; 0 = none */
	uint64_t resume_after;
	uint64_t nonce;                 /* != 0, fresh per connection */
};

/* The numbers of a SyncFrame. seq 0 = a pure ack, which carries no events. */
struct sync_frame_hdr {
	uint64_t epoch;
	uint64_t seq;
	uint64_t ack_epoch;
	uint64_t ack;
	uint64_t echo;                  /* pure acks only: the peer's hello nonce; 0 = none */
};

/* One decoded message. */
struct sync_msg {
	enum wire_type type;            /* WIRE_MSG_SYNC_HELLO or WIRE_MSG_SYNC_FRAME */
	bool authenticated;             /* the MAC was good (set even when dropped later) */
	uint32_t key_id;
	struct sync_hello hello;        /* HELLO */
	struct sync_frame_hdr hdr;      /* FRAME */
	size_t nevents;
	struct sync_event *events;      /* FRAME; owned, with the queue bytes */
};

/*
 * What a receiver accepts, so all a sender may send: the limits given with
 * each struct above. 1 valid, 0 not.
 */
int syncf_event_valid(const struct sync_event *ev);
int syncf_hello_valid(const struct sync_hello *h);

/*
 * Append ev, encoded as one `events` field of a SyncFrame, to evs (the
 * events part of a frame in the making). Returns 0, -EINVAL (not valid) or
 * -ENOMEM; evs is unchanged on failure.
 */
int syncf_event_append(struct sync_buf *evs, const struct sync_event *ev);

/*
 * Seal a SyncFrame with the numbers in h and the nevents events that
 * syncf_event_append() put in evs[0..evlen), signed with kr's send key, and
 * append it to out as [be32 length][Envelope]. A pure ack is h->seq == 0
 * with no events; a numbered frame has 1..SYNC_FRAME_EVENTS_MAX.
 * Returns 0, -EINVAL (counts out of range), -ENOKEY, -EMSGSIZE (over
 * SYNC_FRAME_MAX) or -ENOMEM; out is unchanged on failure.
 */
int syncf_frame_seal(struct sync_buf *out, const struct sync_frame_hdr *h,
    const uint8_t *evs, size_t evlen, size_t nevents,
    const struct auth_keyring *kr);

/* The same for a SyncHello (-EINVAL when !syncf_hello_valid(h)). */
int syncf_hello_seal(struct sync_buf *out, const struct sync_hello *h,
    const struct auth_keyring *kr);

/*
 * Check and decode one Envelope, buf[0..len) without the length prefix, as
 * listed at the top of this file up to "payload fields"; max is the limit
 * for len (SYNC_HELLO_MAX or SYNC_FRAME_MAX). The sequence checks are the
 * channel's. On success returns 0 and fills *out (release with
 * syncf_msg_clear). Returns -EBADMSG with *why set when dropped (nothing to
 * release; out->authenticated still tells whether the MAC was good), or
 * -ENOMEM. Nothing is counted or logged here.
 */
int syncf_open(const uint8_t *buf, size_t len, size_t max,
    const struct auth_keyring *kr, struct sync_msg *out, enum sync_drop *why);

/* Free what syncf_open() allocated; zeroes *m. */
void syncf_msg_clear(struct sync_msg *m);

/* ---- the channel (daemon/sync/channel.c) ------------------------------- */

struct sync_cfg {
	const char *node_name;      /* required, copied; must differ from the peer's */
	/*
	 * Where to listen (with port) and, when not a wildcard, the source
	 * address of outgoing connections. With have_listen_fd the channel
	 * takes listen_fd (a listening TCP socket) instead of opening one,
	 * and owns it from sync_new() on, even when sync_new() fails.
	 */
	struct sockaddr_storage listen;
	socklen_t listenlen;
	bool have_listen_fd;
	int listen_fd;
	/* The peer's listener. Incoming connections from another address are refused. */
	struct sockaddr_storage peer;
	socklen_t peerlen;
	uint64_t boot_epoch;        /* 1..SYNC_BOOT_EPOCH_MAX, grows at every start */
	uint8_t config_digest[SYNC_DIGEST_LEN];
	enum sync_role role;        /* told to the peer, shown by tandemctl */
	uint32_t keepalive_ms;      /* 0 = SYNC_KEEPALIVE_MS */
	uint32_t dead_ms;           /* 0 = SYNC_DEAD_MS; at least 2 × keepalive_ms */
	uint32_t backoff_min_ms;    /* 0 = SYNC_BACKOFF_MIN_MS */
	uint32_t backoff_max_ms;    /* 0 = SYNC_BACKOFF_MAX_MS */
	size_t max_queue_bytes;     /* 0 = SYNC_QUEUE_BYTES_DEFAULT; must hold a full snapshot */
};

/* The peer as its last accepted hello described it. */
struct sync_peer {
	char name[SYNC_NAME_MAX];
	char addr[WIRE_ADDRSTRLEN + 8];     /* "198.18.1.2:7400" */
	bool outgoing;              /* we opened the connection in use */
	uint64_t boot_epoch;
	enum sync_role role;
	uint8_t config_digest[SYNC_DIGEST_LEN];
	bool digest_match;
	bool resumed;               /* our stream went on where it was (no snapshot) */
};

/*
 * Callbacks; any may be NULL. arg is sync_new()'s. See the top of this
 * file for when they run.
 */
struct sync_ops {
	/* An event of the peer's stream (never BULK), in order, exactly once. */
	void (*on_event)(void *arg, const struct sync_event *ev);
	/* A handshake completed and no connection was up before. */
	void (*on_peer_up)(void *arg, const struct sync_peer *peer);
	/* The connection in use was lost and none replaced it. */
	void (*on_peer_down)(void *arg, const char *why);
	/*
	 * A new stream of ours started: queue the full state now or over the
	 * next turns (sync_queue_event), then call sync_bulk_end(ch, bulk_id).
	 * BULK BEGIN is already queued.
	 */
	void (*on_resync_needed)(void *arg, uint64_t bulk_id);
	/*
	 * The peer's snapshot begins (a new stream of the peer's): mark the
	 * shadow state; at on_bulk_end drop what the snapshot did not carry.
	 * complete: the END's count matched the events received since BEGIN.
	 */
	void (*on_bulk_begin)(void *arg);
	void (*on_bulk_end)(void *arg, uint64_t count, bool complete);
	/* The peer's config digest differs from ours (each handshake). */
	void (*on_mismatch)(void *arg, const uint8_t peer_digest[SYNC_DIGEST_LEN]);
};

/* X(enum suffix, name): the channel as tandemctl sync shows it. */
#define SYNC_STATE_LIST(X)                \
	X(IDLE, "idle")     /* not started */ \
	X(DOWN, "down")     /* waiting to reconnect */ \
	X(CONNECTING, "connecting")  /* a connection or handshake under way */ \
	X(UP, "up")

#define SYNC_STATE_ENUM_(sym, name) SYNC_STATE_##sym,
enum sync_state {
	SYNC_STATE_LIST(SYNC_STATE_ENUM_)
	SYNC_STATE_COUNT
};
#undef SYNC_STATE_ENUM_

const char *sync_state_name(enum sync_state s);   /* "?" out of range */

struct sync_info {
	enum sync_state state;
	bool peer_known;            /* a handshake ever completed; then peer is set */
	struct sync_peer peer;
	double up_for;              /* s since the connection in use came up; 0 if none */
	uint64_t tx_epoch;          /* our stream */
	uint64_t tx_seq;            /* last frame sealed */
	uint64_t tx_acked;          /* last frame the peer acknowledged */
	size_t unacked_frames;      /* in the retransmit queue */
	size_t unsent_frames;       /* of those, not yet written on this connection (all while down) */
	size_t queued_bytes;        /* retransmit queue size */
	uint64_t lag_ms;            /* age of the oldest unacknowledged frame */
	bool resync_pending;        /* our next handshake starts a new stream */
	bool bulk_sending;          /* BEGIN queued, END not yet */
	uint64_t rx_epoch;          /* the peer's stream */
	uint64_t rx_seq;            /* last frame applied */
	bool bulk_receiving;        /* the peer's BEGIN seen, END not yet */
	uint64_t bulk_resyncs;      /* = stats.resyncs */
	bool digest_match;          /* false also before the first handshake */
};

/*
 * Create a channel on loop: validate cfg, open the listening socket (or take
 * cfg->listen_fd). Nothing is accepted or connected before sync_start().
 * kr (borrowed, must outlive the channel or be replaced with
 * sync_set_keyring) needs a send key. ops (borrowed) and arg are passed to
 * the callbacks. Returns 0 and *out, or -EINVAL (bad cfg: names, addresses,
 * boot epoch, timers), -ENOKEY, -ENOMEM, or the -errno of socket/bind/listen.
 */
int sync_new(struct ev_loop *loop, const struct sync_cfg *cfg,
    const struct auth_keyring *kr, const struct sync_ops *ops, void *arg,
    struct sync **out);

/* Start accepting and connecting. Calling it twice is a no-op. */
void sync_start(struct sync *ch);

/* Close every connection and socket, free. No callback runs. NULL is a no-op. */
void sync_free(struct sync *ch);

/*
 * Queue ev for the peer; the data is copied (queues included). Returns 0
 * (queued, or discarded and counted while a resync is pending), -EINVAL
 * (!syncf_event_valid, or a BULK event: those are the channel's), -EMSGSIZE
 * (too large for one frame) or -ENOMEM.
 */
int sync_queue_event(struct sync *ch, const struct sync_event *ev);

/*
 * The snapshot asked for by on_resync_needed(bulk_id) is complete: queue
 * BULK END with the number of events queued since BEGIN. Returns 0, or
 * -ESTALE when that snapshot was cancelled or superseded (wait for the next
 * on_resync_needed), or -ENOMEM.
 */
int sync_bulk_end(struct sync *ch, uint64_t bulk_id);

/*
 * Seal the events queued so far into a frame now and write what the socket
 * takes, instead of waiting for the end of the loop turn (e.g. the final
 * state of a switchover). Returns 0 or -ENOMEM / -ENOKEY (the stream was
 * lost: a resync follows).
 */
int sync_flush(struct sync *ch);

/*
 * Start a new stream with a full snapshot: now when connected
 * (on_resync_needed runs inside this call), else at the next handshake.
 */
void sync_resync(struct sync *ch);

/* Drop the connection in use (why is logged) and reconnect; the stream resumes. */
void sync_reconnect(struct sync *ch, const char *why);

/* Replace the keyring (reload). The next frames are signed with its send key. */
int sync_set_keyring(struct sync *ch, const struct auth_keyring *kr);

/*
 * A new config digest (reload): reconnects when it changed, so both sides
 * compare digests again.
 */
void sync_set_digest(struct sync *ch, const uint8_t digest[SYNC_DIGEST_LEN]);

/* For tandemctl sync and the metrics. */
void sync_info(const struct sync *ch, struct sync_info *out);
const struct sync_stats *sync_stats(const struct sync *ch);

#endif
