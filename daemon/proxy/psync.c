/*
 * proxy psync — a worker's side of session sync (include/tandem/session.h,
 * DESIGN "State sync"). Everything here runs on the worker's thread; the
 * relay in conn.c calls in only through the hooks in proxy_int.h, each behind
 * a test of w->sync or c->sync, so a worker without sync runs as before.
 *
 * What goes to main (link->events), per connection, in this order:
 *   OPEN     live snapshot of both sockets when the backend connect completes
 *            (or an ADOPT was set up). The relay's byte totals at that moment
 *            are the base: UPDATEs count from there, like the snapshot's
 *            sequence numbers do.
 *   UPDATE   at most one per loop turn (ev_prepare), for connections whose
 *            bytes moved, with what was really written to / read from each
 *            socket since the snapshot.
 *   CLOSE    the connection closed, or one side sent a FIN (a half-closed
 *            socket is not ESTABLISHED: TCP_REPAIR cannot rebuild it).
 * The channel is bounded. An OPEN that does not fit stays with the
 * connection, an UPDATE is just "still dirty": both are retried on the next
 * turn, and a full channel arms a 1 ms timer instead of spinning (main is
 * busy; its ev_async is already pending). CLOSE and ADOPT_FAILED carry only
 * an id and wait in a bounded array; only when that overflows is an event
 * lost (counted: main's table keeps a ghost until the next resync).
 *
 * Commands from main (the worker's own channel): ADOPT a restored pair of
 * sockets, KILL a restored connection found stale, FREEZE everything for a
 * planned handover. FREEZE blocks the worker for as long as the dump takes:
 * the VIP is gone, this node is becoming the standby, nothing else is urgent.
 */
#include "proxy_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <tandem/log.h>
#include <tandem/repair.h>
#include <tandem/ring.h>
#include <tandem/session.h>

#define PSYNC_SNAPSHOT_TRIES 3      /* data arriving during a snapshot: -EAGAIN */
#define PSYNC_PENDING_MAX 4096      /* CLOSE / ADOPT_FAILED waiting for room */
#define PSYNC_RETRY_S 0.001         /* channel full: try again after */
#define PSYNC_FREEZE_WAIT_MS 2000   /* FREEZE: longest wait for room, in total */
#define PSYNC_FREEZE_NAP_NS 1000000L

/* The four totals of struct sync_conn_update. */
enum psync_count {
	PSYNC_CLIENT_WRITTEN = 0,
	PSYNC_CLIENT_READ,
	PSYNC_SERVER_WRITTEN,
	PSYNC_SERVER_READ,
	PSYNC_COUNT_COUNT
};

struct psync_conn {
	struct proxy_conn *c;
	struct psync_conn *prev, *next;     /* dirty list */
	bool dirty;
	struct sess_conn_box *open;         /* OPEN the channel has not taken yet */
	uint64_t base[PSYNC_COUNT_COUNT];   /* relay totals at the snapshot */
	uint64_t sent[PSYNC_COUNT_COUNT];   /* in the last UPDATE */
};

/* An event that is only an id. */
struct psync_small {
	enum sess_wev_type type;
	uint64_t id;
};

#define PSYNC_STATS(X) \
	X(snapshots_failed) X(opens_sent) X(updates_sent) X(closes_sent) \
	X(ring_full) X(events_lost) X(adopted) X(adopt_failed) X(killed) \
	X(frozen) X(freeze_failed)

struct psync {
	struct proxy_worker *w;
	struct ring_chan *events;           /* borrowed: main consumes */
	struct ring_chan *cmds;             /* owned: we consume */
	_Atomic unsigned char *fd_flags;    /* borrowed, may be NULL */
	size_t nfds;
	bool stopping;                      /* worker shutdown: send nothing */

	ev_prepare prepare;                 /* flushes once per loop turn */
	ev_timer retry;                     /* channel full: flush again later */
	struct psync_conn *dirty_head, *dirty_tail;
	struct psync_small pending[PSYNC_PENDING_MAX];
	size_t npending;

#define PSYNC_STAT_FIELD(f) atomic_uint_fast64_t f;
	struct {
		PSYNC_STATS(PSYNC_STAT_FIELD)
	} st;
#undef PSYNC_STAT_FIELD
};

#define PSYNC_INC(ps, f) \
	atomic_fetch_add_explicit(&(ps)->st.f, 1, memory_order_relaxed)

