import Foundation
import Testing
import GatewayIO
@testable import GatewayStore

/// The writer's CPU priority (see `AuditLog`): background (SCHED_IDLE) while caught up, normal while records back up
/// or a flush waits, background again once it has caught up. Observed with sched_getscheduler on the real thread.
@Suite struct WriterPriorityTests {
    /// Whether this process may leave SCHED_IDLE again, by the kernel's rule (can_nice): CAP_SYS_NICE in its
    /// effective set (root in a container often lacks it), or an RLIMIT_NICE of 20 or more.
    private static var mayLeaveIdle: Bool {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(13), &limit)  // RLIMIT_NICE, which Glibc's module does not export
        if limit.rlim_cur >= 20 { return true }
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let caps = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return false }
        return caps & (1 << 23) != 0  // CAP_SYS_NICE
    }

    /// Polls `condition` every millisecond for up to `seconds`.
    private func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(1000)
        }
        return condition()
    }

    @Test func backgroundWhileCaughtUpNormalWhileBackedUp() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        // The writer only wakes for a full batch (1,000) or after a minute: the backlog mark (100) is crossed
        // while it sleeps, so the raise can only come from the producer.
        let log = try AuditLog(path: dir + "/audit.db", batchSize: 1000, batchIntervalMs: 60_000, backlogRecords: 100)
        defer { log.close() }
        #expect(eventually { log.writerScheduling != nil })
        #expect(log.writerPriorityIsAdaptive == Self.mayLeaveIdle)
        guard log.writerPriorityIsAdaptive else {
            // Without the privilege it never drops to SCHED_IDLE, so it can never be starved.
            #expect(log.writerScheduling == .normal)
            return
        }
        #expect(eventually { log.writerScheduling == .idle })

        // Twice: once the writer has taken the queue, the mark counts from zero again.
        for round in 0..<2 {
            for index in 0..<99 { log.enqueue(sampleRecord(round * 100 + index, thread: 0)) }
            #expect(log.writerScheduling == .idle)
            log.enqueue(sampleRecord(round * 100 + 99, thread: 0))
            // Raised by the enqueue that crossed the mark (it also wakes the writer, which may drain the queue and
            // drop back before we look, so the count is what is checked here).
            #expect(log.writerRaises == round + 1)

            #expect(log.flush(timeoutMs: 10_000))
            #expect(log.writtenRecords == 100 * (round + 1))
            // Caught up: back to the background.
            #expect(eventually { log.writerScheduling == .idle })
        }
    }

    /// The race the marks cover: the writer lowers itself just after a producer raised it, and then does not get the
    /// CPU to take the queue. Each further `backlogRecords` raises it again. Here another connection holds the write
    /// lock, so the writer sits in its first batch and takes nothing more from the queue, as a starved one would.
    @Test func everyFurtherMarkRaisesAgain() throws {
        guard Self.mayLeaveIdle else { return }
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let log = try AuditLog(path: path, batchSize: 1000, batchIntervalMs: 60_000, backlogRecords: 100,
                               busyTimeoutMs: 10_000)
        defer { log.close() }
        let blocker = try SQLiteConnection(path: path, busyTimeoutMs: 1000)
        try blocker.exec("BEGIN IMMEDIATE")
        #expect(eventually { log.writerScheduling == .idle })

        for index in 0..<100 { log.enqueue(sampleRecord(index, thread: 0)) }
        #expect(log.writerRaises == 1)
        // Woken by the mark, it took those 100 and now waits for the lock.
        #expect(eventually { log.shared.queue.withLock { $0.records.isEmpty } })
        let writer = log.shared.writerThreadID.load(ordering: .acquiring)
        for round in 1...2 {
            // As if it had lowered itself a moment after the last raise.
            #expect(ThreadScheduling.set(.idle, thread: writer))
            for index in 0..<100 { log.enqueue(sampleRecord(round * 100 + index, thread: 0)) }
            #expect(log.writerRaises == round + 1)
            #expect(log.writerScheduling == .normal)
        }
        try blocker.exec("COMMIT")
        #expect(log.flush(timeoutMs: 20_000))
        #expect(log.writtenRecords == 300)
        blocker.close()
    }

    /// A flush raises it at once, so that a waiting caller (SIGTERM, the admin API) is not left behind busy reactors.
    @Test func flushRaisesTheWriter() throws {
        guard Self.mayLeaveIdle else { return }
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let log = try AuditLog(path: dir + "/audit.db", batchSize: 1000, batchIntervalMs: 60_000)
        defer { log.close() }
        #expect(eventually { log.writerScheduling == .idle })
        for index in 0..<10 { log.enqueue(sampleRecord(index, thread: 0)) }
        #expect(log.flush(timeoutMs: 10_000))
        #expect(log.writtenRecords == 10)
        #expect(log.writerRaises == 0, "the metric counts backlogs, not flushes")
        #expect(eventually { log.writerScheduling == .idle })
    }
}
