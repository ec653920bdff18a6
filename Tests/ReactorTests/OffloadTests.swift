import CReactor
import Foundation
import XCTest

@testable import Reactor

/// UDP GSO/GRO through DatagramSocket on loopback, the split fallback when GSO
/// is off, and a TUN device with IFF_VNET_HDR offloads in a network namespace
/// this test makes (and removes in tearDown, also when a test fails):
///
///   netns wsr-off-PID:   python3 (UDP_SEGMENT sender) ─▶ 10.99.8.2 via wsoff0 (TUN, USO) ─▶ TunDevice
///                        TunDevice.writeGather(USO super-packet) ─▶ kernel segments ─▶ UDP socket 10.99.8.1:9998
///                        TunDevice.write(ICMP echo request) ─▶ kernel answers ─▶ TunDevice reads the reply
final class OffloadTests: XCTestCase {
    final class Collect: DatagramHandler, @unchecked Sendable {
        var datagrams: [(bytes: [UInt8], segment: Int)] = []
        var onBatch: () -> Void = {}
        func received(_ batch: DatagramBatch, on socket: DatagramSocket) {
            for i in 0..<batch.count {
                let d = batch[i].pointee
                datagrams.append((Array(UnsafeRawBufferPointer(start: d.data, count: Int(d.len))), Int(d.segment)))
            }
            onBatch()
        }
        var totalBytes: Int { datagrams.reduce(0) { $0 + $1.bytes.count } }
    }

    func loopback() -> CReactor_endpoint {
        var ep = CReactor_endpoint()
        _ = CReactor_endpoint_parse("127.0.0.1", 0, &ep)
        return ep
    }

    /// Sends one GSO run of 5 × 1000 + 500 bytes from `sender` to `to`; runs the loop until `rx` has `bytes` bytes.
    func sendRun(_ r: Reactor, _ sender: DatagramSocket, to: CReactor_endpoint, rx: Collect) -> Int {
        let payload = (0..<5500).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var view = CReactor_dgram()
        let consumed = payload.withUnsafeBytes { b -> Int in
            view.data = UnsafeMutablePointer(mutating: b.baseAddress!.assumingMemoryBound(to: UInt8.self))
            view.len = 5500
            view.segment = 1000
            view.peer = to
            return withUnsafeMutablePointer(to: &view) { sender.send(DatagramBatch(base: $0, count: 1)) }
        }
        let deadline = Reactor.now() + 3_000_000_000
        while rx.totalBytes < 5500 && Reactor.now() < deadline { r.runOnce(timeoutMs: 50) }
        XCTAssertEqual(rx.datagrams.flatMap(\.bytes), payload, "every byte, in order")
        return consumed
    }

