/*
 * agent_track — what lowers a group's priority or forces it to FAULT
 * (tracked interfaces, backend pools, scripts), and the notify hooks.
 * See include/tandem/agent.h.
 *
 * Scripts and hooks are started with posix_spawn (the daemon has worker
 * threads: a plain fork would copy their locks mid-use) and reaped with
 * ev_child, so the loop never waits for them.
 */
#include "agent_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tandem/bal.h>
#include <tandem/log.h>

extern char **environ;

#define AGENT_WHY_MAX (CFG_PATH_MAX + 32)

/*
 * libev may block signals it handles (signalfd), and SIGPIPE is ignored:
 * a child must start with an empty mask and default dispositions.
 */
pid_t
agent_spawn(const char *path, char *const argv[])
{
	static const int dfl[] = { SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD,
	    SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM };
	posix_spawnattr_t attr;
	posix_spawn_file_actions_t fa;
	sigset_t none, def;
	pid_t pid = -1;
	int r;

	sigemptyset(&none);
	sigemptyset(&def);
	for (size_t i = 0; i < sizeof(dfl) / sizeof(dfl[0]); i++)
		sigaddset(&def, dfl[i]);
	if ((r = posix_spawnattr_init(&attr)) != 0)
		return -r;
	if ((r = posix_spawn_file_actions_init(&fa)) != 0) {
		posix_spawnattr_destroy(&attr);
		return -r;
	}
	(void)posix_spawnattr_setsigmask(&attr, &none);
	(void)posix_spawnattr_setsigdefault(&attr, &def);
	(void)posix_spawnattr_setflags(&attr,
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	(void)posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null",
	    O_RDONLY, 0);
	r = posix_spawn(&pid, path, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return r == 0 ? pid : -r;
}

/* ---- the totals given to the FSM --------------------------------------- */

static void
agent_track_update(struct agent_vg *vg, const char *why)
{
	const struct cfg_vrrp *vr = vg->cfg;
	unsigned faults = 0, dec = 0;
	double now = agent_clock();

	for (size_t i = 0; i < vg->nlinks; i++)
		if (!vg->links[i].up) {
			if (vg->links[i].cfg->weight == 0)
				faults++;
			else
				dec += vg->links[i].cfg->weight;
		}
	for (size_t i = 0; i < vr->ntrack_backend; i++)
		if (vg->backend_down[i])
			dec += vr->track_backend[i].weight;
	for (size_t i = 0; i < vg->nscripts; i++)
		if (vg->scripts[i].failing) {
			if (vg->scripts[i].cfg->weight == 0)
				faults++;
			else
				dec += vg->scripts[i].cfg->weight;
		}
	if (faults != vg->faults) {
		vg->faults = faults;
		agent_set_faults(vg->fsm, faults, why, now);
	}
	if (dec != vg->decrement) {
		vg->decrement = dec;
		agent_set_decrement(vg->fsm, dec, why, now);
	}
	agent_rearm_all(vg->a);
}

/* ---- interfaces ------------------------------------------------------- */

static void
agent_link_cb(struct vip_link *link, bool up, void *arg)
{
	struct agent_link *l = arg;
	char why[AGENT_WHY_MAX];

	if (l->up == up)
		return;
	l->up = up;
	snprintf(why, sizeof(why), "link %s %s", vip_link_name(link),
	    up ? "up" : "down");
	log_info("vrrp %s: tracked interface %s is %s (%s)", l->vg->cfg->name,
	    vip_link_name(link), up ? "up" : "down",
	    l->cfg->weight == 0 ? "fault" : "priority decrement");
	agent_track_update(l->vg, why);
}

/* ---- backends --------------------------------------------------------- */

static bool
agent_pool_down(const struct bal_pool *pool)
{
	for (size_t i = 0; i < pool->nservers; i++)
		if (atomic_load_explicit(&pool->servers[i].state,
		    memory_order_relaxed) == BAL_UP)
			return false;
	return true;
}

static void
agent_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent_vg *vg = w->data;
	const struct cfg_vrrp *vr = vg->cfg;
	char why[AGENT_WHY_MAX] = "";
	bool changed = false;

	for (size_t i = 0; i < vr->ntrack_backend; i++) {
		const struct cfg_track_backend *tb = &vr->track_backend[i];
		bool down;

		if (tb->backend >= vg->a->npools)
			continue;
		down = agent_pool_down(vg->a->pools[tb->backend]);
		if (down == vg->backend_down[i])
			continue;
		vg->backend_down[i] = down;
		changed = true;
		snprintf(why, sizeof(why), "backend %s %s", tb->name,
		    down ? "down" : "up");
		log_info("vrrp %s: tracked backend %s: %s", vr->name, tb->name,
		    down ? "every server down" : "a server is up again");
	}
	if (changed)
		agent_track_update(vg, why);
}

