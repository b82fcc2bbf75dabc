/* proxy worker — one thread, one libev loop, its own listeners and connections. */
#include "proxy_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tandem/log.h>
#include <tandem/session.h>

#define PROXY_ACCEPT_BURST 64        /* accepts per readiness event, so one busy
                                        frontend cannot starve the others */
#define PROXY_LIMIT_RECHECK 0.05     /* s: paused at max-connections, recheck the
                                        shared count (another worker may free slots) */
#define PROXY_EMFILE_BACKOFF 0.1     /* s: out of fds, let some connections close */
#define PROXY_BACKLOG 4096

static int
proxy_listen_socket(const struct cfg_frontend *cfg)
{
	int one = 1;
	int fd;

	fd = socket(cfg->bind.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	/*
	 * SO_REUSEPORT: every worker has its own accept queue, the kernel spreads
	 * connections. IP_FREEBIND: a standby node listens on the VIP before it
	 * holds it, so taking over needs no bind.
	 */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
		goto fail;
	if (cfg->bind.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto fail;
	if (proxy_sock_freebind(fd, cfg->bind.ss_family) == -1)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&cfg->bind, cfg->bindlen) == -1)
		goto fail;
	if (listen(fd, PROXY_BACKLOG) == -1)
		goto fail;
	return fd;
fail:
	return proxy_sock_fail(fd);
}

static void
proxy_listener_pause(struct proxy_listener *l, enum proxy_pause why, ev_tstamp retry)
{
	ev_io_stop(l->w->loop, &l->io);
	l->paused = why;
	ev_timer_stop(l->w->loop, &l->resume);
	ev_timer_set(&l->resume, retry, 0.);
	ev_timer_start(l->w->loop, &l->resume);
}

static void
proxy_listener_resume(struct proxy_listener *l)
{
	ev_timer_stop(l->w->loop, &l->resume);
	if (l->paused != PROXY_LISTENING) {
		l->paused = PROXY_LISTENING;
		ev_io_start(l->w->loop, &l->io);
	}
}

/*
 * Reserve one connection slot on the frontend, shared by all workers. Taking
 * the slot before accept() is what makes max-connections exact: two workers
 * cannot both take the last one.
 */
static bool
proxy_slot_take(struct proxy_frontend *fe)
{
	unsigned cur = atomic_load_explicit(&fe->active, memory_order_relaxed);

	do {
		if (cur >= fe->cfg->max_conns)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&fe->active, &cur, cur + 1,
	    memory_order_relaxed, memory_order_relaxed));
	return true;
}

static void
proxy_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct proxy_listener *l = io->data;
	struct proxy_frontend *fe = l->fe;
	size_t fe_idx = (size_t)(l - l->w->listeners);

	for (int i = 0; i < PROXY_ACCEPT_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd;

		if (!proxy_slot_take(fe)) {
			/* Over the limit: leave clients in the kernel backlog, never drop. */
			atomic_fetch_add_explicit(&fe->stats.limit_pauses, 1,
			    memory_order_relaxed);
			proxy_listener_pause(l, PROXY_PAUSED_LIMIT, PROXY_LIMIT_RECHECK);
			return;
		}
		fd = accept4(l->fd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			int e = errno;

			atomic_fetch_sub_explicit(&fe->active, 1, memory_order_relaxed);
			switch (e) {
			case EAGAIN:
			case EINTR:
			case ECONNABORTED:
				return;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				/* Backing off lets connections close and free fds. */
				atomic_fetch_add_explicit(&fe->stats.accept_errors, 1,
				    memory_order_relaxed);
				errno = e;
				log_warn("frontend %s: worker %u: accept paused %.0f ms",
				    fe->cfg->name, l->w->id, PROXY_EMFILE_BACKOFF * 1000);
				proxy_listener_pause(l, PROXY_PAUSED_EMFILE, PROXY_EMFILE_BACKOFF);
				return;
			default:
				errno = e;
				log_warn("frontend %s: accept", fe->cfg->name);
				return;
			}
		}
		proxy_conn_accepted(l->w, fe, fe_idx, fd, &ss, len);
	}
	(void)loop;
	(void)revents;
}

static void
proxy_resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct proxy_listener *l = t->data;

	(void)loop;
	(void)revents;
	if (atomic_load_explicit(&l->fe->active, memory_order_relaxed) <
	    l->fe->cfg->max_conns)
		proxy_listener_resume(l);
	else
		proxy_listener_pause(l, PROXY_PAUSED_LIMIT, PROXY_LIMIT_RECHECK);
}

