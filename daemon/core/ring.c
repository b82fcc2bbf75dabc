/* ring — see include/tandem/ring.h (the memory-ordering argument is there) */
#include <tandem/ring.h>

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

/*
 * 64 bytes is the line size of every x86-64 and most arm64 parts we run
 * on; a wider line only costs some false sharing, never correctness.
 */
#define RING_LINE 64

struct ring {
	/* The producer's line: head, and its last view of tail. */
	alignas(RING_LINE) atomic_size_t head;
	size_t tail_seen;
	/* The consumer's line: tail, and its last view of head. */
	alignas(RING_LINE) atomic_size_t tail;
	size_t head_seen;
	/* Read-only after ring_new(). */
	alignas(RING_LINE) size_t slot_size;
	size_t mask;
	unsigned char slots[];
};

struct ring_chan {
	struct ring *ring;
	struct ev_loop *loop;
	ev_async async;
	void (*deliver)(void *arg, const void *slot);
	void *arg;
	size_t batch;
	unsigned char *buf;          /* batch slots, the consumer's scratch */
	uint64_t wakeups;            /* consumer-only, like the next two */
	uint64_t delivered;
	uint64_t rearms;
	_Atomic uint64_t sends;      /* written by the producer only */
};

int
ring_new(size_t slot_size, size_t capacity, struct ring **out)
{
	struct ring *r;
	size_t bytes;

	if (slot_size == 0 || capacity == 0 || (capacity & (capacity - 1)) != 0)
		return -EINVAL;
	if (capacity > (SIZE_MAX - sizeof(*r) - RING_LINE) / slot_size)
		return -EINVAL;
	/* aligned_alloc wants a multiple of the alignment. */
	bytes = sizeof(*r) + slot_size * capacity;
	bytes = (bytes + RING_LINE - 1) & ~(size_t)(RING_LINE - 1);
	r = aligned_alloc(RING_LINE, bytes);
	if (r == NULL)
		return -ENOMEM;
	atomic_init(&r->head, 0);
	r->tail_seen = 0;
	atomic_init(&r->tail, 0);
	r->head_seen = 0;
	r->slot_size = slot_size;
	r->mask = capacity - 1;
	*out = r;
	return 0;
}

void
ring_free(struct ring *r)
{
	free(r);
}

/* The push itself; *at gets the index of the slot written. */
static int
ring_push_at(struct ring *r, const void *slot, size_t *at)
{
	size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);

	if (h - r->tail_seen > r->mask) {
		r->tail_seen = atomic_load_explicit(&r->tail,
		    memory_order_acquire);
		if (h - r->tail_seen > r->mask)
			return -ENOBUFS;
	}
	memcpy(r->slots + (h & r->mask) * r->slot_size, slot, r->slot_size);
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
	*at = h;
	return 0;
}

int
ring_push(struct ring *r, const void *slot)
{
	size_t at;

	return ring_push_at(r, slot, &at);
}

size_t
ring_pop_batch(struct ring *r, void *slots, size_t max)
{
	size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	unsigned char *dst = slots;
	size_t n, first;

	if (r->head_seen - t < max)
		r->head_seen = atomic_load_explicit(&r->head,
		    memory_order_acquire);
	n = r->head_seen - t;
	if (n > max)
		n = max;
	if (n == 0)
		return 0;
	/* At most two runs: up to the end of the array, then from its start. */
	first = r->mask + 1 - (t & r->mask);
	if (first > n)
		first = n;
	memcpy(dst, r->slots + (t & r->mask) * r->slot_size,
	    first * r->slot_size);
	memcpy(dst + first * r->slot_size, r->slots,
	    (n - first) * r->slot_size);
	atomic_store_explicit(&r->tail, t + n, memory_order_release);
	return n;
}

int
ring_pop(struct ring *r, void *slot)
{
	return ring_pop_batch(r, slot, 1) == 1;
}

size_t
ring_count(const struct ring *r)
{
	/*
	 * tail first: head only grows and never passes below tail, so the
	 * difference cannot go negative; it can exceed the capacity if both
	 * moved a lot in between, hence the clamp.
	 */
	size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	size_t h = atomic_load_explicit(&r->head, memory_order_acquire);

	return h - t > r->mask + 1 ? r->mask + 1 : h - t;
}

size_t
ring_capacity(const struct ring *r)
{
	return r->mask + 1;
}

