/* Overwrite its own code: the text segment is mapped read-only. */
#include "attack.h"
int main(void)
{
	*(volatile unsigned char *)main = 0xc3;
	return escaped();
}
