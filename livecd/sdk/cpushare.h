/*
 * cpushare.h: everything a CPUShare job may use inside the strict-seccomp jail.
 *
 * A job is plain C that defines `int main(void)`: it reads its input from fd 0, writes
 * its output to fd 1, and its return value becomes its exit status. Build it with
 * `livecd job build job.c -o job`. Inside the jail there is no libc and no system call
 * but read, write and exit, so this header is the whole runtime:
 *
 *   read(fd, buf, n), write(fd, buf, n), exit(status)   raw system calls; errors come
 *                                                       back as -errno, not via errno
 *   memcpy, memmove, memset, memcmp                     (compilers emit calls to them)
 *   cs_alloc(n)                                         zeroed memory from the arena, or
 *                                                       NULL when it is used up; no free
 *   cs_read_input(&size), cs_write_all(buf, n)          all of fd 0; all of buf to fd 1
 *
 * The arena is all the memory left under the job's memory limit after its program and
 * its 8 MiB stack. Built with -DCPUSHARE_HOSTED the same source becomes an ordinary
 * program on top of libc, for debugging and for comparing speed with the jail.
 */
#ifndef CPUSHARE_H
#define CPUSHARE_H

#include <stddef.h>

#ifdef CPUSHARE_HOSTED

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void *cs_alloc(size_t size)
{
	return calloc(1, size ? size : 1);
}

static inline unsigned char *cs_read_input(size_t *size)
{
	size_t used = 0, room = 1 << 16;
	unsigned char *buf = malloc(room);
	for (;;) {
		if (!buf)
			return NULL;
		if (used == room) {
			room *= 2;
			buf = realloc(buf, room);
			continue;
		}
		ssize_t got = read(0, buf + used, room - used);
		if (got < 0)
			return NULL;
		if (got == 0)
			break;
		used += (size_t)got;
	}
	*size = used;
	return buf;
}

#else /* inside the jail */

typedef long ssize_t;

/* The jail's whole system call interface. */
static inline long cs_syscall3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static inline ssize_t read(int fd, void *buf, size_t size)
{
	return cs_syscall3(0, fd, (long)buf, (long)size);
}

static inline ssize_t write(int fd, const void *buf, size_t size)
{
	return cs_syscall3(1, fd, (long)buf, (long)size);
}

/* The raw exit system call: exit_group, which libc's exit uses, is forbidden. */
__attribute__((noreturn)) static inline void exit(int status)
{
	for (;;)
		cs_syscall3(60, status, 0, 0);
}

void *memcpy(void *restrict dest, const void *restrict src, size_t size);
void *memmove(void *dest, const void *src, size_t size);
void *memset(void *dest, int byte, size_t size);
int memcmp(const void *a, const void *b, size_t size);

void *cs_alloc(size_t size);
unsigned char *cs_read_input(size_t *size);

#endif /* CPUSHARE_HOSTED */

/* Writes all of buf to fd 1; 0 on success, negative on error. */
static inline int cs_write_all(const void *buf, size_t size)
{
	const unsigned char *at = buf;
	while (size) {
		ssize_t done = write(1, at, size);
		if (done <= 0)
			return -1;
		at += done;
		size -= (size_t)done;
	}
	return 0;
}

#endif /* CPUSHARE_H */
