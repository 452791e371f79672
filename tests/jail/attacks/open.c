/* open(2) a file for writing: strict seccomp must kill the job. */
#include "attack.h"
int main(void) { return sys6(2, (long)"escaped", 0101, 0644, 0, 0, 0) >= 0 ? escaped() : 1; }
