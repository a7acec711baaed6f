#include <sqlite3.h>

// sqlite3_config is variadic, which Swift cannot call: one wrapper per option used.

/// Turns SQLite's memory statistics on or off. Off, an allocation no longer takes SQLite's global memory mutex to
/// count itself. Call before the first connection opens (SQLITE_MISUSE after that).
static inline int CSQLite_sqlite3_config_memstatus(int enabled) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, enabled);
}
