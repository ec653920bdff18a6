import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
import Reactor

/// DATA header flags and checksums left partial between Whalescale peers
/// (docs/wire.md "Header flags"; Wire/DataMessage.swift):
///  - negotiated with bit 1 of the INIT's offer and the RESP's choice, authenticated;
///  - a flag is sealed into the AEAD nonce: changed on the path, the packet does not open;
///    under keys that did not negotiate flags, a flag is refused on both sides;
///  - the sender's split leaves each segment's checksum as the pseudo-header sum, which the
///    kernel's completion turns into exactly the checksum a full split computes; cutting each
///    segment where it lies (the data path's way) gives the same bytes as split;
///  - the receiver merges partial segments without verifying them and writes one alone
///    with NEEDS_CSUM where its headers say; a refused GSO write completes them in full.
/// The daemons negotiate it over real TUNs in tests/tunnel.sh (`checksum_offload`).
final class PartialChecksumTests: XCTestCase {
    let a = Identity(secret: SecretKey.generate())
    let b = Identity(secret: SecretKey.generate())
    let ts = [UInt8](repeating: 1, count: HandshakeConstants.timestampLength)

    // MARK: Negotiation

    /// A -> B with `offer` as INIT byte 1 and B taking header flags or not; keys of both ends.
    func handshake(offer: UInt8, responderTakes: Bool, onResp: (inout [UInt8]) -> Void = { _ in })
        throws -> (initiator: TransportKeys?, responder: TransportKeys, choice: UInt8) {
        var macsAB = MacGenerator(peer: b.publicKey), macsBA = MacGenerator(peer: a.publicKey)
        let (sent, state) = try XCTUnwrap(InitiatorHandshake.createInitiation(
            identity: a, responder: b.publicKey, senderIndex: 7, timestamp: ts, cipherOffer: offer,
            macs: &macsAB, now: .zero, ephemeral: nil))
        let received = try XCTUnwrap(consumeInitiation(identity: b, message: sent))
        let made = try XCTUnwrap(received.createResponse(senderIndex: 9, aesGCM: true, headerFlags: responderTakes,
                                                         macs: &macsBA, now: .zero))
        var response = made.message
        onResp(&response)
        return (state.consumeResponse(response)?.keys, made.keys, made.message[1])
    }

    func testNegotiationMatrix() throws {
        XCTAssertEqual(InitiatorHandshake.cipherOffer(aesGCM: false, headerFlags: true), 2)
        XCTAssertEqual(InitiatorHandshake.cipherOffer(aesGCM: false, headerFlags: false), 0)
        for cipherBit: UInt8 in [0, 1] {
            let offer = cipherBit | HandshakeConstants.headerFlagsBit
            let both = try handshake(offer: offer, responderTakes: true)
            XCTAssertEqual(both.initiator?.headerFlags, true, "offered and taken (offer \(offer))")
            XCTAssertTrue(both.responder.headerFlags)
            XCTAssertEqual(both.choice & 2, 2, "choice bit 1")
            XCTAssertEqual(both.initiator?.cipher, both.responder.cipher, "the cipher is negotiated as before")
            let refused = try handshake(offer: offer, responderTakes: false)
            XCTAssertEqual(refused.initiator?.headerFlags, false, "the responder does not take them")
            XCTAssertFalse(refused.responder.headerFlags)
            XCTAssertEqual(refused.choice & 2, 0)
        }
        let notOffered = try handshake(offer: 1, responderTakes: true)
        XCTAssertEqual(notOffered.initiator?.headerFlags, false, "not offered: never chosen")
        XCTAssertFalse(notOffered.responder.headerFlags)
    }

    /// The choice's bit 1 is MixHash()ed: cleared or set on the path, the RESP does not authenticate.
    func testChoiceBitChangedInFlightIsRefused() throws {
        let cleared = try handshake(offer: 2, responderTakes: true, onResp: { $0[1] &= ~2 })
        XCTAssertTrue(cleared.responder.headerFlags)
        XCTAssertNil(cleared.initiator, "flags chosen, cleared on the path")
        let set = try handshake(offer: 2, responderTakes: false, onResp: { $0[1] |= 2 })
        XCTAssertNil(set.initiator, "flags refused, set on the path")
    }

    // MARK: Sealing

