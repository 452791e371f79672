/* read(2) from fd 3, the control stream: closed, -EBADF. */
#include "attack.h"
int main(void)
{
	char buf[64];
	return read(3, buf, sizeof buf) == -9 ? 0 : 1;
}
