/*
 * session — the main thread's side of session sync (include/tandem/session.h).
 *
 * Two tables of struct sync_conn_state, both the shadow module:
 *   local  our own connections as the workers report them; read only for a
 *          bulk resync (the peer's snapshot of us);
 *   peer   the peer's connections as its stream reports them; read at
 *          takeover, when they are rebuilt and handed to our workers.
 *
 * Handover, giving side (sess_switchover), one step after the other:
 *   REQUEST  queue a SWITCH REQUEST, wait until the peer acknowledged it (so
 *            it knows to wait for our final state before restoring)
 *   VIPDOWN  the agent's switchover: priority 0, VIPs deleted; wait for every
 *            group's VIPs to be gone (nothing reaches our sockets any more)
 *   FREEZE   every worker dumps its connections in repair mode and closes
 *            them silently; each FROZEN state goes to the peer as a CONN
 *   FROZEN   queue the SWITCH FROZEN marker, wait for its acknowledgement
 * Receiving side: a SWITCH REQUEST makes a takeover that starts before the
 * FROZEN marker wait for it (bounded), so it restores the final state.
 *
 * A node losing its VIPs for any other reason (preempted, FAULT, split brain
 * healed) freezes its connections too, silently, and tells the peer nothing:
 * the peer either restored them already or will restore them from its table.
 * Left running, our kernel would FIN or RST connections the peer now owns.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include <tandem/agent.h>
#include <tandem/auth.h>
#include <tandem/bal.h>
#include <tandem/config.h>
#include <tandem/log.h>
#include <tandem/proxy.h>
#include <tandem/repair.h>
#include <tandem/ring.h>
#include <tandem/session.h>
#include <tandem/shadow.h>
#include <tandem/sync.h>

#define SESS_FDS_MAX (1u << 20)            /* crash flags: one byte per fd */
#define SESS_REQUEST_ACK_S 0.5             /* REQUEST unacked: hand over without it */
#define SESS_VIPDOWN_S 2.0                 /* VIPs still there: freeze anyway */
#define SESS_FREEZE_S 5.0                  /* workers' dumps */
#define SESS_FROZEN_ACK_S 3.0              /* final state unacked: give up waiting */
#define SESS_POLL_S 0.002                  /* ack polling while giving */
#define SESS_RECV_WAIT_S 2.0               /* taking: wait this long for FROZEN */
#define SESS_RECV_FORGET_S 10.0            /* a REQUEST nothing followed */
#define SESS_ASK_S 3.0                     /* the peer's handover we asked for */
#define SESS_SERVER_EVERY_S 1.0            /* server balancing state to the peer */
#define SESS_PEER_SERVERS_MAX 1024
#define SESS_WATCH_BATCH 64                /* repair_watch_process calls per wake-up */

enum sess_give_phase {
	SESS_GIVE_IDLE = 0,
	SESS_GIVE_REQUEST,
	SESS_GIVE_VIPDOWN,
	SESS_GIVE_FREEZE,
	SESS_GIVE_FROZEN,
	SESS_GIVE_PHASE_COUNT
};

struct sess_worker {
	struct sess *s;
	unsigned id;
	struct ring_chan *events;       /* worker -> main; consumed here */
	struct ring_chan *cmds;         /* main -> worker; the worker created it */
};

/* A connection rebuilt by the current takeover: what KILL needs. */
struct sess_restored {
	unsigned worker;
	bool live;
	unsigned undecided;             /* halves the stale check has not judged */
	struct repair_sock rs[SESS_HALF_COUNT];   /* no queues */
};

struct sess {
	struct ev_loop *loop;
	const struct cfg *cfg;
	struct proxy_frontend *fes;
	size_t nfes;
	unsigned nworkers;
	struct sess_worker *workers;
	_Atomic unsigned char *fd_flags;
	size_t nfds;

	struct agent *agent;
	struct auth_keyring *kr;
	struct sync *ch;
	uint8_t digest[SYNC_DIGEST_LEN];
	struct shadow *local;
	struct shadow *peer;
	bool sync_ready;
	bool peer_mismatch;

	struct repair_watch *watch;
	ev_io watch_io;
	ev_timer watch_timer;
	bool watch_armed;
	/* the current takeover's connections, by restore id - rest_base */
	struct sess_restored *rest;
	size_t nrest;
	size_t caprest;
	uint64_t rest_base;
	uint64_t next_restore_id;

	struct {
		enum sess_give_phase phase;
		uint64_t id;
		int group;                  /* -1: every MASTER group */
		bool groups[64];            /* waiting for their VIPs to go */
		unsigned workers_done;
		uint64_t wait_seq;          /* our frame the peer must acknowledge */
		double deadline;
		ev_timer timer;
		void (*done)(void *, int);
		void *arg;
	} give;
	struct {
		bool pending;               /* our REQUEST "preempt" is out */
		ev_timer timer;
	} ask;
	struct {
		bool pending;               /* REQUEST seen, FROZEN not yet */
		uint64_t id;
		bool waiting[64];           /* groups whose takeover waits for FROZEN */
		ev_timer timer;
	} take;

	/* Balancing state: ours sent every SESS_SERVER_EVERY_S, the peer's kept. */
	ev_timer server_timer;
	struct sync_server peer_servers[SESS_PEER_SERVERS_MAX];
	size_t npeer_servers;

	struct sess_stats stats;
	struct log_ratelimit rl_ring;
};

static uint64_t
sess_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
sess_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static double
sess_now(void)
{
	return (double)sess_mono_us() / 1e6;
}

/* A handover id: unique enough to tell two handovers apart in the logs. */
static uint64_t
sess_random64(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		v = 0;
	return v != 0 ? v : sess_mono_us() | 1;
}

/* ---- events to the peer --------------------------------------------------- */

static void
sess_queue(struct sess *s, const struct sync_event *ev)
{
	int r;

	if (s->ch == NULL)
		return;
	r = sync_queue_event(s->ch, ev);
	if (r < 0 && log_ratelimit_ok(&s->rl_ring, sess_now(), 10.0, NULL))
		log_warnx("session: %s event not queued for the peer: %s",
		    sync_ev_name(ev->type), strerror(-r));
}

static void
sess_queue_switch(struct sess *s, enum sync_switch_phase phase, const char *why)
{
	struct sync_event ev = { .type = SYNC_EV_SWITCH };

	ev.u.sw.phase = phase;
	ev.u.sw.id = s->give.id;
	snprintf(ev.u.sw.reason, sizeof(ev.u.sw.reason), "%s", why);
	if (s->give.group >= 0) {
		ev.u.sw.ngroups = 1;
		ev.u.sw.groups[0] = (uint32_t)s->give.group;
	}
	sess_queue(s, &ev);
	if (s->ch != NULL)
		(void)sync_flush(s->ch);
}

