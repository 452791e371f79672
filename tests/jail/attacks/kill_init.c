/* kill(2) pid 1 with SIGKILL. */
#include "attack.h"
int main(void) { return sys6(62, 1, 9, 0, 0, 0, 0) == 0 ? escaped() : 1; }
