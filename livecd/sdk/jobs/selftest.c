/*
 * selftest.c: the jail's boot-time check job. Its input chooses what it does:
 *
 *   "behave"     use the arena and the memory functions, then write
 *                "cpushare selftest ok fnv1a=XXXXXXXX\n" (FNV-1a of the input) and exit 0
 *   "forbidden"  call getpid, which strict seccomp must answer with SIGKILL; if it
 *                survives it says so and exits 3
 *
 * One binary for both, so the image carries a single self-test job. It is built with the
 * SDK like every job (livecd/toolchain.py), so the check runs the SDK's own runtime: its
 * start, arena and memory functions. The guest (cpushare.jail.check) needs only the job.
 */
#include "cpushare.h"

static const char HEX[] = "0123456789abcdef";

static unsigned fnv1a(const unsigned char *data, size_t size)
{
	unsigned hash = 2166136261u;
	for (size_t i = 0; i < size; i++)
		hash = (hash ^ data[i]) * 16777619u;
	return hash;
}

static int starts_with(const unsigned char *data, size_t size, const char *word)
{
	size_t i = 0;
	for (; word[i]; i++)
		if (i >= size || data[i] != (unsigned char)word[i])
			return 0;
	return 1;
}

static int behave(const unsigned char *input, size_t size)
{
	static const char prefix[] = "cpushare selftest ok fnv1a=";
	size_t n = sizeof prefix - 1;
	/* Exercise the arena and every memory function on data that depends on the input. */
	char *line = cs_alloc(64);
	char *scratch = cs_alloc(size + 16);
	if (!line || !scratch)
		return 4;
	memset(scratch, 0, size + 16);
	memcpy(scratch + 8, input, size);
	memmove(scratch, scratch + 8, size);
	if (memcmp(scratch, input, size) != 0)
		return 5;
	memcpy(line, prefix, n);
	unsigned hash = fnv1a((const unsigned char *)scratch, size);
	for (int shift = 28; shift >= 0; shift -= 4)
		line[n++] = HEX[(hash >> shift) & 15];
	line[n++] = '\n';
	return cs_write_all(line, n) == 0 ? 0 : 6;
}

static int forbidden(void)
{
	static const char survived[] = "cpushare selftest: getpid was allowed\n";
	long pid;
	__asm__ volatile("syscall" : "=a"(pid) : "a"(39L) : "rcx", "r11", "memory");
	cs_write_all(survived, sizeof survived - 1);
	return 3;
}

int main(void)
{
	static const char usage[] = "cpushare selftest: input must be 'behave' or 'forbidden'\n";
	size_t size;
	unsigned char *input = cs_read_input(&size);
	if (!input)
		return 2;
	if (starts_with(input, size, "forbidden"))
		return forbidden();
	if (starts_with(input, size, "behave"))
		return behave(input, size);
	cs_write_all(usage, sizeof usage - 1);
	return 2;
}
