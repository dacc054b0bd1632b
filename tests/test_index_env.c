/* test_index_env.c - one index opened by several handles of one process (a
   writer and readers, under different spellings of its path) shares one
   LMDB environment: the handles see each other's commits at once, and
   closing a reader leaves the writer's LMDB locks in place (with two
   environments, closing one drops the process's fcntl locks on lock.mdb,
   after which another process's reader check frees our reader slots). */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "index_fixture.h"
#include "index/index.h"
#include "store/store.h"

#define DIM 16
#define FP "e1e1e1e1"

static char dir[4096];

static siamidx_index *open_as(const char *path, int read_only) {
    return fixture_open_raw(path, FP, DIM, read_only);
}

static void vec(size_t i, float *v) {
    for (int d = 0; d < DIM; d++) v[d] = (float)((d == (int)(i % DIM)) + 0.01 * (double)(i / DIM));
    double n = 0;
    for (int d = 0; d < DIM; d++) n += v[d] * v[d];
    for (int d = 0; d < DIM; d++) v[d] /= (float)sqrt(n);
}

static void add(siamidx_index *idx, size_t from, size_t to) {
    for (size_t i = from; i < to; i++) {
        float v[DIM];
        char path[32];
        vec(i, v);
        snprintf(path, sizeof path, "/e/%zu.jpg", i);
        sx_index_item it = {.path = path, .resolved = path, .artist = "a", .embedding = v};
        memcpy(it.hash, &i, sizeof i);
        siamidx_error err;
        CHECK(sx_index_add_embeddings(idx, &it, 1, &err) == SIAMIDX_OK);
    }
}

static uint64_t images(siamidx_index *idx) {
    siamidx_index_info info;
    siamidx_error err;
    if (siamidx_index_info_get(idx, &info, &err)) return (uint64_t)-1;
    uint64_t n = info.images;
    siamidx_index_info_free(&info);
    return n;
}

/* In a child process: does this process still hold its LMDB reader-liveness
   lock (the byte at offset pid of lock.mdb)? */
static int pid_lock_held(void) {
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        char path[4200];
        snprintf(path, sizeof path, "%s/lock.mdb", dir);
        int fd = open(path, O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = parent, .l_len = 1};
        if (fd < 0 || fcntl(fd, F_GETLK, &fl) != 0) _exit(2);
        _exit(fl.l_type == F_UNLCK ? 1 : 0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(void) {
    const char *tmp = getenv("SIAMIDX_TMP");
    if (!tmp) tmp = "/tmp";
    mkdir(tmp, 0777);
    snprintf(dir, sizeof dir, "%s/test_index_env.%d", tmp, (int)getpid());
    char other[4200];
    snprintf(other, sizeof other, "%s/./", dir); /* the same directory, spelled otherwise */

    siamidx_index *w = open_as(dir, 0);
    CHECK(w != NULL);
    if (!w) CHECK_DONE();
    add(w, 0, 10);
    CHECK(images(w) == 10); /* a read transaction: LMDB takes its liveness lock */
    CHECK(pid_lock_held());

    siamidx_index *r1 = open_as(other, 1), *r2 = open_as(dir, 1);
    CHECK(r1 && r2);
    if (!r1 || !r2) CHECK_DONE();
    CHECK(sx_index_store(r1) != sx_index_store(w)); /* separate handles ... */
    CHECK(images(r1) == 10 && images(r2) == 10);
    add(w, 10, 15); /* ... on one environment: commits are seen at once */
    CHECK(images(r1) == 15 && images(r2) == 15);
    float q[DIM];
    int64_t ids[1];
    float sims[1];
    siamidx_error err;
    vec(12, q);
    CHECK(siamidx_index_search(r1, q, 1, 1, ids, sims, &err) == SIAMIDX_OK && ids[0] == 13);

    siamidx_index_close(r1); /* must not drop the writer's locks */
    CHECK_MSG(pid_lock_held(), "closing a reader handle released the process's LMDB lock");
    add(w, 15, 20);
    CHECK(images(r2) == 20);
    siamidx_index_close(w); /* the reader keeps working after the writer left */
    CHECK(images(r2) == 20);
    CHECK(pid_lock_held());
    siamidx_index_close(r2);

    /* Reopened by a reader first, then a writer on the reader's environment. */
    r1 = open_as(dir, 1);
    w = open_as(other, 0);
    CHECK(r1 && w);
    if (w) add(w, 20, 21);
    if (r1) CHECK(images(r1) == 21);
    siamidx_index_close(w);
    siamidx_index_close(r1);
    size_t problems = 99;
    r1 = open_as(dir, 1);
    CHECK(r1 && siamidx_index_verify(r1, NULL, NULL, &problems, &err) == 0 && problems == 0);
    siamidx_index_close(r1);

    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}