    func testGSORunArrivesAsOneGRORun() throws {
        let r = try Reactor()
        let rx = Collect()
        var o = UDPOptions()
        o.gro = true
        let (rfd, notes) = try UDPSocket.open(bind: loopback(), options: o)
        XCTAssertEqual(notes, [])
        let receiver = try DatagramSocket(reactor: r, fd: rfd, batchSize: 4, bufferSize: 65536 + 64, handler: rx)
        XCTAssertTrue(receiver.gro)
        let sender = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: loopback()).fd, handler: Collect())
        XCTAssertTrue(sender.gso, "UDP_SEGMENT probe (Linux 4.18+)")
        XCTAssertEqual(sendRun(r, sender, to: receiver.localEndpoint, rx: rx), 1)
        XCTAssertEqual(sender.counters.gsoRuns, 1)
        XCTAssertEqual(rx.datagrams.count, 1, "one receive for the whole run")
        XCTAssertEqual(rx.datagrams.first?.segment, 1000, "split by the cmsg segment size")
        XCTAssertEqual(receiver.counters.groRuns, 1)
    }

    func testGSORunWithoutGROArrivesAsDatagrams() throws {
        let r = try Reactor()
        let rx = Collect()
        let receiver = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: loopback()).fd, handler: rx)
        XCTAssertFalse(receiver.gro)
        let sender = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: loopback()).fd, handler: Collect())
        XCTAssertEqual(sendRun(r, sender, to: receiver.localEndpoint, rx: rx), 1)
        XCTAssertEqual(rx.datagrams.map(\.bytes.count), [1000, 1000, 1000, 1000, 1000, 500])
        XCTAssertTrue(rx.datagrams.allSatisfy { $0.segment == 0 })
    }

    func testRunsAreSplitWhenGSOIsOff() throws {
        let r = try Reactor()
        let rx = Collect()
        let receiver = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: loopback()).fd, handler: rx)
        let sender = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: loopback()).fd, handler: Collect())
        sender.gso = false  // as after the kernel refused a run
        XCTAssertEqual(sendRun(r, sender, to: receiver.localEndpoint, rx: rx), 1, "the run counts as one view consumed")
        XCTAssertEqual(rx.datagrams.map(\.bytes.count), [1000, 1000, 1000, 1000, 1000, 500])
        XCTAssertEqual(sender.counters.gsoRuns, 0)
        XCTAssertEqual(sender.counters.sent, 6)

        // Many runs and single datagrams mixed, more than one syscall chunk's worth.
        rx.datagrams = []
        let bytes = [UInt8](repeating: 0x5a, count: 4000)
        var views = [CReactor_dgram](repeating: CReactor_dgram(), count: 100)
        let consumed = bytes.withUnsafeBytes { b -> Int in
            for i in 0..<100 {
                views[i].data = UnsafeMutablePointer(mutating: b.baseAddress!.assumingMemoryBound(to: UInt8.self))
                views[i].len = i % 2 == 0 ? 4000 : 100
                views[i].segment = i % 2 == 0 ? 1000 : 0
                views[i].peer = receiver.localEndpoint
            }
            return views.withUnsafeMutableBufferPointer { sender.send(DatagramBatch(base: $0.baseAddress!, count: 100)) }
        }
        XCTAssertEqual(consumed, 100)
        let deadline = Reactor.now() + 3_000_000_000
        while rx.datagrams.count < 250 && Reactor.now() < deadline { r.runOnce(timeoutMs: 50) }
        XCTAssertEqual(rx.datagrams.count, 250, "50 runs of 4 and 50 singles")
    }

    // MARK: TUN with IFF_VNET_HDR, in a namespace

    var ns: String { "wsr-off-\(getpid())" }

    override func tearDown() {
        _ = sh("ip", "netns", "del", ns)
    }

    final class TunCapture: TunHandler, @unchecked Sendable {
        var packets: [(header: CReactor_virtio_net_hdr, bytes: [UInt8])] = []
        var onPacket: () -> Void = {}
        func tunRead(_ batch: TunBatch, device: TunDevice) {
            for i in 0..<batch.count {
                let (p, n) = batch.packet(i)
                XCTAssertGreaterThanOrEqual(batch.capacity(i), n + device.tailroom)
                var h = CReactor_virtio_net_hdr()
                if let raw = batch.vnetHeader(i) { withUnsafeMutableBytes(of: &h) { $0.copyMemory(from: raw) } }
                packets.append((h, Array(UnsafeRawBufferPointer(start: p, count: n))))
            }
            onPacket()
        }
    }

    func testTunOffloadsInNamespace() throws {
        try XCTSkipUnless(getuid() == 0, "needs root for network namespaces and TUN")
        _ = sh("ip", "netns", "del", ns)
        XCTAssertEqual(sh("ip", "netns", "add", ns), 0)
        final class Box: @unchecked Sendable {
            var error: String?
            var notes: [String] = []
            var vnet = false
            var offloads: TunOffloads = []
            var stop: StopHandle?
            var wroteGather = false
            var wroteICMP = false
            let cap = TunCapture()
            let udp = Collect()
        }
        let box = Box()
        let opened = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let nsPath = "/var/run/netns/\(ns)"
        let ready = DispatchSemaphore(value: 0)
        let t = Thread {
            defer { finished.signal() }
            guard CReactor_setns_net(nsPath) == 0 else {
                box.error = "setns failed"
                opened.signal()
                return
            }
            do {
                let r = try Reactor()
                let dev = try TunDevice(reactor: r, name: "wsoff0", offloads: .all, handler: box.cap)
                try dev.setUp(mtu: 1400)
                box.vnet = dev.vnetHeader
                box.offloads = dev.offloads
                box.notes = dev.notes
                box.stop = r.stopHandle
                opened.signal()
                ready.wait()  // the address is on
                var local = CReactor_endpoint()
                _ = CReactor_endpoint_parse("10.99.8.1", 9998, &local)
                let sock = try DatagramSocket(reactor: r, fd: try UDPSocket.open(bind: local).fd, handler: box.udp)
                box.wroteGather = Self.writeUSO(dev)
                box.wroteICMP = Self.writeEcho(dev)
                r.addTimer(after: 15_000_000_000) { r.stop() }
                r.run()
                sock.close()
                dev.close()
            } catch {
                box.error = "\(error)"
                opened.signal()
            }
        }
        t.start()
        opened.wait()
        XCTAssertNil(box.error)
        XCTAssertTrue(box.vnet, "IFF_VNET_HDR: \(box.notes)")
        XCTAssertTrue(box.offloads.isSuperset(of: [.checksum, .tso4, .tso6]), "TSO accepted: \(box.offloads) \(box.notes)")
        XCTAssertEqual(sh("ip", "netns", "exec", ns, "ip", "addr", "add", "10.99.8.1/24", "dev", "wsoff0"), 0)
        ready.signal()
        // A UDP_SEGMENT send routed into the device: one USO super-packet when the device took USO.
        let py = "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(17, 103, 1000); "
            + "s.sendto(bytes(i % 251 for i in range(4180)), ('10.99.8.2', 9999))"
        XCTAssertEqual(sh("ip", "netns", "exec", ns, "python3", "-c", py), 0)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            if box.udp.totalBytes >= 3500 && box.cap.packets.contains(where: { $0.bytes.count > 28 && $0.bytes[9] == 1 && $0.bytes[20] == 0 }) { break }
        }
        box.stop?.stop()
        XCTAssertEqual(finished.wait(timeout: .now() + 20), .success)

        // Read side: the sender's 4180 bytes, as one super-packet (USO) or five datagrams.
        let udpOut = box.cap.packets.filter { $0.bytes.count > 28 && $0.bytes[0] == 0x45 && $0.bytes[9] == 17 && $0.bytes[22] == 0x27 && $0.bytes[23] == 0x0f }
        XCTAssertEqual(udpOut.reduce(0) { $0 + $1.bytes.count - 28 }, 4180, "UDP payload read from the TUN")
        if box.offloads.contains(.uso4) {
            XCTAssertEqual(udpOut.count, 1, "one read for the whole UDP_SEGMENT send")
            if let h = udpOut.first?.header {
                XCTAssertEqual(h.gso_type, UInt8(CReactor_VIRTIO_NET_HDR_GSO_UDP_L4))
                XCTAssertEqual(h.gso_size, 1000)
                XCTAssertEqual(h.flags & UInt8(CReactor_VIRTIO_NET_HDR_F_NEEDS_CSUM), UInt8(CReactor_VIRTIO_NET_HDR_F_NEEDS_CSUM))
                XCTAssertEqual(h.csum_start, 20)
                XCTAssertEqual(h.csum_offset, 6)
            }
        } else {
            XCTAssertEqual(udpOut.count, 5)
        }
        // Write side: the gathered USO super-packet reached the socket as 1000, 1000, 1000, 500.
        XCTAssertTrue(box.wroteGather, "writeGather accepted")
        XCTAssertEqual(box.udp.datagrams.map(\.bytes.count), [1000, 1000, 1000, 500])
        XCTAssertEqual(box.udp.datagrams.flatMap(\.bytes), (0..<3500).map { UInt8(truncatingIfNeeded: $0 * 3) })
        // Plain write with a zero vnet header: the kernel answered the echo request.
        XCTAssertTrue(box.wroteICMP)
        XCTAssertTrue(box.cap.packets.contains { $0.bytes.count >= 28 && $0.bytes[9] == 1 && $0.bytes[20] == 0 && Array($0.bytes[16..<20]) == [10, 99, 8, 2] },
                      "echo reply read back")
    }

    // MARK: Packets built by hand (this target has no Node)

    static func sum(_ b: UnsafeRawBufferPointer, _ initial: UInt32 = 0) -> UInt16 {
        var s = initial
        var i = 0
        while i + 1 < b.count {
            s += UInt32(b[i]) << 8 | UInt32(b[i + 1])
            i += 2
        }
        if i < b.count { s += UInt32(b[i]) << 8 }
        while s > 0xffff { s = (s & 0xffff) + (s >> 16) }
        return UInt16(s)
    }

    static func ipv4(_ p: inout [UInt8], proto: UInt8, total: Int) {
        p[0] = 0x45; p[2] = UInt8(total >> 8); p[3] = UInt8(total & 0xff); p[6] = 0x40; p[8] = 64; p[9] = proto
        p.replaceSubrange(12..<16, with: [10, 99, 8, 2])
        p.replaceSubrange(16..<20, with: [10, 99, 8, 1])
        let c = ~p.withUnsafeBytes { sum(UnsafeRawBufferPointer(rebasing: $0[0..<20])) }
        p[10] = UInt8(c >> 8); p[11] = UInt8(c & 0xff)
    }

    /// A USO super-packet 10.99.8.2:7777 -> 10.99.8.1:9998, 3500 bytes in 1000-byte segments, gathered from three pieces.
    static func writeUSO(_ dev: TunDevice) -> Bool {
        let payload = (0..<3500).map { UInt8(truncatingIfNeeded: $0 * 3) }
        var hdr = [UInt8](repeating: 0, count: 28)
        ipv4(&hdr, proto: 17, total: 28 + 3500)
        hdr[20] = 0x1e; hdr[21] = 0x61; hdr[22] = 0x27; hdr[23] = 0x0e  // 7777 -> 9998
        hdr[24] = UInt8((8 + 3500) >> 8); hdr[25] = UInt8((8 + 3500) & 0xff)
        // NEEDS_CSUM: the field holds the pseudo-header sum, not complemented.
        let pseudo: [UInt8] = [10, 99, 8, 2, 10, 99, 8, 1, 0, 17, UInt8((8 + 3500) >> 8), UInt8((8 + 3500) & 0xff)]
        let ps = pseudo.withUnsafeBytes { sum($0) }
        hdr[26] = UInt8(ps >> 8); hdr[27] = UInt8(ps & 0xff)
        var v = CReactor_virtio_net_hdr(flags: UInt8(CReactor_VIRTIO_NET_HDR_F_NEEDS_CSUM), gso_type: UInt8(CReactor_VIRTIO_NET_HDR_GSO_UDP_L4),
                                        hdr_len: 28, gso_size: 1000, csum_start: 20, csum_offset: 6)
        return hdr.withUnsafeMutableBytes { h in
            payload.withUnsafeBytes { pl in
                withUnsafeMutableBytes(of: &v) { vb in
                    let iov = [CReactor_iovec(base: vb.baseAddress, len: 10),
                               CReactor_iovec(base: h.baseAddress, len: 28),
                               CReactor_iovec(base: UnsafeMutableRawPointer(mutating: pl.baseAddress), len: 1700),
                               CReactor_iovec(base: UnsafeMutableRawPointer(mutating: pl.baseAddress! + 1700), len: 1800)]
                    return iov.withUnsafeBufferPointer { dev.writeGather($0.baseAddress!, count: 4) }
                }
            }
        }
    }

    /// An ICMP echo request 10.99.8.2 -> 10.99.8.1 through the plain `write`.
    static func writeEcho(_ dev: TunDevice) -> Bool {
        var p = [UInt8](repeating: 0, count: 28 + 16)
        ipv4(&p, proto: 1, total: p.count)
        p[20] = 8; p[24] = 0x12; p[25] = 0x34; p[27] = 1
        let c = ~p.withUnsafeBytes { sum(UnsafeRawBufferPointer(rebasing: $0[20...])) }
        p[22] = UInt8(c >> 8); p[23] = UInt8(c & 0xff)
        return p.withUnsafeBytes { dev.write($0.baseAddress!, length: p.count) }
    }
}
