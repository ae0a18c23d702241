// The version both programs report (`flaredb --version`, `flaredbctl --version`, Status.version).
export const FLAREDB_VERSION = "0.1.0";
