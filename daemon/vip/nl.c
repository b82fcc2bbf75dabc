/*
 * nl — all rtnetlink traffic of the daemon. See include/tandem/nl.h.
 *
 * libnl-route builds the address and link requests and parses link objects;
 * libmnl owns both sockets, the reply loop and the notification decoder.
 */
#include <tandem/nl.h>
#include <tandem/log.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <ev.h>
#include <libmnl/libmnl.h>
#include <netlink/addr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/object.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

/* 32 KiB: the largest chunk the kernel puts in one dump read. */
#define NL_BUF_SIZE 32768
#define NL_TALK_TIMEOUT_MS 1000
#define NL_EVENT_RCVBUF (4 << 20)
/* Reads per event callback, so a storm of notifications cannot starve the loop. */
#define NL_EVENT_BATCH 64
/* After an overflow, reads allowed to empty the socket before the resync. */
#define NL_EVENT_DRAIN_MAX 4096

struct nl_ctx {
	struct ev_loop *loop;
	struct mnl_socket *req;
	struct mnl_socket *evs;
	unsigned req_portid;
	uint32_t seq;
	unsigned flags;
	int talking;                   /* nl_talk is not re-entrant */
	ev_io io;                      /* evs readable; data = this */
	struct nl_watch *watches;
	struct nl_watch *dispatch_next;/* lets a watcher remove the next one */
	struct nl_stats stats;
	/* Separate buffers: a watcher may call nl_talk while an event is decoded. */
	uint8_t rbuf[NL_BUF_SIZE] __attribute__((aligned(8)));
	uint8_t ebuf[NL_BUF_SIZE] __attribute__((aligned(8)));
};

static void nl_event_read(struct ev_loop *loop, ev_io *w, int revents);

static int
nl_libnl_err(int nlerr)
{
	/* libnl has its own error space; keep the one distinction callers act on. */
	return nlerr == -NLE_NOMEM ? -ENOMEM : -EINVAL;
}

static long long
nl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
nl_setsockopt_on(struct mnl_socket *s, int opt, const char *name)
{
	int on = 1;

	/* Optional features (old kernels lack them): note and carry on. */
	if (mnl_socket_setsockopt(s, opt, &on, sizeof(on)) == -1)
		log_debug("nl: %s unavailable: %s", name, strerror(errno));
}

int
nl_new(struct ev_loop *loop, unsigned flags, struct nl_ctx **out)
{
	struct nl_ctx *nl;
	int ret = -ENOMEM;

	nl = calloc(1, sizeof(*nl));
	if (nl == NULL)
		goto fail;
	nl->loop = loop;
	nl->flags = flags;
	nl->seq = (uint32_t)time(NULL);

	nl->req = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (nl->req == NULL) {
		ret = -errno;
		goto free_nl;
	}
	if (mnl_socket_bind(nl->req, 0, MNL_SOCKET_AUTOPID) == -1) {
		ret = -errno;
		goto close_req;
	}
	nl->req_portid = mnl_socket_get_portid(nl->req);
	/* The kernel explains its refusals in text (logged by nl_talk). */
	nl_setsockopt_on(nl->req, NETLINK_EXT_ACK, "NETLINK_EXT_ACK");
	/* ...without echoing our whole request back in every error. */
	nl_setsockopt_on(nl->req, NETLINK_CAP_ACK, "NETLINK_CAP_ACK");
	/* Dumps honour the ifindex filter in the request instead of sending all. */
	nl_setsockopt_on(nl->req, NETLINK_GET_STRICT_CHK, "NETLINK_GET_STRICT_CHK");

	nl->evs = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (nl->evs == NULL) {
		ret = -errno;
		goto close_req;
	}
	if (mnl_socket_bind(nl->evs,
	    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
	    MNL_SOCKET_AUTOPID) == -1) {
		ret = -errno;
		goto close_evs;
	}
	/*
	 * A burst of address or link changes must not overflow the queue; if it
	 * does anyway we resync (NL_EV_RESYNC), so a failure here is not fatal.
	 */
	if (nl_set_event_rcvbuf(nl, NL_EVENT_RCVBUF) < 0)
		log_warn("nl: cannot enlarge the event socket buffer");

	ev_io_init(&nl->io, nl_event_read, mnl_socket_get_fd(nl->evs), EV_READ);
	nl->io.data = nl;
	ev_io_start(loop, &nl->io);
	*out = nl;
	return 0;

close_evs:
	mnl_socket_close(nl->evs);
close_req:
	mnl_socket_close(nl->req);
free_nl:
	free(nl);
fail:
	return ret;
}

