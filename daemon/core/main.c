/*
 * tandemd — the daemon: configuration, the main (control) loop, the workers.
 *
 *   tandemd -c FILE        check FILE, print "configuration OK" or every error
 *   tandemd -f FILE [-d]   run in the foreground (-d: debug logging)
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tandem/agent.h>
#include <tandem/bal.h>
#include <tandem/config.h>
#include <tandem/ctl.h>
#include <tandem/health.h>
#include <tandem/log.h>
#include <tandem/metrics.h>
#include <tandem/nl.h>
#include <tandem/proxy.h>
#include <tandem/session.h>

#ifndef TANDEM_VERSION
#define TANDEM_VERSION "dev"
#endif

struct tandemd {
	struct cfg *cfg;
	struct ev_loop *loop;

	struct bal_pool **pools;          /* one per backend */
	struct hc **hcs;                  /* one per backend */
	size_t npools;

	struct proxy_frontend *fes;       /* one per frontend */
	size_t nfes;
	struct proxy_worker **workers;
	unsigned nworkers;

	struct nl_ctx *nl;                /* with vrrp-groups only */
	struct agent *agent;
	struct sess *sess;                /* with a sync block only */
	bool stopping;                    /* a handover before the exit is under way */

	struct ctl_view view;
	struct ctl *ctl;
	struct metrics *metrics;

	ev_signal sigterm, sigint, sighup;
};

static void
usage(void)
{
	fprintf(stderr,
	    "usage: tandemd -c FILE        check the configuration and exit\n"
	    "       tandemd -f FILE [-d]   run in the foreground (-d: debug log)\n"
	    "       tandemd -V             print the version\n");
	exit(2);
}

static void
tandemd_stop_now(struct tandemd *d)
{
	/* The peer hears priority 0 and takes over after Skew, not 3 intervals. */
	agent_stop(d->agent);
	ev_break(d->loop, EVBREAK_ALL);
}

static void
tandemd_handover_done(void *arg, int result)
{
	struct tandemd *d = arg;

	if (result < 0)
		log_warnx("tandemd: handover before exit: %s", strerror(-result));
	tandemd_stop_now(d);
}

static void
tandemd_stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct tandemd *d = w->data;

	(void)revents;
	log_info("tandemd: signal %d, shutting down", w->signum);
	/*
	 * shutdown-handover: the sessions go to the peer first (VIPs deleted,
	 * sockets dumped and closed silently, final state acknowledged). A
	 * second signal, or a handover that cannot start, stops at once.
	 */
	if (!d->stopping && d->cfg->sync.shutdown_handover &&
	    sess_can_handover(d->sess) &&
	    sess_switchover(d->sess, -1, tandemd_handover_done, d) == 0) {
		d->stopping = true;
		return;
	}
	tandemd_stop_now(d);
}

static void
tandemd_hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	/* Default SIGHUP would kill a gateway's proxy; say why nothing happens. */
	log_warnx("tandemd: SIGHUP: configuration reload is not supported yet, "
	    "keeping the running configuration");
}

static int
tandemd_build_pools(struct tandemd *d)
{
	const struct cfg *cfg = d->cfg;

	d->npools = cfg->nbackends;
	d->pools = calloc(d->npools, sizeof(*d->pools));
	d->hcs = calloc(d->npools, sizeof(*d->hcs));
	if (d->pools == NULL || d->hcs == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct cfg_backend *be = &cfg->backends[i];
		struct bal_server *tpl;

		tpl = calloc(be->nservers, sizeof(*tpl));
		if (tpl == NULL)
			return -ENOMEM;
		for (size_t j = 0; j < be->nservers; j++) {
			const struct cfg_server *cs = &be->servers[j];

			snprintf(tpl[j].name, sizeof(tpl[j].name), "%s", cs->name);
			tpl[j].addr = cs->addr;
			tpl[j].addrlen = cs->addrlen;
			tpl[j].weight = cs->weight;
			atomic_init(&tpl[j].state, (int)cs->state);
		}
		d->pools[i] = bal_pool_new(be->name, be->algo, tpl, be->nservers);
		free(tpl);
		if (d->pools[i] == NULL)
			return -ENOMEM;
		d->hcs[i] = hc_new(d->loop, d->pools[i], be);
		if (d->hcs[i] == NULL)
			return -ENOMEM;
	}
	return 0;
}

