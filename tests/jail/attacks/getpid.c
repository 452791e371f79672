/* getpid(2): even harmless system calls are forbidden. */
#include "attack.h"
int main(void) { return sys6(39, 0, 0, 0, 0, 0, 0) > 0 ? escaped() : 1; }
