/* Ask for a gigabyte of static memory: refused before it runs. */
#include "attack.h"
static char big[1UL << 30];
int main(void)
{
	big[sizeof big - 1] = 1;
	return big[0];
}