void
nl_free(struct nl_ctx *nl)
{
	if (nl == NULL)
		return;
	if (nl->watches != NULL)
		log_warnx("nl: freed with watchers still registered");
	ev_io_stop(nl->loop, &nl->io);
	mnl_socket_close(nl->evs);
	mnl_socket_close(nl->req);
	free(nl);
}

int
nl_set_event_rcvbuf(struct nl_ctx *nl, int bytes)
{
	int fd = mnl_socket_get_fd(nl->evs);

	/* FORCE passes net.core.rmem_max with CAP_NET_ADMIN, which we have. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) == 0)
		return 0;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) == 0)
		return 0;
	return -errno;
}

struct ev_loop *
nl_loop(const struct nl_ctx *nl)
{
	return nl->loop;
}

const struct nl_stats *
nl_stats(const struct nl_ctx *nl)
{
	return &nl->stats;
}

static void
nl_dump_msg(const struct nl_ctx *nl, const char *dir, const void *buf, size_t len,
    size_t extra)
{
	if (!(nl->flags & NL_DEBUG))
		return;
	fprintf(stderr, "nl: %s %zu bytes\n", dir, len);
	mnl_nlmsg_fprintf(stderr, buf, len, extra);
}

static const char *
nl_type_name(uint16_t type)
{
	switch (type) {
	case RTM_NEWADDR: return "RTM_NEWADDR";
	case RTM_DELADDR: return "RTM_DELADDR";
	case RTM_GETADDR: return "RTM_GETADDR";
	case RTM_NEWLINK: return "RTM_NEWLINK";
	case RTM_DELLINK: return "RTM_DELLINK";
	case RTM_GETLINK: return "RTM_GETLINK";
	default: return "request";
	}
}

static size_t
nl_extra_hdr(uint16_t type)
{
	switch (type) {
	case RTM_NEWADDR: case RTM_DELADDR: case RTM_GETADDR:
		return sizeof(struct ifaddrmsg);
	case RTM_NEWLINK: case RTM_DELLINK: case RTM_GETLINK:
		return sizeof(struct ifinfomsg);
	default:
		return 0;
	}
}

static int
nl_extack_attr(const struct nlattr *attr, void *data)
{
	const char **msg = data;

	if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
	    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
		*msg = mnl_attr_get_str(attr);
	return MNL_CB_OK;
}

/* The kernel's explanation of an error, from the extended ACK, or NULL. */
static const char *
nl_extack_msg(const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
	const char *msg = NULL;
	size_t off = sizeof(*err);

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return NULL;
	/* Without NETLINK_CAP_ACK the request itself sits between the two. */
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += err->msg.nlmsg_len - sizeof(struct nlmsghdr);
	if (off > mnl_nlmsg_get_payload_len(nlh))
		return NULL;
	mnl_attr_parse(nlh, (unsigned)off, nl_extack_attr, &msg);
	return msg;
}

/*
 * One chunk of an answer. Returns 1 when more is expected, 0 when the answer
 * is complete, or -errno for a kernel error or a malformed answer. A callback
 * error is kept in *cb_err while the rest is drained: leaving a dump half
 * read would make the next dump on this socket fail with EBUSY.
 */
static int
nl_talk_chunk(struct nl_ctx *nl, int len, uint32_t seq, uint16_t req_type,
    nl_reply_cb cb, void *arg, int ignore_errno, int *cb_err)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)nl->rbuf;

	for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
		const struct nlmsgerr *err;
		const char *why;
		int r;

		if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != nl->req_portid) {
			nl->stats.stale_replies++;
			log_debug("nl: reply seq %u port %u is not ours (seq %u), ignoring",
			    nlh->nlmsg_seq, nlh->nlmsg_pid, seq);
			continue;
		}
		switch (nlh->nlmsg_type) {
		case NLMSG_NOOP:
			continue;
		case NLMSG_ERROR:
			if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*err))
				return -EBADMSG;
			err = mnl_nlmsg_get_payload(nlh);
			if (err->error == 0 || -err->error == ignore_errno)
				return err->error;
			why = nl_extack_msg(nlh);
			if (why != NULL)
				log_warnx("nl: %s: %s (kernel: %s)", nl_type_name(req_type),
				    strerror(-err->error), why);
			return err->error;
		case NLMSG_DONE:
			/* A dump that failed half way says so in the DONE payload. */
			if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
				int e;

				memcpy(&e, mnl_nlmsg_get_payload(nlh), sizeof(e));
				if (e < 0)
					return e;
			}
			return 0;
		case NLMSG_OVERRUN:
			return -EOVERFLOW;
		default:
			if (cb != NULL && *cb_err == 0) {
				r = cb(nlh, arg);
				if (r < 0)
					*cb_err = r;
			}
		}
	}
	return 1;
}

