/* socket(2): no network for jobs. */
#include "attack.h"
int main(void) { return sys6(41, 2, 1, 0, 0, 0, 0) >= 0 ? escaped() : 1; }
