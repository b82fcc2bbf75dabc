/*
 * ring — the hand-off between threads (daemon/core/ring.c): a bounded
 * single-producer / single-consumer queue of fixed-size slots, and
 * ring_chan, which pairs one with an ev_async on the consumer's loop.
 *
 * Workers hand sync events (conn opened/updated/closed) to the main thread
 * through one channel per worker; the main thread hands restored sockets and
 * commands to each worker through another. One thread pushes, one thread
 * pops, per ring: two producers on one ring is a bug nothing here detects.
 *
 * Bounded on purpose: a full ring makes ring_push() fail with -ENOBUFS and
 * the producer decides what the loss means. For sync events it means "the
 * peer's table is no longer exact, schedule a full resync"; it is counted,
 * never silently dropped. No locks, no allocation after ring_new(), slots
 * are copied in and out (memcpy of slot_size bytes).
 *
 * Memory ordering. head counts slots ever pushed and is written only by the
 * producer; tail counts slots ever popped and is written only by the
 * consumer. Both run freely (size_t arithmetic is modulo 2^N and the
 * capacity, a power of two, divides 2^N, so head - tail is the fill and
 * index & (capacity - 1) the slot even after they wrap). They sit on
 * separate cache lines, each next to a private copy of the other side's
 * counter, so a side touches the other's line only when its copy says
 * "full" (producer) or "empty" (consumer).
 *  - push: write the slot, then store head with release. pop: load head
 *    with acquire before reading the slot. The consumer therefore sees the
 *    slot's bytes complete whenever it sees the head that covers it.
 *  - pop: read the slot, then store tail with release. push: load tail with
 *    acquire before writing a slot. The producer therefore never overwrites
 *    a slot the consumer is still copying out.
 *  That is all the ring itself needs; ring_push/ring_pop never fence.
 *
 * Wake-ups (ring_chan). The producer calls ev_async_send only when the slot
 * it just pushed is the only one the consumer has not taken, i.e. the ring
 * was empty before the push: a burst of events costs one wake-up, not one
 * syscall each. That test is a store-then-load on each side (producer:
 * store head, load tail; consumer: store tail, load head before going back
 * to sleep), which acquire/release alone does not order: both could read
 * the stale value, the producer skipping the wake-up and the consumer
 * sleeping on a non-empty ring. Both sides therefore put a seq_cst fence
 * between their store and their load. Of the two fences, one comes first
 * in the single total order of seq_cst fences; the side whose fence comes
 * second sees the other's store: either the producer sees tail caught up
 * to its slot and wakes the consumer, or the consumer sees the new head and
 * keeps draining. One fence per ring_chan_send() (an mfence on x86) costs
 * far less than the eventfd write it saves.
 *
 * Fairness: one wake-up delivers at most `batch` slots; if more remain the
 * consumer re-arms its own ev_async, so its loop polls its other watchers
 * before the next batch and a flooding producer cannot starve them.
 */
#ifndef TANDEM_RING_H
#define TANDEM_RING_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct ring;
struct ring_chan;

/*
 * A ring of capacity slots of slot_size bytes, in one allocation.
 * Returns 0 and *out, -EINVAL (slot_size 0, capacity 0 or not a power of
 * two, or a size that overflows) or -ENOMEM.
 */
int ring_new(size_t slot_size, size_t capacity, struct ring **out);

/* Free the ring and whatever slots it still holds. NULL is a no-op. */
void ring_free(struct ring *r);

/*
 * Producer only: copy slot_size bytes from slot into the ring.
 * Returns 0, or -ENOBUFS when the ring is full (nothing is copied; the
 * caller counts the overflow).
 */
int ring_push(struct ring *r, const void *slot);

/*
 * Consumer only: copy the oldest slot to slot (slot_size bytes) and
 * release it. Returns 1, or 0 when the ring is empty.
 */
int ring_pop(struct ring *r, void *slot);

/*
 * Consumer only: pop up to max slots into slots (max * slot_size bytes,
 * oldest first), releasing them all with one store. Returns how many.
 */
size_t ring_pop_batch(struct ring *r, void *slots, size_t max);

/*
 * Slots held, 0..capacity. Exact from the producer or the consumer when the
 * other side is idle; from anywhere else, a snapshot that may already be
 * out of date.
 */
size_t ring_count(const struct ring *r);

/* The capacity and slot size given to ring_new(). */
size_t ring_capacity(const struct ring *r);
size_t ring_slot_size(const struct ring *r);

/*
 * A ring plus the ev_async that wakes its consumer. Counters: wakeups,
 * delivered and rearms are kept by the consumer (read them on its thread);
 * sends by the producer (read on another thread, an approximate snapshot).
 */
struct ring_chan_stats {
	uint64_t wakeups;    /* ev_async callbacks run */
	uint64_t delivered;  /* slots handed to deliver() */
	uint64_t rearms;     /* wake-ups that ended with slots left (batch full) */
	uint64_t sends;      /* ev_async_send calls by the producer */
};

/*
 * Create a channel whose consumer runs on loop and starts its ev_async
 * there: call it on the loop's thread, or before that loop's thread runs.
 * Each wake-up pops at most batch slots (batch is capped at the capacity)
 * and calls deliver(arg, slot) for each in order; slot points into a
 * buffer of the channel, valid only during the call. deliver must not free
 * the channel nor call ring_chan_drain on it. Returns 0 and *out, -EINVAL
 * (batch 0, deliver NULL, or what ring_new rejects) or -ENOMEM.
 */
int ring_chan_new(struct ev_loop *loop, size_t slot_size, size_t capacity,
    size_t batch, void (*deliver)(void *arg, const void *slot), void *arg,
    struct ring_chan **out);

/*
 * Stop the ev_async and free the channel, dropping undelivered slots (call
 * ring_chan_drain first if they own resources). Consumer's thread, after
 * the producer has stopped sending. NULL is a no-op.
 */
void ring_chan_free(struct ring_chan *chan);

/*
 * Producer only: push slot and wake the consumer if the ring was empty.
 * Returns 0 or -ENOBUFS (full: nothing queued; the consumer already has a
 * wake-up pending, the caller counts the overflow).
 */
int ring_chan_send(struct ring_chan *chan, const void *slot);

/*
 * Consumer's thread: deliver every slot queued now, without the batch
 * bound (shutdown, or a producer known to be stopped). Returns how many.
 */
size_t ring_chan_drain(struct ring_chan *chan);

/* Slots queued; see ring_count(). */
size_t ring_chan_count(const struct ring_chan *chan);

/* Copy the counters (see struct ring_chan_stats for who may read what). */
void ring_chan_stats(const struct ring_chan *chan, struct ring_chan_stats *st);

#endif
