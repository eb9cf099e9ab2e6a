/* iofault: an LD_PRELOAD shim that traces or fails the I/O calls touching chosen files.
 *
 * Build: cc -shared -fPIC -O2 -o libiofault.so iofault.c -ldl
 *
 * Environment (read once, when the library loads):
 *   IOFAULT_FILES   colon-separated path suffixes of the files to watch (default "data.mdb");
 *                   an fd is watched when the absolute path it was opened on ends with one
 *   IOFAULT_ACK     path suffix of the "ack" channel: writes to it are copied into the trace
 *                   (as ACK records) and passed on; never faulted
 *   IOFAULT_TRACE   trace file (appended to); unset: no tracing
 *   IOFAULT_FAULT   "write" or "sync": which kind of call to fail; unset: no fault
 *   IOFAULT_N       the Nth call of that kind (1-based, counted from load or from arming)
 *   IOFAULT_ERRNO   ENOSPC, EIO, EFBIG or a number (default EIO)
 *   IOFAULT_MORE    keep failing the next K calls of that kind too (default 0)
 *
 * A program running under the shim can also re-arm it through the exported functions
 * iofault_arm(kind, n, errno, more), iofault_disarm(), iofault_calls(kind) and
 * iofault_failed() (ctypes: CDLL(None) finds them), kind 0 = write, 1 = sync.
 *
 * Calls that count: write kind: write, writev, pwrite, pwrite64, pwritev, pwritev2 (and 64
 * variants); sync kind: fsync, fdatasync, msync of a writable shared map of a watched file,
 * and every write on an fd opened with O_DSYNC or O_SYNC (a write and a sync at once).
 * A failed call returns -1 with the errno without doing anything.
 *
 * Trace format: records of a 32-byte little-endian header followed by `length` payload bytes.
 *   u8 type ('O' open, 'W' write, 'S' sync, 'T' truncate, 'A' ack, 'M' writable shared map),
 *   u8 file (index into IOFAULT_FILES), u16 zero, u32 pid, u64 seq, u64 offset, u64 length.
 *   O: payload = the path opened.  W: offset, payload = the bytes (recorded before the write
 *   is passed on).  S: recorded after the sync succeeded; `offset` = the last write seq of
 *   this process that the sync covers (writes issued while it ran are not covered).
 *   T: offset = new size.  A: payload = the bytes written to the ack channel.
 * Each record is appended with one write(2) on an O_APPEND fd (no stdio buffer), so a
 * SIGKILL leaves the trace complete up to the last call that reached the shim.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536
#define MAX_FILES 16
#define HDR 32

/* per fd: 0 = not watched; else bit 0x80 watched, 0x40 O_DSYNC/O_SYNC, 0x20 O_APPEND,
 * 0x10 ack channel, low 4 bits file index */
static unsigned char fdinfo[MAX_FD];
static char *suffixes[MAX_FILES];
static int nsuffixes;
static char *ack_suffix;
static int trace_fd = -1;
static volatile int inited;
static uint64_t seq;
static int writable_maps;

static int fault_kind = -1; /* 0 write, 1 sync */
static long fault_n, fault_more;
static int fault_errno = EIO;
static long calls[2];
static long failed;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_pwritev64v2)(int, const struct iovec *, int, off_t, int);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real___open_2)(const char *, int);
static int (*real___open64_2)(const char *, int);
static int (*real___openat_2)(int, const char *, int);
static int (*real___openat64_2)(int, const char *, int);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_msync)(void *, size_t, int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void *(*real_mmap64)(void *, size_t, int, int, int, off_t);

static int parse_errno(const char *s) {
    if (!s || !*s) return EIO;
    if (!strcmp(s, "ENOSPC")) return ENOSPC;
    if (!strcmp(s, "EIO")) return EIO;
    if (!strcmp(s, "EFBIG")) return EFBIG;
    if (!strcmp(s, "EDQUOT")) return EDQUOT;
    return atoi(s);
}

static void init(void) {
    if (inited) return;
#define R(name) real_##name = dlsym(RTLD_NEXT, #name)
    R(write); R(writev); R(pwrite); R(pwrite64); R(pwritev); R(pwritev64); R(pwritev2);
    R(pwritev64v2); R(open); R(open64); R(openat); R(openat64); R(__open_2); R(__open64_2);
    R(__openat_2); R(__openat64_2); R(close); R(dup); R(dup2); R(dup3); R(fsync);
    R(fdatasync); R(msync); R(ftruncate); R(ftruncate64); R(mmap); R(mmap64);
#undef R
    const char *files = getenv("IOFAULT_FILES");
    char *list = strdup(files && *files ? files : "data.mdb");
    for (char *tok = strtok(list, ":"); tok && nsuffixes < MAX_FILES; tok = strtok(NULL, ":"))
        suffixes[nsuffixes++] = tok;
    const char *ack = getenv("IOFAULT_ACK");
    if (ack && *ack) ack_suffix = strdup(ack);
    const char *kind = getenv("IOFAULT_FAULT");
    if (kind && *kind) {
        fault_kind = !strcmp(kind, "sync") ? 1 : 0;
        const char *n = getenv("IOFAULT_N"), *more = getenv("IOFAULT_MORE");
        fault_n = n ? atol(n) : 1;
        fault_more = more ? atol(more) : 0;
        fault_errno = parse_errno(getenv("IOFAULT_ERRNO"));
    }
    inited = 1;
    const char *trace = getenv("IOFAULT_TRACE");
    if (trace && *trace) {
        int fd = real_open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        /* keep the trace fd out of the way of programs that dup2 onto low fds */
        if (fd >= 0) {
            trace_fd = fcntl(fd, F_DUPFD_CLOEXEC, 1000);
            if (trace_fd < 0) trace_fd = fd; else real_close(fd);
        }
    }
}

__attribute__((constructor)) static void iofault_init(void) { init(); }

static int ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && !memcmp(s + ls - lx, suffix, lx);
}

