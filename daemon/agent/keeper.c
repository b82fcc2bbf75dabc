/*
 * keeper — a small process forked at start-up that outlives tandemd for one
 * purpose: when tandemd dies without a word (kill -9, the OOM killer), say
 * it for it. It deletes every VIP (vip_drop_signal_safe: pre-built netlink
 * messages) and sends the priority-0 adverts the daemon left ready, so the
 * peer takes over at once and no two nodes answer ARP for the VIP.
 *
 * How it knows: a pipe. tandemd holds the write end (close-on-exec, so a
 * hook or script it runs does not keep it); the keeper blocks in read() on
 * the other. EOF means tandemd is gone, however it died; one byte 'q' means
 * a clean exit (the daemon said goodbye itself) and the keeper just leaves.
 *
 * What it sends: adverts the daemon prepared (agent_lastword_prepare) in a
 * shared anonymous mapping, two buffers per group, the complete one named by
 * an atomic index, so a daemon killed mid-update leaves the previous,
 * complete set. Each prepared advert carries a sequence number reserved
 * ahead of the next real one, so the peer's anti-replay check accepts it.
 *
 * The child was forked from a threaded process: it calls only
 * async-signal-safe functions (read, sendto, the netlink sendto inside
 * vip_drop_signal_safe, _exit).
 */
#include "agent_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tandem/log.h>
#include <tandem/wire.h>

struct agent_lastword_pkt {
	size_t len;
	socklen_t dstlen;
	struct sockaddr_storage dst;
	uint8_t data[WIRE_ADVERT_MAX];
};

struct agent_lastword_set {
	int fd;                         /* the group's advert socket; -1: nothing to say */
	size_t n;
	struct agent_lastword_pkt pkt[CFG_MAX_PEERS];
};

/* One per group, in the shared mapping. */
struct agent_lastword {
	_Atomic unsigned cur;           /* buf[cur] is complete */
	struct agent_lastword_set buf[2];
};

static size_t
agent_lastword_size(size_t ngroups)
{
	return ngroups * sizeof(struct agent_lastword);
}

void
agent_lastword_prepare(struct agent_vg *vg, const struct wire_advert *tpl)
{
	struct agent_lastword *lw;
	struct agent_lastword_set *set;
	struct wire_advert adv = *tpl;
	unsigned next;

	if (vg->a->lastword == NULL)
		return;
	lw = &vg->a->lastword[vg - vg->a->vgs];
	next = !atomic_load_explicit(&lw->cur, memory_order_relaxed);
	set = &lw->buf[next];
	set->fd = vg->sock->fd;
	set->n = 0;
	adv.priority = 0;
	for (size_t i = 0; i < vg->ndst && i < CFG_MAX_PEERS; i++) {
		struct agent_lastword_pkt *p = &set->pkt[set->n];

		/* Reserved now: every later real advert gets a higher number. */
		adv.seq = ++vg->seq;
		if (wire_advert_encode(&adv, vg->keys, p->data, sizeof(p->data),
		    &p->len) < 0)
			continue;
		memcpy(&p->dst, &vg->dst[i], sizeof(p->dst));
		p->dstlen = vg->dstlen[i];
		set->n++;
	}
	atomic_store_explicit(&lw->cur, next, memory_order_release);
}

void
agent_lastword_clear(struct agent_vg *vg)
{
	struct agent_lastword *lw;
	unsigned next;

	if (vg->a->lastword == NULL)
		return;
	lw = &vg->a->lastword[vg - vg->a->vgs];
	next = !atomic_load_explicit(&lw->cur, memory_order_relaxed);
	lw->buf[next].fd = -1;
	lw->buf[next].n = 0;
	atomic_store_explicit(&lw->cur, next, memory_order_release);
}

/* The child: wait for the daemon's death, then act for it. Never returns. */
static void __attribute__((noreturn))
agent_keeper_main(const struct agent *a, int rfd)
{
	char c;
	ssize_t n;

	/* Not the daemon's signals: a terminal's ^C must not take us first. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	do {
		n = read(rfd, &c, 1);
	} while (n == -1 && errno == EINTR);
	if (n == 1 && c == 'q')
		_exit(0);
	for (size_t i = 0; i < a->nvgs; i++)
		if (a->vgs[i].vips != NULL)
			vip_drop_signal_safe(a->vgs[i].vips);
	for (size_t i = 0; i < a->nvgs; i++) {
		const struct agent_lastword *lw = &a->lastword[i];
		const struct agent_lastword_set *set =
		    &lw->buf[atomic_load_explicit(&lw->cur, memory_order_acquire)];

		if (set->fd < 0)
			continue;
		for (size_t k = 0; k < set->n; k++)
			(void)sendto(set->fd, set->pkt[k].data, set->pkt[k].len, 0,
			    (const struct sockaddr *)&set->pkt[k].dst, set->pkt[k].dstlen);
	}
	_exit(0);
}

int
agent_keeper_start(struct agent *a)
{
	int p[2];
	pid_t pid;
	void *m;

	m = mmap(NULL, agent_lastword_size(a->nvgs), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -errno;
	a->lastword = m;
	for (size_t i = 0; i < a->nvgs; i++) {
		a->lastword[i].buf[0].fd = -1;
		a->lastword[i].buf[1].fd = -1;
	}
	if (pipe2(p, O_CLOEXEC) == -1)
		goto fail_unmap;
	pid = fork();
	if (pid == -1) {
		close(p[0]);
		close(p[1]);
		goto fail_unmap;
	}
	if (pid == 0) {
		close(p[1]);
		agent_keeper_main(a, p[0]);
	}
	close(p[0]);
	a->keeper_pid = pid;
	a->keeper_fd = p[1];
	log_info("agent: keeper process %d drops the VIPs and tells the peer if "
	    "tandemd is killed", (int)pid);
	return 0;

fail_unmap:
	{
		int e = errno;

		munmap(a->lastword, agent_lastword_size(a->nvgs));
		a->lastword = NULL;
		return -e;
	}
}

void
agent_keeper_stop(struct agent *a)
{
	int status;

	if (a->keeper_fd >= 0) {
		/* A clean exit: the daemon said goodbye itself. */
		(void)!write(a->keeper_fd, "q", 1);
		close(a->keeper_fd);
		a->keeper_fd = -1;
	}
	if (a->keeper_pid > 0) {
		while (waitpid(a->keeper_pid, &status, 0) == -1 && errno == EINTR)
			;
		a->keeper_pid = 0;
	}
	if (a->lastword != NULL) {
		munmap(a->lastword, agent_lastword_size(a->nvgs));
		a->lastword = NULL;
	}
}
