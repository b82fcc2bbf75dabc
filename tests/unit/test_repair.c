/*
 * Unit tests for the repair module (daemon/sync/repair.c, stale.c), without
 * privileges: sequence arithmetic across the 2^32 wrap, the TCP_TIMESTAMP
 * value and its low bit, option encoding, state checks, and — with the
 * socket syscalls replaced by a fake kernel (-Wl,--wrap=...) — the exact call
 * order of snapshot / restore / reset, every failure path of each (the step
 * reported, nothing left open, nothing closed out of repair mode), and the
 * stale-state watch's verdicts on crafted IPv4 / IPv6 segments.
 * The real kernel is exercised by tests/integration/test_repair.py.
 */
#include <tandem/repair.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cmocka.h>

/* ---- the fake kernel ---------------------------------------------------- */

#define FAKE_LOG_MAX 256
#define FAKE_FD 42
#define FAKE_PKT_MAX 300

struct fake {
	char log[FAKE_LOG_MAX][128];
	size_t nlog;
	size_t calls;
	size_t fail_at;        /* 1-based call to fail, 0 = none */
	int fail_errno;
	int open;              /* fake sockets open */
	int repair;
	int queue;
	uint32_t send_seq, recv_seq;
	int reuse;
	struct tcp_info info;
	uint32_t maxseg;
	struct tcp_repair_window win;
	uint32_t ts;
	int inq, outq, nsd;
	uint32_t arrive_on_inq; /* bytes that "arrive" during the next SIOCINQ */
	uint8_t rq[256], sq[256];
	size_t send_max;       /* one send() takes at most this (0: all) */
	size_t eagain_after;   /* normal sends: EAGAIN once this much was taken (0: never) */
	size_t sent_normal;
	int rcvbuf;
	union repair_addr local, peer;
	const uint8_t *pkt[FAKE_PKT_MAX];
	size_t pkt_len[FAKE_PKT_MAX];
	size_t npkt, next_pkt;
};

/*
 * A global because --wrap replaces the libc symbols themselves: the wrapped
 * calls have no other way to reach the fake's state.
 */
static struct fake fk;

int __wrap_socket(int domain, int type, int proto);
int __wrap_setsockopt(int fd, int level, int opt, const void *val, socklen_t len);
int __wrap_getsockopt(int fd, int level, int opt, void *val, socklen_t *len);
int __wrap_bind(int fd, const struct sockaddr *sa, socklen_t len);
int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t len);
int __wrap_close(int fd);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags);
int __wrap_ioctl(int fd, unsigned long req, ...);
int __wrap_getsockname(int fd, struct sockaddr *sa, socklen_t *len);
int __wrap_getpeername(int fd, struct sockaddr *sa, socklen_t *len);

static void fake_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
fake_log(const char *fmt, ...)
{
	va_list ap;

	assert_true(fk.nlog < FAKE_LOG_MAX);
	va_start(ap, fmt);
	vsnprintf(fk.log[fk.nlog++], sizeof(fk.log[0]), fmt, ap);
	va_end(ap);
}

/* Count the call; true if this one must fail (errno set). */
static bool
fake_fail(void)
{
	if (++fk.calls == fk.fail_at) {
		errno = fk.fail_errno;
		return true;
	}
	return false;
}

static const char *
fake_optname(int level, int opt)
{
	if (level == SOL_TCP) {
		switch (opt) {
		case TCP_REPAIR: return "TCP_REPAIR";
		case TCP_REPAIR_QUEUE: return "TCP_REPAIR_QUEUE";
		case TCP_QUEUE_SEQ: return "TCP_QUEUE_SEQ";
		case TCP_REPAIR_OPTIONS: return "TCP_REPAIR_OPTIONS";
		case TCP_TIMESTAMP: return "TCP_TIMESTAMP";
		case TCP_REPAIR_WINDOW: return "TCP_REPAIR_WINDOW";
		case TCP_MAXSEG: return "TCP_MAXSEG";
		case TCP_NODELAY: return "TCP_NODELAY";
		case TCP_INFO: return "TCP_INFO";
		default: return "TCP_?";
		}
	}
	if (level == SOL_SOCKET) {
		switch (opt) {
		case SO_REUSEADDR: return "SO_REUSEADDR";
		case SO_LINGER: return "SO_LINGER";
		case SO_RCVBUF: return "SO_RCVBUF";
		case SO_RCVBUFFORCE: return "SO_RCVBUFFORCE";
		case SO_ATTACH_FILTER: return "SO_ATTACH_FILTER";
		default: return "SO_?";
		}
	}
	if (level == SOL_PACKET && opt == PACKET_STATISTICS)
		return "PACKET_STATISTICS";
	return "?";
}

int
__wrap_socket(int domain, int type, int proto)
{
	fake_log("socket %s", domain == AF_PACKET ? "packet" :
	    (type & SOCK_NONBLOCK) ? "tcp-nonblock" : "tcp");
	if (fake_fail())
		return -1;
	fk.open++;
	fk.repair = 0;
	return FAKE_FD;
}

int
__wrap_setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	const char *name = fake_optname(level, opt);
	int v = len == sizeof(int) ? *(const int *)val : 0;

	assert_int_equal(fd, FAKE_FD);
	if (level == SOL_TCP && opt == TCP_REPAIR_OPTIONS) {
		const struct tcp_repair_opt *o = val;
		char buf[96] = "";
		size_t i, n = len / sizeof(*o);

		for (i = 0; i < n; i++)
			snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " %u:%u",
			    o[i].opt_code, o[i].opt_val);
		fake_log("set %s%s", name, buf);
	} else if (level == SOL_TCP && opt == TCP_REPAIR_WINDOW) {
		const struct tcp_repair_window *w = val;

		assert_int_equal(len, sizeof(*w));
		fake_log("set %s %u %u %u %u %u", name, w->snd_wl1, w->snd_wnd, w->max_window,
		    w->rcv_wnd, w->rcv_wup);
	} else if (level == SOL_SOCKET && opt == SO_LINGER) {
		const struct linger *l = val;

		fake_log("set %s %d %d", name, l->l_onoff, l->l_linger);
	} else if (level == SOL_SOCKET && opt == SO_ATTACH_FILTER) {
		const struct sock_fprog *p = val;

		fake_log("set %s len=%u", name, p->len);
	} else if (level == SOL_TCP && (opt == TCP_QUEUE_SEQ || opt == TCP_TIMESTAMP)) {
		assert_int_equal(len, sizeof(uint32_t));
		fake_log("set %s %u", name, *(const uint32_t *)val);
	} else {
		fake_log("set %s %d", name, v);
	}
	if (fake_fail())
		return -1;
	if (level == SOL_TCP && opt == TCP_REPAIR) {
		fk.repair = v == 1;
		if (v != 1)
			fk.reuse = 0;   /* leaving repair mode clears SO_REUSEADDR (pitfall 11) */
	}
	else if (level == SOL_TCP && opt == TCP_REPAIR_QUEUE)
		fk.queue = v;
	else if (level == SOL_SOCKET && opt == SO_REUSEADDR)
		fk.reuse = v;
	return 0;
}

