/*
 * jail-loader: locks one validated CPUShare job into SECCOMP_MODE_STRICT and jumps to it.
 *
 * Freestanding C: no libc, every system call is raw and visible here. The Python side
 * (cpushare/jail/) has already parsed and validated the job's ELF in memory-safe code;
 * this program never parses an ELF, it only copies bytes where it is told to.
 *
 * Descriptors on entry:  0 the job's input   1 the job's output
 *                        2 this loader's diagnostics   3 the control stream
 * The control stream is `struct control`, then per segment `struct segment` followed by
 * its bytes (layout mirrored by cpushare/jail/control.py, little endian).
 * Fds 0 and 3 may be one open file, the job's input following the control stream
 * (cpushare/jail/runner.py): the loader must read exactly the control, never ahead, so
 * that the job reads its input from where the loader stopped.
 *
 * The security argument is the order of loader_main(): prepare everything the job will
 * ever use, then lock (limits, identity, descriptors, seccomp), then jump. After the
 * lock only read, write, exit and rt_sigreturn exist for the job.
 *
 * Three ways to start it. As root (the live CD's tests, `livecd job run` as root): it
 * drops to the uid/gid of the control stream. Unprivileged and not setuid (a development
 * host): the job keeps the caller's identity, there is nothing to drop. Setuid root (the
 * installed loader, mode 4750 root:cpushare, run by a seller): then the caller is not
 * trusted with anything root could do for it, see run_setuid() below.
 *
 * Any failure kills the loader with SIGSYS. A job can never die of SIGSYS (strict
 * seccomp kills with SIGKILL and a job cannot send signals), so the parent tells a loader
 * failure from anything the job did by that signal alone, even after fd 2 is closed.
 */

typedef unsigned long u64;

enum {
	NR_read = 0,
	NR_write = 1,
	NR_open = 2,
	NR_close = 3,
	NR_fstat = 5,
	NR_mmap = 9,
	NR_mprotect = 10,
	NR_getpid = 39,
	NR_fork = 57,
	NR_wait4 = 61,
	NR_kill = 62,
	NR_getuid = 102,
	NR_getgid = 104,
	NR_geteuid = 107,
	NR_getegid = 108,
	NR_getppid = 110,
	NR_getgroups = 115,
	NR_setgroups = 116,
	NR_setresuid = 117,
	NR_setresgid = 119,
	NR_setpriority = 141,
	NR_prctl = 157,
	NR_setrlimit = 160,
	NR_exit_group = 231,
	NR_close_range = 436,
};

enum { PROT_READ = 1, PROT_WRITE = 2 };
enum { O_WRONLY = 1, O_NOFOLLOW = 0400000, O_CLOEXEC = 02000000, O_PATH = 010000000 };
enum { S_IFMT = 0170000, S_IFREG = 0100000 };
enum { MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000,
       MAP_FIXED_NOREPLACE = 0x100000 };
enum { RLIMIT_CPU = 0, RLIMIT_FSIZE = 1, RLIMIT_STACK = 3, RLIMIT_CORE = 4 };
enum { PR_SET_PDEATHSIG = 1, PR_SET_DUMPABLE = 4, PR_GET_SECCOMP = 21, PR_SET_SECCOMP = 22,
       PR_SET_NO_NEW_PRIVS = 38 };
enum { SECCOMP_MODE_STRICT = 1, PRIO_PROCESS = 0, SIGKILL = 9, SIGSYS = 31, EINTR = 4 };
enum { CONTROL_FD = 3, DIAGNOSTICS_FD = 2, MAX_GROUPS = 256 };

/* Setuid only: the jobs identity is the owner and group of this file. Root decides it
 * (only root can chown a file to another user), the caller cannot: see job_identity(). */
#define JOB_IDENTITY "/usr/lib/cpushare/job-identity"

#define CONTROL_MAGIC 0x4c49414a53555043UL /* "CPUSJAIL" read as a little-endian u64 */
#define CONTROL_VERSION 1UL
#define MAX_SEGMENTS 16UL