static uint64_t
psync_clock_ms(clockid_t id)
{
	struct timespec ts;

	(void)clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* For the crash handler: which fds are synced sockets it may freeze. */
static void
psync_fd_flag(struct psync *ps, int fd, unsigned char v)
{
	if (ps->fd_flags != NULL && fd >= 0 && (size_t)fd < ps->nfds)
		atomic_store_explicit(&ps->fd_flags[fd], v, memory_order_relaxed);
}

static int
psync_send(struct psync *ps, const struct sess_wev *ev)
{
	int r = ring_chan_send(ps->events, ev);

	if (r < 0)
		PSYNC_INC(ps, ring_full);
	return r;
}

/* Something waits to be sent: make sure a flush comes before the loop sleeps. */
static void
psync_kick(struct psync *ps)
{
	/* An armed retry means the channel was full a moment ago: let it flush. */
	if (ev_is_active(&ps->retry) || ev_is_active(&ps->prepare))
		return;
	ev_prepare_start(ps->w->loop, &ps->prepare);
}

static void
psync_small(struct psync *ps, enum sess_wev_type type, uint64_t id)
{
	struct sess_wev ev = { .type = type, .worker = ps->w->id };

	ev.u.id = id;
	if (ps->npending == 0 && psync_send(ps, &ev) == 0) {
		if (type == SESS_WEV_CLOSE)
			PSYNC_INC(ps, closes_sent);
		return;
	}
	if (ps->npending == PSYNC_PENDING_MAX) {
		PSYNC_INC(ps, events_lost);
		log_debug("worker %u: %s %llu lost: channel to main full", ps->w->id,
		    type == SESS_WEV_CLOSE ? "close" : "adopt-failed",
		    (unsigned long long)id);
		return;
	}
	ps->pending[ps->npending].type = type;
	ps->pending[ps->npending].id = id;
	ps->npending++;
	psync_kick(ps);
}

static void
psync_dirty_unlink(struct psync *ps, struct psync_conn *pc)
{
	if (!pc->dirty)
		return;
	if (pc->prev != NULL)
		pc->prev->next = pc->next;
	else
		ps->dirty_head = pc->next;
	if (pc->next != NULL)
		pc->next->prev = pc->prev;
	else
		ps->dirty_tail = pc->prev;
	pc->prev = pc->next = NULL;
	pc->dirty = false;
}

/* Appended at the tail: a full channel serves the oldest first, none starves. */
static void
psync_dirty_link(struct psync *ps, struct psync_conn *pc)
{
	if (pc->dirty)
		return;
	pc->dirty = true;
	pc->next = NULL;
	pc->prev = ps->dirty_tail;
	if (ps->dirty_tail != NULL)
		ps->dirty_tail->next = pc;
	else
		ps->dirty_head = pc;
	ps->dirty_tail = pc;
}

static size_t
psync_pending_bytes(const struct proxy_conn *c, enum proxy_dir d)
{
	const struct proxy_buf *b = c->dir[d].buf;

	return b != NULL ? b->len - b->off : 0;
}

/*
 * The relay's totals as the four counts of an UPDATE. dir[d].bytes counts
 * what was read; what was written is that minus what still waits.
 */
static void
psync_totals(const struct proxy_conn *c, uint64_t out[PSYNC_COUNT_COUNT])
{
	out[PSYNC_CLIENT_WRITTEN] = c->dir[PROXY_S2C].bytes -
	    psync_pending_bytes(c, PROXY_S2C);
	out[PSYNC_CLIENT_READ] = c->dir[PROXY_C2S].bytes;
	out[PSYNC_SERVER_WRITTEN] = c->dir[PROXY_C2S].bytes -
	    psync_pending_bytes(c, PROXY_C2S);
	out[PSYNC_SERVER_READ] = c->dir[PROXY_S2C].bytes;
}

/* The OPEN if still unsent, then an UPDATE if the counts moved. 0 or -ENOBUFS. */
static int
psync_flush_conn(struct psync *ps, struct psync_conn *pc)
{
	struct sess_wev ev = { .worker = ps->w->id };
	uint64_t now[PSYNC_COUNT_COUNT];
	int r;

	if (pc->open != NULL) {
		ev.type = SESS_WEV_OPEN;
		ev.u.conn = pc->open;
		if ((r = psync_send(ps, &ev)) < 0)
			return r;
		pc->open = NULL;    /* main's now */
		PSYNC_INC(ps, opens_sent);
	}
	psync_totals(pc->c, now);
	for (int i = 0; i < PSYNC_COUNT_COUNT; i++)
		now[i] -= pc->base[i];
	if (memcmp(now, pc->sent, sizeof(now)) == 0)
		return 0;
	ev.type = SESS_WEV_UPDATE;
	ev.u.update = (struct sync_conn_update){
		.id = pc->c->id,
		.client_written = now[PSYNC_CLIENT_WRITTEN],
		.client_read = now[PSYNC_CLIENT_READ],
		.server_written = now[PSYNC_SERVER_WRITTEN],
		.server_read = now[PSYNC_SERVER_READ],
	};
	if ((r = psync_send(ps, &ev)) < 0)
		return r;
	memcpy(pc->sent, now, sizeof(now));
	PSYNC_INC(ps, updates_sent);
	return 0;
}

/* Send what waits, oldest first, until the channel is full. */
static void
psync_flush(struct psync *ps)
{
	size_t i;
	bool full = false;

	if (ps->stopping)
		return;
	for (i = 0; i < ps->npending; i++) {
		struct sess_wev ev = { .type = ps->pending[i].type, .worker = ps->w->id };

		ev.u.id = ps->pending[i].id;
		if (psync_send(ps, &ev) < 0) {
			full = true;
			break;
		}
		if (ev.type == SESS_WEV_CLOSE)
			PSYNC_INC(ps, closes_sent);
	}
	if (i > 0) {
		memmove(ps->pending, ps->pending + i,
		    (ps->npending - i) * sizeof(ps->pending[0]));
		ps->npending -= i;
	}
	while (!full && ps->dirty_head != NULL) {
		struct psync_conn *pc = ps->dirty_head;

		if (psync_flush_conn(ps, pc) < 0)
			full = true;
		else
			psync_dirty_unlink(ps, pc);
	}
	ev_prepare_stop(ps->w->loop, &ps->prepare);
	if (full && !ev_is_active(&ps->retry)) {
		ev_timer_set(&ps->retry, PSYNC_RETRY_S, 0.);
		ev_timer_start(ps->w->loop, &ps->retry);
	}
}

static void
psync_prepare_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
	(void)loop;
	(void)revents;
	psync_flush(p->data);
}