    func testFlagsAreSealedIntoTheNonce() {
        let key = (0..<32).map { UInt8($0 &* 5 &+ 1) }
        for cipher in NoiseCipher.allCases where cipher.isAvailable {
            let k = TransportKey(bytes: key, cipher: cipher)
            let plain = pattern(300, seed: 3)
            var plainSealed = plain + [UInt8](repeating: 0, count: 16)
            var flagged = plainSealed
            plainSealed.withUnsafeMutableBytes { k.seal(counter: 5, buffer: $0.baseAddress!, length: 300) }
            flagged.withUnsafeMutableBytes { k.seal(counter: 5, buffer: $0.baseAddress!, length: 300, flags: 1) }
            // Flags 0 is Noise's nonce: the same bytes as the handshake's AEAD.
            let reference = cipher == .aesGCM
                ? Sodium.aesGCMSeal(key: SecretBytes(copying: key), nonce: 5, ad: [UInt8](), plaintext: plain)
                : Sodium.chachaPolySeal(key: SecretBytes(copying: key), nonce: 5, ad: [UInt8](), plaintext: plain)
            XCTAssertEqual(plainSealed, reference, "\(cipher)")
            XCTAssertNotEqual(flagged, plainSealed, "\(cipher): another nonce")
            var copy = flagged
            XCTAssertFalse(copy.withUnsafeMutableBytes { k.open(counter: 5, buffer: $0.baseAddress!, length: 316, flags: 0) },
                           "\(cipher): the flag cleared on the path")
            XCTAssertTrue(flagged.withUnsafeMutableBytes { k.open(counter: 5, buffer: $0.baseAddress!, length: 316, flags: 1) })
            XCTAssertEqual(Array(flagged.prefix(300)), plain)
        }
    }

    func keypair(_ keys: TransportKeys) -> Keypair {
        Keypair(keys: keys, localIndex: 1, remoteIndex: 2, createdAt: .zero, isInitiator: true, timings: .default)
    }

    /// The session layer: flags only under keys that negotiated them, and they travel in header byte 1.
    func testKeypairSealsAndOpensFlagsOnlyWhenNegotiated() {
        let k = TransportKey(bytes: [UInt8](repeating: 7, count: 32))
        let t = SessionTimings.default
        var plain = keypair(TransportKeys(send: k, receive: k))
        var flags = keypair(TransportKeys(send: k, receive: k, headerFlags: true))
        var buf = [UInt8](repeating: 0x45, count: 16 + 100 + 16)
        guard case .badFlags = buf.withUnsafeMutableBytes({
            plain.seal($0.baseAddress!, payloadOffset: 16, payloadLength: 100, flags: DataMessage.checksumPartial, now: .zero, timings: t)
        }) else { return XCTFail("flags under keys without them") }
        guard case .sealed = buf.withUnsafeMutableBytes({
            flags.seal($0.baseAddress!, payloadOffset: 16, payloadLength: 100, flags: DataMessage.checksumPartial, now: .zero, timings: t)
        }) else { return XCTFail("seal") }
        XCTAssertEqual(Array(buf[0..<4]), [4, DataMessage.checksumPartial, 0, 0])
        let sealed = buf
        // Under keys without flags (a peer that did not negotiate them): refused before the AEAD.
        var other = keypair(TransportKeys(send: k, receive: k))
        XCTAssertEqual(buf.withUnsafeMutableBytes { other.open($0.baseAddress!, length: $0.count, counter: 0, now: .zero, timings: t) },
                       .badFlags)
        // The flag cleared on the path: the nonce differs, the tag fails.
        var receiver = keypair(TransportKeys(send: k, receive: k, headerFlags: true))
        buf[1] = 0
        XCTAssertEqual(buf.withUnsafeMutableBytes { receiver.open($0.baseAddress!, length: $0.count, counter: 0, now: .zero, timings: t) },
                       .authFailed)
        buf = sealed
        XCTAssertEqual(buf.withUnsafeMutableBytes { receiver.open($0.baseAddress!, length: $0.count, counter: 0, now: .zero, timings: t) },
                       .opened)
        XCTAssertEqual(Array(buf[16..<116]), [UInt8](repeating: 0x45, count: 100))
        XCTAssertEqual(buf.withUnsafeBytes { DataMessage.flags(ofPayloadAt: $0.baseAddress! + 16) }, DataMessage.checksumPartial)
    }

