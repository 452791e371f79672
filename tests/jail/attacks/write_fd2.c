/* write(2) to fd 2: closed by the loader, so -EBADF and nothing else. */
#include "attack.h"
int main(void) { return write(2, "leak\n", 5) == -9 ? 0 : 1; }
