// Linux calls that Swift's Glibc module hides behind _GNU_SOURCE.
// The header itself must not define _GNU_SOURCE (it clashes with SwiftGlibc); shims.c does.
#ifndef CSHIMS_H
#define CSHIMS_H

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <time.h>
#include <spawn.h>

/// accept4(2): accept with SOCK_NONBLOCK | SOCK_CLOEXEC in one call.
int CShims_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

/// pthread_setaffinity_np(3) for the calling thread; CPU_SET is a macro.
int CShims_pin_current_thread_to_cpu(int cpu);

/// sched_setaffinity(2) for the whole process, to a CPU list like "0" or "1".
int CShims_pin_process_to_cpu(int cpu);

/// sched_setaffinity(2) for another process (a child we started), to one CPU.
int CShims_pin_pid_to_cpu(int pid, int cpu);

/// The two scheduling policies the audit writer moves between (Linux ABI values; shims.c checks them).
enum { CShims_SCHED_OTHER = 0, CShims_SCHED_IDLE = 5 };

/// sched_setscheduler(2) for one thread (0: the calling one) with priority 0: 0, or -1 with errno.
int CShims_sched_setscheduler(int tid, int policy);

/// sched_getscheduler(2) for one thread (0: the calling one): its policy, or -1 with errno.
int CShims_sched_getscheduler(int tid);

/// gettid(2): the calling thread's kernel id, which the calls above take.
int CShims_gettid(void);

/// timerfd_create(2) with CLOCK_MONOTONIC, TFD_NONBLOCK and TFD_CLOEXEC.
int CShims_timerfd_create(void);

/// timerfd_settime(2): arms the timer to fire once at an absolute CLOCK_MONOTONIC time in nanoseconds.
int CShims_timerfd_arm_at(int fd, uint64_t deadline_ns);

/// The number of CPUs this process may run on (sched_getaffinity + CPU_COUNT).
int CShims_available_cpus(void);

/// memmem(3): find a byte string inside a buffer.
void *CShims_memmem(const void *haystack, size_t hlen, const void *needle, size_t nlen);

/// memrchr(3): the last occurrence of a byte in a buffer.
void *CShims_memrchr(const void *s, int c, size_t n);

/// clock_gettime(CLOCK_MONOTONIC) in nanoseconds.
uint64_t CShims_monotonic_ns(void);

/// clock_gettime(CLOCK_REALTIME) in nanoseconds since the epoch.
uint64_t CShims_realtime_ns(void);

/// Blocks SIGTERM, SIGINT, SIGHUP and SIGPIPE for this thread and the threads it creates,
/// and returns a signalfd that reports the first three. SIGPIPE stays ignored.
int CShims_signalfd_for_shutdown_signals(void);

/// Reads one signal number from a signalfd, or -1.
int CShims_read_signalfd(int fd);

/// Ignores SIGPIPE for the process: writes to closed sockets must return EPIPE, not kill us.
void CShims_ignore_sigpipe(void);

/// The user and system CPU time of this process in nanoseconds (getrusage).
uint64_t CShims_process_cpu_ns(void);

/// posix_spawn_file_actions_addchdir_np(3): the child's working directory (glibc ≥ 2.29 hides it from Swift).
int CShims_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);

#endif