    // MARK: Where the checksum lies

    func testChecksumPlace() {
        func place(_ spec: PacketSpec) -> [Int]? {
            let p = spec.build()
            return p.withUnsafeBytes { Offload.checksumPlace($0.baseAddress!, length: p.count).map { [$0.start, $0.offset] } }
        }
        var spec = PacketSpec()
        spec.payload = pattern(100)
        XCTAssertEqual(place(spec), [20, 16])
        spec.ipv4Options = [1, 1, 1, 0]
        XCTAssertEqual(place(spec), [24, 16], "IPv4 options: after them")
        spec.ipv4Options = []
        spec.proto = 17
        XCTAssertEqual(place(spec), [20, 6])
        spec.isV6 = true
        XCTAssertEqual(place(spec), [40, 6])
        spec.proto = 6
        XCTAssertEqual(place(spec), [40, 16])
        var ext = spec.build()
        ext[6] = 0  // hop-by-hop options first: the packet alone does not say
        XCTAssertNil(ext.withUnsafeBytes { Offload.checksumPlace($0.baseAddress!, length: ext.count) })
        var v4 = PacketSpec()
        v4.payload = pattern(100)
        var frag = v4.build()
        frag[6] |= 0x20  // MF
        XCTAssertNil(frag.withUnsafeBytes { Offload.checksumPlace($0.baseAddress!, length: frag.count) }, "a fragment")
        var icmp = v4.build()
        icmp[9] = 1
        XCTAssertNil(icmp.withUnsafeBytes { Offload.checksumPlace($0.baseAddress!, length: icmp.count) }, "not TCP or UDP")
        let short = Array(v4.build().prefix(30))
        XCTAssertNil(short.withUnsafeBytes { Offload.checksumPlace($0.baseAddress!, length: short.count) }, "TCP header cut")
        for n in 0..<20 {
            let junk = pattern(n, seed: n)
            XCTAssertNil(junk.withUnsafeBytes { Offload.checksumPlace($0.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, length: n) })
        }
    }

    // MARK: Split and merge

    /// Every segment of `packet`, split with `partial`.
    func split(_ packet: [UInt8], _ h: VirtioNetHeader, partial: Bool) throws -> [[UInt8]] {
        try packet.withUnsafeBytes { src -> [[UInt8]] in
            guard case .split(let plan) = Offload.plan(src.baseAddress!, length: packet.count, header: h) else {
                throw XCTSkip("plan refused")
            }
            let stride = plan.segmentLength
            let out = UnsafeMutableRawPointer.allocate(byteCount: stride * plan.count, alignment: 16)
            defer { out.deallocate() }
            Offload.split(src.baseAddress!, plan: plan, segments: 0..<plan.count, into: out, stride: stride, partialChecksums: partial)
            return (0..<plan.count).map { Array(UnsafeRawBufferPointer(start: out + $0 * stride, count: plan.length(ofSegment: $0))) }
        }
    }

    func specs() -> [PacketSpec] {
        var v4 = PacketSpec()
        v4.tcpOptions = timestampOption(1, 2)
        v4.payload = pattern(9000, seed: 4)
        v4.flags = 0x18
        var v6 = v4
        v6.isV6 = true
        var udp = PacketSpec()
        udp.proto = 17
        udp.payload = pattern(5000, seed: 5)
        var opts = v4
        opts.ipv4Options = [1, 1, 1, 0]
        return [v4, v6, udp, opts]
    }

