/*
 * nl — every rtnetlink conversation of the daemon, in one place (daemon/vip/nl.c).
 *
 * One struct nl_ctx per daemon, owned by the main thread, holds two sockets:
 *   - a request socket (non-blocking, NETLINK_EXT_ACK, NETLINK_CAP_ACK) on which
 *     nl_talk() runs one request at a time: it numbers the message, asks for an
 *     ACK and drains the answers, keeping only those with our sequence number
 *     and port id, so a late answer to an earlier request is skipped, never
 *     taken for the current one;
 *   - an event socket subscribed to link and IPv4/IPv6 address notifications,
 *     read by an ev_io on the caller's loop. Each notification is decoded into
 *     a struct nl_event and handed to every registered struct nl_watch.
 * When the kernel drops notifications because the event socket overflowed
 * (ENOBUFS), watchers receive NL_EV_RESYNC and must re-read the state they
 * care about with the request socket (nl_ifaddr_dump, nl_iflink_get).
 *
 * Address and link requests are built from libnl-route objects; the event
 * socket and the reply parsing use libmnl. Neither library leaks out of this
 * header: callers see struct nlmsghdr (a kernel uapi type) at most.
 *
 * Addresses added by nl_ifaddr_add() carry IFA_PROTO = NL_IFA_PROTO_TANDEM
 * (kernels >= 6.1 keep it; older ones ignore it), so a restarted daemon can
 * tell the VIPs it left behind from addresses an operator configured.
 */
#ifndef TANDEM_NL_H
#define TANDEM_NL_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <net/if.h>
#include <sys/socket.h>

struct ev_loop;
struct nlmsghdr;
struct nl_ctx;

/* Our IFA_PROTO value: outside the kernel's 0-3 and iproute2's named ones. */
#define NL_IFA_PROTO_TANDEM 0x74  /* 't' */

#define NL_HWADDR_MAX 32

enum nl_flags {
	NL_DEBUG = 1 << 0,  /* dump every message sent and received to stderr */
};

/*
 * Open both sockets and start the event watcher on loop. flags: enum nl_flags.
 * Returns 0 and *out (free with nl_free), or -errno (-EPERM without CAP_NET_ADMIN
 * is only seen later, on the first change request).
 */
int nl_new(struct ev_loop *loop, unsigned flags, struct nl_ctx **out);

/* Stop the watcher and close both sockets. NULL is a no-op. Watchers must be gone. */
void nl_free(struct nl_ctx *nl);

/*
 * Set the event socket's receive buffer (bytes; SO_RCVBUFFORCE, falling back to
 * SO_RCVBUF). nl_new() already sets a generous default; tests shrink it to
 * provoke ENOBUFS. Returns 0 or -errno.
 */
int nl_set_event_rcvbuf(struct nl_ctx *nl, int bytes);

/* Reply callback: one data message of the answer; return 0, or -errno to abort. */
typedef int (*nl_reply_cb)(struct nlmsghdr *nlh, void *arg);

/*
 * Send nlh on the request socket and wait for its answer (bounded: 1 s).
 * Sets nlmsg_seq and NLM_F_ACK itself. Every data message of the answer goes
 * to cb (may be NULL); the ACK or NLMSG_DONE ends the exchange.
 * Returns 0 or -errno (the kernel's error, or -ETIMEDOUT, or the callback's).
 * The kernel's extended-ACK text, when there is one, is logged, except for an
 * expected error: ignore_errno (a positive errno, 0 for none) is returned as
 * -ignore_errno but neither logged nor counted in nl_stats.request_errors.
 */
int nl_talk(struct nl_ctx *nl, struct nlmsghdr *nlh, nl_reply_cb cb, void *arg,
    int ignore_errno);

/* One interface address, as the kernel reports it. */
struct nl_ifaddr {
	int ifindex;
	struct sockaddr_storage addr;  /* AF_INET or AF_INET6, port 0 */
	unsigned prefixlen;
	uint32_t flags;                /* IFA_F_* (IFA_FLAGS when present) */
	uint8_t proto;                 /* IFA_PROTO, 0 when absent */
};

/* One interface, as the kernel reports it. */
struct nl_iflink {
	int ifindex;
	char name[IF_NAMESIZE];
	unsigned flags;                /* IFF_* */
	unsigned arptype;              /* ARPHRD_* */
	uint8_t operstate;             /* IF_OPER_* */
	uint8_t hwaddr[NL_HWADDR_MAX];
	size_t hwaddr_len;
};

