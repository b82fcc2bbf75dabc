/*
 * vip — moving virtual IP addresses onto and off an interface, announcing them,
 * and watching link state (daemon/vip/vip.c, garp.c).
 *
 * A struct vip_set is one VIP group's addresses on one interface. The agent
 * drives it; the set reports back through one callback:
 *
 *   vip_cleanup_stale()   at start-up, before the node joins: remove addresses
 *                         of this set that a previous run left behind (it died
 *                         by SIGKILL or OOM and could not clean up).
 *   vip_take()            add every address (netlink, no announcement yet).
 *     -> VIP_EV_UP        once the kernel has confirmed every address with
 *                         RTM_NEWADDR (not when the request was ACKed: the
 *                         notification is what says the address is usable).
 *   vip_announce()        gratuitous ARP / unsolicited NA: one round at once,
 *                         then the configured repeats, a second burst after a
 *                         delay, and periodic refreshes while held.
 *                         Separate from vip_take() because the takeover rebuilds
 *                         the synced sockets in between: a repaired socket needs
 *                         the VIP present, and clients must keep talking to the
 *                         old MAC until it is rebuilt.
 *   vip_release()         remove every address and stop announcing.
 *     -> VIP_EV_DOWN      once the kernel has confirmed every removal.
 * While held, an address deleted by someone else is logged, counted and
 * re-added (VIP_EV_LOST, then VIP_EV_READDED once it is back).
 *
 * Nothing here removes addresses on its own: BACKUP, FAULT and shutdown call
 * vip_release(); vip_free() only frees. A fatal-signal handler can call
 * vip_drop_signal_safe().
 *
 * Callbacks are never run from inside a vip_* call: they come from the loop
 * (netlink events, timers). vip_free() must not be called from inside the
 * set's own callback; defer it (ev_idle / ev_prepare).
 *
 * Packet sockets are opened by vip_new(), never on the takeover path: closing
 * an AF_PACKET socket waits for an RCU grace period (about 15 ms).
 *
 * Interfaces must be Ethernet-like (ARPHRD_ETHER) for announcements. Keep the
 * kernel's own announcements off (arp_notify, ndisc_notify: the defaults), or
 * it will announce the VIP before the sockets are rebuilt.
 *
 * Main thread only. No globals: everything hangs off the struct nl_ctx and the sets.
 */
#ifndef TANDEM_VIP_H
#define TANDEM_VIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct nl_ctx;
struct vip_set;
struct vip_link;

#define VIP_MAX_ADDRS 64  /* per set */

enum vip_na_router {
	VIP_NA_ROUTER_AUTO = 0,  /* Router flag = net.ipv6.conf.<if>.forwarding at vip_new() */
	VIP_NA_ROUTER_ON,
	VIP_NA_ROUTER_OFF,
};

/*
 * Announcement schedule. A round is, per address held: an ARP request
 * (sender IP = target IP = VIP) and, with arp_reply, an unsolicited ARP reply;
 * or one unsolicited NA with the Override flag. Durations in milliseconds.
 */
struct vip_garp_cfg {
	unsigned count;          /* rounds per burst, 1..100 */
	unsigned interval_ms;    /* between rounds of a burst, 0..10000 (0: back to back) */
	unsigned second_delay_ms;/* first burst's start to a second burst; 0 = none */
	unsigned refresh_ms;     /* after the bursts, a round this often while held; 0 = off */
	unsigned refresh_count;  /* rounds per refresh, 1..100 */
	bool arp_reply;          /* also send unsolicited ARP replies (some hosts ignore requests) */
	enum vip_na_router na_router;
};

/*
 * Defaults: three rounds 50 ms apart (one lost frame, or a switch still
 * learning that the MAC moved, does not lose the announcement), a second burst
 * after 5 s as keepalived does (hosts that were busy or had the old entry
 * locked pick it up then), no periodic refresh.
 */