static void
psync_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	psync_flush(t->data);
}

/*
 * Stop syncing c: clear its fd flags (its fds are still open), drop what
 * waits for it and, with tell, send CLOSE if main knows it (its OPEN went).
 */
static void
psync_conn_detach(struct proxy_conn *c, bool tell)
{
	struct psync *ps = c->w->sync;
	struct psync_conn *pc = c->sync;

	psync_fd_flag(ps, c->cfd, 0);
	psync_fd_flag(ps, c->sfd, 0);
	psync_dirty_unlink(ps, pc);
	if (pc->open != NULL)
		free(pc->open);     /* main never heard of it: nothing to close */
	else if (tell && !ps->stopping)
		psync_small(ps, SESS_WEV_CLOSE, c->id);
	free(pc);
	c->sync = NULL;
}

void
psync_conn_dirty(struct proxy_conn *c)
{
	struct psync *ps = c->w->sync;

	psync_dirty_link(ps, c->sync);
	psync_kick(ps);
}

void
psync_conn_eof(struct proxy_conn *c)
{
	log_debug("conn %llu: half-closed, no longer synced",
	    (unsigned long long)c->id);
	psync_conn_detach(c, true);
}

void
psync_conn_closed(struct proxy_conn *c)
{
	psync_conn_detach(c, true);
}

/* ---- snapshots ------------------------------------------------------------ */

/*
 * -EAGAIN: data kept arriving while rcv_nxt was read; -EIO (frozen only): a
 * queue changed size under the copy. Both are worth another try.
 */
static int
psync_snapshot(int fd, struct repair_sock *rs, bool frozen, enum repair_step *step)
{
	int r = -EAGAIN;

	for (int i = 0; i < PSYNC_SNAPSHOT_TRIES; i++) {
		r = repair_snapshot(fd, rs, frozen, step);
		if (r != -EAGAIN && !(frozen && r == -EIO))
			break;
	}
	return r;
}

static void
psync_names(const struct proxy_conn *c, struct sync_conn_state *st)
{
	snprintf(st->frontend, sizeof(st->frontend), "%s", c->fe->cfg->name);
	snprintf(st->backend, sizeof(st->backend), "%s", c->fe->becfg->name);
	if (c->server >= 0)
		snprintf(st->server, sizeof(st->server), "%s",
		    c->fe->pool->servers[c->server].name);
}

