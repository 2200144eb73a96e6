/* A simulated power cut for the crash tests (tests/serving/test_crash.py), loaded with LD_PRELOAD.
 *
 * What a disk holds after a power cut is what was fsynced: this shim keeps that "durable image".
 * For every fsync or fdatasync of a regular file directly in POWERCUT_WATCH it first copies the
 * file's whole content to POWERCUT_SHADOW/<name> (the copy is made before the real sync starts,
 * so it holds nothing written after the sync was asked for), and for an fsync of the
 * POWERCUT_WATCH directory itself it writes the names of the files then in it to
 * POWERCUT_SHADOW/.entries: a file created since the last directory fsync has no durable name.
 * Copies are serialised across processes (flock on POWERCUT_SHADOW/.lock) so the newest one
 * always wins. Writes never synced never reach the shadow.
 *
 * Not modelled: torn or reordered writes inside one fsync interval (the image is the file as it
 * was when the sync began, whole), sync_file_range, syncfs and sync (unused by SQLite and the
 * service), and files outside POWERCUT_WATCH.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *watched(int fd, char *path, size_t size) {
    const char *watch = getenv("POWERCUT_WATCH");
    char link[64];
    if (watch == NULL || getenv("POWERCUT_SHADOW") == NULL) return NULL;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, size - 1);
    if (n <= 0) return NULL;
    path[n] = '\0';
    size_t w = strlen(watch);
    if (strcmp(path, watch) == 0) return "";
    if (strncmp(path, watch, w) != 0 || path[w] != '/' || strchr(path + w + 1, '/') != NULL) return NULL;
    if (strstr(path, " (deleted)") != NULL) return NULL;
    return path + w + 1;
}

static void write_entries(const char *watch, const char *shadow) {
    char tmp[PATH_MAX], final[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/.entries.%d", shadow, (int)getpid());
    snprintf(final, sizeof final, "%s/.entries", shadow);
    DIR *dir = opendir(watch);
    FILE *out = fopen(tmp, "w");
    if (dir == NULL || out == NULL) {
        if (dir) closedir(dir);
        if (out) fclose(out);
        return;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL)
        if (entry->d_name[0] != '.') fprintf(out, "%s\n", entry->d_name);
    closedir(dir);
    fclose(out);
    rename(tmp, final);
}

static void copy_file(const char *path, const char *name, const char *shadow) {
    char tmp[PATH_MAX], final[PATH_MAX], buf[1 << 16];
    snprintf(tmp, sizeof tmp, "%s/.copy.%d", shadow, (int)getpid());
    snprintf(final, sizeof final, "%s/%s", shadow, name);
    int in = open(path, O_RDONLY);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ssize_t n;
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, n) != n) break;
    if (in >= 0) close(in);
    if (out >= 0) {
        close(out);
        rename(tmp, final);
    }
}

static void record(int fd) {
    char path[PATH_MAX], lock[PATH_MAX];
    const char *name = watched(fd, path, sizeof path);
    if (name == NULL) return;
    const char *shadow = getenv("POWERCUT_SHADOW");
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    snprintf(lock, sizeof lock, "%s/.lock", shadow);
    int lk = open(lock, O_RDWR | O_CREAT, 0600);
    if (lk < 0) return;
    flock(lk, LOCK_EX);
    if (S_ISDIR(st.st_mode) && name[0] == '\0')
        write_entries(getenv("POWERCUT_WATCH"), shadow);
    else if (S_ISREG(st.st_mode))
        copy_file(path, name, shadow);
    flock(lk, LOCK_UN);
    close(lk);
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    record(fd);
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    record(fd);
    return real(fd);
}
