#if canImport(Glibc)
import Glibc
#endif
import GatewayIO

/// The audit log's spill file: JSON lines, appended by the writer thread when the database cannot take records
/// fast enough (or at all), and re-imported into the database later. Only the writer thread touches it.
///
/// Layout: a header line `{"spill":G}` naming the file's generation, then one `AuditRecord` JSON object per line.
/// The database's `spill_state` row holds (generation, offset): how far the generation was imported. The offset is
/// committed in the same transaction as the imported rows. Once a file is fully imported it is truncated and restarted
/// with generation G+1, so after a crash:
/// - the stored generation equals the file's: resume at the stored offset (no duplicates);
/// - it differs: the file was restarted after the last commit, so import it from its header (no loss).
final class SpillFile {
    let path: String
    private(set) var fd: Int32 = -1
    private(set) var generation: Int64 = 0
    /// The byte offset up to which records are in the database.
    private(set) var offset: Int64 = 0
    private(set) var size: Int64 = 0
    private var headerLength: Int64 = 0
    /// Bytes before this offset were written by an earlier process (their records were never counted as enqueued).
    private var priorRunEnd: Int64 = 0
    /// Records between `offset` and `size`.
    private(set) var pendingRecords = 0
    /// Lines that could not be parsed (a torn write after a crash, or a hand-edited file); skipped.
    private(set) var corruptLines = 0
    /// The highest generation seen in the file or the database: the next file takes a higher one, so that a stale
    /// stored offset can never match a restarted file.
    private var highestGeneration: Int64 = 0

    var hasPending: Bool { offset < size }

    /// Opens the file if it exists and works out where to resume. Creates nothing: the file appears on first spill.
    /// - Parameters:
    ///   - storedGeneration: the generation in `spill_state`, or nil when none was stored.
    ///   - storedOffset: the offset stored with it.
    init(path: String, storedGeneration: Int64?, storedOffset: Int64) throws {
        self.path = path
        generation = storedGeneration ?? 0
        highestGeneration = generation
        let existing = Glibc.open(path, O_RDWR | O_APPEND | O_CLOEXEC)
        guard existing >= 0 else {
            if errno == ENOENT { return }
            throw IOError(errno: errno, function: "open spill file")
        }
        fd = existing
        size = Int64(lseek(fd, 0, SEEK_END))
        priorRunEnd = size
        if size == 0 {
            try startGeneration(highestGeneration + 1)
            return
        }
        if let (fileGeneration, length) = readHeader() {
            headerLength = length
            if fileGeneration == storedGeneration {
                offset = min(max(storedOffset, length), size)
            } else {
                offset = length
            }
            generation = fileGeneration
            highestGeneration = max(highestGeneration, fileGeneration)
        } else {
            // No header: not a file this code wrote whole. Import whatever lines parse.
            offset = 0
        }
        pendingRecords = countLines(from: offset)
    }

    deinit {
        if fd >= 0 { Posix.close(fd) }
        readBuffer.deallocate()
    }

    /// The generation and offset to store after the file was (re)started, before any import committed.
    var state: (generation: Int64, offset: Int64) { (generation, offset) }

    /// Appends records as JSON lines in one write. On a failed write the partial tail is cut off again.
    func append(_ records: ArraySlice<AuditRecord>) throws {
        if fd < 0 {
            let created = Glibc.open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            guard created >= 0 else { throw IOError(errno: errno, function: "create spill file") }
            fd = created
            try startGeneration(highestGeneration + 1)
        }
        var json = JSONWriter(capacity: records.count * 700)
        for record in records {
            record.writeJSON(to: &json)
            json.newline()
        }
        do {
            try writeAll(json.bytes)
        } catch {
            _ = ftruncate(fd, off_t(size))
            throw error
        }
        size += Int64(json.bytes.count)
        pendingRecords += records.count
    }

    /// The next records after `offset`, with where they end.
    struct Chunk {
        var records: [AuditRecord] = []
        /// How many of `records` were spilled by this process (the rest came from an earlier run).
        var currentRunRecords = 0
        /// Lines consumed, parsed or not.
        var lines = 0
        var corrupt = 0
        var endOffset: Int64 = 0
    }

