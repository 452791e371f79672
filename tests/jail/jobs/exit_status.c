/* exit_status.c: input "return N" returns N from main; "exit N" calls exit(N) deep down. */
#include "cpushare.h"

static int number(const unsigned char *at, const unsigned char *end)
{
	int n = 0;
	while (at < end && *at >= '0' && *at <= '9')
		n = n * 10 + (*at++ - '0');
	return n;
}

static void leave(int status)
{
	exit(status);
}

int main(void)
{
	size_t size;
	unsigned char *in = cs_read_input(&size);
	if (!in || size < 6)
		return 100;
	if (in[0] == 'e')
		leave(number(in + 5, in + size));
	return number(in + 7, in + size);
}
