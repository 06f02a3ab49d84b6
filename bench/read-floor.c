// The kernel's share of a lint run, measured alone: list the given directories and read the
// given files on THREADS threads, doing nothing else (no parse, no walk logic): what fluxfence
// cannot go below on this machine for the same input (BENCHMARKS.md).
//
//   cc -O2 -pthread -o /tmp/read-floor bench/read-floor.c
//   find DIR -type d -not -path '*/.*' > /tmp/dirs.txt
//   find DIR -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \)
//        -not -path '*/.*' > /tmp/files.txt                          (one line)
//   hyperfine -N '/tmp/read-floor /tmp/dirs.txt /tmp/files.txt 1'
//                '/tmp/read-floor /tmp/dirs.txt /tmp/files.txt 2'    (one line)
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct list {
    char **paths;
    size_t len;
};

static struct list dirs, files;
static long threads;

static struct list read_list(const char *name) {
    struct list list = {0};
    size_t cap = 0;
    char line[4096];
    FILE *in = fopen(name, "r");
    if (!in) {
        perror(name);
        exit(2);
    }
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\n")] = 0;
        if (list.len == cap) {
            cap = cap ? cap * 2 : 1024;
            list.paths = realloc(list.paths, cap * sizeof *list.paths);
        }
        list.paths[list.len++] = strdup(line);
    }
    fclose(in);
    return list;
}

/* Worker `id` takes every `threads`-th directory and file; returns the bytes and entries seen. */
static void *work(void *arg) {
    long id = (long)arg, seen = 0;
    static __thread char buffer[1 << 16];
    for (size_t i = id; i < dirs.len; i += threads) {
        DIR *dir = opendir(dirs.paths[i]);
        if (!dir) continue;
        while (readdir(dir)) seen++;
        closedir(dir);
    }
    for (size_t i = id; i < files.len; i += threads) {
        int fd = open(files.paths[i], O_RDONLY);
        if (fd < 0) continue;
        ssize_t n;
        while ((n = read(fd, buffer, sizeof buffer)) > 0) seen += n;
        close(fd);
    }
    return (void *)seen;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DIRS.txt FILES.txt THREADS\n", argv[0]);
        return 2;
    }
    dirs = read_list(argv[1]);
    files = read_list(argv[2]);
    threads = atol(argv[3]);
    if (threads < 1 || threads > 64) threads = 1;
    pthread_t helpers[64];
    for (long i = 1; i < threads; i++) pthread_create(&helpers[i], NULL, work, (void *)i);
    long seen = (long)work(0);
    for (long i = 1; i < threads; i++) {
        void *result;
        pthread_join(helpers[i], &result);
        seen += (long)result;
    }
    printf("%ld\n", seen);
    return 0;
}
