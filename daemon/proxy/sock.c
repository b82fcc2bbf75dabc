/* proxy sock — small socket helpers shared by the listener and the connector. */
#include "proxy_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <unistd.h>

int
proxy_sock_freebind(int fd, int family)
{
	int one = 1;

	if (family == AF_INET6)
		return setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
	return setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
}

int
proxy_sock_fail(int fd)
{
	int e = errno;

	close(fd);
	return -e;
}
