/*
 * Unit tests for the sync_sock <-> repair_sock conversion
 * (daemon/session/sconv.c): every field both ways for IPv4 and IPv6, byte
 * order of ports and addresses, borrowed queues, sequence numbers across the
 * 2^32 wrap and byte totals above 2^32, and the refusals.
 */
#include <tandem/session.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

static uint8_t rq[5] = "RECVQ";
static uint8_t sq[9] = "SENDQUEUE";

/* A frozen snapshot as repair_snapshot() leaves it, every field distinct. */
static void
sample_repair(struct repair_sock *rs, int family)
{
	memset(rs, 0, sizeof(*rs));
	if (family == AF_INET) {
		rs->local.in4.sin_family = AF_INET;
		rs->local.in4.sin_port = htons(8080);
		assert_int_equal(inet_pton(AF_INET, "198.18.0.100",
		    &rs->local.in4.sin_addr), 1);
		rs->peer.in4.sin_family = AF_INET;
		rs->peer.in4.sin_port = htons(40001);
		assert_int_equal(inet_pton(AF_INET, "198.18.7.9",
		    &rs->peer.in4.sin_addr), 1);
	} else {
		rs->local.in6.sin6_family = AF_INET6;
		rs->local.in6.sin6_port = htons(443);
		assert_int_equal(inet_pton(AF_INET6, "2001:db8::100",
		    &rs->local.in6.sin6_addr), 1);
		rs->peer.in6.sin6_family = AF_INET6;
		rs->peer.in6.sin6_port = htons(65535);
		assert_int_equal(inet_pton(AF_INET6, "2001:db8:ff::1:2",
		    &rs->peer.in6.sin6_addr), 1);
	}
	rs->write_seq = 0xfffffff0u;
	rs->rcv_nxt = 0x12345678u;
	rs->opts = REPAIR_OPT_TS | REPAIR_OPT_SACK | REPAIR_OPT_WSCALE;
	rs->snd_wscale = 7;
	rs->rcv_wscale = 14;
	rs->mss_clamp = 1448;
	rs->snd_wnd = 64240;
	rs->max_window = 65535;
	rs->rcv_wnd = 131072;
	rs->ts_val = 0xdeadbeefu;
	rs->ts_wall_ms = UINT64_C(1700000000123);
	rs->rcvq = rq;
	rs->rcvq_len = sizeof(rq);
	rs->sndq = sq;
	rs->sndq_len = sizeof(sq);
	rs->sndq_unsent = 4;
}

static void
assert_repair_equal(const struct repair_sock *a, const struct repair_sock *b)
{
	/* Byte for byte: sin_zero, scope id and flow label included. */
	assert_memory_equal(&a->local, &b->local, sizeof(a->local));
	assert_memory_equal(&a->peer, &b->peer, sizeof(a->peer));
	assert_int_equal(a->write_seq, b->write_seq);
	assert_int_equal(a->rcv_nxt, b->rcv_nxt);
	assert_int_equal(a->opts, b->opts);
	assert_int_equal(a->snd_wscale, b->snd_wscale);
	assert_int_equal(a->rcv_wscale, b->rcv_wscale);
	assert_int_equal(a->mss_clamp, b->mss_clamp);
	assert_int_equal(a->snd_wnd, b->snd_wnd);
	assert_int_equal(a->max_window, b->max_window);
	assert_int_equal(a->rcv_wnd, b->rcv_wnd);
	assert_int_equal(a->ts_val, b->ts_val);
	assert_int_equal(a->ts_wall_ms, b->ts_wall_ms);
	assert_ptr_equal(a->rcvq, b->rcvq);
	assert_int_equal(a->rcvq_len, b->rcvq_len);
	assert_ptr_equal(a->sndq, b->sndq);
	assert_int_equal(a->sndq_len, b->sndq_len);
	assert_int_equal(a->sndq_unsent, b->sndq_unsent);
}

