// Stateless wire parsers (review C.2 rows 1-10, 14, 15). Each input is copied
// into a heap buffer of exactly its length, so any read past `length` is an
// AddressSanitizer report, whatever the parser's own bounds checks say.
import Support
import Wire
import Protocol

/// `bytes` in a fresh allocation of exactly `bytes.count` bytes (at least 1, so
/// the pointer is never nil), handed to `body` as a buffer of `bytes.count`.
func withExactBuffer<R>(_ bytes: [UInt8], _ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
    let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
    defer { p.deallocate() }
    bytes.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: bytes.count) } }
    return body(UnsafeMutableRawBufferPointer(start: p, count: bytes.count))
}

func word0(_ b: [UInt8]) -> UInt32 {
    b.count < 4 ? UInt32.max : UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
}

/// Fixed test keys (not secret: any 32 bytes).
func testKey(_ n: UInt8) -> PublicKey { PublicKey(bytes: (0..<32).map { UInt8($0) &* 7 &+ n })! }

let sampleEndpoints: [Endpoint] = [
    .v4(192, 0, 2, 1, port: 51820),
    Endpoint(family: .v6, address: IPAddressBytes(v6: "2001:db8::1")!, port: 443),
    .v4(0, 0, 0, 0, port: 0),
    Endpoint(family: .v6, address: IPAddressBytes(v6: "::ffff:10.0.0.1")!, port: 65535),
]