#define VIP_GARP_CFG_DEFAULT { \
	.count = 3, .interval_ms = 50, .second_delay_ms = 5000, \
	.refresh_ms = 0, .refresh_count = 1, .arp_reply = true, \
	.na_router = VIP_NA_ROUTER_AUTO }

/* Check ranges; returns 0 or -EINVAL. */
int vip_garp_cfg_check(const struct vip_garp_cfg *cfg);

#define VIP_EVENTS(X)                                                        \
	X(VIP_EV_UP, "up")          /* every address confirmed after vip_take */ \
	X(VIP_EV_DOWN, "down")      /* every address gone after vip_release */  \
	X(VIP_EV_LOST, "lost")      /* a held address was deleted by someone else */ \
	X(VIP_EV_READDED, "readded")/* ... and is back */                       \
	X(VIP_EV_ERROR, "error")    /* a netlink request failed; retried every second */

enum vip_event_type {
#define VIP_EV_ENUM(e, s) e,
	VIP_EVENTS(VIP_EV_ENUM)
#undef VIP_EV_ENUM
	VIP_EV_COUNT
};

const char *vip_event_name(enum vip_event_type type);

struct vip_event {
	enum vip_event_type type;
	/* LOST, READDED, ERROR: the address concerned (text as "198.18.0.100/24"); else NULL. */
	const struct sockaddr *addr;
	const char *addr_text;
	/*
	 * UP: vip_take() to the last RTM_NEWADDR; DOWN: vip_release() to the last
	 * RTM_DELADDR; READDED: the deletion seen to the address back. In µs.
	 */
	uint64_t latency_us;
	int error;  /* ERROR: -errno */
};

typedef void (*vip_event_cb)(struct vip_set *set, const struct vip_event *ev, void *arg);

/* Counters, for the control socket and the metrics. */
struct vip_stats {
	uint64_t adds;           /* add requests the kernel accepted */
	uint64_t removes;        /* delete requests the kernel accepted */
	uint64_t readds;         /* held addresses deleted by someone else and re-added */
	uint64_t stale_removed;  /* left by a previous run, removed by vip_cleanup_stale */
	uint64_t garps_sent;     /* ARP frames (requests and replies) */
	uint64_t nas_sent;       /* neighbour advertisements */
	uint64_t send_errors;    /* announcement frames the socket refused */
	uint64_t nl_errors;      /* add/delete requests that failed */
	uint64_t resyncs;        /* state re-read after lost notifications */
};

/*
 * Create a set for ifname: looks the interface up (index, MAC), opens the
 * packet socket, registers with nl. cfg is copied; NULL means the defaults.
 * cb receives every event with arg. Returns 0 and *out (free with vip_free),
 * -ENODEV (no such interface), -EINVAL (bad cfg), -EPERM, or -errno.
 */
int vip_new(struct nl_ctx *nl, const char *ifname, const struct vip_garp_cfg *cfg,
    vip_event_cb cb, void *arg, struct vip_set **out);

/* Unregister and free. Does not remove addresses (vip_release does). NULL is a no-op. */
void vip_free(struct vip_set *set);

/*
 * Add an address to the set (not to the interface). addr is AF_INET or AF_INET6,
 * copied. Returns 0, -EAFNOSUPPORT, -EINVAL (prefix length), -EEXIST,
 * -ENOSPC (VIP_MAX_ADDRS), -EBUSY (the set is held).
 */
int vip_add_addr(struct vip_set *set, const struct sockaddr *addr, unsigned prefixlen);

/*
 * Start-up: remove from the interface every address of the set, and every
 * address carrying tandem's IFA_PROTO mark (VIPs since dropped from the
 * config), left there by a previous run. Synchronous. Call before the node
 * joins; -EBUSY if the set is held. Returns the number removed, or -errno.
 */
int vip_cleanup_stale(struct vip_set *set);

