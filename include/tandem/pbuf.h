/*
 * pbuf — what the protobuf conversion modules (agent/wire.c, sync/frame.c)
 * share. Included only by those: nothing else sees protobuf-c.
 */
#ifndef TANDEM_PBUF_H
#define TANDEM_PBUF_H

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

#endif
