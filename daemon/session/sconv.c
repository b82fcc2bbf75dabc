/*
 * sconv — the wire's struct sync_sock <-> TCP_REPAIR's struct repair_sock,
 * shared by the sending side (a live or frozen snapshot becomes an event)
 * and the receiving side (a shadow entry becomes a socket again). See
 * include/tandem/session.h. Pure conversion: no syscalls, no allocation.
 */
#include <tandem/session.h>

#include <errno.h>
#include <string.h>
#include <arpa/inet.h>

/* The two families sync_endpoint and repair_addr can both express. */
static int
sess_endpoint_from_addr(const union repair_addr *a, struct sync_endpoint *e)
{
	memset(e, 0, sizeof(*e));
	switch (a->sa.sa_family) {
	case AF_INET:
		e->family = AF_INET;
		e->port = ntohs(a->in4.sin_port);
		memcpy(e->addr, &a->in4.sin_addr, sizeof(a->in4.sin_addr));
		return 0;
	case AF_INET6:
		e->family = AF_INET6;
		e->port = ntohs(a->in6.sin6_port);
		memcpy(e->addr, &a->in6.sin6_addr, sizeof(a->in6.sin6_addr));
		return 0;
	default:
		return -EAFNOSUPPORT;
	}
}

/*
 * Scope id and flow label stay 0: the wire carries neither, and a VIP is a
 * global address (a link-local one would need the receiver's own ifindex).
 */
static int
sess_endpoint_to_addr(const struct sync_endpoint *e, union repair_addr *a)
{
	memset(a, 0, sizeof(*a));
	switch (e->family) {
	case AF_INET:
		a->in4.sin_family = AF_INET;
		a->in4.sin_port = htons(e->port);
		memcpy(&a->in4.sin_addr, e->addr, sizeof(a->in4.sin_addr));
		return 0;
	case AF_INET6:
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_port = htons(e->port);
		memcpy(&a->in6.sin6_addr, e->addr, sizeof(a->in6.sin6_addr));
		return 0;
	default:
		return -EAFNOSUPPORT;
	}
}

int
sess_sock_from_repair(const struct repair_sock *rs, struct sync_sock *out)
{
	struct sync_sock ss;
	int ret;

	memset(&ss, 0, sizeof(ss));
	if ((ret = sess_endpoint_from_addr(&rs->local, &ss.local)) < 0 ||
	    (ret = sess_endpoint_from_addr(&rs->peer, &ss.peer)) < 0)
		return ret;
	/* The snapshot is the origin: later byte counts are relative to it. */
	ss.snd_isn = rs->write_seq;
	ss.rcv_isn = rs->rcv_nxt;
	ss.bytes_written = 0;
	ss.bytes_read = 0;
	ss.opt_sack = (rs->opts & REPAIR_OPT_SACK) != 0;
	ss.opt_timestamps = (rs->opts & REPAIR_OPT_TS) != 0;
	ss.opt_wscale = (rs->opts & REPAIR_OPT_WSCALE) != 0;
	ss.snd_wscale = rs->snd_wscale;
	ss.rcv_wscale = rs->rcv_wscale;
	ss.mss_clamp = rs->mss_clamp;
	ss.ts_val = rs->ts_val;
	ss.ts_wall_ms = rs->ts_wall_ms;
	ss.snd_wnd = rs->snd_wnd;
	ss.max_window = rs->max_window;
	ss.rcv_wnd = rs->rcv_wnd;
	ss.recv_queue = rs->rcvq;
	ss.recv_queue_len = rs->rcvq_len;
	ss.send_queue = rs->sndq;
	ss.send_queue_len = rs->sndq_len;
	ss.send_unsent = rs->sndq_unsent;
	*out = ss;
	return 0;
}

int
sess_sock_to_repair(const struct sync_sock *ss, struct repair_sock *out)
{
	struct repair_sock rs;
	int ret;

	memset(&rs, 0, sizeof(rs));
	if ((ret = sess_endpoint_to_addr(&ss->local, &rs.local)) < 0 ||
	    (ret = sess_endpoint_to_addr(&ss->peer, &rs.peer)) < 0)
		return ret;
	/* Lengths are u32 in repair_sock; SYNC_QUEUE_MAX keeps valid ones far below. */
	if (ss->recv_queue_len > UINT32_MAX || ss->send_queue_len > UINT32_MAX)
		return -EINVAL;
	rs.write_seq = sync_sock_write_seq(ss);
	rs.rcv_nxt = sync_sock_rcv_nxt(ss);
	rs.opts = (uint8_t)((ss->opt_sack ? REPAIR_OPT_SACK : 0) |
	    (ss->opt_timestamps ? REPAIR_OPT_TS : 0) |
	    (ss->opt_wscale ? REPAIR_OPT_WSCALE : 0));
	rs.snd_wscale = ss->snd_wscale;
	rs.rcv_wscale = ss->rcv_wscale;
	rs.mss_clamp = ss->mss_clamp;
	rs.ts_val = ss->ts_val;
	rs.ts_wall_ms = ss->ts_wall_ms;
	rs.snd_wnd = ss->snd_wnd;
	rs.max_window = ss->max_window;
	rs.rcv_wnd = ss->rcv_wnd;
	/*
	 * Borrowed, const dropped: repair_sock has one pointer type for the
	 * queues a snapshot owns and those a receiver lends, and repair_restore()
	 * only reads them. A zero length gets no pointer, as repair_sock_check()
	 * wants (a sender may leave one behind with its queue empty).
	 */
	if (ss->recv_queue_len > 0) {
		rs.rcvq = (uint8_t *)(uintptr_t)ss->recv_queue;
		rs.rcvq_len = (uint32_t)ss->recv_queue_len;
	}
	if (ss->send_queue_len > 0) {
		rs.sndq = (uint8_t *)(uintptr_t)ss->send_queue;
		rs.sndq_len = (uint32_t)ss->send_queue_len;
	}
	rs.sndq_unsent = ss->send_unsent;
	if ((ret = repair_sock_check(&rs)) < 0)
		return ret;
	*out = rs;
	return 0;
}
