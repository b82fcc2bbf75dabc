/*
 * garp — gratuitous ARP and unsolicited neighbour advertisement frames, and the
 * packet socket that sends them. See include/tandem/vip.h.
 *
 * Frames are built whole (Ethernet header included) and sent on a SOCK_RAW
 * packet socket, so nothing depends on routes or source address selection,
 * which may not be settled while the VIP is moving.
 */
#include <tandem/vip.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/icmp6.h>
#include <sys/socket.h>

#define GARP_ETH_HLEN 14
#define GARP_ARP_LEN 28
#define GARP_IP6_HLEN 40
#define GARP_NA_LEN 24        /* type, code, csum, flags + reserved, target */
#define GARP_OPT_LLA_LEN 8    /* type, length (in units of 8 bytes), MAC */
#define GARP_ETH_ZLEN 60      /* minimum frame without FCS */

static const uint8_t garp_bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
/* ff02::1, all nodes, and its Ethernet multicast mapping (RFC 2464 section 7). */
static const struct in6_addr garp_all_nodes = {
	.s6_addr = { 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01 } };
static const uint8_t garp_all_nodes_mac[6] = { 0x33, 0x33, 0x00, 0x00, 0x00, 0x01 };

static uint8_t *
garp_put(uint8_t *p, const void *src, size_t len)
{
	memcpy(p, src, len);
	return p + len;
}

static uint8_t *
garp_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

static uint8_t *
garp_eth(uint8_t *p, const uint8_t dst[6], const uint8_t src[6], uint16_t type)
{
	p = garp_put(p, dst, 6);
	p = garp_put(p, src, 6);
	return garp_put16(p, type);
}

int
vip_frame_arp(uint8_t *buf, size_t len, const uint8_t mac[6],
    const struct in_addr *ip, int op)
{
	static const uint8_t zero_mac[6];
	uint8_t *p = buf;

	if (op != VIP_ARP_REQUEST && op != VIP_ARP_REPLY)
		return -EINVAL;
	if (len < GARP_ETH_ZLEN)
		return -ENOSPC;
	memset(buf, 0, GARP_ETH_ZLEN);
	p = garp_eth(p, garp_bcast, mac, ETH_P_ARP);
	p = garp_put16(p, 1);          /* hardware type: Ethernet */
	p = garp_put16(p, ETH_P_IP);
	*p++ = 6;
	*p++ = 4;
	p = garp_put16(p, (uint16_t)op);
	p = garp_put(p, mac, 6);
	p = garp_put(p, &ip->s_addr, 4);
	/*
	 * Request: RFC 5227 announcement, target MAC zero. Reply: target MAC ours,
	 * as arping -A sends it; some hosts only update their cache from replies.
	 */
	p = garp_put(p, op == VIP_ARP_REQUEST ? zero_mac : mac, 6);
	garp_put(p, &ip->s_addr, 4);
	/* Padding stays zero: drivers that do not pad would send a runt. */
	return GARP_ETH_ZLEN;
}

uint16_t
vip_icmp6_csum(const struct in6_addr *src, const struct in6_addr *dst,
    const void *msg, size_t len)
{
	const uint8_t *m = msg;
	uint32_t sum = 0;

	for (size_t i = 0; i < 16; i += 2) {
		sum += (uint32_t)(src->s6_addr[i] << 8 | src->s6_addr[i + 1]);
		sum += (uint32_t)(dst->s6_addr[i] << 8 | dst->s6_addr[i + 1]);
	}
	/* Pseudo-header: upper-layer length (32 bits) and next header (58). */
	sum += (uint32_t)(len >> 16) + (uint32_t)(len & 0xffff);
	sum += IPPROTO_ICMPV6;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(m[i] << 8 | m[i + 1]);
	if (len & 1)
		sum += (uint32_t)(m[len - 1] << 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

int
vip_frame_na(uint8_t *buf, size_t len, const uint8_t mac[6],
    const struct in6_addr *ip, bool router)
{
	const size_t icmp_len = GARP_NA_LEN + GARP_OPT_LLA_LEN;
	const size_t total = GARP_ETH_HLEN + GARP_IP6_HLEN + icmp_len;
	uint8_t *p = buf, *icmp;
	uint16_t csum;

	if (len < total)
		return -ENOSPC;
	memset(buf, 0, total);
	p = garp_eth(p, garp_all_nodes_mac, mac, ETH_P_IPV6);
	*p++ = 0x60;                      /* version 6, traffic class and flow 0 */
	p += 3;
	p = garp_put16(p, (uint16_t)icmp_len);
	*p++ = IPPROTO_ICMPV6;
	*p++ = 255;                       /* receivers drop ND with any other hop limit */
	p = garp_put(p, ip, 16);
	p = garp_put(p, &garp_all_nodes, 16);

	icmp = p;
	*p++ = ND_NEIGHBOR_ADVERT;
	*p++ = 0;                         /* code */
	p += 2;                           /* checksum, below */
	/*
	 * Override: replace whatever MAC the receiver has for ip. Solicited must
	 * be clear for an unsolicited NA to a multicast group (RFC 4861 7.2.6).
	 * Router: a wrong clear flag would make hosts drop us as a default router.
	 */
	*p = 0x20;
	if (router)
		*p |= 0x80;
	p += 4;
	p = garp_put(p, ip, 16);
	*p++ = ND_OPT_TARGET_LINKADDR;
	*p++ = 1;                         /* option length in units of 8 bytes */
	garp_put(p, mac, 6);

	csum = vip_icmp6_csum(ip, &garp_all_nodes, icmp, icmp_len);
	memcpy(icmp + 2, &csum, 2);
	return (int)total;
}

int
vip_psock_open(void)
{
	/*
	 * Protocol 0: this socket only sends, so it never receives a copy of the
	 * traffic and needs no bind() (which would wait for an RCU grace period).
	 */
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return -errno;
	return fd;
}

int
vip_psock_send(int fd, int ifindex, const uint8_t *frame, size_t len)
{
	struct sockaddr_ll sll;
	ssize_t n;

	if (len < GARP_ETH_HLEN)
		return -EINVAL;
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = ifindex;
	memcpy(&sll.sll_protocol, frame + 12, 2);  /* already network order */
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, frame, 6);
	n = sendto(fd, frame, len, 0, (const struct sockaddr *)&sll, sizeof(sll));
	if (n == -1)
		return -errno;
	if ((size_t)n != len)
		return -EMSGSIZE;
	return 0;
}
