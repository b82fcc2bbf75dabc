/*
 * session — keeping proxied connections alive across a failover
 * (daemon/session/). It ties the proxy workers, the sync channel, the shadow
 * table, TCP_REPAIR and the agent together; none of those know each other.
 *
 * Who does what (DESIGN "State sync"):
 *
 *   worker thread (daemon/proxy/psync.c)          main thread (session.c)
 *   ------------------------------------          -----------------------
 *   live snapshot of both halves when the         local table: our own
 *   backend connect completes -> OPEN             connections (for a bulk
 *   byte counts, once per loop turn -> UPDATE     resync), forwarded to the
 *   connection gone -> CLOSE                      sync channel as events
 *                 --- sess_wev over a ring_chan per worker --->
 *                                                 shadow table: the peer's
 *                                                 connections (sync events)
 *                 <--- sess_cmd over a ring_chan per worker ---
 *   ADOPT: a restored pair of sockets becomes     takeover: restore every
 *   a relaying connection (then OPEN as usual)    shadow entry, hand it out
 *   KILL: the stale check condemned it            stale watch verdicts
 *   FREEZE: planned handover: dump every          switchover: REQUEST, VIP
 *   connection in repair mode, close silently     down, FREEZE, final state,
 *   -> FROZEN per connection, FREEZE_DONE         FROZEN marker
 *
 * Conversion between the wire's struct sync_sock and TCP_REPAIR's struct
 * repair_sock lives here too (daemon/session/sconv.c), shared by both sides.
 */
#ifndef TANDEM_SESSION_H
#define TANDEM_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tandem/repair.h>
#include <tandem/sync.h>

struct ev_loop;
struct cfg;
struct agent;
struct proxy_frontend;
struct ring_chan;

/* ---- sync_sock <-> repair_sock (sconv.c) -------------------------------- */

/*
 * The wire form of a live snapshot taken at byte counts (0, 0): snd_isn =
 * write_seq, rcv_isn = rcv_nxt, bytes 0, queues borrowed from rs (NULL when
 * none). Addresses copied as they are. Returns 0 or -EAFNOSUPPORT.
 */
int sess_sock_from_repair(const struct repair_sock *rs, struct sync_sock *out);

/*
 * What repair_restore() needs for ss: write_seq = snd_isn + bytes_written,
 * rcv_nxt = rcv_isn + bytes_read (mod 2^32, see sync_sock_write_seq), queues
 * borrowed from ss. Returns 0, or -EAFNOSUPPORT / -EINVAL when the result
 * fails repair_sock_check().
 */
int sess_sock_to_repair(const struct sync_sock *ss, struct repair_sock *out);

/* ---- worker -> main (one ring_chan per worker, main consumes) ----------- */

#define SESS_WEV_LIST(X)                                                   \
	X(OPEN, "open")           /* u.conn: a new relaying connection */  \
	X(UPDATE, "update")       /* u.update: byte counts / eof changed */ \
	X(CLOSE, "close")         /* u.id: gone */                         \
	X(FROZEN, "frozen")       /* u.conn: dumped by FREEZE, queues incl. */ \
	X(FREEZE_DONE, "freeze-done") /* u.done: the worker holds nothing now */ \
	X(ADOPT_FAILED, "adopt-failed") /* u.id = restore id: fds closed */

#define SESS_WEV_ENUM_(sym, name) SESS_WEV_##sym,
enum sess_wev_type {
	SESS_WEV_LIST(SESS_WEV_ENUM_)
	SESS_WEV_COUNT
};
#undef SESS_WEV_ENUM_

/*
 * A connection's state in one malloc'd block: the queue pointers of
 * st.client / st.server_sock (FROZEN only) point into data[]. Whoever pops
 * the event owns it and releases it with free().
 */
struct sess_conn_box {
	struct sync_conn_state st;
	uint8_t data[];
};

