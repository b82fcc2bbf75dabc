/*
 * repair — rebuilding established TCP connections on the other node with
 * TCP_REPAIR (daemon/sync/repair.c, stale.c). The only module that knows
 * TCP_REPAIR; everything in it follows the measurements in
 * shared/research/TCP_REPAIR.md (cited below as "research").
 *
 * A struct repair_sock is everything needed to rebuild one socket. It comes
 * from one of two snapshots:
 *
 *   live ("cheap")  repair_snapshot(fd, &rs, false) once, right after accept()
 *                   or connect(). The connection keeps running; afterwards the
 *                   owner only counts bytes and calls repair_advance() (or
 *                   sets write_seq / rcv_nxt with repair_seq_add() from totals).
 *                   Sequence numbers then cost no syscall.
 *   frozen          repair_snapshot(fd, &rs, true) on a socket nothing reaches
 *                   any more (VIP deleted or link cut: the freeze comes first),
 *                   then repair_close_silently(fd). Also copies the unread
 *                   receive queue and the unacked + unsent send queue, so a
 *                   planned handover loses nothing.
 *
 * The standby rebuilds with repair_restore() once the VIP is on its interface
 * (bind and connect need the address) and before the gratuitous ARP.
 *
 * After a crash takeover, bytes the dead node's kernel ACKed but the synced
 * state does not cover cannot be recreated. A struct repair_watch, opened
 * long before (closing or rebinding a packet socket costs an RCU grace
 * period, ~15 ms), looks at the peers' answers to the window probe that
 * repair_restore() sends and returns a verdict per connection;
 * repair_reset() then ends a stale one with a RST the peer accepts, instead
 * of leaving it hanging for tcp_retries2 (~15 min).
 *
 * Everything here needs CAP_NET_ADMIN (TCP_REPAIR) and, for the watch,
 * CAP_NET_RAW. No globals, no event loop: the watch exposes an fd, a
 * processing function and a deadline for the caller's loop. Thread-compatible:
 * distinct objects may be used from distinct threads.
 */
#ifndef TANDEM_REPAIR_H
#define TANDEM_REPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/* ---- sequence arithmetic (RFC 1982 style, modulo 2^32) ------------------ */

/* a comes strictly before b in sequence space (less than 2^31 apart). */
static inline bool
repair_seq_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static inline bool
repair_seq_after(uint32_t a, uint32_t b)
{
	return repair_seq_before(b, a);
}

/* lo <= x <= hi, walking forward from lo (the range may wrap past 2^32). */
static inline bool
repair_seq_between(uint32_t x, uint32_t lo, uint32_t hi)
{
	return (uint32_t)(x - lo) <= (uint32_t)(hi - lo);
}

/* The sequence number n bytes after seq: a 64-bit byte total folds in mod 2^32. */
static inline uint32_t
repair_seq_add(uint32_t seq, uint64_t n)
{
	return seq + (uint32_t)n;
}

/* ---- the state of one connection ---------------------------------------- */

/* Options negotiated on the SYN exchange (tcpi_options). */
#define REPAIR_OPT_TS     0x1u  /* timestamps */
#define REPAIR_OPT_SACK   0x2u  /* SACK permitted */
#define REPAIR_OPT_WSCALE 0x4u  /* window scaling */

#define REPAIR_WSCALE_MAX 14    /* RFC 7323; the kernel refuses more (EFBIG) */

union repair_addr {
	struct sockaddr sa;
	struct sockaddr_in in4;
	struct sockaddr_in6 in6;
};

/*
 * One connection. The address family is local.sa.sa_family (AF_INET or
 * AF_INET6; peer has the same). Sequence numbers and timestamps are u32 and
 * wrap.
 *
 * write_seq  the sequence number of the next byte the application writes.
 *            The send queue, when present, is the sndq_len bytes before it.
 * rcv_nxt    live snapshot: the sequence number of the next byte the
 *            application reads (bytes still unread in the kernel are left
 *            out: the application counts them when it reads them).
 *            Frozen snapshot: the end of the receive queue, which is the
 *            rcvq_len bytes before it.
 *
 * Queues: NULL and 0 unless a frozen snapshot filled them. Memory from a
 * snapshot is owned by the struct: release it with repair_sock_clear().
 * A caller filling the struct by hand (the sync receiver) may point them at
 * its own buffers and must then not call repair_sock_clear(). repair_restore()
 * only reads them.
 */