/* ---- worker events -------------------------------------------------------- */

static void sess_give_freeze_done(struct sess *s);

static void
sess_wev_deliver(void *arg, const void *slot)
{
	struct sess_worker *sw = arg;
	struct sess *s = sw->s;
	const struct sess_wev *wev = slot;
	struct sync_event ev = { 0 };
	double now = sess_now();

	switch (wev->type) {
	case SESS_WEV_OPEN:
		if (shadow_open(s->local, &wev->u.conn->st, now) == 0) {
			ev.type = SYNC_EV_CONN;
			ev.u.conn = wev->u.conn->st;
			sess_queue(s, &ev);
		}
		free(wev->u.conn);
		break;
	case SESS_WEV_UPDATE:
		if (shadow_update(s->local, &wev->u.update, now) == 0) {
			ev.type = SYNC_EV_UPDATE;
			ev.u.update = wev->u.update;
			sess_queue(s, &ev);
		}
		break;
	case SESS_WEV_CLOSE:
		if (shadow_close(s->local, wev->u.id) == 0) {
			ev.type = SYNC_EV_CLOSE;
			ev.u.close.id = wev->u.id;
			sess_queue(s, &ev);
		}
		break;
	case SESS_WEV_FROZEN:
		(void)shadow_close(s->local, wev->u.conn->st.id);
		s->stats.frozen++;
		/* Only a planned handover tells the peer (see the top of the file). */
		if (s->give.phase == SESS_GIVE_FREEZE) {
			ev.type = SYNC_EV_CONN;
			ev.u.conn = wev->u.conn->st;
			sess_queue(s, &ev);
		}
		free(wev->u.conn);
		break;
	case SESS_WEV_FREEZE_DONE:
		s->stats.freeze_failed += wev->u.done.failed;
		log_info("session: worker %u froze %" PRIu32 " connections (%" PRIu32
		    " failed)", wev->worker, wev->u.done.frozen, wev->u.done.failed);
		if (s->give.phase == SESS_GIVE_FREEZE &&
		    ++s->give.workers_done == s->nworkers)
			sess_give_freeze_done(s);
		break;
	case SESS_WEV_ADOPT_FAILED:
		s->stats.restore_failed++;
		s->stats.last_failed++;
		if (s->stats.last_restored > 0)
			s->stats.last_restored--;
		if (s->stats.restored > 0)
			s->stats.restored--;
		if (wev->u.id >= s->rest_base && wev->u.id - s->rest_base < s->nrest)
			s->rest[wev->u.id - s->rest_base].live = false;
		break;
	case SESS_WEV_COUNT:
		break;
	}
}

/* ---- sending a command to a worker ------------------------------------------ */

static int
sess_cmd_send(struct sess *s, unsigned worker, const struct sess_cmd *cmd)
{
	struct ring_chan *chan = s->workers[worker].cmds;

	if (chan == NULL)
		return -ENOTCONN;
	return ring_chan_send(chan, cmd);
}

static void
sess_freeze_all(struct sess *s)
{
	struct sess_cmd cmd = { .type = SESS_CMD_FREEZE };

	for (unsigned i = 0; i < s->nworkers; i++) {
		int r = sess_cmd_send(s, i, &cmd);

		if (r < 0) {
			log_warnx("session: worker %u: freeze not delivered: %s", i,
			    strerror(-r));
			/* Counted as done: nothing will come from it. */
			if (s->give.phase == SESS_GIVE_FREEZE &&
			    ++s->give.workers_done == s->nworkers)
				sess_give_freeze_done(s);
		}
	}
}

/* ---- the stale-state watch ------------------------------------------------- */

static void
sess_watch_rearm(struct sess *s)
{
	uint64_t dl, now = sess_mono_ms();

	ev_timer_stop(s->loop, &s->watch_timer);
	if (!s->watch_armed)
		return;
	if (repair_watch_next_deadline(s->watch, &dl) < 0) {
		if (repair_watch_pending(s->watch) == 0) {
			repair_watch_disarm(s->watch);
			s->watch_armed = false;
		}
		return;
	}
	ev_timer_set(&s->watch_timer, dl > now ? (double)(dl - now) / 1e3 : 0., 0.);
	ev_timer_start(s->loop, &s->watch_timer);
}

/* One half judged fit; the worker relays once every half is. */
static void
sess_go(struct sess *s, struct sess_restored *r, uint64_t rid)
{
	struct sess_cmd cmd = { .type = SESS_CMD_GO };

	if (!r->live || r->undecided == 0 || --r->undecided > 0)
		return;
	cmd.u.go.restore_id = rid;
	if (sess_cmd_send(s, r->worker, &cmd) < 0)
		log_warnx("session: connection %" PRIu64 ": go not delivered to "
		    "worker %u: it stays held", rid, r->worker);
}

static void
sess_watch_verdicts(struct sess *s)
{
	struct repair_verdict v;

	while (repair_watch_verdict(s->watch, &v)) {
		uint64_t rid = v.cookie >> 1;
		enum sess_half half = (enum sess_half)(v.cookie & 1);
		struct sess_restored *r;
		struct sess_cmd cmd = { .type = SESS_CMD_KILL };

		if (rid < s->rest_base || rid - s->rest_base >= s->nrest)
			continue;
		r = &s->rest[rid - s->rest_base];
		switch (v.verdict) {
		case REPAIR_VERDICT_STALE:
			if (!r->live)
				break;
			s->stats.stale_reset++;
			log_info("session: restored connection %" PRIu64 " is stale "
			    "(%s side, %s after %" PRIu64 " ms: peer seq %" PRIu32
			    " ack %" PRIu32 ", ours snd %" PRIu32 " rcv %" PRIu32
			    ") cport %u: resetting it", rid,
			    half == SESS_HALF_CLIENT ? "client" : "server",
			    repair_reason_name(v.reason), v.after_ms, v.peer_seq,
			    v.peer_ack, r->rs[half].write_seq, r->rs[half].rcv_nxt,
			    ntohs(r->rs[SESS_HALF_CLIENT].peer.in4.sin_port));
			cmd.u.kill.restore_id = rid;
			cmd.u.kill.half = half;
			cmd.u.kill.rs = r->rs[half];
			cmd.u.kill.peer_seq = v.peer_seq;
			cmd.u.kill.peer_ack = v.peer_ack;
			if (sess_cmd_send(s, r->worker, &cmd) < 0)
				log_warnx("session: connection %" PRIu64 ": reset not "
				    "delivered to worker %u", rid, r->worker);
			r->live = false;
			break;
		case REPAIR_VERDICT_GONE:
			s->stats.stale_gone++;
			sess_go(s, r, rid);
			break;
		case REPAIR_VERDICT_SILENT:
			s->stats.stale_silent++;
			sess_go(s, r, rid);
			break;
		case REPAIR_VERDICT_OK:
			sess_go(s, r, rid);
			break;
		case REPAIR_VERDICT_PENDING:
		case REPAIR_VERDICT_COUNT:
			break;
		}
	}
}

