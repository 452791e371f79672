/* openat(2) relative to the working directory. */
#include "attack.h"
int main(void) { return sys6(257, -100, (long)"escaped", 0101, 0644, 0, 0) >= 0 ? escaped() : 1; }