    /// A partial segment is the full one with the pseudo-header sum in the field; the
    /// kernel's completion (NEEDS_CSUM at the place the packet gives) makes them equal.
    func testPartialSplitCompletesToTheFullSplit() throws {
        for spec in specs() {
            let (packet, h) = superPacket(spec, gsoSize: 1300)
            let full = try split(packet, h, partial: false)
            let partial = try split(packet, h, partial: true)
            XCTAssertEqual(full.count, partial.count)
            for (i, var seg) in partial.enumerated() {
                let l4 = spec.ipHeaderLength, at = l4 + (spec.proto == 6 ? 16 : 6)
                if !spec.isV6 { XCTAssertTrue(Naive.ipv4HeaderValid(seg), "IPv4 header checksum stays complete") }
                let pseudo = Naive.sum([], initial: Naive.pseudo(seg, isV6: spec.isV6, proto: spec.proto, l4Length: seg.count - l4))
                XCTAssertEqual(be16(seg, at), Int(pseudo), "segment \(i): the pseudo-header sum")
                XCTAssertEqual(Array(seg[..<at]), Array(full[i][..<at]))
                XCTAssertEqual(Array(seg[(at + 2)...]), Array(full[i][(at + 2)...]))
                let completed = seg.withUnsafeMutableBytes { b -> Bool in
                    guard let place = Offload.checksumPlace(b.baseAddress!, length: b.count) else { return false }
                    return Offload.completeChecksum(b.baseAddress!, length: b.count,
                                                    header: .partialChecksum(start: place.start, offset: place.offset))
                }
                XCTAssertTrue(completed)
                XCTAssertEqual(seg, full[i], "segment \(i) of \(spec.isV6 ? "v6" : "v4") proto \(spec.proto)")
            }
        }
    }

    /// Cutting each segment where it lies in the super-packet (the data path's way: no payload
    /// copied) gives the bytes `split` gives, in both checksum forms, also when the segment size
    /// is below the headers' length (each cut then overwrites more than the previous segment's tail).
    func testCutInPlaceGivesWhatSplitGives() throws {
        var tiny = PacketSpec()
        tiny.tcpOptions = timestampOption(7, 8)
        tiny.payload = pattern(500, seed: 9)
        for (spec, gso) in specs().map({ ($0, 1300) }) + [(tiny, 16), (tiny, 1)] {
            let (packet, h) = superPacket(spec, gsoSize: gso)
            for partial in [false, true] {
                let expected = try split(packet, h, partial: partial)
                var work = packet
                let got = try work.withUnsafeMutableBytes { b -> [[UInt8]] in
                    let p = b.baseAddress!
                    guard case .split(let plan) = Offload.plan(p, length: b.count, header: h) else { throw XCTSkip("plan") }
                    let headers = UnsafeMutableRawPointer.allocate(byteCount: plan.headerLength, alignment: 16)
                    defer { headers.deallocate() }
                    headers.copyMemory(from: p, byteCount: plan.headerLength)
                    let base = Offload.SegmentBase(headers: p, plan: plan)
                    return (0..<plan.count).map { i in
                        let d = Offload.cutInPlace(p, plan: plan, segment: i, headers: headers, base: base, partialChecksums: partial)
                        return Array(UnsafeRawBufferPointer(start: d, count: plan.length(ofSegment: i)))
                    }
                }
                XCTAssertEqual(got, expected, "gso \(gso) \(spec.isV6 ? "v6" : "v4") proto \(spec.proto) partial \(partial)")
            }
        }
    }

