/* LD_PRELOAD: on SIGSEGV print the native stack and the mapped files to stderr, then die of it. */
#define _GNU_SOURCE
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
static void handler(int sig, siginfo_t *si, void *uc) {
    void *frames[80]; int n = backtrace(frames, 80); char buf[4096]; ssize_t k;
    (void)si; (void)uc;
    write(2, "NATIVE BACKTRACE\n", 17); backtrace_symbols_fd(frames, n, 2);
    write(2, "MAPS\n", 5);
    int fd = open("/proc/self/maps", O_RDONLY);
    while (fd >= 0 && (k = read(fd, buf, sizeof buf)) > 0) write(2, buf, k);
    signal(sig, SIG_DFL); raise(sig);
}
__attribute__((constructor)) static void install(void) {
    void *warm[2]; backtrace(warm, 2);  /* loads libgcc_s now, not inside the handler */
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
}