    /// Reads up to `maxRecords` whole lines after `offset`. It does not move `offset`: call `commit` once the records
    /// are in the database.
    func read(maxRecords: Int) -> Chunk {
        var chunk = Chunk(endOffset: offset)
        // readBuffer[0] is at file offset chunk.endOffset (the start of the next unconsumed line).
        var filled = 0
        var position = offset
        while chunk.lines < maxRecords && position < size {
            if filled == readBuffer.count { growReadBuffer() }
            let base = readBuffer.baseAddress!
            let want = Int(min(Int64(readBuffer.count - filled), size - position))
            let got = pread(fd, base + filled, want, off_t(position))
            if got <= 0 { break }
            filled += got
            position += Int64(got)
            var lineStart = 0
            while chunk.lines < maxRecords, lineStart < filled,
                  let newline = memchr(base + lineStart, Int32(UInt8(ascii: "\n")), filled - lineStart) {
                let lineEnd = base.distance(to: newline)
                let line = UnsafeRawBufferPointer(start: base + lineStart, count: lineEnd - lineStart)
                consume(line, endingAt: chunk.endOffset + Int64(lineEnd - lineStart + 1), into: &chunk)
                lineStart = lineEnd + 1
            }
            if chunk.lines >= maxRecords { break }
            // Keep the partial line at the front and read more after it.
            if lineStart > 0 {
                memmove(base, base + lineStart, filled - lineStart)
                filled -= lineStart
            }
        }
        if chunk.lines < maxRecords, position >= size, filled > 0, chunk.endOffset + Int64(filled) == size {
            // A tail without a newline: only a torn write by a crashed process leaves one. Skip it.
            chunk.lines += 1
            chunk.corrupt += 1
            chunk.endOffset = size
        }
        return chunk
    }

    /// Reused between reads; doubled when one line (a record with large bodies) does not fit.
    private var readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)

    private func growReadBuffer() {
        let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: readBuffer.count * 2, alignment: 16)
        larger.copyMemory(from: UnsafeRawBufferPointer(readBuffer))
        readBuffer.deallocate()
        readBuffer = larger
    }

    private func consume(_ line: UnsafeRawBufferPointer, endingAt end: Int64, into chunk: inout Chunk) {
        chunk.lines += 1
        let lineStart = chunk.endOffset
        chunk.endOffset = end
        if line.isEmpty { return }
        guard let value = JSONValue.parse(bytes: line) else { chunk.corrupt += 1; return }
        guard let record = AuditRecord(json: value) else {
            if value["spill"] == nil { chunk.corrupt += 1 }  // else a header
            return
        }
        chunk.records.append(record)
        if lineStart >= priorRunEnd { chunk.currentRunRecords += 1 }
    }

    /// Marks a chunk as imported (its rows and the new offset are committed).
    func commit(_ chunk: Chunk) {
        offset = chunk.endOffset
        pendingRecords = max(0, pendingRecords - (chunk.lines - chunk.corrupt))
        corruptLines += chunk.corrupt
    }

    /// Once everything is imported, empties the file and starts the next generation.
    /// - Returns: true when it restarted the file (the caller then stores the new state).
    func restartIfDrained() throws -> Bool {
        guard fd >= 0, offset >= size, size > headerLength else { return false }
        guard ftruncate(fd, 0) == 0 else { throw IOError(errno: errno, function: "ftruncate spill file") }
        size = 0
        priorRunEnd = 0
        pendingRecords = 0
        try startGeneration(highestGeneration + 1)
        return true
    }

    private func startGeneration(_ next: Int64) throws {
        generation = next
        highestGeneration = next
        var json = JSONWriter()
        json.beginObject()
        json.field("spill", next)
        json.endObject()
        json.newline()
        try writeAll(json.bytes)
        headerLength = Int64(json.bytes.count)
        size = headerLength
        offset = headerLength
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { buffer in
            var written = 0
            while written < buffer.count {
                let result = Glibc.write(fd, buffer.baseAddress! + written, buffer.count - written)
                if result < 0 {
                    if errno == EINTR { continue }
                    throw IOError(errno: errno, function: "write spill file")
                }
                written += result
            }
        }
    }

    private func readHeader() -> (Int64, Int64)? {
        var buffer = [UInt8](repeating: 0, count: 64)
        let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, 64, 0) }
        guard got > 0, let newline = buffer[0..<got].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let header = buffer.withUnsafeBytes { JSONValue.parse(bytes: UnsafeRawBufferPointer(rebasing: $0[0..<newline])) }
        guard let generation = header?["spill"]?.int64Value else { return nil }
        return (generation, Int64(newline + 1))
    }

    private func countLines(from start: Int64) -> Int {
        var count = 0
        var position = start
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while position < size {
            let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, off_t(position)) }
            if got <= 0 { break }
            for byte in buffer[0..<got] where byte == UInt8(ascii: "\n") { count += 1 }
            position += Int64(got)
        }
        return count
    }
}