static int
nl_wait_readable(int fd, long long deadline)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	long long left = deadline - nl_now_ms();
	int r;

	if (left <= 0)
		return -ETIMEDOUT;
	r = poll(&pfd, 1, (int)left);
	if (r == -1)
		return errno == EINTR ? 0 : -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

int
nl_talk(struct nl_ctx *nl, struct nlmsghdr *nlh, nl_reply_cb cb, void *arg,
    int ignore_errno)
{
	const uint16_t type = nlh->nlmsg_type;
	const int fd = mnl_socket_get_fd(nl->req);
	long long deadline;
	int ret, cb_err = 0;
	uint32_t seq;

	if (nl->talking)
		return -EDEADLK;
	nl->talking = 1;
	nl->stats.requests++;

	/* Zero is what notifications not caused by a request carry. */
	seq = ++nl->seq;
	if (seq == 0)
		seq = ++nl->seq;
	nlh->nlmsg_seq = seq;
	nlh->nlmsg_pid = 0;
	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nl_dump_msg(nl, "send", nlh, nlh->nlmsg_len, nl_extra_hdr(type));

	if (mnl_socket_sendto(nl->req, nlh, nlh->nlmsg_len) == -1) {
		ret = -errno;
		goto out;
	}
	/*
	 * rtnetlink answers from inside sendmsg(), so the reply is normally
	 * queued already; the bounded poll covers a kernel busy elsewhere.
	 */
	deadline = nl_now_ms() + NL_TALK_TIMEOUT_MS;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->req, nl->rbuf, sizeof(nl->rbuf));

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ret = nl_wait_readable(fd, deadline);
				if (ret < 0)
					goto out;
				continue;
			}
			ret = -errno;
			goto out;
		}
		nl_dump_msg(nl, "recv", nl->rbuf, (size_t)n, nl_extra_hdr(type));
		ret = nl_talk_chunk(nl, (int)n, seq, type, cb, arg, ignore_errno,
		    &cb_err);
		if (ret <= 0)
			break;
	}
	if (ret == 0)
		ret = cb_err;
out:
	if (ret < 0 && -ret != ignore_errno)
		nl->stats.request_errors++;
	nl->talking = 0;
	return ret;
}

int
nl_send_raw(const struct nl_ctx *nl, const void *msg, size_t len)
{
	if (mnl_socket_sendto(nl->req, msg, len) == -1)
		return -errno;
	return 0;
}

int
nl_iflink_is_up(const struct nl_iflink *link)
{
	return (link->flags & IFF_UP) && (link->flags & IFF_RUNNING);
}

