import GatewayIO
import Testing

/// Records when each of its timers fired, and stops the loop after the last.
private final class FiringLog: TimerTarget {
    let loop: EventLoop
    let expected: Int
    var fired: [(token: UInt64, at: UInt64)] = []

    init(loop: EventLoop, expected: Int) {
        self.loop = loop
        self.expected = expected
    }

    func timerFired(token: UInt64) {
        fired.append((token, Clock.monotonicNs()))
        if fired.count == expected { loop.stop() }
    }
}

/// The open loop's pacer polls the last stretch before a request is due (EventLoop.pollWindowNs): timers inside the
/// window must still fire once each, in order, and never before their deadline.
@Suite struct PollWindowTests {
    private func fire(gapsNs: [UInt64], pollWindowNs: UInt64) -> (deadlines: [UInt64], log: FiringLog) {
        let loop = EventLoop(index: 0)
        loop.pollWindowNs = pollWindowNs
        let log = FiringLog(loop: loop, expected: gapsNs.count)
        var deadline = Clock.monotonicNs() + 1_000_000
        var deadlines: [UInt64] = []
        for (token, gap) in gapsNs.enumerated() {
            deadline += gap
            deadlines.append(deadline)
            loop.schedule(at: deadline, target: log, token: UInt64(token))
        }
        loop.run()
        return (deadlines, log)
    }

    @Test(arguments: [
        [UInt64](repeating: 20_000, count: 200),            // every gap inside the window: the loop only polls
        [UInt64](repeating: 2_000_000, count: 5),           // every gap beyond it: the loop sleeps in between
        (0..<100).map { UInt64($0 % 2 == 0 ? 10_000 : 300_000) },
    ])
    func timersFireOnceInOrderAndNeverEarly(gapsNs: [UInt64]) {
        let (deadlines, log) = fire(gapsNs: gapsNs, pollWindowNs: 50_000)
        #expect(log.fired.map(\.token) == (0..<UInt64(gapsNs.count)).map { $0 })
        for (entry, deadline) in zip(log.fired, deadlines) {
            #expect(entry.at >= deadline, "timer \(entry.token) fired \(deadline - entry.at) ns early")
        }
    }
}