int
__wrap_getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	assert_int_equal(fd, FAKE_FD);
	fake_log("get %s", fake_optname(level, opt));
	if (fake_fail())
		return -1;
	if (level == SOL_TCP && opt == TCP_INFO) {
		memcpy(val, &fk.info, *len < sizeof(fk.info) ? *len : sizeof(fk.info));
	} else if (level == SOL_TCP && opt == TCP_REPAIR_WINDOW) {
		if (*len != sizeof(fk.win)) {
			errno = EINVAL;   /* like the kernel (pitfall 8) */
			return -1;
		}
		memcpy(val, &fk.win, sizeof(fk.win));
	} else if (level == SOL_TCP && opt == TCP_QUEUE_SEQ) {
		assert_true(fk.repair);
		*(uint32_t *)val = fk.queue == TCP_SEND_QUEUE ? fk.send_seq : fk.recv_seq;
		*len = sizeof(uint32_t);
	} else if (level == SOL_TCP && opt == TCP_MAXSEG) {
		*(uint32_t *)val = fk.maxseg;
		*len = sizeof(uint32_t);
	} else if (level == SOL_TCP && opt == TCP_TIMESTAMP) {
		*(uint32_t *)val = fk.ts;
		*len = sizeof(uint32_t);
	} else if (level == SOL_SOCKET && opt == SO_REUSEADDR) {
		*(int *)val = fk.reuse;
		*len = sizeof(int);
	} else if (level == SOL_SOCKET && opt == SO_RCVBUF) {
		*(int *)val = fk.rcvbuf;
		*len = sizeof(int);
	} else if (level == SOL_PACKET && opt == PACKET_STATISTICS) {
		memset(val, 0, *len);
	}
	return 0;
}

int
__wrap_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	assert_int_equal(fd, FAKE_FD);
	fake_log("bind");
	return fake_fail() ? -1 : 0;
}

int
__wrap_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	assert_int_equal(fd, FAKE_FD);
	fake_log("connect");
	return fake_fail() ? -1 : 0;
}

int
__wrap_close(int fd)
{
	assert_int_equal(fd, FAKE_FD);
	fake_log("close repair=%d", fk.repair);
	fk.calls++;   /* close never fails here: cleanup paths must always reach it */
	fk.open--;
	return 0;
}

ssize_t
__wrap_send(int fd, const void *buf, size_t len, int flags)
{
	size_t n = len;

	assert_int_equal(fd, FAKE_FD);
	if (fk.send_max != 0 && n > fk.send_max)
		n = fk.send_max;
	if (!fk.repair && fk.eagain_after != 0) {
		if (fk.sent_normal >= fk.eagain_after) {
			fake_log("send %zu EAGAIN", len);
			fk.calls++;
			errno = EAGAIN;
			return -1;
		}
		if (n > fk.eagain_after - fk.sent_normal)
			n = fk.eagain_after - fk.sent_normal;
	}
	fake_log("send %zu%s", len, fk.repair ? (fk.queue == TCP_RECV_QUEUE ? " rq" :
	    fk.queue == TCP_SEND_QUEUE ? " sq" : " q?") : "");
	if (fake_fail())
		return -1;
	if (!fk.repair)
		fk.sent_normal += n;
	return (ssize_t)n;
}

ssize_t
__wrap_recv(int fd, void *buf, size_t len, int flags)
{
	assert_int_equal(fd, FAKE_FD);
	if (!fk.repair) {
		/* The packet socket. */
		if (fk.next_pkt >= fk.npkt) {
			errno = EAGAIN;
			return -1;
		}
		len = len < fk.pkt_len[fk.next_pkt] ? len : fk.pkt_len[fk.next_pkt];
		memcpy(buf, fk.pkt[fk.next_pkt++], len);
		return (ssize_t)len;
	}
	fake_log("recv %zu%s", len, (flags & MSG_PEEK) ? " peek" : "");
	if (fake_fail())
		return -1;
	if (fk.queue == TCP_SEND_QUEUE) {
		len = len < (size_t)fk.outq ? len : (size_t)fk.outq;
		memcpy(buf, fk.sq, len);
	} else {
		len = len < (size_t)fk.inq ? len : (size_t)fk.inq;
		memcpy(buf, fk.rq, len);
	}
	return (ssize_t)len;
}

int
__wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	int *out;

	va_start(ap, req);
	out = va_arg(ap, int *);
	va_end(ap);
	fake_log("ioctl %s", req == SIOCINQ ? "SIOCINQ" : req == SIOCOUTQ ? "SIOCOUTQ" :
	    req == SIOCOUTQNSD ? "SIOCOUTQNSD" : "?");
	if (fake_fail())
		return -1;
	if (req == SIOCINQ) {
		fk.recv_seq += fk.arrive_on_inq;
		fk.inq += (int)fk.arrive_on_inq;
		fk.arrive_on_inq = 0;
		*out = fk.inq;
	} else if (req == SIOCOUTQ) {
		*out = fk.outq;
	} else {
		*out = fk.nsd;
	}
	return 0;
}

int
__wrap_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	fake_log("getsockname");
	if (fake_fail())
		return -1;
	memcpy(sa, &fk.local, sizeof(fk.local.in4));
	*len = sizeof(fk.local.in4);
	return 0;
}

int
__wrap_getpeername(int fd, struct sockaddr *sa, socklen_t *len)
{
	fake_log("getpeername");
	if (fake_fail())
		return -1;
	memcpy(sa, &fk.peer, sizeof(fk.peer.in4));
	*len = sizeof(fk.peer.in4);
	return 0;
}

static void
addr4(union repair_addr *a, const char *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	a->in4.sin_family = AF_INET;
	a->in4.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &a->in4.sin_addr), 1);
}

static void
addr6(union repair_addr *a, const char *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	a->in6.sin6_family = AF_INET6;
	a->in6.sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &a->in6.sin6_addr), 1);
}

/* An established connection with every option, near the 2^32 wrap. */
static int
setup_fake(void **state)
{
	memset(&fk, 0, sizeof(fk));
	fk.fail_errno = EPERM;
	fk.info.tcpi_state = TCP_ESTABLISHED;
	fk.info.tcpi_options = TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE;
	fk.info.tcpi_snd_wscale = 7;
	fk.info.tcpi_rcv_wscale = 9;
	fk.send_seq = 0xfffffff0u;
	fk.recv_seq = 0x00000010u;
	fk.maxseg = 1460;
	fk.win = (struct tcp_repair_window){ .snd_wl1 = 1, .snd_wnd = 64240,
		.max_window = 65535, .rcv_wnd = 65160, .rcv_wup = 2 };
	fk.ts = 123456788;
	fk.reuse = 1;
	fk.rcvbuf = 131072;
	addr4(&fk.local, "198.19.7.100", 7000);
	addr4(&fk.peer, "198.19.7.10", 40000);
	return 0;
}

static void
sock_full(struct repair_sock *rs)
{
	memset(rs, 0, sizeof(*rs));
	addr4(&rs->local, "198.19.7.100", 7000);
	addr4(&rs->peer, "198.19.7.10", 40000);
	rs->write_seq = 0x00000020u;   /* the send queue starts before the wrap */
	rs->rcv_nxt = 0x00000008u;     /* so does the receive queue */
	rs->opts = REPAIR_OPT_TS | REPAIR_OPT_SACK | REPAIR_OPT_WSCALE;
	rs->snd_wscale = 7;
	rs->rcv_wscale = 9;
	rs->mss_clamp = 1460;
	rs->snd_wnd = 64240;
	rs->max_window = 65535;
	rs->rcv_wnd = 65160;
	rs->ts_val = 1000;
	rs->ts_wall_ms = 5000000;
}

static void
check_log(const char *const *want, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < fk.nlog; i++)
		if (strcmp(want[i], fk.log[i]) != 0)
			fail_msg("call %zu: want \"%s\", got \"%s\"", i + 1, want[i], fk.log[i]);
	if (fk.nlog != n) {
		for (i = 0; i < fk.nlog; i++)
			print_message("  %zu: %s\n", i + 1, fk.log[i]);
		fail_msg("%zu calls, want %zu", fk.nlog, n);
	}
}

/* ---- pure functions ----------------------------------------------------- */