static int
nl_sockaddr_bytes(const struct sockaddr *sa, const void **bytes, size_t *len)
{
	switch (sa->sa_family) {
	case AF_INET:
		*bytes = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		*len = 4;
		return 0;
	case AF_INET6:
		*bytes = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		*len = 16;
		return 0;
	default:
		return -EAFNOSUPPORT;
	}
}

/*
 * Build an RTM_NEWADDR (add != 0) or RTM_DELADDR request from a libnl address
 * object. Returns 0 and *out (nlmsg_free it), or -errno.
 */
static int
nl_ifaddr_msg(int add, int ifindex, const struct sockaddr *sa, unsigned prefixlen,
    struct nl_msg **out)
{
	struct rtnl_addr *obj;
	struct nl_addr *local;
	const void *bytes;
	size_t blen;
	int ret, r;

	ret = nl_sockaddr_bytes(sa, &bytes, &blen);
	if (ret < 0)
		goto fail;
	if (prefixlen > blen * 8 || ifindex <= 0) {
		ret = -EINVAL;
		goto fail;
	}
	ret = -ENOMEM;
	obj = rtnl_addr_alloc();
	if (obj == NULL)
		goto fail;
	local = nl_addr_build(sa->sa_family, bytes, blen);
	if (local == NULL)
		goto put_obj;
	rtnl_addr_set_ifindex(obj, ifindex);
	rtnl_addr_set_family(obj, sa->sa_family);
	r = rtnl_addr_set_local(obj, local);
	if (r < 0) {
		ret = nl_libnl_err(r);
		goto put_local;
	}
	rtnl_addr_set_prefixlen(obj, (int)prefixlen);
	/*
	 * IPv6 without duplicate address detection, as VRRP implementations do:
	 * the address moves between the two nodes by design, and during a
	 * takeover the old owner may still answer for it for a moment. DAD would
	 * then mark it "dadfailed" and never usable, and even when it succeeds
	 * it holds the address tentative (unusable, no RTM_NEWADDR without the
	 * flag) for a second or more. The election, not DAD, decides ownership.
	 */
	if (sa->sa_family == AF_INET6)
		rtnl_addr_set_flags(obj, IFA_F_NODAD);

	if (add)
		r = rtnl_addr_build_add_request(obj, NLM_F_REPLACE, out);
	else
		r = rtnl_addr_build_delete_request(obj, 0, out);
	if (r < 0) {
		ret = nl_libnl_err(r);
		goto put_local;
	}
	/* Our mark, so a restart can find what a crashed run left behind. */
	if (add && nla_put_u8(*out, IFA_PROTO, NL_IFA_PROTO_TANDEM) < 0) {
		nlmsg_free(*out);
		*out = NULL;
		ret = -ENOSPC;
		goto put_local;
	}
	ret = 0;
put_local:
	nl_addr_put(local);
put_obj:
	rtnl_addr_put(obj);
fail:
	return ret;
}

int
nl_ifaddr_add(struct nl_ctx *nl, int ifindex, const struct sockaddr *addr,
    unsigned prefixlen)
{
	struct nl_msg *msg;
	int ret;

	ret = nl_ifaddr_msg(1, ifindex, addr, prefixlen, &msg);
	if (ret < 0)
		return ret;
	ret = nl_talk(nl, nlmsg_hdr(msg), NULL, NULL, 0);
	nlmsg_free(msg);
	return ret;
}

int
nl_ifaddr_del(struct nl_ctx *nl, int ifindex, const struct sockaddr *addr,
    unsigned prefixlen)
{
	struct nl_msg *msg;
	int ret;

	ret = nl_ifaddr_msg(0, ifindex, addr, prefixlen, &msg);
	if (ret < 0)
		return ret;
	/* Absent is a normal answer (release is unconditional): not worth a warning. */
	ret = nl_talk(nl, nlmsg_hdr(msg), NULL, NULL, EADDRNOTAVAIL);
	nlmsg_free(msg);
	return ret;
}

