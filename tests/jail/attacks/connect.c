/* connect(2) fd 1 to 127.0.0.1:9. */
#include "attack.h"
int main(void)
{
	unsigned char addr[16] = { 2, 0, 0, 9, 127, 0, 0, 1 };
	return sys6(42, 1, (long)addr, sizeof addr, 0, 0, 0) == 0 ? escaped() : 1;
}