struct control {
	u64 magic, version;
	u64 entry;
	u64 stack_base, stack_size;
	u64 arena_base, arena_size;
	u64 cpu_seconds;
	u64 nice; /* two's complement */
	u64 uid, gid;
	u64 parent_pid;
	u64 segments;
};

struct segment {
	u64 map_start, map_size; /* page aligned */
	u64 data_start, data_size; /* bytes that follow on the control stream */
	u64 prot;
};

struct rlimit {
	u64 soft, hard;
};

struct kernel_stat { /* x86-64 struct stat */
	u64 dev, ino, nlink;
	unsigned int mode, uid, gid, pad;
	u64 rdev, size, blksize, blocks;
	u64 times[6];
	u64 reserved[3];
};

struct identity {
	u64 uid, gid;
};

static long syscall6(long nr, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

static long syscall3(long nr, long a, long b, long c)
{
	return syscall6(nr, a, b, c, 0, 0, 0);
}

static unsigned long append(char *buf, unsigned long at, const char *text)
{
	while (*text)
		buf[at++] = *text++;
	return at;
}

static unsigned long append_number(char *buf, unsigned long at, unsigned long n)
{
	char digits[24];
	unsigned long count = 0;
	do {
		digits[count++] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	while (count)
		buf[at++] = digits[--count];
	return at;
}

/* Say which step failed on fd 2 (if it is still open), then die of SIGSYS: see above. */
__attribute__((noreturn)) static void fail(const char *step, long result)
{
	char message[128];
	unsigned long n = append(message, 0, "jail-loader: step=");
	n = append(message, n, step);
	n = append(message, n, " errno=");
	n = append_number(message, n, result < 0 ? (unsigned long)-result : 0);
	message[n++] = '\n';
	syscall3(NR_write, DIAGNOSTICS_FD, (long)message, (long)n);
	syscall3(NR_kill, syscall3(NR_getpid, 0, 0, 0), SIGSYS, 0);
	for (;;) /* SIGSYS is never blocked (posix_spawn resets the mask); belt and braces */
		syscall3(NR_exit_group, 127, 0, 0);
}

static void check(long result, const char *step)
{
	if (result < 0)
		fail(step, result);
}

/* The OOM killer takes the job first: the seller that runs it asked to be taken last, and
 * its value is inherited. Raising one's own score needs no privilege; writing the file
 * needs the process to be dumpable, so this comes before PR_SET_DUMPABLE is cleared. */
static void volunteer_for_oom_killer(void)
{
	static const char most[] = "1000\n";
	long fd = syscall3(NR_open, (long)"/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC, 0);
	check(fd, "oom-score-adj");
	check(syscall3(NR_write, fd, (long)most, sizeof most - 1), "oom-score-adj");
	check(syscall3(NR_close, fd, 0, 0), "oom-score-adj");
}

static void read_exact(void *buf, u64 size, const char *step)
{
	char *at = buf;
	while (size) {
		long got = syscall3(NR_read, CONTROL_FD, (long)at, (long)size);
		if (got == -EINTR)
			continue;
		if (got == 0)
			fail(step, 0);
		check(got, step);
		at += got;
		size -= (u64)got;
	}
}

static void map_fixed(u64 start, u64 size, const char *step)
{
	/* NOREPLACE: a job address that collides with this loader fails instead of
	 * silently replacing the code that is running. Old kernels ignore the flag and
	 * map elsewhere, hence the address check. */
	long got = syscall6(NR_mmap, (long)start, (long)size, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1,
			    0);
	check(got, step);
	if ((u64)got != start)
		fail(step, 0);
}

static void map_segments(u64 count)
{
	if (count == 0 || count > MAX_SEGMENTS)
		fail("segment-count", 0);
	for (u64 i = 0; i < count; i++) {
		struct segment seg;
		read_exact(&seg, sizeof seg, "read-segment");
		if (seg.data_start < seg.map_start ||
		    seg.data_start + seg.data_size > seg.map_start + seg.map_size)
			fail("segment-bounds", 0);
		map_fixed(seg.map_start, seg.map_size, "map-segment");
		read_exact((void *)seg.data_start, seg.data_size, "read-segment-bytes");
		/* Final protection now: segments never share a page (checked in Python). */
		check(syscall3(NR_mprotect, (long)seg.map_start, (long)seg.map_size, (long)seg.prot),
		      "protect-segment");
	}
}

static void set_limit(int resource, u64 soft, u64 hard, const char *step)
{
	struct rlimit limit = { soft, hard };
	check(syscall3(NR_setrlimit, resource, (long)&limit, 0), step);
}

static void drop_root(u64 uid, u64 gid)
{
	/* Groups first, then gid, then uid: once uid is not 0 the others cannot change.
	 * setres* also replaces the saved ids, so there is no way back to root. */
	check(syscall3(NR_setgroups, 0, 0, 0), "setgroups");
	check(syscall3(NR_setresgid, (long)gid, (long)gid, (long)gid), "setresgid");
	check(syscall3(NR_setresuid, (long)uid, (long)uid, (long)uid), "setresuid");
	if (syscall3(NR_getuid, 0, 0, 0) != (long)uid || syscall3(NR_geteuid, 0, 0, 0) != (long)uid ||
	    syscall3(NR_getgid, 0, 0, 0) != (long)gid || syscall3(NR_getegid, 0, 0, 0) != (long)gid ||
	    syscall3(NR_getgroups, 0, 0, 0) != 0)
		fail("check-uid", 0);
}

/* Setuid: who the job runs as, from a source the caller cannot touch. The path is fixed
 * and absolute (no environment, no working directory); O_PATH opens nothing (no FIFO can
 * block us) and O_NOFOLLOW refuses a link, though /usr/lib/cpushare is root's alone. A
 * caller could only mount another file there inside a user namespace of its own, where
 * the kernel ignores this program's setuid bit (root is not mapped there).
 * Refused: root, and any uid or group the caller holds itself: the jobs would then
 * share the caller's files or processes, what this identity exists to prevent. */
static struct identity job_identity(u64 caller_uid, u64 caller_gid)
{
	unsigned int groups[MAX_GROUPS];
	struct kernel_stat st;
	long fd = syscall3(NR_open, (long)JOB_IDENTITY, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
	check(fd, "job-identity");
	check(syscall3(NR_fstat, fd, (long)&st, 0), "job-identity");
	check(syscall3(NR_close, fd, 0, 0), "job-identity");
	if ((st.mode & S_IFMT) != S_IFREG)
		fail("job-identity", 0);
	if (st.uid == 0 || st.gid == 0 || st.uid == caller_uid || st.gid == caller_gid)
		fail("job-identity-refused", 0);
	long count = syscall3(NR_getgroups, MAX_GROUPS, (long)groups, 0);
	check(count, "job-identity-groups");
	for (long i = 0; i < count; i++)
		if (groups[i] == st.gid)
			fail("job-identity-refused", 0);
	return (struct identity){ st.uid, st.gid };
}

/* Setuid, the process the caller spawned, after the fork: it gives up root and stands in
 * for the job. The job runs as a uid the caller may not signal, yet the seller must be
 * able to kill it (wall clock, output cap, shutdown): killing this process kills the job
 * (its parent-death signal), and this process ends as the job ended, so the caller's
 * wait4 sees the job's status and, as a reaped child's times count in its parent's, the
 * job's CPU time. It touches nothing of the job: fds 0, 1 and 3 are closed (the output's
 * end-of-file is the job's alone), only fd 2 stays for its own failures. */
__attribute__((noreturn)) static void stand_in(long job, struct identity id, u64 caller_uid,
					       u64 caller_gid, long caller)
{
	int status = 0;
	/* Real uid the caller's, so the caller may kill it; effective and saved uid the
	 * job's, because the kernel sends the parent-death signal with the dying parent's
	 * credentials and checks them like a kill(2): they must match the job's uid. No id is
	 * root any more, so there is no way back. The job gains nothing: ptrace and /proc
	 * need all three uids to match, and the real one is the caller's. Gids and groups
	 * are the caller's own. The parent-death signal is set after the change, which would
	 * clear it; the ppid check closes the race with a caller that died before. */
	check(syscall3(NR_setresgid, (long)caller_gid, (long)caller_gid, (long)caller_gid),
	      "stand-in-setresgid");
	check(syscall3(NR_setresuid, (long)caller_uid, (long)id.uid, (long)id.uid),
	      "stand-in-setresuid");
	if (syscall3(NR_getuid, 0, 0, 0) != (long)caller_uid ||
	    syscall3(NR_geteuid, 0, 0, 0) != (long)id.uid ||
	    syscall3(NR_getegid, 0, 0, 0) != (long)caller_gid)
		fail("stand-in-check-uid", 0);
	check(syscall3(NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0), "stand-in-pdeathsig");
	if (syscall3(NR_getppid, 0, 0, 0) != caller)
		fail("parent-gone", 0);
	check(syscall3(NR_close_range, 0, 1, 0), "stand-in-close");
	check(syscall3(NR_close, CONTROL_FD, 0, 0), "stand-in-close");
	for (;;) {
		long got = syscall6(NR_wait4, job, (long)&status, 0, 0, 0, 0);
		if (got == -EINTR)
			continue;
		check(got, "stand-in-wait");
		break;
	}
	if ((status & 0x7f) == 0)
		syscall3(NR_exit_group, (status >> 8) & 0xff, 0, 0);
	syscall3(NR_kill, syscall3(NR_getpid, 0, 0, 0), status & 0x7f, 0);
	fail("stand-in-signal", 0); /* only if the caller left that signal ignored or blocked */
}

/* Setuid root, run by a seller. Before anything of the job is read, the process drops
 * every privilege for good: groups, gid and uid (real, effective, saved) of the jobs
 * identity, verified. From then on the kernel itself refuses whatever root could have
 * done for the caller: a CPU hard limit above the caller's own (setrlimit: EPERM), a
 * nice below it (setpriority: EACCES), a mapping over its memory limits. The control
 * stream's uid/gid are then only checked against the jobs identity, never used.
 * Returns the job's parent, the stand-in, for the parent-death check. */
static long run_setuid(struct identity *job, u64 *caller_out)
{
	u64 caller_uid = (u64)syscall3(NR_getuid, 0, 0, 0);
	u64 caller_gid = (u64)syscall3(NR_getgid, 0, 0, 0);
	long caller = syscall3(NR_getppid, 0, 0, 0);
	long stand_in_pid = syscall3(NR_getpid, 0, 0, 0);
	*job = job_identity(caller_uid, caller_gid);
	*caller_out = (u64)caller;
	long child = syscall3(NR_fork, 0, 0, 0);
	check(child, "fork");
	if (child)
		stand_in(child, *job, caller_uid, caller_gid, caller);
	drop_root(job->uid, job->gid);
	return stand_in_pid;
}

/* rdi entry, rsi stack top, rdx arena base, rcx arena size. The job's _start receives
 * the arena in rdi/rsi; every other register is cleared so nothing of the loader leaks. */
__attribute__((noreturn)) void enter_job(u64 entry, u64 stack_top, u64 arena, u64 arena_size);
__asm__(".text\n"
	".globl enter_job\n"
	".type enter_job, @function\n"
	"enter_job:\n"
	"	mov %rsi, %rsp\n"
	"	mov %rdi, %rax\n"
	"	mov %rdx, %rdi\n"
	"	mov %rcx, %rsi\n"
	"	xor %edx, %edx\n"
	"	xor %ecx, %ecx\n"
	"	xor %ebx, %ebx\n"
	"	xor %ebp, %ebp\n"
	"	xor %r8d, %r8d\n"
	"	xor %r9d, %r9d\n"
	"	xor %r10d, %r10d\n"
	"	xor %r11d, %r11d\n"
	"	xor %r12d, %r12d\n"
	"	xor %r13d, %r13d\n"
	"	xor %r14d, %r14d\n"
	"	xor %r15d, %r15d\n"
	"	cld\n"
	"	jmp *%rax\n");

__attribute__((noreturn, used)) void loader_main(void)
{
	struct control c;
	struct identity job = { 0, 0 };
	u64 caller = 0;
	long parent = 0; /* the job's parent once it runs: the stand-in, when setuid */
	int setuid = syscall3(NR_getuid, 0, 0, 0) != 0 && syscall3(NR_geteuid, 0, 0, 0) == 0;

	/* A crash of the loader or of the job must not leave a core file behind: no core
	 * limit and not dumpable, before anything else can go wrong. Only the OOM score
	 * comes in between, as it needs the process still dumpable. */
	set_limit(RLIMIT_CORE, 0, 0, "rlimit-core");
	volunteer_for_oom_killer();
	check(syscall3(NR_prctl, PR_SET_DUMPABLE, 0, 0), "dumpable");

	if (setuid)
		parent = run_setuid(&job, &caller);

	read_exact(&c, sizeof c, "read-control");
	if (c.magic != CONTROL_MAGIC || c.version != CONTROL_VERSION)
		fail("control-version", 0);
	/* Setuid: the caller asks for an identity, the file decides; a mismatch (uid 0, the
	 * caller's own) is refused rather than silently overridden. The caller's pid is the
	 * one the loader saw at its start: a caller that died before then does not count. */
	if (setuid && (c.uid != job.uid || c.gid != job.gid))
		fail("identity-mismatch", 0);
	if (setuid && c.parent_pid != caller)
		fail("parent-gone", 0);
	if (!setuid)
		parent = (long)c.parent_pid;

	/* Prepare: map all memory the job will ever have. After seccomp it cannot call
	 * mmap or brk, so its footprint is exactly this, whatever it does. */
	map_segments(c.segments);
	if (c.arena_size)
		map_fixed(c.arena_base, c.arena_size, "map-arena");
	map_fixed(c.stack_base, c.stack_size, "map-stack");

	/* Limits: hard limits now, while setrlimit still exists; the job can never raise
	 * them. SIGXCPU at the soft CPU limit, SIGKILL one second later. FSIZE 0 means no
	 * write to any file, STACK 0 means the loader's own stack can never grow. */
	set_limit(RLIMIT_FSIZE, 0, 0, "rlimit-fsize");
	set_limit(RLIMIT_STACK, 0, 0, "rlimit-stack");
	set_limit(RLIMIT_CPU, c.cpu_seconds, c.cpu_seconds + 1, "rlimit-cpu");

	/* Priority before the identity change: the requested niceness applies to the job,
	 * and an unprivileged user could not undo it. (Setuid, the change came first: the
	 * limits above and this nice are then only what the caller could set itself.) */
	check(syscall3(NR_setpriority, PRIO_PROCESS, 0, (long)c.nice), "setpriority");

	if (!setuid && (syscall3(NR_getuid, 0, 0, 0) == 0 || syscall3(NR_geteuid, 0, 0, 0) == 0))
		drop_root(c.uid, c.gid);

	/* After the identity change, which resets both: the job dies with its parent (the
	 * seller), and stays unreadable to other processes of the same user. The ppid check
	 * closes the race where the parent died before the prctl. */
	check(syscall3(NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0), "pdeathsig");
	if (syscall3(NR_getppid, 0, 0, 0) != parent)
		fail("parent-gone", 0);
	check(syscall3(NR_prctl, PR_SET_DUMPABLE, 0, 0), "dumpable");
	check(syscall3(NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0), "no-new-privs");

	/* Strict mode cannot be entered from a seccomp filter (containers) or without
	 * CONFIG_SECCOMP: find out while fd 2 can still say so. */
	if (syscall3(NR_prctl, PR_GET_SECCOMP, 0, 0) != 0)
		fail("seccomp-unavailable", 0);

	/* Lock, step 1: the job keeps exactly fds 0 and 1. Closing needs close_range,
	 * which strict seccomp forbids, so this comes before the last step. */
	check(syscall3(NR_close_range, DIAGNOSTICS_FD, ~0L, 0), "close-range");

	/* Lock, step 2: from here on read, write, exit, rt_sigreturn only; also no rdtsc. */
	check(syscall3(NR_prctl, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0), "seccomp");

	/* Jump: nothing between the lock and the job's first instruction but registers. */
	enter_job(c.entry, c.stack_base + c.stack_size, c.arena_base, c.arena_size);
}

__asm__(".text\n"
	".globl _start\n"
	".type _start, @function\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	and $-16, %rsp\n"
	"	call loader_main\n"
	"	ud2\n");