static void
sess_watch_run(struct sess *s)
{
	for (int i = 0; i < SESS_WATCH_BATCH; i++)
		if (repair_watch_process(s->watch, sess_mono_ms()) <= 0)
			break;
	sess_watch_verdicts(s);
	sess_watch_rearm(s);
}

static void
sess_watch_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	sess_watch_run(w->data);
}

static void
sess_watch_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	sess_watch_run(w->data);
}

/* ---- takeover --------------------------------------------------------------- */

static int
sess_find_frontend(const struct sess *s, const struct sync_conn_state *st)
{
	for (size_t i = 0; i < s->nfes; i++)
		if (strcmp(s->fes[i].cfg->name, st->frontend) == 0 &&
		    strcmp(s->fes[i].becfg->name, st->backend) == 0)
			return (int)i;
	return -1;
}

static int
sess_find_server(const struct proxy_frontend *fe, const char *name)
{
	for (size_t i = 0; i < fe->pool->nservers; i++)
		if (strcmp(fe->pool->servers[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void
sess_close_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (fd < 0)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static struct sess_restored *
sess_rest_slot(struct sess *s, uint64_t rid)
{
	size_t i = (size_t)(rid - s->rest_base);

	if (i >= s->caprest) {
		size_t cap = s->caprest ? s->caprest * 2 : 1024;
		struct sess_restored *n;

		while (cap <= i)
			cap *= 2;
		n = realloc(s->rest, cap * sizeof(*n));
		if (n == NULL)
			return NULL;
		s->rest = n;
		s->caprest = cap;
	}
	if (i >= s->nrest)
		s->nrest = i + 1;
	return &s->rest[i];
}

static uint8_t *
sess_leftover(const struct repair_sock *rs, const struct repair_restored *out,
    size_t *len)
{
	uint8_t *b;

	*len = 0;
	if (rs->sndq_len <= out->sndq_sent)
		return NULL;
	*len = rs->sndq_len - out->sndq_sent;
	b = malloc(*len);
	if (b != NULL)
		memcpy(b, rs->sndq + out->sndq_sent, *len);
	else
		*len = 0;
	return b;
}

enum sess_restore_result {
	SESS_RESTORED = 0,
	SESS_RESTORE_LATER,     /* the address is not on this node (yet) */
	SESS_RESTORE_FAILED
};

/* One connection between its two restore phases. */
struct sess_building {
	uint64_t shadow_id;
	uint64_t rid;
	int fe;
	int server;
	bool client_eof, server_eof;
	unsigned watched;                         /* halves the stale check judges */
	struct repair_sock rs[SESS_HALF_COUNT];   /* queues borrowed from the shadow */
	struct repair_restored out[SESS_HALF_COUNT];
};

static const struct repair_restore_opts sess_build_opts = {
	.ts_margin_ms = REPAIR_TS_MARGIN_MS,
	.stay_in_repair = true,
};

/*
 * Phase 1: rebuild one shadow entry's sockets, silent (still in repair
 * mode). Nothing leaves this node before every connection exists.
 */
static enum sess_restore_result
sess_build_one(struct sess *s, const struct sync_conn_state *st, uint64_t now_ms,
    struct sess_building *b)
{
	int r;

	memset(b, 0, sizeof(*b));
	b->out[0].fd = b->out[1].fd = -1;
	b->shadow_id = st->id;
	b->server = -1;
	b->client_eof = st->client_eof;
	b->server_eof = st->server_eof;
	b->fe = sess_find_frontend(s, st);
	if (b->fe < 0) {
		log_warnx("session: connection %" PRIu64 ": no frontend %s with "
		    "backend %s here", st->id, st->frontend, st->backend);
		return SESS_RESTORE_FAILED;
	}
	if (st->has_server_sock &&
	    (b->server = sess_find_server(&s->fes[b->fe], st->server)) < 0) {
		log_warnx("session: connection %" PRIu64 ": no server %s in %s",
		    st->id, st->server, st->backend);
		return SESS_RESTORE_FAILED;
	}
	if (sess_sock_to_repair(&st->client, &b->rs[SESS_HALF_CLIENT]) < 0 ||
	    (st->has_server_sock &&
	    sess_sock_to_repair(&st->server_sock, &b->rs[SESS_HALF_SERVER]) < 0)) {
		log_warnx("session: connection %" PRIu64 ": state unusable", st->id);
		return SESS_RESTORE_FAILED;
	}
	r = repair_restore(&b->rs[SESS_HALF_CLIENT], &sess_build_opts,
	    &b->out[SESS_HALF_CLIENT]);
	if (r == -EADDRNOTAVAIL && b->out[SESS_HALF_CLIENT].failed == REPAIR_STEP_BIND)
		return SESS_RESTORE_LATER;
	if (r < 0) {
		log_warnx("session: connection %" PRIu64 ": client side: %s: %s",
		    st->id, repair_step_name(b->out[SESS_HALF_CLIENT].failed),
		    strerror(-r));
		return SESS_RESTORE_FAILED;
	}
	if (st->has_server_sock) {
		r = repair_restore(&b->rs[SESS_HALF_SERVER], &sess_build_opts,
		    &b->out[SESS_HALF_SERVER]);
		if (r < 0) {
			log_warnx("session: connection %" PRIu64 ": server side: %s: %s",
			    st->id, repair_step_name(b->out[SESS_HALF_SERVER].failed),
			    strerror(-r));
			/* Still in repair mode: closing it says nothing to the client. */
			close(b->out[SESS_HALF_CLIENT].fd);
			b->out[SESS_HALF_CLIENT].fd = -1;
			return SESS_RESTORE_FAILED;
		}
	}
	b->rid = s->next_restore_id++;
	/* Watched before the probe: its answer must not be missed. */
	/* Held until judged: see sess_cmd.adopt.held. */
	if (s->watch_armed) {
		if (repair_watch_add(s->watch, &b->rs[SESS_HALF_CLIENT], b->rid << 1,
		    now_ms) == 0)
			b->watched++;
		if (st->has_server_sock &&
		    repair_watch_add(s->watch, &b->rs[SESS_HALF_SERVER],
		    b->rid << 1 | 1, now_ms) == 0)
			b->watched++;
	}
	return SESS_RESTORED;
}

/* Phase 2: bring both sockets to life (probe, send queue) and hand them over. */
static bool
sess_finish_one(struct sess *s, struct sess_building *b)
{
	struct sess_cmd cmd = { .type = SESS_CMD_ADOPT };
	struct sess_restored *slot;
	unsigned worker;
	int r;

	for (int h = 0; h < SESS_HALF_COUNT; h++) {
		if (b->out[h].fd < 0)
			continue;
		r = repair_restore_finish(&b->rs[h], &sess_build_opts, &b->out[h]);
		if (r < 0) {
			log_warnx("session: connection %" PRIu64 ": %s side: %s: %s",
			    b->shadow_id, h == SESS_HALF_CLIENT ? "client" : "server",
			    repair_step_name(b->out[h].failed), strerror(-r));
			goto fail;
		}
	}
	slot = sess_rest_slot(s, b->rid);
	if (slot == NULL)
		goto fail;
	worker = (unsigned)(b->rid % s->nworkers);
	cmd.u.adopt.restore_id = b->rid;
	cmd.u.adopt.fe = (size_t)b->fe;
	cmd.u.adopt.server = b->server;
	cmd.u.adopt.cfd = b->out[SESS_HALF_CLIENT].fd;
	cmd.u.adopt.sfd = b->out[SESS_HALF_SERVER].fd;
	cmd.u.adopt.client_eof = b->client_eof;
	cmd.u.adopt.server_eof = b->server_eof;
	cmd.u.adopt.held = b->watched > 0;
	for (int h = 0; h < SESS_HALF_COUNT; h++)
		if (b->out[h].fd >= 0)
			cmd.u.adopt.left[h] = sess_leftover(&b->rs[h], &b->out[h],
			    &cmd.u.adopt.left_len[h]);
	r = sess_cmd_send(s, worker, &cmd);
	if (r < 0) {
		log_warnx("session: connection %" PRIu64 ": worker %u: %s",
		    b->shadow_id, worker, strerror(-r));
		for (int h = 0; h < SESS_HALF_COUNT; h++)
			free(cmd.u.adopt.left[h]);
		goto fail;
	}
	slot->worker = worker;
	slot->live = true;
	slot->undecided = b->watched;
	for (int h = 0; h < SESS_HALF_COUNT; h++) {
		slot->rs[h] = b->rs[h];
		slot->rs[h].rcvq = slot->rs[h].sndq = NULL;
		slot->rs[h].rcvq_len = slot->rs[h].sndq_len = 0;
		slot->rs[h].sndq_unsent = 0;
	}
	return true;
fail:
	/* Live sockets with the right state: a plain RST is one the peers accept. */
	for (int h = 0; h < SESS_HALF_COUNT; h++)
		sess_close_rst(b->out[h].fd);
	if (b->rid >= s->rest_base && b->rid - s->rest_base < s->nrest)
		s->rest[b->rid - s->rest_base].live = false;
	return false;
}

static void
sess_duration_bucket(struct sess *s, uint64_t us)
{
	static const uint64_t le_ms[] = SESS_DURATION_BUCKETS_MS;
	size_t i;

	for (i = 0; i < sizeof(le_ms) / sizeof(le_ms[0]); i++)
		if (us <= le_ms[i] * 1000)
			break;
	s->stats.duration_le[i]++;
}

static bool
sess_digest_refused(struct sess *s)
{
	struct sync_info si;

	if (s->ch == NULL)
		return false;
	sync_info(s->ch, &si);
	return si.peer_known && !si.peer.digest_match;
}

/*
 * Rebuild every connection of the peer's table whose address is here now,
 * between the VIPs coming up and their announcement.
 */
static void
sess_takeover(struct sess *s)
{
	const struct shadow_entry *e;
	uint64_t t0 = sess_mono_us(), now_ms = sess_mono_ms();
	size_t restored = 0, failed = 0, later = 0, n = 0, cap;
	struct sess_building *bs;
	struct timespec wall;
	int r;

	if (shadow_count(s->peer) == 0)
		return;
	if (sess_digest_refused(s)) {
		s->stats.mismatch_refused++;
		log_warnx("session: takeover: the peer's proxy configuration differs "
		    "from ours: its %zu connections are NOT restored",
		    shadow_count(s->peer));
		shadow_clear(s->peer);
		return;
	}
	cap = shadow_count(s->peer);
	bs = calloc(cap, sizeof(*bs));
	if (bs == NULL) {
		log_warnx("session: takeover: out of memory for %zu connections", cap);
		return;
	}
	s->rest_base = s->next_restore_id;
	s->nrest = 0;
	r = repair_watch_arm(s->watch, NULL, now_ms);
	s->watch_armed = r == 0;
	if (r < 0)
		log_warnx("session: takeover: stale-state watch: %s (restored "
		    "connections are not checked)", strerror(-r));
	/* Phase 1, silent: every socket exists before the first one speaks. */
	for (e = shadow_first(s->peer); e != NULL && n < cap; e = shadow_next(e)) {
		switch (sess_build_one(s, shadow_entry_state(e), now_ms, &bs[n])) {
		case SESS_RESTORED:
			n++;
			break;
		case SESS_RESTORE_LATER:
			later++;
			bs[n].shadow_id = 0;
			break;
		case SESS_RESTORE_FAILED:
			failed++;
			/* Forget it below (not now: the iteration holds e). */
			bs[n].rid = 0;
			bs[n].fe = -1;
			bs[n].out[0].fd = bs[n].out[1].fd = -1;
			n++;
			break;
		}
	}
	/* Phase 2: probes and send queues go out, workers take the sockets. */
	for (size_t i = 0; i < n; i++) {
		if (bs[i].fe >= 0) {
			if (sess_finish_one(s, &bs[i]))
				restored++;
			else
				failed++;
		}
		(void)shadow_close(s->peer, bs[i].shadow_id);
	}
	free(bs);
	s->stats.takeovers++;
	s->stats.restored += restored;
	s->stats.restore_failed += failed;
	s->stats.last_restored = restored;
	s->stats.last_failed = failed;
	s->stats.last_duration_us = sess_mono_us() - t0;
	s->stats.duration_sum_us += s->stats.last_duration_us;
	clock_gettime(CLOCK_REALTIME, &wall);
	s->stats.last_takeover_wall = (double)wall.tv_sec + wall.tv_nsec / 1e9;
	sess_duration_bucket(s, s->stats.last_duration_us);
	log_info("session: takeover: %zu connections restored, %zu failed, %zu "
	    "wait for another group's address, in %.1f ms", restored, failed, later,
	    (double)s->stats.last_duration_us / 1e3);
	sess_watch_run(s);
}

static void sess_ask_end(struct sess *s, const char *why);
static void sess_servers_warm(struct sess *s);

static void
sess_take_finish(struct sess *s)
{
	bool any = false;

	ev_timer_stop(s->loop, &s->take.timer);
	s->take.pending = false;
	for (size_t i = 0; i < 64; i++)
		any |= s->take.waiting[i];
	if (!any)
		return;
	sess_takeover(s);
	for (size_t i = 0; i < 64; i++)
		if (s->take.waiting[i]) {
			s->take.waiting[i] = false;
			agent_vips_ready(s->agent, i);
		}
	sess_ask_end(s, "the peer handed over");
}

static void
sess_take_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sess *s = w->data;
	bool any = false;

	(void)loop;
	(void)revents;
	for (size_t i = 0; i < 64; i++)
		any |= s->take.waiting[i];
	if (any)
		log_warnx("session: handover: the peer's final state did not arrive "
		    "in %.0f s: restoring what we have", SESS_RECV_WAIT_S);
	else
		log_info("session: handover request %" PRIx64 " not followed up",
		    s->take.id);
	sess_take_finish(s);
}

static bool
sess_hook_vips_up(void *arg, size_t group)
{
	struct sess *s = arg;

	sess_servers_warm(s);
	if (group >= 64)
		return false;
	if (s->take.pending) {
		/* Planned handover: restore the peer's final state, not an older one. */
		s->take.waiting[group] = true;
		ev_timer_stop(s->loop, &s->take.timer);
		ev_timer_set(&s->take.timer, SESS_RECV_WAIT_S, 0.);
		ev_timer_start(s->loop, &s->take.timer);
		log_info("session: VIPs up, waiting for the peer's final state");
		return true;
	}
	sess_takeover(s);
	agent_vips_ready(s->agent, group);
	return true;
}

/* ---- handover, giving side ---------------------------------------------- */

static void
sess_give_end(struct sess *s, int result)
{
	void (*done)(void *, int) = s->give.done;
	void *arg = s->give.arg;

	ev_timer_stop(s->loop, &s->give.timer);
	s->give.phase = SESS_GIVE_IDLE;
	s->give.done = NULL;
	if (result == 0)
		log_info("session: handover %" PRIx64 " complete: the peer has our "
		    "final state", s->give.id);
	else
		log_warnx("session: handover %" PRIx64 " ended: %s", s->give.id,
		    strerror(-result));
	if (done != NULL)
		done(arg, result);
}

static void
sess_give_wait(struct sess *s, double timeout)
{
	s->give.deadline = sess_now() + timeout;
	ev_timer_stop(s->loop, &s->give.timer);
	ev_timer_set(&s->give.timer, SESS_POLL_S, SESS_POLL_S);
	ev_timer_start(s->loop, &s->give.timer);
}

static void
sess_give_handover_groups(struct sess *s)
{
	size_t n = agent_count(s->agent);
	bool was_master[64] = { false };
	unsigned moved = 0;

	for (size_t i = 0; i < n && i < 64; i++)
		was_master[i] = agent_is_master(s->agent, i);
	for (size_t i = 0; i < n && i < 64; i++) {
		if (s->give.group >= 0 && (size_t)s->give.group != i)
			continue;
		if (agent_is_master(s->agent, i) && agent_handover(s->agent, i) == 0)
			moved++;
	}
	/* A sync group moves its members too: wait for every group that left MASTER. */
	memset(s->give.groups, 0, sizeof(s->give.groups));
	for (size_t i = 0; i < n && i < 64; i++)
		s->give.groups[i] = was_master[i] && !agent_is_master(s->agent, i);
	if (moved == 0) {
		sess_queue_switch(s, SYNC_SWITCH_ABORT, "no MASTER group");
		sess_give_end(s, -EINVAL);
		return;
	}
	s->give.phase = SESS_GIVE_VIPDOWN;
	sess_give_wait(s, SESS_VIPDOWN_S);
}

static void
sess_give_freeze(struct sess *s)
{
	s->give.phase = SESS_GIVE_FREEZE;
	s->give.workers_done = 0;
	sess_give_wait(s, SESS_FREEZE_S);
	sess_freeze_all(s);
}

static void
sess_give_freeze_done(struct sess *s)
{
	struct sync_info si;

	sess_queue_switch(s, SYNC_SWITCH_FROZEN, "final state sent");
	sync_info(s->ch, &si);
	s->give.wait_seq = si.tx_seq;
	s->give.phase = SESS_GIVE_FROZEN;
	sess_give_wait(s, SESS_FROZEN_ACK_S);
}

static bool
sess_acked(const struct sess *s, uint64_t seq)
{
	struct sync_info si;

	sync_info(s->ch, &si);
	return si.state == SYNC_STATE_UP && si.tx_acked >= seq;
}

static void
sess_give_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sess *s = w->data;
	bool late = sess_now() >= s->give.deadline;

	(void)loop;
	(void)revents;
	switch (s->give.phase) {
	case SESS_GIVE_REQUEST:
		if (sess_acked(s, s->give.wait_seq) || late) {
			if (late)
				log_warnx("session: handover: the peer did not acknowledge "
				    "the request in time, handing over anyway");
			sess_give_handover_groups(s);
		}
		break;
	case SESS_GIVE_VIPDOWN:
		if (late) {
			log_warnx("session: handover: VIPs not confirmed gone, "
			    "freezing anyway");
			sess_give_freeze(s);
		}
		break;
	case SESS_GIVE_FREEZE:
		if (late) {
			log_warnx("session: handover: %u of %u workers froze in time",
			    s->give.workers_done, s->nworkers);
			sess_give_freeze_done(s);
		}
		break;
	case SESS_GIVE_FROZEN:
		if (sess_acked(s, s->give.wait_seq))
			sess_give_end(s, 0);
		else if (late)
			sess_give_end(s, -ETIMEDOUT);
		break;
	case SESS_GIVE_IDLE:
	case SESS_GIVE_PHASE_COUNT:
		ev_timer_stop(s->loop, w);
		break;
	}
}

static void
sess_hook_vips_down(void *arg, size_t group)
{
	struct sess *s = arg;
	bool waiting = false;

	if (s->give.phase == SESS_GIVE_VIPDOWN) {
		if (group < 64)
			s->give.groups[group] = false;
		for (size_t i = 0; i < 64; i++)
			waiting |= s->give.groups[i];
		if (!waiting)
			sess_give_freeze(s);
		return;
	}
	if (s->give.phase != SESS_GIVE_IDLE)
		return;
	/* Lost the VIPs unplanned: our sockets must not speak for the new owner. */
	if (shadow_count(s->local) > 0) {
		log_info("session: VIPs gone: freezing %zu connections silently",
		    shadow_count(s->local));
		sess_freeze_all(s);
	}
}

/* Is group (or, with -1, any group) MASTER here? */
static bool
sess_any_master(const struct sess *s, int group)
{
	for (size_t i = 0; i < agent_count(s->agent); i++)
		if ((group < 0 || (size_t)group == i) && agent_is_master(s->agent, i))
			return true;
	return false;
}

int
sess_switchover(struct sess *s, int group, void (*done)(void *arg, int result),
    void *arg)
{
	struct sync_info si;

	if (s == NULL || s->agent == NULL)
		return -EINVAL;
	if (s->give.phase != SESS_GIVE_IDLE)
		return -EBUSY;
	if (!sess_can_handover(s))
		return -ENOTCONN;
	if (!sess_any_master(s, group))
		return -EINVAL;   /* a BACKUP has nothing to hand over: no REQUEST */
	s->give.id = sess_random64();
	s->give.group = group;
	s->give.done = done;
	s->give.arg = arg;
	s->stats.handovers_sent++;
	log_info("session: handover %" PRIx64 " of %s to the peer: %zu connections",
	    s->give.id, group < 0 ? "every MASTER group" : "one group",
	    shadow_count(s->local));
	sess_queue_switch(s, SYNC_SWITCH_REQUEST, "switchover");
	sync_info(s->ch, &si);
	s->give.wait_seq = si.tx_seq;
	s->give.phase = SESS_GIVE_REQUEST;
	sess_give_wait(s, SESS_REQUEST_ACK_S);
	return 0;
}

bool
sess_can_handover(const struct sess *s)
{
	struct sync_info si;

	if (s == NULL || s->ch == NULL || s->give.phase != SESS_GIVE_IDLE)
		return false;
	sync_info(s->ch, &si);
	/* While a resync is pending the channel discards events: a marker too. */
	return si.state == SYNC_STATE_UP && si.peer.digest_match && !si.resync_pending;
}

/* ---- balancing state (the new active node starts warm) --------------------- */

/*
 * What the peer's balancer learned that ours has not: its connect-time
 * averages (lrt) per server. Health, rise/fall and slow start are observed
 * by our own checks on the same servers; least-connection counts follow the
 * adopted connections themselves; source hashing (Maglev) keeps no table.
 */
static void
sess_server_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sess *s = w->data;

	struct sync_info si;

	(void)loop;
	(void)revents;
	if (s->ch == NULL)
		return;
	/* Nobody to tell: do not fill the retransmit queue with stale numbers. */
	sync_info(s->ch, &si);
	if (si.state != SYNC_STATE_UP)
		return;
	for (size_t f = 0; f < s->nfes; f++) {
		const struct bal_pool *pool = s->fes[f].pool;
		bool seen = false;

		/* A backend shared by several frontends is sent once. */
		for (size_t g = 0; g < f; g++)
			seen |= s->fes[g].pool == pool;
		if (seen)
			continue;
		for (size_t i = 0; i < pool->nservers; i++) {
			const struct bal_server *sv = &pool->servers[i];
			struct sync_event ev = { .type = SYNC_EV_SERVER };
			struct sync_server *o = &ev.u.server;
			int st = atomic_load_explicit(&sv->state, memory_order_relaxed);

			snprintf(o->backend, sizeof(o->backend), "%s", pool->name);
			snprintf(o->server, sizeof(o->server), "%s", sv->name);
			o->health = st == BAL_DOWN ? SYNC_HEALTH_DOWN :
			    st == BAL_DRAIN ? SYNC_HEALTH_DRAIN :
			    st == BAL_MAINT ? SYNC_HEALTH_MAINT : SYNC_HEALTH_UP;
			o->eff_weight = atomic_load_explicit(&sv->eff_weight,
			    memory_order_relaxed);
			o->active_conns = atomic_load_explicit(&sv->active,
			    memory_order_relaxed);
			o->ewma_us = atomic_load_explicit(&sv->ewma_us, memory_order_relaxed);
			o->consec_fails = atomic_load_explicit(&sv->consec_fails,
			    memory_order_relaxed);
			if (o->ewma_us != 0)
				sess_queue(s, &ev);
		}
	}
}

static void
sess_server_keep(struct sess *s, const struct sync_server *sv)
{
	size_t i;

	for (i = 0; i < s->npeer_servers; i++)
		if (strcmp(s->peer_servers[i].backend, sv->backend) == 0 &&
		    strcmp(s->peer_servers[i].server, sv->server) == 0)
			break;
	if (i == SESS_PEER_SERVERS_MAX)
		return;
	if (i == s->npeer_servers)
		s->npeer_servers++;
	s->peer_servers[i] = *sv;
}

/* At takeover: the peer's averages where ours have no sample yet. */
static void
sess_servers_warm(struct sess *s)
{
	size_t warmed = 0;

	for (size_t k = 0; k < s->npeer_servers; k++) {
		const struct sync_server *sv = &s->peer_servers[k];

		for (size_t f = 0; f < s->nfes; f++) {
			struct bal_pool *pool = s->fes[f].pool;

			if (strcmp(pool->name, sv->backend) != 0)
				continue;
			for (size_t i = 0; i < pool->nservers; i++) {
				struct bal_server *mine = &pool->servers[i];
				uint_fast64_t zero = 0;

				if (strcmp(mine->name, sv->server) != 0)
					continue;
				if (atomic_compare_exchange_strong(&mine->ewma_us, &zero,
				    sv->ewma_us))
					warmed++;
			}
			break;
		}
	}
	if (warmed > 0)
		log_info("session: %zu servers start with the peer's response-time "
		    "averages", warmed);
}

/* ---- preemption as a handover ------------------------------------------------ */

/*
 * Would a group of ours preempt the peer's once allowed? Then the peer is
 * asked to hand its sessions over instead: taking the VIPs while it still
 * relays would restore connections that have moved on since (every one
 * of them failed the stale check in the lab).
 */
static bool
sess_would_preempt(const struct sess *s)
{
	struct agent_status st;

	for (size_t i = 0; i < agent_count(s->agent) && i < s->cfg->nvrrp; i++) {
		if (agent_status(s->agent, i, &st) < 0)
			continue;
		if (st.info.state == AGENT_BACKUP && s->cfg->vrrp[i].preempt &&
		    st.info.master_known && st.info.priority > st.info.master_priority)
			return true;
	}
	return false;
}

static void
sess_ask_end(struct sess *s, const char *why)
{
	if (!s->ask.pending)
		return;
	s->ask.pending = false;
	ev_timer_stop(s->loop, &s->ask.timer);
	log_info("session: preemption allowed (%s)", why);
	agent_set_sync_ready_all(s->agent, true);
}

static void
sess_ask_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	sess_ask_end(w->data, "the peer did not hand over in time: plain preemption");
}