/* ---- scripts ---------------------------------------------------------- */

static void
agent_script_result(struct agent_script *s, bool ok, const char *detail)
{
	const struct cfg_track_script *c = s->cfg;
	char why[AGENT_WHY_MAX];

	if (ok) {
		s->fail_run = 0;
		s->ok_run++;
		if (!s->failing || s->ok_run < c->rise)
			return;
		s->failing = false;
	} else {
		s->ok_run = 0;
		s->fail_run++;
		if (s->failing || s->fail_run < c->fall)
			return;
		s->failing = true;
	}
	snprintf(why, sizeof(why), "script %s %s", c->path, ok ? "ok" : "failing");
	log_info("vrrp %s: track-script %s now %s (%s)", s->vg->cfg->name, c->path,
	    ok ? "passing" : "failing", detail);
	agent_track_update(s->vg, why);
}

static void
agent_script_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct agent_script *s = w->data;
	int st = w->rstatus;
	char detail[64];
	bool ok;

	ev_child_stop(loop, w);
	ev_timer_stop(loop, &s->timeout);
	s->pid = 0;
	if (s->killed)
		snprintf(detail, sizeof(detail), "killed after %u ms", s->cfg->timeout_ms);
	else if (WIFEXITED(st))
		snprintf(detail, sizeof(detail), "exit %d", WEXITSTATUS(st));
	else
		snprintf(detail, sizeof(detail), "signal %d", WTERMSIG(st));
	ok = !s->killed && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	s->killed = false;
	agent_script_result(s, ok, detail);
}

static void
agent_script_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent_script *s = w->data;

	if (s->pid <= 0)
		return;
	log_warnx("vrrp %s: track-script %s (pid %d) still running after %u ms, "
	    "killing it", s->vg->cfg->name, s->cfg->path, (int)s->pid,
	    s->cfg->timeout_ms);
	s->killed = true;
	s->vg->a->counters.script_killed++;
	(void)kill(s->pid, SIGKILL);
}

static void
agent_script_every_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent_script *s = w->data;
	char path[CFG_PATH_MAX];
	char *argv[2] = { path, NULL };
	pid_t pid;

	if (s->pid > 0)
		return;     /* still running (or being killed): skip this turn */
	snprintf(path, sizeof(path), "%s", s->cfg->path);
	pid = agent_spawn(path, argv);
	if (pid < 0) {
		char detail[64];

		snprintf(detail, sizeof(detail), "cannot run: %s", strerror((int)-pid));
		agent_script_result(s, false, detail);
		return;
	}
	s->vg->a->counters.script_runs++;
	s->pid = pid;
	s->killed = false;
	ev_child_set(&s->child, pid, 0);
	ev_child_start(loop, &s->child);
	ev_timer_set(&s->timeout, s->cfg->timeout_ms / 1000., 0.);
	ev_timer_start(loop, &s->timeout);
}

/* ---- life cycle ------------------------------------------------------- */

