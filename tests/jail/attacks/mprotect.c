/* mprotect(2) the code writable. */
#include "attack.h"
int main(void) { return sys6(10, 0x400000, 4096, 7, 0, 0, 0) == 0 ? escaped() : 1; }
