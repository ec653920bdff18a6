import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// PATH_PROBE / PATH_PROBE_REPLY, RELAY and in-session control messages:
/// layouts, length checks, round trips.
final class ConnectivityWireTests: XCTestCase {
    let key = PublicKey(bytes: (0..<32).map { UInt8($0) })!
    let key2 = PublicKey(bytes: (0..<32).map { UInt8(0xFF - $0) })!
    let v4 = Endpoint.v4(198, 51, 100, 7, port: 0xABCD)
    let v6 = Endpoint("[2001:db8::1:2]:51820")!

    // MARK: WireEndpoint

    func testEndpointLayout() {
        var b = [UInt8](repeating: 0xEE, count: 21)
        b.withUnsafeMutableBytes { XCTAssertTrue(WireEndpoint.write(v4, into: $0, at: 1)) }
        XCTAssertEqual(Array(b[1..<20]), [4, 0xAB, 0xCD, 198, 51, 100, 7] + [UInt8](repeating: 0, count: 12))
        XCTAssertEqual(b[0], 0xEE)
        XCTAssertEqual(b[20], 0xEE)
        b.withUnsafeBytes { XCTAssertEqual(WireEndpoint.read($0, at: 1), v4) }
        b.withUnsafeMutableBytes { XCTAssertTrue(WireEndpoint.write(v6, into: $0, at: 0)) }
        b.withUnsafeBytes { XCTAssertEqual(WireEndpoint.read($0, at: 0), v6) }
    }

    func testEndpointChecks() {
        var b = [UInt8](repeating: 0, count: 19)
        b.withUnsafeMutableBytes { _ = WireEndpoint.write(v4, into: $0, at: 0) }
        // table: (byte, value, parses?)
        let table: [(Int, UInt8, Bool)] = [(0, 5, false), (0, 0, false), (0, 6, true), (7, 1, false), (18, 1, false), (3, 9, true)]
        for (i, v, ok) in table {
            var c = b
            c[i] = v
            c.withUnsafeBytes { XCTAssertEqual(WireEndpoint.read($0, at: 0) != nil, ok, "byte \(i) = \(v)") }
        }
        b.withUnsafeBytes {
            XCTAssertNil(WireEndpoint.read($0, at: 1), "does not fit")
            XCTAssertNil(WireEndpoint.read($0, at: -1))
        }
        b.withUnsafeMutableBytes { XCTAssertFalse(WireEndpoint.write(v4, into: $0, at: 1)) }
    }

    // MARK: Path probe

