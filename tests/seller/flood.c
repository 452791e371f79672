/* A job that writes as many MiB of output as its input says, 64 KiB at a time. */
#include "cpushare.h"

static char block[64 << 10];

int main(void)
{
	size_t size;
	unsigned char *input = cs_read_input(&size);
	unsigned long mib = 0;

	if (!input)
		return 1;
	for (size_t i = 0; i < size; i++)
		if (input[i] >= '0' && input[i] <= '9')
			mib = mib * 10 + (input[i] - '0');
	for (size_t i = 0; i < sizeof block; i++)
		block[i] = 'x';
	for (unsigned long i = 0; i < mib * 16; i++)
		if (cs_write_all(block, sizeof block))
			return 2;
	return 0;
}
