/* fork(2): a job is one process. */
#include "attack.h"
int main(void) { return sys6(57, 0, 0, 0, 0, 0, 0) >= 0 ? escaped() : 1; }
