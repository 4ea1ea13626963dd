/* SPDX-License-Identifier: MIT */
/*
 * The file output: appends one line per delivery to a file (by default the
 * event envelope as JSON Lines). It owns the file's descriptor, its reopen
 * on SIGHUP for logrotate, and the group fsync that lets concurrent
 * deliveries share one fdatasync without answering "delivered" for a line
 * a crash could still take away.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <switchboard/plugin.h>

#define FILE_MODE 0600 /* lines hold patients' details */

enum file_fsync {
    FILE_FSYNC_ALWAYS,
    FILE_FSYNC_BATCH,
    FILE_FSYNC_NEVER,
};

/* The words `fsync` takes. */
static const struct {
    const char *word;
    enum file_fsync mode;
} file_fsync_words[] = {
    {"always", FILE_FSYNC_ALWAYS}, /* fsync each line before answering */
    {"batch", FILE_FSYNC_BATCH},   /* one fdatasync for concurrent lines */
    {"never", FILE_FSYNC_NEVER},   /* the kernel writes back when it likes */
};

/*
 * One output's file. `lock` guards everything below it. Writes are
 * numbered: `written` counts lines written, `attempted_to` is the highest
 * line number a finished fdatasync covered, and `failed_to` the highest
 * one a failed fdatasync covered (`failures` counts those). At most one
 * thread syncs at a time (`syncing`); the others wait on `synced`.
 */
struct file_out {
    const struct sb_plugin_host *host;
    char *path;
    enum file_fsync fsync_mode;
    /* Only a regular file is synced: /dev/null or a FIFO has no disk. */
    int syncable;
    atomic_int reopen_wanted;

    pthread_mutex_t lock;
    pthread_cond_t synced;
    int fd;
    uint64_t written;
    uint64_t attempted_to;
    uint64_t failed_to;
    uint64_t failures;
    int fail_errno;
    int syncing;
};

/* "what: reason" into the result; strerror holds no payload. */
static enum sb_plugin_status file_retry(struct sb_plugin_result *out,
                                        const char *what, int err)
{
    char buf[128];

    snprintf(out->error, sizeof(out->error), "%s: %s", what,
             strerror_r(err, buf, sizeof(buf)));
    return SB_PLUGIN_RETRY;
}

/* Makes a new file's name durable: fsync of its folder. */
static int file_sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = strndup(path, slash == NULL ? 1 : (size_t)(slash - path));
    int fd = -1;
    int rc = -1;

    if (dir == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (slash == NULL || slash == path) {
        dir[0] = slash == NULL ? '.' : '/';
        dir[1] = '\0';
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        rc = fsync(fd);
        close(fd);
    }
    free(dir);
    return rc;
}

/*
 * Creates the folders above `path` that are missing, 0700 like the
 * spool's: a first start on a fresh machine needs no mkdir.
 */
static int file_make_parents(const char *path)
{
    char *dir = strdup(path);
    char *slash;
    int rc = 0;

    if (dir == NULL) {
        errno = ENOMEM;
        return -1;
    }
    for (slash = strchr(dir + 1, '/'); slash != NULL && rc == 0;
         slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            rc = -1;
        }
        *slash = '/';
    }
    free(dir);
    return rc;
}

