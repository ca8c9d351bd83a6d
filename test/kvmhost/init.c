/*
 * /init for the KVM test host initramfs (see README.md).
 *
 * Mounts the basics, loads the modules from /modules/order, mounts the
 * read-only Debian root from /dev/vda, switches the command's root to it (as
 * switch_root does) and runs the
 * base64-encoded command from the kernel command line (kvmhost.cmd=) with
 * /bin/bash -c.  Then prints "KVMHOST-EXIT: <status>" and powers off.
 * PID 1 never returns.
 *
 * Build: gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -static -O2 \
 *            -o init init.c
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NEWROOT "/newroot"
#define ROOTDEV "/dev/vda"
#define CMD_KEY "kvmhost.cmd="

static void say(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, (size_t)n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (int)w;
    }
}

static _Noreturn void power_off(void)
{
    sync();
    reboot(RB_POWER_OFF);
    /* If even that failed, never return from PID 1. */
    say("kvmhost-init: reboot(RB_POWER_OFF) failed: %s", strerror(errno));
    for (;;)
        pause();
}

/* Setup failure: no KVMHOST-EXIT line, so run.sh reports the failure. */
static _Noreturn void fatal(const char *fmt, ...)
{
    char buf[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    say("kvmhost-init: FATAL: %s", buf);
    power_off();
}

static void console_fds(void)
{
    int fd = open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0)
        return; /* keep whatever the kernel gave us */
    for (int i = 0; i < 3; i++)
        if (fd != i)
            dup2(fd, i);
    if (fd > 2)
        close(fd);
}

static int do_mount(const char *src, const char *dst, const char *type,
                    unsigned long flags, const char *data)
{
    mkdir(dst, 0755); /* may already exist, or be on a read-only fs */
    if (mount(src, dst, type, flags, data) != 0) {
        say("kvmhost-init: mount %s on %s (%s) failed: %s", src, dst,
            type ? type : "-", strerror(errno));
        return -1;
    }
    return 0;
}

static void load_modules(void)
{
    FILE *f = fopen("/modules/order", "r");
    if (!f) {
        say("kvmhost-init: cannot open /modules/order: %s", strerror(errno));
        return;
    }
    char line[512];
    int loaded = 0, failed = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        char path[600];
        snprintf(path, sizeof path, "/modules/%s", line);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            say("kvmhost-init: module %s: open failed: %s", line,
                strerror(errno));
            failed++;
            continue;
        }
        if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) {
            say("kvmhost-init: module %s: finit_module failed: %s", line,
                strerror(errno));
            failed++;
        } else {
            loaded++;
        }
        close(fd);
    }
    fclose(f);
    say("kvmhost-init: modules: %d loaded, %d failed", loaded, failed);
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decodes base64 from in[0..len) into a new NUL-terminated string. */
static char *b64decode(const char *in, size_t len)
{
    char *out = malloc(len / 4 * 3 + 4);
    if (!out)
        return NULL;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '=')
            break;
        int v = b64val((unsigned char)in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    return out;
}

static char *get_command(void)
{
    static char cmdline[8192];
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd < 0)
        fatal("cannot open /proc/cmdline: %s", strerror(errno));
    ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
    close(fd);
    if (n < 0)
        fatal("cannot read /proc/cmdline: %s", strerror(errno));
    cmdline[n] = '\0';
    /* Find the parameter at the start of a word. */
    char *p = cmdline;
    for (;;) {
        p = strstr(p, CMD_KEY);
        if (!p)
            fatal("no " CMD_KEY " on the kernel command line");
        if (p == cmdline || p[-1] == ' ')
            break;
        p++;
    }
    p += strlen(CMD_KEY);
    size_t len = strcspn(p, " \t\n");
    char *cmd = b64decode(p, len);
    if (!cmd)
        fatal("cannot base64-decode " CMD_KEY " value");
    return cmd;
}

