/* A job that burns CPU for as many million rounds as its input says, then answers. */
#include "cpushare.h"

int main(void)
{
	size_t size;
	unsigned char *input = cs_read_input(&size);
	unsigned long rounds = 0;
	volatile unsigned long sink = 0;

	if (!input)
		return 1;
	for (size_t i = 0; i < size; i++)
		if (input[i] >= '0' && input[i] <= '9')
			rounds = rounds * 10 + (input[i] - '0');
	for (unsigned long i = 0; i < rounds * 1000000UL; i++)
		sink += i ^ (i >> 3);
	return cs_write_all("spun\n", 5) ? 2 : 0;
}