void
psync_conn_start(struct proxy_conn *c)
{
	struct psync *ps = c->w->sync;
	struct repair_sock rs[SESS_HALF_COUNT];
	struct sess_conn_box *box;
	struct psync_conn *pc;
	struct sess_wev ev = { .type = SESS_WEV_OPEN, .worker = ps->w->id };
	enum repair_step step = REPAIR_STEP_NONE;
	const char *half = "client";
	int r;

	/* A FIN already: not ESTABLISHED any more, nothing to rebuild. */
	if (c->sfd < 0 || c->dir[PROXY_C2S].eof || c->dir[PROXY_S2C].eof ||
	    ps->stopping)
		return;
	pc = calloc(1, sizeof(*pc));
	box = calloc(1, sizeof(*box));
	if (pc == NULL || box == NULL) {
		r = -ENOMEM;
		goto free_mem;
	}
	if ((r = psync_snapshot(c->cfd, &rs[SESS_HALF_CLIENT], false, &step)) < 0)
		goto free_mem;
	half = "server";
	if ((r = psync_snapshot(c->sfd, &rs[SESS_HALF_SERVER], false, &step)) < 0)
		goto free_mem;
	step = REPAIR_STEP_NONE;
	if ((r = sess_sock_from_repair(&rs[SESS_HALF_CLIENT], &box->st.client)) < 0 ||
	    (r = sess_sock_from_repair(&rs[SESS_HALF_SERVER], &box->st.server_sock)) < 0)
		goto free_mem;
	box->st.id = c->id;
	psync_names(c, &box->st);
	box->st.has_server_sock = true;
	box->st.created_wall_ms = psync_clock_ms(CLOCK_REALTIME);

	pc->c = c;
	psync_totals(c, pc->base);
	c->sync = pc;
	psync_fd_flag(ps, c->cfd, 1);
	psync_fd_flag(ps, c->sfd, 1);
	ev.u.conn = box;
	if (psync_send(ps, &ev) == 0) {
		PSYNC_INC(ps, opens_sent);
		return;
	}
	/* Kept for the next turn; UPDATEs wait behind it. */
	pc->open = box;
	psync_dirty_link(ps, pc);
	psync_kick(ps);
	return;

free_mem:
	free(box);
	free(pc);
	PSYNC_INC(ps, snapshots_failed);
	log_debug("conn %llu: not synced: %s snapshot%s%s: %s",
	    (unsigned long long)c->id, half, step != REPAIR_STEP_NONE ? " at " : "",
	    step != REPAIR_STEP_NONE ? repair_step_name(step) : "", strerror(-r));
}

/* ---- ADOPT ---------------------------------------------------------------- */

/* The restored socket's unsent send-queue bytes, as pending output. */
static int
psync_left_buf(uint8_t *left, size_t len, struct proxy_buf **out)
{
	*out = NULL;
	if (left == NULL || len == 0)
		return 0;
	if ((*out = proxy_buf_sized(len)) == NULL)
		return -ENOMEM;
	memcpy((*out)->data, left, len);
	(*out)->len = len;
	return 0;
}

static void
psync_adopt_drop(struct psync *ps, const struct sess_cmd *cmd, const char *why)
{
	const uint64_t rid = cmd->u.adopt.restore_id;

	log_warnx("worker %u: restored connection %llu dropped: %s", ps->w->id,
	    (unsigned long long)rid, why);
	proxy_sock_close(cmd->u.adopt.cfd, true);
	proxy_sock_close(cmd->u.adopt.sfd, true);
	for (int h = 0; h < SESS_HALF_COUNT; h++)
		free(cmd->u.adopt.left[h]);
	PSYNC_INC(ps, adopt_failed);
	if (!ps->stopping)
		psync_small(ps, SESS_WEV_ADOPT_FAILED, rid);
}

/*
 * Relay a restored pair of sockets. cmd's fds and leftover buffers are ours
 * whatever happens: relayed, or closed with a RST (ADOPT_FAILED).
 */
