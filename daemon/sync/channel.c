/*
 * channel — the sync channel between the pair: listening, connecting,
 * the handshake, reading and writing links, the loop turn. See
 * include/tandem/sync.h for the protocol. The two streams (our retransmit
 * queue, the peer's sequence checks) are stream.c's, the wire conversion is
 * frame.c's; sync_int.h holds what channel.c and stream.c share.
 *
 * Objects. One struct sync per node. It owns the listening socket, a list
 * of links (TCP connections to the peer: at most one outgoing, a few
 * incoming ones in their handshake, and the one in use, ch->up), our
 * stream (the retransmit queue of sealed frames plus the batch of events
 * not yet sealed) and our position in the peer's stream (rx_*). A link
 * never owns stream state, so switching links (a reconnect, crossed
 * connections) is a resume from the retransmit queue.
 *
 * Link life (one table, sync_link_fsm, below its diagram). A link that
 * reaches CLOSED keeps its memory until the next ev_prepare reaps it,
 * because it may be closed from deep inside its own read callback.
 *
 * Write order on a link: the rest of a frame already started, then the
 * control bytes (hello, echo, pure acks), then whole frames from ch->cur.
 * Control bytes never cut into a frame, frames never into control bytes.
 */
#include "sync_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SYNC_PENDING_IN_MAX 4       /* incoming links still in their handshake */
#define SYNC_READ_BUDGET (1u << 20) /* bytes read per wake-up: other watchers get a turn */
#define SYNC_READ_CHUNK (64u << 10)
#define SYNC_WRITEV_MAX 64
#define SYNC_ACCEPT_BATCH 16
#define SYNC_ACCEPT_BACKOFF 1.0     /* s: accept paused after EMFILE & co. */
#define SYNC_LOG_INTERVAL 5.0       /* s between two lines of one kind */
#define SYNC_BACKLOG 8

#define SYNC_LINK_NAME_(sym, name) [SYNC_LINK_##sym] = name,
static const char *const sync_link_state_names[SYNC_LINK_STATE_COUNT] = {
	SYNC_LINK_STATE_LIST(SYNC_LINK_NAME_)
};
#undef SYNC_LINK_NAME_

static void sync_link_write(struct sync_link *l);
static void sync_link_watch(struct sync_link *l);
static void sync_schedule(struct sync *ch);

/* ---- small helpers -------------------------------------------------------- */

/*
 * Monotonic seconds. Not ev_now(): it follows the wall clock, and a clock
 * step must not look like a silent peer.
 */
double
sync_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t
sync_rand(struct sync *ch)
{
	/* xorshift64*: jitter and a fallback for nonces, not secrets */
	ch->rng ^= ch->rng >> 12;
	ch->rng ^= ch->rng << 25;
	ch->rng ^= ch->rng >> 27;
	return ch->rng * UINT64_C(2685821657736338717);
}

static uint64_t
sync_nonce(struct sync *ch)
{
	uint64_t v;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		v = sync_rand(ch);
	return v != 0 ? v : 1;
}

static const char *
sync_sa_fmt(const struct sockaddr *sa, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
		snprintf(buf, len, "%s:%u", a, (unsigned)ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
		snprintf(buf, len, "[%s]:%u", a, (unsigned)ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
	return buf;
}

static int
sync_sa_valid(const struct sockaddr_storage *ss, socklen_t len, int want_port)
{
	if (ss->ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in))
		return !want_port ||
		    ((const struct sockaddr_in *)ss)->sin_port != 0;
	if (ss->ss_family == AF_INET6 &&
	    len >= (socklen_t)sizeof(struct sockaddr_in6))
		return !want_port ||
		    ((const struct sockaddr_in6 *)ss)->sin6_port != 0;
	return 0;
}

static int
sync_sa_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr ==
		    htonl(INADDR_ANY);
	return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr,
	    &in6addr_any, sizeof(in6addr_any)) == 0;
}

/* Same address, ports aside. */
static int
sync_sa_same_host(const struct sockaddr *a, const struct sockaddr_storage *b)
{
	if (a->sa_family != b->ss_family)
		return 0;
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	    &((const struct sockaddr_in6 *)b)->sin6_addr,
	    sizeof(struct in6_addr)) == 0;
}

static void
sync_endpoint_from_sa(struct sync_endpoint *e, const struct sockaddr *sa)
{
	memset(e, 0, sizeof(*e));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		e->family = AF_INET;
		memcpy(e->addr, &in->sin_addr, 4);
		e->port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		e->family = AF_INET6;
		memcpy(e->addr, &in6->sin6_addr, 16);
		e->port = ntohs(in6->sin6_port);
	}
}

void
sync_drop(struct sync_link *l, enum sync_drop why, bool closing,
    const char *fmt, ...)
{
	struct sync *ch = l->ch;
	char detail[200], more[64] = "";
	unsigned suppressed = 0;
	va_list ap;

	if ((unsigned)why >= SYNC_DROP_COUNT)
		return;
	ch->stats.drops[why]++;
	if (!log_ratelimit_ok(&ch->stats.rl[why], sync_clock(),
	    SYNC_LOG_INTERVAL, &suppressed))
		return;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (suppressed > 0)
		snprintf(more, sizeof(more), " (%u more since the last line)",
		    suppressed);
	log_warnx("sync %s (%s): %s (%s), %s, %s%s", l->addr,
	    l->outgoing ? "out" : "in", sync_drop_name(why),
	    sync_drop_desc(why), detail,
	    closing ? "closing the connection" : "ignoring", more);
}

/* ---- control bytes --------------------------------------------------------- */