    /// Feeds `packets` through a coalescer (as partial or not); the outputs, as bytes with their headers.
    func coalesce(_ packets: [[UInt8]], partial: Bool, udp: Bool = true, refused: Bool = false)
        -> (outs: [(VirtioNetHeader, [UInt8], Int)], coalescer: GSOCoalescer) {
        let c = GSOCoalescer(udp: udp)
        let total = packets.reduce(0) { $0 + $1.count }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: 16)
        defer { buf.deallocate() }
        var off = 0
        for p in packets {
            p.withUnsafeBytes { (buf + off).copyMemory(from: $0.baseAddress!, byteCount: p.count) }
            let place = partial ? Offload.checksumPlace(buf + off, length: p.count) : nil
            XCTAssertTrue(c.add(buf + off, length: p.count, partial: place))
            off += p.count
        }
        var outs: [(VirtioNetHeader, [UInt8], Int)] = []
        c.flush { o in
            if refused, !o.pieces.isEmpty {
                // What the engine does when the kernel refuses the GSO write: each segment alone, complete.
                GSOCoalescer.restoreHead(o)
                outs.append((.none, Array(UnsafeRawBufferPointer(start: o.head, count: o.headLength)), 0))
                let hl = Int(o.header.headerLength)
                for piece in o.pieces {
                    let seg = UnsafeMutableRawPointer(mutating: piece.base - hl)
                    GSOCoalescer.restoreSegment(seg, length: piece.length + hl, of: o)
                    outs.append((.none, Array(UnsafeRawBufferPointer(start: seg, count: piece.length + hl)), 0))
                }
                return
            }
            var bytes = Array(UnsafeRawBufferPointer(start: o.head, count: o.headLength))
            for piece in o.pieces { bytes += UnsafeRawBufferPointer(start: piece.base, count: piece.length) }
            outs.append((o.header, bytes, o.pieces.count))
        }
        return (outs, c)
    }

    /// Completes a NEEDS_CSUM output the way the kernel does (csum_start on, into the field).
    func completed(_ out: (VirtioNetHeader, [UInt8], Int)) -> [UInt8] {
        var b = out.1
        XCTAssertEqual(out.0.flags, VirtioNetHeader.needsChecksum)
        XCTAssertTrue(b.withUnsafeMutableBytes { Offload.completeChecksum($0.baseAddress!, length: $0.count, header: out.0) })
        return b
    }

    func testPartialSegmentsMergeWithoutVerifying() throws {
        for spec in specs() {
            let (packet, h) = superPacket(spec, gsoSize: 1300)
            let segs = try split(packet, h, partial: true)
            let l4 = spec.ipHeaderLength
            // As partial: one super-packet, nothing counted bad, valid once the kernel completes it.
            let (outs, c) = coalesce(segs, partial: true)
            XCTAssertEqual(c.badChecksums, 0)
            XCTAssertEqual(outs.count, spec.ipv4Options.isEmpty ? 1 : segs.count, "IPv4 options never merge")
            for out in outs {
                XCTAssertEqual(out.0.flags, VirtioNetHeader.needsChecksum, "written with NEEDS_CSUM, merged or alone")
                XCTAssertEqual(Int(out.0.checksumStart), l4)
                XCTAssertEqual(Int(out.0.checksumOffset), spec.proto == 6 ? 16 : 6)
                XCTAssertTrue(Naive.transportValid(completed(out), l4: l4, isV6: spec.isV6, proto: spec.proto))
            }
            // The same bytes not flagged are bad checksums: the flag is what lets them through.
            let unflagged = coalesce(segs, partial: false)
            XCTAssertEqual(unflagged.outs.count, segs.count, "nothing merged")
            if spec.ipv4Options.isEmpty { XCTAssertGreaterThan(unflagged.coalescer.badChecksums, 0, "they fail verification") }
            // A kernel that refuses the GSO write gets every segment alone, complete.
            if spec.ipv4Options.isEmpty {
                let refused = coalesce(segs, partial: true, refused: true).outs
                XCTAssertEqual(refused.count, segs.count)
                for (i, out) in refused.enumerated() {
                    XCTAssertTrue(Naive.transportValid(out.1, l4: l4, isV6: spec.isV6, proto: spec.proto), "segment \(i) alone")
                }
            }
        }
    }

    /// One partial packet alone (nothing to merge with, or UDP without USO) keeps its place.
    func testALonePartialPacketIsWrittenWithNeedsCsum() throws {
        var spec = PacketSpec()
        spec.payload = pattern(700)
        spec.flags = 0x18
        let (single, h) = superPacket(spec, gsoSize: 1300)  // one segment
        let seg = try split(single, h, partial: true)
        XCTAssertEqual(seg.count, 1)
        let outs = coalesce(seg, partial: true).outs
        XCTAssertEqual(outs.count, 1)
        XCTAssertEqual(outs[0].2, 0)
        XCTAssertEqual(outs[0].0, .partialChecksum(start: 20, offset: 16))
        XCTAssertTrue(Naive.transportValid(completed(outs[0]), l4: 20, isV6: false, proto: 6))
        var udp = PacketSpec()
        udp.proto = 17
        udp.payload = pattern(3000)
        let (u, uh) = superPacket(udp, gsoSize: 1000)
        let datagrams = try split(u, uh, partial: true)
        let alone = coalesce(datagrams, partial: true, udp: false).outs
        XCTAssertEqual(alone.count, 3, "no USO: each datagram alone")
        for out in alone {
            XCTAssertEqual(out.0, .partialChecksum(start: 20, offset: 6))
            XCTAssertTrue(Naive.transportValid(completed(out), l4: 20, isV6: false, proto: 17))
        }
        // Not flagged: written as it is (the kernel verifies it).
        let plain = PacketSpec(payload: pattern(100)).build()
        XCTAssertEqual(coalesce([plain], partial: false).outs.first?.0, VirtioNetHeader.none)
    }
}