static void
test_seq_arith(void **state)
{
	assert_true(repair_seq_before(0xfffffff0u, 0x10u));   /* across the wrap */
	assert_false(repair_seq_before(0x10u, 0xfffffff0u));
	assert_true(repair_seq_after(0x10u, 0xfffffff0u));
	assert_false(repair_seq_before(5, 5));
	assert_false(repair_seq_after(5, 5));
	assert_true(repair_seq_before(0x7ffffffeu, 0xfffffffdu));  /* 2^31 - 1 apart */

	assert_true(repair_seq_between(0xfffffff8u, 0xfffffff0u, 0x10u));
	assert_true(repair_seq_between(0x0u, 0xfffffff0u, 0x10u));
	assert_true(repair_seq_between(0x10u, 0xfffffff0u, 0x10u));
	assert_true(repair_seq_between(0xfffffff0u, 0xfffffff0u, 0x10u));
	assert_false(repair_seq_between(0x11u, 0xfffffff0u, 0x10u));
	assert_false(repair_seq_between(0xffffffefu, 0xfffffff0u, 0x10u));
	assert_true(repair_seq_between(7, 7, 7));
	assert_false(repair_seq_between(8, 7, 7));

	assert_int_equal(repair_seq_add(0xfffffff0u, 0x20), 0x10u);
	/* 64-bit totals past 2^32 fold in: 5 GiB + 3 bytes after seq 10. */
	assert_int_equal(repair_seq_add(10, 5ull * 1024 * 1024 * 1024 + 3),
	    (uint32_t)(10 + 1024u * 1024u * 1024u + 3));
	assert_int_equal(repair_seq_add(0, 1ull << 32), 0);
}

static void
test_advance_wrap(void **state)
{
	struct repair_sock rs;
	uint32_t i;

	sock_full(&rs);
	rs.write_seq = 0xffffff00u;
	rs.rcv_nxt = 0xfffffffeu;
	repair_advance(&rs, 0x200, 3);
	assert_int_equal(rs.write_seq, 0x100u);
	assert_int_equal(rs.rcv_nxt, 1u);
	/* Many small advances equal one big one, wrap or not. */
	rs.write_seq = 0xfffff000u;
	for (i = 0; i < 1000; i++)
		repair_advance(&rs, 1460, 0);
	assert_int_equal(rs.write_seq, repair_seq_add(0xfffff000u, 1460ull * 1000));
}

static void
test_ts_value(void **state)
{
	/* ms clock: + elapsed + margin, low bit clear. */
	assert_int_equal(repair_ts_value(1000, 5000, 5250, 100), 1350);
	assert_int_equal(repair_ts_value(1000, 5000, 5251, 100), 1350);  /* 1351 -> even */
	/* A clock behind the snapshot counts as no time at all. */
	assert_int_equal(repair_ts_value(1000, 5000, 4000, 100), 1100);
	/* Wraps like the TS clock does. */
	assert_int_equal(repair_ts_value(0xfffffff0u, 0, 0x30, 0), 0x20u);
	/* µs clock (low bit set): elapsed in µs, bit kept. */
	assert_int_equal(repair_ts_value(1001, 5000, 5002, 1), 1001 + 3000);
	assert_int_equal(repair_ts_value(1001, 5000, 5002, 1) & 1u, 1u);
	assert_int_equal(repair_ts_value(0xffffff01u, 0, 1, 0), (0xffffff01u + 1000u) | 1u);
}

static void
test_opts_encode(void **state)
{
	struct tcp_repair_opt o[REPAIR_OPTS_MAX];
	struct repair_sock rs;
	size_t n;

	sock_full(&rs);
	n = repair_opts_encode(&rs, o);
	assert_int_equal(n, 4);
	assert_int_equal(o[0].opt_code, 2);    /* TCPOPT_MSS */
	assert_int_equal(o[0].opt_val, 1460);
	assert_int_equal(o[1].opt_code, 4);    /* TCPOPT_SACK_PERM */
	assert_int_equal(o[1].opt_val, 0);
	assert_int_equal(o[2].opt_code, 3);    /* TCPOPT_WINDOW */
	assert_int_equal(o[2].opt_val, 7u | 9u << 16);
	assert_int_equal(o[3].opt_code, 8);    /* TCPOPT_TIMESTAMP */
	assert_int_equal(o[3].opt_val, 0);

	rs.opts = 0;
	rs.snd_wscale = rs.rcv_wscale = 0;
	n = repair_opts_encode(&rs, o);
	assert_int_equal(n, 1);                /* MSS always */
	assert_int_equal(o[0].opt_code, 2);

	rs.opts = REPAIR_OPT_WSCALE;
	rs.snd_wscale = 14;
	rs.rcv_wscale = 0;
	n = repair_opts_encode(&rs, o);
	assert_int_equal(n, 2);
	assert_int_equal(o[1].opt_val, 14u);
}

static void
test_sock_check(void **state)
{
	struct repair_sock rs;
	uint8_t q[4];

	sock_full(&rs);
	assert_int_equal(repair_sock_check(&rs), 0);
	addr6(&rs.local, "2001:2::100", 7000);
	addr6(&rs.peer, "2001:2::10", 4000);
	assert_int_equal(repair_sock_check(&rs), 0);
	addr4(&rs.peer, "198.19.7.10", 4000);
	assert_int_equal(repair_sock_check(&rs), -EINVAL);        /* mixed families */
	sock_full(&rs);
	rs.local.sa.sa_family = AF_UNIX;
	assert_int_equal(repair_sock_check(&rs), -EAFNOSUPPORT);
	sock_full(&rs);
	rs.peer.in4.sin_port = 0;
	assert_int_equal(repair_sock_check(&rs), -EINVAL);
	sock_full(&rs);
	rs.snd_wscale = 15;
	assert_int_equal(repair_sock_check(&rs), -EINVAL);
	sock_full(&rs);
	rs.opts = REPAIR_OPT_TS;                                  /* scales without WSCALE */
	assert_int_equal(repair_sock_check(&rs), -EINVAL);
	sock_full(&rs);
	rs.opts |= 0x8;
	assert_int_equal(repair_sock_check(&rs), -EINVAL);
	sock_full(&rs);
	rs.mss_clamp = 87;
	assert_int_equal(repair_sock_check(&rs), -EINVAL);
	rs.mss_clamp = 88;
	assert_int_equal(repair_sock_check(&rs), 0);
	sock_full(&rs);
	rs.snd_wnd = rs.max_window + 1;
	assert_int_equal(repair_sock_check(&rs), -EINVAL);
	sock_full(&rs);
	rs.rcvq_len = 4;                                          /* length without data */
	assert_int_equal(repair_sock_check(&rs), -EINVAL);
	rs.rcvq = q;
	assert_int_equal(repair_sock_check(&rs), 0);
	rs.sndq = q;
	rs.sndq_len = 4;
	rs.sndq_unsent = 5;
	assert_int_equal(repair_sock_check(&rs), -EINVAL);
	rs.sndq_unsent = 4;
	assert_int_equal(repair_sock_check(&rs), 0);
	repair_sock_clear(NULL);
	assert_string_equal(repair_step_name(REPAIR_STEP_MAXSEG), "maxseg");
	assert_string_equal(repair_step_name(REPAIR_STEP_COUNT), "?");
}

/* ---- restore ------------------------------------------------------------ */

/* Call i of the full restore below, and the step a failure there reports. */
struct expect {
	const char *call;
	enum repair_step step;
};