int
agent_track_init(struct agent_vg *vg)
{
	struct agent *a = vg->a;
	const struct cfg_vrrp *vr = vg->cfg;
	double now = agent_clock();
	char why[AGENT_WHY_MAX] = "";

	ev_timer_init(&vg->poll, agent_poll_cb, 0., vr->advert_interval_ms / 1000.);
	vg->poll.data = vg;
	for (size_t i = 0; i < vr->ntrack_if; i++) {
		struct agent_link *l = &vg->links[i];
		int r;

		l->vg = vg;
		l->cfg = &vr->track_if[i];
		r = vip_link_new(a->nl, l->cfg->ifname, agent_link_cb, l, &l->link);
		if (r < 0) {
			log_warnx("%s:%d: track-interface %s: %s", a->cfg->file,
			    l->cfg->line, l->cfg->ifname, strerror(-r));
			return r;
		}
		vg->nlinks++;
		l->up = vip_link_is_up(l->link);
		if (!l->up)
			snprintf(why, sizeof(why), "link %s down", l->cfg->ifname);
	}
	for (size_t i = 0; i < vr->ntrack_backend; i++) {
		const struct cfg_track_backend *tb = &vr->track_backend[i];

		if (tb->backend < a->npools && agent_pool_down(a->pools[tb->backend])) {
			vg->backend_down[i] = true;
			snprintf(why, sizeof(why), "backend %s down", tb->name);
		}
	}
	for (size_t i = 0; i < vr->ntrack_script; i++) {
		struct agent_script *s = &vg->scripts[i];

		s->vg = vg;
		s->cfg = &vr->track_script[i];
		ev_timer_init(&s->every, agent_script_every_cb, 0.,
		    s->cfg->interval_ms / 1000.);
		s->every.data = s;
		ev_timer_init(&s->timeout, agent_script_timeout_cb, 0., 0.);
		s->timeout.data = s;
		ev_child_init(&s->child, agent_script_child_cb, 0, 0);
		s->child.data = s;
		vg->nscripts++;
	}
	/*
	 * Before agent_start(): a group whose tracked link is down starts in
	 * FAULT instead of winning an election it must not hold. Scripts start
	 * as passing: a gateway should not stay in FAULT for rise × interval
	 * after every restart; a failing script takes it there after fall runs.
	 */
	vg->faults = 0;
	vg->decrement = 0;
	for (size_t i = 0; i < vg->nlinks; i++)
		if (!vg->links[i].up) {
			if (vg->links[i].cfg->weight == 0)
				vg->faults++;
			else
				vg->decrement += vg->links[i].cfg->weight;
		}
	for (size_t i = 0; i < vr->ntrack_backend; i++)
		if (vg->backend_down[i])
			vg->decrement += vr->track_backend[i].weight;
	if (vg->faults > 0)
		agent_set_faults(vg->fsm, vg->faults, why, now);
	if (vg->decrement > 0)
		agent_set_decrement(vg->fsm, vg->decrement, why, now);
	return 0;
}

void
agent_track_start(struct agent_vg *vg)
{
	struct ev_loop *loop = vg->a->loop;

	if (vg->cfg->ntrack_backend > 0)
		ev_timer_start(loop, &vg->poll);
	for (size_t i = 0; i < vg->nscripts; i++)
		ev_timer_start(loop, &vg->scripts[i].every);
}

void
agent_track_stop(struct agent_vg *vg)
{
	struct ev_loop *loop = vg->a->loop;

	ev_timer_stop(loop, &vg->poll);
	for (size_t i = 0; i < vg->nscripts; i++) {
		struct agent_script *s = &vg->scripts[i];

		ev_timer_stop(loop, &s->every);
		ev_timer_stop(loop, &s->timeout);
		if (s->pid > 0) {
			/* Not left behind: its verdict no longer matters. */
			(void)kill(s->pid, SIGKILL);
			(void)waitpid(s->pid, NULL, 0);
			ev_child_stop(loop, &s->child);
			s->pid = 0;
		}
	}
}

void
agent_track_free(struct agent_vg *vg)
{
	if (vg->a == NULL)
		return;     /* never initialised */
	agent_track_stop(vg);
	for (size_t i = 0; i < vg->nlinks; i++)
		vip_link_free(vg->links[i].link);
	vg->nlinks = 0;
}

/* ---- notify hooks ----------------------------------------------------- */

static void agent_notify_next(struct agent_notify *n);

