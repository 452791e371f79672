/* mmap(2) more memory, executable: all memory is mapped before the lock. */
#include "attack.h"
int main(void) { return sys6(9, 0, 1 << 20, 7, 0x22, -1, 0) >= 0 ? escaped() : 1; }