struct repair_sock {
	union repair_addr local;
	union repair_addr peer;
	uint32_t write_seq;
	uint32_t rcv_nxt;
	uint8_t opts;         /* REPAIR_OPT_* */
	uint8_t snd_wscale;   /* the peer's shift: scales the windows it advertises */
	uint8_t rcv_wscale;   /* our shift */
	uint16_t mss_clamp;   /* TCP_MAXSEG in repair mode: what TCPOPT_MSS expects */
	uint32_t snd_wnd;     /* TCP_REPAIR_WINDOW; snd_wl1 and rcv_wup are derived */
	uint32_t max_window;
	uint32_t rcv_wnd;
	uint32_t ts_val;      /* TCP_TIMESTAMP at the snapshot; low bit set: µs clock */
	uint64_t ts_wall_ms;  /* CLOCK_REALTIME in ms when ts_val was read */
	uint8_t *rcvq;        /* unread bytes, in order */
	uint32_t rcvq_len;
	uint8_t *sndq;        /* from snd_una: sent-but-unacked bytes, then unsent ones */
	uint32_t sndq_len;
	uint32_t sndq_unsent; /* the unsent tail of sndq (informational: restore resends all) */
};

/*
 * The application moved bytes since the last call: write_seq advances by
 * written and rcv_nxt by read, modulo 2^32. Call it only after the bytes are
 * really written to / read from the socket.
 */
void repair_advance(struct repair_sock *rs, uint32_t written, uint32_t read);

/*
 * Is rs fit for repair_restore()? Checks family, matching peer family,
 * non-zero ports, window scales, mss_clamp (>= 88, the kernel's TCP_MIN_MSS),
 * max_window >= snd_wnd, queue pointers matching their
 * lengths and sndq_unsent <= sndq_len. Returns 0, -EAFNOSUPPORT or -EINVAL.
 * Run it on everything that came over the wire.
 */
int repair_sock_check(const struct repair_sock *rs);

/* Free the queues a frozen snapshot allocated; the rest is kept. NULL is a no-op. */
void repair_sock_clear(struct repair_sock *rs);

/* Room for every option repair_opts_encode() can produce. */
#define REPAIR_OPTS_MAX 4

/*
 * Encode rs's options for TCP_REPAIR_OPTIONS into out: MSS always (mss_clamp),
 * then SACK_PERM, WINDOW (snd_wscale | rcv_wscale << 16) and TIMESTAMP for
 * those in rs->opts. Returns the number of entries used.
 */
size_t repair_opts_encode(const struct repair_sock *rs,
    struct tcp_repair_opt out[REPAIR_OPTS_MAX]);

/*
 * The TCP_TIMESTAMP value to restore at wall-clock now_ms: the snapshot's
 * value plus the time since (never negative: a clock behind counts as zero)
 * plus margin_ms, which must cover the clock difference between the nodes
 * (the peer drops every segment whose TSval is below the last one it saw:
 * PAWS, research pitfall 5). The low bit is the kernel's µs-clock flag
 * (>= 6.7): a ms-clock value keeps it clear, a µs one counts in µs and keeps
 * it set.
 */
uint32_t repair_ts_value(uint32_t ts_val, uint64_t ts_wall_ms, uint64_t now_ms,
    uint32_t margin_ms);

/* ---- steps, for errors -------------------------------------------------- */

#define REPAIR_STEPS(X)                                             \
	X(REPAIR_STEP_NONE, "none")                                 \
	X(REPAIR_STEP_CHECK, "check")            /* repair_sock_check */ \
	X(REPAIR_STEP_INFO, "tcp-info")                             \
	X(REPAIR_STEP_STATE, "state")            /* not ESTABLISHED */ \
	X(REPAIR_STEP_REPAIR_ON, "repair-on")                       \
	X(REPAIR_STEP_SEND_SEQ, "send-seq")                         \
	X(REPAIR_STEP_SEND_PEEK, "send-queue-peek")                 \
	X(REPAIR_STEP_RECV_SEQ, "recv-seq")                         \
	X(REPAIR_STEP_RECV_PEEK, "recv-queue-peek")                 \
	X(REPAIR_STEP_MAXSEG, "maxseg")                             \
	X(REPAIR_STEP_WINDOW, "window")                             \
	X(REPAIR_STEP_TIMESTAMP, "timestamp")                       \
	X(REPAIR_STEP_REPAIR_OFF, "repair-off")                     \
	X(REPAIR_STEP_REUSEADDR, "reuseaddr")                       \
	X(REPAIR_STEP_SOCKET, "socket")                             \
	X(REPAIR_STEP_BIND, "bind")                                 \
	X(REPAIR_STEP_CONNECT, "connect")                           \
	X(REPAIR_STEP_OPTIONS, "options")                           \
	X(REPAIR_STEP_RECV_QUEUE, "recv-queue")                     \
	X(REPAIR_STEP_NO_QUEUE, "no-queue")                         \
	X(REPAIR_STEP_SEND_QUEUE, "send-queue")                     \
	X(REPAIR_STEP_SOCKOPTS, "sockopts")                         \
	X(REPAIR_STEP_LINGER, "linger")                             \
	X(REPAIR_STEP_CLOSE, "close")

