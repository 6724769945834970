/*
 * sockperm DIR UID GID | sockperm idle [DIR] | sockperm connect PATH | sockperm probe PATH | sockperm clean DIR
 *
 * A static helper for the small FROM scratch containers that dockext adds to an extension's compose project.
 *
 * sockperm DIR UID GID
 *   Gives every unix socket in DIR to UID:GID and makes sure its owner may read and write it, so that an
 *   ordinary user can connect() to sockets that root-run extension backends create (root 0755 under
 *   umask 022).
 *   Runs as PID 1 of a FROM scratch container (network none, read-only, only CAP_CHOWN, CAP_FOWNER and
 *   CAP_DAC_OVERRIDE), with DIR bind-mounted. It scans DIR at start, after every inotify event, and every
 *   2 seconds in case an event was missed. It never follows symlinks and never touches anything that is not a
 *   socket. Silent unless something fails (then one line on stderr). Exits 0 on SIGTERM/SIGINT, 1 when DIR
 *   goes away, 2 on bad arguments.
 *
 * sockperm idle [DIR]
 *   PID 1 of the relay container of a remote engine (network none, read-only, cap_drop ALL plus DAC_OVERRIDE
 *   and FOWNER, the backend's socket volume mounted): waits until SIGTERM or SIGINT, then exits 0. dockext
 *   reaches the backend socket by exec'ing `connect` in it. With DIR, every 2 s it removes the sockets there
 *   that refused connections (ECONNREFUSED: nobody listens) at two sweeps in a row, the same file both times:
 *   what a killed backend left, which a Node-like backend restarted alone could not listen over.
 *
 * sockperm connect PATH
 *   Connects a SOCK_STREAM unix socket to PATH and copies stdin to it and it to stdout (an exec's hijacked
 *   stream carrying HTTP). A full accept queue (EAGAIN) is retried for up to 10 s, backing off from 0.5 ms to
 *   20 ms. Stdin's EOF ends it at once, exit 0: the client (dockext, which never half-closes a request) went
 *   away, and the backend should see its connection close, not keep an abandoned answer (a stream) going.
 *   The socket's EOF (or a read error) ends the copy too: exit 0, without waiting for stdin. Stdout going
 *   away (EPIPE) also exits 0, quietly.
 *
 * sockperm probe PATH
 *   Connects as `connect` does, closes, exits 0.
 *
 * sockperm clean DIR
 *   Removes everything inside DIR, which stays: what a backend left in its guest-services dir as a user that
 *   dockext, run as an ordinary user, cannot remove itself (root's directories, files in them). Run once in a
 *   container (network none, read-only, cap_drop ALL plus DAC_OVERRIDE and FOWNER) with DIR bind-mounted. It
 *   never follows a symlink (a link is removed as a link), never enters another file system, and goes at most
 *   64 directories deep. One line on stderr for each entry it cannot remove; exit 0 when DIR is empty at the
 *   end, 1 when something stayed, 2 on bad arguments.
 *
 * When connect or probe cannot connect: exactly one line on stderr, exit 3:
 *   sockperm: connect ENOENT /run/guest-services/backend.sock: No such file or directory
 * The first word after "connect " is the errno's name (ENOENT, ECONNREFUSED, EACCES, ENOTSOCK, ETIMEDOUT,
 * EAGAIN, ... or E<number> for others); the text after the colon is the same on every build for named
 * errnos (glibc's wording). Bad arguments (unknown mode, wrong count, empty PATH, PATH longer than sun_path):
 * one line on stderr, exit 2. Should poll(2) itself fail while copying: one line on stderr, exit 1.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RESCAN_MS 2000
#define WATCH_MASK (IN_CREATE | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_ONLYDIR)
#define RELAY_BUF 65536                    /* per direction */
#define CONNECT_TRY_NS 10000000000LL       /* retry a full accept queue (EAGAIN) for at most 10 s, */
#define BACKOFF_FIRST_NS 500000L           /* waiting 0.5 ms first, */
#define BACKOFF_MAX_NS 20000000L           /* doubling up to 20 ms */
#define USAGE "usage: sockperm DIR UID GID | sockperm idle [DIR] | sockperm connect PATH | sockperm probe PATH" \
              " | sockperm clean DIR" \
              "  (UID and GID: decimal numbers)\n"

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

