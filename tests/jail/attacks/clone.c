/* clone(2) with SIGCHLD, as fork does. */
#include "attack.h"
int main(void) { return sys6(56, 17, 0, 0, 0, 0, 0) >= 0 ? escaped() : 1; }