static int file_is_regular(int fd)
{
    struct stat st;

    return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * Opens the path for appending, creating it 0600 (and its folders) when
 * absent; an existing file keeps its mode. Returns the descriptor, or -1
 * with errno set.
 */
static int file_open(const struct file_out *fo)
{
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC;
    int fd = open(fo->path, flags);
    int saved;

    if (fd >= 0 || errno != ENOENT) {
        return fd;
    }
    if (file_make_parents(fo->path) != 0) {
        return -1;
    }
    /* O_EXCL tells us we made it, so only then is the folder synced. */
    fd = open(fo->path, flags | O_CREAT | O_EXCL, FILE_MODE);
    if (fd < 0) {
        return errno == EEXIST ? open(fo->path, flags) : -1;
    }
    if (fo->fsync_mode != FILE_FSYNC_NEVER && file_sync_dir(fo->path) != 0) {
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* fdatasync with `lock` held: covers every line written so far. */
static void file_sync_locked(struct file_out *fo)
{
    if (fdatasync(fo->fd) != 0) {
        fo->failures++;
        fo->failed_to = fo->written;
        fo->fail_errno = errno;
    }
    fo->attempted_to = fo->written;
    pthread_cond_broadcast(&fo->synced);
}

/*
 * Closes the file after making what was written to it durable, so a
 * delivery still waiting for its sync is answered for the file it went
 * to, and opens the path again (logrotate has moved the old one).
 * Returns 0, or the errno of a failed open.
 */
static int file_reopen_locked(struct file_out *fo)
{
    while (fo->syncing) {
        pthread_cond_wait(&fo->synced, &fo->lock);
    }
    if (fo->fd >= 0) {
        if (fo->fsync_mode == FILE_FSYNC_BATCH &&
            fo->attempted_to < fo->written) {
            file_sync_locked(fo);
        }
        close(fo->fd);
        fo->fd = -1;
    }
    fo->fd = file_open(fo);
    fo->syncable = file_is_regular(fo->fd);
    if (fo->fd < 0) {
        return errno;
    }
    fo->host->log(fo->host, SB_PLUGIN_LOG_INFO, "reopened %s", fo->path);
    return 0;
}

/* With `lock` held: a descriptor to write to, reopened when asked. */
static enum sb_plugin_status file_ready(struct file_out *fo,
                                        struct sb_plugin_result *out)
{
    int err = 0;

    if (atomic_exchange(&fo->reopen_wanted, 0) != 0 || fo->fd < 0) {
        err = file_reopen_locked(fo);
    }
    return err == 0 ? SB_PLUGIN_DELIVERED : file_retry(out, "open", err);
}

/* writev until every byte is out; -1 with errno on failure. */
static int file_write_all(int fd, struct iovec *iov, int count)
{
    while (count > 0) {
        ssize_t n = writev(fd, iov, count);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        while (count > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/*
 * With `lock` held: appends the line and its newline in one writev, so
 * lines never interleave. A line cut short (disk full) is cut off the
 * file again, so the retry's line does not run on from half a line.
 */
static enum sb_plugin_status file_append(struct file_out *fo, const char *text,
                                         size_t len,
                                         struct sb_plugin_result *out)
{
    struct iovec iov[2] = {
        {(void *)text, len},
        {(void *)"\n", 1},
    };
    int count = len > 0 && text[len - 1] == '\n' ? 1 : 2;
    off_t start = lseek(fo->fd, 0, SEEK_END);
    int err;

    if (file_write_all(fo->fd, iov, count) == 0) {
        fo->written++;
        return SB_PLUGIN_DELIVERED;
    }
    err = errno;
    if (start >= 0 && ftruncate(fo->fd, start) != 0) {
        fo->host->log(fo->host, SB_PLUGIN_LOG_WARN,
                      "%s ends in part of a line that failed", fo->path);
    }
    return file_retry(out, "write", err);
}

/*
 * With `lock` held, after line number `seq` was written: returns once an
 * fdatasync that began after that write has finished. One waiter runs it
 * for everyone (the lock is dropped meanwhile, so more lines can be
 * written and join the next round); the rest wait for its broadcast.
 */
static enum sb_plugin_status file_group_sync(struct file_out *fo, uint64_t seq,
                                             struct sb_plugin_result *out)
{
    uint64_t failures = fo->failures;

    while (fo->attempted_to < seq) {
        uint64_t target = fo->written;
        int fd = fo->fd; /* reopen waits for `syncing` to clear */
        int rc;
        int err;

        if (fo->syncing) {
            pthread_cond_wait(&fo->synced, &fo->lock);
            continue;
        }
        fo->syncing = 1;
        pthread_mutex_unlock(&fo->lock);
        rc = fdatasync(fd);
        err = errno;
        pthread_mutex_lock(&fo->lock);
        fo->syncing = 0;
        fo->attempted_to = target;
        if (rc != 0) {
            fo->failures++;
            fo->failed_to = target;
            fo->fail_errno = err;
        }
        pthread_cond_broadcast(&fo->synced);
    }
    /* A failure since our write that reached our line: it may be lost. */
    if (fo->failures != failures && fo->failed_to >= seq) {
        return file_retry(out, "fdatasync", fo->fail_errno);
    }
    return SB_PLUGIN_DELIVERED;
}

/* Reads and checks the keys; on failure the host has recorded why. */
static int file_configure(struct file_out *fo,
                          const struct sb_plugin_config *cfg,
                          const struct sb_plugin_host *host)
{
    const char *path = NULL;
    const char *word = NULL;
    int rc = host->config_path(cfg, "path", 1, NULL, &path);
    size_t i;

    if (rc == 0) {
        fo->path = strdup(path); /* borrowed until create() returns */
        if (fo->path == NULL) {
            host->log(host, SB_PLUGIN_LOG_ERROR, "out of memory");
            rc = -1;
        }
    }
    if (host->config_string(cfg, "fsync", 0, "batch", &word) != 0) {
        return -1;
    }
    for (i = 0; i < sizeof(file_fsync_words) / sizeof(file_fsync_words[0]);
         i++) {
        if (strcmp(word, file_fsync_words[i].word) == 0) {
            fo->fsync_mode = file_fsync_words[i].mode;
            return rc;
        }
    }
    return host->config_error(cfg, "fsync",
                              "fsync: expected always, batch or never");
}

static void file_destroy(void *instance)
{
    struct file_out *fo = instance;

    if (fo == NULL) {
        return;
    }
    if (fo->fd >= 0) {
        close(fo->fd);
    }
    pthread_cond_destroy(&fo->synced);
    pthread_mutex_destroy(&fo->lock);
    free(fo->path);
    free(fo);
}

/* The file is opened here, so a bad path or permission fails the start. */
static int file_create(const struct sb_plugin_config *cfg,
                       const struct sb_plugin_host *host, void **out_instance)
{
    struct file_out *fo = calloc(1, sizeof(*fo));

    *out_instance = NULL;
    if (fo == NULL) {
        host->log(host, SB_PLUGIN_LOG_ERROR, "out of memory");
        return -1;
    }
    fo->host = host;
    fo->fd = -1;
    atomic_init(&fo->reopen_wanted, 0);
    pthread_mutex_init(&fo->lock, NULL);
    pthread_cond_init(&fo->synced, NULL);
    if (file_configure(fo, cfg, host) != 0) {
        file_destroy(fo);
        return -1;
    }
    if (!host->check_only) {
        fo->fd = file_open(fo);
        fo->syncable = file_is_regular(fo->fd);
        if (fo->fd < 0) {
            char buf[128];

            host->log(host, SB_PLUGIN_LOG_ERROR, "cannot open %s: %s", fo->path,
                      strerror_r(errno, buf, sizeof(buf)));
            file_destroy(fo);
            return -1;
        }
    }
    *out_instance = fo;
    return 0;
}

static enum sb_plugin_status file_deliver(void *instance,
                                          const struct sb_plugin_message *msg,
                                          struct sb_plugin_result *out)
{
    struct file_out *fo = instance;
    enum sb_plugin_status rc;

    if (msg->field_count < 1) {
        snprintf(out->error, sizeof(out->error), "no line to write");
        return SB_PLUGIN_FAILED;
    }
    pthread_mutex_lock(&fo->lock);
    rc = file_ready(fo, out);
    if (rc == SB_PLUGIN_DELIVERED) {
        rc = file_append(fo, msg->fields[0], msg->field_lens[0], out);
    }
    if (rc == SB_PLUGIN_DELIVERED && fo->syncable &&
        fo->fsync_mode == FILE_FSYNC_ALWAYS && fsync(fo->fd) != 0) {
        rc = file_retry(out, "fsync", errno);
    }
    if (rc == SB_PLUGIN_DELIVERED && fo->syncable &&
        fo->fsync_mode == FILE_FSYNC_BATCH) {
        rc = file_group_sync(fo, fo->written, out);
    }
    pthread_mutex_unlock(&fo->lock);
    return rc;
}

/* Any thread, while deliver() runs: the next delivery reopens. */
static void file_reopen(void *instance)
{
    struct file_out *fo = instance;

    atomic_store(&fo->reopen_wanted, 1);
}

static const struct sb_plugin_field file_fields[] = {
    /* NULL: the event envelope, one JSON line; written as is. */
    {"line", NULL, SB_PLUGIN_ESCAPE_NONE},
};

SB_PLUGIN_DECLARE = {
    .abi_version = SB_PLUGIN_ABI_VERSION,
    .size = sizeof(struct sb_plugin_descriptor),
    .name = "file",
    .description = "appends one line per delivery to a file",
    .flags = SB_PLUGIN_THREAD_SAFE,
    .fields = file_fields,
    .field_count = sizeof(file_fields) / sizeof(file_fields[0]),
    .create = file_create,
    .deliver = file_deliver,
    .destroy = file_destroy,
    .reopen = file_reopen,
    /* Lines written at once share one fdatasync: more is faster. */
    .default_concurrency = 16,
};
