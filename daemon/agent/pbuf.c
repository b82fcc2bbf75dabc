/* pbuf — see include/tandem/pbuf.h */
#include <tandem/pbuf.h>

#include <errno.h>
#include <stdlib.h>

static void *
pbuf_alloc_fn(void *data, size_t size)
{
	struct pbuf_alloc *al = data;
	void *p = malloc(size);

	if (p == NULL)
		al->failed = 1;
	return p;
}

static void
pbuf_free_fn(void *data, void *p)
{
	(void)data;
	free(p);
}

void
pbuf_alloc_init(struct pbuf_alloc *al)
{
	al->pa.alloc = pbuf_alloc_fn;
	al->pa.free = pbuf_free_fn;
	al->pa.allocator_data = al;
	al->failed = 0;
}

int
pbuf_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
	uint64_t r = 0;

	for (unsigned i = 0; i < 10; i++) {
		uint8_t b;

		if (*off >= len)
			return -ENODATA;
		b = p[(*off)++];
		r |= (uint64_t)(b & 0x7f) << (7 * i);
		if ((b & 0x80) == 0) {
			*v = r;
			return 0;
		}
	}
	return -EBADMSG;
}