static int usage(void) {
    fputs(USAGE, stderr);
    return 2;
}

static int on_exit_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
        perror("sockperm: sigaction");
        return -1;
    }
    return 0;
}

/* sockperm DIR UID GID */
static int perm_main(int argc, char **argv) {
    unsigned long uid, gid;
    if (argc != 4 || argv[1][0] == '\0' || parse_id(argv[2], &uid) != 0 || parse_id(argv[3], &gid) != 0)
        return usage();
    want_uid = (uid_t)uid;
    want_gid = (gid_t)gid;
    const char *dir = argv[1];

    if (on_exit_signals() != 0)
        return 1;

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

/* True when nothing listens on the unix socket DIR/NAME (ECONNREFUSED); anything else counts as alive. */
static int refuses(const char *dir, const char *name) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", dir, name) >= (int)sizeof sa.sun_path)
        return 0;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return 0;
    int refused = connect(s, (const struct sockaddr *)&sa, sizeof sa) != 0 && errno == ECONNREFUSED;
    close(s);
    return refused;
}

#define STALE_MAX 64
static struct stale {
    char name[256];
    dev_t dev;
    ino_t ino;
    struct timespec ctime;
} seen_refusing[STALE_MAX];
static int n_refusing;

/* One sweep of DIR: a socket that refused at the previous sweep too (2 s ago), still the same file, is removed,
 * so that a backend restarted alone (its volume stays mounted by the relay) can listen again (reference R13). */
static void sweep(const char *dir) {
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dirfd < 0 ? NULL : fdopendir(dirfd);
    if (d == NULL) {
        if (dirfd >= 0)
            close(dirfd);
        return;
    }
    struct stale now[STALE_MAX];
    int n_now = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n_now < STALE_MAX) {
        struct stat st;
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof now[0].name)
            continue;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISSOCK(st.st_mode))
            continue;
        if (!refuses(dir, e->d_name))
            continue;
        int before = 0;
        for (int i = 0; i < n_refusing; i++)
            if (strcmp(seen_refusing[i].name, e->d_name) == 0 && seen_refusing[i].dev == st.st_dev &&
                seen_refusing[i].ino == st.st_ino && seen_refusing[i].ctime.tv_sec == st.st_ctim.tv_sec &&
                seen_refusing[i].ctime.tv_nsec == st.st_ctim.tv_nsec)
                before = 1;
        if (before) {
            if (unlinkat(dirfd, e->d_name, 0) != 0 && errno != ENOENT)
                fprintf(stderr, "sockperm: unlink %s/%s: %s\n", dir, e->d_name, strerror(errno));
            continue;
        }
        snprintf(now[n_now].name, sizeof now[n_now].name, "%s", e->d_name);
        now[n_now].dev = st.st_dev;
        now[n_now].ino = st.st_ino;
        now[n_now].ctime = st.st_ctim;
        n_now++;
    }
    closedir(d);
    memcpy(seen_refusing, now, sizeof now[0] * (size_t)n_now);
    n_refusing = n_now;
}

/* sockperm idle [DIR]: PID 1 of the relay container; with DIR, it sweeps stale sockets there every 2 s.
 * on_signal exits, so there is no flag to race with. */
