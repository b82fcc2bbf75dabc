/* pbuf — see include/tandem/pbuf.h */
#include <tandem/pbuf.h>

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
