// What one audit record costs SQLite to store, by table shape: the question behind issue 5's throughput bar
// (the audit writer shares the gateway's CPU, and its SQLite insert is most of what the policy adds).
//
// Each shape inserts N records into a fresh WAL database (synchronous=NORMAL, 4,096 records per transaction, as
// the writer does) with statements prepared once and values bound in place. Run it twice under callgrind with
// different N; the difference divided by the difference in N is the steady-state cost per record, free of set-up.
//   rows        the audit table of Schema.swift (schema 2): 26 columns, NOT NULL checks, the start_ns index
//   rows-noidx  the same without the start_ns index
//   rows-plain  the same without the index and without NOT NULL
//   narrow      nine columns (the ones reports group and filter by) plus the rest as one JSON text
//   batch       one row per 256 records: first and last start, count, and the records as one JSON array
// The record is the one the policy benchmark writes: a 32-character request id, one key, one group, a model,
// 300 bytes in and about 800 out, no bodies, no attempt log. `batch` copies a ready-made encoding: what it
// measures is SQLite's share, not the cost of encoding the records (which a writer would add).
//
// Build: cc -O2 -o sqlite-insert-cost sqlite-insert-cost.c -lsqlite3
// Use:   sqlite-insert-cost SHAPE N DBFILE   (scripts/bench-sqlite-insert-cost.sh runs every shape)
// A measuring tool, not part of the product: nothing in Sources/ knows about it.
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *wideColumns =
    "request_id TEXT NOT NULL, key_id TEXT, key_name TEXT, groups TEXT NOT NULL DEFAULT '', "
    "tags TEXT NOT NULL DEFAULT '', client_address TEXT NOT NULL DEFAULT '', start_ns INTEGER NOT NULL, "
    "end_ns INTEGER NOT NULL, total_latency_us INTEGER NOT NULL, upstream_latency_us INTEGER NOT NULL, "
    "overhead_us INTEGER NOT NULL, ttfb_us INTEGER NOT NULL, requested_model TEXT NOT NULL DEFAULT '', "
    "deployment TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL, status INTEGER NOT NULL, error_code TEXT, "
    "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost_micro_usd INTEGER NOT NULL, "
    "streamed INTEGER NOT NULL, bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL, attempt_log TEXT, "
    "request_body TEXT, response_body TEXT";

static const char *wideInsert =
    "INSERT INTO audit (request_id, key_id, key_name, groups, tags, client_address, start_ns, end_ns, "
    "total_latency_us, upstream_latency_us, overhead_us, ttfb_us, requested_model, deployment, attempts, status, "
    "error_code, prompt_tokens, completion_tokens, cost_micro_usd, streamed, bytes_in, bytes_out, attempt_log, "
    "request_body, response_body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
    "?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)";

static const char *requestID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
static const long long startNs = 1796000000000000000LL;

