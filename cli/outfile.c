/* outfile.c - atomic output files (see outfile.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "outfile.h"

int cli_outfile_open(cli_outfile *o, const char *path) {
    memset(o, 0, sizeof *o);
    o->path = path && strcmp(path, "-") ? path : NULL;
    if (!o->path) {
        o->f = stdout;
        return 0;
    }
    /* Beside the target, so that the rename stays inside one file system. */
    if ((size_t)snprintf(o->tmp, sizeof o->tmp, "%s.tmp.XXXXXX", path) >= sizeof o->tmp) {
        cli_error("%s: path too long", path);
        return -1;
    }
    int fd = mkstemp(o->tmp);
    if (fd >= 0) {
        /* mkstemp makes it 0600; an output file gets the usual 0666 less the umask. */
        mode_t mask = umask(0);
        umask(mask);
        fchmod(fd, 0666 & ~mask);
    }
    if (fd < 0 || !(o->f = fdopen(fd, "wb"))) {
        cli_error("%s: cannot create: %s", o->tmp, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(o->tmp);
        }
        return -1;
    }
    return 0;
}

/* The directory entry of the rename reaches the disk only with the directory's fsync. */
static int sync_dir_of(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int cli_outfile_close(cli_outfile *o, int ok) {
    if (!o->path) {
        if (fflush(stdout) == 0 && ok) return 0;
        if (ok) cli_error("standard output: write failed: %s", strerror(errno));
        return -1;
    }
    int written = ok && fflush(o->f) == 0 && !ferror(o->f) && fsync(fileno(o->f)) == 0;
    int saved = errno;
    written = fclose(o->f) == 0 && written;
    o->f = NULL;
    if (written && rename(o->tmp, o->path) == 0) {
        /* Committed; a failed directory sync only means a crash could keep the old file. */
        sync_dir_of(o->path);
        return 0;
    }
    if (ok) cli_error("%s: cannot write: %s", o->path, strerror(written ? errno : saved));
    unlink(o->tmp);
    return -1;
}