/* The peer's table is complete: preempt, through the peer if we can. */
static void
sess_sync_ready(struct sess *s)
{
	struct sync_event ev = { .type = SYNC_EV_SWITCH };

	s->sync_ready = true;
	if (s->agent == NULL)
		return;
	if (!sess_would_preempt(s) || !sess_can_handover(s)) {
		agent_set_sync_ready_all(s->agent, true);
		log_info("session: the peer's table is complete: preemption allowed");
		return;
	}
	ev.u.sw.phase = SYNC_SWITCH_REQUEST;
	ev.u.sw.id = sess_random64();
	snprintf(ev.u.sw.reason, sizeof(ev.u.sw.reason), "preempt");
	sess_queue(s, &ev);
	(void)sync_flush(s->ch);
	s->ask.pending = true;
	ev_timer_set(&s->ask.timer, SESS_ASK_S, 0.);
	ev_timer_start(s->loop, &s->ask.timer);
	log_info("session: the peer's table is complete; asking the peer to hand "
	    "its sessions over instead of preempting it");
}

/* ---- the sync channel's callbacks ------------------------------------------ */

static void
sess_on_event(void *arg, const struct sync_event *ev)
{
	struct sess *s = arg;

	if (ev->type == SYNC_EV_SERVER) {
		sess_server_keep(s, &ev->u.server);
		return;
	}
	if (ev->type != SYNC_EV_SWITCH) {
		int r = shadow_apply(s->peer, ev, sess_now());

		if (r < 0 && r != -ENOENT && r != -ENOTSUP)
			log_warnx("session: peer %s event not applied: %s",
			    sync_ev_name(ev->type), strerror(-r));
		return;
	}
	switch (ev->u.sw.phase) {
	case SYNC_SWITCH_REQUEST:
		if (strcmp(ev->u.sw.reason, "preempt") == 0) {
			int r;

			/* The peer outranks us and has our table: give, don't be taken. */
			r = sess_switchover(s, -1, NULL, NULL);
			log_info("session: the peer asks to take over (preempt): %s",
			    r == 0 ? "handing over" : strerror(-r));
			break;
		}
		s->take.pending = true;
		s->take.id = ev->u.sw.id;
		s->stats.handovers_received++;
		log_info("session: the peer hands over (%" PRIx64 ", %s)",
		    ev->u.sw.id, ev->u.sw.reason);
		ev_timer_stop(s->loop, &s->take.timer);
		ev_timer_set(&s->take.timer, SESS_RECV_FORGET_S, 0.);
		ev_timer_start(s->loop, &s->take.timer);
		break;
	case SYNC_SWITCH_FROZEN:
		log_info("session: the peer's final state is here (%zu connections)",
		    shadow_count(s->peer));
		sess_take_finish(s);
		break;
	case SYNC_SWITCH_ABORT:
		log_info("session: the peer cancelled its handover: %s",
		    ev->u.sw.reason);
		sess_take_finish(s);
		break;
	case SYNC_SWITCH_DONE:
	case SYNC_SWITCH_COUNT:
		break;
	}
}