struct sess_wev {
	enum sess_wev_type type;
	unsigned worker;
	union {
		struct sess_conn_box *conn;         /* OPEN, FROZEN */
		struct sync_conn_update update;     /* UPDATE: counts since the snapshot */
		uint64_t id;                        /* CLOSE: conn id; ADOPT_FAILED: restore id */
		struct {
			uint32_t frozen;            /* FROZEN events sent */
			uint32_t failed;            /* connections that could not be dumped (reset) */
		} done;
	} u;
};

/* ---- main -> worker (one ring_chan per worker, the worker consumes) ----- */

#define SESS_CMD_LIST(X)                                                 \
	X(ADOPT, "adopt")   /* u.adopt: relay these restored sockets */  \
	X(KILL, "kill")     /* u.kill: the stale check condemned them */ \
	X(FREEZE, "freeze") /* planned handover: dump and drop everything */ \
	X(GO, "go")         /* u.go: the stale check passed, start relaying */

#define SESS_CMD_ENUM_(sym, name) SESS_CMD_##sym,
enum sess_cmd_type {
	SESS_CMD_LIST(SESS_CMD_ENUM_)
	SESS_CMD_COUNT
};
#undef SESS_CMD_ENUM_

enum sess_half {
	SESS_HALF_CLIENT = 0,
	SESS_HALF_SERVER,
	SESS_HALF_COUNT
};

struct sess_cmd {
	enum sess_cmd_type type;
	union {
		struct {
			uint64_t restore_id;    /* main's id for KILL, unique per node run */
			size_t fe;              /* index into the worker's frontends */
			int server;             /* index in the frontend's pool; -1: pick one */
			int cfd;                /* restored client socket (owned from now on) */
			int sfd;                /* restored server socket, -1: connect anew */
			bool client_eof;
			bool server_eof;
			/*
			 * Read nothing until GO (or KILL): the stale check judges
			 * the peers' first ACKs against what the restored state
			 * sent, so nothing new may go out before it has. Writing
			 * `left` is fine: it is part of that state.
			 */
			bool held;
			/*
			 * Send-queue bytes repair_restore() could not write at once
			 * (repair_restored.sndq_sent < sndq_len): malloc'd, owned by
			 * the worker from now on, written before anything else.
			 */
			uint8_t *left[SESS_HALF_COUNT];
			size_t left_len[SESS_HALF_COUNT];
		} adopt;
		struct {
			uint64_t restore_id;
			enum sess_half half;    /* the stale one: repair_reset() it */
			struct repair_sock rs;  /* its state (no queues) */
			uint32_t peer_seq;
			uint32_t peer_ack;
		} kill;
		struct {
			uint64_t restore_id;
		} go;
	} u;
};

/*
 * What a worker needs to take part (proxy_worker_new's argument). NULL
 * channels: no session sync, the worker behaves as before.
 *   events   producer: this worker; consumer: main (sess_attach_worker sets it up)
 *   cmds     producer: main; consumer: this worker (created on its loop)
 *   frozen_fds  set while the fd is a relayed client or server socket, for
 *            the crash handler (sess_crash_freeze); one byte per fd number
 *            below nfds, written with relaxed atomics.
 */
struct sess_worker_link {
	struct ring_chan *events;
	struct ring_chan **cmds;        /* the worker stores its channel here */
	_Atomic unsigned char *fd_flags;
	size_t nfds;
};

#define SESS_RING_SLOTS 16384u      /* per worker and direction */
#define SESS_RING_BATCH 256u

/* ---- the main thread's side (session.c) -------------------------------- */

struct sess;