void
proxy_listener_slot_freed(struct proxy_worker *w, struct proxy_frontend *fe)
{
	for (size_t i = 0; i < w->nfes; i++) {
		struct proxy_listener *l = &w->listeners[i];

		/* An EMFILE pause keeps its backoff; only limit pauses end early. */
		if (l->fe == fe && l->paused == PROXY_PAUSED_LIMIT)
			proxy_listener_resume(l);
	}
}

static void
proxy_stop_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	(void)a;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void *
proxy_worker_main(void *arg)
{
	struct proxy_worker *w = arg;

	ev_run(w->loop, 0);
	return NULL;
}

static void
proxy_worker_release(struct proxy_worker *w)
{
	struct proxy_buf *b;

	psync_shutdown(w->sync);
	while (w->conns != NULL)
		proxy_conn_close(w->conns, false, "shutdown");
	psync_free(w->sync);
	if (w->listeners != NULL) {
		for (size_t i = 0; i < w->nfes; i++) {
			struct proxy_listener *l = &w->listeners[i];

			if (l->fd == -1)
				continue;
			ev_io_stop(w->loop, &l->io);
			ev_timer_stop(w->loop, &l->resume);
			close(l->fd);
		}
	}
	if (w->cursors != NULL)
		for (size_t i = 0; i < w->nfes; i++)
			bal_cursor_free(w->cursors[i]);
	while ((b = w->free_bufs) != NULL) {
		w->free_bufs = b->next;
		free(b);
	}
	if (w->loop != NULL) {
		ev_async_stop(w->loop, &w->stop);
		ev_loop_destroy(w->loop);
	}
	free(w->cursors);
	free(w->listeners);
	free(w);
}

struct proxy_worker *
proxy_worker_new(unsigned id, struct proxy_frontend *fes, size_t nfes,
    const struct sess_worker_link *link)
{
	struct proxy_worker *w;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->id = id;
	w->fes = fes;
	w->nfes = nfes;
	w->next_id = (uint64_t)id << 48;
	w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	w->listeners = calloc(nfes, sizeof(*w->listeners));
	w->cursors = calloc(nfes, sizeof(*w->cursors));
	if (w->loop == NULL || w->listeners == NULL || w->cursors == NULL) {
		log_warnx("worker %u: out of memory", id);
		goto fail;
	}
	ev_async_init(&w->stop, proxy_stop_cb);
	ev_async_start(w->loop, &w->stop);
	for (size_t i = 0; i < nfes; i++)
		w->listeners[i].fd = -1;

	for (size_t i = 0; i < nfes; i++) {
		struct proxy_listener *l = &w->listeners[i];
		int fd;

		if (fes[i].cfg->bufsize > w->bufsize)
			w->bufsize = fes[i].cfg->bufsize;
		w->cursors[i] = bal_cursor_new(fes[i].pool,
		    ((uint64_t)id << 32) ^ (uint64_t)i ^ (uint64_t)ev_time());
		if (w->cursors[i] == NULL) {
			log_warnx("worker %u: out of memory", id);
			goto fail;
		}
		fd = proxy_listen_socket(fes[i].cfg);
		if (fd < 0) {
			errno = -fd;
			log_warn("frontend %s: cannot listen", fes[i].cfg->name);
			goto fail;
		}
		l->w = w;
		l->fe = &fes[i];
		l->fd = fd;
		ev_io_init(&l->io, proxy_accept_cb, fd, EV_READ);
		l->io.data = l;
		ev_timer_init(&l->resume, proxy_resume_cb, 0., 0.);
		l->resume.data = l;
		ev_io_start(w->loop, &l->io);
	}
	if (link != NULL && link->events != NULL) {
		int r = psync_new(w, link);

		if (r < 0) {
			errno = -r;
			log_warn("worker %u: session sync", id);
			goto fail;
		}
	}
	return w;
fail:
	proxy_worker_release(w);
	return NULL;
}

int
proxy_worker_start(struct proxy_worker *w)
{
	int r = pthread_create(&w->thread, NULL, proxy_worker_main, w);

	if (r != 0)
		return -r;
	w->started = true;
	return 0;
}

void
proxy_worker_stop_free(struct proxy_worker *w)
{
	if (w == NULL)
		return;
	if (w->started) {
		ev_async_send(w->loop, &w->stop);
		pthread_join(w->thread, NULL);
	}
	proxy_worker_release(w);
}

unsigned
proxy_worker_conns(const struct proxy_worker *w)
{
	return atomic_load_explicit(&w->nconns, memory_order_relaxed);
}