static void
sess_on_peer_up(void *arg, const struct sync_peer *peer)
{
	struct sess *s = arg;

	(void)s;
	log_info("session: sync with %s (%s) up, config %s, %s", peer->name,
	    peer->addr, peer->digest_match ? "matches" : "DIFFERS",
	    peer->resumed ? "stream resumed" : "full snapshot");
}

static void
sess_on_peer_down(void *arg, const char *why)
{
	struct sess *s = arg;

	log_warnx("session: sync with the peer down: %s", why);
	/* A crashed peer's kernel closed it: take over after one interval. */
	agent_sync_lost(s->agent);
}

static void
sess_on_resync(void *arg, uint64_t bulk_id)
{
	struct sess *s = arg;
	size_t n = 0;
	int r;

	for (const struct shadow_entry *e = shadow_first(s->local); e != NULL;
	    e = shadow_next(e)) {
		struct sync_event ev = { .type = SYNC_EV_CONN };

		ev.u.conn = *shadow_entry_state(e);
		if (sync_queue_event(s->ch, &ev) == 0)
			n++;
	}
	r = sync_bulk_end(s->ch, bulk_id);
	log_info("session: full snapshot of %zu connections sent to the peer%s", n,
	    r < 0 ? " (superseded)" : "");
}

static void
sess_on_bulk_begin(void *arg)
{
	struct sess *s = arg;

	shadow_bulk_begin(s->peer);
}