static int idle_main(const char *dir) {
    if (on_exit_signals() != 0)
        return 1;
    for (;;) {
        if (dir == NULL) {
            pause();
            continue;
        }
        sweep(dir);
        struct timespec ts = {.tv_sec = RESCAN_MS / 1000, .tv_nsec = (RESCAN_MS % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

/* The errnos a caller may act on, by name, with glibc's wording so that every build prints the same line. */
static const struct {
    int err;
    const char *name, *text;
} errnames[] = {
    {ENOENT, "ENOENT", "No such file or directory"},
    {ECONNREFUSED, "ECONNREFUSED", "Connection refused"},
    {EACCES, "EACCES", "Permission denied"},
    {ENOTSOCK, "ENOTSOCK", "Socket operation on non-socket"},
    {ETIMEDOUT, "ETIMEDOUT", "Connection timed out"},
    {EAGAIN, "EAGAIN", "Resource temporarily unavailable"},
    {EPERM, "EPERM", "Operation not permitted"},
    {ENOTDIR, "ENOTDIR", "Not a directory"},
    {ELOOP, "ELOOP", "Too many levels of symbolic links"},
    {ENAMETOOLONG, "ENAMETOOLONG", "File name too long"},
    {EPROTOTYPE, "EPROTOTYPE", "Protocol wrong type for socket"},
    {ECONNRESET, "ECONNRESET", "Connection reset by peer"},
    {EINVAL, "EINVAL", "Invalid argument"},
    {EMFILE, "EMFILE", "Too many open files"},
    {ENFILE, "ENFILE", "Too many open files in system"},
    {ENOMEM, "ENOMEM", "Cannot allocate memory"},
    {ENOBUFS, "ENOBUFS", "No buffer space available"},
};

static int connect_failed(const char *path, int err) {
    for (size_t i = 0; i < sizeof errnames / sizeof errnames[0]; i++) {
        if (errnames[i].err == err) {
            fprintf(stderr, "sockperm: connect %s %s: %s\n", errnames[i].name, path, errnames[i].text);
            return 3;
        }
    }
    fprintf(stderr, "sockperm: connect E%d %s: %s\n", err, path, strerror(err));
    return 3;
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void set_sndtimeo(int fd, long long ns) {
    struct timeval tv = {.tv_sec = (time_t)(ns / 1000000000LL),
                         .tv_usec = (suseconds_t)(ns % 1000000000LL / 1000)};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* best effort: only bounds a wait */
}

/*
 * A blocking connect; returns the socket, or -1 with errno set. A full accept queue is EAGAIN where connect
 * does not wait (nonblocking sockets, other kernels): retried with a backoff. Linux makes a blocking connect
 * wait for room instead, for SO_SNDTIMEO, which is set to what is left of the 10 s (and reset afterwards, as
 * it would also bound writes), so a listener that never accepts cannot hold the exec forever either.
 */
static int connect_unix(const struct sockaddr_un *sa) {
    long long deadline = now_ns() + CONNECT_TRY_NS;
    long delay = BACKOFF_FIRST_NS;
    for (;;) {
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
            return -1;
        if (s <= STDERR_FILENO) { /* fd 0, 1 or 2 was closed: keep them apart from the socket */
            int t = fcntl(s, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
            int e = errno;
            close(s);
            if (t < 0) {
                errno = e;
                return -1;
            }
            s = t;
        }
        long long left = deadline - now_ns();
        set_sndtimeo(s, left > 1000 ? left : 1000);
        if (connect(s, (const struct sockaddr *)sa, sizeof *sa) == 0) {
            set_sndtimeo(s, 0);
            return s;
        }
        int e = errno;
        close(s);
        if (e == EINTR)
            continue;
        left = deadline - now_ns();
        if (e != EAGAIN || left <= 0) {
            errno = e;
            return -1;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = delay < left ? delay : (long)left};
        nanosleep(&ts, NULL);
        delay = delay * 2 < BACKOFF_MAX_NS ? delay * 2 : BACKOFF_MAX_NS;
    }
}

/* Write all of buf to a blocking (or, should it be one, a nonblocking) fd; -1 on error. */
static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                poll(&p, 1, -1);
                continue;
            }
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Copy stdin -> sock and sock -> stdout until the socket's EOF. Stdin and stdout stay blocking (they belong
 * to the exec); the socket is nonblocking, so that a backend that answers before it has read all of a
 * request is still read while the rest of the request waits for room: a partial write keeps its rest in
 * `up`, stdin is not read until it is gone, and only then is POLLOUT asked for.
 */
static int relay(int sock) {
    static char up[RELAY_BUF], down[RELAY_BUF];
    size_t up_off = 0, up_len = 0;
    int in_open = 1, shut = 0;
    if (fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK) != 0) {
        perror("sockperm: fcntl");
        return 1;
    }
    for (;;) {
        struct pollfd p[2] = {
            {.fd = in_open && up_len == 0 ? STDIN_FILENO : -1, .events = POLLIN},
            {.fd = sock, .events = POLLIN | (up_len > 0 ? POLLOUT : 0)},
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("sockperm: poll");
            return 1;
        }
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(sock, down, sizeof down);
            if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
                n = -2; /* nothing after all */
            if (n == 0 || n == -1)
                return 0; /* EOF, or ECONNRESET and the like: the answer is complete as far as it goes */
            if (n > 0 && write_all(STDOUT_FILENO, down, (size_t)n) != 0)
                return 0; /* stdout's reader went away: nobody to tell */
        }
        int try_up = up_len > 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP));
        if (in_open && up_len == 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
            ssize_t n = read(STDIN_FILENO, up, sizeof up);
            if (n > 0) {
                up_off = 0;
                up_len = (size_t)n;
                try_up = 1; /* written just below, without waiting for POLLOUT */
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
                return 0; /* EOF (or a broken stdin): the client went away (dockext never half-closes a request),
                             so the backend connection ends now rather than when the backend next writes */
            }
        }
        while (try_up && up_len > 0) {
            ssize_t n = write(sock, up + up_off, up_len);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                    up_len = 0; /* EPIPE: the backend reads no more; its answer may still come */
                    in_open = 0;
                    shut = 1;
                }
                break;
            }
            up_off += (size_t)n;
            up_len -= (size_t)n;
            if (up_len > 0)
                break; /* partial: the socket is full, wait for POLLOUT rather than for EAGAIN */
        }
        if (!in_open && up_len == 0 && !shut) { /* EPIPE: the backend reads no more; its answer may still come */
            shutdown(sock, SHUT_WR);
            shut = 1;
        }
    }
}