/* write_seq 0x20 with 48 queued bytes: the send queue starts at 0xfffffff0. */
static const struct expect restore_full[] = {
	{ "socket tcp-nonblock", REPAIR_STEP_SOCKET },
	{ "set TCP_REPAIR 1", REPAIR_STEP_REPAIR_ON },
	{ "bind", REPAIR_STEP_BIND },
	{ "set TCP_REPAIR_QUEUE 1", REPAIR_STEP_RECV_SEQ },
	{ "set TCP_QUEUE_SEQ 4294967288", REPAIR_STEP_RECV_SEQ },   /* 0x8 - 16 */
	{ "set TCP_REPAIR_QUEUE 2", REPAIR_STEP_SEND_SEQ },
	{ "set TCP_QUEUE_SEQ 4294967280", REPAIR_STEP_SEND_SEQ },   /* 0x20 - 48 */
	{ "set TCP_MAXSEG 1460", REPAIR_STEP_MAXSEG },
	{ "connect", REPAIR_STEP_CONNECT },
	{ "set TCP_REPAIR_OPTIONS 2:1460 4:0 3:589831 8:0", REPAIR_STEP_OPTIONS },
	{ "set TCP_TIMESTAMP 2250", REPAIR_STEP_TIMESTAMP },        /* 1000 + 250 + 1000 */
	{ "set TCP_REPAIR_QUEUE 1", REPAIR_STEP_RECV_QUEUE },
	{ "send 16 rq", REPAIR_STEP_RECV_QUEUE },
	/* the 28 bytes the old socket had sent go back as sent (snd_nxt covers them) */
	{ "set TCP_REPAIR_QUEUE 2", REPAIR_STEP_SEND_QUEUE },
	{ "send 28 sq", REPAIR_STEP_SEND_QUEUE },
	{ "set TCP_REPAIR_QUEUE 0", REPAIR_STEP_NO_QUEUE },
	{ "set TCP_REPAIR_WINDOW 8 64240 65535 65160 8", REPAIR_STEP_WINDOW },
	{ "set TCP_REPAIR 0", REPAIR_STEP_REPAIR_OFF },
	{ "set TCP_NODELAY 1", REPAIR_STEP_SOCKOPTS },
	{ "send 20", REPAIR_STEP_SEND_QUEUE },   /* the never-sent tail: new data */
};
#define RESTORE_FULL_N (sizeof(restore_full) / sizeof(restore_full[0]))

static uint8_t rq16[16], sq48[48];

static void
sock_queued(struct repair_sock *rs)
{
	sock_full(rs);
	rs->rcvq = rq16;
	rs->rcvq_len = sizeof(rq16);
	rs->sndq = sq48;
	rs->sndq_len = sizeof(sq48);
	rs->sndq_unsent = 20;
}

static const struct repair_restore_opts opts_test = {
	.now_ms = 5000250, .ts_margin_ms = 1000, .nodelay = true };

static void
test_restore_order(void **state)
{
	const char *want[RESTORE_FULL_N];
	struct repair_restored r;
	struct repair_sock rs;
	size_t i;

	sock_queued(&rs);
	assert_int_equal(repair_restore(&rs, &opts_test, &r), 0);
	assert_int_equal(r.fd, FAKE_FD);
	assert_int_equal(r.failed, REPAIR_STEP_NONE);
	assert_int_equal(r.sndq_sent, 48);
	for (i = 0; i < RESTORE_FULL_N; i++)
		want[i] = restore_full[i].call;
	check_log(want, RESTORE_FULL_N);
	assert_int_equal(fk.open, 1);
	assert_false(fk.repair);
}

static void
test_restore_minimal(void **state)
{
	static const char *const want[] = {
		"socket tcp-nonblock", "set TCP_REPAIR 1", "bind",
		"set TCP_REPAIR_QUEUE 1", "set TCP_QUEUE_SEQ 8",
		"set TCP_REPAIR_QUEUE 2", "set TCP_QUEUE_SEQ 32",
		"set TCP_MAXSEG 1400", "connect", "set TCP_REPAIR_OPTIONS 2:1400",
		"set TCP_REPAIR_QUEUE 0", "set TCP_REPAIR_WINDOW 8 64240 65535 65160 8",
		"set TCP_REPAIR 0",
	};
	struct repair_restored r;
	struct repair_sock rs;

	sock_full(&rs);
	rs.opts = 0;   /* no TS: no TCP_TIMESTAMP either */
	rs.snd_wscale = rs.rcv_wscale = 0;
	rs.mss_clamp = 1400;
	assert_int_equal(repair_restore(&rs, NULL, &r), 0);
	check_log(want, sizeof(want) / sizeof(want[0]));
	assert_int_equal(r.sndq_sent, 0);
}

/* Fail each call in turn: right step, -errno, nothing open, nothing on the wire. */
static void
test_restore_fail_each(void **state)
{
	struct repair_restored r;
	struct repair_sock rs;
	size_t i;

	for (i = 1; i <= RESTORE_FULL_N; i++) {
		setup_fake(state);
		fk.fail_at = i;
		fk.fail_errno = EPERM;
		sock_queued(&rs);
		assert_int_equal(repair_restore(&rs, &opts_test, &r), -EPERM);
		assert_int_equal(r.fd, -1);
		if (r.failed != restore_full[i - 1].step)
			fail_msg("call %zu (%s): step %s, want %s", i, restore_full[i - 1].call,
			    repair_step_name(r.failed), repair_step_name(restore_full[i - 1].step));
		assert_int_equal(fk.open, 0);
		/*
		 * Once repair mode is on, every close happens in it: no FIN, no RST.
		 * (Before, the socket is not even bound: nothing to tell anyone.)
		 */
		if (i > 2)
			assert_string_equal(fk.log[fk.nlog - 1], "close repair=1");
		else if (i == 2)
			assert_string_equal(fk.log[fk.nlog - 1], "close repair=0");
	}
	/* An invalid state never reaches the kernel. */
	setup_fake(state);
	sock_full(&rs);
	rs.mss_clamp = 10;
	assert_int_equal(repair_restore(&rs, NULL, &r), -EINVAL);
	assert_int_equal(r.failed, REPAIR_STEP_CHECK);
	assert_int_equal(fk.nlog, 0);
}

static void
test_restore_partial_sndq(void **state)
{
	struct repair_restored r;
	struct repair_sock rs;

	sock_queued(&rs);
	/* 28 go back as sent in repair mode; of the 20 unsent the buffer takes 12 */
	fk.eagain_after = 12;
	assert_int_equal(repair_restore(&rs, &opts_test, &r), 0);
	assert_int_equal(r.sndq_sent, 40);
	assert_int_equal(r.fd, FAKE_FD);
	assert_string_equal(fk.log[fk.nlog - 1], "send 8 EAGAIN");
}

static void
test_restore_big_rcvq(void **state)
{
	static uint8_t big[150000];
	struct repair_restored r;
	struct repair_sock rs;
	size_t i, sends = 0;
	bool forced = false;

	sock_full(&rs);
	rs.rcvq = big;
	rs.rcvq_len = sizeof(big);
	rs.rcv_nxt = 200000;
	fk.send_max = 69632;    /* the kernel takes one skb (17 pages) per call */
	assert_int_equal(repair_restore(&rs, &opts_test, &r), 0);
	for (i = 0; i < fk.nlog; i++) {
		if (strncmp(fk.log[i], "send ", 5) == 0 && strstr(fk.log[i], " rq") != NULL)
			sends++;
		if (strcmp(fk.log[i], "set SO_RCVBUFFORCE 300000") == 0)
			forced = true;
	}
	assert_int_equal(sends, 3);   /* 69632 + 69632 + 10736 */
	assert_true(forced);
	assert_int_equal(fk.open, 1);
}

/* ---- snapshot ----------------------------------------------------------- */

static const struct expect snap_live[] = {
	{ "get TCP_INFO", REPAIR_STEP_INFO },
	{ "getsockname", REPAIR_STEP_INFO },
	{ "getpeername", REPAIR_STEP_INFO },
	{ "get SO_REUSEADDR", REPAIR_STEP_REUSEADDR },
	{ "set TCP_REPAIR 1", REPAIR_STEP_REPAIR_ON },
	{ "set TCP_REPAIR_QUEUE 2", REPAIR_STEP_SEND_SEQ },
	{ "get TCP_QUEUE_SEQ", REPAIR_STEP_SEND_SEQ },
	{ "set TCP_REPAIR_QUEUE 1", REPAIR_STEP_RECV_SEQ },
	{ "get TCP_QUEUE_SEQ", REPAIR_STEP_RECV_SEQ },
	{ "ioctl SIOCINQ", REPAIR_STEP_RECV_SEQ },
	{ "get TCP_QUEUE_SEQ", REPAIR_STEP_RECV_SEQ },
	{ "get TCP_MAXSEG", REPAIR_STEP_MAXSEG },
	{ "get TCP_REPAIR_WINDOW", REPAIR_STEP_WINDOW },
	{ "get TCP_TIMESTAMP", REPAIR_STEP_TIMESTAMP },
	{ "set TCP_REPAIR -1", REPAIR_STEP_REPAIR_OFF },
	{ "set SO_REUSEADDR 1", REPAIR_STEP_REUSEADDR },
};
#define SNAP_LIVE_N (sizeof(snap_live) / sizeof(snap_live[0]))

