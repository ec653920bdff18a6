import CReactor
import Foundation
import XCTest

@testable import Reactor

/// SO_REUSEPORT steering: the pure decision from a table, then the kernel
/// running the classic BPF program on loopback, checked datagram by datagram
/// against that decision.
final class SteeringTests: XCTestCase {
    // MARK: - The pure function

    func testDataGoesToTheIndexLowByteModuloGroups() {
        // (index low byte, groups) -> socket
        let table: [(UInt8, Int, Int)] = [
            (0, 1, 0), (255, 1, 0), (0, 2, 0), (1, 2, 1), (2, 2, 0), (255, 2, 1),
            (0, 3, 0), (1, 3, 1), (2, 3, 2), (3, 3, 0), (255, 3, 0), (254, 3, 2),
            (7, 4, 3), (200, 7, 4), (100, 255, 100), (254, 255, 254), (255, 255, 0), (9, 300, 9),
        ]
        for (low, groups, want) in table {
            var d = dataMessage(index: UInt32(low) | 0xABCD_EF00, counter: 99)
            XCTAssertEqual(group(d, groups, relayInner: false), want, "DATA low byte \(low), \(groups) groups")
            XCTAssertEqual(group(d, groups, relayInner: true), want, "relayInner does not change DATA")
            // Only the low byte counts: the index's other bytes, the counter and the payload do not.
            d[5] ^= 0xFF
            d[8] ^= 0xFF
            d[20] ^= 0xFF
            XCTAssertEqual(group(d, groups, relayInner: false), want)
        }
    }

    func testRelayedDataFollowsTheInnerIndexOnlyWithRelayInner() {
        for low in [0, 1, 2, 5, 128, 254, 255] as [UInt8] {
            let inner = dataMessage(index: UInt32(low), counter: 1)
            // The tag's byte 4 and the member id's byte 12 look like an index: they must not be what is read.
            let relay = relayMessage(member: 0x0102_0304_0506_07F3, inner: inner, tag: 0x00F1_F2F3_F4F5_F6F7)
            XCTAssertEqual(relay[4], 0xF4)
            XCTAssertEqual(relay[12], 0x04)
            for groups in 1...5 {
                XCTAssertEqual(group(relay, groups, relayInner: true), Int(low) % groups, "inner index \(low), \(groups) groups")
                XCTAssertEqual(group(relay, groups, relayInner: false), 0, "without relayInner a RELAY goes to 0")
            }
        }
        // A relayed handshake (inner type 1) is not steered, whatever byte 20 holds.
        var hs = handshakeInit(sender: 0x0000_0005)
        hs[4] = 5
        let relayedHandshake = relayMessage(member: 0x1111, inner: hs)
        XCTAssertEqual(relayedHandshake[20], 5)
        XCTAssertEqual(group(relayedHandshake, 3, relayInner: true), 0)
    }

    func testEverythingElseAndShortDatagramsGoToSocketZero() {
        // Other message types, whatever their byte 4.
        for type in [0, 1, 2, 3, 5, 6, 8, 255] as [UInt8] {
            var d = [UInt8](repeating: 0x33, count: 148)
            d[0] = type
            XCTAssertEqual(group(d, 3, relayInner: true), 0, "type \(type)")
        }
        // Too short for a load: the program aborts with 0.
        let short: [[UInt8]] = [
            [], [4], [4, 0], [4, 0, 0, 0],  // DATA without byte 4
            [7], [7, 0, 0, 0, 5], Array([7] + [UInt8](repeating: 1, count: 15)),  // RELAY without byte 16
            Array([7] + [UInt8](repeating: 1, count: 15) + [4, 0, 0, 0]),  // inner DATA without byte 20
        ]
        for d in short {
            XCTAssertEqual(group(d, 3, relayInner: true), 0, "\(d.count) bytes: \(d)")
        }
        // Just long enough: 5 bytes of DATA, 21 of RELAY carrying DATA.
        XCTAssertEqual(group([4, 0, 0, 0, 5], 3, relayInner: true), 2)
        let relay21 = [7] + [UInt8](repeating: 1, count: 15) + [4, 0, 0, 0, 5]
        XCTAssertEqual(relay21.count, 21)
        XCTAssertEqual(group(relay21, 3, relayInner: true), 2)
        XCTAssertEqual(group(relay21, 3, relayInner: false), 0)
    }

