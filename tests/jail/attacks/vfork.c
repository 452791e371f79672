/* vfork(2). */
#include "attack.h"
int main(void) { return sys6(58, 0, 0, 0, 0, 0, 0) >= 0 ? escaped() : 1; }