static void
test_snapshot_live(void **state)
{
	const char *want[SNAP_LIVE_N];
	struct repair_sock rs;
	enum repair_step step;
	size_t i;

	fk.inq = 24;   /* unread bytes: left out of rcv_nxt, the app counts them */
	assert_int_equal(repair_snapshot(FAKE_FD, &rs, false, &step), 0);
	assert_int_equal(step, REPAIR_STEP_NONE);
	for (i = 0; i < SNAP_LIVE_N; i++)
		want[i] = snap_live[i].call;
	check_log(want, SNAP_LIVE_N);
	assert_int_equal(rs.write_seq, 0xfffffff0u);
	assert_int_equal(rs.rcv_nxt, (uint32_t)(0x10u - 24u));   /* wraps back */
	assert_int_equal(rs.opts, REPAIR_OPT_TS | REPAIR_OPT_SACK | REPAIR_OPT_WSCALE);
	assert_int_equal(rs.snd_wscale, 7);
	assert_int_equal(rs.rcv_wscale, 9);
	assert_int_equal(rs.mss_clamp, 1460);
	assert_int_equal(rs.snd_wnd, 64240);
	assert_int_equal(rs.max_window, 65535);
	assert_int_equal(rs.rcv_wnd, 65160);
	assert_int_equal(rs.ts_val, 123456788);
	assert_true(rs.ts_wall_ms > 1600000000000ull);
	assert_int_equal(ntohs(rs.local.in4.sin_port), 7000);
	assert_int_equal(ntohs(rs.peer.in4.sin_port), 40000);
	assert_null(rs.rcvq);
	assert_null(rs.sndq);
	assert_false(fk.repair);
	assert_int_equal(fk.reuse, 1);
	assert_int_equal(repair_sock_check(&rs), 0);
}

static void
test_snapshot_no_wscale(void **state)
{
	struct repair_sock rs;

	fk.info.tcpi_options = TCPI_OPT_SACK;   /* scales reported but not negotiated */
	fk.reuse = 0;
	assert_int_equal(repair_snapshot(FAKE_FD, &rs, false, NULL), 0);
	assert_int_equal(rs.opts, REPAIR_OPT_SACK);
	assert_int_equal(rs.snd_wscale, 0);
	assert_int_equal(rs.rcv_wscale, 0);
	/* SO_REUSEADDR was off: not set again. */
	assert_string_equal(fk.log[fk.nlog - 1], "set TCP_REPAIR -1");
}

static void
test_snapshot_fail_each(void **state)
{
	struct repair_sock rs;
	enum repair_step step;
	size_t i;

	for (i = 1; i <= SNAP_LIVE_N; i++) {
		setup_fake(state);
		fk.fail_at = i;
		assert_int_equal(repair_snapshot(FAKE_FD, &rs, false, &step), -EPERM);
		if (step != snap_live[i - 1].step)
			fail_msg("call %zu (%s): step %s, want %s", i, snap_live[i - 1].call,
			    repair_step_name(step), repair_step_name(snap_live[i - 1].step));
		/* Left repair mode again, SO_REUSEADDR as before (unless that failed). */
		assert_false(fk.repair);
		if (snap_live[i - 1].step != REPAIR_STEP_REUSEADDR || i < 5)
			assert_int_equal(fk.reuse, 1);
	}
}

static void
test_snapshot_not_established(void **state)
{
	struct repair_sock rs;
	enum repair_step step;

	fk.info.tcpi_state = TCP_CLOSE_WAIT;
	assert_int_equal(repair_snapshot(FAKE_FD, &rs, false, &step), -ENOTCONN);
	assert_int_equal(step, REPAIR_STEP_STATE);
	assert_int_equal(fk.nlog, 1);   /* never entered repair mode */
}

static void
test_snapshot_rcv_moving(void **state)
{
	struct repair_sock rs;

	fk.inq = 10;
	fk.arrive_on_inq = 100;   /* a segment lands between the two reads */
	assert_int_equal(repair_snapshot(FAKE_FD, &rs, false, NULL), 0);
	/* The retry read rcv_nxt 0x10 + 100 with 110 unread: the app's position is unchanged. */
	assert_int_equal(rs.rcv_nxt, (uint32_t)(0x10u - 10u));
}

static void
test_snapshot_frozen(void **state)
{
	struct repair_sock rs;
	size_t i;

	for (i = 0; i < sizeof(fk.rq); i++) {
		fk.rq[i] = (uint8_t)i;
		fk.sq[i] = (uint8_t)(255 - i);
	}
	fk.inq = 128;
	fk.outq = 64;
	fk.nsd = 32;
	assert_int_equal(repair_snapshot(FAKE_FD, &rs, true, NULL), 0);
	assert_true(fk.repair);   /* stays in repair mode for the silent close */
	assert_int_equal(rs.rcv_nxt, 0x10u);        /* the end of the receive queue */
	assert_int_equal(rs.write_seq, 0xfffffff0u);
	assert_int_equal(rs.rcvq_len, 128);
	assert_int_equal(rs.sndq_len, 64);
	assert_int_equal(rs.sndq_unsent, 32);
	assert_memory_equal(rs.rcvq, fk.rq, 128);
	assert_memory_equal(rs.sndq, fk.sq, 64);
	assert_int_equal(repair_sock_check(&rs), 0);
	fk.open = 1;
	assert_int_equal(repair_close_silently(FAKE_FD), 0);
	assert_string_equal(fk.log[fk.nlog - 1], "close repair=1");
	assert_int_equal(fk.open, 0);
	repair_sock_clear(&rs);
	assert_null(rs.rcvq);
	assert_int_equal(rs.sndq_len, 0);
}

/* A queue that changes under a frozen snapshot, and each failing call: no leak (ASan). */
static void
test_snapshot_frozen_fail(void **state)
{
	struct repair_sock rs;
	size_t i, n;

	setup_fake(state);
	fk.inq = 128;
	fk.outq = 64;
	assert_int_equal(repair_snapshot(FAKE_FD, &rs, true, NULL), 0);
	n = fk.nlog;
	repair_sock_clear(&rs);
	for (i = 1; i <= n; i++) {
		setup_fake(state);
		fk.inq = 128;
		fk.outq = 64;
		fk.fail_at = i;
		assert_int_equal(repair_snapshot(FAKE_FD, &rs, true, NULL), -EPERM);
		assert_false(fk.repair);
	}
	setup_fake(state);
	fk.inq = 128;
	fk.outq = 64;
	fk.nsd = 65;   /* more unsent than queued: nonsense */
	assert_int_equal(repair_snapshot(FAKE_FD, &rs, true, NULL), -EIO);
}

static void
test_close_silently_fail(void **state)
{
	fk.open = 1;
	fk.fail_at = 1;
	assert_int_equal(repair_close_silently(FAKE_FD), -EPERM);
	assert_int_equal(fk.open, 1);   /* left open: closing would tell the peer */
}

/* ---- reset -------------------------------------------------------------- */