    func testProbeLayoutAndRoundTrip() {
        let p = PathProbe(txid: 0x0807_0605_0403_0201, sender: key)
        let bytes = p.bytes
        XCTAssertEqual(bytes.count, 64)
        XCTAssertEqual(Array(bytes[0..<12]), [5, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(Array(bytes[12..<44]), key.bytes)
        XCTAssertEqual(Array(bytes[44..<64]), [UInt8](repeating: 0, count: 20))
        bytes.withUnsafeBytes { XCTAssertEqual(PathProbe($0, length: 64), p) }
    }

    func testProbeChecks() {
        let bytes = PathProbe(txid: 1, sender: key).bytes
        for length in [0, 1, 44, 63, 65] {
            let padded = bytes + [0]
            padded.withUnsafeBytes { XCTAssertNil(PathProbe($0, length: length), "length \(length)") }
        }
        for (i, v) in [(0, UInt8(6)), (1, 1), (3, 1), (44, 1), (63, 1)] {
            var c = bytes
            c[i] = v
            c.withUnsafeBytes { XCTAssertNil(PathProbe($0, length: 64), "byte \(i) = \(v)") }
        }
        bytes.withUnsafeBytes { XCTAssertNil(PathProbe(UnsafeRawBufferPointer(rebasing: $0[0..<63]), length: 64), "buffer shorter than length") }
    }

    func testReplyNeverLargerThanProbe() {
        XCTAssertLessThanOrEqual(PathProbeReply.size, PathProbe.size)
        for ep in [v4, v6] {
            let r = PathProbeReply(txid: .max, observed: ep, responder: key2)
            let bytes = r.bytes
            XCTAssertEqual(bytes.count, 63)
            XCTAssertEqual(Array(bytes[0..<4]), [6, 0, 0, 0])
            XCTAssertEqual(Array(bytes[31..<63]), key2.bytes)
            bytes.withUnsafeBytes { XCTAssertEqual(PathProbeReply($0, length: 63), r) }
        }
    }

    func testReplyWrittenInPlaceOfTheProbe() {
        var buffer = PathProbe(txid: 42, sender: key).bytes
        let r = PathProbeReply(txid: 42, observed: v4, responder: key2)
        let n = buffer.withUnsafeMutableBytes { r.write(into: $0) }
        XCTAssertEqual(n, 63)
        buffer.withUnsafeBytes { XCTAssertEqual(PathProbeReply($0, length: 63), r) }
        var small = [UInt8](repeating: 0, count: 62)
        XCTAssertNil(small.withUnsafeMutableBytes { r.write(into: $0) })
    }

    func testReplyChecks() {
        let bytes = PathProbeReply(txid: 1, observed: v4, responder: key).bytes
        for length in [0, 12, 62, 64] {
            (bytes + [0]).withUnsafeBytes { XCTAssertNil(PathProbeReply($0, length: length), "length \(length)") }
        }
        for (i, v) in [(0, UInt8(5)), (2, 1), (12, 9), (20, 1)] {
            var c = bytes
            c[i] = v
            c.withUnsafeBytes { XCTAssertNil(PathProbeReply($0, length: 63), "byte \(i) = \(v)") }
        }
    }

    // MARK: Relay

    func testMemberIDIsTheHashPrefix() {
        let id = MemberID(publicKey: key)
        let hash = Sodium.blake2b(outputLength: 32, key.bytes)
        var bytes = [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: id.rawValue.littleEndian) { bytes = Array($0) }
        XCTAssertEqual(bytes, Array(hash[0..<8]))
        XCTAssertNotEqual(id, MemberID(publicKey: key2))
        XCTAssertEqual(id.description.count, 16)
    }

    func testRelayInPlaceWrapParseRewrite() {
        // Engine layout: headroom, DATA header, payload, tag. RELAY goes in the headroom.
        var buffer = [UInt8](repeating: 0, count: 128)
        let inner = 32  // DATA starts here; RELAY header at 16
        buffer[inner] = 4
        let id = MemberID(publicKey: key)
        let k1 = RelayTagKey(bytes: [UInt8](repeating: 1, count: 32)), k2 = RelayTagKey(bytes: [UInt8](repeating: 2, count: 32))
        buffer.withUnsafeMutableBytes { b in
            XCTAssertTrue(RelayMessage.writeHeader(id, into: b, at: inner - 16))
            let view = UnsafeMutableRawBufferPointer(rebasing: b[(inner - 16)...])
            XCTAssertEqual(RelayMessage.parseHeader(UnsafeRawBufferPointer(view), length: 16 + 32), id)
            XCTAssertEqual(RelayMessage.tag(at: view.baseAddress!), 0, "written untagged")
            RelayTag.seal(view.baseAddress!, length: 16 + 32, key: k1)
            XCTAssertTrue(RelayTag.check(view.baseAddress!, length: 16 + 32, key: k1))
            XCTAssertFalse(RelayTag.check(view.baseAddress!, length: 16 + 32, key: k2), "another session's key")
            XCTAssertFalse(RelayTag.check(view.baseAddress!, length: 16 + 33, key: k1), "the inner length is covered")
            let other = MemberID(publicKey: key2)
            RelayMessage.rewrite(other, in: view)
            XCTAssertEqual(RelayMessage.parseHeader(UnsafeRawBufferPointer(view), length: 16 + 32), other)
            XCTAssertFalse(RelayTag.check(view.baseAddress!, length: 16 + 32, key: k1), "the member id is covered")
            RelayTag.seal(view.baseAddress!, length: 16 + 32, key: k2)
            XCTAssertTrue(RelayTag.check(view.baseAddress!, length: 16 + 32, key: k2), "re-tagged by the next hop")
            view[16 + 12] ^= 1
            XCTAssertFalse(RelayTag.check(view.baseAddress!, length: 16 + 32, key: k2), "the inner counter is covered")
            view[16 + 12] ^= 1
            view[16 + 20] ^= 1
            XCTAssertTrue(RelayTag.check(view.baseAddress!, length: 16 + 32, key: k2), "the ciphertext is not (it authenticates itself)")
        }
        XCTAssertEqual(buffer[16], 7)
        XCTAssertEqual(buffer[32], 4, "inner type untouched")
        XCTAssertEqual(RelayMessage.wrap([4] + [UInt8](repeating: 0, count: 31), for: id).count, 48)
    }

    func testRelayChecks() {
        let id = MemberID(publicKey: key)
        let good = RelayMessage.wrap([4] + [UInt8](repeating: 0, count: 31), for: id)
        // table: lengths
        for (length, ok) in [(0, false), (16, false), (47, false), (48, true)] {
            good.withUnsafeBytes { XCTAssertEqual(RelayMessage.parseHeader($0, length: length) != nil, ok, "length \(length)") }
        }
        good.withUnsafeBytes { XCTAssertNil(RelayMessage.parseHeader($0, length: 49), "longer than the buffer") }
        for (i, v) in [(0, UInt8(4)), (16, 0), (16, 5), (16, 7)] {
            var c = good
            c[i] = v
            c.withUnsafeBytes { XCTAssertNil(RelayMessage.parseHeader($0, length: c.count), "byte \(i) = \(v)") }
        }
        var b = [UInt8](repeating: 0, count: 16)
        b.withUnsafeMutableBytes {
            XCTAssertFalse(RelayMessage.writeHeader(id, into: $0, at: 1))
            XCTAssertTrue(RelayMessage.writeHeader(id, into: $0, at: 0))
        }
    }

    // MARK: Control messages

    func testControlRoundTrips() {
        let cands = [Candidate(.v4(192, 168, 1, 2, port: 51820), .local), Candidate(v4, .observed), Candidate(v6, .pcp)]
        let messages: [(ControlMessage, Int)] = [
            (.observed(v4), 20),
            (.observed(v6), 20),
            (.candidates([]), 2),
            (.candidates(cands), 2 + 60),
            (.rendezvousRequest(target: key), 33),
            (.rendezvous(peer: key2, candidates: cands), 34 + 60),
            (.pathPing(txid: 0x1122_3344_5566_7788, onActivePath: false), 10),
            (.pathPing(txid: 1, onActivePath: true), 10),
            (.pathPong(txid: 7, observed: v6), 28),
            (.echoRequest(txid: 0xDEAD_BEEF), 9),
            (.echoReply(txid: 9, observed: v4), 28),
        ]
        for (m, size) in messages {
            let bytes = m.bytes
            XCTAssertEqual(bytes.count, size, "\(m)")
            XCTAssertEqual(bytes[0], m.kind.rawValue)
            XCTAssertEqual(ControlMessage(bytes: bytes), m)
            bytes.withUnsafeBytes { XCTAssertEqual(ControlMessage.classify($0, length: bytes.count), .control) }
            // Every truncation and one extra byte are refused.
            for cut in 0..<bytes.count { XCTAssertNil(ControlMessage(bytes: Array(bytes[0..<cut])), "\(m) cut to \(cut)") }
            XCTAssertNil(ControlMessage(bytes: bytes + [0]), "\(m) + 1")
        }
        XCTAssertEqual(ControlMessage.pathPing(txid: 0x0102, onActivePath: true).bytes, [5, 2, 1, 0, 0, 0, 0, 0, 0, 1])
        XCTAssertNil(ControlMessage(bytes: [5, 2, 1, 0, 0, 0, 0, 0, 0, 2]), "unknown flag")
        XCTAssertEqual(ControlMessage.echoRequest(txid: 0x0102).bytes, [7, 2, 1, 0, 0, 0, 0, 0, 0])
    }

    func testCandidateCountsAreBounded() {
        let many = (0..<20).map { Candidate(.v4(10, 0, 0, UInt8($0), port: 1), .local) }
        let bytes = ControlMessage.candidates(many).bytes
        XCTAssertEqual(bytes[1], 16, "cut to the limit")
        XCTAssertEqual(ControlMessage(bytes: bytes), .candidates(Array(many.prefix(16))))
        // A count over the limit, or a count that does not match the length, is refused.
        var over = bytes
        over[1] = 17
        XCTAssertNil(ControlMessage(bytes: over + [UInt8](repeating: 0, count: 20)))
        var lying = ControlMessage.candidates(Array(many.prefix(2))).bytes
        lying[1] = 3
        XCTAssertNil(ControlMessage(bytes: lying))
        var badSource = ControlMessage.candidates(Array(many.prefix(1))).bytes
        badSource[2] = 0
        XCTAssertNil(ControlMessage(bytes: badSource))
        XCTAssertEqual(ControlMessage.rendezvous(peer: key, candidates: many).bytes.count, ControlMessage.maxSize)
    }

    func testPayloadClassification() {
        // table: first byte -> class
        let table: [([UInt8], ControlMessage.PayloadClass)] = [
            ([], .keepalive), ([0x45], .ipPacket), ([0x60], .ipPacket), ([0x4F], .ipPacket),
            ([0x01], .control), ([0x3F], .control), ([0x00], .unknown), ([0x50], .unknown), ([0xFF], .unknown), ([0x70], .unknown),
        ]
        for (bytes, c) in table {
            bytes.withUnsafeBytes { XCTAssertEqual(ControlMessage.classify($0, length: bytes.count), c, "\(bytes)") }
        }
        XCTAssertNil(ControlMessage(bytes: [0x07]), "unassigned control type")
    }

    func testEndpointSourceNamesMatchStatusJSON() {
        XCTAssertEqual(Set(EndpointSource.allCases.map(\.name)), Set(StatusReport.EndpointSource.allCases.map(\.rawValue)))
    }
}