static void
agent_notify_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct agent_notify *n = w->data;
	int st = w->rstatus;

	ev_child_stop(loop, w);
	ev_timer_stop(loop, &n->timeout);
	if (!n->killed && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		n->a->counters.notify_failed++;
		if (WIFEXITED(st))
			log_warnx("vrrp %s: notify %s exited %d", n->cur.vg->cfg->name,
			    n->cur.vg->cfg->notify, WEXITSTATUS(st));
		else
			log_warnx("vrrp %s: notify %s died of signal %d",
			    n->cur.vg->cfg->name, n->cur.vg->cfg->notify, WTERMSIG(st));
	}
	n->pid = 0;
	n->killed = false;
	agent_notify_next(n);
}

static void
agent_notify_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent_notify *n = w->data;

	if (n->pid <= 0)
		return;
	log_warnx("vrrp %s: notify %s (pid %d) still running after %u ms, killing "
	    "it", n->cur.vg->cfg->name, n->cur.vg->cfg->notify, (int)n->pid,
	    n->cur.vg->cfg->notify_timeout_ms);
	n->killed = true;
	n->a->counters.notify_killed++;
	(void)kill(n->pid, SIGKILL);
}

/* Start queued hooks until one runs (or none is left). */
static void
agent_notify_next(struct agent_notify *n)
{
	struct agent *a = n->a;

	while (n->pid == 0 && n->len > 0) {
		const struct cfg_vrrp *vr;
		char path[CFG_PATH_MAX], group[CFG_NAME_MAX], old[16], new_state[16];
		char *argv[5] = { path, group, old, new_state, NULL };
		pid_t pid;

		n->cur = n->q[n->head];
		n->head = (n->head + 1) % AGENT_NOTIFY_QUEUE_MAX;
		n->len--;
		vr = n->cur.vg->cfg;
		snprintf(path, sizeof(path), "%s", vr->notify);
		snprintf(group, sizeof(group), "%s", vr->name);
		snprintf(old, sizeof(old), "%s", agent_state_name(n->cur.old));
		snprintf(new_state, sizeof(new_state), "%s",
		    agent_state_name(n->cur.new_state));
		pid = agent_spawn(path, argv);
		if (pid < 0) {
			a->counters.notify_failed++;
			log_warnx("vrrp %s: notify %s: %s", vr->name, vr->notify,
			    strerror((int)-pid));
			continue;
		}
		a->counters.notify_runs++;
		n->pid = pid;
		n->killed = false;
		ev_child_set(&n->child, pid, 0);
		ev_child_start(a->loop, &n->child);
		ev_timer_set(&n->timeout, vr->notify_timeout_ms / 1000., 0.);
		ev_timer_start(a->loop, &n->timeout);
	}
}

void
agent_notify_init(struct agent *a)
{
	struct agent_notify *n = &a->notify;

	n->a = a;
	ev_child_init(&n->child, agent_notify_child_cb, 0, 0);
	n->child.data = n;
	ev_timer_init(&n->timeout, agent_notify_timeout_cb, 0., 0.);
	n->timeout.data = n;
}

void
agent_notify_push(struct agent *a, const struct agent_vg *vg,
    enum agent_state old, enum agent_state new_state)
{
	struct agent_notify *n = &a->notify;

	if (n->len == AGENT_NOTIFY_QUEUE_MAX) {
		a->counters.notify_dropped++;
		log_warnx("vrrp %s: notify queue full (%d waiting), not running the "
		    "hook for %s→%s", vg->cfg->name, AGENT_NOTIFY_QUEUE_MAX,
		    agent_state_name(old), agent_state_name(new_state));
		return;
	}
	n->q[(n->head + n->len) % AGENT_NOTIFY_QUEUE_MAX] =
	    (struct agent_notify_job){ vg, old, new_state };
	n->len++;
	/* A hook never calls into the FSM: starting it from here is fine. */
	if (!a->stopped)
		agent_notify_next(n);
}

void
agent_notify_stop(struct agent *a)
{
	struct agent_notify *n = &a->notify;

	if (n->a == NULL)
		return;
	ev_child_stop(a->loop, &n->child);
	ev_timer_stop(a->loop, &n->timeout);
	n->len = 0;
}