int
nl_ifaddr_del_msg(int ifindex, const struct sockaddr *addr, unsigned prefixlen,
    void *buf, size_t len)
{
	struct nlmsghdr *nlh;
	struct nl_msg *msg;
	int ret;

	ret = nl_ifaddr_msg(0, ifindex, addr, prefixlen, &msg);
	if (ret < 0)
		return ret;
	nlh = nlmsg_hdr(msg);
	if (nlh->nlmsg_len > len) {
		ret = -ENOSPC;
		goto free_msg;
	}
	/* No ACK: nobody will read it. Sequence 0, like any unsolicited message. */
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = 0;
	memcpy(buf, nlh, nlh->nlmsg_len);
	ret = (int)nlh->nlmsg_len;
free_msg:
	nlmsg_free(msg);
	return ret;
}

static int
nl_ifaddr_attr(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);

	if (mnl_attr_type_valid(attr, IFA_MAX) < 0)
		return MNL_CB_OK;   /* newer than our headers */
	tb[type] = attr;
	return MNL_CB_OK;
}

/* Decode an RTM_NEWADDR/RTM_DELADDR. Returns 0, or -EBADMSG/-EAFNOSUPPORT. */
static int
nl_parse_ifaddr(const struct nlmsghdr *nlh, struct nl_ifaddr *out)
{
	const struct nlattr *tb[IFA_MAX + 1] = { NULL };
	const struct ifaddrmsg *ifa;
	const struct nlattr *a;
	size_t alen;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifa))
		return -EBADMSG;
	ifa = mnl_nlmsg_get_payload(nlh);
	if (mnl_attr_parse(nlh, sizeof(*ifa), nl_ifaddr_attr, tb) < 0)
		return -EBADMSG;
	memset(out, 0, sizeof(*out));
	out->ifindex = (int)ifa->ifa_index;
	out->prefixlen = ifa->ifa_prefixlen;
	out->flags = ifa->ifa_flags;
	if (tb[IFA_FLAGS] != NULL && mnl_attr_validate(tb[IFA_FLAGS], MNL_TYPE_U32) == 0)
		out->flags = mnl_attr_get_u32(tb[IFA_FLAGS]);
	if (tb[IFA_PROTO] != NULL && mnl_attr_validate(tb[IFA_PROTO], MNL_TYPE_U8) == 0)
		out->proto = mnl_attr_get_u8(tb[IFA_PROTO]);
	/* IFA_LOCAL is our address; IFA_ADDRESS is the peer's on point-to-point links. */
	a = tb[IFA_LOCAL] != NULL ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (a == NULL)
		return -EBADMSG;
	alen = mnl_attr_get_payload_len(a);
	switch (ifa->ifa_family) {
	case AF_INET: {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;

		if (alen != 4)
			return -EBADMSG;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, mnl_attr_get_payload(a), 4);
		return 0;
	}
	case AF_INET6: {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;

		if (alen != 16)
			return -EBADMSG;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, mnl_attr_get_payload(a), 16);
		return 0;
	}
	default:
		return -EAFNOSUPPORT;
	}
}

static int
nl_iflink_attr(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;

	if (mnl_attr_type_valid(attr, IFLA_MAX) < 0)
		return MNL_CB_OK;
	tb[mnl_attr_get_type(attr)] = attr;
	return MNL_CB_OK;
}

/* Decode an RTM_NEWLINK/RTM_DELLINK notification. Returns 0 or -EBADMSG. */
static int
nl_parse_iflink(const struct nlmsghdr *nlh, struct nl_iflink *out)
{
	const struct nlattr *tb[IFLA_MAX + 1] = { NULL };
	const struct ifinfomsg *ifi;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifi))
		return -EBADMSG;
	ifi = mnl_nlmsg_get_payload(nlh);
	if (mnl_attr_parse(nlh, sizeof(*ifi), nl_iflink_attr, tb) < 0)
		return -EBADMSG;
	memset(out, 0, sizeof(*out));
	out->ifindex = ifi->ifi_index;
	out->flags = ifi->ifi_flags;
	out->arptype = ifi->ifi_type;
	if (tb[IFLA_IFNAME] != NULL &&
	    mnl_attr_validate(tb[IFLA_IFNAME], MNL_TYPE_NUL_STRING) == 0)
		snprintf(out->name, sizeof(out->name), "%s",
		    mnl_attr_get_str(tb[IFLA_IFNAME]));
	if (tb[IFLA_OPERSTATE] != NULL &&
	    mnl_attr_validate(tb[IFLA_OPERSTATE], MNL_TYPE_U8) == 0)
		out->operstate = mnl_attr_get_u8(tb[IFLA_OPERSTATE]);
	if (tb[IFLA_ADDRESS] != NULL) {
		size_t n = mnl_attr_get_payload_len(tb[IFLA_ADDRESS]);

		if (n <= sizeof(out->hwaddr)) {
			memcpy(out->hwaddr, mnl_attr_get_payload(tb[IFLA_ADDRESS]), n);
			out->hwaddr_len = n;
		}
	}
	return 0;
}

