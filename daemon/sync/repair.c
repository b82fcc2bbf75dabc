/*
 * repair — TCP_REPAIR snapshot, restore, silent close and clean reset.
 * See include/tandem/repair.h; the order of every call below is the one
 * measured in shared/research/TCP_REPAIR.md ("research"), pitfalls cited by
 * number.
 */
#include <tandem/repair.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

/* The kernel's TCP_MIN_MSS: TCP_MAXSEG refuses less. */
#define REPAIR_MIN_MSS 88
/*
 * A receive queue bigger than this may not fit the new socket's default
 * buffer (tcp_rmem[1], 128 KiB, charged by truesize): the kernel would refuse
 * the rest with ENOMEM.
 */
#define REPAIR_RCVQ_SMALL (32u * 1024)
/* Reading rcv_nxt and the unread count while data keeps arriving: retries. */
#define REPAIR_SEQ_TRIES 8

static const char *const repair_step_names[] = {
#define REPAIR_STEP_NAME(e, s) [e] = s,
	REPAIR_STEPS(REPAIR_STEP_NAME)
#undef REPAIR_STEP_NAME
};

const char *
repair_step_name(enum repair_step step)
{
	if ((unsigned)step >= REPAIR_STEP_COUNT)
		return "?";
	return repair_step_names[step];
}

void
repair_advance(struct repair_sock *rs, uint32_t written, uint32_t read)
{
	rs->write_seq += written;
	rs->rcv_nxt += read;
}

static int
repair_addr_check(const union repair_addr *a, sa_family_t family)
{
	if (a->sa.sa_family != family)
		return -EINVAL;
	if (family == AF_INET)
		return a->in4.sin_port != 0 ? 0 : -EINVAL;
	return a->in6.sin6_port != 0 ? 0 : -EINVAL;
}

int
repair_sock_check(const struct repair_sock *rs)
{
	sa_family_t family = rs->local.sa.sa_family;

	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT;
	if (repair_addr_check(&rs->local, family) < 0 ||
	    repair_addr_check(&rs->peer, family) < 0)
		return -EINVAL;
	if ((rs->opts & ~(REPAIR_OPT_TS | REPAIR_OPT_SACK | REPAIR_OPT_WSCALE)) != 0)
		return -EINVAL;
	if (rs->snd_wscale > REPAIR_WSCALE_MAX || rs->rcv_wscale > REPAIR_WSCALE_MAX)
		return -EINVAL;
	if (!(rs->opts & REPAIR_OPT_WSCALE) && (rs->snd_wscale != 0 || rs->rcv_wscale != 0))
		return -EINVAL;
	if (rs->mss_clamp < REPAIR_MIN_MSS)
		return -EINVAL;
	if (rs->max_window < rs->snd_wnd)
		return -EINVAL;
	if ((rs->rcvq == NULL) != (rs->rcvq_len == 0) ||
	    (rs->sndq == NULL) != (rs->sndq_len == 0) ||
	    rs->sndq_unsent > rs->sndq_len)
		return -EINVAL;
	return 0;
}

void
repair_sock_clear(struct repair_sock *rs)
{
	if (rs == NULL)
		return;
	free(rs->rcvq);
	free(rs->sndq);
	rs->rcvq = NULL;
	rs->sndq = NULL;
	rs->rcvq_len = 0;
	rs->sndq_len = 0;
	rs->sndq_unsent = 0;
}

size_t
repair_opts_encode(const struct repair_sock *rs, struct tcp_repair_opt out[REPAIR_OPTS_MAX])
{
	size_t n = 0;

	out[n++] = (struct tcp_repair_opt){ .opt_code = TCPOPT_MAXSEG, .opt_val = rs->mss_clamp };
	if (rs->opts & REPAIR_OPT_SACK)
		out[n++] = (struct tcp_repair_opt){ .opt_code = TCPOPT_SACK_PERMITTED, .opt_val = 0 };
	if (rs->opts & REPAIR_OPT_WSCALE)
		out[n++] = (struct tcp_repair_opt){ .opt_code = TCPOPT_WINDOW,
		    .opt_val = (uint32_t)rs->snd_wscale | (uint32_t)rs->rcv_wscale << 16 };
	if (rs->opts & REPAIR_OPT_TS)
		out[n++] = (struct tcp_repair_opt){ .opt_code = TCPOPT_TIMESTAMP, .opt_val = 0 };
	return n;
}