static void
sess_on_bulk_end(void *arg, uint64_t count, bool complete)
{
	struct sess *s = arg;
	size_t removed = shadow_bulk_end(s->peer);

	log_info("session: the peer's snapshot: %" PRIu64 " events, %zu entries "
	    "held, %zu dropped%s", count, shadow_count(s->peer), removed,
	    complete ? "" : " (INCOMPLETE)");
	if (complete && !s->sync_ready)
		sess_sync_ready(s);
}

static void
sess_on_mismatch(void *arg, const uint8_t peer_digest[SYNC_DIGEST_LEN])
{
	struct sess *s = arg;

	(void)peer_digest;
	s->peer_mismatch = true;
	log_warnx("session: PEER CONFIG DIFFERS: the peer's frontends/backends are "
	    "not ours; its sessions will not be restored here");
}

static const struct sync_ops sess_sync_ops = {
	.on_event = sess_on_event,
	.on_peer_up = sess_on_peer_up,
	.on_peer_down = sess_on_peer_down,
	.on_resync_needed = sess_on_resync,
	.on_bulk_begin = sess_on_bulk_begin,
	.on_bulk_end = sess_on_bulk_end,
	.on_mismatch = sess_on_mismatch,
};

/* ---- crash ------------------------------------------------------------------ */

