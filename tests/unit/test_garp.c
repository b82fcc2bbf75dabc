/*
 * test_garp — the announcement frames, byte for byte.
 *
 * The expected frames were written out by hand from RFC 826 / RFC 5227 (ARP)
 * and RFC 4861 (NA); the NA checksums were computed separately (Python) and
 * match what tcpdump -vv calls "icmp6 sum ok".
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <arpa/inet.h>

#include <tandem/vip.h>

static const uint8_t mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };

/* 198.18.0.100 */
static const uint8_t arp_request[60] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff,   /* broadcast */
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01,   /* our MAC */
	0x08, 0x06,                           /* ARP */
	0x00, 0x01, 0x08, 0x00, 0x06, 0x04,   /* Ethernet, IPv4, 6, 4 */
	0x00, 0x01,                           /* request */
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01,   /* sender MAC */
	0xc6, 0x12, 0x00, 0x64,               /* sender IP */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   /* target MAC: zero (RFC 5227) */
	0xc6, 0x12, 0x00, 0x64,               /* target IP = sender IP */
	/* 18 bytes of padding to the 60-byte minimum */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static const uint8_t arp_reply[60] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x08, 0x06,
	0x00, 0x01, 0x08, 0x00, 0x06, 0x04,
	0x00, 0x02,                           /* reply */
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
	0xc6, 0x12, 0x00, 0x64,
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01,   /* target MAC: ours, as arping -A */
	0xc6, 0x12, 0x00, 0x64,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* 2001:2::100, Router clear */
static const uint8_t na_frame[86] = {
	0x33, 0x33, 0x00, 0x00, 0x00, 0x01,   /* ff02::1 mapped */
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x86, 0xdd,                           /* IPv6 */
	0x60, 0x00, 0x00, 0x00,               /* version 6 */
	0x00, 0x20,                           /* payload length 32 */
	0x3a, 0xff,                           /* ICMPv6, hop limit 255 */
	0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,   /* src */
	0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,            /* dst */
	0x88, 0x00,                           /* NA, code 0 */
	0x12, 0x99,                           /* checksum */
	0x20, 0x00, 0x00, 0x00,               /* Override */
	0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,   /* target */
	0x02, 0x01,                           /* target link-layer address, 8 bytes */
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
};

static void
test_arp_request(void **state)
{
	uint8_t buf[VIP_FRAME_MAX];
	struct in_addr ip;

	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(inet_pton(AF_INET, "198.18.0.100", &ip), 1);
	assert_int_equal(vip_frame_arp(buf, sizeof(buf), mac, &ip, VIP_ARP_REQUEST), 60);
	assert_memory_equal(buf, arp_request, sizeof(arp_request));
}

static void
test_arp_reply(void **state)
{
	uint8_t buf[VIP_FRAME_MAX];
	struct in_addr ip;

	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(inet_pton(AF_INET, "198.18.0.100", &ip), 1);
	assert_int_equal(vip_frame_arp(buf, sizeof(buf), mac, &ip, VIP_ARP_REPLY), 60);
	assert_memory_equal(buf, arp_reply, sizeof(arp_reply));
}

static void
test_na(void **state)
{
	uint8_t buf[VIP_FRAME_MAX];
	struct in6_addr ip;

	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(inet_pton(AF_INET6, "2001:2::100", &ip), 1);
	assert_int_equal(vip_frame_na(buf, sizeof(buf), mac, &ip, false), 86);
	assert_memory_equal(buf, na_frame, sizeof(na_frame));
}

static void
test_na_router(void **state)
{
	uint8_t buf[VIP_FRAME_MAX], want[sizeof(na_frame)];
	struct in6_addr ip;

	memcpy(want, na_frame, sizeof(want));
	want[56] = 0x92;   /* checksum with the Router flag (computed separately) */
	want[57] = 0x98;
	want[58] = 0xa0;   /* Router | Override */
	assert_int_equal(inet_pton(AF_INET6, "2001:2::100", &ip), 1);
	assert_int_equal(vip_frame_na(buf, sizeof(buf), mac, &ip, true), 86);
	assert_memory_equal(buf, want, sizeof(want));
}

