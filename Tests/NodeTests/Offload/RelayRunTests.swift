import Reactor
import Reactor
import XCTest

@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// An anchor forwards a GRO run of RELAY datagrams as one GSO run
/// (`Daemon.extendRun`): only datagrams that the kernel would cut back into
/// the same datagrams, to the same member, join a run.
final class RelayRunTests: XCTestCase {
    let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1 << 17)
    let b = Endpoint(family: .v4, address: IPAddressBytes(v4: (198, 51, 100, 2)), port: 4000)
    let c = Endpoint(family: .v4, address: IPAddressBytes(v4: (198, 51, 100, 3)), port: 4000)

    deinit { buffer.deallocate() }

    func view(at offset: Int, length: Int, to ep: Endpoint) -> DatagramView {
        var v = DatagramView()
        v.data = buffer + offset
        v.len = UInt32(length)
        v.segment = UInt16(length)
        v.peer = ep.socketAddress
        return v
    }

    func testARunOfEqualDatagramsToOneMemberStaysOneRun() {
        var v = view(at: 0, length: 1200, to: b)
        for k in 1..<10 { XCTAssertTrue(Daemon.extendRun(&v, data: buffer + 1200 * k, length: 1200, to: b)) }
        XCTAssertEqual(v.len, 12_000)
        XCTAssertEqual(v.segment, 1200)
        // A shorter last datagram ends the run; nothing may follow it.
        XCTAssertTrue(Daemon.extendRun(&v, data: buffer + 12_000, length: 700, to: b))
        XCTAssertFalse(Daemon.extendRun(&v, data: buffer + 12_700, length: 700, to: b))
        XCTAssertEqual(v.len, 12_700)
    }

    func testWhatCannotJoinARun() {
        var v = view(at: 0, length: 1200, to: b)
        XCTAssertFalse(Daemon.extendRun(&v, data: buffer + 1200, length: 1200, to: c), "another member")
        XCTAssertFalse(Daemon.extendRun(&v, data: buffer + 1300, length: 1200, to: b), "not right behind it")
        XCTAssertFalse(Daemon.extendRun(&v, data: buffer + 1200, length: 1201, to: b), "longer than the segment")
        XCTAssertEqual(v.len, 1200)
        var lone = view(at: 0, length: 1200, to: b)
        lone.segment = 0
        XCTAssertFalse(Daemon.extendRun(&lone, data: buffer + 1200, length: 1200, to: b), "a view that is no run")
    }

    func testARunStopsAtTheKernelsLimits() {
        var small = view(at: 0, length: 100, to: b)
        var n = 1
        while Daemon.extendRun(&small, data: buffer + 100 * n, length: 100, to: b) { n += 1 }
        XCTAssertEqual(n, DatagramSocket.maxGSOSegments)
        var big = view(at: 0, length: 1452, to: b)
        n = 1
        while Daemon.extendRun(&big, data: buffer + 1452 * n, length: 1452, to: b) { n += 1 }
        XCTAssertLessThanOrEqual(Int(big.len), DatagramSocket.maxGSOBytes)
        XCTAssertEqual(n, DatagramSocket.maxGSOBytes / 1452)
    }
}