/*
 * Add every address (one already present is replaced, so the kernel confirms
 * it afresh). VIP_EV_UP follows from the loop once the kernel has confirmed
 * them all, with the time since this call. A request that fails is retried
 * every second; the first error is returned (the set is held regardless: call
 * vip_release to give up). Held already: returns 0 and does nothing.
 */
int vip_take(struct vip_set *set);

/*
 * Send the first announcement round now and schedule the rest. Restarts the
 * schedule if one is running (a fresh burst, e.g. after a partition heals).
 * Only addresses the kernel has confirmed are announced. Returns 0, -EINVAL
 * if the set is not held, or the first send error (the schedule still runs).
 */
int vip_announce(struct vip_set *set);

/*
 * Stop announcing and delete every address, whether it looks present or not
 * (an absent one is not an error), so none is ever left behind: call it on
 * entering BACKUP or FAULT, and at shutdown. VIP_EV_DOWN follows once the
 * kernel has confirmed the removals. Failed deletes are retried every second.
 * Returns 0 or the first error.
 */
int vip_release(struct vip_set *set);

/*
 * Fatal-signal path: send, without waiting, a delete for every address of the
 * set. Async-signal-safe (prebuilt messages, one sendto each); no state changes.
 */
void vip_drop_signal_safe(const struct vip_set *set);

bool vip_is_held(const struct vip_set *set);
bool vip_is_up(const struct vip_set *set);       /* held and every address confirmed */
size_t vip_count(const struct vip_set *set);
const char *vip_ifname(const struct vip_set *set);
const struct vip_stats *vip_stats(const struct vip_set *set);

/*
 * Link tracking: calls cb(link, up, arg) whenever the interface's usable state
 * changes ("up" = administratively up and running, i.e. with carrier). A link
 * that disappears is down; one that reappears under the same name (new index)
 * is followed. Returns 0 and *out, -ENODEV if ifname does not exist now, or -errno.
 */
typedef void (*vip_link_cb)(struct vip_link *link, bool up, void *arg);

int vip_link_new(struct nl_ctx *nl, const char *ifname, vip_link_cb cb, void *arg,
    struct vip_link **out);
void vip_link_free(struct vip_link *link);  /* NULL is a no-op; not from inside cb */
bool vip_link_is_up(const struct vip_link *link);
const char *vip_link_name(const struct vip_link *link);
uint64_t vip_link_changes(const struct vip_link *link);  /* state changes seen */

/*
 * Frame builders (garp.c), exposed for the unit tests. Each writes a complete
 * Ethernet frame into buf and returns its length, or -ENOSPC / -EINVAL.
 *   ARP: broadcast; op VIP_ARP_REQUEST (target MAC zero, RFC 5227 announcement)
 *        or VIP_ARP_REPLY (target MAC = ours); padded to the 60-byte minimum.
 *   NA:  to ff02::1 (33:33:00:00:00:01), hop limit 255, source and target = ip,
 *        Override set, Solicited clear, Router as given, target link-layer
 *        address option = mac; ICMPv6 checksum filled in.
 */
#define VIP_ARP_REQUEST 1
#define VIP_ARP_REPLY 2
#define VIP_FRAME_MAX 128

int vip_frame_arp(uint8_t *buf, size_t len, const uint8_t mac[6],
    const struct in_addr *ip, int op);
int vip_frame_na(uint8_t *buf, size_t len, const uint8_t mac[6],
    const struct in6_addr *ip, bool router);

/* The ICMPv6 checksum over the IPv6 pseudo-header and msg (network order result). */
uint16_t vip_icmp6_csum(const struct in6_addr *src, const struct in6_addr *dst,
    const void *msg, size_t len);

/*
 * Packet socket for announcements (garp.c): opened once, up front. The frame
 * goes out on ifindex as is. Returns the fd or -errno; send returns 0 or -errno.
 */
int vip_psock_open(void);
int vip_psock_send(int fd, int ifindex, const uint8_t *frame, size_t len);

#endif