static void
test_from_repair_ipv4(void **state)
{
	struct repair_sock rs;
	struct sync_sock ss;
	uint8_t want[4];

	(void)state;
	sample_repair(&rs, AF_INET);
	memset(&ss, 0xa5, sizeof(ss));
	assert_int_equal(sess_sock_from_repair(&rs, &ss), 0);
	assert_int_equal(ss.local.family, AF_INET);
	assert_int_equal(ss.local.port, 8080);      /* host order */
	inet_pton(AF_INET, "198.18.0.100", want);
	assert_memory_equal(ss.local.addr, want, 4);
	/* The unused 12 bytes are zero, not left over. */
	for (size_t i = 4; i < sizeof(ss.local.addr); i++)
		assert_int_equal(ss.local.addr[i], 0);
	assert_int_equal(ss.peer.family, AF_INET);
	assert_int_equal(ss.peer.port, 40001);
	inet_pton(AF_INET, "198.18.7.9", want);
	assert_memory_equal(ss.peer.addr, want, 4);
	assert_int_equal(ss.snd_isn, 0xfffffff0u);
	assert_int_equal(ss.rcv_isn, 0x12345678u);
	assert_int_equal(ss.bytes_written, 0);
	assert_int_equal(ss.bytes_read, 0);
	assert_true(ss.opt_sack);
	assert_true(ss.opt_timestamps);
	assert_true(ss.opt_wscale);
	assert_int_equal(ss.snd_wscale, 7);
	assert_int_equal(ss.rcv_wscale, 14);
	assert_int_equal(ss.mss_clamp, 1448);
	assert_int_equal(ss.ts_val, 0xdeadbeefu);
	assert_int_equal(ss.ts_wall_ms, UINT64_C(1700000000123));
	assert_int_equal(ss.snd_wnd, 64240);
	assert_int_equal(ss.max_window, 65535);
	assert_int_equal(ss.rcv_wnd, 131072);
	/* Borrowed, not copied. */
	assert_ptr_equal(ss.recv_queue, rq);
	assert_int_equal(ss.recv_queue_len, sizeof(rq));
	assert_ptr_equal(ss.send_queue, sq);
	assert_int_equal(ss.send_queue_len, sizeof(sq));
	assert_int_equal(ss.send_unsent, 4);
}

static void
test_from_repair_ipv6(void **state)
{
	struct repair_sock rs;
	struct sync_sock ss;
	uint8_t want[16];

	(void)state;
	sample_repair(&rs, AF_INET6);
	assert_int_equal(sess_sock_from_repair(&rs, &ss), 0);
	assert_int_equal(ss.local.family, AF_INET6);
	assert_int_equal(ss.local.port, 443);
	inet_pton(AF_INET6, "2001:db8::100", want);
	assert_memory_equal(ss.local.addr, want, 16);
	assert_int_equal(ss.peer.family, AF_INET6);
	assert_int_equal(ss.peer.port, 65535);
	inet_pton(AF_INET6, "2001:db8:ff::1:2", want);
	assert_memory_equal(ss.peer.addr, want, 16);
}

/* Each option bit maps to its own flag. */
static void
test_option_bits(void **state)
{
	const uint8_t bits[] = { REPAIR_OPT_TS, REPAIR_OPT_SACK,
		REPAIR_OPT_WSCALE, 0 };
	struct repair_sock rs, back;
	struct sync_sock ss;

	(void)state;
	for (size_t i = 0; i < sizeof(bits); i++) {
		sample_repair(&rs, AF_INET);
		rs.opts = bits[i];
		if (!(bits[i] & REPAIR_OPT_WSCALE))
			rs.snd_wscale = rs.rcv_wscale = 0;
		assert_int_equal(sess_sock_from_repair(&rs, &ss), 0);
		assert_int_equal(ss.opt_timestamps, bits[i] == REPAIR_OPT_TS);
		assert_int_equal(ss.opt_sack, bits[i] == REPAIR_OPT_SACK);
		assert_int_equal(ss.opt_wscale, bits[i] == REPAIR_OPT_WSCALE);
		assert_int_equal(sess_sock_to_repair(&ss, &back), 0);
		assert_int_equal(back.opts, bits[i]);
	}
}

