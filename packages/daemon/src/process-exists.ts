// Whether a process ID is in use, for files and folders named after the process that made them.

/**
 * True unless signal 0 to `pid` answers ESRCH (no such process). A process of another user
 * (EPERM) exists.
 */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}
