/* rt_sigreturn (allowed) on a forged frame: it may load registers, not escape. */
#include "attack.h"
int main(void)
{
	static unsigned long frame[64];
	__asm__ volatile("mov %0, %%rsp\n\tmov $15, %%eax\n\tsyscall" : : "r"(frame) : "memory");
	return escaped();
}