struct nl_dump_arg {
	int family;
	int ifindex;
	nl_ifaddr_cb cb;
	void *arg;
};

static int
nl_dump_one(struct nlmsghdr *nlh, void *arg)
{
	struct nl_dump_arg *d = arg;
	struct nl_ifaddr ifa;

	if (nlh->nlmsg_type != RTM_NEWADDR || nl_parse_ifaddr(nlh, &ifa) < 0)
		return 0;
	/* Filter here too: kernels without strict checking send everything. */
	if (d->ifindex != 0 && ifa.ifindex != d->ifindex)
		return 0;
	if (d->family != AF_UNSPEC && ifa.addr.ss_family != d->family)
		return 0;
	return d->cb(&ifa, d->arg);
}

int
nl_ifaddr_dump(struct nl_ctx *nl, int family, int ifindex, nl_ifaddr_cb cb,
    void *arg)
{
	uint8_t buf[MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct ifaddrmsg))]
	    __attribute__((aligned(4)));
	struct nl_dump_arg d = { family, ifindex, cb, arg };
	struct nlmsghdr *nlh;
	struct ifaddrmsg *ifa;

	memset(buf, 0, sizeof(buf));
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)family;
	ifa->ifa_index = (unsigned)ifindex;
	return nl_talk(nl, nlh, nl_dump_one, &d, 0);
}

struct nl_link_arg {
	struct nl_iflink *out;
	int found;
};

static void
nl_link_obj(struct nl_object *obj, void *arg)
{
	struct nl_link_arg *la = arg;
	struct rtnl_link *link = (struct rtnl_link *)obj;
	struct nl_iflink *out = la->out;
	struct nl_addr *hw;
	const char *name;

	memset(out, 0, sizeof(*out));
	out->ifindex = rtnl_link_get_ifindex(link);
	name = rtnl_link_get_name(link);
	snprintf(out->name, sizeof(out->name), "%s", name != NULL ? name : "");
	out->flags = rtnl_link_get_flags(link);
	out->arptype = rtnl_link_get_arptype(link);
	out->operstate = rtnl_link_get_operstate(link);
	hw = rtnl_link_get_addr(link);
	if (hw != NULL && nl_addr_get_len(hw) <= sizeof(out->hwaddr)) {
		out->hwaddr_len = nl_addr_get_len(hw);
		memcpy(out->hwaddr, nl_addr_get_binary_addr(hw), out->hwaddr_len);
	}
	la->found = 1;
}

static int
nl_link_reply(struct nlmsghdr *nlh, void *arg)
{
	struct nl_msg *msg;
	int r;

	if (nlh->nlmsg_type != RTM_NEWLINK)
		return 0;
	msg = nlmsg_convert(nlh);
	if (msg == NULL)
		return -ENOMEM;
	/* libnl finds the link parser by protocol and message type. */
	nlmsg_set_proto(msg, NETLINK_ROUTE);
	r = nl_msg_parse(msg, nl_link_obj, arg);
	nlmsg_free(msg);
	return r < 0 ? nl_libnl_err(r) : 0;
}

int
nl_iflink_get(struct nl_ctx *nl, const char *name, int ifindex,
    struct nl_iflink *out)
{
	struct nl_link_arg la = { out, 0 };
	struct nl_msg *msg;
	int ret;