static void
psync_adopt(struct psync *ps, const struct sess_cmd *cmd)
{
	struct proxy_worker *w = ps->w;
	const int cfd = cmd->u.adopt.cfd, sfd = cmd->u.adopt.sfd;
	struct proxy_buf *buf[PROXY_DIR_COUNT] = { NULL, NULL };
	struct proxy_frontend *fe;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct proxy_conn *c;
	int one = 1;

	if (ps->stopping) {
		psync_adopt_drop(ps, cmd, "worker stopping");
		return;
	}
	if (cmd->u.adopt.fe >= w->nfes || cfd < 0) {
		psync_adopt_drop(ps, cmd, "no such frontend");
		return;
	}
	fe = &w->fes[cmd->u.adopt.fe];
	if (sfd >= 0 && (cmd->u.adopt.server < 0 ||
	    (size_t)cmd->u.adopt.server >= fe->pool->nservers)) {
		psync_adopt_drop(ps, cmd, "no such server");
		return;
	}
	if (getpeername(cfd, (struct sockaddr *)&ss, &sslen) == -1) {
		psync_adopt_drop(ps, cmd, strerror(errno));
		return;
	}
	/* Bytes for the client go out on S2C, bytes for the server on C2S. */
	if (psync_left_buf(cmd->u.adopt.left[SESS_HALF_CLIENT],
	    cmd->u.adopt.left_len[SESS_HALF_CLIENT], &buf[PROXY_S2C]) < 0 ||
	    (sfd >= 0 && psync_left_buf(cmd->u.adopt.left[SESS_HALF_SERVER],
	    cmd->u.adopt.left_len[SESS_HALF_SERVER], &buf[PROXY_C2S]) < 0))
		goto free_bufs;
	/* Existing clients: counted even beyond max-connections, never refused. */
	atomic_fetch_add_explicit(&fe->active, 1, memory_order_relaxed);
	c = proxy_conn_new(w, fe, cfd, &ss, sslen);
	if (c == NULL) {
		atomic_fetch_sub_explicit(&fe->active, 1, memory_order_relaxed);
		goto free_bufs;
	}
	/* From here c owns cfd and the buffers; the leftovers were copied. */
	for (int h = 0; h < SESS_HALF_COUNT; h++)
		free(cmd->u.adopt.left[h]);
	c->adopted = true;
	c->restore_id = cmd->u.adopt.restore_id;
	c->held = cmd->u.adopt.held;
	for (int d = 0; d < PROXY_DIR_COUNT; d++) {
		c->dir[d].buf = buf[d];
		/* Read (by the old node), not yet written: what the counts expect. */
		c->dir[d].bytes = buf[d] != NULL ? buf[d]->len : 0;
	}
	PSYNC_INC(ps, adopted);
	if (sfd < 0) {
		/* The backend half was not rebuilt: connect anew, like a new client. */
		if (proxy_conn_connect_next(c) < 0) {
			PSYNC_INC(ps, adopt_failed);
			psync_small(ps, SESS_WEV_ADOPT_FAILED, cmd->u.adopt.restore_id);
		}
		return;
	}
	(void)setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->sfd = sfd;
	c->server = cmd->u.adopt.server;
	bal_conn_start(fe->pool, (size_t)c->server);
	c->phase = PROXY_RELAYING;
	c->dir[PROXY_C2S].eof = cmd->u.adopt.client_eof;
	c->dir[PROXY_S2C].eof = cmd->u.adopt.server_eof;
	for (int d = 0; d < PROXY_DIR_COUNT; d++)
		proxy_dir_forward_fin(c, (enum proxy_dir)d);
	if (c->dir[PROXY_C2S].shut && c->dir[PROXY_S2C].shut) {
		proxy_conn_close(c, false, "restored after both sides closed");
		return;
	}
	/* Streamed again, to the standby that will take over from us. */
	psync_conn_start(c);
	proxy_conn_update(c);
	return;

free_bufs:
	for (int d = 0; d < PROXY_DIR_COUNT; d++)
		free(buf[d]);
	psync_adopt_drop(ps, cmd, "out of memory");
}

/* ---- KILL ----------------------------------------------------------------- */

static void
psync_kill(struct psync *ps, const struct sess_cmd *cmd)
{
	struct proxy_worker *w = ps->w;
	struct proxy_conn *c;
	enum repair_step step = REPAIR_STEP_NONE;
	int *stale, *other;
	int r;

	if (ps->stopping)
		return;
	for (c = w->conns; c != NULL; c = c->next)
		if (c->adopted && c->restore_id == cmd->u.kill.restore_id)
			break;
	if (c == NULL) {
		/* It closed meanwhile: nothing left to reset. */
		log_debug("worker %u: kill %llu: no such connection, ignoring", w->id,
		    (unsigned long long)cmd->u.kill.restore_id);
		return;
	}
	stale = cmd->u.kill.half == SESS_HALF_SERVER ? &c->sfd : &c->cfd;
	other = cmd->u.kill.half == SESS_HALF_SERVER ? &c->cfd : &c->sfd;
	ev_io_stop(w->loop, &c->cio);
	ev_io_stop(w->loop, &c->sio);
	/* While both fds are still ours; CLOSE goes when c is released below. */
	if (c->sync != NULL) {
		psync_fd_flag(ps, c->cfd, 0);
		psync_fd_flag(ps, c->sfd, 0);
	}
	if (*stale >= 0) {
		/* A plain RST would carry our stale sequence number: the peer ignores it. */
		r = repair_reset(*stale, &cmd->u.kill.rs, cmd->u.kill.peer_seq,
		    cmd->u.kill.peer_ack, NULL, &step);
		if (r < 0) {
			log_warnx("conn %llu: reset of the stale %s side: %s: %s",
			    (unsigned long long)c->id,
			    cmd->u.kill.half == SESS_HALF_SERVER ? "server" : "client",
			    repair_step_name(step), strerror(-r));
			/* Only then is the fd still ours to close. */
			if (step == REPAIR_STEP_CLOSE)
				proxy_sock_close(*stale, true);
		}
		*stale = -1;
	}
	proxy_sock_close(*other, true);
	*other = -1;
	atomic_fetch_add_explicit(&c->fe->stats.resets, 1, memory_order_relaxed);
	PSYNC_INC(ps, killed);
	proxy_conn_close(c, false, "stale after the takeover");
}

/* ---- FREEZE --------------------------------------------------------------- */

