/* proxy sock — small socket helpers shared by the listener and the connector. */
#include "proxy_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
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

void
proxy_sock_close(int fd, bool reset)
{
	if (fd == -1)
		return;
	if (reset) {
		/* SO_LINGER 0: the peer gets a RST, so it learns of the failure now. */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(fd);
}
