/*
 * pbuf — what the protobuf conversion modules (agent/wire.c, sync/frame.c)
 * share. Included only by those: nothing else sees protobuf-c.
 */
#ifndef TANDEM_PBUF_H
#define TANDEM_PBUF_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/*
 * protobuf-c returns NULL both for malformed input and for a failed
 * allocation; unpacking through this allocator tells the two apart, so
 * memory pressure is not counted as a peer sending garbage.
 */
struct pbuf_alloc {
	ProtobufCAllocator pa;
	int failed;               /* an allocation failed since pbuf_alloc_init */
};

void pbuf_alloc_init(struct pbuf_alloc *al);

/*
 * Read a protobuf varint at p[*off], advancing *off: for judging raw bytes
 * before protobuf-c, which only says "no". Returns 0, -ENODATA when it runs
 * off the end (a cut-off message) or -EBADMSG when it is over 10 bytes.
 */
int pbuf_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v);

#endif
