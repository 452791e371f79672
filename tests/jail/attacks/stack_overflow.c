/* Unbounded recursion: runs into the unmapped guard below the stack. */
#include "attack.h"
#pragma GCC diagnostic ignored "-Winfinite-recursion" /* the point of this job */
static int deeper(volatile char *above)
{
	volatile char frame[4096];
	frame[0] = above ? above[0] + 1 : 0;
	return deeper(frame) + frame[100];
}
int main(void) { return deeper(0); }