    // MARK: - The kernel

    func testKernelSteersTwoSocketsAsThePureFunctionSays() throws {
        try runKernel(groups: 2, relayInner: true)
    }

    func testKernelSteersThreeSocketsAsThePureFunctionSays() throws {
        try runKernel(groups: 3, relayInner: true)
    }

    /// An anchor's program: a RELAY by the inner index's second byte (the pair bit's byte).
    func testKernelAnchorSteersRelayByTheInnerIndexSecondByte() throws {
        try runKernel(groups: 2, relayInner: true, relayByPair: true)
        try runKernel(groups: 3, relayInner: true, relayByPair: true)
    }

    func testAnAnchorSteersRelayByTheInnerIndexSecondByte() {
        for (low, second) in [(0, 1), (1, 0), (5, 2), (2, 5), (255, 254)] as [(UInt8, UInt8)] {
            let relay = relayMessage(member: 0x0102_0304_0506_07F3, inner: dataMessage(index: UInt32(low) | UInt32(second) << 8, counter: 1))
            for groups in 1...5 {
                XCTAssertEqual(group(relay, groups, relayInner: true, relayByPair: true), Int(second) % groups)
                XCTAssertEqual(group(relay, groups, relayInner: true), Int(low) % groups)
            }
        }
        // One byte short of the second index byte: socket 0.
        let relay21 = [7] + [UInt8](repeating: 1, count: 15) + [4, 0, 0, 0, 5]
        XCTAssertEqual(group(relay21, 3, relayInner: true, relayByPair: true), 0)
        XCTAssertEqual(group(relay21 + [5], 3, relayInner: true, relayByPair: true), 2)
    }

    func testKernelWithoutRelayInnerSendsRelayToSocketZero() throws {
        try runKernel(groups: 3, relayInner: false)
    }

    func testAttachRefusesZeroGroups() throws {
        let fd = try UDPSocket.open(bind: loopback(port: 0), options: reusePort()).fd
        defer { _ = CReactor_close(fd) }
        XCTAssertEqual(CReactor_attach_steering(fd, 0, 1), -EINVAL_)
    }