uint32_t
repair_ts_value(uint32_t ts_val, uint64_t ts_wall_ms, uint64_t now_ms, uint32_t margin_ms)
{
	uint64_t ahead = (now_ms > ts_wall_ms ? now_ms - ts_wall_ms : 0) + margin_ms;

	/*
	 * The low bit tells the kernel (>= 6.7) which clock the value counts in
	 * (pitfall 6): an odd value switches the socket to µs TSvals. Keep the
	 * snapshot's choice and count the elapsed time in that unit.
	 */
	if (ts_val & 1u)
		return (ts_val + (uint32_t)(ahead * 1000u)) | 1u;
	return (ts_val + (uint32_t)ahead) & ~1u;
}

static uint64_t
repair_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int
repair_setopt(int fd, int level, int opt, int val)
{
	if (setsockopt(fd, level, opt, &val, sizeof(val)) == -1)
		return -errno;
	return 0;
}

static int
repair_set_seq(int fd, int queue, uint32_t seq)
{
	int ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue);

	if (ret < 0)
		return ret;
	/* Pass a u32: about half of all sequence numbers are >= 2^31 (pitfall 1). */
	if (setsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, &seq, sizeof(seq)) == -1)
		return -errno;
	return 0;
}

static int
repair_get_u32(int fd, int opt, uint32_t *val)
{
	socklen_t len = sizeof(*val);

	if (getsockopt(fd, SOL_TCP, opt, val, &len) == -1)
		return -errno;
	return len == sizeof(*val) ? 0 : -EIO;
}

static int
repair_get_seq(int fd, int queue, uint32_t *seq)
{
	int ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue);

	return ret < 0 ? ret : repair_get_u32(fd, TCP_QUEUE_SEQ, seq);
}

/*
 * rcv_nxt and the unread count, consistent with each other: the socket still
 * takes data in repair mode, so read rcv_nxt on both sides of SIOCINQ and
 * retry if it moved.
 */
static int
repair_get_rcv(int fd, uint32_t *rcv_nxt, uint32_t *inq)
{
	uint32_t before, after;
	int n, ret, i;

	ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE);
	if (ret < 0)
		return ret;
	for (i = 0; i < REPAIR_SEQ_TRIES; i++) {
		if ((ret = repair_get_u32(fd, TCP_QUEUE_SEQ, &before)) < 0)
			return ret;
		if (ioctl(fd, SIOCINQ, &n) == -1)
			return -errno;
		if ((ret = repair_get_u32(fd, TCP_QUEUE_SEQ, &after)) < 0)
			return ret;
		if (before == after && n >= 0) {
			*rcv_nxt = after;
			*inq = (uint32_t)n;
			return 0;
		}
	}
	return -EAGAIN;
}

/* Copy len bytes of the selected repair queue (MSG_PEEK: pitfall 12). */
static int
repair_peek(int fd, uint32_t len, uint8_t **out)
{
	uint8_t *buf;
	ssize_t n;

	*out = NULL;
	if (len == 0)
		return 0;
	if ((buf = malloc(len)) == NULL)
		return -ENOMEM;
	n = recv(fd, buf, len, MSG_PEEK | MSG_DONTWAIT);
	if (n == -1) {
		int err = -errno;

		free(buf);
		return err;
	}
	if ((size_t)n != len) {
		/* A frozen socket's queue changed size between the count and the copy. */
		free(buf);
		return -EIO;
	}
	*out = buf;
	return 0;
}

static void
repair_opts_from_info(struct repair_sock *rs, const struct tcp_info *ti)
{
	rs->opts = ti->tcpi_options & (REPAIR_OPT_TS | REPAIR_OPT_SACK | REPAIR_OPT_WSCALE);
	if (rs->opts & REPAIR_OPT_WSCALE) {
		rs->snd_wscale = ti->tcpi_snd_wscale;
		rs->rcv_wscale = ti->tcpi_rcv_wscale;
	}
}

static int
repair_names(int fd, struct repair_sock *rs)
{
	socklen_t len = sizeof(rs->local);

	if (getsockname(fd, &rs->local.sa, &len) == -1)
		return -errno;
	len = sizeof(rs->peer);
	if (getpeername(fd, &rs->peer.sa, &len) == -1)
		return -errno;
	return 0;
}