/* repair -> sync -> repair gives the same struct, for both families. */
static void
test_roundtrip(void **state)
{
	const int families[] = { AF_INET, AF_INET6 };

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct repair_sock rs, back;
		struct sync_sock ss;

		sample_repair(&rs, families[i]);
		assert_int_equal(sess_sock_from_repair(&rs, &ss), 0);
		memset(&back, 0x5a, sizeof(back));
		assert_int_equal(sess_sock_to_repair(&ss, &back), 0);
		assert_repair_equal(&back, &rs);
		if (families[i] == AF_INET6) {
			assert_int_equal(back.local.in6.sin6_scope_id, 0);
			assert_int_equal(back.local.in6.sin6_flowinfo, 0);
			assert_int_equal(back.peer.in6.sin6_scope_id, 0);
			assert_int_equal(back.peer.in6.sin6_flowinfo, 0);
		}
	}
}

/* A live snapshot (no queues) stays without queues both ways. */
static void
test_no_queues(void **state)
{
	struct repair_sock rs, back;
	struct sync_sock ss;

	(void)state;
	sample_repair(&rs, AF_INET);
	rs.rcvq = rs.sndq = NULL;
	rs.rcvq_len = rs.sndq_len = rs.sndq_unsent = 0;
	assert_int_equal(sess_sock_from_repair(&rs, &ss), 0);
	assert_null(ss.recv_queue);
	assert_null(ss.send_queue);
	assert_int_equal(ss.recv_queue_len + ss.send_queue_len, 0);
	assert_int_equal(sess_sock_to_repair(&ss, &back), 0);
	assert_repair_equal(&back, &rs);
	/* A pointer left behind with an empty queue is not passed on. */
	ss.recv_queue = rq;
	ss.send_queue = sq;
	assert_int_equal(sess_sock_to_repair(&ss, &back), 0);
	assert_null(back.rcvq);
	assert_null(back.sndq);
}

/* to_repair borrows the queues of a received sync_sock. */
static void
test_to_repair_borrows(void **state)
{
	struct repair_sock rs, back;
	struct sync_sock ss;
	static const uint8_t wire_rq[3] = "abc";
	static const uint8_t wire_sq[2] = "de";

	(void)state;
	sample_repair(&rs, AF_INET6);
	assert_int_equal(sess_sock_from_repair(&rs, &ss), 0);
	ss.recv_queue = wire_rq;
	ss.recv_queue_len = sizeof(wire_rq);
	ss.send_queue = wire_sq;
	ss.send_queue_len = sizeof(wire_sq);
	ss.send_unsent = 2;
	assert_int_equal(sess_sock_to_repair(&ss, &back), 0);
	assert_ptr_equal(back.rcvq, wire_rq);
	assert_int_equal(back.rcvq_len, 3);
	assert_ptr_equal(back.sndq, wire_sq);
	assert_int_equal(back.sndq_len, 2);
	assert_int_equal(back.sndq_unsent, 2);
}

