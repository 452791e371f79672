/*
 * start.c: the jail side of the SDK, linked into every job. _start, the bump allocator
 * over the arena, and the memory functions compilers emit calls to.
 */
#include "cpushare.h"

int main(void);

static unsigned char *arena_next;
static unsigned char *arena_end;

/* The loader jumps here with the stack set, the arena base in rdi and its size in rsi. */
__attribute__((noreturn, used)) static void cpushare_start(unsigned char *arena, size_t size)
{
	arena_next = arena;
	arena_end = arena + size;
	exit(main());
}

__asm__(".text\n"
	".globl _start\n"
	".type _start, @function\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	and $-16, %rsp\n"
	"	call cpushare_start\n"
	"	ud2\n");

void *cs_alloc(size_t size)
{
	/* The arena is fresh anonymous memory and never reused, so it is already zeroed. */
	size_t rounded = (size + 15) & ~(size_t)15;
	if (rounded < size || rounded > (size_t)(arena_end - arena_next))
		return NULL;
	void *block = arena_next;
	arena_next += rounded;
	return block;
}

unsigned char *cs_read_input(size_t *size)
{
	/* Read straight into the free arena, then keep only what arrived. */
	unsigned char *start = arena_next;
	size_t used = 0, room = (size_t)(arena_end - arena_next);
	for (;;) {
		ssize_t got = read(0, start + used, room - used);
		if (got < 0)
			return NULL;
		if (got == 0)
			break;
		used += (size_t)got;
		if (used == room)
			return NULL;
	}
	*size = used;
	return cs_alloc(used);
}

/* rep movsb/stosb: fast on every x86-64 with ERMS, and the compiler cannot turn these
 * loops back into calls to themselves. */
void *memcpy(void *restrict dest, const void *restrict src, size_t size)
{
	void *d = dest;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(size) : : "memory");
	return dest;
}

void *memmove(void *dest, const void *src, size_t size)
{
	unsigned char *d = dest;
	const unsigned char *s = src;
	if (d <= s || d >= s + size)
		return memcpy(dest, src, size);
	d += size - 1;
	s += size - 1;
	__asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(size) : : "memory");
	return dest;
}

void *memset(void *dest, int byte, size_t size)
{
	void *d = dest;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(size) : "a"(byte) : "memory");
	return dest;
}

int memcmp(const void *a, const void *b, size_t size)
{
	const unsigned char *x = a, *y = b;
	for (size_t i = 0; i < size; i++)
		if (x[i] != y[i])
			return x[i] - y[i];
	return 0;
}