static int
tandemd_start_workers(struct tandemd *d)
{
	const struct cfg *cfg = d->cfg;
	long ncpu;
	int r;

	d->nfes = cfg->nfrontends;
	d->fes = calloc(d->nfes, sizeof(*d->fes));
	if (d->fes == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < d->nfes; i++) {
		d->fes[i].cfg = &cfg->frontends[i];
		d->fes[i].becfg = &cfg->backends[cfg->frontends[i].backend];
		d->fes[i].pool = d->pools[cfg->frontends[i].backend];
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	d->nworkers = cfg->node.workers ? cfg->node.workers :
	    (unsigned)(ncpu > 0 ? ncpu : 1);
	d->workers = calloc(d->nworkers, sizeof(*d->workers));
	if (d->workers == NULL)
		return -ENOMEM;
	if ((r = sess_new(d->loop, cfg, d->fes, d->nfes, d->nworkers, &d->sess)) < 0)
		return r;
	for (unsigned i = 0; i < d->nworkers; i++) {
		struct sess_worker_link link;
		bool linked = sess_worker_link(d->sess, i, &link) == 0;

		d->workers[i] = proxy_worker_new(i, d->fes, d->nfes,
		    linked ? &link : NULL);
		if (d->workers[i] == NULL)
			return -EADDRNOTAVAIL;
	}
	for (unsigned i = 0; i < d->nworkers; i++)
		if ((r = proxy_worker_start(d->workers[i])) < 0)
			return r;
	return 0;
}

/*
 * The default socket lives in /run/tandem, which systemd creates for us
 * (RuntimeDirectory=); started by hand, create the directory like it would.
 */
static void
tandemd_mkdir_parent(const char *path)
{
	char dir[CFG_PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return;
	*slash = '\0';
	if (mkdir(dir, 0750) == -1 && errno != EEXIST)
		log_warn("tandemd: mkdir %s", dir);
}

/* No vrrp-group: a plain proxy, no agent, no netlink. */
static int
tandemd_start_agent(struct tandemd *d)
{
	int r;

	if (d->cfg->nvrrp == 0)
		return sess_start(d->sess, NULL);
	if ((r = nl_new(d->loop, 0, &d->nl)) < 0)
		return r;
	if ((r = agent_new(d->loop, d->nl, d->cfg, d->pools, d->npools,
	    &d->agent)) < 0)
		return r;
	if ((r = agent_crash_guard(d->agent)) < 0)
		return r;
	if ((r = agent_keeper_start(d->agent)) < 0)
		return r;
	/* Before the first election: the hooks and the preemption gate. */
	if ((r = sess_start(d->sess, d->agent)) < 0)
		return r;
	agent_run(d->agent);
	return 0;
}

static int
tandemd_start_ctl(struct tandemd *d)
{
	const struct cfg_node *node = &d->cfg->node;

	d->view.cfg = d->cfg;
	d->view.fes = d->fes;
	d->view.nfes = d->nfes;
	d->view.pools = d->pools;
	d->view.hcs = d->hcs;
	d->view.npools = d->npools;
	d->view.workers = d->nworkers;
	d->view.agent = d->agent;
	d->view.sess = d->sess;
	d->view.started = ev_time();
	tandemd_mkdir_parent(node->control);
	d->ctl = ctl_new(d->loop, node->control, &d->view);
	if (d->ctl == NULL)
		return -errno;
	if (node->metrics.ss_family != AF_UNSPEC) {
		d->metrics = metrics_new(d->loop, (const struct sockaddr *)&node->metrics,
		    node->metricslen, &d->view);
		if (d->metrics == NULL)
			return -errno;
	}
	return 0;
}

static void
tandemd_teardown(struct tandemd *d)
{
	metrics_free(d->metrics);
	ctl_free(d->ctl);
	/* Before the pools (track-backend reads them) and netlink. */
	agent_stop(d->agent);
	/* Workers before the session: they push into its rings until they stop. */
	if (d->workers != NULL)
		for (unsigned i = 0; i < d->nworkers; i++)
			proxy_worker_stop_free(d->workers[i]);
	free(d->workers);
	sess_free(d->sess);
	agent_free(d->agent);
	nl_free(d->nl);
	free(d->fes);
	if (d->pools != NULL)
		for (size_t i = 0; i < d->npools; i++) {
			hc_free(d->hcs[i]);
			bal_pool_free(d->pools[i]);
		}
	free(d->hcs);
	free(d->pools);
	if (d->loop != NULL) {
		ev_signal_stop(d->loop, &d->sigterm);
		ev_signal_stop(d->loop, &d->sigint);
		ev_signal_stop(d->loop, &d->sighup);
	}
	cfg_free(d->cfg);
}

static int
tandemd_run(const char *file, int debug)
{
	struct tandemd d = { 0 };
	int r, ret = 1;

	r = cfg_load(file, stderr, &d.cfg);
	if (r != 0)
		return 1;
	log_init(debug ? LOG_LVL_DEBUG : (enum log_level)d.cfg->node.log_level, 0,
	    "tandemd");
	/* A peer closing mid-write must not kill the gateway. */
	signal(SIGPIPE, SIG_IGN);
	d.loop = ev_default_loop(EVFLAG_AUTO);
	if (d.loop == NULL) {
		log_warnx("tandemd: cannot create the event loop");
		goto out;
	}
	ev_signal_init(&d.sigterm, tandemd_stop_cb, SIGTERM);
	ev_signal_init(&d.sigint, tandemd_stop_cb, SIGINT);
	ev_signal_init(&d.sighup, tandemd_hup_cb, SIGHUP);
	d.sigterm.data = &d;
	d.sigint.data = &d;
	ev_signal_start(d.loop, &d.sigterm);
	ev_signal_start(d.loop, &d.sigint);
	ev_signal_start(d.loop, &d.sighup);

	if ((r = tandemd_build_pools(&d)) < 0) {
		errno = -r;
		log_warn("tandemd: cannot set up the backends");
		goto out;
	}
	if ((r = tandemd_start_workers(&d)) < 0) {
		errno = -r;
		log_warn("tandemd: cannot start the workers");
		goto out;
	}
	if ((r = tandemd_start_agent(&d)) < 0) {
		errno = -r;
		log_warn("tandemd: cannot start the heartbeat agent");
		goto out;
	}
	if ((r = tandemd_start_ctl(&d)) < 0) {
		errno = -r;
		log_warn("tandemd: cannot start the control interface");
		goto out;
	}
	log_info("tandemd: node %s running, %u workers, %zu frontends, %zu backends, "
	    "%zu vrrp-groups", d.cfg->node.name, d.nworkers, d.nfes, d.npools,
	    d.cfg->nvrrp);
	ev_run(d.loop, 0);
	ret = 0;
out:
	tandemd_teardown(&d);
	return ret;
}

int
main(int argc, char **argv)
{
	const char *check = NULL, *run = NULL;
	int debug = 0, ch;

	while ((ch = getopt(argc, argv, "c:f:dVh")) != -1) {
		switch (ch) {
		case 'c':
			check = optarg;
			break;
		case 'f':
			run = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'V':
			printf("tandemd %s\n", TANDEM_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (optind != argc || (check == NULL) == (run == NULL))
		usage();
	if (check != NULL) {
		struct cfg *cfg = NULL;
		int r = cfg_load(check, stderr, &cfg);

		/* Keys are read at start-up: a check that skipped them would lie. */
		if (r == 0)
			r = agent_check_keys(cfg, stderr);
		cfg_free(cfg);
		if (r != 0)
			return 1;
		printf("configuration OK\n");
		return 0;
	}
	return tandemd_run(run, debug);
}