/* A pure ack (seq 0), with echo != 0 the handshake's confirmation. */
static int
sync_link_queue_ack(struct sync_link *l, uint64_t echo)
{
	struct sync *ch = l->ch;
	struct sync_frame_hdr h = { .epoch = ch->tx_epoch, .echo = echo };
	bool alone;
	int ret;

	sync_ack_fields(ch, &h);
	/* An unsent pure ack is stale now: replace it rather than queue two. */
	if (l->ctrl_is_ack && echo == 0) {
		l->ctrl.len = 0;
		l->ctrl_off = 0;
	}
	alone = l->ctrl.len == l->ctrl_off;
	if (alone) {
		l->ctrl.len = 0;
		l->ctrl_off = 0;
	}
	ret = syncf_frame_seal(&l->ctrl, &h, NULL, 0, 0, ch->kr);
	if (ret < 0)
		return ret;
	l->ctrl_is_ack = alone && echo == 0;
	ch->ack_sent_epoch = h.ack_epoch;
	ch->ack_sent = h.ack;
	ch->stats.acks_out++;
	return 0;
}

/* ---- writing ------------------------------------------------------------------ */

static void
sync_frame_written(struct sync *ch)
{
	if (ch->cur->written)
		ch->stats.retransmits++;
	ch->cur->written = true;
	ch->cur = ch->cur->next;
	ch->cur_off = 0;
}

/* Move the write position on by n bytes, in the order sync_link_iov made. */
static void
sync_link_advance(struct sync_link *l, size_t n)
{
	struct sync *ch = l->ch;
	bool frames = ch->up == l;
	size_t take;

	if (frames && ch->cur != NULL && ch->cur_off > 0) {
		take = ch->cur->len - ch->cur_off;
		take = take < n ? take : n;
		ch->cur_off += take;
		n -= take;
		if (ch->cur_off < ch->cur->len)
			return;
		sync_frame_written(ch);
	}
	take = l->ctrl.len - l->ctrl_off;
	take = take < n ? take : n;
	if (take > 0) {
		l->ctrl_off += take;
		l->ctrl_is_ack = false;
		n -= take;
		if (l->ctrl_off < l->ctrl.len)
			return;
		l->ctrl.len = 0;
		l->ctrl_off = 0;
	}
	while (frames && n > 0 && ch->cur != NULL) {
		take = ch->cur->len - ch->cur_off;
		take = take < n ? take : n;
		ch->cur_off += take;
		n -= take;
		if (ch->cur_off < ch->cur->len)
			return;
		sync_frame_written(ch);
	}
}

static int
sync_link_iov(struct sync_link *l, struct iovec *iov)
{
	struct sync *ch = l->ch;
	struct sync_txframe *f = ch->up == l ? ch->cur : NULL;
	int n = 0;

	if (f != NULL && ch->cur_off > 0) {
		iov[n].iov_base = f->data + ch->cur_off;
		iov[n++].iov_len = f->len - ch->cur_off;
		f = f->next;
	}
	if (l->ctrl.len > l->ctrl_off) {
		iov[n].iov_base = l->ctrl.data + l->ctrl_off;
		iov[n++].iov_len = l->ctrl.len - l->ctrl_off;
	}
	for (; f != NULL && n < SYNC_WRITEV_MAX; f = f->next) {
		iov[n].iov_base = f->data;
		iov[n++].iov_len = f->len;
	}
	return n;
}

static bool
sync_link_has_output(const struct sync_link *l)
{
	return l->ctrl.len > l->ctrl_off ||
	    (l->ch->up == l && l->ch->cur != NULL);
}

static void
sync_link_write(struct sync_link *l)
{
	struct iovec iov[SYNC_WRITEV_MAX];
	ssize_t w;
	int n;

	if (l->state == SYNC_LINK_CONNECTING || l->state == SYNC_LINK_CLOSED)
		return;
	while ((n = sync_link_iov(l, iov)) > 0) {
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)n };

		/* sendmsg for MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE. */
		w = sendmsg(l->io.fd, &msg, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			sync_link_event(l, SYNC_LEV_LOST, strerror(errno));
			return;
		}
		l->ch->stats.bytes_out += (uint64_t)w;
		l->last_tx = sync_clock();
		sync_link_advance(l, (size_t)w);
	}
	sync_link_watch(l);
}

/* The one place that decides which events a link waits for. */
static void
sync_link_watch(struct sync_link *l)
{
	struct ev_loop *loop = l->ch->loop;
	int want;

	if (l->state == SYNC_LINK_CLOSED)
		return;
	if (l->state == SYNC_LINK_CONNECTING)
		want = EV_WRITE;
	else
		want = EV_READ | (sync_link_has_output(l) ? EV_WRITE : 0);
	if (ev_is_active(&l->io) && (l->io.events & (EV_READ | EV_WRITE)) == want)
		return;
	ev_io_stop(loop, &l->io);
	ev_io_set(&l->io, l->io.fd, want);
	ev_io_start(loop, &l->io);
}

/* ---- link state machine ------------------------------------------------------- */

