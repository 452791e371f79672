/* Spin forever: the CPU limit ends it. */
#include "attack.h"
int main(void)
{
	for (volatile unsigned long i = 0;; i++)
		;
}
