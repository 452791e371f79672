/* Write without end: the output cap ends it. */
#include "attack.h"
int main(void)
{
	static char block[65536];
	memset(block, 'x', sizeof block);
	for (;;)
		if (write(1, block, sizeof block) < 0)
			return 1;
}