/*
 * Fatal signal: the VIPs are gone already. Every relayed socket goes into
 * repair mode, so when the kernel closes it at our death it sends nothing:
 * the peer restores the connection as it was. Async-signal-safe only.
 */
static void
sess_hook_crash(void *arg)
{
	struct sess *s = arg;
	int one = 1;

	for (size_t fd = 0; fd < s->nfds; fd++)
		if (atomic_load_explicit(&s->fd_flags[fd], memory_order_relaxed))
			(void)setsockopt((int)fd, IPPROTO_TCP, TCP_REPAIR, &one,
			    sizeof(one));
}

/* ---- life cycle ------------------------------------------------------------- */

int
sess_new(struct ev_loop *loop, const struct cfg *cfg, struct proxy_frontend *fes,
    size_t nfes, unsigned nworkers, struct sess **out)
{
	struct sess *s;
	struct rlimit rl;
	char why[256];
	int r;

	*out = NULL;
	if (!cfg->sync.enabled)
		return 0;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->cfg = cfg;
	s->fes = fes;
	s->nfes = nfes;
	s->nworkers = nworkers;
	s->next_restore_id = 1;
	ev_io_init(&s->watch_io, sess_watch_io_cb, -1, EV_READ);
	s->watch_io.data = s;
	ev_timer_init(&s->watch_timer, sess_watch_timer_cb, 0., 0.);
	s->watch_timer.data = s;
	ev_timer_init(&s->give.timer, sess_give_timer_cb, 0., 0.);
	s->give.timer.data = s;
	ev_timer_init(&s->take.timer, sess_take_timer_cb, 0., 0.);
	s->take.timer.data = s;
	ev_timer_init(&s->ask.timer, sess_ask_timer_cb, 0., 0.);
	s->ask.timer.data = s;
	ev_timer_init(&s->server_timer, sess_server_tick, SESS_SERVER_EVERY_S,
	    SESS_SERVER_EVERY_S);
	s->server_timer.data = s;

	s->nfds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < SESS_FDS_MAX ?
	    (size_t)rl.rlim_cur : SESS_FDS_MAX;
	s->fd_flags = calloc(s->nfds, 1);
	s->workers = calloc(nworkers, sizeof(*s->workers));
	if (s->fd_flags == NULL || s->workers == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < nworkers; i++) {
		s->workers[i].s = s;
		s->workers[i].id = i;
		r = ring_chan_new(loop, sizeof(struct sess_wev), SESS_RING_SLOTS,
		    SESS_RING_BATCH, sess_wev_deliver, &s->workers[i],
		    &s->workers[i].events);
		if (r < 0)
			goto fail;
	}
	if ((r = shadow_new(SIZE_MAX / 2, &s->local)) < 0 ||
	    (r = shadow_new(cfg->sync.max_entries, &s->peer)) < 0)
		goto fail;
	if ((r = cfg_digest(cfg, s->digest)) < 0)
		goto fail;
	s->kr = auth_keyring_new();
	if (s->kr == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	r = auth_keyring_load(s->kr, cfg->sync.auth_key, 1, NULL, why, sizeof(why));
	if (r < 0) {
		log_warnx("%s:%d: sync: %s", cfg->file, cfg->sync.line, why);
		goto fail;
	}
	/* Opened now: closing or opening a packet socket costs ~15 ms (research). */
	r = repair_watch_new(0, &s->watch);
	if (r < 0) {
		errno = -r;
		log_warn("session: stale-state watch");
		goto fail;
	}
	ev_io_set(&s->watch_io, repair_watch_fd(s->watch), EV_READ);
	ev_io_start(loop, &s->watch_io);
	*out = s;
	return 0;
fail:
	sess_free(s);
	return r;
}

int
sess_worker_link(struct sess *s, unsigned i, struct sess_worker_link *out)
{
	if (s == NULL || i >= s->nworkers)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	out->events = s->workers[i].events;
	out->cmds = &s->workers[i].cmds;
	out->fd_flags = s->fd_flags;
	out->nfds = s->nfds;
	return 0;
}

int
sess_start(struct sess *s, struct agent *agent)
{
	struct sync_cfg sc = { 0 };
	struct agent_counters ac;
	const struct agent_hooks hooks = {
		.vips_up = sess_hook_vips_up,
		.vips_down = sess_hook_vips_down,
		.crash = sess_hook_crash,
	};
	int r;

	if (s == NULL)
		return 0;
	s->agent = agent;
	sc.node_name = s->cfg->node.name;
	memcpy(&sc.listen, &s->cfg->sync.listen, sizeof(sc.listen));
	sc.listenlen = s->cfg->sync.listenlen;
	memcpy(&sc.peer, &s->cfg->sync.peer, sizeof(sc.peer));
	sc.peerlen = s->cfg->sync.peerlen;
	if (agent != NULL) {
		agent_counters(agent, &ac);
		sc.boot_epoch = ac.boot_epoch;
	} else {
		sc.boot_epoch = (uint64_t)time(NULL);
	}
	if (sc.boot_epoch == 0 || sc.boot_epoch > SYNC_BOOT_EPOCH_MAX)
		sc.boot_epoch = (uint64_t)time(NULL) & SYNC_BOOT_EPOCH_MAX;
	memcpy(sc.config_digest, s->digest, SYNC_DIGEST_LEN);
	sc.role = SYNC_ROLE_STANDBY;
	r = sync_new(s->loop, &sc, s->kr, &sess_sync_ops, s, &s->ch);
	if (r < 0) {
		errno = -r;
		log_warn("%s:%d: sync: cannot open the channel", s->cfg->file,
		    s->cfg->sync.line);
		return r;
	}
	if (agent != NULL) {
		agent_set_hooks(agent, &hooks, s);
		/* Until the peer's table is here, preempting would drop its sessions. */
		agent_set_sync_ready_all(agent, false);
	}
	sync_start(s->ch);
	ev_timer_start(s->loop, &s->server_timer);
	return 0;
}

void
sess_free(struct sess *s)
{
	if (s == NULL)
		return;
	if (s->agent != NULL)
		agent_set_hooks(s->agent, NULL, NULL);
	ev_timer_stop(s->loop, &s->give.timer);
	ev_timer_stop(s->loop, &s->take.timer);
	ev_timer_stop(s->loop, &s->ask.timer);
	ev_timer_stop(s->loop, &s->server_timer);
	ev_timer_stop(s->loop, &s->watch_timer);
	ev_io_stop(s->loop, &s->watch_io);
	sync_free(s->ch);
	s->ch = NULL;   /* the drain below must not queue events for the peer */
	s->give.phase = SESS_GIVE_IDLE;
	if (s->workers != NULL)
		for (unsigned i = 0; i < s->nworkers; i++) {
			if (s->workers[i].events != NULL) {
				/* Workers are stopped: deliver what they left (frees boxes). */
				(void)ring_chan_drain(s->workers[i].events);
				ring_chan_free(s->workers[i].events);
			}
		}
	repair_watch_free(s->watch);
	shadow_free(s->local);
	shadow_free(s->peer);
	auth_keyring_free(s->kr);
	free(s->rest);
	free(s->workers);
	free((void *)(uintptr_t)s->fd_flags);
	free(s);
}

void
sess_get_info(const struct sess *s, struct sess_info *out)
{
	struct shadow_stats st;

	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return;
	out->enabled = true;
	if (s->ch != NULL)
		sync_info(s->ch, &out->sync);
	out->local_entries = shadow_count(s->local);
	shadow_get_stats(s->peer, &st);
	out->shadow.entries = st.entries;
	out->shadow.max_entries = st.max_entries;
	out->shadow.evicted = st.evicted;
	out->sync_ready = s->sync_ready;
	out->handover_active = s->give.phase != SESS_GIVE_IDLE || s->take.pending;
	out->stats = s->stats;
}

const struct sync_stats *
sess_sync_stats(const struct sess *s)
{
	return s != NULL && s->ch != NULL ? sync_stats(s->ch) : NULL;
}
