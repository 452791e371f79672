/* brk(2): no heap but the arena. */
#include "attack.h"
int main(void) { return sys6(12, 0, 0, 0, 0, 0, 0) >= 0 ? escaped() : 1; }