	if (ifindex == 0 && (name == NULL || name[0] == '\0' ||
	    strlen(name) >= IF_NAMESIZE))
		return -ENODEV;
	ret = rtnl_link_build_get_request(ifindex, ifindex == 0 ? name : NULL, &msg);
	if (ret < 0)
		return nl_libnl_err(ret);
	ret = nl_talk(nl, nlmsg_hdr(msg), nl_link_reply, &la, 0);
	nlmsg_free(msg);
	if (ret < 0)
		return ret;
	return la.found ? 0 : -ENODEV;
}

void
nl_watch_add(struct nl_ctx *nl, struct nl_watch *w)
{
	w->next = nl->watches;
	nl->watches = w;
}

void
nl_watch_del(struct nl_ctx *nl, struct nl_watch *w)
{
	struct nl_watch **pp;

	for (pp = &nl->watches; *pp != NULL; pp = &(*pp)->next) {
		if (*pp != w)
			continue;
		*pp = w->next;
		if (nl->dispatch_next == w)
			nl->dispatch_next = w->next;
		w->next = NULL;
		return;
	}
}

const struct nl_watch *
nl_watches(const struct nl_ctx *nl)
{
	return nl->watches;
}

static void
nl_dispatch(struct nl_ctx *nl, const struct nl_event *ev)
{
	struct nl_watch *w;

	for (w = nl->watches; w != NULL; w = nl->dispatch_next) {
		nl->dispatch_next = w->next;
		w->cb(w, ev);
	}
	nl->dispatch_next = NULL;
}

static void
nl_event_msg(struct nl_ctx *nl, const struct nlmsghdr *nlh)
{
	struct nl_event ev;

	switch (nlh->nlmsg_type) {
	case RTM_NEWADDR:
	case RTM_DELADDR:
		if (nl_parse_ifaddr(nlh, &ev.u.ifaddr) < 0)
			return;
		ev.type = nlh->nlmsg_type == RTM_NEWADDR ? NL_EV_ADDR_NEW : NL_EV_ADDR_DEL;
		break;
	case RTM_NEWLINK:
	case RTM_DELLINK: {
		const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);

		/* Bridge port copies (AF_BRIDGE) repeat what AF_UNSPEC says. */
		if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifi) ||
		    ifi->ifi_family != AF_UNSPEC)
			return;
		if (nl_parse_iflink(nlh, &ev.u.link) < 0)
			return;
		ev.type = nlh->nlmsg_type == RTM_NEWLINK ? NL_EV_LINK_NEW : NL_EV_LINK_DEL;
		break;
	}
	default:
		return;
	}
	nl->stats.events++;
	nl_dispatch(nl, &ev);
}

static void
nl_event_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct nl_ctx *nl = w->data;
	int overflow = 0, reads = 0;

	for (;;) {
		struct nlmsghdr *nlh = (struct nlmsghdr *)nl->ebuf;
		ssize_t n;
		int len;

		if (reads >= (overflow ? NL_EVENT_DRAIN_MAX : NL_EVENT_BATCH))
			break;
		reads++;
		n = mnl_socket_recvfrom(nl->evs, nl->ebuf, sizeof(nl->ebuf));
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				/*
				 * The kernel dropped notifications. Empty the queue
				 * first so the resync reads a state no queued (older)
				 * notification contradicts much.
				 */
				overflow = 1;
				nl->stats.overflows++;
				continue;
			}
			if (errno == ESRCH)   /* not from the kernel */
				continue;
			log_warn("nl: event socket");
			break;
		}
		nl_dump_msg(nl, "event", nl->ebuf, (size_t)n, 0);
		len = (int)n;
		for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len))
			nl_event_msg(nl, nlh);
	}
	if (overflow) {
		struct nl_event ev = { .type = NL_EV_RESYNC };

		log_warnx("nl: notifications lost (event socket overflow), resyncing");
		nl_dispatch(nl, &ev);
	}
}