/* Push ev, waiting for room until deadline (monotonic ms). 0 or -ETIMEDOUT. */
static int
psync_send_wait(struct psync *ps, const struct sess_wev *ev, uint64_t deadline)
{
	const struct timespec nap = { .tv_sec = 0, .tv_nsec = PSYNC_FREEZE_NAP_NS };

	while (psync_send(ps, ev) < 0) {
		if (psync_clock_ms(CLOCK_MONOTONIC) >= deadline)
			return -ETIMEDOUT;
		(void)nanosleep(&nap, NULL);
	}
	return 0;
}

/* A socket left in repair mode by a frozen snapshot, to be reset after all. */
static void
psync_unrepair(int fd)
{
	int off = TCP_REPAIR_OFF_NO_WP;

	(void)setsockopt(fd, SOL_TCP, TCP_REPAIR, &off, sizeof(off));
}

/*
 * One block: st, then client recv | client send | server recv | server send.
 * A receive queue is the relay's pending bytes from that socket followed by
 * the kernel's unread ones: the new node reads them all again and forwards
 * them. (The frozen rcv_nxt is the end of the kernel's queue and the restore
 * puts the queue just before it, so the prepended bytes look received: they
 * were, and ACKed.) Without a server socket, bytes pending for the client
 * join its send queue as unsent: the restore writes the whole queue.
 */
static int
psync_freeze_box(const struct proxy_conn *c, const struct repair_sock rs[SESS_HALF_COUNT],
    bool with_server, struct sess_conn_box **out)
{
	const struct proxy_buf *c2s = c->dir[PROXY_C2S].buf, *s2c = c->dir[PROXY_S2C].buf;
	size_t p_c2s = psync_pending_bytes(c, PROXY_C2S);
	size_t p_s2c = psync_pending_bytes(c, PROXY_S2C);
	size_t crecv, csend, srecv = 0, ssend = 0;
	struct sess_conn_box *box;
	uint8_t *p;
	int r;

	crecv = p_c2s + rs[SESS_HALF_CLIENT].rcvq_len;
	csend = rs[SESS_HALF_CLIENT].sndq_len + (with_server ? 0 : p_s2c);
	if (with_server) {
		srecv = p_s2c + rs[SESS_HALF_SERVER].rcvq_len;
		ssend = rs[SESS_HALF_SERVER].sndq_len;
	}
	if (crecv > SYNC_QUEUE_MAX || csend > SYNC_QUEUE_MAX ||
	    srecv > SYNC_QUEUE_MAX || ssend > SYNC_QUEUE_MAX)
		return -EMSGSIZE;
	box = calloc(1, sizeof(*box) + crecv + csend + srecv + ssend);
	if (box == NULL)
		return -ENOMEM;
	if ((r = sess_sock_from_repair(&rs[SESS_HALF_CLIENT], &box->st.client)) < 0 ||
	    (with_server &&
	    (r = sess_sock_from_repair(&rs[SESS_HALF_SERVER], &box->st.server_sock)) < 0)) {
		free(box);
		return r;
	}
	p = box->data;
	box->st.client.recv_queue = p;
	box->st.client.recv_queue_len = crecv;
	if (p_c2s > 0)
		memcpy(p, c2s->data + c2s->off, p_c2s);
	if (rs[SESS_HALF_CLIENT].rcvq_len > 0)
		memcpy(p + p_c2s, rs[SESS_HALF_CLIENT].rcvq, rs[SESS_HALF_CLIENT].rcvq_len);
	p += crecv;
	box->st.client.send_queue = p;
	box->st.client.send_queue_len = csend;
	if (rs[SESS_HALF_CLIENT].sndq_len > 0)
		memcpy(p, rs[SESS_HALF_CLIENT].sndq, rs[SESS_HALF_CLIENT].sndq_len);
	if (!with_server && p_s2c > 0) {
		memcpy(p + rs[SESS_HALF_CLIENT].sndq_len, s2c->data + s2c->off, p_s2c);
		box->st.client.send_unsent += (uint32_t)p_s2c;
	}
	p += csend;
	if (with_server) {
		box->st.server_sock.recv_queue = p;
		box->st.server_sock.recv_queue_len = srecv;
		if (p_s2c > 0)
			memcpy(p, s2c->data + s2c->off, p_s2c);
		if (rs[SESS_HALF_SERVER].rcvq_len > 0)
			memcpy(p + p_s2c, rs[SESS_HALF_SERVER].rcvq,
			    rs[SESS_HALF_SERVER].rcvq_len);
		p += srecv;
		box->st.server_sock.send_queue = p;
		box->st.server_sock.send_queue_len = ssend;
		if (ssend > 0)
			memcpy(p, rs[SESS_HALF_SERVER].sndq, ssend);
	}
	/* Empty queues as NULL, like the wire gives them. */
	if (crecv == 0)
		box->st.client.recv_queue = NULL;
	if (csend == 0)
		box->st.client.send_queue = NULL;
	if (srecv == 0)
		box->st.server_sock.recv_queue = NULL;
	if (ssend == 0)
		box->st.server_sock.send_queue = NULL;
	box->st.id = c->id;
	psync_names(c, &box->st);
	if (!with_server)
		box->st.server[0] = '\0';   /* never connected: the new node picks */
	box->st.has_server_sock = with_server;
	box->st.created_wall_ms = psync_clock_ms(CLOCK_REALTIME);
	*out = box;
	return 0;
}

