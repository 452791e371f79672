/* Wait for input that never comes: the wall-clock limit ends it. */
#include "attack.h"
int main(void)
{
	char buf[1];
	while (read(0, buf, 1) != 0)
		;
	return escaped();
}
