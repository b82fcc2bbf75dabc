/* tclient_ping: ICMP echo over a raw socket — see tclient.h */
#include "tclient.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint16_t
tc_icmp_sum(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)(p[len - 1] << 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

static double
tc_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ICMP echo over a raw socket: the lab has no ping binary. */
int
tc_ping(const struct tc_opts *o)
{
	const struct sockaddr_in *dst = (const struct sockaddr_in *)&o->addr;
	uint16_t ident = (uint16_t)getpid();
	uint64_t received = 0;
	double rtt_sum = 0., rtt_max = 0.;
	int fd;

	if (o->addr.ss_family != AF_INET) {
		fprintf(stderr, "tclient: ping is IPv4 only\n");
		return 2;
	}
	fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (fd == -1) {
		perror("tclient: raw socket");
		return 1;
	}
	for (uint64_t seq = 0; seq < o->count; seq++) {
		struct icmphdr h = { 0 };
		double t0 = tc_mono(), deadline = t0 + (double)o->timeout_ms / 1000.;

		h.type = ICMP_ECHO;
		h.un.echo.id = htons(ident);
		h.un.echo.sequence = htons((uint16_t)seq);
		h.checksum = tc_icmp_sum(&h, sizeof(h));
		if (sendto(fd, &h, sizeof(h), 0, (const struct sockaddr *)dst,
		    sizeof(*dst)) == -1) {
			if (o->verbose)
				perror("tclient: ping send");
			usleep(100000);
			continue;
		}
		for (;;) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			unsigned char pkt[1500];
			const struct iphdr *ip = (const struct iphdr *)pkt;
			const struct icmphdr *r;
			double now = tc_mono();
			ssize_t n;
			size_t ihl;

			if (now >= deadline)
				break;
			if (poll(&pfd, 1, (int)((deadline - now) * 1000.) + 1) <= 0)
				continue;
			n = recv(fd, pkt, sizeof(pkt), 0);
			if (n < (ssize_t)sizeof(*ip))
				continue;
			ihl = (size_t)ip->ihl * 4;
			if ((size_t)n < ihl + sizeof(*r) || ip->saddr != dst->sin_addr.s_addr)
				continue;
			r = (const struct icmphdr *)(pkt + ihl);
			if (r->type != ICMP_ECHOREPLY || ntohs(r->un.echo.id) != ident ||
			    ntohs(r->un.echo.sequence) != (uint16_t)seq)
				continue;
			now = tc_mono();
			received++;
			rtt_sum += now - t0;
			if (now - t0 > rtt_max)
				rtt_max = now - t0;
			/* Pace like ping: one per 100 ms at most. */
			if (seq + 1 < o->count && now - t0 < 0.1)
				usleep((useconds_t)((0.1 - (now - t0)) * 1e6));
			break;
		}
	}
	close(fd);
	printf("{\"mode\":\"ping\",\"addr\":\"%s\",\"sent\":%llu,\"received\":%llu,"
	    "\"rtt_avg_ms\":%.3f,\"rtt_max_ms\":%.3f}\n", o->addr_str,
	    (unsigned long long)o->count, (unsigned long long)received,
	    received ? rtt_sum * 1000. / (double)received : 0., rtt_max * 1000.);
	return 0;
}
