/* creat(2) a file in the working directory. */
#include "attack.h"
int main(void) { return sys6(85, (long)"escaped", 0644, 0, 0, 0, 0) >= 0 ? escaped() : 1; }
