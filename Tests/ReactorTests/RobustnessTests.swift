import CReactor
import XCTest

@testable import Reactor

/// A closed fd, an EAGAIN storm, stale events and refused sends never crash the loop.
final class RobustnessTests: XCTestCase {
    final class Sink: DatagramHandler {
        var got = 0
        var writableCalls = 0
        func received(_ batch: DatagramBatch, on socket: DatagramSocket) { got += batch.count }
        func writable(_ socket: DatagramSocket) { writableCalls += 1 }
    }

    func loopback() -> CReactor_endpoint {
        var ep = CReactor_endpoint()
        _ = CReactor_endpoint_parse("127.0.0.1", 0, &ep)
        return ep
    }

    func testStaleEventForReusedFdIsDropped() throws {
        let r = try Reactor()
        var firstCalled = 0
        var secondCalled = 0
        let a = try UDPSocket.open(bind: loopback()).fd
        let regA = try r.register(fd: a, events: .readable) { _ in firstCalled += 1 }
        // Make `a` readable, deregister, close; the kernel hands the same number out again.
        var ep = UDPSocket.localEndpoint(a)
        let tx = try UDPSocket.open(bind: loopback()).fd
        var byte: UInt8 = 1
        var d = CReactor_dgram()
        withUnsafeMutablePointer(to: &byte) { d.data = $0 }
        d.len = 1
        d.peer = ep
        XCTAssertEqual(CReactor_sendto(tx, &d), 1)
        r.deregister(regA)
        r.deregister(regA)  // twice is harmless
        _ = CReactor_close(a)
        let b = try UDPSocket.open(bind: loopback()).fd
        XCTAssertEqual(b, a, "the kernel reused the number")
        let regB = try r.register(fd: b, events: .readable) { _ in secondCalled += 1 }
        XCTAssertEqual(regB.slot, regA.slot, "slot reused")
        XCTAssertNotEqual(regB.generation, regA.generation, "with a new generation")
        ep = UDPSocket.localEndpoint(b)
        d.peer = ep
        XCTAssertEqual(CReactor_sendto(tx, &d), 1)
        r.runOnce(timeoutMs: 100)
        XCTAssertEqual(firstCalled, 0)
        XCTAssertEqual(secondCalled, 1)
        r.deregister(regB)
        _ = CReactor_close(b)
        _ = CReactor_close(tx)
    }

    func testClosedFdUnderTheLoopIsReportedNotFatal() throws {
        for backend in DatagramBackend.allCases {
            if backend == .uring && !DatagramBackend.uringSupported { continue }
            let r = try Reactor()
            var errors: [SyscallError] = []
            r.onError = { errors.append($0) }
            let sink = Sink()
            let fd = try UDPSocket.open(bind: loopback()).fd
            let s = try DatagramSocket(reactor: r, fd: fd, backend: backend, handler: sink)
            // Someone closes our fd behind the reactor's back (the bug EBADF stands for).
            _ = CReactor_close(fd)
            var out = CReactor_dgram()
            var b: UInt8 = 0
            withUnsafeMutablePointer(to: &b) { out.data = $0 }
            out.len = 1
            out.peer = loopback()
            out.peer.port = 9
            let n = withUnsafeMutablePointer(to: &out) { s.send(DatagramBatch(base: $0, count: 1)) }
            XCTAssertEqual(n, 0)
            XCTAssertTrue(errors.contains { $0.errno == 9 && $0.isBug }, "\(backend): EBADF reported with the call's name: \(errors)")
            XCTAssertFalse(s.isOpen, "\(backend): the socket was dropped")
            // The loop still works.
            var fired = false
            r.addTimer(after: 1_000_000) { fired = true }
            let start = Reactor.now()
            while !fired && Reactor.now() - start < 2_000_000_000 { r.runOnce(timeoutMs: 200) }
            XCTAssertTrue(fired, "\(backend): timers still fire")
            XCTAssertTrue(errors.allSatisfy { $0.description.contains(":") })
        }
    }

    func testEAGAINStormThenWritable() throws {
        // A datagram pair whose far end does not read: sends fill it and get EAGAIN, over and over.
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(CReactor_socketpair_dgram(&fds), 0)
        let r = try Reactor()
        let sink = Sink()
        let s = try DatagramSocket(reactor: r, fd: fds[0], handler: sink)
        let views = UnsafeMutablePointer<CReactor_dgram>.allocate(capacity: 64)
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: 1000, alignment: 8)
        defer {
            views.deallocate()
            bytes.deallocate()
        }
        for i in 0..<64 {
            views[i] = CReactor_dgram()
            views[i].data = bytes.assumingMemoryBound(to: UInt8.self)
            views[i].len = 1000
        }
        var consumed = 0
        for _ in 0..<1000 { consumed += s.send(DatagramBatch(base: views, count: 64)) }
        XCTAssertLessThan(consumed, 64_000, "the pair filled up")
        XCTAssertGreaterThan(s.counters.sendWouldBlock, 900, "each further batch met EAGAIN, none crashed")
        XCTAssertEqual(s.counters.sent, consumed)
        // The far end drains: the socket reports writable exactly through the loop.
        var buf = [UInt8](repeating: 0, count: 2000)
        while CReactor_read(fds[1], &buf, 2000) > 0 {}
        r.runOnce(timeoutMs: 1000)
        XCTAssertGreaterThanOrEqual(sink.writableCalls, 1)
        XCTAssertGreaterThan(s.send(DatagramBatch(base: views, count: 1)), 0)
        s.close()
        _ = CReactor_close(fds[1])
    }

    func testRefusedDatagramIsCountedAndTheBatchGoesOn() throws {
        let r = try Reactor()
        var errors: [SyscallError] = []
        r.onError = { errors.append($0) }
        let sink = Sink()
        let rx = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: loopback()).fd, handler: sink)
        let s = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: loopback()).fd, handler: Sink())
        let big = UnsafeMutableRawPointer.allocate(byteCount: 70000, alignment: 8)
        defer { big.deallocate() }
        var views = [CReactor_dgram](repeating: CReactor_dgram(), count: 3)
        for i in 0..<3 {
            views[i].data = big.assumingMemoryBound(to: UInt8.self)
            views[i].len = 100
            views[i].peer = rx.localEndpoint
        }
        views[1].len = 66000  // > 65507: EMSGSIZE
        let n = views.withUnsafeMutableBufferPointer { s.send(DatagramBatch(base: $0.baseAddress!, count: 3)) }
        XCTAssertEqual(n, 3)
        XCTAssertEqual(s.counters.sent, 2)
        XCTAssertEqual(s.counters.sendRefused, 1)
        XCTAssertTrue(errors.contains { $0.errno == 90 && $0.call == "sendmmsg" }, "\(errors)")
        r.runOnce(timeoutMs: 100)
        XCTAssertEqual(sink.got, 2)
    }
}