static void check(int rc, sqlite3 *db, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqlite-insert-cost: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void text(sqlite3_stmt *s, int i, const char *value) { sqlite3_bind_text(s, i, value, (int)strlen(value), SQLITE_STATIC); }

static void bindWide(sqlite3_stmt *s, long long i) {
    text(s, 1, requestID); text(s, 2, "k-bench"); text(s, 3, "bench"); text(s, 4, "bench"); text(s, 5, "");
    text(s, 6, "127.0.0.1");
    sqlite3_bind_int64(s, 7, startNs + i * 20000); sqlite3_bind_int64(s, 8, startNs + i * 20000 + 512000);
    sqlite3_bind_int64(s, 9, 512); sqlite3_bind_int64(s, 10, 480); sqlite3_bind_int64(s, 11, 32); sqlite3_bind_int64(s, 12, 500);
    text(s, 13, "gpt-4o-mini"); text(s, 14, "mock/gpt-4o-mini");
    sqlite3_bind_int64(s, 15, 1); sqlite3_bind_int64(s, 16, 200); sqlite3_bind_null(s, 17);
    sqlite3_bind_int64(s, 18, 75); sqlite3_bind_int64(s, 19, 16); sqlite3_bind_int64(s, 20, 21);
    sqlite3_bind_int64(s, 21, 0); sqlite3_bind_int64(s, 22, 300); sqlite3_bind_int64(s, 23, 812);
    sqlite3_bind_null(s, 24); sqlite3_bind_null(s, 25); sqlite3_bind_null(s, 26);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: sqlite-insert-cost SHAPE N DBFILE\n"); return 2; }
    const char *shape = argv[1];
    long long n = atoll(argv[2]);
    const char *path = argv[3];
    char wal[4096];
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(path); unlink(wal);

    sqlite3 *db;
    check(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL), db, "open");
    check(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL), db, "pragmas");

    char ddl[4096];
    const char *insert;
    int wide = 1, batchRows = 0;
    if (strcmp(shape, "rows") == 0 || strcmp(shape, "rows-noidx") == 0) {
        snprintf(ddl, sizeof ddl, "CREATE TABLE audit (id INTEGER PRIMARY KEY, %s);%s", wideColumns,
                 strcmp(shape, "rows") == 0 ? " CREATE INDEX audit_start ON audit(start_ns);" : "");
        insert = wideInsert;
    } else if (strcmp(shape, "rows-plain") == 0) {
        char plain[2048];
        const char *from = wideColumns;
        size_t out = 0;
        // The same columns without their constraints: drop every " NOT NULL" and " DEFAULT ''".
        while (*from && out < sizeof plain - 1) {
            if (strncmp(from, " NOT NULL", 9) == 0) { from += 9; continue; }
            if (strncmp(from, " DEFAULT ''", 11) == 0) { from += 11; continue; }
            plain[out++] = *from++;
        }
        plain[out] = 0;
        snprintf(ddl, sizeof ddl, "CREATE TABLE audit (id INTEGER PRIMARY KEY, %s);", plain);
        insert = wideInsert;
    } else if (strcmp(shape, "narrow") == 0) {
        snprintf(ddl, sizeof ddl, "CREATE TABLE audit (id INTEGER PRIMARY KEY, start_ns INTEGER, key_id TEXT, "
                 "groups TEXT, requested_model TEXT, status INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER, "
                 "cost_micro_usd INTEGER, detail TEXT);");
        insert = "INSERT INTO audit (start_ns, key_id, groups, requested_model, status, prompt_tokens, "
                 "completion_tokens, cost_micro_usd, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
        wide = 0;
    } else if (strcmp(shape, "batch") == 0) {
        snprintf(ddl, sizeof ddl, "CREATE TABLE audit_batch (id INTEGER PRIMARY KEY, first_start_ns INTEGER, "
                 "last_start_ns INTEGER, count INTEGER, records TEXT); CREATE INDEX audit_batch_start ON "
                 "audit_batch(last_start_ns);");
        insert = "INSERT INTO audit_batch (first_start_ns, last_start_ns, count, records) VALUES (?1, ?2, ?3, ?4)";
        wide = 0;
        batchRows = 256;
    } else {
        fprintf(stderr, "sqlite-insert-cost: unknown shape %s\n", shape);
        return 2;
    }
    check(sqlite3_exec(db, ddl, NULL, NULL, NULL), db, "create");
    sqlite3_stmt *s;
    check(sqlite3_prepare_v2(db, insert, -1, &s, NULL), db, "prepare");

    // The narrow shape's detail and one batch record: the columns the narrow table leaves out, as JSON.
    char detail[512];
    snprintf(detail, sizeof detail,
             "{\"request_id\":\"%s\",\"key_name\":\"bench\",\"tags\":\"\",\"client_address\":\"127.0.0.1\","
             "\"end_ns\":1796000000000512000,\"total_latency_us\":512,\"upstream_latency_us\":480,\"overhead_us\":32,"
             "\"ttfb_us\":500,\"deployment\":\"mock/gpt-4o-mini\",\"attempts\":1,\"streamed\":0,\"bytes_in\":300,"
             "\"bytes_out\":812}", requestID);
    size_t detailLength = strlen(detail);
    char *batch = batchRows ? malloc((size_t)batchRows * (detailLength + 1) + 2) : NULL;

    check(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), db, "begin");
    for (long long i = 0; i < n; i++) {
        if (i > 0 && i % 4096 == 0) check(sqlite3_exec(db, "COMMIT; BEGIN", NULL, NULL, NULL), db, "commit");
        if (wide) {
            bindWide(s, i);
        } else if (!batchRows) {
            sqlite3_bind_int64(s, 1, startNs + i * 20000); text(s, 2, "k-bench"); text(s, 3, "bench");
            text(s, 4, "gpt-4o-mini"); sqlite3_bind_int64(s, 5, 200); sqlite3_bind_int64(s, 6, 75);
            sqlite3_bind_int64(s, 7, 16); sqlite3_bind_int64(s, 8, 21);
            sqlite3_bind_text(s, 9, detail, (int)detailLength, SQLITE_STATIC);
        } else {
            if ((i + 1) % batchRows != 0) continue;
            size_t length = 0;
            batch[length++] = '[';
            for (int k = 0; k < batchRows; k++) {
                if (k > 0) batch[length++] = ',';
                memcpy(batch + length, detail, detailLength);
                length += detailLength;
            }
            batch[length++] = ']';
            sqlite3_bind_int64(s, 1, startNs + (i - batchRows + 1) * 20000);
            sqlite3_bind_int64(s, 2, startNs + i * 20000);
            sqlite3_bind_int64(s, 3, batchRows);
            sqlite3_bind_text(s, 4, batch, (int)length, SQLITE_STATIC);
        }
        check(sqlite3_step(s), db, "insert");
        sqlite3_reset(s);
    }
    check(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), db, "commit");
    sqlite3_finalize(s);
    sqlite3_close(db);
    free(batch);
    unlink(path); unlink(wal);
    return 0;
}