size_t
ring_slot_size(const struct ring *r)
{
	return r->slot_size;
}

/*
 * The consumer's last look before it sleeps: has the producer pushed since
 * tail was stored? The fence pairs with the one in ring_chan_send (see the
 * header); the loads may then be relaxed.
 */
static int
ring_chan_idle(struct ring *r)
{
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load_explicit(&r->head, memory_order_relaxed) ==
	    atomic_load_explicit(&r->tail, memory_order_relaxed);
}

/* Pop up to max into the scratch buffer and hand each slot over. */
static size_t
ring_chan_pass(struct ring_chan *chan, size_t max)
{
	size_t n = ring_pop_batch(chan->ring, chan->buf, max);

	for (size_t i = 0; i < n; i++)
		chan->deliver(chan->arg, chan->buf + i * chan->ring->slot_size);
	chan->delivered += n;
	return n;
}

static void
ring_chan_wake(struct ev_loop *loop, ev_async *w, int revents)
{
	struct ring_chan *chan = w->data;
	size_t done = 0;

	chan->wakeups++;
	while (done < chan->batch) {
		done += ring_chan_pass(chan, chan->batch - done);
		if (done < chan->batch && ring_chan_idle(chan->ring))
			return;
	}
	/*
	 * The batch is used up. If more remain, wake ourselves again rather
	 * than loop: the loop polls its other watchers first.
	 */
	if (!ring_chan_idle(chan->ring)) {
		chan->rearms++;
		ev_async_send(loop, w);
	}
}

int
ring_chan_new(struct ev_loop *loop, size_t slot_size, size_t capacity,
    size_t batch, void (*deliver)(void *arg, const void *slot), void *arg,
    struct ring_chan **out)
{
	struct ring_chan *chan;
	int ret;

	if (batch == 0 || deliver == NULL)
		return -EINVAL;
	chan = calloc(1, sizeof(*chan));
	if (chan == NULL)
		return -ENOMEM;
	ret = ring_new(slot_size, capacity, &chan->ring);
	if (ret != 0)
		goto free_chan;
	if (batch > capacity)
		batch = capacity;
	ret = -ENOMEM;
	chan->buf = malloc(batch * slot_size);
	if (chan->buf == NULL)
		goto free_ring;
	chan->loop = loop;
	chan->deliver = deliver;
	chan->arg = arg;
	chan->batch = batch;
	atomic_init(&chan->sends, 0);
	ev_async_init(&chan->async, ring_chan_wake);
	chan->async.data = chan;
	ev_async_start(loop, &chan->async);
	*out = chan;
	return 0;

free_ring:
	ring_free(chan->ring);
free_chan:
	free(chan);
	return ret;
}

void
ring_chan_free(struct ring_chan *chan)
{
	if (chan == NULL)
		return;
	ev_async_stop(chan->loop, &chan->async);
	free(chan->buf);
	ring_free(chan->ring);
	free(chan);
}

int
ring_chan_send(struct ring_chan *chan, const void *slot)
{
	size_t at;
	int ret;

	ret = ring_push_at(chan->ring, slot, &at);
	if (ret != 0)
		return ret;
	/*
	 * tail == at: the consumer has taken everything before our slot, so
	 * it may be asleep or about to sleep; tail < at: it has not yet
	 * stored the tail that passes the older slots, and its fence in
	 * ring_chan_idle will then see our head. See the header.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&chan->ring->tail, memory_order_relaxed) == at) {
		atomic_store_explicit(&chan->sends,
		    atomic_load_explicit(&chan->sends, memory_order_relaxed) + 1,
		    memory_order_relaxed);
		ev_async_send(chan->loop, &chan->async);
	}
	return 0;
}

size_t
ring_chan_drain(struct ring_chan *chan)
{
	size_t total = 0, n;

	while ((n = ring_chan_pass(chan, chan->batch)) > 0)
		total += n;
	return total;
}

size_t
ring_chan_count(const struct ring_chan *chan)
{
	return ring_count(chan->ring);
}

void
ring_chan_stats(const struct ring_chan *chan, struct ring_chan_stats *st)
{
	st->wakeups = chan->wakeups;
	st->delivered = chan->delivered;
	st->rearms = chan->rearms;
	st->sends = atomic_load_explicit(&chan->sends, memory_order_relaxed);
}
