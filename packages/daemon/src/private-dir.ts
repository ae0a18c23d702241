import { existsSync, mkdirSync, statSync } from "node:fs";
import { ConfigErrorCode, configError } from "./config/config-error.js";

/**
 * Makes a daemon's data directory readable by its own user only (mode 0700, with any parents it
 * creates), as etcd makes its data dir: the files in it hold every key and value. An existing
 * directory is used as it is, with a warning when other users may enter it, as etcd warns (its
 * owner may have chosen that). Returns whether the directory was created by this call.
 */
export function preparePrivateDir(
  dir: string,
  flag: string,
  warn: (fields: Record<string, unknown>, msg: string) => void,
): boolean {
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return true;
  }
  const st = statSync(dir);
  if (!st.isDirectory())
    throw configError(ConfigErrorCode.Conflict, flag, `${flag}: ${dir} exists and is not a directory`);
  const mode = (st.mode & 0o777).toString(8).padStart(3, "0");
  if ((st.mode & 0o077) !== 0)
    warn(
      { dir, mode },
      `${flag} ${dir} has mode ${mode}: other users may read the data in it (chmod 700 ${dir} to keep it to this daemon's user)`,
    );
  return false;
}
