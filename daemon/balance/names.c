/* bal names — the words the config and tandemctl use for algorithms and states. */
#include <tandem/bal.h>

#include <string.h>

static const char *const bal_algo_names[BAL_ALGO_COUNT] = {
	[BAL_ROUNDROBIN] = "roundrobin",
	[BAL_WRR] = "wrr",
	[BAL_LEASTCONN] = "leastconn",
	[BAL_SOURCE] = "source",
	[BAL_LRT] = "lrt",
	[BAL_P2C] = "p2c",
};

static const char *const bal_state_names[BAL_STATE_COUNT] = {
	[BAL_UP] = "up",
	[BAL_DOWN] = "down",
	[BAL_DRAIN] = "drain",
	[BAL_MAINT] = "maint",
};

static int
bal_lookup(const char *const *names, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

const char *
bal_algo_name(enum bal_algo algo)
{
	return (unsigned)algo < BAL_ALGO_COUNT ? bal_algo_names[algo] : "?";
}

int
bal_algo_parse(const char *name)
{
	return bal_lookup(bal_algo_names, BAL_ALGO_COUNT, name);
}

const char *
bal_state_name(enum bal_state state)
{
	return (unsigned)state < BAL_STATE_COUNT ? bal_state_names[state] : "?";
}

int
bal_state_parse(const char *name)
{
	return bal_lookup(bal_state_names, BAL_STATE_COUNT, name);
}
