import CReactor
import Foundation
import XCTest

@testable import Reactor

/// A TUN device opened and read through the reactor inside a network namespace
/// this test makes (and removes in tearDown, also when the test fails).
///
///   netns wsr-tun-PID:  [ping] --10.99.7.1/24--> wstest0 (TUN) --> Reactor/TunDevice
final class TunTests: XCTestCase {
    var ns: String { "wsr-tun-\(getpid())" }

    override func setUpWithError() throws {
        try XCTSkipUnless(getuid() == 0, "needs root for network namespaces and TUN")
        _ = sh("ip", "netns", "del", ns)
        XCTAssertEqual(sh("ip", "netns", "add", ns), 0)
    }

    override func tearDown() {
        _ = sh("ip", "netns", "del", ns)
    }

    final class Capture: TunHandler, @unchecked Sendable {
        var packets: [[UInt8]] = []
        var onPacket: () -> Void = {}
        func tunRead(_ batch: TunBatch, device: TunDevice) {
            for i in 0..<batch.count {
                let (p, n) = batch.packet(i)
                packets.append(Array(UnsafeRawBufferPointer(start: p, count: n)))
            }
            onPacket()
        }
    }

    func testTunDeviceReadInNamespace() throws {
        final class Box: @unchecked Sendable {
            var name = ""
            var error: String?
            var stop: StopHandle?
            let cap = Capture()
        }
        let box = Box()
        let opened = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let nsPath = "/var/run/netns/\(ns)"
        let t = Thread {
            defer { finished.signal() }
            // setns(2) moves only this thread; the device is created in the namespace.
            guard CReactor_setns_net(nsPath) == 0 else {
                box.error = "setns failed"
                opened.signal()
                return
            }
            do {
                let r = try Reactor()
                let dev = try TunDevice(reactor: r, name: "wstest0", handler: box.cap)
                try dev.setUp(mtu: 1400)
                box.name = dev.name
                box.stop = r.stopHandle
                box.cap.onPacket = { if box.cap.packets.filter({ $0.first == 0x45 }).count >= 3 { r.stop() } }
                r.addTimer(after: 15_000_000_000) { r.stop() }
                opened.signal()
                r.run()
                dev.close()
            } catch {
                box.error = "\(error)"
                opened.signal()
            }
        }
        t.start()
        opened.wait()
        XCTAssertNil(box.error)
        XCTAssertEqual(box.name, "wstest0")
        XCTAssertEqual(sh("ip", "netns", "exec", ns, "ip", "addr", "add", "10.99.7.1/24", "dev", "wstest0"), 0)
        // Pings to a peer on the TUN subnet are routed into the device; nobody answers.
        _ = sh("ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.99.7.2")
        box.stop?.stop()
        XCTAssertEqual(finished.wait(timeout: .now() + 20), .success)
        let pings = box.cap.packets.filter { $0.count >= 20 && $0[0] >> 4 == 4 && $0[9] == 1 }
        XCTAssertGreaterThanOrEqual(pings.count, 2, "ICMP echo requests read from the TUN device")
        if let p = pings.first {
            XCTAssertEqual(Array(p[12..<16]), [10, 99, 7, 1], "source")
            XCTAssertEqual(Array(p[16..<20]), [10, 99, 7, 2], "destination")
            XCTAssertEqual(p[20], 8, "ICMP echo request")
        }
        // The device disappears with its fd.
        XCTAssertNotEqual(sh("ip", "netns", "exec", ns, "ip", "link", "show", "wstest0", quiet: true), 0)
    }
}

/// Runs a command, returns its exit status.
@discardableResult
func sh(_ args: String..., quiet: Bool = true) -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    if quiet {
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
    }
    do { try p.run() } catch { return -1 }
    p.waitUntilExit()
    return p.terminationStatus
}