static void
sync_link_send_hello(struct sync_link *l, const char *why)
{
	struct sync *ch = l->ch;
	struct sync_hello h;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int ret;

	memset(&h, 0, sizeof(h));
	memcpy(h.node_name, ch->name, sizeof(h.node_name));
	if (getsockname(l->io.fd, (struct sockaddr *)&ss, &len) == 0)
		sync_endpoint_from_sa(&h.node, (struct sockaddr *)&ss);
	h.proto_version = SYNC_PROTO_VERSION;
	h.boot_epoch = ch->cfg.boot_epoch;
	memcpy(h.config_digest, ch->cfg.config_digest, SYNC_DIGEST_LEN);
	h.role = ch->cfg.role;
	h.sync_epoch = ch->tx_epoch;
	sync_rx_position(ch, &h.resume_epoch, &h.resume_after);
	h.nonce = l->nonce;
	ret = syncf_hello_seal(&l->ctrl, &h, ch->kr);
	if (ret < 0) {
		sync_link_event(l, SYNC_LEV_LOST, ret == -ENOKEY ?
		    "no send key for the hello" : "cannot build the hello");
		return;
	}
	log_debug("sync %s (%s): connected, hello sent", l->addr,
	    l->outgoing ? "out" : "in");
	sync_link_write(l);
}

/* The peer's hello is valid: prove we are live by echoing its nonce. */
static void
sync_link_confirm(struct sync_link *l, const char *why)
{
	if (sync_link_queue_ack(l, l->peer.nonce) < 0) {
		sync_link_event(l, SYNC_LEV_LOST, "cannot build the echo");
		return;
	}
	sync_link_write(l);
}

static void
sync_peer_record(struct sync *ch, const struct sync_link *l)
{
	struct sync_peer *p = &ch->peer;

	memset(p, 0, sizeof(*p));
	memcpy(p->name, l->peer.node_name, sizeof(p->name));
	memcpy(p->addr, l->addr, sizeof(p->addr));
	p->outgoing = l->outgoing;
	p->boot_epoch = l->peer.boot_epoch;
	p->role = l->peer.role;
	memcpy(p->config_digest, l->peer.config_digest, SYNC_DIGEST_LEN);
	p->digest_match = memcmp(l->peer.config_digest, ch->cfg.config_digest,
	    SYNC_DIGEST_LEN) == 0;
	ch->peer_known = true;
}

/*
 * The handshake is complete. Crossed connections: keep the one the node
 * with the lower name opened, so both ends keep the same one; a newer boot
 * of the peer always wins (the old connection is dead, we just have not
 * noticed).
 */
static void
sync_link_go_up(struct sync_link *l, const char *why)
{
	struct sync *ch = l->ch;
	struct sync_link *old = ch->up;
	bool first = old == NULL, switching = false, resumed;

	ch->stats.handshakes++;
	if (old != NULL) {
		bool newer = l->peer.boot_epoch > old->peer.boot_epoch;
		bool preferred = (strcmp(ch->name, l->peer.node_name) < 0) ==
		    l->outgoing;

		if (newer) {
			/* The peer restarted: down, then up again. */
			sync_link_event(old, SYNC_LEV_LOST, "the peer restarted");
			first = true;
		} else if (!preferred) {
			ch->stats.duplicates++;
			log_info("sync %s (%s): crossed connection, keeping the "
			    "one already up", l->addr, l->outgoing ? "out" : "in");
			sync_link_event(l, SYNC_LEV_LOST, "crossed connection");
			return;
		} else {
			ch->stats.duplicates++;
			ch->up = l;
			switching = true;
			sync_link_event(old, SYNC_LEV_LOST,
			    "crossed connection, keeping the other");
		}
	}
	ch->up = l;
	ch->up_since = sync_clock();
	ch->backoff = ch->backoff_min;
	ev_timer_stop(ch->loop, &ch->reconnect);
	sync_peer_record(ch, l);
	resumed = sync_tx_resume(ch, &l->peer, switching);
	ch->peer.resumed = resumed;
	/* Tell the peer where we are in its stream at once. */
	ch->ack_sent_epoch = UINT64_MAX;

	log_info("sync: peer %s up (%s, %s), boot epoch %" PRIu64 ", %s; our "
	    "stream %" PRIu64 " %s", ch->peer.name, l->addr,
	    l->outgoing ? "outgoing" : "incoming", l->peer.boot_epoch,
	    l->peer.role == SYNC_ROLE_ACTIVE ? "active" : "standby",
	    ch->tx_epoch, resumed ? "resumed" : "needs a new snapshot");
	if (!ch->peer.digest_match) {
		ch->stats.mismatches++;
		log_warnx("sync: CONFIG MISMATCH: peer %s runs a different proxy "
		    "configuration (digest %02x%02x%02x%02x... here %02x%02x%02x"
		    "%02x...): its sessions must not be restored here",
		    ch->peer.name, l->peer.config_digest[0],
		    l->peer.config_digest[1], l->peer.config_digest[2],
		    l->peer.config_digest[3], ch->cfg.config_digest[0],
		    ch->cfg.config_digest[1], ch->cfg.config_digest[2],
		    ch->cfg.config_digest[3]);
		if (ch->ops->on_mismatch != NULL)
			ch->ops->on_mismatch(ch->arg, l->peer.config_digest);
		if (ch->up != l)
			return;
	}
	if (first && ch->ops->on_peer_up != NULL) {
		ch->ops->on_peer_up(ch->arg, &ch->peer);
		if (ch->up != l)
			return;
	}
	if (!resumed)
		sync_tx_new_stream(ch, l->peer.resume_epoch == 0 ?
		    "the peer has no state of ours" :
		    "the peer cannot resume our stream");
	if (ch->up == l)
		sync_link_write(l);
}

static void
sync_link_teardown(struct sync_link *l, const char *why)
{
	struct sync *ch = l->ch;

	ev_io_stop(ch->loop, &l->io);
	ev_timer_stop(ch->loop, &l->timer);
	if (l->io.fd >= 0)
		close(l->io.fd);
	ev_io_set(&l->io, -1, 0);
	if (ch->up == l) {
		ch->up = NULL;
		ch->cur = NULL;
		ch->cur_off = 0;
		ch->up_since = 0;
		ch->stats.disconnects++;
		log_warnx("sync: lost peer %s (%s): %s", ch->peer.name, l->addr,
		    why);
		if (ch->ops->on_peer_down != NULL)
			ch->ops->on_peer_down(ch->arg, why);
	} else {
		log_info("sync %s (%s): closed: %s", l->addr,
		    l->outgoing ? "out" : "in", why);
	}
	sync_schedule(ch);
}