/* sockperm connect PATH, sockperm probe PATH */
static int connect_main(const char *path, int probe) {
    struct sockaddr_un sa;
    size_t len = strlen(path);
    if (len > sizeof sa.sun_path) {
        fprintf(stderr, "sockperm: socket path too long (%zu bytes, at most %zu): %s\n", len,
                sizeof sa.sun_path, path);
        return 2;
    }
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, len); /* Linux takes a full sun_path without the NUL */
    signal(SIGPIPE, SIG_IGN);
    int sock = connect_unix(&sa);
    if (sock < 0)
        return connect_failed(path, errno);
    if (probe) {
        close(sock);
        return 0;
    }
    return relay(sock);
}

/* Removes the entries of the directory open at fd (not fd's directory itself); 0 when all went. */
static int clean_at(int fd, const char *path, dev_t dev, int depth) {
    int dup_fd = dup(fd);
    DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
    if (d == NULL) {
        fprintf(stderr, "sockperm: cannot read %s: %s\n", path, strerror(errno));
        if (dup_fd >= 0)
            close(dup_fd);
        return 1;
    }
    int failed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno != ENOENT) {
                fprintf(stderr, "sockperm: cannot stat %s/%s: %s\n", path, e->d_name, strerror(errno));
                failed = 1;
            }
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (st.st_dev != dev || depth >= 64) {
                fprintf(stderr, "sockperm: left %s/%s: %s\n", path, e->d_name,
                        st.st_dev != dev ? "another file system" : "more than 64 directories deep");
                failed = 1;
                continue;
            }
            int sub = openat(fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                fprintf(stderr, "sockperm: cannot open %s/%s: %s\n", path, e->d_name, strerror(errno));
                failed = 1;
                continue;
            }
            char inner[PATH_MAX];
            snprintf(inner, sizeof inner, "%s/%s", path, e->d_name);
            int sub_failed = clean_at(sub, inner, dev, depth + 1);
            close(sub);
            if (sub_failed) {
                failed = 1;
                continue;
            }
        }
        if (unlinkat(fd, e->d_name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT) {
            fprintf(stderr, "sockperm: cannot remove %s/%s: %s\n", path, e->d_name, strerror(errno));
            failed = 1;
        }
    }
    closedir(d);
    return failed;
}

/* sockperm clean DIR */
static int clean_main(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "sockperm: cannot open %s: %s\n", dir, strerror(errno));
        return 1;
    }
    int failed = clean_at(fd, dir, st.st_dev, 0);
    close(fd);
    return failed;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "idle") == 0)
        return argc == 2 ? idle_main(NULL) : argc == 3 && argv[2][0] != '\0' ? idle_main(argv[2]) : usage();
    if (strcmp(mode, "clean") == 0)
        return argc == 3 && argv[2][0] != '\0' ? clean_main(argv[2]) : usage();
    if (strcmp(mode, "connect") == 0 || strcmp(mode, "probe") == 0)
        return argc == 3 && argv[2][0] != '\0' ? connect_main(argv[2], mode[0] == 'p') : usage();
    return perm_main(argc, argv);
}