static void wait_for_disk(void)
{
    struct stat st;
    for (int i = 0; i < 100; i++) { /* 100 x 100 ms = 10 s */
        if (stat(ROOTDEV, &st) == 0 && S_ISBLK(st.st_mode))
            return;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fatal("root disk %s did not appear within 10 s", ROOTDEV);
}

int main(void)
{
    /* Ignore signals PID 1 should not die from while we are in control. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);

    mkdir("/dev", 0755);
    mkdir("/proc", 0555);
    mkdir("/sys", 0555);
    do_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    console_fds();
    if (do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 NULL) != 0)
        fatal("cannot mount /proc");
    do_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
             NULL);

    say("kvmhost-init: loading modules");
    load_modules();

    char *cmd = get_command();

    wait_for_disk();
    if (do_mount(ROOTDEV, NEWROOT, "ext4", MS_RDONLY, NULL) != 0)
        fatal("cannot mount root disk %s", ROOTDEV);

    if (do_mount("tmpfs", NEWROOT "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
                 "size=1g,mode=1777") != 0)
        fatal("cannot mount tmpfs on " NEWROOT "/tmp");
    do_mount("tmpfs", NEWROOT "/run", "tmpfs", MS_NOSUID | MS_NODEV,
             "size=1g,mode=0755");
    do_mount("tmpfs", NEWROOT "/work", "tmpfs", MS_NOSUID | MS_NODEV,
             "size=1g,mode=0755");

    if (do_mount("/dev", NEWROOT "/dev", NULL, MS_MOVE, NULL) != 0 &&
        do_mount("devtmpfs", NEWROOT "/dev", "devtmpfs", MS_NOSUID,
                 "mode=0755") != 0)
        fatal("cannot provide " NEWROOT "/dev");
    if (do_mount("/proc", NEWROOT "/proc", NULL, MS_MOVE, NULL) != 0)
        fatal("cannot move /proc");
    if (do_mount("/sys", NEWROOT "/sys", NULL, MS_MOVE, NULL) != 0)
        fatal("cannot move /sys");
    /* Optional extras; failures are reported but not fatal. */
    do_mount("devpts", NEWROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
             "gid=5,mode=620,ptmxmode=666");
    do_mount("tmpfs", NEWROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
             "mode=1777");
    /* cgroup v2, as systemd hosts have it: the path of mcp/confine/cgroup.c this
     * project's own machine (v1) cannot run */
    do_mount("cgroup2", NEWROOT "/sys/fs/cgroup", "cgroup2",
             MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);

    /* The payload lives in the initramfs (writable); bind it under /tmp. */
    if (do_mount("/payload", NEWROOT "/tmp/payload", NULL, MS_BIND | MS_REC,
                 NULL) != 0)
        fatal("cannot bind /payload to " NEWROOT "/tmp/payload");

    say("kvmhost-init: starting command");
    pid_t child = fork();
    if (child < 0)
        fatal("fork failed: %s", strerror(errno));
    if (child == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        /* Switch the root as switch_root does (the new root moved onto "/"), in a mount
         * namespace of the command's own: a plain chroot would leave the command "chrooted",
         * and the kernel refuses a new user namespace (airlock-vmm's jail) to such a process. */
        if (unshare(CLONE_NEWNS) != 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
            chdir(NEWROOT) != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 ||
            chroot(".") != 0 || chdir("/tmp/payload") != 0) {
            say("kvmhost-init: switching the root failed: %s", strerror(errno));
            _exit(127);
        }
        setsid();
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0 && null != 0) {
            dup2(null, 0);
            close(null);
        }
        int con = open("/dev/console", O_WRONLY | O_NOCTTY);
        if (con >= 0) {
            dup2(con, 1);
            dup2(con, 2);
            if (con > 2)
                close(con);
        }
        char *argv[] = {"/bin/bash", "-c", cmd, NULL};
        char *envp[] = {
            "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME=/tmp",
            "LD_LIBRARY_PATH=/tmp/payload/lib",
            "TERM=dumb",
            NULL,
        };
        execve(argv[0], argv, envp);
        say("kvmhost-init: exec /bin/bash failed: %s", strerror(errno));
        _exit(127);
    }

    /* Reap everything (we are PID 1) until the command itself exits. */
    int status = 0;
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, 0);
        if (p < 0) {
            if (errno == EINTR)
                continue;
            say("kvmhost-init: waitpid failed: %s", strerror(errno));
            status = 125;
            break;
        }
        if (p == child) {
            if (WIFEXITED(st))
                status = WEXITSTATUS(st);
            else if (WIFSIGNALED(st))
                status = 128 + WTERMSIG(st);
            else
                status = 125;
            break;
        }
    }

    /* Give leftover processes a chance to go away, then power off. */
    kill(-1, SIGKILL);
    say("KVMHOST-EXIT: %d", status);
    power_off();
}