struct sync_link_edge {
	bool ok;
	enum sync_link_state next;
	void (*action)(struct sync_link *l, const char *why);
};

static const struct sync_link_edge
sync_link_fsm[SYNC_LINK_STATE_COUNT][SYNC_LINK_EV_COUNT] = {
	[SYNC_LINK_CONNECTING][SYNC_LEV_TCP_UP] =
	    { true, SYNC_LINK_HELLO, sync_link_send_hello },
	[SYNC_LINK_CONNECTING][SYNC_LEV_LOST] =
	    { true, SYNC_LINK_CLOSED, sync_link_teardown },
	[SYNC_LINK_HELLO][SYNC_LEV_HELLO] =
	    { true, SYNC_LINK_CONFIRM, sync_link_confirm },
	[SYNC_LINK_HELLO][SYNC_LEV_LOST] =
	    { true, SYNC_LINK_CLOSED, sync_link_teardown },
	[SYNC_LINK_CONFIRM][SYNC_LEV_ECHO] =
	    { true, SYNC_LINK_UP, sync_link_go_up },
	[SYNC_LINK_CONFIRM][SYNC_LEV_LOST] =
	    { true, SYNC_LINK_CLOSED, sync_link_teardown },
	[SYNC_LINK_UP][SYNC_LEV_LOST] =
	    { true, SYNC_LINK_CLOSED, sync_link_teardown },
};

/* Every link state change goes through here (STYLE 16). */
void
sync_link_event(struct sync_link *l, enum sync_link_ev ev, const char *why)
{
	const struct sync_link_edge *e = &sync_link_fsm[l->state][ev];
	enum sync_link_state old = l->state;

	if (!e->ok) {
		/* LOST on a CLOSED link is a harmless double close. */
		if (ev != SYNC_LEV_LOST)
			log_warnx("sync %s: no transition from %s on event %d, "
			    "ignoring", l->addr, sync_link_state_names[old],
			    (int)ev);
		return;
	}
	l->state = e->next;
	log_debug("sync %s (%s): %s→%s (%s)", l->addr,
	    l->outgoing ? "out" : "in", sync_link_state_names[old],
	    sync_link_state_names[e->next], why);
	e->action(l, why);
}

/* ---- reading ----------------------------------------------------------------- */

static void
sync_link_hello(struct sync_link *l, const struct sync_msg *m)
{
	struct sync *ch = l->ch;
	const struct sync_hello *h = &m->hello;

	if (m->type != WIRE_MSG_SYNC_HELLO) {
		sync_drop(l, SYNC_DROP_PROTOCOL, true, "a frame before the hello");
		sync_link_event(l, SYNC_LEV_LOST, "protocol error");
		return;
	}
	if (strcmp(h->node_name, ch->name) == 0) {
		sync_drop(l, SYNC_DROP_PROTOCOL, true, "the peer is named \"%s\" "
		    "like this node: connected to itself, or both nodes have "
		    "that name", h->node_name);
		sync_link_event(l, SYNC_LEV_LOST, "same node name");
		return;
	}
	if (ch->peer_known && h->boot_epoch < ch->peer.boot_epoch) {
		sync_drop(l, SYNC_DROP_OLD_EPOCH, true, "hello from %s with boot "
		    "epoch %" PRIu64 ", have seen %" PRIu64, h->node_name,
		    h->boot_epoch, ch->peer.boot_epoch);
		sync_link_event(l, SYNC_LEV_LOST, "old boot epoch");
		return;
	}
	l->peer = *h;
	sync_link_event(l, SYNC_LEV_HELLO, "hello accepted");
}

static void
sync_link_confirm_in(struct sync_link *l, const struct sync_msg *m)
{
	if (m->type != WIRE_MSG_SYNC_FRAME || m->hdr.seq != 0 ||
	    m->hdr.echo != l->nonce) {
		sync_drop(l, SYNC_DROP_PROTOCOL, true, "expected the echo of "
		    "our hello, got %s", m->type == WIRE_MSG_SYNC_HELLO ?
		    "a second hello" : m->hdr.seq != 0 ? "a frame" :
		    "a wrong echo (a replayed session?)");
		sync_link_event(l, SYNC_LEV_LOST, "handshake not confirmed");
		return;
	}
	sync_link_event(l, SYNC_LEV_ECHO, "echo received");
}

static void
sync_link_message(struct sync_link *l, const uint8_t *p, size_t len,
    size_t max)
{
	struct sync *ch = l->ch;
	struct sync_msg m;
	enum sync_drop why = SYNC_DROP_GARBAGE;
	int ret;

	ret = syncf_open(p, len, max, ch->kr, &m, &why);
	if (ret == -ENOMEM) {
		sync_link_event(l, SYNC_LEV_LOST, "out of memory decoding");
		return;
	}
	if (ret < 0) {
		if (why == SYNC_DROP_UNKNOWN_TYPE && m.authenticated) {
			/* A newer peer's message: skip it, stay in step. */
			sync_drop(l, why, false, "%zu bytes", len);
			return;
		}
		sync_drop(l, why, true, "%zu bytes%s", len, m.authenticated ?
		    " (authentic)" : "");
		if (m.authenticated && l->state == SYNC_LINK_UP)
			sync_rx_reset(ch, sync_drop_name(why));
		sync_link_event(l, SYNC_LEV_LOST, sync_drop_desc(why));
		return;
	}
	switch (l->state) {
	case SYNC_LINK_HELLO:
		sync_link_hello(l, &m);
		break;
	case SYNC_LINK_CONFIRM:
		sync_link_confirm_in(l, &m);
		break;
	case SYNC_LINK_UP:
		sync_link_frame(l, &m);
		break;
	case SYNC_LINK_CONNECTING:
	case SYNC_LINK_CLOSED:
	case SYNC_LINK_STATE_COUNT:
		break;
	}
	syncf_msg_clear(&m);
}