/*
 * Dump c in repair mode, hand the state to main, close both sockets
 * silently and release c. Returns 0 (FROZEN sent) or -errno: c was reset.
 */
static int
psync_freeze_conn(struct psync *ps, struct proxy_conn *c, uint64_t deadline)
{
	struct proxy_worker *w = ps->w;
	struct repair_sock rs[SESS_HALF_COUNT];
	bool with_server = c->phase == PROXY_RELAYING && c->sfd >= 0;
	bool in_repair[SESS_HALF_COUNT] = { false, false };
	bool snap_failed = false;
	struct sess_wev ev = { .type = SESS_WEV_FROZEN, .worker = w->id };
	struct sess_conn_box *box = NULL;
	enum repair_step step = REPAIR_STEP_NONE;
	const char *what = "client snapshot";
	int r;

	memset(rs, 0, sizeof(rs));
	ev_io_stop(w->loop, &c->cio);
	ev_io_stop(w->loop, &c->sio);
	ev_timer_stop(w->loop, &c->timer);
	/* FROZEN replaces whatever OPEN / UPDATE / CLOSE would have said. */
	if (c->sync != NULL)
		psync_conn_detach(c, false);
	if (psync_clock_ms(CLOCK_MONOTONIC) >= deadline) {
		r = -ETIMEDOUT;
		what = "channel to main";
		goto reset;
	}
	snap_failed = true;
	if ((r = psync_snapshot(c->cfd, &rs[SESS_HALF_CLIENT], true, &step)) < 0)
		goto reset;
	in_repair[SESS_HALF_CLIENT] = true;
	if (with_server) {
		what = "server snapshot";
		if ((r = psync_snapshot(c->sfd, &rs[SESS_HALF_SERVER], true, &step)) < 0)
			goto reset;
		in_repair[SESS_HALF_SERVER] = true;
	}
	snap_failed = false;
	step = REPAIR_STEP_NONE;
	what = "state";
	if ((r = psync_freeze_box(c, rs, with_server, &box)) < 0)
		goto reset;
	what = "channel to main";
	ev.u.conn = box;
	if ((r = psync_send_wait(ps, &ev, deadline)) < 0) {
		free(box);
		goto reset;
	}
	/* The state is main's now; the sockets must vanish without a word. */
	if ((r = repair_close_silently(c->cfd)) < 0) {
		log_warnx("conn %llu: silent close (client): %s",
		    (unsigned long long)c->id, strerror(-r));
		close(c->cfd);
	}
	c->cfd = -1;
	if (with_server) {
		if ((r = repair_close_silently(c->sfd)) < 0) {
			log_warnx("conn %llu: silent close (server): %s",
			    (unsigned long long)c->id, strerror(-r));
			close(c->sfd);
		}
		c->sfd = -1;
	}
	/* A server connect still under way is closed normally by the release. */
	for (int h = 0; h < SESS_HALF_COUNT; h++)
		repair_sock_clear(&rs[h]);
	proxy_conn_close(c, false, "frozen for a handover");
	return 0;

reset:
	log_warnx("conn %llu: cannot freeze: %s%s%s: %s", (unsigned long long)c->id,
	    what, step != REPAIR_STEP_NONE ? " at " : "",
	    step != REPAIR_STEP_NONE ? repair_step_name(step) : "", strerror(-r));
	if (snap_failed)
		PSYNC_INC(ps, snapshots_failed);
	for (int h = 0; h < SESS_HALF_COUNT; h++) {
		if (in_repair[h])
			psync_unrepair(h == SESS_HALF_CLIENT ? c->cfd : c->sfd);
		repair_sock_clear(&rs[h]);
	}
	atomic_fetch_add_explicit(&c->fe->stats.resets, 1, memory_order_relaxed);
	proxy_conn_close(c, true, "cannot freeze");
	return r;
}

/*
 * Planned handover: the VIP is already gone. Dump every connection, then
 * FREEZE_DONE. Closes still waiting go first, so main's table is exact
 * before the final state leaves.
 */