/* A correct checksum makes the sum over pseudo-header and message all ones. */
static void
test_na_checksum_verifies(void **state)
{
	uint8_t buf[VIP_FRAME_MAX];
	struct in6_addr ip, dst;

	assert_int_equal(inet_pton(AF_INET6, "2001:2:0:1::c612:64", &ip), 1);
	assert_int_equal(inet_pton(AF_INET6, "ff02::1", &dst), 1);
	assert_int_equal(vip_frame_na(buf, sizeof(buf), mac, &ip, false), 86);
	assert_int_equal(vip_icmp6_csum(&ip, &dst, buf + 54, 32), 0);
	buf[70] ^= 0x01;   /* any flipped bit breaks it */
	assert_int_not_equal(vip_icmp6_csum(&ip, &dst, buf + 54, 32), 0);
}

/* Reference: RFC 1071 sum with a 64-bit accumulator, byte by byte. */
static uint16_t
ref_csum(const uint8_t *src, const uint8_t *dst, const uint8_t *m, size_t len)
{
	uint64_t sum = 0;
	uint8_t ph[40];

	memcpy(ph, src, 16);
	memcpy(ph + 16, dst, 16);
	ph[32] = (uint8_t)(len >> 24);
	ph[33] = (uint8_t)(len >> 16);
	ph[34] = (uint8_t)(len >> 8);
	ph[35] = (uint8_t)len;
	ph[36] = ph[37] = ph[38] = 0;
	ph[39] = 58;
	for (size_t i = 0; i < 40; i++)
		sum += (uint64_t)ph[i] << ((i & 1) ? 0 : 8);
	for (size_t i = 0; i < len; i++)
		sum += (uint64_t)m[i] << ((i & 1) ? 0 : 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

static void
test_csum_odd_lengths(void **state)
{
	struct in6_addr a, b;
	uint8_t msg[301];
	uint32_t x = 12345;

	assert_int_equal(inet_pton(AF_INET6, "2001:2::ffff:1", &a), 1);
	assert_int_equal(inet_pton(AF_INET6, "fe80::1", &b), 1);
	for (size_t i = 0; i < sizeof(msg); i++) {
		x = x * 1103515245u + 12345u;
		msg[i] = (uint8_t)(x >> 16);
	}
	for (size_t len = 0; len <= sizeof(msg); len += 7)
		assert_int_equal(vip_icmp6_csum(&a, &b, msg, len),
		    ref_csum(a.s6_addr, b.s6_addr, msg, len));
}

static void
test_errors(void **state)
{
	uint8_t buf[VIP_FRAME_MAX];
	struct in_addr ip4 = { .s_addr = htonl(0xc6120064) };
	struct in6_addr ip6 = IN6ADDR_LOOPBACK_INIT;

	assert_int_equal(vip_frame_arp(buf, 59, mac, &ip4, VIP_ARP_REQUEST), -ENOSPC);
	assert_int_equal(vip_frame_arp(buf, sizeof(buf), mac, &ip4, 3), -EINVAL);
	assert_int_equal(vip_frame_na(buf, 85, mac, &ip6, false), -ENOSPC);
	assert_int_equal(vip_psock_send(-1, 1, buf, 10), -EINVAL);
}

static void
test_cfg_check(void **state)
{
	struct vip_garp_cfg c = VIP_GARP_CFG_DEFAULT;

	assert_int_equal(vip_garp_cfg_check(&c), 0);
	c.count = 0;
	assert_int_equal(vip_garp_cfg_check(&c), -EINVAL);
	c.count = 5;
	c.interval_ms = 2000;   /* the first burst would outlast the 5 s delay */
	assert_int_equal(vip_garp_cfg_check(&c), -EINVAL);
	c.second_delay_ms = 0;
	assert_int_equal(vip_garp_cfg_check(&c), 0);
	c.refresh_ms = 1000;
	c.refresh_count = 2;
	assert_int_equal(vip_garp_cfg_check(&c), -EINVAL);
	c.interval_ms = 100;
	assert_int_equal(vip_garp_cfg_check(&c), 0);
	assert_string_equal(vip_event_name(VIP_EV_READDED), "readded");
	assert_string_equal(vip_event_name(VIP_EV_COUNT), "?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_arp_request),
		cmocka_unit_test(test_arp_reply),
		cmocka_unit_test(test_na),
		cmocka_unit_test(test_na_router),
		cmocka_unit_test(test_na_checksum_verifies),
		cmocka_unit_test(test_csum_odd_lengths),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_cfg_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