static void
test_reset(void **state)
{
	static const char *const want[] = {
		"set TCP_REPAIR 1", "close repair=1",           /* the stale socket, silently */
		"socket tcp-nonblock", "set TCP_REPAIR 1", "bind",
		"set TCP_REPAIR_QUEUE 1", "set TCP_QUEUE_SEQ 4294967295",  /* peer's seq */
		"set TCP_REPAIR_QUEUE 2", "set TCP_QUEUE_SEQ 5",           /* peer's ACK */
		"set TCP_MAXSEG 1460", "connect",
		"set TCP_REPAIR_OPTIONS 2:1460 4:0 3:589831 8:0", "set TCP_TIMESTAMP 2250",
		"set TCP_REPAIR_QUEUE 0",
		"set TCP_REPAIR_WINDOW 4294967295 64240 65535 65160 4294967295",
		"set TCP_REPAIR -1",                            /* no probe */
		"set SO_LINGER 1 0", "close repair=0",          /* the RST */
	};
	struct repair_sock rs;
	enum repair_step step;

	sock_queued(&rs);   /* queues are ignored: the throw-away socket has none */
	fk.open = 1;
	assert_int_equal(repair_reset(FAKE_FD, &rs, 0xffffffffu, 5, &opts_test, &step), 0);
	assert_int_equal(step, REPAIR_STEP_NONE);
	check_log(want, sizeof(want) / sizeof(want[0]));
	assert_int_equal(fk.open, 0);
}

static void
test_reset_fail_each(void **state)
{
	struct repair_sock rs;
	enum repair_step step;
	size_t i;

	for (i = 1; i <= 17; i++) {
		if (i == 2)
			continue;   /* a close: never fails */
		setup_fake(state);
		fk.open = 1;
		fk.fail_at = i;
		sock_full(&rs);
		assert_int_equal(repair_reset(FAKE_FD, &rs, 1, 2, &opts_test, &step), -EPERM);
		if (i == 1) {
			assert_int_equal(step, REPAIR_STEP_CLOSE);
			assert_int_equal(fk.open, 1);
		} else {
			assert_int_not_equal(step, REPAIR_STEP_NONE);
			assert_int_equal(fk.open, 0);
			/* A failed reset sends nothing: the last close is in repair mode. */
			if (i == 3)
				assert_string_equal(fk.log[fk.nlog - 1], "socket tcp-nonblock");
			else if (i == 4)
				assert_string_equal(fk.log[fk.nlog - 1], "close repair=0");
			else
				assert_string_equal(fk.log[fk.nlog - 1], "close repair=1");
		}
	}
	/* Without a stale socket the rebuild starts at once. */
	setup_fake(state);
	sock_full(&rs);
	assert_int_equal(repair_reset(-1, &rs, 1, 2, NULL, &step), 0);
	assert_string_equal(fk.log[0], "socket tcp-nonblock");
}

/* ---- the stale-state watch ------------------------------------------------ */

#define SYN 0x02
#define RST 0x04
#define ACK 0x10
#define FIN 0x01

static size_t
pkt4(uint8_t *b, const char *src, uint16_t sport, const char *dst, uint16_t dport,
    uint32_t seq, uint32_t ack, uint8_t flags, uint16_t payload)
{
	uint16_t total = (uint16_t)(20 + 20 + payload);

	memset(b, 0, 40);
	b[0] = 0x45;
	b[2] = (uint8_t)(total >> 8);
	b[3] = (uint8_t)total;
	b[8] = 64;
	b[9] = 6;
	assert_int_equal(inet_pton(AF_INET, src, b + 12), 1);
	assert_int_equal(inet_pton(AF_INET, dst, b + 16), 1);
	b[20] = (uint8_t)(sport >> 8);
	b[21] = (uint8_t)sport;
	b[22] = (uint8_t)(dport >> 8);
	b[23] = (uint8_t)dport;
	b[24] = (uint8_t)(seq >> 24);
	b[25] = (uint8_t)(seq >> 16);
	b[26] = (uint8_t)(seq >> 8);
	b[27] = (uint8_t)seq;
	b[28] = (uint8_t)(ack >> 24);
	b[29] = (uint8_t)(ack >> 16);
	b[30] = (uint8_t)(ack >> 8);
	b[31] = (uint8_t)ack;
	b[32] = 5 << 4;
	b[33] = flags;
	return 40;   /* truncated after the TCP header, like the capture */
}

static size_t
pkt6(uint8_t *b, const char *src, uint16_t sport, const char *dst, uint16_t dport,
    uint32_t seq, uint32_t ack, uint8_t flags, uint16_t payload)
{
	uint16_t plen = (uint16_t)(20 + payload);
	uint8_t *t = b + 40;

	memset(b, 0, 60);
	b[0] = 0x60;
	b[4] = (uint8_t)(plen >> 8);
	b[5] = (uint8_t)plen;
	b[6] = 6;
	b[7] = 64;
	assert_int_equal(inet_pton(AF_INET6, src, b + 8), 1);
	assert_int_equal(inet_pton(AF_INET6, dst, b + 24), 1);
	t[0] = (uint8_t)(sport >> 8);
	t[1] = (uint8_t)sport;
	t[2] = (uint8_t)(dport >> 8);
	t[3] = (uint8_t)dport;
	t[4] = (uint8_t)(seq >> 24);
	t[5] = (uint8_t)(seq >> 16);
	t[6] = (uint8_t)(seq >> 8);
	t[7] = (uint8_t)seq;
	t[8] = (uint8_t)(ack >> 24);
	t[9] = (uint8_t)(ack >> 16);
	t[10] = (uint8_t)(ack >> 8);
	t[11] = (uint8_t)ack;
	t[12] = 5 << 4;
	t[13] = flags;
	return 60;
}

/* Connection i of the watch tests: 198.19.7.100:7000 <- 198.19.7.10:(40000 + i). */
static void
watch_sock(struct repair_sock *rs, uint16_t i, uint32_t wseq, uint32_t rnxt)
{
	sock_full(rs);
	addr4(&rs->peer, "198.19.7.10", (uint16_t)(40000 + i));
	rs->write_seq = wseq;
	rs->rcv_nxt = rnxt;
}

static void
watch_in4(struct repair_watch *w, uint16_t i, uint32_t seq, uint32_t ack, uint8_t flags,
    uint16_t payload, uint64_t now)
{
	uint8_t b[64];
	size_t n = pkt4(b, "198.19.7.10", (uint16_t)(40000 + i), "198.19.7.100", 7000, seq,
	    ack, flags, payload);

	repair_watch_input(w, b, n, now);
}

static struct repair_watch *
watch_open(void)
{
	struct repair_watch *w;

	assert_int_equal(repair_watch_new(3, &w), 0);
	assert_int_equal(repair_watch_fd(w), FAKE_FD);
	return w;
}

static void
test_watch_open_order(void **state)
{
	static const char *const want[] = {
		"socket packet", "set SO_ATTACH_FILTER len=1", "set SO_RCVBUFFORCE 16777216",
		"bind",
		/* arm: the TCP filter, then the drops counter is reset */
		"set SO_ATTACH_FILTER len=11", "get PACKET_STATISTICS",
	};
	struct repair_watch *w = watch_open();
	struct repair_sock rs;

	watch_sock(&rs, 1, 100, 200);
	assert_int_equal(repair_watch_add(w, &rs, 1, 0), -ENOTCONN);   /* not armed */
	assert_int_equal(repair_watch_arm(w, NULL, 0), 0);
	check_log(want, sizeof(want) / sizeof(want[0]));
	repair_watch_free(w);
	assert_int_equal(fk.open, 0);

	/* Each failing call of the open: -errno and nothing left open. */
	{
		static const size_t fails[] = { 1, 2, 4 };   /* socket, filter, bind */

		for (size_t i = 0; i < sizeof(fails) / sizeof(fails[0]); i++) {
			setup_fake(state);
			fk.fail_at = fails[i];
			w = NULL;
			assert_int_equal(repair_watch_new(0, &w), -EPERM);
			assert_null(w);
			assert_int_equal(fk.open, 0);
		}
	}
	/* SO_RCVBUFFORCE refused (no CAP_NET_ADMIN): SO_RCVBUF instead. */
	setup_fake(state);
	fk.fail_at = 3;
	assert_int_equal(repair_watch_new(0, &w), 0);
	assert_string_equal(fk.log[3], "set SO_RCVBUF 16777216");
	repair_watch_free(w);
}