static size_t
sync_link_limit(const struct sync_link *l)
{
	return l->state == SYNC_LINK_UP ? SYNC_FRAME_MAX : SYNC_HELLO_MAX;
}

static uint32_t
sync_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* Handle every complete message in the input buffer. */
static void
sync_link_parse(struct sync_link *l)
{
	while (l->state != SYNC_LINK_CLOSED && l->in.len - l->in_off >= 4) {
		size_t max = sync_link_limit(l);
		uint32_t flen = sync_be32(l->in.data + l->in_off);

		if (flen > max) {
			sync_drop(l, SYNC_DROP_OVERSIZED, true,
			    "length %" PRIu32 " over %zu", flen, max);
			sync_link_event(l, SYNC_LEV_LOST, "oversized message");
			return;
		}
		if (l->in.len - l->in_off - 4 < flen)
			return;
		sync_link_message(l, l->in.data + l->in_off + 4, flen, max);
		l->in_off += 4 + (size_t)flen;
	}
}

static void
sync_link_read(struct sync_link *l)
{
	struct sync *ch = l->ch;
	size_t budget = SYNC_READ_BUDGET;

	while (budget > 0 && l->state != SYNC_LINK_CLOSED) {
		size_t avail = l->in.len - l->in_off, need = SYNC_READ_CHUNK;
		ssize_t n;

		/* Room for the whole message being received, when its size is known. */
		if (avail >= 4) {
			uint32_t flen = sync_be32(l->in.data + l->in_off);

			if (flen <= sync_link_limit(l) && 4 + (size_t)flen > avail &&
			    4 + (size_t)flen - avail > need)
				need = 4 + (size_t)flen - avail;
		}
		if (l->in_off > 0 && (l->in_off == l->in.len ||
		    l->in.cap - l->in.len < need)) {
			memmove(l->in.data, l->in.data + l->in_off, avail);
			l->in.len = avail;
			l->in_off = 0;
		}
		if (syncf_buf_reserve(&l->in, need) < 0) {
			sync_link_event(l, SYNC_LEV_LOST, "out of memory reading");
			return;
		}
		n = read(l->io.fd, l->in.data + l->in.len, l->in.cap - l->in.len);
		if (n == 0) {
			if (l->in.len > l->in_off)
				sync_drop(l, SYNC_DROP_TRUNCATED, true,
				    "connection closed %zu bytes into a message",
				    l->in.len - l->in_off);
			sync_link_event(l, SYNC_LEV_LOST,
			    "the peer closed the connection");
			return;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				sync_link_event(l, SYNC_LEV_LOST, strerror(errno));
			return;
		}
		l->in.len += (size_t)n;
		ch->stats.bytes_in += (uint64_t)n;
		l->last_rx = sync_clock();
		budget -= (size_t)n < budget ? (size_t)n : budget;
		sync_link_parse(l);
	}
}

/* ---- link callbacks --------------------------------------------------------- */

static void
sync_link_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sync_link *l = w->data;

	if (l->state == SYNC_LINK_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err != 0) {
			unsigned suppressed;

			l->ch->stats.connect_fails++;
			if (log_ratelimit_ok(&l->ch->rl_connect, sync_clock(),
			    SYNC_LOG_INTERVAL, &suppressed))
				log_info("sync %s: connect: %s (%u similar lines "
				    "suppressed)", l->addr, strerror(err),
				    suppressed);
			sync_link_event(l, SYNC_LEV_LOST, strerror(err));
			return;
		}
		sync_link_event(l, SYNC_LEV_TCP_UP, "connected");
		sync_link_watch(l);
		return;
	}
	if (revents & EV_READ)
		sync_link_read(l);
	if (l->state != SYNC_LINK_CLOSED && (revents & EV_WRITE))
		sync_link_write(l);
	sync_link_watch(l);
}

static void
sync_link_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sync_link *l = w->data;
	struct sync *ch = l->ch;
	double now = sync_clock();

	if (l->state != SYNC_LINK_UP) {
		if (now - l->started < ch->dead)
			return;
		ch->stats.timeouts++;
		if (l->state == SYNC_LINK_CONNECTING)
			ch->stats.connect_fails++;
		sync_link_event(l, SYNC_LEV_LOST, l->state ==
		    SYNC_LINK_CONNECTING ? "connect timed out" :
		    "handshake timed out");
		return;
	}
	if (now - l->last_rx >= ch->dead) {
		char why[64];

		ch->stats.timeouts++;
		snprintf(why, sizeof(why), "nothing heard for %.0f ms",
		    (now - l->last_rx) * 1000);
		sync_link_event(l, SYNC_LEV_LOST, why);
		return;
	}
	if (now - l->last_tx >= ch->keepalive && !sync_link_has_output(l)) {
		if (sync_link_queue_ack(l, 0) < 0) {
			sync_link_event(l, SYNC_LEV_LOST, "cannot build a keepalive");
			return;
		}
		sync_link_write(l);
	}
}

