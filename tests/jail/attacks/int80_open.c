/* int 0x80 with the 32-bit open (5): checked against the ia32 allow list. */
#include "attack.h"
static const char path[] = "escaped";
int main(void)
{
	long ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(5L), "b"(path), "c"(0101L), "d"(0644L) : "memory");
	return ret >= 0 ? escaped() : 1;
}
