/// A two-dimensional table of counters in one allocation, indexed by two small ids (model × group,
/// deployment × bucket). An id past the table's size grows it, so ids that a reload adds need no
/// coordination with the thread that records: the first use pays for one allocation, later ones none.
///
/// Not copyable in effect: the owner frees it once with `deallocate()`.
struct CounterGrid {
    private(set) var storage: UnsafeMutablePointer<UInt64>
    private(set) var rows: Int
    private(set) var columns: Int

    init(rows: Int, columns: Int) {
        self.rows = max(1, rows)
        self.columns = max(1, columns)
        storage = .allocate(capacity: self.rows * self.columns)
        storage.initialize(repeating: 0, count: self.rows * self.columns)
    }

    func deallocate() { storage.deallocate() }

    @inline(__always)
    mutating func add(_ value: UInt64, row: Int, column: Int) {
        if row >= rows || column >= columns { grow(toHold: row, column) }
        storage[row &* columns &+ column] &+= value
    }

    @inline(__always)
    func value(row: Int, column: Int) -> UInt64 {
        row < rows && column < columns ? storage[row * columns + column] : 0
    }

    /// Makes room for (row, column), doubling each dimension that is too small. Out of line, so the
    /// common path of `add` stays a compare and an add.
    @inline(never)
    private mutating func grow(toHold row: Int, _ column: Int) {
        var newRows = rows
        while newRows <= row { newRows *= 2 }
        var newColumns = columns
        while newColumns <= column { newColumns *= 2 }
        let grown = UnsafeMutablePointer<UInt64>.allocate(capacity: newRows * newColumns)
        grown.initialize(repeating: 0, count: newRows * newColumns)
        for r in 0..<rows {
            (grown + r * newColumns).update(from: storage + r * columns, count: columns)
        }
        storage.deallocate()
        storage = grown
        rows = newRows
        columns = newColumns
    }

    /// Calls `body` with each nonzero cell.
    func forEachNonzero(_ body: (_ row: Int, _ column: Int, _ value: UInt64) -> Void) {
        for r in 0..<rows {
            for c in 0..<columns {
                let value = storage[r * columns + c]
                if value != 0 { body(r, c, value) }
            }
        }
    }
}