/* Everything but the queue contents, in repair mode. */
static int
repair_read_state(int fd, struct repair_sock *rs, bool with_queues, enum repair_step *step)
{
	struct tcp_repair_window win;
	socklen_t len;
	uint32_t seq = 0, inq = 0, maxseg = 0;
	int outq, unsent, ret;

	*step = REPAIR_STEP_SEND_SEQ;
	if ((ret = repair_get_seq(fd, TCP_SEND_QUEUE, &rs->write_seq)) < 0)
		return ret;
	if (with_queues) {
		*step = REPAIR_STEP_SEND_PEEK;
		if (ioctl(fd, SIOCOUTQ, &outq) == -1 || ioctl(fd, SIOCOUTQNSD, &unsent) == -1)
			return -errno;
		if (outq < 0 || unsent < 0 || unsent > outq)
			return -EIO;
		if ((ret = repair_peek(fd, (uint32_t)outq, &rs->sndq)) < 0)
			return ret;
		rs->sndq_len = (uint32_t)outq;
		rs->sndq_unsent = (uint32_t)unsent;
	}

	*step = REPAIR_STEP_RECV_SEQ;
	if ((ret = repair_get_rcv(fd, &seq, &inq)) < 0)
		return ret;
	if (with_queues) {
		*step = REPAIR_STEP_RECV_PEEK;
		if ((ret = repair_peek(fd, inq, &rs->rcvq)) < 0)
			return ret;
		rs->rcvq_len = inq;
		rs->rcv_nxt = seq;
	} else {
		rs->rcv_nxt = seq - inq;
	}

	/* In repair mode TCP_MAXSEG reads mss_clamp, not the current MSS (step 5). */
	*step = REPAIR_STEP_MAXSEG;
	if ((ret = repair_get_u32(fd, TCP_MAXSEG, &maxseg)) < 0)
		return ret;
	if (maxseg < REPAIR_MIN_MSS || maxseg > UINT16_MAX)
		return -EIO;
	rs->mss_clamp = (uint16_t)maxseg;

	*step = REPAIR_STEP_WINDOW;
	len = sizeof(win);   /* exactly 20, or EINVAL (pitfall 8) */
	if (getsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &win, &len) == -1)
		return -errno;
	if (len != sizeof(win))
		return -EIO;
	rs->snd_wnd = win.snd_wnd;
	rs->max_window = win.max_window;
	rs->rcv_wnd = win.rcv_wnd;

	*step = REPAIR_STEP_TIMESTAMP;
	if ((ret = repair_get_u32(fd, TCP_TIMESTAMP, &rs->ts_val)) < 0)
		return ret;
	rs->ts_wall_ms = repair_wall_ms();
	return 0;
}

int
repair_snapshot(int fd, struct repair_sock *out, bool with_queues, enum repair_step *failed)
{
	struct repair_sock rs;
	struct tcp_info ti;
	enum repair_step step, dummy;
	socklen_t len;
	int reuse = 0, ret;

	memset(&rs, 0, sizeof(rs));
	step = REPAIR_STEP_INFO;
	len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, SOL_TCP, TCP_INFO, &ti, &len) == -1) {
		ret = -errno;
		goto fail;
	}
	if (ti.tcpi_state != TCP_ESTABLISHED) {
		step = REPAIR_STEP_STATE;
		ret = -ENOTCONN;
		goto fail;
	}
	repair_opts_from_info(&rs, &ti);
	if ((ret = repair_names(fd, &rs)) < 0)
		goto fail;

	step = REPAIR_STEP_REUSEADDR;
	len = sizeof(reuse);
	if (getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, &len) == -1) {
		ret = -errno;
		goto fail;
	}

	step = REPAIR_STEP_REPAIR_ON;
	if ((ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR, TCP_REPAIR_ON)) < 0)
		goto fail;
	if ((ret = repair_read_state(fd, &rs, with_queues, &step)) < 0)
		goto leave_repair;
	if (with_queues)
		goto done;   /* stays in repair mode for repair_close_silently() */

	/* -1: leave without the window probe that 0 sends (pitfall 13). */
	step = REPAIR_STEP_REPAIR_OFF;
	if ((ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)) < 0)
		goto leave_repair;
	/* Leaving repair mode cleared SO_REUSEADDR (pitfall 11). */
	step = REPAIR_STEP_REUSEADDR;
	if (reuse && (ret = repair_setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1)) < 0)
		goto fail_clear;
done:
	*out = rs;
	if (failed != NULL)
		*failed = REPAIR_STEP_NONE;
	return 0;

leave_repair:
	(void)repair_setopt(fd, SOL_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP);
	if (reuse)
		(void)repair_setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
fail_clear:
	repair_sock_clear(&rs);
fail:
	if (failed == NULL)
		failed = &dummy;
	*failed = step;
	return ret;
}

