/*
 * lock.c - one writer process per index.
 *
 * LMDB already serialises write transactions, but a second `build` would then
 * block silently between batches and interleave with the first. An flock()
 * on DIR/writer.lock, held for the writer's whole session, turns that into a
 * clear "being written by process N" error (or a wait). flock locks vanish
 * with their process, so a kill -9 never leaves a stale lock behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "store/lock.h"
#include "base/error.h"

struct sx_lock {
    int fd;
};

static long holder_pid(int fd) {
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    return n > 0 ? strtol(buf, NULL, 10) : 0;
}

siamidx_status sx_lock_acquire(const char *dir, int wait, sx_lock **out, siamidx_error *err) {
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/writer.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return sx_fail(err, SIAMIDX_ERR_IO, "%s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
        if (errno == EINTR) continue;
        siamidx_status s;
        if (errno == EWOULDBLOCK) {
            long pid = holder_pid(fd);
            if (pid > 0)
                s = sx_fail(err, SIAMIDX_ERR_INDEX_LOCKED,
                            "index %s is being written by process %ld (use --wait to wait)", dir,
                            pid);
            else
                s = sx_fail(err, SIAMIDX_ERR_INDEX_LOCKED,
                            "index %s is being written by another process (use --wait to wait)",
                            dir);
        } else {
            s = sx_fail(err, SIAMIDX_ERR_IO, "%s: lock: %s", path, strerror(errno));
        }
        close(fd);
        return s;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* The lock holds anyway; only the message for others loses the PID. */
    }
    sx_lock *l = malloc(sizeof *l);
    if (!l) {
        close(fd);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "lock: out of memory");
    }
    l->fd = fd;
    *out = l;
    return SIAMIDX_OK;
}

void sx_lock_release(sx_lock *l) {
    if (!l) return;
    if (ftruncate(l->fd, 0) != 0) { /* harmless: the next holder rewrites it */
    }
    close(l->fd);
    free(l);
}
