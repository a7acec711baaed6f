// An LD_PRELOAD allocation counter for `gwbench suite` (allocations per proxied request).
//
// Counts, in every thread of the process it is preloaded into, the calls to malloc, calloc, realloc,
// posix_memalign, aligned_alloc, memalign and valloc (and, separately, free), with relaxed atomics. The real
// functions come from dlsym(RTLD_NEXT, …).
//   SIGUSR1: resets every count to 0, then writes the (zero) counts to $MALLOC_COUNTER_OUT.
//   SIGUSR2: writes the counts to $MALLOC_COUNTER_OUT.
// The file is written to "$MALLOC_COUNTER_OUT.tmp" and renamed, so a reader never sees half of it. Its format is
// one "name value" line per count, in this order: malloc, calloc, realloc, posix_memalign, aligned_alloc,
// memalign, valloc, free, then "total" (every allocating call, free excluded). `gwbench` parses it
// (MallocCounterReport.parse).
//
// Build: cc -O2 -shared -fPIC -o libmalloccounter.so malloc-counter.c -ldl
// Use:   MALLOC_COUNTER_OUT=/tmp/counts LD_PRELOAD=./libmalloccounter.so PROGRAM ...
//
// It is a measuring tool, not part of the product: nothing in Sources/ knows about it.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { C_MALLOC, C_CALLOC, C_REALLOC, C_POSIX_MEMALIGN, C_ALIGNED_ALLOC, C_MEMALIGN, C_VALLOC, C_FREE, C_COUNT };
static const char *const names[C_COUNT] = {
    "malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign", "valloc", "free",
};
static _Atomic uint64_t counts[C_COUNT];

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void (*real_free)(void *);

// dlsym may call calloc before real_calloc is known: serve those few calls from a static arena (never freed).
static _Alignas(16) char bootstrap[8192];
static size_t bootstrap_used;
static int resolving;

static void *bootstrap_alloc(size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (bootstrap_used + size > sizeof(bootstrap)) return NULL;
    void *p = bootstrap + bootstrap_used;
    bootstrap_used += size;
    return p;
}

static int from_bootstrap(const void *p) {
    return (const char *)p >= bootstrap && (const char *)p < bootstrap + sizeof(bootstrap);
}

static void resolve(void) {
    if (real_malloc || resolving) return;
    resolving = 1;
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = dlsym(RTLD_NEXT, "memalign");
    real_valloc = dlsym(RTLD_NEXT, "valloc");
    real_free = dlsym(RTLD_NEXT, "free");
    resolving = 0;
}

static inline void count(int which) { atomic_fetch_add_explicit(&counts[which], 1, memory_order_relaxed); }

void *malloc(size_t size) {
    resolve();
    if (!real_malloc) return bootstrap_alloc(size);
    count(C_MALLOC);
    return real_malloc(size);
}

void *calloc(size_t n, size_t size) {
    resolve();
    if (!real_calloc) return bootstrap_alloc(n * size); // the arena is zeroed (static storage)
    count(C_CALLOC);
    return real_calloc(n, size);
}

void *realloc(void *p, size_t size) {
    resolve();
    count(C_REALLOC);
    if (from_bootstrap(p)) {
        void *q = real_malloc(size);
        size_t left = (size_t)(bootstrap + sizeof(bootstrap) - (char *)p);
        if (q) memcpy(q, p, size < left ? size : left);
        return q;
    }
    return real_realloc(p, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    resolve();
    count(C_POSIX_MEMALIGN);
    return real_posix_memalign(out, alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    resolve();
    count(C_ALIGNED_ALLOC);
    return real_aligned_alloc(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    resolve();
    count(C_MEMALIGN);
    return real_memalign(alignment, size);
}

void *valloc(size_t size) {
    resolve();
    count(C_VALLOC);
    return real_valloc(size);
}

void free(void *p) {
    if (!p || from_bootstrap(p)) return;
    resolve();
    count(C_FREE);
    real_free(p);
}

// --- the report (async-signal-safe: open, write, rename, close) -------------------------------------------------

static char out_path[4096];
static char tmp_path[4096 + 8];

static size_t append(char *buffer, size_t at, size_t cap, const char *text) {
    while (*text && at < cap) buffer[at++] = *text++;
    return at;
}

static size_t append_u64(char *buffer, size_t at, size_t cap, uint64_t value) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value && n < (int)sizeof(digits));
    while (n > 0 && at < cap) buffer[at++] = digits[--n];
    return at;
}

static void write_report(void) {
    if (!out_path[0]) return;
    char text[1024];
    size_t at = 0, cap = sizeof(text);
    uint64_t total = 0;
    for (int i = 0; i < C_COUNT; i++) {
        uint64_t value = atomic_load_explicit(&counts[i], memory_order_relaxed);
        if (i != C_FREE) total += value;
        at = append(text, at, cap, names[i]);
        at = append(text, at, cap, " ");
        at = append_u64(text, at, cap, value);
        at = append(text, at, cap, "\n");
    }
    at = append(text, at, cap, "total ");
    at = append_u64(text, at, cap, total);
    at = append(text, at, cap, "\n");
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    size_t done = 0;
    while (done < at) {
        ssize_t n = write(fd, text + done, at - done);
        if (n <= 0) break;
        done += (size_t)n;
    }
    close(fd);
    rename(tmp_path, out_path);
}

static void on_signal(int signo) {
    int saved = errno;
    if (signo == SIGUSR1) {
        for (int i = 0; i < C_COUNT; i++) atomic_store_explicit(&counts[i], 0, memory_order_relaxed);
    }
    write_report();
    errno = saved;
}

__attribute__((constructor)) static void malloc_counter_init(void) {
    resolve();
    const char *path = getenv("MALLOC_COUNTER_OUT");
    if (path && strlen(path) < sizeof(out_path)) {
        strcpy(out_path, path);
        strcpy(tmp_path, path);
        strcat(tmp_path, ".tmp");
    }
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaddset(&action.sa_mask, SIGUSR1);
    sigaddset(&action.sa_mask, SIGUSR2);
    sigaction(SIGUSR1, &action, NULL);
    sigaction(SIGUSR2, &action, NULL);
}