int
repair_close_silently(int fd)
{
	int ret;

	/* Idempotent when already in repair mode. */
	if ((ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR, TCP_REPAIR_ON)) < 0)
		return ret;
	/* In repair mode the kernel drops the connection without FIN or RST. */
	(void)close(fd);
	return 0;
}

/* Push the unread bytes into the new socket's receive queue (restore step 10). */
static int
repair_fill_rcvq(int fd, const uint8_t *data, uint32_t len)
{
	uint32_t off = 0;
	ssize_t n;
	int ret, cur;
	socklen_t slen = sizeof(cur);

	if ((ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)) < 0)
		return ret;
	if (len > REPAIR_RCVQ_SMALL) {
		/*
		 * Make room, or the kernel refuses the tail with ENOMEM. This locks
		 * the buffer size (no autotuning) for this rare case; FORCE because
		 * rmem_max may be lower, and we hold CAP_NET_ADMIN anyway.
		 */
		if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cur, &slen) == -1)
			return -errno;
		if ((uint64_t)cur < 2u * (uint64_t)len) {
			int want = len > INT32_MAX / 2 ? INT32_MAX : (int)len * 2;

			if ((ret = repair_setopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, want)) < 0)
				return ret;
		}
	}
	/* The kernel takes at most one skb's worth per call (~68 KiB). */
	while (off < len) {
		n = send(fd, data + off, len - off, MSG_NOSIGNAL);
		if (n == -1)
			return -errno;
		if (n == 0)
			return -EIO;
		off += (uint32_t)n;
	}
	return 0;
}

/* Write the dumped send queue as normal data (restore step 14). */
static int
repair_send_sndq(int fd, const uint8_t *data, uint32_t len, uint32_t *sent)
{
	ssize_t n;

	*sent = 0;
	while (*sent < len) {
		n = send(fd, data + *sent, len - *sent, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;   /* the caller writes the rest */
			return -errno;
		}
		if (n == 0)
			return 0;
		*sent += (uint32_t)n;
	}
	return 0;
}

/*
 * Queue len bytes as already sent (repair mode, TCP_SEND_QUEUE). *done: how
 * many the kernel took; the caller sends the rest as new data.
 */
static int
repair_fill_sent(int fd, const uint8_t *data, uint32_t len, uint32_t *done)
{
	ssize_t n;
	int ret, cur;
	socklen_t slen = sizeof(cur);

	*done = 0;
	if ((ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)) < 0)
		return ret;
	/* Room for all of it, as for the receive queue (the old socket had it). */
	if (len > REPAIR_RCVQ_SMALL &&
	    getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cur, &slen) == 0 &&
	    (uint64_t)cur < 2u * (uint64_t)len) {
		int want = len > INT32_MAX / 2 ? INT32_MAX : (int)len * 2;

		(void)repair_setopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, want);
	}
	while (*done < len) {
		n = send(fd, data + *done, len - *done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOMEM)
				return 0;
			return -errno;
		}
		if (n == 0)
			return 0;
		*done += (uint32_t)n;
	}
	return 0;
}

static socklen_t
repair_addr_len(const union repair_addr *a)
{
	return a->sa.sa_family == AF_INET ? sizeof(a->in4) : sizeof(a->in6);
}

/*
 * The restore sequence (research, "Restore"). leave is TCP_REPAIR_OFF for a
 * real restore (one window probe) or TCP_REPAIR_OFF_NO_WP for the reset's
 * throw-away socket. The send queue is written only when leaving with a probe.
 */
/*
 * Leave repair mode on out->fd (leave: TCP_REPAIR_OFF sends a window probe,
 * TCP_REPAIR_OFF_NO_WP does not), then the socket options and, with a probe,
 * the send queue as normal data. On failure the socket is closed silently
 * and out->fd is -1.
 */
static int
repair_leave(const struct repair_sock *rs, const struct repair_restore_opts *opts,
    int leave, struct repair_restored *out)
{
	int fd = out->fd, ret;
	uint32_t more = 0;

	out->failed = REPAIR_STEP_REPAIR_OFF;
	if ((ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR, leave)) < 0)
		goto close_fd;
	/* Out of repair mode from here: a failure must close silently. */
	out->failed = REPAIR_STEP_SOCKOPTS;
	if (opts->nodelay && (ret = repair_setopt(fd, SOL_TCP, TCP_NODELAY, 1)) < 0)
		goto close_silently;
	out->failed = REPAIR_STEP_SEND_QUEUE;
	/* What repair_build() did not queue as sent goes out as new data. */
	if (leave == TCP_REPAIR_OFF && rs->sndq_len > out->sndq_sent &&
	    (ret = repair_send_sndq(fd, rs->sndq + out->sndq_sent,
	    rs->sndq_len - out->sndq_sent, &more)) < 0)
		goto close_silently;
	out->sndq_sent += more;
	out->failed = REPAIR_STEP_NONE;
	return 0;