    /// Binds `groups` sockets to one port, shows that without the program the
    /// kernel's hash misplaces datagrams, attaches the program to the last socket,
    /// then from two client ports sends every kind of datagram and checks each
    /// arrived on exactly the socket `Steering.group` names.
    func runKernel(groups: Int, relayInner: Bool, relayByPair: Bool = false) throws {
        var servers: [Int32] = []
        defer { for fd in servers { _ = CReactor_close(fd) } }
        let first = try UDPSocket.open(bind: loopback(port: 0), options: reusePort())
        XCTAssertEqual(first.notes, [], "SO_REUSEPORT accepted")
        servers.append(first.fd)
        let port = UDPSocket.localEndpoint(first.fd).port
        XCTAssertNotEqual(port, 0)
        for _ in 1..<groups {
            servers.append(try UDPSocket.open(bind: loopback(port: port), options: reusePort()).fd)
        }
        var clients: [Int32] = []
        defer { for fd in clients { _ = CReactor_close(fd) } }
        for _ in 0..<2 { clients.append(try UDPSocket.open(bind: loopback(port: 0)).fd) }
        XCTAssertNotEqual(UDPSocket.localEndpoint(clients[0]).port, UDPSocket.localEndpoint(clients[1]).port)
        let server = loopback(port: port)

        // Without the program one client's datagrams follow the 4-tuple hash,
        // not the index: some land elsewhere, so the checks below can fail.
        let before = exchange(dataCases(), from: clients[0], to: server, servers: servers, groups: groups, relayInner: relayInner)
        XCTAssertEqual(before.received, 64)
        XCTAssertGreaterThan(before.misplaced, 0, "the kernel's hash alone does not steer by index")

        try UDPSocket.attachSteering(fd: servers[groups - 1], groups: groups, relayInner: relayInner, relayByPair: relayByPair)

        let cases = dataCases() + relayCases() + otherCases()
        for (c, client) in clients.enumerated() {
            let r = exchange(cases, from: client, to: server, servers: servers, groups: groups, relayInner: relayInner,
                             relayByPair: relayByPair)
            XCTAssertEqual(r.received, cases.count, "client \(c): every datagram arrived once")
            XCTAssertEqual(r.misplaced, 0, "client \(c): every datagram on the socket Steering.group names")
            for s in 0..<groups {
                XCTAssertGreaterThanOrEqual(r.perSocket[s], 64 / groups - 1, "client \(c): socket \(s) got its share of DATA")
            }
        }
        // The expectation itself spreads relayed DATA over every socket (or none but 0).
        let relayed = relayCases().prefix(64).map { group($0, groups, relayInner: relayInner, relayByPair: relayByPair) }
        XCTAssertEqual(Set(relayed), relayInner ? Set(0..<groups) : [0])
    }

    // MARK: - Datagrams

    /// 64 DATA messages with varied index low bytes.
    func dataCases() -> [[UInt8]] {
        (0..<64).map { (i: Int) -> [UInt8] in
            let low = UInt32((i &* 37 &+ 11) & 0xFF)
            return dataMessage(index: low | UInt32(i) << 8, counter: UInt64(i))
        }
    }

    /// 64 RELAYs carrying DATA, then 16 carrying a handshake.
    func relayCases() -> [[UInt8]] {
        let data = (0..<64).map { (i: Int) -> [UInt8] in
            let low = UInt32((i &* 91 &+ 3) & 0xFF), second = UInt32((i &* 29 &+ 5) & 0xFF)
            return relayMessage(member: UInt64(i &* 53 &+ 7), inner: dataMessage(index: low | second << 8, counter: UInt64(i)),
                                tag: UInt64(i &* 0x0101_0101_0101 &+ 0x77))
        }
        let handshakes = (0..<16).map { (i: Int) -> [UInt8] in
            relayMessage(member: UInt64(i), inner: handshakeInit(sender: UInt32(i &* 13 &+ 1)))
        }
        return data + handshakes
    }