static void
test_watch_verdicts(void **state)
{
	struct repair_watch *w = watch_open();
	struct repair_verdict v;
	struct repair_sock rs;
	uint8_t b[64];
	size_t n;

	assert_int_equal(repair_watch_arm(w, NULL, 1000), 0);
	/* 1: idle, in sync. 2: the peer lacks our last bytes. 3: it has more. */
	watch_sock(&rs, 1, 5000, 9000);
	assert_int_equal(repair_watch_add(w, &rs, 101, 1000), 0);
	assert_int_equal(repair_watch_add(w, &rs, 999, 1000), -EEXIST);
	watch_sock(&rs, 2, 5000, 9000);
	assert_int_equal(repair_watch_add(w, &rs, 102, 1000), 0);
	watch_sock(&rs, 3, 5000, 9000);
	assert_int_equal(repair_watch_add(w, &rs, 103, 1000), 0);
	/* 4: a graceful handover resent 100 bytes: any ACK in [4900, 5000] is fine. */
	watch_sock(&rs, 4, 5000, 9000);
	rs.sndq = sq48;
	rs.sndq_len = 100;
	assert_int_equal(repair_watch_add(w, &rs, 104, 1000), 0);
	/* 5: the peer resets. 6: a data segment spanning rcv_nxt. 7: SYN, then silence. */
	watch_sock(&rs, 5, 5000, 9000);
	assert_int_equal(repair_watch_add(w, &rs, 105, 1000), 0);
	watch_sock(&rs, 6, 5000, 9000);
	assert_int_equal(repair_watch_add(w, &rs, 106, 1000), 0);
	watch_sock(&rs, 7, 5000, 9000);
	assert_int_equal(repair_watch_add(w, &rs, 107, 1000), 0);
	/* 8: IPv6. */
	addr6(&rs.local, "2001:2::100", 7000);
	addr6(&rs.peer, "2001:2::10", 4000);
	assert_int_equal(repair_watch_add(w, &rs, 108, 1000), 0);
	assert_int_equal(repair_watch_pending(w), 8);
	assert_false(repair_watch_verdict(w, &v));

	watch_in4(w, 1, 9000, 5000, ACK, 0, 1001);
	watch_in4(w, 2, 9000, 4990, ACK, 0, 1002);
	watch_in4(w, 3, 9000, 5010, ACK, 0, 1003);
	watch_in4(w, 4, 9000, 4950, ACK, 0, 1004);
	watch_in4(w, 5, 9000, 0, RST, 0, 1005);
	watch_in4(w, 6, 8990, 5000, ACK, 100, 1006);
	watch_in4(w, 7, 1, 0, SYN, 0, 1007);
	n = pkt6(b, "2001:2::10", 4000, "2001:2::100", 7000, 9000, 5000, ACK, 0);
	repair_watch_input(w, b, n, 1008);
	/* Unknown 4-tuple and garbage: counted, ignored. */
	watch_in4(w, 77, 9000, 5000, ACK, 0, 1009);
	repair_watch_input(w, b, 10, 1009);

	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.cookie, 101);
	assert_int_equal(v.verdict, REPAIR_VERDICT_OK);
	assert_int_equal(v.reason, REPAIR_REASON_IN_ORDER);
	assert_int_equal(v.after_ms, 1);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.cookie, 102);
	assert_int_equal(v.verdict, REPAIR_VERDICT_STALE);
	assert_int_equal(v.reason, REPAIR_REASON_ACK_BELOW);
	assert_int_equal(v.peer_ack, 4990);
	assert_int_equal(v.peer_seq, 9000);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.cookie, 103);
	assert_int_equal(v.reason, REPAIR_REASON_ACK_BEYOND);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.cookie, 104);
	assert_int_equal(v.verdict, REPAIR_VERDICT_OK);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.cookie, 105);
	assert_int_equal(v.verdict, REPAIR_VERDICT_GONE);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.cookie, 106);
	assert_int_equal(v.verdict, REPAIR_VERDICT_OK);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.cookie, 108);
	assert_int_equal(v.verdict, REPAIR_VERDICT_OK);
	assert_false(repair_watch_verdict(w, &v));
	assert_int_equal(repair_watch_pending(w), 1);   /* 7: the SYN said nothing */

	/* Decisions are final: a later bad ACK on 1 changes nothing. */
	watch_in4(w, 1, 9000, 1, ACK, 0, 1010);
	assert_false(repair_watch_verdict(w, &v));

	/* 7 stays silent until its deadline (add + 1000 ms). */
	{
		uint64_t dl;

		assert_int_equal(repair_watch_next_deadline(w, &dl), 0);
		assert_int_equal(dl, 2000);
	}
	repair_watch_expire(w, 1999);
	assert_false(repair_watch_verdict(w, &v));
	repair_watch_expire(w, 2000);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.cookie, 107);
	assert_int_equal(v.verdict, REPAIR_VERDICT_SILENT);
	assert_int_equal(v.reason, REPAIR_REASON_TIMEOUT);
	assert_false(v.seen);
	{
		uint64_t dl;
		struct repair_watch_stats st;

		assert_int_equal(repair_watch_next_deadline(w, &dl), -ENOENT);
		repair_watch_get_stats(w, &st);
		assert_int_equal(st.packets, 11);
		assert_int_equal(st.matched, 9);
		assert_int_equal(st.malformed, 1);
	}
	repair_watch_free(w);
}

/* Research 8a: bytes ACKed by the dead node (hole never filled) vs data in flight. */
static void
test_watch_hole(void **state)
{
	struct repair_watch_cfg cfg = { .hole_timeout_ms = 1000, .silence_timeout_ms = 300 };
	struct repair_watch *w = watch_open();
	struct repair_verdict v;
	struct repair_sock rs;
	uint64_t dl;

	assert_int_equal(repair_watch_arm(w, &cfg, 0), 0);
	/* rcv_nxt just before the wrap; the peer's seq is 64 bytes on, past it. */
	watch_sock(&rs, 1, 77, 0xffffffe0u);
	assert_int_equal(repair_watch_add(w, &rs, 1, 0), 0);
	watch_sock(&rs, 2, 77, 0xffffffe0u);
	assert_int_equal(repair_watch_add(w, &rs, 2, 0), 0);
	assert_int_equal(repair_watch_next_deadline(w, &dl), 0);
	assert_int_equal(dl, 300);

	/* Both answer the probe with seq = rcv_nxt + 64: a hole. */
	watch_in4(w, 1, 0x20u, 77, ACK, 0, 10);
	watch_in4(w, 2, 0x20u, 77, ACK, 0, 10);
	/* The silence deadline no longer applies; the hole one does (10 + 1000). */
	repair_watch_expire(w, 500);
	assert_false(repair_watch_verdict(w, &v));
	/* 2 retransmits from rcv_nxt (legitimate in-flight data). */
	watch_in4(w, 2, 0xffffffe0u, 77, ACK, 64, 215);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.cookie, 2);
	assert_int_equal(v.verdict, REPAIR_VERDICT_OK);
	assert_int_equal(v.after_ms, 215);
	/* A keepalive-style segment behind rcv_nxt fills nothing. */
	watch_in4(w, 1, 0xffffffdfu, 77, ACK, 0, 600);
	repair_watch_expire(w, 1009);
	assert_false(repair_watch_verdict(w, &v));
	assert_int_equal(repair_watch_next_deadline(w, &dl), 0);
	assert_true(dl <= 1010);
	repair_watch_expire(w, 1010);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.cookie, 1);
	assert_int_equal(v.verdict, REPAIR_VERDICT_STALE);
	assert_int_equal(v.reason, REPAIR_REASON_SEQ_HOLE);
	assert_int_equal(v.peer_ack, 77);         /* what repair_reset() sends the RST at */
	assert_int_equal(v.peer_seq, 0xffffffdfu);
	assert_true(v.seen);
	assert_int_equal(repair_watch_pending(w), 0);

	/* Re-arming forgets everything. */
	assert_int_equal(repair_watch_arm(w, &cfg, 5000), 0);
	assert_int_equal(repair_watch_pending(w), 0);
	assert_false(repair_watch_verdict(w, &v));
	assert_int_equal(repair_watch_add(w, &rs, 2, 5000), 0);
	repair_watch_disarm(w);
	assert_int_equal(repair_watch_add(w, &rs, 2, 5000), -ENOTCONN);
	repair_watch_free(w);
}

