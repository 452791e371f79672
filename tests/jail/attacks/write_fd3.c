/* write(2) to fd 3, where the loader read its control stream: closed, -EBADF. */
#include "attack.h"
int main(void) { return write(3, "leak\n", 5) == -9 ? 0 : 1; }
