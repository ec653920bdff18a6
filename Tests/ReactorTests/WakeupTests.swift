import CReactor
import Foundation
import XCTest

@testable import Reactor

/// Several reactors, one per thread, handing work to each other through mailboxes.
final class WakeupTests: XCTestCase {
    func testCrossThreadWakeupRunsJobsInOrderOnTheReactorThread() throws {
        let ready = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        final class Shared: @unchecked Sendable {
            var mailbox: Mailbox?
            var stop: StopHandle?
            var seen: [Int] = []
            var threadOK = true
            var reactorThread: pthread_t?
        }
        let shared = Shared()
        let t = Thread {
            let r = try! Reactor()
            shared.mailbox = r.makeMailbox(capacity: 4096)
            shared.stop = r.stopHandle
            shared.reactorThread = pthread_self()
            ready.signal()
            r.run()  // blocks in epoll_wait until woken
            done.signal()
        }
        t.start()
        ready.wait()
        let n = 3000
        for i in 0..<n {
            // The reactor is asleep in epoll_wait: each post must wake it.
            while !shared.mailbox!.post({
                if pthread_equal(pthread_self(), shared.reactorThread!) == 0 { shared.threadOK = false }
                shared.seen.append(i)
            }) { usleep(100) }
        }
        let finished = DispatchSemaphore(value: 0)
        shared.mailbox!.post { finished.signal() }
        XCTAssertEqual(finished.wait(timeout: .now() + 10), .success, "jobs ran")
        shared.stop!.stop()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success, "reactor stopped from another thread")
        XCTAssertEqual(shared.seen, Array(0..<n))
        XCTAssertTrue(shared.threadOK)
    }

    func testTwoReactorsHandWorkToEachOther() throws {
        // Ping-pong a counter between two reactors on two threads, 1000 round trips.
        final class Box: @unchecked Sendable {
            var toA: Mailbox?
            var toB: Mailbox?
            var stopA: StopHandle?
            var stopB: StopHandle?
            var count = 0
        }
        let box = Box()
        let ready = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        var threads: [Thread] = []
        for side in 0..<2 {
            let t = Thread {
                let r = try! Reactor()
                if side == 0 {
                    box.toA = r.makeMailbox()
                    box.stopA = r.stopHandle
                } else {
                    box.toB = r.makeMailbox()
                    box.stopB = r.stopHandle
                }
                ready.signal()
                r.run()
                finished.signal()
            }
            threads.append(t)
            t.start()
        }
        ready.wait()
        ready.wait()
        let allDone = DispatchSemaphore(value: 0)
        // Each mailbox has exactly one producer: A's jobs post only to B, B's only to A.
        @Sendable func bounce(_ k: Int, toB: Bool) {
            if k == 2000 {
                box.count = k
                allDone.signal()
                return
            }
            let target = toB ? box.toB! : box.toA!
            target.post { bounce(k + 1, toB: !toB) }
        }
        box.toA!.post { bounce(0, toB: true) }
        XCTAssertEqual(allDone.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(box.count, 2000)
        box.stopA!.stop()
        box.stopB!.stop()
        XCTAssertEqual(finished.wait(timeout: .now() + 5), .success)
        XCTAssertEqual(finished.wait(timeout: .now() + 5), .success)
    }
}