enum repair_step {
#define REPAIR_STEP_ENUM(e, s) e,
	REPAIR_STEPS(REPAIR_STEP_ENUM)
#undef REPAIR_STEP_ENUM
	REPAIR_STEP_COUNT
};

/* "send-seq", ... for logs; "?" out of range. */
const char *repair_step_name(enum repair_step step);

/* ---- snapshot ----------------------------------------------------------- */

/*
 * Snapshot an ESTABLISHED TCP socket into *out (which is overwritten).
 *
 * with_queues false (live): enters repair mode, reads the state, leaves with
 * TCP_REPAIR_OFF_NO_WP (no window probe) and sets SO_REUSEADDR again if it
 * was set (leaving repair clears it). The connection is not disturbed.
 * with_queues true (frozen): also copies both queues into malloc'd buffers
 * owned by *out, and leaves the socket IN repair mode: the caller must then
 * repair_close_silently(fd) (or, to keep the connection after all, set
 * TCP_REPAIR to -1 itself).
 *
 * failed (may be NULL) receives the step that failed. Returns 0, or -errno:
 * -ENOTCONN (not ESTABLISHED), -EPERM (no CAP_NET_ADMIN), -EAGAIN (data kept
 * arriving while the receive sequence was read: try again), -EIO (a queue
 * changed under a frozen snapshot), -ENOMEM. On error *out holds no memory and
 * the socket is out of repair mode again (when it could be entered at all).
 */
int repair_snapshot(int fd, struct repair_sock *out, bool with_queues,
    enum repair_step *failed);

/*
 * Close fd without a FIN or a RST: the kernel forgets the connection, the
 * peer notices nothing. Enters repair mode first when fd is not in it yet.
 * Returns 0 (fd closed) or -errno if repair mode could not be entered: fd is
 * then left open, since closing it would tell the peer.
 */
int repair_close_silently(int fd);

/* ---- restore ------------------------------------------------------------ */

struct repair_restore_opts {
	uint64_t now_ms;       /* CLOCK_REALTIME in ms for the timestamp; 0 = read the clock */
	uint32_t ts_margin_ms; /* see repair_ts_value() */
	bool nodelay;          /* set TCP_NODELAY on the rebuilt socket */
	/*
	 * Return the socket still in repair mode (silent); repair_restore_finish()
	 * brings it to life. A takeover builds every socket first: the first
	 * packet a rebuilt socket sends makes its peer (and, through our ARP
	 * request, every host) send to this node, whose kernel would answer a
	 * connection not rebuilt yet with a RST.
	 */
	bool stay_in_repair;
};

/* Covers NTP-synced clocks with room to spare; a TSval ahead of time is harmless. */
#define REPAIR_TS_MARGIN_MS 1000u
#define REPAIR_RESTORE_OPTS_DEFAULT { .now_ms = 0, .ts_margin_ms = REPAIR_TS_MARGIN_MS, \
	.nodelay = false, .stay_in_repair = false }

struct repair_restored {
	int fd;                   /* non-blocking, close-on-exec, ESTABLISHED; -1 on error */
	enum repair_step failed;  /* REPAIR_STEP_NONE on success */
	/*
	 * Bytes of rs->sndq written after leaving repair mode. A send queue bigger
	 * than the new socket's buffer is written only in part: the caller writes
	 * sndq[sndq_sent..] itself, like any pending output, before new data.
	 */
	uint32_t sndq_sent;
};

/*
 * Rebuild the connection rs describes, in the order the research measured:
 * socket, TCP_REPAIR 1, bind (succeeds even under a listener on the same
 * port), receive and send queue sequence numbers, TCP_MAXSEG (else the socket
 * keeps an MSS of 524 for good), connect (no SYN), TCP_REPAIR_OPTIONS,
 * TCP_TIMESTAMP, the unread receive-queue bytes, the send queue's
 * already-sent part as sent (TCP_SEND_QUEUE: snd_nxt covers it, so a peer
 * that holds it all — its ACKs died with the old node — is believed at once;
 * written as new data, an ACK beyond one congestion window of it is ignored by
 * the kernel and the connection stalls for good), TCP_REPAIR_WINDOW with
 * snd_wl1 = rcv_wup = rcv_nxt, TCP_REPAIR 0 (one window probe, whose answer
 * the watch uses), then the never-sent tail as normal data. Sent bytes the
 * peer lacks come again at the RTO (~1 s, the research's measurement).
 *
 * The local address must be on an interface first (else bind gives
 * -EADDRNOTAVAIL), and the old socket with the same 4-tuple must be gone on
 * this node (else connect gives -EADDRNOTAVAIL).
 * opts may be NULL (defaults). Returns 0 with out->fd, or -errno with
 * out->failed naming the step; nothing is left open on error.
 */