static struct sync_link *
sync_link_new(struct sync *ch, int fd, bool outgoing, const struct sockaddr *sa)
{
	struct sync_link *l = calloc(1, sizeof(*l));
	int one = 1;

	if (l == NULL)
		return NULL;
	l->ch = ch;
	l->outgoing = outgoing;
	l->state = SYNC_LINK_CONNECTING;
	sync_sa_fmt(sa, l->addr, sizeof(l->addr));
	l->nonce = sync_nonce(ch);
	l->started = l->last_rx = l->last_tx = sync_clock();
	/* Frames are batched per turn already; Nagle would only add delay. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev_io_init(&l->io, sync_link_io_cb, fd, outgoing ? EV_WRITE : EV_READ);
	l->io.data = l;
	ev_timer_init(&l->timer, sync_link_timer_cb, ch->keepalive / 2,
	    ch->keepalive / 2);
	l->timer.data = l;
	ev_timer_start(ch->loop, &l->timer);
	l->next = ch->links;
	ch->links = l;
	return l;
}

static void
sync_link_free(struct sync_link *l)
{
	syncf_buf_free(&l->in);
	syncf_buf_free(&l->ctrl);
	free(l);
}

/* Free links that reached CLOSED; called where none can be on the stack. */
static void
sync_reap(struct sync *ch)
{
	struct sync_link **pp = &ch->links;

	while (*pp != NULL) {
		struct sync_link *l = *pp;

		if (l->state == SYNC_LINK_CLOSED) {
			*pp = l->next;
			sync_link_free(l);
		} else {
			pp = &l->next;
		}
	}
}

/* ---- connecting and accepting ----------------------------------------------- */

static bool
sync_connecting(const struct sync *ch)
{
	for (const struct sync_link *l = ch->links; l != NULL; l = l->next)
		if (l->outgoing && l->state != SYNC_LINK_CLOSED)
			return true;
	return false;
}

/* Arm the reconnect timer when nothing is up and no attempt is under way. */
static void
sync_schedule(struct sync *ch)
{
	double delay;

	if (!ch->started || ch->up != NULL || ev_is_active(&ch->reconnect) ||
	    sync_connecting(ch))
		return;
	/* ±25 % jitter, so two nodes that failed together do not retry in step. */
	delay = ch->backoff * (0.75 + 0.5 * (double)(sync_rand(ch) >> 11) /
	    (double)(UINT64_C(1) << 53));
	ev_timer_set(&ch->reconnect, delay, 0.);
	ev_timer_start(ch->loop, &ch->reconnect);
	ch->backoff = ch->backoff * 2 < ch->backoff_max ?
	    ch->backoff * 2 : ch->backoff_max;
}

static void
sync_connect(struct sync *ch)
{
	struct sockaddr_storage src;
	struct sync_link *l;
	unsigned suppressed;
	int fd, err;

	if (ch->up != NULL || sync_connecting(ch))
		return;
	ch->stats.connects++;
	fd = socket(ch->cfg.peer.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	/* From our sync address, which the peer accepts connections from. */
	if (!sync_sa_wildcard(&ch->cfg.listen)) {
		src = ch->cfg.listen;
		if (src.ss_family == AF_INET)
			((struct sockaddr_in *)&src)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&src)->sin6_port = 0;
		if (bind(fd, (struct sockaddr *)&src, ch->cfg.listenlen) == -1)
			goto close_fd;
	}
	if (connect(fd, (const struct sockaddr *)&ch->cfg.peer,
	    ch->cfg.peerlen) == -1 && errno != EINPROGRESS)
		goto close_fd;
	l = sync_link_new(ch, fd, true, (const struct sockaddr *)&ch->cfg.peer);
	if (l == NULL) {
		errno = ENOMEM;
		goto close_fd;
	}
	ev_io_start(ch->loop, &l->io);
	return;

close_fd:
	err = errno;
	close(fd);
	errno = err;
fail:
	err = errno;
	ch->stats.connect_fails++;
	if (log_ratelimit_ok(&ch->rl_connect, sync_clock(), SYNC_LOG_INTERVAL,
	    &suppressed)) {
		char a[WIRE_ADDRSTRLEN + 8];

		log_info("sync %s: connect: %s (%u similar lines suppressed)",
		    sync_sa_fmt((const struct sockaddr *)&ch->cfg.peer, a,
		    sizeof(a)), strerror(err), suppressed);
	}
	sync_schedule(ch);
}

static void
sync_reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	sync_connect(w->data);
}

static void
sync_refuse(struct sync *ch, int fd, const struct sockaddr *sa,
    const char *why)
{
	unsigned suppressed;
	char a[WIRE_ADDRSTRLEN + 8];

	close(fd);
	ch->stats.accept_refused++;
	if (log_ratelimit_ok(&ch->rl_accept, sync_clock(), SYNC_LOG_INTERVAL,
	    &suppressed))
		log_warnx("sync: refusing a connection from %s: %s (%u similar "
		    "lines suppressed)", sync_sa_fmt(sa, a, sizeof(a)), why,
		    suppressed);
}

