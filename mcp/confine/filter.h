/* The MCP server's own seccomp filter, installed once it has started (cli/mcp.c): looser than
 * airlock-vmm's, a list of syscalls refused with EPERM (filter.c says why for each), inherited by
 * every process it starts.
 */
#ifndef AIRLOCK_FILTER_H
#define AIRLOCK_FILTER_H

/* Installs the filter on every thread of the process. Returns 0 or -errno. */
int host_filter_install(void);
/* Makes one refused syscall and says on stderr whether it was refused. Returns 0 when it was. */
int host_filter_selftest(void);

#endif