/* Counters, for tandemctl sync and the metrics. */
struct sess_stats {
	uint64_t takeovers;
	uint64_t restored;              /* connections rebuilt, all takeovers */
	uint64_t restore_failed;
	uint64_t stale_reset;           /* condemned by the stale check */
	uint64_t stale_gone;            /* the peer had reset them already */
	uint64_t stale_silent;          /* no answer in time, left alone */
	uint64_t ring_overflows;        /* worker events lost: a resync followed */
	uint64_t handovers_sent;        /* planned switchovers given */
	uint64_t handovers_received;
	uint64_t frozen;                /* connections dumped for a handover */
	uint64_t freeze_failed;
	uint64_t mismatch_refused;      /* takeovers that restored nothing: digests differ */
	/* the last takeover */
	uint64_t last_restored;
	uint64_t last_failed;
	uint64_t last_duration_us;      /* VIP up -> every socket handed to a worker */
	uint64_t duration_sum_us;       /* all takeovers, for the histogram's _sum */
	double last_takeover_wall;      /* CLOCK_REALTIME s, 0 none */
	/* takeover durations, histogram buckets (upper bounds in ms, +Inf last) */
	uint64_t duration_le[8];
};

#define SESS_DURATION_BUCKETS_MS { 1, 5, 10, 50, 100, 200, 500 }  /* then +Inf */

struct sess_info {
	bool enabled;                   /* a sync block is configured */
	struct sync_info sync;
	size_t local_entries;           /* our connections known to main */
	struct shadow_stats_view {
		size_t entries;
		size_t max_entries;
		uint64_t evicted;
	} shadow;
	bool sync_ready;                /* the peer's first bulk arrived: may preempt */
	bool handover_active;           /* a switchover in progress (either side) */
	struct sess_stats stats;
};

/*
 * Life cycle (main thread):
 *   sess_new()          with cfg->sync.enabled: the sync channel (not started),
 *                       both tables, the stale watch (a packet socket, opened
 *                       now: never on the takeover path), one event channel per
 *                       worker. Without a sync block *out is NULL and every
 *                       other call accepts NULL as "no session sync".
 *   sess_worker_link()  what proxy_worker_new() takes for worker i.
 *   sess_start()        after the workers and the agent exist: registers the
 *                       agent hooks (VIPs up -> takeover before the announce,
 *                       VIPs down -> a handover's freeze), the crash hook,
 *                       starts the channel. The node may not preempt until the
 *                       peer's first snapshot has arrived (sync ready).
 *   sess_switchover()   planned handover of the sessions (tandemctl
 *                       switchover, SIGTERM with shutdown-handover on).
 *   sess_free()         closes everything; restored sockets belong to workers.
 */
int sess_new(struct ev_loop *loop, const struct cfg *cfg,
    struct proxy_frontend *fes, size_t nfes, unsigned nworkers,
    struct sess **out);

/* Fill *out for worker i (< nworkers). Returns 0, or -ENOENT (s NULL or i out of range). */
int sess_worker_link(struct sess *s, unsigned i, struct sess_worker_link *out);

/* Returns 0 or -errno. */
int sess_start(struct sess *s, struct agent *agent);

void sess_free(struct sess *s);

/*
 * Can a planned handover keep the sessions now? The channel is up, the
 * peer's config digest matches and no handover is under way.
 */
bool sess_can_handover(const struct sess *s);

/*
 * Hand vrrp-group `group` (its index; -1: every MASTER group) and the
 * sessions over to the peer: REQUEST to the peer (acked), the agent's
 * switchover (VIPs deleted first: the freeze), every worker dumps its
 * connections in repair mode and closes them silently, the final state and a
 * FROZEN marker go to the peer, which restores them before it announces.
 * done(arg, result) runs once on the main loop when the final state was
 * acknowledged (0), or with -errno when the handover fell back to a plain
 * switchover (-ENOTCONN: no peer; -ETIMEDOUT: no ack in time). done may be
 * NULL. Returns 0 (started) or -EBUSY / -EINVAL (nothing to hand over).
 */
int sess_switchover(struct sess *s, int group, void (*done)(void *arg, int result),
    void *arg);

void sess_get_info(const struct sess *s, struct sess_info *out);

/*
 * The sync channel's counters (drop reasons, frames, events) for tandemctl
 * sync and the metrics; NULL when s is NULL. Valid until sess_free(s).
 */
const struct sync_stats *sess_sync_stats(const struct sess *s);

#endif