int repair_restore(const struct repair_sock *rs,
    const struct repair_restore_opts *opts, struct repair_restored *out);

/*
 * Second half of a repair_restore() with opts->stay_in_repair: leave repair
 * mode (one window probe) and write rs's send queue as normal data; out->fd
 * is the socket repair_restore() returned. On failure it is closed silently
 * and out->fd is -1. Returns 0 or -errno (out->failed names the step).
 */
int repair_restore_finish(const struct repair_sock *rs,
    const struct repair_restore_opts *opts, struct repair_restored *out);

/*
 * End a connection whose state turned out stale with a RST the peer accepts
 * (RFC 5961 wants seq == the peer's rcv_nxt exactly, which is the ACK number
 * of the peer's segments). stale_fd (the restored socket, or -1) is closed
 * silently first, freeing the 4-tuple; then a throw-away socket is rebuilt
 * from rs with write_seq = peer_ack and rcv_nxt = peer_seq, leaves repair
 * mode without a probe, gets SO_LINGER {1, 0} and is closed: the kernel sends
 * RST seq=peer_ack. Returns 0 or -errno (failed, may be NULL, names the step).
 * stale_fd is closed in every case except an error at REPAIR_STEP_CLOSE.
 */
int repair_reset(int stale_fd, const struct repair_sock *rs, uint32_t peer_seq,
    uint32_t peer_ack, const struct repair_restore_opts *opts,
    enum repair_step *failed);

/* ---- stale-state watch -------------------------------------------------- */

struct repair_watch;

#define REPAIR_VERDICTS(X)                                                    \
	X(REPAIR_VERDICT_PENDING, "pending") /* not decided yet */            \
	X(REPAIR_VERDICT_OK, "ok")           /* the peer is where our state is */ \
	X(REPAIR_VERDICT_STALE, "stale")     /* reset it: repair_reset() */   \
	X(REPAIR_VERDICT_GONE, "gone")       /* the peer sent a RST: already dead */ \
	X(REPAIR_VERDICT_SILENT, "silent")   /* nothing conclusive from the peer in time */

enum repair_verdict_kind {
#define REPAIR_VERDICT_ENUM(e, s) e,
	REPAIR_VERDICTS(REPAIR_VERDICT_ENUM)
#undef REPAIR_VERDICT_ENUM
	REPAIR_VERDICT_COUNT
};

const char *repair_verdict_name(enum repair_verdict_kind v);

#define REPAIR_REASONS(X)                                                     \
	X(REPAIR_REASON_NONE, "none")                                         \
	X(REPAIR_REASON_ACK_BELOW, "ack-below")   /* the peer lacks bytes we cannot resend */ \
	X(REPAIR_REASON_ACK_BEYOND, "ack-beyond") /* the peer has bytes we never knew of */ \
	X(REPAIR_REASON_SEQ_HOLE, "seq-hole")     /* the peer sent bytes we lack, never resent */ \
	X(REPAIR_REASON_IN_ORDER, "in-order")     /* ok: a segment at our rcv_nxt */ \
	X(REPAIR_REASON_PEER_RST, "peer-rst")                                 \
	X(REPAIR_REASON_TIMEOUT, "timeout")       /* silent */

enum repair_reason {
#define REPAIR_REASON_ENUM(e, s) e,
	REPAIR_REASONS(REPAIR_REASON_ENUM)
#undef REPAIR_REASON_ENUM
	REPAIR_REASON_COUNT
};

const char *repair_reason_name(enum repair_reason r);

struct repair_verdict {
	uint64_t cookie;                 /* as given to repair_watch_add() */
	enum repair_verdict_kind verdict;
	enum repair_reason reason;
	bool seen;                       /* a segment from the peer was seen: */
	uint32_t peer_seq;               /*   its seq (the last one seen) */
	uint32_t peer_ack;               /*   its ACK number (what repair_reset() needs) */
	uint64_t after_ms;               /* from repair_watch_add() to the decision */
};

