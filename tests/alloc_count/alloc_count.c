/*
 * alloc_count: an LD_PRELOAD shim that counts every heap allocation a process makes, at the
 * malloc level, on all threads.
 *
 * Why malloc, not a Rust #[global_allocator]: aws-lc (the RSA/ECDSA backend) and any other C
 * code allocate through malloc directly, which a Rust allocator never sees; and a counting
 * allocator would have to be compiled into the binary under test, which then is not the binary
 * users run. Interposing malloc counts the real, unmodified binary: Rust's `System` allocator
 * (tokengate's) and C libraries alike end up here.
 *
 * What it counts: every call of malloc, calloc, realloc, reallocarray, posix_memalign,
 * aligned_alloc, memalign, valloc and pvalloc (one per call, as dhat and Rust's allocator API
 * count: a realloc is one allocation), plus the bytes requested. Frees are counted separately.
 * Each call forwards to glibc's own entry point (__libc_malloc, ...), so there is no dlsym and no
 * recursion; glibc, the only allocator underneath, frees everything.
 *
 * Reading it: on SIGUSR2 the process writes one line, "<allocations> <bytes> <frees>\n", to the
 * file named by $ALLOC_COUNT_FILE (written beside it and renamed into place, so a reader never
 * sees a partial line). A driver removes the file, sends SIGUSR2 and waits for the file to appear.
 * The handler uses only async-signal-safe calls (open, write, close, rename).
 *
 * glibc only (the __libc_* entry points). Build: cc -O2 -shared -fPIC -o alloc_count.so alloc_count.c
 * Used by tests/e2e/allocs.rs and benches/compare.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern void __libc_free(void *);

static uint64_t allocations, bytes, frees;

static inline void note(size_t n) {
    __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&bytes, n, __ATOMIC_RELAXED);
}

void *malloc(size_t n) {
    note(n);
    return __libc_malloc(n);
}

void *calloc(size_t k, size_t n) {
    note(k * n);
    return __libc_calloc(k, n);
}

void *realloc(void *p, size_t n) {
    note(n);
    return __libc_realloc(p, n);
}

void *reallocarray(void *p, size_t k, size_t n) {
    size_t total;
    if (__builtin_mul_overflow(k, n, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    note(total);
    return __libc_realloc(p, total);
}

void free(void *p) {
    if (p)
        __atomic_fetch_add(&frees, 1, __ATOMIC_RELAXED);
    __libc_free(p);
}

void *memalign(size_t align, size_t n) {
    note(n);
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n) {
    note(n);
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    note(n);
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t n) {
    note(n);
    return __libc_valloc(n);
}

void *pvalloc(size_t n) {
    note(n);
    return __libc_pvalloc(n);
}

/* ---- The SIGUSR2 snapshot. ---- */

static char path[4096], tmp_path[4100];

static size_t put_u64(char *at, uint64_t v) {
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        at[i] = digits[n - 1 - i];
    return n;
}

static void snapshot(int sig) {
    (void)sig;
    int saved = errno;
    char line[64];
    size_t len = 0;
    len += put_u64(line + len, __atomic_load_n(&allocations, __ATOMIC_RELAXED));
    line[len++] = ' ';
    len += put_u64(line + len, __atomic_load_n(&bytes, __ATOMIC_RELAXED));
    line[len++] = ' ';
    len += put_u64(line + len, __atomic_load_n(&frees, __ATOMIC_RELAXED));
    line[len++] = '\n';
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, line, len);
        close(fd);
        if (w == (ssize_t)len)
            rename(tmp_path, path);
    }
    errno = saved;
}

__attribute__((constructor)) static void install(void) {
    const char *file = getenv("ALLOC_COUNT_FILE");
    if (!file || !*file || strlen(file) >= sizeof(path))
        return;
    memcpy(path, file, strlen(file) + 1);
    memcpy(tmp_path, file, strlen(file));
    memcpy(tmp_path + strlen(file), ".tmp", 5);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = snapshot;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
}