static void
psync_freeze(struct psync *ps)
{
	struct proxy_worker *w = ps->w;
	struct sess_wev ev = { .type = SESS_WEV_FREEZE_DONE, .worker = w->id };
	uint64_t deadline = psync_clock_ms(CLOCK_MONOTONIC) + PSYNC_FREEZE_WAIT_MS;
	uint32_t frozen = 0, failed = 0;
	struct proxy_conn *c, *next;
	size_t i;

	if (ps->stopping)
		return;
	for (i = 0; i < ps->npending; i++) {
		struct sess_wev small = { .type = ps->pending[i].type, .worker = w->id };

		small.u.id = ps->pending[i].id;
		if (psync_send_wait(ps, &small, deadline) < 0)
			break;
		if (small.type == SESS_WEV_CLOSE)
			PSYNC_INC(ps, closes_sent);
	}
	if (i < ps->npending) {
		atomic_fetch_add_explicit(&ps->st.events_lost, ps->npending - i,
		    memory_order_relaxed);
		log_warnx("worker %u: freeze: %zu close events lost", w->id,
		    ps->npending - i);
	}
	ps->npending = 0;
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		if (psync_freeze_conn(ps, c, deadline) == 0) {
			frozen++;
			PSYNC_INC(ps, frozen);
		} else {
			failed++;
			PSYNC_INC(ps, freeze_failed);
		}
	}
	ev.u.done.frozen = frozen;
	ev.u.done.failed = failed;
	deadline = psync_clock_ms(CLOCK_MONOTONIC) + PSYNC_FREEZE_WAIT_MS;
	if (psync_send_wait(ps, &ev, deadline) < 0)
		log_warnx("worker %u: freeze done (%u frozen, %u failed) not delivered: "
		    "channel to main full", w->id, frozen, failed);
	log_info("worker %u: froze %u connections, %u reset", w->id, frozen, failed);
}

/* The stale check passed: relay the adopted connection from now on. */
static void
psync_go(struct psync *ps, uint64_t restore_id)
{
	struct proxy_conn *c;

	for (c = ps->w->conns; c != NULL; c = c->next)
		if (c->adopted && c->restore_id == restore_id)
			break;
	if (c == NULL || !c->held)
		return;
	c->held = false;
	proxy_conn_update(c);
}

/* ---- the command channel -------------------------------------------------- */

static void
psync_deliver(void *arg, const void *slot)
{
	struct psync *ps = arg;
	const struct sess_cmd *cmd = slot;

	switch (cmd->type) {
	case SESS_CMD_ADOPT:
		psync_adopt(ps, cmd);
		break;
	case SESS_CMD_KILL:
		psync_kill(ps, cmd);
		break;
	case SESS_CMD_FREEZE:
		psync_freeze(ps);
		break;
	case SESS_CMD_GO:
		psync_go(ps, cmd->u.go.restore_id);
		break;
	case SESS_CMD_COUNT:
	default:
		log_warnx("worker %u: unknown session command %d, ignoring", ps->w->id,
		    (int)cmd->type);
		break;
	}
}

int
psync_new(struct proxy_worker *w, const struct sess_worker_link *link)
{
	struct psync *ps;
	int r;

	ps = calloc(1, sizeof(*ps));
	if (ps == NULL)
		return -ENOMEM;
	ps->w = w;
	ps->events = link->events;
	ps->fd_flags = link->fd_flags;
	ps->nfds = link->fd_flags != NULL ? link->nfds : 0;
	ev_prepare_init(&ps->prepare, psync_prepare_cb);
	ps->prepare.data = ps;
	ev_timer_init(&ps->retry, psync_retry_cb, 0., 0.);
	ps->retry.data = ps;
	if (link->cmds != NULL) {
		r = ring_chan_new(w->loop, sizeof(struct sess_cmd), SESS_RING_SLOTS,
		    SESS_RING_BATCH, psync_deliver, ps, &ps->cmds);
		if (r < 0) {
			free(ps);
			return r;
		}
		*link->cmds = ps->cmds;
	}
	w->sync = ps;
	return 0;
}

void
psync_shutdown(struct psync *ps)
{
	if (ps == NULL)
		return;
	ps->stopping = true;
	ev_prepare_stop(ps->w->loop, &ps->prepare);
	ev_timer_stop(ps->w->loop, &ps->retry);
	/* ADOPTs still queued own sockets and buffers: deliver drops them. */
	if (ps->cmds != NULL)
		(void)ring_chan_drain(ps->cmds);
}

void
psync_free(struct psync *ps)
{
	if (ps == NULL)
		return;
	ev_prepare_stop(ps->w->loop, &ps->prepare);
	ev_timer_stop(ps->w->loop, &ps->retry);
	ring_chan_free(ps->cmds);
	ps->w->sync = NULL;
	free(ps);
}

void
proxy_worker_sess_stats(const struct proxy_worker *w, struct proxy_sess_stats *out)
{
	const struct psync *ps = w->sync;

	memset(out, 0, sizeof(*out));
	if (ps == NULL)
		return;
#define PSYNC_STAT_COPY(f) \
	out->f = atomic_load_explicit(&ps->st.f, memory_order_relaxed);
	PSYNC_STATS(PSYNC_STAT_COPY)
#undef PSYNC_STAT_COPY
}