struct repair_watch_cfg {
	/*
	 * A peer whose seq is beyond our rcv_nxt either has unACKed data in
	 * flight, which it will retransmit starting exactly at our rcv_nxt, or
	 * lost bytes the dead node ACKed. Wait this long for the retransmission
	 * (research: it came after 110-218 ms). Must exceed the peer's RTO.
	 */
	uint32_t hole_timeout_ms;
	/*
	 * Nothing conclusive from the peer (probe or answer lost, peer gone):
	 * give up with REPAIR_VERDICT_SILENT and leave the connection alone.
	 */
	uint32_t silence_timeout_ms;
};

#define REPAIR_WATCH_CFG_DEFAULT { .hole_timeout_ms = 1000, .silence_timeout_ms = 1000 }

struct repair_watch_stats {
	uint64_t packets;       /* read from the packet socket while armed */
	uint64_t matched;       /* ... that belonged to a watched connection */
	uint64_t malformed;     /* too short or not parseable, ignored */
	uint64_t kernel_drops;  /* the packet socket's own drop counter (buffer full) */
};

/*
 * Open the watch: an AF_PACKET socket on interface ifindex (0: all), with a
 * filter that takes nothing until armed, and a large receive buffer (a
 * takeover answers every probe at once). Open it at start-up, never on the
 * takeover path. Returns 0 and *out, or -errno (-EPERM without CAP_NET_RAW).
 */
int repair_watch_new(unsigned ifindex, struct repair_watch **out);

/* Close (costs an RCU grace period, ~15 ms: not on the takeover path). NULL is a no-op. */
void repair_watch_free(struct repair_watch *w);

/* The fd to poll for reading (it stays the same for the watch's life). */
int repair_watch_fd(const struct repair_watch *w);

/*
 * Start a takeover's watch: forget earlier connections and verdicts, take
 * inbound TCP segments from now on, drop whatever was queued before.
 * cfg may be NULL (REPAIR_WATCH_CFG_DEFAULT). now_ms: the caller's monotonic
 * clock, used by every later call. Returns 0 or -errno.
 */
int repair_watch_arm(struct repair_watch *w, const struct repair_watch_cfg *cfg,
    uint64_t now_ms);

/* Stop taking segments and forget every connection (verdicts not popped are lost). */
void repair_watch_disarm(struct repair_watch *w);

/*
 * Watch the connection rs describes (only addresses, write_seq, sndq_len and
 * rcv_nxt are used; rs is not kept). Add it before repair_restore(), so the
 * answer to its window probe cannot be missed. What is acceptable:
 * the peer's ACK within [write_seq - sndq_len, write_seq]; a segment at
 * rcv_nxt (or spanning it). Returns 0, -EEXIST (same 4-tuple twice), -ENOMEM,
 * -EINVAL (bad addresses) or -ENOTCONN (not armed).
 */
int repair_watch_add(struct repair_watch *w, const struct repair_sock *rs,
    uint64_t cookie, uint64_t now_ms);

/*
 * Read what the packet socket holds (up to a bounded batch, so one call never
 * starves the loop: call again while it returns > 0), judge the segments and,
 * once the socket is drained, apply the deadlines at now_ms (so an answer
 * queued before a deadline is never judged late). Call it both when the fd is
 * readable and when the deadline timer fires. Returns the number of packets
 * read, or -errno.
 */
int repair_watch_process(struct repair_watch *w, uint64_t now_ms);

/*
 * Judge one IPv4/IPv6 packet (network header first; may be truncated after
 * the TCP header) as if it had been read at now_ms. repair_watch_process()
 * uses it; also for callers (and tests) that capture packets elsewhere.
 */
void repair_watch_input(struct repair_watch *w, const uint8_t *pkt, size_t len,
    uint64_t now_ms);

/*
 * Apply the deadlines only, for callers that feed repair_watch_input()
 * themselves; a watch reading its own socket uses repair_watch_process().
 */
void repair_watch_expire(struct repair_watch *w, uint64_t now_ms);

/*
 * The earliest deadline of an undecided connection, in *deadline_ms: the
 * caller's timer should fire then and call repair_watch_process(). Returns 0,
 * or -ENOENT when every connection is decided.
 */
int repair_watch_next_deadline(const struct repair_watch *w, uint64_t *deadline_ms);

/* Connections still undecided. */
size_t repair_watch_pending(const struct repair_watch *w);

/*
 * Take the next decided verdict not taken yet, in decision order. Returns
 * true and fills *out, or false when there is none (for now).
 */
bool repair_watch_verdict(struct repair_watch *w, struct repair_verdict *out);

/* Counters since repair_watch_arm() (reads and accumulates the kernel's drop count). */
void repair_watch_get_stats(struct repair_watch *w, struct repair_watch_stats *out);

#endif