let wireTargets: [FuzzTarget] = [
    FuzzTarget(name: "data-header", summary: "DataMessage.parseHeader / writeHeader, MessageType, HandshakeMACs.mac1Offset") { input in
        let header = withExactBuffer(input) { DataMessage.parseHeader(UnsafeRawBufferPointer($0), length: input.count) }
        // Type 4, byte 1 the header flags (only `checksumPartial` known), bytes 2 and 3 zero (docs/wire.md).
        let wellFormed = word0(input) == 4 || word0(input) == 4 | UInt32(DataMessage.checksumPartial) << 8
        if let h = header {
            check(input.count >= DataMessage.minimumSize && wellFormed, "DATA header accepted from a non-DATA message")
            var out = [UInt8](repeating: 0xAA, count: DataMessage.headerSize)
            check(out.withUnsafeMutableBytes { DataMessage.writeHeader(h, into: $0, at: 0) }, "writeHeader refused 16 bytes")
            check(out[...] == input[..<DataMessage.headerSize], "DATA header round trip")
        } else {
            check(input.count < DataMessage.minimumSize || !wellFormed, "a well-formed DATA header refused")
        }
        // The length argument may lie (shorter or longer than the buffer).
        for length in [input.count - 1, input.count + 1, Int.max, Int.min] {
            let h = withExactBuffer(input) { DataMessage.parseHeader(UnsafeRawBufferPointer($0), length: length) }
            check(h == nil || length <= input.count, "parseHeader accepted a length past the buffer")
        }
        _ = withExactBuffer(input) { MessageType(datagram: UnsafeRawBufferPointer($0)) }
        let mac1 = HandshakeMACs.mac1Offset(input)
        check(mac1 == nil || mac1 == 148 || mac1 == 60, "mac1Offset \(String(describing: mac1))")
    } seeds: {
        var keepalive = [UInt8](repeating: 0, count: 32)
        keepalive[0] = 4
        keepalive[4] = 7
        var big = [UInt8](repeating: 0x5A, count: 120)
        big.replaceSubrange(0..<4, with: [4, 0, 0, 0])
        var flagged = big
        flagged[1] = DataMessage.checksumPartial
        return [keepalive, big, flagged, Array(keepalive.prefix(31))]
    },

    FuzzTarget(name: "handshake-init", summary: "HandshakeInitiationMessage(bytes:) <-> .bytes") { input in
        let m = HandshakeInitiationMessage(bytes: input)
        // Byte 1 is the cipher offer (any value); bytes 2, 3 reserved (docs/wire.md).
        check((m != nil) == (input.count == 180 && word0(input) & 0xffff_00ff == 1), "HANDSHAKE_INIT acceptance")
        if let m { check(m.bytes == input, "HANDSHAKE_INIT round trip") }
    } seeds: {
        [HandshakeInitiationMessage(senderIndex: 0x01020304, noise: [UInt8](repeating: 0x11, count: 140)).bytes,
         HandshakeInitiationMessage(senderIndex: 0x01020304, noise: [UInt8](repeating: 0x11, count: 140), cipherOffer: 1).bytes]
    },

    FuzzTarget(name: "handshake-resp", summary: "HandshakeResponseMessage(bytes:) <-> .bytes") { input in
        let m = HandshakeResponseMessage(bytes: input)
        // Byte 1 is the choice (bit 0 the cipher, bit 1 header flags: 0...3); bytes 2, 3 reserved (docs/wire.md).
        check((m != nil) == (input.count == 92 && word0(input) & 0xffff_fcff == 2), "HANDSHAKE_RESP acceptance")
        if let m { check(m.bytes == input, "HANDSHAKE_RESP round trip") }
    } seeds: {
        [HandshakeResponseMessage(senderIndex: 9, receiverIndex: 0x01020304, noise: [UInt8](repeating: 0x22, count: 48)).bytes,
         HandshakeResponseMessage(senderIndex: 9, receiverIndex: 0x01020304, noise: [UInt8](repeating: 0x22, count: 48),
                                  cipherChoice: 1).bytes,
         HandshakeResponseMessage(senderIndex: 9, receiverIndex: 0x01020304, noise: [UInt8](repeating: 0x22, count: 48),
                                  cipherChoice: 3).bytes]
    },

    FuzzTarget(name: "cookie-reply", summary: "CookieReplyMessage(bytes:) <-> .bytes") { input in
        let m = CookieReplyMessage(bytes: input)
        check((m != nil) == (input.count == 64 && word0(input) == 3), "COOKIE_REPLY acceptance")
        if let m { check(m.bytes == input, "COOKIE_REPLY round trip") }
    } seeds: {
        [CookieReplyMessage(receiverIndex: 5, nonce: [UInt8](repeating: 1, count: 24), encryptedCookie: [UInt8](repeating: 2, count: 32)).bytes]
    },

    FuzzTarget(name: "path-probe", summary: "PathProbe / PathProbeReply parse, write, round trip") { input in
        if let p = withExactBuffer(input, { PathProbe(UnsafeRawBufferPointer($0), length: input.count) }) {
            check(input.count == 64 && word0(input) == 5 && input[44...].allSatisfy { $0 == 0 }, "PATH_PROBE acceptance")
            check(p.bytes == input, "PATH_PROBE round trip")
        }
        if let r = withExactBuffer(input, { PathProbeReply(UnsafeRawBufferPointer($0), length: input.count) }) {
            check(input.count == 63 && word0(input) == 6, "PATH_PROBE_REPLY acceptance")
            check(r.bytes == input, "PATH_PROBE_REPLY round trip")
            // write never touches byte 63 or later: an exact 63-byte allocation (ASan) ...
            let written = withExactBuffer([UInt8](repeating: 0, count: 63)) { r.write(into: $0) }
            check(written == 63, "write into 63 bytes")
            // ... and nothing at all into a buffer one short.
            let short = withExactBuffer([UInt8](repeating: 0, count: 62)) { r.write(into: $0) }
            check(short == nil, "write into 62 bytes")
        }
    } seeds: {
        let probe = PathProbe(txid: 0x0102030405060708, sender: testKey(1)).bytes
        return [probe] + sampleEndpoints.map { PathProbeReply(txid: 42, observed: $0, responder: testKey(2)).bytes }
    },

    FuzzTarget(name: "wire-endpoint", summary: "WireEndpoint.read at a fuzzed offset; write(read(x)) == x") { input in
        var r = FuzzReader(input)
        // The offset: 8 bytes, folded so that small, negative and huge values all occur.
        let raw = Int(truncatingIfNeeded: r.u64())
        let offset = raw % 64 == 63 ? raw : raw % 64
        let buffer = r.rest()
        let ep = withExactBuffer(buffer) { WireEndpoint.read(UnsafeRawBufferPointer($0), at: offset) }
        guard let ep else { return }
        check(offset >= 0 && offset + WireEndpoint.size <= buffer.count, "read past the buffer")
        var out = [UInt8](repeating: 0, count: WireEndpoint.size)
        check(out.withUnsafeMutableBytes { WireEndpoint.write(ep, into: $0, at: 0) }, "write refused 19 bytes")
        check(out[...] == buffer[offset..<(offset + WireEndpoint.size)], "endpoint round trip")
        // Its text form parses back to it (Endpoint.init?(_ text:), as config and cache use it).
        check(Endpoint(ep.description) == ep, "endpoint text round trip: \(ep)")
    } seeds: {
        sampleEndpoints.map { ep in
            var b = [UInt8](repeating: 0, count: 8 + 3 + WireEndpoint.size)
            b[0] = 3
            b.withUnsafeMutableBytes { _ = WireEndpoint.write(ep, into: UnsafeMutableRawBufferPointer(rebasing: $0[8...]), at: 3) }
            return b
        }
    },

    FuzzTarget(name: "relay-header", summary: "RelayMessage.parseHeader / writeHeader") { input in
        guard let id = withExactBuffer(input, { RelayMessage.parseHeader(UnsafeRawBufferPointer($0), length: input.count) }) else { return }
        // 16-byte header (type | tag 7 | member id 8), the inner datagram's type at 16.
        check(input.count >= RelayMessage.minimumSize && input[0] == 7 && (1...4).contains(input[RelayMessage.headerSize]),
              "RELAY acceptance")
        var out = [UInt8](repeating: 0, count: RelayMessage.headerSize)
        check(out.withUnsafeMutableBytes { RelayMessage.writeHeader(id, into: $0, at: 0) }, "writeHeader refused 16 bytes")
        // The tag is the sender's to write (RelayTag.seal): the type and the id round-trip.
        check(out[0] == input[0] && out[RelayMessage.idOffset..<RelayMessage.headerSize] == input[RelayMessage.idOffset..<RelayMessage.headerSize],
              "RELAY header round trip")
    } seeds: {
        var inner = [UInt8](repeating: 0, count: 32)
        inner[0] = 4
        return [RelayMessage.wrap(inner, for: MemberID(rawValue: 0x1122334455667788))]
    },

    FuzzTarget(name: "control-message", summary: "ControlMessage parse -> bytes (canonical only), classify") { input in
        _ = withExactBuffer(input) { ControlMessage.classify(UnsafeRawBufferPointer($0), length: input.count) }
        guard let m = withExactBuffer(input, { ControlMessage(UnsafeRawBufferPointer($0), length: input.count) }) else { return }
        check(m.bytes == input, "control message not canonical: \(m)")
        check(ControlMessage(bytes: m.bytes) == m, "control message round trip: \(m)")
    } seeds: {
        let c = sampleEndpoints.enumerated().map { Candidate($1, EndpointSource.allCases[$0 % 6]) }
        let msgs: [ControlMessage] = [
            .observed(sampleEndpoints[0]), .candidates(c), .candidates([]),
            .rendezvousRequest(target: testKey(3)), .rendezvous(peer: testKey(4), candidates: c),
            .pathPing(txid: 77, onActivePath: true), .pathPong(txid: 78, observed: sampleEndpoints[1]),
            .echoRequest(txid: 79), .echoReply(txid: 80, observed: sampleEndpoints[2]),
        ]
        return msgs.map(\.bytes)
    },

    FuzzTarget(name: "ip-routes", summary: "IPHeader.source/destination, CryptokeyRoutes.lookup/allows") { input in
        // A few routes, then a packet.
        var r = FuzzReader(input)
        var routes: [(CIDR, Int)] = []
        for i in 0..<Int(r.u8() % 5) {
            let v6 = r.u8() & 1 == 1
            let addr = IPAddressBytes(bytes: r.take(v6 ? 16 : 4))
            let family: Endpoint.Family = v6 ? .v6 : .v4
            let plen = Int(r.u8()) % (CIDR.maxPrefixLength(family) + 1)
            if let c = CIDR(family: family, address: addr, prefixLength: plen) { routes.append((c.network, i)) }
        }
        let packet = r.rest()
        let table = CryptokeyRoutes(routes)
        withExactBuffer(packet) { b in
            guard let base = b.baseAddress else { return }
            for address in [IPHeader.source(base, length: packet.count), IPHeader.destination(base, length: packet.count)] {
                guard let (a, family) = address else { continue }
                check(packet.count >= (family == .v4 ? 20 : 40), "IP header read from a short packet")
                let owner = table.lookup(a, family: family)
                check(owner == nil || routes.contains { $0.1 == owner! && $0.0.contains(a, family: family) }, "lookup gave a route that does not contain the address")
                if let owner { check(table.allows(peer: owner, source: a, family: family), "allows disagrees with lookup") }
            }
        }
    } seeds: {
        var v4 = [UInt8](repeating: 0, count: 20)
        v4[0] = 0x45
        v4.replaceSubrange(12..<20, with: [10, 0, 0, 1, 10, 0, 0, 2])
        var v6 = [UInt8](repeating: 0, count: 40)
        v6[0] = 0x60
        v6[8] = 0xfd
        v6[24] = 0xfd
        return [[2, 0, 10, 0, 0, 0, 8, 1] + Array(IPAddressBytes(v6: "fd00::")!.bytes) + [8] + v4,
                [1, 1] + Array(IPAddressBytes(v6: "fd00::")!.bytes) + [16] + v6]
    },

    FuzzTarget(name: "packet-too-big", summary: "PacketTooBig.build: the ICMP error for a packet read from the TUN") { input in
        // Two bytes of MTU, then the packet (an exact buffer: ASan sees any read past it).
        var r = FuzzReader(input)
        let mtu = 1280 + Int(UInt16(r.u8()) << 8 | UInt16(r.u8())) % 300
        let packet = r.rest()
        let out = UnsafeMutableRawPointer.allocate(byteCount: PacketTooBig.bufferSize, alignment: 4)
        defer { out.deallocate() }
        withExactBuffer(packet) { b in
            guard let base = b.baseAddress else { return }
            guard case .built(let n) = PacketTooBig.build(packet: base, length: packet.count, mtu: mtu, into: out) else { return }
            let v4 = packet[0] >> 4 == 4
            check(n <= (v4 ? 576 : 1280) && n >= (v4 ? 28 : 48), "error length \(n)")
            if v4 {
                check(InternetChecksum.finish(InternetChecksum.add(0, out, 20)) == 0, "IPv4 header checksum")
                check(InternetChecksum.finish(InternetChecksum.add(0, out + 20, n - 20)) == 0, "ICMP checksum")
                check(out.load(fromByteOffset: 20, as: UInt8.self) == 3 && out.load(fromByteOffset: 21, as: UInt8.self) == 4, "type 3 code 4")
                check((0..<4).allSatisfy { out.load(fromByteOffset: 16 + $0, as: UInt8.self) == base.load(fromByteOffset: 12 + $0, as: UInt8.self) }, "sent back to the packet's source")
            } else {
                var sum = InternetChecksum.add(0, out + 8, 32)
                sum &+= UInt32((n - 40) >> 16) &+ UInt32((n - 40) & 0xFFFF) &+ 58
                check(InternetChecksum.finish(InternetChecksum.add(sum, out + 40, n - 40)) == 0, "ICMPv6 checksum")
                check(out.load(fromByteOffset: 40, as: UInt8.self) == 2, "type 2")
                check((0..<16).allSatisfy { out.load(fromByteOffset: 24 + $0, as: UInt8.self) == base.load(fromByteOffset: 8 + $0, as: UInt8.self) }, "sent back to the packet's source")
            }
        }
    } seeds: {
        var v4 = [UInt8](repeating: 0, count: 1400)
        v4[0] = 0x45; v4[2] = 0x05; v4[3] = 0x78; v4[6] = 0x40; v4[8] = 64; v4[9] = 6
        v4.replaceSubrange(12..<20, with: [10, 77, 0, 1, 10, 77, 0, 2])
        var v6 = [UInt8](repeating: 0, count: 1400)
        v6[0] = 0x60; v6[6] = 17; v6[7] = 64; v6[8] = 0xfd; v6[23] = 1; v6[24] = 0xfd; v6[39] = 2
        var icmp = v4
        icmp[9] = 1; icmp[20] = 3
        return [[0, 100] + v4, [1, 0] + v6, [0, 0] + icmp, [0, 0] + Array(v4.prefix(20))]
    },

    FuzzTarget(name: "handshake-timestamp", summary: "HandshakeTimestamp(bytes:) <-> .bytes") { input in
        let t = HandshakeTimestamp(bytes: input)
        check((t != nil) == (input.count == 12), "timestamp acceptance")
        if let t { check(t.bytes == input, "timestamp round trip") }
    } seeds: {
        [HandshakeTimestamp(unixSeconds: 1_700_000_000, nanoseconds: 123_456_789).bytes]
    },
]
