/* execve(2) a shell. */
#include "attack.h"
int main(void)
{
	const char *argv[] = { "/bin/sh", "-c", "touch escaped", 0 };
	const char *envp[] = { 0 };
	sys6(59, (long)argv[0], (long)argv, (long)envp, 0, 0, 0);
	return escaped();
}