/* write_seq / rcv_nxt = isn + bytes, mod 2^32. */
static void
test_sequence_wrap(void **state)
{
	struct repair_sock rs, back;
	struct sync_sock ss;

	(void)state;
	sample_repair(&rs, AF_INET);
	assert_int_equal(sess_sock_from_repair(&rs, &ss), 0);

	ss.snd_isn = 0xFFFFFF00u;
	ss.bytes_written = 0x200;
	ss.rcv_isn = 0x7fffffffu;
	ss.bytes_read = (UINT64_C(1) << 32) + 5;    /* a total above 2^32 */
	assert_int_equal(sess_sock_to_repair(&ss, &back), 0);
	assert_int_equal(back.write_seq, 0x100u);
	assert_int_equal(back.rcv_nxt, 0x7fffffffu + 5);

	/* Exactly 2^32 bytes later the sequence number is where it started. */
	ss.snd_isn = 0xFFFFFF00u;
	ss.bytes_written = UINT64_C(1) << 32;
	ss.rcv_isn = 0xfffffffeu;
	ss.bytes_read = (UINT64_C(3) << 32) + 3;
	assert_int_equal(sess_sock_to_repair(&ss, &back), 0);
	assert_int_equal(back.write_seq, 0xFFFFFF00u);
	assert_int_equal(back.rcv_nxt, 1);
	/* The arithmetic the watch and repair_advance use agrees. */
	assert_int_equal(back.rcv_nxt, repair_seq_add(ss.rcv_isn, ss.bytes_read));

	/* from_repair starts the counts over: the totals are relative to it. */
	assert_int_equal(sess_sock_from_repair(&back, &ss), 0);
	assert_int_equal(ss.snd_isn, 0xFFFFFF00u);
	assert_int_equal(ss.rcv_isn, 1);
	assert_int_equal(ss.bytes_written, 0);
	assert_int_equal(ss.bytes_read, 0);
}

static void
test_bad_family(void **state)
{
	struct repair_sock rs, back;
	struct sync_sock ss, good, keep;

	(void)state;
	sample_repair(&rs, AF_INET);
	assert_int_equal(sess_sock_from_repair(&rs, &good), 0);

	rs.local.sa.sa_family = AF_UNIX;
	memset(&ss, 0x33, sizeof(ss));
	keep = ss;
	assert_int_equal(sess_sock_from_repair(&rs, &ss), -EAFNOSUPPORT);
	assert_memory_equal(&ss, &keep, sizeof(ss));    /* out untouched */
	sample_repair(&rs, AF_INET6);
	rs.peer.sa.sa_family = AF_UNSPEC;
	assert_int_equal(sess_sock_from_repair(&rs, &ss), -EAFNOSUPPORT);

	ss = good;
	ss.local.family = AF_PACKET;
	memset(&back, 0x44, sizeof(back));
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EAFNOSUPPORT);
	ss = good;
	ss.peer.family = 0;
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EAFNOSUPPORT);
	for (size_t i = 0; i < sizeof(back); i++)
		assert_int_equal(((const uint8_t *)&back)[i], 0x44);
}

/* What repair_sock_check() refuses comes back as -EINVAL. */
static void
test_invalid_state(void **state)
{
	struct repair_sock rs, back;
	struct sync_sock good, ss;

	(void)state;
	sample_repair(&rs, AF_INET);
	assert_int_equal(sess_sock_from_repair(&rs, &good), 0);

	ss = good;
	ss.mss_clamp = 0;
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EINVAL);
	ss = good;
	ss.snd_wscale = 15;
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EINVAL);
	ss = good;
	ss.rcv_wscale = 15;
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EINVAL);
	ss = good;
	ss.opt_wscale = false;          /* scales without the option */
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EINVAL);
	ss = good;
	ss.local.port = 0;
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EINVAL);
	ss = good;
	ss.peer.family = AF_INET6;      /* families differ */
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EINVAL);
	ss = good;
	ss.max_window = ss.snd_wnd - 1;
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EINVAL);
	ss = good;
	ss.send_unsent = (uint32_t)ss.send_queue_len + 1;
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EINVAL);
	ss = good;
	ss.recv_queue = NULL;           /* a length without bytes */
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EINVAL);
	ss = good;
	ss.send_queue_len = (size_t)UINT32_MAX + 1;
	assert_int_equal(sess_sock_to_repair(&ss, &back), -EINVAL);
	assert_int_equal(sess_sock_to_repair(&good, &back), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_from_repair_ipv4),
		cmocka_unit_test(test_from_repair_ipv6),
		cmocka_unit_test(test_option_bits),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_no_queues),
		cmocka_unit_test(test_to_repair_borrows),
		cmocka_unit_test(test_sequence_wrap),
		cmocka_unit_test(test_bad_family),
		cmocka_unit_test(test_invalid_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
