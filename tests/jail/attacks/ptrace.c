/* ptrace(2) PTRACE_ATTACH to our parent, the seller. */
#include "attack.h"
int main(void) { return sys6(101, 16, 1, 0, 0, 0, 0) == 0 ? escaped() : 1; }