static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Appends one record: header, then the payload gathered from iov (or buf). */
static void emit(char type, int file, uint64_t s, uint64_t offset, const void *buf, size_t len,
                 const struct iovec *iov, int iovcnt) {
    if (trace_fd < 0) return;
    size_t total = len;
    if (iov) {
        total = 0;
        for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    }
    unsigned char *rec = malloc(HDR + total);
    if (!rec) return;
    memset(rec, 0, HDR);
    rec[0] = (unsigned char)type;
    rec[1] = (unsigned char)file;
    uint32_t pid = (uint32_t)getpid();
    memcpy(rec + 4, &pid, 4);
    put64(rec + 8, s);
    put64(rec + 16, offset);
    put64(rec + 24, total);
    if (iov) {
        size_t at = HDR;
        for (int i = 0; i < iovcnt; i++) {
            memcpy(rec + at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
    } else if (len) {
        memcpy(rec + HDR, buf, len);
    }
    size_t done = 0;
    while (done < HDR + total) {
        ssize_t n = real_write(trace_fd, rec + done, HDR + total - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    free(rec);
}

static int watched(int fd) { return fd >= 0 && fd < MAX_FD && (fdinfo[fd] & 0x80); }
static int is_ack(int fd) { return fd >= 0 && fd < MAX_FD && (fdinfo[fd] & 0x10); }

/* 1 when this call of `kind` must fail (errno set). */
static int should_fail(int kind) {
    long n = __atomic_add_fetch(&calls[kind], 1, __ATOMIC_SEQ_CST);
    if (fault_kind != kind || fault_n <= 0) return 0;
    if (n >= fault_n && n <= fault_n + fault_more) {
        __atomic_add_fetch(&failed, 1, __ATOMIC_SEQ_CST);
        errno = fault_errno;
        return 1;
    }
    return 0;
}

static void after_open(int fd, int flags) {
    if (fd < 0 || fd >= MAX_FD || fd == trace_fd) return;
    fdinfo[fd] = 0;
    if (!inited) return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    if (ack_suffix && ends_with(path, ack_suffix)) {
        fdinfo[fd] = 0x10;
        return;
    }
    for (int i = 0; i < nsuffixes; i++) {
        if (ends_with(path, suffixes[i])) {
            unsigned char info = 0x80 | (unsigned char)i;
            if (flags & (O_DSYNC | O_SYNC)) info |= 0x40;
            if (flags & O_APPEND) info |= 0x20;
            fdinfo[fd] = info;
            emit('O', i, 0, (uint64_t)flags, path, (size_t)n, NULL, 0);
            return;
        }
    }
}

#define OPEN_MODE(flags, mode)                                       \
    mode_t mode = 0;                                                 \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                           \
        va_list ap;                                                  \
        va_start(ap, flags);                                         \
        mode = (mode_t)va_arg(ap, int);                              \
        va_end(ap);                                                  \
    }

int open(const char *path, int flags, ...) {
    init();
    OPEN_MODE(flags, mode);
    int fd = real_open(path, flags, mode);
    after_open(fd, flags);
    return fd;
}

int open64(const char *path, int flags, ...) {
    init();
    OPEN_MODE(flags, mode);
    int fd = (real_open64 ? real_open64 : real_open)(path, flags, mode);
    after_open(fd, flags);
    return fd;
}

int openat(int dirfd, const char *path, int flags, ...) {
    init();
    OPEN_MODE(flags, mode);
    int fd = real_openat(dirfd, path, flags, mode);
    after_open(fd, flags);
    return fd;
}

int openat64(int dirfd, const char *path, int flags, ...) {
    init();
    OPEN_MODE(flags, mode);
    int fd = (real_openat64 ? real_openat64 : real_openat)(dirfd, path, flags, mode);
    after_open(fd, flags);
    return fd;
}

int __open_2(const char *path, int flags) {
    init();
    int fd = real___open_2 ? real___open_2(path, flags) : real_open(path, flags);
    after_open(fd, flags);
    return fd;
}

int __open64_2(const char *path, int flags) {
    init();
    int fd = real___open64_2 ? real___open64_2(path, flags) : real_open(path, flags);
    after_open(fd, flags);
    return fd;
}

int __openat_2(int dirfd, const char *path, int flags) {
    init();
    int fd = real___openat_2 ? real___openat_2(dirfd, path, flags)
                             : real_openat(dirfd, path, flags);
    after_open(fd, flags);
    return fd;
}

int __openat64_2(int dirfd, const char *path, int flags) {
    init();
    int fd = real___openat64_2 ? real___openat64_2(dirfd, path, flags)
                               : real_openat(dirfd, path, flags);
    after_open(fd, flags);
    return fd;
}

int close(int fd) {
    init();
    if (fd >= 0 && fd < MAX_FD) fdinfo[fd] = 0;
    return real_close(fd);
}

static int copy_fd(int from, int to) {
    if (to >= 0 && to < MAX_FD) fdinfo[to] = (from >= 0 && from < MAX_FD) ? fdinfo[from] : 0;
    return to;
}

int dup(int fd) {
    init();
    int r = real_dup(fd);
    return r < 0 ? r : copy_fd(fd, r);
}

int dup2(int fd, int to) {
    init();
    int r = real_dup2(fd, to);
    return r < 0 ? r : copy_fd(fd, r);
}

int dup3(int fd, int to, int flags) {
    init();
    int r = real_dup3(fd, to, flags);
    return r < 0 ? r : copy_fd(fd, r);
}

/* Before a watched write: count it (and fail it if armed), then record it. Returns 1 when
 * the call must fail. `offset` < 0: the fd's current position (or its end with O_APPEND). */
static int before_write(int fd, off_t offset, const void *buf, size_t len,
                        const struct iovec *iov, int iovcnt) {
    if (is_ack(fd)) {
        emit('A', 0, 0, 0, buf, len, iov, iovcnt);
        return 0;
    }
    if (!watched(fd)) return 0;
    int dsync = fdinfo[fd] & 0x40;
    if (should_fail(0)) return 1;
    if (dsync && should_fail(1)) return 1;
    if (offset < 0) {
        if (fdinfo[fd] & 0x20) {
            struct stat st;
            offset = fstat(fd, &st) == 0 ? st.st_size : 0;
        } else {
            offset = lseek(fd, 0, SEEK_CUR);
        }
    }
    uint64_t s = __atomic_add_fetch(&seq, 1, __ATOMIC_SEQ_CST);
    emit('W', fdinfo[fd] & 0x0f, s, (uint64_t)offset, buf, len, iov, iovcnt);
    return 0;
}

/* After a watched write on an O_DSYNC fd that succeeded: it is a sync too. */
static void after_write(int fd, ssize_t r) {
    if (r >= 0 && watched(fd) && (fdinfo[fd] & 0x40))
        emit('S', fdinfo[fd] & 0x0f, 0, __atomic_load_n(&seq, __ATOMIC_SEQ_CST), NULL, 0,
             NULL, 0);
}

ssize_t write(int fd, const void *buf, size_t len) {
    init();
    if (before_write(fd, -1, buf, len, NULL, 0)) return -1;
    ssize_t r = real_write(fd, buf, len);
    after_write(fd, r);
    return r;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    init();
    if (before_write(fd, -1, NULL, 0, iov, iovcnt)) return -1;
    ssize_t r = real_writev(fd, iov, iovcnt);
    after_write(fd, r);
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) {
    init();
    if (before_write(fd, off, buf, len, NULL, 0)) return -1;
    ssize_t r = real_pwrite(fd, buf, len, off);
    after_write(fd, r);
    return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) {
    init();
    if (before_write(fd, off, buf, len, NULL, 0)) return -1;
    ssize_t r = (real_pwrite64 ? real_pwrite64 : real_pwrite)(fd, buf, len, off);
    after_write(fd, r);
    return r;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    init();
    if (before_write(fd, off, NULL, 0, iov, iovcnt)) return -1;
    ssize_t r = real_pwritev(fd, iov, iovcnt, off);
    after_write(fd, r);
    return r;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    init();
    if (before_write(fd, off, NULL, 0, iov, iovcnt)) return -1;
    ssize_t r = (real_pwritev64 ? real_pwritev64 : real_pwritev)(fd, iov, iovcnt, off);
    after_write(fd, r);
    return r;
}

ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags) {
    init();
    if (before_write(fd, off, NULL, 0, iov, iovcnt)) return -1;
    ssize_t r = real_pwritev2(fd, iov, iovcnt, off, flags);
    if (flags & (RWF_DSYNC | RWF_SYNC)) {
        if (r >= 0 && watched(fd))
            emit('S', fdinfo[fd] & 0x0f, 0, __atomic_load_n(&seq, __ATOMIC_SEQ_CST), NULL, 0,
                 NULL, 0);
    } else {
        after_write(fd, r);
    }
    return r;
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags) {
    init();
    if (!real_pwritev64v2) return pwritev2(fd, iov, iovcnt, off, flags);
    if (before_write(fd, off, NULL, 0, iov, iovcnt)) return -1;
    ssize_t r = real_pwritev64v2(fd, iov, iovcnt, off, flags);
    after_write(fd, r);
    return r;
}

static int do_sync(int fd, int (*fn)(int)) {
    init();
    if (!watched(fd)) return fn(fd);
    if (should_fail(1)) return -1;
    uint64_t covered = __atomic_load_n(&seq, __ATOMIC_SEQ_CST);
    int r = fn(fd);
    if (r == 0) emit('S', fdinfo[fd] & 0x0f, 0, covered, NULL, 0, NULL, 0);
    return r;
}

int fsync(int fd) { init(); return do_sync(fd, real_fsync); }

int fdatasync(int fd) { init(); return do_sync(fd, real_fdatasync); }

int msync(void *addr, size_t len, int flags) {
    init();
    if (!__atomic_load_n(&writable_maps, __ATOMIC_SEQ_CST) || !(flags & MS_SYNC))
        return real_msync(addr, len, flags);
    if (should_fail(1)) return -1;
    uint64_t covered = __atomic_load_n(&seq, __ATOMIC_SEQ_CST);
    int r = real_msync(addr, len, flags);
    if (r == 0) emit('S', 0, 0, covered, NULL, 0, NULL, 0);
    return r;
}

static void truncated(int fd, off_t size, int r) {
    if (r == 0 && watched(fd)) {
        uint64_t s = __atomic_add_fetch(&seq, 1, __ATOMIC_SEQ_CST);
        emit('T', fdinfo[fd] & 0x0f, s, (uint64_t)size, NULL, 0, NULL, 0);
    }
}

int ftruncate(int fd, off_t size) {
    init();
    int r = real_ftruncate(fd, size);
    truncated(fd, size, r);
    return r;
}

int ftruncate64(int fd, off_t size) {
    init();
    int r = (real_ftruncate64 ? real_ftruncate64 : real_ftruncate)(fd, size);
    truncated(fd, size, r);
    return r;
}

/* A shared writable map of a watched file changes it behind the shim's back: the trace
 * says so (an 'M' record) and the image builder refuses such a trace. */
static void mapped(int fd, int prot, int flags, void *r) {
    if (r != MAP_FAILED && watched(fd) && (prot & PROT_WRITE) && (flags & MAP_SHARED)) {
        __atomic_store_n(&writable_maps, 1, __ATOMIC_SEQ_CST);
        emit('M', fdinfo[fd] & 0x0f, 0, 0, NULL, 0, NULL, 0);
    }
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    init();
    void *r = real_mmap(addr, len, prot, flags, fd, off);
    mapped(fd, prot, flags, r);
    return r;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    init();
    void *r = (real_mmap64 ? real_mmap64 : real_mmap)(addr, len, prot, flags, fd, off);
    mapped(fd, prot, flags, r);
    return r;
}

/* The control interface, for programs that run under the shim (ctypes). */
void iofault_arm(int kind, long n, int err, long more) {
    init();
    __atomic_store_n(&fault_kind, -1, __ATOMIC_SEQ_CST);
    fault_errno = err;
    fault_more = more;
    fault_n = __atomic_load_n(&calls[kind], __ATOMIC_SEQ_CST) + n;
    __atomic_store_n(&fault_kind, kind, __ATOMIC_SEQ_CST);
}

void iofault_disarm(void) { __atomic_store_n(&fault_kind, -1, __ATOMIC_SEQ_CST); }

long iofault_calls(int kind) { return __atomic_load_n(&calls[kind & 1], __ATOMIC_SEQ_CST); }

long iofault_failed(void) { return __atomic_load_n(&failed, __ATOMIC_SEQ_CST); }