/* A FIN at rcv_nxt counts as in-order; the ACK range wraps. */
static void
test_watch_fin_wrap(void **state)
{
	struct repair_watch *w = watch_open();
	struct repair_verdict v;
	struct repair_sock rs;

	assert_int_equal(repair_watch_arm(w, NULL, 0), 0);
	watch_sock(&rs, 1, 0x10u, 500);
	rs.sndq = sq48;
	rs.sndq_len = 0x30;   /* ACKs in [0xffffffe0, 0x10] */
	assert_int_equal(repair_watch_add(w, &rs, 1, 0), 0);
	watch_in4(w, 1, 499, 0xfffffff0u, ACK | FIN, 0, 5);   /* FIN at 499 ends at 500: no */
	assert_false(repair_watch_verdict(w, &v));
	watch_in4(w, 1, 500, 0xfffffff0u, ACK | FIN, 0, 6);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.verdict, REPAIR_VERDICT_OK);
	watch_sock(&rs, 2, 0x10u, 500);
	rs.sndq = sq48;
	rs.sndq_len = 0x30;
	assert_int_equal(repair_watch_add(w, &rs, 2, 0), 0);
	watch_in4(w, 2, 500, 0xffffffdfu, ACK, 0, 7);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.reason, REPAIR_REASON_ACK_BELOW);
	repair_watch_free(w);
}

/* Many connections: the table grows and still finds each one. */
static void
test_watch_many(void **state)
{
	struct repair_watch *w = watch_open();
	struct repair_verdict v;
	struct repair_sock rs;
	uint16_t i;
	size_t ok = 0, stale = 0;

	assert_int_equal(repair_watch_arm(w, NULL, 0), 0);
	for (i = 0; i < 5000; i++) {
		watch_sock(&rs, i, 1000u + i, 2000u + i);
		assert_int_equal(repair_watch_add(w, &rs, i, 0), 0);
	}
	for (i = 0; i < 5000; i++)
		watch_in4(w, i, 2000u + i, 1000u + i + (i % 2), ACK, 0, 1);
	while (repair_watch_verdict(w, &v)) {
		if (v.verdict == REPAIR_VERDICT_OK && v.cookie % 2 == 0)
			ok++;
		else if (v.verdict == REPAIR_VERDICT_STALE && v.cookie % 2 == 1)
			stale++;
	}
	assert_int_equal(ok, 2500);
	assert_int_equal(stale, 2500);
	repair_watch_free(w);
}

/* repair_watch_process() reads the socket until it is empty. */
static void
test_watch_process(void **state)
{
	static uint8_t b[3][64];
	struct repair_watch *w = watch_open();
	struct repair_verdict v;
	struct repair_sock rs;

	assert_int_equal(repair_watch_arm(w, NULL, 0), 0);
	watch_sock(&rs, 1, 10, 20);
	assert_int_equal(repair_watch_add(w, &rs, 1, 0), 0);
	fk.pkt_len[0] = pkt4(b[0], "198.19.7.10", 40001, "198.19.7.100", 7000, 30, 10, ACK, 0);
	fk.pkt_len[1] = pkt4(b[1], "198.19.7.99", 40001, "198.19.7.100", 7000, 20, 10, ACK, 0);
	fk.pkt_len[2] = pkt4(b[2], "198.19.7.10", 40001, "198.19.7.100", 7000, 20, 10, ACK, 9);
	fk.pkt[0] = b[0];
	fk.pkt[1] = b[1];
	fk.pkt[2] = b[2];
	fk.npkt = 3;
	assert_int_equal(repair_watch_process(w, 50), 3);
	assert_int_equal(repair_watch_process(w, 51), 0);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.verdict, REPAIR_VERDICT_OK);   /* the hole, then filled */
	assert_int_equal(v.peer_seq, 20);
	repair_watch_free(w);
	repair_watch_free(NULL);
	assert_string_equal(repair_verdict_name(REPAIR_VERDICT_STALE), "stale");
	assert_string_equal(repair_reason_name(REPAIR_REASON_SEQ_HOLE), "seq-hole");
	assert_string_equal(repair_verdict_name(REPAIR_VERDICT_COUNT), "?");
}

/*
 * The loop was busy (rebuilding sockets) past the silence deadline while the
 * answers queued up: they still count, since deadlines apply only once the
 * socket is drained, even across calls cut short by the batch limit.
 */
static void
test_watch_late_answer(void **state)
{
	static uint8_t other[64], answer[64];
	struct repair_watch *w = watch_open();
	struct repair_verdict v;
	struct repair_sock rs;
	size_t i, n;

	assert_int_equal(repair_watch_arm(w, NULL, 0), 0);
	watch_sock(&rs, 1, 10, 20);
	assert_int_equal(repair_watch_add(w, &rs, 1, 0), 0);
	n = pkt4(other, "198.19.7.99", 1, "198.19.7.100", 7000, 1, 1, ACK, 0);
	for (i = 0; i < FAKE_PKT_MAX - 1; i++) {
		fk.pkt[i] = other;
		fk.pkt_len[i] = n;
	}
	fk.pkt[i] = answer;
	fk.pkt_len[i] = pkt4(answer, "198.19.7.10", 40001, "198.19.7.100", 7000, 20, 10, ACK, 0);
	fk.npkt = FAKE_PKT_MAX;
	assert_int_equal(repair_watch_process(w, 5000), 256);   /* batch limit: no deadline yet */
	assert_false(repair_watch_verdict(w, &v));
	assert_int_equal(repair_watch_process(w, 5000), FAKE_PKT_MAX - 256);
	assert_true(repair_watch_verdict(w, &v));
	assert_int_equal(v.verdict, REPAIR_VERDICT_OK);
	repair_watch_free(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seq_arith),
		cmocka_unit_test(test_advance_wrap),
		cmocka_unit_test(test_ts_value),
		cmocka_unit_test(test_opts_encode),
		cmocka_unit_test(test_sock_check),
		cmocka_unit_test_setup(test_restore_order, setup_fake),
		cmocka_unit_test_setup(test_restore_minimal, setup_fake),
		cmocka_unit_test_setup(test_restore_fail_each, setup_fake),
		cmocka_unit_test_setup(test_restore_partial_sndq, setup_fake),
		cmocka_unit_test_setup(test_restore_big_rcvq, setup_fake),
		cmocka_unit_test_setup(test_snapshot_live, setup_fake),
		cmocka_unit_test_setup(test_snapshot_no_wscale, setup_fake),
		cmocka_unit_test_setup(test_snapshot_fail_each, setup_fake),
		cmocka_unit_test_setup(test_snapshot_not_established, setup_fake),
		cmocka_unit_test_setup(test_snapshot_rcv_moving, setup_fake),
		cmocka_unit_test_setup(test_snapshot_frozen, setup_fake),
		cmocka_unit_test_setup(test_snapshot_frozen_fail, setup_fake),
		cmocka_unit_test_setup(test_close_silently_fail, setup_fake),
		cmocka_unit_test_setup(test_reset, setup_fake),
		cmocka_unit_test_setup(test_reset_fail_each, setup_fake),
		cmocka_unit_test_setup(test_watch_open_order, setup_fake),
		cmocka_unit_test_setup(test_watch_verdicts, setup_fake),
		cmocka_unit_test_setup(test_watch_hole, setup_fake),
		cmocka_unit_test_setup(test_watch_fin_wrap, setup_fake),
		cmocka_unit_test_setup(test_watch_many, setup_fake),
		cmocka_unit_test_setup(test_watch_process, setup_fake),
		cmocka_unit_test_setup(test_watch_late_answer, setup_fake),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