static void
sync_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sync *ch = w->data;

	for (int i = 0; i < SYNC_ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct sync_link *l;
		unsigned pending = 0, suppressed;
		int fd;

		fd = accept4(w->fd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			int e = errno;

			if (e == EAGAIN || e == EWOULDBLOCK)
				return;
			switch (e) {
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				/* Level-triggered accept would spin: pause. */
				ev_io_stop(loop, &ch->accept_io);
				ev_timer_set(&ch->accept_backoff,
				    SYNC_ACCEPT_BACKOFF, 0.);
				ev_timer_start(loop, &ch->accept_backoff);
				break;
			default:
				break;
			}
			if (log_ratelimit_ok(&ch->rl_accept, sync_clock(),
			    SYNC_LOG_INTERVAL, &suppressed)) {
				errno = e;
				log_warn("sync: accept (%u similar lines "
				    "suppressed)", suppressed);
			}
			return;
		}
		if (!sync_sa_same_host((struct sockaddr *)&ss, &ch->cfg.peer)) {
			sync_refuse(ch, fd, (struct sockaddr *)&ss,
			    "not the configured peer");
			continue;
		}
		for (l = ch->links; l != NULL; l = l->next)
			if (!l->outgoing && (l->state == SYNC_LINK_HELLO ||
			    l->state == SYNC_LINK_CONFIRM))
				pending++;
		if (pending >= SYNC_PENDING_IN_MAX) {
			sync_refuse(ch, fd, (struct sockaddr *)&ss,
			    "too many handshakes under way");
			continue;
		}
		l = sync_link_new(ch, fd, false, (struct sockaddr *)&ss);
		if (l == NULL) {
			sync_refuse(ch, fd, (struct sockaddr *)&ss,
			    "out of memory");
			continue;
		}
		ch->stats.accepts++;
		sync_link_event(l, SYNC_LEV_TCP_UP, "accepted");
		sync_link_watch(l);
	}
}

static void
sync_accept_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sync *ch = w->data;

	ev_io_start(loop, &ch->accept_io);
}

/* ---- the loop turn ------------------------------------------------------------ */

static void
sync_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct sync *ch = w->data;
	uint64_t ae, a;

	ev_idle_stop(loop, &ch->idle);
	sync_reap(ch);
	sync_batch_seal(ch);
	if (ch->up == NULL)
		return;
	sync_rx_position(ch, &ae, &a);
	if (ae != ch->ack_sent_epoch || a != ch->ack_sent) {
		if (sync_link_queue_ack(ch->up, 0) < 0) {
			sync_link_event(ch->up, SYNC_LEV_LOST,
			    "cannot build an ack");
			return;
		}
	}
	sync_link_write(ch->up);
}

static void
sync_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	ev_idle_stop(loop, w);
}

/* ---- public ------------------------------------------------------------------ */