close_silently:
	if (repair_close_silently(fd) == 0)
		goto gone;
close_fd:
	(void)close(fd);   /* still in repair mode: nothing on the wire */
gone:
	out->fd = -1;
	out->sndq_sent = 0;
	return ret;
}

static int
repair_build(const struct repair_sock *rs, const struct repair_restore_opts *opts,
    int leave, struct repair_restored *out)
{
	struct tcp_repair_opt ropt[REPAIR_OPTS_MAX];
	struct tcp_repair_window win;
	enum repair_step step;
	uint64_t now;
	size_t nopt;
	int fd, ret;

	out->fd = -1;
	out->sndq_sent = 0;
	step = REPAIR_STEP_CHECK;
	if ((ret = repair_sock_check(rs)) < 0)
		goto fail;
	now = opts->now_ms != 0 ? opts->now_ms : repair_wall_ms();

	step = REPAIR_STEP_SOCKET;
	fd = socket(rs->local.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    IPPROTO_TCP);
	if (fd == -1) {
		ret = -errno;
		goto fail;
	}
	step = REPAIR_STEP_REPAIR_ON;
	if ((ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR, TCP_REPAIR_ON)) < 0)
		goto close_fd;
	/* Repair mode forces reuse: this works beside a listener on the port. */
	step = REPAIR_STEP_BIND;
	if (bind(fd, &rs->local.sa, repair_addr_len(&rs->local)) == -1) {
		ret = -errno;
		goto close_fd;
	}
	/* Queue sequence numbers: only before connect() (pitfall 7). */
	step = REPAIR_STEP_RECV_SEQ;
	if ((ret = repair_set_seq(fd, TCP_RECV_QUEUE, rs->rcv_nxt - rs->rcvq_len)) < 0)
		goto close_fd;
	step = REPAIR_STEP_SEND_SEQ;
	if ((ret = repair_set_seq(fd, TCP_SEND_QUEUE, rs->write_seq - rs->sndq_len)) < 0)
		goto close_fd;
	/*
	 * Not in CRIU's sequence: TCPOPT_MSS below sets mss_clamp but never
	 * recomputes the cached MSS, which then stays at 524 for good (pitfall 4).
	 */
	step = REPAIR_STEP_MAXSEG;
	if ((ret = repair_setopt(fd, SOL_TCP, TCP_MAXSEG, rs->mss_clamp)) < 0)
		goto close_fd;
	/* ESTABLISHED at once, no SYN on the wire. */
	step = REPAIR_STEP_CONNECT;
	if (connect(fd, &rs->peer.sa, repair_addr_len(&rs->peer)) == -1) {
		ret = -errno;
		goto close_fd;
	}
	/* Only after connect() and before anything is sent (pitfall 7). */
	step = REPAIR_STEP_OPTIONS;
	nopt = repair_opts_encode(rs, ropt);
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, ropt,
	    (socklen_t)(nopt * sizeof(ropt[0]))) == -1) {
		ret = -errno;
		goto close_fd;
	}
	/* Without it the peer's PAWS check drops everything, silently (pitfall 5). */
	step = REPAIR_STEP_TIMESTAMP;
	if (rs->opts & REPAIR_OPT_TS) {
		uint32_t ts = repair_ts_value(rs->ts_val, rs->ts_wall_ms, now, opts->ts_margin_ms);

		if (setsockopt(fd, SOL_TCP, TCP_TIMESTAMP, &ts, sizeof(ts)) == -1) {
			ret = -errno;
			goto close_fd;
		}
	}
	step = REPAIR_STEP_RECV_QUEUE;
	if (rs->rcvq_len > 0 && (ret = repair_fill_rcvq(fd, rs->rcvq, rs->rcvq_len)) < 0)
		goto close_fd;
	/*
	 * The bytes the old socket had sent go back as sent (repair mode, send
	 * queue): snd_nxt then covers them, so the peer's ACK for them is taken
	 * at once. Written as new data instead, snd_nxt would start at snd_una,
	 * and a peer that already holds more than one congestion window of them
	 * (their ACKs died with the VIP on the old node) ACKs beyond snd_nxt,
	 * which the kernel ignores: the connection retransmitted its first
	 * segment for ever (captured in a switchover of a busy stream). Bytes
	 * the peer lacks are retransmitted at the RTO.
	 */
	step = REPAIR_STEP_SEND_QUEUE;
	if (leave != TCP_REPAIR_OFF_NO_WP && rs->sndq_len > rs->sndq_unsent &&
	    (ret = repair_fill_sent(fd, rs->sndq, rs->sndq_len - rs->sndq_unsent,
	    &out->sndq_sent)) < 0)
		goto close_fd;
	step = REPAIR_STEP_NO_QUEUE;
	if ((ret = repair_setopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE)) < 0)
		goto close_fd;
	/* snd_wl1 and rcv_wup from rcv_nxt: a stale rcv_wup is refused (pitfall 8). */
	step = REPAIR_STEP_WINDOW;
	win = (struct tcp_repair_window){
		.snd_wl1 = rs->rcv_nxt, .snd_wnd = rs->snd_wnd, .max_window = rs->max_window,
		.rcv_wnd = rs->rcv_wnd, .rcv_wup = rs->rcv_nxt };
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &win, sizeof(win)) == -1) {
		ret = -errno;
		goto close_fd;
	}
	if (leave == TCP_REPAIR_ON) {
		/* repair_restore_finish() leaves, once every socket of a takeover exists. */
		out->fd = fd;
		out->failed = REPAIR_STEP_NONE;
		return 0;
	}
	out->fd = fd;
	return repair_leave(rs, opts, leave, out);