    /// Handshakes (148 bytes) with varied sender bytes, and short datagrams of every kind.
    func otherCases() -> [[UInt8]] {
        var out = (0..<16).map { (i: Int) -> [UInt8] in handshakeInit(sender: UInt32(i &* 29 &+ 1)) }
        out += [[], [4], [7], [1], [4, 0, 0, 0], [4, 0, 0, 0, 1], [4, 0, 0, 0, 2]]
        let relayHeader: [UInt8] = [7, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
        out += [relayHeader, relayHeader + [4], relayHeader + [4, 0, 0, 0], relayHeader + [4, 0, 0, 0, 1], relayHeader + [4, 0, 0, 0, 2]]
        return out
    }

    func dataMessage(index: UInt32, counter: UInt64, payload: Int = 16) -> [UInt8] {
        var d: [UInt8] = [4, 0, 0, 0]
        for i in 0..<4 { d.append(UInt8(truncatingIfNeeded: index >> (8 * i))) }
        for i in 0..<8 { d.append(UInt8(truncatingIfNeeded: counter >> (8 * i))) }
        d += (0..<payload + 16).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        return d
    }

    func relayMessage(member: UInt64, inner: [UInt8], tag: UInt64 = 0) -> [UInt8] {
        var d: [UInt8] = [7]
        for i in 0..<7 { d.append(UInt8(truncatingIfNeeded: tag >> (8 * i))) }
        for i in 0..<8 { d.append(UInt8(truncatingIfNeeded: member >> (8 * i))) }
        return d + inner
    }

    /// A HANDSHAKE_INIT-shaped datagram: type 1, sender index at 4, 148 bytes.
    func handshakeInit(sender: UInt32) -> [UInt8] {
        var d = [UInt8](repeating: 0x5A, count: 148)
        d[0] = 1
        d[1] = 0
        d[2] = 0
        d[3] = 0
        for i in 0..<4 { d[4 + i] = UInt8(truncatingIfNeeded: sender >> (8 * i)) }
        return d
    }

    // MARK: - Plumbing

    func group(_ d: [UInt8], _ groups: Int, relayInner: Bool, relayByPair: Bool = false) -> Int {
        d.withUnsafeBytes { Steering.group(of: $0, groups: groups, relayInner: relayInner, relayByPair: relayByPair) }
    }

    func loopback(port: UInt16) -> CReactor_endpoint {
        var ep = CReactor_endpoint()
        precondition(CReactor_endpoint_parse("127.0.0.1", port, &ep) == 0)
        return ep
    }

    func reusePort() -> UDPOptions {
        var o = UDPOptions()
        o.reusePort = true
        return o
    }

    /// Sends `datagrams` from `client`, then reads every server socket until all
    /// arrived (or 2 s passed). Counts those on a socket other than the one
    /// `Steering.group` names.
    func exchange(_ datagrams: [[UInt8]], from client: Int32, to server: CReactor_endpoint, servers: [Int32],
                  groups: Int, relayInner: Bool, relayByPair: Bool = false) -> (received: Int, misplaced: Int, perSocket: [Int]) {
        for d in datagrams {
            var copy = d + [0]  // a valid pointer even for the empty datagram
            let r = copy.withUnsafeMutableBufferPointer { b -> Int32 in
                var v = CReactor_dgram()
                v.data = b.baseAddress
                v.len = UInt32(d.count)
                v.cap = UInt32(b.count)
                v.peer = server
                return CReactor_sendto(client, &v)
            }
            XCTAssertEqual(r, Int32(d.count), "sendto")
        }
        var received = 0
        var misplaced = 0
        var perSocket = [Int](repeating: 0, count: servers.count)
        var buffer = [UInt8](repeating: 0, count: 2048)
        let deadline = CReactor_monotonic_ns() + 2_000_000_000
        while received < datagrams.count && CReactor_monotonic_ns() < deadline {
            var any = false
            for (s, fd) in servers.enumerated() {
                while true {
                    let n = buffer.withUnsafeMutableBufferPointer { b -> Int32 in
                        var v = CReactor_dgram()
                        v.data = b.baseAddress
                        v.cap = UInt32(b.count)
                        return CReactor_recvfrom(fd, &v)
                    }
                    if n < 0 {
                        XCTAssertEqual(n, -EAGAIN_, "recvfrom")
                        break
                    }
                    any = true
                    received += 1
                    perSocket[s] += 1
                    let want = buffer.withUnsafeBytes {
                        Steering.group(of: UnsafeRawBufferPointer(rebasing: $0[0..<Int(n)]), groups: groups, relayInner: relayInner,
                                       relayByPair: relayByPair)
                    }
                    if want != s { misplaced += 1 }
                }
            }
            if !any { usleep(1000) }
        }
        // Nothing more trickles in late.
        usleep(20_000)
        for fd in servers {
            var v = CReactor_dgram()
            buffer.withUnsafeMutableBufferPointer { b in
                v.data = b.baseAddress
                v.cap = UInt32(b.count)
                while CReactor_recvfrom(fd, &v) >= 0 { received += 1 }
            }
        }
        return (received, misplaced, perSocket)
    }
}