static int
sync_listen(const struct sync_cfg *cfg)
{
	int fd, one = 1, err;

	fd = socket(cfg->listen.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (const struct sockaddr *)&cfg->listen, cfg->listenlen) == -1 ||
	    listen(fd, SYNC_BACKLOG) == -1) {
		err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

static int
sync_cfg_check(const struct sync_cfg *cfg)
{
	struct sync_hello h = { .proto_version = 1, .nonce = 1 };

	if (cfg->node_name == NULL || strlen(cfg->node_name) >= SYNC_NAME_MAX)
		return -EINVAL;
	/* The hello's checks cover the name: what the peer would refuse. */
	strcpy(h.node_name, cfg->node_name);
	if (!syncf_hello_valid(&h))
		return -EINVAL;
	if (!sync_sa_valid(&cfg->listen, cfg->listenlen, !cfg->have_listen_fd) ||
	    !sync_sa_valid(&cfg->peer, cfg->peerlen, 1) ||
	    cfg->peer.ss_family != cfg->listen.ss_family ||
	    sync_sa_wildcard(&cfg->peer))
		return -EINVAL;
	if (cfg->boot_epoch == 0 || cfg->boot_epoch > SYNC_BOOT_EPOCH_MAX ||
	    (unsigned)cfg->role >= SYNC_ROLE_COUNT)
		return -EINVAL;
	return 0;
}

int
sync_new(struct ev_loop *loop, const struct sync_cfg *cfg,
    const struct auth_keyring *kr, const struct sync_ops *ops, void *arg,
    struct sync **out)
{
	static const struct sync_ops no_ops;
	struct sync *ch;
	uint32_t id;
	int ret, fd = cfg->have_listen_fd ? cfg->listen_fd : -1;

	ret = sync_cfg_check(cfg);
	if (ret < 0)
		goto close_fd;
	if (auth_keyring_send_id(kr, &id) < 0) {
		ret = -ENOKEY;
		goto close_fd;
	}
	ch = calloc(1, sizeof(*ch));
	if (ch == NULL) {
		ret = -ENOMEM;
		goto close_fd;
	}
	ch->loop = loop;
	ch->kr = kr;
	ch->ops = ops != NULL ? ops : &no_ops;
	ch->arg = arg;
	ch->cfg = *cfg;
	snprintf(ch->name, sizeof(ch->name), "%s", cfg->node_name);
	ch->cfg.node_name = ch->name;
	ch->keepalive = (cfg->keepalive_ms ? cfg->keepalive_ms :
	    SYNC_KEEPALIVE_MS) / 1000.0;
	ch->dead = (cfg->dead_ms ? cfg->dead_ms : SYNC_DEAD_MS) / 1000.0;
	ch->backoff_min = (cfg->backoff_min_ms ? cfg->backoff_min_ms :
	    SYNC_BACKOFF_MIN_MS) / 1000.0;
	ch->backoff_max = (cfg->backoff_max_ms ? cfg->backoff_max_ms :
	    SYNC_BACKOFF_MAX_MS) / 1000.0;
	ch->max_queue = cfg->max_queue_bytes ? cfg->max_queue_bytes :
	    SYNC_QUEUE_BYTES_DEFAULT;
	/* An idle peer acks every keepalive to 1.5 keepalive (half-period timer). */
	if (ch->dead < 2 * ch->keepalive || ch->backoff_min > ch->backoff_max) {
		ret = -EINVAL;
		goto free_ch;
	}
	ch->backoff = ch->backoff_min;
	if (fd < 0) {
		fd = sync_listen(cfg);
		if (fd < 0) {
			ret = fd;
			goto free_ch;
		}
	} else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1) {
		ret = -errno;
		goto free_ch;
	}
	if (getrandom(&ch->rng, sizeof(ch->rng), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(ch->rng))
		ch->rng = (uint64_t)(sync_clock() * 1e9) ^ (uintptr_t)ch;
	ch->rng |= 1;

	ev_io_init(&ch->accept_io, sync_accept_cb, fd, EV_READ);
	ch->accept_io.data = ch;
	ev_timer_init(&ch->accept_backoff, sync_accept_backoff_cb, 0., 0.);
	ch->accept_backoff.data = ch;
	ev_timer_init(&ch->reconnect, sync_reconnect_cb, 0., 0.);
	ch->reconnect.data = ch;
	ev_prepare_init(&ch->prepare, sync_prepare_cb);
	ch->prepare.data = ch;
	ev_idle_init(&ch->idle, sync_idle_cb);
	ch->idle.data = ch;

	/* Stream numbers start above anything an earlier boot could have used. */
	ch->tx_epoch = cfg->boot_epoch << SYNC_EPOCH_GEN_BITS;
	ch->next_seq = 1;
	/* Nothing was ever sent: the first handshake starts a stream. */
	ch->resync_pending = true;
	*out = ch;
	return 0;

free_ch:
	free(ch);
close_fd:
	if (fd >= 0)
		close(fd);
	return ret;
}

void
sync_start(struct sync *ch)
{
	if (ch->started)
		return;
	ch->started = true;
	ev_io_start(ch->loop, &ch->accept_io);
	ev_prepare_start(ch->loop, &ch->prepare);
	sync_connect(ch);
}

void
sync_free(struct sync *ch)
{
	struct sync_link *l, *next;
	struct sync_txframe *f, *fn;

	if (ch == NULL)
		return;
	ev_io_stop(ch->loop, &ch->accept_io);
	ev_timer_stop(ch->loop, &ch->accept_backoff);
	ev_timer_stop(ch->loop, &ch->reconnect);
	ev_prepare_stop(ch->loop, &ch->prepare);
	ev_idle_stop(ch->loop, &ch->idle);
	close(ch->accept_io.fd);
	for (l = ch->links; l != NULL; l = next) {
		next = l->next;
		ev_io_stop(ch->loop, &l->io);
		ev_timer_stop(ch->loop, &l->timer);
		if (l->io.fd >= 0)
			close(l->io.fd);
		sync_link_free(l);
	}
	for (f = ch->head; f != NULL; f = fn) {
		fn = f->next;
		sync_txframe_free(f);
	}
	syncf_buf_free(&ch->batch);
	syncf_buf_free(&ch->scratch);
	free(ch);
}

int
sync_flush(struct sync *ch)
{
	int ret = sync_batch_seal(ch);

	if (ret < 0)
		return ret;
	if (ch->up != NULL)
		sync_link_write(ch->up);
	return 0;
}

void
sync_reconnect(struct sync *ch, const char *why)
{
	ch->backoff = ch->backoff_min;
	if (ch->up != NULL)
		sync_link_event(ch->up, SYNC_LEV_LOST, why);
}

int
sync_set_keyring(struct sync *ch, const struct auth_keyring *kr)
{
	uint32_t id;

	if (auth_keyring_send_id(kr, &id) < 0)
		return -ENOKEY;
	ch->kr = kr;
	return 0;
}

void
sync_set_digest(struct sync *ch, const uint8_t digest[SYNC_DIGEST_LEN])
{
	if (memcmp(ch->cfg.config_digest, digest, SYNC_DIGEST_LEN) == 0)
		return;
	memcpy(ch->cfg.config_digest, digest, SYNC_DIGEST_LEN);
	sync_reconnect(ch, "config digest changed");
}

void
sync_info(const struct sync *ch, struct sync_info *out)
{
	double now = sync_clock();

	memset(out, 0, sizeof(*out));
	out->state = !ch->started ? SYNC_STATE_IDLE :
	    ch->up != NULL ? SYNC_STATE_UP : SYNC_STATE_DOWN;
	for (const struct sync_link *l = ch->links; l != NULL; l = l->next)
		if (out->state == SYNC_STATE_DOWN && l->state != SYNC_LINK_CLOSED)
			out->state = SYNC_STATE_CONNECTING;
	out->peer_known = ch->peer_known;
	out->peer = ch->peer;
	out->up_for = ch->up != NULL ? now - ch->up_since : 0;
	out->tx_epoch = ch->tx_epoch;
	out->tx_seq = ch->next_seq - 1;
	out->tx_acked = ch->tx_acked;
	out->unacked_frames = ch->q_frames;
	if (ch->up == NULL)
		out->unsent_frames = ch->q_frames;
	for (const struct sync_txframe *f = ch->cur; f != NULL; f = f->next)
		out->unsent_frames++;
	out->queued_bytes = ch->q_bytes;
	if (ch->head != NULL)
		out->lag_ms = (uint64_t)((now - ch->head->queued) * 1000);
	out->resync_pending = ch->resync_pending;
	out->bulk_sending = ch->tx_bulk_active;
	out->rx_epoch = ch->rx_epoch;
	out->rx_seq = ch->rx_seq;
	out->bulk_receiving = ch->rx_bulk_active;
	out->bulk_resyncs = ch->stats.resyncs;
	out->digest_match = ch->peer_known && ch->peer.digest_match;
}
