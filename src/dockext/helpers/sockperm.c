/*
 * sockperm DIR UID GID
 *
 * Gives every unix socket in DIR to UID:GID and makes sure its owner may read and write it, so that an
 * ordinary user can connect() to sockets that root-run extension backends create (root 0755 under umask 022).
 *
 * Runs as PID 1 of a FROM scratch container (network none, read-only, only CAP_CHOWN, CAP_FOWNER and
 * CAP_DAC_OVERRIDE), with DIR bind-mounted. It scans DIR at start, after every inotify event, and every
 * 2 seconds in case an event was missed. It never follows symlinks and never touches anything that is not a
 * socket. Silent unless something fails (then one line on stderr). Exits 0 on SIGTERM/SIGINT, 1 when DIR
 * goes away, 2 on bad arguments.
 *
 * Built static by tools/build-helpers.sh (the only way the committed binaries are made).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define RESCAN_MS 2000
#define WATCH_MASK (IN_CREATE | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_ONLYDIR)

static uid_t want_uid;
static gid_t want_gid;

/* PID 1 ignores signals that have no handler: without this, `docker stop` waits for its timeout. */
static void on_signal(int sig) {
    (void)sig;
    _exit(0);
}

/* A decimal id without sign or spaces, below 2^31 - 1 (so never the "no change" value (uid_t)-1). */
static int parse_id(const char *s, unsigned long *out) {
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v >= 0x7fffffffUL)
        return -1;
    *out = v;
    return 0;
}

/* Report an error once per (file, errno) in a row, not every 2 s. */
static void report(const char *what, const char *name, const struct stat *st, int err) {
    static dev_t last_dev;
    static ino_t last_ino;
    static int last_err;
    if (st != NULL && st->st_dev == last_dev && st->st_ino == last_ino && err == last_err)
        return;
    if (st != NULL) {
        last_dev = st->st_dev;
        last_ino = st->st_ino;
        last_err = err;
    }
    fprintf(stderr, "sockperm: %s %s: %s\n", what, name, strerror(err));
}

static void fix(int dirfd, const char *name) {
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) /* ENOENT: removed since readdir, nothing to do */
            report("stat", name, NULL, errno);
        return;
    }
    if (!S_ISSOCK(st.st_mode))
        return;
    if ((st.st_uid != want_uid || st.st_gid != want_gid) &&
        fchownat(dirfd, name, want_uid, want_gid, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT)
            report("chown", name, &st, errno);
        return;
    }
    /* Still a socket (chown did not follow links); fchmodat cannot refuse symlinks portably, so flags 0. */
    if ((st.st_mode & 0600) != 0600 && fchmodat(dirfd, name, (st.st_mode & 0777) | 0600, 0) != 0) {
        if (errno != ENOENT)
            report("chmod", name, &st, errno);
    }
}

static void scan(int dirfd, const char *dir) {
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
        report("open", dir, NULL, errno);
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (e->d_type == DT_SOCK || e->d_type == DT_UNKNOWN)
            fix(dirfd, e->d_name);
    }
    closedir(d);
}

/* Drain pending events; returns -1 when DIR itself was deleted or unwatched. */
static int drain(int ifd) {
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(ifd, buf, sizeof buf);
        if (n <= 0)
            return 0; /* EAGAIN: drained (IN_Q_OVERFLOW needs nothing more than the rescan that follows) */
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & (IN_DELETE_SELF | IN_IGNORED))
                return -1;
            p += sizeof *ev + ev->len;
        }
    }
}

int main(int argc, char **argv) {
    unsigned long uid, gid;
    if (argc != 4 || argv[1][0] == '\0' || parse_id(argv[2], &uid) != 0 || parse_id(argv[3], &gid) != 0) {
        fprintf(stderr, "usage: sockperm DIR UID GID  (UID and GID: decimal numbers)\n");
        return 2;
    }
    want_uid = (uid_t)uid;
    want_gid = (gid_t)gid;
    const char *dir = argv[1];

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
        perror("sockperm: sigaction");
        return 1;
    }

    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        fprintf(stderr, "sockperm: open %s: %s\n", dir, strerror(errno));
        return 1;
    }
    /* Watch before the first scan, so that nothing created in between is missed. */
    int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ifd >= 0 && inotify_add_watch(ifd, dir, WATCH_MASK) < 0) {
        close(ifd);
        ifd = -1;
    }
    if (ifd < 0)
        fprintf(stderr, "sockperm: inotify on %s: %s (rescanning every 2 s only)\n", dir, strerror(errno));

    for (;;) {
        scan(dirfd, dir);
        struct pollfd pfd = {.fd = ifd, .events = POLLIN};
        int r = poll(&pfd, ifd >= 0 ? 1 : 0, RESCAN_MS);
        if (r < 0 && errno != EINTR) {
            perror("sockperm: poll");
            return 1;
        }
        if (r > 0 && drain(ifd) < 0) {
            fprintf(stderr, "sockperm: %s was removed\n", dir);
            return 1;
        }
    }
}