/* 1 if the link can carry traffic: administratively up and running (carrier). */
int nl_iflink_is_up(const struct nl_iflink *link);

/*
 * Add addr/prefixlen to ifindex, replacing an identical address if present
 * (so an existing VIP is refreshed, not an error; the kernel then announces it
 * again with RTM_NEWADDR). IPv6 addresses get IFA_F_NODAD (see nl.c for why).
 * The address is marked with NL_IFA_PROTO_TANDEM. Returns 0 or -errno.
 */
int nl_ifaddr_add(struct nl_ctx *nl, int ifindex, const struct sockaddr *addr,
    unsigned prefixlen);

/* Delete addr/prefixlen from ifindex. Returns 0, -EADDRNOTAVAIL if absent, or -errno. */
int nl_ifaddr_del(struct nl_ctx *nl, int ifindex, const struct sockaddr *addr,
    unsigned prefixlen);

/*
 * Build, into buf, the RTM_DELADDR request nl_ifaddr_del() would send, with no
 * ACK asked, for a sender that cannot wait for answers (a fatal-signal handler,
 * see nl_send_raw). Returns the message length, or -ENOSPC / -errno.
 */
int nl_ifaddr_del_msg(int ifindex, const struct sockaddr *addr, unsigned prefixlen,
    void *buf, size_t len);

/*
 * Send a prebuilt message on the request socket without waiting for an answer.
 * Async-signal-safe (one sendto). Returns 0 or -errno.
 */
int nl_send_raw(const struct nl_ctx *nl, const void *msg, size_t len);

/* Address callback for dumps: return 0 to go on, -errno to abort. */
typedef int (*nl_ifaddr_cb)(const struct nl_ifaddr *ifa, void *arg);

/*
 * Dump the addresses of family (AF_INET, AF_INET6 or AF_UNSPEC for both) on
 * ifindex (0 = every interface) to cb. Returns 0 or -errno.
 */
int nl_ifaddr_dump(struct nl_ctx *nl, int family, int ifindex, nl_ifaddr_cb cb,
    void *arg);

/* Look an interface up by name (ifindex 0) or by index. Returns 0, -ENODEV, or -errno. */
int nl_iflink_get(struct nl_ctx *nl, const char *name, int ifindex,
    struct nl_iflink *out);

/* Notifications, decoded. */
enum nl_event_type {
	NL_EV_ADDR_NEW = 0,  /* ifaddr valid */
	NL_EV_ADDR_DEL,      /* ifaddr valid */
	NL_EV_LINK_NEW,      /* link valid: a new link or any change to one */
	NL_EV_LINK_DEL,      /* link valid (ifindex and name at least) */
	NL_EV_RESYNC,        /* notifications were lost: re-read what you track */
	NL_EV_COUNT
};

struct nl_event {
	enum nl_event_type type;
	union {
		struct nl_ifaddr ifaddr;
		struct nl_iflink link;
	} u;
};

/*
 * A subscriber, embedded in its owner; cb finds the owner in w->data.
 * Watchers may remove themselves or any other watcher from inside cb, and may
 * call nl_talk() there (it uses the other socket).
 */
struct nl_watch {
	struct nl_watch *next;
	void (*cb)(struct nl_watch *w, const struct nl_event *ev);
	void *data;  /* the owner */
};

void nl_watch_add(struct nl_ctx *nl, struct nl_watch *w);
void nl_watch_del(struct nl_ctx *nl, struct nl_watch *w);  /* not added: no-op */

/* The registered watchers, for a read-only walk along ->next (e.g. to find siblings). */
const struct nl_watch *nl_watches(const struct nl_ctx *nl);

/* The loop the context runs on (for watchers that need timers). */
struct ev_loop *nl_loop(const struct nl_ctx *nl);

/* Counters, for the control socket. */
struct nl_stats {
	uint64_t requests;        /* nl_talk calls */
	uint64_t request_errors;  /* nl_talk calls that returned an error */
	uint64_t stale_replies;   /* answers skipped: wrong sequence or port id */
	uint64_t events;          /* notifications decoded */
	uint64_t overflows;       /* ENOBUFS on the event socket (each led to a resync) */
};

const struct nl_stats *nl_stats(const struct nl_ctx *nl);

#endif
