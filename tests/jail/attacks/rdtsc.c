/* rdtsc: strict seccomp disables the time stamp counter (a timing side channel). */
#include "attack.h"
int main(void)
{
	unsigned lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return escaped();
}