close_fd:
	(void)close(fd);   /* still in repair mode: nothing on the wire */
fail:
	out->fd = -1;
	out->sndq_sent = 0;
	out->failed = step;
	return ret;
}

static const struct repair_restore_opts repair_opts_default = REPAIR_RESTORE_OPTS_DEFAULT;

int
repair_restore(const struct repair_sock *rs, const struct repair_restore_opts *opts,
    struct repair_restored *out)
{
	const struct repair_restore_opts *o = opts != NULL ? opts : &repair_opts_default;

	return repair_build(rs, o, o->stay_in_repair ? TCP_REPAIR_ON : TCP_REPAIR_OFF, out);
}

int
repair_restore_finish(const struct repair_sock *rs,
    const struct repair_restore_opts *opts, struct repair_restored *out)
{
	return repair_leave(rs, opts != NULL ? opts : &repair_opts_default,
	    TCP_REPAIR_OFF, out);
}

int
repair_reset(int stale_fd, const struct repair_sock *rs, uint32_t peer_seq,
    uint32_t peer_ack, const struct repair_restore_opts *opts, enum repair_step *failed)
{
	static const struct linger abort_on_close = { .l_onoff = 1, .l_linger = 0 };
	struct repair_restore_opts o = opts != NULL ? *opts : repair_opts_default;
	struct repair_restored r;
	struct repair_sock tmp;
	enum repair_step dummy;
	int ret;

	if (failed == NULL)
		failed = &dummy;
	/* Frees the 4-tuple; a live duplicate would make connect() fail (pitfall 10). */
	if (stale_fd >= 0 && (ret = repair_close_silently(stale_fd)) < 0) {
		*failed = REPAIR_STEP_CLOSE;
		return ret;
	}
	/* Where the peer is: our snd_nxt = its rcv_nxt (its ACK), and the reverse. */
	tmp = *rs;
	tmp.write_seq = peer_ack;
	tmp.rcv_nxt = peer_seq;
	tmp.rcvq = NULL;
	tmp.rcvq_len = 0;
	tmp.sndq = NULL;
	tmp.sndq_len = 0;
	tmp.sndq_unsent = 0;
	o.nodelay = false;
	if ((ret = repair_build(&tmp, &o, TCP_REPAIR_OFF_NO_WP, &r)) < 0) {
		*failed = r.failed;
		return ret;
	}
	/* Abortive close: tcp_disconnect() sends RST seq = snd_nxt = peer_ack. */
	if (setsockopt(r.fd, SOL_SOCKET, SO_LINGER, &abort_on_close,
	    sizeof(abort_on_close)) == -1) {
		ret = -errno;
		*failed = REPAIR_STEP_LINGER;
		if (repair_close_silently(r.fd) < 0)
			(void)close(r.fd);
		return ret;
	}
	(void)close(r.fd);
	*failed = REPAIR_STEP_NONE;
	return 0;
}
